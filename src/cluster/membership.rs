//! The member table: every peer this node knows, with its address, its state, the handle of the
//! actor that owns its link, and the link itself while it is up. Plain data and rules (who is
//! admitted, what gossip about a member that left means, who a flow asks), so they are tested
//! without actors; `H` is whatever handle the owner keeps per peer.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use super::member::{Asked, Member};
use super::PeerState;
use crate::net::Link;
use crate::protocol::NodeInfo;

/// One known peer.
#[derive(Debug, Clone)]
pub struct Entry<H> {
    pub info: NodeInfo,
    /// `None` once the peer left.
    pub handle: Option<H>,
    pub state: PeerState,
    pub link: Option<Link>,
}

/// What to do about a member heard of (in a handshake, a welcome, or gossip).
#[derive(Debug, PartialEq)]
pub enum Admission<H> {
    /// This node itself, or a run of a member that already left: nothing to do.
    Ignore,
    /// Known, with this handle; `relocated` when the news is a newer run of it.
    Known { handle: H, relocated: bool },
    /// Not known (or known without a live handle): start a handle and [`Membership::insert`] it.
    New,
}

pub struct Membership<H> {
    me: NodeInfo,
    /// Members tracked at most, this node included.
    max: usize,
    peers: BTreeMap<String, Entry<H>>,
    /// Incarnations that left on purpose: news of them is stale.
    left: HashMap<String, u64>,
    /// Who a flow asks, as [`Membership::ask`] last made it; dropped whenever a peer is added or
    /// changes (every prediction asks, and the table rarely changes).
    roster: RefCell<Option<Roster>>,
}

/// [`Membership::ask`]'s answer and what it was made for.
struct Roster {
    local: Rc<dyn Member>,
    deadline: Duration,
    members: Rc<[Asked]>,
    unreachable: Rc<[String]>,
}

impl<H: Clone> Membership<H> {
    pub fn new(me: NodeInfo, max: usize) -> Self {
        Membership {
            me,
            max,
            peers: BTreeMap::new(),
            left: HashMap::new(),
            roster: RefCell::new(None),
        }
    }

    /// The table changed: the next [`Membership::ask`] makes its answer again.
    fn changed(&mut self) {
        *self.roster.get_mut() = None;
    }

    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// This node and every peer it sees live: what it tells newcomers and gossips.
    pub fn view(&self) -> Vec<NodeInfo> {
        std::iter::once(self.me.clone())
            .chain(
                self.peers
                    .values()
                    .filter(|p| p.state.is_live())
                    .map(|p| p.info.clone()),
            )
            .collect()
    }

    /// Decides about `node` as the member itself described it, over its own authenticated
    /// connection: a newer incarnation (a restart, maybe at another address) is recorded.
    pub fn admit(&mut self, node: &NodeInfo) -> Admission<H> {
        self.decide(node, true)
    }

    /// Decides about `node` as another member described it (a welcome, gossip): only a
    /// candidate to dial. What is known of a member (its address, its incarnation) is never
    /// changed by what others say of it; the dial's handshake says who really answers there.
    pub fn admit_candidate(&mut self, node: &NodeInfo) -> Admission<H> {
        self.decide(node, false)
    }

    fn decide(&mut self, node: &NodeInfo, from_itself: bool) -> Admission<H> {
        if node.id == self.me.id {
            return Admission::Ignore;
        }
        if let Some(&gone) = self.left.get(&node.id) {
            if node.incarnation <= gone {
                return Admission::Ignore;
            }
            self.left.remove(&node.id);
        }
        let full = 1 + self.peers.len() >= self.max;
        match self.peers.get_mut(&node.id) {
            Some(peer) if !from_itself => match &peer.handle {
                Some(handle) => Admission::Known {
                    handle: handle.clone(),
                    relocated: false,
                },
                None => Admission::New,
            },
            Some(peer) => {
                let relocated = node.incarnation > peer.info.incarnation;
                if relocated {
                    peer.info = node.clone();
                }
                let admission = match &peer.handle {
                    Some(handle) => Admission::Known {
                        handle: handle.clone(),
                        relocated,
                    },
                    None => Admission::New,
                };
                if relocated {
                    self.changed();
                }
                admission
            }
            None if full => {
                tracing::warn!(
                    peer = %node.id,
                    "ignoring a new member: this node tracks at most {} (cluster.max_members)",
                    self.max
                );
                Admission::Ignore
            }
            None => Admission::New,
        }
    }

    /// Whether gossip about `node` is news: a member this node does not track.
    pub fn is_news(&self, node: &NodeInfo) -> bool {
        self.peers.get(&node.id).is_none_or(|p| p.handle.is_none())
    }

    /// Records a new member and the handle started for it.
    pub fn insert(&mut self, node: NodeInfo, handle: H) {
        self.changed();
        self.peers.insert(
            node.id.clone(),
            Entry {
                info: node,
                handle: Some(handle),
                state: PeerState::Connecting,
                link: None,
            },
        );
    }

