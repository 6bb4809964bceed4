//! This node as the scorer in a cross-validation round: it fetches the models it must score from
//! their owners over its member links ([`crate::cluster::evaluate`]) and scores them with its own
//! model services. For every other request it is just this node's [`LocalModel`].

use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::super::model::LocalModel;
use crate::cluster::{self, Asked, Batch, Member};
use crate::error::Result;
use crate::protocol::{ModelRef, Request, Response};

pub(super) struct Evaluator {
    pub local: LocalModel,
    /// The live members, this node included, whose models can be fetched.
    pub owners: Rc<[Asked]>,
    /// Largest model accepted from an owner.
    pub max_bytes: u64,
    /// Deadline of one chunk.
    pub deadline: Duration,
}

impl Evaluator {
    pub async fn evaluate(&self, models: Vec<ModelRef>) -> Response {
        let local = self.local.clone();
        cluster::evaluate(
            &self.owners,
            models,
            self.max_bytes,
            self.deadline,
            |blobs| async move { local.score(blobs).await },
        )
        .await
    }
}

impl Member for Evaluator {
    fn call(&self, request: Request, deadline: Duration) -> LocalBoxFuture<'_, Result<Response>> {
        match request {
            Request::Evaluate { models } => self.evaluate(models).map(Ok).boxed_local(),
            other => self.local.call(other, deadline),
        }
    }

    fn predict<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
        Member::predict(&self.local, batch)
    }
}
