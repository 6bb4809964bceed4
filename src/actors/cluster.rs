//! The [`ClusterActor`]: this node's view of the cluster and the entry point of every command.
//!
//! It keeps one entry per known member (its address, state and current link, as reported by that
//! member's [`PeerActor`]), learns new members from handshakes and heartbeat gossip, joins through
//! the seeds while it has no live peer, answers console and `ctl` commands, and leaves the
//! cluster cleanly on `quit` or a signal.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Value};

use super::model::{LocalModel, Train};
use super::peer::{self, Attach, Gossip, PeerActor, PeerEnv, Relocate, Timing};
use super::supervision::Supervision;
use super::watcher::{self, DataWatcher, GetReport};
use crate::cluster::PeerState;
use crate::config::Settings;
use crate::console::Fault;
use crate::console::{self, Command};
use crate::coordinator::{self, Member, Plan, Target};
use crate::error::Error;
use crate::ml::Rows;
use crate::net::{self, Conn, FromLink, Greeting, Link, LinkEvent};
use crate::protocol::{Message, NodeInfo, Request, Response, Role};

struct Peer {
    info: NodeInfo,
    /// `None` once the peer left.
    actor: Option<Addr<PeerActor>>,
    state: PeerState,
    link: Option<Link>,
}

pub struct ClusterActor {
    me: NodeInfo,
    settings: Arc<Settings>,
    greeting: Greeting,
    timing: Timing,
    local: LocalModel,
    watcher: Option<Addr<DataWatcher>>,
    supervision: Supervision,
    peers: BTreeMap<String, Peer>,
    /// Incarnations that left on purpose: gossip about them is stale.
    left: HashMap<String, u64>,
    seeds: Vec<SocketAddr>,
    seed_dials: usize,
    started: Instant,
    leaving: bool,
}

impl ClusterActor {
    pub fn new(
        me: NodeInfo,
        settings: Arc<Settings>,
        greeting: Greeting,
        local: LocalModel,
        watcher: Option<Addr<DataWatcher>>,
        supervision: Supervision,
    ) -> Self {
        let c = &settings.cluster;
        let timing = Timing {
            heartbeat: c.heartbeat(),
            acceptable_pause: Duration::from_millis(c.acceptable_pause_ms),
            phi_suspect: c.phi_suspect,
            phi_down: c.phi_down,
            reconnect_max: Duration::from_millis(c.reconnect_max_ms),
        };
        let seeds = settings
            .node
            .seeds
            .iter()
            .filter_map(|s| crate::config::parse_addr(s).ok())
            .filter(|a| *a != me.addr)
            .collect();
        ClusterActor {
            me,
            settings,
            greeting,
            timing,
            local,
            watcher,
            supervision,
            peers: BTreeMap::new(),
            left: HashMap::new(),
            seeds,
            seed_dials: 0,
            started: Instant::now(),
            leaving: false,
        }
    }

    /// This node and every peer it sees live: what it tells newcomers and gossips.
    fn members_view(&self) -> Vec<NodeInfo> {
        std::iter::once(self.me.clone())
            .chain(
                self.peers
                    .values()
                    .filter(|p| p.state.is_live())
                    .map(|p| p.info.clone()),
            )
            .collect()
    }

    fn broadcast_gossip(&self) {
        let view = Arc::new(self.members_view());
        for actor in self.peers.values().filter_map(|p| p.actor.as_ref()) {
            actor.do_send(Gossip(view.clone()));
        }
    }

