//! [`LocalModel`]: the one way the node's own model is served, whether the request came from a
//! peer, a client, or a flow this node coordinates.
//!
//! Model code is where a bad row or a bad model can fail: every prediction runs under
//! `catch_unwind`; a panic answers that request with an error and restarts the model actor,
//! which reloads the persisted model.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Addr;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::actor::{blocking, Evaluate, ModelActor, ModelFailed, Train};
use super::error::ModelError;
use super::slot::{Cause, ModelSlot};
use crate::actors::supervision::panic_message;
use crate::cluster::{serve_chunk, Batch, Member};
use crate::error::Result;
use crate::ml::{Rows, TypedRows};
use crate::net::{Access, Link};
use crate::protocol::{ModelBlob, Request, Response};

/// Requests with at most this many rows are predicted inline (a few hundred microseconds with a
/// large boosted model); bigger batches go to the blocking pool so they cannot stall the node's
/// network thread.
const INLINE_ROWS: usize = 256;

/// This node's model services. Cloning shares them.
#[derive(Clone)]
pub struct LocalModel {
    pub node: String,
    pub actor: Addr<ModelActor>,
    pub slot: ModelSlot,
    /// `cluster.max_rows_per_request`: prediction requests with more rows are refused.
    pub max_rows: usize,
}

impl LocalModel {
    /// Serves a request that arrived on `link`: model requests are answered here (at once when
    /// they need no wait, else from a task), anything else is handed back for the node to serve.
    pub fn serve_link(&self, link: &Link, id: u64, request: Request) -> Option<Request> {
        if let Request::Predict { rows } | Request::PredictEnsemble { rows } = &request {
            if rows.len() > self.max_rows {
                let reason = format!(
                    "{} rows in one request; at most {} (cluster.max_rows_per_request): send \
                     them in smaller batches",
                    rows.len(),
                    self.max_rows
                );
                link.respond(id, Response::Error { reason });
                return None;
            }
        }
        match request {
            // Scoring fetches models from the other members: the node holds the links.
            Request::Command { .. } | Request::PredictEnsemble { .. } => Some(request),
            Request::Evaluate { .. } if link.access() == Access::Member => Some(request),
            Request::Ping => {
                link.respond(id, Response::Pong);
                None
            }
            // A client resolves its rows by the cluster's schema, which the node knows.
            Request::Schema if link.access() != Access::Member => Some(request),
            Request::Schema => {
                link.respond(id, self.schema());
                None
            }
            // Training, scoring and this node's model itself are for members of the cluster.
            _ if link.access() != Access::Member => {
                let reason = format!(
                    "{} is a client: model requests are for members of the cluster",
                    link.peer()
                );
                link.respond(id, Response::Error { reason });
                None
            }
            Request::Predict { rows } if rows.len() <= INLINE_ROWS => {
                link.respond(id, self.predict_now(&rows));
                None
            }
            Request::FetchModel { version, offset } => {
                link.respond(id, self.chunk(version, offset));
                None
            }
            request => {
                let (me, link) = (self.clone(), link.clone());
                actix_rt::spawn(async move { link.respond(id, me.serve(request).await) });
                None
            }
        }
    }

    /// Serves one model request.
    pub async fn serve(&self, request: Request) -> Response {
        let failed = |reason: String| Response::Error { reason };
        match request {
            Request::Ping => Response::Pong,
            Request::Train => match self
                .actor
                .send(Train {
                    reason: "cluster training".into(),
                    cause: Cause::Train,
                    window: None,
                    queue: true,
                    gate: None,
                })
                .await
            {
                Ok(Ok(t)) => Response::Trained {
                    summary: Box::new(t.summary),
                    size: t.bytes.len() as u64,
                },
                Ok(Err(e)) => failed(e.to_string()),
                Err(e) => failed(format!("model actor unavailable: {e}")),
            },
            Request::GetModel => match self.slot.current() {
                Some(c) => Response::Model {
                    summary: Box::new(c.summary.clone()),
                    size: c.bytes.len() as u64,
                },
                None => Response::NoModel,
            },
            Request::FetchModel { version, offset } => self.chunk(version, offset),
            Request::Evaluate { .. } => {
                failed("scoring fetches models from the cluster: the node serves it".into())
            }
            Request::Predict { rows } => self.predict(rows).await,
            Request::Schema => self.schema(),
            Request::Command { .. } | Request::PredictEnsemble { .. } => {
                failed("cluster requests are served by the node, not its model".into())
            }
        }
    }

