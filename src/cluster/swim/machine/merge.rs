//! How news about a member is merged: SWIM's precedence of alive, suspect, dead and left by
//! incarnation, suspicion and its timeout, and this node's refutation of news of its own failure.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::table::Entry;
use super::super::wire::{Packet, Rumor, Status};
use super::super::Event;
use super::{alive, Swim};

impl<K, D> Swim<K, D>
where
    K: Clone + Eq + Hash + Debug + Serialize + DeserializeOwned,
    D: Clone + Debug + Serialize + DeserializeOwned,
{
    /// The target of a probe stayed silent: suspect it, and tell it so at once.
    pub(super) fn suspect(&mut self, id: K, now: Duration) {
        let Some(inc) = self
            .table
            .get(&id)
            .filter(|e| e.status == Status::Alive)
            .map(|e| e.inc)
        else {
            return;
        };
        self.stats.suspicions += 1;
        let news = Rumor {
            id: id.clone(),
            inc,
            status: Status::Suspect,
            meta: None,
        };
        self.apply(news.clone(), now, true);
        self.send(id, &Packet::Gossip { rumors: vec![news] });
    }

    pub(super) fn expire_suspicions(&mut self, now: Duration) {
        if self.suspicions.iter().all(|(_, deadline)| *deadline > now) {
            return;
        }
        let mut expired = Vec::new();
        self.suspicions.retain(|(id, deadline)| {
            let due = *deadline <= now;
            if due {
                expired.push(id.clone());
            }
            !due
        });
        for id in expired {
            if let Some(inc) = self
                .table
                .get(&id)
                .filter(|e| e.status == Status::Suspect)
                .map(|e| e.inc)
            {
                let news = Rumor {
                    id,
                    inc,
                    status: Status::Dead,
                    meta: None,
                };
                self.apply(news, now, true);
            }
        }
    }

    pub(super) fn apply_all(&mut self, rumors: Vec<Rumor<K, D>>, from: &K, now: Duration) {
        for rumor in rumors {
            if rumor.id == self.me {
                self.about_me(&rumor, Some(from));
            } else if self.believable(&rumor, from) {
                self.apply(rumor, now, true);
            }
        }
    }

    /// News of a newer run of a known member is believed only from that member itself (its
    /// restart reaches every member over its own links): otherwise one member could claim a run
    /// no refutation can beat, and have another declared dead for good.
    fn believable(&self, news: &Rumor<K, D>, from: &K) -> bool {
        *from == news.id
            || self
                .table
                .get(&news.id)
                .is_none_or(|known| news.inc.run <= known.inc.run)
    }

    /// One member of a `Sync`. Where the list has alive a member this node declared dead at the
    /// same incarnation, the two were cut off from each other (a partition, a pause): the news
    /// goes to that member, which refutes it if it is alive, and the views merge.
    pub(super) fn merge_listed(&mut self, listed: Rumor<K, D>, from: &K, now: Duration) {
        if listed.id == self.me {
            self.about_me(&listed, Some(from));
            return;
        }
        if !self.believable(&listed, from) {
            return;
        }
        let conflict = self
            .table
            .get(&listed.id)
            .filter(|e| {
                listed.status == Status::Alive && e.status == Status::Dead && e.inc == listed.inc
            })
            .map(Entry::rumor);
        if let Some(news) = conflict {
            self.tell(news);
        }
        self.apply(listed, now, false);
    }

    /// Merges news about a member; `spread`: pass it on if it changed anything.
    pub(super) fn apply(&mut self, news: Rumor<K, D>, now: Duration, spread: bool) {
        if news.id == self.me {
            self.about_me(&news, None);
            return;
        }
        let Some((status, inc)) = self.table.get(&news.id).map(|e| (e.status, e.inc)) else {
            // Only news of a live member can introduce it; of others there is nothing to keep.
            if let (Status::Alive, Some(meta)) = (news.status, news.meta.clone()) {
                let entry = Entry {
                    id: news.id.clone(),
                    inc: news.inc,
                    status: Status::Alive,
                    meta: meta.clone(),
                };
                self.table.insert(entry, &mut self.rng);
                self.events.push(Event::Up {
                    id: news.id.clone(),
                    meta,
                });
                if spread {
                    self.rumors.push(news);
                }
            }
            return;
        };
        let is_news = match news.status {
            Status::Alive => news.inc > inc,
            Status::Suspect => {
                (status == Status::Alive && news.inc >= inc)
                    || (status == Status::Suspect && news.inc > inc)
            }
            Status::Dead => status.is_live() && news.inc >= inc,
            Status::Left => status != Status::Left && news.inc >= inc,
        };
        if !is_news {
            return;
        }
        let meta = if news.status == Status::Alive {
            news.meta.clone()
        } else {
            None
        };
        self.table.set(&news.id, news.status, news.inc, meta);
        let id = news.id.clone();
        if news.status != Status::Suspect {
            self.suspicions.retain(|(s, _)| *s != id);
        }
        match (news.status, status) {
            (Status::Alive, Status::Suspect) => self.events.push(Event::Alive(id)),
            (Status::Alive, Status::Dead | Status::Left) => {
                if let Some(e) = self.table.get(&id) {
                    let meta = e.meta.clone();
                    self.events.push(Event::Up { id, meta });
                }
            }
            (Status::Alive, _) => {}
            (Status::Suspect, Status::Alive) => {
                let deadline = now + self.suspicion_timeout();
                self.suspicions.push((id.clone(), deadline));
                self.events.push(Event::Suspect(id));
            }
            (Status::Suspect, _) => {}
            (Status::Dead, _) => self.events.push(Event::Down(id)),
            (Status::Left, _) => self.events.push(Event::Left(id)),
        }
        if spread {
            let news = self.table.get(&news.id).map(Entry::rumor).unwrap_or(news);
            self.rumors.push(news);
        }
    }

    /// News that this node is suspect or dead: refute it with a larger count of this run, and
    /// tell `from` (who holds that news, or older news already refuted) that it is alive.
    pub(super) fn about_me(&mut self, news: &Rumor<K, D>, from: Option<&K>) {
        if !matches!(news.status, Status::Suspect | Status::Dead) || news.inc.run != self.inc.run {
            return;
        }
        let me = |s: &Self| alive(s.me.clone(), s.inc, s.meta.clone());
        if news.inc >= self.inc {
            self.inc.count = news.inc.count.saturating_add(1);
            self.stats.refutations += 1;
            self.rumors.push(me(self));
            if news.status == Status::Dead {
                // Taken for dead, this node may have missed news: ask for the list, preferably
                // of the member that knows it was taken for dead (it may be across a partition).
                let to = from
                    .cloned()
                    .or_else(|| self.table.random_live(1, None, &mut self.rng).pop());
                if let Some(to) = to {
                    let packet = Packet::Join {
                        inc: self.inc,
                        meta: self.meta.clone(),
                    };
                    self.send(to, &packet);
                }
            }
        }
        if let Some(from) = from {
            let rumors = vec![me(self)];
            self.send(from.clone(), &Packet::Gossip { rumors });
        }
    }
}
