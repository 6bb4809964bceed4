//! The crate's error type. Each variant tells the caller what went wrong and, where it matters,
//! what to do next: a `Config` error is the user's to fix; `Unreachable` and `Timeout` are worth a
//! retry; `Refused` will not change by retrying.

use std::io;

/// Everything that can go wrong in a node or a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the file and the key.
    #[error("bad config {file}: {reason}")]
    Config { file: String, reason: String },

    /// A peer or a server could not be reached (connect failed); back off and retry.
    #[error("cannot reach {addr}: {source}")]
    Unreachable { addr: String, source: io::Error },

    /// The other side refused us during the handshake (wrong cluster, wrong secret, ...).
    #[error("refused by {addr}: {reason}")]
    Refused { addr: String, reason: String },

    /// We refused a connection from `addr` during its handshake.
    #[error("closed the connection from {addr}: {reason}")]
    Rejected { addr: String, reason: String },

    /// A request or a handshake step did not complete in time.
    #[error("timed out: {0}")]
    Timeout(String),

    /// The connection broke or was closed while a request was in flight.
    #[error("connection closed: {0}")]
    Closed(String),

    /// The other side sent something that breaks the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] crate::protocol::ProtocolError),

    #[error("{0}")]
    Io(#[from] io::Error),

    /// Anything else, with a message meant for a person.
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
