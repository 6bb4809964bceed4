//! The [`ModelActor`] owns this node's model.
//!
//! Double buffering: the model that answers lives in a [`ModelSlot`], a shared cell that request
//! handlers read without going through the actor's mailbox; training runs on the blocking pool
//! and, once it succeeds, the new model is persisted and then swapped into the slot in one step.
//! So predictions never wait for training, a failed training keeps the old model, and versions
//! only go up. At start (and on a supervisor restart) the actor reloads the last persisted model,
//! so a restarted node answers at once.

use std::fs;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::supervision::{contain, injected_fault, Supervision};
use crate::ml::{
    evaluate_split, judge_swap, load_shard, score, DataSpec, ModelConfig, ModelMeta, Pipeline,
    Reference, Rows, Scores, SplitEval, Swap, Table, Watermark,
};
use crate::protocol::{ModelBlob, ModelSummary, Request, Response};

/// The model file in the node's state dir.
pub const MODEL_FILE: &str = "model.msgpack";
/// Requests with at most this many rows are predicted inline; bigger batches go to the blocking
/// pool so they cannot stall the node's network thread.
const INLINE_ROWS: usize = 64;

/// The model that answers, with what the node says about it.
pub struct Current {
    pub pipeline: Pipeline,
    /// The pipeline's model file bytes, sent as-is when the cluster asks for this model.
    pub bytes: Bytes,
    pub summary: ModelSummary,
    /// Weight in a weighted aggregation: accuracy for classification, 1 / error for regression.
    pub weight: f64,
    /// How far the shard had been read when this model was trained.
    pub watermark: Watermark,
    /// Its training data, summarized: what new rows are compared with to detect drift.
    pub reference: Option<Arc<Reference>>,
}

#[derive(Default)]
struct SlotInner {
    current: RwLock<Option<Arc<Current>>>,
    training: AtomicBool,
    /// Other nodes' models held right now (only while scoring them).
    foreign: AtomicUsize,
}

/// The shared cell holding the current model. Cloning shares it.
#[derive(Clone, Default)]
pub struct ModelSlot(Arc<SlotInner>);

impl ModelSlot {
    pub fn current(&self) -> Option<Arc<Current>> {
        self.0
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_training(&self) -> bool {
        self.0.training.load(Ordering::Relaxed)
    }

    /// Models in memory: this node's own, plus any foreign ones being scored.
    pub fn models_held(&self) -> usize {
        usize::from(self.current().is_some()) + self.0.foreign.load(Ordering::Relaxed)
    }

    fn publish(&self, current: Arc<Current>) {
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) = Some(current);
    }
}

/// Everything training needs: where the shard is and how to learn from it.
#[derive(Debug, Clone)]
pub struct TrainingSource {
    pub node: String,
    pub shard: PathBuf,
    pub spec: DataSpec,
    pub valid_fraction: f64,
    pub seed: u64,
    pub model: ModelConfig,
    /// Quantile bins of the drift reference built at each training.
    pub drift_bins: usize,
}

impl TrainingSource {
    /// The shard's train and validation splits (of its last `window` rows when given), and how
    /// far each file was read.
    fn load_split(&self, window: Option<usize>) -> Result<(Table, Table, Watermark), String> {
        let (train, valid, _, mark) = self.load_gated(window, 0)?;
        Ok((train, valid, mark))
    }

