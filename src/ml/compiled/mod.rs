//! Trained models compiled for serving: evaluated over blocks of rows, with no allocation per
//! row. Built from the trained [`Model`] when a model goes into service; training never sees it.
//!
//! Each feature's split thresholds are collected and sorted once, a row's values are replaced
//! once by their ranks among them, and every split then compares two small integers: `x ≤ t_k`
//! exactly when fewer than `k + 1` thresholds lie below `x`. Trees of depth at most 8 are laid
//! out as complete binary trees of 2-byte nodes ([`complete`]: a thousand depth-4 trees take
//! 30 KB); deeper ones as breadth-first arrays of 8-byte nodes ([`ranked`]). Either way eight
//! rows are walked side by side through a tree — or, for a row left over, eight trees — so that
//! their steps do not wait on each other, rows are taken in blocks and each tree is walked for
//! every row of the block before the next tree, and each row's outputs are summed in tree
//! order: the result is bit for bit what [`Model::raw_row`] gives. (A model no rank can
//! express — more than 65,534 thresholds on one feature, a NaN threshold — keeps 16-byte nodes
//! holding the threshold itself.)
//!
//! Linear models become one matrix product: the standardization is folded into the weights,
//! which changes the last bits of a prediction, not its value.

use ndarray::{Array2, ArrayView2};

use super::learner::Model;
use super::tree::{Node, Tree};

mod complete;
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
    /// Depth at most 8, few thresholds per feature: the fastest layout.
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
        /// `n_features × n_outputs`: the weights divided by the feature scales.
        weights: Array2<f64>,
        /// The bias with the feature means folded in.
        bias: Vec<f64>,
    },
}

impl CompiledModel {
    pub fn new(model: &Model) -> CompiledModel {
        CompiledModel(match model {
            Model::Trees { base, trees } => {
                let mut nodes = Vec::new();
                let mut values = Vec::new();
                let mut roots = Vec::with_capacity(trees.len());
                let mut depths = Vec::with_capacity(trees.len());
                for t in trees {
                    roots.push(nodes.len() as u32);
                    depths.push(flatten(t, &mut nodes, &mut values));
                }
                if let Some(c) = complete::Complete::new(base, trees) {
                    return CompiledModel(Compiled::Complete(c));
                }
                match ranked::Ranked::new(base, &nodes, &roots, &depths, &values) {
                    Some(r) => Compiled::Ranked(r),
                    None => Compiled::Trees {
                        base: base.clone(),
                        n_outputs: base.len(),
                        nodes,
                        roots,
                        values,
                    },
                }
            }
            Model::Linear(l) => {
                let p = l.mean.len();
                let k = l.bias.len();
                let mut weights = Array2::zeros((p, k));
                let mut bias = l.bias.clone();
                for (j, w) in l.weights.iter().enumerate() {
                    for f in 0..p {
                        let wf = w[f] / l.scale[f];
                        weights[[f, j]] = wf;
                        bias[j] -= wf * l.mean[f];
                    }
                }
                Compiled::Linear { weights, bias }
            }
        })
    }

    pub fn n_outputs(&self) -> usize {
        match &self.0 {
            Compiled::Complete(c) => c.n_outputs(),
            Compiled::Ranked(r) => r.n_outputs(),
            Compiled::Trees { n_outputs, .. } => *n_outputs,
            Compiled::Linear { bias, .. } => bias.len(),
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
            Compiled::Linear { weights, bias } => {
                let k = bias.len();
                for o in out.chunks_exact_mut(k) {
                    o.copy_from_slice(bias);
                }
                let (Ok(xs), Ok(mut ys)) = (
                    ArrayView2::from_shape((n, n_features), x),
                    ndarray::ArrayViewMut2::from_shape((n, k), out),
                ) else {
                    return;
                };
                ndarray::linalg::general_mat_mul(1.0, &xs, weights, 1.0, &mut ys);
            }
        }
    }
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
mod tests {
    use super::*;
    use crate::ml::config::{Kind, ModelConfig};
    use crate::ml::learner::LearnerParams;
    use linfa::traits::Fit;
    use linfa::Dataset;
    use ndarray::Array1;

