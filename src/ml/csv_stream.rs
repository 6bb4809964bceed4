//! CSV text → typed batches, as it streams in: [`CsvBatches`] takes the text in chunks of any
//! size (a file read piece by piece, an HTTP body as it arrives), parses each field in place and
//! pushes it straight into a [`TypedRowsBuilder`], and hands out a [`CsvBatch`] every
//! `batch_rows` rows. Memory is one batch and one record, whatever the size of the input; no
//! field becomes a `String`.
//!
//! Lines without quotes are split at commas directly; from the first quote on, csv_core reads
//! the rest (quoted fields, line breaks inside them). The first record is the header. Cells are read as [`TypedRowsBuilder::push_text`] reads them:
//! trimmed, missing tokens missing, numbers parsed for numeric columns. The `Id` column, when
//! there is one, is also kept as text beside each batch, to write next to its predictions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv_core::ReadRecordResult;

use super::error::{MlError, Result};
use super::schema::Schema;
use super::typed::{TypedRows, TypedRowsBuilder};

/// The column whose cells are written beside the predictions of a file.
pub const ID_COLUMN: &str = "Id";

/// The `Id` cells of a batch, back to back in one buffer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ids {
    text: String,
    ends: Vec<usize>,
}

impl Ids {
    fn push(&mut self, cell: &str) {
        self.text.push_str(cell);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }
}

/// Rows of a CSV, typed, with their `Id` cells when the CSV has that column.
#[derive(Debug, Clone)]
pub struct CsvBatch {
    pub rows: TypedRows,
    pub ids: Option<Ids>,
}

/// An error in record `records` (the header is line 1; quoted line breaks and blank lines are
/// not counted).
fn csv_error(origin: &Path, records: u64, message: String) -> MlError {
    MlError::Csv {
        path: origin.to_path_buf(),
        line: records.max(1),
        message,
    }
}

/// What the header says about each field.
struct Header {
    names: Vec<String>,
    /// Builder column of each field (`None`: not sent).
    to: Vec<Option<usize>>,
    id_at: Option<usize>,
}

/// A streaming CSV reader producing typed batches (see the module documentation).
pub struct CsvBatches {
    origin: PathBuf,
    core: csv_core::Reader,
    schema: Arc<Schema>,
    keep_unknown: bool,
    batch_rows: usize,
    header: Option<Header>,
    builder: Option<TypedRowsBuilder>,
    ids: Ids,
    /// The record being read: its fields back to back, and where each ends.
    out: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
    records: u64,
    done: bool,
    /// Until the first quote or lone carriage return: records are lines split at commas here,
    /// faster than csv_core's byte-by-byte machine; after it, csv_core reads the rest.
    plain: bool,
    /// The start of a line cut by the end of a chunk (plain mode).
    carry: Vec<u8>,
}

impl CsvBatches {
    /// `origin` names the input in errors; rows are resolved by `schema` (columns outside it
    /// dropped, or kept with `keep_unknown`); a batch is handed out every `batch_rows` rows.
    pub fn new(
        origin: impl Into<PathBuf>,
        schema: Arc<Schema>,
        keep_unknown: bool,
        batch_rows: usize,
    ) -> CsvBatches {
        CsvBatches {
            origin: origin.into(),
            core: csv_core::Reader::new(),
            schema,
            keep_unknown,
            batch_rows: batch_rows.max(1),
            header: None,
            builder: None,
            ids: Ids::default(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            out_len: 0,
            ends_len: 0,
            records: 0,
            done: false,
            plain: true,
            carry: Vec::new(),
        }
    }

    /// The header's column names, once the header has been read.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_ref().map(|h| h.names.as_slice())
    }

    /// Whether the input has an `Id` column (known once the header has been read).
    pub fn has_ids(&self) -> bool {
        self.header.as_ref().is_some_and(|h| h.id_at.is_some())
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.records.saturating_sub(1)
    }

    fn err(&self, message: impl Into<String>) -> MlError {
        csv_error(&self.origin, self.records, message.into())
    }