    /// [`TrainingSource::load_split`] with the last `holdout` rows (the most recently appended)
    /// set aside first, for the champion / challenger check; at least 2 rows stay to train on.
    fn load_gated(
        &self,
        window: Option<usize>,
        holdout: usize,
    ) -> Result<(Table, Table, Table, Watermark), String> {
        let (mut table, mark) = load_shard(&self.shard, &self.spec).map_err(|e| e.to_string())?;
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

/// The model file: the pipeline, the summary that goes with it, and how far the shard had been
/// read when it was trained (new rows start there).
#[derive(Serialize, Deserialize)]
struct Stored {
    summary: ModelSummary,
    model: Bytes,
    #[serde(default)]
    watermark: Watermark,
    /// The drift reference (`ml::Reference` bytes).
    #[serde(default)]
    reference: Option<Bytes>,
}

fn weight_of(valid: Option<&Scores>) -> f64 {
    match valid.map(Scores::primary) {
        Some(("accuracy", acc)) => acc.max(1e-9),
        Some((_, err)) => 1.0 / err.max(1e-9),
        None => 1.0,
    }
}

fn current_from(stored: Stored) -> Result<Current, String> {
    let pipeline = Pipeline::from_bytes(&stored.model).map_err(|e| e.to_string())?;
    let reference = match &stored.reference {
        Some(b) => Some(Arc::new(
            Reference::from_bytes(b).map_err(|e| e.to_string())?,
        )),
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

/// Writes the model file atomically: a temp file, synced, renamed over the old one.
fn persist(dir: &Path, stored: &Stored) -> Result<(), String> {
    let body = rmp_serde::to_vec_named(stored).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!("{MODEL_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(MODEL_FILE))?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot save the model in {}: {e}", dir.display()))
}

/// Loads the persisted model, if any. A file that does not parse is moved aside, not trusted.
fn load_persisted(dir: &Path) -> Option<Current> {
    // A temp file is what a crash in the middle of saving leaves; the model file is intact.
    let _ = fs::remove_file(dir.join(format!("{MODEL_FILE}.tmp")));
    let path = dir.join(MODEL_FILE);
    let body = fs::read(&path).ok()?;
    let loaded = rmp_serde::from_slice::<Stored>(&body)
        .map_err(|e| e.to_string())
        .and_then(current_from);
    match loaded {
        Ok(current) => {
            tracing::info!(
                version = current.summary.version,
                "loaded the persisted model"
            );
            Some(current)
        }
        Err(e) => {
            let aside = dir.join(format!("{MODEL_FILE}.corrupt"));
            tracing::error!(
                "{} is not a valid model ({e}); moved to {}",
                path.display(),
                aside.display()
            );
            let _ = fs::rename(&path, aside);
            None
        }
    }
}

/// A trained model and the validation split it was scored on.
pub struct Trained {
    pub summary: ModelSummary,
    pub bytes: Bytes,
    /// The champion / challenger decision of a gated training; when not accepted, the model
    /// above was neither saved nor put in service.
    pub swap: Option<Swap>,
}

/// A training whose model must beat the current one before it answers (a drift retrain): the
/// shard's last `holdout_rows` rows are held out of training and both models are scored on them,
/// and on the new validation split within `tolerance`.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub holdout_rows: usize,
    pub tolerance: f64,
}

/// The trained model, its validation split, and the swap decision of a gated training.
type TrainOutcome = (Arc<Current>, Arc<Table>, Option<Swap>);

fn train_blocking(
    source: &TrainingSource,
    version: u64,
    window: Option<usize>,
    state_dir: &Path,
    gate: Option<(Gate, Arc<Current>)>,
) -> Result<TrainOutcome, String> {
    let holdout = gate.as_ref().map_or(0, |(g, _)| g.holdout_rows);
    let (train, valid, held, watermark) = source.load_gated(window, holdout)?;
    let started = Instant::now();
    let meta = ModelMeta {
        node: source.node.clone(),
        version,
        ..ModelMeta::default()
    };
    let mut pipeline = Pipeline::fit(&train, &source.model, meta).map_err(|e| e.to_string())?;
    let train_ms = started.elapsed().as_millis() as u64;
    pipeline.set_train_ms(train_ms);
    let valid_scores = if valid.is_empty() {
        None
    } else {
        let preds = pipeline.predict(&valid.rows()).map_err(|e| e.to_string())?;
        Some(score(valid.labels(), &preds).map_err(|e| e.to_string())?)
    };
    let bytes = Bytes::from(pipeline.to_bytes().map_err(|e| e.to_string())?);
    let reference = Reference::of_model(&train, &pipeline, &valid, source.drift_bins)
        .map_err(|e| e.to_string())?;
    let reference_bytes = Bytes::from(reference.to_bytes().map_err(|e| e.to_string())?);
    let summary = ModelSummary {
        node: source.node.clone(),
        version,
        rows_train: train.len(),
        rows_valid: valid.len(),
        train_ms,
        valid: valid_scores,
    };
    let stored = Stored {
        summary: summary.clone(),
        model: bytes.clone(),
        watermark: watermark.clone(),
        reference: Some(reference_bytes),
    };
    let swap = match &gate {
        Some((g, champion)) => Some(
            judge_swap(&champion.pipeline, &pipeline, &held, &valid, g.tolerance)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    if swap.as_ref().is_none_or(|s| s.accepted) {
        persist(state_dir, &stored)?;
    }
    let current = Current {
        reference: Some(Arc::new(reference)),
        weight: weight_of(summary.valid.as_ref()),
        pipeline,
        bytes,
        summary,
        watermark,
    };
    Ok((Arc::new(current), Arc::new(valid), swap))
}

/// Runs `work` on the blocking pool; a panic in it becomes an error, not a dead actor.
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match actix_rt::task::spawn_blocking(move || std::panic::catch_unwind(AssertUnwindSafe(work)))
        .await
    {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what} failed: {msg}"))
        }
        Err(e) => Err(format!("{what} failed: {e}")),
    }
}

pub struct ModelActor {
    source: Option<Arc<TrainingSource>>,
    state_dir: PathBuf,
    slot: ModelSlot,
    /// This node's validation split, cached for scoring other nodes' models.
    valid: Option<Arc<Table>>,
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
        slot: ModelSlot,
        train_on_start: bool,
        supervision: Supervision,
    ) -> Self {
        if let Some(current) = load_persisted(&state_dir) {
            slot.publish(Arc::new(current));
        }
        ModelActor {
            source: source.map(Arc::new),
            state_dir,
            slot,
            valid: None,
            train_on_start,
            supervision,
            trainings_done: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Actor for ModelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.train_on_start && self.source.is_some() && self.slot.current().is_none() {
            self.train_on_start = false;
            tracing::info!("no model yet: training on the local shard");
            ctx.notify(Train {
                reason: "first start".into(),
                window: None,
                queue: false,
                gate: None,
            });
        }
    }
}

impl Supervised for ModelActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.supervision.restarting("model");
        // A training in flight is abandoned with the old context; wake whoever waits for it.
        self.slot.0.training.store(false, Ordering::Relaxed);
        self.trainings_done.send_modify(|n| *n += 1);
        if let Some(current) = load_persisted(&self.state_dir) {
            let newer = self
                .slot
                .current()
                .is_none_or(|c| c.summary.version <= current.summary.version);
            if newer {
                self.slot.publish(Arc::new(current));
            }
        }
        self.valid = None;
    }
}

