//! `POST /v1/predict-file`: a CSV body streamed in, the CSV answer streamed out.
//!
//! The body is parsed as it arrives ([`Records`], csv-core: a quoted field may span two pieces of
//! the body), cut into batches of [`BATCH_ROWS`] rows, and each batch goes through the cluster as
//! one `PredictRows` command, the fan-out `ctl predict-file` uses. Up to [`IN_FLIGHT`] batches
//! are predicted at once and their answers are written in order as a chunked response, so the
//! node holds a few batches, whatever the size of the body.
//!
//! The first batch is predicted before the response starts: a bad header, a bad first batch or a
//! cluster that cannot answer is a 4xx/503 with `{"error": ...}`. A problem found later (a bad
//! row 50,000 rows in) can no longer change the status: the answer then ends with one line
//! `error: ...` naming it, and the response is cut off without its final chunk, so that no client
//! mistakes the partial answer for a whole one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix_web::web::{Bytes, Payload};
use actix_web::{HttpRequest, HttpResponse};
use futures::stream::{self, Stream, StreamExt};

use super::auth::Role;
use super::error::ApiError;
use super::Shared;
use crate::answer::{Answer, Predicted};
use crate::command::Command;
use crate::ml::data::is_missing_token;
use crate::ml::{Rows, Value};

/// Rows per cluster request. Smaller than `ctl predict-file`'s batches: the node holds these, a
/// few at a time, as text cells (bench/results.md has the node's peak memory).
pub const BATCH_ROWS: usize = 2048;
/// Batches predicted at once: with the one being read, what bounds the node's memory.
pub const IN_FLIGHT: usize = 3;
/// How long a failed answer waits after its `error:` line before the response is cut off, so
/// that the line is written out first.
const ABORT_PAUSE: Duration = Duration::from_millis(100);

/// Whole CSV records from a body that arrives in pieces.
pub struct Records {
    parser: csv_core::Reader,
    /// The fields of the record being read, end to end; `ends` marks where each field ends.
    out: Vec<u8>,
    ends: Vec<usize>,
    nout: usize,
    nend: usize,
    /// Records completed so far, the header included.
    count: u64,
}

/// One record: its fields, and its number in the body (the header is record 1).
#[derive(Debug, PartialEq)]
pub struct Record {
    pub number: u64,
    pub fields: Vec<String>,
}

impl Default for Records {
    fn default() -> Self {
        Records {
            parser: csv_core::Reader::new(),
            out: vec![0; 4096],
            ends: vec![0; 128],
            nout: 0,
            nend: 0,
            count: 0,
        }
    }
}

impl Records {
    /// Parses `input`, a piece of the body (`&[]` once the body has ended), appending the
    /// records it completes to `done`.
    pub fn feed(&mut self, mut input: &[u8], done: &mut Vec<Record>) -> Result<(), ApiError> {
        let at_end = input.is_empty();
        loop {
            // The parser reads an empty input as the end of the body: only say so at the end.
            if input.is_empty() && !at_end {
                return Ok(());
            }
            let (result, nin, nout, nend) = self.parser.read_record(
                input,
                &mut self.out[self.nout..],
                &mut self.ends[self.nend..],
            );
            input = &input[nin..];
            self.nout += nout;
            self.nend += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => return Ok(()),
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    self.count += 1;
                    done.push(self.take()?);
                }
                csv_core::ReadRecordResult::End => return Ok(()),
            }
        }
    }

    fn take(&mut self) -> Result<Record, ApiError> {
        let number = self.count;
        let mut fields = Vec::with_capacity(self.nend);
        let mut start = 0;
        for &end in &self.ends[..self.nend] {
            let text = std::str::from_utf8(&self.out[start..end]).map_err(|e| {
                ApiError::bad_request(format!("record {number} of the CSV is not UTF-8: {e}"))
            })?;
            fields.push(text.to_string());
            start = end;
        }
        self.nout = 0;
        self.nend = 0;
        Ok(Record { number, fields })
    }
}

/// A batch of rows, with their `Id` cells when the CSV has that column.
struct Batch {
    rows: Rows,
    ids: Option<Vec<String>>,
}

/// The body as batches of rows.
struct Batches {
    body: Payload,
    records: Records,
    parsed: VecDeque<Record>,
    columns: Vec<String>,
    id_at: Option<usize>,
    ended: bool,
    /// Data rows handed out so far.
    rows: u64,
}

