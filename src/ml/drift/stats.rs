//! The tests behind the drift rules, each returning a p-value: two-sample Kolmogorov–Smirnov,
//! Pearson's chi-square test of homogeneity on binned counts, the one-sided Mann–Whitney rank test,
//! the one-sided Fisher exact test on two error counts, and Holm's step-down correction for testing
//! many features at once. Also PSI, the effect size reported next to the p-values.

/// Bin shares below this are raised to it before the PSI's logarithm.
pub const PSI_EPSILON: f64 = 1e-4;

/// Bins whose expected count (under "same distribution") is below this are merged before the
/// chi-square test: the chi-square approximation is poor for sparser cells and overstates
/// significance, i.e. it would raise false alarms on rare categories.
pub const MIN_EXPECTED: f64 = 5.0;

/// Population stability index `Σ (q − p) · ln(q / p)` of new shares `q` against reference shares
/// `p` (same bins, same order); shares below [`PSI_EPSILON`] are raised to it.
pub fn psi(reference: &[f64], new: &[f64]) -> f64 {
    reference
        .iter()
        .zip(new)
        .map(|(&p, &q)| {
            let (p, q) = (p.max(PSI_EPSILON), q.max(PSI_EPSILON));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov statistic `D = sup |F_a − F_b|` of two sorted samples (None when
/// one is empty).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        let at = (i, j);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        if (i, j) == at {
            // Only NaN is left on both sides (a reference read from a damaged file): nothing
            // more to compare, and no step would move.
            break;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    Some(d)
}

/// Survival function of the Kolmogorov distribution, `Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} e^{−2 j² λ²}`
/// (for λ < 1.18 the equivalent theta-function series, which converges fast there).
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // Q = 1 − √(2π)/λ Σ_{j≥1} exp(−(2j−1)² π² / (8 λ²))
        let c = std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let s: f64 = (1..=8)
            .map(|j| {
                let k = (2 * j - 1) as f64;
                (-k * k * c).exp()
            })
            .sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s).clamp(0.0, 1.0)
    } else {
        let s: f64 = (1..=100)
            .map(|j| {
                let j = j as f64;
                let sign = if j as u64 % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * j * j * lambda * lambda).exp()
            })
            .sum();
        (2.0 * s).clamp(0.0, 1.0)
    }
}

/// Asymptotic p-value of a two-sample KS statistic `d` for sample sizes `n`, `m`, with Stephens'
/// small-sample correction: `Q((√nₑ + 0.12 + 0.11/√nₑ) · d)`, `nₑ = n·m/(n+m)`. With ties
/// (discrete columns) the test is conservative: fewer false alarms than the nominal rate.
pub fn ks_pvalue(d: f64, n: usize, m: usize) -> Option<f64> {
    if n == 0 || m == 0 || !d.is_finite() {
        return None;
    }
    let ne = (n as f64 * m as f64) / (n + m) as f64;
    let s = ne.sqrt();
    Some(kolmogorov_q((s + 0.12 + 0.11 / s) * d))
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s: f64 = G[0] + (1..9).map(|i| G[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// Regularized upper incomplete gamma function `Q(a, x) = Γ(a, x) / Γ(a)` (series below a + 1,
/// Lentz's continued fraction above).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 || a <= 0.0 {
        return 1.0;
    }
    let lead = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * lead.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (lead.exp() * h).clamp(0.0, 1.0)
    }
}

/// `P(χ²_df ≥ x)`.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// Complementary error function (Chebyshev fit, relative error < 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// `P(Z ≥ z)` for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Pearson's chi-square test that two samples, given as counts over the same bins, come from the
/// same distribution. Bins are first merged (smallest pooled count first) until every bin expects
/// at least [`MIN_EXPECTED`] rows on both sides. Returns `(statistic, degrees of freedom,
/// p-value)`; a single remaining bin (nothing to compare) gives p = 1.
pub fn chi2_homogeneity(a: &[f64], b: &[f64]) -> (f64, usize, f64) {
    let (na, nb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if na <= 0.0 || nb <= 0.0 {
        return (0.0, 0, 1.0);
    }
    let small = na.min(nb) / (na + nb);
    let mut bins: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x, y))
        .filter(|(x, y)| x + y > 0.0)
        .collect();
    bins.sort_by(|p, q| (p.0 + p.1).total_cmp(&(q.0 + q.1)));
    // Expected count of the smaller side in a bin = (its pooled count) × small.
    while bins.len() > 1 && (bins[0].0 + bins[0].1) * small < MIN_EXPECTED {
        let first = bins.remove(0);
        bins[0].0 += first.0;
        bins[0].1 += first.1;
        bins.sort_by(|p, q| (p.0 + p.1).total_cmp(&(q.0 + q.1)));
    }
    if bins.len() < 2 {
        return (0.0, 0, 1.0);
    }
    let n = na + nb;
    let stat: f64 = bins
        .iter()
        .map(|&(x, y)| {
            let pooled = (x + y) / n;
            let (ea, eb) = (na * pooled, nb * pooled);
            (x - ea).powi(2) / ea + (y - eb).powi(2) / eb
        })
        .sum();
    let df = bins.len() - 1;
    (stat, df, chi2_sf(stat, df as f64))
}

