//! Evaluation as the cluster does it: every model scored on a validation split, the ensemble
//! (mean / vote) scored per split and on the union of the validation splits. The `offline` tool
//! (`src/tools/offline.rs`) runs the whole protocol in one process with these functions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{Labels, Table};
use super::error::{MlError, Result};

use super::metrics::{
    aggregate, classification_from, score, Predictions, RegressionScores, Scores,
};
use super::pipeline::Pipeline;
use super::typed::TypedRows;

/// What one validation split says about a set of models: scores, and statistics of the
/// ensemble's errors there that merge exactly with other splits'. Never a row: no label, no
/// feature, no per-row prediction leaves the node that holds the split, and the size of this does
/// not grow with the split's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitEval {
    /// Scores of each model, in the order given.
    pub per_model: Vec<Scores>,
    /// Score of the aggregated prediction.
    pub ensemble: Scores,
    /// The aggregated prediction's error statistics on this split.
    pub stats: SplitStats,
}

/// Sums that score a prediction and merge across splits by adding them up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SplitStats {
    Regression {
        n: u64,
        /// Σ (y − ŷ)²
        sum_sq_err: f64,
        /// Σ |y − ŷ|
        sum_abs_err: f64,
        /// Σ (ln(1 + y) − ln(1 + ŷ))², `None` when a label or a prediction is negative.
        sum_sq_log_err: Option<f64>,
        /// Σ y
        sum_y: f64,
        /// Σ y²
        sum_y2: f64,
    },
    /// The confusion matrix: (true label, predicted label, count), sorted.
    Classification {
        confusion: Vec<(String, String, u64)>,
    },
}

impl SplitStats {
    /// The statistics of `pred` against `truth`.
    pub fn of(truth: &Labels, pred: &Predictions) -> Result<SplitStats> {
        if truth.len() != pred.len() || truth.is_empty() {
            return Err(MlError::Mismatch(format!(
                "{} labels but {} predictions",
                truth.len(),
                pred.len()
            )));
        }
        match (truth, pred) {
            (Labels::Regression(t), Predictions::Regression(p)) => {
                let mut s = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (y, q) in t.iter().zip(p) {
                    s.0 += (y - q).powi(2);
                    s.1 += (y - q).abs();
                    s.2 += (y.ln_1p() - q.ln_1p()).powi(2);
                    s.3 += y;
                    s.4 += y * y;
                }
                let logs_defined = t.iter().chain(p).all(|v| *v >= 0.0);
                Ok(SplitStats::Regression {
                    n: t.len() as u64,
                    sum_sq_err: s.0,
                    sum_abs_err: s.1,
                    sum_sq_log_err: logs_defined.then_some(s.2),
                    sum_y: s.3,
                    sum_y2: s.4,
                })
            }
            (Labels::Classification(t), Predictions::Classification(p)) => {
                let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
                for (a, b) in t.iter().zip(p) {
                    *counts.entry((a, b)).or_default() += 1;
                }
                Ok(SplitStats::Classification {
                    confusion: counts
                        .into_iter()
                        .map(|((a, b), n)| (a.to_string(), b.to_string(), n))
                        .collect(),
                })
            }
            _ => Err(MlError::Mismatch(
                "labels and predictions are of different tasks".into(),
            )),
        }
    }

    /// Adds `other` (another split's statistics) to these.
    fn merge(self, other: &SplitStats) -> Result<SplitStats> {
        match (self, other) {
            (
                SplitStats::Regression {
                    n,
                    sum_sq_err,
                    sum_abs_err,
                    sum_sq_log_err,
                    sum_y,
                    sum_y2,
                },
                SplitStats::Regression {
                    n: n2,
                    sum_sq_err: e2,
                    sum_abs_err: a2,
                    sum_sq_log_err: l2,
                    sum_y: y2,
                    sum_y2: yy2,
                },
            ) => Ok(SplitStats::Regression {
                // Counts come from peers: a wrong one must not overflow (and panic in a debug
                // build), only give a wrong score.
                n: n.saturating_add(*n2),
                sum_sq_err: sum_sq_err + e2,
                sum_abs_err: sum_abs_err + a2,
                sum_sq_log_err: sum_sq_log_err.zip(*l2).map(|(a, b)| a + b),
                sum_y: sum_y + y2,
                sum_y2: sum_y2 + yy2,
            }),
            (
                SplitStats::Classification { confusion },
                SplitStats::Classification { confusion: more },
            ) => {
                let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
                for (a, b, n) in confusion.into_iter().chain(more.iter().cloned()) {
                    let count = counts.entry((a, b)).or_default();
                    *count = count.saturating_add(n);
                }
                Ok(SplitStats::Classification {
                    confusion: counts.into_iter().map(|((a, b), n)| (a, b, n)).collect(),
                })
            }
            _ => Err(MlError::Mismatch(
                "splits of different tasks cannot be combined".into(),
            )),
        }
    }

