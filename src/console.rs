//! The console: a node's stdin, read on a thread of its own, each line parsed
//! ([`crate::command::parse`]), run by the cluster actor, and its typed [`Answer`] printed,
//! either as one JSON line (`--json`, for scripts) or as text for a person. Logs never go to
//! stdout, so stdout carries answers only.

use std::io::BufRead;

use actix::Addr;

use crate::actors::{ClusterActor, Exec};
use crate::answer::{Answer, Ensemble, TrainReport};
use crate::command::{self, Command};

/// How the console talks to its user.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleOptions {
    /// One JSON object per command, on one line.
    pub json: bool,
}

/// Reads commands from stdin on a thread of its own and prints their answers in order. At end
/// of input the node keeps running (it may have been started in the background).
pub fn spawn(cluster: Addr<ClusterActor>, opts: ConsoleOptions) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let answer = match command::parse(&line) {
                Ok(None) => continue,
                Ok(Some(command)) => {
                    let quitting = command == Command::Quit;
                    match futures::executor::block_on(cluster.send(Exec(command))) {
                        Ok(_) if quitting => {
                            // The node is leaving; in JSON mode `quit` prints nothing, so a
                            // script reads exactly one line per other command.
                            if !opts.json {
                                println!("leaving the cluster");
                            }
                            return;
                        }
                        Ok(answer) => answer,
                        Err(e) => Answer::error(format!("the node is not answering: {e}")),
                    }
                }
                Err(e) => Answer::error(e.to_string()),
            };
            if opts.json {
                println!("{}", answer.to_json());
            } else {
                println!("{}", render_human(&answer));
            }
        }
        tracing::debug!("stdin closed; the node keeps running");
    });
}

/// Renders an answer for a person. Failures read `error: ...`.
pub fn render_human(answer: &Answer) -> String {
    match answer {
        Answer::Failure(f) => format!("error: {}", f.error),
        Answer::Help(help) => help
            .commands
            .iter()
            .map(|c| format!("  {:<24} {}", c.command, c.does))
            .collect::<Vec<_>>()
            .join("\n"),
        Answer::Train(report) => render_matrix(report),
        Answer::Peers(p) if p.peers.is_empty() => "no peers".into(),
        Answer::Peers(p) => {
            let mut out = format!("{:<12} {:<22} {}", "id", "address", "state");
            for peer in &p.peers {
                let state = serde_json::to_value(peer.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                out.push_str(&format!("\n{:<12} {:<22} {state}", peer.id, peer.addr));
            }
            out
        }
        other => key_values(&other.to_json()),
    }
}

/// One `key: value` per line (keys in JSON object order), nested values as compact JSON.
fn key_values(value: &serde_json::Value) -> String {
    match value.as_object() {
        Some(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "ok")
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => value.to_string(),
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.4}"))
}

/// The score matrix of `train` / `evaluate` as a table: one row per model, one column per
/// validation split, each model's mean, then the ensemble per split and overall.
fn render_matrix(r: &TrainReport) -> String {
    let metric = r.metric.as_str();
    let mut out = format!("{:<16}", format!("{metric} of"));
    for s in &r.splits {
        out.push_str(&format!(" {:>9}", format!("on {s}")));
    }
    out.push_str(&format!(" {:>9}", "mean"));
    for (i, m) in r.models.iter().enumerate() {
        out.push_str(&format!("\n{:<16}", format!("model {m}")));
        let row = r.matrix.get(i);
        for j in 0..r.splits.len() {
            let v = row.and_then(|row| row.get(j)).copied().flatten();
            out.push_str(&format!(" {:>9}", cell(v)));
        }
        out.push_str(&format!(
            " {:>9}",
            cell(r.model_mean.get(i).copied().flatten())
        ));
    }
    out.push_str(&format!("\n{:<16}", "ensemble"));
    for s in &r.splits {
        let v = r
            .ensemble_by_split
            .get(s)
            .and_then(|scores| named(&serde_json::to_value(scores).ok()?, metric));
        out.push_str(&format!(" {:>9}", cell(v)));
    }
    let overall = match &r.ensemble {
        Ensemble::Scores(scores) => match serde_json::to_value(scores) {
            Ok(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| format!("{k} {}", cell(v.as_f64())))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        },
        Ensemble::Error { error } => format!("not available ({error})"),
    };
    out.push_str(&format!("\nensemble on all splits: {overall}"));
    if !r.failed.is_empty() {
        let failed: Vec<String> = r
            .failed
            .iter()
            .map(|f| format!("{} ({})", f.id, f.error))
            .collect();
        out.push_str(&format!("\nfailed: {}", failed.join(", ")));
        out.push_str(&format!(
            "\nwarning: incomplete: {} of {} nodes completed{}",
            r.completed,
            r.asked,
            if r.completed < r.quorum {
                format!(", fewer than the quorum of {}", r.quorum)
            } else {
                String::new()
            }
        ));
    }
    out.push_str(&format!(
        "\n{} models, {} splits, {} ms",
        r.models.len(),
        r.splits.len(),
        r.ms
    ));
    out
}

fn named(scores: &serde_json::Value, name: &str) -> Option<f64> {
    scores.get(name).and_then(serde_json::Value::as_f64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::answer::{Failed, Help, PeerEntry, Peers};
    use crate::cluster::PeerState;
    use crate::ml::{RegressionScores, Scores};

    fn rmsle(v: f64) -> Scores {
        Scores::Regression(RegressionScores {
            rmse: 1.0,
            rmsle: Some(v),
            r2: 0.5,
            mae: 0.5,
        })
    }

    #[test]
    fn human_rendering() {
        assert_eq!(render_human(&Answer::error("boom")), "error: boom");
        let peers = Answer::Peers(Peers {
            peers: vec![PeerEntry {
                id: "n2".into(),
                addr: "127.0.0.1:1".into(),
                state: PeerState::Up,
                received_bytes: Some(10),
                sent_bytes: Some(20),
            }],
        });
        let text = render_human(&peers);
        assert!(text.contains("n2") && text.contains("up"), "{text}");
        assert!(render_human(&Answer::Help(Help::new())).contains("quit"));
        let trained = Answer::Train(Box::new(TrainReport {
            retrained: true,
            metric: "rmsle".into(),
            models: vec!["n1".into(), "n2".into()],
            splits: vec!["n1".into(), "n2".into()],
            matrix: vec![vec![Some(0.1), Some(0.2)], vec![Some(0.3), None]],
            model_mean: vec![Some(0.15), Some(0.3)],
            ensemble_by_split: BTreeMap::from([
                ("n1".into(), rmsle(0.12)),
                ("n2".into(), rmsle(0.22)),
            ]),
            ensemble: Ensemble::Scores(rmsle(0.17)),
            nodes: vec![],
            failed: vec![Failed::new("n3", "down")],
            ms: 5,
            complete: false,
            completed: 2,
            asked: 3,
            quorum: 2,
        }));
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
}
