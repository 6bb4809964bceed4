//! The learners of issue 14 through the public pipeline: `auto` picks the kind with the best CV
//! loss and records it, `linfa-tree` against our own tree on breast_cancer and its config error
//! on regression, determinism across runs and thread counts, and model files that claim absurd
//! sizes.

use std::path::PathBuf;

use ensemble_cluster::ml::{
    load_csv, score, Column, ColumnData, DataSpec, Kind, Labels, ModelConfig, ModelMeta, Pipeline,
    Scores, Table, Task,
};

fn path(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn breast_cancer(shard: &str) -> Table {
    let spec = DataSpec {
        label: "diagnosis".into(),
        task: Task::Classification,
        drop: vec![],
    };
    load_csv(&path(&format!("shards/breast_cancer/{shard}.csv")), &spec).unwrap()
}

/// `n` rows of `p` numeric features with values from a fixed arithmetic pattern.
fn table(n: usize, p: usize, label: impl Fn(&[f64]) -> Labels) -> Table {
    let x: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..p)
                .map(|j| ((i * (2 * j + 3) * 7919 + j * 31) % 1009) as f64 / 100.0)
                .collect()
        })
        .collect();
    Table {
        columns: (0..p)
            .map(|j| Column {
                name: format!("x{j}"),
                data: ColumnData::Numeric(x.iter().map(|r| Some(r[j])).collect()),
            })
            .collect(),
        labels: label(&x.concat()),
        label_name: "y".into(),
    }
}

fn accuracy(m: &Pipeline, t: &Table) -> f64 {
    match score(&t.labels, &m.predict_table(t).unwrap()).unwrap() {
        Scores::Classification(c) => c.accuracy,
        Scores::Regression(_) => panic!("task"),
    }
}

#[test]
fn auto_records_the_kind_with_the_best_cv_loss() {
    // Linear label plus a little deterministic wiggle: linear must win the CV.
    let p = 4;
    let t = table(300, p, |flat| {
        Labels::Regression(
            flat.chunks(p)
                .enumerate()
                .map(|(i, r)| 3.0 * r[0] - 2.0 * r[1] + r[2] + 0.01 * (i % 7) as f64)
                .collect(),
        )
    });
    let cfg = ModelConfig {
        kind: Kind::Auto,
        target: ensemble_cluster::ml::Target::Identity,
        ..Default::default()
    };
    let m = Pipeline::fit(&t, &cfg, ModelMeta::default()).unwrap();
    let meta = m.meta();
    assert_eq!(meta.cv_scores.len(), 4, "{meta:?}");
    let score_of = |kind: &str| {
        meta.cv_scores
            .iter()
            .find(|(k, _)| k == kind)
            .and_then(|(_, s)| *s)
            .unwrap_or(f64::MAX)
    };
    let best = ["linear", "boosted", "hybrid", "forest"]
        .map(score_of)
        .into_iter()
        .fold(f64::MAX, f64::min);
    // The recorded score is the chosen kind's; the choice is the best, or a boosting kind within
    // auto's margin of it.
    assert_eq!(meta.cv_score, Some(score_of(&meta.kind)), "{meta:?}");
    assert!(
        score_of(&meta.kind) == best
            || (["boosted", "hybrid"].contains(&meta.kind.as_str())
                && score_of(&meta.kind) <= best * 1.1),
        "{meta:?}"
    );
    // A straight-line label: linear wins the CV, or hybrid (the line plus trees, its round
    // count chosen on the same held-out folds) ties it within 1 %; trees alone are far off.
    assert!(score_of("linear") <= best * 1.01, "{meta:?}");
    assert!(score_of("hybrid") <= score_of("linear") * 1.01, "{meta:?}");
    assert!(
        ["linear", "hybrid"].contains(&meta.kind.as_str()),
        "{meta:?}"
    );
    assert!(score_of("boosted") > 10.0 * best, "{meta:?}");
    assert_eq!(m.config().kind.name(), meta.kind);

    // XOR of two features: no linear model separates it, a tree learner must win.
    let t = table(400, 3, |flat| {
        Labels::Classification(
            flat.chunks(3)
                .map(|r| format!("c{}", ((r[0] > 5.0) ^ (r[1] > 5.0)) as u8))
                .collect(),
        )
    });
    let auto = ModelConfig {
        kind: Kind::Auto,
        ..Default::default()
    };
    let m = Pipeline::fit(&t, &auto, ModelMeta::default()).unwrap();
    assert!(
        m.meta().kind == "boosted" || m.meta().kind == "forest",
        "{:?}",
        m.meta()
    );
    let linear = m.meta().cv_scores[0].1.unwrap();
    assert!(m.meta().cv_score.unwrap() < linear, "{:?}", m.meta());
}

