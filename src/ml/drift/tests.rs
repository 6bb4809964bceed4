//! Unit tests of [`super::detect`] and the [`super::Reference`]: values worked by hand in the
//! comments, and the false-alarm rate of whole checks measured on generated data.

use std::path::Path;

use super::reference::{bin_of, quantile_edges};
use super::*;
use crate::ml::data::{parse_csv, Column, ColumnData, DataSpec, Labels, Table, Task};
use crate::ml::metrics::Predictions;
use crate::ml::synth::{write_rows, GenArgs};
use crate::ml::{ModelConfig, ModelMeta, Pipeline};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn num(name: &str, v: &[Option<f64>]) -> Column {
    Column {
        name: name.into(),
        data: ColumnData::Numeric(v.to_vec()),
    }
}

fn cat(name: &str, v: &[Option<&str>]) -> Column {
    Column {
        name: name.into(),
        data: ColumnData::Categorical(v.iter().map(|s| s.map(String::from)).collect()),
    }
}

fn table(columns: Vec<Column>, labels: Labels) -> Table {
    Table {
        columns,
        labels,
        label_name: "y".into(),
    }
}

/// A generated shard as a table.
fn generated(rows: usize, seed: u64, shift: f64, task: Task) -> Table {
    let mut args = GenArgs::new(rows, "gen.csv");
    args.seed = seed;
    args.shift = shift;
    args.task = task;
    let mut buf = Vec::new();
    write_rows(&args, true, &mut buf).unwrap();
    let spec = DataSpec {
        label: "y".into(),
        task,
        drop: vec![],
    };
    parse_csv(Path::new("gen.csv"), &buf, &spec).unwrap()
}

#[test]
fn quantile_edges_merge_ties() {
    let v: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(
        quantile_edges(&v, 10),
        (1..=9).map(f64::from).collect::<Vec<_>>()
    );
    let v: Vec<f64> = (1..=20).map(f64::from).collect();
    // ⌈k·20/5⌉-th smallest for k = 1..4
    assert_eq!(quantile_edges(&v, 5), vec![4.0, 8.0, 12.0, 16.0]);
    // Six zeros then 1..4: the 1st..9th smallest are 0,0,0,0,0,0,1,2,3.
    let v = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0];
    assert_eq!(quantile_edges(&v, 10), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(quantile_edges(&[7.0; 50], 10), vec![7.0]);
    assert!(quantile_edges(&[], 10).is_empty());
    // Bins are (−∞, e0], (e0, e1], …, (e_last, +∞).
    assert_eq!(bin_of(&[4.0, 8.0], 4.0), 0);
    assert_eq!(bin_of(&[4.0, 8.0], 4.5), 1);
    assert_eq!(bin_of(&[4.0, 8.0], 9.0), 2);
}

