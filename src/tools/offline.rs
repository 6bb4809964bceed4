//! `offline`: the training / cross-validation protocol in one process with exactly the node code.
//! Every shard is split with the seed, one pipeline per shard is trained on its training part,
//! every model is scored on every validation split, and the ensemble (mean / vote) on the union of
//! the validation splits. `--seeds 0-9` repeats it per split seed and reports mean and sd.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use crate::ml::{
    combine_splits, evaluate_split, load_csv, DataSpec, MlError, ModelConfig, ModelMeta, Pipeline,
    Result, Scores, Table, Task,
};

/// `offline [--config FILE] --label L --task regression|classification [--drop COL,...]
/// [--valid-fraction F] [--seed S | --seeds A-B | --seeds S,S,...] SHARD.csv...`
#[derive(Debug, Clone, clap::Args)]
pub struct OfflineArgs {
    /// TOML file whose `[model]` table sets the model (defaults without it)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Label column
    #[arg(long)]
    pub label: String,
    #[arg(long, value_enum)]
    pub task: Task,
    /// Columns to ignore, comma-separated
    #[arg(long, value_delimiter = ',')]
    pub drop: Vec<String>,
    /// Fraction of each shard held out for validation
    #[arg(long, default_value_t = 0.3)]
    pub valid_fraction: f64,
    /// Seed of every node (split and model)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Several seeds, `A-B` (inclusive) or `S,S,...`: the protocol once per seed, then the mean
    /// and standard deviation of the ensemble's score (replaces --seed)
    #[arg(long)]
    pub seeds: Option<Seeds>,
    /// One CSV per node
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

/// A list of split seeds from `A-B` or `S,S,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Seeds(pub Vec<u64>);

/// A `--seeds` value that is neither `A-B` (A ≤ B, at most 1,000 seeds) nor `S,S,...`.
#[derive(Debug, thiserror::Error)]
#[error("--seeds: '{0}' is not A-B (A ≤ B, at most 1000 seeds) or a list S,S,...")]
pub struct SeedsError(String);

impl FromStr for Seeds {
    type Err = SeedsError;

    fn from_str(s: &str) -> std::result::Result<Seeds, SeedsError> {
        let bad = || SeedsError(s.to_string());
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().parse().map_err(|_| bad())?;
            if a > b || b - a >= 1000 {
                return Err(bad());
            }
            return Ok(Seeds((a..=b).collect()));
        }
        let v = s
            .split(',')
            .map(|x| x.trim().parse::<u64>().map_err(|_| bad()))
            .collect::<std::result::Result<Vec<u64>, SeedsError>>()?;
        if v.is_empty() || v.len() > 1000 {
            return Err(bad());
        }
        Ok(Seeds(v))
    }
}

#[derive(Serialize)]
struct NodeReport {
    id: String,
    rows_train: usize,
    rows_valid: usize,
    train_ms: u64,
    /// The learner fitted (what `auto` chose).
    kind: String,
    /// `auto` only: the chosen learner's CV loss.
    cv_score: Option<f64>,
}

