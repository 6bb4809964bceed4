//! The HTTP API against real nodes: `/v1` JSON, auth, bad input, and, through the official
//! Python clients (`tritonclient[http]`, `prometheus_client`, run by tests/python/oip_client.py),
//! the Open Inference Protocol and `/metrics`; the status page in headless chromium.
//!
//! Needs `python3` with `tritonclient[http]` and `prometheus_client` (or `ENSEMBLE_TEST_PYTHON`
//! naming such an interpreter) and `chromium` (or `ENSEMBLE_TEST_CHROMIUM`); `.ci/run` installs
//! them. A missing tool fails the test with what to install: it is never skipped.

#[path = "cluster/util.rs"]
mod util;

#[allow(dead_code)]
#[path = "cluster/shards.rs"]
mod shards;

#[path = "http/client.rs"]
mod client;

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use client::{free_port, head_csv, http, python_client, wait_http, with_http};
use shards::{breast_cancer, csv_row_json, house_prices, letter};
use util::{run, wait_until, Cluster, NodeSpec};

#[test]
fn house_prices_over_http_match_the_console() {
    let http_addr = free_port();
    let mut cluster = Cluster::start_with("http-house", 4, |spec| {
        let data = house_prices(letter(&spec.id));
        let spec = spec.toml(&data);
        if spec.id == "n1" {
            // No model until `train`, to see the API refuse inference without one.
            let spec = spec.env("ENSEMBLE__NODE__TRAIN_ON_JOIN", "false");
            with_http(spec, http_addr, "")
        } else {
            spec
        }
    });
    wait_http(cluster.at(0), http_addr);

    // Before training: no model, so inference is refused with a message, the node unharmed.
    let r = http(http_addr, "GET", "/v2/models/ensemble", None, b"");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["error"].is_string(), "{}", r.body);

    let t = http(http_addr, "POST", "/v1/train", None, b"");
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["matrix"].as_array().map(Vec::len), Some(4), "{t}");

    let status = http(http_addr, "GET", "/v1/status", None, b"").json();
    assert_eq!(status["members"], 4, "{status}");
    let peers = http(http_addr, "GET", "/v1/peers", None, b"").json();
    assert_eq!(peers["peers"].as_array().map(Vec::len), Some(3), "{peers}");
    let report = http(http_addr, "GET", "/v1/report", None, b"").json();
    assert_eq!(report["matrix"], t["matrix"], "{report}");
    let openapi = http(http_addr, "GET", "/v1/openapi.json", None, b"").json();
    assert!(openapi["paths"]["/v2/models/{name}/infer"].is_object());

    // One JSON row: the same answer as the console's `predict`.
    let row = csv_row_json("house_prices/test.csv", 0);
    let console = cluster.at(0).command(&format!("predict {row}"));
    let p = http(http_addr, "POST", "/v1/predict", None, row.as_bytes()).json();
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p["prediction"], console["prediction"], "{p} vs {console}");
    assert_eq!(p["answered"], 4, "{p}");

    // The first 100 test rows: `ctl predict-file` writes the reference answer.
    let dir = cluster.dir.path().to_path_buf();
    let rows = dir.join("test100.csv");
    head_csv(&util::repo_file("shards/house_prices/test.csv"), &rows, 100);
    let expected = dir.join("expected.csv");
    let ran = cluster.at(1).ctl(&[
        "predict-file",
        &rows.display().to_string(),
        &expected.display().to_string(),
    ]);
    assert_eq!(ran.json()["ok"], true, "{}", ran.stdout);

    // The CSV route answers the same file without touching the node's disk.
    let body = std::fs::read(&rows).expect("rows");
    let file = http(http_addr, "POST", "/v1/predict-file", None, &body);
    assert_eq!(file.status, 200, "{}", file.body);
    let want = std::fs::read_to_string(&expected).expect("expected");
    assert_eq!(file.body, want, "predict-file over HTTP differs from ctl's");
    assert!(file.headers.contains("x-answered: 4"), "{}", file.headers);

    // Bad input: 4xx with a message, and the node still answers.
    for (path, body, code) in [
        ("/v1/predict", &b"{oops"[..], 400),
        ("/v1/predict", &b"[1, 2]"[..], 400),
        ("/v1/predict-file", &b""[..], 400),
        ("/v2/models/n3/infer", &b"{}"[..], 404),
        ("/v2/models/ensemble/infer", &b"{\"inputs\": []}"[..], 400),
        ("/v2/models/ensemble/infer", &b"{\"inputs\": 3}"[..], 400),
    ] {
        let r = http(http_addr, "POST", path, None, body);
        assert_eq!(r.status, code, "{path}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{path}: {}", r.body);
    }

    let url = http_addr.to_string();
    python_client(&[
        "regression",
        &url,
        &rows.display().to_string(),
        &expected.display().to_string(),
    ]);

    page_shows_members_and_matrix(&mut cluster, http_addr);
    assert_eq!(cluster.at(0).status()["ok"], true, "the node survived");
}

