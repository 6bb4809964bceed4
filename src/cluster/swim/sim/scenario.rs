//! The scenario of `simulate` and of the 1,000-node test: a warm-up, quiet seconds, a join, a
//! kill, a pause, optionally a partition; and the [`Report`] of what was measured.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::engine::{Kind, Sim, SimConfig};
use crate::cluster::swim::{Status, Swim};

/// What a scenario measured. Times are seconds of virtual time; `None`: never happened within
/// the simulated time.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub seed: u64,
    pub loss: f64,
    pub virtual_s: f64,
    /// From a newcomer's first `Join` until every node knows it.
    pub join_spread_s: Option<f64>,
    /// From a kill until the first node suspects the victim, and until every node has it dead.
    pub death_first_suspect_s: Option<f64>,
    pub death_spread_s: Option<f64>,
    /// Nodes that declared the paused node dead, and the time from its resumption until every
    /// node holds it alive again.
    pub pause_declared_dead_by: usize,
    pub pause_recovery_s: Option<f64>,
    /// From the end of the partition until every node holds every other alive.
    pub partition_heal_s: Option<f64>,
    /// Suspicions and deaths declared of nodes that were never stopped, killed or cut off.
    pub false_suspicions: u64,
    pub false_deaths: u64,
    pub node_hours: f64,
    pub false_suspicions_per_node_hour: f64,
    /// Mean bytes a node sends per second: over the quiet first 10 s, and over the whole run
    /// (join, kill, pause and their news, member lists included).
    pub idle_bytes_per_node_s: f64,
    pub bytes_per_node_s: f64,
    pub packets_per_node_s: f64,
    /// Bytes of the one member list sent to the newcomer.
    pub join_sync_bytes: u64,
    pub wall_s: f64,
}

/// Plays the scenario: a 5-s warm-up, 10 quiet seconds, then a node joins; 10 s later a node is
/// killed; 15 s later another is stopped for `pause`; then (if asked) a partition; to the end.
pub fn run(cfg: SimConfig) -> Report {
    let wall = Instant::now();
    let n = cfg.nodes as u32;
    let secs = Duration::from_secs;
    let mut sim = Sim::new(cfg.clone());
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
    let newcomer = n;
    let victim = rng.gen_range(0..n);
    let paused = (victim + 1 + rng.gen_range(0..n - 1)) % n;
    let steady: Vec<u32> = (0..n).filter(|&i| i != victim && i != paused).collect();
    let start = secs(5);
    sim.run_until(start);
    let (bytes0, packets0) = sim.sent();

    sim.run_until(start + secs(10));
    let (idle_bytes, _) = sim.sent();
    let idle = (idle_bytes - bytes0) as f64 / (f64::from(n) * 10.0);

    let join = sim.watch(newcomer, Kind::Up, &steady);
    sim.start(newcomer, rng.gen_range(0..n));
    sim.run_until(start + secs(20));

    let mut observers = steady.clone();
    observers.push(newcomer);
    let death = sim.watch(victim, Kind::Down, &observers);
    sim.kill(victim);
    let killed_at = sim.now;
    let mut first_suspect = None;
    while sim.now < start + secs(35) {
        sim.run_until(sim.now + Duration::from_millis(50));
        if first_suspect.is_none() && sim.nodes.iter().any(|x| suspects(&x.swim, victim)) {
            first_suspect = Some((sim.now - killed_at).as_secs_f64());
        }
    }

    sim.pause(paused);
    sim.run_until(start + secs(35) + cfg.pause);
    sim.resume(paused);
    let pause_declared_dead_by = sim.declared_dead[paused as usize] as usize;
    let mut everyone = observers.clone();
    everyone.push(paused);
    let pause_recovery = sim.until_alive(&observers, &[paused], start + secs(50) + cfg.pause);

    let end = start + cfg.duration.max(secs(50) + cfg.pause);
    let mut heal = None;
    // Suspicions during a partition are expected: the false ones are counted before it.
    let mut false_counts = (sim.false_suspicions, sim.false_deaths);
    let mut sound_until = end;
    if cfg.partition > 0.0 {
        let cut_at = sim.now.max(start + secs(50) + cfg.pause);
        sim.run_until(cut_at);
        false_counts = (sim.false_suspicions, sim.false_deaths);
        sound_until = cut_at;
        let side: Vec<bool> = (0..=n).map(|_| rng.gen::<f64>() < cfg.partition).collect();
        sim.side = Some(side);
        sim.run_until(cut_at + cfg.partition_for);
        sim.side = None;
        heal = sim.until_alive(&everyone, &everyone, end.max(sim.now + secs(30)));
    }
    let end = end.max(sim.now);
    sim.run_until(end);
    if cfg.partition <= 0.0 {
        false_counts = (sim.false_suspicions, sim.false_deaths);
        sound_until = end;
    }

    let (bytes1, packets1) = sim.sent();
    let window = (end - start).as_secs_f64();
    let running = f64::from(n);
    let sound = sim.faulty.iter().filter(|f| !**f).count() as f64;
    let node_hours = sound * sound_until.as_secs_f64() / 3600.0;
    Report {
        nodes: cfg.nodes,
        seed: cfg.seed,
        loss: cfg.loss,
        virtual_s: end.as_secs_f64(),
        join_spread_s: sim.watched_for(join),
        death_first_suspect_s: first_suspect,
        death_spread_s: sim.watched_for(death),
        pause_declared_dead_by,
        pause_recovery_s: pause_recovery,
        partition_heal_s: heal,
        false_suspicions: false_counts.0,
        false_deaths: false_counts.1,
        node_hours,
        false_suspicions_per_node_hour: false_counts.0 as f64 / node_hours,
        idle_bytes_per_node_s: idle,
        bytes_per_node_s: (bytes1 - bytes0) as f64 / (running * window),
        packets_per_node_s: (packets1 - packets0) as f64 / (running * window),
        join_sync_bytes: sim.nodes.iter().map(|x| x.swim.stats().sync_bytes).sum(),
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

fn suspects(swim: &Swim<u32, u32>, id: u32) -> bool {
    matches!(swim.status(&id), Some((Status::Suspect | Status::Dead, _)))
}
