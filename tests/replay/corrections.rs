//! An operator's corrections replayed: a false-positive mark lifts the action at its time and
//! keeps the client allowed; a denylist entry blocks at once; the report shows both.

use sluice::adapters::corrections_file;
use sluice::replay::ReplayOptions;

use super::trace;

/// Anomaly actions alone (no rules: a rule's floor would keep part of an endpoint open).
fn options(corrections: Vec<corrections_file::TimedCorrection>) -> ReplayOptions<'static> {
    ReplayOptions {
        corrections,
        rules: Vec::new(),
        ..super::options(false)
    }
}

fn allowed_after(decisions: &[u8], client: &str, from_ms: i64) -> (usize, usize) {
    let mut reader = csv::Reader::from_reader(decisions);
    let (mut allowed, mut total) = (0, 0);
    for row in reader.records() {
        let row = row.unwrap();
        let ts: i64 = row[0].parse().unwrap();
        if &row[1] == client && ts >= from_ms {
            total += 1;
            allowed += (&row[3] == "1") as usize;
        }
    }
    (allowed, total)
}

#[test]
fn a_false_positive_mark_lifts_and_keeps_allowed_and_a_deny_blocks() {
    let trace = trace("ddos", 3, 0.5);
    // Without corrections: an attacker is flagged, and a benign client is never limited.
    let plain = sluice::replay::run(trace.as_slice(), options(Vec::new()), None).unwrap();
    let caught = plain
        .flagged
        .iter()
        .find(|f| f.label.starts_with("attack") && !f.client.starts_with("user:"))
        .expect("an attacker flagged")
        .clone();
    let benign = {
        let mut r = csv::Reader::from_reader(trace.as_slice());
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|c| c == n).unwrap();
        let (client, label) = (col("client"), col("label"));
        r.records()
            .map(|x| x.unwrap())
            .find(|x| &x[label] == "benign")
            .map(|x| x[client].to_string())
            .unwrap()
    };
    // Marked a minute after it was flagged; the benign client denylisted at the same time.
    let at = caught.first_flagged_ts + 60_000;
    let file = format!(
        "ts,action,client,ttl_secs,reason\n\
         {at},false_positive,{},,our load test\n\
         {at},deny,{benign},,\n\
         99999999999999,reset,{benign},,\n",
        caught.client
    );
    let corrections = corrections_file::read(file.as_bytes()).unwrap();
    let mut decisions = Vec::new();
    let report =
        sluice::replay::run(trace.as_slice(), options(corrections), Some(&mut decisions)).unwrap();

    let c = &report.corrections;
    assert_eq!(c.len(), 3, "{c:?}");
    assert_eq!((c[0].action, c[0].applied), ("false_positive", true));
    assert_eq!(c[0].lifted, std::slice::from_ref(&caught.client), "{c:?}");
    assert_eq!(c[0].reason, "our load test");
    assert_eq!(
        (c[1].action, c[1].blocked.clone()),
        ("deny", vec![benign.clone()])
    );
    // The last one is after the trace's end: listed, not applied.
    assert!(!c[2].applied, "{c:?}");

    let marked = report
        .flagged
        .iter()
        .find(|f| f.client == caught.client)
        .unwrap();
    assert_eq!(marked.marked_false_positive_ts, Some(at));
    // Allowlisted for a day: from the mark on, its requests are allowed...
    let (allowed, total) = allowed_after(&decisions, &caught.client, at + 1_000);
    assert!(total > 0, "it kept sending");
    assert!(
        allowed * 100 >= total * 95,
        "{allowed} of {total} allowed after the mark"
    );
    // ...where without the mark most of them were denied.
    let mut plain_decisions = Vec::new();
    sluice::replay::run(
        trace.as_slice(),
        options(Vec::new()),
        Some(&mut plain_decisions),
    )
    .unwrap();
    let (before, total) = allowed_after(&plain_decisions, &caught.client, at + 1_000);
    assert!(
        before * 2 < total,
        "{before} of {total} allowed without the mark"
    );
    // The denylisted client is blocked from then on.
    let (allowed, total) = allowed_after(&decisions, &benign, at + 1_000);
    assert_eq!(allowed, 0, "{allowed} of {total} allowed after the deny");
}
