//! What can go wrong with this node's model, and with work run on the blocking pool.

use std::path::PathBuf;

use actix::MailboxError;

use crate::ml::MlError;

/// What can go wrong with this node's model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("this node has no [data] shard to train on")]
    NoShard,
    #[error("a training is already running")]
    Busy,
    #[error(transparent)]
    Ml(#[from] MlError),
    #[error("model of {node}: {source}")]
    Foreign { node: String, source: MlError },
    /// Models sent for scoring that are not valid models, each with why.
    #[error("{}", .0.iter().map(|(node, e)| format!("model of {node}: {e}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, MlError)>),
    #[error("cannot encode the model file: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot save the model in {}: {source}", dir.display())]
    Save {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the training was abandoned: the model actor restarted")]
    Abandoned,
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error("model actor unavailable: {0}")]
    Unavailable(#[from] MailboxError),
}

/// Work on the blocking pool that panicked or could not run.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {reason}")]
pub struct TaskFailed {
    pub what: &'static str,
    pub reason: String,
}

impl From<TaskFailed> for String {
    fn from(e: TaskFailed) -> String {
        e.to_string()
    }
}