#[test]
fn auto_fits_are_identical_across_runs_and_thread_counts() {
    let train = breast_cancer("A");
    let fit = |threads| {
        let cfg = ModelConfig {
            kind: Kind::Auto,
            threads: Some(threads),
            ..Default::default()
        };
        Pipeline::fit(&train, &cfg, ModelMeta::default())
            .unwrap()
            .to_bytes()
            .unwrap()
    };
    let one = fit(1);
    assert_eq!(one, fit(1));
    // The thread count is part of the stored config, so compare the models, not the bytes.
    let a = Pipeline::from_bytes(&one).unwrap();
    let b = Pipeline::from_bytes(&fit(2)).unwrap();
    let rows = breast_cancer("B").rows();
    assert_eq!(a.predict(&rows).unwrap(), b.predict(&rows).unwrap());
    assert_eq!(a.meta(), b.meta());
}

#[test]
fn linfa_tree_against_our_tree_on_breast_cancer() {
    let train = breast_cancer("A");
    let valid: Vec<Table> = ["B", "C", "D"].iter().map(|s| breast_cancer(s)).collect();
    let fit = |kind| {
        let cfg = ModelConfig {
            kind,
            ..Default::default()
        };
        Pipeline::fit(&train, &cfg, ModelMeta::default()).unwrap()
    };
    let (ours, linfa) = (fit(Kind::Tree), fit(Kind::LinfaTree));
    assert_eq!(linfa.meta().kind, "linfa-tree");
    let back = Pipeline::from_bytes(&linfa.to_bytes().unwrap()).unwrap();
    for v in &valid {
        let (a, b) = (accuracy(&ours, v), accuracy(&linfa, v));
        // Both are single depth-6 CART trees with Gini on the same 199 rows: both learn the
        // task, and neither is far from the other.
        assert!(a > 0.85 && b > 0.85, "tree {a}, linfa-tree {b}");
        assert!((a - b).abs() < 0.08, "tree {a}, linfa-tree {b}");
        assert_eq!(
            back.predict_table(v).unwrap(),
            linfa.predict_table(v).unwrap()
        );
    }
    // The training rows: a fully grown linfa tree separates them.
    let deep = Pipeline::fit(
        &train,
        &ModelConfig {
            kind: Kind::LinfaTree,
            max_depth: Some(30),
            ..Default::default()
        },
        ModelMeta::default(),
    )
    .unwrap();
    assert!(accuracy(&deep, &train) > 0.99);
}

#[test]
fn linfa_tree_refuses_regression_naming_the_key() {
    let t = table(50, 2, |flat| {
        Labels::Regression(flat.chunks(2).map(|r| r[0]).collect())
    });
    let cfg = ModelConfig::from_toml_str("[model]\nkind = \"linfa-tree\"\n").unwrap();
    let e = Pipeline::fit(&t, &cfg, ModelMeta::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.kind") && e.contains("classification"),
        "{e}"
    );
}

#[test]
fn model_files_claiming_absurd_sizes_are_errors() {
    // A valid header, then a pipeline whose class list claims 4 billion entries (array32).
    let mut b = rmp_serde::to_vec_named(&serde_json::json!({
        "magic": "ensemble-cluster-model",
        "format_version": ensemble_cluster::ml::FORMAT_VERSION,
    }))
    .unwrap();
    // The map had 2 entries: make it 3, the third being "pipeline" → {"classes": [..4e9..]}.
    b[0] = 0x83;
    rmp::encode::write_str(&mut b, "pipeline").unwrap();
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    rmp::encode::write_str(&mut b, "classes").unwrap();
    rmp::encode::write_array_len(&mut b, 4_000_000_000).unwrap();
    rmp::encode::write_str(&mut b, "a").unwrap();
    let e = Pipeline::from_bytes(&b).unwrap_err().to_string();
    assert!(e.starts_with("model file:"), "{e}");
    // An older format version is named as such.
    let old = rmp_serde::to_vec_named(
        &serde_json::json!({"magic": "ensemble-cluster-model", "format_version": 1}),
    )
    .unwrap();
    let e = Pipeline::from_bytes(&old).unwrap_err().to_string();
    assert!(e.contains("format version 1"), "{e}");
}
