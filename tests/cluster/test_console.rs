//! The console: a script piped into `--json` gets exactly one JSON line per command; end of
//! input leaves the node running; `quit` (console or `ctl`) and SIGTERM stop it with exit code 0,
//! and its peers see it leave.

use std::time::Duration;

use serde_json::Value;

use crate::util::{run, wait_until, Cluster, Node, NodeSpec, TestDir};

#[test]
fn a_piped_script_gets_one_json_line_per_command() {
    let dir = TestDir::new("console-script");
    let config = dir.write("n1.toml", &NodeSpec::new("n1").to_toml(dir.path()));
    let config = config.to_string_lossy().into_owned();

    // printf 'status\nbogus\npeers\nquit\n' | ensemble-node --config ... --json
    let ran = run(
        &["--config", &config, "--json"],
        &[],
        "status\nbogus\npeers\nquit\n",
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(0), "{ran}");
    let lines = ran.lines();
    assert_eq!(lines.len(), 3, "expected three lines: {ran}");
    let answers: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    assert_eq!(answers[0]["ok"], true, "{ran}");
    assert_eq!(answers[0]["node"], "n1", "{ran}");
    assert_eq!(answers[0]["members"], 1, "{ran}");

    assert_eq!(answers[1]["ok"], false, "{ran}");
    let error = answers[1]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("bogus") && error.contains("help"),
        "the error should name the command and what exists: {ran}"
    );

    assert_eq!(answers[2]["ok"], true, "{ran}");
    assert_eq!(answers[2]["peers"], Value::Array(vec![]), "{ran}");

    // Logs go to stderr only.
    assert!(ran.stderr.contains("n1"), "no log on stderr: {ran}");
}

#[test]
fn end_of_input_leaves_the_node_running_until_ctl_quit() {
    let dir = TestDir::new("console-eof");
    let mut node = Node::start(&dir, NodeSpec::new("n1"));
    node.close_console();
    // A node that stopped at end of input would be gone within milliseconds.
    let exited = wait_until(Duration::from_secs(1), || !node.is_running());
    assert!(!exited, "the node stopped when its stdin closed");
    let ran = node.ctl(&["status"]);
    assert_eq!(ran.code, Some(0), "{ran}");

    let ran = node.ctl(&["quit"]);
    assert_eq!(ran.code, Some(0), "{ran}");
    let status = node.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after ctl quit"
    );
}

#[test]
fn quit_and_sigterm_leave_the_cluster_cleanly() {
    let mut cluster = Cluster::start("console-leave", 3);

    let status = cluster.node("n3").quit();
    assert_eq!(status.code(), Some(0), "n3 after quit: {status}");
    cluster.node("n2").terminate();
    let status = cluster.node("n2").wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "n2 after SIGTERM");

    let n1 = cluster.node("n1");
    let mut last = Vec::new();
    let left = wait_until(Duration::from_secs(3), || {
        last = n1.peer_states();
        last.iter().all(|(_, state)| state == "left")
    });
    assert!(left, "n1 should see n2 and n3 left: {last:?}");
    let status = n1.status();
    assert_eq!(status["members"], 1, "{status}");
    assert_eq!(status["peers_up"], 0, "{status}");
}
