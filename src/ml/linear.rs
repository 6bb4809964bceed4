//! Ridge regression and L2-regularized logistic regression (one-vs-rest for more than two
//! classes). A measured input is first clamped to its training range (for ridge, also to
//! Tukey's fences, 1.5 interquartile ranges beyond the quartiles: least squares lets a few
//! outlying rows tilt the whole line) and, when it is non-negative and right-skewed, taken as
//! `ln(1 + x)`; then standardized with the
//! training mean and standard deviation. A categorical's code ([`InputKind::Code`]) is already a
//! smoothed mean of the fitted label: it is only centred, so that the penalty shrinks a column
//! whose levels barely differ instead of blowing it up to unit variance. Regularized always:
//! plain least squares explodes on small shards with more one-hot columns than rows. The ridge
//! penalty, unless configured, is chosen by leave-one-out error (closed form through the hat
//! matrix) on a grid.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// Skewness above which a non-negative input is taken as `ln(1 + x)` (the label rule's threshold).
const SKEWED: f64 = 0.75;

/// Tukey's fences for ridge's measured inputs: this many interquartile ranges below the first
/// quartile and above the third. A column whose quartiles coincide (mostly zeros, one-hot) keeps
/// its extremes: its rare values are the signal, not outliers.
const FENCE_IQR: f64 = 1.5;

/// How the line takes one input column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputKind {
    /// A measured value: clamped, maybe logged, standardized.
    #[default]
    Measured,
    /// A categorical level's code, a smoothed mean of the fitted label (regression) or of the
    /// class-1 indicator (two classes): in the label's units already, so only centred.
    Code,
}

/// Ridge penalties tried by leave-one-out: 0.1 · √10^k, k = 0..9 (0.1 to about 3,162).
const ALPHAS: usize = 10;

/// Rows whose leave-one-out residuals score a penalty (evenly strided above this): the hat
/// matrix costs p² per row, and the choice is settled long before a large shard's last row.
const LOO_ROWS: usize = 4_000;

/// Fitted linear model: `out[j] = bias[j] + Σ_f w[j][f] · (t_f(x[f]) − mean[f]) / scale[f]`, with
/// `t_f(v) = clamp(v, lo[f], hi[f])`, then `ln(1 + ·)` where `log[f]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// Range each input is clamped to, from training (its extremes, for ridge within Tukey's
    /// fences): a value beyond anything training saw (a living area twice the shard's
    /// largest) would otherwise extend a straight line into an absurd prediction.
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// Inputs fitted on `ln(1 + x)`: non-negative with skewness above 0.75 in training.
    pub log: Vec<bool>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

impl Linear {
    pub fn n_outputs(&self) -> usize {
        self.bias.len()
    }

    /// Input `f` as the model sees it before standardization (clamped, maybe logged).
    /// `max` / `min` rather than `clamp`: a decoded model with `lo > hi` must not panic.
    #[inline]
    pub fn input(&self, f: usize, v: f64) -> f64 {
        let v = v.max(self.lo[f]).min(self.hi[f]);
        if self.log[f] {
            v.ln_1p()
        } else {
            v
        }
    }

