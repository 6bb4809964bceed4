//! Rows by schema: what a prediction request carries between nodes. The node that receives a
//! request resolves it once — a JSON object, a CSV chunk, an HTTP tensor — into [`TypedRows`]:
//! one packed buffer per kind of column, laid out by a [`Schema`]. Numbers are little-endian
//! `f64` (NaN for missing), categories are `u32` codes into a per-column dictionary of the batch's
//! distinct values (`u32::MAX` for missing). Each travels as one `bytes` value inside the
//! MessagePack frame, so decoding a batch is a few copies, not a value per cell, and every node's
//! preprocessing reads the columns by index.
//!
//! [`TypedRowsBuilder`] fills a batch cell by cell without an allocation per cell: numbers are
//! parsed in place, text is interned into the column's dictionary.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::data::{is_missing_token, parse_num, with_num_text, ColumnData, Rows, Table, Value};
use super::error::{MlError, Result};
use super::schema::{ColumnKind, Schema, SchemaColumn};

/// The code of a missing category.
pub const MISSING_CODE: u32 = u32::MAX;

/// Feature rows laid out by a schema (see the module documentation). Clones share the columns:
/// a batch goes to every member, and its handle is one pointer however many columns it holds.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct TypedRows(Arc<Columns>);

/// The columns of a [`TypedRows`].
pub struct Columns {
    schema: Arc<Schema>,
    rows: usize,
    /// Each numeric column in schema order, `rows` f64 each.
    nums: Bytes,
    /// Each categorical column in schema order, `rows` u32 codes each.
    codes: Bytes,
    /// The dictionaries' entries back to back, all columns in turn.
    dict_text: Bytes,
    /// End offset in `dict_text` of each entry (u32).
    dict_ends: Bytes,
    /// Index of the first entry of each categorical column, then the total: `n_categories + 1`.
    dict_first: Arc<[u32]>,
    /// The batch as the protocol encodes it, once, shared by the clones that go to several
    /// nodes.
    wire: OnceLock<Bytes>,
}

impl std::ops::Deref for TypedRows {
    type Target = Columns;

    fn deref(&self) -> &Columns {
        &self.0
    }
}

impl PartialEq for TypedRows {
    fn eq(&self, o: &TypedRows) -> bool {
        self.schema == o.schema
            && self.rows == o.rows
            && self.nums == o.nums
            && self.codes == o.codes
            && self.dict_text == o.dict_text
            && self.dict_ends == o.dict_ends
            && self.dict_first == o.dict_first
    }
}

thread_local! {
    /// The frame being decoded on this thread, which decoded batches may point into.
    static FRAME: std::cell::RefCell<Option<Bytes>> = const { std::cell::RefCell::new(None) };
}

/// Runs `decode` (which reads `frame`) so that the batches it decodes share `frame`'s memory
/// instead of copying their buffers out of it.
pub fn decode_in<R>(frame: &Bytes, decode: impl FnOnce() -> R) -> R {
    let before = FRAME.with(|f| f.replace(Some(frame.clone())));
    let result = decode();
    FRAME.with(|f| *f.borrow_mut() = before);
    result
}

/// A `bin` value of a batch: a slice of the frame it arrived in when that frame is known
/// ([`decode_in`]), else a copy.
struct Buf(Bytes);

