//! Scores and ensemble aggregation. Precision, recall and F1 are macro averages over the classes
//! present in the truth or the predictions (scikit-learn's `average="macro"`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::Labels;
use super::error::{MlError, Result};

/// Predictions of a pipeline or of an ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Predictions {
    Regression(Vec<f64>),
    Classification(Vec<String>),
}

impl Predictions {
    pub fn len(&self) -> usize {
        match self {
            Predictions::Regression(v) => v.len(),
            Predictions::Classification(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Concatenation, for scoring the union of validation splits.
    pub fn concat(parts: &[&Predictions]) -> Result<Predictions> {
        let mut out: Option<Predictions> = None;
        for p in parts {
            match (&mut out, p) {
                (None, p) => out = Some((*p).clone()),
                (Some(Predictions::Regression(a)), Predictions::Regression(b)) => {
                    a.extend_from_slice(b)
                }
                (Some(Predictions::Classification(a)), Predictions::Classification(b)) => {
                    a.extend(b.iter().cloned())
                }
                _ => return Err(MlError::Mismatch("predictions of different tasks".into())),
            }
        }
        out.ok_or_else(|| MlError::Mismatch("no predictions to concatenate".into()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionScores {
    pub rmse: f64,
    /// `None` when a label or a prediction is negative.
    pub rmsle: Option<f64>,
    pub r2: f64,
    pub mae: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationScores {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Scores; serialized without a tag: `{"rmse":…,"rmsle":…,"r2":…,"mae":…}` or
/// `{"accuracy":…,"precision":…,"recall":…,"f1":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scores {
    Regression(RegressionScores),
    Classification(ClassificationScores),
}

impl Scores {
    /// The headline number: RMSLE (or RMSE when RMSLE is undefined) for regression, accuracy for
    /// classification, with its name.
    pub fn primary(&self) -> (&'static str, f64) {
        match self {
            Scores::Regression(r) => match r.rmsle {
                Some(v) => ("rmsle", v),
                None => ("rmse", r.rmse),
            },
            Scores::Classification(c) => ("accuracy", c.accuracy),
        }
    }
}

/// Score predictions against the truth.
pub fn score(truth: &Labels, pred: &Predictions) -> Result<Scores> {
    if truth.len() != pred.len() {
        return Err(MlError::Mismatch(format!(
            "{} labels but {} predictions",
            truth.len(),
            pred.len()
        )));
    }
    if truth.is_empty() {
        return Err(MlError::Mismatch("nothing to score".into()));
    }
    match (truth, pred) {
        (Labels::Regression(t), Predictions::Regression(p)) => {
            Ok(Scores::Regression(regression(t, p)))
        }
        (Labels::Classification(t), Predictions::Classification(p)) => {
            Ok(Scores::Classification(classification(t, p)))
        }
        _ => Err(MlError::Mismatch(
            "labels and predictions are of different tasks".into(),
        )),
    }
}

fn regression(t: &[f64], p: &[f64]) -> RegressionScores {
    let n = t.len() as f64;
    let mse = t.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
    let mae = t.iter().zip(p).map(|(a, b)| (a - b).abs()).sum::<f64>() / n;
    let mean = t.iter().sum::<f64>() / n;
    let ss_tot = t.iter().map(|a| (a - mean).powi(2)).sum::<f64>();
    let ss_res = mse * n;
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    let rmsle = (t.iter().chain(p).all(|v| *v >= 0.0)).then(|| {
        (t.iter()
            .zip(p)
            .map(|(a, b)| (a.ln_1p() - b.ln_1p()).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    });
    RegressionScores {
        rmse: mse.sqrt(),
        rmsle,
        r2,
        mae,
    }
}

fn classification(t: &[String], p: &[String]) -> ClassificationScores {
    classification_from(t.iter().zip(p).map(|(a, b)| (a.as_str(), b.as_str(), 1.0)))
}

/// Accuracy and macro-averaged precision, recall and F1 from (true label, predicted label, count)
/// triples: the rows themselves, or a confusion matrix (a split's mergeable statistics).
pub(crate) fn classification_from<'a>(
    counts: impl Iterator<Item = (&'a str, &'a str, f64)>,
) -> ClassificationScores {
    // per class: (true positives, predicted count, true count)
    let mut c: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    let (mut correct, mut total) = (0.0, 0.0);
    for (a, b, n) in counts {
        total += n;
        c.entry(a).or_default().2 += n;
        c.entry(b).or_default().1 += n;
        if a == b {
            correct += n;
            c.entry(a).or_default().0 += n;
        }
    }
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    let k = c.len() as f64;
    let (mut prec, mut rec, mut f1) = (0.0, 0.0, 0.0);
    for (tp, np, nt) in c.values() {
        let pr = ratio(*tp, *np);
        let re = ratio(*tp, *nt);
        prec += pr;
        rec += re;
        f1 += ratio(2.0 * pr * re, pr + re);
    }
    ClassificationScores {
        accuracy: ratio(correct, total),
        precision: ratio(prec, k),
        recall: ratio(rec, k),
        f1: ratio(f1, k),
    }
}

/// Combine the predictions of several models for the same rows: (weighted) mean for regression,
/// (weighted) majority vote for classification, a tie going to the smallest label in string order.
/// Weights must be finite, ≥ 0, with a positive sum.
pub fn aggregate(preds: &[Predictions], weights: Option<&[f64]>) -> Result<Predictions> {
    let first = preds
        .first()
        .ok_or_else(|| MlError::Mismatch("no predictions to aggregate".into()))?;
    let n = first.len();
    if preds.iter().any(|p| p.len() != n) {
        return Err(MlError::Mismatch("predictions of different lengths".into()));
    }
    let w: Vec<f64> = match weights {
        None => vec![1.0; preds.len()],
        Some(w) => {
            if w.len() != preds.len() {
                return Err(MlError::Mismatch(format!(
                    "{} weights for {} predictions",
                    w.len(),
                    preds.len()
                )));
            }
            if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                return Err(MlError::Mismatch(
                    "weights must be finite, ≥ 0, with a positive sum".into(),
                ));
            }
            w.to_vec()
        }
    };
    let total: f64 = w.iter().sum();
    match first {
        Predictions::Regression(_) => {
            let mut out = vec![0.0; n];
            for (p, wi) in preds.iter().zip(&w) {
                let Predictions::Regression(v) = p else {
                    return Err(MlError::Mismatch(
                        "mixed regression and classification".into(),
                    ));
                };
                for (o, x) in out.iter_mut().zip(v) {
                    *o += wi * x;
                }
            }
            out.iter_mut().for_each(|o| *o /= total);
            Ok(Predictions::Regression(out))
        }
        Predictions::Classification(_) => {
            let mut cols: Vec<&[String]> = Vec::with_capacity(preds.len());
            for p in preds {
                let Predictions::Classification(v) = p else {
                    return Err(MlError::Mismatch(
                        "mixed regression and classification".into(),
                    ));
                };
                cols.push(v);
            }
            let out = (0..n)
                .map(|i| {
                    let mut votes: BTreeMap<&str, f64> = BTreeMap::new();
                    for (c, wi) in cols.iter().zip(&w) {
                        *votes.entry(c[i].as_str()).or_default() += wi;
                    }
                    let mut best: Option<(&str, f64)> = None;
                    for (k, v) in votes {
                        if best.is_none_or(|(_, b)| v > b) {
                            best = Some((k, v));
                        }
                    }
                    best.map_or_else(String::new, |(k, _)| k.to_string())
                })
                .collect();
            Ok(Predictions::Classification(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn regression_by_hand() {
        // t = 1, 2, 3; p = 2, 2, 5: errors 1, 0, 2 → MSE 5/3, RMSE √(5/3) = 1.290994, MAE 1.
        // mean t = 2, SS_tot = 2, SS_res = 5 → R² = 1 − 5/2 = −1.5.
        // RMSLE: ln(3/2)² + 0 + ln(6/4)² = 2 · 0.164402 → √(0.328804/3) = 0.331061.
        let Scores::Regression(r) = score(
            &Labels::Regression(vec![1.0, 2.0, 3.0]),
            &Predictions::Regression(vec![2.0, 2.0, 5.0]),
        )
        .unwrap() else {
            panic!("task")
        };
        assert!((r.rmse - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((r.mae - 1.0).abs() < 1e-12);
        assert!((r.r2 + 1.5).abs() < 1e-12);
        assert!((r.rmsle.unwrap() - 0.331061).abs() < 1e-6);
        let Scores::Regression(r) = score(
            &Labels::Regression(vec![-1.0, 2.0]),
            &Predictions::Regression(vec![0.0, 2.0]),
        )
        .unwrap() else {
            panic!("task")
        };
        assert_eq!(r.rmsle, None);
    }

    #[test]
    fn classification_by_hand() {
        // truth a a b c, pred a b b b: accuracy 2/4.
        // a: tp 1, predicted 1, true 2 → P 1, R 1/2, F1 2/3
        // b: tp 1, predicted 3, true 1 → P 1/3, R 1, F1 1/2
        // c: tp 0, predicted 0, true 1 → P 0, R 0, F1 0
        // macro: P 4/9, R 1/2, F1 (2/3 + 1/2)/3 = 7/18.
        let Scores::Classification(c) = score(
            &Labels::Classification(s(&["a", "a", "b", "c"])),
            &Predictions::Classification(s(&["a", "b", "b", "b"])),
        )
        .unwrap() else {
            panic!("task")
        };
        assert!((c.accuracy - 0.5).abs() < 1e-12);
        assert!((c.precision - 4.0 / 9.0).abs() < 1e-12);
        assert!((c.recall - 0.5).abs() < 1e-12);
        assert!((c.f1 - 7.0 / 18.0).abs() < 1e-12);
    }

    #[test]
    fn mismatches_are_errors() {
        assert!(score(
            &Labels::Regression(vec![1.0]),
            &Predictions::Regression(vec![])
        )
        .is_err());
        assert!(score(
            &Labels::Regression(vec![1.0]),
            &Predictions::Classification(s(&["a"]))
        )
        .is_err());
        assert!(aggregate(&[], None).is_err());
        let p = Predictions::Regression(vec![1.0]);
        assert!(aggregate(std::slice::from_ref(&p), Some(&[-1.0])).is_err());
        assert!(aggregate(&[p.clone(), p], Some(&[1.0])).is_err());
    }

    #[test]
    fn mean_and_weighted_mean() {
        let a = Predictions::Regression(vec![1.0, 10.0]);
        let b = Predictions::Regression(vec![3.0, 20.0]);
        assert_eq!(
            aggregate(&[a.clone(), b.clone()], None).unwrap(),
            Predictions::Regression(vec![2.0, 15.0])
        );
        // weights 3, 1: (3·1 + 3)/4 = 1.5; (30 + 20)/4 = 12.5.
        assert_eq!(
            aggregate(&[a, b], Some(&[3.0, 1.0])).unwrap(),
            Predictions::Regression(vec![1.5, 12.5])
        );
    }

    #[test]
    fn votes_and_ties() {
        let p = |v: &[&str]| Predictions::Classification(s(v));
        let preds = [
            p(&["x", "m", "b"]),
            p(&["y", "b", "b"]),
            p(&["x", "m", "m"]),
            p(&["y", "b", "m"]),
        ];
        // column 1: x 2, y 2 → tie → "x"; column 2: m 2, b 2 → "b"; column 3: b 2, m 2 → "b".
        assert_eq!(aggregate(&preds, None).unwrap(), p(&["x", "b", "b"]));
        // weights 1, 1, 1, 2: column 1 y 3 > x 2; column 2 b 3; column 3 m 3.
        assert_eq!(
            aggregate(&preds, Some(&[1.0, 1.0, 1.0, 2.0])).unwrap(),
            p(&["y", "b", "m"])
        );
        // Order of the models does not matter.
        let mut rev = preds.to_vec();
        rev.reverse();
        assert_eq!(aggregate(&rev, None).unwrap(), p(&["x", "b", "b"]));
    }
}
