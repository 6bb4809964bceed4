//! Typed answers: what every command returns. The console renders them for a person or as one
//! JSON line, `ctl` prints that line, and the HTTP API serves the same JSON; so the field names
//! here are an interface (README, "Console") and only ever grow.
//!
//! An [`Answer`] is either one of the command results or a [`Failure`]; [`Answer::to_json`] is
//! the one place that adds the `"ok"` field.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::actors::{DriftStatus, Restarts, Retrains};
use crate::cluster::PeerState;
use crate::command::HELP;
use crate::ml::{Predictions, Scores};

/// The answer to one command.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Help(Help),
    Status(Box<Status>),
    Peers(Peers),
    Train(Box<TrainReport>),
    TrainLocal(LocalTraining),
    Predict(Prediction),
    PredictFile(FileReport),
    Drift(Box<DriftStatus>),
    PredictRows(RowsPrediction),
    Schema(SchemaInfo),
    Model(Box<ModelInfo>),
    Fault(Injected),
    Quit(Leaving),
    Failure(Failure),
}

impl Answer {
    /// A failure with nothing but a message.
    pub fn error(message: impl Into<String>) -> Answer {
        Answer::Failure(Failure::new(message))
    }

    pub fn is_ok(&self) -> bool {
        !matches!(self, Answer::Failure(_))
    }

    /// The JSON object a `--json` console prints: the answer's fields and `"ok"`.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({"error": format!("cannot render the answer: {e}")}),
        );
        if let Value::Object(map) = &mut value {
            map.insert("ok".into(), Value::Bool(self.is_ok()));
        }
        value
    }
}

/// `help`: one line per command.
#[derive(Debug, Clone, Serialize)]
pub struct Help {
    pub commands: Vec<HelpLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HelpLine {
    pub command: &'static str,
    pub does: &'static str,
}

impl Help {
    pub fn new() -> Help {
        Help {
            commands: HELP
                .iter()
                .map(|&(command, does)| HelpLine { command, does })
                .collect(),
        }
    }
}

impl Default for Help {
    fn default() -> Self {
        Help::new()
    }
}

/// `status`: this node, its view of the cluster, and its model.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node: String,
    /// The address this node listens on.
    pub listen: String,
    /// The `host:port` peers dial to reach it.
    pub advertise: String,
    pub cluster: String,
    /// Members, this node included; a peer that left is not counted.
    pub members: usize,
    /// Peers up or suspect.
    pub peers_up: usize,
    pub peers_suspect: usize,
    /// Peers down or not reached yet.
    pub peers_down: usize,
    pub uptime_ms: u64,
    /// `None` before the first model.
    pub model_version: Option<u64>,
    pub training: bool,
    /// This node's model, plus foreign models while it scores them.
    pub models_held: usize,
    pub rows_train: Option<usize>,
    pub rows_valid: Option<usize>,
    /// The label column this node's shard is learned for (`None` without a shard).
    pub label: Option<String>,
    /// Supervisor restarts since the node started, per actor kind.
    pub restarts: Restarts,
    /// What the membership protocol sent and received since the node started.
    pub membership: MembershipTraffic,
    /// Trainings of this node's model since it started, per cause.
    pub retrains: Retrains,
}

/// The membership protocol's traffic and verdicts at one node.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MembershipTraffic {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
    /// Members this node suspected from its own probes.
    pub suspicions: u64,
    /// Times this node refuted news of its own failure.
    pub refutations: u64,
}

/// `peers`: every known peer.
#[derive(Debug, Clone, Serialize)]
pub struct Peers {
    pub peers: Vec<PeerEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerEntry {
    pub id: String,
    pub addr: String,
    pub state: PeerState,
    /// Bytes of frames received from and sent to the peer over the current link, since it
    /// opened (`null` without a link).
    pub received_bytes: Option<u64>,
    pub sent_bytes: Option<u64>,
}

/// A node that could not take part in a cluster-wide request, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failed {
    pub id: String,
    pub error: String,
}

impl Failed {
    pub fn new(id: impl Into<String>, error: impl std::fmt::Display) -> Failed {
        Failed {
            id: id.into(),
            error: error.to_string(),
        }
    }
}

/// `train` / `evaluate`: the score matrix of every model on every validation split.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Whether the models were trained for this report (`train`) or taken as they were.
    pub retrained: bool,
    /// The score in `matrix` and `model_mean`: `rmsle`, `rmse` or `accuracy`.
    pub metric: String,
    /// Row `i` of the matrix is the model of `models[i]`.
    pub models: Vec<String>,
    /// Column `j` of the matrix is the validation split of `splits[j]`.
    pub splits: Vec<String>,
    pub matrix: Vec<Vec<Option<f64>>>,
    pub model_mean: Vec<Option<f64>>,
    pub ensemble_by_split: BTreeMap<String, Scores>,
    /// The aggregated prediction scored on the union of the validation splits.
    pub ensemble: Ensemble,
    pub nodes: Vec<NodeModel>,
    pub failed: Vec<Failed>,
    pub ms: u64,
    /// Every node asked trained (or sent its model) and scored the models.
    pub complete: bool,
    /// Nodes that did both.
    pub completed: usize,
    /// Nodes the cluster knows, this one included.
    pub asked: usize,
    /// `cluster.min_quorum`: fewer completed nodes make `ctl` exit with an error.
    pub quorum: usize,
}

/// The ensemble's overall scores, or why they could not be computed.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Ensemble {
    Scores(Scores),
    Error { error: String },
}

