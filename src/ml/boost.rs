//! Gradient boosting on the histogram trees of [`super::tree`]: squared loss, logistic loss (one
//! logit) for two classes, softmax with one multi-output tree per round for more.
//!
//! Each round: gradients for every row (threads over row chunks), a Bernoulli row sample drawn in
//! one pass in row order (so it comes out sorted, no per-round sort), a per-round feature sample,
//! one tree, then the raw scores of every row moved by that tree, routed on the rows' bins (no
//! float comparisons, no row-major copy of the data). With early stopping on, an inner slice of the
//! training rows never enters a histogram; its loss after each round decides when to stop, and the
//! model keeps the rounds up to the best one. Below 20,000 rows that slice is too valuable to lose:
//! the model is refitted on every row for the round count found.

use ndarray::ArrayView2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};

use super::config::ModelConfig;
use super::par::{self, mix};
use super::tree::{grow, BinnedData, GrowParams, Tree};

/// The loss and its labels.
pub enum Loss<'a> {
    Squared(&'a [f64]),
    Classes(&'a [usize], usize),
}

impl Loss<'_> {
    fn n_outputs(&self) -> usize {
        match self {
            Loss::Squared(_) | Loss::Classes(_, 2) => 1,
            Loss::Classes(_, c) => *c,
        }
    }

    /// Initial raw scores: the mean, the prior log-odds, or the log priors, over `rows`.
    fn base(&self, rows: &[u32]) -> Vec<f64> {
        let n = rows.len().max(1) as f64;
        match self {
            Loss::Squared(y) => vec![rows.iter().map(|&r| y[r as usize]).sum::<f64>() / n],
            Loss::Classes(y, c) => {
                let mut counts = vec![0.0; *c];
                for &r in rows {
                    counts[y[r as usize]] += 1.0;
                }
                let prior: Vec<f64> = counts
                    .iter()
                    .map(|v| (v / n).clamp(1e-6, 1.0 - 1e-6))
                    .collect();
                if *c == 2 {
                    vec![(prior[1] / prior[0]).ln()]
                } else {
                    prior.iter().map(|p| p.ln()).collect()
                }
            }
        }
    }

    /// Gradients and hessians of row `r` (interleaved: `k` g then `k` h) at raw scores `f`.
    #[inline]
    fn grad_row(&self, r: usize, f: &[f64], out: &mut [f64]) {
        let k = f.len();
        match self {
            Loss::Squared(y) => {
                out[0] = f[0] - y[r];
                out[1] = 1.0;
            }
            Loss::Classes(y, _) if k == 1 => {
                let p = 1.0 / (1.0 + (-f[0]).exp());
                out[0] = p - (y[r] == 1) as u8 as f64;
                out[1] = (p * (1.0 - p)).max(1e-6);
            }
            Loss::Classes(y, _) => {
                let m = f.iter().copied().fold(f64::MIN, f64::max);
                let z: f64 = f.iter().map(|v| (v - m).exp()).sum();
                for j in 0..k {
                    let p = (f[j] - m).exp() / z;
                    out[j] = p - (y[r] == j) as u8 as f64;
                    out[k + j] = (p * (1.0 - p)).max(1e-6);
                }
            }
        }
    }

    /// Loss of row `r` at raw scores `f` (squared error, log loss).
    #[inline]
    fn row_loss(&self, r: usize, f: &[f64]) -> f64 {
        match self {
            Loss::Squared(y) => (f[0] - y[r]).powi(2),
            Loss::Classes(y, _) if f.len() == 1 => {
                // log(1 + e^{-s·f}) with s = ±1, computed without overflow.
                let s = if y[r] == 1 { f[0] } else { -f[0] };
                (-s).max(0.0) + (-s.abs()).exp().ln_1p()
            }
            Loss::Classes(y, _) => {
                let m = f.iter().copied().fold(f64::MIN, f64::max);
                let z: f64 = f.iter().map(|v| (v - m).exp()).sum();
                m + z.ln() - f[y[r]]
            }
        }
    }
}

/// Fraction of the training rows held out for early stopping.
fn holdout_fraction(n: usize) -> f64 {
    if n < 1_000 {
        0.2
    } else {
        0.1
    }
}

