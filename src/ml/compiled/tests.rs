//! Every layout against `Model::raw_row`, bit for bit, and which layout a model gets.

use super::*;
use crate::ml::config::{Kind, ModelConfig};
use crate::ml::learner::LearnerParams;
use linfa::traits::Fit;
use linfa::Dataset;
use ndarray::{Array1, Array2};

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

fn run(c: &CompiledModel, x: &Array2<f64>) -> Vec<f64> {
    let mut out = vec![0.0; x.nrows() * c.n_outputs()];
    let flat: Vec<f64> = x.iter().copied().collect();
    c.predict(&flat, x.ncols(), &mut out);
    out
}

fn compiled(model: &Model, x: &Array2<f64>) -> Vec<f64> {
    run(&CompiledModel::new(model), x)
}

fn name(c: &Compiled) -> &'static str {
    match c {
        Compiled::Masks(_) => "masks",
        Compiled::Complete(_) => "complete",
        Compiled::Ranked(_) => "ranked",
        Compiled::Trees { .. } => "thresholds",
        Compiled::Linear { .. } => "linear",
        Compiled::Sum(..) => "sum",
    }
}

/// The layouts that take a tree model, fastest (the one chosen) first.
fn every_layout(model: &Model) -> Vec<CompiledModel> {
    let Model::Trees { base, trees } = model else {
        return vec![CompiledModel::new(model)];
    };
    layouts(base, trees).map(CompiledModel).collect()
}

/// Every layout that takes `model` gives what `Model::raw_row` gives, bit for bit, on all
/// the rows of `x` at once and on its first row alone; returns the layouts' names.
fn same_bits_in_every_layout(model: &Model, x: &Array2<f64>, what: &str) -> Vec<&'static str> {
    let want = raw(model, x);
    let one = x.slice(ndarray::s![..1, ..]).to_owned();
    let want_one = raw(model, &one);
    let all = every_layout(model);
    assert_eq!(
        name(&all[0].0),
        name(&CompiledModel::new(model).0),
        "{what}: first chosen"
    );
    for c in &all {
        assert_eq!(run(c, x), want, "{what}: {}", name(&c.0));
        assert_eq!(run(c, &one), want_one, "{what}: {}, one row", name(&c.0));
    }
    all.iter().map(|c| name(&c.0)).collect()
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
        let r = LearnerParams::new(cfg.clone())
            .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
            .expect("fits");
        let names = same_bits_in_every_layout(&r.model, &x, &format!("{kind:?}"));
        assert!(names.len() >= 2, "{kind:?}: by ranks too: {names:?}");
        let m = LearnerParams::new(cfg)
            .fit(&Dataset::new(x.clone(), Array1::from(c.clone())))
            .expect("fits");
        assert!(m.model.n_outputs() > 1, "{kind:?}: three classes");
        same_bits_in_every_layout(&m.model, &x, &format!("{kind:?}, classes"));
    }
}

#[test]
fn missing_values_go_right_as_in_training_code() {
    let (x, y, _) = data(300);
    let mut nan = Array2::from_elem((3, 4), f64::NAN);
    nan[[1, 0]] = 1e300;
    nan[[2, 1]] = f64::NEG_INFINITY;
    // A depth-8 tree of over 64 leaves is walked; depth-3 boosted trees are masks: every layout
    // gets the NaN rows.
    for (kind, depth, first) in [(Kind::Tree, 8, "complete"), (Kind::Boosted, 3, "masks")] {
        let cfg = ModelConfig {
            kind,
            max_depth: Some(depth),
            min_samples_leaf: Some(1),
            n_rounds: 5,
            n_iter_no_change: 0,
            ..ModelConfig::default()
        };
        let r = LearnerParams::new(cfg)
            .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
            .expect("fits");
        let names = same_bits_in_every_layout(&r.model, &nan, "NaN");
        assert_eq!(names[0], first, "{kind:?}: {names:?}");
        assert!(names.ends_with(&["ranked", "thresholds"]), "{names:?}");
    }
}

