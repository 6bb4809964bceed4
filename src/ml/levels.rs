//! The levels of every categorical column of a preprocessor in one open-addressed hash table,
//! for serving: a cell's code is one hash and, mostly, one comparison, in a few contiguous
//! buffers. A binary search over each column's sorted `Vec<String>` compares several strings,
//! each in its own allocation, and on a node woken for a one-row request those are cache misses.

use super::typed::hash_bytes;

/// What each (column, level) encodes to (see the module documentation).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LevelIndex {
    /// The levels back to back.
    text: Vec<u8>,
    /// Where each level starts in `text`, then where the last one ends.
    bounds: Vec<u32>,
    /// The column each level belongs to.
    column: Vec<u32>,
    /// What each level encodes to.
    value: Vec<f64>,
    /// Open addressing: level index + 1, or 0 for a free slot. A power of two, at most half full.
    table: Vec<u32>,
}

fn slot_hash(column: u32, key: &[u8]) -> u64 {
    let h = hash_bytes(key) ^ (u64::from(column) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl LevelIndex {
    /// Indexes `(column, levels, values)`: `values[i]` is what `levels[i]` of that column
    /// encodes to. Columns are numbered by the caller; a level repeated in one column keeps its
    /// first value.
    pub fn new<'a>(columns: impl IntoIterator<Item = (u32, &'a [String], &'a [f64])>) -> Self {
        let mut index = LevelIndex {
            bounds: vec![0],
            ..LevelIndex::default()
        };
        for (column, levels, values) in columns {
            for (level, &value) in levels.iter().zip(values) {
                index.text.extend_from_slice(level.as_bytes());
                index.bounds.push(index.text.len() as u32);
                index.column.push(column);
                index.value.push(value);
            }
        }
        let size = (2 * index.value.len()).next_power_of_two().max(2);
        index.table = vec![0; size];
        for i in 0..index.value.len() {
            let (column, key) = (index.column[i], index.level(i));
            if index.find(column, key).is_some() {
                continue;
            }
            let mut at = slot_hash(column, key) as usize & (size - 1);
            while index.table[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            index.table[at] = i as u32 + 1;
        }
        index
    }

    fn level(&self, i: usize) -> &[u8] {
        &self.text[self.bounds[i] as usize..self.bounds[i + 1] as usize]
    }

    fn find(&self, column: u32, key: &[u8]) -> Option<usize> {
        let mask = self.table.len().checked_sub(1)?;
        let mut at = slot_hash(column, key) as usize & mask;
        loop {
            let i = (*self.table.get(at)? as usize).checked_sub(1)?;
            if self.column[i] == column && self.level(i) == key {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
    }

    /// What `key` encodes to in `column`, if it is one of its levels.
    #[inline]
    pub fn get(&self, column: u32, key: &[u8]) -> Option<f64> {
        self.find(column, key).map(|i| self.value[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_level_is_found_in_its_own_column_only() {
        let a = strings(&["Gd", "TA", "Ex", "", "NA "]);
        let b = strings(&["TA", "Gd", "Po"]);
        let (va, vb) = ([1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0]);
        let index = LevelIndex::new([(0, &a[..], &va[..]), (7, &b[..], &vb[..])]);
        for (l, v) in a.iter().zip(va) {
            assert_eq!(index.get(0, l.as_bytes()), Some(v), "{l:?}");
        }
        for (l, v) in b.iter().zip(vb) {
            assert_eq!(index.get(7, l.as_bytes()), Some(v), "{l:?}");
        }
        assert_eq!(index.get(0, b"Po"), None, "a level of the other column");
        assert_eq!(index.get(7, b""), None);
        assert_eq!(index.get(3, b"TA"), None, "a column with no levels");
        assert_eq!(index.get(0, b"NA"), None, "bytes are compared as they are");
        assert_eq!(index.get(0, b"Gdx"), None);
    }

    #[test]
    fn many_levels_and_an_empty_index() {
        let levels: Vec<String> = (0..5_000).map(|i| format!("level {i}")).collect();
        let values: Vec<f64> = (0..5_000).map(f64::from).collect();
        let index = LevelIndex::new([(2, &levels[..], &values[..])]);
        for (l, &v) in levels.iter().zip(&values) {
            assert_eq!(index.get(2, l.as_bytes()), Some(v));
        }
        assert_eq!(index.get(2, b"level 5000"), None);
        let empty = LevelIndex::new([]);
        assert_eq!(empty.get(0, b"x"), None);
        let first = strings(&["a", "a"]);
        let twice = LevelIndex::new([(0, &first[..], &[1.0, 2.0][..])]);
        assert_eq!(
            twice.get(0, b"a"),
            Some(1.0),
            "the first of a repeated level"
        );
    }
}
