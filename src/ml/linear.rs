//! Ridge regression and L2-regularized logistic regression (one-vs-rest for more than two
//! classes), on features standardized with the training mean and standard deviation. Regularized
//! always: plain least squares explodes on small shards with more one-hot columns than rows.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// Fitted linear model: `out[j] = bias[j] + Σ_f w[j][f] · (x[f] − mean[f]) / scale[f]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

impl Linear {
    pub fn n_outputs(&self) -> usize {
        self.bias.len()
    }

    #[inline]
    pub fn raw_row(&self, x: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            let w = &self.weights[j];
            let mut s = self.bias[j];
            for f in 0..w.len() {
                s += w[f] * (x[f] - self.mean[f]) / self.scale[f];
            }
            *o = s;
        }
    }

    fn standardize(x: ArrayView2<f64>) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
        let (n, p) = x.dim();
        let mut mean = vec![0.0; p];
        let mut scale = vec![1.0; p];
        for f in 0..p {
            let c = x.column(f);
            let m = c.sum() / n as f64;
            let v = c.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n as f64;
            mean[f] = m;
            scale[f] = if v > 1e-12 { v.sqrt() } else { 1.0 };
        }
        let z = (0..n)
            .map(|i| (0..p).map(|f| (x[[i, f]] - mean[f]) / scale[f]).collect())
            .collect();
        (mean, scale, z)
    }

    /// Ridge: minimize `Σ (y − b − w·z)² + alpha · |w|²`. Solved in the primal (p × p) or, with
    /// more columns than rows, the dual (n × n) system.
    pub fn fit_ridge(x: ArrayView2<f64>, y: &[f64], alpha: f64) -> Linear {
        let (mean, scale, z) = Self::standardize(x);
        let (n, p) = x.dim();
        let ybar = y.iter().sum::<f64>() / n as f64;
        let yc: Vec<f64> = y.iter().map(|v| v - ybar).collect();
        let alpha = alpha.max(1e-8);
        let w = if p <= n {
            let mut a = vec![0.0; p * p];
            let mut b = vec![0.0; p];
            for (zi, yi) in z.iter().zip(&yc) {
                for r in 0..p {
                    b[r] += zi[r] * yi;
                    for c in 0..=r {
                        a[r * p + c] += zi[r] * zi[c];
                    }
                }
            }
            for r in 0..p {
                for c in 0..r {
                    a[c * p + r] = a[r * p + c];
                }
                a[r * p + r] += alpha;
            }
            solve_spd(&mut a, &mut b, p);
            b
        } else {
            let mut k = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let d: f64 = z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum();
                    k[i * n + j] = d;
                    k[j * n + i] = d;
                }
                k[i * n + i] += alpha;
            }
            let mut c = yc.clone();
            solve_spd(&mut k, &mut c, n);
            (0..p)
                .map(|f| (0..n).map(|i| z[i][f] * c[i]).sum())
                .collect()
        };
        Linear {
            mean,
            scale,
            weights: vec![w],
            bias: vec![ybar],
        }
    }

    /// Logistic regression by Newton's method: minimize `Σ logloss + alpha/2 · |w|²` (bias not
    /// penalized). Two classes: one logit for class 1; more: one-vs-rest logits.
    pub fn fit_logistic(x: ArrayView2<f64>, y: &[usize], n_classes: usize, alpha: f64) -> Linear {
        let (mean, scale, z) = Self::standardize(x);
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
        Linear {
            mean,
            scale,
            weights,
            bias,
        }
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

/// Solve `A x = b` for symmetric positive definite `A` (n × n, row-major) by Cholesky, in place:
/// `b` becomes `x`. A pivot that is not positive is floored, so the solve never fails.
pub fn solve_spd(a: &mut [f64], b: &mut [f64], n: usize) {
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
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
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
        let m = Linear::fit_ridge(x.view(), &[0.0, 1.0, 2.0], 1.0);
        let mut out = [0.0];
        m.raw_row(&[1.0], &mut out);
        assert!((out[0] - 1.75).abs() < 1e-12, "{out:?}");
    }

    #[test]
    fn dual_solution_meets_normal_equations() {
        // 2 rows, 3 columns: the dual path. Its weights must solve (ZᵀZ + αI) w = Zᵀ(y − ȳ);
        // every standardized column here is ±1, so z = ±1 and the check is easy to read.
        let x = array![[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]];
        let m = Linear::fit_ridge(x.view(), &[1.0, 3.0], 0.5);
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
        let m = Linear::fit_logistic(x.view(), &[0, 0, 0, 1, 1, 1], 2, 0.1);
        let (mut lo, mut hi) = ([0.0], [0.0]);
        m.raw_row(&[0.0], &mut lo);
        m.raw_row(&[5.0], &mut hi);
        assert!(lo[0] < 0.0 && hi[0] > 0.0);
    }
}
