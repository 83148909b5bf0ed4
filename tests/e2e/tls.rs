//! TLS and mutual TLS on the gRPC listener, with certificates made for the test (rcgen): who
//! gets an answer and who does not, `sluice rules apply` over TLS, and start-up refusals.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sluice::proto::sluice::v1 as pb;
use sluice::proto::sluice::v1::sluice_client::SluiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::harness::*;

/// A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

/// The client flags for mutual TLS, as (flag, file in the PKI directory).
const MTLS: [(&str, &str); 3] = [
    ("--tls-ca", "ca.pem"),
    ("--tls-client-cert", "client.pem"),
    ("--tls-client-key", "client.key"),
];

impl Pki {
    /// Runs `sluice ARGS` with the TLS flags `tls` pointing into this PKI's directory.
    fn sluice(&self, args: &[&str], tls: &[(&str, &str)]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.args(args);
        for (flag, file) in tls {
            command.arg(flag).arg(self.path(file));
        }
        command.output().unwrap()
    }

    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        for (name, sans) in [
            (
                "server",
                vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ),
            ("client", vec!["envoy.internal".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// A client trusting the CA, presenting the client certificate when `identity`.
    async fn client(
        &self,
        server: &TestServer,
        identity: bool,
    ) -> Result<SluiceClient<Channel>, String> {
        Ok(SluiceClient::new(self.channel(server, identity).await?))
    }

    /// Waits for SERVING (rules loaded), asked over TLS with the client certificate.
    async fn wait_serving(&self, server: &TestServer) {
        let channel = self.channel(server, true).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        eventually("SERVING over TLS", async || {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok_and(|r| {
                    r.get_ref().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                })
        })
        .await;
    }

    async fn channel(&self, server: &TestServer, identity: bool) -> Result<Channel, String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.read("ca.pem")))
            .domain_name("localhost");
        if identity {
            tls = tls.identity(Identity::from_pem(
                self.read("client.pem"),
                self.read("client.key"),
            ));
        }
        let channel = Channel::from_shared(format!("https://{}", server.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(channel)
    }
}

async fn ask(client: &mut SluiceClient<Channel>) -> Result<bool, tonic::Status> {
    client
        .should_allow(pb::ShouldAllowRequest {
            subject: Some(pb::Subject {
                client_ip: "10.1.2.3".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().allowed)
}

/// A server with TLS (and mutual TLS when `client_ca`), on a fresh SQLite database, SERVING.
async fn tls_server(pki: &Pki, client_ca: bool) -> (Db, TestServer) {
    let db = Db::new(Backend::Sqlite).await;
    let mut config = config(&db.url);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server.key"));
    config.tls_client_ca = client_ca.then(|| pki.path("ca.pem"));
    let server = TestServer::spawn(config).await;
    pki.wait_serving(&server).await;
    (db, server)
}

/// A plaintext client gets no answer from a TLS server.
async fn plaintext_fails(server: &TestServer) {
    let outcome = async {
        let channel = Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await?;
        ask(&mut SluiceClient::new(channel))
            .await
            .map_err(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>)
    };
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), outcome).await;
    assert!(
        !matches!(result, Ok(Ok(_))),
        "a plaintext call was answered by a TLS server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_its_ca_and_no_plaintext() {
    let pki = Pki::new();
    let (_db, server) = tls_server(&pki, false).await;
    let mut client = pki.client(&server, false).await.unwrap();
    eventually("an answer over TLS", async || {
        ask(&mut client).await.is_ok()
    })
    .await;
    plaintext_fails(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_answers_only_clients_with_a_certificate() {
    let pki = Pki::new();
    let (_db, server) = tls_server(&pki, true).await;
    let mut with_cert = pki.client(&server, true).await.unwrap();
    eventually("an answer with a client certificate", async || {
        ask(&mut with_cert).await.is_ok()
    })
    .await;
    // Without one, the handshake or the first call fails, depending on when rustls reports it.
    if let Ok(mut without) = pki.client(&server, false).await {
        assert!(
            ask(&mut without).await.is_err(),
            "answered without a client certificate"
        );
    }
    plaintext_fails(&server).await;

    // The CLI over mutual TLS: applies a rules file.
    let file = pki.path("rules.yaml");
    std::fs::write(
        &file,
        "domain: sluice\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
    )
    .unwrap();
    let https = format!("https://localhost:{}", server.addr.port());
    let file = file.display().to_string();
    let out = pki.sluice(
        &[
            "rules", "apply", &file, "--server", &https, "--token", TOKEN,
        ],
        &MTLS,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The rule is in force: one request a minute.
    assert!(ask(&mut with_cert).await.unwrap());
    assert!(!ask(&mut with_cert).await.unwrap());

    // The exec probe over mutual TLS: SERVING, exit 0; without the client certificate, or
    // over plaintext, it fails.
    let probe = ["health", "--timeout", "5", "--server", &https];
    let ok = pki.sluice(&probe, &MTLS);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "SERVING");
    assert!(!pki.sluice(&probe, &MTLS[..1]).status.success());
    let plaintext = format!("http://localhost:{}", server.addr.port());
    let probe_plain = ["health", "--timeout", "5", "--server", &plaintext];
    assert!(!pki.sluice(&probe_plain, &[]).status.success());

    // The load generator over mutual TLS: every call answered, none failed.
    let load = [
        "load",
        "--api",
        "allow",
        "--duration",
        "0.5",
        "--concurrency",
        "2",
        "--connections",
        "1",
        "--target",
        &https,
    ];
    let out = pki.sluice(&load, &MTLS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    server.stop().await;
}

/// Bad TLS settings stop the start, naming the flag (and the file when there is one).
#[tokio::test]
async fn bad_tls_settings_are_refused_at_start() {
    let pki = Pki::new();
    let missing = pki.path("missing.pem");
    let not_pem = pki.path("rules.txt");
    std::fs::write(&not_pem, "domain: sluice\n").unwrap();
    let p = |name: &str| Some(pki.path(name));
    type Case = (
        Option<PathBuf>,
        Option<PathBuf>,
        Option<PathBuf>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (p("server.pem"), None, None, "--tls-cert needs --tls-key"),
        (None, p("server.key"), None, "--tls-key needs --tls-cert"),
        (None, None, p("ca.pem"), "--tls-client-ca needs"),
        (Some(missing.clone()), p("server.key"), None, "--tls-cert"),
        (p("server.pem"), Some(not_pem.clone()), None, "--tls-key"),
        (
            p("server.pem"),
            p("server.key"),
            Some(not_pem.clone()),
            "--tls-client-ca",
        ),
        // A key that is not the certificate's: rustls refuses the pair.
        (
            p("server.pem"),
            p("client.key"),
            None,
            "--tls-cert / --tls-key",
        ),
    ];
    for (i, (cert, key, ca, needle)) in cases.into_iter().enumerate() {
        let db = Db::new(Backend::Sqlite).await;
        let mut config = config(&db.url);
        config.tls_cert = cert;
        config.tls_key = key;
        config.tls_client_ca = ca;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token_dir = tempfile::tempdir().unwrap();
        config.admin_token_file = token_dir.path().join("token");
        let error = sluice::app::run(config, listener, std::future::pending())
            .await
            .expect_err("bad TLS settings were accepted");
        let message = error.to_string();
        assert!(message.contains(needle), "case {i}: {message}");
        if let Some(path) = [&missing, &not_pem]
            .into_iter()
            .find(|p| message.contains(&*p.file_name().unwrap().to_string_lossy()))
        {
            assert!(
                message.contains(&*path.display().to_string()),
                "case {i}: {message}"
            );
        }
    }
}

/// The HTTP admin listener takes the gRPC listener's TLS files: with a client CA, only a client
/// with a certificate it signed gets an answer, and plain HTTP gets none. curl is the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_speaks_the_same_mutual_tls() {
    let pki = Pki::new();
    let db = Db::new(Backend::Sqlite).await;
    let mut config = config(&db.url);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server.key"));
    config.tls_client_ca = Some(pki.path("ca.pem"));
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::spawn(config).await;
    pki.wait_serving(&server).await;
    let port = server.http.unwrap().port();
    let curl = |args: &[&str], scheme: &str| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "--max-time", "5", "--cacert"])
            .arg(pki.path("ca.pem"))
            .args(args)
            .arg(format!("{scheme}://localhost:{port}/healthz"));
        c.output().expect("curl")
    };
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let client_cert = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let ok = curl(&client_cert, "https");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok\n");
    let anonymous = curl(&[], "https");
    assert!(
        !anonymous.status.success(),
        "no client certificate, no answer"
    );
    let plain = curl(&[], "http");
    assert!(
        !plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "plain HTTP on a TLS listener gets no answer"
    );
    server.stop().await;
}
