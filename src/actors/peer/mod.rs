//! One [`PeerActor`] per remote member: it dials the member with backoff, keeps the single link
//! to it (see [`crate::cluster::new_link_wins`]), passes the member's membership packets to the
//! node and applies the membership protocol's [`Verdict`]s on it (suspect, down: the link is
//! dropped and redialed, unless the peer is still talking on it), serves the member's model
//! requests with this node's [`LocalModel`], and reports every change of state or link as a
//! [`PeerEvent`] to whoever started it (the cluster actor), through a `Recipient`, without
//! knowing that actor's type. A closed connection means down at once; a hung member is found out
//! by the membership protocol.
//!
//! It runs under an actix `Supervisor`: a failure in any handler restarts it, which drops the
//! link and dials again.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::model::LocalModel;
use super::supervision::{guard, injected_fault, Guarded, Kind, Supervision};
use crate::cluster::{backoff, new_link_wins, PeerState};
use crate::net::{self, Access, Conn, FromLink, Greeting, Link, LinkEvent, LinkOrigin};
use crate::protocol::{NodeInfo, Request, Role};

mod handlers;
pub use handlers::{Attach, Fail, Relocate, Report, Verdict};

/// What a peer actor tells the node.
#[derive(Message)]
#[rtype(result = "()")]
pub enum PeerEvent {
    /// The peer's state or link changed (or was asked for again).
    Changed {
        info: NodeInfo,
        state: PeerState,
        link: Option<Link>,
    },
    /// Members heard of from this peer (its welcome).
    Learned(Vec<NodeInfo>),
    /// A membership packet from this peer (over its current link).
    Membership { from: String, packet: Bytes },
    /// The peer left the cluster on purpose.
    Left(NodeInfo),
    /// A request for the node rather than its model (a command), to answer on `link`.
    Request { link: Link, id: u64, body: Request },
}

/// Timing of dials and reconnects.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often a peer without a link checks whether to dial.
    pub heartbeat: Duration,
    pub reconnect_max: Duration,
}

/// Probe periods between two checks that a peer without a live link is being redialed.
const SAFETY_NET_PERIODS: u32 = 10;

pub struct PeerActor {
    me: NodeInfo,
    peer: NodeInfo,
    greeting: Greeting,
    timing: Timing,
    cluster: Recipient<PeerEvent>,
    link: Option<Link>,
    state: PeerState,
    attempts: u32,
    dialing: bool,
    redial: Option<SpawnHandle>,
    /// This node's model, to answer the peer's predictions directly.
    local: LocalModel,
    /// Set when the peer left on purpose: no more dialing.
    retired: bool,
    ticks: Option<SpawnHandle>,
    /// Checks, while the membership protocol holds the peer failed but its link still brings
    /// frames, that it goes on doing so (see [`PeerActor::verdict`]).
    disputed: Option<SpawnHandle>,
    /// The membership protocol holds the peer failed and has not heard it refute: a new link
    /// to it is watched like a disputed one, since no verdict will come if it fails again.
    declared_down: bool,
    supervision: Supervision,
}

/// What all the peer actors of a node share.
#[derive(Clone)]
pub struct PeerEnv {
    /// This node.
    pub me: NodeInfo,
    pub greeting: Greeting,
    pub timing: Timing,
    pub cluster: Recipient<PeerEvent>,
    pub local: LocalModel,
    pub supervision: Supervision,
}

impl PeerActor {
    /// The actor for `peer`.
    pub fn new(env: PeerEnv, peer: NodeInfo) -> Self {
        let PeerEnv {
            me,
            greeting,
            timing,
            cluster,
            local,
            supervision,
        } = env;
        PeerActor {
            me,
            peer,
            greeting,
            timing,
            cluster,
            link: None,
            state: PeerState::Connecting,
            attempts: 0,
            dialing: false,
            redial: None,
            local,
            retired: false,
            ticks: None,
            disputed: None,
            declared_down: false,
            supervision,
        }
    }

    fn live_link(&self) -> Option<&Link> {
        self.link.as_ref().filter(|l| !l.is_closed())
    }

    fn report(&self) {
        self.cluster.do_send(PeerEvent::Changed {
            info: self.peer.clone(),
            state: self.state,
            link: self.live_link().cloned(),
        });
    }

