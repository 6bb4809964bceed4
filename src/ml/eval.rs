//! Cross-validation as a node does it, and the `offline` protocol: every shard split with the
//! seed, one pipeline per shard trained on its training part, every model scored on every
//! validation split, the ensemble (mean / vote) scored on the union of the validation splits.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use super::data::{load_csv, DataSpec, Labels, Table, Task};
use super::error::{MlError, Result};
use super::metrics::{aggregate, score, Predictions, Scores};
use super::pipeline::{ModelMeta, Pipeline};

/// What one validation split says about a set of models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitEval {
    /// Scores of each model, in the order given.
    pub per_model: Vec<Scores>,
    /// Score of the aggregated prediction.
    pub ensemble: Scores,
    pub ensemble_pred: Predictions,
    pub truth: Labels,
}

/// Score each model and their aggregate on a validation split.
pub fn evaluate_split(
    models: &[&Pipeline],
    valid: &Table,
    weights: Option<&[f64]>,
) -> Result<SplitEval> {
    if models.is_empty() {
        return Err(MlError::Mismatch("no models to evaluate".into()));
    }
    let rows = valid.rows();
    let mut preds = Vec::with_capacity(models.len());
    let mut per_model = Vec::with_capacity(models.len());
    for m in models {
        if m.task() != valid.task() {
            return Err(MlError::Mismatch(format!(
                "model of node '{}' is for {:?}, the split is {:?}",
                m.meta().node,
                m.task(),
                valid.task()
            )));
        }
        let p = m.predict(&rows)?;
        per_model.push(score(&valid.labels, &p)?);
        preds.push(p);
    }
    let ensemble_pred = aggregate(&preds, weights)?;
    Ok(SplitEval {
        per_model,
        ensemble: score(&valid.labels, &ensemble_pred)?,
        ensemble_pred,
        truth: valid.labels.clone(),
    })
}

/// The ensemble's score on the union of the validation splits.
pub fn combine_splits(evals: &[SplitEval]) -> Result<Scores> {
    let truth = Labels::concat(&evals.iter().map(|e| &e.truth).collect::<Vec<_>>())?;
    let pred = Predictions::concat(&evals.iter().map(|e| &e.ensemble_pred).collect::<Vec<_>>())?;
    score(&truth, &pred)
}

/// `offline [--config FILE] --label L --task regression|classification [--drop COL,...]
/// [--valid-fraction F] [--seed S] SHARD.csv...`
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
    /// One CSV per node
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

#[derive(Serialize)]
struct NodeReport {
    id: String,
    rows_train: usize,
    rows_valid: usize,
    train_ms: u64,
}

/// Run the seed protocol in one process with exactly the node code; returns the JSON report.
pub fn run_offline(args: &OfflineArgs) -> Result<serde_json::Value> {
    let mut cfg = match &args.config {
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
    cfg.seed = args.seed;
    cfg.validate()?;
    let spec = DataSpec {
        label: args.label.clone(),
        task: args.task,
        drop: args.drop.clone(),
    };
    let mut models = Vec::new();
    let mut valids = Vec::new();
    let mut nodes = Vec::new();
    for (i, path) in args.shards.iter().enumerate() {
        let table = load_csv(path, &spec)?;
        let (train, valid) = table.split(args.valid_fraction, args.seed);
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
    let metric = ensemble.primary().0;
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
        "metric": metric,
        "matrix": matrix,
        "matrix_scores": matrix_scores,
        "splits": splits,
        "nodes": nodes,
    }))
}