impl Serialize for Buf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Buf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Buf, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Buf;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> std::result::Result<Buf, E> {
                let shared = FRAME.with(|f| {
                    let f = f.borrow();
                    let frame = f.as_ref()?;
                    let (start, end) = (frame.as_ptr() as usize, v.as_ptr() as usize);
                    (end >= start && end + v.len() <= start + frame.len())
                        .then(|| frame.slice_ref(v))
                });
                Ok(Buf(shared.unwrap_or_else(|| Bytes::copy_from_slice(v))))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Buf, E> {
                Ok(Buf(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<Buf, E> {
                Ok(Buf(Bytes::from(v)))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// How [`TypedRows`] are encoded: its buffers as MessagePack `bin` values.
#[derive(Serialize, Deserialize)]
struct Wire {
    schema: Buf,
    rows: u32,
    nums: Buf,
    codes: Buf,
    dict_text: Buf,
    dict_ends: Buf,
    /// Entries in each categorical column's dictionary (u32 each).
    dict_counts: Buf,
}

fn u32s(b: &[u8]) -> impl ExactSizeIterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn f64s(b: &[u8]) -> impl ExactSizeIterator<Item = f64> + '_ {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
}

impl From<TypedRows> for Wire {
    fn from(t: TypedRows) -> Wire {
        let mut counts = Vec::with_capacity(4 * t.dict_first.len());
        for w in t.dict_first.windows(2) {
            counts.extend_from_slice(&(w[1] - w[0]).to_le_bytes());
        }
        Wire {
            schema: Buf(t.schema.encoded().clone()),
            rows: t.rows as u32,
            nums: Buf(t.nums.clone()),
            codes: Buf(t.codes.clone()),
            dict_text: Buf(t.dict_text.clone()),
            dict_ends: Buf(t.dict_ends.clone()),
            dict_counts: Buf(Bytes::from(counts)),
        }
    }
}

/// [`Wire`] with its buffers unwrapped.
struct Plain {
    schema: Bytes,
    rows: u32,
    nums: Bytes,
    codes: Bytes,
    dict_text: Bytes,
    dict_ends: Bytes,
    dict_counts: Bytes,
}

impl TryFrom<Wire> for TypedRows {
    type Error = MlError;

    /// Checks every length, offset and code, so that reading the batch afterwards cannot fail.
    fn try_from(w: Wire) -> Result<TypedRows> {
        let w = Plain {
            schema: w.schema.0,
            rows: w.rows,
            nums: w.nums.0,
            codes: w.codes.0,
            dict_text: w.dict_text.0,
            dict_ends: w.dict_ends.0,
            dict_counts: w.dict_counts.0,
        };
        let bad = |what: String| MlError::Mismatch(format!("bad typed rows: {what}"));
        let schema = Schema::intern(&w.schema)?;
        let rows = w.rows as usize;
        let want = |per_cell: usize, columns: usize| rows.checked_mul(per_cell * columns);
        if want(8, schema.n_numbers()) != Some(w.nums.len()) {
            return Err(bad(format!("{} bytes of numbers", w.nums.len())));
        }
        if want(4, schema.n_categories()) != Some(w.codes.len()) {
            return Err(bad(format!("{} bytes of codes", w.codes.len())));
        }
        if w.dict_counts.len() != 4 * schema.n_categories() || !w.dict_ends.len().is_multiple_of(4)
        {
            return Err(bad("dictionary sizes".into()));
        }
        let mut first = Vec::with_capacity(schema.n_categories() + 1);
        let mut total = 0u64;
        first.push(0);
        for c in u32s(&w.dict_counts) {
            total += u64::from(c);
            if total > (w.dict_ends.len() / 4) as u64 {
                return Err(bad("more dictionary entries than ends".into()));
            }
            first.push(total as u32);
        }
        if total != (w.dict_ends.len() / 4) as u64 {
            return Err(bad("dictionary entries and ends differ".into()));
        }
        let text = std::str::from_utf8(&w.dict_text).map_err(|_| bad("text not UTF-8".into()))?;
        let mut last = 0;
        for end in u32s(&w.dict_ends) {
            let end = end as usize;
            if end < last || end > text.len() || !text.is_char_boundary(end) {
                return Err(bad("dictionary offsets".into()));
            }
            last = end;
        }
        for (slot, codes) in w.codes.chunks_exact(4 * rows.max(1)).enumerate() {
            let entries = first[slot + 1] - first[slot];
            if u32s(codes).any(|c| c >= entries && c != MISSING_CODE) {
                return Err(bad(format!(
                    "a code beyond the dictionary of column {slot}"
                )));
            }
        }
        Ok(TypedRows::of(Columns {
            schema,
            rows,
            nums: w.nums,
            codes: w.codes,
            dict_text: w.dict_text,
            dict_ends: w.dict_ends,
            dict_first: first.into(),
            wire: OnceLock::new(),
        }))
    }
}

/// One numeric column of a batch.
#[derive(Clone, Copy)]
pub struct Numbers<'a>(&'a [u8]);

impl<'a> Numbers<'a> {
    /// The values, NaN for missing.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = f64> + 'a {
        f64s(self.0)
    }

    #[inline]
    pub fn get(&self, row: usize) -> f64 {
        let c = &self.0[8 * row..8 * row + 8];
        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
    }
}

/// One categorical column of a batch: codes and their dictionary.
#[derive(Clone, Copy)]
pub struct Categories<'a> {
    codes: &'a [u8],
    text: &'a [u8],
    /// The ends of this column's entries.
    ends: &'a [u8],
    /// Where the first entry starts in `text`.
    start: usize,
}

impl<'a> Categories<'a> {
    /// The code of each row ([`MISSING_CODE`] for missing), below [`Categories::n_entries`].
    pub fn codes(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        u32s(self.codes)
    }