#[test]
fn hand_worked_report() {
    let x: Vec<Option<f64>> = (1..=10).map(|i| Some(f64::from(i))).collect();
    let c = [Some("a"), Some("a"), Some("b"), Some("b")]
        .into_iter()
        .cycle()
        .take(10)
        .collect::<Vec<_>>();
    let reference = table(
        vec![num("x", &x), cat("c", &c)],
        Labels::Regression((1..=10).map(f64::from).collect()),
    );
    let r = Reference::with_bins(&reference, 2).unwrap();
    // x: one edge (the 5th smallest, 5): shares [0.5, 0.5] and 0 missing.
    let Summary::Numeric(s) = &r.columns[0].summary else {
        panic!("numeric")
    };
    assert_eq!(
        (s.edges.clone(), s.shares.clone()),
        (vec![5.0], vec![0.5, 0.5, 0.0])
    );
    let mut nx: Vec<Option<f64>> = (1..=8).map(|i| Some(f64::from(i))).collect();
    nx.extend([None, None]);
    let nc = ["a", "a", "a", "c", "a", "a", "a", "c", "a", "a"].map(Some);
    let new = table(
        vec![cat("c", &nc), num("x", &nx), num("extra", &[Some(0.0); 10])],
        Labels::Regression(vec![]),
    );
    let settings = DriftSettings {
        bins: 2,
        ..Default::default()
    };
    let rep = detect(&r, &new, None, &settings).unwrap();
    assert_eq!((rep.rows, rep.total_features, rep.tests), (10, 2, 2));
    // x: new shares [0.5, 0.3, 0.2]: (0.3−0.5)·ln(0.6) + (0.2−1e-4)·ln(0.2/1e-4)
    assert_eq!(rep.features[0].name, "x");
    assert!(close(rep.features[0].value, 1.621_585_526));
    // The KS sample keeps present values only: 1..8 against 1..10 → D = 8/8 − 8/10.
    assert!(close(rep.features[0].ks.unwrap(), 0.2));
    // c: a 0.8 (ref 0.6), b 0 (ref 0.4), unseen c 0.2 (ref 0), missing 0 both.
    let want = (0.8 - 0.6) * (0.8f64 / 0.6).ln()
        + (1e-4 - 0.4) * (1e-4f64 / 0.4).ln()
        + (0.2 - 1e-4) * (0.2f64 / 1e-4).ln();
    assert!(close(rep.features[1].value, want));
    assert_eq!(rep.features[1].kind, FeatureKind::Categorical);
    assert!(rep.features[1].ks.is_none());
    // Ten rows against ten are no evidence: large PSI, but every bin expects < 5 rows, so the
    // chi-square has nothing to compare (p = 1), and KS D = 0.2 at nₑ = 4.4 is p ≈ 1.
    assert_eq!(rep.features[1].psi_pvalue, 1.0);
    assert!(rep.features[0].ks_pvalue.unwrap() > 0.9);
    assert!(rep.features.iter().all(|f| f.p_adjusted >= f.p_value));
    assert_eq!(rep.drifted_features, 0);
    assert!(!rep.dataset_drift && rep.label.is_none() && rep.error.is_none());
    // Serializable both ways.
    let json = serde_json::to_string(&rep).unwrap();
    assert!(json.contains(r#""kind":"numeric""#) && json.contains(r#""statistic":"psi""#));
    let back: DriftReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rep);
    assert!(
        detect(&r, &new, None, &DriftSettings::default()).is_err(),
        "bins differ"
    );
}

#[test]
fn constant_and_missing_columns() {
    let reference = table(
        vec![num("k", &[Some(3.0); 8]), num("m", &[None; 8])],
        Labels::Regression(vec![0.0; 8]),
    );
    let r = Reference::from_table(&reference).unwrap();
    let same = detect(&r, &reference, None, &DriftSettings::default()).unwrap();
    assert!(same.features.iter().all(|f| f.value == 0.0 && !f.drifted));
    assert_eq!(same.features[1].ks, None);
    assert!(!same.dataset_drift);
    let moved = table(
        vec![num("k", &[Some(4.0); 8]), num("m", &[None; 8])],
        Labels::Regression(vec![0.0; 8]),
    );
    let rep = detect(&r, &moved, None, &DriftSettings::default()).unwrap();
    // D = 1 at nₑ = 4: λ = (2 + 0.12 + 0.055)·1, p = Q(2.175) ≈ 1.6e-4; doubled (two tests),
    // tripled (Holm over 2 features + the label, the smallest p): ≈ 9e-4 ≤ 0.01.
    let k = &rep.features[0];
    assert_eq!((k.ks, rep.tests), (Some(1.0), 3));
    assert!(close(k.p_value, 2.0 * kolmogorov_q(2.175)), "{k:?}");
    assert!(close(k.p_adjusted, 3.0 * k.p_value) && k.drifted, "{k:?}");
    // 1 of 2 features ≥ share 0.1.
    assert!(rep.dataset_drift);
}

#[test]
fn new_cells_are_typed_like_the_reference() {
    let reference = table(
        vec![
            cat("c", &[Some("1.50"), Some("2"), Some("x"), Some("2")]),
            num("n", &[Some(1.0), Some(2.0), Some(3.0), Some(4.0)]),
        ],
        Labels::Classification(vec!["a".into(), "b".into(), "a".into(), "b".into()]),
    );
    let r = Reference::from_table(&reference).unwrap();
    // A batch without "x" infers `c` as numeric, and a stray word makes `n` text.
    let new = table(
        vec![
            num("c", &[Some(1.5), Some(2.0), Some(1.5), Some(2.0)]),
            cat("n", &[Some("1"), Some("2"), Some("3"), Some("4")]),
        ],
        Labels::Classification(vec!["a".into(), "b".into(), "a".into(), "b".into()]),
    );
    let rep = detect(&r, &new, None, &DriftSettings::default()).unwrap();
    assert_eq!(rep.features[1].value, 0.0);
    assert_eq!(rep.features[1].ks, Some(0.0));
    // c: 1.50 → 0.5 (ref 0.25), 2 → 0.5 (ref 0.5), x → 0 (ref 0.25): no unseen "1.5".
    let want = 0.25 * 2f64.ln() + (1e-4 - 0.25) * (1e-4f64 / 0.25).ln();
    assert!(close(rep.features[0].value, want));
    let label = rep.label.unwrap();
    assert_eq!(
        (label.kind, label.value, label.drifted),
        (FeatureKind::Categorical, 0.0, false)
    );
}

#[test]
fn reference_round_trips_and_rejects_garbage() {
    let t = generated(300, 1, 0.0, Task::Classification);
    let r = Reference::from_table(&t).unwrap();
    let b = r.to_bytes().unwrap();
    assert_eq!(Reference::from_bytes(&b).unwrap(), r);
    assert!(Reference::from_bytes(&b[..b.len() / 2]).is_err());
    assert!(Reference::from_bytes(b"garbage").is_err());
    let (_, model, r) = fitted(Task::Classification);
    assert!(r.validation.is_some());
    assert_eq!(Reference::from_bytes(&r.to_bytes().unwrap()).unwrap(), r);
    drop(model);
}

#[test]
fn ks_sample_is_capped_and_deterministic() {
    let t = generated(25_000, 3, 0.0, Task::Regression);
    let r = Reference::from_table(&t).unwrap();
    let Summary::Numeric(s) = &r.columns[0].summary else {
        panic!("numeric")
    };
    assert_eq!((s.sample.len(), s.present), (KS_SAMPLE, 25_000));
    assert!(s.sample.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(Reference::from_table(&t).unwrap(), r);
    // The sample's ECDF stays close to the full column's.
    let Some(ColumnData::Numeric(v)) = t.columns.first().map(|c| &c.data) else {
        panic!("numeric")
    };
    let mut full: Vec<f64> = v.iter().flatten().copied().collect();
    full.sort_unstable_by(f64::total_cmp);
    assert!(ks_statistic(&s.sample, &full).unwrap() <= 2.0 / KS_SAMPLE as f64);
}

#[test]
fn same_distribution_is_not_drift_a_shift_is() {
    let reference = generated(5_000, 1, 0.0, Task::Regression);
    let r = Reference::from_table(&reference).unwrap();
    let s = DriftSettings::default();
    let same = detect(&r, &generated(500, 2, 0.0, Task::Regression), None, &s).unwrap();
    assert!(!same.dataset_drift, "{:?}", same.reasons);
    assert_eq!((same.drifted_features, same.tests), (0, 11));
    assert!(!same.label.as_ref().unwrap().drifted);
    assert!(same.features.iter().all(|f| f.p_adjusted > s.alpha));

    let moved = detect(&r, &generated(500, 2, 1.0, Task::Regression), None, &s).unwrap();
    assert!(moved.dataset_drift);
    assert_eq!(moved.drifted_features, 10);
    // U(0,1) moved by 1/√12: about 29 % of the mass leaves the reference range.
    assert!(moved.features.iter().all(|f| f.ks.unwrap() > 0.2));
    assert!(moved.features.iter().all(|f| f.p_adjusted < 1e-6));
}

/// The share of whole checks that fire on rows drawn like the reference: at most α plus three
/// binomial standard errors, with a reference of 140 rows and batches of 200 (breast cancer's
/// sizes) and a 2,000-row reference.
#[test]
fn false_alarm_rate_of_a_check_is_at_most_alpha() {
    let s = DriftSettings {
        alpha: 0.05,
        ..Default::default()
    };
    for ref_rows in [140, 2_000] {
        let trials = 150u64;
        let mut fired = 0u64;
        for t in 0..trials {
            let r = Reference::from_table(&generated(ref_rows, 1_000 + t, 0.0, Task::Regression))
                .unwrap();
            let new = generated(200, 5_000 + t, 0.0, Task::Regression);
            fired += u64::from(detect(&r, &new, None, &s).unwrap().dataset_drift);
        }
        let n = trials as f64;
        let bound = s.alpha * n + 3.0 * (n * s.alpha * (1.0 - s.alpha)).sqrt();
        assert!(
            (fired as f64) <= bound,
            "{fired} of {trials} checks fired (reference {ref_rows} rows)"
        );
    }
}

/// Reference with the model's validation errors, the model, and the reference again for
/// checking.
fn fitted(task: Task) -> (Table, Pipeline, Reference) {
    let cfg = ModelConfig {
        kind: crate::ml::Kind::Tree,
        ..Default::default()
    };
    let data = generated(3_000, 1, 0.0, task);
    let (train, valid) = data.split(0.3, 42);
    let model = Pipeline::fit(&train, &cfg, ModelMeta::default()).unwrap();
    let r = Reference::of_model(&train, &model, &valid, 10).unwrap();
    // A node that has predicted the split already gets the same reference from its predictions.
    let pred = model.predict_table(&valid).unwrap();
    let again = Reference::of_predictions(&train, &valid, &pred, 10).unwrap();
    assert_eq!(again.to_bytes().unwrap(), r.to_bytes().unwrap());
    (valid, model, r)
}

#[test]
fn model_error_drift_regression() {
    let (_, model, r) = fitted(Task::Regression);
    let s = DriftSettings::default();
    let same = detect(
        &r,
        &generated(500, 2, 0.0, Task::Regression),
        Some(&model),
        &s,
    )
    .unwrap();
    let e = same.error.unwrap();
    assert!(
        !e.drifted && e.metric.starts_with("rms") && e.test == "mann_whitney",
        "{e:?}"
    );
    assert_eq!((e.valid_rows, e.new_rows), (900, 500));
    assert!(!same.dataset_drift);
    // Moved 2 std: x3 alone adds up to 10·0.58 to y, beyond anything trained on.
    let moved = detect(
        &r,
        &generated(500, 2, 2.0, Task::Regression),
        Some(&model),
        &s,
    )
    .unwrap();
    let e = moved.error.unwrap();
    assert!(
        e.drifted && e.ratio.unwrap() > 1.5 && e.p_adjusted < 1e-6,
        "{e:?}"
    );
    assert!(moved.label.unwrap().drifted);
    assert_eq!(moved.reasons.len(), 3, "{:?}", moved.reasons);
}

#[test]
fn model_error_drift_classification() {
    let (_, model, r) = fitted(Task::Classification);
    let s = DriftSettings::default();
    let m = Some(&model);
    let same = detect(&r, &generated(500, 2, 0.0, Task::Classification), m, &s).unwrap();
    let e = same.error.unwrap();
    assert!(
        !e.drifted && !same.dataset_drift && e.test == "fisher_exact",
        "{e:?}"
    );
    // Moved 2 std, the classes follow the (monotone) score: the label drifts, but the tree
    // extrapolates the right way, so its error rate need not rise.
    let moved = detect(&r, &generated(500, 2, 2.0, Task::Classification), m, &s).unwrap();
    assert!(moved.label.unwrap().drifted && moved.dataset_drift);
    // Concept drift: same features, classes swapped. Only the error sees it.
    let mut flipped = generated(500, 2, 0.0, Task::Classification);
    if let Labels::Classification(v) = &mut flipped.labels {
        for c in v.iter_mut() {
            *c = if c == "c0" { "c1".into() } else { "c0".into() };
        }
    }
    let rep = detect(&r, &flipped, m, &s).unwrap();
    let e = rep.error.unwrap();
    assert!(
        e.drifted && e.metric == "error_rate" && e.new > 0.5,
        "{e:?}"
    );
    assert_eq!(rep.drifted_features, 0);
    assert!(rep.dataset_drift);
}

#[test]
fn row_errors() {
    let truth = Labels::Classification(vec!["a".into(), "b".into(), "b".into(), "a".into()]);
    let pred = Predictions::Classification(vec!["a".into(), "a".into(), "b".into(), "b".into()]);
    let e = RowError::Miss.of(&truth, &pred).unwrap();
    assert_eq!(e, vec![0.0, 1.0, 0.0, 1.0]);
    assert_eq!(RowError::Miss.aggregate(&e), 0.5);
    // ln(1 + 3) − ln(1 + 1) = ln 2; a negative prediction counts as 0: ln 1 − ln(1 + 1).
    let truth = Labels::Regression(vec![1.0, 1.0]);
    let pred = Predictions::Regression(vec![3.0, -2.0]);
    let e = RowError::AbsLog.of(&truth, &pred).unwrap();
    assert!(close(e[0], 2f64.ln()) && close(e[1], 2f64.ln()));
    assert!(close(RowError::AbsLog.aggregate(&e), 2f64.ln()));
    // RMSE of |2|, |−3|: √(13/2).
    let e = RowError::Abs.of(&truth, &pred).unwrap();
    assert!(close(RowError::Abs.aggregate(&e), 6.5f64.sqrt()));
    assert!(RowError::Miss.of(&truth, &pred).is_err());
    assert_eq!(
        RowError::for_labels(&[&Labels::Regression(vec![0.0, -1.0])]),
        RowError::Abs
    );
    assert_eq!(
        RowError::for_labels(&[&Labels::Regression(vec![0.0, 1.0])]),
        RowError::AbsLog
    );
}

#[test]
fn bad_inputs_are_errors() {
    let t = generated(50, 1, 0.0, Task::Regression);
    let r = Reference::from_table(&t).unwrap();
    for bad in [
        DriftSettings {
            share: 0.0,
            ..Default::default()
        },
        DriftSettings {
            alpha: 1.0,
            ..Default::default()
        },
        DriftSettings {
            psi: -1.0,
            ..Default::default()
        },
    ] {
        assert!(detect(&r, &t, None, &bad).is_err(), "{bad:?}");
    }
    let empty = table(vec![], Labels::Regression(vec![]));
    assert!(detect(&r, &empty, None, &DriftSettings::default()).is_err());
    let ragged = table(
        vec![num("x0", &[Some(1.0)])],
        Labels::Regression(vec![1.0, 2.0]),
    );
    assert!(detect(&r, &ragged, None, &DriftSettings::default()).is_err());
    let other_task = generated(50, 1, 0.0, Task::Classification);
    assert!(detect(&r, &other_task, None, &DriftSettings::default()).is_err());
    assert!(Reference::from_table(&empty).is_err());
}
