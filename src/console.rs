//! The console: parsing a typed line into a [`Command`] (a pure function) and rendering a
//! command's result, either as one JSON line (`--json`, for scripts) or as text for a person.
//! The same JSON object is what `ensemble-node ctl` prints.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

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
    /// Make one of this node's actors fail (only with `[testing] faults = true`).
    Fault(Fault),
    Quit,
}

/// The actor a `fault` command makes fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Model,
    Watcher,
    Peer(String),
}

/// One line per command, for `help` and for unknown commands.
pub const HELP: &[(&str, &str)] = &[
    ("help", "this list"),
    ("status", "this node: id, address, members, peers up"),
    ("peers", "every known peer with its address and state"),
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
        "fault model|watcher|peer ID",
        "make an actor fail, to test supervision ([testing] faults = true only)",
    ),
    ("quit", "leave the cluster and stop this node"),
];

/// Parses one line. `Ok(None)` for a blank line or a `#` comment.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
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
            Err(format!("`{word}` takes no arguments"))
        }
    };
    match word {
        "help" | "?" => no_args(Command::Help),
        "status" => no_args(Command::Status),
        "peers" => no_args(Command::Peers),
        "train" => match rest {
            "" => Ok(Some(Command::Train)),
            "local" => Ok(Some(Command::TrainLocal)),
            other => Err(format!("`train` takes nothing or `local`, not {other:?}")),
        },
        "evaluate" => no_args(Command::Evaluate),
        "drift" => no_args(Command::Drift),
        "fault" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
            ["model"] => Ok(Some(Command::Fault(Fault::Model))),
            ["watcher"] => Ok(Some(Command::Fault(Fault::Watcher))),
            ["peer", id] => Ok(Some(Command::Fault(Fault::Peer(id.to_string())))),
            _ => Err("usage: fault model | fault watcher | fault peer ID".into()),
        },
        "predict" => parse_predict(rest).map(Some),
        "predict-file" => {
            let mut parts = rest.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(input), output, None) => Ok(Some(Command::PredictFile {
                    input: input.into(),
                    output: output.map(PathBuf::from),
                })),
                _ => Err("usage: predict-file IN.csv [OUT.csv]".into()),
            }
        }
        "quit" | "exit" => no_args(Command::Quit),
        other => Err(format!(
            "unknown command {other:?}; commands: {}",
            command_names().join(", ")
        )),
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

fn parse_predict(rest: &str) -> Result<Command, String> {
    let (explain, body) = match rest.strip_prefix("--explain") {
        Some(body) => (true, body.trim()),
        None => (false, rest),
    };
    if body.is_empty() {
        return Err("usage: predict [--explain] {\"feature\": value, ...}".into());
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(row)) => Ok(Command::Predict { row, explain }),
        Ok(_) => Err("predict takes one JSON object of feature: value".into()),
        Err(e) => Err(format!("predict: invalid JSON: {e}")),
    }
}

/// The JSON answer for an error.
pub fn error(message: impl Into<String>) -> Value {
    json!({"ok": false, "error": message.into()})
}

/// The JSON answer for `help`.
pub fn help() -> Value {
    let commands: Vec<Value> = HELP
        .iter()
        .map(|(c, d)| json!({"command": c, "does": d}))
        .collect();
    json!({"ok": true, "commands": commands})
}

