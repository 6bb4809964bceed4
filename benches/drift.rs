//! Drift benchmark: how often a check fires when nothing changed (false alarms), and how soon it
//! fires when something did, on the shipped data sets and on generated data. In-process on the ml
//! API, no cluster. For each trial the data set's rows are shuffled (seeded): the first rows are
//! the node's shard (the size of shard A; generated: 1,000), split 70 / 30 as a node does, the
//! default model trained on it and the reference built; the next rows are what gets appended.
//!
//! - same distribution: the next `min_rows` rows, labelled (all tests: features, label, error).
//! - feature shift: every second numeric feature of the appended rows moved by 0.25, 0.5 or 1
//!   standard deviation (of the reference); sent without labels, so only the feature tests see
//!   them (the shipped sets' labels could not follow the moved features).
//! - label shift: classification: appended rows drawn so that the reference's rarest class gains
//!   0.2 of share (prior shift: breast cancer's malignant 0.37 → 0.57, generated 0.5 → 0.7);
//!   regression: the label moved by 0.5 standard deviation (the same features fetch a higher
//!   price).
//!
//! A check runs at `min_rows` rows, then every 50 more (as the watcher does on each poll with new
//! rows) while the pool of unused rows lasts, 1,000 rows at most. Prints a Markdown table.
//!
//! `cargo bench --bench drift [-- --trials N] [--alpha A] [--min-rows N]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use ensemble_cluster::ml::data::load_csv_parts;
use ensemble_cluster::ml::synth::write_rows;
use ensemble_cluster::ml::{
    detect, parse_csv, ColumnData, DataSpec, DriftSettings, GenArgs, Labels, ModelConfig,
    ModelMeta, Pipeline, Reference, Table, Task,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const STEP: usize = 50;
const SHIFTS: [f64; 3] = [0.25, 0.5, 1.0];
/// Share the rarest class gains in the classification label shift.
const SHIFT_PRIOR: f64 = 0.2;
/// Rows appended at most per trial (the checks of one trial stop there).
const MAX_APPENDED: usize = 1_000;

struct Set {
    name: &'static str,
    pool: Table,
    node_rows: usize,
}

fn shipped(name: &'static str, spec: DataSpec) -> Set {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("shards")
        .join(name);
    let files: Vec<PathBuf> = ["A", "B", "C", "D"]
        .iter()
        .map(|s| dir.join(format!("{s}.csv")))
        .collect();
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("shard"))
        .collect();
    let parts: Vec<(&Path, &[u8])> = files
        .iter()
        .zip(&bytes)
        .map(|(f, b)| (f.as_path(), b.as_slice()))
        .collect();
    let pool = load_csv_parts(&parts, &spec).expect("shards parse");
    let a = load_csv_parts(&parts[..1], &spec).expect("shard A parses");
    Set {
        name,
        node_rows: a.len(),
        pool,
    }
}

fn generated(name: &'static str, task: Task) -> Set {
    let mut args = GenArgs::new(6_000, "gen.csv");
    args.task = task;
    args.seed = 7;
    let mut buf = Vec::new();
    write_rows(&args, true, &mut buf).expect("gen");
    let spec = DataSpec {
        label: "y".into(),
        task,
        drop: vec![],
    };
    Set {
        name,
        pool: parse_csv(Path::new("gen.csv"), &buf, &spec).expect("parse"),
        node_rows: 1_000,
    }
}

fn sd(v: &[f64]) -> f64 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt()
}

fn present(d: &ColumnData) -> Vec<f64> {
    match d {
        ColumnData::Numeric(v) => v.iter().flatten().copied().collect(),
        ColumnData::Categorical(_) => Vec::new(),
    }
}

