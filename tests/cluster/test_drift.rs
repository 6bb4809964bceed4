//! Local retraining on drift. A node notices rows appended to its shard: rows like the ones it
//! trained on change nothing; shifted rows trigger exactly one local retrain, on that node only.
//! While a node retrains, every prediction is answered by the old model until the swap and by the
//! new one after. (A node killed while saving a model: test_supervision.rs.)
//! A half-written last line is not an error: it is read once complete.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::gen;
use crate::util::{quote, run, wait_until, Cluster, Node, NodeSpec, TestDir};

/// `[data]` + `[drift]` for a synthetic shard.
pub(crate) fn data_toml(shard: &Path, drift: &str) -> String {
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
    assert_eq!(report["report"]["alpha"], 0.01, "{report}");
    let features = report["report"]["features"].as_array().expect("features");
    assert!(
        features
            .iter()
            .all(|f| f["p_adjusted"].as_f64() > Some(0.01)),
        "{report}"
    );
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
    let mut report = Value::Null;
    let decided = wait_until(Duration::from_secs(5), || {
        report = cluster.node("n1").command("drift");
        report["swap"] != Value::Null
    });
    assert!(decided, "no swap decision: {report}");
    assert_eq!(report["report"]["dataset_drift"], true, "{report}");
    // The new model earned its place: no worse on the held-out shifted rows.
    let swap = &report["swap"];
    assert_eq!(swap["accepted"], true, "{report}");
    assert!(swap["holdout_rows"].as_u64() > Some(100), "{report}");
    assert!(
        swap["challenger"].as_f64() <= swap["current"].as_f64(),
        "{report}"
    );
    eprintln!("swap: {swap}");
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
    let addr = node.addr().to_string();
    // A generous deadline: on a loaded machine the training alone can take longer than ctl's
    // usual 10 s, and a late answer is not what this test is about.
    thread::spawn(move || {
        let args = [
            "ctl",
            addr.as_str(),
            "--timeout-ms",
            "120000",
            "--cluster",
            crate::util::CLUSTER,
            "--secret",
            crate::util::SECRET,
            "train",
            "local",
        ];
        run(
            &args,
            &[],
            "",
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            Duration::from_secs(130),
        )
    })
}

fn row() -> String {
    r#"{"x0": 0.5, "x1": 0.2, "x2": 0.9, "x3": 0.4, "x4": 0.7, "x5": 0.1, "x6": 0.3, "x7": 0.8}"#
        .to_string()
}

