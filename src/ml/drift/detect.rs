//! [`detect`]: one drift check of new rows against a [`Reference`], in steps: type the new
//! columns like the reference's, test each column, test the model's error, then correct all the
//! p-values together (Holm) and decide.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::reference::{
    categorical_counts, numeric_shares, CategoricalSummary, FeatureKind, Reference, Summary,
};
use super::stats::{
    chi2_homogeneity, fisher_greater, holm, ks_pvalue, ks_statistic, mann_whitney_greater, psi,
};
use super::{DriftReport, DriftSettings, ErrorDrift, FeatureDrift};
use crate::ml::data::{parse_num, ColumnData, Labels, Table};
use crate::ml::error::{MlError, Result};
use crate::ml::pipeline::Pipeline;
use crate::ml::preprocess::num_text;
use crate::ml::sort::sort_total;

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

/// A column's tests before the correction: (PSI, its chi-square p, KS, KS p).
struct Tested {
    kind: FeatureKind,
    psi: f64,
    psi_pvalue: f64,
    ks: Option<f64>,
    ks_pvalue: Option<f64>,
}

impl Tested {
    /// One p-value per column: numeric columns are tested twice (shape of the values by KS,
    /// shares of bins and of missing cells by chi-square), so the smaller p is doubled.
    fn p_value(&self) -> f64 {
        match self.ks_pvalue {
            Some(k) => (2.0 * k.min(self.psi_pvalue)).min(1.0),
            None => self.psi_pvalue,
        }
    }
}

fn scale(shares: &[f64], n: usize) -> Vec<f64> {
    shares.iter().map(|s| s * n as f64).collect()
}

fn numeric_column(
    s: &super::NumericSummary,
    data: Option<&ColumnData>,
    rows: usize,
    ref_rows: usize,
) -> Tested {
    let v = as_numbers(data, rows);
    let shares = numeric_shares(&s.edges, v.iter().copied());
    let (_, _, psi_pvalue) = chi2_homogeneity(&scale(&s.shares, ref_rows), &scale(&shares, rows));
    let mut present: Vec<f64> = v.into_iter().flatten().collect();
    sort_total(&mut present);
    let ks = ks_statistic(&s.sample, &present);
    Tested {
        kind: FeatureKind::Numeric,
        psi: psi(&s.shares, &shares),
        psi_pvalue,
        ks,
        ks_pvalue: ks.and_then(|d| ks_pvalue(d, s.sample.len(), present.len())),
    }
}

fn categorical_column(
    s: &CategoricalSummary,
    data: Option<&ColumnData>,
    rows: usize,
    ref_rows: usize,
) -> Tested {
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
    let (_, _, psi_pvalue) = chi2_homogeneity(&scale(&p, ref_rows), &scale(&q, rows));
    Tested {
        kind: FeatureKind::Categorical,
        psi: psi(&p, &q),
        psi_pvalue,
        ks: None,
        ks_pvalue: None,
    }
}

/// The tests of one new column against its reference column (`p_adjusted` filled in later).
fn column_drift(
    name: &str,
    summary: &Summary,
    data: Option<&ColumnData>,
    rows: usize,
    reference: &Reference,
    settings: &DriftSettings,
) -> FeatureDrift {
    let t = match summary {
        Summary::Numeric(s) => numeric_column(s, data, rows, reference.rows),
        Summary::Categorical(s) => categorical_column(s, data, rows, reference.rows),
    };
    let p_value = t.p_value();
    FeatureDrift {
        name: name.to_string(),
        kind: t.kind,
        statistic: "psi".into(),
        value: t.psi,
        threshold: settings.psi,
        drifted: false,
        ks: t.ks,
        ks_pvalue: t.ks_pvalue,
        psi_pvalue: t.psi_pvalue,
        p_value,
        p_adjusted: p_value,
    }
}

/// The model's errors on the new rows against its validation errors (None when the reference
/// holds no validation errors).
fn error_drift(
    reference: &Reference,
    model: &Pipeline,
    new: &Table,
    settings: &DriftSettings,
) -> Result<Option<ErrorDrift>> {
    if model.task() != reference.task {
        return Err(MlError::Mismatch(format!(
            "drift: the model is for {:?}, the reference for {:?}",
            model.task(),
            reference.task
        )));
    }
    let Some(v) = reference
        .validation
        .as_ref()
        .filter(|v| !v.errors.is_empty())
    else {
        return Ok(None);
    };
    let pred = model.predict_table(new)?;
    let errors = v.kind.of(&new.labels, &pred)?;
    let (valid, now) = (v.kind.aggregate(&v.errors), v.kind.aggregate(&errors));
    let (test, p_value) = match v.kind {
        super::RowError::Miss => {
            let count = |e: &[f64]| e.iter().filter(|x| **x > 0.0).count() as u64;
            let (n1, n2) = (v.errors.len() as u64, errors.len() as u64);
            let p = fisher_greater(count(&v.errors), n1, count(&errors), n2);
            ("fisher_exact", p)
        }
        _ => ("mann_whitney", mann_whitney_greater(&v.errors, &errors)),
    };
    Ok(Some(ErrorDrift {
        metric: v.kind.metric().into(),
        valid,
        new: now,
        ratio: (valid > 0.0).then(|| now / valid),
        threshold: settings.error_ratio,
        drifted: false,
        test: test.into(),
        valid_rows: v.errors.len(),
        new_rows: errors.len(),
        p_value,
        p_adjusted: p_value,
    }))
}

