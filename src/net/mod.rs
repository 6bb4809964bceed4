//! Connections between nodes: the handshake that opens them and the [`Link`] that carries
//! requests, responses and heartbeats once they are open. Actors own links; this module knows
//! nothing about actors beyond the recipient a link reports its events to.

mod handshake;
mod link;
mod stream;
pub mod tls;

pub use handshake::{accept, dial, Accepted, Dialed, Greeting, Secret};
pub use link::{Access, FromLink, Link, LinkEvent, LinkOrigin};
pub use stream::Stream;
pub use tls::{CertRole, Identity, Tls, TlsError, TlsFiles};

use tokio_util::codec::Framed;

use crate::protocol::FrameCodec;

/// A connection (plain TCP on loopback, or mutual TLS) speaking whole frames.
pub type Conn = Framed<Stream, FrameCodec>;
