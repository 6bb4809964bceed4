//! Commands: what a person types on a node's console, what `ctl` sends, and what the HTTP API
//! maps its routes to. [`parse`] turns one typed line into a [`Command`]; it is a pure function, so
//! every front end parses the same way and the parser is tested without a node.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::ml::{Rows, TypedRows};
use crate::net::Access;

/// A command typed on a node's stdin or sent with `ctl`.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Status,
    Peers,
    /// Global training with cross-validation.
    Train,
    /// Retrain this node only.
    TrainLocal,
    /// Cross-validation of the current models, without retraining.
    Evaluate,
    /// Global prediction of one row given as a JSON object.
    Predict {
        row: Map<String, Value>,
        explain: bool,
    },
    /// Global prediction of every row of a CSV file.
    PredictFile {
        input: PathBuf,
        output: Option<PathBuf>,
    },
    /// The latest drift report of this node's shard.
    Drift,
    /// Prediction of a batch of rows, one answer per row: with the whole cluster, or with this
    /// node's own model only (`local`). Sent by the HTTP API; not typed on the console.
    PredictRows {
        rows: Rows,
        local: bool,
    },
    /// [`Command::PredictRows`] with rows already resolved by the cluster's schema (what
    /// [`Command::Schema`] answers), e.g. a CSV body read with [`crate::ml::CsvBatches`]. Not
    /// typed on the console.
    PredictTyped {
        rows: TypedRows,
        local: bool,
    },
    /// The columns requests are resolved by before they reach the models, and their kinds.
    Schema,
    /// This node's current model: its input columns, task and version.
    Model,
    /// The score matrix of the last `train` or `evaluate` this node coordinated.
    LastReport,
    /// Make one of this node's actors fail (only with `[testing] faults = true`).
    Fault(Fault),
    Quit,
}

/// What a `fault` command makes fail (tests of supervision; `[testing] faults = true` only).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The model actor stops, as if a handler had failed.
    Model,
    /// The data watcher stops.
    Watcher,
    /// The actor that owns the link to this peer stops.
    Peer(String),
    /// The next command the cluster actor runs panics inside its dispatch.
    Cluster,
    /// The next prediction with this node's model panics inside the model code.
    PanicNextPredict,
}

/// A line that is not a command, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        ParseError(message.into())
    }
}

impl Command {
    /// The least a client needs to run this command: a reader may look and predict, only an
    /// operator may change or stop the node.
    pub fn needs(&self) -> Access {
        match self {
            Command::Help
            | Command::Status
            | Command::Peers
            | Command::Evaluate
            | Command::Predict { .. }
            | Command::PredictFile { .. }
            | Command::Drift
            | Command::PredictRows { .. }
            | Command::PredictTyped { .. }
            | Command::Schema
            | Command::Model
            | Command::LastReport => Access::Reader,
            Command::Train | Command::TrainLocal | Command::Fault(_) | Command::Quit => {
                Access::Operator
            }
        }
    }
}

/// One line per command, for `help` and for unknown commands.
pub const HELP: &[(&str, &str)] = &[
    ("help", "this list"),
    ("status", "this node: id, address, members, peers up"),
    ("peers", "every known peer with its address and state"),
    (
        "model",
        "this node's model: version, learner, features, rows trained on",
    ),
    (
        "train",
        "train every node on its shard, cross-validate, print the score matrix",
    ),
    ("train local", "retrain this node only"),
    (
        "drift",
        "new rows since the last training and how they compare with it",
    ),
    (
        "schema",
        "the columns predictions are resolved by, and their kinds (number or category)",
    ),
    (
        "evaluate",
        "cross-validate the current models without retraining",
    ),
    (
        "predict [--explain] {json}",
        "predict one row with the whole cluster, e.g. predict {\"LotArea\": 8450}",
    ),
    (
        "predict-file IN.csv [OUT.csv]",
        "predict every row of a CSV (Id,<label> lines when it has an Id column)",
    ),
    (
        "fault model|watcher|cluster|panic-next-predict|peer ID",
        "make an actor fail, to test supervision ([testing] faults = true only)",
    ),
    ("quit", "leave the cluster and stop this node"),
];

