//! Global prediction: the rows go to every live member at once (this node included), each
//! predicts with its own model, and the coordinator aggregates (mean for regression, majority vote
//! for classification, or weighted by each node's validation score). A member that fails or
//! misses its deadline is reported, never waited for beyond it.
//!
//! Rows reach the members as [`TypedRows`]: a request that arrives by column name is resolved
//! once, here, by the members' schemas ([`SchemaBook`]); requests waiting for the same member at
//! the same moment share a frame ([`Batcher`]).

use std::rc::Rc;

use futures::future::join_all;

use super::batching::{BatchSettings, Batcher};
use super::member::{Asked, Plan};
use super::schemas::SchemaBook;
use super::train::unexpected;
use crate::answer::{Answer, Failed, Failure, NodePrediction, Predicted, Prediction};
use crate::ml::{aggregate, MlError, Predictions, Rows, TypedRows};
use crate::protocol::Response;

/// A batch gets this many times a one-row deadline.
pub(super) const BATCH_DEADLINE_SCALE: u32 = 10;
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
    Aggregate(#[source] MlError),
    #[error("cannot read the rows: {0}")]
    Rows(#[source] MlError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: MlError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0} failed: {1}")]
    Task(&'static str, String),
}

/// How this node's predictions reach the members: the schemas requests are resolved by, and the
/// batching of what goes to each member. One per node, shared by its flows.
pub struct Dispatch {
    /// This node's id: its own model is asked last, once the requests to the others are out.
    pub me: String,
    pub schemas: Rc<SchemaBook>,
    pub batcher: Rc<Batcher>,
}

impl Dispatch {
    pub fn new(me: String, settings: BatchSettings) -> Rc<Dispatch> {
        Rc::new(Dispatch {
            schemas: SchemaBook::new(),
            batcher: Batcher::new(me.clone(), settings),
            me,
        })
    }

    /// Resolves rows named by column for the members of `plan`. Until every member's schema is
    /// known, columns outside the known schema are kept.
    pub fn resolve(&self, plan: &Plan, rows: &Rows) -> Result<TypedRows, FlowError> {
        let (schema, complete) = self.schemas.current(&plan.members);
        TypedRows::from_rows(&schema, rows, !complete).map_err(FlowError::Rows)
    }

    /// The cluster's schema, for a client to resolve its rows by (members not known yet are
    /// asked first, each at most its deadline).
    pub async fn schema(&self, plan: &Plan) -> Response {
        let (schema, _) = self.schemas.refreshed(&plan.members).await;
        Response::Schema {
            version: 0,
            schema: Box::new((*schema).clone()),
        }
    }
}

/// The members' predictions for one batch.
pub(super) struct Gathered {
    pub preds: Vec<Predictions>,
    pub weights: Vec<f64>,
    /// (node, version, weight) of each member that answered, beside `preds`.
    pub nodes: Vec<(String, u64, f64)>,
    /// Members with a model that were asked.
    pub asked: usize,
    pub failed: Vec<Failed>,
}

impl Gathered {
    pub fn combine(&self, weighted: bool) -> Result<Predictions, FlowError> {
        if self.preds.is_empty() {
            return Err(if self.asked == 0 {
                FlowError::NoModel
            } else {
                FlowError::NoneAnswered(self.asked)
            });
        }
        let weights = weighted.then_some(self.weights.as_slice());
        aggregate(&self.preds, weights).map_err(FlowError::Aggregate)
    }
}

/// Asks every member to predict `rows` (through the batcher) and collects the answers.
pub(super) async fn gather(
    dispatch: &Dispatch,
    members: &[Asked],
    rows: &TypedRows,
    deadline_scale: u32,
) -> Gathered {
    // The other nodes' requests are queued first, so that they are on their way while this
    // node predicts.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| members[i].id == dispatch.me);
    let asked = join_all(order.iter().map(|&i| {
        let m = &members[i];
        dispatch
            .batcher
            .predict(m, rows.clone(), m.deadline * deadline_scale)
    }))
    .await;
    let mut answers: Vec<_> = order.into_iter().zip(asked).collect();
    answers.sort_by_key(|(i, _)| *i);
    let mut g = Gathered {
        preds: Vec::with_capacity(members.len()),
        weights: Vec::with_capacity(members.len()),
        nodes: Vec::with_capacity(members.len()),
        asked: members.len(),
        failed: Vec::new(),
    };
    for (member, (_, answer)) in members.iter().zip(answers) {
        match answer {
            Ok(Response::Predictions {
                node,
                version,
                weight,
                preds,
            }) if preds.len() == rows.len() => {
                dispatch.schemas.saw(&member.id, version);
                g.preds.push(preds);
                g.weights.push(weight);
                g.nodes.push((node, version, weight));
            }
            Ok(Response::NoModel) => g.asked -= 1,
            Ok(Response::Predictions { preds, .. }) => g.failed.push(Failed::new(
                &member.id,
                format!("{} predictions for {} rows", preds.len(), rows.len()),
            )),
            Ok(other) => g.failed.push(Failed::new(&member.id, unexpected(&other))),
            Err(e) => g.failed.push(Failed::new(&member.id, e)),
        }
    }
    g
}

/// Global prediction of `rows`, as a protocol answer (for clients: `bench`, a streamed
/// `predict-file`). A batch gets the longer deadline of a batch.
pub async fn ensemble(plan: Plan, dispatch: Rc<Dispatch>, rows: TypedRows) -> Response {
    let scale = if rows.len() > ONE_ROW_DEADLINE_ROWS {
        BATCH_DEADLINE_SCALE
    } else {
        1
    };
    let g = gather(&dispatch, &plan.members, &rows, scale).await;
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

/// [`ensemble`] of rows named by column (the console, HTTP).
pub async fn ensemble_rows(plan: Plan, dispatch: Rc<Dispatch>, rows: Rows) -> Response {
    match dispatch.resolve(&plan, &rows) {
        Ok(typed) => ensemble(plan, dispatch, typed).await,
        Err(e) => Response::Error {
            reason: e.to_string(),
        },
    }
}

/// Global prediction of one row.
pub async fn predict(plan: Plan, dispatch: Rc<Dispatch>, rows: Rows, explain: bool) -> Answer {
    let typed = match dispatch.resolve(&plan, &rows) {
        Ok(t) => t,
        Err(e) => return Answer::error(e.to_string()),
    };
    let g = gather(&dispatch, &plan.members, &typed, 1).await;
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
        g.nodes
            .iter()
            .zip(&g.preds)
            .filter_map(|((node, version, weight), p)| {
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
