//! A fourth node started with one seed (not the first node: any member will do) joins a running
//! three-node cluster, and within 3 s all four count four members, all up.

use std::time::Duration;

use crate::util::{Cluster, NodeSpec};

#[test]
fn a_fourth_node_joins_through_one_seed() {
    let mut cluster = Cluster::start("join", 3);
    let seed = cluster.node("n3").addr();

    cluster.add(NodeSpec::new("n4").seeds(&[seed]));
    let took = cluster.wait_formed(Duration::from_secs(3));
    eprintln!("four members seen by all {took:?} after n4 started");

    for node in cluster.nodes.iter_mut() {
        let status = node.status();
        assert_eq!(status["members"], 4, "{}: {status}", node.id);
        assert_eq!(status["peers_up"], 3, "{}: {status}", node.id);
    }
    let n4 = cluster.node("n4").addr().to_string();
    let peers = cluster.node("n1").command("peers");
    let listed = peers["peers"]
        .as_array()
        .expect("a peers list")
        .iter()
        .any(|p| p["id"] == "n4" && p["addr"] == n4.as_str());
    assert!(listed, "n1 does not list n4 at {n4}: {peers}");
}
