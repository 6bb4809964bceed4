//! `predict-file` at a node's console: the CSV is read in chunks and parsed straight into typed
//! batches on a thread of its own, the batches are predicted by the cluster a few at a time, and
//! the answers are written in order, on another thread, as they return. Memory holds the batches
//! in flight, not the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::member::Plan;
use super::predict::{gather, Dispatch, FlowError, BATCH_DEADLINE_SCALE};
use crate::answer::{Answer, Failed, FileReport};
use crate::ml::csv_stream::{self, CsvBatch};
use crate::ml::{Ids, MlError, Predictions};

/// Rows per request in a file prediction.
pub const FILE_BATCH_ROWS: usize = 8192;
/// Batches predicted at once.
const BATCHES_IN_FLIGHT: usize = 4;
/// Batches read ahead of the predictions, and answered batches waiting to be written.
const QUEUED_BATCHES: usize = 2;

/// Global prediction of every row of a CSV file; writes `Id,<label>` lines when the input has an
/// `Id` column, else one prediction per line.
pub async fn predict_file(
    plan: Plan,
    dispatch: Rc<Dispatch>,
    input: PathBuf,
    output: Option<PathBuf>,
    label: String,
) -> Answer {
    match run(plan, dispatch, input, output, label).await {
        Ok(report) => Answer::PredictFile(report),
        Err(e) => Answer::error(e.to_string()),
    }
}

/// Where the predictions of `input` go when no output is named.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "predictions".into());
    input.with_file_name(format!("{stem}.predictions.csv"))
}

async fn run(
    plan: Plan,
    dispatch: Rc<Dispatch>,
    input: PathBuf,
    output: Option<PathBuf>,
    label: String,
) -> Result<FileReport, FlowError> {
    let started = Instant::now();
    let (schema, complete) = dispatch.schemas.refreshed(&plan.members).await;
    if let Err(source) = std::fs::File::open(&input) {
        return Err(FlowError::Read {
            source: MlError::Io {
                path: input.clone(),
                source,
            },
            path: input,
        });
    }
    let out_path = output.unwrap_or_else(|| default_output(&input));
    let file = std::fs::File::create(&out_path).map_err(|source| FlowError::Write {
        path: out_path.clone(),
        source,
    })?;

    let (batches_tx, batches) = mpsc::channel::<Result<CsvBatch, MlError>>(QUEUED_BATCHES);
    let path = input.clone();
    std::thread::spawn(move || {
        let read = csv_stream::read_file(&path, schema, !complete, FILE_BATCH_ROWS, |b| {
            batches_tx.blocking_send(Ok(b)).is_ok()
        });
        if let Err(e) = read {
            let _ = batches_tx.blocking_send(Err(e));
        }
    });
    let (lines_tx, lines) = mpsc::channel::<(Option<Ids>, Predictions)>(QUEUED_BATCHES);
    let writer = std::thread::spawn(move || write_lines(file, &label, lines));

    let members = &plan.members;
    let dispatch = &dispatch;
    let batches =
        futures::stream::unfold(
            batches,
            |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
        )
        .boxed_local();
    let mut answers = batches
        .map(|batch| async move {
            let batch = batch?;
            let g = gather(dispatch, members, &batch.rows, BATCH_DEADLINE_SCALE).await;
            Ok::<_, MlError>((batch, g))
        })
        .buffered(BATCHES_IN_FLIGHT);
    let (mut rows, mut answered, mut asked, mut batches_n) = (0usize, usize::MAX, 0usize, 0usize);
    let mut failed: Vec<Failed> = Vec::new();
    while let Some(answer) = answers.next().await {
        let (batch, g) = answer.map_err(|source| FlowError::Read {
            path: input.clone(),
            source,
        })?;
        let preds = g.combine(plan.weighted)?;
        rows += batch.rows.len();
        batches_n += 1;
        answered = answered.min(g.preds.len());
        asked = asked.max(g.asked);
        for f in g.failed {
            if !failed.iter().any(|seen| seen.id == f.id) {
                failed.push(f);
            }
        }
        if lines_tx.send((batch.ids, preds)).await.is_err() {
            break;
        }
    }
    drop(answers);
    drop(lines_tx);
    let written = actix_rt::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| FlowError::Task("writing the predictions", e.to_string()))?
        .map_err(|_| FlowError::Task("writing the predictions", "the writer panicked".into()))?;
    written.map_err(|source| FlowError::Write {
        path: out_path.clone(),
        source,
    })?;
    let secs = started.elapsed().as_secs_f64();
    Ok(FileReport {
        rows,
        out: out_path.display().to_string(),
        ms: (secs * 1000.0).round() as u64,
        rows_per_s: if secs > 0.0 {
            (rows as f64 / secs).round()
        } else {
            0.0
        },
        answered: if batches_n == 0 { 0 } else { answered },
        asked,
        failed,
    })
}

/// Writes each answered batch as it comes: `Id,<label>` lines when the batches have ids.
fn write_lines(
    file: std::fs::File,
    label: &str,
    mut lines: mpsc::Receiver<(Option<Ids>, Predictions)>,
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut first = true;
    while let Some((ids, preds)) = lines.blocking_recv() {
        if std::mem::take(&mut first) && ids.is_some() {
            writeln!(w, "Id,{label}")?;
        }
        write_batch(&mut w, ids.as_ref(), &preds)?;
    }
    w.flush()
}

/// One line per prediction: `id,value` with ids, else `value`.
pub fn write_batch(
    w: &mut impl Write,
    ids: Option<&Ids>,
    preds: &Predictions,
) -> std::io::Result<()> {
    for i in 0..preds.len() {
        if let Some(id) = ids.and_then(|ids| ids.get(i)) {
            write!(w, "{id},")?;
        }
        match preds {
            Predictions::Regression(v) => writeln!(w, "{}", v[i])?,
            Predictions::Classification(v) => writeln!(w, "{}", v[i])?,
        }
    }
    Ok(())
}
