//! Rows by schema: the node that receives a prediction resolves it by the union of every
//! model's columns, not by its own. A column only another node's model reads still reaches that
//! model, and a column one shard holds as numbers and another as text reaches the second with its
//! exact spelling. Both through the console (`predict`) and through `ctl predict-file`, which
//! resolves a file by the schema the node gives it.

use std::path::Path;

use serde_json::{Map, Value};

use crate::shards::{csv_row_json, house_prices, letter};
use crate::util::{quote, Cluster};

/// `row` (a JSON object) with `key` set to `value`.
fn with(row: &str, key: &str, value: Value) -> String {
    let mut obj: Map<String, Value> = serde_json::from_str(row).expect("a JSON row");
    obj.insert(key.into(), value);
    Value::Object(obj).to_string()
}

/// Each node's own prediction in a `predict --explain` answer.
fn per_node(p: &Value) -> Vec<(String, f64)> {
    let mut nodes: Vec<(String, f64)> = p["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes: {p}"))
        .iter()
        .map(|n| {
            let id = n["id"].as_str().expect("id").to_string();
            (id, n["prediction"].as_f64().expect("a number"))
        })
        .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    nodes
}

#[test]
fn a_column_only_another_model_reads_reaches_it() {
    // n1's shard has no OverallQual (dropped); n2's model reads it.
    let mut cluster = Cluster::start_with("schema-union", 2, |spec| {
        let data = house_prices(letter(&spec.id));
        let data = if spec.id == "n1" {
            data.replace("drop = [\"Id\"]", "drop = [\"Id\", \"OverallQual\"]")
        } else {
            data
        };
        spec.toml(&data)
    });
    let n1 = cluster.node("n1");
    let t = n1.command("train");
    assert_eq!(t["ok"], true, "{t}");

    let schema = n1.command("schema");
    assert_eq!(schema["complete"], true, "{schema}");
    let columns = schema["columns"].as_array().expect("columns");
    assert!(
        columns
            .iter()
            .any(|c| c["name"] == "OverallQual" && c["kind"] == "number"),
        "{schema}"
    );

    // Two rows that differ in OverallQual only, predicted through n1.
    let row = csv_row_json("house_prices/test.csv", 0);
    let low = n1.command(&format!(
        "predict --explain {}",
        with(&row, "OverallQual", 2.into())
    ));
    let high = n1.command(&format!(
        "predict --explain {}",
        with(&row, "OverallQual", 10.into())
    ));
    let (low, high) = (per_node(&low), per_node(&high));
    assert_eq!(low[0], high[0], "n1's model does not read OverallQual");
    assert!(
        high[1].1 > 1.2 * low[1].1,
        "n2 saw OverallQual 2 and 10 alike: {low:?} / {high:?}"
    );
}

/// A shard where `zone` decides the label. As text on n2 (`"1.50"`: 100, `"x"`: 0, `"x"` the most
/// frequent, so an unseen spelling reads as `"x"`); as numbers on n1 (1.5 and 3).
fn zone_shard(dir: &Path, id: &str) -> String {
    let mut csv = String::from("zone,noise,y\n");
    for i in 0..300 {
        let (zone, y) = match (id, i % 10 < 3) {
            ("n2", true) => ("1.50", 100),
            ("n2", false) => ("x", 0),
            (_, true) => ("1.5", 100),
            (_, false) => ("3", 0),
        };
        csv.push_str(&format!("{zone},{},{y}\n", (i * 37) % 11));
    }
    let path = dir.join(format!("zone-{id}.csv"));
    std::fs::write(&path, csv).expect("shard written");
    format!(
        "[data]\nshard = {}\nlabel = \"y\"\ntask = \"regression\"\n[model]\nkind = \"tree\"\n",
        quote(&path.display().to_string())
    )
}

#[test]
fn text_a_model_reads_keeps_its_spelling_when_another_reads_numbers() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("schema-spelling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a dir");
    let mut cluster = Cluster::start_with("schema-spelling", 2, |spec| {
        let data = zone_shard(&dir, &spec.id);
        spec.toml(&data)
    });
    let n1 = cluster.node("n1");
    let t = n1.command("train");
    assert_eq!(t["ok"], true, "{t}");
    let schema = n1.command("schema");
    assert!(
        schema["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .any(|c| c["name"] == "zone" && c["kind"] == "category"),
        "n2 reads zone as text, so the cluster sends it as text: {schema}"
    );

    // Through n1, whose own model reads zone as a number.
    let p = n1.command(r#"predict --explain {"zone": "1.50", "noise": 3}"#);
    let nodes = per_node(&p);
    assert!(nodes[0].1 > 90.0, "n1 reads 1.50 as 1.5: {p}");
    assert!(nodes[1].1 > 90.0, "n2 did not get \"1.50\" as spelled: {p}");

    // The same through ctl predict-file: the client resolves its file by the node's schema.
    let input = dir.join("rows.csv");
    let output = dir.join("rows.out.csv");
    std::fs::write(&input, "zone,noise\n1.50,3\nx,3\n").expect("input written");
    let ran = cluster.node("n1").ctl(&[
        "predict-file",
        &input.display().to_string(),
        &output.display().to_string(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran}");
    let lines: Vec<f64> = std::fs::read_to_string(&output)
        .expect("output")
        .lines()
        .map(|l| l.parse().expect("a number per line"))
        .collect();
    // "1.50": both models say 100; "x": n2 says 0, n1 reads no number (missing: its median, 3),
    // 0 too.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0] > 90.0 && lines[1] < 10.0, "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
