//! The [`DataWatcher`] watches the node's shard for new rows and retrains the node's model on
//! its own when they differ significantly from the data the model was trained on.
//!
//! Every `drift.check_interval_ms` it reads what was appended to the shard's files (or added to
//! its folder) since the current model's training — complete lines only, so a half-written line
//! waits for the next poll. Once `drift.min_rows` new rows have arrived, it compares them with the
//! model's reference ([`crate::ml::detect`]); on dataset drift it asks the [`ModelActor`] for a
//! local retrain, at most once per `drift.cooldown_ms` and never while a training runs. The new
//! model, trained on the shard as it now is minus its most recent rows (held out), answers only if
//! it does at least as well as the current one on those rows ([`crate::ml::decide_swap`]); it then
//! becomes the reference. A refused model leaves everything as it was; the next drift retrain
//! waits for `drift.min_rows` more rows.
//!
//! Malformed rows are set aside and counted (`bad_rows`), never holding up the rows after them.
//! At most `drift.max_pending_rows` rows wait for a check (the oldest go first), and one poll
//! reads at most [`READ_BUDGET`] bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::model::{blocking, Cause, Gate, ModelActor, ModelSlot, Train, TrainingSource};
use super::supervision::{guard, injected_fault, Kind, Supervision};
use crate::config::DriftConfig;
use crate::ml::shard::{good_lines, read_new_at_most};
use crate::ml::{detect, parse_csv, DriftReport, Swap, Watermark};

/// Bytes of new lines one poll takes in at most; the rest is read by the next polls.
pub const READ_BUDGET: u64 = 64 << 20;

/// What one poll found, handed back from the blocking pool.
struct Polled {
    mark: Watermark,
    header: Vec<u8>,
    pending: Vec<u8>,
    pending_rows: usize,
    /// Good rows read by this poll.
    read: usize,
    bad: usize,
    bad_reason: Option<String>,
    outcome: Result<Option<DriftReport>, String>,
}

/// Drops the oldest lines of `pending` so that at most `max` rows remain; returns the rows kept.
fn keep_last(pending: &mut Vec<u8>, rows: usize, max: usize) -> usize {
    if rows <= max {
        return rows;
    }
    // Past the (rows − max)-th newline.
    let cut = pending
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(rows - max - 1)
        .map_or(pending.len(), |(i, _)| i + 1);
    pending.drain(..cut);
    max
}

/// Where one-line notices for the person at the console go.
#[derive(Clone, Copy, Debug)]
pub struct Notices {
    /// In `--json` mode stdout carries only command answers: notices go to the log only.
    pub json: bool,
}

impl Notices {
    pub fn say(&self, line: &str) {
        tracing::info!("{line}");
        if !self.json {
            println!("{line}");
        }
    }
}

pub struct DataWatcher {
    source: Arc<TrainingSource>,
    config: DriftConfig,
    slot: ModelSlot,
    model: Addr<ModelActor>,
    notices: Notices,
    supervision: Supervision,
    /// How far the shard has been read, and for which model version that was reset.
    mark: Watermark,
    mark_version: Option<u64>,
    header: Vec<u8>,
    /// Complete, well-formed data lines waiting for a check (the last `max_pending_rows`).
    pending: Vec<u8>,
    pending_rows: usize,
    /// Good rows read since the current model was trained.
    rows_since: usize,
    /// Malformed rows skipped since the watcher started, and why the latest was.
    bad_rows: u64,
    bad_reason: Option<String>,
    /// The latest champion / challenger decision, and the model version it was made against.
    swap: Option<Swap>,
    swap_version: Option<u64>,
    /// After a refused swap: no drift retrain before `rows_since` reaches this.
    retry_at_rows: usize,
    /// The latest check found drift and no retrain has begun since: it is begun as soon as
    /// nothing holds it back (a training under way, the cooldown, rows after a refused swap),
    /// whether or not more rows come.
    unanswered: bool,
    /// Drift retrains begun since the node started.
    retrains: u64,
    report: Option<DriftReport>,
    /// The model version `report` compared against.
    report_version: Option<u64>,
    last_error: Option<String>,
    checked: Option<Instant>,
    /// Polls done so far.
    checks: u64,
    last_retrain: Option<Instant>,
    busy: bool,
}