/// Split `0..n` into (fit rows, early-stopping rows), both sorted; no holdout when early stopping
/// is off or the rows are too few to spare any.
fn holdout(n: usize, cfg: &ModelConfig) -> (Vec<u32>, Vec<u32>) {
    let n_val = (n as f64 * holdout_fraction(n)).round() as usize;
    if cfg.n_iter_no_change == 0 || n_val == 0 || n - n_val < 2 {
        return ((0..n as u32).collect(), Vec::new());
    }
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(mix(cfg.seed, 0xE5)));
    let mut val = idx[..n_val].to_vec();
    let mut fit = idx[n_val..].to_vec();
    val.sort_unstable();
    fit.sort_unstable();
    (fit, val)
}

/// Fit the boosted model (see the module documentation): the base scores and the trees.
pub fn fit_boosted(cfg: &ModelConfig, x: ArrayView2<f64>, loss: Loss) -> (Vec<f64>, Vec<Tree>) {
    let threads = par::resolve_threads(cfg.threads);
    let n = x.nrows();
    let data = BinnedData::new(x, cfg.max_bins, threads);
    let k = loss.n_outputs();
    let (fit_rows, val_rows) = holdout(n, cfg);
    let base = loss.base(&fit_rows);
    let mut f: Vec<f64> = (0..n).flat_map(|_| base.iter().copied()).collect();
    let mut gh = vec![0.0; n * 2 * k];
    let p_feat = data.n_features();
    let n_feat =
        ((p_feat as f64 * cfg.round_colsample(n, p_feat)).round() as usize).clamp(1, p_feat.max(1));
    // Bernoulli(subsample) per row: compare a uniform u32 with this threshold.
    let keep_below = (cfg.subsample * 4_294_967_296.0) as u64;
    let mut params = GrowParams {
        max_depth: cfg.depth(),
        max_leaves: cfg.max_leaf_nodes.unwrap_or(usize::MAX),
        min_samples_leaf: cfg.min_leaf(),
        lambda: cfg.lambda,
        min_child_weight: 1e-3,
        shrinkage: cfg.rate(n),
        features: None,
        node_colsample: None,
        threads,
    };
    let val_loss = |f: &[f64]| -> f64 {
        val_rows
            .iter()
            .map(|&r| loss.row_loss(r as usize, &f[r as usize * k..(r as usize + 1) * k]))
            .sum::<f64>()
    };
    let mut best_loss = val_loss(&f);
    let mut best_rounds = 0;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut trees = Vec::with_capacity(cfg.n_rounds.min(4096));
    let mut rows: Vec<u32> = Vec::with_capacity(fit_rows.len());
    let mut rest: Vec<u32> = Vec::with_capacity(n);
    let mut offsets: Vec<u32> = Vec::with_capacity(n);
    for round in 0..cfg.n_rounds {
        {
            let f = &f;
            let loss = &loss;
            par::chunks_mut(&mut gh, 2 * k, threads, |start, chunk| {
                for (j, out) in chunk.chunks_exact_mut(2 * k).enumerate() {
                    let r = start + j;
                    loss.grad_row(r, &f[r * k..(r + 1) * k], out);
                }
            });
        }
        rows.clear();
        rest.clear();
        if keep_below < 1 << 32 {
            for &r in &fit_rows {
                if u64::from(rng.next_u32()) < keep_below {
                    rows.push(r);
                } else {
                    rest.push(r);
                }
            }
        }
        if rows.is_empty() {
            rows.extend_from_slice(&fit_rows);
            rest.clear();
        }
        rest.extend_from_slice(&val_rows);
        params.features = (n_feat < p_feat).then(|| {
            let mut fs = rand::seq::index::sample(&mut rng, p_feat, n_feat).into_vec();
            fs.sort_unstable();
            fs
        });
        let grown = grow(&data, &gh, k, &mut rows, &params, &mut rng);
        // Grown rows: their leaves are known from the partition. The others are routed on bins.
        let values = &grown.tree.values;
        for &(o, start, end) in &grown.leaves {
            for &r in &rows[start..end] {
                let r = r as usize;
                for (a, v) in f[r * k..(r + 1) * k].iter_mut().zip(&values[o..o + k]) {
                    *a += v;
                }
            }
        }
        offsets.clear();
        offsets.resize(rest.len(), 0);
        {
            let (grown, data, rest) = (&grown, &data, &rest);
            par::chunks_mut(&mut offsets, 1, threads, |start, chunk| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = grown.leaf_offset_binned(data, rest[start + j] as usize) as u32;
                }
            });
        }
        for (&r, &o) in rest.iter().zip(&offsets) {
            let (r, o) = (r as usize, o as usize);
            for (a, v) in f[r * k..(r + 1) * k].iter_mut().zip(&values[o..o + k]) {
                *a += v;
            }
        }
        trees.push(grown.tree);
        if val_rows.is_empty() {
            best_rounds = round + 1;
            continue;
        }
        let l = val_loss(&f);
        if best_loss - l > 1e-7 * best_loss.abs().max(f64::MIN_POSITIVE) {
            best_loss = l;
            best_rounds = round + 1;
        } else if round + 1 - best_rounds >= cfg.n_iter_no_change {
            break;
        }
    }
    trees.truncate(best_rounds);
    if !val_rows.is_empty() && n < REFIT_BELOW {
        // Small data: the held-out slice is too precious to leave out of the model. Refit on
        // every row for the rounds early stopping found, scaled to the larger sample.
        let rounds = (best_rounds as f64 * n as f64 / fit_rows.len() as f64).ceil() as usize;
        let all = ModelConfig {
            n_rounds: rounds.max(1),
            n_iter_no_change: 0,
            ..cfg.clone()
        };
        return fit_boosted(&all, x, loss);
    }
    (base, trees)
}

