//! The membership protocol on 1,000 simulated nodes (virtual time, 1 % packet loss, a join, a
//! kill, a stopped node), and what its cost per node does as the cluster grows. The simulation is
//! deterministic: a failure here replays with the seed it prints.

use std::time::Duration;

use ensemble_cluster::cluster::swim::sim::{run, Report, SimConfig};

fn play(nodes: usize, seed: u64, tune: impl FnOnce(&mut SimConfig)) -> Report {
    let mut cfg = SimConfig::new(nodes, seed);
    tune(&mut cfg);
    let report = run(cfg);
    eprintln!(
        "{}",
        serde_json::to_string(&report).expect("a report serialises")
    );
    report
}

#[test]
fn a_thousand_nodes_at_one_percent_loss() {
    let r = play(1000, 1, |_| {});
    let join = r.join_spread_s.expect("the join reached every node");
    assert!(join < 2.0, "join took {join} s");
    let death = r.death_spread_s.expect("every node saw the death");
    assert!(death < 10.0, "death took {death} s to reach all");
    assert_eq!(r.false_suspicions, 0, "suspicions of sound nodes");
    assert_eq!(r.false_deaths, 0);
    // Stopped for 5 s, longer than the suspicion timeout: declared dead, back within seconds.
    assert!(r.pause_declared_dead_by > 0);
    let back = r.pause_recovery_s.expect("the stopped node came back");
    assert!(back < 3.0, "took {back} s to be seen alive again");
    // A probe and its ack per half second, small news: tens of bytes, not a member list.
    assert!(
        r.idle_bytes_per_node_s < 60.0,
        "{}",
        r.idle_bytes_per_node_s
    );
    assert!(r.bytes_per_node_s < 150.0, "{}", r.bytes_per_node_s);
}

#[test]
fn the_cost_per_node_does_not_grow_with_the_cluster() {
    let short = |c: &mut SimConfig| c.duration = Duration::from_secs(55);
    let small = play(100, 2, short);
    let large = play(1000, 2, short);
    let ratio = large.idle_bytes_per_node_s / small.idle_bytes_per_node_s;
    assert!(
        ratio < 1.3,
        "idle bytes per node grew {ratio}x from 100 to 1,000"
    );
    let ratio = large.bytes_per_node_s / small.bytes_per_node_s;
    assert!(
        ratio < 2.0,
        "bytes per node grew {ratio}x from 100 to 1,000"
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let strip = |mut r: Report| {
        r.wall_s = 0.0;
        serde_json::to_string(&r).expect("a report serialises")
    };
    let a = strip(play(200, 7, |_| {}));
    let b = strip(play(200, 7, |_| {}));
    assert_eq!(a, b);
    assert_ne!(a, strip(play(200, 8, |_| {})), "another seed, another run");
}

#[test]
fn a_partition_heals() {
    let r = play(300, 3, |c| c.partition = 0.1);
    let heal = r
        .partition_heal_s
        .expect("every node sees every other alive again");
    assert!(heal < 30.0, "took {heal} s");
    assert_eq!(r.false_suspicions, 0, "before the partition");
}

#[test]
fn a_short_stop_is_refuted_not_taken_for_death() {
    // 1 s stopped: suspected by some, refuted on waking, well within the 1.5 s minimum timeout.
    let r = play(100, 4, |c| c.pause = Duration::from_secs(1));
    assert_eq!(r.pause_declared_dead_by, 0);
    assert!(r.pause_recovery_s.is_some());
}
