//! Trees of bounded depth laid out as complete binary trees (heap order: the children of node
//! `i` are `2i + 1` and `2i + 2`), every tree padded to the model's depth: a node is 2 bytes
//! (feature, threshold rank), a tree of depth 4 is 15 of them — 30 bytes — and its 16 leaves
//! follow in their own array. A missing branch below a shallow leaf is filled with nodes that
//! always go left, down to a copy of the leaf. Ranks are bytes (at most 255 thresholds per
//! feature, 256 features), kept 256 to a row, so neither a node nor a rank needs a bounds check
//! and the walk is a handful of instructions per step. Eight rows are walked side by side (or,
//! for a row left over, eight trees), each row's outputs summed in tree order: bit for bit what
//! `Model::raw_row` gives.

use super::super::tree::Tree;
use super::{thresholds, BLOCK_ROWS, LANES, LEAF};

/// Deepest tree laid out this way (256 leaves).
const MAX_DEPTH: usize = 8;
/// A node that always goes left: no byte exceeds 255. (A split's own rank is at most 254, the
/// index of one of at most 255 thresholds.)
const LEFT: u16 = 0x00ff;

/// A model's trees in heap order (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Complete {
    base: Vec<f64>,
    k: usize,
    depth: usize,
    cuts: Vec<Vec<f64>>,
    used: Vec<usize>,
    /// `2^depth` per tree: `feature << 8 | rank` (the last entry of each tree is unused).
    nodes: Vec<u16>,
    /// `2^depth × k` per tree.
    leaves: Vec<f64>,
}

impl Complete {
    /// `None` unless every tree is at most `MAX_DEPTH` deep, features number at most 256 and
    /// each has at most 255 distinct (non-NaN) thresholds.
    pub(super) fn new(base: &[f64], trees: &[Tree]) -> Option<Complete> {
        let depth = trees.iter().map(Tree::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return None;
        }
        let cuts = thresholds(trees.iter().flat_map(|t| t.nodes.iter()))?;
        if cuts.len() > 256 || cuts.iter().any(|c| c.len() > 255) {
            return None;
        }
        let k = base.len();
        let size = 1usize << depth;
        let mut nodes = vec![LEFT; trees.len() * size];
        let mut leaves = vec![0.0; trees.len() * size * k];
        for (t, tree) in trees.iter().enumerate() {
            let slots = &mut nodes[t * size..(t + 1) * size];
            let outs = &mut leaves[t * size * k..(t + 1) * size * k];
            place(tree, &cuts, depth, slots, outs);
        }
        let used = (0..cuts.len()).filter(|&f| !cuts[f].is_empty()).collect();
        Some(Complete {
            base: base.to_vec(),
            k,
            depth,
            cuts,
            used,
            nodes,
            leaves,
        })
    }

    pub(super) fn n_outputs(&self) -> usize {
        self.k
    }

    /// Raw outputs of the `n` rows of `x` (`nf` features each) into `out`.
    pub(super) fn predict(&self, x: &[f64], nf: usize, n: usize, out: &mut [f64]) {
        match self.depth {
            0 => self.run::<1>(x, nf, n, out),
            1 => self.run::<2>(x, nf, n, out),
            2 => self.run::<4>(x, nf, n, out),
            3 => self.run::<8>(x, nf, n, out),
            4 => self.run::<16>(x, nf, n, out),
            5 => self.run::<32>(x, nf, n, out),
            6 => self.run::<64>(x, nf, n, out),
            7 => self.run::<128>(x, nf, n, out),
            _ => self.run::<256>(x, nf, n, out),
        }
    }

