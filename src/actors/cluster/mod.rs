//! The [`ClusterActor`]: this node's member table and the entry point of every command.
//!
//! It keeps the [`Membership`] up to date from its peer actors' [`PeerEvent`]s, starts a
//! supervised [`PeerActor`] for each member it learns of, joins through the seeds while it has
//! no live peer, and leaves the cluster cleanly on `quit` or a signal. It drives this node's
//! membership protocol ([`Swim`]): ticks it, carries its packets over the member links, and turns
//! its verdicts (a member suspect, failed, back) into [`Verdict`]s for the peer actors. Commands are dispatched in
//! [`exec`] to typed answers. It is supervised like every long-lived actor: a panic in a handler
//! answers the request in flight with an error and restarts it, and a restart asks every peer
//! actor to report again, which rebuilds the member table.

mod evaluator;
mod exec;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::model::LocalModel;
use super::peer::{Attach, PeerActor, PeerEnv, PeerEvent, Relocate, Report, Timing, Verdict};
use super::supervision::{guard, Guarded, Kind, Supervision};
use super::watcher::DataWatcher;
use crate::answer::Answer;
use crate::cluster::swim::{self, Event, Incarnation, Swim};
use crate::cluster::{Admission, BatchSettings, Dispatch, Member, Membership, PeerState};
use crate::command::Command;
use crate::config::{ClusterSettings, Settings};
use crate::error::Error;
use crate::net::{self, Conn, FromLink, Greeting, Link, LinkEvent};
use crate::protocol::{Message, NodeInfo, Role};

/// How often the membership protocol is stepped: a fraction of its probe timeout.
const MEMBERSHIP_TICK: Duration = Duration::from_millis(50);

/// The membership protocol's timing, from `[cluster]`: a member is probed every `heartbeat_ms`,
/// and a suspect one has at least `heartbeat_ms + acceptable_pause_ms` to refute (more in a
/// larger cluster: the timeout grows as log N).
pub fn membership_config(c: &ClusterSettings) -> swim::Config {
    let probe = c.heartbeat();
    swim::Config {
        probe_interval: probe,
        probe_timeout: probe.mul_f64(0.3),
        suspicion_min: probe + Duration::from_millis(c.acceptable_pause_ms),
        ..swim::Config::default()
    }
}

pub struct ClusterActor {
    /// The address the listener is bound to (`me().addr` is the one peers dial).
    bound: std::net::SocketAddr,
    settings: Arc<Settings>,
    greeting: Greeting,
    timing: Timing,
    local: LocalModel,
    /// `local` as a member of this node's flows (one handle, so that the member table's answer
    /// to who is asked stays valid).
    local_member: Rc<dyn Member>,
    /// How predictions this node coordinates reach the members (schemas, batching).
    dispatch: Rc<Dispatch>,
    watcher: Option<Addr<DataWatcher>>,
    supervision: Supervision,
    members: Membership<Addr<PeerActor>>,
    /// Membership and failure detection: whom to probe, who is suspect or failed.
    swim: Swim<String, String>,
    /// The origin of `swim`'s clock.
    clock: Instant,
    seeds: Vec<String>,
    seed_dials: usize,
    started: Instant,
    leaving: bool,
    /// `fault cluster`: the next command panics inside its dispatch.
    fail_next_command: bool,
    /// The last `train` / `evaluate` report, for the HTTP status page.
    last_report: Option<Box<crate::answer::TrainReport>>,
}

impl ClusterActor {
    pub fn new(
        me: NodeInfo,
        bound: std::net::SocketAddr,
        settings: Arc<Settings>,
        greeting: Greeting,
        local: LocalModel,
        watcher: Option<Addr<DataWatcher>>,
        supervision: Supervision,
    ) -> Self {
        let c = &settings.cluster;
        let timing = Timing {
            heartbeat: c.heartbeat(),
            reconnect_max: Duration::from_millis(c.reconnect_max_ms),
        };
        let swim = Swim::new(
            me.id.clone(),
            me.addr.clone(),
            me.incarnation,
            membership_config(c),
            rand::random(),
            Duration::ZERO,
        );
        let seeds = settings
            .node
            .seeds
            .iter()
            .filter(|a| **a != me.addr)
            .cloned()
            .collect();
        let max_members = settings.cluster.max_members;
        let dispatch = Dispatch::new(
            me.id.clone(),
            BatchSettings {
                max_rows: c.batch_max_rows,
                delay: c.batch_delay(),
            },
        );
        ClusterActor {
            dispatch,
            bound,
            settings,
            greeting,
            timing,
            local_member: Rc::new(local.clone()),
            local,
            watcher,
            supervision,
            members: Membership::new(me, max_members),
            swim,
            clock: Instant::now(),
            seeds,
            seed_dials: 0,
            started: Instant::now(),
            leaving: false,
            fail_next_command: false,
            last_report: None,
        }
    }

    fn me(&self) -> &NodeInfo {
        self.members.me()
    }

