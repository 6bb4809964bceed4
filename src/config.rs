//! Node configuration: a TOML file read with the `config` crate, overridden by environment
//! variables (`ENSEMBLE__NODE__LISTEN=127.0.0.1:0`: prefix `ENSEMBLE`, `__` between levels), then
//! validated. Every error names the file and the key, so a user knows what to fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ml::{DataSpec, DriftSettings, ModelConfig, Task};
use crate::net::TlsFiles;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "ENSEMBLE";
/// The environment variable that carries the cluster secret (also read by `ctl`).
pub const ENV_SECRET: &str = "ENSEMBLE__CLUSTER__SECRET";
/// The environment variables that name the TLS files (also read by `ctl` and `bench`).
pub const ENV_TLS_CA: &str = "ENSEMBLE__TLS__CA";
pub const ENV_TLS_CERT: &str = "ENSEMBLE__TLS__CERT";
pub const ENV_TLS_KEY: &str = "ENSEMBLE__TLS__KEY";

/// The whole configuration of one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub node: NodeSettings,
    #[serde(default)]
    pub cluster: ClusterSettings,
    /// The node's shard; a node without one joins the cluster but holds no model.
    #[serde(default)]
    pub data: Option<DataSettings>,
    /// The weak learner and its hyperparameters; the defaults are strong (see `ml::ModelConfig`).
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub drift: DriftConfig,
    #[serde(default)]
    pub testing: TestingSettings,
    /// The HTTP API (Open Inference Protocol, `/v1`, `/metrics`, status page); off unless
    /// `listen` is set.
    #[serde(default)]
    pub http: HttpSettings,
    /// Mutual TLS; without it connections are plain (for loopback runs and tests).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

/// `[http]`: where the HTTP API listens and the bearer tokens of its two roles.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: Option<SocketAddr>,
    /// Grants everything, training included.
    pub operator_token: Option<String>,
    /// Grants reads and predictions.
    pub reader_token: Option<String>,
}

impl HttpSettings {
    /// Without a token anyone who reaches the port may train the cluster, so a listener
    /// without tokens must be on loopback.
    fn validate(&self) -> std::result::Result<(), Invalid> {
        for (key, token) in [
            ("http.operator_token", &self.operator_token),
            ("http.reader_token", &self.reader_token),
        ] {
            if matches!(token, Some(t) if t.trim().is_empty()) {
                return Err(Invalid(format!(
                    "{key} must not be empty when set (remove the key instead)"
                )));
            }
        }
        if let Some(addr) = self.listen {
            let no_token = self.operator_token.is_none() && self.reader_token.is_none();
            if no_token && !addr.ip().is_loopback() {
                return Err(Invalid(format!(
                    "http.listen {addr} is not a loopback address: set http.operator_token \
                     (and http.reader_token) or listen on 127.0.0.1"
                )));
            }
        }
        Ok(())
    }
}

/// `[tls]`: the PEM files of this node's TLS identity (see `net::tls`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The cluster CA's certificate.
    pub ca: PathBuf,
    /// This node's certificate (its id in the SAN).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

impl TlsSettings {
    /// The files, as `net::Tls::load` takes them.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Which rows a local retrain (on drift, or `train local`) learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RetrainOn {
    /// The whole shard.
    #[default]
    All,
    /// The shard's last `drift.window_rows` rows.
    Recent,
}

/// `[drift]`: when the DataWatcher checks the shard for new rows, and what counts as drift.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Watch the shard at all.
    pub enabled: bool,
    pub check_interval_ms: u64,
    /// New rows needed before they are compared with the training data.
    pub min_rows: usize,
    /// False-alarm rate of one check (the tests' p-values, Holm-corrected, are compared with it).
    pub alpha: f64,
    /// A significant feature counts as drifted only when its PSI is ≥ this (0: no floor).
    pub psi: f64,
    /// Dataset drift when at least this share of the features drifted.
    pub share: f64,
    /// A significant rise of the model's error counts only when it is ≥ this × the validation
    /// error (1: no floor).
    pub error_ratio: f64,
    /// Quantile bins of numeric features.
    pub bins: usize,
    /// No drift retrain within this time of the last one.
    pub cooldown_ms: u64,
    pub retrain_on: RetrainOn,
    pub window_rows: usize,
    /// A drift retrain's model answers only if its validation error is at most (1 + this) × the
    /// current model's on the same split (and it does as well on held-out recent rows).
    pub tolerance: f64,
    /// At most this many new rows wait for a check; beyond it the oldest are let go.
    pub max_pending_rows: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        let stats = DriftSettings::default();
        DriftConfig {
            enabled: true,
            check_interval_ms: 1_000,
            min_rows: 200,
            alpha: stats.alpha,
            psi: stats.psi,
            share: stats.share,
            error_ratio: stats.error_ratio,
            bins: stats.bins,
            cooldown_ms: 30_000,
            retrain_on: RetrainOn::All,
            window_rows: 10_000,
            tolerance: 0.05,
            max_pending_rows: 50_000,
        }
    }
}

