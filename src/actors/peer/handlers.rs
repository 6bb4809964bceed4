//! The messages a [`PeerActor`] handles: a connection attached to it, a verdict of the
//! membership protocol, a move to a new address, an injected fault, a request for its state,
//! and what its link brings.

use actix::prelude::*;

use super::*;

/// A connection to this peer, opened by the peer (inbound) or by a seed join.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub conn: Conn,
    pub initiator: String,
    pub tag: u64,
    pub node: NodeInfo,
}

impl Handler<Attach> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        guard(self, ctx, "peer actor (attach)", |act, ctx| {
            act.attach(msg.conn, &msg.initiator, msg.tag, msg.node, ctx)
        });
    }
}

/// The membership protocol's decision about the peer: `Suspect`, `Down`, or `Up` again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Verdict(pub PeerState);

impl Handler<Verdict> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: Verdict, ctx: &mut Context<Self>) {
        guard(self, ctx, "peer actor (verdict)", |act, ctx| {
            act.verdict(msg.0, ctx)
        });
    }
}

/// A newer incarnation of the peer was heard of (it restarted, maybe at another address).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relocate(pub NodeInfo);

impl Handler<Relocate> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: Relocate, ctx: &mut Context<Self>) {
        guard(self, ctx, "peer actor (relocate)", |act, ctx| {
            if msg.0.incarnation <= act.peer.incarnation {
                return;
            }
            act.peer = msg.0;
            if let Some(link) = act.link.take() {
                link.close("the peer restarted");
            }
            act.attempts = 0;
            if let Some(handle) = act.redial.take() {
                ctx.cancel_future(handle);
            }
            act.dial(ctx);
        });
    }
}

/// Makes the actor fail on purpose (fault injection): it stops and its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

impl Handler<Fail> for PeerActor {
    type Result = ();
    fn handle(&mut self, _msg: Fail, ctx: &mut Context<Self>) {
        let what = format!("peer {} actor", self.peer.id);
        guard(self, ctx, &what, |_, _| injected_fault());
    }
}

/// Report the peer's state again (the node rebuilds its member table after a restart).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Report;

impl Handler<Report> for PeerActor {
    type Result = ();
    fn handle(&mut self, _msg: Report, _ctx: &mut Context<Self>) {
        if !self.retired {
            self.report();
        }
    }
}

impl Handler<FromLink> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: FromLink, ctx: &mut Context<Self>) {
        guard(self, ctx, "peer actor (link event)", |act, ctx| {
            act.on_link_event(msg, ctx)
        });
    }
}

impl PeerActor {
    fn on_link_event(&mut self, msg: FromLink, ctx: &mut Context<Self>) {
        let current = self.link.as_ref().map(Link::id) == Some(msg.link.id());
        match msg.event {
            // Model requests were answered on the link's read task (`LocalModel::serve_link`);
            // what it hands on (commands, scoring) goes to the node.
            LinkEvent::Request { id, body } => {
                self.cluster.do_send(PeerEvent::Request {
                    link: msg.link,
                    id,
                    body,
                });
            }
            LinkEvent::Membership { packet } => {
                if current {
                    self.cluster.do_send(PeerEvent::Membership {
                        from: self.peer.id.clone(),
                        packet,
                    });
                }
            }
            LinkEvent::Leave => {
                tracing::info!(peer = %self.peer.id, "left the cluster");
                self.retire(ctx);
                msg.link.close("the peer left");
                self.link = None;
                self.state = PeerState::Left;
                self.cluster.do_send(PeerEvent::Left(self.peer.clone()));
            }
            LinkEvent::Closed { reason } => {
                if current && !self.retired {
                    self.link = None;
                    self.set_state(PeerState::Down, &reason);
                    self.schedule_dial(ctx);
                }
            }
        }
    }
}