/// Parses one line. `Ok(None)` for a blank line or a `#` comment.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(Some(cmd))
        } else {
            Err(ParseError(format!("`{word}` takes no arguments")))
        }
    };
    match word {
        "help" | "?" => no_args(Command::Help),
        "status" => no_args(Command::Status),
        "peers" => no_args(Command::Peers),
        "train" => match rest {
            "" => Ok(Some(Command::Train)),
            "local" => Ok(Some(Command::TrainLocal)),
            other => Err(ParseError(format!(
                "`train` takes nothing or `local`, not {other:?}"
            ))),
        },
        "evaluate" => no_args(Command::Evaluate),
        "drift" => no_args(Command::Drift),
        "schema" => no_args(Command::Schema),
        "model" => no_args(Command::Model),
        "fault" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
            ["model"] => Ok(Some(Command::Fault(Fault::Model))),
            ["watcher"] => Ok(Some(Command::Fault(Fault::Watcher))),
            ["cluster"] => Ok(Some(Command::Fault(Fault::Cluster))),
            ["panic-next-predict"] => Ok(Some(Command::Fault(Fault::PanicNextPredict))),
            ["peer", id] => Ok(Some(Command::Fault(Fault::Peer(id.to_string())))),
            _ => Err(ParseError::new(
                "usage: fault model | watcher | cluster | panic-next-predict | peer ID",
            )),
        },
        "predict" => parse_predict(rest).map(Some),
        "predict-file" => {
            let mut parts = rest.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(input), output, None) => Ok(Some(Command::PredictFile {
                    input: input.into(),
                    output: output.map(PathBuf::from),
                })),
                _ => Err(ParseError::new("usage: predict-file IN.csv [OUT.csv]")),
            }
        }
        "quit" | "exit" => no_args(Command::Quit),
        other => Err(ParseError(format!(
            "unknown command {other:?}; commands: {}",
            command_names().join(", ")
        ))),
    }
}

/// The distinct first words of the commands.
fn command_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = HELP
        .iter()
        .filter_map(|(c, _)| c.split_whitespace().next())
        .collect();
    names.dedup();
    names
}

fn parse_predict(rest: &str) -> Result<Command, ParseError> {
    let (explain, body) = match rest.strip_prefix("--explain") {
        Some(body) => (true, body.trim()),
        None => (false, rest),
    };
    if body.is_empty() {
        return Err(ParseError::new(
            "usage: predict [--explain] {\"feature\": value, ...}",
        ));
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(row)) => Ok(Command::Predict { row, explain }),
        Ok(_) => Err(ParseError::new(
            "predict takes one JSON object of feature: value",
        )),
        Err(e) => Err(ParseError(format!("predict: invalid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_commands_and_ignores_blank_lines() {
        assert_eq!(parse("status"), Ok(Some(Command::Status)));
        assert_eq!(parse("  peers \n"), Ok(Some(Command::Peers)));
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
        assert_eq!(parse("quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse("# a comment"), Ok(None));
    }

    #[test]
    fn parses_ml_commands() {
        assert_eq!(parse("train"), Ok(Some(Command::Train)));
        assert_eq!(parse("train local"), Ok(Some(Command::TrainLocal)));
        assert_eq!(parse("evaluate"), Ok(Some(Command::Evaluate)));
        assert_eq!(parse("model"), Ok(Some(Command::Model)));
        match parse(r#"predict --explain {"a": 1, "b": "x"}"#) {
            Ok(Some(Command::Predict { row, explain })) => {
                assert!(explain);
                assert_eq!(row.len(), 2);
                assert_eq!(row["a"], json!(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"predict {"a": 1}"#),
            Ok(Some(Command::Predict { explain: false, .. }))
        ));
        assert_eq!(
            parse("predict-file in.csv out.csv"),
            Ok(Some(Command::PredictFile {
                input: "in.csv".into(),
                output: Some("out.csv".into())
            }))
        );
        assert!(parse("predict").is_err());
        assert!(parse("predict [1, 2]").is_err());
        assert!(parse("predict {oops").is_err());
        assert!(parse("predict-file").is_err());
        assert!(parse("predict-file a b c").is_err());
        assert!(parse("train everything").is_err());
        assert_eq!(parse("fault model"), Ok(Some(Command::Fault(Fault::Model))));
        assert_eq!(
            parse("fault peer n3"),
            Ok(Some(Command::Fault(Fault::Peer("n3".into()))))
        );
        assert_eq!(parse("drift"), Ok(Some(Command::Drift)));
        assert_eq!(parse("schema"), Ok(Some(Command::Schema)));
        assert_eq!(
            parse("fault watcher"),
            Ok(Some(Command::Fault(Fault::Watcher)))
        );
        assert_eq!(
            parse("fault cluster"),
            Ok(Some(Command::Fault(Fault::Cluster)))
        );
        assert_eq!(
            parse("fault panic-next-predict"),
            Ok(Some(Command::Fault(Fault::PanicNextPredict)))
        );
        assert!(parse("fault").is_err());
        assert!(parse("fault peer").is_err());
    }

    #[test]
    fn unknown_commands_and_stray_arguments_are_errors() {
        let err = parse("bogus").expect_err("unknown");
        let err = err.to_string();
        assert!(err.contains("bogus") && err.contains("status"), "{err}");
        assert!(parse("status now").is_err());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// Any line parses to a command, nothing, or an error: never a panic.
            #[test]
            fn any_line_is_handled(line in ".{0,200}") {
                let _ = parse(&line);
            }
        }
    }
}