/// Below this many rows, early stopping only finds the round count; the model is then refitted
/// on every row.
const REFIT_BELOW: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn data(n: usize) -> (Array2<f64>, Vec<f64>) {
        let x = Array2::from_shape_fn((n, 4), |(i, j)| ((i * (j + 3) * 7919) % 101) as f64);
        let y = x.rows().into_iter().map(|r| r[0] + 0.5 * r[1]).collect();
        (x, y)
    }

    fn rounds(m: &(Vec<f64>, Vec<Tree>)) -> usize {
        m.1.len()
    }

    #[test]
    fn early_stopping_stops_and_off_runs_every_round() {
        let (x, y) = data(600);
        let cfg = ModelConfig {
            n_rounds: 3000,
            learning_rate: Some(0.3),
            n_iter_no_change: 5,
            threads: Some(1),
            ..Default::default()
        };
        let m = fit_boosted(&cfg, x.view(), Loss::Squared(&y));
        let used = rounds(&m);
        assert!(used > 5 && used < 3000, "early stopping kept {used} rounds");
        let off = ModelConfig {
            n_rounds: 40,
            n_iter_no_change: 0,
            ..cfg
        };
        assert_eq!(rounds(&fit_boosted(&off, x.view(), Loss::Squared(&y))), 40);
    }

    #[test]
    fn same_model_for_any_thread_count() {
        // 40,000 rows so that histograms, gradients and binning really run on several threads.
        let (x, y) = data(40_000);
        let fit = |t| {
            let cfg = ModelConfig {
                n_rounds: 30,
                threads: Some(t),
                ..Default::default()
            };
            fit_boosted(&cfg, x.view(), Loss::Squared(&y))
        };
        let one = fit(1);
        assert_eq!(one, fit(1));
        assert_eq!(one, fit(2));
        assert_eq!(one, fit(3));
    }

    #[test]
    fn log_loss_is_stable_for_large_scores() {
        let y = [1usize, 0];
        let l = Loss::Classes(&y, 2);
        assert!((l.row_loss(0, &[800.0]) - 0.0).abs() < 1e-12);
        assert!((l.row_loss(0, &[-800.0]) - 800.0).abs() < 1e-9);
        // log 2 at a zero score, worked by hand
        assert!((l.row_loss(1, &[0.0]) - std::f64::consts::LN_2).abs() < 1e-12);
    }
}
