//! Cluster-wide flows, run by whichever node received the command: global training with
//! cross-validation, evaluation of the current models, and global prediction (one row or a whole
//! file). Each flow fans a request out to every live member at once (this node included, through
//! the same request path a peer would use), waits for each answer at most its deadline, and
//! reports who failed instead of waiting for them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::actors::LocalModel;
use crate::error::Result;
use crate::ml::{aggregate, combine_splits, load_rows, Predictions, Rows, Scores, SplitEval};
use crate::net::Link;
use crate::protocol::{EncodedBody, ModelBlob, ModelSummary, PredictRef, Request, Response};

/// Rows per request in a batch prediction.
const BATCH_ROWS: usize = 8192;
/// Batches in flight at once in a batch prediction.
const BATCHES_IN_FLIGHT: usize = 4;

/// How to reach one member.
#[derive(Clone)]
pub enum Target {
    /// This node.
    Local(LocalModel),
    Remote(Link),
}

/// A member taking part in a flow.
#[derive(Clone)]
pub struct Member {
    pub id: String,
    pub target: Target,
    /// Deadline of a quick request (a prediction); shorter for a suspect peer.
    pub deadline: Duration,
}

impl Member {
    async fn call(&self, request: Request, deadline: Duration) -> Result<Response> {
        match &self.target {
            Target::Local(local) => Ok(local.serve(request).await),
            Target::Remote(link) => link.request(request, deadline).await,
        }
    }
}

/// Who takes part in a flow: the live members, and the known ones that are not reachable.
#[derive(Clone)]
pub struct Plan {
    pub members: Vec<Member>,
    pub unreachable: Vec<String>,
    /// Deadline of one node's training or evaluation.
    pub long_deadline: Duration,
    /// Weight each node by its validation score instead of a plain mean / vote.
    pub weighted: bool,
}

fn failure(id: &str, error: impl std::fmt::Display) -> Value {
    json!({"id": id, "error": error.to_string()})
}

fn unexpected(response: &Response) -> String {
    match response {
        Response::Error { reason } => reason.clone(),
        Response::NoModel => "no model yet".into(),
        other => format!("unexpected answer {}", variant(other)),
    }
}

fn variant(response: &Response) -> &'static str {
    match response {
        Response::Pong => "pong",
        Response::Output { .. } => "output",
        Response::Error { .. } => "error",
        Response::Trained { .. } => "trained",
        Response::Model { .. } => "model",
        Response::Evaluated { .. } => "evaluated",
        Response::Predictions { .. } => "predictions",
        Response::NoModel => "no-model",
        Response::Ensemble { .. } => "ensemble",
    }
}

/// A named score as a number, if present (`None` for an undefined RMSLE).
fn metric(scores: &Scores, name: &str) -> Option<f64> {
    serde_json::to_value(scores)
        .ok()
        .and_then(|v| v.get(name).and_then(Value::as_f64))
}

/// Global training (`retrain`) or evaluation of the current models (`!retrain`): gather one
/// model per node, have every node score every model on its validation split, and report the
/// score matrix and the ensemble's scores.
pub async fn cross_validate(plan: Plan, retrain: bool) -> Value {
    let started = Instant::now();
    let mut failed: Vec<Value> = plan
        .unreachable
        .iter()
        .map(|id| failure(id, "down"))
        .collect();

    // 1. Every node trains at once (or sends its current model).
    let request = if retrain {
        Request::Train
    } else {
        Request::GetModel
    };
    let answers = join_all(
        plan.members
            .iter()
            .map(|m| m.call(request.clone(), plan.long_deadline)),
    )
    .await;
    let mut holders: Vec<(&Member, ModelSummary, ModelBlob)> = Vec::new();
    for (member, answer) in plan.members.iter().zip(answers) {
        match answer {
            Ok(Response::Trained { summary, model }) | Ok(Response::Model { summary, model }) => {
                let blob = ModelBlob {
                    node: member.id.clone(),
                    bytes: model,
                };
                holders.push((member, summary, blob));
            }
            Ok(other) => failed.push(failure(&member.id, unexpected(&other))),
            Err(e) => failed.push(failure(&member.id, e)),
        }
    }
    if holders.is_empty() {
        return json!({"ok": false, "error": "no node has a model", "failed": failed});
    }

    // 2. Every node holding a model scores all the models on its own validation split.
    let blobs: Vec<ModelBlob> = holders.iter().map(|(_, _, b)| b.clone()).collect();
    let request = Request::Evaluate { models: blobs };
    let answers = join_all(
        holders
            .iter()
            .map(|(m, _, _)| m.call(request.clone(), plan.long_deadline)),
    )
    .await;
    let mut splits: Vec<(String, SplitEval)> = Vec::new();
    for ((member, _, _), answer) in holders.iter().zip(answers) {
        match answer {
            Ok(Response::Evaluated { eval }) => splits.push((member.id.clone(), eval)),
            Ok(other) => failed.push(failure(&member.id, unexpected(&other))),
            Err(e) => failed.push(failure(&member.id, e)),
        }
    }
    if splits.is_empty() {
        return json!({"ok": false, "error": "no node could score the models", "failed": failed});
    }
    report(&holders, &splits, failed, started.elapsed(), retrain)
}

