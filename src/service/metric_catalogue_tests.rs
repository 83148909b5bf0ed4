use super::*;

#[test]
fn names_are_unique_and_shaped_for_their_exporter() {
    let mut seen = std::collections::HashSet::new();
    for def in CATALOGUE {
        assert!(seen.insert(def.prometheus), "{} twice", def.prometheus);
        assert!(def.prometheus.starts_with("sluice_"), "{}", def.prometheus);
        assert_eq!(
            def.prometheus.ends_with("_total"),
            def.kind == Kind::Counter,
            "{}: counters, and only counters, end in _total",
            def.prometheus
        );
        assert!(!def.otlp.is_empty(), "{} has no OTLP name", def.prometheus);
        for view in def.otlp {
            assert!(seen.insert(view.name), "{} twice", view.name);
            assert!(view.name.starts_with("sluice."), "{}", view.name);
        }
        assert!(!def.help.is_empty());
    }
}

#[test]
fn every_name_is_documented() {
    let docs = include_str!("../../docs/operating.md");
    let names = CATALOGUE
        .iter()
        .flat_map(|d| std::iter::once(d.prometheus).chain(d.otlp.iter().map(|o| o.name)))
        .chain([DECISION_DURATION.prometheus, DECISION_DURATION.otlp]);
    let missing: Vec<&str> = names
        .filter(|n| !docs.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operating.md does not list {missing:?}"
    );
}

#[test]
fn otlp_views_pick_and_sum() {
    let s = |labels: &[(&'static str, &str)], value| labelled(labels, value);
    let samples = vec![
        s(&[("kind", "throttle"), ("signal", "forest")], 2.0),
        s(&[("kind", "block"), ("signal", "forest")], 1.0),
        s(&[("kind", "throttle"), ("signal", "failures")], 3.0),
    ];
    // (view, expected)
    let table = [
        (same("x"), samples.clone()),
        (total("x"), vec![s(&[], 6.0)]),
        (
            Otlp {
                name: "x",
                keep: Some(&["kind"]),
                only: None,
            },
            vec![
                s(&[("kind", "throttle")], 5.0),
                s(&[("kind", "block")], 1.0),
            ],
        ),
        (
            Otlp {
                name: "x",
                keep: Some(&[]),
                only: Some(("signal", "failures")),
            },
            vec![s(&[], 3.0)],
        ),
    ];
    for (view, expected) in table {
        assert_eq!(otlp_samples(&view, samples.clone()), expected, "{view:?}");
    }
}
