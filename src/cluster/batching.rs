//! Dynamic batching (as Triton's dynamic batcher does): predictions waiting for the same member
//! at the same moment go to it in one frame, and its answer is split back to their callers.
//!
//! A prediction joins its member's queue; the queue is sent when it holds `batch_max_rows` rows,
//! or once the requests already in the node's hands have been queued (`batch_delay_us = 0`: a
//! task queued behind them sends it; never a wait), or after `batch_delay_us`. This node's own
//! model is a member like the others, so it too predicts the batch in one go. A frame only joins
//! requests of one deadline and its wait is bounded by it, so each caller still waits at most its
//! own deadline once its frame is sent, whatever happens to the frame.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::member::{Asked, Batch, Member};
use crate::error::{Error, Result};
use crate::ml::{Predictions, TypedRows};
use crate::protocol::Response;

/// How predictions are batched (`[cluster] batch_max_rows`, `batch_delay_us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Rows in one frame at most (a single larger request still goes alone); 0 or 1: no
    /// batching.
    pub max_rows: usize,
    /// How long a queue waits for more requests before it is sent.
    pub delay: Duration,
}

struct Waiting {
    rows: TypedRows,
    deadline: Duration,
    reply: oneshot::Sender<Result<Response>>,
}

struct Queue {
    /// The member's id, for errors.
    id: Rc<str>,
    member: Rc<dyn Member>,
    waiting: Vec<Waiting>,
    rows: usize,
}

/// The queues of one coordinating node, one per member.
pub struct Batcher {
    settings: BatchSettings,
    /// This node's id: its own queue is sent last, once the frames for the others are queued.
    me: String,
    queues: RefCell<HashMap<String, Queue>>,
    /// A task will send every queue.
    scheduled: Cell<bool>,
}

impl Batcher {
    pub fn new(me: String, settings: BatchSettings) -> Rc<Batcher> {
        Rc::new(Batcher {
            settings,
            me,
            queues: RefCell::new(HashMap::new()),
            scheduled: Cell::new(false),
        })
    }

    pub fn settings(&self) -> BatchSettings {
        self.settings
    }

    /// Predicts `rows` with `to`'s model, in a frame shared with whatever else waits for it;
    /// the answer covers exactly `rows`. Waits at most `deadline` once its frame is sent (the
    /// frame goes at most `batch_delay_us` after it is queued).
    pub async fn predict(
        self: &Rc<Self>,
        to: &Asked,
        rows: TypedRows,
        deadline: Duration,
    ) -> Result<Response> {
        if self.settings.max_rows <= 1 {
            return within(deadline, &to.id, to.member.predict(&Batch::new(rows))).await;
        }
        let (reply, answer) = oneshot::channel();
        self.enqueue(
            to,
            Waiting {
                rows,
                deadline,
                reply,
            },
        );
        // The frame's own deadline bounds this wait: frames only join requests of one deadline.
        answer.await.unwrap_or_else(|_| {
            Err(Error::Closed(format!(
                "the batch for {} was dropped",
                to.id
            )))
        })
    }