    pub fn n_entries(&self) -> usize {
        self.ends.len() / 4
    }

    /// The dictionary's entries in code order, as UTF-8 bytes.
    pub fn entry_bytes(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let text = self.text;
        let mut start = self.start;
        u32s(self.ends).map(move |end| {
            let end = end as usize;
            let s = &text[start..end];
            start = end;
            s
        })
    }

    /// The dictionary's entries in code order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let text = self.text;
        let mut start = self.start;
        u32s(self.ends).map(move |end| {
            let end = end as usize;
            // Offsets and UTF-8 were checked when the batch was built or decoded.
            let s = std::str::from_utf8(&text[start..end]).unwrap_or_default();
            start = end;
            s
        })
    }
}

impl TypedRows {
    fn of(columns: Columns) -> TypedRows {
        TypedRows(Arc::new(columns))
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// This batch encoded by `encode`, computed once and shared by every clone of the batch
    /// (a batch sent to several nodes is encoded once).
    pub fn encoded_with<E>(
        &self,
        encode: impl FnOnce(&TypedRows) -> std::result::Result<Bytes, E>,
    ) -> std::result::Result<Bytes, E> {
        if let Some(b) = self.wire.get() {
            return Ok(b.clone());
        }
        let b = encode(self)?;
        let _ = self.wire.set(b.clone());
        Ok(b)
    }

    /// Bytes of column data (what a batch costs on the wire, roughly).
    pub fn data_bytes(&self) -> usize {
        self.nums.len() + self.codes.len() + self.dict_text.len() + self.dict_ends.len()
    }

    /// The numeric column in numeric slot `slot` (see [`Schema::slot`]).
    pub fn numbers(&self, slot: usize) -> Numbers<'_> {
        let n = 8 * self.rows;
        Numbers(&self.nums[slot * n..(slot + 1) * n])
    }

