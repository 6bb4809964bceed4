//! Three hosts, each its own network namespace on a bridge of the test's own: nodes listen on
//! `0.0.0.0` and advertise their host's address, with mutual TLS from `ensemble-node certs`. The
//! cluster forms across the hosts, trains (a 3×3 score matrix) and predicts with all three; with
//! one host's link down the others see it down and predict with two; with the link back, three
//! again. Skipped, with a message, where namespaces cannot be made (not root, no `ip`).

mod hosts;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hosts::{HostProcess, Hosts};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ensemble-node");
const PORT: u16 = 7400;
const CLUSTER: &str = "three-hosts";

fn shard(letter: char) -> String {
    format!(
        "{}/shards/house_prices/{letter}.csv",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn test_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hosts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test dir");
    dir
}

/// `ensemble-node ctl` run inside host `from` as the operator, with a deadline.
fn ctl(hosts: &Hosts, from: usize, tls: &Path, to: &str, command: &[&str]) -> Value {
    let mut cmd = hosts.command(from, BIN);
    cmd.args([
        "ctl",
        to,
        "--cluster",
        CLUSTER,
        "--secret",
        "s3cret",
        "--timeout-ms",
        "60000",
    ])
    .arg("--ca")
    .arg(tls.join("ca.pem"))
    .arg("--cert")
    .arg(tls.join("op.pem"))
    .arg("--key")
    .arg(tls.join("op.key"))
    .args(command)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = hosts.spawn(&mut cmd).expect("ctl starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.0.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => panic!("ctl {command:?} did not finish"),
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    serde_json::from_str(out.trim()).unwrap_or(Value::String(out))
}

fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn state_of(peers: &Value, id: &str) -> Option<String> {
    peers["peers"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == id)
        .and_then(|p| p["state"].as_str().map(String::from))
}

#[test]
fn three_hosts_form_train_predict_and_survive_a_cut_link() {
    let hosts = match Hosts::create(3) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: network namespaces unavailable: {why}");
            return;
        }
    };
    let dir = test_dir();
    let tls = dir.join("tls");
    let made = Command::new(BIN)
        .args(["certs", "--dir"])
        .arg(&tls)
        .args([
            "--node",
            "n1",
            "--node",
            "n2",
            "--node",
            "n3",
            "--operator",
            "op",
        ])
        .output()
        .expect("certs runs");
    assert!(made.status.success(), "{made:?}");

    let addr = |i: usize| format!("{}:{PORT}", hosts.host(i).addr);
    let mut nodes: Vec<HostProcess> = Vec::new();
    for i in 0..3 {
        let id = format!("n{}", i + 1);
        let config = format!(
            "[node]\nid = \"{id}\"\nlisten = \"0.0.0.0:{PORT}\"\nadvertise = \"{adv}\"\n\
             seeds = [\"{seed}\"]\nstate_dir = {state:?}\ntrain_on_join = true\n\n\
             [cluster]\nname = \"{CLUSTER}\"\nsecret = \"s3cret\"\n\n\
             [tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\n\
             [data]\nshard = {shard:?}\nlabel = \"SalePrice\"\ndrop = [\"Id\"]\n",
            adv = addr(i),
            seed = addr(0),
            state = dir.join(format!("{id}-state")).display().to_string(),
            ca = tls.join("ca.pem").display().to_string(),
            cert = tls.join(format!("{id}.pem")).display().to_string(),
            key = tls.join(format!("{id}.key")).display().to_string(),
            shard = shard((b'A' + i as u8) as char),
        );
        let path = dir.join(format!("{id}.toml"));
        std::fs::write(&path, config).expect("config written");
        let log = std::fs::File::create(dir.join(format!("{id}.log"))).expect("log file");
        let mut cmd = hosts.command(i, BIN);
        cmd.arg("--config")
            .arg(&path)
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        nodes.push(hosts.spawn(&mut cmd).expect("node starts"));
    }
    let logs = || {
        (1..=3)
            .map(|i| {
                let text =
                    std::fs::read_to_string(dir.join(format!("n{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!(
                    "--- n{i}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Formed across the hosts over TLS.
    let formed = wait_until(Duration::from_secs(30), || {
        (0..3).all(|i| ctl(&hosts, i, &tls, &addr(i), &["status"])["peers_up"] == 2)
    });
    assert!(formed, "the cluster did not form across hosts\n{}", logs());
    let status = ctl(&hosts, 1, &tls, &addr(1), &["status"]);
    assert_eq!(status["advertise"], addr(1), "{status}");

    let trained = ctl(&hosts, 0, &tls, &addr(0), &["train"]);
    assert_eq!(trained["ok"], true, "{trained}\n{}", logs());
    assert_eq!(
        trained["models"].as_array().map(Vec::len),
        Some(3),
        "{trained}"
    );
    assert_eq!(
        trained["splits"].as_array().map(Vec::len),
        Some(3),
        "{trained}"
    );
    assert_eq!(trained["complete"], true, "{trained}");

    let row = r#"{"LotArea": 8450, "OverallQual": 7, "GrLivArea": 1710, "YearBuilt": 2003}"#;
    let predict = |from: usize| ctl(&hosts, from, &tls, &addr(from), &["predict", row]);
    for i in 0..3 {
        let p = predict(i);
        assert_eq!(p["answered"], 3, "from host {i}: {p}");
    }

    // Host 3's link goes down: the others see it down and answer with two.
    hosts.set_link(2, false).expect("link down");
    let down = wait_until(Duration::from_secs(15), || {
        state_of(&ctl(&hosts, 0, &tls, &addr(0), &["peers"]), "n3").as_deref() == Some("down")
    });
    assert!(down, "n1 never saw n3 down\n{}", logs());
    let p = predict(0);
    assert_eq!(
        (p["ok"].clone(), p["answered"].clone()),
        (true.into(), 2.into()),
        "{p}"
    );

    // Back up: three again.
    hosts.set_link(2, true).expect("link up");
    let back = wait_until(Duration::from_secs(20), || predict(0)["answered"] == 3);
    assert!(back, "n3 never came back\n{}", logs());
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