    fn set_state(&mut self, state: PeerState, why: &str) {
        if state != self.state {
            tracing::info!(peer = %self.peer.id, "{:?} → {:?}: {why}", self.state, state);
            self.state = state;
            self.report();
        }
    }

    /// The peer left: stop everything, so the actor ends once nobody holds its address (a
    /// stop would make the supervisor restart it).
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        for handle in [self.ticks.take(), self.redial.take(), self.disputed.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_future(handle);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.live_link().is_none() {
            self.schedule_dial(ctx);
        }
    }

    /// What the membership protocol decided about the peer.
    ///
    /// A member is declared failed only after a probe period and a suspicion timeout without a
    /// word from it, so a peer whose link brought a frame within the last heartbeat cannot be
    /// the one that fell silent: the news is stale. It comes from a member that was cut off
    /// itself (a partition, a link down) and, back, passes on the deaths it declared meanwhile;
    /// the peer refutes it within a few probe periods. Dropping the link for that would cost the
    /// answers of a reachable peer cluster-wide, so the link is kept while frames keep coming,
    /// and dropped as usual once they stop before the refutation arrives. A link made while the
    /// protocol still holds the peer failed is watched the same way: were the peer to fail again
    /// before refuting, no verdict would come.
    fn verdict(&mut self, verdict: PeerState, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        if verdict == PeerState::Down {
            self.declared_down = true;
        } else {
            self.declared_down = false;
            self.end_dispute(ctx);
        }
        match (verdict, self.live_link().cloned()) {
            // Already disputed: the check that runs meanwhile decides.
            (PeerState::Down, Some(_)) if self.disputed.is_some() => {}
            (PeerState::Down, Some(link)) if link.silence() < self.timing.heartbeat => {
                tracing::info!(
                    peer = %self.peer.id,
                    "declared failed by the membership protocol, but heard from {} ms ago: \
                     link kept while it refutes",
                    link.silence().as_millis()
                );
                self.watch_dispute(ctx);
            }
            (PeerState::Down, Some(link)) => {
                let why = format!(
                    "declared failed by the membership protocol (silent for {} ms)",
                    link.silence().as_millis()
                );
                self.drop_link(&link, &why, ctx);
            }
            (PeerState::Suspect, Some(_)) if self.state == PeerState::Up => {
                self.set_state(PeerState::Suspect, "missed its probes")
            }
            (PeerState::Up, Some(_)) if self.state == PeerState::Suspect => {
                self.set_state(PeerState::Up, "refuted the suspicion")
            }
            // Without a link the peer is already down, and is being redialed.
            _ => {}
        }
    }

    /// Declared failed, not yet refuted: the link stays while the peer keeps talking on it.
    fn check_dispute(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.live_link().cloned() else {
            // The link ended on its own, which already made the peer down and redialed.
            self.end_dispute(ctx);
            return;
        };
        if link.silence() >= self.timing.heartbeat * 2 {
            self.end_dispute(ctx);
            let why = format!(
                "declared failed by the membership protocol, and silent for {} ms since",
                link.silence().as_millis()
            );
            self.drop_link(&link, &why, ctx);
        }
    }

    fn watch_dispute(&mut self, ctx: &mut Context<Self>) {
        if self.disputed.is_some() {
            return;
        }
        let every = self.timing.heartbeat;
        self.disputed = Some(ctx.run_interval(every, |act, ctx| {
            guard(act, ctx, "peer actor (dispute)", |act, ctx| {
                act.check_dispute(ctx)
            });
        }));
    }

    fn end_dispute(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.disputed.take() {
            ctx.cancel_future(handle);
        }
    }

    /// Closes the link for `why`: the peer is down, and redialed.
    fn drop_link(&mut self, link: &Link, why: &str, ctx: &mut Context<Self>) {
        link.close(why);
        self.link = None;
        self.set_state(PeerState::Down, why);
        self.schedule_dial(ctx);
    }

