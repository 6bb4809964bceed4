//! "A member I can ask with a deadline": the one thing the cluster-wide flows know about the
//! nodes they involve. A remote member is its network [`Link`]; this node's own model implements
//! the same trait (in `crate::actors`), so a flow treats itself as just another member and never
//! imports an actor.

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::error::{Error, Result};
use crate::ml::TypedRows;
use crate::net::Link;
use crate::protocol::{EncodedBody, ProtocolError, Request, Response};

/// A node a flow can ask something, waiting at most a deadline for the answer.
pub trait Member {
    /// Sends one request and waits for its answer, at most `deadline`.
    fn call(&self, request: Request, deadline: Duration) -> LocalBoxFuture<'_, Result<Response>>;

    /// Predicts the rows of `batch` (answered by `Predictions` or `NoModel`). The caller
    /// bounds the wait (one timer for the frames sent together with one deadline, however many
    /// callers share them).
    fn predict<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Response>>;
}

/// Rows to predict, encoded for the wire (when a remote member first needs them) once for all
/// the remote members that get them.
pub struct Batch {
    pub rows: TypedRows,
    encoded: OnceCell<std::result::Result<EncodedBody, ProtocolError>>,
}

impl Batch {
    pub fn new(rows: TypedRows) -> Batch {
        Batch {
            rows,
            encoded: OnceCell::new(),
        }
    }

    fn encoded(&self) -> &std::result::Result<EncodedBody, ProtocolError> {
        self.encoded
            .get_or_init(|| EncodedBody::predict(&self.rows))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl Member for Link {
    fn call(&self, request: Request, deadline: Duration) -> LocalBoxFuture<'_, Result<Response>> {
        self.request(request, deadline).boxed_local()
    }

    fn predict<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
        match batch.encoded() {
            Ok(body) => self.exchange_encoded(body).boxed_local(),
            Err(reason) => {
                let e = Error::Other(format!("cannot encode the rows: {reason}"));
                futures::future::ready(Err(e)).boxed_local()
            }
        }
    }
}

/// A member taking part in one flow.
#[derive(Clone)]
pub struct Asked {
    pub id: String,
    pub member: Rc<dyn Member>,
    /// Deadline of a quick request (a prediction); shorter for a suspect peer.
    pub deadline: Duration,
}

/// Who takes part in a flow: the live members (this node included) in id order, so that every
/// coordinator aggregates identically, and the known members that cannot be reached.
#[derive(Clone)]
pub struct Plan {
    pub members: Rc<[Asked]>,
    pub unreachable: Rc<[String]>,
    /// Deadline of one node's training or evaluation.
    pub long_deadline: Duration,
    /// Weight each node by its validation score instead of a plain mean / vote.
    pub weighted: bool,
    /// Nodes that must complete a training or evaluation (`None`: a majority of those asked).
    pub min_quorum: Option<usize>,
}

impl Plan {
    /// Every node the flow concerns: the live ones and the unreachable ones.
    pub fn nodes(&self) -> usize {
        self.members.len() + self.unreachable.len()
    }

    /// How many must complete for the flow to count as a success.
    pub fn quorum(&self) -> usize {
        self.min_quorum.unwrap_or(self.nodes() / 2 + 1)
    }
}
