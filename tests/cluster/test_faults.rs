//! Supervision: a failing model actor is restarted and the node keeps answering with the same
//! model; a failing peer actor is restarted and its link rebuilt. Fault injection is off unless
//! the config turns it on.

use std::time::Duration;

use crate::shards::{csv_row_json, house_prices, letter};
use crate::util::{wait_until, Cluster, COMMAND_TIMEOUT};

#[test]
fn failed_actors_are_restarted_and_rebuild_their_state() {
    let mut cluster = Cluster::start_with("faults", 3, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data).toml("[testing]\nfaults = true")
    });
    let row = csv_row_json("house_prices/test.csv", 3);
    // Wait for the models trained at start.
    assert!(wait_until(Duration::from_secs(20), || {
        cluster.at(1).command(&format!("predict {row}"))["answered"] == 3
    }));
    let version = cluster.node("n2").status()["model_version"].clone();

    let f = cluster.node("n2").command("fault model");
    assert_eq!(f["ok"], true, "{f}");
    assert!(cluster
        .node("n2")
        .wait_for_log("model actor restarting", Duration::from_secs(1)));
    assert_eq!(cluster.node("n2").status()["restarts"]["model"], 1);
    let p = cluster
        .node("n2")
        .command(&format!("predict --explain {row}"));
    assert_eq!(p["ok"], true, "{p}");
    let own = p["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == "n2"))
        .cloned()
        .unwrap_or_else(|| panic!("n2 did not answer: {p}"));
    assert_eq!(own["version"], version, "{p}");
    // The restarted actor still serves training.
    let t = cluster.node("n2").command("train local");
    assert_eq!(t["ok"], true, "{t}");

    // A link to n3 is made each time n1's peer actor for it (re)starts: count them.
    let links_to_n3 = |log: String| {
        log.lines()
            .filter(|l| l.contains("Up: linked") && l.contains("peer=n3"))
            .count()
    };
    let before = links_to_n3(cluster.node("n1").log());
    assert!(before >= 1, "n1 never linked to n3");
    let f = cluster.node("n1").command("fault peer n3");
    assert_eq!(f["ok"], true, "{f}");
    assert!(cluster
        .node("n1")
        .wait_for_log("peer n3 actor restarting", Duration::from_secs(2)));
    assert!(
        wait_until(Duration::from_secs(3), || links_to_n3(
            cluster.node("n1").log()
        ) > before
            && cluster.node("n1").peer_state("n3").as_deref() == Some("up")),
        "the link to n3 was not rebuilt"
    );
    assert_eq!(cluster.node("n1").status()["restarts"]["peer"], 1);
    let p = cluster.node("n1").command(&format!("predict {row}"));
    assert_eq!(p["answered"], 3, "{p}");
}

#[test]
fn fault_injection_is_off_by_default() {
    let mut cluster = Cluster::start("faults-off", 1);
    let f = cluster.at(0).command("fault model");
    assert_eq!(f["ok"], false, "{f}");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("[testing]")));
}

#[test]
fn an_actor_that_keeps_failing_stops_the_node_cleanly() {
    let mut cluster = Cluster::start_with("fault-loop", 1, |spec| {
        spec.toml("[testing]\nfaults = true")
    });
    let node = cluster.at(0);
    // The budget is 5 restarts in 10 s: the sixth failure stops the node.
    for i in 1..=6 {
        match node.try_command("fault model", COMMAND_TIMEOUT) {
            Ok(f) => assert_eq!(f["ok"], true, "{f}"),
            // The sixth failure may stop the node before its console prints the answer.
            Err(e) if i == 6 => eprintln!("sixth fault: {e}"),
            Err(e) => node.fail(&e),
        }
        assert!(node.wait_for_log("injected fault", Duration::from_secs(2)));
    }
    let status = node
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| node.fail("still running after six failures in a row"));
    assert_eq!(status.code(), Some(3), "{status}");
    let log = node.log();
    assert!(log.contains("too many restarts"));
    assert_eq!(
        log.matches("model actor panicked: injected fault").count(),
        6,
        "{log}"
    );
}