/// Predictions are answered by the old model while the node trains: each prediction is bracketed
/// by two `status` calls, and those where both said `training: true` were answered during the
/// training. There must be some, and the slowest of them must be far quicker than the training.
#[test]
fn predictions_never_wait_for_training() {
    let (mut node, _state) = big_node("double-buffer", 60_000);
    let before = version(&mut node).expect("a model");
    let retrain = retrain_in_background(&node);
    let mut answers: Vec<(u64, Duration)> = Vec::new();
    let mut during: Vec<Duration> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut after_swap = 0;
    while Instant::now() < deadline && after_swap < 20 {
        let training_before = node.status()["training"] == true;
        let t0 = Instant::now();
        let p = node.command(&format!("predict --explain {}", row()));
        let took = t0.elapsed();
        let training_after = node.status()["training"] == true;
        assert_eq!(p["ok"], true, "{p}");
        assert_eq!(p["answered"], 1, "{p}");
        let v = p["nodes"][0]["version"].as_u64().expect("version");
        answers.push((v, took));
        if training_before && training_after {
            assert_eq!(v, before, "answered by a model not yet trained: {p}");
            during.push(took);
        }
        if retrain.is_finished() {
            after_swap += 1;
        }
    }
    let ran = retrain.join().expect("ctl thread");
    assert_eq!(ran.code, Some(0), "{ran}");
    let trained: Value = serde_json::from_str(ran.stdout.trim()).expect("train local answers JSON");
    let train_ms = trained["train_ms"].as_u64().expect("train_ms");
    let versions: Vec<u64> = answers.iter().map(|(v, _)| *v).collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "versions went back: {versions:?}"
    );
    assert_eq!(
        versions.last(),
        Some(&(before + 1)),
        "never answered by the new model"
    );
    assert!(
        !during.is_empty(),
        "no prediction was answered while status said training (training took {train_ms} ms)"
    );
    let slowest = during.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(train_ms / 4),
        "a prediction during the training took {slowest:?}, the training {train_ms} ms"
    );
    eprintln!(
        "{} predictions answered while training ({train_ms} ms); slowest {slowest:?}",
        during.len()
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

/// With drift detection off a node builds no drift reference. Restarted with it on, the
/// watcher says so instead of checking, until a training builds one.
#[test]
fn a_model_trained_with_drift_off_has_no_reference_until_trained_again() {
    let dir = TestDir::new("no-reference");
    let shard = dir.path().join("s.csv");
    gen(&shard, 500, 9, 0.0, false);
    let off = NodeSpec::new("n1").toml(&data_toml(&shard, "enabled = false"));
    let mut node = Node::start(&dir, off);
    let v1 = wait_for_model(&mut node, Duration::from_secs(20));
    let d = node.command("drift");
    assert!(
        d["error"]
            .as_str()
            .is_some_and(|e| e.contains("watches no shard")),
        "{d}"
    );

    let on = NodeSpec::new("n1").toml(&data_toml(&shard, "check_interval_ms = 200\nmin_rows = 1"));
    dir.write("n1.toml", &on.to_toml(dir.path()));
    node.restart();
    assert_eq!(
        version(&mut node),
        Some(v1),
        "the persisted model was not kept"
    );
    let text = std::fs::read_to_string(&shard).expect("shard");
    let last = text.lines().last().expect("a row").to_string();
    append(&shard, &format!("{last}\n"));
    let mut d = Value::Null;
    let said = wait_until(Duration::from_secs(10), || {
        d = node.command("drift");
        d["error"]
            .as_str()
            .is_some_and(|e| e.contains("no drift reference"))
    });
    assert!(said, "{d}");

    let trained = node.command("train");
    assert_eq!(trained["ok"], true, "{trained}");
    append(&shard, &format!("{last}\n"));
    let checked = wait_until(Duration::from_secs(10), || {
        d = node.command("drift");
        d["error"].is_null() && d["report"]["rows"].as_u64() >= Some(1)
    });
    assert!(checked, "{d}");
}

fn append(shard: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(shard)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

/// A malformed appended row is set aside and counted; the good rows after it are still checked
/// and their drift found.
#[test]
fn a_malformed_row_is_skipped_and_drift_still_found() {
    let dir = TestDir::new("bad-row");
    let shard = dir.path().join("s.csv");
    gen(&shard, 2000, 3, 0.0, false);
    let drift = "check_interval_ms = 200\ncooldown_ms = 600000";
    let spec = NodeSpec::new("n1").toml(&data_toml(&shard, drift));
    let mut node = Node::start(&dir, spec);
    let v1 = wait_for_model(&mut node, Duration::from_secs(20));

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&shard)
        .expect("open");
    use std::io::Write;
    f.write_all(b"1,2,3\n").expect("write a ragged row");
    f.flush().expect("flush");
    let mut d = Value::Null;
    let counted = wait_until(Duration::from_secs(5), || {
        d = node.command("drift");
        d["bad_rows"] == 1
    });
    assert!(counted, "{d}");
    assert_eq!(d["rows_since_training"], 0, "{d}");
    assert!(
        d["bad_row_error"]
            .as_str()
            .is_some_and(|e| e.contains("ragged")),
        "{d}"
    );

    gen(&shard, 300, 4, 1.0, true);
    let found = wait_until(Duration::from_secs(10), || {
        d = node.command("drift");
        d["report"]["rows"] == 300
    });
    assert!(found, "the rows after the bad one were not checked: {d}");
    assert_eq!(d["report"]["dataset_drift"], true, "{d}");
    assert_eq!(d["report_model_version"], v1, "{d}");
    assert_eq!(d["bad_rows"], 1, "{d}");
    assert_eq!(d["rows_since_training"], 300, "{d}");
}

/// A drift retrain whose model is worse on the held-out recent rows is refused: rows whose label
/// contradicts the features (y → 40 − y) are appended, then rows like the training data. The
/// drift is real (the label moved), but the new model, trained partly on the contradicting rows,
/// does worse than the current one on the last rows appended (the held-out slice): the current
/// model keeps answering and `drift` says why.
#[test]
fn a_worse_retrained_model_is_refused() {
    let dir = TestDir::new("refused-swap");
    let shard = dir.path().join("s.csv");
    gen(&shard, 2000, 11, 0.0, false);
    let drift = "check_interval_ms = 200\nmin_rows = 700\ncooldown_ms = 600000";
    let spec = NodeSpec::new("n1").toml(&data_toml(&shard, drift));
    let mut node = Node::start(&dir, spec);
    let v1 = wait_for_model(&mut node, Duration::from_secs(20));

    append_contradicting(&dir, &shard, 12);

    let mut d = Value::Null;
    let decided = wait_until(Duration::from_secs(60), || {
        d = node.command("drift");
        d["swap"] != Value::Null
    });
    assert!(decided, "no swap decision: {d}");
    assert_eq!(d["report"]["dataset_drift"], true, "{d}");
    let swap = &d["swap"];
    assert_eq!(swap["accepted"], false, "{d}");
    assert_eq!(swap["holdout_rows"], 210, "{d}");
    assert!(
        swap["challenger"].as_f64() > swap["current"].as_f64(),
        "{d}"
    );
    assert_eq!(d["swap_model_version"], v1, "{d}");
    eprintln!("refused: {swap}");
    // The current model still answers, and nothing replaced it on disk.
    assert!(node.wait_for_log(&format!("model v{v1} kept"), Duration::from_secs(5)));
    assert_eq!(version(&mut node), Some(v1));
    let p = node.command(&format!("predict --explain {}", row()));
    assert_eq!(p["nodes"][0]["version"], v1, "{p}");
    node.restart();
    assert_eq!(version(&mut node), Some(v1), "a refused model was saved");
}

/// Appends 700 rows in one write: the first 490 with the label turned around (y → 40 − y), the
/// last 210 as drawn.
fn append_contradicting(dir: &TestDir, shard: &Path, seed: u64) {
    let extra = dir.path().join(format!("extra-{seed}.csv"));
    gen(&extra, 700, seed, 0.0, false);
    let text = std::fs::read_to_string(&extra).expect("extra rows");
    let mut rows = String::new();
    for (i, line) in text.lines().skip(1).enumerate() {
        if i < 490 {
            let (x, y) = line.rsplit_once(',').expect("a label");
            let y: f64 = y.parse().expect("a number");
            rows.push_str(&format!("{x},{}\n", 40.0 - y));
        } else {
            rows.push_str(line);
            rows.push('\n');
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(shard)
        .expect("open");
    use std::io::Write;
    f.write_all(rows.as_bytes()).expect("append");
    f.flush().expect("flush");
}

/// Drift found while a drift retrain runs is answered once that retrain ends, though no row comes
/// after it: a first batch of contradicting rows starts a retrain whose model is refused; a second
/// batch, read while that retrain runs, starts another as soon as the first is refused.
#[test]
fn drift_seen_during_a_retrain_is_answered_after_it() {
    let dir = TestDir::new("drift-during-retrain");
    let shard = dir.path().join("s.csv");
    gen(&shard, 2000, 11, 0.0, false);
    let drift = "check_interval_ms = 100\nmin_rows = 700\ncooldown_ms = 0";
    // A forest on one thread: a retrain takes long enough for the second batch to come during it.
    let model = "[model]\nkind = \"forest\"\nn_trees = 400\nthreads = 1\n";
    let toml = format!("{}\n{model}", data_toml(&shard, drift));
    let mut node = Node::start(&dir, NodeSpec::new("n1").toml(&toml));
    let v1 = wait_for_model(&mut node, Duration::from_secs(60));

    append_contradicting(&dir, &shard, 12);
    let mut d = Value::Null;
    let began = wait_until(Duration::from_secs(30), || {
        d = node.command("drift");
        d["retrains"].as_u64() == Some(1)
    });
    assert!(began, "no drift retrain: {d}");
    append_contradicting(&dir, &shard, 13);
    let read = wait_until(Duration::from_secs(30), || {
        d = node.command("drift");
        d["rows_since_training"].as_u64() >= Some(1400)
    });
    assert!(read, "the second batch was not read: {d}");
    assert_eq!(
        d["swap"],
        Value::Null,
        "the first retrain ended before the second batch was read; nothing to test: {d}"
    );
    assert!(node.wait_for_log(&format!("model v{v1} kept"), Duration::from_secs(120)));
    let answered = wait_until(Duration::from_secs(30), || {
        d = node.command("drift");
        d["retrains"].as_u64() >= Some(2)
    });
    assert!(
        answered,
        "the drift seen during the refused retrain was not answered: {d}"
    );
    assert_eq!(d["rows_since_training"], 1400, "more rows came: {d}");
}
