//! The simulation engine: the nodes, the virtual clock (a queue of deliveries and wake-ups in
//! time order, ties broken by insertion), the network's latency, loss and partition, and what the
//! nodes report, tallied as the scenario asks.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::swim::{Config, Event, Incarnation, Status, Swim};

/// The network and the scenario.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// One-way latency: `latency` plus an exponential delay of mean `jitter`.
    pub latency: Duration,
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Virtual time simulated after the warm-up; the faults happen in it.
    pub duration: Duration,
    /// How long the paused node stays stopped.
    pub pause: Duration,
    /// Nodes cut off from the rest, as a fraction (0: no partition), and for how long.
    pub partition: f64,
    pub partition_for: Duration,
    pub swim: Config,
}

impl SimConfig {
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            latency: Duration::from_micros(500),
            jitter: Duration::from_millis(2),
            loss: 0.01,
            duration: Duration::from_secs(60),
            pause: Duration::from_secs(5),
            partition: 0.0,
            partition_for: Duration::from_secs(10),
            swim: Config::default(),
        }
    }
}

enum What {
    Deliver { to: u32, from: u32, bytes: Bytes },
    Wake(u32),
}

struct Scheduled {
    at: Duration,
    order: u64,
    what: What,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: `BinaryHeap` pops the largest, the simulation wants the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

#[derive(PartialEq)]
enum Life {
    NotStarted,
    Running,
    /// Stopped (SIGSTOP): what arrives waits in its socket buffers.
    Paused(Vec<(u32, Bytes)>),
    Killed,
}

pub(super) struct SimNode {
    pub(super) swim: Swim<u32, u32>,
    life: Life,
    wake_at: Option<Duration>,
}

/// The first time each observer saw one kind of event about one subject.
struct Watch {
    subject: u32,
    kind: Kind,
    since: Duration,
    seen: Vec<bool>,
    count: usize,
    wanted: usize,
    done_at: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Up,
    Down,
}

pub struct Sim {
    cfg: SimConfig,
    pub(super) now: Duration,
    rng: StdRng,
    pub(super) nodes: Vec<SimNode>,
    queue: BinaryHeap<Scheduled>,
    order: u64,
    /// Partition side of each node while a partition holds.
    pub(super) side: Option<Vec<bool>>,
    /// Nodes stopped, killed or cut off at some point: not counted in false suspicions.
    pub(super) faulty: Vec<bool>,
    watches: Vec<Watch>,
    pub(super) false_suspicions: u64,
    pub(super) false_deaths: u64,
    pub(super) declared_dead: Vec<u32>,
}

impl Sim {
    /// `cfg.nodes` running nodes that know each other (as after joining), plus one not started.
    pub fn new(cfg: SimConfig) -> Sim {
        let n = cfg.nodes;
        let all: Vec<(u32, Incarnation, u32)> = (0..n as u32)
            .map(|i| (i, Incarnation::new(1), address(i)))
            .collect();
        let mut nodes: Vec<SimNode> = (0..n as u32)
            .map(|i| SimNode {
                swim: Swim::with_members(
                    i,
                    address(i),
                    1,
                    cfg.swim.clone(),
                    node_seed(cfg.seed, i),
                    Duration::ZERO,
                    all.clone(),
                ),
                life: Life::Running,
                wake_at: None,
            })
            .collect();
        let newcomer = n as u32;
        nodes.push(SimNode {
            swim: Swim::new(
                newcomer,
                address(newcomer),
                1,
                cfg.swim.clone(),
                node_seed(cfg.seed, newcomer),
                Duration::ZERO,
            ),
            life: Life::NotStarted,
            wake_at: None,
        });
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(cfg.seed),
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            order: 0,
            side: None,
            faulty: vec![false; n + 1],
            watches: Vec::new(),
            false_suspicions: 0,
            false_deaths: 0,
            declared_dead: vec![0; n + 1],
            nodes,
            cfg,
        };
        for i in 0..n as u32 {
            sim.schedule(i);
        }
        sim
    }

    fn push(&mut self, at: Duration, what: What) {
        self.order += 1;
        self.queue.push(Scheduled {
            at,
            order: self.order,
            what,
        });
    }

    /// Wakes node `i` when its core next has something to do.
    fn schedule(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        let at = node.swim.next_wake().max(self.now);
        if node.wake_at.is_none_or(|w| at < w) {
            node.wake_at = Some(at);
            self.push(at, What::Wake(i));
        }
    }

