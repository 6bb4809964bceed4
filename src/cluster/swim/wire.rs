//! The packets the membership core exchanges, and their bytes. The core encodes its own packets
//! (compact MessagePack: structs as arrays) so that the node carries them as one opaque payload
//! and the simulator moves exactly the bytes a node would send, which is what it counts.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Orders what is said about one member. `run` tells runs of a member apart (a restart starts a
/// larger one); `count` is raised by the member itself to refute a suspicion of its run. Derived
/// `Ord` is lexicographic: any news of a newer run beats any news of an older one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Incarnation {
    pub run: u64,
    pub count: u32,
}

impl Incarnation {
    pub fn new(run: u64) -> Self {
        Incarnation { run, count: 0 }
    }
}

/// What a member is believed to be. One byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Status {
    Alive,
    /// Missed a probe: it has a suspicion timeout to refute it.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left on purpose.
    Left,
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        match s {
            Status::Alive => 0,
            Status::Suspect => 1,
            Status::Dead => 2,
            Status::Left => 3,
        }
    }
}

impl TryFrom<u8> for Status {
    type Error = String;
    fn try_from(b: u8) -> Result<Status, String> {
        match b {
            0 => Ok(Status::Alive),
            1 => Ok(Status::Suspect),
            2 => Ok(Status::Dead),
            3 => Ok(Status::Left),
            _ => Err(format!("no member status {b}")),
        }
    }
}

impl Status {
    /// Whether the member is probed and asked.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Alive | Status::Suspect)
    }
}

/// One piece of news about a member. `meta` (what the node needs to reach it, an address) rides
/// only with `Alive` news, the only news that can introduce a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rumor<K, D> {
    pub id: K,
    pub inc: Incarnation,
    pub status: Status,
    pub meta: Option<D>,
}

/// One packet between two members. Every packet but `Sync` carries a bounded number of rumors.
/// Variants go on the wire by a one-letter name: a probe is sent every period by every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Packet<K, D> {
    /// "Are you there?" Answered by an `Ack` with the same `seq`.
    #[serde(rename = "p")]
    Ping { seq: u32, rumors: Vec<Rumor<K, D>> },
    #[serde(rename = "a")]
    Ack { seq: u32, rumors: Vec<Rumor<K, D>> },
    /// "Ping `target` for me": the receiver pings it and forwards its `Ack` with this `seq`.
    #[serde(rename = "r")]
    PingReq {
        seq: u32,
        target: K,
        rumors: Vec<Rumor<K, D>>,
    },
    /// Dissemination only.
    #[serde(rename = "g")]
    Gossip { rumors: Vec<Rumor<K, D>> },
    /// "Let me in" (or, from a member that was declared dead, "tell me what I missed"):
    /// answered by a `Sync` with every member the receiver knows.
    #[serde(rename = "j")]
    Join { inc: Incarnation, meta: D },
    /// The full member list: sent only in answer to a `Join`.
    #[serde(rename = "s")]
    Sync { members: Vec<Rumor<K, D>> },
}

/// Bytes that are not a packet.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed membership packet: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    #[error("cannot encode a membership packet: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

pub fn encode<K: Serialize, D: Serialize>(packet: &Packet<K, D>) -> Result<Bytes, WireError> {
    Ok(Bytes::from(rmp_serde::to_vec(packet)?))
}

pub fn decode<K: DeserializeOwned, D: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Packet<K, D>, WireError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_stay_small() {
        let ping: Packet<u32, ()> = Packet::Ping {
            seq: 7,
            rumors: vec![],
        };
        let bytes = encode(&ping).expect("encode");
        // A fixmap of one entry (1 byte), "p" (2), then [7, []] (3): 6 bytes, where a heartbeat
        // carried the whole member list.
        assert_eq!(bytes.len(), 6, "{:x?}", &bytes[..]);
        assert_eq!(decode::<u32, ()>(&bytes).expect("decode"), ping);

        let gossip: Packet<String, String> = Packet::Gossip {
            rumors: vec![Rumor {
                id: "node3".into(),
                inc: Incarnation { run: 9, count: 2 },
                status: Status::Alive,
                meta: Some("127.0.0.1:7003".into()),
            }],
        };
        let bytes = encode(&gossip).expect("encode");
        assert_eq!(decode::<String, String>(&bytes).expect("decode"), gossip);
    }

    #[test]
    fn a_rumor_costs_a_dozen_bytes() {
        let rumor = |status| Rumor {
            id: 1234u32,
            inc: Incarnation::new(1),
            status,
            meta: Some(0x0a00_0001u32),
        };
        let one: Packet<u32, u32> = Packet::Gossip {
            rumors: vec![rumor(Status::Alive)],
        };
        // Packet: map 1 + "g" 2 + [rumors] 1 + [list] 1 = 5; rumor: array 1 + id 3 +
        // inc [1, 0] 3 + status 1 + meta 5 = 13.
        assert_eq!(encode(&one).expect("encode").len(), 5 + 13);
        let bad = b"\x81\xa1g\x91\x91\x94\x01\x92\x01\x00\x09\xc0";
        assert!(decode::<u32, u32>(bad).is_err(), "status 9");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &b""[..],
            b"\xc1",
            b"\x81\xa4Ping\x92\xff",
            b"\x81\xa5Nopes\x90",
        ] {
            assert!(decode::<u32, ()>(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_newer_run_beats_any_refutation_of_an_older_one() {
        let old = Incarnation {
            run: 1,
            count: 1000,
        };
        assert!(Incarnation::new(2) > old);
        assert!(Incarnation { run: 1, count: 3 } > Incarnation { run: 1, count: 2 });
    }
}
