//! Drift on the real shards: rows of another node's shard appended to a node trained on shard A.
//! The shards are random splits of one data set, so no check may fire; the error rule in
//! particular must not mistake the small-sample noise of a 60-row validation split for drift.

use std::path::PathBuf;

use ensemble_cluster::ml::{
    detect, load_csv, DataSpec, DriftReport, DriftSettings, ModelConfig, ModelMeta, Pipeline,
    Reference, Task,
};

fn shard(set: &str, s: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("shards/{set}/{s}.csv"))
}

/// A node's view: model trained on the 70 % split (seed 42) of `own`, reference = that split with
/// the model's validation errors, new rows = all of `other`.
fn check(set: &str, spec: &DataSpec, own: &str, other: &str) -> DriftReport {
    let table = load_csv(&shard(set, own), spec).unwrap();
    let (train, valid) = table.split(0.3, 42);
    let model = Pipeline::fit(&train, &ModelConfig::default(), ModelMeta::default()).unwrap();
    let reference = Reference::of_model(&train, &model, &valid, 10).unwrap();
    let new = load_csv(&shard(set, other), spec).unwrap();
    detect(&reference, &new, Some(&model), &DriftSettings::default()).unwrap()
}

fn house() -> DataSpec {
    DataSpec {
        label: "SalePrice".into(),
        task: Task::Regression,
        drop: vec!["Id".into()],
    }
}

fn cancer() -> DataSpec {
    DataSpec {
        label: "diagnosis".into(),
        task: Task::Classification,
        drop: vec![],
    }
}

/// No dataset drift, every test reported with its p-value, the error test present.
fn assert_no_drift(rep: &DriftReport, what: &str) {
    assert!(!rep.dataset_drift, "{what}: {:?}", rep.reasons);
    assert_eq!(rep.tests, rep.total_features + 2, "{what}");
    let all = rep.features.iter().chain(rep.label.as_ref());
    for f in all {
        assert!(
            (0.0..=1.0).contains(&f.p_value) && f.p_adjusted >= f.p_value,
            "{what}: {f:?}"
        );
        assert!(f.p_adjusted > rep.alpha && !f.drifted, "{what}: {f:?}");
    }
    let e = rep.error.as_ref().expect("error test");
    assert!(!e.drifted && e.p_adjusted > rep.alpha, "{what}: {e:?}");
}

/// Shard B's 487 rows appended to a node trained on shard A.
#[test]
fn house_prices_shard_b_appended_to_a() {
    let rep = check("house_prices", &house(), "A", "B");
    assert_eq!((rep.rows, rep.total_features), (487, 79));
    let e = rep.error.as_ref().expect("error test");
    assert_eq!(
        (e.metric.as_str(), e.test.as_str()),
        ("rmsle", "mann_whitney")
    );
    assert_eq!((e.valid_rows, e.new_rows), (146, 487));
    assert_no_drift(&rep, "house A ← B");
}

#[test]
fn house_prices_other_pairs() {
    for (own, other) in [("A", "C"), ("A", "D"), ("B", "A"), ("C", "D")] {
        let rep = check("house_prices", &house(), own, other);
        assert_no_drift(&rep, &format!("house {own} ← {other}"));
    }
}

/// The false alarm of issue 16: A's validation split (60 rows) has one error, B's 153 rows get a
/// few more. The old ratio rule fired (×3.5 ≥ 1.5); Fisher's exact test sees no evidence.
#[test]
fn breast_cancer_pairs() {
    for (own, other) in [("A", "B"), ("A", "C"), ("A", "D"), ("B", "A")] {
        let rep = check("breast_cancer", &cancer(), own, other);
        assert_no_drift(&rep, &format!("breast cancer {own} ← {other}"));
    }
    let rep = check("breast_cancer", &cancer(), "A", "B");
    let e = rep.error.unwrap();
    assert_eq!(
        (e.test.as_str(), e.valid_rows, e.new_rows),
        ("fisher_exact", 60, 153)
    );
    assert!(e.p_value > 0.05, "{e:?}");
}