    #[inline]
    pub fn raw_row(&self, x: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            let w = &self.weights[j];
            let mut s = self.bias[j];
            for f in 0..w.len() {
                s += w[f] * (self.input(f, x[f]) - self.mean[f]) / self.scale[f];
            }
            *o = s;
        }
    }

    /// The input transform fitted on `x` (no weights yet) and the transformed rows. `inputs`
    /// says how each column is taken (missing entries: measured); `fences` clamps measured
    /// inputs to Tukey's fences ([`FENCE_IQR`]) where those lie within their extremes.
    fn prepare(x: ArrayView2<f64>, inputs: &[InputKind], fences: bool) -> (Linear, Vec<Vec<f64>>) {
        let (n, p) = x.dim();
        let mut m = Linear {
            lo: vec![0.0; p],
            hi: vec![0.0; p],
            log: vec![false; p],
            mean: vec![0.0; p],
            scale: vec![1.0; p],
            weights: Vec::new(),
            bias: Vec::new(),
        };
        let mut z = vec![vec![0.0; p]; n];
        let mut sorted: Vec<f64> = Vec::with_capacity(n);
        for f in 0..p {
            let c = x.column(f);
            let code = inputs.get(f) == Some(&InputKind::Code);
            let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (m.lo[f], m.hi[f]) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
            if fences && !code && n >= 4 {
                sorted.clear();
                sorted.extend(c.iter().copied());
                let q1 = *sorted.select_nth_unstable_by((n - 1) / 4, f64::total_cmp).1;
                let q3 = *sorted
                    .select_nth_unstable_by(3 * (n - 1) / 4, f64::total_cmp)
                    .1;
                let iqr = q3 - q1;
                if iqr > 0.0 {
                    m.lo[f] = m.lo[f].max(q1 - FENCE_IQR * iqr);
                    m.hi[f] = m.hi[f].min(q3 + FENCE_IQR * iqr);
                }
            }
            let mut t: Vec<f64> = c.iter().map(|&v| m.input(f, v)).collect();
            if !code && m.lo[f] >= 0.0 && skewness(t.iter().copied(), n) > SKEWED {
                m.log[f] = true;
                t.iter_mut().for_each(|v| *v = v.ln_1p());
            }
            let mean = t.iter().sum::<f64>() / n as f64;
            let v = t.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / n as f64;
            m.mean[f] = mean;
            m.scale[f] = if !code && v > 1e-12 { v.sqrt() } else { 1.0 };
            // `t` holds each value as `m.input` takes it: the rows are written from it.
            for (row, a) in z.iter_mut().zip(&t) {
                row[f] = (a - mean) / m.scale[f];
            }
        }
        (m, z)
    }

    /// Ridge: minimize `Σ (y − b − w·z)² + alpha · |w|²`. Solved in the primal (p × p) or, with
    /// more columns than rows, the dual (n × n) system. `alpha = None`: the grid penalty with the
    /// lowest leave-one-out squared error (ties: the smaller penalty).
    pub fn fit_ridge(
        x: ArrayView2<f64>,
        y: &[f64],
        alpha: Option<f64>,
        inputs: &[InputKind],
    ) -> Linear {
        let (mut m, z) = Self::prepare(x, inputs, true);
        let (n, p) = x.dim();
        let ybar = y.iter().sum::<f64>() / n as f64;
        let yc: Vec<f64> = y.iter().map(|v| v - ybar).collect();
        let alphas: Vec<f64> = match alpha {
            Some(a) => vec![a.max(1e-8)],
            None => (0..ALPHAS)
                .map(|k| 0.1 * 10f64.powf(k as f64 / 2.0))
                .collect(),
        };
        let scored = alphas.len() > 1;
        // Leave-one-out rows: all, or an even stride through them.
        let loo: Vec<usize> = (0..n).step_by(n.div_ceil(LOO_ROWS).max(1)).collect();
        let mut best: Option<(f64, Vec<f64>)> = None;
        if p <= n {
            let mut gram = vec![0.0; p * p];
            let mut b = vec![0.0; p];
            for (zi, yi) in z.iter().zip(&yc) {
                for r in 0..p {
                    b[r] += zi[r] * yi;
                    for c in 0..=r {
                        gram[r * p + c] += zi[r] * zi[c];
                    }
                }
            }
            for r in 0..p {
                for c in 0..r {
                    gram[c * p + r] = gram[r * p + c];
                }
            }
            for &alpha in &alphas {
                let mut a = gram.clone();
                for r in 0..p {
                    a[r * p + r] += alpha;
                }
                cholesky(&mut a, p);
                let mut w = b.clone();
                solve_factored(&a, &mut w, p);
                let err = if scored {
                    // h_ii = |L⁻¹ z_i|² + 1/n (the intercept), LOO residual r_i / (1 − h_ii).
                    let mut u = vec![0.0; p];
                    loo.iter()
                        .map(|&i| {
                            u.copy_from_slice(&z[i]);
                            forward(&a, &mut u, p);
                            let h = u.iter().map(|v| v * v).sum::<f64>() + 1.0 / n as f64;
                            let r = yc[i] - z[i].iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
                            (r / (1.0 - h).max(1e-9)).powi(2)
                        })
                        .sum::<f64>()
                } else {
                    0.0
                };
                if best.as_ref().is_none_or(|(e, _)| err < *e) {
                    best = Some((err, w));
                }
            }
        } else {
            let mut gram = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let d: f64 = z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum();
                    gram[i * n + j] = d;
                    gram[j * n + i] = d;
                }
            }
            for &alpha in &alphas {
                let mut k = gram.clone();
                for i in 0..n {
                    k[i * n + i] += alpha;
                }
                cholesky(&mut k, n);
                let mut c = yc.clone();
                solve_factored(&k, &mut c, n);
                let err = if scored {
                    // Fitted = K₀ c = y − α c, so the residual is α c_i; h_ii = 1 − α (K⁻¹)_ii
                    // + 1/n, with (K⁻¹)_ii = |L⁻¹ e_i|².
                    let mut u = vec![0.0; n];
                    loo.iter()
                        .map(|&i| {
                            u.iter_mut().for_each(|v| *v = 0.0);
                            u[i] = 1.0;
                            forward(&k, &mut u, n);
                            let kii = u.iter().map(|v| v * v).sum::<f64>();
                            let h = 1.0 - alpha * kii + 1.0 / n as f64;
                            (alpha * c[i] / (1.0 - h).max(1e-9)).powi(2)
                        })
                        .sum::<f64>()
                } else {
                    0.0
                };
                if best.as_ref().is_none_or(|(e, _)| err < *e) {
                    let w = (0..p)
                        .map(|f| (0..n).map(|i| z[i][f] * c[i]).sum())
                        .collect();
                    best = Some((err, w));
                }
            }
        }
        m.weights = vec![best.map_or_else(|| vec![0.0; p], |(_, w)| w)];
        m.bias = vec![ybar];
        m
    }

    /// Logistic regression by Newton's method: minimize `Σ logloss + alpha/2 · |w|²` (bias not
    /// penalized). Two classes: one logit for class 1; more: one-vs-rest logits.
    pub fn fit_logistic(
        x: ArrayView2<f64>,
        y: &[usize],
        n_classes: usize,
        alpha: f64,
        inputs: &[InputKind],
    ) -> Linear {
        let (mut m, z) = Self::prepare(x, inputs, false);
        let targets: Vec<usize> = if n_classes == 2 {
            vec![1]
        } else {
            (0..n_classes).collect()
        };
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for c in targets {
            let t: Vec<f64> = y.iter().map(|&v| (v == c) as u8 as f64).collect();
            let (w, b) = newton_logistic(&z, &t, alpha.max(1e-6));
            weights.push(w);
            bias.push(b);
        }
        m.weights = weights;
        m.bias = bias;
        m
    }
}

