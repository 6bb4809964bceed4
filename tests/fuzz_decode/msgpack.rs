//! A MessagePack value tree and the mutations the fuzz tests apply to it: a valid encoding is
//! decoded into a [`V`], changed where a decoder looks (an integer made extreme, an array
//! emptied or grown, a field dropped, a subtree moved elsewhere), and encoded again, so that the
//! decoder under test gets past the first byte and meets values it did not write.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// One MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Arr(Vec<V>),
    Map(Vec<(V, V)>),
}

impl V {
    /// Decodes one value (what rmp-serde wrote).
    pub fn decode(bytes: &[u8]) -> V {
        rmp_serde::from_slice(bytes).expect("a seed is valid MessagePack")
    }

    /// Encodes the tree.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a tree encodes")
    }

    /// Number of values in the tree (this one included; map keys are not counted: an edit
    /// that renamed a field would mostly test "missing field").
    pub fn size(&self) -> usize {
        1 + match self {
            V::Arr(items) => items.iter().map(V::size).sum(),
            V::Map(entries) => entries.iter().map(|(_, v)| v.size()).sum(),
            _ => 0,
        }
    }

    /// The `n`-th value in pre-order (0 = this one); `n` must be below `size()`.
    pub fn nth(&mut self, mut n: usize) -> &mut V {
        if n == 0 {
            return self;
        }
        n -= 1;
        let children: Vec<&mut V> = match self {
            V::Arr(items) => items.iter_mut().collect(),
            V::Map(entries) => entries.iter_mut().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        };
        for child in children {
            let s = child.size();
            if n < s {
                return child.nth(n);
            }
            n -= s;
        }
        panic!("value index past the tree's size")
    }

    /// Every value stored under a map key equal to `key`, anywhere in the tree.
    pub fn values_of<'a>(&'a mut self, key: &str, out: &mut Vec<&'a mut V>) {
        match self {
            V::Arr(items) => items.iter_mut().for_each(|i| i.values_of(key, out)),
            V::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    if matches!(k, V::Str(s) if s == key) {
                        out.push(v);
                    } else {
                        v.values_of(key, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Integers and floats a decoder should not trust.
pub const EXTREMES: [f64; 6] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    1e308,
    -1.5,
];
pub const BIG: [u64; 9] = [
    0,
    1,
    2,
    255,
    65_536,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    u64::MAX,
];

/// One structure-aware change: what to do (`op`), where (`at`, a node index modulo the tree's
/// size) and with what (`arg`).
#[derive(Debug, Clone, Copy)]
pub struct Edit {
    pub op: u8,
    pub at: usize,
    pub arg: u64,
}

/// Kinds of [`Edit`]: the first five keep the value's type (so the message around it still
/// decodes and the value reaches the code behind the decoder), the others do not.
pub const EDIT_KINDS: u8 = 10;

/// Applies `edit` to `tree`. Every change keeps the tree a valid MessagePack value: what goes
/// wrong is left for the decoder to find.
pub fn apply(tree: &mut V, edit: Edit) {
    let size = tree.size();
    let donor = tree.nth((edit.arg as usize) % size).clone();
    let node = tree.nth(edit.at % size);
    let pick = edit.arg as usize;
    match edit.op % EDIT_KINDS {
        // The same type, an extreme value: a count or an index at a power of two or at a type's
        // maximum, a float that is not finite, an empty or odd string.
        0..=1 => match node {
            V::UInt(n) => *n = BIG[pick % BIG.len()],
            V::Int(n) => *n = -(BIG[pick % BIG.len()] as i64 & i64::MAX),
            V::F64(f) => *f = EXTREMES[pick % EXTREMES.len()],
            V::F32(f) => *f = EXTREMES[pick % EXTREMES.len()] as f32,
            V::Bool(b) => *b = !*b,
            V::Str(t) => match pick % 4 {
                0 => t.clear(),
                1 => t.push_str(["é", "\u{0}", "NA", "🦀"][(pick >> 8) % 4]),
                2 => *t = t.repeat(1 + (pick >> 8) % 100),
                _ => *t = "x".into(),
            },
            V::Bin(b) => match pick % 3 {
                0 => b.clear(),
                1 => b.truncate(b.len() / 2),
                _ => b.extend(std::iter::repeat_n(0xA5, 1 + (pick >> 8) % 300)),
            },
            other => shrink_or_grow(other, edit.arg),
        },
        // The same type, a little off: an index one or two past its end, a sign flipped.
        2 => match node {
            V::UInt(n) => *n = n.wrapping_add(1 + (edit.arg % 3)),
            V::Int(n) => *n = n.wrapping_sub(1 + (edit.arg % 3) as i64),
            V::F64(f) => *f = -*f * 2.0,
            V::F32(f) => *f = -*f * 2.0,
            other => shrink_or_grow(other, edit.arg),
        },
        // Containers shrink, grow, empty or reorder; anything else becomes a container.
        3..=4 => shrink_or_grow(node, edit.arg),
        // Another number altogether.
        5 => *node = V::UInt(BIG[pick % BIG.len()]),
        6 => *node = V::F64(EXTREMES[pick % EXTREMES.len()]),
        // Another type altogether.
        7 => {
            *node = match pick % 6 {
                0 => V::Nil,
                1 => V::Bool(edit.arg & 1 == 1),
                2 => V::Str("Regression".into()),
                3 => V::Bin(vec![0xc1; 3]),
                4 => V::Int(-1),
                _ => V::Map(Vec::new()),
            }
        }
        // A subtree from elsewhere (a field of another type, a variant's body under another
        // variant's name).
        _ => *node = donor,
    }
}

/// Removes, duplicates, clears or swaps elements of an array or a map's values; a scalar
/// becomes an array of two copies of itself.
fn shrink_or_grow(node: &mut V, arg: u64) {
    let pick = arg as usize;
    match node {
        V::Arr(items) if !items.is_empty() => {
            let i = pick % items.len();
            match (pick >> 8) % 4 {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let one = items[i].clone();
                    let copies = 1 + (pick >> 16) % 64;
                    items.extend(std::iter::repeat_n(one, copies));
                }
                2 => items.clear(),
                _ => {
                    let j = (pick >> 16) % items.len();
                    items.swap(i, j)
                }
            }
        }
        V::Map(entries) if entries.len() > 1 => {
            // Two fields swap values (a struct keeps its keys).
            let (a, b) = (pick % entries.len(), (pick >> 16) % entries.len());
            let value = entries[a].1.clone();
            entries[a].1 = entries[b].1.clone();
            entries[b].1 = value;
        }
        V::Arr(_) | V::Map(_) => {}
        other => *other = V::Arr(vec![other.clone(), other.clone()]),
    }
}

/// One byte-level change of an encoding: what (`op`), where (`at`, modulo the length) and
/// with what (`arg`). Lengths and markers change here: a `bin 32` claiming 4 GiB, a cut in
/// the middle of a float.
#[derive(Debug, Clone, Copy)]
pub struct ByteEdit {
    pub op: u8,
    pub at: usize,
    pub arg: u8,
}

/// MessagePack markers that announce lengths (`bin`, `str`, `array`, `map` with 8-, 16- and
/// 32-bit lengths) or fixed-width values.
const MARKERS: [u8; 14] = [
    0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xcb, 0xcf, 0xd3, 0xc1,
];

pub fn apply_bytes(bytes: &mut Vec<u8>, edit: ByteEdit) {
    if bytes.is_empty() {
        bytes.push(edit.arg);
        return;
    }
    let at = edit.at % bytes.len();
    match edit.op % 6 {
        0 => bytes[at] ^= 1 << (edit.arg % 8),
        1 => bytes.insert(at, edit.arg),
        2 => {
            bytes.remove(at);
        }
        3 => bytes.truncate(at),
        4 => bytes[at] = MARKERS[edit.arg as usize % MARKERS.len()],
        // Four bytes of 0xff: a 32-bit length (or count) of about 4 billion.
        _ => {
            for b in bytes.iter_mut().skip(at).take(4) {
                *b = 0xff;
            }
        }
    }
}

impl Serialize for V {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Nil => s.serialize_unit(),
            V::Bool(b) => s.serialize_bool(*b),
            V::Int(n) => s.serialize_i64(*n),
            V::UInt(n) => s.serialize_u64(*n),
            V::F32(f) => s.serialize_f32(*f),
            V::F64(f) => s.serialize_f64(*f),
            V::Str(t) => s.serialize_str(t),
            V::Bin(b) => s.serialize_bytes(b),
            V::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            V::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct VVisitor;

impl<'de> Visitor<'de> for VVisitor {
    type Value = V;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any MessagePack value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<V, E> {
        Ok(V::Nil)
    }
    fn visit_none<E: de::Error>(self) -> Result<V, E> {
        Ok(V::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V, D::Error> {
        V::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<V, E> {
        Ok(V::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<V, E> {
        Ok(V::Int(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<V, E> {
        Ok(V::UInt(n))
    }
    fn visit_f32<E: de::Error>(self, f: f32) -> Result<V, E> {
        Ok(V::F32(f))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<V, E> {
        Ok(V::F64(f))
    }
    fn visit_str<E: de::Error>(self, t: &str) -> Result<V, E> {
        Ok(V::Str(t.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<V, E> {
        Ok(V::Bin(b.to_vec()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V, A::Error> {
        let mut items = Vec::new();
        while let Some(i) = seq.next_element()? {
            items.push(i);
        }
        Ok(V::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V, A::Error> {
        let mut entries = Vec::new();
        while let Some(e) = map.next_entry()? {
            entries.push(e);
        }
        Ok(V::Map(entries))
    }
}

impl<'de> Deserialize<'de> for V {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<V, D::Error> {
        d.deserialize_any(VVisitor)
    }
}
