//! The command-line tools around a node, beside running one: `offline` (the whole training /
//! cross-validation protocol in one process), `gen` (synthetic shards), `certs` (the cluster
//! CA and certificates) and `simulate` (the membership protocol on thousands of simulated nodes). Thin layers over the library; `src/main.rs` parses the arguments and
//! prints what they return.

pub mod certs;
pub mod gen;
pub mod offline;
pub mod simulate;

pub use gen::{run_gen, GenArgs};
pub use offline::{run_offline, OfflineArgs, Seeds};
pub use simulate::{run_simulate, SimulateArgs};