fn newton_logistic(z: &[Vec<f64>], t: &[f64], alpha: f64) -> (Vec<f64>, f64) {
    let p = z.first().map_or(0, |r| r.len());
    let d = p + 1; // last coordinate is the bias
    let mut w = vec![0.0; d];
    for _ in 0..50 {
        let mut grad = vec![0.0; d];
        let mut hess = vec![0.0; d * d];
        for (zi, &ti) in z.iter().zip(t) {
            let s = w[p] + zi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
            let pr = 1.0 / (1.0 + (-s).exp());
            let r = pr - ti;
            let h = (pr * (1.0 - pr)).max(1e-10);
            for a in 0..d {
                let za = if a < p { zi[a] } else { 1.0 };
                grad[a] += r * za;
                for b in 0..=a {
                    let zb = if b < p { zi[b] } else { 1.0 };
                    hess[a * d + b] += h * za * zb;
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                hess[b * d + a] = hess[a * d + b];
            }
            let reg = if a < p { alpha } else { 1e-8 };
            grad[a] += reg * w[a];
            hess[a * d + a] += reg;
        }
        solve_spd(&mut hess, &mut grad, d);
        let mut step = 0.0f64;
        for (wa, ga) in w.iter_mut().zip(&grad) {
            *wa -= ga;
            step = step.max(ga.abs());
        }
        if step < 1e-8 {
            break;
        }
    }
    let b = w.pop().unwrap_or(0.0);
    (w, b)
}

/// Skewness (third standardized moment) of `n` values; 0 for a constant.
fn skewness(v: impl Iterator<Item = f64> + Clone, n: usize) -> f64 {
    let n = n.max(1) as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.clone().map(|a| (a - m).powi(2)).sum::<f64>() / n;
    if var <= 1e-24 {
        return 0.0;
    }
    v.map(|a| (a - m).powi(3)).sum::<f64>() / n / var.powf(1.5)
}

/// Solve `A x = b` for symmetric positive definite `A` (n × n, row-major) by Cholesky, in place:
/// `b` becomes `x`. A pivot that is not positive is floored, so the solve never fails.
pub fn solve_spd(a: &mut [f64], b: &mut [f64], n: usize) {
    cholesky(a, n);
    solve_factored(a, b, n);
}

/// `L` of `A = L Lᵀ` in the lower triangle of `a` (the upper triangle is left as it was).
fn cholesky(a: &mut [f64], n: usize) {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
}

/// `b ← L⁻¹ b` for the factor `L` that [`cholesky`] left in `a`.
fn forward(a: &[f64], b: &mut [f64], n: usize) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
}

