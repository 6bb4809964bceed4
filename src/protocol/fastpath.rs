//! The frame a coordinator reads most, read without serde: a member's predictions for one batch,
//! `{"Response": {"id": id, "body": {"Predictions": {"node": …, "version": …, "weight": …,
//! "preds": {"Regression": bin} | {"Classification": {"classes": […], "codes": bin}}}}}}`, as
//! serde writes it. A coordinator of N members reads N − 1 of these per request; through serde
//! each costs a map-key lookup per field, a copy of the packed bytes and a few allocations, which
//! made decoding answers a fifth of the coordinator's work per member.
//!
//! Only that exact layout is read here (keys in serde's order, with the markers serde writes for
//! them, nothing after the message); any other frame, or any doubt, gives `None` and the frame
//! goes through serde like every other. So both paths read the same bytes as the same message,
//! and errors keep serde's wording.

use rmp::decode as d;

use super::message::{Message, Response};
use super::packed;

/// The message `body` holds when it is a member's `Predictions` answer in serde's layout.
pub(super) fn predictions(body: &[u8]) -> Option<Message> {
    let rd = &mut &body[..];
    bytes(rd, b"\x81\xa8Response\x82\xa2id")?;
    let id = d::read_int::<u64, _>(rd).ok()?;
    bytes(rd, b"\xa4body\x81\xabPredictions\x84\xa4node")?;
    let node = str(rd)?.to_owned();
    bytes(rd, b"\xa7version")?;
    let version = d::read_int::<u64, _>(rd).ok()?;
    bytes(rd, b"\xa6weight")?;
    let weight = d::read_f64(rd).ok()?;
    bytes(rd, b"\xa5preds\x81")?;
    let preds = if bytes(rd, b"\xaaRegression").is_some() {
        packed::regression(bin(rd)?).ok()?
    } else {
        bytes(rd, b"\xaeClassification\x82\xa7classes")?;
        let n = d::read_array_len(rd).ok()?;
        // Each class name takes at least a byte: a longer array cannot be in the frame.
        if n as usize > rd.len() {
            return None;
        }
        let classes = (0..n).map(|_| str(rd)).collect::<Option<Vec<&str>>>()?;
        bytes(rd, b"\xa5codes")?;
        packed::classification(&classes, bin(rd)?).ok()?
    };
    rd.is_empty().then_some(Message::Response {
        id,
        body: Response::Predictions {
            node,
            version,
            weight,
            preds,
        },
    })
}

/// Steps over `want` (map headers and keys, as serde writes them), if the frame has it next.
fn bytes(rd: &mut &[u8], want: &[u8]) -> Option<()> {
    *rd = rd.strip_prefix(want)?;
    Some(())
}

fn str<'a>(rd: &mut &'a [u8]) -> Option<&'a str> {
    let (s, rest) = d::read_str_from_slice(*rd).ok()?;
    *rd = rest;
    Some(s)
}

fn bin<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = d::read_bin_len(rd).ok()? as usize;
    let b = rd.get(..len)?;
    *rd = &rd[len..];
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::Predictions;

    fn encode(msg: &Message) -> Vec<u8> {
        rmp_serde::to_vec_named(msg).expect("encodes")
    }

    fn answers() -> Vec<Message> {
        let answer = |id, preds| Message::Response {
            id,
            body: Response::Predictions {
                node: "n-7".into(),
                version: 1 << 40,
                weight: 0.25,
                preds,
            },
        };
        vec![
            answer(0, Predictions::Regression(vec![])),
            answer(7, Predictions::Regression(vec![1.5])),
            answer(
                u64::MAX,
                Predictions::Regression((0..300).map(|i| i as f64 / 3.0).collect()),
            ),
            answer(1 << 33, Predictions::Classification(vec![])),
            answer(
                9,
                Predictions::Classification(
                    (0..100).map(|i| ["b", "a", "é"][i % 3].into()).collect(),
                ),
            ),
        ]
    }

    #[test]
    fn reads_answers_as_serde_does() {
        for msg in answers() {
            let bytes = encode(&msg);
            assert_eq!(predictions(&bytes), Some(msg.clone()));
            assert_eq!(rmp_serde::from_slice::<Message>(&bytes).ok(), Some(msg));
        }
    }

    #[test]
    fn leaves_every_other_frame_to_serde() {
        let others = [
            Message::Response {
                id: 1,
                body: Response::Pong,
            },
            Message::Response {
                id: 1,
                body: Response::NoModel,
            },
            Message::Response {
                id: 1,
                body: Response::Ensemble {
                    preds: Predictions::Regression(vec![1.0]),
                    answered: 1,
                    asked: 1,
                },
            },
            Message::Leave,
        ];
        for msg in others {
            assert_eq!(predictions(&encode(&msg)), None, "{msg:?}");
        }
    }

    /// Cut or altered anywhere, a frame is either refused by the fast path or read by it exactly
    /// as serde reads it: the fast path never accepts what serde refuses or reads differently.
    #[test]
    fn damaged_frames_read_as_serde_reads_them_or_not_at_all() {
        let mut checked = 0;
        for msg in answers() {
            let bytes = encode(&msg);
            for cut in 0..bytes.len() {
                assert_eq!(predictions(&bytes[..cut]), None, "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0xc0);
            assert_eq!(predictions(&longer), None, "a byte after the message");
            for at in 0..bytes.len().min(200) {
                for flip in [0x01u8, 0x10, 0x80, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] ^= flip;
                    if let Some(fast) = predictions(&damaged) {
                        // Compared as printed: a damaged number may be NaN, which equals nothing.
                        let slow = rmp_serde::from_slice::<Message>(&damaged);
                        let (slow, fast) =
                            (format!("{:?}", slow.ok()), format!("{:?}", Some(fast)));
                        assert_eq!(slow, fast, "byte {at} ^ {flip:#x}");
                        checked += 1;
                    }
                }
            }
        }
        // Damage inside ids, numbers and predictions still reads: the comparison above ran.
        assert!(checked > 100, "{checked} damaged frames read");
    }

    #[test]
    fn refuses_what_serde_refuses() {
        let mut bytes = encode(&answers()[1]);
        // The last byte of the packed number, gone from the bin: 7 bytes, a partial number.
        let len = bytes.len();
        bytes[len - 9] = 7;
        bytes.pop();
        assert_eq!(predictions(&bytes), None);
        assert!(rmp_serde::from_slice::<Message>(&bytes).is_err());
    }
}