    /// Carries what node `i` sent and records what it saw.
    fn drain(&mut self, i: u32) {
        let out: Vec<_> = self.nodes[i as usize].swim.outgoing().collect();
        for o in out {
            let cut = self
                .side
                .as_ref()
                .is_some_and(|side| side[i as usize] != side[o.to as usize]);
            if cut || self.rng.gen::<f64>() < self.cfg.loss {
                continue;
            }
            let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
            let extra = self.cfg.jitter.mul_f64((-u.ln()).min(20.0));
            let at = self.now + self.cfg.latency + extra;
            self.push(
                at,
                What::Deliver {
                    to: o.to,
                    from: i,
                    bytes: o.bytes,
                },
            );
        }
        let events: Vec<_> = self.nodes[i as usize].swim.events().collect();
        for event in events {
            let (subject, kind) = match event {
                Event::Up { id, .. } => (id, Kind::Up),
                Event::Down(id) => {
                    self.declared_dead[id as usize] += 1;
                    if !self.faulty[id as usize] {
                        self.false_deaths += 1;
                    }
                    (id, Kind::Down)
                }
                Event::Suspect(id) => {
                    if !self.faulty[id as usize] {
                        self.false_suspicions += 1;
                    }
                    continue;
                }
                Event::Alive(_) | Event::Left(_) => continue,
            };
            let now = self.now;
            for w in self
                .watches
                .iter_mut()
                .filter(|w| w.subject == subject && w.kind == kind && w.done_at.is_none())
            {
                if !w.seen[i as usize] && i != w.subject {
                    w.seen[i as usize] = true;
                    w.count += 1;
                    if w.count == w.wanted {
                        w.done_at = Some(now);
                    }
                }
            }
        }
        self.schedule(i);
    }

    /// Runs the simulation until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(next) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Scheduled { at, what, .. }) = self.queue.pop() else {
                break;
            };
            self.now = at;
            match what {
                What::Wake(i) => {
                    let node = &mut self.nodes[i as usize];
                    if node.wake_at != Some(at) || node.life != Life::Running {
                        continue;
                    }
                    node.wake_at = None;
                    node.swim.tick(at);
                    self.drain(i);
                }
                What::Deliver { to, from, bytes } => {
                    let node = &mut self.nodes[to as usize];
                    match &mut node.life {
                        Life::Running => {
                            // The bytes were made by a core: they decode.
                            let _ = node.swim.receive(&from, &bytes, at);
                            self.drain(to);
                        }
                        Life::Paused(inbox) => inbox.push((from, bytes)),
                        Life::NotStarted | Life::Killed => {}
                    }
                }
            }
        }
        self.now = until;
    }

    pub(super) fn watch(&mut self, subject: u32, kind: Kind, observers: &[u32]) -> usize {
        let mut seen = vec![true; self.nodes.len()];
        for &o in observers {
            seen[o as usize] = false;
        }
        self.watches.push(Watch {
            subject,
            kind,
            since: self.now,
            seen,
            count: 0,
            wanted: observers.len(),
            done_at: None,
        });
        self.watches.len() - 1
    }

    pub(super) fn watched_for(&self, w: usize) -> Option<f64> {
        let w = &self.watches[w];
        w.done_at.map(|t| (t - w.since).as_secs_f64())
    }

    pub(super) fn start(&mut self, i: u32, seed: u32) {
        self.nodes[i as usize].life = Life::Running;
        self.nodes[i as usize].swim.join(vec![seed], self.now);
        self.drain(i);
    }

    pub(super) fn kill(&mut self, i: u32) {
        self.faulty[i as usize] = true;
        self.nodes[i as usize].life = Life::Killed;
    }

    pub(super) fn pause(&mut self, i: u32) {
        self.faulty[i as usize] = true;
        self.nodes[i as usize].life = Life::Paused(Vec::new());
    }

    pub(super) fn resume(&mut self, i: u32) {
        let life = std::mem::replace(&mut self.nodes[i as usize].life, Life::Running);
        if let Life::Paused(inbox) = life {
            for (from, bytes) in inbox {
                let _ = self.nodes[i as usize].swim.receive(&from, &bytes, self.now);
            }
            self.nodes[i as usize].wake_at = None;
            self.nodes[i as usize].swim.tick(self.now);
            self.drain(i);
        }
    }

    /// Whether every node in `observers` holds every node in `subjects` alive.
    fn all_alive(&self, observers: &[u32], subjects: &[u32]) -> bool {
        observers.iter().all(|&o| {
            let swim = &self.nodes[o as usize].swim;
            subjects
                .iter()
                .all(|s| *s == o || matches!(swim.status(s), Some((Status::Alive, _))))
        })
    }

    /// Runs until every observer holds the subjects alive (checked every 100 ms), or `limit`.
    pub(super) fn until_alive(
        &mut self,
        observers: &[u32],
        subjects: &[u32],
        limit: Duration,
    ) -> Option<f64> {
        let since = self.now;
        while self.now < limit {
            if self.all_alive(observers, subjects) {
                return Some((self.now - since).as_secs_f64());
            }
            self.run_until(self.now + Duration::from_millis(100));
        }
        None
    }

    pub(super) fn sent(&self) -> (u64, u64) {
        self.nodes.iter().fold((0, 0), |(b, p), n| {
            let s = n.swim.stats();
            (b + s.sent_bytes, p + s.sent_packets)
        })
    }
}

/// A node's meta: an IPv4 address, as many bytes as a real one.
fn address(i: u32) -> u32 {
    0x0a00_0000 + i
}

fn node_seed(seed: u64, i: u32) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(i)
}