    fn enqueue(self: &Rc<Self>, to: &Asked, w: Waiting) {
        let mut queues = self.queues.borrow_mut();
        // One lookup when the queue exists (always, but for a member's first request).
        let q = match queues.get_mut(&to.id) {
            Some(q) => q,
            None => queues.entry(to.id.clone()).or_insert_with(|| Queue {
                id: to.id.as_str().into(),
                member: to.member.clone(),
                waiting: Vec::new(),
                rows: 0,
            }),
        };
        // The newest handle: a member that reconnected is reached through its new link.
        q.member = to.member.clone();
        q.rows += w.rows.len();
        q.waiting.push(w);
        if q.rows >= self.settings.max_rows {
            let waiting = std::mem::take(&mut q.waiting);
            let mut frames = Vec::new();
            self.frames(q, waiting, &mut frames);
            q.rows = 0;
            drop(queues);
            actix_rt::spawn(send_frames(frames));
        } else if !self.scheduled.replace(true) {
            let (me, delay) = (self.clone(), self.settings.delay);
            // One task, queued behind the requests this node already holds: they join their
            // queues before any is sent.
            actix_rt::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                me.flush();
            });
        }
    }

    /// Sends every queue: the other nodes' first, this node's last.
    fn flush(self: &Rc<Self>) {
        self.scheduled.set(false);
        let mut frames = Vec::new();
        let mut mine = Vec::new();
        {
            let mut queues = self.queues.borrow_mut();
            for (id, q) in queues.iter_mut().filter(|(_, q)| !q.waiting.is_empty()) {
                let waiting = std::mem::take(&mut q.waiting);
                let to = if *id == self.me {
                    &mut mine
                } else {
                    &mut frames
                };
                self.frames(q, waiting, to);
                q.rows = 0;
            }
        }
        frames.extend(mine);
        if !frames.is_empty() {
            actix_rt::spawn(send_frames(frames));
        }
    }

    /// `waiting` in frames of at most `max_rows` rows of one schema and one deadline each,
    /// added to `out`. Requests that all fit in one frame (the usual case) keep their vector.
    fn frames(&self, q: &Queue, waiting: Vec<Waiting>, out: &mut Vec<Frame>) {
        let close = |frame: Vec<Waiting>| Frame {
            id: q.id.clone(),
            member: q.member.clone(),
            deadline: frame.first().map(|w| w.deadline).unwrap_or_default(),
            waiting: frame,
        };
        let joins = |first: &Waiting, w: &Waiting| {
            first.rows.schema() == w.rows.schema() && first.deadline == w.deadline
        };
        let one_frame = waiting.split_first().is_none_or(|(first, rest)| {
            rest.iter().all(|w| joins(first, w)) && q.rows <= self.settings.max_rows
        });
        if one_frame {
            if !waiting.is_empty() {
                out.push(close(waiting));
            }
            return;
        }
        let mut frame: Vec<Waiting> = Vec::new();
        let mut rows = 0;
        for w in waiting {
            let fits = frame.first().is_some_and(|f| joins(f, &w))
                && rows + w.rows.len() <= self.settings.max_rows;
            if !frame.is_empty() && !fits {
                out.push(close(std::mem::take(&mut frame)));
                rows = 0;
            }
            rows += w.rows.len();
            frame.push(w);
        }
        if !frame.is_empty() {
            out.push(close(frame));
        }
    }
}

/// A member and the requests that go to it in one frame (all with the same deadline).
struct Frame {
    id: Rc<str>,
    member: Rc<dyn Member>,
    deadline: Duration,
    waiting: Vec<Waiting>,
}

/// `answer`, or a timeout error once `deadline` has passed.
async fn within(
    deadline: Duration,
    id: &str,
    answer: impl std::future::Future<Output = Result<Response>>,
) -> Result<Response> {
    tokio::time::timeout(deadline, answer)
        .await
        .unwrap_or_else(|_| Err(timeout(id, deadline)))
}

fn timeout(id: &str, deadline: Duration) -> Error {
    Error::Timeout(format!(
        "no answer from {id} within {} ms",
        deadline.as_millis()
    ))
}

/// Sends `frames`, in order, and waits for all their answers: frames of one deadline under one
/// timer (those of a flush mostly share it), so a frame costs no timer of its own.
async fn send_frames(frames: Vec<Frame>) {
    let mut groups: Vec<(Duration, Vec<Frame>)> = Vec::new();
    for frame in frames {
        match groups.iter_mut().find(|(d, _)| *d == frame.deadline) {
            Some((_, group)) => group.push(frame),
            None => groups.push((frame.deadline, vec![frame])),
        }
    }
    futures::future::join_all(groups.into_iter().map(|(deadline, frames)| async move {
        // At the deadline the frames still waiting are dropped: their callers get a timeout.
        let sent = futures::future::join_all(frames.into_iter().map(send));
        let _ = tokio::time::timeout(deadline, sent).await;
    }))
    .await;
}

/// The requests of a frame until its answer is split back to them. Dropped before that (its
/// wait is over), it tells each that the member did not answer in time.
struct Unanswered {
    id: Rc<str>,
    deadline: Duration,
    waiting: Vec<Waiting>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        for w in self.waiting.drain(..) {
            let _ = w.reply.send(Err(timeout(&self.id, self.deadline)));
        }
    }
}

