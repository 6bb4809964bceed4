//! The [`Reference`]: what a model's training data looked like (quantile bins and shares per
//! numeric column, category shares per categorical column, the same for the label) and the model's
//! per-row errors on its validation split ([`ValidationErrors`]). Built once per trained model and
//! persisted next to it in the node's state directory; it never leaves the node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DriftSettings;
use crate::ml::data::{ColumnData, Labels, Table, Task};
use crate::ml::error::{MlError, Result};
use crate::ml::metrics::Predictions;
use crate::ml::pipeline::Pipeline;
use crate::ml::sort::sort_total;

/// At most this many reference values per numeric column are kept for the KS statistic (evenly
/// spaced order statistics of the sorted column, so the kept sample's ECDF is within 1/10,000 of
/// the full one).
pub const KS_SAMPLE: usize = 10_000;

/// Numeric or categorical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// What the reference knows about one numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericSummary {
    /// Increasing, distinct cut points; bin `i` is `(edges[i-1], edges[i]]`, the first bin starts
    /// at −∞ and the last (`edges.len()`) ends at +∞.
    pub edges: Vec<f64>,
    /// Share of the reference rows in each bin, then (last) the share of missing cells; sums to 1.
    pub shares: Vec<f64>,
    /// Sorted present values (all of them, or [`KS_SAMPLE`] evenly spaced order statistics).
    pub sample: Vec<f64>,
    /// Present (non-missing) values in the reference column.
    pub present: usize,
}

/// What the reference knows about one categorical column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalSummary {
    /// Share of the reference rows per category, sorted by category.
    pub shares: Vec<(String, f64)>,
    /// Share of missing cells.
    pub missing: f64,
}

/// One column of the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Summary {
    Numeric(NumericSummary),
    Categorical(CategoricalSummary),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceColumn {
    pub name: String,
    pub summary: Summary,
}

/// Summary of the data the current model was trained on: built once, serializable (to persist it
/// next to the model), compared with each batch of new rows by [`super::detect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub columns: Vec<ReferenceColumn>,
    pub label: ReferenceColumn,
    pub task: Task,
    /// Rows of the reference table.
    pub rows: usize,
    /// Quantile bins asked for per numeric column (fewer remain where values tie).
    pub bins: usize,
    /// The model's per-row errors on its validation split (None for a reference built without a
    /// model, or by an older version).
    #[serde(default)]
    pub validation: Option<ValidationErrors>,
}

impl Reference {
    /// The reference with the default 10 quantile bins.
    pub fn from_table(table: &Table) -> Result<Reference> {
        Reference::with_bins(table, DriftSettings::default().bins)
    }

    /// The reference with `bins` quantile bins per numeric column.
    pub fn with_bins(table: &Table, bins: usize) -> Result<Reference> {
        if !(2..=1000).contains(&bins) {
            return Err(MlError::Config(
                "drift.bins must be an integer in [2, 1000]".into(),
            ));
        }
        if table.is_empty() {
            return Err(MlError::Data("drift reference: no rows".into()));
        }
        let columns = table
            .columns
            .iter()
            .map(|c| ReferenceColumn {
                name: c.name.clone(),
                summary: match &c.data {
                    ColumnData::Numeric(v) => Summary::Numeric(numeric_summary(v, bins)),
                    ColumnData::Categorical(v) => {
                        Summary::Categorical(categorical_summary(v.iter().map(|s| s.as_deref())))
                    }
                },
            })
            .collect();
        let label = ReferenceColumn {
            name: table.label_name.clone(),
            summary: match &table.labels {
                Labels::Regression(v) => {
                    let v: Vec<Option<f64>> = v.iter().map(|x| Some(*x)).collect();
                    Summary::Numeric(numeric_summary(&v, bins))
                }
                Labels::Classification(v) => {
                    Summary::Categorical(categorical_summary(v.iter().map(|s| Some(s.as_str()))))
                }
            },
        };
        Ok(Reference {
            columns,
            label,
            task: table.task(),
            rows: table.len(),
            bins,
            validation: None,
        })
    }