    /// A peer's new state and link; true when it went from live to not live or back.
    pub fn update(&mut self, info: NodeInfo, state: PeerState, link: Option<Link>) -> bool {
        self.changed();
        let Some(peer) = self.peers.get_mut(&info.id) else {
            return false;
        };
        let was_live = peer.state.is_live();
        peer.info = info;
        peer.state = state;
        peer.link = link;
        was_live != state.is_live()
    }

    /// The peer left on purpose: forget its link and handle, ignore news of that run.
    pub fn leave(&mut self, info: &NodeInfo) {
        self.changed();
        self.left.insert(info.id.clone(), info.incarnation);
        if let Some(peer) = self.peers.get_mut(&info.id) {
            peer.state = PeerState::Left;
            peer.link = None;
            peer.handle = None;
        }
    }

    pub fn any_live(&self) -> bool {
        self.peers.values().any(|p| p.state.is_live())
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry<H>> {
        self.peers.values()
    }

    pub fn get(&self, id: &str) -> Option<&Entry<H>> {
        self.peers.get(id)
    }

    pub fn handles(&self) -> impl Iterator<Item = &H> {
        self.peers.values().filter_map(|p| p.handle.as_ref())
    }

    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.peers.values().filter_map(|p| p.link.as_ref())
    }

