//! Supervision of real failures, not injected beside the code: a panic inside the cluster actor's
//! command dispatch, and a panic inside the model code while it predicts. Each time the request
//! in flight gets an error answer, the failed actor restarts with its state rebuilt, the node
//! keeps answering, and it still stops cleanly on SIGTERM. Also: a node killed in the middle of
//! saving a model comes back with the previous one, and weighted aggregation across a cluster.

use std::time::Duration;

use serde_json::Value;

use crate::shards::{csv_row_json, house_prices, letter};
use crate::util::{wait_until, Cluster, Node, NodeSpec, TestDir};

/// A cluster of `n` House Prices nodes with fault injection, once every node has its model.
fn faulty_cluster(name: &str, n: usize) -> (Cluster, String) {
    let mut cluster = Cluster::start_with(name, n, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data).toml("[testing]\nfaults = true")
    });
    let row = csv_row_json("house_prices/test.csv", 3);
    assert!(
        wait_until(Duration::from_secs(30), || {
            cluster.at(0).command(&format!("predict {row}"))["answered"] == n
        }),
        "the models trained at start never all answered"
    );
    (cluster, row)
}

/// SIGTERM stops the node through its cluster actor (it says it leaves), not through the
/// fallback that stops a node whose cluster actor is gone.
fn stops_cleanly_on_sigterm(node: &mut Node) {
    node.terminate();
    let status = node
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| node.fail("still running 2 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(node.log().contains("leaving the cluster"), "did not leave");
    assert!(!node.log().contains("did not leave in time"));
}

#[test]
fn a_panic_in_the_cluster_actor_fails_one_request_and_restarts_it() {
    let (mut cluster, row) = faulty_cluster("panic-cluster", 2);
    let n1 = cluster.node("n1");
    assert_eq!(n1.status()["restarts"]["cluster"], 0);
    let f = n1.command("fault cluster");
    assert_eq!(f["ok"], true, "{f}");

    // The next command panics inside the dispatch: its caller gets an error, not silence.
    let p = n1.command(&format!("predict {row}"));
    assert_eq!(p["ok"], false, "{p}");
    let error = p["error"].as_str().unwrap_or_default();
    assert!(error.contains("internal failure"), "{p}");
    assert!(n1.wait_for_log("cluster actor restarting", Duration::from_secs(2)));

    // Restarted with its member table rebuilt: it sees its peer and coordinates again.
    let status = n1.status();
    assert_eq!(status["restarts"]["cluster"], 1, "{status}");
    assert!(
        wait_until(Duration::from_secs(3), || n1.status()["peers_up"] == 1),
        "the restarted cluster actor lost its peer"
    );
    let p = n1.command(&format!("predict {row}"));
    assert_eq!(
        (p["ok"].clone(), p["answered"].clone()),
        (true.into(), 2.into()),
        "{p}"
    );
    let t = n1.command("evaluate");
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["splits"].as_array().map(Vec::len), Some(2), "{t}");
    stops_cleanly_on_sigterm(n1);
}

#[test]
fn a_panic_in_the_model_code_fails_that_prediction_and_restarts_the_model_actor() {
    let (mut cluster, row) = faulty_cluster("panic-predict", 2);
    let n1 = cluster.node("n1");
    let version = n1.status()["model_version"].clone();
    let f = n1.command("fault panic-next-predict");
    assert_eq!(f["ok"], true, "{f}");

    // n1's own part panics inside its model; the cluster still answers, from n2, and says so.
    let p = n1.command(&format!("predict --explain {row}"));
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p["answered"], 1, "{p}");
    let failed = p["failed"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed.len(), 1, "{p}");
    assert_eq!(failed[0]["id"], "n1", "{p}");
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("model failed") && e.contains("injected fault")),
        "{p}"
    );
    assert!(n1.wait_for_log("model actor restarting", Duration::from_secs(2)));
    assert_eq!(n1.status()["restarts"]["model"], 1);

    // The restarted actor reloaded the same model, answers, and still trains.
    let p = n1.command(&format!("predict --explain {row}"));
    assert_eq!(p["answered"], 2, "{p}");
    let own = p["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == "n1"))
        .cloned()
        .unwrap_or_else(|| panic!("n1 did not answer: {p}"));
    assert_eq!(own["version"], version, "{p}");
    let t = n1.command("train local");
    assert_eq!(t["ok"], true, "{t}");
    assert!(t["version"].as_u64() > version.as_u64(), "{t}");
    stops_cleanly_on_sigterm(n1);
}

