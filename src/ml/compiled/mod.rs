//! Trained models compiled for serving: evaluated over blocks of rows, with no allocation per
//! row. Built from the trained [`Model`] when a model goes into service; training never sees it.
//!
//! Each feature's split thresholds are collected and sorted once, a row's values are replaced
//! once by their ranks among them, and every split then compares two small integers: `x ≤ t_k`
//! exactly when fewer than `k + 1` thresholds lie below `x`. Trees of at most 64 leaves on few
//! features (boosting's) are not walked at all: each feature's rank picks, from a table, the
//! leaves its tests leave standing in every tree, and a tree's leaf is the lowest bit of the AND
//! of those ([`masks`]: twice as fast as the walk for a few hundred depth-4 trees on 15
//! features). Other trees of depth at most 8 are laid out as complete binary trees of 2-byte
//! nodes ([`complete`]: a thousand depth-4 trees take 30 KB); deeper ones as breadth-first
//! arrays of 8-byte nodes ([`ranked`]). Walked trees are walked eight
//! rows are walked side by side through a tree — or, for a row left over, eight trees — so that
//! their steps do not wait on each other, rows are taken in blocks and each tree is walked for
//! every row of the block before the next tree, and each row's outputs are summed in tree
//! order: the result is bit for bit what [`Model::raw_row`] gives. (A model no rank can
//! express — more than 65,534 thresholds on one feature, a NaN threshold — keeps 16-byte nodes
//! holding the threshold itself.)
//!
//! Linear models become one matrix product over the clamped (and, per column, logged) inputs:
//! the standardization is folded into the weights, which changes the last bits of a prediction,
//! not its value. A hybrid model is its linear part plus its trees, each compiled as above.

use super::learner::Model;
use super::linear::Linear;
use super::tree::{Node, Tree};

mod complete;
mod masks;
mod ranked;

/// Rows walked through one tree before the next tree.
const BLOCK_ROWS: usize = 256;
/// Rows walked side by side through a tree.
const LANES: usize = 8;

/// Marks a leaf in [`FlatNode::feature`] (as in `Tree`'s nodes).
const LEAF: u32 = u32::MAX;

/// A split (`x[feature] <= threshold` goes to `next`, otherwise to `next + 1`), or a leaf whose
/// outputs start at `values[next]` (one output: the value is also in `threshold`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct FlatNode {
    threshold: f64,
    feature: u32,
    next: u32,
}

/// A model ready to predict blocks of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledModel(Compiled);

#[derive(Debug, Clone, PartialEq)]
enum Compiled {
    /// At most 64 leaves a tree, few thresholds per feature: the fastest layout.
    Masks(masks::Masks),
    /// Depth at most 8, few thresholds per feature.
    Complete(complete::Complete),
    Ranked(ranked::Ranked),
    Trees {
        base: Vec<f64>,
        n_outputs: usize,
        nodes: Vec<FlatNode>,
        /// Index of each tree's root in `nodes`.
        roots: Vec<u32>,
        values: Vec<f64>,
    },
    Linear {
        /// `n_outputs × n_features`, one output's weights after another: the weights divided
        /// by the feature scales.
        weights: Vec<f64>,
        /// The bias with the feature means folded in.
        bias: Vec<f64>,
        /// The input transform (ranges and log columns; the weights unused).
        input: Linear,
    },
    /// A hybrid model: the linear part's outputs plus the trees'.
    Sum(Box<CompiledModel>, Box<CompiledModel>),
}

impl CompiledModel {
    pub fn new(model: &Model) -> CompiledModel {
        CompiledModel(match model {
            Model::Trees { base, trees } => match layouts(base, trees).next() {
                Some(c) => c,
                None => flat_layouts(base, trees).1,
            },
            Model::Hybrid { linear, trees } => Compiled::Sum(
                Box::new(CompiledModel::new(&Model::Linear(linear.clone()))),
                Box::new(CompiledModel::new(&Model::Trees {
                    base: vec![0.0; linear.n_outputs()],
                    trees: trees.clone(),
                })),
            ),
            Model::Linear(l) => {
                let p = l.mean.len();
                let k = l.bias.len();
                let mut weights = vec![0.0; p * k];
                let mut bias = l.bias.clone();
                for (j, w) in l.weights.iter().enumerate() {
                    for f in 0..p {
                        let wf = w[f] / l.scale[f];
                        weights[j * p + f] = wf;
                        bias[j] -= wf * l.mean[f];
                    }
                }
                let input = Linear {
                    weights: Vec::new(),
                    bias: Vec::new(),
                    ..l.clone()
                };
                Compiled::Linear {
                    weights,
                    bias,
                    input,
                }
            }
        })
    }