/// One frame: the rows of every waiting request, the answer split back to each.
async fn send(frame: Frame) {
    let mut unanswered = Unanswered {
        id: frame.id,
        deadline: frame.deadline,
        waiting: frame.waiting,
    };
    let member = frame.member;
    if unanswered.waiting.len() == 1 {
        let rows = unanswered.waiting[0].rows.clone();
        let answer = member.predict(&Batch::new(rows)).await;
        if let Some(w) = unanswered.waiting.pop() {
            let _ = w.reply.send(answer);
        }
        return;
    }
    let parts: Vec<&TypedRows> = unanswered.waiting.iter().map(|w| &w.rows).collect();
    let Some(rows) = TypedRows::concat(&parts) else {
        for w in unanswered.waiting.drain(..) {
            let _ = w
                .reply
                .send(Err(Error::Other("rows of different schemas".into())));
        }
        return;
    };
    let total = rows.len();
    let answer = member.predict(&Batch::new(rows)).await;
    let mut at = 0;
    for w in unanswered.waiting.drain(..) {
        let range = at..at + w.rows.len();
        at = range.end;
        let mine = match &answer {
            Ok(Response::Predictions {
                node,
                version,
                weight,
                preds,
            }) if preds.len() == total => Ok(Response::Predictions {
                node: node.clone(),
                version: *version,
                weight: *weight,
                preds: slice(preds, range),
            }),
            Ok(other) => Ok(other.clone()),
            Err(e) => Err(same_error(e)),
        };
        let _ = w.reply.send(mine);
    }
}

fn slice(preds: &Predictions, range: Range<usize>) -> Predictions {
    match preds {
        Predictions::Regression(v) => Predictions::Regression(v[range].to_vec()),
        Predictions::Classification(v) => Predictions::Classification(v[range].to_vec()),
    }
}

