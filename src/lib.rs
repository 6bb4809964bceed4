//! ensemble-cluster: a peer-to-peer cluster of nodes, each holding a private shard of tabular
//! data and training one weak learner on it; any node answers predictions as the ensemble.
//!
//! # Layout
//! - [`protocol`]: the wire format (length-prefixed MessagePack frames, message enums). The only
//!   code that sees bytes.
//! - [`net`]: the handshake (cluster name, version, HMAC proof of the secret) and [`net::Link`],
//!   an open connection with request ids, deadlines and heartbeats.
//! - [`cluster`]: plain cluster logic (peer states, liveness, backoff, which duplicate link
//!   survives, fan-out), unit-tested without sockets.
//! - [`actors`]: the node's actors: [`actors::ClusterActor`] (members, commands, coordination)
//!   one supervised [`actors::PeerActor`] per remote member, and the supervised
//!   [`actors::ModelActor`] that owns the node's model (double-buffered, persisted).
//! - [`ml`]: data, preprocessing, learners, metrics, model files; no networking.
//! - [`coordinator`]: the cluster-wide flows (global training with cross-validation, evaluation,
//!   global prediction), run by whichever node got the command.
//! - [`console`]: command parsing (pure) and rendering; [`ctl`]: the one-shot client;
//!   [`bench`]: the load client.
//! - [`config`]: settings from TOML and `ENSEMBLE__*` variables; [`node`]: start and run a node.
//! - [`tools`]: the `offline` and `gen` subcommands.

pub mod actors;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod console;
pub mod coordinator;
pub mod ctl;
pub mod error;
pub mod ml;
pub mod net;
pub mod node;
pub mod protocol;
pub mod tools;

pub use error::{Error, Result};
