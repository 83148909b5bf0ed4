//! The everyday calls from the `sluice` binary itself (no grpcurl): `decide`, `rules list|get`,
//! `client get|reset`, `flagged`, `stats` and `call`, against a real server over a real socket,
//! JSON out; admin calls with the token, refused without it, a bad request named.

use sluice::proto::sluice::v1 as pb;

use crate::harness::*;

/// Runs `sluice ARGS --server URL [--token TOKEN]`: (succeeded, stdout as JSON or text, stderr).
fn sluice(server: &TestServer, args: &[&str], token: bool) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(args).args(["--server", &server.url()]);
    if token {
        command.args(["--token", TOKEN]);
    }
    // No token file is read from here.
    let dir = tempfile::tempdir().unwrap();
    let out = command.current_dir(dir.path()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_everyday_calls_need_no_grpcurl() {
    let (_db, server) = TestServer::sqlite_with(|_| {}).await;
    put_rules(
        &server,
        vec![rule("sluice", &[("remote_address", "")], 2, pb::Unit::Hour)],
    )
    .await;

    // decide: twice admitted, then refused, as JSON.
    let decide = ["decide", "--ip", "198.51.100.4", "--endpoint", "/x"];
    for expected in [true, true, false] {
        let (ok, out, err) = sluice(&server, &decide, false);
        assert!(ok, "{err}");
        assert_eq!(
            json(&out)["allowed"].as_bool().unwrap_or(false),
            expected,
            "{out}"
        );
    }
    // rules list and get.
    let (ok, out, err) = sluice(&server, &["rules", "list"], true);
    assert!(ok, "{err}");
    let id = json(&out)["rules"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "sluice|remote_address");
    let (ok, out, err) = sluice(&server, &["rules", "get", &id], true);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["id"], id.as_str());
    // client get says the bucket is spent; reset needs the token and gives it back.
    let client = ["--ip", "198.51.100.4"];
    let (ok, out, err) = sluice(&server, &[&["client", "get"][..], &client].concat(), true);
    assert!(ok, "{err}");
    assert_eq!(
        json(&out)["limits"][0]["remaining"].as_str().unwrap_or("0"),
        "0",
        "{out}"
    );
    let (ok, _, err) = sluice(
        &server,
        &[&["client", "reset"][..], &client].concat(),
        false,
    );
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    let (ok, out, err) = sluice(&server, &[&["client", "reset"][..], &client].concat(), true);
    assert!(ok, "{err}");
    assert!(
        json(&out)["bucketsReset"].as_u64().unwrap_or(0) >= 1,
        "{out}"
    );
    let (ok, out, _) = sluice(&server, &decide, false);
    assert!(
        ok && json(&out)["allowed"] == true,
        "the allowance is back: {out}"
    );
    // flagged and stats answer (nobody flagged; the history may be empty yet).
    let (ok, out, err) = sluice(&server, &["flagged"], true);
    assert!(ok, "{err}");
    assert!(json(&out).is_object());
    let (ok, out, err) = sluice(&server, &["stats", "--minutes", "5"], true);
    assert!(ok, "{err}");
    assert!(json(&out)["sinceMs"].is_string(), "{out}");
    // call: any method, JSON in; a misspelt field or method is named.
    let (ok, out, err) = sluice(&server, &["call", "GetModelInfo"], true);
    assert!(ok, "{err}");
    assert!(json(&out)["trees"].as_u64().unwrap_or(0) > 0, "{out}");
    let (ok, _, err) = sluice(&server, &["call", "ListFlagged", r#"{"limt": 1}"#], true);
    assert!(!ok && err.contains("limt"), "{err}");
    let (ok, _, err) = sluice(&server, &["call", "ListFlaged"], true);
    assert!(!ok && err.contains("ListFlagged"), "{err}");
    server.stop().await;
}
