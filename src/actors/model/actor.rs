//! The [`ModelActor`] owns this node's model.
//!
//! Double buffering: the model that answers lives in a [`ModelSlot`], a shared cell that request
//! handlers read without going through the actor's mailbox; training runs on the blocking pool
//! and, once it succeeds, the new model is persisted and then swapped into the slot in one step.
//! So predictions never wait for training, a failed training keeps the old model, and versions
//! only go up. At start (and on a supervisor restart) the actor reloads the last persisted model,
//! so a restarted node answers at once; a training the failed run had started is abandoned and
//! never lands.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::error::{ModelError, TaskFailed};
use super::slot::{Cause, Current, ModelSlot};
use super::store::{self, Store, Stored, Ticket, MODEL_FILE};
use crate::actors::supervision::{
    guard, injected_fault, panic_message, Guarded, Kind, Supervision,
};
use crate::ml::{
    evaluate_split_with, judge_swap, load_shard, score, unseen_rows, DataSpec, MlError,
    ModelConfig, ModelMeta, Pipeline, Predictions, Reference, Scores, SplitEval, Swap, Table,
    Watermark,
};
use crate::protocol::{ModelBlob, ModelSummary};

/// Everything training needs: where the shard is and how to learn from it.
#[derive(Debug, Clone)]
pub struct TrainingSource {
    pub node: String,
    pub shard: PathBuf,
    pub spec: DataSpec,
    pub valid_fraction: f64,
    pub seed: u64,
    pub model: ModelConfig,
    /// Quantile bins of the drift reference built at each training; `None` (drift detection
    /// off): no reference is built, which saves sorting every training column.
    pub drift_bins: Option<usize>,
}

impl TrainingSource {
    /// The shard's train and validation splits (of its last `window` rows when given), and how
    /// far each file was read.
    fn load_split(&self, window: Option<usize>) -> Result<(Table, Table, Watermark), MlError> {
        let (train, valid, _, mark) = self.load_gated(window, 0)?;
        Ok((train, valid, mark))
    }

    /// [`TrainingSource::load_split`] with the last `holdout` rows (the most recently appended)
    /// set aside first, for the champion / challenger check; at least 2 rows stay to train on.
    fn load_gated(
        &self,
        window: Option<usize>,
        holdout: usize,
    ) -> Result<(Table, Table, Table, Watermark), MlError> {
        let (mut table, mark) = load_shard(&self.shard, &self.spec)?;
        if let Some(w) = window.filter(|&w| w < table.len()) {
            let recent: Vec<usize> = (table.len() - w..table.len()).collect();
            table = table.select(&recent);
        }
        let n = table.len();
        let h = holdout.min(n.saturating_sub(2));
        let held = table.select(&(n - h..n).collect::<Vec<_>>());
        if h > 0 {
            table = table.select(&(0..n - h).collect::<Vec<_>>());
        }
        let (train, valid) = table.split(self.valid_fraction, self.seed);
        Ok((train, valid, held, mark))
    }
}

fn weight_of(valid: Option<&Scores>) -> f64 {
    match valid.map(Scores::primary) {
        Some(("accuracy", acc)) => acc.max(1e-9),
        Some((_, err)) => 1.0 / err.max(1e-9),
        None => 1.0,
    }
}

fn current_from(stored: Stored) -> Result<Current, MlError> {
    let pipeline = Pipeline::from_bytes(&stored.model)?;
    let reference = match &stored.reference {
        Some(b) => Some(Arc::new(Reference::from_bytes(b)?)),
        None => None,
    };
    Ok(Current {
        reference,
        weight: weight_of(stored.summary.valid.as_ref()),
        pipeline,
        bytes: stored.model,
        summary: stored.summary,
        watermark: stored.watermark,
    })
}

/// The persisted model, ready to serve; a file whose model does not decode is set aside.
fn usable(store: &Store, stored: Option<Stored>) -> Option<Current> {
    let stored = stored?;
    let version = stored.summary.version;
    match current_from(stored) {
        Ok(current) => {
            tracing::info!(version, "loaded the persisted model");
            Some(current)
        }
        Err(e) => {
            store::set_aside(&store.dir().join(MODEL_FILE), &e);
            None
        }
    }
}

/// A trained model, as the cluster gets it.
pub struct Trained {
    pub summary: ModelSummary,
    pub bytes: Bytes,
    /// The champion / challenger decision of a gated training; when not accepted, the model
    /// above was neither saved nor put in service.
    pub swap: Option<Swap>,
}

/// A training whose model must beat the current one before it answers (a drift retrain): the
/// shard's last `holdout_rows` rows are held out of training and both models are scored on them,
/// and on the new validation split within `tolerance` ([`crate::ml::judge_swap`]).
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub holdout_rows: usize,
    pub tolerance: f64,
}