    /// Reads `input` (any part of the text: records may be cut anywhere), appending each batch
    /// that fills to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<CsvBatch>) -> Result<()> {
        if self.plain {
            self.read_plain(input, out)
        } else {
            self.read(input, false, out)
        }
    }

    /// Plain mode: every whole line of `input` (with the carried start of the first) is a
    /// record, unless it holds a quote or a carriage return inside: then csv_core takes over
    /// from that line on.
    fn read_plain(&mut self, input: &[u8], out: &mut Vec<CsvBatch>) -> Result<()> {
        let mut data = input;
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let mut line = std::mem::take(&mut self.carry);
            let whole = if line.is_empty() {
                &data[..nl]
            } else {
                line.extend_from_slice(&data[..nl]);
                &line[..]
            };
            let text = whole.strip_suffix(b"\r").unwrap_or(whole);
            if memchr::memchr2(b'"', b'\r', text).is_some() {
                self.plain = false;
                let mut rest = whole.to_vec();
                rest.push(b'\n');
                self.read(&rest, false, out)?;
                return self.read(&data[nl + 1..], false, out);
            }
            self.plain_record(text, out)?;
            line.clear();
            self.carry = line;
            data = &data[nl + 1..];
        }
        self.carry.extend_from_slice(data);
        Ok(())
    }

    /// One line without quotes: its fields are the text between commas.
    fn plain_record(&mut self, line: &[u8], out: &mut Vec<CsvBatch>) -> Result<()> {
        if line.is_empty() {
            // Blank lines are skipped, as csv_core skips them.
            return Ok(());
        }
        if self.out.len() < line.len() {
            self.out.resize(line.len().next_power_of_two(), 0);
        }
        let (mut o, mut n, mut start) = (0, 0, 0);
        for comma in memchr::memchr_iter(b',', line).chain([line.len()]) {
            let field = &line[start..comma];
            self.out[o..o + field.len()].copy_from_slice(field);
            o += field.len();
            if n == self.ends.len() {
                self.ends.resize(2 * n, 0);
            }
            self.ends[n] = o;
            n += 1;
            start = comma + 1;
        }
        self.out_len = o;
        self.ends_len = n;
        let recorded = self.record(out);
        self.out_len = 0;
        self.ends_len = 0;
        recorded
    }

    /// `at_end`: `input` is the last of the text (csv_core takes empty input as the end).
    fn read(&mut self, input: &[u8], at_end: bool, out: &mut Vec<CsvBatch>) -> Result<()> {
        let mut input = input;
        loop {
            if input.is_empty() && !at_end {
                return Ok(());
            }
            let (res, nin, nout, nend) = self.core.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    // At the end csv_core answers a last record, then `End`; never wait for more.
                    self.done |= at_end;
                    return Ok(());
                }
                ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    self.record(out)?;
                    self.out_len = 0;
                    self.ends_len = 0;
                }
                ReadRecordResult::End => {
                    self.done = true;
                    return Ok(());
                }
            }
        }
    }

    /// The end of the input: the last record, then the last (partial) batch.
    pub fn finish(&mut self, out: &mut Vec<CsvBatch>) -> Result<()> {
        if self.plain && !self.done {
            // The last line, without its line break.
            let mut line = std::mem::take(&mut self.carry);
            if memchr::memchr2(b'"', b'\r', &line).is_some() {
                self.plain = false;
                self.read(&line, false, out)?;
            } else {
                let text = line.strip_suffix(b"\r").unwrap_or(&line).to_vec();
                self.plain_record(&text, out)?;
                line.clear();
                self.done = true;
            }
        }
        while !self.done {
            self.read(&[], true, out)?;
        }
        if self.header.is_none() {
            return Err(self.err("empty file: no header"));
        }
        if self.builder.as_ref().is_some_and(|b| !b.is_empty()) {
            out.push(self.take());
        }
        Ok(())
    }

    fn take(&mut self) -> CsvBatch {
        let has_ids = self.has_ids();
        let rows = match self.builder.as_mut() {
            Some(b) => b.take(),
            None => TypedRowsBuilder::new(self.schema.clone()).finish(),
        };
        let ids = std::mem::take(&mut self.ids);
        CsvBatch {
            rows,
            ids: has_ids.then_some(ids),
        }
    }

    fn field(&self, i: usize) -> Result<&str> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        std::str::from_utf8(&self.out[start..self.ends[i]])
            .map_err(|_| self.err(format!("field {} is not UTF-8 text", i + 1)))
    }

    fn record(&mut self, out: &mut Vec<CsvBatch>) -> Result<()> {
        self.records += 1;
        let n = self.ends_len;
        let Some(header) = &self.header else {
            return self.read_header(n);
        };
        if n != header.names.len() {
            return Err(self.err(format!(
                "ragged row: {n} fields, the header has {}",
                header.names.len()
            )));
        }
        let Some(builder) = self.builder.as_mut() else {
            return Err(csv_error(&self.origin, self.records, "no header".into()));
        };
        // The record is checked as UTF-8 once; a field is then a slice of it, which `get`
        // gives only at character boundaries.
        let last = self.ends[..n].last().copied().unwrap_or(0);
        let not_text = |i: usize| {
            csv_error(
                &self.origin,
                self.records,
                format!("field {} is not UTF-8 text", i + 1),
            )
        };
        let record = std::str::from_utf8(&self.out[..last]).map_err(|e| {
            let at = e.valid_up_to();
            not_text(self.ends[..n].iter().position(|&end| end > at).unwrap_or(0))
        })?;
        let mut start = 0;
        for (i, (to, &end)) in header.to.iter().zip(&self.ends[..n]).enumerate() {
            let cell = record.get(start..end).ok_or_else(|| not_text(i))?;
            if let Some(c) = *to {
                builder.push_text(c, cell);
            }
            if header.id_at == Some(i) {
                self.ids.push(cell.trim());
            }
            start = end;
        }
        builder.end_row();
        if builder.len() >= self.batch_rows {
            out.push(self.take());
        }
        Ok(())
    }

    fn read_header(&mut self, n: usize) -> Result<()> {
        let mut names: Vec<String> = Vec::with_capacity(n);
        for i in 0..n {
            // A byte order mark may start the text.
            let name = self
                .field(i)?
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string();
            if name.is_empty() {
                return Err(self.err(format!("header column {} has no name", i + 1)));
            }
            if names.contains(&name) {
                return Err(self.err(format!("header names column '{name}' twice")));
            }
            names.push(name);
        }
        let mut builder = TypedRowsBuilder::with_capacity(self.schema.clone(), self.batch_rows);
        let to = names
            .iter()
            .map(|name| {
                if self.keep_unknown {
                    Some(builder.column(name))
                } else {
                    self.schema.position(name)
                }
            })
            .collect();
        let id_at = names.iter().position(|c| c == ID_COLUMN);
        self.header = Some(Header { names, to, id_at });
        self.builder = Some(builder);
        Ok(())
    }
}

