//! Trees of at most 64 leaves on few features, evaluated without walking them (QuickScorer,
//! Lucchese et al., SIGIR 2015): number a tree's leaves left to right; a split whose test fails
//! (the row goes right) rules out the leaves of its left subtree, and the leaf a row reaches is
//! the leftmost one no failed test ruled out. A feature's rank decides every test on that
//! feature at once, so the leaves left standing by all of them — in every tree — are looked up
//! in one table row per (feature, rank): a row's leaves are the AND of one table row per
//! feature, each tree's leaf the lowest set bit of its mask. The ANDs run over all the trees
//! side by side (the compiler vectorizes them), and no step waits on the one before; the cost
//! grows with the features times the trees, which is why wide data keeps the tree walk.
//!
//! Ranks, and the order of the leaf sums, are those of [`super::complete`]: each row's outputs
//! are added in tree order, bit for bit what `Model::raw_row` gives.

use super::super::tree::Tree;
use super::{thresholds, LEAF};

/// Most leaves a tree may have here.
const MAX_LEAVES: usize = 64;
/// Largest size of all the tables of a model.
const MAX_TABLE_BYTES: usize = 64 << 20;
/// Rows ranked and looked up together.
const BLOCK: usize = 64;

/// A set of leaves, one bit each: 16, 32 or 64 of them, the narrowest the model's largest tree
/// fits (fewer bytes to AND).
trait Mask: Copy + std::ops::BitAndAssign {
    const BITS: usize;
    const ALL: Self;
    fn from_u64(v: u64) -> Self;
    /// The lowest set bit (a row's mask is never empty: its own leaf stands).
    fn lowest(self) -> usize;
}

macro_rules! mask {
    ($t:ty) => {
        impl Mask for $t {
            const BITS: usize = <$t>::BITS as usize;
            const ALL: Self = <$t>::MAX;
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            #[inline]
            fn lowest(self) -> usize {
                (self.trailing_zeros() as usize) & (<Self as Mask>::BITS - 1)
            }
        }
    };
}
mask!(u16);
mask!(u32);
mask!(u64);

/// The tables of a model, by mask width.
#[derive(Debug, Clone, PartialEq)]
enum Tables {
    W16(Vec<u16>),
    W32(Vec<u32>),
    W64(Vec<u64>),
}

/// A model's trees as leaf-mask tables (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Masks {
    base: Vec<f64>,
    k: usize,
    n_trees: usize,
    /// Each feature's distinct split thresholds, ascending.
    cuts: Vec<Vec<f64>>,
    /// The same padded to 256 with +∞, for a search of fixed steps.
    padded: Vec<[f64; 256]>,
    /// The features some split uses, and where each one's table starts: `cuts + 1` rows (one
    /// per rank) of `n_trees` masks.
    used: Vec<(usize, usize)>,
    tables: Tables,
    /// `BITS × k` per tree, its leaves left to right (unused slots 0).
    leaves: Vec<f64>,
}

