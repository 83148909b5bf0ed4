//! Rules files: envoyproxy/ratelimit's own examples load as is; every kind of bad input is an
//! error naming the field or line.

use super::*;

const ENVOY_EXAMPLE: &str = r#"
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
---
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
  - key: key1
    value: value1
    shadow_mode: true
    detailed_metric: true
    rate_limit:
      name: specific
      unit: minute
      requests_per_unit: 10
      replaces:
        - name: general
  - key: key2
    rate_limit:
      unlimited: true
"#;

#[test]
fn envoy_ratelimit_examples_load_as_is() {
    let file = parse("example.yaml", ENVOY_EXAMPLE, &InputLimits::default()).unwrap();
    assert_eq!(file.domains, ["mongo_cps", "messaging"]);
    let ids: Vec<String> = file.rules.iter().map(Rule::id).collect();
    assert_eq!(
        ids,
        [
            "mongo_cps|database=users",
            "mongo_cps|database=default",
            "messaging|message_type=marketing|to_number",
            "messaging|to_number",
            "messaging|key1=value1",
            "messaging|key2",
        ]
    );
    let specific = &file.rules[4];
    assert!(specific.shadow_mode);
    assert_eq!(specific.replaces, ["general"]);
    assert_eq!(file.rules[5].limits[0].rate, None);
}

#[test]
fn sluice_extensions() {
    let text = r#"
domain: sluice
descriptors:
  - key: tier
    value: STD
    descriptors:
      - key: user_id
        priority: low
        rate_limit: {unit: minute, requests_per_unit: 100, name: burst, algorithm: sliding_window, floor: 10, ceiling: 200}
        limits:
          - {unit: day, requests_per_unit: 10000, name: daily}
  - key: endpoint
    value: /api/payment
    priority: high
    capacity: 600
    rate_limit: {unit: second, requests_per_unit: 50}
  - key: api_key
    rate_limit: {unit: second, requests_per_unit: 5, unit_multiplier: 30}
  - key: tenant
    rate_limit: {unit: month, requests_per_unit: 100000, algorithm: fixed_window, calendar: Europe/Berlin}
  - key: smooth
    rate_limit: {unit: second, requests_per_unit: 10, algorithm: gcra, burst: 5}
"#;
    let file = parse("x", text, &InputLimits::default()).unwrap();
    let rule = &file.rules[0];
    assert_eq!(rule.priority, Priority::Low);
    assert_eq!(file.rules[1].capacity_per_minute, Some(600));
    assert_eq!(file.rules[1].endpoint(), Some("/api/payment"));
    assert_eq!(rule.limits.len(), 2);
    assert_eq!(rule.limits[0].algorithm, Algorithm::SlidingWindow);
    assert_eq!(
        (rule.limits[0].floor, rule.limits[0].ceiling),
        (Some(10), Some(200))
    );
    // "5 per 30 seconds".
    let every_30s = file.rules[2].limits[0].rate.unwrap();
    assert_eq!(every_30s.unit_multiplier, 30);
    assert_eq!(every_30s.period_nanos(), 30 * 1_000_000_000);
    assert_eq!(
        file.rules[3].limits[0].calendar.as_deref(),
        Some("Europe/Berlin")
    );
    let month = file.rules[3].limits[0].quota().unwrap();
    assert_eq!(month.calendar.map(|z| z.name()), Some("Europe/Berlin"));
    let gcra = &file.rules[4].limits[0];
    assert_eq!(
        (gcra.algorithm, gcra.quota().unwrap().capacity),
        (Algorithm::Gcra, 5)
    );
}