/// `new` with every second numeric feature moved by `k` reference standard deviations, labels
/// dropped.
fn feature_shift(train: &Table, new: &Table, k: f64) -> Table {
    let mut out = new.clone();
    let numeric: Vec<usize> = (0..out.columns.len())
        .filter(|&i| matches!(out.columns[i].data, ColumnData::Numeric(_)))
        .collect();
    for &i in numeric.iter().step_by(2) {
        let delta = k * sd(&present(&train.columns[i].data));
        if let ColumnData::Numeric(v) = &mut out.columns[i].data {
            for x in v.iter_mut().flatten() {
                *x += delta;
            }
        }
    }
    out.labels = match out.labels {
        Labels::Regression(_) => Labels::Regression(vec![]),
        Labels::Classification(_) => Labels::Classification(vec![]),
    };
    out
}

/// Indices of `rest` ordered so that any prefix follows the label shift (see the module doc).
fn label_shift_order(train: &Table, pool: &Table, rest: &[usize]) -> Vec<usize> {
    match (&train.labels, &pool.labels) {
        (Labels::Classification(t), Labels::Classification(p)) => {
            let mut classes: Vec<&String> = t.iter().collect();
            classes.sort();
            classes.dedup();
            let share = |c: &String| t.iter().filter(|x| *x == c).count() as f64 / t.len() as f64;
            // The rarest class gains 0.2 of share, the others give it up in proportion.
            let mut by_share: Vec<(&String, f64)> =
                classes.iter().map(|c| (*c, share(c))).collect();
            by_share.sort_by(|a, b| a.1.total_cmp(&b.1));
            let rare = by_share[0].1;
            let gained = (rare + SHIFT_PRIOR).min(1.0);
            let shares: Vec<f64> = by_share
                .iter()
                .enumerate()
                .map(|(k, x)| {
                    if k == 0 {
                        gained
                    } else {
                        x.1 * (1.0 - gained) / (1.0 - rare)
                    }
                })
                .collect();
            let mut queues: Vec<Vec<usize>> = by_share
                .iter()
                .map(|(c, _)| rest.iter().copied().filter(|&i| &p[i] == *c).collect())
                .collect();
            let mut out = Vec::new();
            let mut taken = vec![0.0; queues.len()];
            // Greedy: next row from the class furthest below its target share.
            while queues.iter().any(|q| !q.is_empty()) {
                let n = out.len() as f64 + 1.0;
                let pick = (0..queues.len())
                    .filter(|&k| !queues[k].is_empty())
                    .max_by(|&a, &b| {
                        (shares[a] * n - taken[a]).total_cmp(&(shares[b] * n - taken[b]))
                    })
                    .expect("a class with rows left");
                out.push(queues[pick].remove(0));
                taken[pick] += 1.0;
            }
            out
        }
        _ => rest.to_vec(),
    }
}

fn label_moved(train: &Table, new: Table) -> Table {
    let mut out = new;
    if let (Labels::Regression(t), Labels::Regression(v)) = (&train.labels, &mut out.labels) {
        let d = 0.5 * sd(t);
        v.iter_mut().for_each(|y| *y += d);
    }
    out
}

/// Rows at the first check that fires (None: none did while rows lasted).
fn rows_to_fire(
    reference: &Reference,
    model: &Pipeline,
    rows: usize,
    min_rows: usize,
    settings: &DriftSettings,
    make: &dyn Fn(usize) -> Table,
) -> Option<usize> {
    let mut n = min_rows;
    while n <= rows {
        let rep = detect(reference, &make(n), Some(model), settings).expect("detect");
        if rep.dataset_drift {
            return Some(n);
        }
        n += STEP;
    }
    None
}

#[derive(Default)]
struct Tally {
    at_first: usize,
    within: usize,
    rows: Vec<usize>,
}

impl Tally {
    fn add(&mut self, fired: Option<usize>, min_rows: usize) {
        if let Some(n) = fired {
            self.within += 1;
            self.at_first += usize::from(n == min_rows);
            self.rows.push(n);
        }
    }

    fn cell(&mut self, trials: usize) -> String {
        self.rows.sort_unstable();
        let median = self.rows.get(self.rows.len() / 2);
        format!(
            "{:.2} / {:.2} / {}",
            self.at_first as f64 / trials as f64,
            self.within as f64 / trials as f64,
            median.map_or("–".into(), |m| m.to_string())
        )
    }
}