impl DriftConfig {
    /// The statistics' thresholds.
    pub fn stats(&self) -> DriftSettings {
        DriftSettings {
            alpha: self.alpha,
            psi: self.psi,
            share: self.share,
            error_ratio: self.error_ratio,
            bins: self.bins,
        }
    }

    /// Rows a local retrain keeps (`None` = all).
    pub fn window(&self) -> Option<usize> {
        (self.retrain_on == RetrainOn::Recent).then_some(self.window_rows)
    }
}

/// `[testing]`: switches for tests only, all off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingSettings {
    /// Enables the `fault` console command.
    pub faults: bool,
    /// Pause between writing the model file and renaming it into place, so a test can kill the
    /// node in the middle of a save.
    pub save_pause_ms: u64,
}

/// `[node]`: who this node is and where it listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Unique in the cluster.
    pub id: String,
    /// Address to listen on; port 0 picks a free port (`status` reports the bound one).
    pub listen: SocketAddr,
    /// `host:port` (a DNS name or an IP) that peers and gossip use to reach this node. Defaults
    /// to `listen` when that is a specific address; required when `listen` is `0.0.0.0` or `::`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Members to contact at start; empty for the first node.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Where the node keeps its model between runs.
    pub state_dir: PathBuf,
    /// Train on the local shard at start when there is no persisted model yet.
    #[serde(default = "yes")]
    pub train_on_join: bool,
}

fn yes() -> bool {
    true
}

/// How the coordinator of a prediction combines the nodes' answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Mean (regression) or majority vote (classification).
    #[default]
    Mean,
    /// Each node weighted by its validation score.
    Weighted,
}

/// `[cluster]`: what all members must agree on, and timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// A peer from a cluster with another name is refused.
    pub name: String,
    /// When set, peers and clients must prove they know it (HMAC challenge; never sent).
    pub secret: Option<String>,
    /// The membership protocol's probe period: each node probes one member this often.
    pub heartbeat_ms: u64,
    /// Slack a suspect member has, beyond one probe period, to refute the suspicion before it is
    /// declared down (a busy core, a pause); the timeout grows as log N past that.
    pub acceptable_pause_ms: u64,
    /// Deadline of one request to one peer (predictions, scores).
    pub request_timeout_ms: u64,
    /// Deadline of a whole training round on one peer.
    pub train_timeout_ms: u64,
    /// A connection must complete its handshake within this time.
    pub handshake_timeout_ms: u64,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max_ms: u64,
    /// Largest frame accepted or sent; must hold a model.
    pub max_frame_bytes: usize,
    /// Client connections (`ctl`, `bench`) open at once; more are refused at their handshake.
    /// Members are not counted: they are bounded by `max_members`.
    pub max_connections: usize,
    /// Connections still in their handshake at once (at most `max_connections`); more are
    /// closed at accept.
    pub max_handshakes: usize,
    /// A client connection that sends nothing for this long is closed.
    pub client_idle_ms: u64,
    /// Members this node keeps track of, itself included; news of more is ignored.
    pub max_members: usize,
    /// How predictions are combined.
    pub aggregation: Aggregation,
    /// Nodes that must complete a `train` or `evaluate` for `ctl` to call it a success
    /// (default: a majority of the nodes asked).
    pub min_quorum: Option<usize>,
    /// Dynamic batching: predictions waiting for the same member at the same moment go in one
    /// frame of at most this many rows (1: every request in a frame of its own).
    pub batch_max_rows: usize,
    /// How long a member's queue of predictions waits for more before it is sent, in
    /// microseconds (0: send what is already queued, never wait).
    pub batch_delay_us: u64,
    /// Rows one prediction request may carry; a request with more is refused with an error. A
    /// frame can announce rows that take no bytes on the wire (no columns), and predicting
    /// allocates per row: this, not `max_frame_bytes`, bounds what a request costs.
    pub max_rows_per_request: usize,
}

