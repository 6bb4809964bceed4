//! Preprocessing fitted on a node's training split and shipped inside its model: median
//! imputation of numbers; categoricals with a "missing" level (when training saw missing cells) or
//! the most frequent level; unseen categories and absent columns are treated as missing.
//!
//! Two encodings. For trees (and the line of `hybrid`), each categorical becomes one ordinal
//! column whose code for a level is its (smoothed) mean training target, so one threshold
//! separates cheap from expensive neighbourhoods and a line sees how far apart they are (by
//! frequency rank when there is no target to go by). For linear models, one-hot columns for the
//! 30 most frequent levels.

use std::collections::BTreeMap;
use std::ops::Range;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub(crate) use super::data::num_text;
use super::data::{parse_num, with_num_text, ColumnData, Rows, Table, Value};
use super::error::{MlError, Result};
use super::levels::LevelIndex;
use super::schema::{ColumnKind, Schema};
use super::typed::TypedRows;

/// Levels kept as one-hot columns per categorical (the rest act as unseen).
const MAX_ONE_HOT: usize = 30;
/// Pseudo-count pulling a rare level's mean target towards the global mean in its ordinal code.
const SMOOTHING: f64 = 5.0;

/// How one input column is imputed and encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnPrep {
    Numeric {
        name: String,
        median: f64,
    },
    Categorical {
        name: String,
        /// Sorted levels seen in training.
        levels: Vec<String>,
        /// Ordinal code of each level (trees), or its one-hot slot (`-1` = no column).
        codes: Vec<f64>,
        /// Code (or slot) used for missing and unseen cells.
        missing: f64,
        /// Number of one-hot columns (0 in ordinal mode).
        width: usize,
    },
}

/// The fitted preprocessing of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub columns: Vec<ColumnPrep>,
    pub one_hot: bool,
    pub n_features: usize,
}

/// One cell on its way into the encoder.
enum Cell<'a> {
    Missing,
    Num(f64),
    Text(&'a str),
}

/// The median of `v` (0 when empty), reordering `v`: a selection, not a sort (a column of a
/// large shard has hundreds of thousands of values).
fn median(v: &mut [f64]) -> f64 {
    let m = v.len();
    if m == 0 {
        return 0.0;
    }
    let (below, &mut mid, _) = v.select_nth_unstable_by(m / 2, f64::total_cmp);
    if m % 2 == 1 {
        return mid;
    }
    // The element just below the middle is the largest of those before it.
    let lower = below.iter().copied().max_by(f64::total_cmp).unwrap_or(mid);
    (lower + mid) / 2.0
}

impl Preprocessor {
    /// Fit on a training table. `stat` codes categorical levels for the ordinal encoding (each
    /// level's smoothed mean of it: the fitted target, or the class-1 indicator); `None` ranks
    /// them by frequency.
    pub fn fit(train: &Table, stat: Option<&[f64]>, one_hot: bool) -> Preprocessor {
        let mut columns = Vec::with_capacity(train.columns.len());
        let mut n_features = 0;
        for col in &train.columns {
            match &col.data {
                ColumnData::Numeric(v) => {
                    let mut present: Vec<f64> = v.iter().flatten().copied().collect();
                    let median = median(&mut present);
                    columns.push(ColumnPrep::Numeric {
                        name: col.name.clone(),
                        median,
                    });
                    n_features += 1;
                }
                ColumnData::Categorical(v) => {
                    let prep = fit_categorical(&col.name, v, stat, one_hot);
                    n_features += if one_hot {
                        match &prep {
                            ColumnPrep::Categorical { width, .. } => *width,
                            ColumnPrep::Numeric { .. } => 1,
                        }
                    } else {
                        1
                    };
                    columns.push(prep);
                }
            }
        }
        Preprocessor {
            columns,
            one_hot,
            n_features,
        }
    }

    /// Whether each encoded feature is a categorical's ordinal code (not a number, not a one-hot
    /// slot).
    pub fn ordinal_codes(&self) -> Vec<bool> {
        self.columns
            .iter()
            .flat_map(|c| {
                let code = !self.one_hot && matches!(c, ColumnPrep::Categorical { .. });
                std::iter::repeat_n(code, self.width(c))
            })
            .collect()
    }

    fn encode(&self, col: &ColumnPrep, cell: Cell, out: &mut [f64]) {
        match col {
            ColumnPrep::Numeric { median, .. } => {
                out[0] = match cell {
                    Cell::Num(v) if v.is_finite() => v,
                    Cell::Text(s) => parse_num(s).unwrap_or(*median),
                    _ => *median,
                };
            }
            ColumnPrep::Categorical {
                levels,
                codes,
                missing,
                ..
            } => {
                let owned;
                let key = match cell {
                    Cell::Missing => None,
                    Cell::Text(s) => Some(s),
                    Cell::Num(v) => {
                        owned = num_text(v);
                        Some(owned.as_str())
                    }
                };
                let code = key
                    .and_then(|k| levels.binary_search_by(|l| l.as_str().cmp(k)).ok())
                    .map_or(*missing, |i| codes[i]);
                if self.one_hot {
                    out.iter_mut().for_each(|v| *v = 0.0);
                    if code >= 0.0 {
                        out[code as usize] = 1.0;
                    }
                } else {
                    out[0] = code;
                }
            }
        }
    }

