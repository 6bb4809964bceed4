//! The HTTP API in operation, against real nodes: HTTPS with the cluster's certificates (checked
//! by the official Python clients, which verify the chain against the cluster CA), a large CSV
//! streamed through `/v1/predict-file`, and `/metrics` after a drift retrain (parsed by
//! `prometheus_client`).
//!
//! Needs what tests/http_api.rs needs (`ENSEMBLE_TEST_PYTHON` naming a python with
//! `tritonclient[http]`, `prometheus_client` and `numpy`); a missing tool fails the test.

#[path = "cluster/util.rs"]
mod util;

#[allow(dead_code)]
#[path = "cluster/shards.rs"]
mod shards;

#[path = "http/client.rs"]
mod client;

#[path = "cluster/fixtures.rs"]
mod fixtures;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use client::{free_port, head_csv, http, http_streaming, python_client, wait_http, with_http};
use fixtures::{certs, gen, tls_toml};
use shards::{csv_row_json, house_prices, letter};
use util::{quote, run, wait_until, Cluster};

/// What a plain HTTP request to `addr` gets back (a TLS listener answers no HTTP).
fn plain_http_answer(addr: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!("GET /v2/health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(head.as_bytes());
    let mut got = Vec::new();
    // A TLS server answers with an alert and closes (or resets): keep what arrived.
    let _ = s.read_to_end(&mut got);
    got
}

/// Waits until every node of the cluster holds a model.
fn wait_models(cluster: &mut Cluster) {
    for i in 0..cluster.nodes.len() {
        let node = cluster.at(i);
        let ok = wait_until(Duration::from_secs(60), || {
            node.status()["model_version"].as_u64().is_some()
        });
        if !ok {
            node.fail("no model");
        }
    }
}

#[test]
fn https_serves_the_node_certificate_and_refuses_plain_http() {
    let http_addr = free_port();
    let dir = util::TestDir::new("http-tls-certs");
    let tls = dir.path().join("tls");
    certs(
        &tls,
        &[
            "--ip",
            "127.0.0.1",
            "--node",
            "n1",
            "--node",
            "n2",
            "--operator",
            "op",
            "--reader",
            "rd",
        ],
    );
    let other = dir.path().join("other");
    certs(&other, &["--reader", "rd"]);
    let tokens = "operator_token = \"op-secret\"\nreader_token = \"rd-secret\"\n";
    let tls_for_nodes = tls.clone();
    let mut cluster = Cluster::start_with("http-tls", 2, |spec| {
        let data = house_prices(letter(&spec.id));
        let id = spec.id.clone();
        let spec = spec.toml(&data).toml(&tls_toml(&tls_for_nodes, &id));
        if id == "n1" {
            with_http(spec, http_addr, tokens)
        } else {
            spec
        }
    });
    wait_http(cluster.at(0), http_addr);
    let plain = plain_http_answer(http_addr);
    assert!(
        !plain.starts_with(b"HTTP/"),
        "the HTTPS port answered plain HTTP: {}",
        String::from_utf8_lossy(&plain)
    );
    wait_models(&mut cluster);

    // The reference answer for 100 test rows, written by the node's own console.
    let work = cluster.dir.path().to_path_buf();
    let rows = work.join("test100.csv");
    head_csv(&util::repo_file("shards/house_prices/test.csv"), &rows, 100);
    let expected = work.join("expected.csv");
    let line = format!("predict-file {} {}", rows.display(), expected.display());
    let wrote = cluster
        .at(0)
        .try_command(&line, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("predict-file: {e}"));
    assert_eq!(wrote["ok"], true, "{wrote}");

    let file = |d: &Path, name: &str| d.join(name).display().to_string();
    python_client(&[
        "https",
        &http_addr.to_string(),
        &file(&tls, "ca.pem"),
        &file(&tls, "rd.pem"),
        &file(&tls, "rd.key"),
        &rows.display().to_string(),
        &expected.display().to_string(),
        "rd-secret",
        &file(&other, "ca.pem"),
    ]);
    assert_eq!(cluster.at(0).status()["ok"], true, "the node survived");
}

/// `n` rows of the House Prices test set, in turn, with their own `Id`s (1..=n).
fn many_rows(n: usize) -> (String, Vec<String>) {
    let text =
        std::fs::read_to_string(util::repo_file("shards/house_prices/test.csv")).expect("test.csv");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let mut body = format!("{header}\n");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row = rows[i % rows.len()];
        let (_, rest) = row.split_once(',').expect("an Id column");
        let line = format!("{},{rest}", i + 1);
        body.push_str(&line);
        body.push('\n');
        out.push(line);
    }
    (body, out)
}