/// The trained model, its validation split, and the swap decision of a gated training.
type TrainOutcome = (Arc<Current>, Arc<Validation>, Option<Swap>);

/// A node's validation split, cached for scoring models, with what its own model predicts for
/// it when that model was trained here (and the model's bytes, to know it among the models to
/// score): a cluster training scores every node's model on every split, its own included.
struct Validation {
    table: Table,
    own: Option<(Bytes, Predictions)>,
}

fn train_blocking(
    source: &TrainingSource,
    ticket: Ticket,
    window: Option<usize>,
    store: &Store,
    gate: Option<(Gate, Arc<Current>)>,
) -> Result<TrainOutcome, ModelError> {
    let holdout = gate.as_ref().map_or(0, |(g, _)| g.holdout_rows);
    let (train, valid, held, watermark) = source.load_gated(window, holdout)?;
    let started = Instant::now();
    let version = ticket.version;
    let meta = ModelMeta {
        node: source.node.clone(),
        version,
        ..ModelMeta::default()
    };
    let mut pipeline = Pipeline::fit(&train, &source.model, meta)?;
    let train_ms = started.elapsed().as_millis() as u64;
    pipeline.set_train_ms(train_ms);
    // The validation split is predicted once: for the model's scores and its drift reference.
    let preds = (!valid.is_empty())
        .then(|| pipeline.predict_table(&valid))
        .transpose()?;
    let valid_scores = preds
        .as_ref()
        .map(|p| score(valid.labels(), p))
        .transpose()?;
    let reference = match (source.drift_bins, &preds) {
        (None, _) => None,
        (Some(bins), Some(p)) => Some(Reference::of_predictions(&train, &valid, p, bins)?),
        (Some(bins), None) => Some(Reference::of_model(&train, &pipeline, &valid, bins)?),
    };
    let bytes = Bytes::from(pipeline.to_bytes()?);
    let reference_bytes = reference
        .as_ref()
        .map(|r| r.to_bytes().map(Bytes::from))
        .transpose()?;
    let summary = ModelSummary {
        node: source.node.clone(),
        version,
        rows_train: train.len(),
        rows_valid: valid.len(),
        train_ms,
        valid: valid_scores,
        kind: pipeline.meta().kind.clone(),
        cv_score: pipeline.meta().cv_score,
    };
    let stored = Stored {
        summary: summary.clone(),
        model: bytes.clone(),
        watermark: watermark.clone(),
        reference: reference_bytes,
    };
    let swap = match &gate {
        Some((g, champion)) => {
            // Judged on validation rows the current model did not train on either (a window
            // hides which rows those are: then on the held-out rows alone).
            let was = champion.summary.rows_train + champion.summary.rows_valid;
            let table_rows = train.len() + valid.len();
            let unseen = window
                .is_none()
                .then(|| unseen_rows(table_rows, was, source.valid_fraction, source.seed))
                .flatten()
                .unwrap_or_default();
            let fresh = valid.select(&unseen);
            Some(judge_swap(
                &champion.pipeline,
                &pipeline,
                &held,
                &fresh,
                g.tolerance,
            )?)
        }
        None => None,
    };
    if swap.as_ref().is_none_or(|s| s.accepted) {
        store.save(ticket, &stored)?;
    }
    let current = Current {
        reference: reference.map(Arc::new),
        weight: weight_of(summary.valid.as_ref()),
        pipeline,
        bytes,
        summary,
        watermark,
    };
    let validation = Validation {
        own: preds.map(|p| (current.bytes.clone(), p)),
        table: valid,
    };
    Ok((Arc::new(current), Arc::new(validation), swap))
}

/// Runs `work` on the blocking pool; a panic in it becomes an error, not a dead actor.
pub async fn blocking<T, E>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
{
    let ran = actix_rt::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
    })
    .await;
    settled(what, ran.map_err(|e| e.to_string()))
}

/// What came of `work` run on another thread: its result, or an error when it panicked or was
/// lost before it answered.
fn settled<T, E: From<TaskFailed>>(
    what: &'static str,
    ran: Result<std::thread::Result<Result<T, E>>, String>,
) -> Result<T, E> {
    let failed = |reason: String| E::from(TaskFailed { what, reason });
    match ran {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(failed(panic_message(panic.as_ref()))),
        Err(reason) => Err(failed(reason)),
    }
}

/// How much less CPU a training thread is given than the threads that serve (its `nice`
/// increment): on a busy machine, predictions, membership probes and handshakes keep their
/// latency while a training (or every node's first training at once) takes what is left.
const TRAINING_NICE: libc::c_int = 10;

/// Runs `work` on a thread of its own at a lower CPU priority ([`TRAINING_NICE`]; the threads
/// a fit starts inherit it); a panic in it becomes an error, not a dead actor.
pub async fn in_background<T, E>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
        });
    let ran = match spawned {
        Ok(_) => rx
            .await
            .map_err(|_| "the thread ended without an answer".to_string()),
        Err(e) => Err(format!("cannot start a thread: {e}")),
    };
    settled(what, ran)
}

