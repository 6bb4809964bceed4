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
//! its inputs and its RNG.

use ndarray::ArrayView2;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

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
    pub fn new(x: ArrayView2<f64>, max_bins: usize) -> BinnedData {
        let max_bins = max_bins.clamp(2, 256);
        let (n, p) = x.dim();
        let mut bins = Vec::with_capacity(p);
        let mut edges = Vec::with_capacity(p);
        let mut offsets = Vec::with_capacity(p);
        let mut total = 0;
        for f in 0..p {
            let col = x.column(f);
            let mut sorted: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
            sorted.sort_unstable_by(f64::total_cmp);
            let e = make_edges(&sorted, max_bins);
            let b: Vec<u8> = col
                .iter()
                .map(|&v| e.partition_point(|&t| t < v) as u8)
                .collect();
            offsets.push(total);
            total += e.len() + 1;
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
/// `grad` / `hess` laid out row-major, `k` values per row.
pub fn grow(
    data: &BinnedData,
    grad: &[f64],
    hess: &[f64],
    k: usize,
    rows: &mut [u32],
    p: &GrowParams,
    rng: &mut StdRng,
) -> Tree {
    let s = 2 * k + 1;
    let feats: Vec<usize> = p
        .features
        .clone()
        .unwrap_or_else(|| (0..data.n_features()).collect());
    let ctx = Ctx {
        data,
        grad,
        hess,
        k,
        s,
        feats: &feats,
        p,
    };
    let mut nodes = vec![Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
    }];
    let mut values = Vec::new();
    let mut root_hist = vec![0.0; data.total_bins * s];
    ctx.build_hist(rows, &mut root_hist);
    let root_sums = ctx.sums_of(rows);
    let mut cands = vec![ctx.candidate(0, 0, rows.len(), 0, root_hist, root_sums, rng)];
    let mut n_leaves = 1;
    let mut scratch: Vec<u32> = Vec::with_capacity(rows.len());
    while n_leaves < p.max_leaves {
        let mut pick: Option<usize> = None;
        for (i, c) in cands.iter().enumerate() {
            if let Some(b) = &c.best {
                if pick.is_none_or(|j| b.gain > cands[j].best.as_ref().map_or(f64::MIN, |x| x.gain))
                {
                    pick = Some(i);
                }
            }
        }
        let Some(i) = pick else { break };
        let cand = cands.remove(i);
        let Some(best) = cand.best else { break };
        // Partition the node's rows, stable, left = bin ≤ best.bin.
        let col = &data.bins[best.feature];
        let seg = &mut rows[cand.start..cand.end];
        scratch.clear();
        let mut w = 0;
        for j in 0..seg.len() {
            let r = seg[j];
            if (col[r as usize] as usize) <= best.bin {
                seg[w] = r;
                w += 1;
            } else {
                scratch.push(r);
            }
        }
        seg[w..].copy_from_slice(&scratch);
        let mid = cand.start + w;
        let left_id = nodes.len();
        nodes.push(nodes[0]);
        nodes.push(nodes[0]);
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
        // Smaller child by a scan, larger one by subtraction from the parent histogram.
        let mut parent = cand.hist;
        let mut small = vec![0.0; parent.len()];
        let left_small = w <= cand.end - mid;
        if left_small {
            ctx.build_hist(&rows[cand.start..mid], &mut small);
        } else {
            ctx.build_hist(&rows[mid..cand.end], &mut small);
        }
        for f in &feats {
            let lo = data.offsets[*f] * s;
            let hi = lo + (data.edges[*f].len() + 1) * s;
            for (a, b) in parent[lo..hi].iter_mut().zip(&small[lo..hi]) {
                *a -= b;
            }
        }
        let (lh, rh) = if left_small {
            (small, parent)
        } else {
            (parent, small)
        };
        let d = cand.depth + 1;
        let l = ctx.candidate(left_id, cand.start, mid, d, lh, best.left_sums, rng);
        let r = ctx.candidate(left_id + 1, mid, cand.end, d, rh, right_sums, rng);
        cands.push(l);
        cands.push(r);
        n_leaves += 1;
    }
    let mut leaves: Vec<Cand> = cands;
    leaves.sort_by_key(|c| c.node);
    for c in leaves {
        let off = values.len();
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
    Tree {
        n_outputs: k,
        nodes,
        values,
    }
}

struct Ctx<'a> {
    data: &'a BinnedData,
    grad: &'a [f64],
    hess: &'a [f64],
    k: usize,
    s: usize,
    feats: &'a [usize],
    p: &'a GrowParams,
}

impl Ctx<'_> {
    fn build_hist(&self, rows: &[u32], hist: &mut [f64]) {
        let (k, s) = (self.k, self.s);
        for &f in self.feats {
            let col = &self.data.bins[f];
            let base = self.data.offsets[f];
            let h = &mut hist[base * s..(base + self.data.edges[f].len() + 1) * s];
            if k == 1 {
                for &r in rows {
                    let r = r as usize;
                    let o = col[r] as usize * 3;
                    h[o] += self.grad[r];
                    h[o + 1] += self.hess[r];
                    h[o + 2] += 1.0;
                }
            } else {
                for &r in rows {
                    let r = r as usize;
                    let o = col[r] as usize * s;
                    for j in 0..k {
                        h[o + j] += self.grad[r * k + j];
                        h[o + k + j] += self.hess[r * k + j];
                    }
                    h[o + 2 * k] += 1.0;
                }
            }
        }
    }

    fn sums_of(&self, rows: &[u32]) -> Vec<f64> {
        let k = self.k;
        let mut sums = vec![0.0; self.s];
        for &r in rows {
            let r = r as usize;
            for j in 0..k {
                sums[j] += self.grad[r * k + j];
                sums[k + j] += self.hess[r * k + j];
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
        rng: &mut StdRng,
    ) -> Cand {
        let count = (end - start) as f64;
        let min_leaf = self.p.min_samples_leaf.max(1) as f64;
        let best = if depth < self.p.max_depth && count >= 2.0 * min_leaf {
            self.best_split(&hist, &sums, rng)
        } else {
            None
        };
        Cand {
            node,
            start,
            end,
            depth,
            hist: if best.is_some() { hist } else { Vec::new() },
            sums,
            best,
        }
    }

    fn best_split(&self, hist: &[f64], sums: &[f64], rng: &mut StdRng) -> Option<SplitChoice> {
        let (k, s) = (self.k, self.s);
        let chosen: Vec<usize> = match self.p.node_colsample {
            Some(frac) if frac < 1.0 => {
                let m =
                    ((self.feats.len() as f64 * frac).round() as usize).clamp(1, self.feats.len());
                let mut idx = rand::seq::index::sample(rng, self.feats.len(), m).into_vec();
                idx.sort_unstable();
                idx.into_iter().map(|i| self.feats[i]).collect()
            }
            _ => self.feats.to_vec(),
        };
        let parent = self.score(sums);
        let min_leaf = self.p.min_samples_leaf.max(1) as f64;
        let mut best: Option<(f64, usize, usize)> = None;
        let mut left = vec![0.0; s];
        let mut right = vec![0.0; s];
        for f in chosen {
            let nb = self.data.edges[f].len() + 1;
            let base = self.data.offsets[f] * s;
            left.iter_mut().for_each(|v| *v = 0.0);
            for b in 0..nb - 1 {
                let h = &hist[base + b * s..base + (b + 1) * s];
                for (a, v) in left.iter_mut().zip(h) {
                    *a += v;
                }
                if left[2 * k] < min_leaf {
                    continue;
                }
                if sums[2 * k] - left[2 * k] < min_leaf {
                    break;
                }
                for j in 0..s {
                    right[j] = sums[j] - left[j];
                }
                let hl: f64 = left[k..2 * k].iter().sum();
                let hr: f64 = right[k..2 * k].iter().sum();
                if hl < self.p.min_child_weight || hr < self.p.min_child_weight {
                    continue;
                }
                let gain = self.score(&left) + self.score(&right) - parent;
                if gain > 1e-12 * parent.abs().max(1e-300) && best.is_none_or(|(g, _, _)| gain > g)
                {
                    best = Some((gain, f, b));
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
        }
    }

    #[test]
    fn edges_at_midpoints() {
        // distinct values 1, 2, 4 → edges 1.5, 3; bins 0, 1, 2.
        let x = array![[1.0], [2.0], [4.0], [2.0]];
        let d = BinnedData::new(x.view(), 256);
        assert_eq!(d.edges[0], vec![1.5, 3.0]);
        assert_eq!(d.bins[0], vec![0, 1, 2, 1]);
    }

    #[test]
    fn regression_stump_by_hand() {
        // x = 1, 2, 3, 4 ; y = 1, 1, 5, 7. Best split x ≤ 2.5: left mean 1, right mean 6
        // (SSE 0 + 2 = 2, vs x ≤ 1.5: 0 + SSE(1,5,7) = 18.67; x ≤ 3.5: SSE(1,1,5) = 10.67).
        let x = array![[1.0], [2.0], [3.0], [4.0]];
        let y = [1.0, 1.0, 5.0, 7.0];
        let d = BinnedData::new(x.view(), 256);
        let g: Vec<f64> = y.iter().map(|v| -v).collect();
        let h = vec![1.0; 4];
        let mut rows: Vec<u32> = (0..4).collect();
        let mut rng = StdRng::seed_from_u64(0);
        let t = grow(&d, &g, &h, 1, &mut rows, &params(1), &mut rng);
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
        let d = BinnedData::new(x.view(), 256);
        let mut g = vec![0.0; 10];
        for (i, &c) in y.iter().enumerate() {
            g[i * 2 + c] = -1.0;
        }
        let h = vec![1.0; 10];
        let mut rows: Vec<u32> = (0..5).collect();
        let t = grow(
            &d,
            &g,
            &h,
            2,
            &mut rows,
            &params(3),
            &mut StdRng::seed_from_u64(0),
        );
        let mut out = [0.0, 0.0];
        t.add_to(&[2.0], &mut out);
        assert!((out[0] - 1.0 / 3.0).abs() < 1e-12 && (out[1] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.n_leaves(), 2);
    }

    #[test]
    fn limits_are_respected() {
        let n = 200;
        let x = ndarray::Array2::from_shape_fn((n, 2), |(i, j)| ((i * 7 + j * 13) % 50) as f64);
        let g: Vec<f64> = (0..n).map(|i| -((i % 17) as f64)).collect();
        let h = vec![1.0; n];
        let d = BinnedData::new(x.view(), 256);
        let mut p = params(3);
        p.max_leaves = 5;
        p.min_samples_leaf = 10;
        let mut rows: Vec<u32> = (0..n as u32).collect();
        let t = grow(&d, &g, &h, 1, &mut rows, &p, &mut StdRng::seed_from_u64(0));
        assert!(
            t.depth() <= 3 && t.n_leaves() <= 5,
            "{} {}",
            t.depth(),
            t.n_leaves()
        );
    }
}