#[test]
fn boosted_trees_are_masks_deep_ones_ranked_with_the_same_bits() {
    let (x, y, c) = data(700);
    // A deeper function of the columns: a tree of depth 12 has many leaves.
    let deep = Array2::from_shape_fn((1000, 4), |(i, j)| ((i * (j + 5) * 7919) % 1009) as f64);
    let deep_y: Vec<f64> = deep
        .rows()
        .into_iter()
        .map(|r| (r[0] * r[1]).sin() + r[2])
        .collect();
    let deep_c: Vec<usize> = deep
        .rows()
        .into_iter()
        .map(|r| (r[0] * 7.0 + r[1]) as usize % 3)
        .collect();
    for (kind, depth, chosen) in [(Kind::Boosted, 3, "masks"), (Kind::Tree, 12, "ranked")] {
        let (x, y, c) = match kind {
            Kind::Tree => (&deep, &deep_y, &deep_c),
            _ => (&x, &y, &c),
        };
        let cfg = ModelConfig {
            kind,
            max_depth: Some(depth),
            min_samples_leaf: Some(1),
            n_rounds: 12,
            // Every round kept: early stopping could keep none, and no tree is deep then.
            n_iter_no_change: 0,
            ..ModelConfig::default()
        };
        let r = LearnerParams::new(cfg.clone())
            .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
            .expect("fits");
        let m = LearnerParams::new(cfg)
            .fit(&Dataset::new(x.clone(), Array1::from(c.clone())))
            .expect("fits");
        let names = same_bits_in_every_layout(&r.model, x, &format!("depth {depth}"));
        assert_eq!(names[0], chosen, "depth {depth}: {names:?}");
        // Deep but of few leaves (22), the classes' tree may take either: same bits anyway.
        same_bits_in_every_layout(&m.model, x, &format!("depth {depth}, classes"));
    }
}

/// A chain of `leaves - 1` splits, each on feature `i % features` at threshold `i`, its
/// left child a leaf of value `i` (a tree as lopsided as can be: `leaves` leaves).
fn chain(leaves: usize, features: u32) -> Tree {
    let mut nodes = Vec::new();
    for i in 0..leaves - 1 {
        let at = nodes.len() as u32;
        nodes.push(Node {
            feature: i as u32 % features,
            threshold: i as f64,
            left: at + 1,
            right: at + 2,
        });
        nodes.push(Node {
            feature: LEAF,
            threshold: 0.0,
            left: i as u32,
            right: 0,
        });
    }
    nodes.push(Node {
        feature: LEAF,
        threshold: 0.0,
        left: leaves as u32 - 1,
        right: 0,
    });
    Tree {
        n_outputs: 1,
        nodes,
        values: (0..leaves).map(|v| v as f64 * 0.37).collect(),
    }
}

#[test]
fn masks_are_as_wide_as_the_largest_tree_up_to_64_leaves() {
    // Rows that reach every leaf: x = (i, i, i) - 0.5 ... and one above every threshold.
    let x = Array2::from_shape_fn((80, 3), |(i, f)| i as f64 - 0.5 + f as f64 * 0.25);
    for leaves in [2, 16, 17, 32, 33, 64, 65] {
        let model = Model::Trees {
            base: vec![0.25],
            trees: vec![chain(leaves, 3), chain(5, 3), chain(leaves.min(16), 2)],
        };
        let names = same_bits_in_every_layout(&model, &x, &format!("{leaves} leaves"));
        assert_eq!(
            names[0] == "masks",
            leaves <= 64,
            "{leaves} leaves: {names:?}"
        );
        if let Compiled::Masks(m) = &CompiledModel::new(&model).0 {
            let width = match m.tables_width() {
                w if leaves <= 16 => (w, 16),
                w if leaves <= 32 => (w, 32),
                w => (w, 64),
            };
            assert_eq!(width.0, width.1, "{leaves} leaves");
        }
    }
}

