use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn cloud(n: usize, seed: u64) -> Vec<Features> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut x = [0.0; DIM];
            for v in x.iter_mut() {
                *v = rng.random_range(0.0..1.0);
            }
            x
        })
        .collect()
}

#[test]
fn outliers_score_higher_than_the_population() {
    let points = cloud(2_000, 1);
    let forest = Forest::fit(&points, ForestParams::default()).expect("grown");
    let inside = forest.score(&[0.5; DIM]);
    let mut far = [0.5; DIM];
    far[..3].copy_from_slice(&[8.0, -6.0, 5.0]);
    let edge = {
        let mut x = [0.5; DIM];
        x[0] = 1.0;
        x
    };
    let s_far = forest.score(&far);
    assert!(inside < 0.5, "centre scores {inside}");
    assert!(
        s_far > 0.7,
        "a point far outside the training range scores {s_far}"
    );
    assert!(forest.score(&edge) < s_far, "further out is more anomalous");
}

#[test]
fn same_seed_same_forest_different_seed_different_forest() {
    let points = cloud(500, 2);
    let a = Forest::fit(&points, ForestParams::default()).unwrap();
    let b = Forest::fit(&points, ForestParams::default()).unwrap();
    assert_eq!(a, b);
    let c = Forest::fit(
        &points,
        ForestParams {
            seed: 99,
            ..ForestParams::default()
        },
    )
    .unwrap();
    assert_ne!(a, c);
}

#[test]
fn survives_a_json_round_trip_and_checks_what_it_loads() {
    let forest = Forest::fit(
        &cloud(300, 3),
        ForestParams {
            trees: 10,
            ..ForestParams::default()
        },
    )
    .unwrap();
    let text = serde_json::to_string(&forest).unwrap();
    let back: Forest = serde_json::from_str(&text).unwrap();
    back.check().expect("a forest we wrote is valid");
    assert_eq!(back.score(&[0.3; DIM]), forest.score(&[0.3; DIM]));
    // A tampered split pointing backwards is refused rather than looped on.
    let bad = text.replacen("\"left\":1", "\"left\":0", 1);
    let bad: Forest = serde_json::from_str(&bad).unwrap();
    assert!(bad.check().is_err());
}

#[test]
fn too_few_points_grow_nothing() {
    assert!(Forest::fit(&[], ForestParams::default()).is_none());
    assert!(Forest::fit(&cloud(1, 4), ForestParams::default()).is_none());
    // Identical points: every tree is a single leaf; scoring still works.
    let same = vec![[0.2; DIM]; 50];
    let f = Forest::fit(
        &same,
        ForestParams {
            trees: 5,
            ..ForestParams::default()
        },
    )
    .unwrap();
    assert!(f.score(&[0.2; DIM]).is_finite());
}
