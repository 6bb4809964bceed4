//! Early stopping, lockstep folds and cross-validated rounds, against plain fits.

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
/// Three folds of `data(n)`: the fold's fit rows first, then its held-out rows.
fn cv_folds(n: usize) -> Vec<(Array2<f64>, Vec<f64>, usize)> {
    let (x, y) = data(n);
    (0..3)
        .map(|f| {
            let (fit, held): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % 3 != f);
            let order: Vec<usize> = fit.iter().chain(&held).copied().collect();
            let xs = x.select(ndarray::Axis(0), &order);
            let ys = order.iter().map(|&i| y[i]).collect();
            (xs, ys, fit.len())
        })
        .collect()
}

fn run_cv(
    cfg: &ModelConfig,
    folds: &[(Array2<f64>, Vec<f64>, usize)],
    threads: usize,
) -> (usize, Vec<Boosted<()>>) {
    let specs = folds
        .iter()
        .map(|(x, y, n_fit)| CvFold {
            x: x.view(),
            loss: Loss::Squared(y),
            fit_rows: (0..*n_fit as u32).collect(),
            held_rows: (*n_fit as u32..y.len() as u32).collect(),
            start: None,
        })
        .collect();
    cv_boosted(cfg, specs, threads)
}

#[test]
fn cross_validated_rounds_stop_together_and_match_one_fold_alone() {
    let folds = cv_folds(600);
    let cfg = ModelConfig {
        n_rounds: 3000,
        learning_rate: Some(0.3),
        n_iter_no_change: 5,
        threads: Some(1),
        ..Default::default()
    };
    let (r, models) = run_cv(&cfg, &folds, 1);
    assert!(r > 5 && r < 3000, "stopped after {r} rounds");
    assert!(
        models.iter().all(|m| m.1.len() == r),
        "every fold cut to {r}"
    );
    // Folds on two threads: the same bits.
    assert_eq!(run_cv(&cfg, &folds, 2), (r, models.clone()));
    // A fold's run is the plain fit of its fit rows (bins from them too), cut to `r`.
    let (x, y, n_fit) = &folds[0];
    let fit_x = x.slice(ndarray::s![..*n_fit, ..]);
    let alone = fit_boosted(
        &ModelConfig {
            n_rounds: r,
            n_iter_no_change: 0,
            ..cfg.clone()
        },
        fit_x,
        Loss::Squared(&y[..*n_fit]),
    );
    assert_eq!((models[0].0.clone(), models[0].1.clone()), alone);
    // Off: every round.
    let off = ModelConfig {
        n_rounds: 40,
        n_iter_no_change: 0,
        ..cfg
    };
    assert_eq!(run_cv(&off, &folds, 1).0, 40);
}
