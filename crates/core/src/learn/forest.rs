//! The isolation forest (Liu, Ting & Zhou, 2008): random axis-aligned cuts isolate unusual points
//! in fewer steps than ordinary ones; the score `2^(-E[h(x)] / c(ψ))` is near 1 for points isolated
//! at once and near 0.5 or below for points deep inside the population.
//!
//! Written here rather than taken from a crate because replays must be deterministic: the forest
//! is grown from an explicit seed (`extended-isolation-forest` draws from the thread RNG and fixes
//! the dimension at compile time). It is plain data: serde saves and loads it whole.
//!
//! This module knows nothing of clients or minutes: points in, scores out.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::features::{DIM, Features};

/// A node in a tree's flat array. A split's children sit at `left` and `left + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    /// Feature index, or `LEAF`.
    feature: u8,
    /// Split threshold (go left when `x[feature] < value`), or a leaf's point count.
    value: f64,
    left: u32,
    /// Range of the split feature among the node's training points.
    lo: f64,
    hi: f64,
}

impl Node {
    fn leaf(points: usize) -> Node {
        Node {
            feature: LEAF,
            value: points as f64,
            left: 0,
            lo: 0.0,
            hi: 0.0,
        }
    }
}

const LEAF: u8 = u8::MAX;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tree {
    nodes: Vec<Node>,
    /// Spread of each feature over the tree's whole sample: the yardstick for how far outside a
    /// node's range a point lies (see `path_length`).
    spread: [f64; DIM],
}

/// How to grow a forest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: usize,
    /// ψ: points drawn (without replacement) for each tree.
    pub sample_size: usize,
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: 200,
            sample_size: 256,
            seed: 0x5109_1CE0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    trees: Vec<Tree>,
    /// c(ψ) for the sample size actually used: the average path length normalising scores.
    norm: f64,
    pub params: ForestParams,
    /// Points it was grown from.
    pub trained_on: usize,
}

/// Average path length of an unsuccessful search in a binary search tree of `n` points.
fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl Forest {
    /// Grows a forest; `None` with fewer than two points (nothing to isolate from).
    pub fn fit(points: &[Features], params: ForestParams) -> Option<Forest> {
        if points.len() < 2 || params.trees == 0 {
            return None;
        }
        let psi = params.sample_size.clamp(2, points.len());
        let height_limit = (psi as f64).log2().ceil() as usize;
        let mut rng = StdRng::seed_from_u64(params.seed);
        let mut indexes: Vec<u32> = (0..points.len() as u32).collect();
        let trees = (0..params.trees)
            .map(|_| {
                // Partial Fisher–Yates: the first ψ indexes become a uniform sample.
                for i in 0..psi {
                    let j = rng.random_range(i..indexes.len());
                    indexes.swap(i, j);
                }
                let mut sample = indexes[..psi].to_vec();
                let mut spread = [0.0; DIM];
                for (f, w) in spread.iter_mut().enumerate() {
                    let (lo, hi) =
                        sample
                            .iter()
                            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
                                let v = points[i as usize][f];
                                (lo.min(v), hi.max(v))
                            });
                    *w = hi - lo;
                }
                let mut tree = Tree {
                    nodes: vec![Node::leaf(0)],
                    spread,
                };
                grow(&mut tree, 0, &mut sample, points, 0, height_limit, &mut rng);
                tree
            })
            .collect();
        Some(Forest {
            trees,
            norm: c(psi),
            params,
            trained_on: points.len(),
        })
    }

    /// Checks a forest that came from outside (a saved model): every split names a real feature
    /// and points forward to children that exist, so scoring cannot index out of range or loop.
    // `!(x > 0.0)` on purpose: NaN must fail the check too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn check(&self) -> Result<(), String> {
        if self.trees.is_empty() || !(self.norm > 0.0) {
            return Err("forest has no trees or a bad normaliser".into());
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(format!("tree {t} is empty"));
            }
            for (i, node) in tree.nodes.iter().enumerate() {
                let bad_split = node.feature != LEAF
                    && (node.feature as usize >= DIM
                        || node.left as usize <= i
                        || node.left as usize + 1 >= tree.nodes.len());
                if bad_split {
                    return Err(format!("tree {t} node {i} is not a valid split"));
                }
            }
        }
        Ok(())
    }

    /// Anomaly score in (0, 1]: ≈1 clearly anomalous, ≤0.5 ordinary.
    pub fn score(&self, x: &Features) -> f64 {
        let total: f64 = self.trees.iter().map(|t| path_length(t, x)).sum();
        let mean = total / self.trees.len() as f64;
        2f64.powf(-mean / self.norm)
    }
}

