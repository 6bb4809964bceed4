//! The project's shards as test data, and the `[data]` tables that point nodes at them.

use serde_json::{Map, Value};

/// Absolute path of a file under `shards/` (nodes run in their test directory).
pub fn shard(rel: &str) -> String {
    format!("{}/shards/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// `[data]` for House Prices shard `letter` (A–D).
pub fn house_prices(letter: char) -> String {
    format!(
        "[data]\nshard = {}\nlabel = \"SalePrice\"\ntask = \"regression\"\ndrop = [\"Id\"]\n",
        crate::util::quote(&shard(&format!("house_prices/{letter}.csv")))
    )
}

/// `[data]` for breast cancer shard `letter` (A–D).
pub fn breast_cancer(letter: char) -> String {
    format!(
        "[data]\nshard = {}\nlabel = \"diagnosis\"\ntask = \"classification\"\n",
        crate::util::quote(&shard(&format!("breast_cancer/{letter}.csv")))
    )
}

/// The shard letter of node `n<i>` (n1 → A, ...).
pub fn letter(id: &str) -> char {
    let i: u8 = id[1..].parse().expect("node ids are n<i>");
    (b'A' + (i - 1) % 4) as char
}

/// Row `index` of a CSV as a JSON object (numbers as numbers, other cells as strings), for
/// `predict`.
pub fn csv_row_json(rel: &str, index: usize) -> String {
    let text = std::fs::read_to_string(shard(rel)).expect("shard readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let row: Vec<&str> = lines.nth(index).expect("row").split(',').collect();
    let mut obj = Map::new();
    for (k, v) in header.iter().zip(row) {
        let value = match v.parse::<f64>() {
            Ok(x) => Value::from(x),
            Err(_) => Value::from(v),
        };
        obj.insert(k.to_string(), value);
    }
    Value::Object(obj).to_string()
}