/// The row of a CSV line as `predict` JSON (numbers as numbers, `NA` left out as missing).
fn row_json(header: &str, line: &str) -> String {
    let mut obj = serde_json::Map::new();
    for (k, v) in header.split(',').zip(line.split(',')) {
        let value = match v.parse::<f64>() {
            Ok(x) => Value::from(x),
            Err(_) => Value::from(v),
        };
        obj.insert(k.to_string(), value);
    }
    Value::Object(obj).to_string()
}

#[test]
fn predict_file_streams_a_large_body_in_order_and_stops_at_a_bad_row() {
    let http_addr = free_port();
    let mut cluster = Cluster::start_with("http-stream", 2, |spec| {
        let data = house_prices(letter(&spec.id));
        let spec = spec.toml(&data);
        if spec.id == "n1" {
            with_http(spec, http_addr, "")
        } else {
            spec
        }
    });
    wait_http(cluster.at(0), http_addr);
    wait_models(&mut cluster);

    // 20,000 rows: ten of the node's batches, more than one of ctl's.
    const N: usize = 20_000;
    let (body, lines) = many_rows(N);
    let reply = http_streaming(http_addr, "/v1/predict-file", body.clone().into_bytes());
    assert_eq!(
        reply.status,
        200,
        "{}",
        &reply.body[..reply.body.len().min(500)]
    );
    assert!(
        reply
            .headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "not streamed: {}",
        reply.headers
    );
    assert!(reply.complete, "the answer did not end with its last chunk");
    let answer: Vec<&str> = reply.body.lines().collect();
    assert_eq!(answer.len(), N + 1, "rows in, rows out");
    assert_eq!(answer[0], "Id,SalePrice");
    for (i, line) in answer[1..].iter().enumerate() {
        let (id, value) = line.split_once(',').expect("Id,SalePrice");
        assert_eq!(id, (i + 1).to_string(), "order at row {i}");
        assert!(
            value.parse::<f64>().is_ok_and(|v| v > 0.0),
            "row {i}: {line}"
        );
    }

    // The same file through `ctl predict-file`: the same answer, byte for byte.
    let work = cluster.dir.path().to_path_buf();
    let input = work.join("many.csv");
    std::fs::write(&input, &body).expect("write");
    let via_ctl = work.join("ctl.csv");
    let addr = cluster.at(0).addr().to_string();
    let (i, o) = (input.display().to_string(), via_ctl.display().to_string());
    let ran = run(
        &[
            "ctl",
            &addr,
            "--cluster",
            util::CLUSTER,
            "--secret",
            util::SECRET,
            "--timeout-ms",
            "120000",
            "predict-file",
            &i,
            &o,
        ],
        &[],
        "",
        &work,
        Duration::from_secs(150),
    );
    assert_eq!(ran.code, Some(0), "{ran}");
    let want = std::fs::read_to_string(&via_ctl).expect("ctl's answer");
    assert!(
        reply.body == want,
        "predict-file over HTTP differs from ctl's"
    );

    // A sample of rows, one by one, as `predict` answers them (to 1e-9).
    let header = body.lines().next().expect("header");
    for i in [0, 1, 4_999, 12_345, N - 1] {
        let p = cluster
            .at(0)
            .command(&format!("predict {}", row_json(header, &lines[i])));
        let one = p["prediction"].as_f64().unwrap_or_else(|| panic!("{p}"));
        let (_, streamed) = answer[i + 1].split_once(',').expect("a line");
        let streamed: f64 = streamed.parse().expect("a number");
        assert!(
            (one - streamed).abs() <= 1e-9 * one.abs().max(1.0),
            "row {i}: predict {one}, predict-file {streamed}"
        );
    }

    // A bad row far into the body: the rows before it come back, then one `error:` line naming
    // it, and the answer is cut off without its last chunk.
    let mut bad_lines: Vec<&str> = body.lines().collect();
    bad_lines[15_001] = "15001,only,three";
    let bad = bad_lines.join("\n") + "\n";
    let cut = http_streaming(http_addr, "/v1/predict-file", bad.into_bytes());
    assert_eq!(cut.status, 200, "the status was sent with the first batch");
    assert!(
        !cut.complete,
        "a failed answer must not end like a whole one"
    );
    let got: Vec<&str> = cut.body.lines().collect();
    let last = got.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("error: record 15002 ") && last.contains("3 fields"),
        "last line: {last:?}"
    );
    let before = &got[..got.len() - 1];
    assert!(
        !before.is_empty() && before.len() <= 15_001,
        "{} lines before the error",
        before.len()
    );
    assert_eq!(before, &answer[..before.len()], "the rows before it");

    // Bad CSV in the first batch, and bytes that are not text: 400 before any answer.
    for (body, needle) in [
        (
            b"Id,LotArea\n1,2,3\n".to_vec(),
            "record 2 of the CSV has 3 fields",
        ),
        (b"Id,LotArea\n1,\xff\n".to_vec(), "not UTF-8"),
        (b"Id,LotArea\n".to_vec(), "no rows"),
    ] {
        let r = http(http_addr, "POST", "/v1/predict-file", None, &body);
        assert_eq!(r.status, 400, "{}", r.body);
        let e = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(e.contains(needle), "{e:?} does not say {needle:?}");
    }
    let row = csv_row_json("house_prices/test.csv", 0);
    let p = http(http_addr, "POST", "/v1/predict", None, row.as_bytes());
    assert_eq!(p.status, 200, "the node still answers: {}", p.body);
}