    /// One step of the membership protocol: a frame of any kind from the member being probed
    /// answers the probe, and from a suspect one gives it time; then whatever is due.
    fn tick_membership(&mut self, ctx: &mut Context<Self>) {
        let watched: Vec<String> = self
            .swim
            .probing()
            .into_iter()
            .chain(self.swim.suspects())
            .cloned()
            .collect();
        for id in watched {
            let heard = self
                .members
                .get(&id)
                .and_then(|e| e.link.as_ref())
                .map(|link| link.last_heard().saturating_duration_since(self.clock));
            if let Some(at) = heard {
                self.swim.heard_from(&id, at);
            }
        }
        self.swim.tick(self.clock.elapsed());
        self.flush_membership(ctx);
    }

    /// Sends what the membership protocol wants sent (over the member's link; without one, the
    /// packet is lost, which the protocol expects) and acts on its verdicts.
    fn flush_membership(&mut self, ctx: &mut Context<Self>) {
        let out: Vec<_> = self.swim.outgoing().collect();
        for o in out {
            if let Some(link) = self.members.get(&o.to).and_then(|e| e.link.as_ref()) {
                let _ = link.send(Message::Membership { packet: o.bytes });
            }
        }
        let events: Vec<_> = self.swim.events().collect();
        for event in events {
            let (id, verdict) = match event {
                Event::Up { id, meta } => {
                    let node = NodeInfo {
                        id: id.clone(),
                        addr: meta,
                        incarnation: 0,
                    };
                    if self.members.is_news(&node) {
                        self.ensure_peer(node, false, ctx);
                    }
                    (id, PeerState::Up)
                }
                Event::Alive(id) => (id, PeerState::Up),
                Event::Suspect(id) => (id, PeerState::Suspect),
                Event::Down(id) => (id, PeerState::Down),
                // The member says so over its link (`Leave`), which retires its peer actor.
                Event::Left(id) => {
                    tracing::debug!(peer = %id, "heard that it left");
                    continue;
                }
            };
            if let Some(handle) = self.members.get(&id).and_then(|e| e.handle.as_ref()) {
                handle.do_send(Verdict(verdict));
            }
        }
    }

    fn on_membership_packet(&mut self, from: &str, packet: &Bytes, ctx: &mut Context<Self>) {
        let now = self.clock.elapsed();
        if let Err(e) = self.swim.receive(&from.to_string(), packet, now) {
            tracing::warn!(peer = %from, "ignoring a membership packet: {e}");
        }
        self.flush_membership(ctx);
    }

    /// What the membership protocol's counters say (the `status` command shows them).
    pub(super) fn membership_stats(&self) -> swim::Stats {
        self.swim.stats()
    }

    /// Makes sure a member is known and has a peer actor; returns it unless the member is this
    /// node or a run of it that already left. `from_itself`: `node` is what the member said of
    /// itself over its authenticated connection; otherwise it is what others said (a candidate).
    fn ensure_peer(
        &mut self,
        mut node: NodeInfo,
        from_itself: bool,
        ctx: &mut Context<Self>,
    ) -> Option<Addr<PeerActor>> {
        if self.leaving {
            return None;
        }
        let admission = if from_itself {
            self.members.admit(&node)
        } else {
            // A candidate's incarnation is unverified: its first link sets it.
            let admission = self.members.admit_candidate(&node);
            node.incarnation = 0;
            admission
        };
        match admission {
            Admission::Ignore => None,
            Admission::Known { handle, relocated } => {
                if relocated {
                    handle.do_send(Relocate(node));
                }
                Some(handle)
            }
            Admission::New => {
                tracing::info!(peer = %node.id, addr = %node.addr, "new member");
                let env = PeerEnv {
                    me: self.me().clone(),
                    greeting: self.greeting.clone(),
                    timing: self.timing,
                    cluster: ctx.address().recipient(),
                    local: self.local.clone(),
                    supervision: self.supervision.clone(),
                };
                let peer = PeerActor::new(env, node.clone());
                let actor = Supervisor::start(move |_| peer);
                self.members.insert(node, actor.clone());
                Some(actor)
            }
        }
    }

    /// While no peer is live, dial the seeds to (re)join the cluster.
    fn join_through_seeds(&mut self, ctx: &mut Context<Self>) {
        if self.leaving || self.seed_dials > 0 || self.members.any_live() {
            return;
        }
        for seed in self.seeds.clone() {
            self.seed_dials += 1;
            let role = Role::Member(self.me().clone());
            let greeting = self.greeting.clone();
            let target = seed.clone();
            let work = async move { net::dial(&target, role, &greeting, None).await };
            let joined = work.into_actor(self).map(move |result, act, ctx| {
                act.seed_dials -= 1;
                match result {
                    Ok(dialed) => {
                        let initiator = act.me().id.clone();
                        act.connected(dialed.conn, initiator, dialed.tag, dialed.node, ctx);
                        for member in dialed.members {
                            act.ensure_peer(member, false, ctx);
                        }
                    }
                    // A refusal will not heal by retrying: say it loudly. An absent seed may
                    // simply not have started yet.
                    Err(e @ Error::Refused { .. }) => tracing::warn!("seed {seed}: {e}"),
                    Err(e) => tracing::debug!("seed {seed}: {e}"),
                }
            });
            ctx.spawn(Guarded::new(joined, "cluster actor (seed)", |_| ()));
        }
    }