fn load_config(args: &OfflineArgs) -> Result<ModelConfig> {
    let cfg = match &args.config {
        Some(path) => {
            let doc = std::fs::read_to_string(path).map_err(|source| MlError::Io {
                path: path.clone(),
                source,
            })?;
            ModelConfig::from_toml_str(&doc)
                .map_err(|e| MlError::Config(format!("{}: {e}", path.display())))?
        }
        None => ModelConfig::default(),
    };
    if !(args.valid_fraction > 0.0 && args.valid_fraction < 1.0) {
        return Err(MlError::Config("valid_fraction must be in (0, 1)".into()));
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Run the protocol (once, or once per `--seeds` seed); returns the JSON report.
pub fn run_offline(args: &OfflineArgs) -> Result<serde_json::Value> {
    let cfg = load_config(args)?;
    let spec = DataSpec {
        label: args.label.clone(),
        task: args.task,
        drop: args.drop.clone(),
    };
    let Some(Seeds(seeds)) = &args.seeds else {
        return run_one(args, &cfg, args.seed, |path| load_csv(path, &spec));
    };
    // Every shard read once, split per seed.
    let tables = args
        .shards
        .iter()
        .map(|p| load_csv(p, &spec))
        .collect::<Result<Vec<Table>>>()?;
    let mut runs = Vec::with_capacity(seeds.len());
    let mut values = Vec::with_capacity(seeds.len());
    let mut metric = String::new();
    for &seed in seeds {
        let mut i = 0;
        let run = run_one(args, &cfg, seed, |_| {
            i += 1;
            Ok(tables[i - 1].clone())
        })?;
        metric = run["metric"].as_str().unwrap_or_default().to_string();
        let value = run["ensemble_primary"].as_f64().unwrap_or(f64::NAN);
        values.push(value);
        runs.push(serde_json::json!({
            "seed": seed,
            "score": value,
            "ensemble": run["ensemble"],
            "kinds": run["nodes"].as_array().map(|n| {
                n.iter().map(|x| x["kind"].clone()).collect::<Vec<_>>()
            }),
        }));
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    // Sample standard deviation (n − 1), 0 for one seed.
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Ok(serde_json::json!({
        "ok": true,
        "task": args.task,
        "label": args.label,
        "model": cfg,
        "metric": metric,
        "seeds": seeds,
        "mean": mean,
        "sd": sd,
        "runs": runs,
    }))
}

/// The protocol with one seed; `load` gives shard `i`'s table (called once per shard, in order).
fn run_one(
    args: &OfflineArgs,
    cfg: &ModelConfig,
    seed: u64,
    mut load: impl FnMut(&PathBuf) -> Result<Table>,
) -> Result<serde_json::Value> {
    let cfg = ModelConfig {
        seed,
        ..cfg.clone()
    };
    let mut models = Vec::new();
    let mut valids = Vec::new();
    let mut nodes = Vec::new();
    for (i, path) in args.shards.iter().enumerate() {
        let (train, valid) = load(path)?.split(args.valid_fraction, seed);
        let id = path
            .file_stem()
            .map_or_else(|| format!("node{i}"), |s| s.to_string_lossy().into_owned());
        let t0 = Instant::now();
        let meta = ModelMeta {
            node: id.clone(),
            version: 1,
            ..Default::default()
        };
        let mut model = Pipeline::fit(&train, &cfg, meta)?;
        let ms = t0.elapsed().as_millis() as u64;
        model.set_train_ms(ms);
        nodes.push(NodeReport {
            id,
            rows_train: train.len(),
            rows_valid: valid.len(),
            train_ms: ms,
            kind: model.meta().kind.clone(),
            cv_score: model.meta().cv_score,
        });
        models.push(model);
        valids.push(valid);
    }
    let refs: Vec<&Pipeline> = models.iter().collect();
    let evals = valids
        .iter()
        .map(|v| evaluate_split(&refs, v, None))
        .collect::<Result<Vec<_>>>()?;
    let ensemble = combine_splits(&evals)?;
    let (metric, primary) = ensemble.primary();
    // matrix[i][j]: model i on validation split j.
    let matrix: Vec<Vec<f64>> = (0..models.len())
        .map(|i| evals.iter().map(|e| e.per_model[i].primary().1).collect())
        .collect();
    let matrix_scores: Vec<Vec<&Scores>> = (0..models.len())
        .map(|i| evals.iter().map(|e| &e.per_model[i]).collect())
        .collect();
    let splits: Vec<&Scores> = evals.iter().map(|e| &e.ensemble).collect();
    let targets: Vec<_> = models.iter().map(|m| m.target()).collect();
    Ok(serde_json::json!({
        "ok": true,
        "task": args.task,
        "label": args.label,
        "model": cfg,
        "target": targets,
        "ensemble": ensemble,
        "ensemble_primary": primary,
        "metric": metric,
        "matrix": matrix,
        "matrix_scores": matrix_scores,
        "splits": splits,
        "nodes": nodes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse() {
        assert_eq!("0-3".parse::<Seeds>().unwrap(), Seeds(vec![0, 1, 2, 3]));
        assert_eq!("7".parse::<Seeds>().unwrap(), Seeds(vec![7]));
        assert_eq!("1, 5,2".parse::<Seeds>().unwrap(), Seeds(vec![1, 5, 2]));
        for bad in ["", "3-1", "a-b", "1,,2", "0-5000"] {
            assert!(bad.parse::<Seeds>().is_err(), "{bad}");
        }
    }
}
