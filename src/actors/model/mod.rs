//! This node's model: the [`ModelActor`] that trains and persists it, the [`ModelSlot`] it is
//! served from, and [`LocalModel`], the one way the node serves it.
//!
//! - `actor`: the actor, its messages, training on the blocking pool.
//! - `slot`: the shared cell holding the model that answers (double buffering).
//! - `store`: the model file, written atomically by one current training at a time.
//! - `local`: serving the model to peers, clients and this node's own flows.

mod actor;
mod error;
mod local;
mod slot;
mod store;

pub use actor::{blocking, Fail, Gate, ModelActor, Train, TrainingSource};
pub use error::ModelError;
pub use local::LocalModel;
pub use slot::{Cause, Current, ModelSlot, Retrains};
pub use store::MODEL_FILE;
