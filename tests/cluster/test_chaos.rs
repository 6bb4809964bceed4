//! Chaos: six nodes under a steady prediction load (a `bench` client on n1) while a seeded
//! schedule of faults runs, one at a time: kill -9 and restart, SIGSTOP and SIGCONT, a node
//! joining and then leaving, a drift retrain. It asserts that no prediction failed, that every
//! answer came from at least the nodes alive minus one, and that at the end every node is up with
//! its model and no model version named two different models. Each fault's detection time is
//! printed.
//!
//! `CHAOS_SECONDS` (default 20) sets the length and `CHAOS_SEED` replays a schedule (the seed is
//! printed first); `tests/chaos.sh --seconds 600` runs the long one. Link cuts need network
//! namespaces and are covered by `tests/hosts_cluster.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::test_drift::{data_toml, gen};
use crate::util::{run, wait_until, Cluster, CLUSTER, SECRET};

/// Nodes that faults hit (n1 serves the load and stays up).
const VICTIMS: [&str; 5] = ["n2", "n3", "n4", "n5", "n6"];

/// A small seeded generator (SplitMix64): the schedule is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Pause,
    JoinLeave,
    Drift,
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// `bench` against n1 for `ms` milliseconds, on its own thread.
fn load(addr: std::net::SocketAddr, rows: PathBuf, ms: u64) -> thread::JoinHandle<Value> {
    thread::spawn(move || {
        let (addr, ms, rows) = (addr.to_string(), ms.to_string(), rows.display().to_string());
        let ran = run(
            &[
                "bench",
                &addr,
                "--cluster",
                CLUSTER,
                "--secret",
                SECRET,
                "--rows-from",
                &rows,
                "--requests",
                "100000000",
                "--in-flight",
                "4",
                "--duration-ms",
                &ms,
                "--timeout-ms",
                "4000",
            ],
            &[],
            "",
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            Duration::from_millis(ms.parse::<u64>().unwrap_or(0) + 60_000),
        );
        assert!(ran.code.is_some(), "bench did not finish: {ran}");
        ran.json()
    })
}

/// What a node's `model` command says identifies one trained model.
fn model_of(cluster: &mut Cluster, id: &str) -> Option<(u64, (u64, u64))> {
    let m = cluster.node(id).command("model");
    let version = m["version"].as_u64()?;
    Some((
        version,
        (m["rows_train"].as_u64()?, m["train_ms"].as_u64()?),
    ))
}

/// Every (node, version) seen, with the model it named.
#[derive(Default)]
struct Versions(BTreeMap<(String, u64), (u64, u64)>);

impl Versions {
    fn record(&mut self, cluster: &mut Cluster, id: &str) {
        let Some((version, model)) = model_of(cluster, id) else {
            return;
        };
        let key = (id.to_string(), version);
        if let Some(seen) = self.0.get(&key) {
            assert_eq!(
                *seen, model,
                "{id} v{version} names two models: {seen:?} and {model:?}"
            );
        }
        if let Some(((_, newest), _)) = self.0.range((id.to_string(), 0)..=key.clone()).last() {
            assert!(*newest <= version, "{id} went back to v{version}");
        }
        self.0.insert(key, model);
    }
}

