//! Histogram CART: features pre-binned to ≤ 256 bins (as LightGBM does), trees grown best-first on
//! per-bin gradient / hessian sums, with the histogram-subtraction trick (build the smaller child,
//! subtract from the parent for the larger one).
//!
//! One builder serves every learner. Each row carries `k` gradient / hessian pairs and a leaf
//! predicts `−G/(H+λ)` per output:
//! - regression tree: `g = −y, h = 1, λ = 0` → leaf = mean, gain = SSE reduction;
//! - classification tree: `g = −onehot(y), h = 1, λ = 0` → leaf = class frequencies, gain = Gini
//!   reduction (SSE on one-hot indicators is `n × Gini`);
//! - boosting: the loss's gradient and hessian, shrunk by the learning rate.
//!
//! Sums run in row order, ties keep the first feature / bin / leaf: a tree is a pure function of
//! its inputs and its RNG. Threads split the work by feature (each feature's histogram is summed by
//! one thread, in row order), so the thread count never changes a result.
//!
//! Speed: binned features are `u8` columns (one cache line holds 64 rows of a feature); before the
//! histograms of a node are built, the node's gradients are gathered once into a contiguous buffer
//! ("ordered gradients", as LightGBM does), so each feature's pass reads one byte column and one
//! sequential buffer.

use ndarray::ArrayView2;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use super::par;
use super::sort::sort_total;

/// Features cut into bins: `bins[f][row]` and the edges that define them. Row `r` is in bin
/// `b` of feature `f` iff `edges[f][b-1] < x ≤ edges[f][b]`, so "bin ≤ b" is "x ≤ edges[f][b]":
/// the tree stores real thresholds and predicts from raw values.
#[derive(Debug, Clone)]
pub struct BinnedData {
    pub n_rows: usize,
    pub bins: Vec<Vec<u8>>,
    pub edges: Vec<Vec<f64>>,
    offsets: Vec<usize>,
    total_bins: usize,
}

impl BinnedData {
    /// Bin every column of `x` (rows × features). With at most `max_bins` distinct values a
    /// feature gets one bin per value (edges at midpoints); otherwise edges at quantiles.
    pub fn new(x: ArrayView2<f64>, max_bins: usize, threads: usize) -> BinnedData {
        BinnedData::with_edges_from(x, max_bins, threads, None)
    }

    /// [`BinnedData::new`] with the edges cut from the values of `edge_rows` only (every row
    /// is binned): a cross-validation fold's held-out rows then shape none of its bins.
    pub fn with_edges_from(
        x: ArrayView2<f64>,
        max_bins: usize,
        threads: usize,
        edge_rows: Option<&[u32]>,
    ) -> BinnedData {
        let max_bins = max_bins.clamp(2, 256);
        let (n, p) = x.dim();
        let threads = if n * p < par::MIN_PARALLEL_WORK {
            1
        } else {
            threads
        };
        let per_feature = par::map(p, threads, |f| {
            let col = x.column(f);
            let mut sorted: Vec<f64> = match edge_rows {
                Some(rows) => rows.iter().map(|&r| col[r as usize]).collect(),
                None => col.to_vec(),
            };
            sorted.retain(|v| !v.is_nan());
            sort_total(&mut sorted);
            let e = make_edges(&sorted, max_bins);
            let b: Vec<u8> = col
                .iter()
                .map(|&v| e.partition_point(|&t| t < v) as u8)
                .collect();
            (e, b)
        });
        let mut bins = Vec::with_capacity(p);
        let mut edges = Vec::with_capacity(p);
        let mut offsets = Vec::with_capacity(p);
        let mut total = 0;
        for (e, b) in per_feature {
            // Every feature gets a full 256-bin stretch: a u8 bin then indexes it unchecked-free.
            offsets.push(total);
            total += 256;
            edges.push(e);
            bins.push(b);
        }
        BinnedData {
            n_rows: n,
            bins,
            edges,
            offsets,
            total_bins: total,
        }
    }

    pub fn n_features(&self) -> usize {
        self.bins.len()
    }

    fn n_bins(&self, f: usize) -> usize {
        self.edges[f].len() + 1
    }
}

fn make_edges(sorted: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct: Vec<f64> = sorted.to_vec();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct
            .windows(2)
            .map(|w| w[0] + (w[1] - w[0]) / 2.0)
            .collect();
    }
    let n = sorted.len();
    let mut e: Vec<f64> = (1..max_bins).map(|k| sorted[k * n / max_bins]).collect();
    e.dedup();
    // An edge at the maximum would leave an empty last bin.
    if let Some(&last) = sorted.last() {
        e.retain(|&t| t < last);
    }
    e
}

/// A fitted tree: nodes in a flat vector, leaf values (k per leaf) in another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub n_outputs: usize,
    pub nodes: Vec<Node>,
    pub values: Vec<f64>,
}

/// A split (`x[feature] ≤ threshold` goes left) or, with `feature == LEAF`, a leaf whose values
/// start at `values[left]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub threshold: f64,
    pub left: u32,
    pub right: u32,
}

const LEAF: u32 = u32::MAX;

/// Nodes with fewer rows than this find their split from their rows, not from a histogram.
const SMALL_NODE: usize = 256;

