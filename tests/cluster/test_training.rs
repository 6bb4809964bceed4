//! Global training and prediction on House Prices with 4 nodes (shards A–D): `train` gives a
//! 4×4 score matrix and an ensemble RMSLE ≤ 0.14; every node keeps exactly its own model, on disk
//! too; every node predicts the same value, the mean of the nodes' own predictions; a batch
//! prediction writes a Kaggle submission; a killed node is reported, not waited for; a
//! restarted node answers from its persisted model without retraining.

use std::time::Duration;

use serde_json::Value;

use crate::shards::{csv_row_json, house_prices, letter, shard};
use crate::util::{wait_until, Cluster};

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

#[test]
fn four_nodes_train_predict_and_survive_a_kill() {
    let mut cluster = Cluster::start_with("training", 4, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data)
    });

    // Global training with cross-validation.
    let trained = cluster.at(0).ctl(&["train"]);
    assert_eq!(trained.code, Some(0), "{trained}");
    let t = trained.json();
    assert_eq!(t["metric"], "rmsle", "{t}");
    assert_eq!(
        t["models"],
        serde_json::json!(["n1", "n2", "n3", "n4"]),
        "{t}"
    );
    let matrix = t["matrix"].as_array().expect("matrix");
    assert_eq!(matrix.len(), 4, "{t}");
    for row in matrix {
        let row = row.as_array().expect("row");
        assert_eq!(row.len(), 4, "{t}");
        assert!(row.iter().all(|c| f(c) > 0.0 && f(c) < 0.5), "{t}");
    }
    let rmsle = f(&t["ensemble"]["rmsle"]);
    assert!(rmsle <= 0.14, "ensemble RMSLE {rmsle} > 0.14: {t}");
    for key in ["rmse", "r2", "mae"] {
        assert!(t["ensemble"][key].is_number(), "{key}: {t}");
    }
    assert_eq!(t["failed"], serde_json::json!([]), "{t}");
    let nodes = t["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4);
    // Shard A has 487 rows: 70 / 30.
    let a = &nodes[0];
    assert_eq!(f(&a["rows_train"]) + f(&a["rows_valid"]), 487.0, "{t}");
    // The default learner is `auto`: each node says which kind it chose and its CV loss, and
    // `model` says the same of the node's own model.
    const KINDS: [&str; 5] = ["linear", "tree", "forest", "boosted", "hybrid"];
    for n in nodes {
        let kind = n["kind"].as_str().unwrap_or_default();
        assert!(KINDS.contains(&kind), "{n}");
        assert!(f(&n["cv_score"]) > 0.0, "{n}");
    }
    let model = cluster.at(0).command("model");
    assert_eq!(model["kind"], nodes[0]["kind"], "{model}");
    assert_eq!(model["cv_score"], nodes[0]["cv_score"], "{model}");

    // Each node holds one model, in memory and on disk.
    for node in &mut cluster.nodes {
        let status = node.status();
        assert_eq!(status["models_held"], 1, "{}: {status}", node.id);
        let dir = node
            .config_path()
            .parent()
            .expect("test dir")
            .join(format!("{}-state", node.id));
        let files: Vec<String> = std::fs::read_dir(&dir)
            .expect("state dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, vec!["model.msgpack".to_string()], "{}", node.id);
    }

    // The same prediction from every node, equal to the mean of the nodes' own predictions.
    let row = csv_row_json("house_prices/test.csv", 0);
    let mut answers = Vec::new();
    for node in &mut cluster.nodes {
        let p = node.command(&format!("predict --explain {row}"));
        assert_eq!(p["ok"], true, "{}: {p}", node.id);
        assert_eq!(p["answered"], 4, "{p}");
        assert_eq!(p["asked"], 4, "{p}");
        let own: Vec<f64> = p["nodes"]
            .as_array()
            .expect("explain lists the nodes")
            .iter()
            .map(|n| f(&n["prediction"]))
            .collect();
        assert_eq!(own.len(), 4);
        let mean = own.iter().sum::<f64>() / 4.0;
        let value = f(&p["prediction"]);
        assert!((value - mean).abs() <= 1e-9, "{value} vs mean {mean}");
        answers.push(value);
    }
    assert!(
        answers.iter().all(|v| (v - answers[0]).abs() <= 1e-9),
        "nodes disagree: {answers:?}"
    );
    assert!(answers[0] > 10_000.0 && answers[0] < 1_000_000.0);

    // Batch prediction of test.csv: a Kaggle submission.
    let out = cluster.dir.path().join("submission.csv");
    let out_s = out.display().to_string();
    let batch = cluster
        .at(1)
        .ctl(&["predict-file", &shard("house_prices/test.csv"), &out_s]);
    assert_eq!(batch.code, Some(0), "{batch}");
    assert_eq!(batch.json()["rows"], 1459, "{batch}");
    let text = std::fs::read_to_string(&out).expect("output written");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Id,SalePrice"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1459);
    assert!(rows[0].starts_with("1461,"), "{}", rows[0]);
    for r in &rows {
        let (_, v) = r.split_once(',').expect("Id,value");
        assert!(v.parse::<f64>().is_ok_and(|v| v > 0.0), "{r}");
    }

    // kill -9 one node: predictions come from the other three, training reports it.
    let version_before = cluster.node("n3").status()["model_version"].clone();
    cluster.node("n3").kill();
    let p = cluster.node("n1").command(&format!("predict {row}"));
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p["answered"], 3, "{p}");
    let asked = p["asked"].as_u64().expect("asked");
    assert!(asked == 3 || asked == 4, "{p}");
    let t = cluster.node("n2").command("train");
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["models"], serde_json::json!(["n1", "n2", "n4"]), "{t}");
    assert_eq!(t["matrix"].as_array().map(Vec::len), Some(3), "{t}");
    assert!(
        t["matrix"][0].as_array().is_some_and(|r| r.len() == 3),
        "{t}"
    );
    let failed: Vec<&str> = t["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(failed, vec!["n3"], "{t}");

    // Restarted, n3 answers at once from its persisted model, without training.
    cluster.node("n3").restart();
    let status = cluster.node("n3").status();
    assert_eq!(status["model_version"], version_before, "{status}");
    let log = cluster.node("n3").log();
    let (_, last_run) = log
        .rsplit_once("loaded the persisted model")
        .unwrap_or_else(|| panic!("n3 did not load its model:\n{log}"));
    assert!(
        !last_run.contains("training version="),
        "n3 retrained after its restart:\n{last_run}"
    );
    let p = cluster.node("n3").command(&format!("predict {row}"));
    assert_eq!(p["ok"], true, "{p}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let p = cluster.node("n1").command(&format!("predict {row}"));
            p["answered"] == 4
        }),
        "n3 does not answer again after its restart"
    );
}