impl Batches {
    /// Reads the header; 400 when there is none.
    async fn start(body: Payload) -> Result<Batches, ApiError> {
        let mut b = Batches {
            body,
            records: Records::default(),
            parsed: VecDeque::new(),
            columns: Vec::new(),
            id_at: None,
            ended: false,
            rows: 0,
        };
        b.fill(1).await?;
        let header = b
            .parsed
            .pop_front()
            .ok_or_else(|| ApiError::bad_request("the body is empty: send a CSV with a header"))?;
        b.columns = header.fields.iter().map(|c| c.trim().to_string()).collect();
        if b.columns.iter().all(String::is_empty) {
            return Err(ApiError::bad_request("the CSV has no header line"));
        }
        b.id_at = b.columns.iter().position(|c| c == "Id");
        Ok(b)
    }

    /// Reads the body until `n` records are parsed or it ends.
    async fn fill(&mut self, n: usize) -> Result<(), ApiError> {
        let mut done = Vec::new();
        while self.parsed.len() < n && !self.ended {
            match self.body.next().await {
                Some(Ok(piece)) if piece.is_empty() => continue,
                Some(Ok(piece)) => self.records.feed(&piece, &mut done)?,
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "the body could not be read: {e}"
                    )))
                }
                None => {
                    self.ended = true;
                    self.records.feed(&[], &mut done)?;
                }
            }
            self.parsed.extend(done.drain(..));
        }
        Ok(())
    }

    /// The next batch of at most [`BATCH_ROWS`] rows; `None` at the end of the body.
    async fn next_batch(&mut self) -> Result<Option<Batch>, ApiError> {
        self.fill(BATCH_ROWS).await?;
        let take = self.parsed.len().min(BATCH_ROWS);
        if take == 0 {
            if self.rows == 0 {
                return Err(ApiError::bad_request("the CSV has a header but no rows"));
            }
            return Ok(None);
        }
        let mut data = Vec::with_capacity(take);
        let mut ids = self.id_at.map(|_| Vec::with_capacity(take));
        for record in self.parsed.drain(..take) {
            if record.fields.len() != self.columns.len() {
                return Err(ApiError::bad_request(format!(
                    "record {} of the CSV has {} fields, the header has {}",
                    record.number,
                    record.fields.len(),
                    self.columns.len()
                )));
            }
            if let (Some(at), Some(ids)) = (self.id_at, ids.as_mut()) {
                ids.push(record.fields[at].trim().to_string());
            }
            data.push(
                record
                    .fields
                    .into_iter()
                    .map(|cell| {
                        let cell = cell.trim();
                        if is_missing_token(cell) {
                            Value::Missing
                        } else {
                            Value::Text(cell.to_string())
                        }
                    })
                    .collect(),
            );
        }
        self.rows += take as u64;
        Ok(Some(Batch {
            rows: Rows {
                columns: self.columns.clone(),
                data,
            },
            ids,
        }))
    }
}

/// One batch's answer as CSV lines.
struct Answered {
    text: Bytes,
    rows: usize,
    answered: usize,
    asked: usize,
}

/// Predicts one batch through the cluster.
async fn predict(state: Shared, batch: Batch) -> Result<Answered, ApiError> {
    let n = batch.rows.data.len();
    let command = Command::PredictRows {
        rows: batch.rows,
        local: false,
    };
    let p = match state.exec("predict-file", command).await {
        Answer::PredictRows(p) => p,
        Answer::Failure(f) => return Err(ApiError::unavailable(f.error)),
        _ => {
            return Err(ApiError::unavailable(
                "the node answered with something else",
            ))
        }
    };
    if p.predictions.len() != n {
        return Err(ApiError::unavailable(format!(
            "{} predictions for {n} rows",
            p.predictions.len()
        )));
    }
    let mut text = String::with_capacity(n * 24);
    for (i, value) in p.predictions.iter().enumerate() {
        if let Some(id) = batch.ids.as_ref().and_then(|ids| ids.get(i)) {
            text.push_str(&csv_cell(id));
            text.push(',');
        }
        match value {
            Predicted::Number(x) => text.push_str(&x.to_string()),
            Predicted::Label(s) => text.push_str(&csv_cell(s)),
        }
        text.push('\n');
    }
    Ok(Answered {
        text: Bytes::from(text),
        rows: n,
        answered: p.answered,
        asked: p.asked,
    })
}

/// A cell as CSV writes it: quoted when it holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What the streamed answer has still to do.
enum Tail {
    Open,
    /// The `error:` line is out; the response is cut off next.
    Failing(ApiError),
    Done,
}

