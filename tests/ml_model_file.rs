//! Model files: round trip on shard A predicting test.csv, byte-for-byte determinism, and garbage.
//! Prediction in chunks: the same as row by row, errors numbered by row.

use std::path::PathBuf;

use ensemble_cluster::ml::pipeline::PREDICT_CHUNK_ROWS;
use ensemble_cluster::ml::{
    load_csv, load_rows, DataSpec, Kind, ModelConfig, ModelMeta, Pipeline, Predictions, Rows, Task,
};
use proptest::prelude::*;

fn path(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn hp_spec() -> DataSpec {
    DataSpec {
        label: "SalePrice".into(),
        task: Task::Regression,
        drop: vec!["Id".into()],
    }
}

fn meta() -> ModelMeta {
    ModelMeta {
        node: "A".into(),
        version: 3,
        ..Default::default()
    }
}

fn fit_a(cfg: &ModelConfig) -> Pipeline {
    let t = load_csv(&path("shards/house_prices/A.csv"), &hp_spec()).unwrap();
    let (train, _) = t.split(0.3, 42);
    Pipeline::fit(&train, cfg, meta()).unwrap()
}

#[test]
fn round_trip_predicts_test_csv_identically() {
    let mut model = fit_a(&ModelConfig::default());
    model.set_train_ms(123);
    let bytes = model.to_bytes().unwrap();
    let back = Pipeline::from_bytes(&bytes).unwrap();
    assert_eq!(back, model);
    assert_eq!(back.meta().node, "A");
    assert_eq!(back.meta().version, 3);
    assert_eq!(back.meta().rows, 341);
    assert_eq!(back.meta().train_ms, 123);
    assert_eq!(back.meta().seed, 42);
    assert_eq!(back.task(), Task::Regression);
    let test = load_rows(&path("shards/house_prices/test.csv")).unwrap();
    assert_eq!(test.len(), 1459);
    let a = model.predict(&test).unwrap();
    let b = back.predict(&test).unwrap();
    assert_eq!(a, b);
    let Predictions::Regression(v) = a else {
        panic!("task")
    };
    assert!(v
        .iter()
        .all(|p| p.is_finite() && *p > 10_000.0 && *p < 1_000_000.0));
}

#[test]
fn same_data_config_seed_give_identical_bytes() {
    for kind in [Kind::Boosted, Kind::Forest, Kind::Tree, Kind::Linear] {
        let cfg = ModelConfig {
            kind,
            n_trees: 30,
            n_rounds: 100,
            ..Default::default()
        };
        let a = fit_a(&cfg).to_bytes().unwrap();
        let b = fit_a(&cfg).to_bytes().unwrap();
        assert!(a == b, "{kind:?} bytes differ");
    }
    // another seed changes a stochastic model
    let cfg = ModelConfig {
        n_rounds: 50,
        ..Default::default()
    };
    let other = ModelConfig {
        seed: 7,
        ..cfg.clone()
    };
    assert_ne!(
        fit_a(&cfg).to_bytes().unwrap(),
        fit_a(&other).to_bytes().unwrap()
    );
}

#[test]
fn classification_round_trip_decodes_labels() {
    let spec = DataSpec {
        label: "diagnosis".into(),
        task: Task::Classification,
        drop: vec![],
    };
    let t = load_csv(&path("shards/breast_cancer/A.csv"), &spec).unwrap();
    let m = Pipeline::fit(&t, &ModelConfig::default(), meta()).unwrap();
    let back = Pipeline::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back.classes(), ["benign", "malignant"]);
    let Predictions::Classification(p) = back.predict(&t.rows()).unwrap() else {
        panic!("task")
    };
    assert!(p.iter().all(|c| c == "benign" || c == "malignant"));
}

/// Many rows are encoded a chunk at a time (the matrix has a column per feature of the model):
/// the predictions are those of each row alone, across chunk boundaries, and a bad row past the
/// first chunk is reported under its own number.
#[test]
fn predictions_in_chunks_are_the_predictions_row_by_row() {
    let model = fit_a(&ModelConfig {
        kind: Kind::Tree,
        ..Default::default()
    });
    let test = load_rows(&path("shards/house_prices/test.csv")).unwrap();
    let n = 2 * PREDICT_CHUNK_ROWS + 3;
    let many = Rows {
        columns: test.columns.clone(),
        data: (0..n).map(|i| test.data[i % test.len()].clone()).collect(),
    };
    let Predictions::Regression(all) = model.predict(&many).unwrap() else {
        panic!("task")
    };
    assert_eq!(all.len(), n);
    for i in [0, PREDICT_CHUNK_ROWS - 1, PREDICT_CHUNK_ROWS, n - 1] {
        let one = Rows {
            columns: test.columns.clone(),
            data: vec![many.data[i].clone()],
        };
        assert_eq!(
            model.predict(&one).unwrap(),
            Predictions::Regression(vec![all[i]]),
            "row {i}"
        );
    }
    let mut bad = many.clone();
    bad.data[PREDICT_CHUNK_ROWS + 1].pop();
    let e = model.predict(&bad).unwrap_err().to_string();
    let expected = format!("row {} has", PREDICT_CHUNK_ROWS + 2);
    assert!(e.contains(&expected), "{e}");
    assert_eq!(model.predict(&Rows::default()).unwrap().len(), 0);
}

#[test]
fn garbage_and_truncation_are_errors() {
    // A small boosted model: the flipped-byte loop decodes the file once per 97 bytes.
    let bytes = fit_a(&ModelConfig {
        kind: Kind::Boosted,
        n_rounds: 20,
        n_iter_no_change: 0,
        ..Default::default()
    })
    .to_bytes()
    .unwrap();
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        let e = Pipeline::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(e.to_string().starts_with("model file:"), "{e}");
    }
    assert!(Pipeline::from_bytes(b"hello world").is_err());
    let other = rmp_serde::to_vec_named(
        &serde_json::json!({"magic": "ensemble-cluster-model", "format_version": 999}),
    )
    .unwrap();
    let e = Pipeline::from_bytes(&other).unwrap_err().to_string();
    assert!(e.contains("format version 999"), "{e}");
    // flipping bytes in the body never panics
    for i in (0..bytes.len()).step_by(97) {
        let mut b = bytes.clone();
        b[i] ^= 0xA5;
        let _ = Pipeline::from_bytes(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(Pipeline::from_bytes(&b).is_err());
    }
}
