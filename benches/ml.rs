//! Fit and predict speed on 400,000 × 15 synthetic rows (issue 3's speed target: a depth-8
//! regression tree ≥ 5× faster than scikit-learn's ~6 s for depth 3; one row predicted in µs).
//! Compiled models on a block of 4,096 typed rows, by kind (`served_4096_rows`).
//!
//! `cargo bench --bench ml`. Boosting against scikit-learn's HistGradientBoosting, side by side:
//! `bench/boost_vs_hgb.sh`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ensemble_cluster::ml::learner::LearnerParams;
use ensemble_cluster::ml::synth::write_rows;
use ensemble_cluster::ml::{
    detect, parse_csv, Column, ColumnData, DataSpec, DriftSettings, GenArgs, Kind, Labels,
    ModelConfig, ModelMeta, Pipeline, Reference, Rows, Table, Task, TypedRows, Value,
};
use linfa::traits::Fit;
use linfa::Dataset;
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROWS: usize = 400_000;
const FEATURES: usize = 15;

fn synthetic() -> (Array2<f64>, Array1<f64>) {
    let mut rng = StdRng::seed_from_u64(1);
    let x = Array2::from_shape_fn((ROWS, FEATURES), |_| rng.gen_range(-1.0..1.0));
    let y = x
        .rows()
        .into_iter()
        .map(|r| {
            3.0 * r[0]
                + (4.0_f64 * r[1]).sin()
                + r[2] * r[3]
                + if r[4] > 0.3 { 2.0 } else { 0.0 }
                + 0.1 * r[5]
        })
        .collect();
    (x, y)
}

fn tree_cfg(depth: usize) -> ModelConfig {
    ModelConfig {
        kind: Kind::Tree,
        max_depth: Some(depth),
        target: ensemble_cluster::ml::Target::Identity,
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let (x, y) = synthetic();
    let ds = Dataset::new(x.clone(), y.clone());
    let mut g = c.benchmark_group("fit_400k_x15");
    g.sample_size(10);
    for depth in [3, 8] {
        g.bench_function(format!("tree_depth{depth}"), |b| {
            b.iter(|| {
                LearnerParams::new(tree_cfg(depth))
                    .fit(black_box(&ds))
                    .expect("fit")
            })
        });
    }
    g.finish();

    let model = LearnerParams::new(tree_cfg(8)).fit(&ds).expect("fit");
    let row: Vec<f64> = x.row(123).to_vec();
    let mut out = [0.0];
    c.bench_function("predict_one_row/tree_depth8_raw", |b| {
        b.iter(|| {
            model.model.raw_row(black_box(&row), &mut out);
            out[0]
        })
    });

    // Whole pipeline on one raw row (column lookup by name, imputation, 400 boosted trees),
    // trained on 20,000 rows of the same data.
    let n = 20_000;
    let columns = (0..FEATURES)
        .map(|f| Column {
            name: format!("f{f}"),
            data: ColumnData::Numeric((0..n).map(|i| Some(x[[i, f]])).collect()),
        })
        .collect();
    let table = Table {
        columns,
        labels: Labels::Regression(y.iter().take(n).copied().collect()),
        label_name: "y".into(),
    };
    // The former default: 400 boosted rounds, no early stopping (`auto` would pick per data).
    let boosted_cfg = ModelConfig {
        kind: Kind::Boosted,
        n_rounds: 400,
        n_iter_no_change: 0,
        ..Default::default()
    };
    let boosted = Pipeline::fit(&table, &boosted_cfg, ModelMeta::default()).expect("fit");
    let tree = Pipeline::fit(&table, &tree_cfg(8), ModelMeta::default()).expect("fit");
    let one = Rows {
        columns: (0..FEATURES).map(|f| format!("f{f}")).collect(),
        data: vec![row.iter().map(|v| Value::Num(*v)).collect()],
    };
    c.bench_function("predict_one_row/pipeline_tree_depth8", |b| {
        b.iter(|| tree.predict(black_box(&one)).expect("predict"))
    });
    c.bench_function("predict_one_row/pipeline_boosted_default", |b| {
        b.iter(|| boosted.predict(black_box(&one)).expect("predict"))
    });

    // Compiled models on a block of typed rows, as a node serves a batch: the layout is the
    // one each model gets (depth-3 tree and boosted depth-4 trees: leaf masks; depth-8 tree:
    // complete; fully grown forest trees: ranked; hybrid: a matrix product plus masks).
    let block: Vec<usize> = (0..4096).collect();
    let rows = TypedRows::from_table(&table.select(&block));
    let forest_cfg = ModelConfig {
        kind: Kind::Forest,
        n_trees: 20,
        ..Default::default()
    };
    let hybrid_cfg = ModelConfig {
        kind: Kind::Hybrid,
        ..boosted_cfg.clone()
    };
    let models = [
        (
            "tree_depth3",
            Pipeline::fit(&table, &tree_cfg(3), ModelMeta::default()),
        ),
        ("tree_depth8", Ok(tree)),
        ("boosted_400", Ok(boosted)),
        (
            "hybrid_400",
            Pipeline::fit(&table, &hybrid_cfg, ModelMeta::default()),
        ),
        (
            "forest_20_full",
            Pipeline::fit(&table, &forest_cfg, ModelMeta::default()),
        ),
    ];
    let mut g = c.benchmark_group("served_4096_rows");
    for (name, model) in models {
        let served = model.expect("fit").served();
        g.bench_function(name, |b| {
            b.iter(|| served.predict(black_box(&rows)).expect("predict"))
        });
    }
    g.finish();
}

/// `gen` of 400,000 × 15 rows into memory (formatting included, no disk), the drift reference of
/// that table, and one drift check of 500 new rows against it.
fn bench_drift(c: &mut Criterion) {
    let mut args = GenArgs::new(ROWS, "bench.csv");
    args.features = FEATURES;
    let mut g = c.benchmark_group("drift_400k_x15");
    g.sample_size(10);
    g.bench_function("gen_to_memory", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(60 << 20);
            write_rows(black_box(&args), true, &mut buf).expect("gen");
            buf.len()
        })
    });
    let spec = DataSpec {
        label: "y".into(),
        task: Task::Regression,
        drop: vec![],
    };
    let mut buf = Vec::new();
    write_rows(&args, true, &mut buf).expect("gen");
    let table = parse_csv(Path::new("bench.csv"), &buf, &spec).expect("parse");
    g.bench_function("reference_from_table", |b| {
        b.iter(|| Reference::from_table(black_box(&table)).expect("reference"))
    });
    let reference = Reference::from_table(&table).expect("reference");
    args.rows = 500;
    args.seed = 7;
    args.shift = 1.0;
    let mut buf = Vec::new();
    write_rows(&args, true, &mut buf).expect("gen");
    let new = parse_csv(Path::new("new.csv"), &buf, &spec).expect("parse");
    let settings = DriftSettings::default();
    g.bench_function("detect_500_rows", |b| {
        b.iter(|| detect(&reference, black_box(&new), None, &settings).expect("detect"))
    });
    g.finish();
}

criterion_group!(benches, bench, bench_drift);
criterion_main!(benches);
