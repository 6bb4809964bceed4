//! Gradient boosting on the histogram trees of [`super::tree`]: squared loss, logistic loss (one
//! logit) for two classes, softmax with one multi-output tree per round for more.
//!
//! Each round: gradients for every row (threads over row chunks), a Bernoulli row sample drawn in
//! one pass in row order (so it comes out sorted, no per-round sort), a per-round feature sample,
//! one tree, then the raw scores of every row moved by that tree, routed on the rows' bins (no
//! float comparisons, no row-major copy of the data). With early stopping on, held-out training rows
//! never enter a histogram; their loss after each round decides when to stop. Below 2,000 rows
//! five folds are boosted in lockstep (the loss summed over all of them), from there one 10 %
//! slice; below 20,000 rows the model is then refitted on every row for the round count found,
//! from there it keeps the rounds up to the best one.

use ndarray::ArrayView2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use super::config::ModelConfig;
use super::par::{self, mix};
use super::tree::{grow, BinnedData, GrowParams, LeafStretch, Tree};

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

/// Fraction of the training rows held out for early stopping on a large shard.
const HOLDOUT_FRACTION: f64 = 0.1;

/// Below this many rows, the model found by early stopping is refitted on every row for the
/// round count found (scaled to the larger sample): the held-out rows are too precious to lose.
const REFIT_BELOW: usize = 20_000;

/// Below this many rows, early stopping runs [`ES_FOLDS`]-fold: one boosting run per fold in
/// lockstep, stopped on the loss summed over every held-out row. One held-out slice of a few
/// dozen rows is too noisy: on House Prices (~255 training rows per shard) it stopped after 5
/// to 70 rounds where 100 to 400 all did better. From here one 10 % slice is steady enough, at
/// a fifth of the cost (`auto`'s CV on a large shard fits 4,000-row folds).
const FOLDS_BELOW: usize = 2_000;

/// Folds of the early-stopping round search below [`FOLDS_BELOW`] rows.
const ES_FOLDS: usize = 5;

/// The (fit rows, early-stopping rows) of each early-stopping run, all sorted: one 90 / 10
/// split from [`FOLDS_BELOW`] rows, else [`ES_FOLDS`] folds; one run on every row when early
/// stopping is off or the rows are too few to spare any.
fn es_splits(n: usize, cfg: &ModelConfig) -> Vec<(Vec<u32>, Vec<u32>)> {
    let folds = if n < FOLDS_BELOW { ES_FOLDS } else { 1 };
    if cfg.n_iter_no_change == 0 || n < 2 * ES_FOLDS {
        return vec![((0..n as u32).collect(), Vec::new())];
    }
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(mix(cfg.seed, 0xE5)));
    if folds == 1 {
        let n_val = ((n as f64 * HOLDOUT_FRACTION).round() as usize).max(1);
        let mut val = idx[..n_val].to_vec();
        let mut fit = idx[n_val..].to_vec();
        val.sort_unstable();
        fit.sort_unstable();
        return vec![(fit, val)];
    }
    let mut fold_of = vec![0; n];
    for (pos, &i) in idx.iter().enumerate() {
        fold_of[i as usize] = pos % folds;
    }
    (0..folds)
        .map(|f| (0..n as u32).partition(|&i| fold_of[i as usize] != f))
        .collect()
}

/// Where the rounds of [`fit_boosted_from`] start: a model fitted on the given (sorted) rows,
/// returned with its raw scores for every row (`n × outputs`).
pub type Start<'a, S> = &'a (dyn Fn(&[u32]) -> (S, Vec<f64>) + Sync);

/// Fit the boosted model (see the module documentation): the base scores and the trees.
pub fn fit_boosted(cfg: &ModelConfig, x: ArrayView2<f64>, loss: Loss) -> (Vec<f64>, Vec<Tree>) {
    let (base, trees, _) = fit_boosted_from::<()>(cfg, x, loss, None);
    (base, trees)
}

/// One boosting run: its rows, raw scores of every row, random stream and trees.
struct Run<S> {
    fit_rows: Vec<u32>,
    val_rows: Vec<u32>,
    base: Vec<f64>,
    f: Vec<f64>,
    gh: Vec<f64>,
    /// The stream the round samples, feature samples and tree growth draw from, in turn: a
    /// ChaCha stream that can be entered at any word, so the row sample is drawn on the threads.
    rng: ChaCha12Rng,
    trees: Vec<Tree>,
    started: Option<S>,
    /// `fit_rows` and `val_rows` are both in increasing order.
    sorted: bool,
}

