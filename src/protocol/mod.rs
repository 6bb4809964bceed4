//! The wire protocol, and the only code that sees bytes.
//!
//! A frame is a 4-byte big-endian length followed by a MessagePack body ([`Message`]), read and
//! written by [`FrameCodec`]. The first frames of a connection are the handshake (`Hello`,
//! `Challenge`, `Auth`, then `Welcome` or `Refused`); after it, both sides send requests and
//! responses matched by id, heartbeats and one-way notices, in any order.

mod codec;
mod fastpath;
mod message;
mod packed;

pub use codec::{EncodedBody, FrameCodec, Outbound, ProtocolError, Traffic, HANDSHAKE_MAX_FRAME};
pub use message::{
    Message, ModelBlob, ModelRef, ModelSummary, NodeInfo, Request, Response, Role, PROTOCOL_VERSION,
};