    pub fn n_outputs(&self) -> usize {
        match &self.0 {
            Compiled::Masks(m) => m.n_outputs(),
            Compiled::Complete(c) => c.n_outputs(),
            Compiled::Ranked(r) => r.n_outputs(),
            Compiled::Trees { n_outputs, .. } => *n_outputs,
            Compiled::Linear { bias, .. } => bias.len(),
            Compiled::Sum(a, _) => a.n_outputs(),
        }
    }

    /// Raw outputs of `n` rows of `x` (row-major, `n × n_features`) into `out` (`n ×
    /// n_outputs`, row-major).
    pub fn predict(&self, x: &[f64], n_features: usize, out: &mut [f64]) {
        let n = x
            .len()
            .checked_div(n_features)
            .unwrap_or(out.len() / self.n_outputs().max(1));
        match &self.0 {
            Compiled::Masks(m) => m.predict(x, n_features, n, out),
            Compiled::Complete(c) => c.predict(x, n_features, n, out),
            Compiled::Ranked(r) => r.predict(x, n_features, n, out),
            Compiled::Trees {
                base,
                n_outputs,
                nodes,
                roots,
                values,
            } => {
                let k = *n_outputs;
                for o in out.chunks_exact_mut(k).take(n) {
                    o.copy_from_slice(base);
                }
                for start in (0..n).step_by(BLOCK_ROWS) {
                    let end = (start + BLOCK_ROWS).min(n);
                    for &root in roots {
                        for r in start..end {
                            let row = &x[r * n_features..(r + 1) * n_features];
                            let leaf = walk(nodes, root as usize, row);
                            if k == 1 {
                                out[r] += leaf.threshold;
                            } else {
                                let at = leaf.next as usize;
                                for (o, v) in
                                    out[r * k..(r + 1) * k].iter_mut().zip(&values[at..at + k])
                                {
                                    *o += v;
                                }
                            }
                        }
                    }
                }
            }
            Compiled::Linear {
                weights,
                bias,
                input,
            } => {
                // Row by row, a dot product per output: a row's outputs do not depend on the
                // batch it came in, and a one-row request pays for no matrix packing.
                let k = bias.len();
                let p = weights.len() / k.max(1);
                let transformed = input.lo.len().min(n_features);
                let mut t = vec![0.0; n_features];
                for (r, o) in out.chunks_exact_mut(k.max(1)).take(n).enumerate() {
                    let row = &x[r * n_features..(r + 1) * n_features];
                    for (f, (t, &v)) in t.iter_mut().zip(row).enumerate() {
                        *t = if f < transformed {
                            input.input(f, v)
                        } else {
                            v
                        };
                    }
                    for (j, (o, b)) in o.iter_mut().zip(bias).enumerate() {
                        *o = b + dot(&t, &weights[j * p..(j + 1) * p]);
                    }
                }
            }
            Compiled::Sum(linear, trees) => {
                linear.predict(x, n_features, out);
                let mut more = vec![0.0; out.len()];
                trees.predict(x, n_features, &mut more);
                for (o, m) in out.iter_mut().zip(&more) {
                    *o += m;
                }
            }
        }
    }
}

