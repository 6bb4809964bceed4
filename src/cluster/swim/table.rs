//! The member table of the membership core: every member this node heard of (itself excluded),
//! with its incarnation, status and meta, and the order in which it probes them. Lookups are by
//! hash, random picks by index, so every operation costs the same at 10 or 10,000 members.

use std::collections::HashMap;
use std::hash::Hash;

use rand::seq::SliceRandom;
use rand::Rng;

use super::wire::{Incarnation, Rumor, Status};

#[derive(Debug, Clone)]
pub struct Entry<K, D> {
    pub id: K,
    pub inc: Incarnation,
    pub status: Status,
    pub meta: D,
}

impl<K: Clone, D: Clone> Entry<K, D> {
    pub fn rumor(&self) -> Rumor<K, D> {
        Rumor {
            id: self.id.clone(),
            inc: self.inc,
            status: self.status,
            meta: (self.status == Status::Alive).then(|| self.meta.clone()),
        }
    }
}

pub struct Table<K, D> {
    entries: Vec<Entry<K, D>>,
    index: HashMap<K, u32>,
    /// Indices into `entries`: a shuffled round, probed in turn (SWIM's randomised round
    /// robin: every live member is probed once per round, in an order no one can predict).
    order: Vec<u32>,
    cursor: usize,
    live: usize,
    /// Indices of the members declared dead (few, usually), to probe one now and then.
    dead: Vec<u32>,
}

impl<K: Clone + Eq + Hash, D: Clone> Table<K, D> {
    #[cfg(test)]
    pub fn new() -> Self {
        Table {
            entries: Vec::new(),
            index: HashMap::new(),
            order: Vec::new(),
            cursor: 0,
            live: 0,
            dead: Vec::new(),
        }
    }