/// Headless chromium renders `/`; after `train` it lists every member and the score matrix.
fn page_shows_members_and_matrix(cluster: &mut Cluster, addr: SocketAddr) {
    let chromium = std::env::var("ENSEMBLE_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = cluster.dir.path().join("chromium-profile");
    let shot = cluster.dir.path().join("page.png");
    let url = format!("http://{addr}/");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=3000",
    ];
    let profile_flag = format!("--user-data-dir={}", profile.display());
    let mut dump: Vec<&str> = flags.to_vec();
    dump.extend([profile_flag.as_str(), "--dump-dom", url.as_str()]);
    let ran = run_tool(&chromium, &dump);
    let dom = ran;
    for id in ["n1", "n2", "n3", "n4"] {
        assert!(
            dom.contains(&format!("class=\"member\" data-id=\"{id}\"")),
            "the page does not list {id}:\n{dom}"
        );
    }
    assert_eq!(
        dom.matches("class=\"matrix-row\"").count(),
        4,
        "the page does not show the 4×4 matrix:\n{dom}"
    );
    assert!(
        dom.contains("style=\"background: rgb("),
        "the matrix has no heat colours:\n{dom}"
    );
    let shot_flag = format!("--screenshot={}", shot.display());
    let mut snap: Vec<&str> = flags.to_vec();
    snap.extend([
        profile_flag.as_str(),
        shot_flag.as_str(),
        "--window-size=1100,1300",
        url.as_str(),
    ]);
    run_tool(&chromium, &snap);
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    if let Ok(dest) = std::env::var("ENSEMBLE_PAGE_SCREENSHOT") {
        std::fs::copy(&shot, dest).expect("copy the screenshot");
    }
}

/// Runs a tool to its end (bounded); its stdout.
fn run_tool(program: &str, args: &[&str]) -> String {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install Debian's chromium or set ENSEMBLE_TEST_CHROMIUM")
        });
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let done = wait_until(Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} did not finish within 60 s");
    }
    reader.join().unwrap_or_default()
}

#[test]
fn tokens_guard_the_roles_and_classification_returns_labels() {
    let http_addr = free_port();
    let tokens = "operator_token = \"op-secret\"\nreader_token = \"rd-secret\"\n";
    let mut cluster = Cluster::start_with("http-auth", 2, |spec| {
        let data = breast_cancer(letter(&spec.id));
        let spec = spec.toml(&data);
        if spec.id == "n1" {
            with_http(spec, http_addr, tokens)
        } else {
            spec
        }
    });
    wait_http(cluster.at(0), http_addr);

    let none = http(http_addr, "GET", "/v1/status", None, b"");
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(none.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("reader")));
    let wrong = http(http_addr, "GET", "/v1/status", Some("guess"), b"");
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let reader = http(http_addr, "POST", "/v1/train", Some("rd-secret"), b"");
    assert_eq!(reader.status, 403, "{}", reader.body);
    assert!(reader.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("operator")));
    let status = http(http_addr, "GET", "/v1/status", Some("rd-secret"), b"");
    assert_eq!(status.status, 200, "{}", status.body);
    let t = http(http_addr, "POST", "/v1/train", Some("op-secret"), b"");
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.json()["metric"], "accuracy");

    let row = csv_row_json("breast_cancer/A.csv", 0);
    let p = http(
        http_addr,
        "POST",
        "/v1/predict",
        Some("rd-secret"),
        row.as_bytes(),
    )
    .json();
    assert_eq!(p["prediction"], "benign", "{p}");
    // The node's own model answers alone.
    let own = http(http_addr, "GET", "/v2/models/n1", Some("rd-secret"), b"").json();
    assert_eq!(own["outputs"][0]["datatype"], "BYTES", "{own}");
    let no_token = http(http_addr, "GET", "/v2/models/ensemble", None, b"");
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    let _ = cluster.at(0).status();
}

#[test]
fn classification_through_tritonclient_returns_labels() {
    let http_addr = free_port();
    let mut cluster = Cluster::start_with("http-class", 2, |spec| {
        let data = breast_cancer(letter(&spec.id));
        let spec = spec.toml(&data);
        if spec.id == "n1" {
            with_http(spec, http_addr, "")
        } else {
            spec
        }
    });
    wait_http(cluster.at(0), http_addr);
    let t = http(http_addr, "POST", "/v1/train", None, b"");
    assert_eq!(t.status, 200, "{}", t.body);
    let rows = util::repo_file("shards/breast_cancer/A.csv");
    python_client(&[
        "classification",
        &http_addr.to_string(),
        &rows.display().to_string(),
        "diagnosis",
    ]);
}

/// A config error for a listener open to the network without a token.
#[test]
fn an_open_listener_without_tokens_is_refused() {
    let dir = util::TestDir::new("http-open");
    let spec = with_http(NodeSpec::new("n1"), "0.0.0.0:0".parse().expect("addr"), "");
    let config = dir.write("n1.toml", &spec.to_toml(dir.path()));
    let ran = run(
        &["--config", &config.display().to_string()],
        &[],
        "",
        dir.path(),
        Duration::from_secs(20),
    );
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("http.listen"), "{}", ran.stderr);
}