    /// The scores these statistics give: the same as `score` on the rows they summarize.
    pub fn scores(&self) -> Result<Scores> {
        match self {
            SplitStats::Regression {
                n,
                sum_sq_err,
                sum_abs_err,
                sum_sq_log_err,
                sum_y,
                sum_y2,
            } => {
                if *n == 0 {
                    return Err(MlError::Mismatch("nothing to score".into()));
                }
                let n = *n as f64;
                let ss_tot = (sum_y2 - sum_y * sum_y / n).max(0.0);
                let r2 = if ss_tot > 0.0 {
                    1.0 - sum_sq_err / ss_tot
                } else if *sum_sq_err == 0.0 {
                    1.0
                } else {
                    0.0
                };
                Ok(Scores::Regression(RegressionScores {
                    rmse: (sum_sq_err / n).sqrt(),
                    rmsle: sum_sq_log_err.map(|s| (s / n).sqrt()),
                    r2,
                    mae: sum_abs_err / n,
                }))
            }
            SplitStats::Classification { confusion } => {
                if confusion.iter().all(|(_, _, n)| *n == 0) {
                    return Err(MlError::Mismatch("nothing to score".into()));
                }
                Ok(Scores::Classification(classification_from(
                    confusion
                        .iter()
                        .map(|(a, b, n)| (a.as_str(), b.as_str(), *n as f64)),
                )))
            }
        }
    }
}

/// Score each model and their aggregate on a validation split.
pub fn evaluate_split(
    models: &[&Pipeline],
    valid: &Table,
    weights: Option<&[f64]>,
) -> Result<SplitEval> {
    evaluate_split_with(models, &[], valid, weights)
}

/// [`evaluate_split`] with the predictions of some models already made: `known[i]`, when there
/// and `Some`, is what `models[i]` predicts for `valid` (a node's own model, which predicted its
/// validation split when it was trained).
pub fn evaluate_split_with(
    models: &[&Pipeline],
    known: &[Option<&Predictions>],
    valid: &Table,
    weights: Option<&[f64]>,
) -> Result<SplitEval> {
    if models.is_empty() {
        return Err(MlError::Mismatch("no models to evaluate".into()));
    }
    let mut rows = None;
    let mut preds = Vec::with_capacity(models.len());
    let mut per_model = Vec::with_capacity(models.len());
    for (i, m) in models.iter().enumerate() {
        if m.task() != valid.task() {
            return Err(MlError::Mismatch(format!(
                "model of node '{}' is for {:?}, the split is {:?}",
                m.meta().node,
                m.task(),
                valid.task()
            )));
        }
        let p = match known.get(i).copied().flatten() {
            Some(p) if p.len() == valid.len() => p.clone(),
            _ => m
                .served()
                .predict(rows.get_or_insert_with(|| TypedRows::from_table(valid)))?,
        };
        per_model.push(score(&valid.labels, &p)?);
        preds.push(p);
    }
    let ensemble_pred = aggregate(&preds, weights)?;
    Ok(SplitEval {
        per_model,
        ensemble: score(&valid.labels, &ensemble_pred)?,
        stats: SplitStats::of(&valid.labels, &ensemble_pred)?,
    })
}