/// What every run of a fit shares.
struct Shared<'a> {
    data: BinnedData,
    loss: Loss<'a>,
    k: usize,
    n_feat: usize,
    /// Bernoulli(subsample) per row: a uniform u32 below this keeps the row.
    keep_below: u64,
    params: GrowParams,
    threads: usize,
}

impl<'a> Shared<'a> {
    /// Bin `x` (edges from `edge_rows`, else every row) and set the round parameters for a fit
    /// on `edge_rows` (else every row).
    fn new(
        cfg: &ModelConfig,
        x: ArrayView2<f64>,
        loss: Loss<'a>,
        edge_rows: Option<&[u32]>,
    ) -> Shared<'a> {
        let threads = par::resolve_threads(cfg.threads);
        let n = edge_rows.map_or(x.nrows(), <[u32]>::len);
        let data = BinnedData::with_edges_from(x, cfg.max_bins, threads, edge_rows);
        let k = loss.n_outputs();
        let p_feat = data.n_features();
        let n_feat = ((p_feat as f64 * cfg.round_colsample(n, p_feat)).round() as usize)
            .clamp(1, p_feat.max(1));
        Shared {
            data,
            loss,
            k,
            n_feat,
            keep_below: (cfg.subsample * 4_294_967_296.0) as u64,
            params: GrowParams {
                max_depth: cfg.depth(),
                max_leaves: cfg.max_leaf_nodes.unwrap_or(usize::MAX),
                min_samples_leaf: cfg.min_leaf(),
                lambda: cfg.lambda,
                min_child_weight: 1e-3,
                shrinkage: cfg.rate(n),
                features: None,
                node_colsample: None,
                threads,
            },
            threads,
        }
    }
}

impl<S> Run<S> {
    fn new(
        sh: &Shared,
        cfg: &ModelConfig,
        (fit_rows, val_rows): (Vec<u32>, Vec<u32>),
        start: Option<Start<S>>,
    ) -> Run<S> {
        let n = sh.data.n_rows;
        let k = sh.k;
        let mut started = None;
        let (base, f) = match start.map(|s| s(&fit_rows)) {
            Some((model, init)) if init.len() == n * k => {
                started = Some(model);
                (vec![0.0; k], init)
            }
            _ => {
                let base = sh.loss.base(&fit_rows);
                let f: Vec<f64> = (0..n).flat_map(|_| base.iter().copied()).collect();
                (base, f)
            }
        };
        Run {
            sorted: fit_rows.is_sorted() && val_rows.is_sorted(),
            fit_rows,
            val_rows,
            base,
            f,
            gh: vec![0.0; n * 2 * k],
            rng: ChaCha12Rng::seed_from_u64(cfg.seed),
            trees: Vec::with_capacity(cfg.n_rounds.min(4096)),
            started,
        }
    }

    /// Summed loss of the held-out rows.
    fn val_loss(&self, sh: &Shared) -> f64 {
        let k = sh.k;
        self.val_rows
            .iter()
            .map(|&r| {
                sh.loss
                    .row_loss(r as usize, &self.f[r as usize * k..(r as usize + 1) * k])
            })
            .sum::<f64>()
    }