impl Masks {
    /// `None` unless every tree has at most 64 leaves, each feature at most 255 distinct
    /// (non-NaN) thresholds, the tables fit [`MAX_TABLE_BYTES`], and ANDing a mask per tree for
    /// every feature costs less than walking the trees (features × mask bits ≤ 128 × depth).
    pub(super) fn new(base: &[f64], trees: &[Tree]) -> Option<Masks> {
        // Its row blocks are cut per tree: no trees, nothing to cut by.
        if trees.is_empty() {
            return None;
        }
        let leaves_of = |t: &Tree| t.nodes.iter().filter(|n| n.feature == LEAF).count();
        let widest = trees.iter().map(leaves_of).max().unwrap_or(1);
        if widest > MAX_LEAVES {
            return None;
        }
        let cuts = thresholds(trees.iter().flat_map(|t| t.nodes.iter()))?;
        if cuts.iter().any(|c| c.len() > 255) {
            return None;
        }
        let bits = widest.next_power_of_two().max(16);
        let depth = trees.iter().map(Tree::depth).max().unwrap_or(0);
        let n_used = cuts.iter().filter(|c| !c.is_empty()).count();
        if n_used * bits > 128 * depth.max(1) {
            return None;
        }
        let nt = trees.len();
        let ranks: usize = cuts
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| c.len() + 1)
            .sum();
        if ranks.checked_mul(nt)?.checked_mul(bits / 8)? > MAX_TABLE_BYTES {
            return None;
        }
        let mut used = Vec::with_capacity(n_used);
        let mut at = 0;
        let mut start = vec![usize::MAX; cuts.len()];
        for (f, c) in cuts.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
            used.push((f, at));
            start[f] = at;
            at += (c.len() + 1) * nt;
        }
        let k = base.len();
        let mut wide = vec![u64::MAX; at];
        let mut leaves = vec![0.0; nt * bits * k];
        for (t, tree) in trees.iter().enumerate() {
            let laid = lay_out(tree);
            for (i, &from) in laid.leaves.iter().enumerate() {
                let slot = (t * bits + i) * k;
                leaves[slot..slot + k].copy_from_slice(&tree.values[from..from + k]);
            }
            for &(node, keep) in &laid.masks {
                let n = &tree.nodes[node];
                let c = &cuts[n.feature as usize];
                let rank = c.partition_point(|x| *x < n.threshold);
                // Ranks above the split's own fail its test: the row goes right.
                for r in rank + 1..=c.len() {
                    wide[start[n.feature as usize] + r * nt + t] &= keep;
                }
            }
        }
        let tables = match bits {
            16 => Tables::W16(narrow(&wide)),
            32 => Tables::W32(narrow(&wide)),
            _ => Tables::W64(wide),
        };
        let padded = cuts
            .iter()
            .map(|c| {
                let mut p = [f64::INFINITY; 256];
                p[..c.len()].copy_from_slice(c);
                p
            })
            .collect();
        Some(Masks {
            base: base.to_vec(),
            k,
            n_trees: nt,
            cuts,
            padded,
            used,
            tables,
            leaves,
        })
    }

    pub(super) fn n_outputs(&self) -> usize {
        self.k
    }

    /// Bits of a mask: 16, 32 or 64.
    #[cfg(test)]
    pub(super) fn tables_width(&self) -> usize {
        match self.tables {
            Tables::W16(_) => 16,
            Tables::W32(_) => 32,
            Tables::W64(_) => 64,
        }
    }

    /// Raw outputs of the `n` rows of `x` (`nf` features each) into `out`.
    pub(super) fn predict(&self, x: &[f64], nf: usize, n: usize, out: &mut [f64]) {
        match &self.tables {
            Tables::W16(t) => self.run(t, x, nf, n, out),
            Tables::W32(t) => self.run(t, x, nf, n, out),
            Tables::W64(t) => self.run(t, x, nf, n, out),
        }
    }

    fn run<M: Mask>(&self, tables: &[M], x: &[f64], nf: usize, n: usize, out: &mut [f64]) {
        let (k, nt) = (self.k, self.n_trees);
        for o in out.chunks_exact_mut(k).take(n) {
            o.copy_from_slice(&self.base);
        }
        // Each row's masks, one per tree; each used feature's rank of each row.
        // (A batch smaller than a block, a one-row request above all, gets buffers its size.)
        let block = n.clamp(1, BLOCK);
        let mut acc = vec![M::ALL; block * nt];
        let mut ranks = vec![0usize; block * self.used.len()];
        for start in (0..n).step_by(block) {
            let rows = (n - start).min(block);
            for (u, &(f, _)) in self.used.iter().enumerate() {
                let (c, len) = (&self.padded[f], self.cuts[f].len());
                for (g, rank) in ranks[u * block..u * block + rows].iter_mut().enumerate() {
                    let v = x[(start + g) * nf + f];
                    // A search of eight fixed steps, without branches; NaN ranks above every
                    // threshold (right at every split, as in `Tree::leaf_offset`).
                    let mut i = 0usize;
                    for step in [128, 64, 32, 16, 8, 4, 2, 1] {
                        i += step * usize::from(c[i + step - 1] < v);
                    }
                    *rank = if v.is_nan() { len } else { i };
                }
            }
            let acc = &mut acc[..rows * nt];
            for (u, &(_, at)) in self.used.iter().enumerate() {
                for (g, a) in acc.chunks_exact_mut(nt).enumerate() {
                    let row = at + ranks[u * block + g] * nt;
                    let table = &tables[row..row + nt];
                    if u == 0 {
                        a.copy_from_slice(table);
                    } else {
                        for (a, m) in a.iter_mut().zip(table) {
                            *a &= *m;
                        }
                    }
                }
            }
            let out = &mut out[start * k..(start + rows) * k];
            if k == 1 {
                self.add_leaves(acc, out);
            } else {
                for (a, o) in acc.chunks_exact(nt).zip(out.chunks_exact_mut(k)) {
                    for (t, m) in a.iter().enumerate() {
                        let leaf = (t * M::BITS + m.lowest()) * k;
                        for (o, v) in o.iter_mut().zip(&self.leaves[leaf..leaf + k]) {
                            *o += v;
                        }
                    }
                }
            }
        }
    }

    /// One output: each row's leaves added in tree order, four rows at a time so that their
    /// sums do not wait on each other.
    fn add_leaves<M: Mask>(&self, acc: &[M], out: &mut [f64]) {
        let nt = self.n_trees;
        let leaves = |t: usize| &self.leaves[t * M::BITS..(t + 1) * M::BITS];
        let mut quads = acc.chunks_exact(4 * nt);
        let mut outs = out.chunks_exact_mut(4);
        for (a, o) in (&mut quads).zip(&mut outs) {
            let (a0, rest) = a.split_at(nt);
            let (a1, rest) = rest.split_at(nt);
            let (a2, a3) = rest.split_at(nt);
            let mut s = [o[0], o[1], o[2], o[3]];
            for t in 0..nt {
                let l = leaves(t);
                s[0] += l[a0[t].lowest()];
                s[1] += l[a1[t].lowest()];
                s[2] += l[a2[t].lowest()];
                s[3] += l[a3[t].lowest()];
            }
            o.copy_from_slice(&s);
        }
        for (a, o) in quads
            .remainder()
            .chunks_exact(nt)
            .zip(outs.into_remainder())
        {
            for (t, m) in a.iter().enumerate() {
                *o += leaves(t)[m.lowest()];
            }
        }
    }
}