fn run(set: &Set, trials: usize, min_rows: usize, settings: &DriftSettings) {
    let started = Instant::now();
    let n = set.pool.len();
    let avail = (n - set.node_rows).min(MAX_APPENDED);
    let (mut alarms, mut alarms_any) = (0usize, 0usize);
    let mut shifts: Vec<Tally> = SHIFTS.iter().map(|_| Tally::default()).collect();
    let mut label = Tally::default();
    let (mut valid_rows, mut train_rows) = (0, 0);
    for t in 0..trials {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(t as u64));
        let node = set.pool.select(&idx[..set.node_rows]);
        let rest = &idx[set.node_rows..];
        let (train, valid) = node.split(0.3, 42);
        (train_rows, valid_rows) = (train.len(), valid.len());
        let model =
            Pipeline::fit(&train, &ModelConfig::default(), ModelMeta::default()).expect("fit");
        let reference =
            Reference::of_model(&train, &model, &valid, settings.bins).expect("reference");
        // Same distribution: one check at min_rows, and any check up to the pool's end.
        let same = |k: usize| set.pool.select(&rest[..k]);
        let first = detect(&reference, &same(min_rows), Some(&model), settings).expect("detect");
        alarms += usize::from(first.dataset_drift);
        alarms_any += usize::from(
            rows_to_fire(&reference, &model, avail, min_rows, settings, &same).is_some(),
        );
        for (k, tally) in SHIFTS.iter().zip(shifts.iter_mut()) {
            let make = |m: usize| feature_shift(&train, &same(m), *k);
            let fired = rows_to_fire(&reference, &model, avail, min_rows, settings, &make);
            tally.add(fired, min_rows);
        }
        let order = label_shift_order(&train, &set.pool, rest);
        let make = |m: usize| label_moved(&train, set.pool.select(&order[..m]));
        let fired = rows_to_fire(&reference, &model, avail, min_rows, settings, &make);
        label.add(fired, min_rows);
    }
    let rate = alarms as f64 / trials as f64;
    let se = (settings.alpha * (1.0 - settings.alpha) / trials as f64).sqrt();
    let shifted: Vec<String> = shifts.iter_mut().map(|s| s.cell(trials)).collect();
    println!(
        "| {} | {train_rows} / {valid_rows} | {} | **{rate:.3}** ({alarms}/{trials}; α + 2 s.e. = {:.3}) | {:.3} | {} | {} | {} | {} | {:.0} s |",
        set.name,
        avail,
        settings.alpha + 2.0 * se,
        alarms_any as f64 / trials as f64,
        shifted[0],
        shifted[1],
        shifted[2],
        label.cell(trials),
        started.elapsed().as_secs_f64()
    );
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials = arg(&args, "--trials", 200usize);
    let min_rows = arg(&args, "--min-rows", 200usize);
    let settings = DriftSettings {
        alpha: arg(&args, "--alpha", DriftSettings::default().alpha),
        ..Default::default()
    };
    let only = arg(&args, "--only", String::new());
    println!(
        "{trials} trials, min_rows {min_rows}, alpha {}, checks every {STEP} rows after that\n",
        settings.alpha
    );
    println!("| data set | node train / valid rows | rows to append | false alarms, first check | any check while rows last | shift 0.25 sd: first / any / median rows | shift 0.5 sd | shift 1 sd | label shift | time |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let sets: Vec<Box<dyn Fn() -> Set>> = vec![
        Box::new(|| {
            shipped(
                "breast_cancer",
                DataSpec {
                    label: "diagnosis".into(),
                    task: Task::Classification,
                    drop: vec![],
                },
            )
        }),
        Box::new(|| {
            shipped(
                "house_prices",
                DataSpec {
                    label: "SalePrice".into(),
                    task: Task::Regression,
                    drop: vec!["Id".into()],
                },
            )
        }),
        Box::new(|| generated("generated regression", Task::Regression)),
        Box::new(|| generated("generated classification", Task::Classification)),
    ];
    for make in sets {
        let set = make();
        if only.is_empty() || set.name.contains(&only) {
            run(&set, trials, min_rows, &settings);
        }
    }
}
