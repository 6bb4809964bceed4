//! Drift between the data a model was trained on (the [`Reference`]) and rows that arrived since:
//! PSI per feature over the reference's quantile bins (numeric) or category frequencies
//! (categorical), the two-sample Kolmogorov–Smirnov statistic for numeric columns, the same on the
//! label, and the model's error on the new labelled rows against its validation error.
//! Pure functions; the caller reads files and decides what to do with a [`DriftReport`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{parse_num, ColumnData, Labels, Table, Task};
use super::error::{MlError, Result};
use super::metrics::{score, Scores};
use super::pipeline::Pipeline;
use super::preprocess::num_text;

/// At most this many reference values per numeric column are kept for the KS statistic (evenly
/// spaced order statistics of the sorted column, so the kept sample's ECDF is within 1/10,000 of
/// the full one).
pub const KS_SAMPLE: usize = 10_000;

/// Bin shares below this are raised to it before the PSI's logarithm.
pub const PSI_EPSILON: f64 = 1e-4;

/// Thresholds of the drift decision (the `[drift]` keys `psi` and `share`, plus the error ratio and
/// the number of quantile bins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftSettings {
    /// A feature (or the label) drifted when its PSI is ≥ this.
    pub psi: f64,
    /// Dataset drift when at least this share of the features drifted.
    pub share: f64,
    /// Model-error drift when the error on the new rows is ≥ this × the validation error.
    pub error_ratio: f64,
    /// Quantile bins per numeric column of the reference.
    pub bins: usize,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            psi: 0.2,
            share: 0.5,
            error_ratio: 1.5,
            bins: 10,
        }
    }
}

impl DriftSettings {
    /// Checks the ranges; the message names the `[drift]` key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, rule: &str| Err(MlError::Config(format!("drift.{key} must be {rule}")));
        if !(self.psi.is_finite() && self.psi > 0.0) {
            return bad("psi", "a number > 0");
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
/// next to the model), compared with each batch of new rows by [`detect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub columns: Vec<ReferenceColumn>,
    pub label: ReferenceColumn,
    pub task: Task,
    /// Rows of the reference table.
    pub rows: usize,
    /// Quantile bins asked for per numeric column (fewer remain where values tie).
    pub bins: usize,
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
fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
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
fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e < x)
}

/// Shares per bin (missing last) of a numeric column over `edges`.
fn numeric_shares(edges: &[f64], values: impl Iterator<Item = Option<f64>>) -> Vec<f64> {
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
    sorted.sort_unstable_by(f64::total_cmp);
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

fn categorical_counts<'a>(
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

/// Population stability index `Σ (q − p) · ln(q / p)` of new shares `q` against reference shares
/// `p` (same bins, same order); shares below [`PSI_EPSILON`] are raised to it.
pub fn psi(reference: &[f64], new: &[f64]) -> f64 {
    reference
        .iter()
        .zip(new)
        .map(|(&p, &q)| {
            let (p, q) = (p.max(PSI_EPSILON), q.max(PSI_EPSILON));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov statistic `D = sup |F_a − F_b|` of two sorted samples (None when
/// one is empty).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    Some(d)
}

/// Survival function of the Kolmogorov distribution, `Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} e^{−2 j² λ²}`
/// (for λ < 1.18 the equivalent theta-function series, which converges fast there).
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // Q = 1 − √(2π)/λ Σ_{j≥1} exp(−(2j−1)² π² / (8 λ²))
        let c = std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let s: f64 = (1..=8)
            .map(|j| {
                let k = (2 * j - 1) as f64;
                (-k * k * c).exp()
            })
            .sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s).clamp(0.0, 1.0)
    } else {
        let s: f64 = (1..=100)
            .map(|j| {
                let j = j as f64;
                let sign = if j as u64 % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * j * j * lambda * lambda).exp()
            })
            .sum();
        (2.0 * s).clamp(0.0, 1.0)
    }
}

