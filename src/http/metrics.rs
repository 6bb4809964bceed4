//! `GET /metrics`: the Prometheus text format, through the Prometheus project's
//! `prometheus-client`. Request and command counts and latencies are recorded as they happen;
//! the node's state (peers, model, drift, restarts) is read from its typed answers at scrape
//! time, so a scrape costs four local commands and no cluster traffic.
//!
//! Not exported (the core does not keep them): per-peer phi and bytes in/out, and retrains by
//! cause (the watcher keeps only the time of the last retrain).

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
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
struct FeatureLabels {
    feature: String,
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
    members: Gauge,
    model_version: Gauge,
    training_rows: Gauge,
    training_seconds: Gauge<f64, AtomicU64>,
    drift_psi: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    drift_rows: Gauge,
    restarts: Family<ActorLabels, Counter>,
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
            members: Gauge::default(),
            model_version: Gauge::default(),
            training_rows: Gauge::default(),
            training_seconds: Gauge::default(),
            drift_psi: Family::default(),
            drift_rows: Gauge::default(),
            restarts: Family::default(),
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
            "drift_psi",
            "Population stability index of each feature in the last drift check",
            m.drift_psi.clone(),
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
        }
        if let Some(p) = peers {
            self.peer_state.clear();
            for peer in &p.peers {
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
            if let Some(report) = &d.report {
                for f in &report.features {
                    self.drift_psi
                        .get_or_create(&FeatureLabels {
                            feature: f.name.clone(),
                        })
                        .set(f.value);
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
}
