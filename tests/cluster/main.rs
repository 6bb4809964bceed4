//! Cluster tests: real `ensemble-node` processes on loopback, ephemeral ports, one scenario per
//! file. [`util`] starts nodes and drives them through their console and `ctl`; every scenario
//! synchronises by polling with a deadline, never by sleeping.
//!
//! A failing test prints the stderr log of each of its nodes and keeps its files (configs, logs,
//! state dirs) under `target/tmp/cluster/`.

// The MessagePack tree the fuzz tests mutate models with; here it edits one model file.
mod load;
#[allow(dead_code)]
#[path = "../fuzz_decode/msgpack.rs"]
mod msgpack;
// Network namespaces on a bridge of the test's own, for the chaos test's link cuts.
mod fixtures;
#[path = "../hosts/mod.rs"]
mod hosts;
mod shards;
mod util;

mod test_bad_config;
mod test_bad_frames;
mod test_chaos;
mod test_classification;
mod test_console;
mod test_drift;
mod test_faults;
mod test_formation;
mod test_grow_shrink;
mod test_hostile_models;
mod test_join;
mod test_kill_restart;
mod test_load;
mod test_many_clients;
mod test_pause;
mod test_refusal;
mod test_row_cap;
mod test_schema;
mod test_slow_clients;
mod test_stale_death;
mod test_supervision;
mod test_tls;
mod test_training;
mod test_trust;
