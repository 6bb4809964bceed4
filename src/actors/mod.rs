//! The node's actors. [`ClusterActor`] knows the members, runs commands and coordinates the
//! cluster-wide flows; one supervised [`PeerActor`] per remote member owns the link to it.

mod cluster;
mod peer;

pub use cluster::{ClusterActor, Exec, GetMembers, MemberConnected, Shutdown};
pub use peer::PeerActor;
