//! The one error type of the ML core. Messages name the file and line, or the config key, so a user
//! can fix the input without reading the code.

use std::path::PathBuf;

/// Everything that can go wrong while loading data, fitting, predicting or reading a model file.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CSV is malformed or does not fit the data spec; `line` is 1-based.
    #[error("{path}:{line}: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A data problem that is not tied to a line of a file (e.g. empty training set).
    #[error("data: {0}")]
    Data(String),
    /// A hyperparameter or option is out of range; the message names the key (`model.max_depth`).
    #[error("config: {0}")]
    Config(String),
    /// A model file that does not decode (garbage, truncated, other format version).
    #[error("model file: {0}")]
    ModelFile(String),
    /// Inputs that do not fit together (task mismatch, lengths, empty ensemble).
    #[error("{0}")]
    Mismatch(String),
    /// An error reported by linfa's traits.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// Result alias for the ML core.
pub type Result<T, E = MlError> = std::result::Result<T, E>;
