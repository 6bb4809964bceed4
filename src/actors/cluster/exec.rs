//! Commands, dispatched to typed answers: the node's own state (`status`, `peers`, `drift`),
//! local training, fault injection, and the cluster-wide flows of [`crate::cluster`], which this
//! node coordinates. Also where node-level requests from the network (a client's command line,
//! a client's ensemble prediction) are answered.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::super::model::{Cause, Fail as ModelFail, Train};
use super::super::peer::Fail as PeerFail;
use super::super::supervision::guard_response;
use super::super::watcher::{Fail as WatcherFail, GetReport};
use super::evaluator::Evaluator;
use super::{ClusterActor, Shutdown};
use crate::answer::{
    Answer, FeatureInfo, Help, Injected, Leaving, LocalTraining, MembershipTraffic, ModelInfo,
    PeerEntry, Peers, RowsPrediction, SchemaInfo, Status,
};
use crate::cluster::{self, Member, PeerState, Plan};
use crate::command::{self, Command, Fault};
use crate::config::Aggregation;
use crate::ml::Rows;
use crate::net::{Access, Link};
use crate::protocol::{ModelRef, Request, Response};

/// How long a scorer waits for a link to a model's owner it has only just heard of.
const LINK_WAIT: Duration = Duration::from_secs(3);
/// How often it looks again meanwhile.
const LINK_POLL: Duration = Duration::from_millis(20);

type AnswerFuture = ResponseActFuture<ClusterActor, Answer>;

fn ready(answer: Answer) -> AnswerFuture {
    Box::pin(fut::ready(answer))
}

/// What a caller hears when the cluster actor failed on its request.
fn internal(reason: String) -> Answer {
    Answer::error(format!(
        "internal failure ({reason}); the node restarted the failed part"
    ))
}

impl ClusterActor {
    /// Runs a command under supervision: a panic anywhere in it answers with an error and
    /// restarts this actor.
    pub(super) fn exec_guarded(
        &mut self,
        command: Command,
        ctx: &mut Context<Self>,
    ) -> AnswerFuture {
        guard_response(
            self,
            ctx,
            "cluster actor (command)",
            |act, ctx| act.exec(command, ctx),
            internal,
        )
    }

