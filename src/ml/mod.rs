//! Machine learning core: loading shards, preprocessing, weak learners, metrics, model files.
//! No networking here.

pub mod config;
pub mod data;
pub mod error;
pub mod learner;
pub mod linear;
pub mod tree;