    fn width(&self, col: &ColumnPrep) -> usize {
        match col {
            ColumnPrep::Categorical { width, .. } if self.one_hot => *width,
            _ => 1,
        }
    }

    /// Encode a typed table (training or validation data).
    pub fn transform_table(&self, t: &Table) -> Result<Array2<f64>> {
        let n = t.len();
        let mut x = Array2::zeros((n, self.n_features));
        let by_name: BTreeMap<&str, usize> = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut off = 0;
        for col in &self.columns {
            let w = self.width(col);
            let src = by_name.get(col_name(col)).map(|&i| &t.columns[i].data);
            for i in 0..n {
                let cell = match src {
                    None => Cell::Missing,
                    Some(ColumnData::Numeric(v)) => v[i].map_or(Cell::Missing, Cell::Num),
                    Some(ColumnData::Categorical(v)) => {
                        v[i].as_deref().map_or(Cell::Missing, Cell::Text)
                    }
                };
                let mut row = x.row_mut(i);
                let slice = row
                    .as_slice_mut()
                    .ok_or_else(|| MlError::Mismatch("non-contiguous matrix".into()))?;
                self.encode(col, cell, &mut slice[off..off + w]);
            }
            off += w;
        }
        Ok(x)
    }

    /// Encode raw rows: columns matched by name, absent columns are missing, extra ones ignored.
    pub fn transform_rows(&self, rows: &Rows) -> Result<Array2<f64>> {
        self.transform_row_range(rows, 0..rows.len())
    }

    /// [`Preprocessor::transform_rows`] of the rows in `range` only (clamped to the rows).
    pub fn transform_row_range(&self, rows: &Rows, range: Range<usize>) -> Result<Array2<f64>> {
        let end = range.end.min(rows.len());
        let start = range.start.min(end);
        let n = end - start;
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in rows.columns.iter().enumerate() {
            by_name.entry(c.as_str()).or_insert(i);
        }
        let src: Vec<Option<usize>> = self
            .columns
            .iter()
            .map(|c| by_name.get(col_name(c)).copied())
            .collect();
        let mut x = Array2::zeros((n, self.n_features));
        for (i, r) in rows.data[start..end].iter().enumerate() {
            if r.len() != rows.columns.len() {
                return Err(MlError::Mismatch(format!(
                    "row {} has {} values for {} columns",
                    start + i + 1,
                    r.len(),
                    rows.columns.len()
                )));
            }
            let mut row = x.row_mut(i);
            let slice = row
                .as_slice_mut()
                .ok_or_else(|| MlError::Mismatch("non-contiguous matrix".into()))?;
            let mut off = 0;
            for (col, s) in self.columns.iter().zip(&src) {
                let w = self.width(col);
                let cell = match s.map(|j| &r[j]) {
                    None | Some(Value::Missing) => Cell::Missing,
                    Some(Value::Num(v)) => Cell::Num(*v),
                    Some(Value::Text(t)) => Cell::Text(t),
                };
                self.encode(col, cell, &mut slice[off..off + w]);
                off += w;
            }
        }
        Ok(x)
    }
}

/// Where one input column of a preprocessor is found in batches of a given schema.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Absent,
    /// The numeric slot of the batch.
    Number(usize),
    /// The categorical slot of the batch.
    Category(usize),
}

/// A preprocessor's columns located in one schema: computed once per schema, then every batch of
/// that schema is read by index.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    sources: Vec<Source>,
    /// The categorical columns' levels, by the column's position in the preprocessor.
    levels: LevelIndex,
}

impl Preprocessor {
    /// Locates this preprocessor's columns in `schema` (absent ones are missing).
    pub fn bind(&self, schema: &Schema) -> Binding {
        let sources = self
            .columns
            .iter()
            .map(|c| match schema.position(col_name(c)) {
                None => Source::Absent,
                Some(at) => match schema.kind(at) {
                    ColumnKind::Number => Source::Number(schema.slot(at)),
                    ColumnKind::Category => Source::Category(schema.slot(at)),
                },
            })
            .collect();
        let levels = LevelIndex::new(self.columns.iter().enumerate().filter_map(
            |(j, c)| match c {
                ColumnPrep::Categorical { levels, codes, .. } => {
                    Some((j as u32, &levels[..], &codes[..]))
                }
                ColumnPrep::Numeric { .. } => None,
            },
        ));
        Binding { sources, levels }
    }