    fn data(n: usize) -> (Array2<f64>, Vec<f64>, Vec<usize>) {
        // 1,009 distinct values a column: trees can grow as deep as they are allowed to.
        let x = Array2::from_shape_fn((n, 4), |(i, j)| ((i * (j + 5) * 7919) % 1009) as f64 / 70.0);
        let y = x
            .rows()
            .into_iter()
            .map(|r| r[0] * 2.0 - r[1] + if r[2] > 7.0 { 5.0 } else { 0.0 })
            .collect();
        let c = x
            .rows()
            .into_iter()
            // Far from a few axis-aligned cuts, so that trees grow as deep as they are allowed to.
            .map(|r| (r[0] * 7.0 + r[1] * 3.0 + r[3]) as usize % 3)
            .collect();
        (x, y, c)
    }

    fn raw(model: &Model, x: &Array2<f64>) -> Vec<f64> {
        let k = model.n_outputs();
        let mut out = vec![0.0; x.nrows() * k];
        for (i, row) in x.rows().into_iter().enumerate() {
            let row: Vec<f64> = row.to_vec();
            model.raw_row(&row, &mut out[i * k..(i + 1) * k]);
        }
        out
    }

    fn compiled(model: &Model, x: &Array2<f64>) -> Vec<f64> {
        let c = CompiledModel::new(model);
        let mut out = vec![0.0; x.nrows() * c.n_outputs()];
        let flat: Vec<f64> = x.iter().copied().collect();
        c.predict(&flat, x.ncols(), &mut out);
        out
    }

    #[test]
    fn compiled_trees_give_the_same_bits() {
        // More rows than a block, so that blocks and the last partial block are both walked.
        let (x, y, c) = data(700);
        for kind in [Kind::Tree, Kind::Forest, Kind::Boosted] {
            let cfg = ModelConfig {
                kind,
                n_trees: 7,
                n_rounds: 30,
                ..ModelConfig::default()
            };
            let r = LearnerParams(cfg.clone())
                .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
                .expect("fits");
            assert!(
                matches!(
                    CompiledModel::new(&r.model).0,
                    Compiled::Complete(_) | Compiled::Ranked(_)
                ),
                "{kind:?}: by ranks"
            );
            assert_eq!(compiled(&r.model, &x), raw(&r.model, &x), "{kind:?}");
            let m = LearnerParams(cfg)
                .fit(&Dataset::new(x.clone(), Array1::from(c.clone())))
                .expect("fits");
            assert!(m.model.n_outputs() > 1, "{kind:?}: three classes");
            assert_eq!(compiled(&m.model, &x), raw(&m.model, &x), "{kind:?}");
        }
    }

    #[test]
    fn missing_values_go_right_as_in_training_code() {
        let (x, y, _) = data(300);
        let cfg = ModelConfig {
            kind: Kind::Tree,
            ..ModelConfig::default()
        };
        let r = LearnerParams(cfg)
            .fit(&Dataset::new(x, Array1::from(y)))
            .expect("fits");
        let nan = Array2::from_elem((3, 4), f64::NAN);
        assert_eq!(compiled(&r.model, &nan), raw(&r.model, &nan));
    }

