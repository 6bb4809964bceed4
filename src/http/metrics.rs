//! `GET /metrics`: the Prometheus text format, through the Prometheus project's
//! `prometheus-client`. Request and command counts and latencies are recorded as they happen;
//! the node's state (peers, model, drift, restarts) is read from its typed answers at scrape
//! time, so a scrape costs four local commands and no cluster traffic.
//!
//! Counts the node keeps itself (retrains, supervisor restarts, each link's bytes) are copied
//! as they are, not summed here: a peer's byte counters start again from zero when its link is
//! replaced, which Prometheus reads as a counter reset.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::actors::DriftStatus;
use crate::answer::{ModelInfo, Peers, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    ok: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerIdLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    feature: String,
    statistic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabels {
    actor: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.25 ms .. about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// How long the live rate and percentiles of the status page look back.
const WINDOW: Duration = Duration::from_secs(10);
/// Bounds the memory of the window under any load.
const WINDOW_MAX: usize = 100_000;

/// The node's HTTP metrics. Shared by the server's workers.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<EndpointLabels>,
    commands: Family<CommandLabels, Counter>,
    command_seconds: Histograms<EndpointLabels>,
    fanout_answered: Counter,
    fanout_asked: Counter,
    peer_state: Family<PeerLabels, Gauge>,
    peer_received: Family<PeerIdLabels, Counter>,
    peer_sent: Family<PeerIdLabels, Counter>,
    members: Gauge,
    model_version: Gauge,
    training_rows: Gauge,
    training_seconds: Gauge<f64, AtomicU64>,
    drift_statistic: Family<DriftLabels, Gauge<f64, AtomicU64>>,
    drift_rows: Gauge,
    restarts: Family<ActorLabels, Counter>,
    retrains: Family<CauseLabels, Counter>,
    /// Scrapes clear and refill families: one at a time, so none sees another's half.
    scrape: Mutex<()>,
    /// (when, seconds) of recent predictions, for the page's live rate and percentiles.
    recent: Mutex<VecDeque<(Instant, f64)>>,
}

/// Predictions per second and latency percentiles over the last [`WINDOW`].
#[derive(Debug, Serialize)]
pub struct Live {
    pub window_s: f64,
    pub predictions: usize,
    pub predictions_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ensemble");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency),
            commands: Family::default(),
            command_seconds: Family::new_with_constructor(latency),
            fanout_answered: Counter::default(),
            fanout_asked: Counter::default(),
            peer_state: Family::default(),
            peer_received: Family::default(),
            peer_sent: Family::default(),
            members: Gauge::default(),
            model_version: Gauge::default(),
            training_rows: Gauge::default(),
            training_seconds: Gauge::default(),
            drift_statistic: Family::default(),
            drift_rows: Gauge::default(),
            restarts: Family::default(),
            retrains: Family::default(),
            scrape: Mutex::new(()),
            recent: Mutex::new(VecDeque::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "http_requests",
            "HTTP requests by endpoint, method and status",
            m.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint",
            m.request_seconds.clone(),
        );
        r.register(
            "commands",
            "Commands run through the HTTP API",
            m.commands.clone(),
        );
        r.register(
            "command_duration_seconds",
            "Command latency (HTTP API) by command",
            m.command_seconds.clone(),
        );
        r.register(
            "fanout_answered",
            "Members that answered cluster-wide predictions, summed over predictions",
            m.fanout_answered.clone(),
        );
        r.register(
            "fanout_asked",
            "Members asked in cluster-wide predictions, summed over predictions",
            m.fanout_asked.clone(),
        );
        r.register(
            "peer_state",
            "1 for each peer's current state (up, suspect, down, ...)",
            m.peer_state.clone(),
        );
        r.register(
            "peer_received_bytes",
            "Bytes of frames received from each peer over its current link",
            m.peer_received.clone(),
        );
        r.register(
            "peer_sent_bytes",
            "Bytes of frames sent to each peer over its current link",
            m.peer_sent.clone(),
        );
        r.register(
            "members",
            "Members this node counts, itself included",
            m.members.clone(),
        );
        r.register(
            "model_version",
            "Version of this node's model (0: none)",
            m.model_version.clone(),
        );
        r.register(
            "training_rows",
            "Rows this node's model was trained on",
            m.training_rows.clone(),
        );
        r.register(
            "last_training_seconds",
            "Wall time of this node's last training",
            m.training_seconds.clone(),
        );
        r.register(
            "drift_statistic",
            "Each feature's statistics in the last drift check (psi; ks for numeric columns)",
            m.drift_statistic.clone(),
        );
        r.register(
            "drift_new_rows",
            "New shard rows since the model was trained",
            m.drift_rows.clone(),
        );
        r.register(
            "supervisor_restarts",
            "Supervisor restarts by actor kind",
            m.restarts.clone(),
        );
        r.register(
            "retrains",
            "Trainings of this node's model by cause (start, train, train_local, drift)",
            m.retrains.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One finished HTTP request.
    pub fn request(&self, endpoint: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.into(),
                method: method.into(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// One command run for a request.
    pub fn command(&self, command: &str, ok: bool, took: Duration) {
        self.commands
            .get_or_create(&CommandLabels {
                command: command.into(),
                ok: ok.to_string(),
            })
            .inc();
        self.command_seconds
            .get_or_create(&EndpointLabels {
                endpoint: command.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// A prediction of `rows` rows that `answered` of `asked` members answered.
    pub fn predicted(&self, rows: usize, answered: usize, asked: usize, took: Duration) {
        self.fanout_answered.inc_by(answered as u64);
        self.fanout_asked.inc_by(asked as u64);
        let now = Instant::now();
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        for _ in 0..rows.min(WINDOW_MAX) {
            recent.push_back((now, took.as_secs_f64()));
        }
        while recent.len() > WINDOW_MAX {
            recent.pop_front();
        }
    }

    /// Predictions per second and latency percentiles over the last few seconds.
    pub fn live(&self) -> Live {
        let now = Instant::now();
        let mut times: Vec<f64> = match self.recent.lock() {
            Ok(mut recent) => {
                while recent.front().is_some_and(|(t, _)| now - *t > WINDOW) {
                    recent.pop_front();
                }
                recent.iter().map(|(_, s)| *s).collect()
            }
            Err(_) => Vec::new(),
        };
        times.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            (!times.is_empty()).then(|| {
                let i = ((times.len() - 1) as f64 * q).round() as usize;
                times[i] * 1000.0
            })
        };
        Live {
            window_s: WINDOW.as_secs_f64(),
            predictions: times.len(),
            predictions_per_s: times.len() as f64 / WINDOW.as_secs_f64(),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        }
    }

    /// Sets the node's state gauges from its answers, then renders everything.
    pub fn render(
        &self,
        status: Option<&Status>,
        peers: Option<&Peers>,
        model: Option<&ModelInfo>,
        drift: Option<&DriftStatus>,
    ) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = status {
            self.members.set(s.members as i64);
            self.model_version.set(s.model_version.unwrap_or(0) as i64);
            self.training_rows.set(s.rows_train.unwrap_or(0) as i64);
            let r = &s.restarts;
            for (actor, count) in [
                ("cluster", r.cluster),
                ("model", r.model),
                ("watcher", r.watcher),
                ("peer", r.peer),
            ] {
                let c = self.restarts.get_or_create(&ActorLabels {
                    actor: actor.into(),
                });
                // The supervisor's count only grows; the counter follows it.
                let seen = c.get();
                if count > seen {
                    c.inc_by(count - seen);
                }
            }
            let t = &s.retrains;
            for (cause, count) in [
                ("start", t.start),
                ("train", t.train),
                ("train_local", t.train_local),
                ("drift", t.drift),
            ] {
                copy(
                    &self.retrains,
                    CauseLabels {
                        cause: cause.into(),
                    },
                    count,
                );
            }
        }
        if let Some(p) = peers {
            self.peer_state.clear();
            self.peer_received.clear();
            self.peer_sent.clear();
            for peer in &p.peers {
                let id = PeerIdLabels {
                    peer: peer.id.clone(),
                };
                if let Some(n) = peer.received_bytes {
                    copy(&self.peer_received, id.clone(), n);
                }
                if let Some(n) = peer.sent_bytes {
                    copy(&self.peer_sent, id.clone(), n);
                }
                let state = serde_json::to_value(peer.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                self.peer_state
                    .get_or_create(&PeerLabels {
                        peer: peer.id.clone(),
                        state,
                    })
                    .set(1);
            }
        }
        if let Some(m) = model {
            self.training_seconds.set(m.train_ms as f64 / 1000.0);
        }
        if let Some(d) = drift {
            self.drift_rows.set(d.rows_since_training as i64);
            self.drift_statistic.clear();
            if let Some(report) = &d.report {
                for f in &report.features {
                    let stats = [(f.statistic.as_str(), Some(f.value)), ("ks", f.ks)];
                    for (statistic, value) in stats {
                        if let Some(value) = value {
                            self.drift_statistic
                                .get_or_create(&DriftLabels {
                                    feature: f.name.clone(),
                                    statistic: statistic.into(),
                                })
                                .set(value);
                        }
                    }
                }
            }
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            out = format!("# cannot encode the metrics: {e}\n");
        }
        out
    }
}

/// Sets a counter to a count kept elsewhere (which only grows, or starts again from zero).
fn copy<L>(family: &Family<L, Counter>, labels: L, count: u64)
where
    L: Clone + std::hash::Hash + Eq,
{
    family
        .get_or_create(&labels)
        .inner()
        .store(count, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_predictions_are_counted() {
        let m = Metrics::new();
        m.request("/v1/status", "GET", 200, Duration::from_millis(3));
        m.command("predict", true, Duration::from_millis(2));
        m.predicted(4, 3, 4, Duration::from_millis(2));
        let text = m.render(None, None, None, None);
        assert!(text.contains(
            "ensemble_http_requests_total{endpoint=\"/v1/status\",method=\"GET\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("ensemble_fanout_answered_total 3"), "{text}");
        assert!(text.contains("ensemble_fanout_asked_total 4"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let live = m.live();
        assert_eq!(live.predictions, 4);
        assert_eq!(live.p50_ms, Some(2.0));
    }

    fn peers(received: u64) -> Peers {
        use crate::answer::PeerEntry;
        use crate::cluster::PeerState;
        Peers {
            peers: vec![
                PeerEntry {
                    id: "n2".into(),
                    addr: "127.0.0.1:2".into(),
                    state: PeerState::Up,
                    received_bytes: Some(received),
                    sent_bytes: Some(700),
                },
                PeerEntry {
                    id: "n3".into(),
                    addr: "127.0.0.1:3".into(),
                    state: PeerState::Down,
                    received_bytes: None,
                    sent_bytes: None,
                },
            ],
        }
    }

    #[test]
    fn peers_are_exported_with_their_bytes() {
        let m = Metrics::new();
        let text = m.render(None, Some(&peers(1500)), None, None);
        for line in [
            "ensemble_peer_received_bytes_total{peer=\"n2\"} 1500",
            "ensemble_peer_sent_bytes_total{peer=\"n2\"} 700",
            "ensemble_peer_state{peer=\"n3\",state=\"down\"} 1",
        ] {
            assert!(text.contains(line), "no {line} in:\n{text}");
        }
        assert!(!text.contains("peer=\"n3\"} "), "n3 has no link:\n{text}");
        // A new link starts its counts again: the counter follows (a reset to Prometheus).
        let text = m.render(None, Some(&peers(40)), None, None);
        assert!(
            text.contains("ensemble_peer_received_bytes_total{peer=\"n2\"} 40"),
            "{text}"
        );
    }
}