/// Asymptotic p-value of a two-sample KS statistic `d` for sample sizes `n`, `m`, with Stephens'
/// small-sample correction: `Q((√nₑ + 0.12 + 0.11/√nₑ) · d)`, `nₑ = n·m/(n+m)`.
pub fn ks_pvalue(d: f64, n: usize, m: usize) -> Option<f64> {
    if n == 0 || m == 0 || !d.is_finite() {
        return None;
    }
    let ne = (n as f64 * m as f64) / (n + m) as f64;
    let s = ne.sqrt();
    Some(kolmogorov_q((s + 0.12 + 0.11 / s) * d))
}

/// Drift of one feature (or of the label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    pub kind: FeatureKind,
    /// Always `"psi"` for now.
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub drifted: bool,
    /// Two-sample KS statistic on the present values (numeric columns).
    pub ks: Option<f64>,
    /// Its asymptotic p-value (reported, not used in the decision).
    pub ks_pvalue: Option<f64>,
}

/// The model's error on the new labelled rows against its validation error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDrift {
    /// `rmsle` (else `rmse`) for regression, `error_rate` (1 − accuracy) for classification.
    pub metric: String,
    pub valid: f64,
    pub new: f64,
    /// `new / valid`; None when the validation error is 0.
    pub ratio: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
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
    /// Model-error drift (None without a model or labels).
    pub error: Option<ErrorDrift>,
    pub drifted_features: usize,
    pub total_features: usize,
    /// `drifted_features / total_features`.
    pub share: f64,
    pub share_threshold: f64,
    pub dataset_drift: bool,
    /// Why `dataset_drift` is true, in words (empty when it is false).
    pub reasons: Vec<String>,
}

/// A new numeric-reference column as numbers: text cells parse (those that do not count as
/// missing, as at predict time); an absent column is all missing.
fn as_numbers(data: Option<&ColumnData>, rows: usize) -> Vec<Option<f64>> {
    match data {
        None => vec![None; rows],
        Some(ColumnData::Numeric(v)) => v.clone(),
        Some(ColumnData::Categorical(v)) => {
            v.iter().map(|c| c.as_deref().and_then(parse_num)).collect()
        }
    }
}

/// A new categorical-reference column as text: a number is spelled like the reference category it
/// equals (`1.5` → `"1.50"` when the reference has that level), else like the preprocessing spells
/// it (`2.0` → `"2"`); an absent column is all missing.
fn as_texts<'a>(
    s: &CategoricalSummary,
    data: Option<&'a ColumnData>,
    rows: usize,
) -> Vec<Option<Cow<'a, str>>> {
    match data {
        None => vec![None; rows],
        Some(ColumnData::Categorical(v)) => {
            v.iter().map(|c| c.as_deref().map(Cow::Borrowed)).collect()
        }
        Some(ColumnData::Numeric(v)) => {
            let by_value: Vec<(f64, &str)> = s
                .shares
                .iter()
                .filter_map(|(k, _)| parse_num(k).map(|x| (x, k.as_str())))
                .collect();
            v.iter()
                .map(|c| {
                    c.map(|x| match by_value.iter().find(|(y, _)| *y == x) {
                        Some((_, k)) => Cow::Owned(k.to_string()),
                        None => Cow::Owned(num_text(x)),
                    })
                })
                .collect()
        }
    }
}