    /// Makes sure a member is known and has a peer actor; returns it unless the member is this
    /// node or a run of it that already left.
    fn ensure_peer(&mut self, node: NodeInfo, ctx: &mut Context<Self>) -> Option<Addr<PeerActor>> {
        if node.id == self.me.id || self.leaving {
            return None;
        }
        if let Some(&gone) = self.left.get(&node.id) {
            if node.incarnation <= gone {
                return None;
            }
            self.left.remove(&node.id);
        }
        if let Some(peer) = self.peers.get_mut(&node.id) {
            if node.incarnation > peer.info.incarnation {
                peer.info = node.clone();
                if let Some(actor) = &peer.actor {
                    actor.do_send(Relocate(node.clone()));
                }
            }
            if let Some(actor) = &peer.actor {
                return Some(actor.clone());
            }
        }
        tracing::info!(peer = %node.id, addr = %node.addr, "new member");
        let actor = {
            let env = PeerEnv {
                me: self.me.clone(),
                greeting: self.greeting.clone(),
                timing: self.timing,
                cluster: ctx.address(),
                local: self.local.clone(),
                supervision: self.supervision.clone(),
            };
            let peer = PeerActor::new(env, node.clone(), Arc::new(self.members_view()));
            Supervisor::start(move |_| peer)
        };
        self.peers.insert(
            node.id.clone(),
            Peer {
                info: node,
                actor: Some(actor.clone()),
                state: PeerState::Connecting,
                link: None,
            },
        );
        Some(actor)
    }