    fn exec(&mut self, command: Command, ctx: &mut Context<Self>) -> AnswerFuture {
        if std::mem::take(&mut self.fail_next_command) {
            panic!("injected fault: cluster command dispatch");
        }
        match command {
            Command::Help => ready(Answer::Help(Help::new())),
            Command::Status => ready(Answer::Status(Box::new(self.status()))),
            Command::Peers => ready(Answer::Peers(self.peers())),
            Command::Train | Command::Evaluate => {
                let retrain = command == Command::Train;
                let (plan, schemas) = (self.plan(), self.dispatch.schemas.clone());
                let work = async move {
                    let answer = cluster::cross_validate(plan.clone(), retrain).await;
                    // New models may read new columns: learn them before the next prediction
                    // this node resolves.
                    schemas.expire();
                    schemas.refreshed(&plan.members).await;
                    answer
                };
                let work = work.into_actor(self);
                Box::pin(work.map(|answer, act, _ctx| {
                    if let Answer::Train(report) = &answer {
                        act.last_report = Some(report.clone());
                    }
                    answer
                }))
            }
            Command::LastReport => ready(match &self.last_report {
                Some(report) => Answer::Train(report.clone()),
                None => Answer::error("no `train` or `evaluate` has run on this node yet"),
            }),
            Command::Model => ready(self.model_info()),
            Command::PredictRows { rows, local: true } => {
                let local = self.local.clone();
                let work = async move { rows_answer(local.predict_named(&rows).await, 1) };
                Box::pin(work.into_actor(self))
            }
            Command::PredictRows { rows, local: false } => {
                let work = cluster::ensemble_rows(self.serving_plan(), self.dispatch.clone(), rows);
                Box::pin(async move { rows_answer(work.await, 0) }.into_actor(self))
            }
            Command::PredictTyped { rows, local: true } => {
                let local = self.local.clone();
                let work = async move { rows_answer(local.predict(rows).await, 1) };
                Box::pin(work.into_actor(self))
            }
            Command::PredictTyped { rows, local: false } => {
                let work = cluster::ensemble(self.serving_plan(), self.dispatch.clone(), rows);
                Box::pin(async move { rows_answer(work.await, 0) }.into_actor(self))
            }
            Command::Schema => {
                let (plan, schemas) = (self.serving_plan(), self.dispatch.schemas.clone());
                let work = async move {
                    let (schema, complete) = schemas.refreshed(&plan.members).await;
                    Answer::Schema(SchemaInfo {
                        columns: (*schema).clone(),
                        complete,
                    })
                };
                Box::pin(work.into_actor(self))
            }
            Command::TrainLocal => {
                let train = self.local.actor.send(Train {
                    reason: "train local".into(),
                    cause: Cause::TrainLocal,
                    window: self.settings.drift.window(),
                    queue: true,
                    gate: None,
                });
                let work = async move {
                    match train.await {
                        Ok(Ok(t)) => Answer::TrainLocal(LocalTraining {
                            node: t.summary.node,
                            version: t.summary.version,
                            rows_train: t.summary.rows_train,
                            rows_valid: t.summary.rows_valid,
                            train_ms: t.summary.train_ms,
                            valid: t.summary.valid,
                        }),
                        Ok(Err(e)) => Answer::error(e.to_string()),
                        Err(e) => Answer::error(format!("model actor unavailable: {e}")),
                    }
                };
                Box::pin(work.into_actor(self))
            }
            Command::Predict { row, explain } => {
                let rows = Rows::from_json_object(&row);
                let work =
                    cluster::predict(self.serving_plan(), self.dispatch.clone(), rows, explain);
                Box::pin(work.into_actor(self))
            }
            Command::PredictFile { input, output } => {
                let label = self
                    .settings
                    .data
                    .as_ref()
                    .map(|d| d.label.clone())
                    .unwrap_or_else(|| "prediction".into());
                let work = cluster::predict_file(
                    self.serving_plan(),
                    self.dispatch.clone(),
                    input,
                    output,
                    label,
                );
                Box::pin(work.into_actor(self))
            }
            Command::Fault(target) => ready(self.fault(target)),
            Command::Drift => match self.watcher.clone() {
                Some(w) => Box::pin(
                    async move {
                        match w.send(GetReport).await {
                            Ok(status) => Answer::Drift(Box::new(status)),
                            Err(e) => Answer::error(format!("watcher unavailable: {e}")),
                        }
                    }
                    .into_actor(self),
                ),
                None => ready(Answer::error(
                    "this node watches no shard (no [data], or drift.enabled = false)",
                )),
            },
            Command::Quit => {
                ctx.notify(Shutdown);
                ready(Answer::Quit(Leaving { leaving: true }))
            }
        }
    }

    fn status(&self) -> Status {
        let (members, peers_up, peers_suspect, peers_down) = self.members.counts();
        let model = self.local.slot.current();
        let summary = model.as_ref().map(|m| &m.summary);
        Status {
            node: self.me().id.clone(),
            listen: self.bound.to_string(),
            advertise: self.me().addr.clone(),
            cluster: self.settings.cluster.name.clone(),
            members,
            peers_up,
            peers_suspect,
            peers_down,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            model_version: summary.map(|s| s.version),
            training: self.local.slot.is_training(),
            models_held: self.local.slot.models_held(),
            rows_train: summary.map(|s| s.rows_train),
            rows_valid: summary.map(|s| s.rows_valid),
            label: self.settings.data.as_ref().map(|d| d.label.clone()),
            restarts: self.supervision.counts(),
            membership: {
                let s = self.membership_stats();
                MembershipTraffic {
                    sent_packets: s.sent_packets,
                    sent_bytes: s.sent_bytes,
                    received_packets: s.received_packets,
                    received_bytes: s.received_bytes,
                    suspicions: s.suspicions,
                    refutations: s.refutations,
                }
            },
            retrains: self.local.slot.retrains(),
        }
    }

