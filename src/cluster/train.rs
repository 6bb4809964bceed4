//! Global training and evaluation: every member trains (or sends its current model), every
//! member holding a model scores all of them on its own validation split, and the coordinator
//! assembles the score matrix. Members that fail, time out or answer nonsense are reported in
//! `failed`; the others complete without them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::member::{Asked, Plan};
use crate::answer::{Answer, Ensemble, Failed, Failure, NodeModel, TrainReport};
use crate::ml::{combine_splits, Scores, SplitEval};
use crate::protocol::{ModelBlob, ModelSummary, Request, Response};

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
    blob: ModelBlob,
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
            Ok(Response::Trained { summary, model }) | Ok(Response::Model { summary, model }) => {
                let blob = ModelBlob {
                    node: member.id.clone(),
                    bytes: model,
                };
                holders.push(Holder {
                    member,
                    summary,
                    blob,
                });
            }
            Ok(other) => failed.push(Failed::new(&member.id, unexpected(&other))),
            Err(e) => failed.push(Failed::new(&member.id, e)),
        }
    }
    if holders.is_empty() {
        return failure("no node has a model", failed);
    }

    // 2. Every node holding a model scores all the models on its own validation split.
    let blobs: Vec<ModelBlob> = holders.iter().map(|h| h.blob.clone()).collect();
    let request = Request::Evaluate { models: blobs };
    let answers = join_all(
        holders
            .iter()
            .map(|h| h.member.member.call(request.clone(), plan.long_deadline)),
    )
    .await;
    let mut splits: Vec<(String, SplitEval)> = Vec::new();
    for (holder, answer) in holders.iter().zip(answers) {
        let id = &holder.member.id;
        match answer {
            Ok(Response::Evaluated { eval }) if eval.per_model.len() == holders.len() => {
                splits.push((id.clone(), eval))
            }
            Ok(Response::Evaluated { eval }) => failed.push(Failed::new(
                id,
                format!(
                    "scored {} models, {} were sent",
                    eval.per_model.len(),
                    holders.len()
                ),
            )),
            Ok(other) => failed.push(Failed::new(id, unexpected(&other))),
            Err(e) => failed.push(Failed::new(id, e)),
        }
    }
    if splits.is_empty() {
        return failure("no node could score the models", failed);
    }
    let mut report = report(&holders, &splits, failed, started.elapsed(), retrain);
    report.asked = plan.nodes();
    report.quorum = plan.quorum();
    Answer::Train(Box::new(report))
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

    use bytes::Bytes;
    use futures::future::LocalBoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::cluster::{Batch, Member};
    use crate::error::{Error, Result};
    use crate::ml::{ClassificationScores, Labels, Predictions, SplitStats};

    /// A member that trains instantly and answers `Evaluate` with what the test says.
    struct Fake {
        id: &'static str,
        evaluated: fn(usize) -> Result<Response>,
    }

    fn summary(node: &str) -> ModelSummary {
        ModelSummary {
            node: node.into(),
            version: 1,
            rows_train: 10,
            rows_valid: 2,
            train_ms: 1,
            valid: None,
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

    fn good(models: usize) -> Result<Response> {
        Ok(Response::Evaluated {
            eval: SplitEval {
                per_model: vec![accuracy(0.5); models],
                ensemble: accuracy(0.5),
                stats: SplitStats::of(
                    &Labels::Classification(vec!["a".into(), "a".into()]),
                    &Predictions::Classification(vec!["a".into(), "b".into()]),
                )
                .expect("statistics"),
            },
        })
    }

    impl Member for Fake {
        fn call(&self, request: Request, _: Duration) -> LocalBoxFuture<'_, Result<Response>> {
            let answer = match request {
                Request::Train => Ok(Response::Trained {
                    summary: summary(self.id),
                    model: Bytes::from_static(b"m"),
                }),
                Request::Evaluate { models } => (self.evaluated)(models.len()),
                _ => Err(Error::Other("unexpected request".into())),
            };
            futures::future::ready(answer).boxed_local()
        }

        fn predict<'a>(
            &'a self,
            _: &'a Batch,
            _: Duration,
        ) -> LocalBoxFuture<'a, Result<Response>> {
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
            unreachable: vec!["n9".into()],
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
                evaluated: |_| good(0),
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

    #[test]
    fn no_usable_evaluation_is_a_failure_not_a_panic() {
        let answer = run(vec![Fake {
            id: "n1",
            evaluated: |_| good(0),
        }]);
        let Answer::Failure(f) = answer else {
            panic!("expected a failure, got {answer:?}");
        };
        assert_eq!(f.error, "no node could score the models");
        assert_eq!(f.failed.len(), 2, "{f:?}");
    }
}