impl DataWatcher {
    pub fn new(
        source: Arc<TrainingSource>,
        config: DriftConfig,
        slot: ModelSlot,
        model: Addr<ModelActor>,
        notices: Notices,
        supervision: Supervision,
    ) -> Self {
        DataWatcher {
            source,
            config,
            slot,
            model,
            notices,
            supervision,
            mark: Watermark::default(),
            mark_version: None,
            header: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            rows_since: 0,
            bad_rows: 0,
            bad_reason: None,
            swap: None,
            swap_version: None,
            retry_at_rows: 0,
            unanswered: false,
            retrains: 0,
            report: None,
            report_version: None,
            last_error: None,
            checked: None,
            checks: 0,
            last_retrain: None,
            busy: false,
        }
    }

    /// Starts over from what the current model was trained on.
    fn reset(&mut self) {
        let current = self.slot.current();
        self.mark = current
            .as_ref()
            .map(|c| c.watermark.clone())
            .unwrap_or_default();
        self.mark_version = current.map(|c| c.summary.version);
        self.pending.clear();
        self.pending_rows = 0;
        self.rows_since = 0;
        self.retry_at_rows = 0;
        self.unanswered = false;
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(current) = self.slot.current() else {
            return; // nothing to compare with before the first model
        };
        if self.mark_version != Some(current.summary.version) {
            self.reset();
        }
        self.busy = true;
        let source = self.source.clone();
        let mark = self.mark.clone();
        let (min_rows, max_rows) = (self.config.min_rows, self.config.max_pending_rows);
        let stats = self.config.stats();
        let header = self.header.clone();
        let pending = std::mem::take(&mut self.pending);
        let rows = self.pending_rows;
        let work = blocking("drift check", move || {
            Ok(poll(
                &source, current, mark, header, pending, rows, min_rows, max_rows, &stats,
            ))
        });
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            act.checked = Some(Instant::now());
            act.checks += 1;
            let p = match result {
                Ok(p) => p,
                Err(e) => {
                    act.last_error = Some(e);
                    return;
                }
            };
            // A model trained meanwhile has reset what counts as new.
            if act.slot.current().map(|c| c.summary.version) != act.mark_version {
                return;
            }
            act.mark = p.mark;
            act.header = p.header;
            act.pending = p.pending;
            act.pending_rows = p.pending_rows;
            act.rows_since += p.read;
            act.bad_rows += p.bad as u64;
            if p.bad_reason.is_some() {
                act.bad_reason = p.bad_reason;
            }
            match p.outcome {
                Ok(Some(report)) => {
                    act.last_error = None;
                    act.unanswered = report.dataset_drift;
                    act.report = Some(report);
                    act.report_version = act.mark_version;
                }
                Ok(None) => act.last_error = None,
                Err(e) => {
                    tracing::warn!("drift check failed: {e}");
                    act.last_error = Some(e);
                }
            }
            // Also when no row came: drift found while a retrain ran is answered once it ends.
            if act.unanswered {
                act.retrain(ctx);
            }
        }));
    }

    fn retrain(&mut self, ctx: &mut Context<Self>) {
        let cooldown = Duration::from_millis(self.config.cooldown_ms);
        if self.last_retrain.is_some_and(|t| t.elapsed() < cooldown)
            || self.slot.is_training()
            || self.rows_since < self.retry_at_rows
        {
            return;
        }
        let Some(report) = &self.report else { return };
        let why = if report.drifted_features > 0 {
            format!(
                "drift in {}/{} features",
                report.drifted_features, report.total_features
            )
        } else {
            report.reasons.join("; ")
        };
        self.last_retrain = Some(Instant::now());
        self.unanswered = false;
        self.retrains += 1;
        let before = self.mark_version.unwrap_or(0);
        let notices = self.notices;
        // The most recent rows are held out of the new model's training to judge it by.
        let holdout = (self.pending_rows as f64 * self.source.valid_fraction).round() as usize;
        let train = self.model.send(Train {
            reason: format!("local retrain, {why}"),
            cause: Cause::Drift,
            window: self.config.window(),
            queue: false,
            gate: Some(Gate {
                holdout_rows: holdout,
                tolerance: self.config.tolerance,
            }),
        });
        let (rows_then, min_rows) = (self.rows_since, self.config.min_rows);
        ctx.spawn(
            train
                .into_actor(self)
                .map(move |result, act, _ctx| match result {
                    Ok(Ok(t)) => {
                        let accepted = t.swap.as_ref().is_none_or(|s| s.accepted);
                        let why_swap = t.swap.as_ref().map_or(String::new(), |s| s.reason.clone());
                        act.swap = t.swap;
                        act.swap_version = Some(before);
                        if accepted {
                            notices.say(&format!(
                                "model v{before} → v{}: local retrain, {why} ({why_swap})",
                                t.summary.version
                            ));
                        } else {
                            act.retry_at_rows = rows_then + min_rows;
                            notices.say(&format!(
                                "model v{before} kept: the local retrain's model is not better: \
                                 {why_swap}"
                            ));
                        }
                    }
                    Ok(Err(e)) => notices.say(&format!("local retrain on drift failed: {e}")),
                    Err(e) => notices.say(&format!("local retrain on drift failed: {e}")),
                }),
        );
    }

    fn status(&self) -> DriftStatus {
        DriftStatus {
            rows_since_training: self.rows_since,
            pending_rows: self.pending_rows,
            max_pending_rows: self.config.max_pending_rows,
            bad_rows: self.bad_rows,
            bad_row_error: self.bad_reason.clone(),
            swap: self.swap.clone(),
            swap_model_version: self.swap_version,
            min_rows: self.config.min_rows,
            model_version: self.mark_version,
            checked_ms_ago: self.checked.map(|t| t.elapsed().as_millis() as u64),
            checks: self.checks,
            last_retrain_ms_ago: self.last_retrain.map(|t| t.elapsed().as_millis() as u64),
            retrains: self.retrains,
            error: self.last_error.clone(),
            report: self.report.clone(),
            report_model_version: self.report_version,
        }
    }
}