/// A `train` right after nodes joined, once the first node sees them all up but before the
/// newest have linked to each other: every node still scores every model (a scorer waits for its
/// link to an owner it has only just heard of, instead of failing that owner). Trees of depth 3
/// train in milliseconds, so the round reaches the scorers while their links are forming.
#[test]
fn a_train_right_after_nodes_join_scores_every_model() {
    let model = "[model]\nkind = \"tree\"\nmax_depth = 3\n";
    let mut cluster = Cluster::start_with("train-at-join", 1, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&format!("{data}{model}"))
    });
    for id in ["n2", "n3", "n4"] {
        let spec = cluster.member_spec(id);
        let spec = spec.toml(&format!("{}{model}", house_prices(letter(id))));
        cluster.add(spec);
    }
    let n1 = cluster.at(0);
    let all_up = wait_until(Duration::from_secs(30), || {
        let s = n1.status();
        s["members"] == 4 && s["peers_up"] == 3
    });
    assert!(all_up, "n1 does not see the others: {}", n1.status());
    let trained = n1.ctl(&["train"]);
    let t = trained.json();
    assert_eq!(t["failed"], serde_json::json!([]), "{t}");
    assert_eq!(t["complete"], true, "{t}");
    assert_eq!(trained.code, Some(0), "{trained}");
    assert_eq!(t["matrix"].as_array().map(Vec::len), Some(4), "{t}");
}
