//! Drift between the data a model was trained on (its [`Reference`]) and rows that arrived since,
//! decided by statistical tests with a stated false-alarm rate. Per feature (and for the label):
//! Kolmogorov–Smirnov on numeric values and Pearson's chi-square on the PSI's bins (numeric) or the
//! categories (categorical); the model's error on the new labelled rows against its own validation
//! errors by a one-sided Fisher exact test (classes) or Mann–Whitney rank test (regression). All
//! p-values of one check are corrected together (Holm), so a check on rows drawn like the training
//! data raises a false alarm with probability at most `alpha`, at any sample size the tests'
//! approximations hold for. Pure functions; the caller reads files and acts on a [`DriftReport`].
//! [`decide_swap`] is the champion / challenger rule applied after a drift retrain.

mod detect;
mod gate;
mod reference;
pub mod stats;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use super::error::{MlError, Result};

pub use detect::detect;
pub use gate::{decide_swap, judge_swap, split_indices, unseen_rows, Swap, SwapScores};
pub use reference::{
    CategoricalSummary, FeatureKind, NumericSummary, Reference, ReferenceColumn, RowError, Summary,
    ValidationErrors, KS_SAMPLE,
};
pub use stats::{kolmogorov_q, ks_pvalue, ks_statistic, psi, PSI_EPSILON};

/// The drift decision's settings (the `[drift]` keys `alpha`, `psi`, `share`, `error_ratio`,
/// `bins`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftSettings {
    /// False-alarm rate of one check: the Holm-adjusted p-values are compared with it.
    pub alpha: f64,
    /// Effect-size floor: a significant feature counts as drifted only when its PSI is ≥ this
    /// (0: no floor).
    pub psi: f64,
    /// Dataset drift when at least this share of the features drifted.
    pub share: f64,
    /// Effect-size floor: a significant error rise counts only when new ≥ this × validation error
    /// (1: no floor).
    pub error_ratio: f64,
    /// Quantile bins per numeric column of the reference.
    pub bins: usize,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            alpha: 0.01,
            psi: 0.0,
            share: 0.1,
            error_ratio: 1.0,
            bins: 10,
        }
    }
}

impl DriftSettings {
    /// Checks the ranges; the message names the `[drift]` key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, rule: &str| Err(MlError::Config(format!("drift.{key} must be {rule}")));
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha < 1.0) {
            return bad("alpha", "in (0, 1)");
        }
        if !(self.psi.is_finite() && self.psi >= 0.0) {
            return bad("psi", "a number ≥ 0");
        }
        if !(self.share.is_finite() && self.share > 0.0 && self.share <= 1.0) {
            return bad("share", "in (0, 1]");
        }
        if !(self.error_ratio.is_finite() && self.error_ratio > 0.0) {
            return bad("error_ratio", "a number > 0");
        }
        if !(2..=1000).contains(&self.bins) {
            return bad("bins", "an integer in [2, 1000]");
        }
        Ok(())
    }
}

/// Drift of one feature (or of the label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    pub kind: FeatureKind,
    /// Always `"psi"`: `value` is the PSI (an effect size; the decision is on `p_adjusted`).
    pub statistic: String,
    pub value: f64,
    /// The PSI floor (`drift.psi`).
    pub threshold: f64,
    /// `p_adjusted ≤ alpha` and `value ≥ threshold`.
    pub drifted: bool,
    /// Two-sample KS statistic on the present values (numeric columns).
    pub ks: Option<f64>,
    /// Its p-value.
    pub ks_pvalue: Option<f64>,
    /// p-value of Pearson's chi-square test on the bins the PSI is computed over (rare bins
    /// merged).
    pub psi_pvalue: f64,
    /// The column's p-value: numeric `min(1, 2·min(ks_pvalue, psi_pvalue))` (Bonferroni over the
    /// two tests), categorical `psi_pvalue`.
    pub p_value: f64,
    /// `p_value` Holm-adjusted over all the tests of the check.
    pub p_adjusted: f64,
}

/// The model's error on the new labelled rows against its errors on its validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDrift {
    /// `rmsle` (else `rmse`) for regression, `error_rate` for classification.
    pub metric: String,
    pub valid: f64,
    pub new: f64,
    /// `new / valid`; None when the validation error is 0.
    pub ratio: Option<f64>,
    /// The ratio floor (`drift.error_ratio`).
    pub threshold: f64,
    pub drifted: bool,
    /// `fisher_exact` (error counts) or `mann_whitney` (per-row errors), one-sided: new worse.
    pub test: String,
    pub valid_rows: usize,
    pub new_rows: usize,
    pub p_value: f64,
    pub p_adjusted: f64,
}

/// Everything [`detect`] found; printed as JSON by the `drift` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// New rows compared.
    pub rows: usize,
    /// Rows of the reference.
    pub reference_rows: usize,
    pub features: Vec<FeatureDrift>,
    /// Label drift (None when the new rows carry no labels).
    pub label: Option<FeatureDrift>,
    /// Model-error drift (None without a model, labels or validation errors).
    pub error: Option<ErrorDrift>,
    pub drifted_features: usize,
    pub total_features: usize,
    /// `drifted_features / total_features`.
    pub share: f64,
    pub share_threshold: f64,
    pub dataset_drift: bool,
    /// Why `dataset_drift` is true, in words (empty when it is false).
    pub reasons: Vec<String>,
    /// The false-alarm rate of this check.
    pub alpha: f64,
    /// p-values corrected together (features + label + error).
    pub tests: usize,
}