/// PSI (and KS for numbers) of one new column against its reference column.
fn feature_drift(
    name: &str,
    summary: &Summary,
    data: Option<&ColumnData>,
    rows: usize,
    settings: &DriftSettings,
) -> FeatureDrift {
    let (kind, value, ks, ks_pvalue) = match summary {
        Summary::Numeric(s) => {
            let v = as_numbers(data, rows);
            let shares = numeric_shares(&s.edges, v.iter().copied());
            let mut present: Vec<f64> = v.into_iter().flatten().collect();
            present.sort_unstable_by(f64::total_cmp);
            let ks = ks_statistic(&s.sample, &present);
            let p = ks.and_then(|d| ks_pvalue(d, s.sample.len(), present.len()));
            (FeatureKind::Numeric, psi(&s.shares, &shares), ks, p)
        }
        Summary::Categorical(s) => {
            let v = as_texts(s, data, rows);
            let (counts, missing, n) = categorical_counts(v.iter().map(|c| c.as_deref()));
            let n = n.max(1) as f64;
            // Union of the categories, each its own bin, plus the missing bin.
            let mut bins: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for (k, p) in &s.shares {
                bins.entry(k.as_str()).or_default().0 = *p;
            }
            for (k, c) in &counts {
                bins.entry(k).or_default().1 = *c as f64 / n;
            }
            let (mut p, mut q): (Vec<f64>, Vec<f64>) = bins.into_values().unzip();
            p.push(s.missing);
            q.push(missing as f64 / n);
            (FeatureKind::Categorical, psi(&p, &q), None, None)
        }
    };
    FeatureDrift {
        name: name.to_string(),
        kind,
        statistic: "psi".into(),
        value,
        threshold: settings.psi,
        drifted: value >= settings.psi,
        ks,
        ks_pvalue,
    }
}

/// The error a metric set stands for: regression RMSLE when both sides have it, else RMSE;
/// classification 1 − accuracy.
fn errors(valid: &Scores, new: &Scores) -> Result<(&'static str, f64, f64)> {
    match (valid, new) {
        (Scores::Regression(a), Scores::Regression(b)) => Ok(match (a.rmsle, b.rmsle) {
            (Some(x), Some(y)) => ("rmsle", x, y),
            _ => ("rmse", a.rmse, b.rmse),
        }),
        (Scores::Classification(a), Scores::Classification(b)) => {
            Ok(("error_rate", 1.0 - a.accuracy, 1.0 - b.accuracy))
        }
        _ => Err(MlError::Mismatch(
            "validation scores and new rows are of different tasks".into(),
        )),
    }
}

/// Compare `new` rows (same header as the reference's data; a table whose label vector is empty
/// counts as unlabelled) with the reference. With `model = (current model, its validation
/// scores)` and labelled rows, the model's error on them is compared too. The reference's bins
/// are used; `settings.bins` must match them.
pub fn detect(
    reference: &Reference,
    new: &Table,
    model: Option<(&Pipeline, &Scores)>,
    settings: &DriftSettings,
) -> Result<DriftReport> {
    settings.validate()?;
    if settings.bins != reference.bins {
        return Err(MlError::Config(format!(
            "drift.bins = {} but the reference was built with {} bins",
            settings.bins, reference.bins
        )));
    }
    let labelled = !new.labels.is_empty();
    let rows = if labelled {
        new.labels.len()
    } else {
        new.columns
            .iter()
            .map(|c| col_len(&c.data))
            .max()
            .unwrap_or(0)
    };
    if rows == 0 {
        return Err(MlError::Data("drift: no new rows".into()));
    }
    if let Some(c) = new.columns.iter().find(|c| col_len(&c.data) != rows) {
        return Err(MlError::Mismatch(format!(
            "drift: column '{}' has {} cells for {} rows",
            c.name,
            col_len(&c.data),
            rows
        )));
    }
    if labelled && new.task() != reference.task {
        return Err(MlError::Mismatch(format!(
            "drift: new rows are labelled for {:?}, the reference for {:?}",
            new.task(),
            reference.task
        )));
    }
    let features: Vec<FeatureDrift> = reference
        .columns
        .iter()
        .map(|rc| {
            let data = new
                .columns
                .iter()
                .find(|c| c.name == rc.name)
                .map(|c| &c.data);
            feature_drift(&rc.name, &rc.summary, data, rows, settings)
        })
        .collect();
    let label = labelled.then(|| {
        let data = match &new.labels {
            Labels::Regression(v) => ColumnData::Numeric(v.iter().map(|x| Some(*x)).collect()),
            Labels::Classification(v) => {
                ColumnData::Categorical(v.iter().map(|s| Some(s.clone())).collect())
            }
        };
        let l = &reference.label;
        feature_drift(&l.name, &l.summary, Some(&data), rows, settings)
    });
    let error = match (model, labelled) {
        (Some((pipeline, valid)), true) => {
            if pipeline.task() != reference.task {
                return Err(MlError::Mismatch(format!(
                    "drift: the model is for {:?}, the reference for {:?}",
                    pipeline.task(),
                    reference.task
                )));
            }
            let pred = pipeline.predict_table(new)?;
            let now = score(&new.labels, &pred)?;
            let (metric, valid, new_err) = errors(valid, &now)?;
            let ratio = (valid > 0.0).then(|| new_err / valid);
            let drifted = match ratio {
                Some(r) => r >= settings.error_ratio,
                None => new_err > 0.0,
            };
            Some(ErrorDrift {
                metric: metric.into(),
                valid,
                new: new_err,
                ratio,
                threshold: settings.error_ratio,
                drifted,
            })
        }
        _ => None,
    };
    let total_features = features.len();
    let drifted_features = features.iter().filter(|f| f.drifted).count();
    let share = if total_features > 0 {
        drifted_features as f64 / total_features as f64
    } else {
        0.0
    };
    let mut reasons = Vec::new();
    if total_features > 0 && share >= settings.share {
        reasons.push(format!(
            "drift in {drifted_features}/{total_features} features (share {share:.3} ≥ {})",
            settings.share
        ));
    }
    if let Some(l) = label.as_ref().filter(|l| l.drifted) {
        reasons.push(format!(
            "label '{}' drifted (PSI {:.3} ≥ {})",
            l.name, l.value, l.threshold
        ));
    }
    if let Some(e) = error.as_ref().filter(|e| e.drifted) {
        reasons.push(match e.ratio {
            Some(r) => format!(
                "model {} rose from {:.4} to {:.4} (×{r:.2} ≥ {})",
                e.metric, e.valid, e.new, e.threshold
            ),
            None => format!("model {} rose from 0 to {:.4}", e.metric, e.new),
        });
    }
    Ok(DriftReport {
        rows,
        reference_rows: reference.rows,
        features,
        label,
        error,
        drifted_features,
        total_features,
        share,
        share_threshold: settings.share,
        dataset_drift: !reasons.is_empty(),
        reasons,
    })
}