    /// Encodes a typed batch into `x` (row-major, `rows × n_features`), exactly as
    /// [`Preprocessor::transform_rows`] encodes the same cells. A dictionary entry is looked up
    /// once per batch, not once per row.
    pub fn transform_typed(
        &self,
        binding: &Binding,
        rows: &TypedRows,
        x: &mut [f64],
    ) -> Result<()> {
        let (n, nf) = (rows.len(), self.n_features);
        if x.len() != n * nf || binding.sources.len() != self.columns.len() {
            return Err(MlError::Mismatch(format!(
                "{} cells for {n} rows of {nf} features",
                x.len()
            )));
        }
        // What each dictionary entry of the column at hand encodes to: one buffer for all the
        // columns of the batch.
        let mut vals: Vec<f64> = Vec::new();
        let mut off = 0;
        for (j, (col, src)) in self.columns.iter().zip(&binding.sources).enumerate() {
            match col {
                ColumnPrep::Numeric { median, .. } => {
                    let m = *median;
                    match *src {
                        Source::Absent => (0..n).for_each(|i| x[i * nf + off] = m),
                        Source::Number(slot) => {
                            let col = rows.numbers(slot);
                            for i in 0..n {
                                let v = col.get(i);
                                x[i * nf + off] = if v.is_finite() { v } else { m };
                            }
                        }
                        Source::Category(slot) => {
                            let col = rows.categories(slot);
                            vals.clear();
                            vals.extend(col.entries().map(|e| parse_num(e).unwrap_or(m)));
                            for (i, code) in col.codes().enumerate() {
                                x[i * nf + off] = vals.get(code as usize).copied().unwrap_or(m);
                            }
                        }
                    }
                    off += 1;
                }
                ColumnPrep::Categorical { missing, .. } => {
                    let lookup = |k: &[u8]| binding.levels.get(j as u32, k).unwrap_or(*missing);
                    let w = self.width(col);
                    let one_hot = self.one_hot;
                    let put = |x: &mut [f64], i: usize, code: f64| {
                        let cells = &mut x[i * nf + off..i * nf + off + w];
                        if one_hot {
                            cells.iter_mut().for_each(|c| *c = 0.0);
                            if code >= 0.0 {
                                cells[code as usize] = 1.0;
                            }
                        } else {
                            cells[0] = code;
                        }
                    };
                    match *src {
                        Source::Absent => (0..n).for_each(|i| put(x, i, *missing)),
                        Source::Category(slot) => {
                            let col = rows.categories(slot);
                            vals.clear();
                            vals.extend(col.entry_bytes().map(lookup));
                            for (i, code) in col.codes().enumerate() {
                                put(x, i, vals.get(code as usize).copied().unwrap_or(*missing));
                            }
                        }
                        Source::Number(slot) => {
                            for (i, v) in rows.numbers(slot).iter().enumerate() {
                                let code = if v.is_nan() {
                                    *missing
                                } else {
                                    with_num_text(v, |t| lookup(t.as_bytes()))
                                };
                                put(x, i, code);
                            }
                        }
                    }
                    off += w;
                }
            }
        }
        Ok(())
    }
}

fn col_name(c: &ColumnPrep) -> &str {
    match c {
        ColumnPrep::Numeric { name, .. } | ColumnPrep::Categorical { name, .. } => name,
    }
}

/// Key of the "missing" level in the statistics (sorts apart from real levels).
const MISSING_KEY: Option<&str> = None;