    /// A table holding `entries` (distinct ids), for a node that starts with a known list.
    pub fn with_entries(entries: Vec<Entry<K, D>>, rng: &mut impl Rng) -> Self {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            index.insert(e.id.clone(), i as u32);
        }
        let mut order: Vec<u32> = (0..entries.len() as u32).collect();
        order.shuffle(rng);
        let live = entries.iter().filter(|e| e.status.is_live()).count();
        let dead = (0..entries.len() as u32)
            .filter(|&i| entries[i as usize].status == Status::Dead)
            .collect();
        Table {
            entries,
            index,
            order,
            cursor: 0,
            live,
            dead,
        }
    }

    /// Members alive or suspect.
    pub fn live(&self) -> usize {
        self.live
    }

    pub fn get(&self, id: &K) -> Option<&Entry<K, D>> {
        self.index.get(id).map(|&i| &self.entries[i as usize])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry<K, D>> {
        self.entries.iter()
    }

    /// Adds a member not in the table, at a random place of the probe round still to come.
    pub fn insert(&mut self, entry: Entry<K, D>, rng: &mut impl Rng) {
        debug_assert!(!self.index.contains_key(&entry.id));
        let i = self.entries.len() as u32;
        if entry.status.is_live() {
            self.live += 1;
        }
        if entry.status == Status::Dead {
            self.dead.push(i);
        }
        self.index.insert(entry.id.clone(), i);
        self.entries.push(entry);
        let at = rng.gen_range(self.cursor.min(self.order.len())..=self.order.len());
        self.order.insert(at, i);
    }

    /// Sets a known member's status and incarnation (and meta, when given).
    pub fn set(&mut self, id: &K, status: Status, inc: Incarnation, meta: Option<D>) {
        let Some(&i) = self.index.get(id) else {
            return;
        };
        let e = &mut self.entries[i as usize];
        match (e.status.is_live(), status.is_live()) {
            (true, false) => self.live -= 1,
            (false, true) => self.live += 1,
            _ => {}
        }
        if e.status == Status::Dead && status != Status::Dead {
            self.dead.retain(|&d| d != i);
        } else if e.status != Status::Dead && status == Status::Dead {
            self.dead.push(i);
        }
        e.status = status;
        e.inc = inc;
        if let Some(meta) = meta {
            e.meta = meta;
        }
    }

    /// The next live member to probe, or `None` when there is none.
    pub fn next_to_probe(&mut self, rng: &mut impl Rng) -> Option<&Entry<K, D>> {
        if self.live == 0 {
            return None;
        }
        // At most one full round and one reshuffle: there is a live member, so this finds it.
        for _ in 0..=2 * self.order.len() {
            if self.cursor >= self.order.len() {
                self.order.shuffle(rng);
                self.cursor = 0;
            }
            let i = self.order[self.cursor] as usize;
            self.cursor += 1;
            if self.entries[i].status.is_live() {
                return Some(&self.entries[i]);
            }
        }
        None
    }

    pub fn has_dead(&self) -> bool {
        !self.dead.is_empty()
    }

    /// A member declared dead, picked at random.
    pub fn random_dead(&self, rng: &mut impl Rng) -> Option<&Entry<K, D>> {
        if self.dead.is_empty() {
            return None;
        }
        let i = self.dead[rng.gen_range(0..self.dead.len())];
        Some(&self.entries[i as usize])
    }

    /// Up to `k` distinct live members picked at random, none of them `skip`.
    pub fn random_live(&self, k: usize, skip: Option<&K>, rng: &mut impl Rng) -> Vec<K> {
        let skip_index = skip.and_then(|id| self.index.get(id)).copied();
        let candidates = self.live
            - usize::from(skip_index.is_some_and(|i| self.entries[i as usize].status.is_live()));
        let want = k.min(candidates);
        let mut picked: Vec<u32> = Vec::with_capacity(want);
        if want == 0 {
            return Vec::new();
        }
        if candidates <= 4 * want {
            // Few candidates: sample from the list of them.
            let mut all: Vec<u32> = (0..self.entries.len() as u32)
                .filter(|&i| Some(i) != skip_index && self.entries[i as usize].status.is_live())
                .collect();
            all.shuffle(rng);
            picked.extend(all.into_iter().take(want));
        } else {
            // Many: draw indices until enough distinct live ones (most draws succeed). The bound
            // keeps a table of mostly dead members from looping long; it then sends to fewer.
            for _ in 0..64 * want {
                if picked.len() == want {
                    break;
                }
                let i = rng.gen_range(0..self.entries.len()) as u32;
                if Some(i) != skip_index
                    && self.entries[i as usize].status.is_live()
                    && !picked.contains(&i)
                {
                    picked.push(i);
                }
            }
        }
        picked
            .into_iter()
            .map(|i| self.entries[i as usize].id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn entry(id: u32, status: Status) -> Entry<u32, ()> {
        Entry {
            id,
            inc: Incarnation::new(1),
            status,
            meta: (),
        }
    }

    #[test]
    fn a_round_probes_every_live_member_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = Table::with_entries(
            (0..10)
                .map(|i| entry(i, if i == 3 { Status::Dead } else { Status::Alive }))
                .collect(),
            &mut rng,
        );
        let mut seen: Vec<u32> = (0..9)
            .map(|_| {
                t.next_to_probe(&mut rng)
                    .map(|e| e.id)
                    .expect("live member")
            })
            .collect();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn random_picks_are_distinct_live_and_skip() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut t = Table::new();
        for i in 0..100 {
            t.insert(entry(i, Status::Alive), &mut rng);
        }
        for i in 0..50 {
            t.set(&i, Status::Dead, Incarnation::new(1), None);
        }
        assert_eq!(t.live(), 50);
        assert!(t.random_dead(&mut rng).is_some_and(|e| e.id < 50));
        for _ in 0..100 {
            let mut p = t.random_live(5, Some(&60), &mut rng);
            assert_eq!(p.len(), 5);
            assert!(p.iter().all(|&i| i >= 50 && i != 60), "{p:?}");
            p.sort();
            p.dedup();
            assert_eq!(p.len(), 5);
        }
        t.set(&7, Status::Alive, Incarnation::new(2), None);
        assert_eq!((t.live(), t.dead.len()), (51, 49));
        // Fewer candidates than asked: all of them.
        let mut small = Table::new();
        for i in 0..3 {
            small.insert(entry(i, Status::Alive), &mut rng);
        }
        let mut p = small.random_live(5, Some(&1), &mut rng);
        p.sort();
        assert_eq!(p, [0, 2]);
        assert!(Table::<u32, ()>::new().next_to_probe(&mut rng).is_none());
    }
}