    /// While no peer is live, dial the seeds to (re)join the cluster.
    fn join_through_seeds(&mut self, ctx: &mut Context<Self>) {
        if self.leaving || self.seed_dials > 0 || self.peers.values().any(|p| p.state.is_live()) {
            return;
        }
        for seed in self.seeds.clone() {
            self.seed_dials += 1;
            let role = Role::Member(self.me.clone());
            let greeting = self.greeting.clone();
            let work = async move { net::dial(seed, role, &greeting).await };
            ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
                act.seed_dials -= 1;
                match result {
                    Ok(dialed) => {
                        let initiator = act.me.id.clone();
                        act.connected(dialed.conn, initiator, dialed.tag, dialed.node, ctx);
                        for member in dialed.members {
                            act.ensure_peer(member, ctx);
                        }
                    }
                    // A refusal will not heal by retrying: say it loudly. An absent seed may
                    // simply not have started yet.
                    Err(e @ Error::Refused { .. }) => tracing::warn!("seed {seed}: {e}"),
                    Err(e) => tracing::debug!("seed {seed}: {e}"),
                }
            }));
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
        if let Some(actor) = self.ensure_peer(node.clone(), ctx) {
            actor.do_send(Attach {
                conn,
                initiator,
                tag,
                node,
            });
        }
    }

    fn status(&self) -> Value {
        let members = 1 + self
            .peers
            .values()
            .filter(|p| p.state != PeerState::Left)
            .count();
        let count = |s: PeerState| self.peers.values().filter(|p| p.state == s).count();
        let model = self.local.slot.current();
        let summary = model.as_ref().map(|m| &m.summary);
        json!({
            "ok": true,
            "node": self.me.id,
            "listen": self.me.addr.to_string(),
            "cluster": self.settings.cluster.name,
            "members": members,
            "peers_up": count(PeerState::Up) + count(PeerState::Suspect),
            "peers_suspect": count(PeerState::Suspect),
            "peers_down": count(PeerState::Down) + count(PeerState::Connecting),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "model_version": summary.map(|s| s.version),
            "training": self.local.slot.is_training(),
            "models_held": self.local.slot.models_held(),
            "rows_train": summary.map(|s| s.rows_train),
            "rows_valid": summary.map(|s| s.rows_valid),
        })
    }

    fn peers_json(&self) -> Value {
        let peers: Vec<Value> = self
            .peers
            .values()
            .map(|p| {
                json!({
                    "id": p.info.id,
                    "addr": p.info.addr.to_string(),
                    "state": p.state,
                })
            })
            .collect();
        json!({"ok": true, "peers": peers})
    }

    /// The members a cluster-wide flow involves, in id order.
    fn plan(&self) -> Plan {
        let quick = self.settings.cluster.request_timeout();
        let mut members = vec![Member {
            id: self.me.id.clone(),
            target: Target::Local(self.local.clone()),
            deadline: quick,
        }];
        let mut unreachable = Vec::new();
        for peer in self.peers.values() {
            match (&peer.link, peer.state) {
                (Some(link), state) if state.is_live() => members.push(Member {
                    id: peer.info.id.clone(),
                    target: Target::Remote(link.clone()),
                    // A suspect peer may be gone: don't let it hold up the answer.
                    deadline: if state == PeerState::Suspect {
                        quick / 4
                    } else {
                        quick
                    },
                }),
                (_, PeerState::Left) => {}
                _ => unreachable.push(peer.info.id.clone()),
            }
        }
        // The same order on every node, so every coordinator aggregates identically.
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Plan {
            members,
            unreachable,
            long_deadline: Duration::from_millis(self.settings.cluster.train_timeout_ms),
            weighted: self.settings.cluster.aggregation == crate::config::Aggregation::Weighted,
        }
    }

    /// Runs a command; the answer is the JSON object the console prints.
    fn exec(
        &mut self,
        command: Command,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Value> {
        let ready = |v: Value| Box::pin(fut::ready(v)) as ResponseActFuture<Self, Value>;
        match command {
            Command::Help => ready(console::help()),
            Command::Status => ready(self.status()),
            Command::Peers => ready(self.peers_json()),
            Command::Train => {
                Box::pin(coordinator::cross_validate(self.plan(), true).into_actor(self))
            }
            Command::Evaluate => {
                Box::pin(coordinator::cross_validate(self.plan(), false).into_actor(self))
            }
            Command::TrainLocal => {
                let local = self.local.clone();
                let window = self.settings.drift.window();
                let work = async move {
                    match local
                        .actor
                        .send(Train {
                            reason: "train local".into(),
                            window,
                            queue: true,
                            gate: None,
                        })
                        .await
                    {
                        Ok(Ok(t)) => json!({
                            "ok": true,
                            "node": t.summary.node,
                            "version": t.summary.version,
                            "rows_train": t.summary.rows_train,
                            "rows_valid": t.summary.rows_valid,
                            "train_ms": t.summary.train_ms,
                            "valid": t.summary.valid,
                        }),
                        Ok(Err(e)) => console::error(e),
                        Err(e) => console::error(format!("model actor unavailable: {e}")),
                    }
                };
                Box::pin(work.into_actor(self))
            }
            Command::Predict { row, explain } => {
                let rows = Rows::from_json_object(&row);
                Box::pin(coordinator::predict(self.plan(), rows, explain).into_actor(self))
            }
            Command::PredictFile { input, output } => {
                let label = self
                    .settings
                    .data
                    .as_ref()
                    .map(|d| d.label.clone())
                    .unwrap_or_else(|| "prediction".into());
                let work = coordinator::predict_file(self.plan(), input, output, label);
                Box::pin(work.into_actor(self))
            }
            Command::Fault(target) => ready(self.fault(target)),
            Command::Drift => match self.watcher.clone() {
                Some(w) => Box::pin(
                    async move {
                        match w.send(GetReport).await {
                            Ok(status) => match serde_json::to_value(status) {
                                Ok(mut v) => {
                                    v["ok"] = json!(true);
                                    v
                                }
                                Err(e) => console::error(e.to_string()),
                            },
                            Err(e) => console::error(format!("watcher unavailable: {e}")),
                        }
                    }
                    .into_actor(self),
                ),
                None => ready(console::error(
                    "this node watches no shard (no [data], or drift.enabled = false)",
                )),
            },
            Command::Quit => {
                ctx.notify(Shutdown);
                ready(json!({"ok": true, "leaving": true}))
            }
        }
    }

    /// Makes one of this node's actors fail (tests of supervision only).
    fn fault(&self, target: Fault) -> Value {
        if !self.settings.testing.faults {
            return console::error("fault injection is off (set [testing] faults = true)");
        }
        match target {
            Fault::Model => self.local.actor.do_send(super::model::Fail),
            Fault::Watcher => match &self.watcher {
                Some(w) => w.do_send(watcher::Fail),
                None => return console::error("this node has no data watcher"),
            },
            Fault::Peer(id) => match self.peers.get(&id).and_then(|p| p.actor.as_ref()) {
                Some(actor) => actor.do_send(peer::Fail),
                None => return console::error(format!("no peer {id:?}")),
            },
        }
        json!({"ok": true, "injected": true})
    }

    /// Answers a request that arrived on `link`.
    fn serve(&mut self, link: Link, id: u64, body: Request, ctx: &mut Context<Self>) {
        match body {
            Request::Ping => link.respond(id, Response::Pong),
            Request::Command { line } => {
                let command = match console::parse(&line) {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        link.respond(id, output(&console::error("empty command")));
                        return;
                    }
                    Err(e) => {
                        link.respond(id, output(&console::error(e)));
                        return;
                    }
                };
                let quitting = command == Command::Quit;
                let answer = self.exec(command, ctx).map(move |value, _act, _ctx| {
                    link.respond(id, output(&value));
                    if quitting {
                        // Let the answer reach the client before the node goes away.
                        let link = link.clone();
                        actix_rt::spawn(
                            async move { link.flush(Duration::from_millis(300)).await },
                        );
                    }
                });
                ctx.spawn(answer);
            }
            Request::PredictEnsemble { rows } => {
                let work = coordinator::ensemble(self.plan(), rows);
                actix_rt::spawn(async move { link.respond(id, work.await) });
            }
            model_request => {
                let local = self.local.clone();
                actix_rt::spawn(async move {
                    let response = local.serve(model_request).await;
                    link.respond(id, response);
                });
            }
        }
    }
}

