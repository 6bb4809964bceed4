//! Membership and failure detection whose cost per node does not grow with the cluster: SWIM
//! (Das, Gupta and Motivala, 2002) with suspicion and incarnation-based refutation, as a pure
//! state machine. Each probe period a node pings one member (a shuffled round robin); on a missed
//! ack it asks `indirect_probes` others to ping it; still nothing by the end of the period and the
//! member is suspect, which it can refute within a suspicion timeout that grows as log N, after
//! which it is dead. News of joins, suspicions, deaths and departures rides on the probes and on
//! gossip to a few random members, each rumor sent λ·log N times; full member lists travel only in
//! answer to a `Join` (a newcomer, or a member that learns it was declared dead).
//!
//! No actors, no sockets, no clock, no global randomness: the driver passes the time
//! ([`Swim::tick`], [`Swim::receive`]) and carries the bytes it is handed ([`Swim::outgoing`]);
//! the random number generator is seeded. So the node and the simulator ([`sim`]) run the same
//! code, and a simulation replays exactly from its seed.
//!
//! Why not a crate: `foca` (SWIM, sans-IO) keeps its members in a `Vec` searched linearly on every
//! update (O(N) per rumor, O(N²) to learn a cluster), fine for a node but not for 10,000 instances
//! in one simulating process, and counts incarnations in a `u16`; `chitchat` (scuttlebutt) sends a
//! digest of every member in each gossip round, so its cost per node grows with N.

mod machine;
mod rumor;
pub mod sim;
mod table;
pub mod wire;

use std::time::Duration;

use bytes::Bytes;

pub use machine::Swim;
pub use wire::{Incarnation, Rumor, Status, WireError};

/// Timing and fan-out of the protocol.
#[derive(Debug, Clone)]
pub struct Config {
    /// One member probed per period.
    pub probe_interval: Duration,
    /// Wait for a direct ack before asking others to probe.
    pub probe_timeout: Duration,
    /// Members asked to probe on a missed ack.
    pub indirect_probes: usize,
    /// Suspicion timeout: `suspicion_mult × log10(N) × probe_interval`, at least `suspicion_min`.
    pub suspicion_mult: f64,
    pub suspicion_min: Duration,
    /// While there is news, it goes to `gossip_fanout` random members every `gossip_interval`.
    pub gossip_interval: Duration,
    pub gossip_fanout: usize,
    /// Each rumor is sent `retransmit_mult × ⌈log10(N + 1)⌉` times by each node that passes it on.
    pub retransmit_mult: u32,
    /// Rumors in one probe packet at most, and in one gossip packet (a burst of news, after a
    /// partition, drains that much faster).
    pub max_rumors: usize,
    pub gossip_rumors: usize,
    /// Every this often, a member declared dead is pinged with that news: one that was only cut
    /// off (a partition, a long pause) learns it and refutes, and the views merge again.
    pub dead_probe_interval: Duration,
    /// A `Join` unanswered for this long goes to the next seed.
    pub join_retry: Duration,
}

impl Default for Config {
    /// Tuned in the simulator for a data-centre network (milliseconds of latency, some loss): at
    /// 10,000 members a death is known to all within 10 s, and 1 % loss raises no suspicion.
    fn default() -> Self {
        Config {
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(150),
            indirect_probes: 5,
            suspicion_mult: 2.0,
            suspicion_min: Duration::from_millis(1500),
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            retransmit_mult: 4,
            max_rumors: 8,
            gossip_rumors: 48,
            dead_probe_interval: Duration::from_secs(2),
            join_retry: Duration::from_secs(1),
        }
    }
}

/// What the core tells its driver about members.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<K, D> {
    /// A member joined, or came back (a newer run, or a refuted death).
    Up { id: K, meta: D },
    /// A member missed its probes: it may be gone.
    Suspect(K),
    /// A suspect member refuted the suspicion.
    Alive(K),
    /// A member is declared failed.
    Down(K),
    /// A member left on purpose.
    Left(K),
}

/// Bytes for the driver to carry to member `to`; losing them is allowed.
#[derive(Debug, Clone)]
pub struct Outgoing<K> {
    pub to: K,
    pub bytes: Bytes,
}

/// What a node sent and received, for the cost figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    /// Of `sent_bytes`, those of full member lists (answers to joins).
    pub sync_bytes: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
    /// Members this node suspected from its own probes.
    pub suspicions: u64,
    /// Times this node refuted news of its own failure.
    pub refutations: u64,
}
