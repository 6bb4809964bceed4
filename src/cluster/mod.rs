//! Cluster logic without I/O: peer states, the liveness rule, reconnect backoff, which of two
//! links between the same pair of nodes survives, and gathering answers from many peers.
//! Plain functions and types, unit-tested here; the actors in `crate::actors` apply them.

use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use serde::Serialize;

use crate::error::Result;
use crate::net::Link;
use crate::protocol::{Request, Response};

/// How this node sees a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Known, never reached yet.
    Connecting,
    Up,
    /// Quiet for longer than `suspect_after`: still asked, with a short deadline.
    Suspect,
    /// Unreachable or silent for longer than `down_after`: not asked; redialed with backoff.
    Down,
    /// Left the cluster on purpose.
    Left,
}

impl PeerState {
    /// Whether requests are sent to a peer in this state.
    pub fn is_live(self) -> bool {
        matches!(self, PeerState::Up | PeerState::Suspect)
    }
}

/// The state a link's silence puts its peer in.
pub fn liveness(silence: Duration, suspect_after: Duration, down_after: Duration) -> PeerState {
    if silence >= down_after {
        PeerState::Down
    } else if silence >= suspect_after {
        PeerState::Suspect
    } else {
        PeerState::Up
    }
}

/// Delay before reconnect attempt `attempt` (0-based): 50 ms doubling up to `max`, with ±25 %
/// jitter so that nodes that lost a peer together do not redial it in lockstep.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(50)
        .saturating_mul(1u32 << attempt.min(16))
        .min(max);
    let jitter = rand::thread_rng().gen_range(0.75..1.25);
    base.mul_f64(jitter)
}

/// Who dialed a link, and the tag both ends know it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOrigin<'a> {
    pub initiator: &'a str,
    pub tag: u64,
}

/// Decides whether a new connection from the same peer replaces the current one. Both ends apply
/// the same rule to the same facts, so two nodes that dial each other at once keep the same single
/// link: the one dialed by the node with the smaller id (between two links dialed by the same node,
/// the one with the larger tag). A link to a newer incarnation (the peer restarted) always wins,
/// and a closed link is always replaced.
pub fn new_link_wins(
    me: &str,
    peer: &str,
    current: Option<(LinkOrigin<'_>, bool)>,
    new: LinkOrigin<'_>,
    peer_restarted: bool,
) -> bool {
    let Some((current, current_closed)) = current else {
        return true;
    };
    if current_closed || peer_restarted {
        return true;
    }
    let preferred = me.min(peer);
    match (current.initiator == preferred, new.initiator == preferred) {
        (false, true) => true,
        (true, false) => false,
        _ => new.tag > current.tag,
    }
}

/// One peer's answer in a fan-out.
pub struct Answer {
    pub peer: String,
    pub result: Result<Response>,
}

/// Sends `request` to every `(peer, link, deadline)` at once and gathers every answer; each is
/// bounded by its own deadline and a broken link fails at once, so the whole takes at most the
/// longest deadline.
pub async fn fan_out(targets: Vec<(String, Link, Duration)>, request: &Request) -> Vec<Answer> {
    join_all(targets.into_iter().map(|(peer, link, deadline)| {
        let request = request.clone();
        async move {
            let result = link.request(request, deadline).await;
            Answer { peer, result }
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn liveness_follows_silence() {
        assert_eq!(liveness(MS(0), MS(1500), MS(2500)), PeerState::Up);
        assert_eq!(liveness(MS(1499), MS(1500), MS(2500)), PeerState::Up);
        assert_eq!(liveness(MS(1500), MS(1500), MS(2500)), PeerState::Suspect);
        assert_eq!(liveness(MS(2500), MS(1500), MS(2500)), PeerState::Down);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        for _ in 0..100 {
            let first = backoff(0, MS(1000));
            assert!(first >= MS(37) && first <= MS(63), "{first:?}");
            let third = backoff(2, MS(1000)); // 200 ms ± 25 %
            assert!(third >= MS(150) && third <= MS(250), "{third:?}");
            let capped = backoff(30, MS(1000));
            assert!(capped >= MS(750) && capped <= MS(1250), "{capped:?}");
        }
    }

    fn origin(initiator: &str, tag: u64) -> LinkOrigin<'_> {
        LinkOrigin { initiator, tag }
    }

    #[test]
    fn both_ends_keep_the_link_dialed_by_the_smaller_id() {
        // a < b; each side holds one link when the other arrives.
        // On a: holds the link a dialed; b's arrives → keep a's.
        assert!(!new_link_wins(
            "a",
            "b",
            Some((origin("a", 1), false)),
            origin("b", 2),
            false
        ));
        // On b: holds the link b dialed; a's arrives → a's replaces it.
        assert!(new_link_wins(
            "b",
            "a",
            Some((origin("b", 2), false)),
            origin("a", 1),
            false
        ));
        // In the other order of arrival, the survivor is still the link a dialed.
        assert!(new_link_wins(
            "a",
            "b",
            Some((origin("b", 2), false)),
            origin("a", 1),
            false
        ));
        assert!(!new_link_wins(
            "b",
            "a",
            Some((origin("a", 1), false)),
            origin("b", 2),
            false
        ));
    }

    #[test]
    fn two_links_from_the_same_dialer_keep_the_larger_tag_on_both_ends() {
        for (me, peer) in [("a", "b"), ("b", "a")] {
            assert!(new_link_wins(
                me,
                peer,
                Some((origin("a", 1), false)),
                origin("a", 9),
                false
            ));
            assert!(!new_link_wins(
                me,
                peer,
                Some((origin("a", 9), false)),
                origin("a", 1),
                false
            ));
        }
    }

    #[test]
    fn closed_or_stale_links_are_replaced() {
        assert!(new_link_wins("a", "b", None, origin("b", 0), false));
        assert!(new_link_wins(
            "a",
            "b",
            Some((origin("a", 5), true)),
            origin("b", 0),
            false
        ));
        assert!(new_link_wins(
            "a",
            "b",
            Some((origin("a", 5), false)),
            origin("b", 0),
            true
        ));
    }
}