    /// MessagePack (named fields), to store next to the model file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(self).map_err(|e| MlError::ModelFile(format!("reference: {e}")))
    }

    /// Inverse of [`Reference::to_bytes`]; garbage is an error, never a panic.
    pub fn from_bytes(b: &[u8]) -> Result<Reference> {
        let r: Reference =
            rmp_serde::from_slice(b).map_err(|e| MlError::ModelFile(format!("reference: {e}")))?;
        let ok = |s: &Summary| match s {
            Summary::Numeric(n) => n.shares.len() == n.edges.len() + 2,
            Summary::Categorical(_) => true,
        };
        if !r.columns.iter().all(|c| ok(&c.summary)) || !ok(&r.label.summary) {
            return Err(MlError::ModelFile(
                "reference: bins and shares disagree".into(),
            ));
        }
        Ok(r)
    }
}

/// Quantile edges: edge `k` (k = 1..bins−1) is the ⌈k·n/bins⌉-th smallest present value; equal
/// edges (ties, constant columns) are merged, so a column may have fewer bins.
pub(super) fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let n = sorted.len();
    let mut edges: Vec<f64> = Vec::with_capacity(bins);
    if n == 0 {
        return edges;
    }
    for k in 1..bins {
        let rank = (k * n).div_ceil(bins).max(1);
        let e = sorted[rank - 1];
        if edges.last() != Some(&e) {
            edges.push(e);
        }
    }
    edges
}

/// Bin index of a present value: the number of edges strictly below it.
pub(super) fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e < x)
}

/// Shares per bin (missing last) of a numeric column over `edges`.
pub(super) fn numeric_shares(edges: &[f64], values: impl Iterator<Item = Option<f64>>) -> Vec<f64> {
    let mut counts = vec![0usize; edges.len() + 2];
    let mut n = 0usize;
    for v in values {
        n += 1;
        match v {
            Some(x) => counts[bin_of(edges, x)] += 1,
            None => counts[edges.len() + 1] += 1,
        }
    }
    let n = n.max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

fn numeric_summary(v: &[Option<f64>], bins: usize) -> NumericSummary {
    let mut sorted: Vec<f64> = v.iter().flatten().copied().collect();
    sort_total(&mut sorted);
    let edges = quantile_edges(&sorted, bins);
    let shares = numeric_shares(&edges, v.iter().copied());
    let present = sorted.len();
    let sample = if present > KS_SAMPLE {
        // Order statistics at the centres of KS_SAMPLE equal slices.
        (0..KS_SAMPLE)
            .map(|i| sorted[((2 * i + 1) * present) / (2 * KS_SAMPLE)])
            .collect()
    } else {
        sorted
    };
    NumericSummary {
        edges,
        shares,
        sample,
        present,
    }
}

pub(super) fn categorical_counts<'a>(
    cells: impl Iterator<Item = Option<&'a str>>,
) -> (BTreeMap<&'a str, usize>, usize, usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut missing, mut n) = (0usize, 0usize);
    for c in cells {
        n += 1;
        match c {
            Some(s) => *counts.entry(s).or_default() += 1,
            None => missing += 1,
        }
    }
    (counts, missing, n)
}

fn categorical_summary<'a>(cells: impl Iterator<Item = Option<&'a str>>) -> CategoricalSummary {
    let (counts, missing, n) = categorical_counts(cells);
    let n = n.max(1) as f64;
    CategoricalSummary {
        shares: counts
            .into_iter()
            .map(|(k, c)| (k.to_string(), c as f64 / n))
            .collect(),
        missing: missing as f64 / n,
    }
}

/// How a row's error is measured for the error rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowError {
    /// Classification: 1 for a wrong class, 0 for a right one.
    Miss,
    /// Regression on labels ≥ 0: `|ln(1 + ŷ) − ln(1 + y)|` (both clamped at 0), whose root mean
    /// square is the RMSLE.
    AbsLog,
    /// Regression with negative labels: `|ŷ − y|` (root mean square: RMSE).
    Abs,
}