/// The smallest `cluster.max_rows_per_request`: a `predict-file` batch must pass.
pub const MIN_ROWS_PER_REQUEST: usize = 8192;

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            name: "default".into(),
            secret: None,
            heartbeat_ms: 500,
            acceptable_pause_ms: 1_000,
            request_timeout_ms: 1_000,
            train_timeout_ms: 120_000,
            handshake_timeout_ms: 3_000,
            reconnect_max_ms: 1_000,
            max_frame_bytes: 256 * 1024 * 1024,
            max_connections: 1_024,
            max_handshakes: 256,
            client_idle_ms: 60_000,
            max_members: 1_024,
            aggregation: Aggregation::Mean,
            min_quorum: None,
            batch_max_rows: 4096,
            batch_delay_us: 0,
            max_rows_per_request: MIN_ROWS_PER_REQUEST * 8,
        }
    }
}

impl ClusterSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    pub fn batch_delay(&self) -> Duration {
        Duration::from_micros(self.batch_delay_us)
    }
}

/// `[data]`: the node's shard and what to learn from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// A CSV file, or a folder of CSV files with the same header.
    pub shard: PathBuf,
    pub label: String,
    #[serde(default = "default_task")]
    pub task: Task,
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_task() -> Task {
    Task::Regression
}

impl DataSettings {
    pub fn spec(&self) -> DataSpec {
        DataSpec {
            label: self.label.clone(),
            task: self.task,
            drop: self.drop.clone(),
        }
    }
}
fn default_valid_fraction() -> f64 {
    0.3
}
fn default_seed() -> u64 {
    42
}

