//! A node joining a trained cluster trains on its own shard unasked and takes part in
//! predictions; a node that quits is listed as left by the others at once, not as failed.

use std::time::Duration;

use crate::shards::{csv_row_json, house_prices, letter};
use crate::util::{wait_until, Cluster};

#[test]
fn a_fifth_node_joins_trains_and_leaves() {
    let mut cluster = Cluster::start_with("grow-shrink", 4, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data)
    });
    let t = cluster.at(0).command("train");
    assert_eq!(t["ok"], true, "{t}");

    let spec = cluster.member_spec("n5").toml(&house_prices('A'));
    cluster.add(spec);
    cluster.wait_formed(Duration::from_secs(5));
    let row = csv_row_json("house_prices/test.csv", 10);
    let mut last = serde_json::Value::Null;
    let five = wait_until(Duration::from_secs(20), || {
        last = cluster.node("n1").command(&format!("predict {row}"));
        last["asked"] == 5 && last["answered"] == 5
    });
    assert!(five, "n5 never answered: {last}");
    assert!(cluster
        .node("n5")
        .log()
        .contains("no model yet: training on the local shard"));

    // The next global training includes n5's model and split.
    let t = cluster.node("n2").command("evaluate");
    assert_eq!(t["models"].as_array().map(Vec::len), Some(5), "{t}");

    let code = cluster.node("n5").quit();
    assert!(code.success(), "{code}");
    for id in ["n1", "n2", "n3", "n4"] {
        let left = wait_until(Duration::from_secs(1), || {
            cluster.node(id).peer_state("n5").as_deref() == Some("left")
        });
        assert!(left, "{id} does not list n5 as left");
        let status = cluster.node(id).status();
        assert_eq!(status["members"], 4, "{id}: {status}");
    }
    let p = cluster.node("n1").command(&format!("predict {row}"));
    assert_eq!(p["answered"], 4, "{p}");
    assert_eq!(p["asked"], 4, "{p}");
}
