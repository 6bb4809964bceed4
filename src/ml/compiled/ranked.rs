//! Trees of any depth with threshold ranks: nodes of 8 bytes (feature, threshold rank, left
//! child; the right child follows it) in breadth-first order, all the trees in one array; a
//! leaf leads back to itself, so a tree is walked its depth in steps. Eight rows are walked side
//! by side, or, for a row left over, eight trees. The layout for trees too deep for
//! [`super::complete`].

use super::{FlatNode, BLOCK_ROWS, LANES, LEAF};

/// A split: `rank of x[feature] ≤ rank` goes to `next`, otherwise to `next + 1`. A leaf has
/// `rank == u16::MAX` (no rank is that large) and `next` pointing at itself, so a walk that
/// reached it stays.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct RankNode {
    feature: u16,
    rank: u16,
    next: u32,
}

/// Flattened trees with ranked thresholds (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ranked {
    base: Vec<f64>,
    n_outputs: usize,
    /// Each feature's distinct split thresholds, ascending.
    cuts: Vec<Vec<f64>>,
    /// The features some split uses.
    used: Vec<usize>,
    nodes: Vec<RankNode>,
    /// Root and depth of each tree.
    trees: Vec<(u32, u32)>,
    /// Of each node that is a leaf: where its outputs start in `values`.
    leaf_at: Vec<u32>,
    values: Vec<f64>,
}

impl Ranked {
    /// The ranked form of flattened trees, unless a feature index or a feature's count of
    /// thresholds does not fit 16 bits, or a threshold is NaN.
    pub(super) fn new(
        base: &[f64],
        flat: &[FlatNode],
        roots: &[u32],
        depths: &[u32],
        values: &[f64],
    ) -> Option<Ranked> {
        let splits: Vec<super::Node> = flat
            .iter()
            .filter(|n| n.feature != LEAF)
            .map(|n| super::Node {
                feature: n.feature,
                threshold: n.threshold,
                left: 0,
                right: 0,
            })
            .collect();
        let cuts = super::thresholds(splits.iter())?;
        if cuts.len() > usize::from(u16::MAX) + 1
            || cuts.iter().any(|c| c.len() >= usize::from(u16::MAX))
        {
            return None;
        }
        let mut nodes = Vec::with_capacity(flat.len());
        let mut leaf_at = vec![0u32; flat.len()];
        for (i, n) in flat.iter().enumerate() {
            if n.feature == LEAF {
                leaf_at[i] = n.next;
                nodes.push(RankNode {
                    feature: 0,
                    rank: u16::MAX,
                    next: i as u32,
                });
            } else {
                let c = &cuts[n.feature as usize];
                let rank = c.partition_point(|t| *t < n.threshold);
                nodes.push(RankNode {
                    feature: n.feature as u16,
                    rank: rank as u16,
                    next: n.next,
                });
            }
        }
        let used = (0..cuts.len()).filter(|&f| !cuts[f].is_empty()).collect();
        Some(Ranked {
            base: base.to_vec(),
            n_outputs: base.len(),
            cuts,
            used,
            nodes,
            trees: roots.iter().copied().zip(depths.iter().copied()).collect(),
            leaf_at,
            values: values.to_vec(),
        })
    }

    pub(super) fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Raw outputs of the `n` rows of `x` (`nf` features each) into `out`.
    pub(super) fn predict(&self, x: &[f64], nf: usize, n: usize, out: &mut [f64]) {
        let k = self.n_outputs;
        for o in out.chunks_exact_mut(k).take(n) {
            o.copy_from_slice(&self.base);
        }
        let ranks = self.rank_rows(x, n, nf);
        let (nodes, values, leaf_at) = (&self.nodes, &self.values, &self.leaf_at);
        for start in (0..n).step_by(BLOCK_ROWS) {
            let end = (start + BLOCK_ROWS).min(n);
            let full = start + (end - start) / LANES * LANES;
            for &(root, depth) in &self.trees {
                for r in (start..full).step_by(LANES) {
                    let leaves = walk_lanes(nodes, root, depth, &ranks, nf, r);
                    for (lane, &leaf) in leaves.iter().enumerate() {
                        add_leaf(out, values, leaf_at, leaf, r + lane, k);
                    }
                }
            }
            // Fewer rows than lanes (a one-row request): eight trees side by side.
            for row in full..end {
                let ranks = &ranks[row * nf..(row + 1) * nf];
                for chunk in self.trees.chunks(LANES) {
                    let leaves = walk_trees(nodes, chunk, ranks);
                    for &leaf in &leaves[..chunk.len()] {
                        add_leaf(out, values, leaf_at, leaf, row, k);
                    }
                }
            }
        }
    }

    /// The rank of each used feature of each row among that feature's thresholds (NaN ranks
    /// above them all: it goes right at every split, as in `Tree::leaf_offset`).
    fn rank_rows(&self, x: &[f64], n: usize, nf: usize) -> Vec<u16> {
        let mut ranks = vec![0u16; n * nf];
        for (row, r) in x
            .chunks_exact(nf.max(1))
            .zip(ranks.chunks_exact_mut(nf.max(1)))
        {
            for &f in &self.used {
                let c = &self.cuts[f];
                let v = row[f];
                r[f] = if v.is_nan() {
                    c.len()
                } else {
                    c.partition_point(|t| *t < v)
                } as u16;
            }
        }
        ranks
    }
}

/// The leaves `LANES` rows starting at `row` reach in the tree at `root`, walked side by side.
#[inline]
fn walk_lanes(
    nodes: &[RankNode],
    root: u32,
    depth: u32,
    ranks: &[u16],
    nf: usize,
    row: usize,
) -> [u32; LANES] {
    let rows = &ranks[row * nf..(row + LANES) * nf];
    let mut at = [root; LANES];
    for _ in 0..depth {
        for (lane, i) in at.iter_mut().enumerate() {
            let node = nodes[*i as usize];
            let rank = rows[lane * nf + node.feature as usize];
            *i = node.next + u32::from(rank > node.rank);
        }
    }
    at
}

/// The leaves one row (its `ranks`) reaches in up to `LANES` trees, walked side by side (lanes
/// beyond the trees given walk the first one again, unused).
#[inline]
fn walk_trees(nodes: &[RankNode], trees: &[(u32, u32)], ranks: &[u16]) -> [u32; LANES] {
    let first = trees.first().map_or(0, |t| t.0);
    let mut at = [first; LANES];
    for (a, t) in at.iter_mut().zip(trees) {
        *a = t.0;
    }
    let depth = trees.iter().map(|t| t.1).max().unwrap_or(0);
    for _ in 0..depth {
        for i in at.iter_mut() {
            let node = nodes[*i as usize];
            *i = node.next + u32::from(ranks[node.feature as usize] > node.rank);
        }
    }
    at
}

#[inline]
fn add_leaf(out: &mut [f64], values: &[f64], leaf_at: &[u32], leaf: u32, row: usize, k: usize) {
    let at = leaf_at[leaf as usize] as usize;
    for (o, v) in out[row * k..(row + 1) * k]
        .iter_mut()
        .zip(&values[at..at + k])
    {
        *o += v;
    }
}
