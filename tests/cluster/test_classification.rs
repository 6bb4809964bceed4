//! Breast cancer (classification) on 4 nodes: `train` reaches ensemble accuracy ≥ 0.94 and
//! `predict` answers a label string, voted by the nodes.

use crate::shards::{breast_cancer, csv_row_json, letter};
use crate::util::Cluster;

#[test]
fn four_nodes_classify_breast_cancer() {
    let mut cluster = Cluster::start_with("classification", 4, |spec| {
        let data = breast_cancer(letter(&spec.id));
        spec.toml(&data)
    });
    let t = cluster.at(2).command("train");
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["metric"], "accuracy", "{t}");
    let accuracy = t["ensemble"]["accuracy"].as_f64().expect("accuracy");
    assert!(accuracy >= 0.94, "ensemble accuracy {accuracy} < 0.94: {t}");
    assert!(t["ensemble"]["f1"].is_number(), "{t}");
    let matrix = t["matrix"].as_array().expect("matrix");
    assert_eq!(matrix.len(), 4);
    assert!(
        matrix
            .iter()
            .flat_map(|r| r.as_array().into_iter().flatten())
            .all(|c| c.as_f64().is_some_and(|a| (0.5..=1.0).contains(&a))),
        "every cell is an accuracy: {t}"
    );

    // Row 0 of shard A is benign; the ensemble says so, as a label.
    let row = csv_row_json("breast_cancer/A.csv", 0);
    let p = cluster.at(0).command(&format!("predict --explain {row}"));
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p["prediction"], "benign", "{p}");
    assert_eq!(p["answered"], 4, "{p}");
    let votes = p["nodes"].as_array().expect("explain");
    assert!(votes.iter().all(|v| v["prediction"].is_string()), "{p}");
}
