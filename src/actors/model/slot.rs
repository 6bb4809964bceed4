//! The shared cell holding the model that answers. Request handlers read it without going
//! through the model actor's mailbox, so predictions never wait for a training; the actor swaps a
//! new model in with one write. The model is compiled for serving ([`Served`]) as it goes in.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::Serialize;

use crate::ml::{Pipeline, Reference, Served, Watermark};
use crate::protocol::ModelSummary;

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

/// The model that answers and its compiled form, swapped together.
#[derive(Clone)]
pub struct Serving {
    pub current: Arc<Current>,
    pub served: Arc<Served>,
}

/// Why a model was trained: the `cause` of the retrain counts in `status` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The node started without a model.
    Start,
    /// A cluster-wide `train`.
    Train,
    /// The `train local` command.
    TrainLocal,
    /// The data watcher saw drift.
    Drift,
}

/// Trainings that produced a model since the node started, per [`Cause`] (whether or not the
/// model was then put in service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retrains {
    pub start: u64,
    pub train: u64,
    pub train_local: u64,
    pub drift: u64,
}

#[derive(Default)]
struct RetrainCounts([AtomicU64; 4]);

impl Cause {
    fn index(self) -> usize {
        match self {
            Cause::Start => 0,
            Cause::Train => 1,
            Cause::TrainLocal => 2,
            Cause::Drift => 3,
        }
    }
}

#[derive(Default)]
pub(super) struct SlotInner {
    current: RwLock<Option<Serving>>,
    pub(super) training: AtomicBool,
    /// Other nodes' models held right now (only while scoring them).
    pub(super) foreign: AtomicUsize,
    /// `fault panic-next-predict`: the next prediction panics inside the model code.
    pub(super) panic_next_predict: AtomicBool,
    retrains: RetrainCounts,
}

/// The shared cell holding the current model. Cloning shares it.
#[derive(Clone, Default)]
pub struct ModelSlot(pub(super) Arc<SlotInner>);

impl ModelSlot {
    pub fn current(&self) -> Option<Arc<Current>> {
        self.serving().map(|s| s.current)
    }

    /// The current model with its compiled form.
    pub fn serving(&self) -> Option<Serving> {
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

    /// Puts `current` in service (compiling it first, outside the lock).
    pub(super) fn publish(&self, current: Arc<Current>) {
        let served = Arc::new(current.pipeline.served());
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Serving { current, served });
    }

    /// Trainings done so far, per cause.
    pub fn retrains(&self) -> Retrains {
        let n = |c: Cause| self.0.retrains.0[c.index()].load(Ordering::Relaxed);
        Retrains {
            start: n(Cause::Start),
            train: n(Cause::Train),
            train_local: n(Cause::TrainLocal),
            drift: n(Cause::Drift),
        }
    }

    pub(super) fn count_retrain(&self, cause: Cause) {
        self.0.retrains.0[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Arms `fault panic-next-predict`.
    pub fn panic_next_predict(&self) {
        self.0.panic_next_predict.store(true, Ordering::Relaxed);
    }
}