#[test]
fn metrics_show_peers_retrains_by_cause_and_drift_per_feature() {
    let http_addr = free_port();
    let dir = util::TestDir::new("http-metrics-shards");
    let shards: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let p = dir.path().join(format!("n{i}.csv"));
            gen(&p, 2000, i, 0.0, false);
            p
        })
        .collect();
    let mut cluster = Cluster::start_with("http-metrics", 2, |spec| {
        let i: usize = spec.id[1..].parse().expect("n<i>");
        let data = format!(
            "[data]\nshard = {}\nlabel = \"y\"\n\n[drift]\ncheck_interval_ms = 500\ncooldown_ms = 0\n",
            quote(&shards[i - 1].display().to_string())
        );
        let spec = spec.toml(&data);
        if spec.id == "n1" {
            with_http(spec, http_addr, "")
        } else {
            spec
        }
    });
    wait_http(cluster.at(0), http_addr);
    let trained = wait_until(Duration::from_secs(30), || {
        cluster.at(0).status()["retrains"]["start"] == 1
    });
    assert!(trained, "no first model: {}", cluster.at(0).status());

    // Shifted rows: the watcher sees drift and retrains once.
    gen(&shards[0], 500, 78, 1.0, true);
    let mut status = Value::Null;
    let retrained = wait_until(Duration::from_secs(20), || {
        status = cluster.at(0).status();
        status["retrains"]["drift"] == 1
    });
    assert!(
        retrained,
        "no drift retrain: {status}\n{}",
        cluster.at(0).command("drift")
    );

    let peers = cluster.at(0).command("peers");
    let n2 = &peers["peers"][0];
    assert_eq!(n2["id"], "n2", "{peers}");
    assert!(n2["received_bytes"].as_u64() > Some(0), "{peers}");

    python_client(&["metrics", &http_addr.to_string(), "n2", "8"]);
    assert!(
        TcpStream::connect(http_addr).is_ok(),
        "the HTTP server is still up"
    );
}