    #[test]
    fn shallow_trees_are_complete_and_deep_ones_ranked_with_the_same_bits() {
        let (x, y, c) = data(700);
        for (depth, complete) in [(3, true), (8, true), (12, false)] {
            let cfg = ModelConfig {
                kind: Kind::Boosted,
                max_depth: Some(depth),
                min_samples_leaf: Some(1),
                n_rounds: 12,
                // Every round kept: early stopping could keep none, and no tree is deep then.
                n_iter_no_change: 0,
                ..ModelConfig::default()
            };
            let r = LearnerParams(cfg.clone())
                .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
                .expect("fits");
            let m = LearnerParams(cfg)
                .fit(&Dataset::new(x.clone(), Array1::from(c.clone())))
                .expect("fits");
            for model in [&r.model, &m.model] {
                let layout = CompiledModel::new(model).0;
                assert_eq!(
                    matches!(layout, Compiled::Complete(_)),
                    complete,
                    "depth {depth}"
                );
                if !complete {
                    assert!(matches!(layout, Compiled::Ranked(_)), "depth {depth}");
                }
                assert_eq!(compiled(model, &x), raw(model, &x), "depth {depth}");
                // One row at a time: the trees side by side.
                let one = x.slice(ndarray::s![..1, ..]).to_owned();
                assert_eq!(compiled(model, &one), raw(model, &one), "depth {depth}");
            }
        }
    }

    /// Stumps on feature 0 at the thresholds given, leaf values -1 (left) and `t` (right).
    fn stumps(thresholds: impl Iterator<Item = f64>) -> Model {
        let leaf = |at: u32| Node {
            feature: u32::MAX,
            threshold: 0.0,
            left: at,
            right: 0,
        };
        let trees = thresholds
            .map(|t| Tree {
                n_outputs: 1,
                nodes: vec![
                    Node {
                        feature: 0,
                        threshold: t,
                        left: 1,
                        right: 2,
                    },
                    leaf(0),
                    leaf(1),
                ],
                values: vec![-1.0, t],
            })
            .collect();
        Model::Trees {
            base: vec![0.0],
            trees,
        }
    }

    #[test]
    fn byte_ranks_hold_255_thresholds_and_values_above_them_all() {
        let x = Array2::from_shape_vec((5, 1), vec![-1.0, 0.0, 100.5, 254.0, 1e9]).expect("x");
        let at_most = stumps((0..255).map(f64::from));
        assert!(matches!(
            CompiledModel::new(&at_most).0,
            Compiled::Complete(_)
        ));
        assert_eq!(compiled(&at_most, &x), raw(&at_most, &x));
        let beyond = stumps((0..256).map(f64::from));
        assert!(matches!(CompiledModel::new(&beyond).0, Compiled::Ranked(_)));
        assert_eq!(compiled(&beyond, &x), raw(&beyond, &x));
    }

    #[test]
    fn a_tree_no_rank_can_express_keeps_its_thresholds() {
        use crate::ml::tree::Node;
        let leaf = |at: u32| Node {
            feature: u32::MAX,
            threshold: 0.0,
            left: at,
            right: 0,
        };
        let tree = Tree {
            n_outputs: 1,
            nodes: vec![
                Node {
                    feature: 1,
                    threshold: f64::NAN,
                    left: 1,
                    right: 2,
                },
                leaf(0),
                leaf(1),
            ],
            values: vec![-1.0, 1.0],
        };
        let model = Model::Trees {
            base: vec![0.5],
            trees: vec![tree],
        };
        assert!(matches!(
            CompiledModel::new(&model).0,
            Compiled::Trees { .. }
        ));
        let (x, _, _) = data(20);
        assert_eq!(compiled(&model, &x), raw(&model, &x));
    }

    #[test]
    fn a_linear_model_is_a_matrix_product() {
        let (x, y, c) = data(200);
        let cfg = ModelConfig {
            kind: Kind::Linear,
            ..ModelConfig::default()
        };
        let r = LearnerParams(cfg.clone())
            .fit(&Dataset::new(x.clone(), Array1::from(y)))
            .expect("fits");
        let m = LearnerParams(cfg)
            .fit(&Dataset::new(x.clone(), Array1::from(c)))
            .expect("fits");
        for model in [&r.model, &m.model] {
            let (a, b) = (compiled(model, &x), raw(model, &x));
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() <= 1e-9 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}