impl Tree {
    /// Offset of the leaf values for row `x`.
    #[inline]
    pub fn leaf_offset(&self, x: &[f64]) -> usize {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.feature == LEAF {
                return n.left as usize;
            }
            // NaN (never produced by the preprocessing) goes right.
            i = if x[n.feature as usize] <= n.threshold {
                n.left as usize
            } else {
                n.right as usize
            };
        }
    }

    /// Add this tree's `k` outputs for row `x` to `out`.
    #[inline]
    pub fn add_to(&self, x: &[f64], out: &mut [f64]) {
        let o = self.leaf_offset(x);
        for (acc, v) in out.iter_mut().zip(&self.values[o..o + self.n_outputs]) {
            *acc += v;
        }
    }

    pub fn n_leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.feature == LEAF).count()
    }

    pub fn depth(&self) -> usize {
        fn d(t: &Tree, i: usize) -> usize {
            let n = &t.nodes[i];
            if n.feature == LEAF {
                0
            } else {
                1 + d(t, n.left as usize).max(d(t, n.right as usize))
            }
        }
        d(self, 0)
    }
}

/// Growth limits and regularization.
#[derive(Debug, Clone)]
pub struct GrowParams {
    pub max_depth: usize,
    pub max_leaves: usize,
    pub min_samples_leaf: usize,
    pub lambda: f64,
    pub min_child_weight: f64,
    /// Multiplies every leaf value (the boosting learning rate; 1 otherwise).
    pub shrinkage: f64,
    /// Features this tree may use (sorted); `None` = all.
    pub features: Option<Vec<usize>>,
    /// Fraction of the tree's features drawn at each split (random forest); `None` = all.
    pub node_colsample: Option<f64>,
    /// Threads for histogram building (results do not depend on it).
    pub threads: usize,
}

/// A leaf's stretch of rows partitioned by leaf: (offset of the leaf's values, start, end).
pub type LeafStretch = (usize, usize, usize);

/// A grown tree with the bin of each split, so that training rows can be routed on their bins.
pub struct Grown {
    pub tree: Tree,
    /// `split_bins[node]`: rows with `bin ≤ split_bins[node]` go left (unused for leaves).
    pub split_bins: Vec<u8>,
    /// Per leaf: (offset of its values, start, end) — the grown rows `rows[start..end]` it holds
    /// (`grow` leaves its `rows` argument partitioned by leaf).
    pub leaves: Vec<LeafStretch>,
}

impl Grown {
    /// Leaf value offset for training row `r` of `data` (the same leaf its raw values reach): the
    /// walk [`Grown::route`] is checked against.
    #[cfg(test)]
    pub fn leaf_offset_binned(&self, data: &BinnedData, r: usize) -> usize {
        let nodes = &self.tree.nodes;
        let mut i = 0usize;
        loop {
            let n = &nodes[i];
            if n.feature == LEAF {
                return n.left as usize;
            }
            // `grow` puts a right child right after its left one: no branch on the row's side.
            i = n.left as usize + (data.bins[n.feature as usize][r] > self.split_bins[i]) as usize;
        }
    }

    /// Partition `rows` (any rows of `data`, not only the grown ones) by the leaf each reaches,
    /// as [`Grown::leaves`] holds the grown rows: (offset of the leaf's values, start, end), each
    /// stretch in its input order, empty leaves left out. One stable split of each internal
    /// node's rows on one feature's bins, branch-free: a row costs a few cycles per level, where
    /// [`Grown::leaf_offset_binned`] waits on a chain of dependent loads and a data-dependent
    /// exit. Same leaves as that.
    pub fn route(
        &self,
        data: &BinnedData,
        rows: &mut [u32],
        scratch: &mut Vec<u32>,
        threads: usize,
    ) -> Vec<LeafStretch> {
        let nodes = &self.tree.nodes;
        let mut leaves = Vec::new();
        let mut todo = vec![(0usize, 0usize, rows.len())];
        while let Some((i, start, end)) = todo.pop() {
            if start == end {
                continue;
            }
            let n = &nodes[i];
            if n.feature == LEAF {
                leaves.push((n.left as usize, start, end));
                continue;
            }
            let (col, t) = (&data.bins[n.feature as usize], self.split_bins[i]);
            let w = par::split_stable(&mut rows[start..end], scratch, threads, |_, r| {
                col[r as usize] <= t
            });
            todo.push((n.left as usize + 1, start + w, end));
            todo.push((n.left as usize, start, start + w));
        }
        leaves
    }
}

struct SplitChoice {
    gain: f64,
    feature: usize,
    bin: usize,
    left_sums: Vec<f64>,
}

struct Cand {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    hist: Vec<f64>,
    sums: Vec<f64>,
    best: Option<SplitChoice>,
}

