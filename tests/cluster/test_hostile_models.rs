//! A model that claims 2^40 features, in the node's own state dir at start and from a member over
//! the wire: an error that says so, never an abort; the node starts, keeps serving, and trains
//! again.
//!
//! The model is the node's own model file, its feature counts rewritten (a MessagePack tree edit,
//! see `fuzz_decode/msgpack.rs`): everything else about it is valid, so only the feature-count
//! check stands between it and a 2^40-column matrix. The member is forged in the test through the
//! library's own `net::dial`; it announces that model when asked to train or for its model, and
//! serves it in chunks to the node that fetches it to score it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ensemble_cluster::cluster::serve_chunk;
use ensemble_cluster::cluster::swim::wire::{self, Packet};
use ensemble_cluster::net::{self, Greeting, Secret};
use ensemble_cluster::protocol::{
    Message, ModelRef, ModelSummary, NodeInfo, Request, Response, Role,
};
use futures::{SinkExt, StreamExt};

use crate::msgpack::V;
use crate::shards::{csv_row_json, house_prices};
use crate::util::{wait_until, Node, NodeSpec, TestDir, CLUSTER, SECRET};

const HUGE: u64 = 1 << 40;

/// A node on House Prices shard A with a small tree (fast to train), that trains only when told.
fn spec() -> NodeSpec {
    NodeSpec::new("n1")
        .toml(&house_prices('A'))
        .toml("[model]\nkind = \"tree\"")
        .env("ENSEMBLE__NODE__TRAIN_ON_JOIN", "false")
}

