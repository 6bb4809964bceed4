//! The [`DataWatcher`] watches the node's shard for new rows and retrains the node's model on
//! its own when they differ significantly from the data the model was trained on.
//!
//! Every `drift.check_interval_ms` it reads what was appended to the shard's files (or added to
//! its folder) since the current model's training — complete lines only, so a half-written line
//! waits for the next poll. Once `drift.min_rows` new rows have arrived, it compares them with the
//! model's reference ([`crate::ml::detect`]); on dataset drift it asks the [`ModelActor`] for a
//! local retrain, at most once per `drift.cooldown_ms` and never while a training runs. The new
//! model, trained on the shard as it now is, becomes the reference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::model::{blocking, ModelActor, ModelSlot, Train, TrainingSource};
use super::supervision::{guard, injected_fault, Kind, Supervision};
use crate::config::DriftConfig;
use crate::ml::{detect, parse_csv, read_new, DriftReport, Watermark};

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
    /// Complete data lines read since the current model was trained.
    pending: Vec<u8>,
    pending_rows: usize,
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
        let mut mark = self.mark.clone();
        let min_rows = self.config.min_rows;
        let stats = self.config.stats();
        let mut header = self.header.clone();
        let mut pending = std::mem::take(&mut self.pending);
        let mut rows = self.pending_rows;
        let work = blocking("drift check", move || {
            let new = read_new(&source.shard, &mut mark).map_err(|e| e.to_string());
            let new = match new {
                Ok(new) => new,
                Err(e) => return Ok((mark, header, pending, rows, Err(e))),
            };
            if !new.header.is_empty() {
                header = new.header;
            }
            pending.extend_from_slice(&new.lines);
            rows += new.rows;
            if rows < min_rows || new.rows == 0 {
                return Ok((mark, header, pending, rows, Ok(None)));
            }
            let outcome = (|| {
                let reference = current
                    .reference
                    .as_ref()
                    .ok_or("the model has no drift reference (trained by an older version)")?;
                let mut text = header.clone();
                text.extend_from_slice(&pending);
                let origin = format!("new rows of {}", source.shard.display());
                let table =
                    parse_csv(origin.as_ref(), &text, &source.spec).map_err(|e| e.to_string())?;
                let model = current
                    .summary
                    .valid
                    .as_ref()
                    .map(|v| (&current.pipeline, v));
                detect(reference, &table, model, &stats).map_err(|e| e.to_string())
            })();
            Ok((mark, header, pending, rows, outcome.map(Some)))
        });
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            act.checked = Some(Instant::now());
            act.checks += 1;
            let (mark, header, pending, rows, outcome) = match result {
                Ok(r) => r,
                Err(e) => {
                    act.last_error = Some(e);
                    return;
                }
            };
            // A model trained meanwhile has reset what counts as new.
            if act.slot.current().map(|c| c.summary.version) != act.mark_version {
                return;
            }
            act.mark = mark;
            act.header = header;
            act.pending = pending;
            act.pending_rows = rows;
            match outcome {
                Ok(Some(report)) => {
                    act.last_error = None;
                    let drift = report.dataset_drift;
                    act.report = Some(report);
                    act.report_version = act.mark_version;
                    if drift {
                        act.retrain(ctx);
                    }
                }
                Ok(None) => act.last_error = None,
                Err(e) => {
                    tracing::warn!("drift check failed: {e}");
                    act.last_error = Some(e);
                }
            }
        }));
    }

    fn retrain(&mut self, ctx: &mut Context<Self>) {
        let cooldown = Duration::from_millis(self.config.cooldown_ms);
        if self.last_retrain.is_some_and(|t| t.elapsed() < cooldown) || self.slot.is_training() {
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
        let before = self.mark_version.unwrap_or(0);
        let notices = self.notices;
        let train = self.model.send(Train {
            reason: format!("local retrain, {why}"),
            window: self.config.window(),
            queue: false,
        });
        ctx.spawn(
            train
                .into_actor(self)
                .map(move |result, _act, _ctx| match result {
                    Ok(Ok(t)) => notices.say(&format!(
                        "model v{before} → v{}: local retrain, {why}",
                        t.summary.version
                    )),
                    Ok(Err(e)) => notices.say(&format!("local retrain on drift failed: {e}")),
                    Err(e) => notices.say(&format!("local retrain on drift failed: {e}")),
                }),
        );
    }

    fn status(&self) -> DriftStatus {
        DriftStatus {
            rows_since_training: self.pending_rows,
            min_rows: self.config.min_rows,
            model_version: self.mark_version,
            checked_ms_ago: self.checked.map(|t| t.elapsed().as_millis() as u64),
            checks: self.checks,
            last_retrain_ms_ago: self.last_retrain.map(|t| t.elapsed().as_millis() as u64),
            error: self.last_error.clone(),
            report: self.report.clone(),
            report_model_version: self.report_version,
        }
    }
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
    /// Complete new rows read since the current model was trained.
    pub rows_since_training: usize,
    /// Rows needed before a check compares them.
    pub min_rows: usize,
    /// The model version the new rows are counted against.
    pub model_version: Option<u64>,
    pub checked_ms_ago: Option<u64>,
    /// Polls done so far.
    pub checks: u64,
    pub last_retrain_ms_ago: Option<u64>,
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
