//! `ensemble-node ctl ADDR COMMAND...`: a one-shot client that runs one console command on a
//! running node over the cluster protocol and prints the node's JSON answer. `predict-file`
//! is run here instead: the client parses its own file into typed batches by the cluster's
//! schema, streams them to the node and writes the answers to its own file.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ml::csv_stream::{self, CsvBatch};
use crate::ml::Schema;
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
        None,
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

/// The schema the node at the other end of `link` resolves rows by: a client resolves its own
/// rows with it and sends them typed.
pub async fn schema(link: &Link, timeout: Duration) -> Result<Arc<Schema>> {
    match link.request(Request::Schema, timeout).await? {
        Response::Schema { schema, .. } => Ok(schema.shared()),
        Response::NoModel => Err(Error::Other(
            "no node has a model yet: run `train` first".into(),
        )),
        Response::Error { reason } => Err(Error::Other(reason)),
        other => Err(Error::Other(format!("unexpected answer {other:?}"))),
    }
}

/// Rows per request of a streamed `predict-file`.
const FILE_BATCH_ROWS: usize = 8192;
/// Batches in flight at once: memory stays bounded by these, whatever the file's size.
const FILE_BATCHES_IN_FLIGHT: usize = 4;
/// Batches parsed ahead of the requests.
const READ_AHEAD: usize = 2;

/// `predict-file IN.csv [OUT.csv]` from a client: the client's file is read in chunks and parsed
/// straight into typed batches (by the cluster's schema) on a thread of its own, each batch is
/// predicted by the cluster through the node at `target`, and the answers are written in order
/// to the client's output file (`Id,<label>` lines when the input has an `Id` column). Memory
/// holds a few batches, not the file; the node never sees a path.
pub async fn predict_file(target: &Target, input: &Path, output: Option<&Path>) -> Result<Value> {
    let started = Instant::now();
    let status = run_command(target, "status").await?;
    let label = status["label"].as_str().unwrap_or("prediction").to_string();
    let out_path = match output {
        Some(p) => p.to_path_buf(),
        None => crate::cluster::default_output(input),
    };
    let cannot = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::Other(format!("cannot {what} {}: {e}", path.display()))
    };
    std::fs::File::open(input).map_err(|e| cannot("read", input, &e))?;
    let link = connect(target).await?;
    let schema = schema(&link, target.timeout).await?;
    let file = std::fs::File::create(&out_path).map_err(|e| cannot("write", &out_path, &e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let write_err = |e: std::io::Error| cannot("write", &out_path, &e);

    let (tx, rx) = tokio::sync::mpsc::channel::<crate::ml::Result<CsvBatch>>(READ_AHEAD);
    let path = input.to_path_buf();
    std::thread::spawn(move || {
        let read = csv_stream::read_file(&path, schema, false, FILE_BATCH_ROWS, |b| {
            tx.blocking_send(Ok(b)).is_ok()
        });
        if let Err(e) = read {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let batches =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
            .boxed_local();
    let link_ref = &link;
    let mut answers = batches
        .map(|batch| async move {
            let batch = batch.map_err(|e| Error::Other(e.to_string()))?;
            let request = Request::PredictEnsemble {
                rows: batch.rows.clone(),
            };
            let response = link_ref.request(request, target.timeout).await?;
            Ok::<_, Error>((batch, response))
        })
        .buffered(FILE_BATCHES_IN_FLIGHT);
    let (mut rows, mut answered, mut asked, mut first) = (0usize, usize::MAX, 0usize, true);
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
        if std::mem::take(&mut first) && batch.ids.is_some() {
            writeln!(out, "Id,{label}").map_err(write_err)?;
        }
        crate::cluster::write_batch(&mut out, batch.ids.as_ref(), &preds).map_err(write_err)?;
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