fn fit_categorical(
    name: &str,
    v: &[Option<String>],
    stat: Option<&[f64]>,
    one_hot: bool,
) -> ColumnPrep {
    // count and target sum per level; None = missing level.
    let mut acc: BTreeMap<Option<&str>, (f64, f64)> = BTreeMap::new();
    for (i, cell) in v.iter().enumerate() {
        let e = acc.entry(cell.as_deref()).or_insert((0.0, 0.0));
        e.0 += 1.0;
        e.1 += stat.map_or(0.0, |s| s[i]);
    }
    let levels: Vec<String> = acc.keys().flatten().map(|s| s.to_string()).collect();
    let has_missing = acc.contains_key(&MISSING_KEY);
    // The most frequent real level (first in sort order on ties) stands in for missing cells when
    // training saw none.
    let most_frequent = acc
        .iter()
        .filter_map(|(k, (c, _))| k.map(|k| (k, *c)))
        .fold(None::<(&str, f64)>, |b, (k, c)| match b {
            Some((_, bc)) if bc >= c => b,
            _ => Some((k, c)),
        })
        .map(|(k, _)| k);
    if one_hot {
        // Slots for the MAX_ONE_HOT most frequent real levels (ties by name), then a missing slot.
        let mut by_freq: Vec<(&str, f64)> = acc
            .iter()
            .filter_map(|(k, (c, _))| k.map(|k| (k, *c)))
            .collect();
        by_freq.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        by_freq.truncate(MAX_ONE_HOT);
        let slot: BTreeMap<&str, usize> = by_freq
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i))
            .collect();
        let mut width = slot.len();
        let codes: Vec<f64> = levels
            .iter()
            .map(|l| slot.get(l.as_str()).map_or(-1.0, |&i| i as f64))
            .collect();
        let missing = if has_missing {
            width += 1;
            (width - 1) as f64
        } else {
            most_frequent
                .and_then(|m| slot.get(m))
                .map_or(-1.0, |&i| i as f64)
        };
        return ColumnPrep::Categorical {
            name: name.to_string(),
            levels,
            codes,
            missing,
            width: width.max(1),
        };
    }
    // Ordinal. With a stat, each level's (missing included) code is its smoothed mean stat: the
    // order trees split on, and spacing a line can use (a rank would put a level that is barely
    // dearer than the next as far from it as one that is twice as dear). Without, the rank by
    // frequency.
    let total: (f64, f64) = acc.values().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let global = if total.0 > 0.0 {
        total.1 / total.0
    } else {
        0.0
    };
    let code: BTreeMap<Option<&str>, f64> = if stat.is_some() {
        acc.iter()
            .map(|(k, (c, s))| (*k, (s + SMOOTHING * global) / (c + SMOOTHING)))
            .collect()
    } else {
        let mut ranked: Vec<(Option<&str>, f64)> = acc.iter().map(|(k, (c, _))| (*k, -c)).collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        ranked
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i as f64))
            .collect()
    };
    let codes = levels.iter().map(|l| code[&Some(l.as_str())]).collect();
    let missing = if has_missing {
        code[&MISSING_KEY]
    } else {
        most_frequent.map_or(0.0, |m| code[&Some(m)])
    };
    ColumnPrep::Categorical {
        name: name.to_string(),
        levels,
        codes,
        missing,
        width: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{Column, Labels};

    fn table() -> Table {
        Table {
            columns: vec![
                Column {
                    name: "n".into(),
                    data: ColumnData::Numeric(vec![Some(1.0), None, Some(5.0), Some(3.0)]),
                },
                Column {
                    name: "c".into(),
                    data: ColumnData::Categorical(vec![
                        Some("b".into()),
                        Some("a".into()),
                        Some("b".into()),
                        None,
                    ]),
                },
            ],
            labels: Labels::Regression(vec![10.0, 0.0, 10.0, 20.0]),
            label_name: "y".into(),
        }
    }

    #[test]
    fn median_by_selection_is_the_sorted_middle() {
        for n in [1usize, 2, 3, 4, 7, 10, 1001, 1000] {
            let v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 613) as f64 - 300.0).collect();
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let want = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            assert_eq!(median(&mut v.clone()), want, "n = {n}");
        }
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn ordinal_by_target_and_median() {
        let t = table();
        let p = Preprocessor::fit(&t, Some(&[10.0, 0.0, 10.0, 20.0]), false);
        // median of 1, 3, 5 = 3. Global mean 10; smoothed means, the codes: a = (0 + 50)/6,
        // b = (20 + 50)/7 = 10, missing = (20 + 50)/6.
        let (a, b, missing) = (50.0 / 6.0, 10.0, 70.0 / 6.0);
        let x = p.transform_table(&t).unwrap();
        assert_eq!(x.column(0).to_vec(), vec![1.0, 3.0, 5.0, 3.0]);
        assert_eq!(x.column(1).to_vec(), vec![b, a, b, missing]);
        // Raw rows: unseen level → missing code; absent column "n" → median; number → text.
        let rows = Rows {
            columns: vec!["c".into(), "zzz".into()],
            data: vec![
                vec![Value::Text("new".into()), Value::Num(1.0)],
                vec![Value::Text("a".into()), Value::Missing],
            ],
        };
        let x = p.transform_rows(&rows).unwrap();
        assert_eq!(x.row(0).to_vec(), vec![3.0, missing]);
        assert_eq!(x.row(1).to_vec(), vec![3.0, a]);
    }

    #[test]
    fn one_hot_slots() {
        let t = table();
        let p = Preprocessor::fit(&t, None, true);
        // slots: b (2 rows) then a (1 row), then the missing slot: width 3, plus the number.
        assert_eq!(p.n_features, 4);
        let x = p.transform_table(&t).unwrap();
        assert_eq!(x.row(0).to_vec(), vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(x.row(1).to_vec(), vec![3.0, 0.0, 1.0, 0.0]);
        assert_eq!(x.row(3).to_vec(), vec![3.0, 0.0, 0.0, 1.0]);
    }
}