impl RowError {
    /// Misses for classes; for numbers the log error when every label is ≥ 0 (as RMSLE is).
    pub fn for_labels(labels: &[&Labels]) -> RowError {
        let mut kind = RowError::AbsLog;
        for l in labels {
            match l {
                Labels::Classification(_) => return RowError::Miss,
                Labels::Regression(v) if v.iter().any(|y| *y < 0.0) => kind = RowError::Abs,
                Labels::Regression(_) => {}
            }
        }
        kind
    }

    /// The aggregate error of `model` on `table`.
    pub fn model_error(self, model: &Pipeline, table: &Table) -> Result<f64> {
        let pred = model.predict_table(table)?;
        Ok(self.aggregate(&self.of(&table.labels, &pred)?))
    }

    /// The name of the aggregate a set of these errors gives.
    pub fn metric(self) -> &'static str {
        match self {
            RowError::Miss => "error_rate",
            RowError::AbsLog => "rmsle",
            RowError::Abs => "rmse",
        }
    }

    /// The aggregate: error rate for misses, root mean square otherwise.
    pub fn aggregate(self, errors: &[f64]) -> f64 {
        if errors.is_empty() {
            return 0.0;
        }
        let n = errors.len() as f64;
        match self {
            RowError::Miss => errors.iter().sum::<f64>() / n,
            RowError::AbsLog | RowError::Abs => {
                (errors.iter().map(|e| e * e).sum::<f64>() / n).sqrt()
            }
        }
    }

    /// Per-row errors of `pred` against `truth`.
    pub fn of(self, truth: &Labels, pred: &Predictions) -> Result<Vec<f64>> {
        let mismatch = || MlError::Mismatch("labels and predictions of different tasks".into());
        if truth.len() != pred.len() {
            return Err(MlError::Mismatch(format!(
                "{} labels but {} predictions",
                truth.len(),
                pred.len()
            )));
        }
        match (self, truth, pred) {
            (RowError::Miss, Labels::Classification(t), Predictions::Classification(p)) => Ok(t
                .iter()
                .zip(p)
                .map(|(a, b)| f64::from(u8::from(a != b)))
                .collect()),
            (RowError::AbsLog, Labels::Regression(t), Predictions::Regression(p)) => Ok(t
                .iter()
                .zip(p)
                .map(|(y, f)| (f.max(0.0).ln_1p() - y.max(0.0).ln_1p()).abs())
                .collect()),
            (RowError::Abs, Labels::Regression(t), Predictions::Regression(p)) => {
                Ok(t.iter().zip(p).map(|(y, f)| (f - y).abs()).collect())
            }
            _ => Err(mismatch()),
        }
    }
}

/// The model's error on each row of its validation split: what the error rule compares new rows'
/// errors with. Per-row values stay on the node (only aggregates and p-values are reported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationErrors {
    pub kind: RowError,
    pub errors: Vec<f64>,
}

impl ValidationErrors {
    /// The errors of a model's predictions `pred` of the validation split `valid`'s rows (None
    /// when it is empty).
    pub fn of_predictions(valid: &Table, pred: &Predictions) -> Result<Option<ValidationErrors>> {
        if valid.is_empty() {
            return Ok(None);
        }
        let kind = RowError::for_labels(&[&valid.labels]);
        let errors = kind.of(&valid.labels, pred)?;
        Ok(Some(ValidationErrors { kind, errors }))
    }
}

impl Reference {
    /// The reference of a model's training split `train`, with its errors on `valid`: what a node
    /// builds at each training.
    pub fn of_model(
        train: &Table,
        model: &Pipeline,
        valid: &Table,
        bins: usize,
    ) -> Result<Reference> {
        if valid.is_empty() {
            return Reference::with_bins(train, bins);
        }
        Reference::of_predictions(train, valid, &model.predict_table(valid)?, bins)
    }

    /// [`Reference::of_model`] from the model's predictions of `valid` (a node that has just
    /// scored its new model there predicts those rows once).
    pub fn of_predictions(
        train: &Table,
        valid: &Table,
        pred: &Predictions,
        bins: usize,
    ) -> Result<Reference> {
        let mut r = Reference::with_bins(train, bins)?;
        r.validation = ValidationErrors::of_predictions(valid, pred)?;
        Ok(r)
    }
}