/// The handler: `Id,<label>` lines when the CSV has an `Id` column, else one prediction per
/// line. `X-Answered` / `X-Asked` say how many nodes answered the first batch.
pub async fn predict_file(
    state: Shared,
    req: HttpRequest,
    body: Payload,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let started = Instant::now();
    let label = state.model().await?.label;
    let batches = Batches::start(body).await?;
    let header = batches
        .id_at
        .map(|_| Bytes::from(format!("Id,{}\n", csv_cell(&label))));
    let reads = stream::unfold(Some(batches), |batches| async move {
        let mut batches = batches?;
        match batches.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), Some(batches))),
            Ok(None) => None,
            // Nothing is read after a bad record.
            Err(e) => Some((Err(e), None)),
        }
    });
    let predicting = state.clone();
    let mut answers = Box::pin(
        reads
            .map(move |batch| {
                let state = predicting.clone();
                async move { predict(state, batch?).await }
            })
            .buffered(IN_FLIGHT),
    );
    let first = match answers.next().await {
        Some(answer) => answer?,
        None => return Err(ApiError::bad_request("the CSV has a header but no rows")),
    };
    let (answered, asked) = (first.answered, first.asked);
    let metrics = state.clone();
    let tally = (first.rows, first.answered, first.asked);
    let lead = header.into_iter().chain([first.text]).map(Ok);
    let rest = stream::unfold(
        (answers, Tail::Open, tally),
        move |(mut answers, tail, (rows, answered, asked))| {
            let metrics = metrics.clone();
            async move {
                match tail {
                    Tail::Done => None,
                    Tail::Failing(e) => {
                        actix_rt::time::sleep(ABORT_PAUSE).await;
                        Some((Err(e), (answers, Tail::Done, (rows, answered, asked))))
                    }
                    Tail::Open => match answers.next().await {
                        Some(Ok(a)) => {
                            let tally =
                                (rows + a.rows, answered.min(a.answered), asked.max(a.asked));
                            Some((Ok(a.text), (answers, Tail::Open, tally)))
                        }
                        Some(Err(e)) => {
                            tracing::warn!("predict-file stopped after {rows} rows: {e}");
                            let line = Bytes::from(format!("error: {}\n", e.message));
                            Some((
                                Ok(line),
                                (answers, Tail::Failing(e), (rows, answered, asked)),
                            ))
                        }
                        None => {
                            metrics
                                .metrics
                                .predicted(rows, answered, asked, started.elapsed());
                            None
                        }
                    },
                }
            }
        },
    );
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>>>> =
        Box::pin(stream::iter(lead).chain(rest));
    Ok(HttpResponse::Ok()
        .content_type("text/csv")
        .insert_header(("X-Answered", answered.to_string()))
        .insert_header(("X-Asked", asked.to_string()))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pieces: &[&[u8]]) -> Result<Vec<Vec<String>>, ApiError> {
        let mut records = Records::default();
        let mut done = Vec::new();
        for piece in pieces {
            records.feed(piece, &mut done)?;
        }
        records.feed(&[], &mut done)?;
        for (i, r) in done.iter().enumerate() {
            assert_eq!(r.number, i as u64 + 1);
        }
        Ok(done.into_iter().map(|r| r.fields).collect())
    }

    #[test]
    fn records_span_the_pieces_of_a_body() {
        let whole: &[u8] = b"Id,Name,Note\n1,a,\"x, \"\"y\"\"\nz\"\n2,b,\n3,c,last";
        let want = vec![
            vec!["Id", "Name", "Note"],
            vec!["1", "a", "x, \"y\"\nz"],
            vec!["2", "b", ""],
            vec!["3", "c", "last"],
        ];
        assert_eq!(parse(&[whole]).expect("whole"), want);
        // Cut everywhere, even inside a quoted field and between \r and \n.
        for cut in 1..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(parse(&[a, b]).expect("two pieces"), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(parse(&bytes).expect("byte by byte"), want);
        assert_eq!(
            parse(&[b"a,b\r\n1,2\r\n"]).expect("CRLF"),
            vec![vec!["a", "b"], vec!["1", "2"]]
        );
    }

    #[test]
    fn long_fields_and_many_fields_grow_the_buffers() {
        let long = "x".repeat(10_000);
        let many = (0..300)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let body = format!("a\n{long}\n{many}\n");
        let got = parse(&[body.as_bytes()]).expect("parse");
        assert_eq!(got[1], vec![long]);
        assert_eq!(got[2].len(), 300);
    }

    #[test]
    fn a_record_that_is_not_utf8_is_named() {
        let e = parse(&[b"a,b\n1,2\n3,\xff\n"]).expect_err("not UTF-8");
        assert!(e.message.contains("record 3"), "{e}");
    }

    #[test]
    fn cells_are_quoted_when_they_must_be() {
        assert_eq!(csv_cell("1461"), "1461");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