/// Grow one tree on the rows listed in `rows` (duplicates allowed: a bootstrap sample), with
/// gradients and hessians interleaved row by row in `gh`: `k` gradients then `k` hessians per row.
pub fn grow(
    data: &BinnedData,
    gh: &[f64],
    k: usize,
    rows: &mut [u32],
    p: &GrowParams,
    rng: &mut ChaCha12Rng,
) -> Grown {
    let s = 2 * k + 1;
    let feats: Vec<usize> = p
        .features
        .clone()
        .unwrap_or_else(|| (0..data.n_features()).collect());
    // One pass over the hessians saves reading them again for every histogram: first over all
    // of them in memory order (boosting's squared loss passes this at memory speed), then, where
    // that fails on a row outside the sample, over the grown rows.
    let all_unit = gh
        .chunks_exact(2 * k)
        .all(|c| c[k..].iter().all(|&v| v == 1.0));
    let unit_hessian = all_unit
        || rows.iter().all(|&r| {
            let r = r as usize;
            gh.get(r * 2 * k + k..(r + 1) * 2 * k)
                .is_some_and(|h| h.iter().all(|&v| v == 1.0))
        });
    let ctx = Ctx {
        data,
        gh,
        k,
        s,
        feats: &feats,
        p,
        unit_hessian,
    };
    let mut nodes = vec![Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
    }];
    let mut split_bins = vec![0u8];
    let mut values = Vec::new();
    let mut root_hist = vec![0.0; data.total_bins * s];
    let root_sums = match ctx.build_hist(rows, &mut root_hist) {
        Some(sums) => sums,
        None => ctx.sums_of(rows),
    };
    let mut pool: Vec<Vec<f64>> = Vec::new();
    let root = ctx.candidate(
        0,
        0,
        rows.len(),
        0,
        root_hist,
        root_sums,
        rows,
        rng,
        &mut pool,
    );
    // Every node made so far, by creation order; the splittable ones also in a heap by gain.
    let mut cands: Vec<Option<Cand>> = Vec::new();
    let mut open = std::collections::BinaryHeap::new();
    push_cand(&mut cands, &mut open, root);
    let mut n_leaves = 1;
    let mut scratch: Vec<u32> = Vec::with_capacity(rows.len());
    while n_leaves < p.max_leaves {
        let Some(top) = open.pop() else { break };
        let Some(cand) = cands.get_mut(top.seq).and_then(Option::take) else {
            break;
        };
        let Some(best) = cand.best else { break };
        // Partition the node's rows, stable, left = bin ≤ best.bin.
        let col = &data.bins[best.feature];
        let seg = &mut rows[cand.start..cand.end];
        let split_bin = best.bin as u8;
        let w = par::split_stable(seg, &mut scratch, p.threads, |_, r| {
            col[r as usize] <= split_bin
        });
        let mid = cand.start + w;
        let left_id = nodes.len();
        nodes.push(nodes[0]);
        nodes.push(nodes[0]);
        split_bins.extend([0, 0]);
        split_bins[cand.node] = best.bin as u8;
        nodes[cand.node] = Node {
            feature: best.feature as u32,
            threshold: data.edges[best.feature][best.bin],
            left: left_id as u32,
            right: left_id as u32 + 1,
        };
        let right_sums: Vec<f64> = cand
            .sums
            .iter()
            .zip(&best.left_sums)
            .map(|(a, b)| a - b)
            .collect();
        // Smaller child by a scan, larger one by subtraction from the parent histogram; below
        // SMALL_NODE rows on both sides, no histograms at all (splits come from the rows).
        // Children that can never split (at the depth limit, or too few rows) need no histogram:
        // at depth 4 that is a fifth of a round's histogram work.
        let left_small = w <= cand.end - mid;
        let larger = w.max(cand.end - mid);
        let splittable = |n: usize| {
            cand.depth + 1 < p.max_depth && n as f64 >= 2.0 * p.min_samples_leaf.max(1) as f64
        };
        let wanted = splittable(w) || splittable(cand.end - mid);
        let (lh, rh) = if larger < SMALL_NODE || cand.hist.is_empty() || !wanted {
            if !cand.hist.is_empty() {
                pool.push(cand.hist);
            }
            (Vec::new(), Vec::new())
        } else {
            let mut parent = cand.hist;
            // A histogram buffer from a finished node, zeroed where this tree's features live.
            let mut small = match pool.pop() {
                Some(mut v) => {
                    for f in &feats {
                        let lo = data.offsets[*f] * s;
                        v[lo..lo + data.n_bins(*f) * s].fill(0.0);
                    }
                    v
                }
                None => vec![0.0; parent.len()],
            };
            if left_small {
                ctx.build_hist(&rows[cand.start..mid], &mut small);
            } else {
                ctx.build_hist(&rows[mid..cand.end], &mut small);
            }
            for f in &feats {
                let lo = data.offsets[*f] * s;
                let hi = lo + data.n_bins(*f) * s;
                for (a, b) in parent[lo..hi].iter_mut().zip(&small[lo..hi]) {
                    *a -= b;
                }
            }
            if left_small {
                (small, parent)
            } else {
                (parent, small)
            }
        };
        let d = cand.depth + 1;
        let (lrows, rrows) = rows[cand.start..cand.end].split_at(mid - cand.start);
        let l = ctx.candidate(
            left_id,
            cand.start,
            mid,
            d,
            lh,
            best.left_sums,
            lrows,
            rng,
            &mut pool,
        );
        let r = ctx.candidate(
            left_id + 1,
            mid,
            cand.end,
            d,
            rh,
            right_sums,
            rrows,
            rng,
            &mut pool,
        );
        push_cand(&mut cands, &mut open, l);
        push_cand(&mut cands, &mut open, r);
        n_leaves += 1;
    }
    let mut leaves: Vec<Cand> = cands.into_iter().flatten().collect();
    leaves.sort_by_key(|c| c.node);
    let mut leaf_rows = Vec::with_capacity(leaves.len());
    for c in leaves {
        let off = values.len();
        leaf_rows.push((off, c.start, c.end));
        for j in 0..k {
            let v = -c.sums[j] / (c.sums[k + j] + p.lambda);
            values.push(if v.is_finite() { v * p.shrinkage } else { 0.0 });
        }
        nodes[c.node] = Node {
            feature: LEAF,
            threshold: 0.0,
            left: off as u32,
            right: 0,
        };
    }
    Grown {
        tree: Tree {
            n_outputs: k,
            nodes,
            values,
        },
        split_bins,
        leaves: leaf_rows,
    }
}

