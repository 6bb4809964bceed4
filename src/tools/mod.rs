//! The command-line tools around a node, beside running one: `offline` (the whole training /
//! cross-validation protocol in one process), `gen` (synthetic shards) and `certs` (the cluster
//! CA and certificates). Thin layers over the library; `src/main.rs` parses the arguments and
//! prints what they return.

pub mod certs;
pub mod gen;
pub mod offline;

pub use gen::{run_gen, GenArgs};
pub use offline::{run_offline, OfflineArgs, Seeds};
