//! Evaluation as the cluster does it: every model scored on a validation split, the ensemble
//! (mean / vote) scored per split and on the union of the validation splits. The `offline` tool
//! (`src/tools/offline.rs`) runs the whole protocol in one process with these functions.

use serde::{Deserialize, Serialize};

use super::data::{Labels, Table};
use super::error::{MlError, Result};
use super::metrics::{aggregate, score, Predictions, Scores};
use super::pipeline::Pipeline;

/// What one validation split says about a set of models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitEval {
    /// Scores of each model, in the order given.
    pub per_model: Vec<Scores>,
    /// Score of the aggregated prediction.
    pub ensemble: Scores,
    pub ensemble_pred: Predictions,
    pub truth: Labels,
}

/// Score each model and their aggregate on a validation split.
pub fn evaluate_split(
    models: &[&Pipeline],
    valid: &Table,
    weights: Option<&[f64]>,
) -> Result<SplitEval> {
    if models.is_empty() {
        return Err(MlError::Mismatch("no models to evaluate".into()));
    }
    let rows = valid.rows();
    let mut preds = Vec::with_capacity(models.len());
    let mut per_model = Vec::with_capacity(models.len());
    for m in models {
        if m.task() != valid.task() {
            return Err(MlError::Mismatch(format!(
                "model of node '{}' is for {:?}, the split is {:?}",
                m.meta().node,
                m.task(),
                valid.task()
            )));
        }
        let p = m.predict(&rows)?;
        per_model.push(score(&valid.labels, &p)?);
        preds.push(p);
    }
    let ensemble_pred = aggregate(&preds, weights)?;
    Ok(SplitEval {
        per_model,
        ensemble: score(&valid.labels, &ensemble_pred)?,
        ensemble_pred,
        truth: valid.labels.clone(),
    })
}

/// The ensemble's score on the union of the validation splits.
pub fn combine_splits(evals: &[SplitEval]) -> Result<Scores> {
    let truth = Labels::concat(&evals.iter().map(|e| &e.truth).collect::<Vec<_>>())?;
    let pred = Predictions::concat(&evals.iter().map(|e| &e.ensemble_pred).collect::<Vec<_>>())?;
    score(&truth, &pred)
}
