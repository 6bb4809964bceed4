//! ensemble-cluster: a peer-to-peer cluster of nodes, each holding a private shard of tabular data,
//! each training one weak learner on it, answering predictions as an ensemble.

pub mod ml;