/// Rows of `new` (labelled or not), checked for a consistent shape and task.
fn new_rows(reference: &Reference, new: &Table) -> Result<(usize, bool)> {
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
    Ok((rows, labelled))
}

fn label_column(labels: &Labels) -> ColumnData {
    match labels {
        Labels::Regression(v) => ColumnData::Numeric(v.iter().map(|x| Some(*x)).collect()),
        Labels::Classification(v) => {
            ColumnData::Categorical(v.iter().map(|s| Some(s.clone())).collect())
        }
    }
}

/// Holm over every p-value of the check, then the floors; returns the reasons for dataset drift.
fn decide(
    features: &mut [FeatureDrift],
    label: &mut Option<FeatureDrift>,
    error: &mut Option<ErrorDrift>,
    settings: &DriftSettings,
) -> Vec<String> {
    let mut p: Vec<f64> = features.iter().map(|f| f.p_value).collect();
    p.extend(label.iter().map(|l| l.p_value));
    p.extend(error.iter().map(|e| e.p_value));
    let adjusted = holm(&p);
    let alpha = settings.alpha;
    let mut adj = adjusted.into_iter();
    for f in features.iter_mut().chain(label.iter_mut()) {
        f.p_adjusted = adj.next().unwrap_or(1.0);
        f.drifted = f.p_adjusted <= alpha && f.value >= f.threshold;
    }
    if let Some(e) = error.as_mut() {
        e.p_adjusted = adj.next().unwrap_or(1.0);
        let big_enough = e.ratio.map_or(e.new > 0.0, |r| r >= e.threshold);
        e.drifted = e.p_adjusted <= alpha && big_enough;
    }
    let total = features.len();
    let drifted = features.iter().filter(|f| f.drifted).count();
    let mut reasons = Vec::new();
    if total > 0 && drifted > 0 && drifted as f64 / total as f64 >= settings.share {
        reasons.push(format!(
            "drift in {drifted}/{total} features (share {:.3} ≥ {}, each p_adjusted ≤ {alpha})",
            drifted as f64 / total as f64,
            settings.share
        ));
    }
    if let Some(l) = label.as_ref().filter(|l| l.drifted) {
        reasons.push(format!(
            "label '{}' drifted (PSI {:.3}, p_adjusted {:.2e} ≤ {alpha})",
            l.name, l.value, l.p_adjusted
        ));
    }
    if let Some(e) = error.as_ref().filter(|e| e.drifted) {
        reasons.push(format!(
            "model {} rose from {:.4} to {:.4} ({} p_adjusted {:.2e} ≤ {alpha})",
            e.metric, e.valid, e.new, e.test, e.p_adjusted
        ));
    }
    reasons
}

/// Compare `new` rows (same header as the reference's data; a table whose label vector is empty
/// counts as unlabelled) with the reference. With the current `model` and labelled rows, its
/// error on them is compared with its validation errors (kept in the reference) too. The
/// reference's bins are used; `settings.bins` must match them.
pub fn detect(
    reference: &Reference,
    new: &Table,
    model: Option<&Pipeline>,
    settings: &DriftSettings,
) -> Result<DriftReport> {
    settings.validate()?;
    if settings.bins != reference.bins {
        return Err(MlError::Config(format!(
            "drift.bins = {} but the reference was built with {} bins",
            settings.bins, reference.bins
        )));
    }
    let (rows, labelled) = new_rows(reference, new)?;
    let mut features: Vec<FeatureDrift> = reference
        .columns
        .iter()
        .map(|rc| {
            let data = new
                .columns
                .iter()
                .find(|c| c.name == rc.name)
                .map(|c| &c.data);
            column_drift(&rc.name, &rc.summary, data, rows, reference, settings)
        })
        .collect();
    let mut label = labelled.then(|| {
        let l = &reference.label;
        let data = label_column(&new.labels);
        column_drift(&l.name, &l.summary, Some(&data), rows, reference, settings)
    });
    let mut error = match (model, labelled) {
        (Some(m), true) => error_drift(reference, m, new, settings)?,
        _ => None,
    };
    let reasons = decide(&mut features, &mut label, &mut error, settings);
    let total_features = features.len();
    let drifted_features = features.iter().filter(|f| f.drifted).count();
    let tests = total_features + usize::from(label.is_some()) + usize::from(error.is_some());
    Ok(DriftReport {
        rows,
        reference_rows: reference.rows,
        share: if total_features > 0 {
            drifted_features as f64 / total_features as f64
        } else {
            0.0
        },
        features,
        label,
        error,
        drifted_features,
        total_features,
        share_threshold: settings.share,
        dataset_drift: !reasons.is_empty(),
        reasons,
        alpha: settings.alpha,
        tests,
    })
}

fn col_len(d: &ColumnData) -> usize {
    match d {
        ColumnData::Numeric(v) => v.len(),
        ColumnData::Categorical(v) => v.len(),
    }
}