/// One poll on the blocking pool: reads the new lines (within [`READ_BUDGET`]), sets malformed
/// ones aside, bounds what waits, and checks for drift once `min_rows` rows are waiting.
#[allow(clippy::too_many_arguments)]
fn poll(
    source: &TrainingSource,
    current: Arc<super::model::Current>,
    mut mark: Watermark,
    mut header: Vec<u8>,
    mut pending: Vec<u8>,
    rows: usize,
    min_rows: usize,
    max_rows: usize,
    stats: &crate::ml::DriftSettings,
) -> Polled {
    let origin = format!("new rows of {}", source.shard.display());
    let new = match read_new_at_most(&source.shard, &mut mark, READ_BUDGET) {
        Ok(new) => new,
        Err(e) => {
            return Polled {
                mark,
                header,
                pending,
                pending_rows: rows,
                read: 0,
                bad: 0,
                bad_reason: None,
                outcome: Err(e.to_string()),
            }
        }
    };
    if !new.header.is_empty() {
        header = new.header;
    }
    let (good, read, bad, mut bad_reason) =
        good_lines(origin.as_ref(), &header, &new.lines, &source.spec);
    if new.skipped > 0 {
        bad_reason
            .get_or_insert_with(|| format!("{origin}: a line longer than {READ_BUDGET} bytes"));
    }
    pending.extend_from_slice(&good);
    let pending_rows = keep_last(&mut pending, rows + read, max_rows);
    let mut polled = Polled {
        mark,
        header,
        pending,
        pending_rows,
        read,
        bad: bad + new.skipped,
        bad_reason,
        outcome: Ok(None),
    };
    if pending_rows < min_rows || read == 0 {
        return polled;
    }
    polled.outcome = (|| {
        let reference = current.reference.as_ref().ok_or(
            "the model has no drift reference (trained with drift detection off, or by an \
                 older version): train again to build one",
        )?;
        let mut text = polled.header.clone();
        text.extend_from_slice(&polled.pending);
        let table = parse_csv(origin.as_ref(), &text, &source.spec).map_err(|e| e.to_string())?;
        detect(reference, &table, Some(&current.pipeline), stats).map_err(|e| e.to_string())
    })()
    .map(Some);
    polled
}