/// `b ← A⁻¹ b` for the factor `L` that [`cholesky`] left in `a`.
fn solve_factored(a: &[f64], b: &mut [f64], n: usize) {
    forward(a, b, n);
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cholesky_by_hand() {
        // [[4, 2], [2, 3]] x = [2, 5] → x = [-0.5, 2] (4·-0.5 + 2·2 = 2; 2·-0.5 + 3·2 = 5).
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 5.0];
        solve_spd(&mut a, &mut b, 2);
        assert!(
            (b[0] + 0.5).abs() < 1e-12 && (b[1] - 2.0).abs() < 1e-12,
            "{b:?}"
        );
    }

    #[test]
    fn ridge_by_hand() {
        // x = -1, 0, 1 (mean 0, population sd √(2/3)), y = 0, 1, 2: z = x/√(2/3), Σz² = 3,
        // Σz·(y − 1) = 2/√(2/3). With alpha 1: w = (2/√(2/3)) / 4, so the slope in x is
        // w/√(2/3) = 2 / (4 · 2/3) = 0.75 and the prediction at x = 1 is 1 + 0.75.
        let x = array![[-1.0], [0.0], [1.0]];
        let m = Linear::fit_ridge(x.view(), &[0.0, 1.0, 2.0], Some(1.0), &[]);
        let mut out = [0.0];
        m.raw_row(&[1.0], &mut out);
        assert!((out[0] - 1.75).abs() < 1e-12, "{out:?}");
    }

    #[test]
    fn dual_solution_meets_normal_equations() {
        // 2 rows, 3 columns: the dual path. Its weights must solve (ZᵀZ + αI) w = Zᵀ(y − ȳ);
        // every standardized column here is ±1, so z = ±1 and the check is easy to read.
        let x = array![[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]];
        let m = Linear::fit_ridge(x.view(), &[1.0, 3.0], Some(0.5), &[]);
        let z = [[-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]];
        let yc = [-1.0, 1.0];
        let w = &m.weights[0];
        for a in 0..3 {
            let lhs: f64 = (0..3)
                .map(|b| (z[0][a] * z[0][b] + z[1][a] * z[1][b]) * w[b])
                .sum::<f64>()
                + 0.5 * w[a];
            let rhs = z[0][a] * yc[0] + z[1][a] * yc[1];
            assert!((lhs - rhs).abs() < 1e-9, "{lhs} {rhs}");
        }
        assert_eq!(m.bias[0], 2.0);
    }

    #[test]
    fn logistic_separates() {
        let x = array![[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]];
        let m = Linear::fit_logistic(x.view(), &[0, 0, 0, 1, 1, 1], 2, 0.1, &[]);
        let (mut lo, mut hi) = ([0.0], [0.0]);
        m.raw_row(&[0.0], &mut lo);
        m.raw_row(&[5.0], &mut hi);
        assert!(lo[0] < 0.0 && hi[0] > 0.0);
    }

    #[test]
    fn inputs_are_clamped_to_the_training_range_and_skewed_ones_logged() {
        // y = 2x on x in 0..=9 (not skewed): beyond 9 the line stays at its value at 9.
        let x = ndarray::Array2::from_shape_fn((10, 1), |(i, _)| i as f64);
        let y: Vec<f64> = (0..10).map(|i| 2.0 * i as f64).collect();
        let m = Linear::fit_ridge(x.view(), &y, Some(1e-8), &[]);
        let (mut at9, mut at90) = ([0.0], [0.0]);
        m.raw_row(&[9.0], &mut at9);
        m.raw_row(&[90.0], &mut at90);
        assert!((at9[0] - 18.0).abs() < 1e-6, "{at9:?}");
        assert_eq!(at9, at90);
        assert!(!m.log[0]);
        // 1, 1, 1, 1, 100: skewness 1.5 > 0.75 and non-negative, so fitted on ln(1 + x).
        let x = array![[1.0], [1.0], [1.0], [1.0], [100.0]];
        let m = Linear::fit_ridge(x.view(), &[0.0, 0.0, 0.0, 0.0, 1.0], None, &[]);
        assert!(m.log[0]);
        assert_eq!((m.lo[0], m.hi[0]), (1.0, 100.0));
    }

    #[test]
    fn ridge_clamps_measured_inputs_to_tukeys_fences_and_logistic_to_extremes() {
        // 0..=199 and one row at 10,000: 201 rows, quartiles 50 and 150 (ranks 50 and 150),
        // fences 50 − 150 = −100 (below the minimum, so 0 stays) and 150 + 150 = 300.
        let mut v: Vec<f64> = (0..200).map(f64::from).collect();
        v.push(10_000.0);
        let x = ndarray::Array2::from_shape_vec((v.len(), 1), v.clone()).unwrap();
        let y: Vec<f64> = v.iter().map(|a| a.min(199.0)).collect();
        let m = Linear::fit_ridge(x.view(), &y, Some(1e-8), &[]);
        assert_eq!((m.lo[0], m.hi[0]), (0.0, 300.0));
        // Clamped before the skewness test: 0..=199 and 300 is not skewed, up to 10,000 would be.
        assert!(!m.log[0]);
        let classes: Vec<usize> = v.iter().map(|&a| usize::from(a >= 100.0)).collect();
        let m = Linear::fit_logistic(x.view(), &classes, 2, 1.0, &[]);
        assert_eq!((m.lo[0], m.hi[0]), (0.0, 10_000.0));
        // Evenly spread values have nothing beyond the fences; mostly zeros (quartiles equal)
        // keep their rare values.
        let spread = ndarray::Array2::from_shape_fn((100, 2), |(i, f)| {
            if f == 0 {
                i as f64
            } else {
                f64::from(u8::from(i % 10 == 0)) * 50.0
            }
        });
        let y: Vec<f64> = (0..100).map(f64::from).collect();
        let m = Linear::fit_ridge(spread.view(), &y, Some(1.0), &[]);
        assert_eq!(
            (m.lo.clone(), m.hi.clone()),
            (vec![0.0, 0.0], vec![99.0, 50.0])
        );
    }

    #[test]
    fn a_code_is_only_centred() {
        // Column 0 a code (skewed, non-negative: a measured input would be logged), column 1
        // the same values measured: the code keeps its units and its full range.
        let codes = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0];
        let x = ndarray::Array2::from_shape_fn((codes.len(), 2), |(i, _)| codes[i]);
        let y: Vec<f64> = codes.to_vec();
        let m = Linear::fit_ridge(x.view(), &y, None, &[InputKind::Code, InputKind::Measured]);
        assert!(!m.log[0] && m.log[1]);
        assert_eq!((m.mean[0], m.scale[0]), (1.2, 1.0));
        assert_eq!((m.lo[0], m.hi[0]), (1.0, 3.0));
        assert!(m.scale[1] != 1.0);
    }
}
