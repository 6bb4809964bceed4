//! Dissemination: the rumors this node still has to pass on, each sent a bounded number of times
//! (λ·log N, as in SWIM), piggy-backed on probes and on gossip to a few random members. The
//! least-sent rumors go first, so fresh news overtakes news most members already have.

use std::hash::Hash;

use super::wire::Rumor;

struct Pending<K, D> {
    rumor: Rumor<K, D>,
    sent: u32,
}

pub struct Rumors<K, D> {
    pending: Vec<Pending<K, D>>,
}

impl<K: Clone + Eq + Hash, D: Clone> Rumors<K, D> {
    pub fn new() -> Self {
        Rumors {
            pending: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Queues news about a member; it replaces older news about the same member.
    pub fn push(&mut self, rumor: Rumor<K, D>) {
        self.pending.retain(|p| p.rumor.id != rumor.id);
        self.pending.push(Pending { rumor, sent: 0 });
    }

    /// Up to `max` rumors for one packet, least-sent first; each counts as sent once, and a
    /// rumor sent `limit` times is dropped.
    pub fn take(&mut self, max: usize, limit: u32) -> Vec<Rumor<K, D>> {
        if self.pending.is_empty() || max == 0 {
            return Vec::new();
        }
        // Stable: among equally-sent rumors, the older first.
        self.pending.sort_by_key(|p| p.sent);
        let n = max.min(self.pending.len());
        let out = self.pending[..n]
            .iter_mut()
            .map(|p| {
                p.sent += 1;
                p.rumor.clone()
            })
            .collect();
        self.pending.retain(|p| p.sent < limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::swim::wire::{Incarnation, Status};

    fn rumor(id: u32, status: Status) -> Rumor<u32, ()> {
        Rumor {
            id,
            inc: Incarnation::new(1),
            status,
            meta: None,
        }
    }

    #[test]
    fn each_rumor_goes_out_limit_times_then_stops() {
        let mut r = Rumors::new();
        r.push(rumor(1, Status::Dead));
        r.push(rumor(2, Status::Alive));
        let mut sent = [0; 3];
        for _ in 0..10 {
            for x in r.take(1, 3) {
                sent[x.id as usize] += 1;
            }
        }
        // One per packet, alternating (least-sent first), three times each, then nothing.
        assert_eq!(sent, [0, 3, 3]);
        assert!(r.is_empty());
    }

    #[test]
    fn newer_news_replaces_older_and_goes_first() {
        let mut r = Rumors::new();
        r.push(rumor(1, Status::Alive));
        r.push(rumor(2, Status::Alive));
        assert_eq!(r.take(1, 10)[0].id, 1);
        r.push(rumor(1, Status::Suspect));
        assert_eq!(r.len(), 2);
        // Both unsent now: the older news first, and only the newer news of member 1.
        let next: Vec<(u32, Status)> = r.take(2, 10).iter().map(|x| (x.id, x.status)).collect();
        assert_eq!(next, [(2, Status::Alive), (1, Status::Suspect)]);
    }
}
