//! The feature schema rows travel by: the columns the cluster's models use and the type each one
//! has on the wire, fixed when the models are trained. A column is a number when every model
//! that uses it reads it as a number, and a category (interned text) as soon as one model reads
//! it as text, so that no model loses the exact spelling of its levels. A model that lacks a
//! column of the schema treats it as missing; columns of a request outside the schema are
//! dropped when the request is resolved, since no model reads them.
//!
//! A schema is identified by its encoded bytes, which every typed batch carries; a node decodes
//! each distinct schema once ([`Schema::intern`]) and binds its preprocessing to it once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::error::{MlError, Result};

/// How a column travels: `f64` numbers, or codes into a dictionary of its text values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Number,
    Category,
}

/// One column of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaColumn {
    pub name: String,
    pub kind: ColumnKind,
}

/// Columns and their kinds, in a fixed order (sorted by name), with the encoding batches carry.
#[derive(Clone)]
pub struct Schema {
    columns: Vec<SchemaColumn>,
    /// Index of each column among the columns of its kind (its numeric or categorical slot).
    slots: Vec<usize>,
    n_numbers: usize,
    by_name: HashMap<String, usize>,
    encoded: Bytes,
}

/// Schemas decoded from the wire are kept for reuse: a node sees a handful of distinct ones.
const INTERNED: usize = 16;
static INTERN: Mutex<Vec<Arc<Schema>>> = Mutex::new(Vec::new());

/// Largest number of columns a decoded schema may claim (a guard against a hostile length).
const MAX_COLUMNS: usize = 1 << 20;

impl Schema {
    /// The schema of the given columns: sorted by name; a name given twice is a category if
    /// either says so.
    pub fn new(columns: impl IntoIterator<Item = SchemaColumn>) -> Schema {
        let mut merged: BTreeMap<String, ColumnKind> = BTreeMap::new();
        for c in columns {
            let kind = merged.entry(c.name).or_insert(c.kind);
            if c.kind == ColumnKind::Category {
                *kind = ColumnKind::Category;
            }
        }
        Schema::from_sorted(
            merged
                .into_iter()
                .map(|(name, kind)| SchemaColumn { name, kind })
                .collect(),
        )
    }

