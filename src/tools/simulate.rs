//! `simulate`: play the membership scenario of [`crate::cluster::swim::sim`] on N simulated nodes
//! and print its report as one JSON line.

use std::time::Duration;

use crate::cluster::swim::sim::{self, SimConfig};
use crate::error::{Error, Result};

/// `simulate --nodes N [--seed S] [--loss P] [--latency-ms L] [--jitter-ms J] [--seconds T]
/// [--pause-s P] [--partition F]`
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Simulated nodes (one more joins during the run)
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probability that a packet is lost
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,
    /// One-way latency: this, plus an exponential delay of mean --jitter-ms
    #[arg(long, default_value_t = 0.5)]
    pub latency_ms: f64,
    #[arg(long, default_value_t = 2.0)]
    pub jitter_ms: f64,
    /// Virtual seconds simulated after the warm-up (at least 55)
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// How long one node is stopped
    #[arg(long, default_value_t = 5.0)]
    pub pause_s: f64,
    /// Fraction of the nodes cut off for 10 s at the end (0: no partition)
    #[arg(long, default_value_t = 0.0)]
    pub partition: f64,
}

pub fn run_simulate(args: &SimulateArgs) -> Result<serde_json::Value> {
    let ms = |x: f64, what: &str| {
        Duration::try_from_secs_f64(x / 1000.0)
            .map_err(|_| Error::Other(format!("--{what} must be a non-negative number")))
    };
    if args.nodes < 3 {
        return Err(Error::Other("--nodes must be at least 3".into()));
    }
    if !(0.0..1.0).contains(&args.loss) || !(0.0..1.0).contains(&args.partition) {
        return Err(Error::Other(
            "--loss and --partition are fractions in [0, 1)".into(),
        ));
    }
    let mut cfg = SimConfig::new(args.nodes, args.seed);
    cfg.loss = args.loss;
    cfg.latency = ms(args.latency_ms, "latency-ms")?;
    cfg.jitter = ms(args.jitter_ms, "jitter-ms")?;
    cfg.duration = Duration::from_secs(args.seconds);
    cfg.pause = ms(args.pause_s * 1000.0, "pause-s")?;
    cfg.partition = args.partition;
    let report = sim::run(cfg);
    let mut value = serde_json::to_value(report).map_err(|e| Error::Other(e.to_string()))?;
    value["ok"] = serde_json::Value::Bool(true);
    Ok(value)
}