fn report(
    holders: &[(&Member, ModelSummary, ModelBlob)],
    splits: &[(String, SplitEval)],
    failed: Vec<Value>,
    took: Duration,
    retrained: bool,
) -> Value {
    let first = &splits[0].1.per_model[0];
    // RMSLE when it is defined everywhere, else RMSE; accuracy for classification.
    let (mut name, _) = first.primary();
    let all_scores = splits.iter().flat_map(|(_, e)| e.per_model.iter());
    if all_scores.clone().any(|s| metric(s, name).is_none()) {
        name = "rmse";
    }
    let matrix: Vec<Vec<Option<f64>>> = (0..holders.len())
        .map(|i| {
            splits
                .iter()
                .map(|(_, e)| e.per_model.get(i).and_then(|s| metric(s, name)))
                .collect()
        })
        .collect();
    let model_mean: Vec<Option<f64>> = matrix
        .iter()
        .map(|row| {
            let vals: Vec<f64> = row.iter().flatten().copied().collect();
            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
        })
        .collect();
    let evals: Vec<SplitEval> = splits.iter().map(|(_, e)| e.clone()).collect();
    let ensemble = match combine_splits(&evals) {
        Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
        Err(e) => json!({"error": e.to_string()}),
    };
    let nodes: Vec<Value> = holders
        .iter()
        .map(|(m, s, _)| {
            json!({
                "id": m.id,
                "version": s.version,
                "rows_train": s.rows_train,
                "rows_valid": s.rows_valid,
                "train_ms": s.train_ms,
            })
        })
        .collect();
    let by_split: serde_json::Map<String, Value> = splits
        .iter()
        .map(|(id, e)| {
            (
                id.clone(),
                serde_json::to_value(&e.ensemble).unwrap_or(Value::Null),
            )
        })
        .collect();
    json!({
        "ok": true,
        "retrained": retrained,
        "metric": name,
        "models": holders.iter().map(|(m, _, _)| m.id.clone()).collect::<Vec<_>>(),
        "splits": splits.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        "matrix": matrix,
        "model_mean": model_mean,
        "ensemble_by_split": by_split,
        "ensemble": ensemble,
        "nodes": nodes,
        "failed": failed,
        "ms": took.as_millis() as u64,
    })
}

/// The members' predictions for `rows`, gathered.
struct Gathered {
    preds: Vec<Predictions>,
    weights: Vec<f64>,
    /// (node, version, its predictions) of each member that answered.
    per_node: Vec<(String, u64, Predictions)>,
    asked: usize,
    failed: Vec<Value>,
}

async fn gather(members: &[Member], rows: &Rows, deadline_scale: u32) -> Gathered {
    // Encoded once for all the remote members; this node predicts from the rows themselves.
    let encoded = EncodedBody::new(&PredictRef::Predict { rows });
    let answers = join_all(members.iter().map(|m| {
        let deadline = m.deadline * deadline_scale;
        let encoded = &encoded;
        async move {
            match (&m.target, encoded) {
                (Target::Local(local), _) => Ok(local.predict(rows.clone()).await),
                (Target::Remote(link), Ok(body)) => link.request_encoded(body, deadline).await,
                (Target::Remote(_), Err(e)) => Err(crate::Error::Other(e.to_string())),
            }
        }
    }))
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
            }) if preds.len() == rows.len() => {
                g.preds.push(preds.clone());
                g.weights.push(weight);
                g.per_node.push((node, version, preds));
            }
            Ok(Response::NoModel) => g.asked -= 1,
            Ok(Response::Predictions { preds, .. }) => g.failed.push(failure(
                &member.id,
                format!("{} predictions for {} rows", preds.len(), rows.len()),
            )),
            Ok(other) => g.failed.push(failure(&member.id, unexpected(&other))),
            Err(e) => g.failed.push(failure(&member.id, e)),
        }
    }
    g
}