    fn model_info(&self) -> Answer {
        let Some(current) = self.local.slot.current() else {
            return Answer::error("this node has no model yet: run `train` first");
        };
        let p = &current.pipeline;
        // The learner fitted: with `kind = "auto"`, the one it chose (models saved before the
        // metadata had it say their configured kind).
        let kind = match p.meta().kind.as_str() {
            "" => serde_json::to_value(p.config().kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            chosen => chosen.to_string(),
        };
        Answer::Model(Box::new(ModelInfo {
            node: self.me().id.clone(),
            version: current.summary.version,
            kind,
            task: match p.task() {
                crate::ml::Task::Regression => "regression".into(),
                crate::ml::Task::Classification => "classification".into(),
            },
            label: p.meta().label.clone(),
            features: p
                .feature_columns()
                .into_iter()
                .map(|(name, numeric)| FeatureInfo {
                    name: name.to_string(),
                    numeric,
                })
                .collect(),
            classes: p.classes().to_vec(),
            rows_train: current.summary.rows_train,
            train_ms: current.summary.train_ms,
            cv_score: p.meta().cv_score,
            bytes: current.bytes.len(),
        }))
    }

    fn peers(&self) -> Peers {
        Peers {
            peers: self
                .members
                .entries()
                .map(|p| PeerEntry {
                    id: p.info.id.clone(),
                    addr: p.info.addr.to_string(),
                    state: p.state,
                    received_bytes: p.link.as_ref().map(|l| l.traffic().received()),
                    sent_bytes: p.link.as_ref().map(|l| l.traffic().sent()),
                })
                .collect(),
        }
    }

    /// This node as the scorer of a cross-validation round, with the members it can fetch models
    /// from.
    fn evaluator(&self) -> Evaluator {
        let cluster = &self.settings.cluster;
        let (owners, _) = self
            .members
            .ask(&self.local_member, cluster.request_timeout());
        Evaluator {
            local: self.local.clone(),
            owners,
            max_bytes: cluster.max_frame_bytes as u64,
            deadline: Duration::from_millis(cluster.train_timeout_ms),
        }
    }

    /// Scores `models` for a cross-validation round once this node has a link to each of their
    /// owners, or once [`LINK_WAIT`] has passed since `asked`: a member that joined a moment
    /// ago may be known to the coordinator before it is linked here. An owner known to be down
    /// is not waited for.
    fn evaluate_once_linked(
        &mut self,
        link: Link,
        id: u64,
        models: Vec<ModelRef>,
        asked: Instant,
        ctx: &mut Context<Self>,
    ) {
        let evaluator = self.evaluator();
        let linking = |owner: &str| match self.members.get(owner) {
            None => owner != self.me().id,
            Some(peer) => peer.state == PeerState::Connecting,
        };
        let waiting = models
            .iter()
            .any(|m| !evaluator.owners.iter().any(|o| o.id == m.node) && linking(&m.node));
        if waiting && asked.elapsed() < LINK_WAIT {
            ctx.run_later(LINK_POLL, move |act, ctx| {
                act.evaluate_once_linked(link, id, models, asked, ctx)
            });
            return;
        }
        actix_rt::spawn(async move { link.respond(id, evaluator.evaluate(models).await) });
    }

    /// Who a prediction asks: this node's model and every live peer.
    fn serving_plan(&self) -> Plan {
        let cluster = &self.settings.cluster;
        let (members, unreachable) = self
            .members
            .ask(&self.local_member, cluster.request_timeout());
        Plan {
            members,
            unreachable,
            long_deadline: Duration::from_millis(cluster.train_timeout_ms),
            weighted: cluster.aggregation == Aggregation::Weighted,
            min_quorum: cluster.min_quorum,
        }
    }

    /// Who a `train` or `evaluate` asks: as [`Self::serving_plan`], with this node scoring its
    /// part of a cross-validation by fetching from the others.
    fn plan(&self) -> Plan {
        let mut plan = self.serving_plan();
        let me = &self.me().id;
        let evaluator: Rc<dyn Member> = Rc::new(self.evaluator());
        plan.members = plan
            .members
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if &m.id == me {
                    m.member = evaluator.clone();
                }
                m
            })
            .collect();
        plan
    }

    /// Makes one of this node's actors fail (tests of supervision only).
    fn fault(&mut self, target: Fault) -> Answer {
        if !self.settings.testing.faults {
            return Answer::error("fault injection is off (set [testing] faults = true)");
        }
        match target {
            Fault::Model => self.local.actor.do_send(ModelFail),
            Fault::Watcher => match &self.watcher {
                Some(w) => w.do_send(WatcherFail),
                None => return Answer::error("this node has no data watcher"),
            },
            Fault::Peer(id) => match self.members.get(&id).and_then(|p| p.handle.as_ref()) {
                Some(actor) => actor.do_send(PeerFail),
                None => return Answer::error(format!("no peer {id:?}")),
            },
            Fault::Cluster => self.fail_next_command = true,
            Fault::PanicNextPredict => self.local.slot.panic_next_predict(),
        }
        Answer::Fault(Injected { injected: true })
    }

    /// Answers a node-level request that arrived on `link` (model requests never get here).
    pub(super) fn serve(&mut self, link: Link, id: u64, body: Request, ctx: &mut Context<Self>) {
        match body {
            Request::Command { line } => {
                let command = match command::parse(&line) {
                    Ok(Some(c)) => c,
                    Ok(None) => return link.respond(id, output(&Answer::error("empty command"))),
                    Err(e) => return link.respond(id, output(&Answer::error(e.to_string()))),
                };
                if let Err(refusal) = allowed(&command, link.access()) {
                    tracing::warn!(client = %link.peer(), "refused: {refusal}");
                    return link.respond(id, output(&Answer::error(refusal)));
                }
                let quitting = command == Command::Quit;
                let answer = self
                    .exec_guarded(command, ctx)
                    .map(move |answer, _act, _ctx| {
                        link.respond(id, output(&answer));
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
                let work = cluster::ensemble(self.serving_plan(), self.dispatch.clone(), rows);
                actix_rt::spawn(async move { link.respond(id, work.await) });
            }
            Request::Schema => {
                let (plan, dispatch) = (self.serving_plan(), self.dispatch.clone());
                actix_rt::spawn(async move { link.respond(id, dispatch.schema(&plan).await) });
            }
            Request::Evaluate { models } => {
                self.evaluate_once_linked(link, id, models, Instant::now(), ctx)
            }
            other => {
                let local = self.local.clone();
                actix_rt::spawn(async move { link.respond(id, local.serve(other).await) });
            }
        }
    }
}

/// A batch prediction's protocol answer as a typed answer. `asked` counts this node for a
/// prediction with its own model (the protocol answer does not say).
fn rows_answer(response: Response, asked: usize) -> Answer {
    match response {
        Response::Ensemble {
            preds,
            answered,
            asked,
        } => Answer::PredictRows(RowsPrediction::new(
            &preds,
            answered as usize,
            asked as usize,
            Vec::new(),
        )),
        Response::Predictions { preds, .. } => {
            Answer::PredictRows(RowsPrediction::new(&preds, asked, asked, Vec::new()))
        }
        Response::NoModel => Answer::error("this node has no model yet: run `train` first"),
        Response::Error { reason } => Answer::error(reason),
        _ => Answer::error("the prediction came back as another kind of answer"),
    }
}

/// Whether a client with `access` may run `command` sent over the network.
fn allowed(command: &Command, access: Access) -> Result<(), String> {
    if access == Access::Member {
        return Err("members of the cluster run no console commands".into());
    }
    if let Command::PredictFile { .. } = command {
        // Paths would be this node's: a remote client sends its rows instead.
        return Err(
            "predict-file names files on the node: run it at the node's console, or use \
             `ensemble-node ctl ADDR predict-file IN.csv [OUT.csv]`, which streams the client's file"
                .into(),
        );
    }
    if command.needs() > access {
        let needs = match command.needs() {
            Access::Operator => "operator",
            Access::Reader | Access::Member => "reader",
        };
        return Err(format!("this command needs the {needs} role"));
    }
    Ok(())
}

fn output(answer: &Answer) -> Response {
    Response::Output {
        json: answer.to_json().to_string(),
    }
}