/// Retrain on the local shard now. If a training is already running, waits for it to end and
/// then trains (`queue`), or fails at once.
#[derive(Message)]
#[rtype(result = "Result<Trained, String>")]
pub struct Train {
    pub reason: String,
    /// Train on the shard's last rows only.
    pub window: Option<usize>,
    pub queue: bool,
    /// Put the new model in service only if it beats the current one (no current model: always).
    pub gate: Option<Gate>,
}

impl Handler<Train> for ModelActor {
    type Result = ResponseActFuture<Self, Result<Trained, String>>;

    fn handle(&mut self, msg: Train, ctx: &mut Context<Self>) -> Self::Result {
        let Some(source) = self.source.clone() else {
            return Box::pin(fut::ready(Err(
                "this node has no [data] shard to train on".to_string()
            )));
        };
        if self.slot.0.training.swap(true, Ordering::AcqRel) {
            if !msg.queue {
                return Box::pin(fut::ready(Err("a training is already running".to_string())));
            }
            let mut done = self.trainings_done.subscribe();
            let me = ctx.address();
            let retry = async move {
                let _ = done.changed().await;
                me.send(msg)
                    .await
                    .unwrap_or_else(|e| Err(format!("model actor unavailable: {e}")))
            };
            return Box::pin(retry.into_actor(self));
        }
        let version = self.slot.current().map_or(0, |c| c.summary.version) + 1;
        let state_dir = self.state_dir.clone();
        let Train {
            reason,
            window,
            gate,
            ..
        } = msg;
        let gate = gate.and_then(|g| self.slot.current().map(|c| (g, c)));
        // The cached validation split is rebuilt by the training; don't hold both at once.
        self.valid = None;
        tracing::info!(version, %reason, "training");
        let work = blocking("training", move || {
            train_blocking(&source, version, window, &state_dir, gate)
        });
        Box::pin(work.into_actor(self).map(move |result, act, _ctx| {
            act.slot.0.training.store(false, Ordering::Release);
            act.trainings_done.send_modify(|n| *n += 1);
            match result {
                Ok((current, _, Some(swap))) if !swap.accepted => {
                    tracing::info!(%reason, why = %swap.reason, "new model not put in service");
                    Ok(Trained {
                        summary: current.summary.clone(),
                        bytes: current.bytes.clone(),
                        swap: Some(swap),
                    })
                }
                Ok((current, valid, swap)) => {
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
                }
                Err(e) => {
                    tracing::error!("training failed, keeping the previous model: {e}");
                    Err(e)
                }
            }
        }))
    }
}

/// Score these models (and their ensemble) on this node's validation split.
#[derive(Message)]
#[rtype(result = "Result<SplitEval, String>")]
pub struct Evaluate(pub Vec<ModelBlob>);

