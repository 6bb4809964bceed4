//! The node's actors, thin owners of state and lifecycles, all supervised: [`ClusterActor`]
//! (the member table, commands), one [`PeerActor`] per remote member (its link), the
//! [`ModelActor`] (this node's model, double-buffered and persisted) and the [`DataWatcher`]
//! (new rows in the shard, drift). The logic they apply lives in `crate::cluster` and
//! `crate::ml`, tested without them.

mod cluster;
mod model;
mod peer;
mod supervision;
mod watcher;

pub use cluster::{ClusterActor, Exec, GetMembers, MemberConnected, Shutdown};
pub use model::{
    LocalModel, ModelActor, ModelError, ModelSlot, Retrains, TrainingSource, MODEL_FILE,
};
pub use peer::{PeerActor, PeerEvent};
pub use supervision::{Restarts, Supervision, EXIT_TOO_MANY_RESTARTS};
pub use watcher::{DataWatcher, DriftStatus, Notices};