/// A splittable node in the best-first queue: the largest gain first, and among equal gains the
/// node made first (a pure function of the data, as a linear scan in creation order would give).
struct Open {
    gain: f64,
    seq: usize,
}

impl PartialEq for Open {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Open {}

impl PartialOrd for Open {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Open {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Record a new node; a splittable one also enters the queue. A fully grown tree has thousands
/// of open nodes: a heap keeps picking the next one O(log n) where a scan was O(n).
fn push_cand(
    cands: &mut Vec<Option<Cand>>,
    open: &mut std::collections::BinaryHeap<Open>,
    c: Cand,
) {
    if let Some(b) = &c.best {
        open.push(Open {
            gain: b.gain,
            seq: cands.len(),
        });
    }
    cands.push(Some(c));
}

struct Ctx<'a> {
    data: &'a BinnedData,
    gh: &'a [f64],
    k: usize,
    s: usize,
    feats: &'a [usize],
    p: &'a GrowParams,
    /// Every hessian of the grown rows is 1 (squared loss, plain trees): histograms skip them.
    unit_hessian: bool,
}

impl Ctx<'_> {
    /// Per-bin sums of the rows' gradients, hessians and counts for every feature of the tree.
    /// With one output, also the rows' totals (what [`Ctx::sums_of`] gives, summed in the same
    /// order on the way).
    fn build_hist(&self, rows: &[u32], hist: &mut [f64]) -> Option<Vec<f64>> {
        let (k, s) = (self.k, self.s);
        // One disjoint histogram slice per feature (features are sorted, slices in order).
        let mut slices: Vec<(usize, &mut [f64])> = Vec::with_capacity(self.feats.len());
        let mut rest: &mut [f64] = hist;
        let mut pos = 0;
        for &f in self.feats {
            let lo = self.data.offsets[f] * s;
            let hi = lo + 256 * s;
            let tail = std::mem::take(&mut rest).split_at_mut(lo - pos).1;
            let (mine, tail) = tail.split_at_mut(hi - lo);
            slices.push((f, mine));
            rest = tail;
            pos = hi;
        }
        let threads = if rows.len() * self.feats.len() < par::MIN_PARALLEL_WORK {
            1
        } else {
            self.p.threads
        };
        if k == 1 {
            // Features in groups of up to four, each group one pass over the rows: a row's
            // gradient is read once for the group, and four independent histograms give the
            // CPU four chains of additions to overlap. Each feature's sums still run in row
            // order, so grouping changes no result.
            let per = GROUP.min(self.feats.len().div_ceil(threads.max(1))).max(1);
            let n_groups = self.feats.len().div_ceil(per);
            let mut totals = vec![[0.0; 2]; n_groups];
            let mut groups: Vec<HistGroup> = Vec::new();
            let mut it = slices.into_iter().peekable();
            let mut slots = totals.iter_mut();
            while let (true, Some(slot)) = (it.peek().is_some(), slots.next()) {
                groups.push((it.by_ref().take(per).collect(), slot));
            }
            par::for_each(groups, threads, |(g, slot)| {
                *slot = self.fill_group(rows, g)
            });
            let &[g, h] = totals.first()?;
            let c = rows.len() as f64;
            return Some(vec![g, if self.unit_hessian { c } else { h }, c]);
        }
        // Ordered gradients: the node's (g, h) pairs contiguous, in row order.
        let mut gh = Vec::with_capacity(rows.len() * 2 * k);
        for &r in rows {
            let r = r as usize;
            gh.extend_from_slice(&self.gh[r * 2 * k..(r + 1) * 2 * k]);
        }
        let gh = &gh[..];
        let unit = self.unit_hessian;
        par::for_each(slices, threads, |(f, h)| {
            let col: &[u8] = &self.data.bins[f];
            for (&r, v) in rows.iter().zip(gh.chunks_exact(2 * k)) {
                let o = col[r as usize] as usize * s;
                for (a, b) in h[o..o + k].iter_mut().zip(&v[..k]) {
                    *a += b;
                }
                if !unit {
                    for (a, b) in h[o + k..o + 2 * k].iter_mut().zip(&v[k..]) {
                        *a += b;
                    }
                }
                h[o + 2 * k] += 1.0;
            }
            if unit {
                fill_unit_hessians(h, k);
            }
        });
        None
    }

    /// One group of features (one output): `[g, h, count]` per bin, summed in row order; returns
    /// the rows' gradient and hessian totals (the hessians' only without unit hessians).
    fn fill_group(&self, rows: &[u32], group: Vec<(usize, &mut [f64])>) -> [f64; 2] {
        let mut cols: Vec<&[u8]> = Vec::with_capacity(group.len());
        let mut hists: Vec<&mut [[f64; 3]; 256]> = Vec::with_capacity(group.len());
        for (f, h) in group {
            let (bins, _) = h.as_chunks_mut::<3>();
            let Ok(bins) = <&mut [[f64; 3]; 256]>::try_from(bins) else {
                return [0.0; 2];
            };
            cols.push(&self.data.bins[f]);
            hists.push(bins);
        }
        macro_rules! with_width {
            ($w:literal) => {{
                let (Ok(c), Ok(h)) = (
                    <[&[u8]; $w]>::try_from(cols),
                    <[&mut [[f64; 3]; 256]; $w]>::try_from(hists),
                ) else {
                    return [0.0; 2];
                };
                if self.unit_hessian {
                    fill_rows::<$w, true>(rows, self.gh, c, h)
                } else {
                    fill_rows::<$w, false>(rows, self.gh, c, h)
                }
            }};
        }
        match cols.len() {
            1 => with_width!(1),
            2 => with_width!(2),
            3 => with_width!(3),
            _ => with_width!(4),
        }
    }