    /// The columns this node's model reads, and the model's version.
    pub fn schema(&self) -> Response {
        match self.slot.serving() {
            Some(s) => Response::Schema {
                version: s.current.summary.version,
                schema: Box::new((**s.served.schema()).clone()),
            },
            None => Response::NoModel,
        }
    }

    /// Predicts rows named by column with this node's model alone (resolved by its schema).
    pub async fn predict_named(&self, rows: &Rows) -> Response {
        let Some(serving) = self.slot.serving() else {
            return Response::NoModel;
        };
        match TypedRows::from_rows(serving.served.schema(), rows, false) {
            Ok(typed) => self.predict(typed).await,
            Err(e) => Response::Error {
                reason: e.to_string(),
            },
        }
    }

    /// Scores `models` (fetched from their owners) and their ensemble on this node's validation
    /// split.
    pub async fn score(&self, models: Vec<ModelBlob>) -> Response {
        match self.actor.send(Evaluate(models)).await {
            Ok(Ok(eval)) => Response::Evaluated {
                eval: Box::new(eval),
            },
            // Not this node's failure: the coordinator drops those models and asks again.
            Ok(Err(ModelError::Invalid(invalid))) => Response::Unfetched {
                nodes: invalid.iter().map(|(node, _)| node.clone()).collect(),
                reason: ModelError::Invalid(invalid).to_string(),
            },
            Ok(Err(e)) => Response::Error {
                reason: e.to_string(),
            },
            Err(e) => Response::Error {
                reason: format!("model actor unavailable: {e}"),
            },
        }
    }

    /// A chunk of this node's current model, for a member scoring it.
    fn chunk(&self, version: u64, offset: u64) -> Response {
        let current = self.slot.current();
        let model = current.as_ref().map(|c| (c.summary.version, &c.bytes));
        serve_chunk(model, version, offset)
    }

    /// Predicts with the current model; never waits for a training. Big batches run on the
    /// blocking pool.
    pub async fn predict(&self, rows: TypedRows) -> Response {
        if rows.len() <= INLINE_ROWS {
            return self.predict_now(&rows);
        }
        let me = self.clone();
        blocking("prediction", move || Ok::<_, String>(me.predict_now(&rows)))
            .await
            .unwrap_or_else(|reason| Response::Error { reason })
    }

    /// Predicts on the calling thread. A panic in the model code answers with an error and
    /// restarts the model actor.
    pub fn predict_now(&self, rows: &TypedRows) -> Response {
        let Some(serving) = self.slot.serving() else {
            return Response::NoModel;
        };
        let current = &serving.current;
        let inject = self
            .slot
            .0
            .panic_next_predict
            .swap(false, Ordering::Relaxed);
        let predicted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if inject {
                panic!("injected fault: predict");
            }
            serving.served.predict(rows)
        }));
        match predicted {
            Ok(Ok(preds)) => Response::Predictions {
                node: self.node.clone(),
                version: current.summary.version,
                weight: current.weight,
                preds,
            },
            Ok(Err(e)) => Response::Error {
                reason: e.to_string(),
            },
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!("prediction panicked: {msg}");
                self.actor.do_send(ModelFailed(msg.clone()));
                Response::Error {
                    reason: format!("the model failed on this request ({msg}); restarting it"),
                }
            }
        }
    }
}

/// This node as a member of its own flows: the same serving path a peer's request takes.
impl Member for LocalModel {
    fn call(&self, request: Request, _deadline: Duration) -> LocalBoxFuture<'_, Result<Response>> {
        self.serve(request).map(Ok).boxed_local()
    }

    fn predict<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
        if batch.len() <= INLINE_ROWS {
            // After the frames this node's flows have just queued for other nodes are written:
            // they work on their share while this node works on its own.
            return async move {
                tokio::task::yield_now().await;
                Ok(self.predict_now(&batch.rows))
            }
            .boxed_local();
        }
        LocalModel::predict(self, batch.rows.clone())
            .map(Ok)
            .boxed_local()
    }
}
