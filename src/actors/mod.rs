//! The node's actors. [`ClusterActor`] knows the members, runs commands and coordinates the
//! cluster-wide flows; one supervised [`PeerActor`] per remote member owns the link to it; the
//! supervised [`ModelActor`] owns this node's model.

mod cluster;
mod model;
mod peer;
mod supervision;
mod watcher;

pub use cluster::{ClusterActor, Exec, GetMembers, MemberConnected, Shutdown};
pub use model::{LocalModel, ModelActor, ModelSlot, TrainingSource, MODEL_FILE};
pub use peer::PeerActor;
pub use supervision::{contain, Supervision, EXIT_TOO_MANY_RESTARTS};
pub use watcher::{DataWatcher, DriftStatus, Notices};