impl Handler<Evaluate> for ModelActor {
    type Result = ResponseActFuture<Self, Result<SplitEval, String>>;

    fn handle(&mut self, msg: Evaluate, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(source) = self.source.clone() else {
            return Box::pin(fut::ready(Err(
                "this node has no [data] shard to validate on".to_string(),
            )));
        };
        let cached = self.valid.clone();
        let slot = self.slot.clone();
        let work = blocking("evaluation", move || {
            let valid = match cached {
                Some(v) => v,
                None => Arc::new(source.load_split(None)?.1),
            };
            let foreign = msg.0.iter().filter(|b| b.node != source.node).count();
            slot.0.foreign.fetch_add(foreign, Ordering::Relaxed);
            let result = (|| {
                let models = msg
                    .0
                    .iter()
                    .map(|b| {
                        Pipeline::from_bytes(&b.bytes)
                            .map_err(|e| format!("model of {}: {e}", b.node))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let refs: Vec<&Pipeline> = models.iter().collect();
                evaluate_split(&refs, &valid, None).map_err(|e| e.to_string())
            })();
            // The foreign models are dropped here: a node keeps only its own.
            slot.0.foreign.fetch_sub(foreign, Ordering::Relaxed);
            Ok((result?, valid))
        });
        Box::pin(work.into_actor(self).map(|result, act, _ctx| {
            result.map(|(eval, valid)| {
                act.valid = Some(valid);
                eval
            })
        }))
    }
}

/// Makes the actor fail on purpose (fault injection): its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

impl Handler<Fail> for ModelActor {
    type Result = ();
    fn handle(&mut self, _msg: Fail, ctx: &mut Context<Self>) {
        contain(ctx, "model actor", injected_fault);
    }
}

/// This node's model services, as used for a peer's request and for the local part of a
/// cluster-wide flow alike.
#[derive(Clone)]
pub struct LocalModel {
    pub node: String,
    pub actor: Addr<ModelActor>,
    pub slot: ModelSlot,
}

impl LocalModel {
    /// Serves one model request.
    pub async fn serve(&self, request: Request) -> Response {
        let failed = |reason: String| Response::Error { reason };
        match request {
            Request::Ping => Response::Pong,
            Request::Train => match self
                .actor
                .send(Train {
                    reason: "cluster training".into(),
                    window: None,
                    queue: true,
                    gate: None,
                })
                .await
            {
                Ok(Ok(t)) => Response::Trained {
                    summary: t.summary,
                    model: t.bytes,
                },
                Ok(Err(e)) => failed(e),
                Err(e) => failed(format!("model actor unavailable: {e}")),
            },
            Request::GetModel => match self.slot.current() {
                Some(c) => Response::Model {
                    summary: c.summary.clone(),
                    model: c.bytes.clone(),
                },
                None => Response::NoModel,
            },
            Request::Evaluate { models } => match self.actor.send(Evaluate(models)).await {
                Ok(Ok(eval)) => Response::Evaluated { eval },
                Ok(Err(e)) => failed(e),
                Err(e) => failed(format!("model actor unavailable: {e}")),
            },
            Request::Predict { rows } => self.predict(rows).await,
            Request::Command { .. } | Request::PredictEnsemble { .. } => {
                failed("cluster requests are served by the node, not its model".into())
            }
        }
    }

    /// Predicts with the current model; never waits for a training. Big batches run on the
    /// blocking pool.
    pub async fn predict(&self, rows: Rows) -> Response {
        if rows.len() <= INLINE_ROWS {
            return self.predict_now(&rows);
        }
        let me = self.clone();
        blocking("prediction", move || Ok(me.predict_now(&rows)))
            .await
            .unwrap_or_else(|reason| Response::Error { reason })
    }

    /// Predicts on the calling thread.
    pub fn predict_now(&self, rows: &Rows) -> Response {
        let Some(current) = self.slot.current() else {
            return Response::NoModel;
        };
        match current.pipeline.predict(rows) {
            Ok(preds) => Response::Predictions {
                node: self.node.clone(),
                version: current.summary.version,
                weight: current.weight,
                preds,
            },
            Err(e) => Response::Error {
                reason: e.to_string(),
            },
        }
    }

    /// Whether `rows` is small enough for [`LocalModel::predict_now`] on a network thread.
    pub fn is_quick(rows: &Rows) -> bool {
        rows.len() <= INLINE_ROWS
    }
}
