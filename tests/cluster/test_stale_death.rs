//! Stale news of a death: a member tells n1 that n2, which n1 hears from all the time (it asks
//! n2 for every prediction of a steady load), has failed — what a member back from a cut link
//! does with the deaths it declared while cut off. n1 believes the membership protocol, but keeps
//! the link to a peer that is still talking on it until the peer refutes: no answer of the load
//! misses n2, and n1 never takes n2 for down.

use std::path::Path;
use std::time::Duration;

use ensemble_cluster::cluster::swim::wire::{self, Incarnation, Packet, Rumor, Status};
use ensemble_cluster::net::{self, Greeting, Secret};
use ensemble_cluster::protocol::{Message, NodeInfo, Role};
use futures::SinkExt;

use crate::load::Load;
use crate::shards::{house_prices, letter, shard};
use crate::util::{Cluster, CLUSTER, SECRET};

/// What n1 logs when it keeps the link of a peer declared failed.
const KEPT: &str = "link kept while it refutes";

#[test]
fn a_peer_still_talking_keeps_its_link_through_stale_news_of_its_death() {
    let mut cluster = Cluster::start_with("stale-death", 2, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data)
    });
    let trained = cluster.at(0).command("train");
    assert_eq!(trained["ok"], true, "{trained}");
    let n1 = cluster.node("n1").addr();
    let rows = shard("house_prices/test.csv");
    let load = Load::start(None, &[], n1, Path::new(&rows), 6000, cluster.dir.path());
    assert!(
        cluster
            .node("n1")
            .wait_for_log("client connected", Duration::from_secs(10)),
        "the load never connected"
    );

    let greeting = Greeting {
        cluster: CLUSTER.into(),
        secret: Secret::new(Some(SECRET.into())),
        max_frame_bytes: 1 << 20,
        timeout: Duration::from_secs(5),
        tls: None,
    };
    let node = cluster.node("n1");
    let told = actix_rt::System::new().block_on(async {
        let gossiper = NodeInfo {
            id: "n9".into(),
            addr: "127.0.0.1:9".into(),
            incarnation: 1,
        };
        let mut dialed = net::dial(&n1.to_string(), Role::Member(gossiper), &greeting, None)
            .await
            .expect("a member with the secret is let in");
        let run = dialed
            .members
            .iter()
            .find(|m| m.id == "n2")
            .map(|m| m.incarnation)
            .expect("n1's welcome lists n2");
        // n2's own run, at a count above any it has reached: news n1 must believe.
        let news = Rumor {
            id: "n2".to_string(),
            inc: Incarnation { run, count: 3 },
            status: Status::Dead,
            meta: None,
        };
        let packet: Packet<String, String> = Packet::Gossip { rumors: vec![news] };
        let packet = wire::encode(&packet).expect("encoded");
        dialed
            .conn
            .send(Message::Membership { packet })
            .await
            .expect("gossip sent");
        // Either way n1 acts on it within a membership tick; the connection stays open meanwhile.
        node.wait_for_log(KEPT, Duration::from_secs(5)) || node.log().contains("→ Down")
    });
    let report = load.finish();
    let log = node.log();
    let fell: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("→ Down") && l.contains("peer=n2"))
        .collect();
    assert!(told, "n1 did not act on the news");
    assert!(fell.is_empty(), "n1 took n2 for down: {fell:?}");
    assert!(log.contains(KEPT), "n1 never said it kept the link");
    assert_eq!(report["errors"], 0, "{report}");
    let answered = report["answered"].as_object().expect("answered histogram");
    assert!(
        answered.keys().all(|k| k == "2"),
        "some answers missed n2: {report}"
    );
    assert_eq!(node.peer_state("n2").as_deref(), Some("up"));
}