/// One node's model in a [`TrainReport`].
#[derive(Debug, Clone, Serialize)]
pub struct NodeModel {
    pub id: String,
    pub version: u64,
    pub rows_train: usize,
    pub rows_valid: usize,
    pub train_ms: u64,
    /// The learner the node fitted (with `kind = "auto"`, the one it chose).
    pub kind: String,
    /// `kind = "auto"`: the chosen learner's mean cross-validation loss on the training split.
    pub cv_score: Option<f64>,
}

/// `train local`: the new model of this node.
#[derive(Debug, Clone, Serialize)]
pub struct LocalTraining {
    pub node: String,
    pub version: u64,
    pub rows_train: usize,
    pub rows_valid: usize,
    pub train_ms: u64,
    /// Its scores on this node's validation split.
    pub valid: Option<Scores>,
}

/// One predicted value: a number (regression) or a class label.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Predicted {
    Number(f64),
    Label(String),
}

impl Predicted {
    /// Row `i` of `preds`, if there is one.
    pub fn at(preds: &Predictions, i: usize) -> Option<Predicted> {
        match preds {
            Predictions::Regression(v) => v.get(i).map(|&x| Predicted::Number(x)),
            Predictions::Classification(v) => v.get(i).map(|s| Predicted::Label(s.clone())),
        }
    }
}

impl std::fmt::Display for Predicted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Predicted::Number(x) => write!(f, "{x}"),
            Predicted::Label(s) => f.write_str(s),
        }
    }
}

/// `predict`: the cluster's prediction of one row.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub prediction: Predicted,
    /// Nodes that answered in time.
    pub answered: usize,
    /// Nodes with a model that were asked.
    pub asked: usize,
    pub failed: Vec<Failed>,
    /// With `--explain`: each node's own prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodePrediction>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodePrediction {
    pub id: String,
    pub version: u64,
    pub prediction: Predicted,
    /// The node's weight when `cluster.aggregation = "weighted"` (from its validation score).
    pub weight: f64,
}

/// A batch prediction: one value per row, in row order.
#[derive(Debug, Clone, Serialize)]
pub struct RowsPrediction {
    pub predictions: Vec<Predicted>,
    /// `regression` or `classification`.
    pub task: String,
    pub answered: usize,
    pub asked: usize,
    pub failed: Vec<Failed>,
}

impl RowsPrediction {
    /// The answer of a flow that aggregated `preds` from `answered` of `asked` members.
    pub fn new(preds: &Predictions, answered: usize, asked: usize, failed: Vec<Failed>) -> Self {
        let (task, predictions) = match preds {
            Predictions::Regression(v) => (
                "regression",
                v.iter().map(|&x| Predicted::Number(x)).collect(),
            ),
            Predictions::Classification(v) => (
                "classification",
                v.iter().map(|s| Predicted::Label(s.clone())).collect(),
            ),
        };
        RowsPrediction {
            predictions,
            task: task.into(),
            answered,
            asked,
            failed,
        }
    }
}

/// This node's current model, as a client needs it to build a request.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub node: String,
    pub version: u64,
    /// The learner fitted, e.g. `tree` (with `kind = "auto"`, the one it chose).
    pub kind: String,
    /// `regression` or `classification`.
    pub task: String,
    pub label: String,
    /// The input columns the model uses, in its order.
    pub features: Vec<FeatureInfo>,
    /// Class labels (classification), sorted.
    pub classes: Vec<String>,
    pub rows_train: usize,
    pub train_ms: u64,
    /// `kind = "auto"`: the chosen learner's mean cross-validation loss on the training split.
    pub cv_score: Option<f64>,
    /// Size of the serialized model: what each member scoring it fetches from this node.
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureInfo {
    pub name: String,
    pub numeric: bool,
}

/// `predict-file`: where the predictions went.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub rows: usize,
    pub out: String,
    pub ms: u64,
    pub rows_per_s: f64,
    /// The fewest nodes that answered any batch.
    pub answered: usize,
    pub asked: usize,
    pub failed: Vec<Failed>,
}

/// `schema`: the columns a request is resolved by before it reaches the models (the union of
/// every model's columns; a column is a category when any model reads it as text). `complete`
/// is false while some member's columns are not known: columns outside `columns` then travel
/// too.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaInfo {
    pub columns: crate::ml::Schema,
    pub complete: bool,
}

/// `fault ...`: the fault was injected.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub injected: bool,
}

/// `quit`: the node is leaving the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Leaving {
    pub leaving: bool,
}

/// A command that failed. Cluster-wide requests also say who was asked and who failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Failed>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            error: message.into(),
            answered: None,
            asked: None,
            failed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ok_is_added_to_every_answer() {
        let a = Answer::Quit(Leaving { leaving: true });
        assert_eq!(a.to_json(), json!({"ok": true, "leaving": true}));
        let f = Answer::error("boom");
        assert_eq!(f.to_json(), json!({"ok": false, "error": "boom"}));
    }

    #[test]
    fn predictions_keep_their_documented_fields() {
        let p = Answer::Predict(Prediction {
            prediction: Predicted::Number(1.5),
            answered: 2,
            asked: 3,
            failed: vec![Failed::new("n3", "down")],
            nodes: None,
        });
        assert_eq!(
            p.to_json(),
            json!({"ok": true, "prediction": 1.5, "answered": 2, "asked": 3,
                   "failed": [{"id": "n3", "error": "down"}]})
        );
        let label = Predicted::at(&Predictions::Classification(vec!["B".into()]), 0);
        assert_eq!(label, Some(Predicted::Label("B".into())));
        assert_eq!(Predicted::at(&Predictions::Regression(vec![]), 0), None);
    }
}