    /// Dials after a backoff, unless a link is up or a dial is already under way.
    fn schedule_dial(&mut self, ctx: &mut Context<Self>) {
        if self.retired || self.dialing || self.redial.is_some() || self.live_link().is_some() {
            return;
        }
        let mut delay = backoff(self.attempts, self.timing.reconnect_max);
        if self.attempts == 0 && self.me.id > self.peer.id {
            // The smaller id dials first; the other waits a little, so that both rarely dial at
            // once (the link rule settles it when they do).
            delay += self.timing.heartbeat;
        }
        self.redial = Some(ctx.run_later(delay, |act, ctx| {
            act.redial = None;
            act.dial(ctx);
        }));
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        if self.retired || self.dialing || self.live_link().is_some() {
            return;
        }
        self.dialing = true;
        let addr = self.peer.addr.clone();
        let role = Role::Member(self.me.clone());
        let greeting = self.greeting.clone();
        let (target, expected) = (addr.clone(), self.peer.id.clone());
        let work = async move { net::dial(&target, role, &greeting, Some(&expected)).await };
        let dialed = work.into_actor(self).map(move |result, act, ctx| {
            act.dialing = false;
            match result {
                Ok(dialed) if dialed.node.id == act.peer.id => {
                    act.cluster.do_send(PeerEvent::Learned(dialed.members));
                    let initiator = act.me.id.clone();
                    act.attach(dialed.conn, &initiator, dialed.tag, dialed.node, ctx);
                }
                Ok(dialed) => {
                    // Another node listens at that address now; let the cluster sort it out.
                    tracing::info!(peer = %act.peer.id, "{addr} now answers as {}", dialed.node.id);
                    act.cluster.do_send(PeerEvent::Learned(vec![dialed.node]));
                    act.attempts += 1;
                    act.schedule_dial(ctx);
                }
                Err(e) => {
                    if act.attempts == 0 {
                        tracing::warn!(peer = %act.peer.id, "cannot link to {addr}: {e}");
                    } else {
                        tracing::debug!(peer = %act.peer.id, "cannot link to {addr}: {e}");
                    }
                    act.attempts += 1;
                    if act.state != PeerState::Down && act.attempts >= 2 {
                        act.set_state(PeerState::Down, &e.to_string());
                    }
                    act.schedule_dial(ctx);
                }
            }
        });
        ctx.spawn(Guarded::new(dialed, "peer actor (dial)", |_| ()));
    }

    fn attach(
        &mut self,
        conn: Conn,
        initiator: &str,
        tag: u64,
        node: NodeInfo,
        ctx: &mut Context<Self>,
    ) {
        if node.incarnation < self.peer.incarnation {
            tracing::debug!(peer = %self.peer.id, "dropping a link to an older run of the peer");
            return;
        }
        let restarted = node.incarnation > self.peer.incarnation;
        let current = self.link.as_ref().map(|l| (l.origin(), l.is_closed()));
        let new = LinkOrigin { initiator, tag };
        if !new_link_wins(&self.me.id, &self.peer.id, current, new, restarted) {
            tracing::debug!(peer = %self.peer.id, "keeping the current link, dropping a duplicate");
            return;
        }
        if let Some(old) = self.link.take() {
            old.close("replaced by a newer link");
        }
        self.peer = node;
        let local = self.local.clone();
        let link = Link::spawn(
            conn,
            self.peer.id.clone(),
            initiator.to_string(),
            tag,
            Access::Member,
            ctx.address().recipient(),
            Some(Rc::new(move |link: &Link, id, request| {
                local.serve_link(link, id, request)
            })),
        );
        self.link = Some(link);
        self.attempts = 0;
        if let Some(handle) = self.redial.take() {
            ctx.cancel_future(handle);
        }
        if self.declared_down {
            self.watch_dispute(ctx);
        }
        let previous = self.state;
        self.state = PeerState::Up;
        tracing::info!(peer = %self.peer.id, addr = %self.peer.addr, "{previous:?} → Up: linked");
        self.report();
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        // A safety net only: every way a link ends already schedules a redial. Its period is
        // what a node pays per member while idle, so it is kept long.
        let every = self.timing.heartbeat * SAFETY_NET_PERIODS;
        self.ticks = Some(ctx.run_interval(every, |act, ctx| {
            guard(act, ctx, "peer actor (tick)", |act, ctx| act.tick(ctx));
        }));
        if self.live_link().is_none() {
            self.schedule_dial(ctx);
        }
    }
}

impl Supervised for PeerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.supervision
            .restarting(Kind::Peer, &format!("peer {}", self.peer.id));
        if let Some(link) = self.link.take() {
            link.close("peer actor restarted");
        }
        self.dialing = false;
        self.redial = None;
        self.disputed = None;
        self.declared_down = false;
        self.attempts = 0;
        if !self.retired {
            self.state = PeerState::Connecting;
            self.report();
        }
    }
}