#[test]
fn a_node_killed_while_saving_its_model_comes_back_with_the_previous_one() {
    let dir = TestDir::new("kill-save");
    let pause_ms = 1_500;
    let spec = NodeSpec::new("n1")
        .toml(&house_prices('A'))
        .toml(&format!("[testing]\nsave_pause_ms = {pause_ms}"));
    let mut node = Node::start(&dir, spec);
    let state = dir.path().join("n1-state");
    let paused = |node: &Node| node.log().matches("pausing").count();
    assert!(
        wait_until(Duration::from_secs(30), || node.status()["model_version"]
            == 1),
        "no first model"
    );
    assert_eq!(paused(&node), 1);

    // Retrain; once the new file is written and waits for its rename, kill -9.
    let addr = node.addr();
    let auth = [
        "--cluster",
        crate::util::CLUSTER,
        "--secret",
        crate::util::SECRET,
    ];
    let retrain = std::thread::spawn(move || crate::util::ctl(addr, &auth, &["train", "local"]));
    assert!(
        wait_until(Duration::from_secs(30), || paused(&node) == 2),
        "the second save never started"
    );
    assert!(
        state.join("model.msgpack.tmp").exists(),
        "killed outside the write"
    );
    node.kill();
    let _ = retrain.join();

    node.restart();
    assert_eq!(
        node.status()["model_version"],
        1,
        "the half-saved model was loaded"
    );
    let files = |state: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(state)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(files(&state), ["model.msgpack"]);
    assert!(!node.log().contains("not a valid model"));
    let p = node.command(&format!(
        "predict {}",
        csv_row_json("house_prices/test.csv", 1)
    ));
    assert_eq!(p["ok"], true, "{p}");
    // Version 2 was taken by the training that never landed; it is not handed out again.
    let t = node.command("train local");
    assert_eq!(t["version"], 2, "{t}");
}

#[test]
fn weighted_aggregation_weighs_each_node_by_its_validation_score() {
    let mut cluster = Cluster::start_with("weighted", 3, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data).cluster_key("aggregation = \"weighted\"")
    });
    let row = csv_row_json("house_prices/test.csv", 7);
    let mut p = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            p = cluster.at(0).command(&format!("predict --explain {row}"));
            p["answered"] == 3
        }),
        "{p}"
    );
    let nodes = p["nodes"].as_array().cloned().unwrap_or_default();
    let pairs: Vec<(f64, f64)> = nodes
        .iter()
        .map(|n| {
            let w = n["weight"].as_f64().expect("a weight");
            let x = n["prediction"].as_f64().expect("a number");
            (w, x)
        })
        .collect();
    assert_eq!(pairs.len(), 3, "{p}");
    let weighted =
        pairs.iter().map(|(w, x)| w * x).sum::<f64>() / pairs.iter().map(|p| p.0).sum::<f64>();
    let mean = pairs.iter().map(|p| p.1).sum::<f64>() / 3.0;
    let got = p["prediction"].as_f64().expect("a number");
    assert!(
        (got - weighted).abs() < 1e-9 * weighted.abs(),
        "{got} vs {weighted}: {p}"
    );
    // The nodes' validation scores differ, so the weights do, and so does the plain mean.
    assert!(
        (got - mean).abs() > 1e-9 * mean.abs(),
        "weights had no effect: {p}"
    );
}
