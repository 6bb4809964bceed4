//! Shards as typed tables: CSV loading with numeric / categorical inference and missing values,
//! raw rows (what travels over the wire for prediction), and the seeded train / validation split.

use std::collections::BTreeSet;
use std::path::Path;

use ndarray_rand::rand::seq::SliceRandom;
use ndarray_rand::rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::error::{MlError, Result};

/// What the label is: a number to regress or a class to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Regression,
    Classification,
}

/// How to read a shard: the label column, the task, and columns to ignore (e.g. `Id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub label: String,
    pub task: Task,
    #[serde(default)]
    pub drop: Vec<String>,
}

/// One raw cell, before any preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Missing,
    Num(f64),
    Text(String),
}

/// Raw feature rows by column name: what a predict request carries. Columns may be in any order,
/// missing (treated as missing values) or extra (ignored).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub data: Vec<Vec<Value>>,
}

/// Cells that mean "missing" in a CSV or a JSON string.
pub fn is_missing_token(s: &str) -> bool {
    matches!(s, "" | "NA" | "N/A" | "NaN" | "nan" | "null")
}

/// A finite number, or None.
pub(crate) fn parse_num(s: &str) -> Option<f64> {
    if let Some(v) = parse_plain_decimal(s.as_bytes()) {
        return Some(v);
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Powers of ten that `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The common spelling of a number in a CSV (`-12.345`: digits, at most one point, no
/// exponent), parsed as `str::parse` does but faster: when the digits form an integer of at most
/// 2^53 and the power of ten is at most 10^22, both are exact in `f64` and one division gives
/// the correctly rounded value (Clinger's fast path, which `str::parse` takes too). Anything
/// else is `None`, for `str::parse`.
fn parse_plain_decimal(b: &[u8]) -> Option<f64> {
    let (negative, mut i) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa = 0u64;
    let int_start = i;
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let mut digits = i - int_start;
    let mut decimals = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        decimals = i - frac_start;
        digits += decimals;
    }
    // 19 digits cannot overflow a u64: the wrapping arithmetic above never wrapped.
    if i != b.len() || digits == 0 || digits > 19 || mantissa > 1 << 53 || decimals >= 23 {
        return None;
    }
    let v = mantissa as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

/// How a number is spelled when it reaches a categorical column (`2.0` → `"2"`).
pub(crate) fn num_text(v: f64) -> String {
    with_num_text(v, str::to_string)
}

/// [`num_text`] without an allocation (a stack buffer holds all but huge numbers).
pub(crate) fn with_num_text<R>(v: f64, f: impl FnOnce(&str) -> R) -> R {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = if v.fract() == 0.0 && v.abs() < 1e15 {
        write!(cursor, "{}", v as i64)
    } else {
        write!(cursor, "{v}")
    };
    let len = cursor.position() as usize;
    match (written, std::str::from_utf8(&buf[..len])) {
        (Ok(()), Ok(s)) => f(s),
        // Display spells 1e300 with 301 digits: too long for the buffer.
        _ => f(&format!("{v}")),
    }
}

impl Rows {
    /// One row from a JSON object `{"feature": value, ...}`: numbers stay numbers, strings are text
    /// (`"NA"` and `""` are missing), null is missing, booleans become the text `true` / `false`.
    pub fn from_json_object(obj: &serde_json::Map<String, serde_json::Value>) -> Rows {
        let mut columns = Vec::with_capacity(obj.len());
        let mut row = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            columns.push(k.clone());
            row.push(match v {
                serde_json::Value::Null => Value::Missing,
                serde_json::Value::Number(n) => n.as_f64().map_or(Value::Missing, Value::Num),
                serde_json::Value::String(s) => {
                    let s = s.trim();
                    if is_missing_token(s) {
                        Value::Missing
                    } else {
                        Value::Text(s.to_string())
                    }
                }
                serde_json::Value::Bool(b) => Value::Text(b.to_string()),
                other => Value::Text(other.to_string()),
            });
        }
        Rows {
            columns,
            data: vec![row],
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A typed column: numeric when every non-missing cell parses as a finite number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnData {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<Option<String>>),
}

/// A named feature column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

/// True labels of a table: numbers for regression, strings for classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Labels {
    Regression(Vec<f64>),
    Classification(Vec<String>),
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Regression(v) => v.len(),
            Labels::Classification(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn task(&self) -> Task {
        match self {
            Labels::Regression(_) => Task::Regression,
            Labels::Classification(_) => Task::Classification,
        }
    }

    fn select(&self, idx: &[usize]) -> Labels {
        match self {
            Labels::Regression(v) => Labels::Regression(idx.iter().map(|&i| v[i]).collect()),
            Labels::Classification(v) => {
                Labels::Classification(idx.iter().map(|&i| v[i].clone()).collect())
            }
        }
    }

    /// Concatenation, for scoring the union of validation splits.
    pub fn concat(parts: &[&Labels]) -> Result<Labels> {
        let mut out: Option<Labels> = None;
        for p in parts {
            match (&mut out, p) {
                (None, p) => out = Some((*p).clone()),
                (Some(Labels::Regression(a)), Labels::Regression(b)) => a.extend_from_slice(b),
                (Some(Labels::Classification(a)), Labels::Classification(b)) => {
                    a.extend(b.iter().cloned())
                }
                _ => return Err(MlError::Mismatch("labels of different tasks".into())),
            }
        }
        out.ok_or_else(|| MlError::Mismatch("no labels to concatenate".into()))
    }
}

/// A loaded shard: typed feature columns and the label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<Column>,
    pub labels: Labels,
    pub label_name: String,
}

impl Table {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn task(&self) -> Task {
        self.labels.task()
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Table {
        let columns = self
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                data: match &c.data {
                    ColumnData::Numeric(v) => {
                        ColumnData::Numeric(idx.iter().map(|&i| v[i]).collect())
                    }
                    ColumnData::Categorical(v) => {
                        ColumnData::Categorical(idx.iter().map(|&i| v[i].clone()).collect())
                    }
                },
            })
            .collect();
        Table {
            columns,
            labels: self.labels.select(idx),
            label_name: self.label_name.clone(),
        }
    }

    /// Seeded split into (train, validation): `round(len × valid_fraction)` rows go to validation,
    /// chosen by a shuffle with `StdRng::seed_from_u64(seed)`; both parts keep the file order.
    /// With at least 2 rows and a fraction in (0, 1), each part gets at least one row.
    pub fn split(&self, valid_fraction: f64, seed: u64) -> (Table, Table) {
        let n = self.len();
        let frac = if valid_fraction.is_finite() {
            valid_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut n_valid = (n as f64 * frac).round() as usize;
        if n >= 2 && frac > 0.0 && frac < 1.0 {
            n_valid = n_valid.clamp(1, n - 1);
        }
        let mut idx: Vec<usize> = (0..n).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        idx.shuffle(&mut rng);
        let mut valid: Vec<usize> = idx[..n_valid].to_vec();
        let mut train: Vec<usize> = idx[n_valid..].to_vec();
        valid.sort_unstable();
        train.sort_unstable();
        (self.select(&train), self.select(&valid))
    }

    /// The feature columns as raw rows (no label), e.g. to predict a validation split.
    pub fn rows(&self) -> Rows {
        let columns = self.columns.iter().map(|c| c.name.clone()).collect();
        let data = (0..self.len())
            .map(|i| {
                self.columns
                    .iter()
                    .map(|c| match &c.data {
                        ColumnData::Numeric(v) => v[i].map_or(Value::Missing, Value::Num),
                        ColumnData::Categorical(v) => v[i]
                            .as_ref()
                            .map_or(Value::Missing, |s| Value::Text(s.clone())),
                    })
                    .collect()
            })
            .collect();
        Rows { columns, data }
    }
}

/// Header and cells of a CSV file, kept by column: one text buffer per column, not a `String`
/// per cell, so that a big shard costs about its own size in memory while its types are inferred.
#[derive(Clone)]
struct RawCsv {
    header: Vec<String>,
    /// The 1-based line of each record.
    lines: Vec<u64>,
    columns: Vec<TextColumn>,
}

/// The cells of one column, back to back.
#[derive(Clone, Default)]
struct TextColumn {
    text: String,
    ends: Vec<usize>,
}

impl TextColumn {
    fn push(&mut self, cell: &str) {
        self.text.push_str(cell);
        self.ends.push(self.text.len());
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        (0..self.ends.len()).map(move |i| self.get(i))
    }

    fn append(&mut self, other: &TextColumn) {
        let base = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }
}

impl RawCsv {
    fn len(&self) -> usize {
        self.lines.len()
    }

    fn append(&mut self, other: &RawCsv) {
        self.lines.extend_from_slice(&other.lines);
        for (mine, theirs) in self.columns.iter_mut().zip(&other.columns) {
            mine.append(theirs);
        }
    }
}

fn csv_err(path: &Path, line: u64, message: impl Into<String>) -> MlError {
    MlError::Csv {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn read_raw(path: &Path) -> Result<RawCsv> {
    let file = std::fs::File::open(path).map_err(|source| MlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_raw_from(path, std::io::BufReader::new(file))
}

/// `path` only names the origin in error messages.
fn read_raw_from(path: &Path, reader: impl std::io::Read) -> Result<RawCsv> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut header: Option<Vec<String>> = None;
    let mut lines = Vec::new();
    let mut columns: Vec<TextColumn> = Vec::new();
    // One record reused for every line (the records iterator allocates one per line).
    let mut rec = csv::StringRecord::new();
    loop {
        let more = rdr.read_record(&mut rec).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            csv_err(path, line, format!("unreadable CSV: {e}"))
        })?;
        if !more {
            break;
        }
        let line = rec.position().map_or(0, |p| p.line());
        // Blank lines are skipped by the csv crate; a line of only commas is data.
        match &header {
            None => {
                let cells: Vec<String> = rec.iter().map(|s| s.trim().to_string()).collect();
                let mut seen = BTreeSet::new();
                for (i, name) in cells.iter().enumerate() {
                    if name.is_empty() {
                        return Err(csv_err(
                            path,
                            line,
                            format!("header column {} has no name", i + 1),
                        ));
                    }
                    if !seen.insert(name.as_str()) {
                        return Err(csv_err(
                            path,
                            line,
                            format!("header names column '{name}' twice"),
                        ));
                    }
                }
                columns = vec![TextColumn::default(); cells.len()];
                header = Some(cells);
            }
            Some(h) => {
                if rec.len() != h.len() {
                    return Err(csv_err(
                        path,
                        line,
                        format!(
                            "ragged row: {} fields, the header has {}",
                            rec.len(),
                            h.len()
                        ),
                    ));
                }
                for (column, cell) in columns.iter_mut().zip(rec.iter()) {
                    column.push(cell.trim());
                }
                lines.push(line);
            }
        }
    }
    let header = header.ok_or_else(|| csv_err(path, 1, "empty file: no header"))?;
    Ok(RawCsv {
        header,
        lines,
        columns,
    })
}

/// Load a labelled shard. Columns in `spec.drop` are ignored (also when absent). A column is numeric
/// when all its non-missing cells parse as finite numbers; `NA`, `N/A`, `NaN`, `null` and empty
/// cells are missing. Errors name the file and line: empty file, no data rows, ragged row, label
/// column absent, missing label, non-numeric label for regression.
pub fn load_csv(path: &Path, spec: &DataSpec) -> Result<Table> {
    table_from_raw(path, read_raw(path)?, spec)
}

/// [`load_csv`] on CSV text already in memory (header line first), e.g. the lines appended to a
/// shard since the last poll with the header put in front. `origin` names the source in error
/// messages (line numbers count from the header line of `bytes`).
pub fn parse_csv(origin: &Path, bytes: &[u8], spec: &DataSpec) -> Result<Table> {
    table_from_raw(origin, read_raw_from(origin, bytes)?, spec)
}

/// Loads several CSV files with the same header as one table (a shard folder). With more than
/// one file, each is first checked on its own, so an error names the right file and line.
pub fn load_csv_parts(parts: &[(&Path, &[u8])], spec: &DataSpec) -> Result<Table> {
    if let [(path, bytes)] = parts {
        return parse_csv(path, bytes, spec);
    }
    let mut merged: Option<RawCsv> = None;
    for (path, bytes) in parts {
        let raw = read_raw_from(path, *bytes)?;
        if merged.as_ref().is_some_and(|all| all.header != raw.header) {
            return Err(csv_err(
                path,
                1,
                "header differs from the shard's first file",
            ));
        }
        if raw.len() > 0 {
            table_from_raw(path, raw.clone(), spec)?;
        }
        match &mut merged {
            None => merged = Some(raw),
            Some(all) => all.append(&raw),
        }
    }
    let raw = merged.ok_or_else(|| MlError::Data("the shard has no CSV file".into()))?;
    table_from_raw(parts[0].0, raw, spec)
}

fn table_from_raw(path: &Path, raw: RawCsv, spec: &DataSpec) -> Result<Table> {
    let label_idx = raw
        .header
        .iter()
        .position(|h| h == &spec.label)
        .ok_or_else(|| {
            csv_err(
                path,
                1,
                format!(
                    "label column '{}' not in the header ({} columns)",
                    spec.label,
                    raw.header.len()
                ),
            )
        })?;
    if raw.len() == 0 {
        return Err(csv_err(path, 2, "no data rows after the header"));
    }
    let label_cells = || raw.lines.iter().zip(raw.columns[label_idx].iter());
    if let Some((line, _)) = label_cells().find(|(_, cell)| is_missing_token(cell)) {
        return Err(csv_err(
            path,
            *line,
            format!("label '{}' is missing", spec.label),
        ));
    }
    let labels = match spec.task {
        Task::Regression => Labels::Regression(
            label_cells()
                .map(|(line, cell)| {
                    parse_num(cell).ok_or_else(|| {
                        csv_err(
                            path,
                            *line,
                            format!(
                                "label '{}' = '{cell}' is not a number (task is regression)",
                                spec.label
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<f64>>>()?,
        ),
        Task::Classification => {
            Labels::Classification(label_cells().map(|(_, cell)| cell.to_string()).collect())
        }
    };
    let mut columns = Vec::new();
    // Each column's text is dropped as soon as it is typed, so the two never all coexist.
    for (j, (name, text)) in raw.header.into_iter().zip(raw.columns).enumerate() {
        if j == label_idx || spec.drop.contains(&name) {
            continue;
        }
        let data = infer_column(text.iter());
        columns.push(Column { name, data });
    }
    Ok(Table {
        columns,
        labels,
        label_name: spec.label.clone(),
    })
}

/// Numeric when every cell is a number or missing (each parsed once), else categorical.
fn infer_column<'a>(cells: impl Iterator<Item = &'a str> + Clone) -> ColumnData {
    let mut numbers = Vec::with_capacity(cells.size_hint().0);
    for c in cells.clone() {
        if is_missing_token(c) {
            numbers.push(None);
        } else if let Some(v) = parse_num(c) {
            numbers.push(Some(v));
        } else {
            return ColumnData::Categorical(
                cells
                    .map(|c| (!is_missing_token(c)).then(|| c.to_string()))
                    .collect(),
            );
        }
    }
    ColumnData::Numeric(numbers)
}

/// Read a CSV for prediction (no label needed). Cells stay text (missing tokens become
/// `Value::Missing`); the pipeline parses numbers for the columns it knows as numeric, so a
/// categorical cell like `1.50` keeps its exact spelling.
pub fn load_rows(path: &Path) -> Result<Rows> {
    let raw = read_raw(path)?;
    let data = (0..raw.len())
        .map(|i| {
            raw.columns
                .iter()
                .map(|column| {
                    let c = column.get(i);
                    if is_missing_token(c) {
                        Value::Missing
                    } else {
                        Value::Text(c.to_string())
                    }
                })
                .collect()
        })
        .collect();
    Ok(Rows {
        columns: raw.header,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            columns: vec![Column {
                name: "x".into(),
                data: ColumnData::Numeric((0..10).map(|i| Some(i as f64)).collect()),
            }],
            labels: Labels::Regression((0..10).map(|i| i as f64).collect()),
            label_name: "y".into(),
        }
    }

    #[test]
    fn split_is_seeded_disjoint_and_sized() {
        let t = table();
        let (tr, va) = t.split(0.3, 7);
        // round(10 × 0.3) = 3 validation rows, 7 training rows.
        assert_eq!((tr.len(), va.len()), (7, 3));
        let (tr2, va2) = t.split(0.3, 7);
        assert_eq!((tr, va.clone()), (tr2, va2));
        let Labels::Regression(v) = va.labels else {
            panic!("task")
        };
        assert!(v.windows(2).all(|w| w[0] < w[1]), "file order kept");
    }

    #[test]
    fn split_keeps_one_row_each_side() {
        let t = table().select(&[0, 1]);
        let (tr, va) = t.split(0.01, 1);
        assert_eq!((tr.len(), va.len()), (1, 1));
    }

    #[test]
    fn infer_numeric_and_categorical() {
        let c = infer_column(["1", "NA", "2.5", ""].into_iter());
        assert_eq!(
            c,
            ColumnData::Numeric(vec![Some(1.0), None, Some(2.5), None])
        );
        let c = infer_column(["1", "a", "NA"].into_iter());
        assert_eq!(
            c,
            ColumnData::Categorical(vec![Some("1".into()), Some("a".into()), None])
        );
    }

    #[test]
    fn plain_decimals_parse_exactly_as_the_standard_parser() {
        let samples = [
            "0",
            "-0",
            "1",
            "+7",
            "12.5",
            "0.1",
            "0.000001",
            "-0.974245",
            "1.",
            ".5",
            "-.5",
            "123456789012345",
            "1234567890123456",
            "0.30000000000000004",
            "00012",
            "9.007199254740993",
            "1e5",
            "1.5E-3",
            "inf",
            "NaN",
            "",
            "-",
            ".",
            "1.2.3",
            "12a",
            " 1",
            "0.0000000000000000000001",
        ];
        for s in samples {
            let want = s.parse::<f64>().ok().filter(|v| v.is_finite());
            let got = parse_num(s);
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "{s:?}: {got:?} vs {want:?}"
            );
        }
    }

    mod decimals {
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_decimal_spelling_parses_as_str_parse(
                sign in "[-+]?", int in "[0-9]{0,12}", frac in proptest::option::of("[0-9]{0,12}")
            ) {
                let s = match frac {
                    Some(f) => format!("{sign}{int}.{f}"),
                    None => format!("{sign}{int}"),
                };
                let want = s.parse::<f64>().ok().filter(|v| v.is_finite());
                prop_assert_eq!(super::parse_num(&s).map(f64::to_bits), want.map(f64::to_bits), "{}", s);
            }
        }
    }

    #[test]
    fn numbers_reach_categoricals_as_text() {
        assert_eq!(num_text(20.0), "20");
        assert_eq!(num_text(1.5), "1.5");
        assert_eq!(num_text(-3.0), "-3");
        assert_eq!(num_text(1e300), format!("{}", 1e300));
        assert_eq!(num_text(f64::INFINITY), "inf");
    }

    #[test]
    fn json_object_row() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a": 1.5, "b": "x", "c": null, "d": "NA"}"#).unwrap();
        let rows = Rows::from_json_object(v.as_object().unwrap());
        assert_eq!(rows.columns, vec!["a", "b", "c", "d"]);
        assert_eq!(
            rows.data[0],
            vec![
                Value::Num(1.5),
                Value::Text("x".into()),
                Value::Missing,
                Value::Missing
            ]
        );
    }
}