/// Reads the CSV file at `path` in chunks and calls `each` with every batch, in order, until it
/// returns false. Returns the header.
pub fn read_file(
    path: &Path,
    schema: Arc<Schema>,
    keep_unknown: bool,
    batch_rows: usize,
    mut each: impl FnMut(CsvBatch) -> bool,
) -> Result<Vec<String>> {
    use std::io::Read;
    let io = |source| MlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut batches = CsvBatches::new(path, schema, keep_unknown, batch_rows);
    let mut buf = vec![0u8; 1 << 20];
    let mut ready = Vec::new();
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            batches.finish(&mut ready)?;
        } else {
            batches.feed(&buf[..n], &mut ready)?;
        }
        for batch in ready.drain(..) {
            if !each(batch) {
                return Ok(batches.header().map(<[String]>::to_vec).unwrap_or_default());
            }
        }
        if n == 0 {
            return Ok(batches.header().map(<[String]>::to_vec).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{load_rows, Value};
    use crate::ml::schema::{ColumnKind, SchemaColumn};

    fn schema() -> Arc<Schema> {
        Schema::new([
            SchemaColumn {
                name: "a".into(),
                kind: ColumnKind::Number,
            },
            SchemaColumn {
                name: "b".into(),
                kind: ColumnKind::Category,
            },
        ])
        .shared()
    }

    const TEXT: &str = "Id,a,b,skip\n1,1.5,x,9\n2, NA ,\"y, z\",9\n\n3,4,,9\n4,-2e3,x,9";

    #[test]
    fn quotes_and_line_breaks_anywhere_read_as_csv_reads_them() {
        let texts = [
            "a,b\r\n1,x\r\n2,y\r\n",
            "a,b\n1,x\n2,\"y\nz\"\n3,w",
            "\u{feff}a,b\n1,\"x,y\"\n",
            "a,b\r1,x\r2,y",
            "a,b\n1,x\n\n\n2,y\n",
        ];
        for text in texts {
            let mut want = Vec::new();
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(text.as_bytes());
            for rec in r.records() {
                let rec = rec.expect("csv reads it");
                want.push(rec.iter().map(str::to_string).collect::<Vec<_>>());
            }
            let schema = Schema::new(want[0].iter().map(|c| SchemaColumn {
                name: c.clone(),
                kind: ColumnKind::Category,
            }))
            .shared();
            for chunk in [1, 3, text.len()] {
                let mut b = CsvBatches::new("t.csv", schema.clone(), false, 100);
                let mut out = Vec::new();
                for piece in text.as_bytes().chunks(chunk) {
                    b.feed(piece, &mut out).expect("reads");
                }
                b.finish(&mut out).expect("ends");
                let got: Vec<Vec<String>> = out[0]
                    .rows
                    .to_rows()
                    .data
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|v| match v {
                                Value::Text(t) => t.clone(),
                                _ => String::new(),
                            })
                            .collect()
                    })
                    .collect();
                assert_eq!(got, want[1..], "{text:?} in chunks of {chunk}");
            }
        }
    }

    fn read(text: &str, chunk: usize, batch_rows: usize) -> Result<Vec<CsvBatch>> {
        let mut b = CsvBatches::new("t.csv", schema(), false, batch_rows);
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(chunk) {
            b.feed(piece, &mut out)?;
        }
        b.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn any_chunking_gives_the_same_batches_as_whole_rows() {
        let whole = read(TEXT, TEXT.len(), 100).expect("reads");
        assert_eq!(whole.len(), 1);
        let rows = whole[0].rows.to_rows();
        assert_eq!(rows.columns, ["a", "b"]);
        assert_eq!(
            rows.data,
            vec![
                vec![Value::Num(1.5), Value::Text("x".into())],
                vec![Value::Missing, Value::Text("y, z".into())],
                vec![Value::Num(4.0), Value::Missing],
                vec![Value::Num(-2000.0), Value::Text("x".into())],
            ]
        );
        let ids = whole[0].ids.as_ref().expect("an Id column");
        assert_eq!(
            (0..4).filter_map(|i| ids.get(i)).collect::<Vec<_>>(),
            ["1", "2", "3", "4"]
        );
        for chunk in [1, 2, 3, 7] {
            let parts = read(TEXT, chunk, 3).expect("reads");
            assert_eq!(
                parts.iter().map(|b| b.rows.len()).collect::<Vec<_>>(),
                [3, 1]
            );
            let mut data = parts[0].rows.to_rows().data;
            data.extend(parts[1].rows.to_rows().data);
            assert_eq!(data, rows.data, "chunks of {chunk} bytes");
        }
    }

    #[test]
    fn the_same_cells_as_the_whole_file_reader() {
        let dir = std::env::temp_dir().join(format!("csv-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a dir");
        let path = dir.join("t.csv");
        std::fs::write(&path, TEXT).expect("written");
        let all = load_rows(&path).expect("loads");
        let wide = Arc::new(Schema::new(all.columns.iter().map(|c| SchemaColumn {
            name: c.clone(),
            kind: ColumnKind::Category,
        })));
        let typed = crate::ml::TypedRows::from_rows(&wide, &all, false).expect("resolves");
        let mut streamed = Vec::new();
        read_file(&path, wide.clone(), false, 2, |b| {
            streamed.push(b.rows);
            true
        })
        .expect("streams");
        let parts: Vec<&TypedRows> = streamed.iter().collect();
        let joined = TypedRows::concat(&parts).expect("one schema");
        assert_eq!(joined.to_rows(), typed.to_rows());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = |text: &str| read(text, 5, 10).expect_err("refused").to_string();
        assert!(err("").contains("empty file"));
        assert!(err("a,b\n1,2,3\n").contains("t.csv:2: ragged row: 3 fields"));
        assert!(err("a,,b\n").contains("header column 2 has no name"));
        assert!(err("a,a\n").contains("names column 'a' twice"));
        let mut bad = b"a,b\n1,".to_vec();
        bad.extend_from_slice(&[0xff, b'\n']);
        let mut b = CsvBatches::new("t.csv", schema(), false, 10);
        let mut out = Vec::new();
        let e = b.feed(&bad, &mut out).expect_err("not UTF-8");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }
}