    fn sums_of(&self, rows: &[u32]) -> Vec<f64> {
        let k = self.k;
        if k == 1 {
            // Scalars, not a vector the compiler must store back on every row.
            let (mut g, mut h, mut c) = (0.0, 0.0, 0.0);
            for &r in rows {
                let r = r as usize;
                g += self.gh[2 * r];
                h += self.gh[2 * r + 1];
                c += 1.0;
            }
            return vec![g, h, c];
        }
        let mut sums = vec![0.0; self.s];
        for &r in rows {
            let r = r as usize;
            for (a, b) in sums.iter_mut().zip(&self.gh[r * 2 * k..(r + 1) * 2 * k]) {
                *a += b;
            }
            sums[2 * k] += 1.0;
        }
        sums
    }

    fn score(&self, sums: &[f64]) -> f64 {
        let k = self.k;
        (0..k)
            .map(|j| sums[j] * sums[j] / (sums[k + j] + self.p.lambda))
            .sum()
    }

    #[allow(clippy::too_many_arguments)]
    fn candidate(
        &self,
        node: usize,
        start: usize,
        end: usize,
        depth: usize,
        hist: Vec<f64>,
        sums: Vec<f64>,
        rows: &[u32],
        rng: &mut ChaCha12Rng,
        pool: &mut Vec<Vec<f64>>,
    ) -> Cand {
        let count = (end - start) as f64;
        let min_leaf = self.p.min_samples_leaf.max(1) as f64;
        let best = if depth < self.p.max_depth && count >= 2.0 * min_leaf {
            match (hist.is_empty(), self.k) {
                (true, 1) => self.best_split_rows_one(rows, &sums, rng),
                (true, _) => self.best_split_rows(rows, &sums, rng),
                (false, 1) => self.best_split_one(&hist, &sums, rng),
                (false, _) => self.best_split(&hist, &sums, rng),
            }
        } else {
            None
        };
        Cand {
            node,
            start,
            end,
            depth,
            hist: if best.is_some() || hist.is_empty() {
                hist
            } else {
                pool.push(hist);
                Vec::new()
            },
            sums,
            best,
        }
    }

    /// The features a split may use: all of the tree's, or a random fraction (forest).
    fn chosen(&self, rng: &mut ChaCha12Rng) -> Vec<usize> {
        match self.p.node_colsample {
            Some(frac) if frac < 1.0 => {
                let m =
                    ((self.feats.len() as f64 * frac).round() as usize).clamp(1, self.feats.len());
                let mut idx = rand::seq::index::sample(rng, self.feats.len(), m).into_vec();
                idx.sort_unstable();
                idx.into_iter().map(|i| self.feats[i]).collect()
            }
            _ => self.feats.to_vec(),
        }
    }

    /// Gain of putting `left` (sums of a prefix of bins) on the left, or `None` when the split
    /// breaks a limit; `Err(())` when no later bin can satisfy `min_samples_leaf` on the right.
    #[inline]
    #[allow(clippy::result_unit_err)]
    fn gain(
        &self,
        left: &[f64],
        right: &mut [f64],
        sums: &[f64],
        parent: f64,
    ) -> Result<Option<f64>, ()> {
        let k = self.k;
        let min_leaf = self.p.min_samples_leaf.max(1) as f64;
        if left[2 * k] < min_leaf {
            return Ok(None);
        }
        if sums[2 * k] - left[2 * k] < min_leaf {
            return Err(());
        }
        for (r, (a, b)) in right.iter_mut().zip(sums.iter().zip(left)) {
            *r = a - b;
        }
        let hl: f64 = left[k..2 * k].iter().sum();
        let hr: f64 = right[k..2 * k].iter().sum();
        if hl < self.p.min_child_weight || hr < self.p.min_child_weight {
            return Ok(None);
        }
        let gain = self.score(left) + self.score(right) - parent;
        Ok((gain > 1e-12 * parent.abs().max(1e-300)).then_some(gain))
    }

    /// [`Ctx::best_split`] for one output, its sums in scalars (the same arithmetic in the same
    /// order as [`Ctx::gain`], without a vector stored back at every bin).
    fn best_split_one(
        &self,
        hist: &[f64],
        sums: &[f64],
        rng: &mut ChaCha12Rng,
    ) -> Option<SplitChoice> {
        let one = One::new(self, sums);
        let mut best: Option<(f64, usize, usize)> = None;
        for f in self.chosen(rng) {
            let nb = self.data.n_bins(f);
            let base = self.data.offsets[f] * 3;
            let Some(bins) = hist.get(base..base + nb * 3) else {
                continue;
            };
            let (mut lg, mut lh, mut lc) = (0.0, 0.0, 0.0);
            for (b, h) in bins.chunks_exact(3).take(nb - 1).enumerate() {
                lg += h[0];
                lh += h[1];
                lc += h[2];
                match one.gain(lg, lh, lc) {
                    Err(()) => break,
                    Ok(Some(gain)) if best.is_none_or(|(g, _, _)| gain > g) => {
                        best = Some((gain, f, b))
                    }
                    Ok(_) => {}
                }
            }
        }
        let (gain, feature, bin) = best?;
        let base = self.data.offsets[feature] * 3;
        let (mut lg, mut lh, mut lc) = (0.0, 0.0, 0.0);
        for h in hist[base..base + (bin + 1) * 3].chunks_exact(3) {
            lg += h[0];
            lh += h[1];
            lc += h[2];
        }
        Some(SplitChoice {
            gain,
            feature,
            bin,
            left_sums: vec![lg, lh, lc],
        })
    }

