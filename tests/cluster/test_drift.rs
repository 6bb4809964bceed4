//! Local retraining on drift. A node notices rows appended to its shard: rows like the ones it
//! trained on change nothing; shifted rows trigger exactly one local retrain, on that node only.
//! While a node retrains, every prediction is answered by the old model until the swap and by the
//! new one after. (A node killed while saving a model: test_supervision.rs.)
//! A half-written last line is not an error: it is read once complete.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{quote, run, wait_until, Cluster, Node, NodeSpec, TestDir};

/// Writes (or with `append`, appends) `rows` synthetic regression rows with `gen`.
fn gen(path: &Path, rows: usize, seed: u64, shift: f64, append: bool) {
    let (rows, seed, shift) = (rows.to_string(), seed.to_string(), shift.to_string());
    let out = path.display().to_string();
    let mut args = vec![
        "gen",
        "--rows",
        &rows,
        "--features",
        "8",
        "--seed",
        &seed,
        "--shift",
        &shift,
        "--out",
        &out,
    ];
    if append {
        args.push("--append");
    }
    let ran = run(&args, &[], "", Path::new("."), Duration::from_secs(60));
    assert_eq!(ran.code, Some(0), "gen failed: {ran}");
}

/// `[data]` + `[drift]` for a synthetic shard.
fn data_toml(shard: &Path, drift: &str) -> String {
    format!(
        "[data]\nshard = {}\nlabel = \"y\"\n\n[drift]\n{drift}\n",
        quote(&shard.display().to_string())
    )
}

fn version(node: &mut Node) -> Option<u64> {
    node.status()["model_version"].as_u64()
}

fn wait_for_model(node: &mut Node, within: Duration) -> u64 {
    let mut v = None;
    if !wait_until(within, || {
        v = version(node);
        v.is_some()
    }) {
        node.fail("no model");
    }
    v.unwrap_or_default()
}

/// Waits until the watcher has polled `more` more times.
fn wait_checks(node: &mut Node, more: u64, within: Duration) {
    let start = node.command("drift")["checks"].as_u64().unwrap_or(0);
    let ok = wait_until(within, || {
        node.command("drift")["checks"].as_u64().unwrap_or(0) >= start + more
    });
    assert!(ok, "the watcher of {} stopped polling", node.id);
}

#[test]
fn shifted_rows_retrain_once_and_similar_rows_do_not() {
    let dir = TestDir::new("drift");
    let shards: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let p = dir.path().join(format!("n{i}.csv"));
            gen(&p, 2000, i, 0.0, false);
            p
        })
        .collect();
    let drift = "check_interval_ms = 500\ncooldown_ms = 0";
    let mut cluster = Cluster::start_with("drift-cluster", 2, |spec| {
        let i: usize = spec.id[1..].parse().expect("n<i>");
        let data = data_toml(&shards[i - 1], drift);
        spec.toml(&data)
    });
    let v1 = wait_for_model(cluster.node("n1"), Duration::from_secs(20));
    let v2 = wait_for_model(cluster.node("n2"), Duration::from_secs(20));

    // 500 rows from the same distribution: reported, no drift, no retrain.
    gen(&shards[0], 500, 77, 0.0, true);
    let mut report = Value::Null;
    let seen = wait_until(Duration::from_secs(10), || {
        report = cluster.node("n1").command("drift");
        report["rows_since_training"] == 500 && report["report"]["rows"] == 500
    });
    assert!(seen, "the new rows were not compared: {report}");
    assert_eq!(report["report"]["dataset_drift"], false, "{report}");
    assert_eq!(version(cluster.node("n1")), Some(v1));

    // 500 shifted rows: one local retrain, within two check intervals of the poll that sees them.
    gen(&shards[0], 500, 78, 1.0, true);
    let appended = Instant::now();
    let retrained = wait_until(Duration::from_secs(10), || {
        version(cluster.node("n1")) == Some(v1 + 1)
    });
    assert!(
        retrained,
        "no retrain: {}",
        cluster.node("n1").command("drift")
    );
    eprintln!("retrained {:?} after the shifted rows", appended.elapsed());
    let report = cluster.node("n1").command("drift");
    assert_eq!(report["report"]["dataset_drift"], true, "{report}");
    assert!(cluster.node("n1").wait_for_log(
        &format!("model v{v1} → v{}: local retrain, drift in", v1 + 1),
        Duration::from_secs(2)
    ));

    // Exactly one: the new model trained on the shifted rows; later polls find nothing new.
    wait_checks(cluster.node("n1"), 3, Duration::from_secs(10));
    assert_eq!(version(cluster.node("n1")), Some(v1 + 1));
    assert_eq!(
        cluster.node("n1").command("drift")["rows_since_training"],
        0
    );
    // The other node is unaffected.
    assert_eq!(version(cluster.node("n2")), Some(v2));
}