#[test]
fn six_nodes_under_load_survive_a_schedule_of_faults() {
    let seconds = env_u64("CHAOS_SECONDS").unwrap_or(20);
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("chaos: {seconds} s, seed {seed} (replay with CHAOS_SEED={seed})");
    let mut rng = Rng(seed);

    let dir = crate::util::TestDir::new("chaos");
    let shard = |id: &str| dir.path().join(format!("{id}.csv"));
    for (i, id) in ["n1", "n2", "n3", "n4", "n5", "n6", "n7"]
        .iter()
        .enumerate()
    {
        gen(&shard(id), 1500, i as u64 + 1, 0.0, false);
    }
    let rows = dir.path().join("rows.csv");
    gen(&rows, 200, 99, 0.0, false);
    let drift = "check_interval_ms = 500\ncooldown_ms = 0";
    let spec_toml = |id: &str| data_toml(&shard(id), drift);
    let mut cluster = Cluster::start_with("chaos-cluster", 6, |spec| {
        let toml = spec_toml(&spec.id);
        spec.toml(&toml)
    });
    let trained = cluster.at(0).command("train");
    assert_eq!(trained["ok"], true, "{trained}");
    let mut versions = Versions::default();
    for id in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        versions.record(&mut cluster, id);
    }

    let started = Instant::now();
    let bench = load(cluster.node("n1").addr(), rows, seconds * 1000);
    assert!(cluster
        .node("n1")
        .wait_for_log("client connected", Duration::from_secs(10)));
    // Leave time for the last fault to heal before the load ends.
    let schedule_until = Duration::from_secs(seconds.saturating_sub(6).max(1));
    let mut faults = vec![Fault::Kill, Fault::Pause, Fault::JoinLeave, Fault::Drift];
    let mut done = Vec::new();
    let mut drift_seed = 1000;
    while started.elapsed() < schedule_until {
        if faults.is_empty() {
            faults = vec![Fault::Kill, Fault::Pause, Fault::JoinLeave, Fault::Drift];
        }
        let fault = faults.swap_remove(rng.below(faults.len()));
        let victim = match fault {
            Fault::JoinLeave => "n7",
            _ => VICTIMS[rng.below(VICTIMS.len())],
        };
        let t0 = Instant::now();
        let detected = match fault {
            Fault::Kill => {
                cluster.node(victim).kill();
                let seen = wait_until(Duration::from_secs(5), || {
                    cluster.node("n1").peer_state(victim).as_deref() == Some("down")
                });
                assert!(seen, "n1 did not see the killed {victim} down within 5 s");
                let detected = t0.elapsed();
                cluster.node(victim).restart();
                cluster.wait_formed(Duration::from_secs(15));
                detected
            }
            Fault::Pause => {
                cluster.node(victim).pause();
                let seen = wait_until(Duration::from_secs(8), || {
                    cluster.node("n1").peer_state(victim).as_deref() == Some("down")
                });
                let detected = t0.elapsed();
                cluster.node(victim).resume();
                assert!(seen, "n1 did not see the frozen {victim} down within 8 s");
                cluster.wait_formed(Duration::from_secs(15));
                detected
            }
            Fault::JoinLeave => {
                let spec = cluster.member_spec("n7").toml(&spec_toml("n7"));
                cluster.add(spec);
                let joined = cluster.wait_formed(Duration::from_secs(15));
                let status = cluster.node("n7").quit();
                assert!(status.success(), "n7 did not leave cleanly: {status:?}");
                cluster.nodes.retain(|n| n.id != "n7");
                cluster.wait_formed(Duration::from_secs(10));
                joined
            }
            Fault::Drift => {
                let before = model_of(&mut cluster, victim).map(|(v, _)| v);
                drift_seed += 1;
                gen(&shard(victim), 500, drift_seed, 1.5, true);
                let retrained = wait_until(Duration::from_secs(15), || {
                    model_of(&mut cluster, victim).map(|(v, _)| v) > before
                });
                assert!(
                    retrained,
                    "{victim} did not retrain on drift: {}",
                    cluster.node(victim).command("drift")
                );
                t0.elapsed()
            }
        };
        eprintln!(
            "chaos: {:>6.1} s  {fault:?} {victim}: detected in {} ms, healed in {} ms",
            started.elapsed().as_secs_f64(),
            detected.as_millis(),
            t0.elapsed().as_millis()
        );
        for id in ["n1", "n2", "n3", "n4", "n5", "n6"] {
            versions.record(&mut cluster, id);
        }
        done.push(fault);
    }
    let report = bench.join().expect("bench thread");
    eprintln!("chaos: load {report}");

    assert!(!done.is_empty(), "no fault ran");
    assert_eq!(report["errors"], 0, "predictions failed: {report}");
    assert!(
        report["requests"].as_u64().is_some_and(|n| n > 50),
        "{report}"
    );
    // One fault at a time among six: at least five alive, so at least four answered each time.
    let answered = report["answered"].as_object().expect("answered histogram");
    let fewest = answered
        .keys()
        .filter_map(|k| k.parse::<u64>().ok())
        .min()
        .expect("some answers");
    assert!(fewest >= 4, "an answer came from {fewest} nodes: {report}");
    // The end: every node up with its model, versions never reused.
    cluster.wait_formed(Duration::from_secs(10));
    for id in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        assert!(
            model_of(&mut cluster, id).is_some(),
            "{id} has no model at the end"
        );
        versions.record(&mut cluster, id);
    }
    eprintln!("chaos: {} faults: {done:?}", done.len());
}