    /// [`Ctx::best_split_rows`] for one output: sums in scalars, and the rows ordered by
    /// (bin, row) as one integer key each.
    fn best_split_rows_one(
        &self,
        rows: &[u32],
        sums: &[f64],
        rng: &mut ChaCha12Rng,
    ) -> Option<SplitChoice> {
        let one = One::new(self, sums);
        let (pairs, _) = self.gh.as_chunks::<2>();
        let mut best: Option<(f64, usize, usize, [f64; 3])> = None;
        let mut keys: Vec<u64> = Vec::with_capacity(rows.len());
        for f in self.chosen(rng) {
            let col = &self.data.bins[f];
            keys.clear();
            keys.extend(rows.iter().map(|&r| {
                (u64::from(col.get(r as usize).copied().unwrap_or(0)) << 32) | u64::from(r)
            }));
            keys.sort_unstable();
            let (mut lg, mut lh, mut lc) = (0.0, 0.0, 0.0);
            for (i, &key) in keys.iter().enumerate() {
                let Some(&[g, h]) = pairs.get(key as u32 as usize) else {
                    continue;
                };
                lg += g;
                lh += h;
                lc += 1.0;
                let b = key >> 32;
                match keys.get(i + 1) {
                    Some(&next) if next >> 32 != b => {}
                    _ => continue,
                }
                match one.gain(lg, lh, lc) {
                    Err(()) => break,
                    Ok(Some(gain)) if best.as_ref().is_none_or(|(g, ..)| gain > *g) => {
                        best = Some((gain, f, b as usize, [lg, lh, lc]))
                    }
                    Ok(_) => {}
                }
            }
        }
        let (gain, feature, bin, left) = best?;
        Some(SplitChoice {
            gain,
            feature,
            bin,
            left_sums: left.to_vec(),
        })
    }

    /// Best split from the node's histogram.
    fn best_split(&self, hist: &[f64], sums: &[f64], rng: &mut ChaCha12Rng) -> Option<SplitChoice> {
        let s = self.s;
        let parent = self.score(sums);
        let mut best: Option<(f64, usize, usize)> = None;
        let mut left = vec![0.0; s];
        let mut right = vec![0.0; s];
        for f in self.chosen(rng) {
            let nb = self.data.n_bins(f);
            let base = self.data.offsets[f] * s;
            left.fill(0.0);
            for b in 0..nb - 1 {
                let h = &hist[base + b * s..base + (b + 1) * s];
                for (a, v) in left.iter_mut().zip(h) {
                    *a += v;
                }
                match self.gain(&left, &mut right, sums, parent) {
                    Err(()) => break,
                    Ok(Some(gain)) if best.is_none_or(|(g, _, _)| gain > g) => {
                        best = Some((gain, f, b))
                    }
                    Ok(_) => {}
                }
            }
        }
        let (gain, feature, bin) = best?;
        let base = self.data.offsets[feature] * s;
        let mut left_sums = vec![0.0; s];
        for b in 0..=bin {
            for (a, v) in left_sums
                .iter_mut()
                .zip(&hist[base + b * s..base + (b + 1) * s])
            {
                *a += v;
            }
        }
        Some(SplitChoice {
            gain,
            feature,
            bin,
            left_sums,
        })
    }

    /// Best split of a small node straight from its rows, sorted by bin per feature: O(m log m)
    /// per feature instead of O(bins), which is what makes fully grown trees cheap.
    fn best_split_rows(
        &self,
        rows: &[u32],
        sums: &[f64],
        rng: &mut ChaCha12Rng,
    ) -> Option<SplitChoice> {
        let (k, s) = (self.k, self.s);
        let parent = self.score(sums);
        let mut best: Option<(f64, usize, usize, Vec<f64>)> = None;
        let mut left = vec![0.0; s];
        let mut right = vec![0.0; s];
        let mut order: Vec<(u8, u32)> = Vec::with_capacity(rows.len());
        for f in self.chosen(rng) {
            let col = &self.data.bins[f];
            order.clear();
            order.extend(rows.iter().map(|&r| (col[r as usize], r)));
            order.sort_unstable();
            left.fill(0.0);
            for (i, &(b, r)) in order.iter().enumerate() {
                let r = r as usize;
                for (a, v) in left.iter_mut().zip(&self.gh[r * 2 * k..(r + 1) * 2 * k]) {
                    *a += v;
                }
                left[2 * k] += 1.0;
                match order.get(i + 1) {
                    Some(&(next, _)) if next != b => {}
                    _ => continue,
                }
                match self.gain(&left, &mut right, sums, parent) {
                    Err(()) => break,
                    Ok(Some(gain)) if best.as_ref().is_none_or(|(g, ..)| gain > *g) => {
                        best = Some((gain, f, b as usize, left.clone()))
                    }
                    Ok(_) => {}
                }
            }
        }
        let (gain, feature, bin, left_sums) = best?;
        Some(SplitChoice {
            gain,
            feature,
            bin,
            left_sums,
        })
    }
}

/// Features' histogram slices filled in one pass over the rows, and where that pass's totals go.
type HistGroup<'a> = (Vec<(usize, &'a mut [f64])>, &'a mut [f64; 2]);