    /// Peers in each state: (members including this node and excluding those that left, up or
    /// suspect, suspect, down or not reached yet).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let count = |s: PeerState| self.peers.values().filter(|p| p.state == s).count();
        let members = 1 + self.peers.len() - count(PeerState::Left);
        (
            members,
            count(PeerState::Up) + count(PeerState::Suspect),
            count(PeerState::Suspect),
            count(PeerState::Down) + count(PeerState::Connecting),
        )
    }

    /// Who a flow asks: `local` (this node) and every live peer with a link, in id order; a
    /// suspect peer gets a quarter of the deadline, as it may be gone. The others known and not
    /// left are unreachable. Made again only after the table changed.
    pub fn ask(&self, local: &Rc<dyn Member>, deadline: Duration) -> (Rc<[Asked]>, Rc<[String]>) {
        let mut roster = self.roster.borrow_mut();
        if let Some(r) = roster.as_ref() {
            if Rc::ptr_eq(&r.local, local) && r.deadline == deadline {
                return (r.members.clone(), r.unreachable.clone());
            }
        }
        let mut members = vec![Asked {
            id: self.me.id.clone(),
            member: local.clone(),
            deadline,
        }];
        let mut unreachable = Vec::new();
        for peer in self.peers.values() {
            match (&peer.link, peer.state) {
                (Some(link), state) if state.is_live() => members.push(Asked {
                    id: peer.info.id.clone(),
                    member: Rc::new(link.clone()),
                    deadline: if state == PeerState::Suspect {
                        deadline / 4
                    } else {
                        deadline
                    },
                }),
                (_, PeerState::Left) => {}
                _ => unreachable.push(peer.info.id.clone()),
            }
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let r = roster.insert(Roster {
            local: local.clone(),
            deadline,
            members: members.into(),
            unreachable: unreachable.into(),
        });
        (r.members.clone(), r.unreachable.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Batch;
    use crate::error::Result;
    use crate::protocol::{Request, Response};
    use futures::future::LocalBoxFuture;

    /// This node's own model, as far as the table is concerned.
    struct Me;

    impl Member for Me {
        fn call(&self, _: Request, _: Duration) -> LocalBoxFuture<'_, Result<Response>> {
            Box::pin(futures::future::ready(Ok(Response::NoModel)))
        }

        fn predict<'a>(&'a self, _: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
            Box::pin(futures::future::ready(Ok(Response::NoModel)))
        }
    }

    /// Who a flow asks is made once and kept until the table changes in any way that matters.
    #[test]
    fn who_is_asked_is_kept_until_the_table_changes() {
        let mut m: Membership<u32> = Membership::new(node("a", 1), 8);
        let me: Rc<dyn Member> = Rc::new(Me);
        let second = Duration::from_secs(1);
        m.insert(node("c", 1), 2);
        m.insert(node("b", 1), 1);
        let (members, unreachable) = m.ask(&me, second);
        let ids: Vec<&str> = members.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a"], "peers without a link are not asked");
        assert_eq!(&*unreachable, ["b", "c"]);
        let (again, again_unreachable) = m.ask(&me, second);
        assert!(Rc::ptr_eq(&members, &again) && Rc::ptr_eq(&unreachable, &again_unreachable));
        assert!(
            !Rc::ptr_eq(&members, &m.ask(&me, second / 2).0),
            "another deadline"
        );
        assert_eq!(m.ask(&me, second / 2).0[0].deadline, second / 2);
        let (before, _) = m.ask(&me, second);
        m.leave(&node("c", 1));
        let (after, unreachable) = m.ask(&me, second);
        assert!(!Rc::ptr_eq(&before, &after));
        assert_eq!(
            &*unreachable,
            ["b"],
            "a peer that left is neither asked nor unreachable"
        );
        let (before, _) = m.ask(&me, second);
        m.update(node("b", 1), PeerState::Down, None);
        assert!(
            !Rc::ptr_eq(&before, &m.ask(&me, second).0),
            "a state change"
        );
        let (before, _) = m.ask(&me, second);
        assert!(matches!(
            m.admit(&node("b", 2)),
            Admission::Known {
                relocated: true,
                ..
            }
        ));
        assert!(!Rc::ptr_eq(&before, &m.ask(&me, second).0), "a newer run");
        let (before, _) = m.ask(&me, second);
        m.insert(node("d", 1), 3);
        let (after, unreachable) = m.ask(&me, second);
        assert!(!Rc::ptr_eq(&before, &after));
        assert_eq!(&*unreachable, ["b", "d"]);
        let other: Rc<dyn Member> = Rc::new(Me);
        assert!(
            Rc::ptr_eq(&m.ask(&other, second).0[0].member, &other),
            "another local member"
        );
    }

    fn node(id: &str, incarnation: u64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            addr: "127.0.0.1:1".into(),
            incarnation,
        }
    }

    #[test]
    fn admits_new_members_once_and_ignores_itself() {
        let mut m: Membership<u32> = Membership::new(node("a", 1), 8);
        assert_eq!(m.admit(&node("a", 9)), Admission::Ignore);
        assert_eq!(m.admit(&node("b", 1)), Admission::New);
        m.insert(node("b", 1), 7);
        assert_eq!(
            m.admit(&node("b", 1)),
            Admission::Known {
                handle: 7,
                relocated: false
            }
        );
        assert!(!m.is_news(&node("b", 1)));
        assert!(!m.is_news(&node("b", 2)), "known members are not news");
        assert_eq!(
            m.admit(&node("b", 2)),
            Admission::Known {
                handle: 7,
                relocated: true
            }
        );
        assert_eq!(m.get("b").map(|e| e.info.incarnation), Some(2));
    }

    #[test]
    fn a_member_that_left_comes_back_only_as_a_newer_run() {
        let mut m: Membership<u32> = Membership::new(node("a", 1), 8);
        m.insert(node("b", 5), 1);
        m.leave(&node("b", 5));
        assert_eq!(m.counts(), (1, 0, 0, 0), "a peer that left is not a member");
        assert_eq!(m.admit(&node("b", 5)), Admission::Ignore, "stale gossip");
        assert_eq!(m.admit(&node("b", 6)), Admission::New, "restarted");
    }

    #[test]
    fn counts_and_view_follow_states() {
        let mut m: Membership<u32> = Membership::new(node("a", 1), 8);
        for (id, h) in [("b", 1), ("c", 2), ("d", 3)] {
            m.insert(node(id, 1), h);
        }
        assert!(m.update(node("b", 1), PeerState::Up, None));
        assert!(m.update(node("c", 1), PeerState::Suspect, None));
        assert!(
            !m.update(node("d", 1), PeerState::Down, None),
            "was not live"
        );
        assert_eq!(m.counts(), (4, 2, 1, 1));
        let view: Vec<String> = m.view().into_iter().map(|n| n.id).collect();
        assert_eq!(view, ["a", "b", "c"]);
        assert!(m.any_live());
    }

    #[test]
    fn gossip_never_moves_a_known_member() {
        let mut m: Membership<u32> = Membership::new(node("a", 1), 8);
        m.insert(node("b", 5), 1);
        let forged = NodeInfo {
            addr: "10.0.0.66:1".into(),
            ..node("b", u64::MAX)
        };
        assert_eq!(
            m.admit_candidate(&forged),
            Admission::Known {
                handle: 1,
                relocated: false
            }
        );
        let b = m.get("b").map(|e| e.info.clone());
        assert_eq!(b, Some(node("b", 5)), "gossip changed a member");
        // The member itself, restarted elsewhere, is believed.
        let moved = NodeInfo {
            addr: "127.0.0.1:2".into(),
            ..node("b", 6)
        };
        assert!(matches!(
            m.admit(&moved),
            Admission::Known {
                relocated: true,
                ..
            }
        ));
        assert_eq!(
            m.get("b").map(|e| e.info.addr.as_str()),
            Some("127.0.0.1:2")
        );
    }

    #[test]
    fn news_of_more_members_than_the_limit_is_ignored() {
        let mut m: Membership<u32> = Membership::new(node("a", 1), 3);
        m.insert(node("b", 1), 1);
        assert_eq!(m.admit_candidate(&node("c", 1)), Admission::New);
        m.insert(node("c", 1), 2);
        assert_eq!(m.admit_candidate(&node("d", 1)), Admission::Ignore);
    }
}