impl Settings {
    /// Reads `path`, applies `ENSEMBLE__*` environment overrides and validates the result.
    pub fn load(path: &Path) -> Result<Settings> {
        let file = path.display().to_string();
        let bad = |reason: String| Error::Config {
            file: file.clone(),
            reason,
        };
        if !path.is_file() {
            return Err(bad("no such file".into()));
        }
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("node.seeds")
                    .with_list_parse_key("data.drop"),
            )
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let settings: Settings = raw.try_deserialize().map_err(|e| bad(e.to_string()))?;
        settings.validate().map_err(|e| bad(e.0))?;
        Ok(settings)
    }

    /// Checks what serde cannot; the error names the key.
    fn validate(&self) -> std::result::Result<(), Invalid> {
        let n = &self.node;
        if n.id.trim().is_empty() {
            return Err(Invalid("node.id must not be empty".into()));
        }
        if n.id.len() > 64 || n.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid(format!(
                "node.id {:?} must be at most 64 characters without spaces",
                n.id
            )));
        }
        for seed in &n.seeds {
            check_host_port(seed).map_err(|e| Invalid(format!("node.seeds: {e}")))?;
        }
        match &n.advertise {
            Some(a) => {
                check_host_port(a).map_err(|e| Invalid(format!("node.advertise: {e}")))?;
                if a.ends_with(":0") {
                    return Err(Invalid(format!(
                        "node.advertise {a:?} must name the port peers dial, not 0"
                    )));
                }
            }
            None if n.listen.ip().is_unspecified() => {
                return Err(Invalid(format!(
                    "node.advertise is required when node.listen ({}) is an unspecified address: \
                     peers need a name or address they can reach",
                    n.listen
                )))
            }
            None => {}
        }
        if self.tls.is_none() && !n.listen.ip().is_loopback() {
            return Err(Invalid(format!(
                "node.listen {} is not a loopback address: without [tls] (ca, cert, key) a node \
                 listens on loopback only; create certificates with `ensemble-node certs`",
                n.listen
            )));
        }
        self.http.validate()?;
        let c = &self.cluster;
        if c.name.trim().is_empty() {
            return Err(Invalid("cluster.name must not be empty".into()));
        }
        if matches!(&c.secret, Some(s) if s.is_empty()) {
            return Err(Invalid(
                "cluster.secret must not be empty when set (remove the key instead)".into(),
            ));
        }
        let positive = [
            ("cluster.heartbeat_ms", c.heartbeat_ms),
            ("cluster.request_timeout_ms", c.request_timeout_ms),
            ("cluster.train_timeout_ms", c.train_timeout_ms),
            ("cluster.handshake_timeout_ms", c.handshake_timeout_ms),
            ("cluster.reconnect_max_ms", c.reconnect_max_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Invalid(format!("{key} must be greater than 0")));
            }
        }
        if c.max_frame_bytes < 64 * 1024 {
            return Err(Invalid(
                "cluster.max_frame_bytes must be at least 65536".into(),
            ));
        }
        if c.max_frame_bytes > u32::MAX as usize {
            return Err(Invalid(
                "cluster.max_frame_bytes must fit the 4-byte length prefix".into(),
            ));
        }
        for (key, value) in [
            ("cluster.max_handshakes", c.max_handshakes as u64),
            ("cluster.client_idle_ms", c.client_idle_ms),
            ("cluster.max_members", c.max_members as u64),
        ] {
            if value == 0 {
                return Err(Invalid(format!("{key} must be greater than 0")));
            }
        }
        if c.max_connections == 0 {
            return Err(Invalid(
                "cluster.max_connections must be greater than 0".into(),
            ));
        }
        if c.batch_max_rows == 0 {
            return Err(Invalid(
                "cluster.batch_max_rows must be at least 1 (1: no batching)".into(),
            ));
        }
        if c.max_rows_per_request < MIN_ROWS_PER_REQUEST {
            return Err(Invalid(format!(
                "cluster.max_rows_per_request must be at least {MIN_ROWS_PER_REQUEST} (the rows \
                 of one predict-file batch)"
            )));
        }
        if c.batch_delay_us >= c.request_timeout_ms.saturating_mul(1000) {
            return Err(Invalid(
                "cluster.batch_delay_us must be shorter than cluster.request_timeout_ms".into(),
            ));
        }
        if let Some(d) = &self.data {
            if d.label.trim().is_empty() {
                return Err(Invalid("data.label must not be empty".into()));
            }
            if !(d.valid_fraction > 0.0 && d.valid_fraction < 1.0) {
                return Err(Invalid(
                    "data.valid_fraction must be between 0 and 1 (exclusive)".into(),
                ));
            }
        }
        if let Some(t) = &self.tls {
            for (key, path) in [
                ("tls.ca", &t.ca),
                ("tls.cert", &t.cert),
                ("tls.key", &t.key),
            ] {
                if !path.is_file() {
                    return Err(Invalid(format!("{key}: no such file {}", path.display())));
                }
            }
        }
        self.model.validate().map_err(|e| e.to_string())?;
        self.drift.stats().validate().map_err(|e| e.to_string())?;
        let d = &self.drift;
        if d.check_interval_ms == 0 {
            return Err(Invalid(
                "drift.check_interval_ms must be greater than 0".into(),
            ));
        }
        if d.min_rows == 0 {
            return Err(Invalid("drift.min_rows must be greater than 0".into()));
        }
        if !(d.tolerance.is_finite() && d.tolerance >= 0.0) {
            return Err(Invalid("drift.tolerance must be a number ≥ 0".into()));
        }
        if d.max_pending_rows < d.min_rows {
            return Err(Invalid(
                "drift.max_pending_rows must be at least drift.min_rows".into(),
            ));
        }
        if d.retrain_on == RetrainOn::Recent && d.window_rows < 10 {
            return Err(Invalid(
                "drift.window_rows must be at least 10 with retrain_on = \"recent\"".into(),
            ));
        }
        Ok(())
    }
}

/// A setting that breaks a rule serde cannot check; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid(message)
    }
}

/// Text that is not a `host:port` address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a host:port address")]
pub struct BadAddr(pub String);