/// A single node on a shard big enough that training takes a while.
fn big_node(name: &str, rows: usize) -> (Node, PathBuf) {
    let dir = TestDir::new(name);
    let shard = dir.path().join("big.csv");
    gen(&shard, rows, 5, 0.0, false);
    let spec = NodeSpec::new("n1").toml(&data_toml(&shard, "enabled = false"));
    let mut node = Node::start(&dir, spec);
    wait_for_model(&mut node, Duration::from_secs(60));
    let state = dir.path().join("n1-state");
    (node, state)
}

/// `ctl ... train local` on its own thread (it returns when the training ends).
fn retrain_in_background(node: &Node) -> thread::JoinHandle<crate::util::Ran> {
    let addr = node.addr();
    let auth = [
        "--cluster",
        crate::util::CLUSTER,
        "--secret",
        crate::util::SECRET,
    ];
    thread::spawn(move || crate::util::ctl(addr, &auth, &["train", "local"]))
}

fn row() -> String {
    r#"{"x0": 0.5, "x1": 0.2, "x2": 0.9, "x3": 0.4, "x4": 0.7, "x5": 0.1, "x6": 0.3, "x7": 0.8}"#
        .to_string()
}

#[test]
fn predictions_never_wait_for_training() {
    let (mut node, _state) = big_node("double-buffer", 60_000);
    let before = version(&mut node).expect("a model");
    let retrain = retrain_in_background(&node);
    let mut answers: Vec<(u64, Duration)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after_swap = 0;
    while Instant::now() < deadline && after_swap < 20 {
        let t0 = Instant::now();
        let p = node.command(&format!("predict --explain {}", row()));
        let took = t0.elapsed();
        assert_eq!(p["ok"], true, "{p}");
        assert_eq!(p["answered"], 1, "{p}");
        let v = p["nodes"][0]["version"].as_u64().expect("version");
        answers.push((v, took));
        if retrain.is_finished() {
            after_swap += 1;
        }
    }
    let ran = retrain.join().expect("ctl thread");
    assert_eq!(ran.code, Some(0), "{ran}");
    let versions: Vec<u64> = answers.iter().map(|(v, _)| *v).collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "versions went back: {versions:?}"
    );
    assert!(
        versions.contains(&before),
        "never answered by the old model"
    );
    assert_eq!(
        versions.last(),
        Some(&(before + 1)),
        "never answered by the new model"
    );
    let during = versions.iter().filter(|&&v| v == before).count();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!(
        "{} predictions during the retrain ({during} by the old model); slowest {slowest:?}",
        answers.len()
    );
}

#[test]
fn a_half_written_line_is_read_once_complete() {
    let dir = TestDir::new("half-line");
    let shard = dir.path().join("s.csv");
    gen(&shard, 500, 9, 0.0, false);
    let spec =
        NodeSpec::new("n1").toml(&data_toml(&shard, "check_interval_ms = 200\nmin_rows = 1"));
    let mut node = Node::start(&dir, spec);
    wait_for_model(&mut node, Duration::from_secs(20));

    let text = std::fs::read_to_string(&shard).expect("shard");
    let last = text.lines().last().expect("a row").to_string();
    let (head, tail) = last.split_at(last.len() / 2);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&shard)
        .expect("open");
    use std::io::Write;
    f.write_all(head.as_bytes()).expect("write half");
    f.flush().expect("flush");
    wait_checks(&mut node, 3, Duration::from_secs(10));
    let d = node.command("drift");
    assert_eq!(d["rows_since_training"], 0, "{d}");
    assert_eq!(d["error"], Value::Null, "{d}");

    f.write_all(format!("{tail}\n").as_bytes())
        .expect("write the rest");
    f.flush().expect("flush");
    let mut d = Value::Null;
    let read = wait_until(Duration::from_secs(5), || {
        d = node.command("drift");
        d["rows_since_training"] == 1
    });
    assert!(read, "{d}");
    assert_eq!(d["error"], Value::Null, "{d}");
    assert_eq!(d["report"]["rows"], 1, "{d}");
}