    /// One round: gradients, row and feature sample, one tree, every row's scores moved.
    fn round(&mut self, sh: &Shared, scratch: &mut Scratch) {
        let (k, threads) = (sh.k, sh.threads);
        let Scratch {
            rows,
            rest,
            draws,
            held,
        } = scratch;
        {
            let f = &self.f;
            let loss = &sh.loss;
            par::chunks_mut(&mut self.gh, 2 * k, threads, |start, chunk| {
                if let Loss::Squared(y) = loss {
                    // The common case in a loop the compiler can keep tight: g = f − y, h = 1.
                    let (pairs, _) = chunk.as_chunks_mut::<2>();
                    let end = start + pairs.len();
                    for ((out, &fr), &yr) in
                        pairs.iter_mut().zip(&f[start..end]).zip(&y[start..end])
                    {
                        *out = [fr - yr, 1.0];
                    }
                    return;
                }
                for (j, out) in chunk.chunks_exact_mut(2 * k).enumerate() {
                    let r = start + j;
                    loss.grad_row(r, &f[r * k..(r + 1) * k], out);
                }
            });
        }
        // The row sample: one random word per fit row, drawn in one block on the threads (the
        // stream `next_u32` would give), then rows split into kept and dropped on the threads.
        let n = self.fit_rows.len();
        rows.clear();
        rows.extend_from_slice(&self.fit_rows);
        let mut kept = n;
        if sh.keep_below < 1 << 32 {
            draws.resize(n, 0);
            par::fill_words(&mut self.rng, &mut draws[..], threads);
            let (draws, keep_below) = (&draws[..], sh.keep_below);
            kept = par::split_stable(rows, rest, threads, |i, _| u64::from(draws[i]) < keep_below);
        }
        if kept == 0 {
            // An empty sample (a tiny shard): grow on every row (all in order, as dropped).
            kept = n;
        }
        let p_feat = sh.data.n_features();
        let features = (sh.n_feat < p_feat).then(|| {
            let mut fs = rand::seq::index::sample(&mut self.rng, p_feat, sh.n_feat).into_vec();
            fs.sort_unstable();
            fs
        });
        let params = GrowParams {
            features,
            ..sh.params.clone()
        };
        let (grown_rows, dropped) = rows.split_at_mut(kept);
        let grown = grow(&sh.data, &self.gh, k, grown_rows, &params, &mut self.rng);
        // The rows the tree was not grown on, partitioned by leaf as the grown ones are (the
        // early-stopping rows through a copy: their order is the order their losses are summed).
        let dropped_leaves = grown.route(&sh.data, dropped, rest, threads);
        held.clear();
        held.extend_from_slice(&self.val_rows);
        let held_leaves = grown.route(&sh.data, held, rest, threads);
        // Parallel only when every run of rows is sorted (a stable partition keeps each leaf's
        // stretch sorted): each thread then finds its own rows in them by bisection.
        let threads = if self.sorted { threads } else { 1 };
        move_scores(
            &mut self.f,
            k,
            threads,
            &grown.tree.values,
            [
                (&*grown_rows, &grown.leaves[..]),
                (&*dropped, &dropped_leaves[..]),
                (&held[..], &held_leaves[..]),
            ],
        );
        self.trees.push(grown.tree);
    }
}

/// Move every row's scores by its leaf's `values`: `parts` are rows partitioned by leaf, as
/// (rows, (offset of the leaf's values, start, end) of each leaf's stretch of them). Threads
/// take contiguous ranges of rows and pick theirs from each sorted stretch by bisection; every
/// row gets the same single addition for any thread count.
fn move_scores(
    f: &mut [f64],
    k: usize,
    threads: usize,
    values: &[f64],
    parts: [(&[u32], &[LeafStretch]); 3],
) {
    par::chunks_mut(f, k, threads, |lo, chunk| {
        let hi = lo + chunk.len() / k;
        let within = |run: &[u32]| -> (usize, usize) {
            let a = run.partition_point(|&r| (r as usize) < lo);
            let b = run.partition_point(|&r| (r as usize) < hi);
            (a, b.max(a))
        };
        let mut add = |r: u32, o: usize| {
            let at = (r as usize - lo) * k;
            for (a, v) in chunk[at..at + k].iter_mut().zip(&values[o..o + k]) {
                *a += v;
            }
        };
        for (rows, leaves) in parts {
            for &(o, start, end) in leaves {
                let leaf = &rows[start..end];
                let (a, b) = within(leaf);
                for &r in &leaf[a..b] {
                    add(r, o);
                }
            }
        }
    });
}

/// Scratch buffers of a run's rounds, reused from round to round (and shared by the runs of
/// one fit): the row sample and the rows left out of it, its random words, and the
/// early-stopping rows being routed.
struct Scratch {
    rows: Vec<u32>,
    rest: Vec<u32>,
    draws: Vec<u32>,
    held: Vec<u32>,
}

impl Scratch {
    fn with_capacity(n: usize) -> Scratch {
        Scratch {
            rows: Vec::with_capacity(n),
            rest: Vec::with_capacity(n),
            draws: Vec::with_capacity(n),
            held: Vec::new(),
        }
    }
}