fn col_len(d: &ColumnData) -> usize {
    match d {
        ColumnData::Numeric(v) => v.len(),
        ColumnData::Categorical(v) => v.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{parse_csv, Column, DataSpec};
    use crate::ml::synth::{write_rows, GenArgs};
    use crate::ml::{ModelConfig, ModelMeta};
    use std::path::Path;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    fn num(name: &str, v: &[Option<f64>]) -> Column {
        Column {
            name: name.into(),
            data: ColumnData::Numeric(v.to_vec()),
        }
    }

    fn cat(name: &str, v: &[Option<&str>]) -> Column {
        Column {
            name: name.into(),
            data: ColumnData::Categorical(v.iter().map(|s| s.map(String::from)).collect()),
        }
    }

    fn table(columns: Vec<Column>, labels: Labels) -> Table {
        Table {
            columns,
            labels,
            label_name: "y".into(),
        }
    }

    /// A generated shard as a table.
    fn generated(rows: usize, seed: u64, shift: f64, task: Task) -> Table {
        let mut args = GenArgs::new(rows, "gen.csv");
        args.seed = seed;
        args.shift = shift;
        args.task = task;
        let mut buf = Vec::new();
        write_rows(&args, true, &mut buf).unwrap();
        let spec = DataSpec {
            label: "y".into(),
            task,
            drop: vec![],
        };
        parse_csv(Path::new("gen.csv"), &buf, &spec).unwrap()
    }

    #[test]
    fn psi_of_known_distributions() {
        // (0.8−0.5)·ln(0.8/0.5) + (0.2−0.5)·ln(0.2/0.5) = 0.141001 + 0.274887
        assert!(close(psi(&[0.5, 0.5], &[0.8, 0.2]), 0.415_888_308));
        assert_eq!(psi(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
        // An empty reference bin counts as 1e-4: (0.5−1)·ln 0.5 + (0.5−1e-4)·ln(0.5/1e-4)
        assert!(close(psi(&[1.0, 0.0], &[0.5, 0.5]), 4.604_318_467));
    }

    #[test]
    fn quantile_edges_merge_ties() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            quantile_edges(&v, 10),
            (1..=9).map(f64::from).collect::<Vec<_>>()
        );
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        // ⌈k·20/5⌉-th smallest for k = 1..4
        assert_eq!(quantile_edges(&v, 5), vec![4.0, 8.0, 12.0, 16.0]);
        // Six zeros then 1..4: the 1st..9th smallest are 0,0,0,0,0,0,1,2,3.
        let v = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_edges(&v, 10), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(quantile_edges(&[7.0; 50], 10), vec![7.0]);
        assert!(quantile_edges(&[], 10).is_empty());
        // Bins are (−∞, e0], (e0, e1], …, (e_last, +∞).
        assert_eq!(bin_of(&[4.0, 8.0], 4.0), 0);
        assert_eq!(bin_of(&[4.0, 8.0], 4.5), 1);
        assert_eq!(bin_of(&[4.0, 8.0], 9.0), 2);
    }

    #[test]
    fn ks_of_small_samples() {
        // After 2: F_a = 2/4, F_b = 0; after 3: 3/4 vs 1/4; after 4: 1 vs 2/4.
        assert_eq!(
            ks_statistic(&[1., 2., 3., 4.], &[3., 4., 5., 6.]),
            Some(0.5)
        );
        assert_eq!(ks_statistic(&[1., 2., 3.], &[4., 5.]), Some(1.0));
        // Ties: after 1: 2/3 vs 1/3; after 2: 1 vs 1.
        let d = ks_statistic(&[1., 1., 2.], &[1., 2., 2.]).unwrap();
        assert!(close(d, 1.0 / 3.0));
        assert_eq!(ks_statistic(&[1., 2.], &[1., 2.]), Some(0.0));
        assert_eq!(ks_statistic(&[], &[1.0]), None);
    }

    #[test]
    fn kolmogorov_distribution() {
        // Tabulated: K(0.5) = 0.036055, K(1) = 0.730000, K(1.3581) = 0.95.
        assert!((kolmogorov_q(0.5) - 0.963_945).abs() < 1e-5);
        assert!((kolmogorov_q(1.0) - 0.270_000).abs() < 1e-5);
        assert!((kolmogorov_q(1.3581) - 0.05).abs() < 1e-4);
        // Both series agree where they switch.
        let (a, b) = (kolmogorov_q(1.18 - 1e-9), kolmogorov_q(1.18));
        assert!((a - b).abs() < 1e-8);
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert!(kolmogorov_q(5.0) < 1e-20);
        // n = m = 4, D = 0.5: nₑ = 2, λ = (√2 + 0.12 + 0.11/√2)·0.5 = 0.80599
        let p = ks_pvalue(0.5, 4, 4).unwrap();
        assert!((p - kolmogorov_q(0.805_994)).abs() < 1e-5 && p > 0.5);
    }

    #[test]
    fn hand_worked_report() {
        let x: Vec<Option<f64>> = (1..=10).map(|i| Some(f64::from(i))).collect();
        let c = [Some("a"), Some("a"), Some("b"), Some("b")]
            .into_iter()
            .cycle()
            .take(10)
            .collect::<Vec<_>>();
        let reference = table(
            vec![num("x", &x), cat("c", &c)],
            Labels::Regression((1..=10).map(f64::from).collect()),
        );
        let r = Reference::with_bins(&reference, 2).unwrap();
        // x: one edge (the 5th smallest, 5): shares [0.5, 0.5] and 0 missing.
        let Summary::Numeric(s) = &r.columns[0].summary else {
            panic!("numeric")
        };
        assert_eq!(
            (s.edges.clone(), s.shares.clone()),
            (vec![5.0], vec![0.5, 0.5, 0.0])
        );
        let mut nx: Vec<Option<f64>> = (1..=8).map(|i| Some(f64::from(i))).collect();
        nx.extend([None, None]);
        let nc = [
            Some("a"),
            Some("a"),
            Some("a"),
            Some("c"),
            Some("a"),
            Some("a"),
            Some("a"),
            Some("c"),
            Some("a"),
            Some("a"),
        ];
        let new = table(
            vec![cat("c", &nc), num("x", &nx), num("extra", &[Some(0.0); 10])],
            Labels::Regression(vec![]),
        );
        let settings = DriftSettings {
            bins: 2,
            ..Default::default()
        };
        let rep = detect(&r, &new, None, &settings).unwrap();
        assert_eq!((rep.rows, rep.total_features), (10, 2));
        // x: new shares [0.5, 0.3, 0.2]: (0.3−0.5)·ln(0.6) + (0.2−1e-4)·ln(0.2/1e-4)
        assert_eq!(rep.features[0].name, "x");
        assert!(close(rep.features[0].value, 1.621_585_526));
        // The KS sample keeps present values only: 1..8 against 1..10 → D = 8/8 − 8/10.
        assert!(close(rep.features[0].ks.unwrap(), 0.2));
        // c: a 0.8 (ref 0.6), b 0 (ref 0.4), unseen c 0.2 (ref 0), missing 0 both.
        let want = (0.8 - 0.6) * (0.8f64 / 0.6).ln()
            + (1e-4 - 0.4) * (1e-4f64 / 0.4).ln()
            + (0.2 - 1e-4) * (0.2f64 / 1e-4).ln();
        assert!(close(rep.features[1].value, want));
        assert_eq!(rep.features[1].kind, FeatureKind::Categorical);
        assert!(rep.features[1].ks.is_none());
        assert_eq!(rep.drifted_features, 2);
        assert!(rep.dataset_drift && rep.label.is_none() && rep.error.is_none());
        // Serializable both ways.
        let json = serde_json::to_string(&rep).unwrap();
        assert!(json.contains(r#""kind":"numeric""#) && json.contains(r#""statistic":"psi""#));
        let back: DriftReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rep);
        assert!(
            detect(&r, &new, None, &DriftSettings::default()).is_err(),
            "bins differ"
        );
    }

    #[test]
    fn constant_and_missing_columns() {
        let reference = table(
            vec![num("k", &[Some(3.0); 8]), num("m", &[None; 8])],
            Labels::Regression(vec![0.0; 8]),
        );
        let r = Reference::from_table(&reference).unwrap();
        let same = detect(&r, &reference, None, &DriftSettings::default()).unwrap();
        assert!(same.features.iter().all(|f| f.value == 0.0 && !f.drifted));
        assert_eq!(same.features[1].ks, None);
        assert!(!same.dataset_drift);
        let moved = table(
            vec![num("k", &[Some(4.0); 8]), num("m", &[None; 8])],
            Labels::Regression(vec![0.0; 8]),
        );
        let rep = detect(&r, &moved, None, &DriftSettings::default()).unwrap();
        assert!(rep.features[0].drifted && rep.features[0].ks == Some(1.0));
        // 1 of 2 features ≥ share 0.5.
        assert!(rep.dataset_drift);
    }

    #[test]
    fn new_cells_are_typed_like_the_reference() {
        let reference = table(
            vec![
                cat("c", &[Some("1.50"), Some("2"), Some("x"), Some("2")]),
                num("n", &[Some(1.0), Some(2.0), Some(3.0), Some(4.0)]),
            ],
            Labels::Classification(vec!["a".into(), "b".into(), "a".into(), "b".into()]),
        );
        let r = Reference::from_table(&reference).unwrap();
        // A batch without "x" infers `c` as numeric, and a stray word makes `n` text.
        let new = table(
            vec![
                num("c", &[Some(1.5), Some(2.0), Some(1.5), Some(2.0)]),
                cat("n", &[Some("1"), Some("2"), Some("3"), Some("4")]),
            ],
            Labels::Classification(vec!["a".into(), "b".into(), "a".into(), "b".into()]),
        );
        let rep = detect(&r, &new, None, &DriftSettings::default()).unwrap();
        assert_eq!(rep.features[1].value, 0.0);
        assert_eq!(rep.features[1].ks, Some(0.0));
        // c: 1.50 → 0.5 (ref 0.25), 2 → 0.5 (ref 0.5), x → 0 (ref 0.25): no unseen "1.5".
        let want = 0.25 * 2f64.ln() + (1e-4 - 0.25) * (1e-4f64 / 0.25).ln();
        assert!(close(rep.features[0].value, want));
        let label = rep.label.unwrap();
        assert_eq!(
            (label.kind, label.value, label.drifted),
            (FeatureKind::Categorical, 0.0, false)
        );
    }

    #[test]
    fn reference_round_trips_and_rejects_garbage() {
        let t = generated(300, 1, 0.0, Task::Classification);
        let r = Reference::from_table(&t).unwrap();
        let b = r.to_bytes().unwrap();
        assert_eq!(Reference::from_bytes(&b).unwrap(), r);
        assert!(Reference::from_bytes(&b[..b.len() / 2]).is_err());
        assert!(Reference::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn ks_sample_is_capped_and_deterministic() {
        let t = generated(25_000, 3, 0.0, Task::Regression);
        let r = Reference::from_table(&t).unwrap();
        let Summary::Numeric(s) = &r.columns[0].summary else {
            panic!("numeric")
        };
        assert_eq!((s.sample.len(), s.present), (KS_SAMPLE, 25_000));
        assert!(s.sample.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(Reference::from_table(&t).unwrap(), r);
        // The sample's ECDF stays close to the full column's.
        let Some(ColumnData::Numeric(v)) = t.columns.first().map(|c| &c.data) else {
            panic!("numeric")
        };
        let mut full: Vec<f64> = v.iter().flatten().copied().collect();
        full.sort_unstable_by(f64::total_cmp);
        assert!(ks_statistic(&s.sample, &full).unwrap() <= 2.0 / KS_SAMPLE as f64);
    }

    #[test]
    fn same_distribution_is_not_drift_a_shift_is() {
        let reference = generated(5_000, 1, 0.0, Task::Regression);
        let r = Reference::from_table(&reference).unwrap();
        let s = DriftSettings::default();
        let same = detect(&r, &generated(500, 2, 0.0, Task::Regression), None, &s).unwrap();
        assert!(!same.dataset_drift, "{:?}", same.reasons);
        assert_eq!(same.drifted_features, 0);
        // PSI under no drift ≈ (bins − 1)·(1/500 + 1/5000) ≈ 0.02.
        let max = same.features.iter().map(|f| f.value).fold(0.0, f64::max);
        assert!(max < 0.1, "max PSI {max}");
        assert!(!same.label.as_ref().unwrap().drifted);
        assert!(same.features.iter().all(|f| f.ks.unwrap() < 0.1));

        let moved = detect(&r, &generated(500, 2, 1.0, Task::Regression), None, &s).unwrap();
        assert!(moved.dataset_drift);
        assert_eq!(moved.drifted_features, 10);
        // U(0,1) moved by 1/√12: about 29 % of the mass leaves the reference range.
        assert!(moved.features.iter().all(|f| f.ks.unwrap() > 0.2));
        assert!(moved.features.iter().all(|f| f.ks_pvalue.unwrap() < 1e-6));
    }

    fn fitted(task: Task) -> (Reference, Pipeline, Scores) {
        let cfg = ModelConfig {
            kind: crate::ml::Kind::Tree,
            ..Default::default()
        };
        let data = generated(3_000, 1, 0.0, task);
        let (train, valid) = data.split(0.3, 42);
        let model = Pipeline::fit(&train, &cfg, ModelMeta::default()).unwrap();
        let valid_scores = score(&valid.labels, &model.predict_table(&valid).unwrap()).unwrap();
        (Reference::from_table(&train).unwrap(), model, valid_scores)
    }

    #[test]
    fn model_error_drift_regression() {
        let (r, model, valid) = fitted(Task::Regression);
        let s = DriftSettings::default();
        let m = Some((&model, &valid));
        let same = detect(&r, &generated(500, 2, 0.0, Task::Regression), m, &s).unwrap();
        let e = same.error.unwrap();
        assert!(!e.drifted && e.metric.starts_with("rms"), "{e:?}");
        assert!(!same.dataset_drift);
        // Moved 2 std: x3 alone adds up to 10·0.58 to y, beyond anything trained on.
        let moved = detect(&r, &generated(500, 2, 2.0, Task::Regression), m, &s).unwrap();
        let e = moved.error.unwrap();
        assert!(e.drifted && e.ratio.unwrap() >= 1.5, "{e:?}");
        assert!(moved.label.unwrap().drifted);
        assert_eq!(moved.reasons.len(), 3, "{:?}", moved.reasons);
    }

    #[test]
    fn model_error_drift_classification() {
        let (r, model, valid) = fitted(Task::Classification);
        let s = DriftSettings::default();
        let m = Some((&model, &valid));
        let same = detect(&r, &generated(500, 2, 0.0, Task::Classification), m, &s).unwrap();
        assert!(!same.error.unwrap().drifted && !same.dataset_drift);
        // Moved 2 std, the classes follow the (monotone) score: the label drifts, but the tree
        // extrapolates the right way, so its error rate need not rise.
        let moved = detect(&r, &generated(500, 2, 2.0, Task::Classification), m, &s).unwrap();
        assert!(moved.label.unwrap().drifted && moved.dataset_drift);
        // Concept drift: same features, classes swapped. Only the error sees it.
        let mut flipped = generated(500, 2, 0.0, Task::Classification);
        if let Labels::Classification(v) = &mut flipped.labels {
            for c in v.iter_mut() {
                *c = if c == "c0" { "c1".into() } else { "c0".into() };
            }
        }
        let rep = detect(&r, &flipped, m, &s).unwrap();
        let e = rep.error.unwrap();
        assert!(
            e.drifted && e.metric == "error_rate" && e.new > 0.5,
            "{e:?}"
        );
        assert_eq!(rep.drifted_features, 0);
        assert!(rep.dataset_drift);
    }

    #[test]
    fn error_metric_choice() {
        use crate::ml::{ClassificationScores, RegressionScores};
        let reg = |rmse, rmsle| {
            Scores::Regression(RegressionScores {
                rmse,
                rmsle,
                r2: 0.0,
                mae: 0.0,
            })
        };
        assert_eq!(
            errors(&reg(2.0, Some(0.1)), &reg(3.0, Some(0.2))).unwrap(),
            ("rmsle", 0.1, 0.2)
        );
        assert_eq!(
            errors(&reg(2.0, Some(0.1)), &reg(3.0, None)).unwrap(),
            ("rmse", 2.0, 3.0)
        );
        let cls = |accuracy| {
            Scores::Classification(ClassificationScores {
                accuracy,
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
            })
        };
        let (m, a, b) = errors(&cls(0.75), &cls(0.5)).unwrap();
        assert_eq!((m, a, b), ("error_rate", 0.25, 0.5));
        assert!(errors(&cls(0.5), &reg(1.0, None)).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let t = generated(50, 1, 0.0, Task::Regression);
        let r = Reference::from_table(&t).unwrap();
        let bad = DriftSettings {
            share: 0.0,
            ..Default::default()
        };
        assert!(detect(&r, &t, None, &bad).is_err());
        let empty = table(vec![], Labels::Regression(vec![]));
        assert!(detect(&r, &empty, None, &DriftSettings::default()).is_err());
        let ragged = table(
            vec![num("x0", &[Some(1.0)])],
            Labels::Regression(vec![1.0, 2.0]),
        );
        assert!(detect(&r, &ragged, None, &DriftSettings::default()).is_err());
        let other_task = generated(50, 1, 0.0, Task::Classification);
        assert!(detect(&r, &other_task, None, &DriftSettings::default()).is_err());
        assert!(Reference::from_table(&empty).is_err());
    }
}