fn grow(
    tree: &mut Tree,
    at: usize,
    sample: &mut [u32],
    points: &[Features],
    depth: usize,
    height_limit: usize,
    rng: &mut StdRng,
) {
    let leaf = |tree: &mut Tree, n: usize| tree.nodes[at] = Node::leaf(n);
    if depth >= height_limit || sample.len() <= 1 {
        return leaf(tree, sample.len());
    }
    // Features that still vary within this node; a cut is drawn on one of them.
    let mut ranges: [(f64, f64); DIM] = [(f64::INFINITY, f64::NEG_INFINITY); DIM];
    for &i in sample.iter() {
        for (f, r) in ranges.iter_mut().enumerate() {
            let v = points[i as usize][f];
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
    let varying: Vec<usize> = (0..DIM).filter(|&f| ranges[f].1 > ranges[f].0).collect();
    if varying.is_empty() {
        return leaf(tree, sample.len());
    }
    let feature = varying[rng.random_range(0..varying.len())];
    let (lo, hi) = ranges[feature];
    let threshold = rng.random_range(lo..hi);
    // Partition in place: values below the threshold first.
    let mut split = 0;
    for i in 0..sample.len() {
        if points[sample[i] as usize][feature] < threshold {
            sample.swap(i, split);
            split += 1;
        }
    }
    let left = tree.nodes.len();
    tree.nodes.push(Node::leaf(0));
    tree.nodes.push(Node::leaf(0));
    tree.nodes[at] = Node {
        feature: feature as u8,
        value: threshold,
        left: left as u32,
        lo,
        hi,
    };
    let (below, above) = sample.split_at_mut(split);
    grow(tree, left, below, points, depth + 1, height_limit, rng);
    grow(tree, left + 1, above, points, depth + 1, height_limit, rng);
}

/// Expected path length of `x` in one tree.
///
/// Plain isolation forests do not extrapolate: a point far beyond the training range follows the
/// most extreme training points into their leaf and scores like them, so a client ten times busier
/// than anyone seen looks no stranger than the busiest one seen. Here, at a node whose split
/// feature has range `[lo, hi]` and `x` lies a distance `d` outside it, `x` is taken as isolated
/// there with probability `d / (w + d)`, `w` being the feature's spread over the tree's whole
/// sample (a cut drawn uniformly over that spread widened to include `x` would fall between `x`
/// and the node's points with about that probability); the path is the expectation over that.
/// Measuring against the whole spread, not the node's own (narrow, deep down) range, keeps tiny
/// excursions of ordinary points from counting as isolation. Inside the range it is the classic
/// path length.
fn path_length(tree: &Tree, x: &Features) -> f64 {
    let mut at = 0usize;
    let mut depth = 0.0;
    let mut still_here = 1.0; // probability x has not been isolated yet
    let mut expected = 0.0;
    loop {
        let node = tree.nodes[at];
        if node.feature == LEAF {
            return expected + still_here * (depth + c(node.value as usize));
        }
        let v = x[node.feature as usize];
        let outside = (node.lo - v).max(v - node.hi).max(0.0);
        if outside > 0.0 {
            let p = outside / (tree.spread[node.feature as usize] + outside);
            expected += still_here * p * (depth + 1.0);
            still_here *= 1.0 - p;
        }
        // NaN (never produced by `features`, but a loaded sample could hold one) goes right.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let right = !(v < node.value);
        at = node.left as usize + usize::from(right);
        depth += 1.0;
    }
}

#[cfg(test)]
#[path = "forest_tests.rs"]
mod tests;
