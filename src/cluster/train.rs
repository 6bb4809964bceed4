//! Global training and evaluation: every member trains (or describes its current model), every
//! member holding a model fetches the others' models from their owners (see [`super::exchange`])
//! and scores them all on its own validation split, and the coordinator assembles the score
//! matrix. Members that fail, time out or answer nonsense are reported in `failed`; the others
//! complete without them. A model nobody could fetch (its owner died after training) is dropped
//! and the scoring runs once more without it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::member::{Asked, Plan};
use crate::answer::{Answer, Ensemble, Failed, Failure, NodeModel, TrainReport};
use crate::ml::{combine_splits, Scores, SplitEval};
use crate::protocol::{ModelRef, ModelSummary, Request, Response};

/// Why a member's answer is not what the flow asked for.
pub(super) fn unexpected(response: &Response) -> String {
    match response {
        Response::Error { reason } => reason.clone(),
        Response::NoModel => "no model yet".into(),
        other => format!("unexpected answer {}", variant(other)),
    }
}

fn variant(response: &Response) -> &'static str {
    match response {
        Response::Pong => "pong",
        Response::Output { .. } => "output",
        Response::Error { .. } => "error",
        Response::Trained { .. } => "trained",
        Response::Model { .. } => "model",
        Response::ModelChunk { .. } => "model-chunk",
        Response::Unfetched { .. } => "unfetched",
        Response::Evaluated { .. } => "evaluated",
        Response::Predictions { .. } => "predictions",
        Response::NoModel => "no-model",
        Response::Ensemble { .. } => "ensemble",
        Response::Schema { .. } => "schema",
    }
}

/// A score by name (`None` for an undefined RMSLE or a name of the other task).
fn metric(scores: &Scores, name: &str) -> Option<f64> {
    match (scores, name) {
        (Scores::Regression(r), "rmse") => Some(r.rmse),
        (Scores::Regression(r), "rmsle") => r.rmsle,
        (Scores::Regression(r), "r2") => Some(r.r2),
        (Scores::Regression(r), "mae") => Some(r.mae),
        (Scores::Classification(c), "accuracy") => Some(c.accuracy),
        (Scores::Classification(c), "precision") => Some(c.precision),
        (Scores::Classification(c), "recall") => Some(c.recall),
        (Scores::Classification(c), "f1") => Some(c.f1),
        _ => None,
    }
}

/// A member holding a model for this round.
struct Holder<'a> {
    member: &'a Asked,
    summary: ModelSummary,
    model: ModelRef,
}

/// Global training (`retrain`) or evaluation of the current models (`!retrain`).
pub async fn cross_validate(plan: Plan, retrain: bool) -> Answer {
    let started = Instant::now();
    let mut failed: Vec<Failed> = plan
        .unreachable
        .iter()
        .map(|id| Failed::new(id, "down"))
        .collect();

    // 1. Every node trains at once (or sends its current model).
    let request = if retrain {
        Request::Train
    } else {
        Request::GetModel
    };
    let answers = join_all(
        plan.members
            .iter()
            .map(|m| m.member.call(request.clone(), plan.long_deadline)),
    )
    .await;
    let mut holders: Vec<Holder> = Vec::new();
    for (member, answer) in plan.members.iter().zip(answers) {
        match answer {
            Ok(Response::Trained { summary, size }) | Ok(Response::Model { summary, size }) => {
                let model = ModelRef {
                    node: member.id.clone(),
                    version: summary.version,
                    size,
                };
                holders.push(Holder {
                    member,
                    summary: *summary,
                    model,
                });
            }
            Ok(other) => failed.push(Failed::new(&member.id, unexpected(&other))),
            Err(e) => failed.push(Failed::new(&member.id, e)),
        }
    }
    if holders.is_empty() {
        return failure("no node has a model", failed);
    }

    // 2. Every node holding a model fetches the others' and scores them all on its own
    //    validation split. A model that could not be fetched or loaded is dropped, once.
    let mut round = score(&holders, plan.long_deadline).await;
    if !round.unfetched.is_empty() {
        // Run again without the models that could not be fetched or are not valid models, and
        // without the nodes that failed.
        // A node whose model was refused is reported for that, whatever else it failed.
        let mut dropped: Vec<Failed> = round
            .unfetched
            .iter()
            .map(|(id, why)| Failed::new(id, why))
            .collect();
        for f in std::mem::take(&mut round.failed) {
            if !dropped.iter().any(|d| d.id == f.id) {
                dropped.push(f);
            }
        }
        holders.retain(|h| !dropped.iter().any(|f| f.id == h.member.id));
        failed.extend(dropped);
        if holders.is_empty() {
            return failure("no node has a model", failed);
        }
        round = score(&holders, plan.long_deadline).await;
        // A second miss: the nodes that could not fetch failed; the others' scores stand.
        failed.append(&mut round.missed);
    }
    failed.append(&mut round.failed);
    let splits = round.splits;
    if splits.is_empty() {
        return failure("no node could score the models", failed);
    }
    let mut report = report(&holders, &splits, failed, started.elapsed(), retrain);
    report.asked = plan.nodes();
    report.quorum = plan.quorum();
    Answer::Train(Box::new(report))
}