    fn run<const S: usize>(&self, x: &[f64], nf: usize, n: usize, out: &mut [f64]) {
        let k = self.k;
        for o in out.chunks_exact_mut(k).take(n) {
            o.copy_from_slice(&self.base);
        }
        let trees: Vec<&[u16; S]> = self
            .nodes
            .chunks_exact(S)
            .filter_map(|c| c.try_into().ok())
            .collect();
        // Sized to the batch when it is smaller than a block (a one-row request above all).
        let mut ranks = vec![[0u8; 256]; n.clamp(1, BLOCK_ROWS)];
        for start in (0..n).step_by(BLOCK_ROWS) {
            let rows = (n - start).min(BLOCK_ROWS);
            for (r, row) in ranks.iter_mut().take(rows).enumerate() {
                let xs = &x[(start + r) * nf..(start + r + 1) * nf];
                for &f in &self.used {
                    let (c, v) = (&self.cuts[f], xs[f]);
                    // NaN ranks above every threshold: right at every split.
                    row[f] = if v.is_nan() {
                        c.len()
                    } else {
                        c.partition_point(|t| *t < v)
                    } as u8;
                }
            }
            let full = rows / LANES * LANES;
            for (t, tree) in trees.iter().enumerate() {
                let leaves = &self.leaves[t * S * k..(t + 1) * S * k];
                for r in (0..full).step_by(LANES) {
                    let Ok(lanes) = <&[[u8; 256]; LANES]>::try_from(&ranks[r..r + LANES]) else {
                        continue;
                    };
                    let mut at = [0usize; LANES];
                    for _ in 0..self.depth {
                        for (i, row) in at.iter_mut().zip(lanes) {
                            let node = tree[*i & (S - 1)];
                            let rank = row[usize::from((node >> 8) as u8)];
                            *i = 2 * *i + 1 + usize::from(rank > node as u8);
                        }
                    }
                    for (lane, i) in at.iter().enumerate() {
                        add(out, leaves, (*i + 1 - S) & (S - 1), start + r + lane, k);
                    }
                }
            }
            // Rows left over: eight trees side by side.
            for (r, row) in ranks.iter().enumerate().take(rows).skip(full) {
                for (c, chunk) in trees.chunks(LANES).enumerate() {
                    let mut at = [0usize; LANES];
                    for _ in 0..self.depth {
                        for (i, tree) in at.iter_mut().zip(chunk) {
                            let node = tree[*i & (S - 1)];
                            let rank = row[usize::from((node >> 8) as u8)];
                            *i = 2 * *i + 1 + usize::from(rank > node as u8);
                        }
                    }
                    for (j, i) in at.iter().take(chunk.len()).enumerate() {
                        let t = c * LANES + j;
                        let leaves = &self.leaves[t * S * k..(t + 1) * S * k];
                        add(out, leaves, (*i + 1 - S) & (S - 1), start + r, k);
                    }
                }
            }
        }
    }
}

#[inline]
fn add(out: &mut [f64], leaves: &[f64], leaf: usize, row: usize, k: usize) {
    if k == 1 {
        out[row] += leaves[leaf];
    } else {
        for (o, v) in out[row * k..(row + 1) * k]
            .iter_mut()
            .zip(&leaves[leaf * k..(leaf + 1) * k])
        {
            *o += v;
        }
    }
}

/// Writes `tree` into its `2^depth` node slots and leaf slots.
fn place(tree: &Tree, cuts: &[Vec<f64>], depth: usize, slots: &mut [u16], outs: &mut [f64]) {
    let k = tree.n_outputs;
    // (node in the tree, its heap index, its level)
    let mut stack = vec![(0usize, 0usize, 0usize)];
    while let Some((src, at, level)) = stack.pop() {
        let n = &tree.nodes[src];
        if n.feature == LEAF {
            // Down the always-left padding to the leaf slot.
            let mut leaf = at;
            for _ in level..depth {
                leaf = 2 * leaf + 1;
            }
            let slot = leaf + 1 - (1 << depth);
            let from = n.left as usize;
            outs[slot * k..(slot + 1) * k].copy_from_slice(&tree.values[from..from + k]);
        } else {
            let c = &cuts[n.feature as usize];
            let rank = c.partition_point(|t| *t < n.threshold) as u16;
            slots[at] = (n.feature as u16) << 8 | rank;
            stack.push((n.left as usize, 2 * at + 1, level + 1));
            stack.push((n.right as usize, 2 * at + 2, level + 1));
        }
    }
}