/// Lowers the calling thread's priority by [`TRAINING_NICE`]. Best effort: where it can't, the
/// work runs at the normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::gettid();
        let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, now + TRAINING_NICE);
    }
}

pub struct ModelActor {
    source: Option<Arc<TrainingSource>>,
    store: Arc<Store>,
    slot: ModelSlot,
    /// This node's validation split, cached for scoring models.
    valid: Option<Arc<Validation>>,
    /// Train at start when there is no persisted model.
    train_on_start: bool,
    supervision: Supervision,
    /// Bumped whenever a training ends, for requests waiting their turn.
    trainings_done: tokio::sync::watch::Sender<u64>,
}

impl ModelActor {
    pub fn new(
        source: Option<TrainingSource>,
        state_dir: PathBuf,
        save_pause: Duration,
        slot: ModelSlot,
        train_on_start: bool,
        supervision: Supervision,
    ) -> Self {
        let (store, stored) = Store::open(state_dir, save_pause);
        if let Some(current) = usable(&store, stored) {
            slot.publish(Arc::new(current));
        }
        ModelActor {
            source: source.map(Arc::new),
            store: Arc::new(store),
            slot,
            valid: None,
            train_on_start,
            supervision,
            trainings_done: tokio::sync::watch::Sender::new(0),
        }
    }

    fn train(&mut self, msg: Train, ctx: &mut Context<Self>) -> TrainFuture {
        let Some(source) = self.source.clone() else {
            return Box::pin(fut::ready(Err(ModelError::NoShard)));
        };
        if self.slot.0.training.swap(true, Ordering::AcqRel) {
            if !msg.queue {
                return Box::pin(fut::ready(Err(ModelError::Busy)));
            }
            let mut done = self.trainings_done.subscribe();
            let me = ctx.address();
            let retry = async move {
                let _ = done.changed().await;
                me.send(msg).await.unwrap_or_else(|e| Err(e.into()))
            };
            return Box::pin(retry.into_actor(self));
        }
        let ticket = self.store.begin();
        let store = self.store.clone();
        let Train {
            reason,
            cause,
            window,
            gate,
            ..
        } = msg;
        let gate = gate.and_then(|g| self.slot.current().map(|c| (g, c)));
        // The cached validation split is rebuilt by the training; don't hold both at once.
        self.valid = None;
        tracing::info!(version = ticket.version, %reason, "training");
        let work = in_background("training", move || {
            train_blocking(&source, ticket, window, &store, gate)
        });
        Box::pin(work.into_actor(self).map(move |result, act, _ctx| {
            act.slot.0.training.store(false, Ordering::Release);
            act.trainings_done.send_modify(|n| *n += 1);
            let (current, valid, swap) = result.inspect_err(|e| {
                tracing::error!("training failed, keeping the previous model: {e}")
            })?;
            act.slot.count_retrain(cause);
            if let Some(refused) = swap.as_ref().filter(|s| !s.accepted) {
                tracing::info!(%reason, why = %refused.reason, "new model not put in service");
                return Ok(Trained {
                    summary: current.summary.clone(),
                    bytes: current.bytes.clone(),
                    swap,
                });
            }
            let summary = current.summary.clone();
            let bytes = current.bytes.clone();
            tracing::info!(
                version = summary.version,
                train_ms = summary.train_ms,
                rows = summary.rows_train,
                %reason,
                "new model in service"
            );
            act.slot.publish(current);
            act.valid = Some(valid);
            Ok(Trained {
                summary,
                bytes,
                swap,
            })
        }))
    }

    fn evaluate(&mut self, models: Vec<ModelBlob>) -> EvaluateFuture {
        let Some(source) = self.source.clone() else {
            return Box::pin(fut::ready(Err(ModelError::NoShard)));
        };
        let cached = self.valid.clone();
        let slot = self.slot.clone();
        let work = blocking("evaluation", move || {
            let valid = match cached {
                Some(v) => v,
                None => Arc::new(Validation {
                    table: source.load_split(None)?.1,
                    own: None,
                }),
            };
            let foreign = models.iter().filter(|b| b.node != source.node).count();
            slot.0.foreign.fetch_add(foreign, Ordering::Relaxed);
            let result = score_models(&models, &valid);
            // The foreign models are dropped here: a node keeps only its own.
            slot.0.foreign.fetch_sub(foreign, Ordering::Relaxed);
            Ok::<_, ModelError>((result?, valid))
        });
        Box::pin(work.into_actor(self).map(|result, act, _ctx| {
            result.map(|(eval, valid)| {
                act.valid = Some(valid);
                eval
            })
        }))
    }
}

