//! [`Swim`]: one node's membership state machine. See the module above for the protocol; this
//! file is its rules: how a packet is answered, how news about a member is merged (the SWIM
//! precedence of alive, suspect, dead and left by incarnation), and what a tick does.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::rumor::Rumors;
use super::table::{Entry, Table};
use super::wire::{self, Incarnation, Packet, Rumor, Status, WireError};
use super::{Config, Event, Outgoing, Stats};

mod merge;

/// A probe of one member, in the period it was sent.
struct Probe<K> {
    target: K,
    seq: u32,
    started: Duration,
    indirect: bool,
    acked: bool,
}

/// A ping sent on behalf of `requester`, whose ack goes back to it under `their_seq`.
struct Forward<K> {
    seq: u32,
    requester: K,
    their_seq: u32,
    expires: Duration,
}

struct Joining<K> {
    seeds: Vec<K>,
    attempt: usize,
    next_try: Duration,
}

/// The membership of one node. `K` names a member (unique in the cluster), `D` is what a driver
/// needs to reach one (an address; `()` in the simulator).
pub struct Swim<K, D> {
    me: K,
    meta: D,
    inc: Incarnation,
    cfg: Config,
    rng: StdRng,
    table: Table<K, D>,
    rumors: Rumors<K, D>,
    probe: Option<Probe<K>>,
    next_probe: Duration,
    next_gossip: Duration,
    next_dead_probe: Duration,
    seq: u32,
    forwards: Vec<Forward<K>>,
    /// Suspect members and when their suspicion runs out.
    suspicions: Vec<(K, Duration)>,
    join: Option<Joining<K>>,
    left: bool,
    out: Vec<Outgoing<K>>,
    events: Vec<Event<K, D>>,
    stats: Stats,
}

