//! ensemble-cluster: a peer-to-peer cluster of nodes, each holding a private shard of tabular
//! data and training one weak learner on it; any node answers predictions as the ensemble.
//!
//! # Layout
//! Front ends → typed commands → cluster logic → links → frames; each layer knows only the ones
//! below it.
//! - [`protocol`]: the wire format (length-prefixed MessagePack frames, message enums). The only
//!   code that sees bytes.
//! - [`net`]: the handshake (cluster name, version, HMAC proof of the secret) and [`net::Link`],
//!   an open connection with request ids, deadlines, and control frames ahead of bulk ones.
//! - [`cluster`]: cluster logic, tested without actors: peer states, membership and failure
//!   detection ([`cluster::swim`], also run by a simulator), backoff, which
//!   duplicate link survives, the member table, and the cluster-wide flows (training with
//!   cross-validation, evaluation, prediction), which ask members through [`cluster::Member`].
//! - [`actors`]: thin, supervised owners of state: [`actors::ClusterActor`] (member table,
//!   command dispatch), one [`actors::PeerActor`] per remote member, the [`actors::ModelActor`]
//!   (this node's model: double-buffered, persisted; [`actors::LocalModel`] serves it) and the
//!   [`actors::DataWatcher`] (drift, local retraining).
//! - [`ml`]: data, preprocessing, learners, metrics, model files; no networking.
//! - [`command`]: what can be asked, and the pure parser of a typed line; [`answer`]: the typed
//!   answers every front end renders.
//! - Front ends: [`console`] (stdin, human or `--json`), [`ctl`] (the one-shot client),
//!   [`bench`] (the load client).
//! - [`http`]: the optional HTTP API (Open Inference Protocol, `/v1` JSON, `/metrics`, status
//!   page), a front end that sends the same commands.
//! - [`tools`]: offline tools (`certs`: the cluster CA and certificates).
//! - [`config`]: settings from TOML and `ENSEMBLE__*` variables; [`node`]: start and run a node.
//! - [`tools`]: the `offline` and `gen` subcommands.

pub mod actors;
pub mod answer;
pub mod bench;
pub mod cluster;
pub mod command;
pub mod config;
pub mod console;
pub mod ctl;
pub mod error;
pub mod http;
pub mod ml;
pub mod net;
pub mod node;
pub mod protocol;
pub mod tools;

pub use error::{Error, Result};
