//! Bytes ⇄ [`Message`]: tokio-util's length-delimited framing (4-byte big-endian length, bounded
//! by `max_frame_length`) around a MessagePack body. Each codec counts the bytes of the frames it
//! reads and writes ([`Traffic`]), which is what a connection's traffic metrics report.
//!
//! Bulk data is copied as little as possible: a frame is encoded straight into the write buffer,
//! rows sent to several nodes are encoded once ([`EncodedBody::predict`]), and rows decoded from
//! a frame keep pointing into it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::Message;
use crate::ml::typed::decode_in;
use crate::ml::TypedRows;

/// What can be wrong with the bytes a peer sent (or with a frame we were asked to send).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes of whole frames (length prefix included) a codec has read and written. Clones share
/// the counts, so a connection's owner reads them while the codec works.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl Traffic {
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Encoder and decoder of whole frames.
#[derive(Debug)]
pub struct FrameCodec {
    framing: LengthDelimitedCodec,
    max: usize,
    /// The framing has consumed a header and waits for that frame's body.
    in_frame: bool,
    traffic: Traffic,
}

/// Bytes of the length prefix in front of every frame body.
const HEADER: u64 = 4;

/// Largest frame either side reads before the other has proven who it is: a handshake message
/// is small, and an unauthenticated peer must not make us reserve more.
pub const HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

impl FrameCodec {
    /// Raises (or lowers) the largest frame accepted, once the other side is authenticated.
    pub fn set_max(&mut self, max_frame_length: usize) {
        self.framing.set_max_frame_length(max_frame_length);
        self.max = max_frame_length;
    }

    pub fn new(max_frame_length: usize) -> Self {
        FrameCodec {
            framing: LengthDelimitedCodec::builder()
                .length_field_length(4)
                .big_endian()
                .max_frame_length(max_frame_length)
                .new_codec(),
            max: max_frame_length,
            in_frame: false,
            traffic: Traffic::default(),
        }
    }

    /// The counts of this codec's frames, shared.
    pub fn traffic(&self) -> Traffic {
        self.traffic.clone()
    }
}

impl Decoder for FrameCodec {
    type Item = Message;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        // Read the announced length ourselves, to reject an oversized frame with its size before
        // any of its body arrives (the framing would only say "too big").
        let has_header = !self.in_frame && src.len() >= 4;
        if has_header {
            let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
            if len > self.max {
                return Err(ProtocolError::Oversized { len, max: self.max });
            }
        }
        match self.framing.decode(src)? {
            None => {
                // With a whole header present, the framing consumed it and now waits for the body.
                self.in_frame |= has_header;
                Ok(None)
            }
            Some(body) => {
                self.in_frame = false;
                self.traffic
                    .received
                    .fetch_add(HEADER + body.len() as u64, Ordering::Relaxed);
                decode_body(body.freeze())
            }
        }
    }
}