/// A node's totals and limits for splits of one output, in scalars.
struct One {
    sg: f64,
    sh: f64,
    sc: f64,
    parent: f64,
    lambda: f64,
    min_leaf: f64,
    min_child_weight: f64,
}

impl One {
    fn new(ctx: &Ctx, sums: &[f64]) -> One {
        One {
            sg: sums[0],
            sh: sums[1],
            sc: sums[2],
            parent: ctx.score(sums),
            lambda: ctx.p.lambda,
            min_leaf: ctx.p.min_samples_leaf.max(1) as f64,
            min_child_weight: ctx.p.min_child_weight,
        }
    }

    /// [`Ctx::gain`] of a left side with sums (g, h, count).
    #[inline]
    fn gain(&self, lg: f64, lh: f64, lc: f64) -> Result<Option<f64>, ()> {
        if lc < self.min_leaf {
            return Ok(None);
        }
        if self.sc - lc < self.min_leaf {
            return Err(());
        }
        let (rg, rh) = (self.sg - lg, self.sh - lh);
        if lh < self.min_child_weight || rh < self.min_child_weight {
            return Ok(None);
        }
        let gain = lg * lg / (lh + self.lambda) + rg * rg / (rh + self.lambda) - self.parent;
        Ok((gain > 1e-12 * self.parent.abs().max(1e-300)).then_some(gain))
    }
}

/// Features whose histograms one pass over a node's rows fills.
const GROUP: usize = 4;

/// Add every row of `rows` to the `W` histograms (one output: `gh` holds (g, h) per row) and
/// return the rows' (g, h) totals. With `UNIT` the hessians are all 1 and are not read: their
/// sums are the counts, set at the end (and the total returned for them is 0).
#[inline(always)]
fn fill_rows<const W: usize, const UNIT: bool>(
    rows: &[u32],
    gh: &[f64],
    cols: [&[u8]; W],
    mut hists: [&mut [[f64; 3]; 256]; W],
) -> [f64; 2] {
    let (pairs, _) = gh.as_chunks::<2>();
    let (mut sg, mut sh) = (0.0, 0.0);
    for &r in rows {
        let r = r as usize;
        let Some(&[g, h]) = pairs.get(r) else {
            continue;
        };
        sg += g;
        if !UNIT {
            sh += h;
        }
        for j in 0..W {
            let Some(&bin) = cols[j].get(r) else {
                continue;
            };
            let b = &mut hists[j][bin as usize];
            b[0] += g;
            if !UNIT {
                b[1] += h;
            }
            b[2] += 1.0;
        }
    }
    if UNIT {
        for h in hists.iter_mut() {
            for b in h.iter_mut() {
                b[1] = b[2];
            }
        }
    }
    [sg, sh]
}

