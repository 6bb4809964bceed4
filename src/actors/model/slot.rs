//! The shared cell holding the model that answers. Request handlers read it without going
//! through the model actor's mailbox, so predictions never wait for a training; the actor swaps a
//! new model in with one write. The model is compiled for serving ([`Served`]) as it goes in.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

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

#[derive(Default)]
pub(super) struct SlotInner {
    current: RwLock<Option<Serving>>,
    pub(super) training: AtomicBool,
    /// Other nodes' models held right now (only while scoring them).
    pub(super) foreign: AtomicUsize,
    /// `fault panic-next-predict`: the next prediction panics inside the model code.
    pub(super) panic_next_predict: AtomicBool,
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
        let served = Arc::new(Served::new(&current.pipeline));
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Serving { current, served });
    }

    /// Arms `fault panic-next-predict`.
    pub fn panic_next_predict(&self) {
        self.0.panic_next_predict.store(true, Ordering::Relaxed);
    }
}
