//! `auto`'s cross-validation of a pipeline: the loss it ranks candidates by, and `boosted` /
//! `hybrid` scored with their rounds in lockstep over the folds (each fold prepared as a fit
//! would prepare it).

use super::{Learner, ModelMeta, Pipeline};
use crate::ml::config::{ModelConfig, Target};
use crate::ml::data::{Labels, Table};
use crate::ml::error::{MlError, Result};
use crate::ml::learner::{fit_cv_boosting, BoostFold, Classifier, FoldLabels, Regressor};
use crate::ml::metrics::{score, Scores};

impl Pipeline {
    /// `auto`'s cross-validation of `boosted` or `hybrid`: every fold prepared as
    /// [`Pipeline::fit`] would, the rounds boosted in lockstep over the folds
    /// ([`fit_cv_boosting`]), each fold's model scored as the other candidates are. Returns
    /// the mean loss and the round count found.
    pub(super) fn cv_boosting(
        parts: &[(Table, Table)],
        cfg: &ModelConfig,
        threads: usize,
    ) -> Result<(f64, usize)> {
        let mut shells = Vec::with_capacity(parts.len());
        let mut folds = Vec::with_capacity(parts.len());
        for (fit, held) in parts {
            let (shell, x_fit, y_fit) = Pipeline::prepare(fit, cfg, ModelMeta::default())?;
            let x_held = shell.prep.transform_table(held)?;
            let n_fit = x_fit.nrows();
            let x = ndarray::concatenate(ndarray::Axis(0), &[x_fit.view(), x_held.view()])
                .map_err(|e| MlError::Data(format!("fold matrix: {e}")))?;
            let (y, held_rows) = match (y_fit, &held.labels) {
                (FoldLabels::Regression(mut y), Labels::Regression(h)) => {
                    // A log target's held-out labels below 0 (the fit part had none) count
                    // as 0 in the stopping loss; the fold's score still sees them as they are.
                    let h = match shell.target {
                        Target::Log => h.iter().map(|v| v.max(0.0).ln_1p()).collect(),
                        _ => h.clone(),
                    };
                    y.extend(h);
                    let rows = (n_fit as u32..y.len() as u32).collect();
                    (FoldLabels::Regression(y), rows)
                }
                (FoldLabels::Classes(mut y, c), Labels::Classification(h)) => {
                    // Held-out rows of a class the fit part lacks cannot enter a log loss.
                    let mut rows = Vec::with_capacity(h.len());
                    for (i, v) in h.iter().enumerate() {
                        match shell.classes.binary_search(v) {
                            Ok(code) => {
                                rows.push((n_fit + i) as u32);
                                y.push(code);
                            }
                            Err(_) => y.push(0),
                        }
                    }
                    (FoldLabels::Classes(y, c), rows)
                }
                _ => return Err(MlError::Data("fold labels of two tasks".into())),
            };
            folds.push(BoostFold {
                x,
                inputs: shell.line_inputs(),
                y,
                n_fit,
                held: held_rows,
            });
            shells.push(shell);
        }
        let (rounds, models) = fit_cv_boosting(cfg, &folds, threads)?;
        let mut sum = 0.0;
        for ((shell, model), (fold, (_, held))) in
            shells.into_iter().zip(models).zip(folds.iter().zip(parts))
        {
            let n_features = fold.x.ncols();
            let learner = match fold.y {
                FoldLabels::Regression(_) => Learner::Regressor(Regressor { model, n_features }),
                FoldLabels::Classes(_, n_classes) => Learner::Classifier(Classifier {
                    model,
                    n_features,
                    n_classes,
                }),
            };
            sum += Pipeline { learner, ..shell }.cv_loss(held)?;
        }
        Ok((sum / parts.len().max(1) as f64, rounds))
    }

    /// The loss `auto` ranks candidates by on held-out rows: RMSLE for a log target (RMSE if
    /// a prediction is negative), else RMSE; 1 − accuracy for classification.
    pub(super) fn cv_loss(&self, held: &Table) -> Result<f64> {
        let pred = self.predict_table(held)?;
        Ok(match score(&held.labels, &pred)? {
            Scores::Regression(r) if self.target == Target::Log => r.rmsle.unwrap_or(r.rmse),
            Scores::Regression(r) => r.rmse,
            Scores::Classification(c) => 1.0 - c.accuracy,
        })
    }
}