    /// The categorical column in categorical slot `slot`.
    pub fn categories(&self, slot: usize) -> Categories<'_> {
        let n = 4 * self.rows;
        let (first, next) = (
            self.dict_first[slot] as usize,
            self.dict_first[slot + 1] as usize,
        );
        let start = match first {
            0 => 0,
            f => u32s(&self.dict_ends[4 * (f - 1)..4 * f])
                .next()
                .unwrap_or(0) as usize,
        };
        Categories {
            codes: &self.codes[slot * n..(slot + 1) * n],
            text: &self.dict_text,
            ends: &self.dict_ends[4 * first..4 * next],
            start,
        }
    }

    /// Resolves rows named by column (a JSON object, an HTTP request) by `schema`: absent
    /// columns are missing, numbers reaching a categorical column become text as `2.0` → `"2"`.
    /// Columns outside the schema are dropped, or kept with `keep_unknown` (when the schema may
    /// not know every model's columns yet).
    pub fn from_rows(schema: &Arc<Schema>, rows: &Rows, keep_unknown: bool) -> Result<TypedRows> {
        let mut r = RowsResolver::new(schema, &rows.columns, keep_unknown, rows.len());
        for row in &rows.data {
            r.push(row)?;
        }
        Ok(r.take())
    }

    /// The feature columns of a parsed table (a validation split), as one batch: the same cells
    /// as [`Table::rows`] gives, without a value per cell on the way.
    pub fn from_table(table: &Table) -> TypedRows {
        let schema = Schema::new(table.columns.iter().map(|c| SchemaColumn {
            name: c.name.clone(),
            kind: match c.data {
                ColumnData::Numeric(_) => ColumnKind::Number,
                ColumnData::Categorical(_) => ColumnKind::Category,
            },
        }))
        .shared();
        let mut b = TypedRowsBuilder::with_capacity(schema, table.len());
        let at: Vec<usize> = table.columns.iter().map(|c| b.column(&c.name)).collect();
        for row in 0..table.len() {
            for (c, &col) in table.columns.iter().zip(&at) {
                match &c.data {
                    ColumnData::Numeric(v) => b.push_number(col, v[row].unwrap_or(f64::NAN)),
                    ColumnData::Categorical(v) => match &v[row] {
                        Some(text) => b.push_category(col, text),
                        None => b.push_number(col, f64::NAN),
                    },
                }
            }
            b.end_row();
        }
        b.finish()
    }

    /// The rows of several batches with the same schema, in order (one frame for many
    /// requests). `None` when their schemas differ.
    pub fn concat(parts: &[&TypedRows]) -> Option<TypedRows> {
        let first = parts.first()?;
        if parts.len() == 1 {
            return Some((*first).clone());
        }
        let schema = &first.schema;
        if parts.iter().any(|p| p.schema != *schema) {
            return None;
        }
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let mut nums = Vec::with_capacity(8 * rows * schema.n_numbers());
        for slot in 0..schema.n_numbers() {
            for p in parts {
                nums.extend_from_slice(p.numbers(slot).0);
            }
        }
        let mut codes = Vec::with_capacity(4 * rows * schema.n_categories());
        let mut text = Vec::new();
        let mut ends = Vec::new();
        let mut first_entry = vec![0u32];
        for slot in 0..schema.n_categories() {
            let mut entries = 0u32;
            for p in parts {
                let c = p.categories(slot);
                for code in c.codes() {
                    let code = if code == MISSING_CODE {
                        code
                    } else {
                        code + entries
                    };
                    codes.extend_from_slice(&code.to_le_bytes());
                }
                // This part's entries move from `c.start` in its text to the end of ours.
                let offset = text.len();
                let end = u32s(c.ends).last().map_or(c.start, |e| e as usize);
                text.extend_from_slice(&c.text[c.start..end]);
                for e in u32s(c.ends) {
                    let moved = (e as usize - c.start + offset) as u32;
                    ends.extend_from_slice(&moved.to_le_bytes());
                }
                entries += c.n_entries() as u32;
            }
            let before = first_entry.last().copied().unwrap_or(0);
            first_entry.push(before + entries);
        }
        Some(TypedRows::of(Columns {
            schema: schema.clone(),
            rows,
            nums: Bytes::from(nums),
            codes: Bytes::from(codes),
            dict_text: Bytes::from(text),
            dict_ends: Bytes::from(ends),
            dict_first: first_entry.into(),
            wire: OnceLock::new(),
        }))
    }

    /// The rows back as cells by column name (tests, and front ends that show rows).
    pub fn to_rows(&self) -> Rows {
        let s = &self.schema;
        let columns = s.columns().iter().map(|c| c.name.clone()).collect();
        let mut data = vec![Vec::with_capacity(s.len()); self.rows];
        for (j, c) in s.columns().iter().enumerate() {
            match c.kind {
                ColumnKind::Number => {
                    for (row, v) in data.iter_mut().zip(self.numbers(s.slot(j)).iter()) {
                        row.push(if v.is_nan() {
                            Value::Missing
                        } else {
                            Value::Num(v)
                        });
                    }
                }
                ColumnKind::Category => {
                    let col = self.categories(s.slot(j));
                    let entries: Vec<&str> = col.entries().collect();
                    for (row, code) in data.iter_mut().zip(col.codes()) {
                        row.push(match entries.get(code as usize) {
                            Some(t) => Value::Text(t.to_string()),
                            None => Value::Missing,
                        });
                    }
                }
            }
        }
        Rows { columns, data }
    }
}

impl std::fmt::Debug for TypedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedRows")
            .field("columns", &self.schema.len())
            .field("rows", &self.rows)
            .field("bytes", &self.data_bytes())
            .finish()
    }
}

/// Resolves rows of cells named by column ([`Rows`]) into typed batches, one row at a time:
/// the column names are looked up once.
pub struct RowsResolver {
    builder: TypedRowsBuilder,
    /// Builder column of each named column (`None`: dropped).
    to: Vec<Option<usize>>,
    /// Rows pushed, for error messages.
    pushed: usize,
}

impl RowsResolver {
    /// Rows with `columns` resolved by `schema` (see [`TypedRows::from_rows`]).
    pub fn new(
        schema: &Arc<Schema>,
        columns: &[String],
        keep_unknown: bool,
        capacity: usize,
    ) -> RowsResolver {
        let mut builder = TypedRowsBuilder::with_capacity(schema.clone(), capacity);
        let to = columns
            .iter()
            .map(|name| {
                if keep_unknown {
                    Some(builder.column(name))
                } else {
                    schema.position(name)
                }
            })
            .collect();
        RowsResolver {
            builder,
            to,
            pushed: 0,
        }
    }

    /// Adds one row: its cells in the order of the columns given to [`RowsResolver::new`].
    pub fn push(&mut self, row: &[Value]) -> Result<()> {
        self.pushed += 1;
        if row.len() != self.to.len() {
            return Err(MlError::Mismatch(format!(
                "row {} has {} values for {} columns",
                self.pushed,
                row.len(),
                self.to.len()
            )));
        }
        for (cell, to) in row.iter().zip(&self.to) {
            match (cell, to) {
                (Value::Num(v), Some(c)) => self.builder.push_number(*c, *v),
                (Value::Text(t), Some(c)) => self.builder.push_text(*c, t),
                _ => {}
            }
        }
        self.builder.end_row();
        Ok(())
    }