/// `a · b` over their common length, in four interleaved sums (a fixed order, so the same row
/// always gets the same output).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let m = a.len().min(b.len());
    let (a, b) = (&a[..m], &b[..m]);
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// Every layout that takes `trees`, fastest first; the last (thresholds kept) takes any.
fn layouts<'a>(base: &'a [f64], trees: &'a [Tree]) -> impl Iterator<Item = Compiled> + 'a {
    let masks = std::iter::once_with(move || masks::Masks::new(base, trees).map(Compiled::Masks));
    let complete =
        std::iter::once_with(move || complete::Complete::new(base, trees).map(Compiled::Complete));
    let flat = std::iter::once_with(move || {
        let (ranked, kept) = flat_layouts(base, trees);
        [ranked, Some(kept)]
    });
    masks
        .chain(complete)
        .flatten()
        .chain(flat.flat_map(|both| both.into_iter().flatten()))
}

/// The breadth-first layouts: by ranks when ranks can express the trees, and with their
/// thresholds kept.
fn flat_layouts(base: &[f64], trees: &[Tree]) -> (Option<Compiled>, Compiled) {
    let mut nodes = Vec::new();
    let mut values = Vec::new();
    let mut roots = Vec::with_capacity(trees.len());
    let mut depths = Vec::with_capacity(trees.len());
    for t in trees {
        roots.push(nodes.len() as u32);
        depths.push(flatten(t, &mut nodes, &mut values));
    }
    let ranked = ranked::Ranked::new(base, &nodes, &roots, &depths, &values).map(Compiled::Ranked);
    let kept = Compiled::Trees {
        base: base.to_vec(),
        n_outputs: base.len(),
        nodes,
        roots,
        values,
    };
    (ranked, kept)
}

#[inline]
fn walk(nodes: &[FlatNode], root: usize, x: &[f64]) -> FlatNode {
    let mut n = nodes[root];
    while n.feature != LEAF {
        // NaN goes right, as in `Tree::leaf_offset`: "not ≤" is not ">".
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let right = !(x[n.feature as usize] <= n.threshold);
        n = nodes[n.next as usize + right as usize];
    }
    n
}

/// Each feature's distinct split thresholds, ascending (one list per feature up to the largest
/// used); `None` when a threshold is NaN (it sends every row right, which no rank expresses).
fn thresholds<'a>(nodes: impl Iterator<Item = &'a Node>) -> Option<Vec<Vec<f64>>> {
    let mut cuts: Vec<Vec<f64>> = Vec::new();
    for n in nodes.filter(|n| n.feature != LEAF) {
        if n.threshold.is_nan() {
            return None;
        }
        let f = n.feature as usize;
        if cuts.len() <= f {
            cuts.resize(f + 1, Vec::new());
        }
        cuts[f].push(n.threshold);
    }
    for c in &mut cuts {
        c.sort_by(f64::total_cmp);
        c.dedup_by(|a, b| a == b);
    }
    Some(cuts)
}

/// Appends `t` to `nodes` (children adjacent, breadth first) and its leaf values to `values`;
/// returns its depth.
fn flatten(t: &Tree, nodes: &mut Vec<FlatNode>, values: &mut Vec<f64>) -> u32 {
    let k = t.n_outputs;
    let base = nodes.len();
    nodes.push(FlatNode {
        threshold: 0.0,
        feature: LEAF,
        next: 0,
    });
    // (index in t.nodes, index in nodes, depth) still to place.
    let mut queue = std::collections::VecDeque::from([(0usize, base, 0u32)]);
    let mut depth = 0;
    while let Some((src, dst, level)) = queue.pop_front() {
        depth = depth.max(level);
        let n = &t.nodes[src];
        if n.feature == LEAF {
            let at = n.left as usize;
            let leaf = &t.values[at..at + k];
            nodes[dst] = FlatNode {
                threshold: leaf[0],
                feature: LEAF,
                next: values.len() as u32,
            };
            values.extend_from_slice(leaf);
        } else {
            let next = nodes.len();
            let empty = FlatNode {
                threshold: 0.0,
                feature: LEAF,
                next: 0,
            };
            nodes.push(empty);
            nodes.push(empty);
            nodes[dst] = FlatNode {
                threshold: n.threshold,
                feature: n.feature,
                next: next as u32,
            };
            queue.push_back((n.left as usize, next, level + 1));
            queue.push_back((n.right as usize, next + 1, level + 1));
        }
    }
    depth
}

#[cfg(test)]
mod tests;