#[test]
fn trees_on_many_features_are_walked() {
    // 40 features: ANDing a mask of every tree for each costs more than walking them.
    let x = Array2::from_shape_fn((300, 40), |(i, j)| ((i * (j + 3) * 7919) % 101) as f64);
    let y: Vec<f64> = x
        .rows()
        .into_iter()
        .map(|r| r.iter().sum::<f64>())
        .collect();
    let cfg = ModelConfig {
        kind: Kind::Boosted,
        n_rounds: 40,
        min_samples_leaf: Some(1),
        ..ModelConfig::default()
    };
    let r = LearnerParams::new(cfg)
        .fit(&Dataset::new(x.clone(), Array1::from(y)))
        .expect("fits");
    let names = same_bits_in_every_layout(&r.model, &x, "40 features");
    assert_eq!(names, ["complete", "ranked", "thresholds"]);
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
    let names = same_bits_in_every_layout(&at_most, &x, "255 thresholds");
    assert_eq!(names, ["masks", "complete", "ranked", "thresholds"]);
    let beyond = stumps((0..256).map(f64::from));
    let names = same_bits_in_every_layout(&beyond, &x, "256 thresholds");
    assert_eq!(names, ["ranked", "thresholds"]);
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
    let (x, _, _) = data(20);
    let names = same_bits_in_every_layout(&model, &x, "NaN threshold");
    assert_eq!(names, ["thresholds"]);
}

/// A regression and a classification model of `cfg` on `n` rows of [`data`], and those rows.
fn fit_both(cfg: ModelConfig, n: usize) -> (Array2<f64>, [Model; 2]) {
    let (x, y, c) = data(n);
    let r = LearnerParams::new(cfg.clone())
        .fit(&Dataset::new(x.clone(), Array1::from(y)))
        .expect("fits");
    let m = LearnerParams::new(cfg)
        .fit(&Dataset::new(x.clone(), Array1::from(c)))
        .expect("fits");
    (x, [r.model, m.model])
}

/// The compiled model's raw outputs on `x` equal the model's, up to rounding.
fn assert_close(model: &Model, x: &Array2<f64>) {
    let (a, b) = (compiled(model, x), raw(model, x));
    assert_eq!(a.len(), b.len());
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-9 * (1.0 + q.abs()), "{p} vs {q}");
    }
}

#[test]
fn a_linear_model_is_a_matrix_product() {
    let cfg = ModelConfig {
        kind: Kind::Linear,
        ..ModelConfig::default()
    };
    let (x, models) = fit_both(cfg, 200);
    for model in &models {
        assert_close(model, &x);
    }
}

#[test]
fn a_hybrid_model_is_its_line_plus_its_trees() {
    let cfg = ModelConfig {
        kind: Kind::Hybrid,
        n_rounds: 30,
        ..ModelConfig::default()
    };
    let (x, models) = fit_both(cfg, 300);
    for model in &models {
        assert!(
            matches!(model, Model::Hybrid { trees, .. } if !trees.is_empty()),
            "not a hybrid with trees"
        );
        assert!(matches!(CompiledModel::new(model).0, Compiled::Sum(..)));
        // Inputs beyond the training range too: the compiled line clamps them as well.
        let mut wide = x.clone();
        wide.row_mut(0).fill(1e6);
        wide.row_mut(1).fill(-1e6);
        assert_close(model, &wide);
    }
}

/// A model may have no trees at all (boosting stopped before its first round, a hybrid whose
/// line left nothing to fit): every layout then gives the base, or the line, alone.
#[test]
fn models_without_trees_predict_their_base_or_their_line() {
    let (x, _, _) = data(50);
    for k in [1, 3] {
        let empty = Model::Trees {
            base: (0..k).map(|j| j as f64 + 0.5).collect(),
            trees: Vec::new(),
        };
        let names = same_bits_in_every_layout(&empty, &x, "no trees");
        assert!(!names.is_empty());
    }
    let cfg = ModelConfig {
        kind: Kind::Hybrid,
        n_rounds: 30,
        ..ModelConfig::default()
    };
    let (x, models) = fit_both(cfg, 300);
    for model in models {
        let Model::Hybrid { linear, .. } = model else {
            panic!("not a hybrid");
        };
        let line = Model::Hybrid {
            linear,
            trees: Vec::new(),
        };
        assert_close(&line, &x);
    }
}
