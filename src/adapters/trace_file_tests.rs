use super::*;

fn rows(text: &str) -> Result<Vec<String>, TraceError> {
    let mut out = Vec::new();
    read::<_, TraceError>(text.as_bytes(), |r| {
        out.push(format!(
            "{}|{}|{}|{}|{}|{}|{:?}|{}",
            r.ts_ms,
            r.client,
            r.user,
            r.tier.as_str(),
            r.endpoint,
            r.user_agent,
            r.status,
            r.label
        ));
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn csv_columns_in_any_order_with_optional_ones() {
    let text = "label,endpoint,client,ts,extra\nbenign,/a,1.2.3.4,1767225600000,x\nattack:ddos,/b,5.6.7.8,2026-01-01T00:00:01+01:00,y\n";
    assert_eq!(
        rows(text).unwrap(),
        vec![
            "1767225600000|1.2.3.4||STD|/a||None|benign",
            "1767222001000|5.6.7.8||STD|/b||None|attack:ddos",
        ]
    );
}

#[test]
fn combined_log_lines() {
    let text = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/x.png?a=1 HTTP/1.1" 200 203023 "http://semicomplete.com/" "Mozilla/5.0 (Macintosh)"
66.249.73.135 - - [17/May/2015:10:05:40 +0000] "GET /blog/ HTTP/1.1" 404 100 "-" "Googlebot/2.1 \"quoted\""
"#;
    assert_eq!(
        rows(text).unwrap(),
        vec![
            "1431857103000|83.149.9.216||STD|/presentations/x.png|Mozilla/5.0 (Macintosh)|Some(200)|",
            "1431857140000|66.249.73.135||STD|/blog/|Googlebot/2.1 \\\"quoted\\\"|Some(404)|",
        ]
    );
}

#[test]
fn bad_traces_name_the_line() {
    let header = "ts,client,endpoint,tier,status,label\n";
    // (what, text, line, words in the message)
    let cases = [
        ("empty file", String::new(), 1, "empty"),
        ("not a trace", "hello,world\n1,2\n".to_string(), 1, "`ts`"),
        (
            "bad ts",
            format!("{header}1,a,/x,,,\nyesterday,a,/x,,,\n"),
            3,
            "yesterday",
        ),
        ("bad tier", format!("{header}1,a,/x,GOLD,,\n"), 2, "GOLD"),
        ("bad status", format!("{header}1,a,/x,,999,\n"), 2, "999"),
        ("bad label", format!("{header}1,a,/x,,,evil\n"), 2, "evil"),
        ("empty client", format!("{header}1,,/x,,,\n"), 2, "client"),
        (
            "bad combined time",
            "1.2.3.4 - - [yesterday] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"\n".to_string(),
            1,
            "yesterday",
        ),
    ];
    for (what, text, line, words) in cases {
        let e = rows(&text).expect_err(what);
        assert_eq!(e.line, line, "{what}: {e}");
        assert!(e.message.contains(words), "{what}: {e}");
    }
}

#[test]
fn the_shared_apache_log_parses_when_present() {
    // Reference data beside the repository; a user's clone does not have it.
    let Ok(text) = std::fs::read_to_string("../shared/data/apache-combined-2015.log") else {
        return;
    };
    let parsed = rows(&text).expect("the real combined log parses");
    assert_eq!(parsed.len(), 10_000);
}