impl<K, D> Swim<K, D>
where
    K: Clone + Eq + Hash + Debug + Serialize + DeserializeOwned,
    D: Clone + Debug + Serialize + DeserializeOwned,
{
    /// A node alone, at time `now` on its driver's clock; `run` is its incarnation's run (larger
    /// for each restart of the same member).
    pub fn new(me: K, meta: D, run: u64, cfg: Config, seed: u64, now: Duration) -> Self {
        Self::with_members(me, meta, run, cfg, seed, now, Vec::new())
    }

    /// A node that already knows `members` alive (as if it had joined), without news to spread.
    pub fn with_members(
        me: K,
        meta: D,
        run: u64,
        cfg: Config,
        seed: u64,
        now: Duration,
        members: Vec<(K, Incarnation, D)>,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let entries = members
            .into_iter()
            .filter(|(id, _, _)| *id != me)
            .map(|(id, inc, meta)| Entry {
                id,
                inc,
                status: Status::Alive,
                meta,
            })
            .collect();
        let table = Table::with_entries(entries, &mut rng);
        // A random phase, so that nodes started together do not probe in lockstep.
        let phase = cfg.probe_interval.mul_f64(rng.gen::<f64>());
        Swim {
            me,
            meta,
            inc: Incarnation::new(run),
            rng,
            table,
            rumors: Rumors::new(),
            probe: None,
            next_probe: now + phase,
            next_gossip: now,
            next_dead_probe: now + cfg.dead_probe_interval,
            seq: 0,
            forwards: Vec::new(),
            suspicions: Vec::new(),
            join: None,
            left: false,
            out: Vec::new(),
            events: Vec::new(),
            stats: Stats::default(),
            cfg,
        }
    }

    pub fn me(&self) -> &K {
        &self.me
    }

    pub fn incarnation(&self) -> Incarnation {
        self.inc
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What this node believes of `id`.
    pub fn status(&self, id: &K) -> Option<(Status, Incarnation)> {
        self.table.get(id).map(|e| (e.status, e.inc))
    }

    /// Every member heard of, this node excluded: id, status, meta.
    pub fn members(&self) -> impl Iterator<Item = (&K, Status, &D)> {
        self.table.iter().map(|e| (&e.id, e.status, &e.meta))
    }

    /// Members alive or suspect, this node excluded.
    pub fn live(&self) -> usize {
        self.table.live()
    }

    /// Bytes to send, to be drained after every call.
    pub fn outgoing(&mut self) -> std::vec::Drain<'_, Outgoing<K>> {
        self.out.drain(..)
    }

    /// Changes of members, to be drained after every call.
    pub fn events(&mut self) -> std::vec::Drain<'_, Event<K, D>> {
        self.events.drain(..)
    }

    /// When the next [`Swim::tick`] has something to do.
    pub fn next_wake(&self) -> Duration {
        let mut at = self.next_probe;
        if let Some(p) = &self.probe {
            if !p.acked && !p.indirect {
                at = at.min(p.started + self.cfg.probe_timeout);
            }
        }
        if !self.rumors.is_empty() {
            at = at.min(self.next_gossip);
        }
        if let Some(j) = &self.join {
            at = at.min(j.next_try);
        }
        if self.table.has_dead() {
            at = at.min(self.next_dead_probe);
        }
        self.suspicions
            .iter()
            .map(|(_, deadline)| *deadline)
            .fold(at, Duration::min)
    }

    /// Asks `seeds` in turn, until one answers, for the member list.
    pub fn join(&mut self, seeds: Vec<K>, now: Duration) {
        let seeds: Vec<K> = seeds.into_iter().filter(|s| *s != self.me).collect();
        if !seeds.is_empty() {
            self.join = Some(Joining {
                seeds,
                attempt: 0,
                next_try: now,
            });
            self.tick(now);
        }
    }

    /// A member as it described itself (over a connection it authenticated): news to spread.
    pub fn admit(&mut self, id: K, inc: Incarnation, meta: D, now: Duration) {
        self.apply(alive(id, inc, meta), now, true);
    }

    /// A member someone listed (a welcome): learnt quietly, as from a `Sync`.
    pub fn learn(&mut self, id: K, inc: Incarnation, meta: D, now: Duration) {
        self.apply(alive(id, inc, meta), now, false);
    }

    /// The member probed in this period, while it has not answered.
    pub fn probing(&self) -> Option<&K> {
        self.probe.as_ref().filter(|p| !p.acked).map(|p| &p.target)
    }

    /// Members suspected and not yet declared dead.
    pub fn suspects(&self) -> impl Iterator<Item = &K> {
        self.suspicions.iter().map(|(id, _)| id)
    }

    /// Any sign of life from `id` at time `at` (another frame on its link) answers a probe of
    /// it sent before then, and gives a suspect that is still sending a full timeout from `at`
    /// to refute: a member that is slow to hear of its suspicion (a starved core) is not dead.
    pub fn heard_from(&mut self, id: &K, at: Duration) {
        if let Some(p) = self
            .probe
            .as_mut()
            .filter(|p| p.target == *id && at >= p.started)
        {
            p.acked = true;
        }
        let timeout = self.suspicion_timeout();
        if let Some((_, deadline)) = self.suspicions.iter_mut().find(|(s, _)| s == id) {
            *deadline = (*deadline).max(at + timeout);
        }
    }

    /// Leaves the cluster: tells a few members, then stays silent.
    pub fn leave(&mut self) {
        if self.left {
            return;
        }
        let news = Rumor {
            id: self.me.clone(),
            inc: self.inc,
            status: Status::Left,
            meta: None,
        };
        for to in self
            .table
            .random_live(2 * self.cfg.gossip_fanout, None, &mut self.rng)
        {
            let rumors = vec![news.clone()];
            self.send(to, &Packet::Gossip { rumors });
        }
        self.left = true;
    }

    /// Does what is due at `now`: expire suspicions, probe, gossip, retry a join.
    pub fn tick(&mut self, now: Duration) {
        if self.left {
            return;
        }
        self.expire_suspicions(now);
        self.forwards.retain(|f| f.expires > now);
        self.retry_join(now);
        let indirect_due = self
            .probe
            .as_ref()
            .is_some_and(|p| !p.acked && !p.indirect && now >= p.started + self.cfg.probe_timeout);
        if indirect_due {
            self.probe_indirectly();
        }
        if now >= self.next_probe {
            // Far past the end of the period, this node itself was stopped or starved: the
            // silence of its target proves nothing.
            let late = now.saturating_sub(self.next_probe) > self.cfg.probe_interval;
            if let Some(p) = self.probe.take() {
                if !p.acked && !late {
                    self.suspect(p.target, now);
                }
            }
            self.start_probe(now);
            self.next_probe = now + self.cfg.probe_interval;
        }
        if !self.rumors.is_empty() && now >= self.next_gossip {
            self.gossip();
            self.next_gossip = now + self.cfg.gossip_interval;
        }
        if now >= self.next_dead_probe {
            self.next_dead_probe = now + self.cfg.dead_probe_interval;
            if let Some(news) = self.table.random_dead(&mut self.rng).map(Entry::rumor) {
                self.tell(news);
            }
        }
    }

    /// Handles bytes from member `from` (whom the driver authenticated).
    pub fn receive(&mut self, from: &K, bytes: &[u8], now: Duration) -> Result<(), WireError> {
        let packet: Packet<K, D> = wire::decode(bytes)?;
        self.stats.received_packets += 1;
        self.stats.received_bytes += bytes.len() as u64;
        if self.left {
            return Ok(());
        }
        match packet {
            Packet::Ping { seq, rumors } => {
                self.apply_all(rumors, from, now);
                let rumors = self.rumors_for(from);
                self.send(from.clone(), &Packet::Ack { seq, rumors });
            }
            Packet::Ack { seq, rumors } => {
                self.apply_all(rumors, from, now);
                self.acked(seq);
            }
            Packet::PingReq {
                seq,
                target,
                rumors,
            } => {
                self.apply_all(rumors, from, now);
                if target == self.me {
                    let rumors = self.rumors_for(from);
                    self.send(from.clone(), &Packet::Ack { seq, rumors });
                } else {
                    let mine = self.next_seq();
                    self.forwards.push(Forward {
                        seq: mine,
                        requester: from.clone(),
                        their_seq: seq,
                        expires: now + self.cfg.probe_interval,
                    });
                    let rumors = self.rumors_for(&target);
                    self.send(target, &Packet::Ping { seq: mine, rumors });
                }
            }
            Packet::Gossip { rumors } => {
                self.apply_all(rumors, from, now);
                if let Some(stale) = self.stale_news_of(from) {
                    self.send(
                        from.clone(),
                        &Packet::Gossip {
                            rumors: vec![stale],
                        },
                    );
                }
            }
            Packet::Join { inc, meta } => {
                self.apply(alive(from.clone(), inc, meta), now, true);
                let me = alive(self.me.clone(), self.inc, self.meta.clone());
                let members = std::iter::once(me)
                    .chain(self.table.iter().map(Entry::rumor))
                    .collect();
                self.send(from.clone(), &Packet::Sync { members });
            }
            Packet::Sync { members } => {
                for rumor in members {
                    self.merge_listed(rumor, from, now);
                }
                self.join = None;
            }
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn retransmit_limit(&self) -> u32 {
        let n = (self.table.live() + 2) as f64;
        self.cfg.retransmit_mult * (n.log10().ceil() as u32).max(1)
    }

    fn suspicion_timeout(&self) -> Duration {
        let n = (self.table.live() + 1).max(1) as f64;
        let scaled = self
            .cfg
            .probe_interval
            .mul_f64(self.cfg.suspicion_mult * n.log10());
        scaled.max(self.cfg.suspicion_min)
    }

    fn take_rumors(&mut self) -> Vec<Rumor<K, D>> {
        let limit = self.retransmit_limit();
        self.rumors.take(self.cfg.max_rumors, limit)
    }

    /// Rumors for a packet to `to`; if this node believes `to` suspect or dead, that news first,
    /// so that a member that is in fact alive learns it and refutes.
    fn rumors_for(&mut self, to: &K) -> Vec<Rumor<K, D>> {
        let mut rumors = self.take_rumors();
        if let Some(stale) = self.stale_news_of(to) {
            rumors.retain(|r| r.id != stale.id);
            rumors.insert(0, stale);
        }
        rumors
    }

    fn stale_news_of(&self, id: &K) -> Option<Rumor<K, D>> {
        self.table
            .get(id)
            .filter(|e| matches!(e.status, Status::Suspect | Status::Dead))
            .map(Entry::rumor)
    }

    /// Pings the member `news` is about, carrying it: a member held dead that is not learns
    /// it, and refutes.
    fn tell(&mut self, news: Rumor<K, D>) {
        let seq = self.next_seq();
        let to = news.id.clone();
        self.send(
            to,
            &Packet::Ping {
                seq,
                rumors: vec![news],
            },
        );
    }

    fn send(&mut self, to: K, packet: &Packet<K, D>) {
        // Encoding plain data into a vector does not fail; if it ever did, the packet is lost,
        // which the protocol tolerates like any loss.
        if let Ok(bytes) = wire::encode(packet) {
            self.stats.sent_packets += 1;
            self.stats.sent_bytes += bytes.len() as u64;
            if matches!(packet, Packet::Sync { .. }) {
                self.stats.sync_bytes += bytes.len() as u64;
            }
            self.out.push(Outgoing { to, bytes });
        }
    }

    fn acked(&mut self, seq: u32) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            p.acked = true;
            return;
        }
        if let Some(at) = self.forwards.iter().position(|f| f.seq == seq) {
            let f = self.forwards.swap_remove(at);
            let rumors = self.take_rumors();
            let ack = Packet::Ack {
                seq: f.their_seq,
                rumors,
            };
            self.send(f.requester, &ack);
        }
    }

    fn start_probe(&mut self, now: Duration) {
        let Some(target) = self
            .table
            .next_to_probe(&mut self.rng)
            .map(|e| e.id.clone())
        else {
            return;
        };
        let seq = self.next_seq();
        let rumors = self.rumors_for(&target);
        self.send(target.clone(), &Packet::Ping { seq, rumors });
        self.probe = Some(Probe {
            target,
            seq,
            started: now,
            indirect: false,
            acked: false,
        });
    }

    fn probe_indirectly(&mut self) {
        let Some(p) = self.probe.as_mut() else {
            return;
        };
        p.indirect = true;
        let (target, seq) = (p.target.clone(), p.seq);
        let helpers =
            self.table
                .random_live(self.cfg.indirect_probes, Some(&target), &mut self.rng);
        for helper in helpers {
            let rumors = self.take_rumors();
            let packet = Packet::PingReq {
                seq,
                target: target.clone(),
                rumors,
            };
            self.send(helper, &packet);
        }
    }

    fn gossip(&mut self) {
        let targets = self
            .table
            .random_live(self.cfg.gossip_fanout, None, &mut self.rng);
        let limit = self.retransmit_limit();
        for to in targets {
            let rumors = self.rumors.take(self.cfg.gossip_rumors, limit);
            if rumors.is_empty() {
                break;
            }
            self.send(to, &Packet::Gossip { rumors });
        }
    }

    fn retry_join(&mut self, now: Duration) {
        let Some(j) = self.join.as_mut().filter(|j| now >= j.next_try) else {
            return;
        };
        let seed = j.seeds[j.attempt % j.seeds.len()].clone();
        j.attempt += 1;
        j.next_try = now + self.cfg.join_retry;
        let packet = Packet::Join {
            inc: self.inc,
            meta: self.meta.clone(),
        };
        self.send(seed, &packet);
    }
}

pub(super) fn alive<K, D>(id: K, inc: Incarnation, meta: D) -> Rumor<K, D> {
    Rumor {
        id,
        inc,
        status: Status::Alive,
        meta: Some(meta),
    }
}

#[cfg(test)]
mod tests;
