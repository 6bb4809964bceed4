//! Cluster logic: peer states, membership and failure detection ([`swim`]), reconnect backoff, which of two links between
//! the same pair of nodes survives ([`new_link_wins`]), the member table ([`Membership`]), and the
//! cluster-wide flows ([`cross_validate`], [`predict`], [`ensemble`], [`predict_file`]), with how
//! predictions reach the members ([`Dispatch`]: the members' schemas, dynamic batching).
//!
//! The flows reach members only through the [`Member`] trait ("a member I can ask with a
//! deadline"), implemented by a network link and by this node's own model, so this module knows
//! nothing of actors and its logic is unit-tested without sockets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use crate::net::LinkOrigin;

mod batching;
mod exchange;
mod member;
mod membership;
mod predict;
mod predict_file;
mod schemas;
pub mod swim;
mod train;

pub use batching::{BatchSettings, Batcher};
pub use exchange::{evaluate, serve_chunk, MODEL_CHUNK};
pub use member::{Asked, Batch, Member, Plan};
pub use membership::{Admission, Entry, Membership};
pub use predict::{ensemble, ensemble_rows, predict, Dispatch, FlowError};
pub use predict_file::{default_output, predict_file, write_batch, FILE_BATCH_ROWS};
pub use schemas::SchemaBook;
pub use train::cross_validate;

/// How this node sees a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Known, never reached yet.
    Connecting,
    Up,
    /// Missed its probes: still asked, with a short deadline.
    Suspect,
    /// Unreachable, or declared failed by the membership protocol: not asked; redialed with
    /// backoff.
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

/// Bounds how often supervised actors may restart: more than `max` restarts within `window`
/// means something is persistently wrong, and the node should stop cleanly rather than loop.
#[derive(Debug)]
pub struct RestartBudget {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max: usize, window: Duration) -> Self {
        RestartBudget {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; false when the budget is exhausted.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > self.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() <= self.max
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn restart_budget_allows_bursts_up_to_its_limit() {
        let t0 = Instant::now();
        let mut budget = RestartBudget::new(5, Duration::from_secs(10));
        for i in 0..5 {
            assert!(budget.allow(t0 + MS(i * 100)));
        }
        assert!(!budget.allow(t0 + MS(600)), "a sixth restart within 10 s");
        let mut budget = RestartBudget::new(5, Duration::from_secs(10));
        for i in 0..20 {
            assert!(
                budget.allow(t0 + MS(i * 3000)),
                "slow restarts never exhaust it"
            );
        }
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