fn decode_body(body: Bytes) -> Result<Option<Message>, ProtocolError> {
    if let Some(answer) = super::fastpath::predictions(&body) {
        return Ok(Some(answer));
    }
    decode_in(&body, || rmp_serde::from_slice(&body))
        .map(Some)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// A request body encoded once, to be sent to many peers without encoding it again: a head and
/// a tail written one after the other (the tail: rows encoded once for every node they go to).
#[derive(Debug, Clone)]
pub struct EncodedBody {
    head: Bytes,
    tail: Bytes,
}

/// How `PredictRef::Predict { rows }` begins, before the rows: `{"Predict": {"rows": `.
const PREDICT_HEAD: &[u8] = b"\x81\xa7Predict\x81\xa4rows";

impl EncodedBody {
    /// Encodes `body` as it would be inside a `Request` message.
    pub fn new(body: &impl serde::Serialize) -> Result<EncodedBody, ProtocolError> {
        rmp_serde::to_vec_named(body)
            .map(|b| EncodedBody {
                head: Bytes::from(b),
                tail: Bytes::new(),
            })
            .map_err(|e| ProtocolError::Encode(e.to_string()))
    }

    /// `Request::Predict { rows }`, the rows encoded once for all the copies of the batch.
    pub fn predict(rows: &TypedRows) -> Result<EncodedBody, ProtocolError> {
        let tail = rows.encoded_with(|rows| {
            let mut b = Vec::with_capacity(rows.data_bytes() + rows.schema().encoded().len() + 128);
            rmp_serde::encode::write_named(&mut b, rows)
                .map_err(|e| ProtocolError::Encode(e.to_string()))?;
            Ok::<_, ProtocolError>(Bytes::from(b))
        })?;
        Ok(EncodedBody {
            head: Bytes::from_static(PREDICT_HEAD),
            tail,
        })
    }

    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

/// What a link writes: a message, or a request whose body was encoded beforehand.
#[derive(Debug)]
pub enum Outbound {
    Message(Message),
    Request { id: u64, body: EncodedBody },
}

impl Encoder<Outbound> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, out: Outbound, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match out {
            Outbound::Message(msg) => self.encode(msg, dst),
            Outbound::Request { id, body } => {
                self.frame(dst, REQUEST_HEAD_MAX + body.len(), |dst| {
                    // Exactly what serializing `Message::Request { id, body }` writes:
                    // {"Request": {"id": id, "body": <body>}}.
                    let w = &mut dst.writer();
                    let head = (|| -> Result<(), rmp::encode::ValueWriteError> {
                        rmp::encode::write_map_len(w, 1)?;
                        rmp::encode::write_str(w, "Request")?;
                        rmp::encode::write_map_len(w, 2)?;
                        rmp::encode::write_str(w, "id")?;
                        rmp::encode::write_uint(w, id)?;
                        rmp::encode::write_str(w, "body")?;
                        Ok(())
                    })();
                    head.map_err(|e| e.to_string())?;
                    dst.extend_from_slice(&body.head);
                    dst.extend_from_slice(&body.tail);
                    Ok(())
                })
            }
        }
    }
}

/// Bytes of `{"Request": {"id": id, "body": ` at most (a 9-byte id).
const REQUEST_HEAD_MAX: usize = 1 + 8 + 1 + 3 + 9 + 5;

impl Encoder<Message> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.frame(dst, size_hint(&msg), |dst| {
            // Structs as maps with field names: untagged enums (scores) need them to decode
            // right.
            rmp_serde::encode::write_named(&mut dst.writer(), &msg).map_err(|e| e.to_string())
        })
    }
}

