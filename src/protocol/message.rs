//! The messages nodes and clients exchange. Binary payloads are `bytes::Bytes`, which MessagePack
//! encodes as one `bin` value rather than an array of integers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ml::{Predictions, Schema, Scores, SplitEval, TypedRows};

/// Bumped on any incompatible change of [`Message`]; a peer speaking another version is refused.
/// 5: predictions carry rows by schema ([`TypedRows`]) and come back packed; `Schema` request
/// and response (4: SWIM membership; 3: models fetched from their owners in chunks).
pub const PROTOCOL_VERSION: u32 = 5;

/// Who a member is: its id, the `host:port` it advertises (where its peers dial it: a DNS name
/// or an IP), and when this run of it started, so a restarted node (a newer incarnation) is told
/// apart from a stale view of its previous run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub addr: String,
    pub incarnation: u64,
}

/// What the dialing side of a connection is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A cluster member that will keep this connection as its link to us.
    Member(NodeInfo),
    /// A one-shot client (`ensemble-node ctl`, `bench`): may send commands, is not a member.
    Client,
}

/// One frame's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Dialer → acceptor, first frame.
    Hello {
        version: u32,
        cluster: String,
        role: Role,
        nonce: Bytes,
    },
    /// Acceptor → dialer: who the acceptor is, its nonce, and its proof that it knows the
    /// cluster secret (empty when the acceptor has none).
    Challenge {
        node: NodeInfo,
        nonce: Bytes,
        proof: Bytes,
    },
    /// Dialer → acceptor: the dialer's proof (empty when it has no secret).
    Auth {
        proof: Bytes,
    },
    /// Acceptor → dialer: the handshake succeeded; here are the members the acceptor knows.
    Welcome {
        members: Vec<NodeInfo>,
    },
    /// Either side: the connection is refused, and why. The connection closes after it.
    Refused {
        reason: String,
    },
    /// Member → member: a packet of the membership protocol (probes, acks, gossip of joins and
    /// failures; see `cluster::swim`), opaque here: its bytes are the membership core's.
    Membership {
        packet: Bytes,
    },
    /// Member → member: the sender is leaving the cluster on purpose.
    Leave,
    Request {
        id: u64,
        body: Request,
    },
    Response {
        id: u64,
        body: Response,
    },
}

impl Message {
    /// The variant's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Challenge { .. } => "challenge",
            Message::Auth { .. } => "auth",
            Message::Welcome { .. } => "welcome",
            Message::Refused { .. } => "refused",
            Message::Membership { .. } => "membership",
            Message::Leave => "leave",
            Message::Request { .. } => "request",
            Message::Response { .. } => "response",
        }
    }
}

/// Requests; each is answered by exactly one [`Response`] with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// A bare round trip (benchmarks, probing).
    Ping,
    /// A console command line run on the receiving node (`ctl`); answered by `Output`.
    Command { line: String },
    /// Train on your own training split now; answered by `Trained` (the model stays with its
    /// owner until someone fetches it).
    Train,
    /// Describe your current model; answered by `Model`.
    GetModel,
    /// Fetch these models from their owners (`FetchModel`), score them and their ensemble on
    /// your validation split; answered by `Evaluated`, or by `Unfetched` naming the owners whose
    /// model could not be fetched or is not a valid model.
    Evaluate { models: Vec<ModelRef> },
    /// Send the part of your model `version` that starts at `offset`; answered by `ModelChunk`.
    FetchModel { version: u64, offset: u64 },
    /// Predict these rows with your model; answered by `Predictions` or `NoModel`.
    Predict { rows: TypedRows },
    /// Predict these rows with the whole cluster (you coordinate); answered by `Ensemble`.
    /// What clients such as `bench` send.
    PredictEnsemble { rows: TypedRows },
    /// The columns rows for you should carry, and their kinds; answered by `Schema` (or
    /// `NoModel`). A member answers with its own model's columns, a node asked by a client
    /// with the cluster's.
    Schema,
}

/// A model as its owner announced it: fetched from the owner, in chunks, by whoever scores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub node: String,
    pub version: u64,
    /// Length of the serialized model in bytes.
    pub size: u64,
}

/// A serialized model and the node that trained it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBlob {
    pub node: String,
    pub bytes: Bytes,
}

/// What a node says about its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub node: String,
    pub version: u64,
    pub rows_train: usize,
    pub rows_valid: usize,
    pub train_ms: u64,
    /// The model's scores on the node's own validation split.
    pub valid: Option<Scores>,
    /// The learner fitted: the configured kind, or the one `auto` chose.
    #[serde(default)]
    pub kind: String,
    /// `kind = "auto"`: the chosen learner's mean cross-validation loss on the training split.
    #[serde(default)]
    pub cv_score: Option<f64>,
}

/// The large payloads are boxed: a response moves through a few channels on its way to its
/// caller, and a prediction's should not carry the size of a model summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong,
    /// The JSON object a `--json` console prints for the command.
    Output {
        json: String,
    },
    /// The request could not be served.
    Error {
        reason: String,
    },
    Trained {
        summary: Box<ModelSummary>,
        /// Length of the serialized model in bytes.
        size: u64,
    },
    Model {
        summary: Box<ModelSummary>,
        size: u64,
    },
    /// Part of model `version`: `bytes` from the requested offset, of `total` bytes in all.
    ModelChunk {
        version: u64,
        total: u64,
        bytes: Bytes,
    },
    /// `Evaluate` could not fetch the models of `nodes`, or they are not valid models.
    Unfetched {
        nodes: Vec<String>,
        reason: String,
    },
    Evaluated {
        eval: Box<SplitEval>,
    },
    Predictions {
        node: String,
        version: u64,
        /// This node's weight in a weighted aggregation (from its validation score).
        weight: f64,
        #[serde(with = "super::packed")]
        preds: Predictions,
    },
    /// This node has no model yet.
    NoModel,
    /// The cluster's aggregated predictions, and how many nodes contributed.
    Ensemble {
        #[serde(with = "super::packed")]
        preds: Predictions,
        answered: u32,
        asked: u32,
    },
    /// Answers `Schema`: the model version it describes (0 for the cluster's).
    Schema {
        version: u64,
        schema: Box<Schema>,
    },
}