/// [`fit_boosted`] with the rounds starting from `start`'s scores (the base is then zero)
/// instead of a constant. `start` is fitted on the rows the trees are fitted on, never on the
/// early-stopping rows: a start model that had seen them would leave them too little to
/// improve, and stop the rounds early. Returns the start model of the final fit too.
pub fn fit_boosted_from<S>(
    cfg: &ModelConfig,
    x: ArrayView2<f64>,
    loss: Loss,
    start: Option<Start<S>>,
) -> (Vec<f64>, Vec<Tree>, Option<S>) {
    let n = x.nrows();
    let sh = Shared::new(cfg, x, loss, None);
    let mut runs: Vec<Run<S>> = es_splits(n, cfg)
        .into_iter()
        .map(|split| Run::new(&sh, cfg, split, start))
        .collect();
    let early = runs.iter().any(|r| !r.val_rows.is_empty());
    let total = |runs: &[Run<S>]| runs.iter().map(|r| r.val_loss(&sh)).sum::<f64>();
    let mut best_loss = total(&runs);
    let mut best_rounds = 0;
    let mut scratch = Scratch::with_capacity(n);
    for round in 0..cfg.n_rounds {
        for run in &mut runs {
            run.round(&sh, &mut scratch);
        }
        if !early {
            best_rounds = round + 1;
            continue;
        }
        let l = total(&runs);
        if best_loss - l > 1e-7 * best_loss.abs().max(f64::MIN_POSITIVE) {
            best_loss = l;
            best_rounds = round + 1;
        } else if round + 1 - best_rounds >= cfg.n_iter_no_change {
            break;
        }
    }
    if early && (runs.len() > 1 || n < REFIT_BELOW) {
        // Refit on every row for the rounds early stopping found, scaled to the larger sample.
        let fit_n = runs.iter().map(|r| r.fit_rows.len()).sum::<usize>() as f64 / runs.len() as f64;
        let rounds = (best_rounds as f64 * n as f64 / fit_n.max(1.0)).ceil() as usize;
        let all = ModelConfig {
            n_rounds: rounds.max(1),
            n_iter_no_change: 0,
            ..cfg.clone()
        };
        drop(runs);
        return fit_boosted_from(&all, x, sh.loss, start);
    }
    let mut run = runs.swap_remove(0);
    run.trees.truncate(best_rounds);
    (run.base, run.trees, run.started)
}

/// A boosted model: base scores, trees, and the start model the rounds began from.
pub type Boosted<S> = (Vec<f64>, Vec<Tree>, Option<S>);

/// One fold of [`cv_boosted`]: its matrix (the fold's fit rows and held-out rows, preprocessed
/// as fitted on the fit rows), loss, rows and start.
pub struct CvFold<'a, S> {
    pub x: ArrayView2<'a, f64>,
    pub loss: Loss<'a>,
    pub fit_rows: Vec<u32>,
    pub held_rows: Vec<u32>,
    pub start: Option<Start<'a, S>>,
}

/// One fold's state in [`cv_boosted`]: its data, its run, and its scratch buffers.
struct FoldRun<'a, S> {
    sh: Shared<'a>,
    run: Run<S>,
    scratch: Scratch,
}

/// Cross-validated boosting: one run per fold in lockstep (folds on `threads` threads, each
/// fold's trees on `cfg.threads`), stopped after `cfg.n_iter_no_change` rounds without a
/// lower loss summed over every fold's held-out rows (off: `cfg.n_rounds` rounds). Returns the
/// best round count and each fold's model cut to it. The held-out rows are the folds' test
/// rows: the one number they choose is the round count, as a leave-one-out `alpha` is chosen
/// for a linear model, and the final fit reuses it instead of searching again.
pub fn cv_boosted<S: Send>(
    cfg: &ModelConfig,
    folds: Vec<CvFold<S>>,
    threads: usize,
) -> (usize, Vec<Boosted<S>>) {
    let mut runs: Vec<FoldRun<S>> = folds
        .into_iter()
        .map(|f| {
            let sh = Shared::new(cfg, f.x, f.loss, Some(&f.fit_rows));
            let n = sh.data.n_rows;
            let run = Run::new(&sh, cfg, (f.fit_rows, f.held_rows), f.start);
            let scratch = Scratch::with_capacity(n);
            FoldRun { sh, run, scratch }
        })
        .collect();
    let total = |runs: &[FoldRun<S>]| runs.iter().map(|f| f.run.val_loss(&f.sh)).sum::<f64>();
    let mut best_loss = total(&runs);
    let mut best_rounds = 0;
    for round in 0..cfg.n_rounds {
        par::for_each(runs.iter_mut().collect(), threads, |f: &mut FoldRun<S>| {
            f.run.round(&f.sh, &mut f.scratch);
        });
        let l = total(&runs);
        if best_loss - l > 1e-7 * best_loss.abs().max(f64::MIN_POSITIVE)
            || cfg.n_iter_no_change == 0
        {
            best_loss = l;
            best_rounds = round + 1;
        } else if round + 1 - best_rounds >= cfg.n_iter_no_change {
            break;
        }
    }
    let models = runs
        .into_iter()
        .map(|mut f| {
            f.run.trees.truncate(best_rounds);
            (f.run.base, f.run.trees, f.run.started)
        })
        .collect();
    (best_rounds, models)
}

#[cfg(test)]
mod tests;