    /// The rows pushed since the last batch, as a batch.
    pub fn take(&mut self) -> TypedRows {
        self.builder.take()
    }
}

/// The distinct values of one categorical column of a batch being built, and its codes.
#[derive(Default)]
struct Interner {
    codes: Vec<u32>,
    text: Vec<u8>,
    ends: Vec<u32>,
    /// Open addressing: entry index + 1, or 0 for a free slot. Its length is a power of two.
    table: Vec<u32>,
}

pub(crate) fn hash_bytes(s: &[u8]) -> u64 {
    // FNV-1a: short keys, no allocation, good enough spread for a table at most half full.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Interner {
    fn entry(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn intern(&mut self, s: &str) -> u32 {
        if 2 * (self.ends.len() + 1) > self.table.len() {
            self.grow();
        }
        let mask = self.table.len() - 1;
        let mut at = hash_bytes(s.as_bytes()) as usize & mask;
        loop {
            match self.table[at] {
                0 => {
                    self.text.extend_from_slice(s.as_bytes());
                    self.ends.push(self.text.len() as u32);
                    let code = self.ends.len() as u32 - 1;
                    self.table[at] = code + 1;
                    return code;
                }
                e if self.entry(e as usize - 1) == s.as_bytes() => return e - 1,
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.table.len() * 2).max(16);
        let mut table = vec![0u32; size];
        for i in 0..self.ends.len() {
            let mut at = hash_bytes(self.entry(i)) as usize & (size - 1);
            while table[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            table[at] = i as u32 + 1;
        }
        self.table = table;
    }
}

/// `cell` without the white space around it; a cell that neither starts nor ends with white
/// space (or a non-ASCII character, which may be white space) is returned as it is, unscanned.
#[inline]
fn trimmed(cell: &str) -> &str {
    let clean = |b: Option<&u8>| b.is_none_or(|b| b.is_ascii_graphic());
    let b = cell.as_bytes();
    if clean(b.first()) && clean(b.last()) {
        cell
    } else {
        cell.trim()
    }
}

/// One column of a batch being built.
enum Col {
    Num(Vec<f64>),
    Cat(Interner),
}

impl Col {
    fn len(&self) -> usize {
        match self {
            Col::Num(v) => v.len(),
            Col::Cat(c) => c.codes.len(),
        }
    }

    fn empty(kind: ColumnKind, rows: usize) -> Col {
        match kind {
            ColumnKind::Number => Col::Num(Vec::with_capacity(rows)),
            ColumnKind::Category => Col::Cat(Interner {
                codes: Vec::with_capacity(rows),
                ..Interner::default()
            }),
        }
    }

    /// A numeric column that met text becomes a category: its numbers are spelled as a
    /// categorical column reads numbers (`2.0` → `"2"`).
    fn make_category(&mut self) {
        if let Col::Num(values) = self {
            let mut cat = Interner {
                codes: Vec::with_capacity(values.capacity()),
                ..Interner::default()
            };
            for &v in values.iter() {
                let code = if v.is_nan() {
                    MISSING_CODE
                } else {
                    with_num_text(v, |s| cat.intern(s))
                };
                cat.codes.push(code);
            }
            *self = Col::Cat(cat);
        }
    }
}

/// Builds [`TypedRows`] cell by cell: push the cells of a row (any column order; a column
/// pushed twice keeps its first value), then [`TypedRowsBuilder::end_row`]; columns not pushed
/// are missing.
///
/// The schema given is where the builder starts: a numeric column that meets a text cell which
/// is not a number becomes a category for this batch, as a CSV column with text in it is one
/// (so a model that reads the column as text gets its exact spelling), and columns outside the
/// schema can be added ([`TypedRowsBuilder::column`]) when the schema may not know every model's
/// columns. The batch then carries the schema it was actually built with.
pub struct TypedRowsBuilder {
    schema: Arc<Schema>,
    cols: Vec<Col>,
    /// Names of the columns added beyond the schema, in the order of `cols[schema.len()..]`.
    extra: Vec<String>,
    rows: usize,
    capacity: usize,
}

impl TypedRowsBuilder {
    pub fn new(schema: Arc<Schema>) -> TypedRowsBuilder {
        TypedRowsBuilder::with_capacity(schema, 0)
    }

    pub fn with_capacity(schema: Arc<Schema>, rows: usize) -> TypedRowsBuilder {
        let cols = schema
            .columns()
            .iter()
            .map(|c| Col::empty(c.kind, rows))
            .collect();
        TypedRowsBuilder {
            schema,
            cols,
            extra: Vec::new(),
            rows: 0,
            capacity: rows,
        }
    }

    /// The schema the builder started from.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The index to push cells of column `name` to: its place in the schema, or a new column
    /// (numeric until it meets text) when the schema lacks it.
    pub fn column(&mut self, name: &str) -> usize {
        if let Some(at) = self.schema.position(name) {
            return at;
        }
        if let Some(at) = self.extra.iter().position(|e| e == name) {
            return self.schema.len() + at;
        }
        let mut values = Vec::with_capacity(self.capacity.max(self.rows));
        values.resize(self.rows, f64::NAN);
        self.cols.push(Col::Num(values));
        self.extra.push(name.to_string());
        self.cols.len() - 1
    }

    /// Rows ended so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// A text cell (a CSV field, a JSON string), trimmed: missing tokens (`NA`, empty, ...) are
    /// missing; a numeric column parses it (text that is not a number makes it a category); a
    /// categorical column keeps it as spelled.
    pub fn push_text(&mut self, column: usize, cell: &str) {
        let rows = self.rows;
        let Some(col) = self.cols.get_mut(column).filter(|c| c.len() == rows) else {
            return;
        };
        let cell = trimmed(cell);
        if is_missing_token(cell) {
            match col {
                Col::Num(v) => v.push(f64::NAN),
                Col::Cat(c) => c.codes.push(MISSING_CODE),
            }
            return;
        }
        if let Col::Num(v) = col {
            match parse_num(cell) {
                Some(x) => return v.push(x),
                None => col.make_category(),
            }
        }
        if let Col::Cat(c) = col {
            let code = c.intern(cell);
            c.codes.push(code);
        }
    }

    /// A category as parsed already (no trimming, no missing tokens): its exact text.
    fn push_category(&mut self, column: usize, text: &str) {
        let rows = self.rows;
        match self.cols.get_mut(column).filter(|c| c.len() == rows) {
            Some(Col::Cat(c)) => {
                let code = c.intern(text);
                c.codes.push(code);
            }
            _ => self.push_text(column, text),
        }
    }

    /// A number cell (a JSON number); non-finite numbers are missing.
    pub fn push_number(&mut self, column: usize, v: f64) {
        let rows = self.rows;
        let Some(col) = self.cols.get_mut(column).filter(|c| c.len() == rows) else {
            return;
        };
        match col {
            Col::Num(values) => values.push(if v.is_finite() { v } else { f64::NAN }),
            Col::Cat(c) => {
                let code = if v.is_finite() {
                    with_num_text(v, |s| c.intern(s))
                } else {
                    MISSING_CODE
                };
                c.codes.push(code);
            }
        }
    }

    /// Ends the row: every column not pushed since the last row is missing.
    pub fn end_row(&mut self) {
        self.rows += 1;
        for col in &mut self.cols {
            if col.len() < self.rows {
                match col {
                    Col::Num(v) => v.push(f64::NAN),
                    Col::Cat(c) => c.codes.push(MISSING_CODE),
                }
            }
        }
    }

    /// The schema of the batch as built: the starting one unless a column changed kind or was
    /// added.
    fn built_schema(&self) -> Arc<Schema> {
        let same = self.extra.is_empty()
            && self.cols.iter().zip(self.schema.columns()).all(|(c, s)| {
                matches!(
                    (c, s.kind),
                    (Col::Num(_), ColumnKind::Number) | (Col::Cat(_), ColumnKind::Category)
                )
            });
        if same {
            return self.schema.clone();
        }
        let names = self
            .schema
            .columns()
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.extra.iter().map(String::as_str));
        Schema::new(names.zip(&self.cols).map(|(name, col)| SchemaColumn {
            name: name.to_string(),
            kind: match col {
                Col::Num(_) => ColumnKind::Number,
                Col::Cat(_) => ColumnKind::Category,
            },
        }))
        .shared()
    }

    /// The batch built so far; the builder starts a new, empty one from the same schema (and
    /// the same added columns) and keeps its buffers' capacity.
    pub fn take(&mut self) -> TypedRows {
        let rows = self.rows;
        let schema = self.built_schema();
        // Builder column of each column of the built schema.
        let order: Vec<usize> = if Arc::ptr_eq(&schema, &self.schema) {
            (0..self.cols.len()).collect()
        } else {
            schema
                .columns()
                .iter()
                .map(|c| {
                    self.schema
                        .position(&c.name)
                        .or_else(|| {
                            let at = self.extra.iter().position(|e| *e == c.name)?;
                            Some(self.schema.len() + at)
                        })
                        .unwrap_or(0)
                })
                .collect()
        };
        let mut nums = Vec::with_capacity(8 * rows * schema.n_numbers());
        let mut codes = Vec::with_capacity(4 * rows * schema.n_categories());
        let mut text = Vec::new();
        let mut ends = Vec::new();
        let mut first = Vec::with_capacity(schema.n_categories() + 1);
        first.push(0u32);
        for &at in &order {
            match &self.cols[at] {
                Col::Num(values) => {
                    for v in values {
                        nums.extend_from_slice(&v.to_le_bytes());
                    }
                }
                Col::Cat(col) => {
                    for c in &col.codes {
                        codes.extend_from_slice(&c.to_le_bytes());
                    }
                    let base = text.len() as u32;
                    text.extend_from_slice(&col.text);
                    for e in &col.ends {
                        ends.extend_from_slice(&(e + base).to_le_bytes());
                    }
                    let before = first.last().copied().unwrap_or(0);
                    first.push(before + col.ends.len() as u32);
                }
            }
        }
        let kinds = self
            .schema
            .columns()
            .iter()
            .map(|c| c.kind)
            .chain(self.extra.iter().map(|_| ColumnKind::Number));
        for (col, kind) in self.cols.iter_mut().zip(kinds) {
            match (col, kind) {
                (Col::Num(v), ColumnKind::Number) => v.clear(),
                (Col::Cat(c), ColumnKind::Category) => {
                    c.codes.clear();
                    c.text.clear();
                    c.ends.clear();
                    c.table.iter_mut().for_each(|e| *e = 0);
                }
                (col, kind) => *col = Col::empty(kind, self.capacity),
            }
        }
        self.rows = 0;
        TypedRows::of(Columns {
            schema,
            rows,
            nums: Bytes::from(nums),
            codes: Bytes::from(codes),
            dict_text: Bytes::from(text),
            dict_ends: Bytes::from(ends),
            dict_first: first.into(),
            wire: OnceLock::new(),
        })
    }

    pub fn finish(mut self) -> TypedRows {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new([
            SchemaColumn {
                name: "area".into(),
                kind: ColumnKind::Number,
            },
            SchemaColumn {
                name: "street".into(),
                kind: ColumnKind::Category,
            },
            SchemaColumn {
                name: "class".into(),
                kind: ColumnKind::Category,
            },
        ]))
    }

    fn rows() -> Rows {
        Rows {
            columns: vec!["street".into(), "area".into(), "class".into(), "Id".into()],
            data: vec![
                vec![
                    Value::Text("Pave".into()),
                    Value::Num(8450.0),
                    Value::Num(60.0),
                    Value::Num(1.0),
                ],
                vec![
                    Value::Text("Grvl".into()),
                    Value::Text(" 9600 ".into()),
                    Value::Text("1.50".into()),
                    Value::Num(2.0),
                ],
                vec![
                    Value::Text("Pave".into()),
                    Value::Missing,
                    Value::Text("NA".into()),
                    Value::Num(3.0),
                ],
            ],
        }
    }

    #[test]
    fn rows_resolve_by_schema() {
        let t = TypedRows::from_rows(&schema(), &rows(), false).expect("resolves");
        assert_eq!(t.len(), 3);
        // Schema order: area (number), class, street (categories); Id is not in the schema.
        let area: Vec<f64> = t.numbers(0).iter().collect();
        assert_eq!(&area[..2], &[8450.0, 9600.0]);
        assert!(area[2].is_nan());
        let class = t.categories(0);
        // 60.0 reaches a category as "60"; "1.50" keeps its spelling; NA is missing.
        assert_eq!(class.entries().collect::<Vec<_>>(), ["60", "1.50"]);
        assert_eq!(class.codes().collect::<Vec<_>>(), [0, 1, MISSING_CODE]);
        let street = t.categories(1);
        assert_eq!(street.entries().collect::<Vec<_>>(), ["Pave", "Grvl"]);
        assert_eq!(street.codes().collect::<Vec<_>>(), [0, 1, 0]);
    }

    #[test]
    fn wire_round_trip_and_concat() {
        let a = TypedRows::from_rows(&schema(), &rows(), false).expect("resolves");
        let bytes = rmp_serde::to_vec_named(&a).expect("encodes");
        let back: TypedRows = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, a);
        assert_eq!(back.to_rows(), a.to_rows());
        let mut r = rows();
        r.data.reverse();
        let b = TypedRows::from_rows(&schema(), &r, false).expect("resolves");
        let both = TypedRows::concat(&[&a, &b]).expect("same schema");
        let mut expect = a.to_rows();
        expect.data.extend(b.to_rows().data);
        assert_eq!(both.to_rows(), expect);
        let again: TypedRows =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&both).expect("encodes"))
                .expect("a concatenation is a valid batch");
        assert_eq!(again, both);
    }

    #[test]
    fn a_batch_decoded_in_its_frame_shares_the_frames_memory() {
        let a = TypedRows::from_rows(&schema(), &rows(), false).expect("resolves");
        let frame = Bytes::from(rmp_serde::to_vec_named(&a).expect("encodes"));
        let shared: TypedRows =
            decode_in(&frame, || rmp_serde::from_slice(&frame)).expect("decodes");
        assert_eq!(shared, a);
        let inside = |b: &Bytes| {
            let (f, p) = (frame.as_ptr() as usize, b.as_ptr() as usize);
            p >= f && p + b.len() <= f + frame.len()
        };
        assert!(inside(&shared.nums) && inside(&shared.codes) && inside(&shared.dict_text));
        let copied: TypedRows = rmp_serde::from_slice(&frame).expect("decodes");
        assert!(
            !inside(&copied.nums),
            "outside decode_in the buffers are copies"
        );
    }

    #[test]
    fn inconsistent_buffers_do_not_decode() {
        let t = TypedRows::from_rows(&schema(), &rows(), false).expect("resolves");
        let wire = Wire::from(t.clone());
        let tamper = |f: &dyn Fn(&mut Wire)| {
            let mut w = Wire::from(t.clone());
            f(&mut w);
            TypedRows::try_from(w)
        };
        assert!(TypedRows::try_from(wire).is_ok());
        assert!(tamper(&|w| w.rows += 1).is_err());
        assert!(tamper(&|w| w.nums = Buf(w.nums.0.slice(1..))).is_err());
        assert!(tamper(&|w| w.codes = Buf(Bytes::from(vec![9u8; w.codes.0.len()]))).is_err());
        assert!(
            tamper(&|w| w.dict_counts = Buf(Bytes::from(vec![0u8; w.dict_counts.0.len()])))
                .is_err()
        );
        assert!(tamper(&|w| w.dict_text = Buf(Bytes::from_static(b"\xff\xfe"))).is_err());
        assert!(tamper(&|w| w.schema = Buf(Bytes::from_static(b"junk"))).is_err());
    }

    #[test]
    fn text_makes_a_numeric_column_a_category_and_unknown_columns_can_stay() {
        let mut r = rows();
        // "area" meets text: the batch carries it as a category, numbers spelled as categories
        // read them; "Id" is kept as a number column of its own.
        r.data[2][1] = Value::Text("big".into());
        let t = TypedRows::from_rows(&schema(), &r, true).expect("resolves");
        let s = t.schema();
        let names: Vec<&str> = s.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Id", "area", "class", "street"]);
        let area = s.position("area").expect("area");
        assert_eq!(s.kind(area), ColumnKind::Category);
        let col = t.categories(s.slot(area));
        assert_eq!(col.entries().collect::<Vec<_>>(), ["8450", "9600", "big"]);
        assert_eq!(s.kind(0), ColumnKind::Number);
        assert_eq!(
            t.numbers(s.slot(0)).iter().collect::<Vec<_>>(),
            [1.0, 2.0, 3.0]
        );
        // Without text or unknown columns the starting schema is the batch's.
        let plain = TypedRows::from_rows(&schema(), &rows(), false).expect("resolves");
        assert_eq!(**plain.schema(), *schema());
    }

    #[test]
    fn many_distinct_values_intern_without_collisions() {
        let s = Arc::new(Schema::new([SchemaColumn {
            name: "c".into(),
            kind: ColumnKind::Category,
        }]));
        let mut b = TypedRowsBuilder::new(s);
        for i in 0..5000 {
            b.push_text(0, &format!("v{}", i % 1234));
            b.end_row();
        }
        let t = b.take();
        let c = t.categories(0);
        assert_eq!(c.n_entries(), 1234);
        let entries: Vec<&str> = c.entries().collect();
        for (i, code) in c.codes().enumerate() {
            assert_eq!(entries[code as usize], format!("v{}", i % 1234));
        }
        assert!(b.is_empty(), "take starts a new batch");
    }
}