fn combine(g: &Gathered, weighted: bool) -> std::result::Result<Predictions, String> {
    if g.preds.is_empty() {
        return Err(if g.asked == 0 {
            "no node has a model yet: run `train` first".into()
        } else {
            format!("none of the {} nodes with a model answered", g.asked)
        });
    }
    let weights = weighted.then_some(g.weights.as_slice());
    aggregate(&g.preds, weights).map_err(|e| e.to_string())
}

fn cell(preds: &Predictions, i: usize) -> Value {
    match preds {
        Predictions::Regression(v) => json!(v[i]),
        Predictions::Classification(v) => json!(v[i]),
    }
}

/// Global prediction of `rows`, as a protocol answer (for clients such as `bench`).
pub async fn ensemble(plan: Plan, rows: Rows) -> Response {
    let g = gather(&plan.members, &rows, 1).await;
    match combine(&g, plan.weighted) {
        Ok(preds) => Response::Ensemble {
            preds,
            answered: g.preds.len() as u32,
            asked: g.asked as u32,
        },
        Err(reason) => Response::Error { reason },
    }
}

/// Global prediction of one row.
pub async fn predict(plan: Plan, rows: Rows, explain: bool) -> Value {
    let g = gather(&plan.members, &rows, 1).await;
    let ensemble = match combine(&g, plan.weighted) {
        Ok(p) => p,
        Err(e) => {
            return json!({"ok": false, "error": e, "answered": 0, "asked": g.asked, "failed": g.failed})
        }
    };
    let mut out = json!({
        "ok": true,
        "prediction": cell(&ensemble, 0),
        "answered": g.preds.len(),
        "asked": g.asked,
        "failed": g.failed,
    });
    if explain {
        out["nodes"] = g
            .per_node
            .iter()
            .map(|(node, version, p)| json!({"id": node, "version": version, "prediction": cell(p, 0)}))
            .collect();
    }
    out
}

/// Global prediction of every row of a CSV file, in batches; writes `Id,<label>` lines when the
/// input has an `Id` column, else one prediction per line.
pub async fn predict_file(
    plan: Plan,
    input: PathBuf,
    output: Option<PathBuf>,
    label: String,
) -> Value {
    let started = Instant::now();
    let path = input.clone();
    let rows = match actix_rt::task::spawn_blocking(move || load_rows(&path)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return json!({"ok": false, "error": e.to_string()}),
        Err(e) => return json!({"ok": false, "error": e.to_string()}),
    };
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
    let batches: Vec<Rows> = rows
        .data
        .chunks(BATCH_ROWS)
        .map(|chunk| Rows {
            columns: rows.columns.clone(),
            data: chunk.to_vec(),
        })
        .collect();
    // Batches are bigger than one row: give each the long deadline's share.
    let scale = 10;
    let members = &plan.members;
    let results: Vec<Gathered> = futures::stream::iter(batches.iter())
        .map(|batch| gather(members, batch, scale))
        .buffered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let mut parts = Vec::with_capacity(results.len());
    let mut answered_min = usize::MAX;
    let mut asked = 0;
    let mut failed = Vec::new();
    for g in &results {
        match combine(g, plan.weighted) {
            Ok(p) => parts.push(p),
            Err(e) => return json!({"ok": false, "error": e, "failed": g.failed}),
        }
        answered_min = answered_min.min(g.preds.len());
        asked = asked.max(g.asked);
        failed.extend(g.failed.iter().cloned());
    }
    let out_path = output.unwrap_or_else(|| default_output(&input));
    let write_path = out_path.clone();
    let written =
        actix_rt::task::spawn_blocking(move || write_predictions(&write_path, &label, ids, &parts))
            .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return json!({"ok": false, "error": e}),
        Err(e) => return json!({"ok": false, "error": e.to_string()}),
    }
    let secs = started.elapsed().as_secs_f64();
    json!({
        "ok": true,
        "rows": n,
        "out": out_path.display().to_string(),
        "ms": (secs * 1000.0).round() as u64,
        "rows_per_s": if secs > 0.0 { (n as f64 / secs).round() } else { 0.0 },
        "answered": if results.is_empty() { 0 } else { answered_min },
        "asked": asked,
        "failed": failed,
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
) -> std::result::Result<(), String> {
    use std::io::Write;
    let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let mut i = 0;
    if ids.is_some() {
        writeln!(w, "Id,{label}").map_err(io)?;
    }
    for part in parts {
        for j in 0..part.len() {
            let value = match part {
                Predictions::Regression(v) => format!("{}", v[j]),
                Predictions::Classification(v) => v[j].clone(),
            };
            match &ids {
                Some(ids) => writeln!(w, "{},{value}", ids[i]).map_err(io)?,
                None => writeln!(w, "{value}").map_err(io)?,
            }
            i += 1;
        }
    }
    w.flush().map_err(io)
}
