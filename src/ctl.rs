//! `ensemble-node ctl ADDR COMMAND...`: a one-shot client that runs one console command on a
//! running node over the cluster protocol and prints the node's JSON answer. `predict-file`
//! is run here instead: the client streams its own file to the node in batches and writes the
//! answers to its own file.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ml::{data::is_missing_token, Predictions, Rows, Value as MlValue};
use crate::net::{self, Greeting, Link, Secret, Tls, TlsFiles};
use crate::protocol::{Request, Response, Role};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`: a DNS name or an IP.
    pub addr: String,
    pub cluster: String,
    pub secret: Secret,
    pub timeout: Duration,
    pub max_frame_bytes: usize,
    /// The client's CA, certificate and key when the node speaks TLS.
    pub tls: Option<TlsFiles>,
}

/// Opens a client link to a node.
pub async fn connect(target: &Target) -> Result<Link> {
    let greeting = Greeting {
        cluster: target.cluster.clone(),
        secret: target.secret.clone(),
        max_frame_bytes: target.max_frame_bytes,
        timeout: target.timeout.min(Duration::from_secs(10)),
        tls: match &target.tls {
            Some(files) => Some(Tls::load(files).map_err(|e| Error::Config {
                file: "TLS files".into(),
                reason: e.to_string(),
            })?),
            None => None,
        },
    };
    let dialed = net::dial(&target.addr, Role::Client, &greeting, None).await?;
    let sink = actix::Actor::start(Discard).recipient();
    Ok(Link::spawn(
        dialed.conn,
        dialed.node.id,
        "client".into(),
        dialed.tag,
        // The node at the other end asks nothing of a client.
        net::Access::Reader,
        sink,
    ))
}

/// Runs `line` on the node at `target` and returns its JSON answer.
pub async fn run_command(target: &Target, line: &str) -> Result<Value> {
    let link = connect(target).await?;
    let response = link
        .request(
            Request::Command {
                line: line.to_string(),
            },
            target.timeout,
        )
        .await;
    link.close("done");
    match response? {
        Response::Output { json } => serde_json::from_str(&json)
            .map_err(|e| Error::Other(format!("node sent invalid JSON: {e}"))),
        Response::Error { reason } => Err(Error::Other(reason)),
        other => Err(Error::Other(format!("unexpected answer {other:?}"))),
    }
}

/// Swallows events of client links (a client serves no requests).
struct Discard;

impl actix::Actor for Discard {
    type Context = actix::Context<Self>;
}

impl actix::Handler<net::FromLink> for Discard {
    type Result = ();
    fn handle(&mut self, msg: net::FromLink, _ctx: &mut actix::Context<Self>) {
        if let net::LinkEvent::Request { id, .. } = msg.event {
            msg.link.respond(
                id,
                Response::Error {
                    reason: "a client serves no requests".into(),
                },
            );
        }
    }
}

/// Rows per request of a streamed `predict-file`.
const FILE_BATCH_ROWS: usize = 8192;
/// Batches in flight at once: memory stays bounded by these, whatever the file's size.
const FILE_BATCHES_IN_FLIGHT: usize = 4;

/// One batch of a streamed file: its rows, and their `Id` cells when the file has that column.
struct FileBatch {
    rows: Rows,
    ids: Option<Vec<String>>,
}

/// Reads up to `n` records of `reader` as rows (the cells as text; missing tokens missing).
fn read_batch(
    reader: &mut csv::Reader<std::fs::File>,
    columns: &[String],
    id_at: Option<usize>,
    n: usize,
) -> Result<Option<FileBatch>> {
    let mut data = Vec::with_capacity(n.min(1024));
    let mut ids = id_at.map(|_| Vec::new());
    let mut record = csv::StringRecord::new();
    while data.len() < n {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| Error::Other(format!("cannot read the CSV: {e}")))?;
        if !more {
            break;
        }
        if let (Some(at), Some(ids)) = (id_at, ids.as_mut()) {
            ids.push(record.get(at).unwrap_or_default().to_string());
        }
        data.push(
            (0..columns.len())
                .map(|i| match record.get(i).map(str::trim) {
                    Some(c) if !is_missing_token(c) => MlValue::Text(c.to_string()),
                    _ => MlValue::Missing,
                })
                .collect(),
        );
    }
    if data.is_empty() {
        return Ok(None);
    }
    Ok(Some(FileBatch {
        rows: Rows {
            columns: columns.to_vec(),
            data,
        },
        ids,
    }))
}

/// `predict-file IN.csv [OUT.csv]` from a client: the client's file is read in batches, each
/// predicted by the cluster through the node at `target`, and the answers written in order to the
/// client's output file (`Id,<label>` lines when the input has an `Id` column). Memory holds a
/// few batches, not the file; the node never sees a path.
pub async fn predict_file(target: &Target, input: &Path, output: Option<&Path>) -> Result<Value> {
    let started = Instant::now();
    let status = run_command(target, "status").await?;
    let label = status["label"].as_str().unwrap_or("prediction").to_string();
    let out_path = match output {
        Some(p) => p.to_path_buf(),
        None => {
            let stem = input
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "predictions".into());
            input.with_file_name(format!("{stem}.predictions.csv"))
        }
    };
    let cannot = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::Other(format!("cannot {what} {}: {e}", path.display()))
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(input)
        .map_err(|e| cannot("read", input, &e))?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| cannot("read", input, &e))?
        .iter()
        .map(|c| c.trim().to_string())
        .collect();
    let id_at = columns.iter().position(|c| c == "Id");
    let file = std::fs::File::create(&out_path).map_err(|e| cannot("write", &out_path, &e))?;
    let mut out = std::io::BufWriter::new(file);
    let write_err = |e: std::io::Error| cannot("write", &out_path, &e);
    if id_at.is_some() {
        writeln!(out, "Id,{label}").map_err(write_err)?;
    }

    let link = connect(target).await?;
    let batches = futures::stream::iter(std::iter::from_fn(|| {
        read_batch(&mut reader, &columns, id_at, FILE_BATCH_ROWS).transpose()
    }));
    let link_ref = &link;
    let mut answers = batches
        .map(|batch| async move {
            let batch = batch?;
            let response = link_ref
                .request(
                    Request::PredictEnsemble {
                        rows: batch.rows.clone(),
                    },
                    target.timeout,
                )
                .await?;
            Ok::<_, Error>((batch, response))
        })
        .buffered(FILE_BATCHES_IN_FLIGHT);
    let (mut rows, mut answered, mut asked) = (0usize, usize::MAX, 0usize);
    while let Some(answer) = answers.next().await {
        let (batch, response) = answer?;
        let (preds, a, k) = match response {
            Response::Ensemble {
                preds,
                answered,
                asked,
            } => (preds, answered as usize, asked as usize),
            Response::Error { reason } => return Err(Error::Other(reason)),
            other => return Err(Error::Other(format!("unexpected answer {other:?}"))),
        };
        if preds.len() != batch.rows.len() {
            return Err(Error::Other(format!(
                "{} predictions for {} rows",
                preds.len(),
                batch.rows.len()
            )));
        }
        for i in 0..preds.len() {
            let value = match &preds {
                Predictions::Regression(v) => v[i].to_string(),
                Predictions::Classification(v) => v[i].clone(),
            };
            match batch.ids.as_ref().and_then(|ids| ids.get(i)) {
                Some(id) => writeln!(out, "{id},{value}"),
                None => writeln!(out, "{value}"),
            }
            .map_err(write_err)?;
        }
        rows += batch.rows.len();
        answered = answered.min(a);
        asked = asked.max(k);
    }
    drop(answers);
    link.close("done");
    out.flush().map_err(write_err)?;
    let secs = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "ok": true,
        "rows": rows,
        "out": out_path.display().to_string(),
        "ms": (secs * 1000.0).round() as u64,
        "rows_per_s": if secs > 0.0 { (rows as f64 / secs).round() } else { 0.0 },
        "answered": if rows == 0 { 0 } else { answered },
        "asked": asked,
        "failed": [],
    }))
}