/// One-sided Mann–Whitney test that the values of `new` tend to be larger than those of `base`
/// (normal approximation with the tie correction and a continuity correction). Returns the
/// p-value; 1 when a sample is empty or all values tie.
pub fn mann_whitney_greater(base: &[f64], new: &[f64]) -> f64 {
    let (n1, n2) = (base.len(), new.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = base
        .iter()
        .map(|&x| (x, false))
        .chain(new.iter().map(|&x| (x, true)))
        .collect();
    all.sort_by(|p, q| p.0.total_cmp(&q.0));
    let n = all.len();
    let (mut rank_new, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        // `j` starts past `i`: a NaN error (a linear model's prediction that overflowed on
        // extreme inputs, a damaged reference file) equals nothing, not even itself, and must
        // still move the scan on.
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1..=j share their mean.
        let mid = (i + 1 + j) as f64 / 2.0;
        rank_new += mid * all[i..j].iter().filter(|e| e.1).count() as f64;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_new - n2f * (n2f + 1.0) / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = (u - n1f * n2f / 2.0 - 0.5) / var.sqrt();
    normal_sf(z)
}

/// `ln C(n, k)`.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// One-sided Fisher exact test that the error rate of the second sample (`k2` errors in `n2`) is
/// higher than that of the first (`k1` in `n1`): `P(X ≥ k2)` for X hypergeometric given the
/// total errors. Exact at any sample size.
pub fn fisher_greater(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 || k1 > n1 || k2 > n2 {
        return 1.0;
    }
    let (n, k) = (n1 + n2, k1 + k2);
    let denom = ln_choose(n, n2);
    let top = k.min(n2);
    let p: f64 = (k2..=top)
        .filter(|&x| k - x <= n1)
        .map(|x| (ln_choose(k, x) + ln_choose(n - k, n2 - x) - denom).exp())
        .sum();
    p.clamp(0.0, 1.0)
}

/// Holm's step-down adjusted p-values: rejecting where the adjusted p ≤ α keeps the chance of any
/// false rejection among all the tests ≤ α, whatever their dependence.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let a = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(a);
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn psi_of_known_distributions() {
        // (0.8−0.5)·ln(0.8/0.5) + (0.2−0.5)·ln(0.2/0.5) = 0.141001 + 0.274887
        assert!(close(psi(&[0.5, 0.5], &[0.8, 0.2]), 0.415_888_308, 1e-6));
        assert_eq!(psi(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
        // An empty reference bin counts as 1e-4: (0.5−1)·ln 0.5 + (0.5−1e-4)·ln(0.5/1e-4)
        assert!(close(psi(&[1.0, 0.0], &[0.5, 0.5]), 4.604_318_467, 1e-6));
    }

    #[test]
    fn ks_of_small_samples() {
        // After 2: F_a = 2/4, F_b = 0; after 3: 3/4 vs 1/4; after 4: 1 vs 2/4.
        assert_eq!(
            ks_statistic(&[1., 2., 3., 4.], &[3., 4., 5., 6.]),
            Some(0.5)
        );
        assert_eq!(ks_statistic(&[1., 2., 3.], &[4., 5.]), Some(1.0));
        // Ties: after 1: 2/3 vs 1/3; after 2: 1 vs 1.
        let d = ks_statistic(&[1., 1., 2.], &[1., 2., 2.]).unwrap();
        assert!(close(d, 1.0 / 3.0, 1e-12));
        assert_eq!(ks_statistic(&[1., 2.], &[1., 2.]), Some(0.0));
        assert_eq!(ks_statistic(&[], &[1.0]), None);
    }

    #[test]
    fn kolmogorov_distribution() {
        // Tabulated: K(0.5) = 0.036055, K(1) = 0.730000, K(1.3581) = 0.95.
        assert!(close(kolmogorov_q(0.5), 0.963_945, 1e-5));
        assert!(close(kolmogorov_q(1.0), 0.270_000, 1e-5));
        assert!(close(kolmogorov_q(1.3581), 0.05, 1e-4));
        // Both series agree where they switch.
        assert!(close(kolmogorov_q(1.18 - 1e-9), kolmogorov_q(1.18), 1e-8));
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert!(kolmogorov_q(5.0) < 1e-20);
        // n = m = 4, D = 0.5: nₑ = 2, λ = (√2 + 0.12 + 0.11/√2)·0.5 = 0.80599
        let p = ks_pvalue(0.5, 4, 4).unwrap();
        assert!(close(p, kolmogorov_q(0.805_994), 1e-5) && p > 0.5);
    }

    #[test]
    fn gamma_and_chi_square_tables() {
        // Γ(5) = 24, Γ(0.5) = √π.
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
        assert!(close(ln_gamma(101.0), 363.739_375_555_563_5, 1e-9));
        // χ² critical values: df 1 at 3.841459 → 0.05; df 9 at 21.665994 → 0.01;
        // df 2: P = e^{−x/2} exactly.
        assert!(close(chi2_sf(3.841_459, 1.0), 0.05, 1e-6));
        assert!(close(chi2_sf(21.665_994, 9.0), 0.01, 1e-6));
        assert!(close(chi2_sf(10.0, 2.0), (-5f64).exp(), 1e-12));
        assert!(close(chi2_sf(0.5, 30.0), 1.0, 1e-12));
        assert_eq!(chi2_sf(0.0, 3.0), 1.0);
        // Normal tail: P(Z ≥ 1.959964) = 0.025, P(Z ≥ 2.326348) = 0.01, P(Z ≥ −1) = 0.841345.
        assert!(close(normal_sf(1.959_964), 0.025, 1e-7));
        assert!(close(normal_sf(2.326_348), 0.01, 1e-7));
        assert!(close(normal_sf(-1.0), 0.841_344_746, 1e-7));
    }

    #[test]
    fn chi_square_homogeneity() {
        // 2×2: a = [30, 70], b = [50, 50]: pooled 0.4 / 0.6, expected 40/60 on each side:
        // X² = 100/40 + 100/60 + 100/40 + 100/60 = 8.3333, df 1.
        let (x, df, p) = chi2_homogeneity(&[30.0, 70.0], &[50.0, 50.0]);
        assert!(close(x, 8.333_333, 1e-5) && df == 1);
        assert!(close(p, chi2_sf(8.333_333_3, 1.0), 1e-9) && p < 0.01);
        // Same shares: X² = 0, p = 1.
        let (x, _, p) = chi2_homogeneity(&[10.0, 20.0, 30.0], &[20.0, 40.0, 60.0]);
        assert!(close(x, 0.0, 1e-12) && close(p, 1.0, 1e-12));
        // Rare bins are merged: [1, 1] expects 1 row per side, merged into the next bin.
        let (_, df, _) = chi2_homogeneity(&[1.0, 50.0, 50.0], &[1.0, 50.0, 50.0]);
        assert_eq!(df, 1);
        // Nothing left to compare.
        assert_eq!(chi2_homogeneity(&[3.0, 1.0], &[2.0, 2.0]).2, 1.0);
        assert_eq!(chi2_homogeneity(&[0.0], &[5.0]).2, 1.0);
    }

    #[test]
    fn mann_whitney_one_sided() {
        // base 1..4, new 5..8: U = 16 = n1·n2, var = 4·4·9/12 = 12, z = (16 − 8 − 0.5)/√12.
        let p = mann_whitney_greater(&[1., 2., 3., 4.], &[5., 6., 7., 8.]);
        assert!(close(p, normal_sf(7.5 / 12f64.sqrt()), 1e-12));
        // The other direction is no evidence at all.
        assert!(mann_whitney_greater(&[5., 6., 7., 8.], &[1., 2., 3., 4.]) > 0.99);
        // Ties: all equal → no information.
        assert_eq!(mann_whitney_greater(&[1.0; 5], &[1.0; 5]), 1.0);
        assert_eq!(mann_whitney_greater(&[], &[1.0]), 1.0);
    }

    #[test]
    fn nan_ends_the_scans() {
        // NaN equals nothing: a tie scan that waited for equality, or a merge that waited for
        // `<=`, never moved again. Both return, with a number.
        let p = mann_whitney_greater(&[1.0, f64::NAN, 2.0], &[f64::NAN, 3.0, f64::NAN]);
        assert!((0.0..=1.0).contains(&p), "{p}");
        let d = ks_statistic(&[1.0, f64::NAN], &[0.5, f64::NAN]).expect("two samples");
        assert!(close(d, 0.5, 1e-12), "{d}");
    }

    #[test]
    fn fisher_exact_one_sided() {
        // 1 error in 60 vs 9 in 153 (the breast-cancer example): 10 errors among 213 rows,
        // P(X ≥ 9), X ~ Hypergeometric(213, 10, 153).
        let p = fisher_greater(1, 60, 9, 153);
        let direct: f64 = (9..=10)
            .map(|x| (ln_choose(10, x) + ln_choose(203, 153 - x) - ln_choose(213, 153)).exp())
            .sum();
        assert!(close(p, direct, 1e-12));
        assert!(p > 0.05, "one mistake in 60 is no evidence: p = {p}");
        // 2×2 worked by hand: 0 of 2 vs 2 of 2: P = C(2,2)·C(2,0)/C(4,2) = 1/6.
        assert!(close(fisher_greater(0, 2, 2, 2), 1.0 / 6.0, 1e-12));
        assert_eq!(fisher_greater(3, 10, 0, 10), 1.0);
        assert!(fisher_greater(1, 100, 50, 100) < 1e-10);
    }

    #[test]
    fn holm_adjustment() {
        // Sorted 0.01, 0.02, 0.04 (m = 3): 0.03, max(0.03, 0.04), max(0.04, 0.04).
        let a = holm(&[0.04, 0.01, 0.02]);
        assert!(close(a[0], 0.04, 1e-12) && close(a[1], 0.03, 1e-12) && close(a[2], 0.04, 1e-12));
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }
}