impl Actor for DataWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis(self.config.check_interval_ms);
        ctx.run_interval(every, |act, ctx| {
            guard(act, ctx, "data watcher", |act, ctx| act.check(ctx));
        });
    }
}

impl Supervised for DataWatcher {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.supervision.restarting(Kind::Watcher, "data watcher");
        // Re-read everything new since the current model's training.
        self.busy = false;
        self.reset();
    }
}

/// What the watcher has seen since the current model's training: the `drift` command's answer.
/// The field names are an interface (console `--json`, `ctl`, HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftStatus {
    /// Complete, well-formed new rows read since the current model was trained.
    pub rows_since_training: usize,
    /// Of those, the rows a check compares (the last `max_pending_rows`).
    pub pending_rows: usize,
    pub max_pending_rows: usize,
    /// Malformed appended rows skipped (since the node started), and why the latest was.
    pub bad_rows: u64,
    pub bad_row_error: Option<String>,
    /// The latest champion / challenger decision after a drift retrain.
    pub swap: Option<Swap>,
    /// The model version that decision kept or replaced.
    pub swap_model_version: Option<u64>,
    /// Rows needed before a check compares them.
    pub min_rows: usize,
    /// The model version the new rows are counted against.
    pub model_version: Option<u64>,
    pub checked_ms_ago: Option<u64>,
    /// Polls done so far.
    pub checks: u64,
    pub last_retrain_ms_ago: Option<u64>,
    /// Drift retrains begun since the node started (kept or not).
    #[serde(default)]
    pub retrains: u64,
    /// Why the last check failed, if it did.
    pub error: Option<String>,
    /// The latest comparison, once `min_rows` rows have arrived.
    pub report: Option<DriftReport>,
    /// The model version `report` compared against.
    pub report_model_version: Option<u64>,
}

/// The watcher's current [`DriftStatus`].
#[derive(Message)]
#[rtype(result = "DriftStatus")]
pub struct GetReport;

impl Handler<GetReport> for DataWatcher {
    type Result = MessageResult<GetReport>;
    fn handle(&mut self, _msg: GetReport, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Fault injection: the watcher fails and is restarted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

impl Handler<Fail> for DataWatcher {
    type Result = ();
    fn handle(&mut self, _msg: Fail, ctx: &mut Context<Self>) {
        guard(self, ctx, "data watcher actor", |_, _| injected_fault());
    }
}

#[cfg(test)]
mod tests {
    use super::keep_last;

    #[test]
    fn waiting_rows_are_bounded_oldest_first() {
        let mut p = b"1\n2\n3\n4\n".to_vec();
        assert_eq!(keep_last(&mut p, 4, 10), 4);
        assert_eq!(p, b"1\n2\n3\n4\n");
        assert_eq!(keep_last(&mut p, 4, 3), 3);
        assert_eq!(p, b"2\n3\n4\n");
        assert_eq!(keep_last(&mut p, 3, 1), 1);
        assert_eq!(p, b"4\n");
    }
}