    fn connected(
        &mut self,
        conn: Conn,
        initiator: String,
        tag: u64,
        node: NodeInfo,
        ctx: &mut Context<Self>,
    ) {
        if let Some(actor) = self.ensure_peer(node.clone(), true, ctx) {
            actor.do_send(Attach {
                conn,
                initiator,
                tag,
                node,
            });
        }
    }

    fn on_peer_event(&mut self, event: PeerEvent, ctx: &mut Context<Self>) {
        match event {
            PeerEvent::Changed { info, state, link } => {
                if state == PeerState::Up {
                    // The member described itself over its own connection: its run is news.
                    let inc = Incarnation::new(info.incarnation);
                    let now = self.clock.elapsed();
                    self.swim
                        .admit(info.id.clone(), inc, info.addr.clone(), now);
                }
                self.members.update(info, state, link);
                self.flush_membership(ctx);
            }
            PeerEvent::Membership { from, packet } => {
                self.on_membership_packet(&from, &packet, ctx)
            }
            PeerEvent::Learned(nodes) => {
                for node in nodes {
                    if self.members.is_news(&node) {
                        self.ensure_peer(node, false, ctx);
                    }
                }
            }
            PeerEvent::Left(info) => self.members.leave(&info),
            PeerEvent::Request { link, id, body } => self.serve(link, id, body, ctx),
        }
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(node = %self.me().id, addr = %self.me().addr, cluster = %self.settings.cluster.name, "node started");
        self.join_through_seeds(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            guard(act, ctx, "cluster actor (join)", |act, ctx| {
                act.join_through_seeds(ctx)
            });
        });
        ctx.run_interval(MEMBERSHIP_TICK, |act, ctx| {
            guard(act, ctx, "cluster actor (membership)", |act, ctx| {
                act.tick_membership(ctx)
            });
        });
    }
}

impl Supervised for ClusterActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.supervision.restarting(Kind::Cluster, "cluster");
        // Dials in flight went with the old context; peers report their state again, which
        // rebuilds whatever the failed handler left half-updated.
        self.seed_dials = 0;
        for actor in self.members.handles() {
            actor.do_send(Report);
        }
    }
}

/// A member connection whose handshake (and `Welcome`) is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberConnected {
    pub conn: Conn,
    pub node: NodeInfo,
    pub initiator: String,
    pub tag: u64,
}

impl Handler<MemberConnected> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: MemberConnected, ctx: &mut Context<Self>) {
        guard(self, ctx, "cluster actor (connected)", |act, ctx| {
            act.connected(msg.conn, msg.initiator, msg.tag, msg.node, ctx)
        });
    }
}

impl Handler<PeerEvent> for ClusterActor {
    type Result = ();
    fn handle(&mut self, event: PeerEvent, ctx: &mut Context<Self>) {
        guard(self, ctx, "cluster actor (peer event)", |act, ctx| {
            act.on_peer_event(event, ctx)
        });
    }
}

/// The members to put in a `Welcome`.
#[derive(Message)]
#[rtype(result = "Vec<NodeInfo>")]
pub struct GetMembers;

impl Handler<GetMembers> for ClusterActor {
    type Result = MessageResult<GetMembers>;
    fn handle(&mut self, _msg: GetMembers, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members.view())
    }
}

/// Runs a command.
#[derive(Message)]
#[rtype(result = "Answer")]
pub struct Exec(pub Command);

impl Handler<Exec> for ClusterActor {
    type Result = ResponseActFuture<Self, Answer>;
    fn handle(&mut self, msg: Exec, ctx: &mut Context<Self>) -> Self::Result {
        self.exec_guarded(msg.0, ctx)
    }
}

/// Events of client links (`ctl`, `bench`): their requests are served like a peer's.
impl Handler<FromLink> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: FromLink, ctx: &mut Context<Self>) {
        if let LinkEvent::Request { id, body } = msg.event {
            guard(self, ctx, "cluster actor (client request)", |act, ctx| {
                if let Some(body) = act.local.serve_link(&msg.link, id, body) {
                    act.serve(msg.link, id, body, ctx);
                }
            });
        }
    }
}

/// Leave the cluster: tell every peer, let the notices go out, stop the node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for ClusterActor {
    type Result = ();
    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        tracing::info!(node = %self.me().id, "leaving the cluster");
        self.swim.leave();
        self.flush_membership(ctx);
        let links: Vec<Link> = self.members.links().cloned().collect();
        for link in &links {
            let _ = link.send(Message::Leave);
        }
        let flushed = async move {
            futures::future::join_all(links.iter().map(|l| l.flush(Duration::from_millis(300))))
                .await;
        };
        ctx.spawn(
            flushed
                .into_actor(self)
                .map(|_, _, _| System::current().stop()),
        );
    }
}