/// The ensemble's score on the union of the validation splits, from their statistics alone.
pub fn combine_splits(evals: &[SplitEval]) -> Result<Scores> {
    let (first, rest) = evals
        .split_first()
        .ok_or_else(|| MlError::Mismatch("no splits to combine".into()))?;
    rest.iter()
        .try_fold(first.stats.clone(), |acc, e| acc.merge(&e.stats))?
        .scores()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize, k: u64) -> f64 {
        // A fixed, scrambled sequence in [0, 1).
        ((i as u64).wrapping_mul(2654435761).wrapping_add(k) % 10_007) as f64 / 10_007.0
    }

    fn regression_split(from: usize, rows: usize) -> (Labels, Predictions) {
        let y: Vec<f64> = (from..from + rows)
            .map(|i| 1e5 + 3e5 * pseudo(i, 1))
            .collect();
        let p: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v * (0.8 + 0.4 * pseudo(i, 7)))
            .collect();
        (Labels::Regression(y), Predictions::Regression(p))
    }

    fn classification_split(from: usize, rows: usize) -> (Labels, Predictions) {
        let names = ["a", "b", "c"];
        let pick = |i: usize, k: u64| names[(pseudo(i, k) * 3.0) as usize].to_string();
        let t = (from..from + rows).map(|i| pick(i, 3)).collect();
        let p = (from..from + rows)
            .map(|i| {
                if pseudo(i, 5) < 0.7 {
                    pick(i, 3)
                } else {
                    pick(i, 9)
                }
            })
            .collect();
        (Labels::Classification(t), Predictions::Classification(p))
    }

    fn eval_of(truth: &Labels, pred: &Predictions) -> SplitEval {
        SplitEval {
            per_model: vec![],
            ensemble: score(truth, pred).expect("scored"),
            stats: SplitStats::of(truth, pred).expect("stats"),
        }
    }

    fn close(a: &Scores, b: &Scores) {
        let (a, b) = (
            serde_json::to_value(a).expect("json"),
            serde_json::to_value(b).expect("json"),
        );
        for (k, x) in a.as_object().expect("an object") {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                b[k].as_f64().unwrap_or(f64::NAN),
            );
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{k}: {x} vs {y}");
        }
    }

    #[test]
    fn merged_statistics_score_like_the_pooled_rows() {
        for split in [regression_split, classification_split] {
            let parts: Vec<(Labels, Predictions)> = [(0, 60), (60, 250), (310, 7)]
                .iter()
                .map(|&(f, n)| split(f, n))
                .collect();
            let evals: Vec<SplitEval> = parts.iter().map(|(t, p)| eval_of(t, p)).collect();
            let truth =
                Labels::concat(&parts.iter().map(|(t, _)| t).collect::<Vec<_>>()).expect("labels");
            let pred = Predictions::concat(&parts.iter().map(|(_, p)| p).collect::<Vec<_>>())
                .expect("predictions");
            let pooled = score(&truth, &pred).expect("pooled");
            close(&combine_splits(&evals).expect("combined"), &pooled);
            // Each split's own statistics give its own score too.
            for e in &evals {
                close(&e.stats.scores().expect("scores"), &e.ensemble);
            }
        }
    }

    #[test]
    fn an_evaluation_does_not_grow_with_the_rows() {
        for split in [regression_split, classification_split] {
            let sizes: Vec<usize> = [100, 10_000]
                .iter()
                .map(|&n| {
                    let (t, p) = split(0, n);
                    rmp_serde::to_vec_named(&eval_of(&t, &p))
                        .expect("encoded")
                        .len()
                })
                .collect();
            // 100 times the rows: only the counts' integers get a byte or two wider.
            assert!(sizes[1] <= sizes[0] + 16, "{sizes:?}");
        }
    }

    #[test]
    fn mixed_tasks_do_not_combine() {
        let (t, p) = regression_split(0, 5);
        let (u, q) = classification_split(0, 5);
        assert!(combine_splits(&[eval_of(&t, &p), eval_of(&u, &q)]).is_err());
        assert!(combine_splits(&[]).is_err());
    }
    #[test]
    fn known_predictions_stand_in_for_their_model() {
        use crate::ml::config::{Kind, ModelConfig};
        use crate::ml::data::{parse_csv, DataSpec, Task};
        use crate::ml::pipeline::ModelMeta;
        let mut csv = String::from("a,b,y\n");
        for i in 0..200 {
            csv.push_str(&format!(
                "{},{},{}\n",
                i % 17,
                (i * 7) % 23,
                i % 17 + (i * 7) % 5
            ));
        }
        let spec = DataSpec {
            label: "y".into(),
            task: Task::Regression,
            drop: vec![],
        };
        let t = parse_csv("t".as_ref(), csv.as_bytes(), &spec).expect("a table");
        let (train, valid) = t.split(0.3, 1);
        let fit = |kind| {
            let cfg = ModelConfig {
                kind,
                n_rounds: 20,
                ..ModelConfig::default()
            };
            Pipeline::fit(&train, &cfg, ModelMeta::default()).expect("fits")
        };
        let (boosted, linear) = (fit(Kind::Boosted), fit(Kind::Linear));
        let models = [&boosted, &linear];
        let plain = evaluate_split(&models, &valid, None).expect("scores");
        // The model's own predictions, given: the same evaluation.
        let own = boosted.predict_table(&valid).expect("predicts");
        let given = evaluate_split_with(&models, &[Some(&own)], &valid, None).expect("scores");
        assert_eq!(given, plain);
        // Predictions given are used as they are (here: another model's), and a given set of
        // the wrong length is not.
        let other = linear.predict_table(&valid).expect("predicts");
        let swapped = evaluate_split_with(&models, &[Some(&other)], &valid, None).expect("scores");
        assert_eq!(swapped.per_model[0], plain.per_model[1]);
        let short = Predictions::Regression(vec![0.0; 3]);
        let ignored = evaluate_split_with(&models, &[Some(&short)], &valid, None).expect("scores");
        assert_eq!(ignored, plain);
    }
}