    /// The union of several models' columns (`(name, numeric)` as a model lists them).
    pub fn merge<'a>(models: impl IntoIterator<Item = &'a [(String, bool)]>) -> Schema {
        Schema::new(
            models
                .into_iter()
                .flatten()
                .map(|(name, numeric)| SchemaColumn {
                    name: name.clone(),
                    kind: if *numeric {
                        ColumnKind::Number
                    } else {
                        ColumnKind::Category
                    },
                }),
        )
    }

    fn from_sorted(columns: Vec<SchemaColumn>) -> Schema {
        let mut slots = Vec::with_capacity(columns.len());
        let (mut n_numbers, mut n_categories) = (0, 0);
        let mut buf = BytesMut::new();
        buf.put_u32_le(columns.len() as u32);
        for c in &columns {
            let slot = match c.kind {
                ColumnKind::Number => &mut n_numbers,
                ColumnKind::Category => &mut n_categories,
            };
            slots.push(*slot);
            *slot += 1;
            buf.put_u8(match c.kind {
                ColumnKind::Number => 0,
                ColumnKind::Category => 1,
            });
            buf.put_u32_le(c.name.len() as u32);
            buf.put_slice(c.name.as_bytes());
        }
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Schema {
            columns,
            slots,
            n_numbers,
            by_name,
            encoded: buf.freeze(),
        }
    }

    /// Decodes [`Schema::encoded`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Schema> {
        let bad = |what: &str| MlError::Mismatch(format!("bad schema: {what}"));
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let end = at.checked_add(n).filter(|&e| e <= bytes.len());
            let end = end.ok_or_else(|| bad("truncated"))?;
            let s = &bytes[at..end];
            at = end;
            Ok(s)
        };
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let n = u32_at(take(4)?);
        if n > MAX_COLUMNS {
            return Err(bad("too many columns"));
        }
        let mut columns: Vec<SchemaColumn> = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let kind = match take(1)?[0] {
                0 => ColumnKind::Number,
                1 => ColumnKind::Category,
                _ => return Err(bad("unknown column kind")),
            };
            let len = u32_at(take(4)?);
            let name = std::str::from_utf8(take(len)?).map_err(|_| bad("name is not UTF-8"))?;
            if columns.last().is_some_and(|c| c.name.as_str() >= name) {
                return Err(bad("columns not sorted by name"));
            }
            columns.push(SchemaColumn {
                name: name.to_string(),
                kind,
            });
        }
        if at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Schema::from_sorted(columns))
    }

    /// The shared copy of the schema `bytes` encode: decoded at most once while it stays among
    /// the last few seen.
    pub fn intern(bytes: &[u8]) -> Result<Arc<Schema>> {
        if let Some(hit) = Schema::interned(bytes) {
            return Ok(hit);
        }
        Ok(Schema::keep(Arc::new(Schema::decode(bytes)?)))
    }

    /// Interns a schema built here, so that batches decoded later share it.
    pub fn shared(self) -> Arc<Schema> {
        Schema::interned(&self.encoded).unwrap_or_else(|| Schema::keep(Arc::new(self)))
    }

    fn interned(bytes: &[u8]) -> Option<Arc<Schema>> {
        let mut cache = INTERN.lock().unwrap_or_else(|e| e.into_inner());
        let at = cache.iter().position(|s| s.encoded == bytes)?;
        // Most recently used last: the first entry is the one to evict.
        let hit = cache.remove(at);
        cache.push(hit.clone());
        Some(hit)
    }

    fn keep(schema: Arc<Schema>) -> Arc<Schema> {
        let mut cache = INTERN.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= INTERNED {
            cache.remove(0);
        }
        cache.push(schema.clone());
        schema
    }

    pub fn columns(&self) -> &[SchemaColumn] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Position of the column named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn kind(&self, column: usize) -> ColumnKind {
        self.columns[column].kind
    }

    /// Index of `column` among the columns of its kind.
    pub fn slot(&self, column: usize) -> usize {
        self.slots[column]
    }

    pub fn n_numbers(&self) -> usize {
        self.n_numbers
    }

    pub fn n_categories(&self) -> usize {
        self.columns.len() - self.n_numbers
    }

    /// The bytes that identify this schema on the wire.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Schema) -> bool {
        self.encoded == other.encoded
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.columns).finish()
    }
}

impl Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.columns.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Schema, D::Error> {
        Ok(Schema::new(Vec::<SchemaColumn>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: ColumnKind) -> SchemaColumn {
        SchemaColumn {
            name: name.into(),
            kind,
        }
    }

    #[test]
    fn a_column_is_a_category_as_soon_as_one_model_reads_text() {
        let a = vec![("x".to_string(), true), ("pool".to_string(), true)];
        let b = vec![("pool".to_string(), false), ("area".to_string(), true)];
        let s = Schema::merge([a.as_slice(), b.as_slice()]);
        let names: Vec<&str> = s.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["area", "pool", "x"]);
        assert_eq!(s.kind(1), ColumnKind::Category);
        assert_eq!(s.kind(0), ColumnKind::Number);
        // Slots count within each kind: area 0, x 1 among numbers; pool 0 among categories.
        assert_eq!((s.slot(0), s.slot(1), s.slot(2)), (0, 0, 1));
        assert_eq!((s.n_numbers(), s.n_categories()), (2, 1));
        assert_eq!(s.position("x"), Some(2));
    }

    #[test]
    fn encoding_round_trips_and_identifies() {
        let s = Schema::new([col("b", ColumnKind::Category), col("a", ColumnKind::Number)]);
        let back = Schema::decode(s.encoded()).expect("decodes");
        assert_eq!(back, s);
        assert_eq!(back.columns(), s.columns());
        let a = Schema::intern(s.encoded()).expect("interned");
        let b = Schema::intern(s.encoded()).expect("interned");
        assert!(Arc::ptr_eq(&a, &b), "decoded once");
    }

    #[test]
    fn bad_encodings_are_errors() {
        let s = Schema::new([col("a", ColumnKind::Number), col("b", ColumnKind::Category)]);
        let bytes = s.encoded().to_vec();
        for cut in 0..bytes.len() {
            assert!(Schema::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut kind = bytes.clone();
        kind[4] = 7;
        assert!(Schema::decode(&kind).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Schema::decode(&extra).is_err());
        assert!(Schema::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
