//! Offline tools of `ensemble-node` that run without a cluster.

pub mod certs;