/// Checks that `s` reads `host:port` (a DNS name, an IPv4 address or a bracketed IPv6 one) without
/// resolving it: a name may only resolve once its host is up.
pub fn check_host_port(s: &str) -> std::result::Result<(), BadAddr> {
    let bad = || BadAddr(s.to_string());
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if name_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Parses `host:port` (IPv4, `[IPv6]` or `localhost`) into a socket address.
pub fn parse_addr(s: &str) -> std::result::Result<SocketAddr, BadAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| BadAddr(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_tmp(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ensemble-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(body.as_bytes()).expect("write");
        path
    }

    const GOOD: &str = r#"
[node]
id = "n1"
listen = "127.0.0.1:0"
seeds = ["127.0.0.1:7102"]
state_dir = "state/n1"
[cluster]
name = "house-prices"
[data]
shard = "shards/house_prices/A.csv"
label = "SalePrice"
drop = ["Id"]
"#;

    #[test]
    fn loads_a_good_file_with_defaults() {
        let s = Settings::load(&write_tmp("good.toml", GOOD)).expect("valid");
        assert_eq!(s.node.id, "n1");
        assert_eq!(s.node.seeds, vec!["127.0.0.1:7102".to_string()]);
        assert_eq!(s.cluster.name, "house-prices");
        assert_eq!(s.cluster.heartbeat_ms, 500);
        let d = s.data.expect("data");
        assert_eq!(d.task, Task::Regression);
        assert_eq!(d.valid_fraction, 0.3);
    }

    #[test]
    fn http_without_tokens_must_listen_on_loopback() {
        let with = |table: &str| format!("{GOOD}\n[http]\n{table}\n");
        let ok = Settings::load(&write_tmp(
            "http_ok.toml",
            &with("listen = \"127.0.0.1:0\""),
        ));
        assert!(ok.expect("loopback").http.listen.is_some());
        let open = with("listen = \"0.0.0.0:8101\"");
        let err = Settings::load(&write_tmp("http_open.toml", &open)).expect_err("no token");
        assert!(err.to_string().contains("http.listen"), "{err}");
        let guarded = with("listen = \"0.0.0.0:8101\"\noperator_token = \"s3cret\"");
        assert!(Settings::load(&write_tmp("http_tok.toml", &guarded)).is_ok());
        let empty = with("listen = \"127.0.0.1:0\"\nreader_token = \"\"");
        let err = Settings::load(&write_tmp("http_empty.toml", &empty)).expect_err("empty");
        assert!(err.to_string().contains("http.reader_token"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let body = GOOD.replace("[cluster]", "[cluster]\nheartbeat = 3");
        let err = Settings::load(&write_tmp("unknown.toml", &body)).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("heartbeat"), "{msg}");
        assert!(msg.contains("unknown.toml"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (r#"id = "n1""#, r#"id = """#, "node.id"),
            ("127.0.0.1:0\"\nseeds", "127.0.0.1:0\"\nseeds", "node.seeds"),
            (
                r#"name = "house-prices""#,
                "name = \"x\"\nheartbeat_ms = 0",
                "cluster.heartbeat_ms",
            ),
            (
                r#"drop = ["Id"]"#,
                "drop = [\"Id\"]\ntask = \"clustering\"",
                "data.task",
            ),
        ];
        for (i, (from, to, key)) in cases.iter().enumerate() {
            let mut body = GOOD.replace(from, to);
            if *key == "node.seeds" {
                body = GOOD.replace("127.0.0.1:7102", "not an address");
            }
            let err = Settings::load(&write_tmp(&format!("bad{i}.toml"), &body))
                .expect_err("must be refused");
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn listen_must_be_an_address() {
        let body = GOOD.replace("127.0.0.1:0", "nowhere");
        let err = Settings::load(&write_tmp("listen.toml", &body)).expect_err("bad listen");
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn tls_files_must_exist_and_are_named() {
        let ca = write_tmp("tls-ca.pem", "ca");
        let cert = write_tmp("tls-n1.pem", "cert");
        let key = write_tmp("tls-n1.key", "key");
        let table = format!(
            "[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            ca.display().to_string(),
            cert.display().to_string(),
            key.display().to_string()
        );
        let s = Settings::load(&write_tmp("tls.toml", &format!("{GOOD}{table}"))).expect("valid");
        let files = s.tls.expect("tls table").files();
        assert_eq!(
            (files.ca, files.cert, files.key),
            (ca.clone(), cert, key.clone())
        );

        let missing = table.replace(&key.display().to_string(), "/nonexistent/n1.key");
        let err = Settings::load(&write_tmp("tls-missing.toml", &format!("{GOOD}{missing}")))
            .expect_err("missing key file");
        let msg = err.to_string();
        assert!(
            msg.contains("tls.key") && msg.contains("/nonexistent/n1.key"),
            "{msg}"
        );

        let partial = format!("{GOOD}[tls]\nca = {:?}\n", ca.display().to_string());
        let err = Settings::load(&write_tmp("tls-partial.toml", &partial)).expect_err("partial");
        assert!(err.to_string().contains("cert"), "{err}");
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let err = Settings::load(Path::new("/nonexistent/x.toml")).expect_err("missing");
        assert!(matches!(err, Error::Config { .. }));
    }
}