/// Trains the node's first model and returns its model file (the state dir's `model.msgpack`).
fn first_model(node: &mut Node, dir: &TestDir) -> Vec<u8> {
    let t = node.command("train local");
    assert_eq!(t["ok"], true, "{t}");
    let path = dir.path().join("n1-state").join("model.msgpack");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rewrites every feature count of a pipeline (the preprocessing's and the learner's) to 2^40.
fn huge_pipeline(pipeline: &[u8]) -> Vec<u8> {
    let mut tree = V::decode(pipeline);
    let mut counts = Vec::new();
    tree.values_of("n_features", &mut counts);
    assert_eq!(counts.len(), 2, "a pipeline states its feature count twice");
    counts.into_iter().for_each(|v| *v = V::UInt(HUGE));
    tree.encode()
}

/// The pipeline inside a model file, and the file with that pipeline replaced by `with`.
fn pipeline_of(file: &[u8], with: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let mut tree = V::decode(file);
    let mut models = Vec::new();
    tree.values_of("model", &mut models);
    let [model] = &mut models[..] else {
        panic!("the model file holds one model");
    };
    let V::Bin(bytes) = &mut **model else {
        panic!("the model is a byte string");
    };
    let original = bytes.clone();
    if let Some(with) = with {
        *bytes = with.to_vec();
    }
    (original, tree.encode())
}

#[test]
fn a_model_file_claiming_two_to_the_forty_features_is_set_aside_at_start() {
    let dir = TestDir::new("huge-model-file");
    let mut node = Node::start(&dir, spec());
    let file = first_model(&mut node, &dir);
    let (pipeline, _) = pipeline_of(&file, None);
    let (_, huge_file) = pipeline_of(&file, Some(&huge_pipeline(&pipeline)));
    node.kill();
    let state = dir.path().join("n1-state");
    std::fs::write(state.join("model.msgpack"), &huge_file).expect("the file is replaced");

    // It starts (restart waits for `status`), says why it has no model, and moved the file.
    node.restart();
    let status = node.status();
    assert_eq!(status["model_version"], serde_json::Value::Null, "{status}");
    let log = node.log();
    let why = log
        .lines()
        .find(|l| l.contains("is not a valid model"))
        .unwrap_or_else(|| node.fail("no error about the model file in the log"));
    assert!(
        why.contains("inconsistent model: feature count"),
        "the log does not say what is wrong: {why}"
    );
    assert!(state.join("model.msgpack.corrupt").exists());
    assert!(!state.join("model.msgpack").exists());

    // It serves, and trains a model again.
    let t = node.command("train local");
    assert_eq!(t["ok"], true, "{t}");
    let p = node.command(&format!(
        "predict {}",
        csv_row_json("house_prices/test.csv", 3)
    ));
    assert_eq!(
        (p["ok"].clone(), p["answered"].clone()),
        (true.into(), 1.into()),
        "{p}"
    );
    assert!(node.is_running());
}

/// A member of the cluster, forged in the test, whose model is `model`: it announces it when
/// asked to train or for its model, serves it in chunks to whoever fetches it, asks the node to
/// score it (`Evaluate`) once told to, and reports every request it gets and the answer to its
/// own.
struct ForgedMember {
    stop: Arc<AtomicBool>,
    ask: Arc<AtomicBool>,
    events: Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl ForgedMember {
    fn spawn(addr: String, model: Bytes) -> ForgedMember {
        let stop = Arc::new(AtomicBool::new(false));
        let ask = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let flags = Flags {
            stop: stop.clone(),
            ask: ask.clone(),
        };
        let thread = thread::spawn(move || {
            actix_rt::System::new().block_on(forged_member(addr, model, flags, tx));
        });
        ForgedMember {
            stop,
            ask,
            events,
            thread: Some(thread),
        }
    }

    /// Sends the `Evaluate` of the forged member's own model.
    fn ask_to_score(&self) {
        self.ask.store(true, Ordering::Relaxed);
    }

    /// Waits for an event containing `text`; returns it.
    fn wait_for(&self, text: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event.contains(text) => return Some(event),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for ForgedMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Longest a forged member stays connected, whatever the test does.
const FORGED_FOR: Duration = Duration::from_secs(120);

/// What the test tells a forged member: stop, or send its `Evaluate`.
struct Flags {
    stop: Arc<AtomicBool>,
    ask: Arc<AtomicBool>,
}

async fn forged_member(addr: String, model: Bytes, flags: Flags, events: mpsc::Sender<String>) {
    let me = NodeInfo {
        id: "mallory".into(),
        addr: "127.0.0.1:9".into(),
        incarnation: 1,
    };
    let greeting = Greeting {
        cluster: CLUSTER.into(),
        secret: Secret::new(Some(SECRET.into())),
        max_frame_bytes: 64 << 20,
        timeout: Duration::from_secs(5),
        tls: None,
    };
    let dialed = match net::dial(&addr, Role::Member(me.clone()), &greeting, None).await {
        Ok(d) => d,
        Err(e) => {
            let _ = events.send(format!("dial failed: {e}"));
            return;
        }
    };
    let (mut sink, mut frames) = dialed.conn.split();
    let summary = ModelSummary {
        node: me.id.clone(),
        version: 1,
        rows_train: 100,
        rows_valid: 30,
        train_ms: 1,
        valid: None,
        kind: "tree".into(),
        cv_score: None,
    };
    let size = model.len() as u64;
    let deadline = tokio::time::Instant::now() + FORGED_FOR;
    let mut beat = tokio::time::interval(Duration::from_millis(100));
    while !flags.stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
        let frame = tokio::select! {
            _ = beat.tick() => {
                if flags.ask.swap(false, Ordering::Relaxed) {
                    let evaluate = Message::Request {
                        id: 1,
                        body: Request::Evaluate {
                            models: vec![ModelRef {
                                node: me.id.clone(),
                                version: summary.version,
                                size,
                            }],
                        },
                    };
                    if sink.send(evaluate).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            frame = frames.next() => frame,
        };
        let Some(Ok(frame)) = frame else {
            let _ = events.send("the node closed the link".into());
            break;
        };
        let answer = match frame {
            Message::Request { id, body } => {
                let _ = events.send(format!("request {body:?}").chars().take(200).collect());
                let body = match body {
                    Request::Train => Response::Trained {
                        summary: Box::new(summary.clone()),
                        size,
                    },
                    Request::GetModel => Response::Model {
                        summary: Box::new(summary.clone()),
                        size,
                    },
                    Request::FetchModel { version, offset } => {
                        serve_chunk(Some((summary.version, &model)), version, offset)
                    }
                    Request::Ping => Response::Pong,
                    Request::Predict { .. } => Response::NoModel,
                    _ => Response::Error {
                        reason: "the forged member does not do that".into(),
                    },
                };
                Message::Response { id, body }
            }
            Message::Response { id: 1, body } => {
                let _ = events.send(format!("evaluated: {body:?}"));
                continue;
            }
            // Stays a member as any member does: by answering the membership protocol's probes.
            Message::Membership { packet } => match wire::decode::<String, String>(&packet) {
                Ok(Packet::Ping { seq, .. }) => {
                    let ack: Packet<String, String> = Packet::Ack {
                        seq,
                        rumors: vec![],
                    };
                    match wire::encode(&ack) {
                        Ok(packet) => Message::Membership { packet },
                        Err(_) => continue,
                    }
                }
                _ => continue,
            },
            _ => continue,
        };
        if sink.send(answer).await.is_err() {
            break;
        }
    }
}

/// The `failed` entries of a train or evaluate answer, as "id: error" lines.
fn failed_of(answer: &serde_json::Value) -> Vec<String> {
    answer["failed"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|e| format!("{}: {}", e["id"].as_str().unwrap_or("?"), e["error"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_model_claiming_two_to_the_forty_features_from_a_member_is_an_error() {
    let dir = TestDir::new("huge-model-peer");
    let mut node = Node::start(&dir, spec());
    let file = first_model(&mut node, &dir);
    let (pipeline, _) = pipeline_of(&file, None);
    let huge = Bytes::from(huge_pipeline(&pipeline));
    let row = csv_row_json("house_prices/test.csv", 5);

    let mallory = ForgedMember::spawn(node.addr().to_string(), huge);
    assert!(
        wait_until(Duration::from_secs(10), || node.peer_state("mallory")
            == Some("up".into())),
        "the forged member never counted as up: {}",
        node.command("peers")
    );
    // Evaluate: the node fetches the model from its owner, and answers that it is not a valid
    // model, naming its owner and the check that failed.
    mallory.ask_to_score();
    let answer = mallory
        .wait_for("evaluated", Duration::from_secs(20))
        .unwrap_or_else(|| node.fail("no answer to the forged Evaluate"));
    eprintln!("the forged member's Evaluate: {answer}");
    assert!(
        answer.contains("Unfetched")
            && answer.contains("[\"mallory\"]")
            && answer.contains("inconsistent model: feature count"),
        "{answer}"
    );

    // Train and evaluate: the node asks the forged member, gets its model, and the round reports
    // the model's error instead of scoring it.
    for command in ["train", "evaluate"] {
        let answer = node.command(command);
        assert!(
            mallory
                .wait_for(
                    if command == "train" {
                        "request Train"
                    } else {
                        "request GetModel"
                    },
                    Duration::from_secs(5)
                )
                .is_some(),
            "{command}: the forged member was not asked: {answer}"
        );
        eprintln!("{command} with the forged member: {answer}");
        let failed = failed_of(&answer);
        assert!(
            failed
                .iter()
                .any(|f| f.contains("model of mallory") && f.contains("feature count")),
            "{command}: the hostile model is not named: {answer}"
        );
        // The bad model is dropped, not the round: the node's own model is still scored.
        assert_eq!(answer["ok"], true, "{command}: {answer}");
        assert_eq!(answer["models"], serde_json::json!(["n1"]), "{answer}");
        assert!(node.is_running(), "{command} took the node down");
    }

    // The node still serves: its own model answers, and it holds only that one.
    let p = node.command(&format!("predict {row}"));
    assert_eq!(
        (p["ok"].clone(), p["answered"].clone()),
        (true.into(), 1.into()),
        "{p}"
    );
    let status = node.status();
    assert_eq!(status["models_held"], 1, "{status}");
    assert_eq!(
        status["restarts"]["model"], 0,
        "the model actor failed: {status}"
    );
    drop(mallory);
    assert!(node.is_running());
}
