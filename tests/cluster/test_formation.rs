//! Three nodes form a cluster: each counts three members and sees the other two up, at the
//! addresses they listen on; `ctl` answers what the console answers.

use std::collections::BTreeMap;

use crate::util::Cluster;

#[test]
fn three_nodes_form_a_cluster() {
    let mut cluster = Cluster::start("formation", 3);
    let addrs: BTreeMap<String, String> = cluster
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.addr().to_string()))
        .collect();

    for node in cluster.nodes.iter_mut() {
        let status = node.status();
        assert_eq!(status["node"], node.id.as_str(), "{status}");
        assert_eq!(status["cluster"], crate::util::CLUSTER, "{status}");
        assert_eq!(status["listen"], addrs[&node.id].as_str(), "{status}");
        assert_eq!(status["members"], 3, "{}: {status}", node.id);
        assert_eq!(status["peers_up"], 2, "{}: {status}", node.id);
        assert_eq!(status["peers_down"], 0, "{}: {status}", node.id);

        let peers = node.command("peers");
        let peers = peers["peers"].as_array().expect("a peers list");
        let mut seen: Vec<&str> = Vec::new();
        for peer in peers {
            let id = peer["id"].as_str().expect("peer id");
            assert_ne!(id, node.id, "{} lists itself as a peer", node.id);
            assert_eq!(peer["state"], "up", "{} sees {peer}", node.id);
            assert_eq!(peer["addr"], addrs[id].as_str(), "{} sees {peer}", node.id);
            seen.push(id);
        }
        seen.sort();
        let others: Vec<&str> = addrs
            .keys()
            .map(String::as_str)
            .filter(|id| *id != node.id)
            .collect();
        assert_eq!(seen, others, "{} sees the wrong peers", node.id);
    }

    // A one-shot client gets the same view as the console.
    let ran = cluster.node("n2").ctl(&["status"]);
    assert_eq!(ran.code, Some(0), "{ran}");
    let status = ran.json();
    assert_eq!(status["ok"], true, "{ran}");
    assert_eq!(status["node"], "n2", "{ran}");
    assert_eq!(status["members"], 3, "{ran}");
    assert_eq!(status["peers_up"], 2, "{ran}");

    let ran = cluster.node("n3").ctl(&["peers"]);
    assert_eq!(ran.code, Some(0), "{ran}");
    assert_eq!(
        ran.json()["peers"].as_array().map(Vec::len),
        Some(2),
        "{ran}"
    );
}