/// Renders a result for a person. Failures read `error: ...`.
pub fn render_human(result: &Value) -> String {
    if result.get("ok") == Some(&Value::Bool(false)) {
        let msg = result
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("failed");
        return format!("error: {msg}");
    }
    if let Some(commands) = result.get("commands").and_then(Value::as_array) {
        return commands
            .iter()
            .map(|c| {
                format!(
                    "  {:<24} {}",
                    c["command"].as_str().unwrap_or(""),
                    c["does"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    if result.get("matrix").is_some() {
        return render_matrix(result);
    }
    if let Some(peers) = result.get("peers").and_then(Value::as_array) {
        if peers.is_empty() {
            return "no peers".into();
        }
        let mut out = format!("{:<12} {:<22} {}", "id", "address", "state");
        for p in peers {
            out.push_str(&format!(
                "\n{:<12} {:<22} {}",
                p["id"].as_str().unwrap_or(""),
                p["addr"].as_str().unwrap_or(""),
                p["state"].as_str().unwrap_or("")
            ));
        }
        return out;
    }
    // Everything else: one `key: value` per line, nested values as compact JSON.
    match result.as_object() {
        Some(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "ok")
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => result.to_string(),
    }
}

/// The score matrix of `train` / `evaluate` as a table: one row per model, one column per
/// validation split, each model's mean, then the ensemble per split and overall.
fn render_matrix(r: &Value) -> String {
    let names = |key: &str| -> Vec<String> {
        r[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (models, splits) = (names("models"), names("splits"));
    let metric = r["metric"].as_str().unwrap_or("score");
    let cell = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.4}"));
    let mut out = format!("{:<16}", format!("{metric} of"));
    for s in &splits {
        out.push_str(&format!(" {:>9}", format!("on {s}")));
    }
    out.push_str(&format!(" {:>9}", "mean"));
    for (i, m) in models.iter().enumerate() {
        out.push_str(&format!("\n{:<16}", format!("model {m}")));
        for j in 0..splits.len() {
            out.push_str(&format!(" {:>9}", cell(&r["matrix"][i][j])));
        }
        out.push_str(&format!(" {:>9}", cell(&r["model_mean"][i])));
    }
    out.push_str(&format!("\n{:<16}", "ensemble"));
    for s in &splits {
        out.push_str(&format!(" {:>9}", cell(&r["ensemble_by_split"][s][metric])));
    }
    let overall: Vec<String> = r["ensemble"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{k} {}",
                        v.as_f64().map_or("-".into(), |x| format!("{x:.4}"))
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&format!("\nensemble on all splits: {}", overall.join(", ")));
    let failed: Vec<String> = r["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    format!(
                        "{} ({})",
                        f["id"].as_str().unwrap_or("?"),
                        f["error"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !failed.is_empty() {
        out.push_str(&format!("\nfailed: {}", failed.join(", ")));
    }
    if let Some(ms) = r["ms"].as_u64() {
        out.push_str(&format!(
            "\n{} models, {} splits, {ms} ms",
            models.len(),
            splits.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            parse("fault watcher"),
            Ok(Some(Command::Fault(Fault::Watcher)))
        );
        assert!(parse("fault").is_err());
        assert!(parse("fault peer").is_err());
    }

    #[test]
    fn unknown_commands_and_stray_arguments_are_errors() {
        let err = parse("bogus").expect_err("unknown");
        assert!(err.contains("bogus") && err.contains("status"), "{err}");
        assert!(parse("status now").is_err());
    }

    #[test]
    fn human_rendering() {
        assert_eq!(render_human(&error("boom")), "error: boom");
        let peers =
            json!({"ok": true, "peers": [{"id": "n2", "addr": "127.0.0.1:1", "state": "up"}]});
        let text = render_human(&peers);
        assert!(text.contains("n2") && text.contains("up"), "{text}");
        let status = json!({"ok": true, "node": "n1", "members": 3});
        // Keys come in JSON object order (sorted).
        assert_eq!(render_human(&status), "members: 3\nnode: n1");
        assert!(render_human(&help()).contains("quit"));
        let trained = json!({
            "ok": true, "metric": "rmsle", "models": ["n1", "n2"], "splits": ["n1", "n2"],
            "matrix": [[0.1, 0.2], [0.3, null]], "model_mean": [0.15, 0.3],
            "ensemble_by_split": {"n1": {"rmsle": 0.12}, "n2": {"rmsle": 0.22}},
            "ensemble": {"rmsle": 0.17}, "failed": [{"id": "n3", "error": "down"}], "ms": 5
        });
        let table = render_human(&trained);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("on n1") && lines[0].contains("mean"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("model n1") && lines[1].contains("0.1500"),
            "{table}"
        );
        assert!(
            lines[2].contains("0.3000") && lines[2].contains(" -"),
            "{table}"
        );
        assert!(
            lines[3].starts_with("ensemble") && lines[3].contains("0.2200"),
            "{table}"
        );
        assert!(
            table.contains("rmsle 0.1700") && table.contains("n3 (down)"),
            "{table}"
        );
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