/// The error a frame failed with, for each of its callers.
fn same_error(e: &Error) -> Error {
    match e {
        Error::Timeout(m) => Error::Timeout(m.clone()),
        Error::Closed(m) => Error::Closed(m.clone()),
        other => Error::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::{ColumnKind, Schema, SchemaColumn, TypedRowsBuilder};
    use crate::protocol::Request;
    use futures::future::LocalBoxFuture;
    use futures::FutureExt;
    use std::cell::Cell;
    use std::sync::Arc;

    /// Predicts each row's "x" doubled; counts frames; may hang.
    struct Doubler {
        frames: Cell<usize>,
        rows: RefCell<Vec<usize>>,
        hangs: bool,
    }

    impl Member for Doubler {
        fn call(&self, _r: Request, _d: Duration) -> LocalBoxFuture<'_, Result<Response>> {
            futures::future::ready(Err(Error::Other("not used".into()))).boxed_local()
        }

        fn predict<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
            self.frames.set(self.frames.get() + 1);
            self.rows.borrow_mut().push(batch.len());
            if self.hangs {
                return futures::future::pending().boxed_local();
            }
            let preds = batch.rows.numbers(0).iter().map(|v| 2.0 * v).collect();
            futures::future::ready(Ok(Response::Predictions {
                node: "d".into(),
                version: 1,
                weight: 1.0,
                preds: Predictions::Regression(preds),
            }))
            .boxed_local()
        }
    }

    fn schema() -> Arc<Schema> {
        Schema::new([SchemaColumn {
            name: "x".into(),
            kind: ColumnKind::Number,
        }])
        .shared()
    }

    fn rows(values: &[f64]) -> TypedRows {
        let mut b = TypedRowsBuilder::new(schema());
        for v in values {
            b.push_number(0, *v);
            b.end_row();
        }
        b.finish()
    }

    fn member(hangs: bool) -> (Rc<Doubler>, Asked) {
        let d = Rc::new(Doubler {
            frames: Cell::new(0),
            rows: RefCell::new(Vec::new()),
            hangs,
        });
        let asked = Asked {
            id: "d".into(),
            member: d.clone(),
            deadline: Duration::from_millis(200),
        };
        (d, asked)
    }

    fn values(r: &Result<Response>) -> Vec<f64> {
        match r {
            Ok(Response::Predictions {
                preds: Predictions::Regression(v),
                ..
            }) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn requests_waiting_together_share_one_frame_and_get_their_own_rows_back() {
        let (d, to) = member(false);
        let batcher = Batcher::new(
            "me".into(),
            BatchSettings {
                max_rows: 4096,
                delay: Duration::ZERO,
            },
        );
        let asks = (0..10).map(|i| {
            let rows = rows(&[i as f64, 100.0 + i as f64]);
            let (b, to) = (batcher.clone(), &to);
            async move { b.predict(to, rows, to.deadline).await }
        });
        let answers = futures::future::join_all(asks).await;
        assert_eq!(d.frames.get(), 1, "one frame for ten requests");
        assert_eq!(*d.rows.borrow(), [20]);
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(values(a), [2.0 * i as f64, 200.0 + 2.0 * i as f64]);
        }
    }

    #[actix_rt::test]
    async fn a_full_queue_is_sent_at_once_and_batching_can_be_off() {
        let (d, to) = member(false);
        let batcher = Batcher::new(
            "me".into(),
            BatchSettings {
                max_rows: 4,
                delay: Duration::ZERO,
            },
        );
        let asks = (0..6).map(|i| {
            let (b, to) = (batcher.clone(), &to);
            async move { b.predict(to, rows(&[i as f64, 0.0]), to.deadline).await }
        });
        let answers = futures::future::join_all(asks).await;
        assert_eq!(*d.rows.borrow(), [4, 4, 4], "frames of at most 4 rows");
        assert_eq!(values(&answers[5]), [10.0, 0.0]);
        let (d, to) = member(false);
        let off = Batcher::new(
            "me".into(),
            BatchSettings {
                max_rows: 1,
                delay: Duration::ZERO,
            },
        );
        let asks = (0..3).map(|_| {
            let (b, to) = (off.clone(), &to);
            async move { b.predict(to, rows(&[1.0]), to.deadline).await }
        });
        futures::future::join_all(asks).await;
        assert_eq!(d.frames.get(), 3);
    }

    /// Under two deadlines: a frame that waited a deadline and was then sent again would take
    /// two.
    #[actix_rt::test]
    async fn a_hung_member_costs_each_caller_one_deadline() {
        let (_, to) = member(true);
        let batcher = Batcher::new(
            "me".into(),
            BatchSettings {
                max_rows: 4096,
                delay: Duration::ZERO,
            },
        );
        let started = std::time::Instant::now();
        let asks = (0..5).map(|_| {
            let (b, to) = (batcher.clone(), &to);
            async move { b.predict(to, rows(&[1.0]), to.deadline).await }
        });
        let answers = futures::future::join_all(asks).await;
        let took = started.elapsed();
        assert!(answers.iter().all(|a| matches!(a, Err(Error::Timeout(_)))));
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }

    /// Frames sent together share a timer per deadline, yet each keeps its own outcome: an
    /// answer arrives as soon as it is given, a hung member costs its callers their own deadline
    /// (the short one sooner), and the error says who did not answer.
    #[actix_rt::test]
    async fn frames_sent_together_end_each_on_its_own_terms() {
        let batcher = Batcher::new(
            "me".into(),
            BatchSettings {
                max_rows: 4096,
                delay: Duration::ZERO,
            },
        );
        let asked = |id: &str, hangs, ms| Asked {
            id: id.into(),
            member: member(hangs).0,
            deadline: Duration::from_millis(ms),
        };
        let members = [
            asked("quick", false, 300),
            asked("hung", true, 300),
            asked("hung-short", true, 100),
            asked("quick-short", false, 100),
        ];
        let started = std::time::Instant::now();
        let asks = members.iter().map(|to| {
            let b = batcher.clone();
            async move {
                let answer = b.predict(to, rows(&[3.0]), to.deadline).await;
                (answer, started.elapsed())
            }
        });
        let answers = futures::future::join_all(asks).await;
        for (to, (answer, took)) in members.iter().zip(&answers) {
            if to.id.starts_with("quick") {
                assert_eq!(values(answer), [6.0], "{}", to.id);
                assert!(*took < Duration::from_millis(80), "{}: {took:?}", to.id);
            } else {
                let Err(Error::Timeout(reason)) = answer else {
                    panic!("{}: {answer:?}", to.id);
                };
                assert!(reason.contains(&format!("from {} ", to.id)), "{reason}");
                assert!(*took >= to.deadline, "{}: {took:?}", to.id);
                assert!(
                    *took < to.deadline + Duration::from_millis(150),
                    "{}: {took:?}",
                    to.id
                );
            }
        }
    }
}