fn score_models(models: &[ModelBlob], valid: &Validation) -> Result<SplitEval, ModelError> {
    // Every model is checked before any is scored, so that all the invalid ones are named.
    let mut loaded = Vec::with_capacity(models.len());
    let mut invalid = Vec::new();
    for b in models {
        match Pipeline::from_bytes(&b.bytes) {
            Ok(p) => loaded.push(p),
            Err(e) => invalid.push((b.node.clone(), e)),
        }
    }
    if !invalid.is_empty() {
        return Err(ModelError::Invalid(invalid));
    }
    let refs: Vec<&Pipeline> = loaded.iter().collect();
    // This node's own model, when it is the one trained here, predicted the split already.
    let known: Vec<Option<&Predictions>> = models
        .iter()
        .map(|b| match &valid.own {
            Some((bytes, preds)) if *bytes == b.bytes => Some(preds),
            _ => None,
        })
        .collect();
    Ok(evaluate_split_with(&refs, &known, &valid.table, None)?)
}

type TrainFuture = ResponseActFuture<ModelActor, Result<Trained, ModelError>>;
type EvaluateFuture = ResponseActFuture<ModelActor, Result<SplitEval, ModelError>>;

/// The answer a caller gets when the model actor failed while handling its request.
fn failed<T>(what: &'static str) -> impl FnOnce(String) -> Result<T, ModelError> {
    move |reason| Err(ModelError::Task(TaskFailed { what, reason }))
}

impl Actor for ModelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.train_on_start && self.source.is_some() && self.slot.current().is_none() {
            self.train_on_start = false;
            tracing::info!("no model yet: training on the local shard");
            ctx.notify(Train {
                reason: "first start".into(),
                cause: Cause::Start,
                window: None,
                queue: false,
                gate: None,
            });
        }
    }
}

impl Supervised for ModelActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.supervision.restarting(Kind::Model, "model");
        // A training in flight is abandoned with the old context: it must not land, and whoever
        // waits for it is woken.
        self.store.abandon_all();
        self.slot.0.training.store(false, Ordering::Relaxed);
        self.trainings_done.send_modify(|n| *n += 1);
        if let Some(current) = usable(&self.store, self.store.reload()) {
            self.slot.publish(Arc::new(current));
        }
        self.valid = None;
    }
}

/// Retrain on the local shard now. If a training is already running, waits for it to end and
/// then trains (`queue`), or fails at once.
#[derive(Message)]
#[rtype(result = "Result<Trained, ModelError>")]
pub struct Train {
    pub reason: String,
    pub cause: Cause,
    /// Train on the shard's last rows only.
    pub window: Option<usize>,
    pub queue: bool,
    /// Put the new model in service only if it beats the current one (no current model: always).
    pub gate: Option<Gate>,
}

impl Handler<Train> for ModelActor {
    type Result = TrainFuture;

    fn handle(&mut self, msg: Train, ctx: &mut Context<Self>) -> Self::Result {
        match guard(self, ctx, "model actor (train)", |act, ctx| {
            act.train(msg, ctx)
        }) {
            Some(work) => Box::pin(Guarded::new(
                work,
                "model actor (train)",
                failed("training"),
            )),
            None => Box::pin(fut::ready(failed("training")(
                "the handler panicked".into(),
            ))),
        }
    }
}

/// Score these models (and their ensemble) on this node's validation split.
#[derive(Message)]
#[rtype(result = "Result<SplitEval, ModelError>")]
pub struct Evaluate(pub Vec<ModelBlob>);

impl Handler<Evaluate> for ModelActor {
    type Result = EvaluateFuture;

    fn handle(&mut self, msg: Evaluate, ctx: &mut Context<Self>) -> Self::Result {
        match guard(self, ctx, "model actor (evaluate)", |act, _| {
            act.evaluate(msg.0)
        }) {
            Some(work) => Box::pin(Guarded::new(
                work,
                "model actor (evaluate)",
                failed("evaluation"),
            )),
            None => Box::pin(fut::ready(failed("evaluation")(
                "the handler panicked".into(),
            ))),
        }
    }
}

/// The model code failed while serving a request (it panicked): restart the actor, which
/// reloads the persisted model.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ModelFailed(pub String);

impl Handler<ModelFailed> for ModelActor {
    type Result = ();
    fn handle(&mut self, msg: ModelFailed, ctx: &mut Context<Self>) {
        tracing::error!("model code failed: {}; restarting the model actor", msg.0);
        ctx.stop();
    }
}

/// Makes the actor fail on purpose (fault injection): its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

impl Handler<Fail> for ModelActor {
    type Result = ();
    fn handle(&mut self, _msg: Fail, ctx: &mut Context<Self>) {
        guard(self, ctx, "model actor", |_, _| injected_fault());
    }
}
