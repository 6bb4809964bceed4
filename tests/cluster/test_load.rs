//! Node loss under load: a client sends predictions to n1 without pause while n3 is killed and
//! restarted, or frozen and thawed. No request fails; answers come from the nodes left, and from
//! all four again once n3 is back, with its persisted model.

use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::shards::{house_prices, letter, shard};
use crate::util::{run, wait_until, Cluster, CLUSTER, SECRET};

/// Runs `bench` against `addr` for `ms` milliseconds on its own thread.
fn load(addr: std::net::SocketAddr, ms: u64) -> thread::JoinHandle<Value> {
    let rows = shard("house_prices/test.csv");
    thread::spawn(move || {
        let addr = addr.to_string();
        let ms = ms.to_string();
        let ran = run(
            &[
                "bench",
                &addr,
                "--cluster",
                CLUSTER,
                "--secret",
                SECRET,
                "--rows-from",
                &rows,
                "--requests",
                "100000000",
                "--in-flight",
                "4",
                "--duration-ms",
                &ms,
                "--timeout-ms",
                "3000",
            ],
            &[],
            "",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            Duration::from_secs(60),
        );
        assert!(ran.code.is_some(), "bench did not finish: {ran}");
        ran.json()
    })
}

fn trained_cluster(name: &str) -> Cluster {
    let mut cluster = Cluster::start_with(name, 4, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data)
    });
    let t = cluster.at(0).command("train");
    assert_eq!(t["ok"], true, "{t}");
    cluster
}

#[test]
fn no_request_fails_while_a_node_is_killed_and_restarted() {
    let mut cluster = trained_cluster("load-kill");
    let version = cluster.node("n3").status()["model_version"].clone();
    let bench = load(cluster.node("n1").addr(), 8_000);
    // Kill n3 only once the bench is connected.
    assert!(cluster
        .node("n1")
        .wait_for_log("client connected", Duration::from_secs(10)));

    cluster.node("n3").kill();
    assert!(wait_until(Duration::from_secs(3), || {
        cluster.node("n1").peer_state("n3").as_deref() == Some("down")
    }));
    cluster.node("n3").restart();
    cluster.wait_formed(Duration::from_secs(3));
    let report = bench.join().expect("bench thread");
    eprintln!("bench during kill and restart: {report}");

    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["requests"].as_u64().is_some_and(|n| n > 100),
        "{report}"
    );
    assert!(
        report["answered"]["3"].as_u64().is_some_and(|n| n > 0),
        "never 3: {report}"
    );
    assert_eq!(report["answered_last"], 4, "not back to 4: {report}");
    let status = cluster.node("n3").status();
    assert_eq!(status["model_version"], version, "n3 retrained: {status}");
}

#[test]
fn a_frozen_node_never_holds_up_predictions() {
    let mut cluster = trained_cluster("load-pause");
    let bench = load(cluster.node("n1").addr(), 7_000);
    assert!(cluster
        .node("n1")
        .wait_for_log("client connected", Duration::from_secs(10)));
    cluster.node("n3").pause();
    // Frozen: first suspect, then down (its sockets stay open, it just stops answering probes).
    let down = wait_until(Duration::from_secs(5), || {
        cluster.node("n1").peer_state("n3").as_deref() == Some("down")
    });
    cluster.node("n3").resume();
    assert!(down, "a frozen n3 was not seen down");
    cluster.wait_formed(Duration::from_secs(5));
    let report = bench.join().expect("bench thread");
    eprintln!("bench during pause: {report}");
    // Every request was answered within the bench's 3 s deadline (a late one counts as an
    // error), by the three others while n3 was frozen.
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["answered"]["3"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert_eq!(
        report["answered_last"], 4,
        "n3 does not answer again: {report}"
    );
}