/// What one scoring round gave.
struct Round {
    splits: Vec<(String, SplitEval)>,
    /// Owners whose model some holder could not fetch or load, with the first reason given.
    unfetched: Vec<(String, String)>,
    /// The holders that could not fetch them, and why.
    missed: Vec<Failed>,
    failed: Vec<Failed>,
}

/// Asks every holder to score every holder's model.
async fn score(holders: &[Holder<'_>], deadline: Duration) -> Round {
    let models: Vec<ModelRef> = holders.iter().map(|h| h.model.clone()).collect();
    let request = Request::Evaluate { models };
    let answers = join_all(
        holders
            .iter()
            .map(|h| h.member.member.call(request.clone(), deadline)),
    )
    .await;
    let mut round = Round {
        splits: Vec::new(),
        unfetched: Vec::new(),
        missed: Vec::new(),
        failed: Vec::new(),
    };
    for (holder, answer) in holders.iter().zip(answers) {
        let id = &holder.member.id;
        match answer {
            Ok(Response::Evaluated { eval }) if eval.per_model.len() == holders.len() => {
                round.splits.push((id.clone(), *eval))
            }
            Ok(Response::Evaluated { eval }) => round.failed.push(Failed::new(
                id,
                format!(
                    "scored {} models, {} were sent",
                    eval.per_model.len(),
                    holders.len()
                ),
            )),
            // Not this node's failure: the owners named (a model it could not fetch, or one that
            // is not a valid model) are dropped and it scores again.
            Ok(Response::Unfetched { nodes, reason }) => {
                for node in nodes {
                    let known = holders.iter().any(|h| h.member.id == node);
                    if known && !round.unfetched.iter().any(|(n, _)| n == &node) {
                        round.unfetched.push((node, reason.clone()));
                    }
                }
                round.missed.push(Failed::new(id, reason));
            }
            Ok(other) => round.failed.push(Failed::new(id, unexpected(&other))),
            Err(e) => round.failed.push(Failed::new(id, e)),
        }
    }
    round
}

fn failure(error: &str, failed: Vec<Failed>) -> Answer {
    Answer::Failure(Failure {
        failed,
        ..Failure::new(error)
    })
}

fn report(
    holders: &[Holder],
    splits: &[(String, SplitEval)],
    failed: Vec<Failed>,
    took: Duration,
    retrained: bool,
) -> TrainReport {
    let all_scores = || splits.iter().flat_map(|(_, e)| e.per_model.iter());
    // RMSLE when it is defined everywhere, else RMSE; accuracy for classification.
    let mut name = all_scores().next().map_or("rmse", |s| s.primary().0);
    if all_scores().any(|s| metric(s, name).is_none()) {
        name = "rmse";
    }
    let matrix: Vec<Vec<Option<f64>>> = (0..holders.len())
        .map(|i| {
            splits
                .iter()
                .map(|(_, e)| e.per_model.get(i).and_then(|s| metric(s, name)))
                .collect()
        })
        .collect();
    let model_mean = matrix
        .iter()
        .map(|row| {
            let vals: Vec<f64> = row.iter().flatten().copied().collect();
            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
        })
        .collect();
    let evals: Vec<SplitEval> = splits.iter().map(|(_, e)| e.clone()).collect();
    let ensemble = match combine_splits(&evals) {
        Ok(s) => Ensemble::Scores(s),
        Err(e) => Ensemble::Error {
            error: e.to_string(),
        },
    };
    let nodes = holders
        .iter()
        .map(|h| NodeModel {
            id: h.member.id.clone(),
            version: h.summary.version,
            rows_train: h.summary.rows_train,
            rows_valid: h.summary.rows_valid,
            train_ms: h.summary.train_ms,
            kind: h.summary.kind.clone(),
            cv_score: h.summary.cv_score,
        })
        .collect();
    let ensemble_by_split: BTreeMap<String, Scores> = splits
        .iter()
        .map(|(id, e)| (id.clone(), e.ensemble.clone()))
        .collect();
    TrainReport {
        complete: failed.is_empty(),
        completed: splits.len(),
        asked: splits.len() + failed.len(),
        quorum: 0,
        retrained,
        metric: name.to_string(),
        models: holders.iter().map(|h| h.member.id.clone()).collect(),
        splits: splits.iter().map(|(id, _)| id.clone()).collect(),
        matrix,
        model_mean,
        ensemble_by_split,
        ensemble,
        nodes,
        failed,
        ms: took.as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use futures::future::LocalBoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::cluster::{Batch, Member};
    use crate::error::{Error, Result};
    use crate::ml::{ClassificationScores, Labels, Predictions, SplitStats};

    /// A member that trains instantly and answers `Evaluate` with what the test says.
    struct Fake {
        id: &'static str,
        evaluated: fn(&[ModelRef]) -> Result<Response>,
    }

    fn summary(node: &str) -> ModelSummary {
        ModelSummary {
            node: node.into(),
            version: 1,
            rows_train: 10,
            rows_valid: 2,
            train_ms: 1,
            valid: None,
            kind: "tree".into(),
            cv_score: None,
        }
    }

    fn accuracy(a: f64) -> Scores {
        Scores::Classification(ClassificationScores {
            accuracy: a,
            precision: a,
            recall: a,
            f1: a,
        })
    }

    fn good(models: &[ModelRef]) -> Result<Response> {
        scored(models.len())
    }

    fn scored(models: usize) -> Result<Response> {
        Ok(Response::Evaluated {
            eval: Box::new(SplitEval {
                per_model: vec![accuracy(0.5); models],
                ensemble: accuracy(0.5),
                stats: SplitStats::of(
                    &Labels::Classification(vec!["a".into(), "a".into()]),
                    &Predictions::Classification(vec!["a".into(), "b".into()]),
                )
                .expect("statistics"),
            }),
        })
    }

    impl Member for Fake {
        fn call(&self, request: Request, _: Duration) -> LocalBoxFuture<'_, Result<Response>> {
            let answer = match request {
                Request::Train => Ok(Response::Trained {
                    summary: Box::new(summary(self.id)),
                    size: 1,
                }),
                Request::Evaluate { models } => (self.evaluated)(&models),
                _ => Err(Error::Other("unexpected request".into())),
            };
            futures::future::ready(answer).boxed_local()
        }

        fn predict<'a>(&'a self, _: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
            futures::future::ready(Ok(Response::NoModel)).boxed_local()
        }
    }

    fn plan(members: Vec<Fake>) -> Plan {
        Plan {
            members: members
                .into_iter()
                .map(|f| Asked {
                    id: f.id.to_string(),
                    member: Rc::new(f),
                    deadline: Duration::from_secs(1),
                })
                .collect(),
            unreachable: Rc::from(["n9".to_string()]),
            long_deadline: Duration::from_secs(1),
            weighted: false,
            min_quorum: None,
        }
    }

    fn run(members: Vec<Fake>) -> Answer {
        futures::executor::block_on(cross_validate(plan(members), true))
    }

    #[test]
    fn empty_or_malformed_evaluations_become_failed_entries() {
        let answer = run(vec![
            Fake {
                id: "n1",
                evaluated: good,
            },
            Fake {
                id: "n2",
                evaluated: |_| scored(0),
            },
            Fake {
                id: "n3",
                evaluated: |_| Ok(Response::Pong),
            },
            Fake {
                id: "n4",
                evaluated: |_| Err(Error::Closed("connection closed by the other side".into())),
            },
        ]);
        let Answer::Train(report) = answer else {
            panic!("expected a report, got {answer:?}");
        };
        assert_eq!(report.splits, ["n1"]);
        // 4 asked and n9 known but down: 1 of 5 completed, short of a majority.
        assert!(!report.complete);
        assert_eq!((report.completed, report.asked, report.quorum), (1, 5, 3));
        assert_eq!(report.models, ["n1", "n2", "n3", "n4"]);
        assert_eq!(report.matrix, vec![vec![Some(0.5)]; 4]);
        let failed: Vec<(&str, &str)> = report
            .failed
            .iter()
            .map(|f| (f.id.as_str(), f.error.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                ("n9", "down"),
                ("n2", "scored 0 models, 4 were sent"),
                ("n3", "unexpected answer pong"),
                (
                    "n4",
                    "connection closed: connection closed by the other side"
                ),
            ]
        );
    }

    /// Scores unless n3's model is asked for, which it cannot fetch (n3 died after training).
    fn without_n3(models: &[ModelRef]) -> Result<Response> {
        if models.iter().any(|m| m.node == "n3") {
            return Ok(Response::Unfetched {
                nodes: vec!["n3".into()],
                reason: "cannot fetch models (n3: connection closed)".into(),
            });
        }
        good(models)
    }

    #[test]
    fn a_model_nobody_can_fetch_is_dropped_and_the_others_scored_again() {
        let answer = run(vec![
            Fake {
                id: "n1",
                evaluated: without_n3,
            },
            Fake {
                id: "n2",
                evaluated: without_n3,
            },
            Fake {
                id: "n3",
                evaluated: |_| Err(Error::Closed("connection closed by the other side".into())),
            },
        ]);
        let Answer::Train(report) = answer else {
            panic!("expected a report, got {answer:?}");
        };
        assert_eq!(report.models, ["n1", "n2"]);
        assert_eq!(report.splits, ["n1", "n2"]);
        assert_eq!(report.matrix, vec![vec![Some(0.5); 2]; 2]);
        let failed: Vec<&str> = report.failed.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(failed, ["n9", "n3"], "{:?}", report.failed);
        assert!(!report.complete);
    }

    #[test]
    fn no_usable_evaluation_is_a_failure_not_a_panic() {
        let answer = run(vec![Fake {
            id: "n1",
            evaluated: |_| scored(0),
        }]);
        let Answer::Failure(f) = answer else {
            panic!("expected a failure, got {answer:?}");
        };
        assert_eq!(f.error, "no node could score the models");
        assert_eq!(f.failed.len(), 2, "{f:?}");
    }
}
