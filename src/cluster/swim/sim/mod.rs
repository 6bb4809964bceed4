//! A deterministic simulator of the membership core: N in-process [`Swim`] nodes on a virtual
//! clock and a simulated network (latency, loss, partitions), with kills, pauses and joins. The
//! nodes run exactly the code a real node runs and exchange exactly the bytes it would send; the
//! simulation is a pure function of its [`SimConfig`] (seed included), so any figure it prints can
//! be replayed.
//!
//! [`run`] plays one scenario and returns a [`Report`]: the time for a join to reach every node,
//! for a death to be seen by every node, for a paused node to be seen alive again by all, for a
//! partition to heal, the suspicions of nodes that never failed (per node-hour), and the bytes
//! each node sends per second.

mod engine;
mod scenario;

pub use engine::{Sim, SimConfig};
pub use scenario::{run, Report};