fn output(value: &Value) -> Response {
    Response::Output {
        json: value.to_string(),
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(node = %self.me.id, addr = %self.me.addr, cluster = %self.settings.cluster.name, "node started");
        self.join_through_seeds(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.join_through_seeds(ctx)
        });
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
        self.connected(msg.conn, msg.initiator, msg.tag, msg.node, ctx);
    }
}

/// Members heard of (welcome, gossip).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LearnMembers(pub Vec<NodeInfo>);

impl Handler<LearnMembers> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: LearnMembers, ctx: &mut Context<Self>) {
        for node in msg.0 {
            let known = self
                .peers
                .get(&node.id)
                .is_some_and(|p| p.info.incarnation >= node.incarnation && p.actor.is_some());
            if !known {
                self.ensure_peer(node, ctx);
            }
        }
    }
}

/// A peer actor's report: the peer's state and its live link, if any.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerChanged {
    pub info: NodeInfo,
    pub state: PeerState,
    pub link: Option<Link>,
}

impl Handler<PeerChanged> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: PeerChanged, _ctx: &mut Context<Self>) {
        let Some(peer) = self.peers.get_mut(&msg.info.id) else {
            return;
        };
        let was_live = peer.state.is_live();
        peer.info = msg.info;
        peer.state = msg.state;
        peer.link = msg.link;
        if was_live != msg.state.is_live() {
            self.broadcast_gossip();
        }
    }
}

/// A peer left the cluster on purpose.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLeft(pub NodeInfo);

impl Handler<PeerLeft> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: PeerLeft, _ctx: &mut Context<Self>) {
        self.left.insert(msg.0.id.clone(), msg.0.incarnation);
        if let Some(peer) = self.peers.get_mut(&msg.0.id) {
            peer.state = PeerState::Left;
            peer.link = None;
            peer.actor = None;
        }
        self.broadcast_gossip();
    }
}

/// The members to put in a `Welcome`.
#[derive(Message)]
#[rtype(result = "Vec<NodeInfo>")]
pub struct GetMembers;

impl Handler<GetMembers> for ClusterActor {
    type Result = MessageResult<GetMembers>;
    fn handle(&mut self, _msg: GetMembers, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members_view())
    }
}

/// Runs a console command.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct Exec(pub Command);

impl Handler<Exec> for ClusterActor {
    type Result = ResponseActFuture<Self, Value>;
    fn handle(&mut self, msg: Exec, ctx: &mut Context<Self>) -> Self::Result {
        self.exec(msg.0, ctx)
    }
}

/// A request from a peer, to answer on `link`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Serve {
    pub link: Link,
    pub id: u64,
    pub body: Request,
}

impl Handler<Serve> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: Serve, ctx: &mut Context<Self>) {
        self.serve(msg.link, msg.id, msg.body, ctx);
    }
}

/// Events of client links (`ctl`, `bench`): their requests are served like a peer's.
impl Handler<FromLink> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: FromLink, ctx: &mut Context<Self>) {
        if let LinkEvent::Request { id, body } = msg.event {
            self.serve(msg.link, id, body, ctx);
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
        tracing::info!(node = %self.me.id, "leaving the cluster");
        let links: Vec<Link> = self.peers.values().filter_map(|p| p.link.clone()).collect();
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