/// Masks of 64 bits cut to `M` (every tree's leaves fit it).
fn narrow<M: Mask>(wide: &[u64]) -> Vec<M> {
    wide.iter().map(|&m| M::from_u64(m)).collect()
}

/// A tree's leaves numbered left to right, and the mask of each split.
struct Laid {
    /// Where each leaf's outputs start in `Tree::values`, left to right.
    leaves: Vec<usize>,
    /// (split node, the leaves left standing when its test fails: all but its left subtree's).
    masks: Vec<(usize, u64)>,
}

fn lay_out(tree: &Tree) -> Laid {
    let mut laid = Laid {
        leaves: Vec::new(),
        masks: Vec::new(),
    };
    // Depth first, left before right: (node, whether its left subtree is numbered).
    let mut stack = vec![(0usize, false)];
    // Of each split whose left subtree is being numbered: its first leaf.
    let mut firsts: Vec<usize> = Vec::new();
    while let Some((i, left_done)) = stack.pop() {
        let n = &tree.nodes[i];
        if n.feature == LEAF {
            laid.leaves.push(n.left as usize);
        } else if !left_done {
            firsts.push(laid.leaves.len());
            stack.push((i, true));
            stack.push((n.left as usize, false));
        } else {
            let (a, b) = (firsts.pop().unwrap_or(0), laid.leaves.len());
            laid.masks.push((i, !(bits_below(b) & !bits_below(a))));
            stack.push((n.right as usize, false));
        }
    }
    laid
}

/// The `n` lowest bits set.
fn bits_below(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}