/// Each bad file and a fragment its error must contain.
#[test]
fn bad_files_name_the_field_or_line() {
    let cases = [
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "line 4",
        ),
        (
            "domain: d\ndescriptors:\n  - key: endpoint\n    value: /pay\n    capacity: 0\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
            "descriptors[0].capacity_per_minute",
        ),
        (
            "domain: d\ndescriptors:\n  - key: user_id\n    capacity: 100\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
            "needs a rule that names one endpoint",
        ),
        (
            "domain: d\ndescriptors:\n  - key: endpoint\n    value: /pay\n    capacity: 100\n",
            "priority, capacity and shadow_mode need a rate_limit",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
            "line 4",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 0}\n",
            "descriptors[0].rate_limit.requests_per_unit",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second}\n",
            "descriptors[0].rate_limit.requests_per_unit",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 5, unit_multiplier: 0}\n",
            "descriptors[0].rate_limit.unit_multiplier",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: year, requests_per_unit: 5, unit_multiplier: 11}\n",
            "ten years at most",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 5, floor: 9, ceiling: 3}\n",
            "floor 9 is above ceiling 3",
        ),
        (
            "domain: d\ndescriptors:\n  - key: tier\n    value: GOLD\n    rate_limit: {unit: second, requests_per_unit: 5}\n",
            "unknown tier",
        ),
        // The error names the node where it is, not its depth in the flattened rule.
        (
            "domain: d\ndescriptors:\n  - key: tier\n    value: GOLD\n    descriptors:\n      - key: user_id\n        rate_limit: {unit: second, requests_per_unit: 5}\n",
            "descriptors[0].value: unknown tier",
        ),
        (
            "domain: d\ndescriptors:\n  - key: endpoint\n    descriptors:\n      - key: endpoint\n        rate_limit: {unit: second, requests_per_unit: 5}\n",
            "descriptors[0].descriptors[0].key: key \"endpoint\" appears twice",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    limits:\n      - {unit: second, requests_per_unit: 5}\n      - {unit: second, requests_per_unit: 0}\n",
            "descriptors[0].limits[1].requests_per_unit",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: month, requests_per_unit: 5, algorithm: fixed_window, calendar: Mars/Olympus}\n",
            "descriptors[0].rate_limit.calendar: unknown time zone",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: month, requests_per_unit: 5, calendar: UTC}\n",
            "descriptors[0].rate_limit.calendar: a calendar period is counted per calendar window: algorithm must be fixed_window",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 5, algorithm: fixed_window, calendar: UTC}\n",
            "descriptors[0].rate_limit.calendar: a calendar period is one day, week, month or year",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 5, algorithm: leaky}\n",
            "gcra",
        ),
        ("domain: \"\"\n", "domain: must not be empty"),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limt: {unit: second, requests_per_unit: 5}\n",
            "unknown field `rate_limt`",
        ),
        ("domain: d\ndescriptors: [\n", "line"),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 2}\n",
            "defined twice",
        ),
    ];
    for (text, want) in cases {
        let err = parse("bad.yaml", text, &InputLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want),
            "error for {text:?} was {err:?}, wanted {want:?}"
        );
        assert!(err.starts_with("bad.yaml"), "{err}");
    }
}

/// Hostile files are refused while they are parsed, quickly, with a named reason: an alias bomb
/// of a big string, one of many strings under the per-string cap, one of many descriptors, and
/// more rules than one update may hold.
#[test]
fn hostile_files_are_refused_while_parsing() {
    let aliased = |anchored: &str, uses: usize| {
        let mut t = format!(
            "domain: d\ndescriptors:\n  - key: k\n    value: &v \"{anchored}\"\n    rate_limit: {{unit: second, requests_per_unit: 1}}\n"
        );
        for i in 0..uses {
            t.push_str(&format!("  - key: k{i}\n    value: *v\n    rate_limit: {{unit: second, requests_per_unit: 1}}\n"));
        }
        t
    };
    let mut lists = String::from("domain: d\ndescriptors:\n  - key: a\n    descriptors: &l\n");
    for i in 0..100 {
        lists.push_str(&format!(
            "      - {{key: k{i}, rate_limit: {{unit: second, requests_per_unit: 1}}}}\n"
        ));
    }
    for i in 0..2_000 {
        lists.push_str(&format!("  - key: b{i}\n    descriptors: *l\n"));
    }
    let mut many = String::from("domain: d\ndescriptors:\n");
    for i in 0..10_001 {
        many.push_str(&format!(
            "  - {{key: k, value: v{i}, rate_limit: {{unit: second, requests_per_unit: 1}}}}\n"
        ));
    }
    let cases = [
        (
            aliased(&"x".repeat(1 << 20), 20_000),
            "a string of 1048576 bytes",
        ),
        (
            aliased(&"x".repeat(60_000), 20_000),
            "bytes of strings once YAML aliases are expanded",
        ),
        (
            lists,
            "more descriptors and limits than one rules file may hold",
        ),
        (many, "more than 10000 rules"),
    ];
    for (text, want) in cases {
        let started = std::time::Instant::now();
        let err = parse("hostile.yaml", &text, &InputLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "wanted {want:?}, got {err:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{want}: refused in {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_file_over_the_size_cap_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(super::MAX_FILE_BYTES + 1).unwrap();
    let err = super::read(&path).unwrap_err().to_string();
    assert!(err.contains("more than a rules file may be"), "{err}");
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    /// Fragments that make parsing go deep into the rules-file code rather than stop at YAML.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("domain: d\n".to_string()),
            Just("descriptors:\n".to_string()),
            Just("  - key: k\n".to_string()),
            Just("    value: v*\n".to_string()),
            Just("    rate_limit: {unit: second, requests_per_unit: 3}\n".to_string()),
            Just("    rate_limit: {unlimited: true}\n".to_string()),
            Just(
                "    limits: [{unit: day, requests_per_unit: 0, floor: 5, ceiling: 1}]\n"
                    .to_string()
            ),
            Just("    descriptors:\n".to_string()),
            Just("      - key: tier\n        value: GOLD\n".to_string()),
            Just("---\n".to_string()),
            "[ -~\n]{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn any_text_is_parsed_or_refused(parts in prop::collection::vec(fragment(), 0..12)) {
            let _ = parse("fuzz.yaml", &parts.concat(), &InputLimits::default());
        }
    }
}