impl FrameCodec {
    /// Writes one frame in place (the framing's layout: a 4-byte big-endian length, then the
    /// body `write` appends), without an intermediate buffer: the length is patched in once the
    /// body is written. On an error, or a body over the limit, `dst` is left as it was.
    fn frame(
        &self,
        dst: &mut BytesMut,
        size_hint: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), String>,
    ) -> Result<(), ProtocolError> {
        let start = dst.len();
        dst.reserve(4 + size_hint);
        dst.put_u32(0);
        if let Err(e) = write(dst) {
            dst.truncate(start);
            return Err(ProtocolError::Encode(e));
        }
        let len = dst.len() - start - 4;
        if len > self.max {
            dst.truncate(start);
            return Err(ProtocolError::Oversized { len, max: self.max });
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        self.traffic
            .sent
            .fetch_add(HEADER + len as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Roughly the encoded size of `msg`, so that its bytes are written in one reservation.
fn size_hint(msg: &Message) -> usize {
    use super::{Request, Response};
    let rows = |r: &TypedRows| r.data_bytes() + r.schema().encoded().len() + 128;
    match msg {
        Message::Request {
            body: Request::Predict { rows: r } | Request::PredictEnsemble { rows: r },
            ..
        } => rows(r),
        Message::Response {
            body: Response::Predictions { preds, .. } | Response::Ensemble { preds, .. },
            ..
        } => 8 * preds.len() + 128,
        _ => 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{NodeInfo, Request, Response, Role, PROTOCOL_VERSION};

    fn node() -> NodeInfo {
        NodeInfo {
            id: "n1".into(),
            addr: "127.0.0.1:7101".into(),
            incarnation: 7,
        }
    }

    fn every_message() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                cluster: "c".into(),
                role: Role::Member(node()),
                nonce: Bytes::from_static(&[1, 2, 3]),
            },
            Message::Hello {
                version: PROTOCOL_VERSION,
                cluster: "c".into(),
                role: Role::Client,
                nonce: Bytes::new(),
            },
            Message::Challenge {
                node: node(),
                nonce: Bytes::from_static(b"n"),
                proof: Bytes::from_static(b"p"),
            },
            Message::Auth {
                proof: Bytes::from_static(b"p"),
            },
            Message::Welcome {
                members: vec![node(), node()],
            },
            Message::Refused {
                reason: "wrong cluster".into(),
            },
            Message::Membership {
                packet: Bytes::from_static(b"\x81\xa1g\x91\x90"),
            },
            Message::Leave,
            Message::Request {
                id: 1,
                body: Request::Ping,
            },
            Message::Request {
                id: u64::MAX,
                body: Request::Command {
                    line: "status".into(),
                },
            },
            Message::Response {
                id: 1,
                body: Response::Pong,
            },
            Message::Response {
                id: 2,
                body: Response::Output {
                    json: "{\"ok\":true}".into(),
                },
            },
            Message::Response {
                id: 3,
                body: Response::Error {
                    reason: "no".into(),
                },
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        for msg in every_message() {
            codec.encode(msg.clone(), &mut buf).expect("encode");
            let back = codec
                .decode(&mut buf)
                .expect("decode")
                .expect("whole frame");
            assert_eq!(back, msg);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn traffic_counts_whole_frames_both_ways() {
        let mut codec = FrameCodec::new(1 << 20);
        let traffic = codec.traffic();
        let mut buf = BytesMut::new();
        let (mut wrote, mut read) = (0, 0);
        for msg in every_message() {
            codec.encode(msg, &mut buf).expect("encode");
            let frame = buf.len() as u64;
            wrote += frame;
            // Half a frame is not counted until the rest arrives.
            let mut half = buf.split_to(buf.len() / 2);
            assert!(codec.decode(&mut half).expect("decode").is_none());
            assert_eq!(traffic.received(), read);
            half.unsplit(buf.split());
            read += frame;
            assert!(codec.decode(&mut half).expect("decode").is_some());
            assert_eq!(traffic.received(), read);
        }
        let encoded = EncodedBody::new(&Request::Ping).expect("encode body");
        codec
            .encode(
                Outbound::Request {
                    id: 9,
                    body: encoded,
                },
                &mut buf,
            )
            .expect("encode");
        wrote += buf.len() as u64;
        assert_eq!(traffic.sent(), wrote);
    }

    #[test]
    fn a_pre_encoded_request_is_the_same_frame() {
        for (id, body) in [
            (0u64, Request::Ping),
            (
                300,
                Request::Command {
                    line: "status".into(),
                },
            ),
            (u64::MAX, Request::Train),
        ] {
            let mut codec = FrameCodec::new(1 << 20);
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            let encoded = EncodedBody::new(&body).expect("encode body");
            codec
                .encode(
                    Message::Request {
                        id,
                        body: body.clone(),
                    },
                    &mut a,
                )
                .expect("encode message");
            codec
                .encode(Outbound::Request { id, body: encoded }, &mut b)
                .expect("encode pre-encoded");
            assert_eq!(a, b);
            assert_eq!(
                codec.decode(&mut b).expect("decode"),
                Some(Message::Request { id, body })
            );
        }
    }

    #[test]
    fn rows_encoded_once_make_the_same_frame() {
        use crate::ml::{ColumnKind, Schema, SchemaColumn, TypedRowsBuilder};
        let schema = Schema::new([SchemaColumn {
            name: "x".into(),
            kind: ColumnKind::Number,
        }])
        .shared();
        let mut b = TypedRowsBuilder::new(schema);
        b.push_number(0, 1.5);
        b.end_row();
        let rows = b.finish();
        let mut codec = FrameCodec::new(1 << 20);
        let (mut a, mut spliced) = (BytesMut::new(), BytesMut::new());
        let request = Request::Predict { rows: rows.clone() };
        codec
            .encode(
                Message::Request {
                    id: 7,
                    body: request.clone(),
                },
                &mut a,
            )
            .expect("encode message");
        let body = EncodedBody::predict(&rows).expect("encode rows");
        codec
            .encode(Outbound::Request { id: 7, body }, &mut spliced)
            .expect("encode spliced");
        assert_eq!(a, spliced);
        assert_eq!(
            codec.decode(&mut spliced).expect("decode"),
            Some(Message::Request {
                id: 7,
                body: request
            })
        );
    }

    #[test]
    fn scores_keep_their_kind_over_the_wire() {
        use crate::ml::{ClassificationScores, Scores, SplitEval};
        // Both score kinds have four numbers: encoded as bare arrays, an untagged decode would
        // read classification scores as regression ones.
        let scores = Scores::Classification(ClassificationScores {
            accuracy: 0.9,
            precision: 0.8,
            recall: 0.7,
            f1: 0.75,
        });
        let eval = SplitEval {
            per_model: vec![scores.clone()],
            ensemble: scores,
            stats: crate::ml::SplitStats::Classification {
                confusion: vec![("a".into(), "a".into(), 1)],
            },
        };
        let msg = Message::Response {
            id: 9,
            body: Response::Evaluated {
                eval: Box::new(eval),
            },
        };
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        codec.encode(msg.clone(), &mut buf).expect("encode");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(msg));
    }

    #[test]
    fn bytes_payload_is_compact() {
        // A 1000-byte payload costs its length plus a few bytes of framing and names, not ~2
        // bytes per element as an array of integers would.
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        let msg = Message::Auth {
            proof: Bytes::from(vec![200u8; 1000]),
        };
        codec.encode(msg, &mut buf).expect("encode");
        assert!(buf.len() < 1040, "frame is {} bytes", buf.len());
    }

    #[test]
    fn truncated_frame_waits_for_more_bytes() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut full = BytesMut::new();
        codec
            .encode(Message::Leave, &mut full)
            .expect("encode leave");
        codec
            .encode(
                Message::Welcome {
                    members: vec![node()],
                },
                &mut full,
            )
            .expect("encode welcome");
        // Feed byte by byte: nothing is decoded until a frame is complete.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in full.iter() {
            buf.extend_from_slice(&[*b]);
            if let Some(m) = codec.decode(&mut buf).expect("no error on partial input") {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Message::Leave);
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        match codec.decode(&mut buf) {
            Err(ProtocolError::Oversized { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 1024);
            }
            other => panic!("expected oversized, got {other:?}"),
        }
    }

    #[test]
    fn oversized_message_is_not_sent() {
        let mut codec = FrameCodec::new(100);
        let mut buf = BytesMut::new();
        let msg = Message::Auth {
            proof: Bytes::from(vec![0u8; 200]),
        };
        assert!(matches!(
            codec.encode(msg, &mut buf),
            Err(ProtocolError::Oversized { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_body_is_malformed() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_variant_is_malformed() {
        // A map/array naming a variant index this version does not have.
        let body = rmp_serde::to_vec(&(99u32, ())).expect("encode");
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(&body);
        let mut codec = FrameCodec::new(1024);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::Malformed(_))
        ));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// Random bytes never panic the decoder: they decode, wait for more, or fail.
            #[test]
            fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut codec = FrameCodec::new(256);
                let mut buf = BytesMut::from(&data[..]);
                for _ in 0..64 {
                    match codec.decode(&mut buf) {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            }

            /// A valid frame behind a random length prefix never panics either.
            #[test]
            fn random_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
                let mut buf = BytesMut::new();
                buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
                buf.extend_from_slice(&body);
                let mut codec = FrameCodec::new(256);
                let _ = codec.decode(&mut buf);
            }
        }
    }
}
