//! Global prediction: the rows go to every live member at once (this node included), each
//! predicts with its own model, and the coordinator aggregates (mean for regression, majority vote
//! for classification, or weighted by each node's validation score). A member that fails or
//! misses its deadline is reported, never waited for beyond it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::future::join_all;
use futures::StreamExt;

use super::member::{Asked, Batch, Plan};
use super::train::unexpected;
use crate::answer::{Answer, Failed, Failure, FileReport, NodePrediction, Predicted, Prediction};
use crate::ml::{aggregate, load_rows, MlError, Predictions, Rows};
use crate::protocol::Response;

/// Rows per request in a batch prediction.
const BATCH_ROWS: usize = 8192;
/// Batches in flight at once in a batch prediction.
const BATCHES_IN_FLIGHT: usize = 4;
/// A batch gets this many times a one-row deadline.
const BATCH_DEADLINE_SCALE: u32 = 10;
/// Requests of up to this many rows get the one-row deadline.
const ONE_ROW_DEADLINE_ROWS: usize = 64;

/// Why a cluster-wide prediction has no answer.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no node has a model yet: run `train` first")]
    NoModel,
    #[error("none of the {0} nodes with a model answered")]
    NoneAnswered(usize),
    #[error("cannot aggregate the predictions: {0}")]
    Aggregate(#[from] MlError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: MlError },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} failed: {1}")]
    Task(&'static str, String),
}

/// The members' predictions for one batch.
struct Gathered {
    preds: Vec<Predictions>,
    weights: Vec<f64>,
    /// (node, version, weight, its predictions) of each member that answered.
    per_node: Vec<(String, u64, f64, Predictions)>,
    /// Members with a model that were asked.
    asked: usize,
    failed: Vec<Failed>,
}

impl Gathered {
    fn combine(&self, weighted: bool) -> Result<Predictions, FlowError> {
        if self.preds.is_empty() {
            return Err(if self.asked == 0 {
                FlowError::NoModel
            } else {
                FlowError::NoneAnswered(self.asked)
            });
        }
        let weights = weighted.then_some(self.weights.as_slice());
        Ok(aggregate(&self.preds, weights)?)
    }
}

async fn gather(members: &[Asked], batch: &Batch, deadline_scale: u32) -> Gathered {
    let answers = join_all(
        members
            .iter()
            .map(|m| m.member.predict(batch, m.deadline * deadline_scale)),
    )
    .await;
    let mut g = Gathered {
        preds: Vec::new(),
        weights: Vec::new(),
        per_node: Vec::new(),
        asked: members.len(),
        failed: Vec::new(),
    };
    for (member, answer) in members.iter().zip(answers) {
        match answer {
            Ok(Response::Predictions {
                node,
                version,
                weight,
                preds,
            }) if preds.len() == batch.len() => {
                g.preds.push(preds.clone());
                g.weights.push(weight);
                g.per_node.push((node, version, weight, preds));
            }
            Ok(Response::NoModel) => g.asked -= 1,
            Ok(Response::Predictions { preds, .. }) => g.failed.push(Failed::new(
                &member.id,
                format!("{} predictions for {} rows", preds.len(), batch.len()),
            )),
            Ok(other) => g.failed.push(Failed::new(&member.id, unexpected(&other))),
            Err(e) => g.failed.push(Failed::new(&member.id, e)),
        }
    }
    g
}

/// Global prediction of `rows`, as a protocol answer (for clients: `bench`, a streamed
/// `predict-file`). A batch gets the longer deadline of a batch.
pub async fn ensemble(plan: Plan, rows: Rows) -> Response {
    let scale = if rows.len() > ONE_ROW_DEADLINE_ROWS {
        BATCH_DEADLINE_SCALE
    } else {
        1
    };
    let g = gather(&plan.members, &Batch::new(rows), scale).await;
    match g.combine(plan.weighted) {
        Ok(preds) => Response::Ensemble {
            preds,
            answered: g.preds.len() as u32,
            asked: g.asked as u32,
        },
        Err(e) => Response::Error {
            reason: e.to_string(),
        },
    }
}

/// Global prediction of one row.
pub async fn predict(plan: Plan, rows: Rows, explain: bool) -> Answer {
    let g = gather(&plan.members, &Batch::new(rows), 1).await;
    let prediction = g
        .combine(plan.weighted)
        .and_then(|p| Predicted::at(&p, 0).ok_or(FlowError::NoneAnswered(g.asked)));
    let prediction = match prediction {
        Ok(p) => p,
        Err(e) => {
            return Answer::Failure(Failure {
                answered: Some(0),
                asked: Some(g.asked),
                failed: g.failed,
                ..Failure::new(e.to_string())
            })
        }
    };
    let nodes = explain.then(|| {
        g.per_node
            .iter()
            .filter_map(|(node, version, weight, p)| {
                Some(NodePrediction {
                    id: node.clone(),
                    version: *version,
                    prediction: Predicted::at(p, 0)?,
                    weight: *weight,
                })
            })
            .collect()
    });
    Answer::Predict(Prediction {
        prediction,
        answered: g.preds.len(),
        asked: g.asked,
        failed: g.failed,
        nodes,
    })
}

/// Global prediction of every row of a CSV file, in batches; writes `Id,<label>` lines when the
/// input has an `Id` column, else one prediction per line.
pub async fn predict_file(
    plan: Plan,
    input: PathBuf,
    output: Option<PathBuf>,
    label: String,
) -> Answer {
    match run_file(plan, input, output, label).await {
        Ok(report) => Answer::PredictFile(report),
        Err(e) => Answer::error(e.to_string()),
    }
}

async fn run_file(
    plan: Plan,
    input: PathBuf,
    output: Option<PathBuf>,
    label: String,
) -> Result<FileReport, FlowError> {
    let started = Instant::now();
    let path = input.clone();
    let rows = actix_rt::task::spawn_blocking(move || load_rows(&path))
        .await
        .map_err(|e| FlowError::Task("reading the file", e.to_string()))?
        .map_err(|source| FlowError::Read {
            path: input.clone(),
            source,
        })?;
    let n = rows.len();
    let ids: Option<Vec<String>> = rows.columns.iter().position(|c| c == "Id").map(|at| {
        rows.data
            .iter()
            .map(|r| match &r[at] {
                crate::ml::Value::Num(v) => format!("{v}"),
                crate::ml::Value::Text(s) => s.clone(),
                crate::ml::Value::Missing => String::new(),
            })
            .collect()
    });
    let batches: Vec<Batch> = rows
        .data
        .chunks(BATCH_ROWS)
        .map(|chunk| {
            Batch::new(Rows {
                columns: rows.columns.clone(),
                data: chunk.to_vec(),
            })
        })
        .collect();
    let members = &plan.members;
    let results: Vec<Gathered> = futures::stream::iter(batches.iter())
        .map(|batch| gather(members, batch, BATCH_DEADLINE_SCALE))
        .buffered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let mut parts = Vec::with_capacity(results.len());
    let mut answered_min = usize::MAX;
    let mut asked = 0;
    let mut failed = Vec::new();
    for g in &results {
        parts.push(g.combine(plan.weighted)?);
        answered_min = answered_min.min(g.preds.len());
        asked = asked.max(g.asked);
        failed.extend(g.failed.iter().cloned());
    }
    let out_path = output.unwrap_or_else(|| default_output(&input));
    let write_path = out_path.clone();
    actix_rt::task::spawn_blocking(move || write_predictions(&write_path, &label, ids, &parts))
        .await
        .map_err(|e| FlowError::Task("writing the predictions", e.to_string()))?
        .map_err(|source| FlowError::Write {
            path: out_path.clone(),
            source,
        })?;
    let secs = started.elapsed().as_secs_f64();
    Ok(FileReport {
        rows: n,
        out: out_path.display().to_string(),
        ms: (secs * 1000.0).round() as u64,
        rows_per_s: if secs > 0.0 {
            (n as f64 / secs).round()
        } else {
            0.0
        },
        answered: if results.is_empty() { 0 } else { answered_min },
        asked,
        failed,
    })
}

fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "predictions".into());
    input.with_file_name(format!("{stem}.predictions.csv"))
}

fn write_predictions(
    path: &Path,
    label: &str,
    ids: Option<Vec<String>>,
    parts: &[Predictions],
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    if ids.is_some() {
        writeln!(w, "Id,{label}")?;
    }
    let mut i = 0;
    for part in parts {
        for j in 0..part.len() {
            let value = match part {
                Predictions::Regression(v) => format!("{}", v[j]),
                Predictions::Classification(v) => v[j].clone(),
            };
            match ids.as_ref().and_then(|ids| ids.get(i)) {
                Some(id) => writeln!(w, "{id},{value}")?,
                None => writeln!(w, "{value}")?,
            }
            i += 1;
        }
    }
    w.flush()
}