/// With unit hessians a bin's hessian sums equal its count (a sum of ones, exact in f64): copy
/// the count into them (`k` outputs, bins of `2k + 1` sums).
fn fill_unit_hessians(h: &mut [f64], k: usize) {
    for b in h.chunks_exact_mut(2 * k + 1) {
        let c = b[2 * k];
        b[k..2 * k].fill(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;

    fn params(depth: usize) -> GrowParams {
        GrowParams {
            max_depth: depth,
            max_leaves: usize::MAX,
            min_samples_leaf: 1,
            lambda: 0.0,
            min_child_weight: 0.0,
            shrinkage: 1.0,
            features: None,
            node_colsample: None,
            threads: 1,
        }
    }

    #[test]
    fn edges_at_midpoints() {
        // distinct values 1, 2, 4 → edges 1.5, 3; bins 0, 1, 2.
        let x = array![[1.0], [2.0], [4.0], [2.0]];
        let d = BinnedData::new(x.view(), 256, 1);
        assert_eq!(d.edges[0], vec![1.5, 3.0]);
        assert_eq!(d.bins[0], vec![0, 1, 2, 1]);
    }

    #[test]
    fn regression_stump_by_hand() {
        // x = 1, 2, 3, 4 ; y = 1, 1, 5, 7. Best split x ≤ 2.5: left mean 1, right mean 6
        // (SSE 0 + 2 = 2, vs x ≤ 1.5: 0 + SSE(1,5,7) = 18.67; x ≤ 3.5: SSE(1,1,5) = 10.67).
        let x = array![[1.0], [2.0], [3.0], [4.0]];
        let y = [1.0, 1.0, 5.0, 7.0];
        let d = BinnedData::new(x.view(), 256, 1);
        let gh: Vec<f64> = y.iter().flat_map(|v| [-v, 1.0]).collect();
        let mut rows: Vec<u32> = (0..4).collect();
        let mut rng = ChaCha12Rng::seed_from_u64(0);
        let t = grow(&d, &gh, 1, &mut rows, &params(1), &mut rng).tree;
        assert_eq!(t.nodes[0].threshold, 2.5);
        let mut out = [0.0];
        t.add_to(&[2.0], &mut out);
        assert_eq!(out[0], 1.0);
        let mut out = [0.0];
        t.add_to(&[3.0], &mut out);
        assert_eq!(out[0], 6.0);
    }

    #[test]
    fn classification_leaf_holds_frequencies() {
        // Two classes, x ≤ 1.5 is pure class 0; the right side holds 1 × class 0, 2 × class 1.
        let x = array![[1.0], [1.0], [2.0], [2.0], [2.0]];
        let y = [0, 0, 0, 1, 1];
        let d = BinnedData::new(x.view(), 256, 1);
        let mut gh = vec![1.0; 20];
        for (i, &c) in y.iter().enumerate() {
            gh[i * 4] = 0.0;
            gh[i * 4 + 1] = 0.0;
            gh[i * 4 + c] = -1.0;
        }
        let mut rows: Vec<u32> = (0..5).collect();
        let t = grow(
            &d,
            &gh,
            2,
            &mut rows,
            &params(3),
            &mut ChaCha12Rng::seed_from_u64(0),
        )
        .tree;
        let mut out = [0.0, 0.0];
        t.add_to(&[2.0], &mut out);
        assert!((out[0] - 1.0 / 3.0).abs() < 1e-12 && (out[1] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.n_leaves(), 2);
    }

    #[test]
    fn unit_hessians_take_the_short_path_to_the_same_tree() {
        // Hessians of 2 instead of 1 (λ = 0) halve every gain and every leaf exactly, so the
        // general path must grow the same splits with leaves exactly half those of the unit
        // path; 3,000 rows and 6 features take the grouped histograms and the row scans too.
        let n = 3000;
        let x =
            ndarray::Array2::from_shape_fn((n, 6), |(i, j)| ((i * (j + 5) * 7919) % 211) as f64);
        let g: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
        let d = BinnedData::new(x.view(), 256, 1);
        let grow_with = |h: f64| {
            let gh: Vec<f64> = g.iter().flat_map(|&v| [v, h]).collect();
            let mut rows: Vec<u32> = (0..n as u32).collect();
            let mut p = params(8);
            p.min_samples_leaf = 5;
            grow(
                &d,
                &gh,
                1,
                &mut rows,
                &p,
                &mut ChaCha12Rng::seed_from_u64(0),
            )
            .tree
        };
        let (unit, two) = (grow_with(1.0), grow_with(2.0));
        assert!(unit.n_leaves() > 20, "{} leaves", unit.n_leaves());
        assert_eq!(unit.nodes, two.nodes);
        assert!(unit
            .values
            .iter()
            .zip(&two.values)
            .all(|(a, b)| *a == 2.0 * b));
    }

    #[test]
    fn routing_by_partition_reaches_each_rows_leaf() {
        // A tree grown on the even rows; the odd rows (and NaN cells, binned past the last edge)
        // are routed by stable splits, on one thread and on several (the root's 20,000 rows are
        // split in pieces then): each stretch must hold the
        // rows whose walk down the tree ends in that leaf, in their input order.
        let n = 40_000;
        let x = ndarray::Array2::from_shape_fn((n, 5), |(i, j)| {
            if (i + j) % 97 == 0 {
                f64::NAN
            } else {
                ((i * (j + 3) * 7919) % 331) as f64
            }
        });
        let gh: Vec<f64> = (0..n)
            .flat_map(|i| [((i * 37) % 101) as f64 - 50.0, 1.0])
            .collect();
        let d = BinnedData::new(x.view(), 256, 1);
        let mut grown_rows: Vec<u32> = (0..n as u32).step_by(2).collect();
        let mut p = params(7);
        p.min_samples_leaf = 20;
        let grown = grow(
            &d,
            &gh,
            1,
            &mut grown_rows,
            &p,
            &mut ChaCha12Rng::seed_from_u64(0),
        );
        assert!(
            grown.tree.n_leaves() > 10,
            "{} leaves",
            grown.tree.n_leaves()
        );
        let odd: Vec<u32> = (1..n as u32).step_by(2).collect();
        for threads in [1, 3] {
            let mut rows = odd.clone();
            let leaves = grown.route(&d, &mut rows, &mut Vec::new(), threads);
            assert_eq!(
                leaves.iter().map(|&(_, s, e)| e - s).sum::<usize>(),
                odd.len()
            );
            for &(o, start, end) in &leaves {
                let stretch = &rows[start..end];
                assert!(stretch.is_sorted());
                assert!(stretch
                    .iter()
                    .all(|&r| grown.leaf_offset_binned(&d, r as usize) == o));
            }
        }
    }

    #[test]
    fn limits_are_respected() {
        let n = 200;
        let x = ndarray::Array2::from_shape_fn((n, 2), |(i, j)| ((i * 7 + j * 13) % 50) as f64);
        let gh: Vec<f64> = (0..n).flat_map(|i| [-((i % 17) as f64), 1.0]).collect();
        let d = BinnedData::new(x.view(), 256, 1);
        let mut p = params(3);
        p.max_leaves = 5;
        p.min_samples_leaf = 10;
        let mut rows: Vec<u32> = (0..n as u32).collect();
        let t = grow(
            &d,
            &gh,
            1,
            &mut rows,
            &p,
            &mut ChaCha12Rng::seed_from_u64(0),
        )
        .tree;
        assert!(
            t.depth() <= 3 && t.n_leaves() <= 5,
            "{} {}",
            t.depth(),
            t.n_leaves()
        );
    }
}
