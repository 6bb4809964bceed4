//! The weak learners behind linfa's `Fit` / `Predict` traits: `LearnerParams` fits a `Regressor`
//! (on `Array1<f64>` targets) or a `Classifier` (on class indices `Array1<usize>`); both predict
//! through linfa's `PredictInplace`, hence `Predict`. Inputs are the dense, imputed matrices the
//! preprocessing produces.

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use super::boost::{cv_boosted, fit_boosted, fit_boosted_from, CvFold, Loss, Start};
use super::config::{Kind, ModelConfig};
use super::error::{MlError, Result};
use super::linear::{InputKind, Linear};
use super::linfa_tree;
use super::par::{self, mix};
use super::tree::{grow, BinnedData, GrowParams, Tree};

/// Fitted model: raw outputs per row (`n_outputs` of them). Regression: the prediction.
/// Classification: class scores whose argmax is the class, or one logit for two classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Model {
    /// Sum of trees plus a base score (a single tree or a forest has base 0 and pre-scaled leaves).
    Trees {
        base: Vec<f64>,
        trees: Vec<Tree>,
    },
    Linear(Linear),
    /// A linear model plus boosted trees fitted from its outputs (`kind = "hybrid"`).
    Hybrid {
        linear: Linear,
        trees: Vec<Tree>,
    },
}

impl Model {
    pub fn n_outputs(&self) -> usize {
        match self {
            Model::Trees { base, .. } => base.len(),
            Model::Linear(l) | Model::Hybrid { linear: l, .. } => l.n_outputs(),
        }
    }

    /// Raw outputs of one row into `out` (length `n_outputs`).
    #[inline]
    pub fn raw_row(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Model::Trees { base, trees } => {
                out.copy_from_slice(base);
                for t in trees {
                    t.add_to(x, out);
                }
            }
            Model::Linear(l) => l.raw_row(x, out),
            Model::Hybrid { linear, trees } => {
                linear.raw_row(x, out);
                for t in trees {
                    t.add_to(x, out);
                }
            }
        }
    }
}

/// Hyperparameters as a linfa-style parameter set, with how a linear model takes each input
/// column (empty: every column measured).
#[derive(Debug, Clone)]
pub struct LearnerParams {
    pub config: ModelConfig,
    pub inputs: Vec<InputKind>,
}

impl LearnerParams {
    /// `config` over inputs that are all measured values.
    pub fn new(config: ModelConfig) -> LearnerParams {
        LearnerParams {
            config,
            inputs: Vec::new(),
        }
    }

    /// How a linear model takes each input column ([`InputKind`]).
    pub fn inputs(self, inputs: Vec<InputKind>) -> LearnerParams {
        LearnerParams { inputs, ..self }
    }
}

/// A fitted regression learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regressor {
    pub model: Model,
    pub n_features: usize,
}

/// A fitted classification learner over classes `0..n_classes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    pub model: Model,
    pub n_features: usize,
    pub n_classes: usize,
}

fn check_shapes(x: &ArrayView2<f64>, n_targets: usize) -> Result<()> {
    if x.nrows() != n_targets {
        return Err(linfa::Error::MismatchedShapes(x.nrows(), n_targets).into());
    }
    if x.nrows() == 0 {
        return Err(linfa::Error::NotEnoughSamples.into());
    }
    Ok(())
}

impl Fit<Array2<f64>, Array1<f64>, MlError> for LearnerParams {
    type Object = Regressor;

    fn fit(&self, ds: &DatasetBase<Array2<f64>, Array1<f64>>) -> Result<Regressor> {
        let (cfg, inputs) = (&self.config, &self.inputs[..]);
        cfg.validate()?;
        let x = ds.records.view();
        let y = ds
            .targets
            .as_slice()
            .map_or_else(|| ds.targets.to_vec(), |s| s.to_vec());
        check_shapes(&x, y.len())?;
        let model = match cfg.kind {
            Kind::Linear => Model::Linear(Linear::fit_ridge(x, &y, cfg.alpha, inputs)),
            Kind::Hybrid => hybrid(cfg, x, Loss::Squared(&y), &|rows| {
                let sub = x.select(Axis(0), &as_usize(rows));
                let ys: Vec<f64> = rows.iter().map(|&r| y[r as usize]).collect();
                Linear::fit_ridge(sub.view(), &ys, cfg.alpha, inputs)
            }),
            Kind::Tree | Kind::Forest => {
                let gh: Vec<f64> = y.iter().flat_map(|v| [-v, 1.0]).collect();
                fit_averaged_trees(cfg, x, &gh, 1, false)
            }
            Kind::Boosted => boosted(fit_boosted(cfg, x, Loss::Squared(&y))),
            Kind::LinfaTree => return Err(linfa_tree::regression_error()),
            Kind::Auto => return Err(unresolved_auto()),
        };
        Ok(Regressor {
            model,
            n_features: x.ncols(),
        })
    }
}

impl Fit<Array2<f64>, Array1<usize>, MlError> for LearnerParams {
    type Object = Classifier;

    fn fit(&self, ds: &DatasetBase<Array2<f64>, Array1<usize>>) -> Result<Classifier> {
        let (cfg, inputs) = (&self.config, &self.inputs[..]);
        cfg.validate()?;
        let x = ds.records.view();
        let y: Vec<usize> = ds.targets.iter().copied().collect();
        check_shapes(&x, y.len())?;
        let n_classes = y.iter().max().map_or(0, |m| m + 1).max(2);
        let model = match cfg.kind {
            Kind::Linear => Model::Linear(Linear::fit_logistic(
                x,
                &y,
                n_classes,
                cfg.alpha.unwrap_or(LOGISTIC_ALPHA),
                inputs,
            )),
            Kind::Hybrid => hybrid(cfg, x, Loss::Classes(&y, n_classes), &|rows| {
                let sub = x.select(Axis(0), &as_usize(rows));
                let ys: Vec<usize> = rows.iter().map(|&r| y[r as usize]).collect();
                let alpha = cfg.alpha.unwrap_or(LOGISTIC_ALPHA);
                Linear::fit_logistic(sub.view(), &ys, n_classes, alpha, inputs)
            }),
            Kind::Tree | Kind::Forest => {
                let gh = one_hot_gradients(&y, n_classes);
                fit_averaged_trees(cfg, x, &gh, n_classes, true)
            }
            Kind::Boosted => boosted(fit_boosted(cfg, x, Loss::Classes(&y, n_classes))),
            Kind::LinfaTree => Model::Trees {
                base: vec![0.0; n_classes],
                trees: vec![linfa_tree::fit(cfg, x, &y, n_classes)?],
            },
            Kind::Auto => return Err(unresolved_auto()),
        };
        Ok(Classifier {
            model,
            n_features: x.ncols(),
            n_classes,
        })
    }
}

fn boosted((base, trees): (Vec<f64>, Vec<Tree>)) -> Model {
    Model::Trees { base, trees }
}

/// Logistic regression's L2 penalty when `alpha` is not configured.
const LOGISTIC_ALPHA: f64 = 1.0;

fn as_usize(rows: &[u32]) -> Vec<usize> {
    rows.iter().map(|&r| r as usize).collect()
}

/// `kind = "hybrid"`: boosting that starts from the raw outputs of a linear model, which
/// `fit_linear` fits on the given rows.
fn hybrid(
    cfg: &ModelConfig,
    x: ArrayView2<f64>,
    loss: Loss,
    fit_linear: &(dyn Fn(&[u32]) -> Linear + Sync),
) -> Model {
    let xs = x.as_standard_layout();
    let start = |rows: &[u32]| {
        let linear = fit_linear(rows);
        let k = linear.n_outputs();
        let mut init = vec![0.0; x.nrows() * k];
        for (row, out) in xs.rows().into_iter().zip(init.chunks_exact_mut(k)) {
            if let Some(r) = row.as_slice() {
                linear.raw_row(r, out);
            }
        }
        (linear, init)
    };
    match fit_boosted_from(cfg, x, loss, Some(&start)) {
        (_, trees, Some(linear)) => Model::Hybrid { linear, trees },
        // Only when the start's outputs did not fit the loss: boosting from a constant.
        (base, trees, None) => Model::Trees { base, trees },
    }
}

/// Labels of a cross-validation fold (fit and held-out rows), as the learner sees them.
pub enum FoldLabels {
    Regression(Vec<f64>),
    /// Class codes and the number of classes.
    Classes(Vec<usize>, usize),
}

/// A fold of [`fit_cv_boosting`]: the fold's fit rows then its held-out rows, preprocessed as
/// fitted on the fit rows; `held` the held-out rows that count (classification: those whose
/// class the fit rows have).
pub struct BoostFold {
    pub x: Array2<f64>,
    /// How the line of `hybrid` takes each column of `x`.
    pub inputs: Vec<InputKind>,
    pub y: FoldLabels,
    pub n_fit: usize,
    pub held: Vec<u32>,
}

/// `boosted` or `hybrid` cross-validated with one run per fold in lockstep ([`cv_boosted`]):
/// the round count that did best over every fold's held-out rows, and each fold's model.
pub fn fit_cv_boosting(
    cfg: &ModelConfig,
    folds: &[BoostFold],
    threads: usize,
) -> Result<(usize, Vec<Model>)> {
    cfg.validate()?;
    let hybrid_kind = match cfg.kind {
        Kind::Boosted => false,
        Kind::Hybrid => true,
        k => {
            return Err(MlError::Config(format!(
                "cross-validated boosting of kind {:?}",
                k.name()
            )))
        }
    };
    type FitStart<'a> = Box<dyn Fn(&[u32]) -> (Linear, Vec<f64>) + Sync + 'a>;
    let mut starts: Vec<FitStart> = Vec::new();
    for f in folds {
        let x = f.x.view();
        let n_labels = match &f.y {
            FoldLabels::Regression(y) => y.len(),
            FoldLabels::Classes(y, _) => y.len(),
        };
        check_shapes(&x, n_labels)?;
        let (y, inputs) = (&f.y, &f.inputs[..]);
        starts.push(Box::new(move |rows: &[u32]| {
            let sub = x.select(Axis(0), &as_usize(rows));
            let linear = match y {
                FoldLabels::Regression(y) => {
                    let ys: Vec<f64> = rows.iter().map(|&r| y[r as usize]).collect();
                    Linear::fit_ridge(sub.view(), &ys, cfg.alpha, inputs)
                }
                FoldLabels::Classes(y, c) => {
                    let ys: Vec<usize> = rows.iter().map(|&r| y[r as usize]).collect();
                    let alpha = cfg.alpha.unwrap_or(LOGISTIC_ALPHA);
                    Linear::fit_logistic(sub.view(), &ys, *c, alpha, inputs)
                }
            };
            (linear.clone(), raw_all(&Model::Linear(linear), x))
        }));
    }
    let specs = folds
        .iter()
        .zip(&starts)
        .map(|(f, start)| CvFold {
            x: f.x.view(),
            loss: match &f.y {
                FoldLabels::Regression(y) => Loss::Squared(y),
                FoldLabels::Classes(y, c) => Loss::Classes(y, *c),
            },
            fit_rows: (0..f.n_fit as u32).collect(),
            held_rows: f.held.clone(),
            start: hybrid_kind.then_some(&**start as Start<Linear>),
        })
        .collect();
    let (rounds, fitted) = cv_boosted(cfg, specs, threads);
    let models = fitted
        .into_iter()
        .map(|(base, trees, started)| match started {
            Some(linear) => Model::Hybrid { linear, trees },
            None => Model::Trees { base, trees },
        })
        .collect();
    Ok((rounds, models))
}

/// Raw outputs of `model` for every row of `x` (`rows × outputs`).
fn raw_all(model: &Model, x: ArrayView2<f64>) -> Vec<f64> {
    let k = model.n_outputs();
    let xs = x.as_standard_layout();
    let mut out = vec![0.0; x.nrows() * k];
    for (row, o) in xs.rows().into_iter().zip(out.chunks_exact_mut(k)) {
        if let Some(r) = row.as_slice() {
            model.raw_row(r, o);
        }
    }
    out
}

/// `kind = "auto"` is resolved by the pipeline before any learner is fitted.
fn unresolved_auto() -> MlError {
    MlError::Config("model.kind = \"auto\" must be resolved by Pipeline::fit".into())
}

/// Gradients of a classification tree: `g = −onehot(y)`, `h = 1`, interleaved per row.
pub(crate) fn one_hot_gradients(y: &[usize], k: usize) -> Vec<f64> {
    let mut gh = vec![0.0; y.len() * 2 * k];
    for (i, &c) in y.iter().enumerate() {
        let row = &mut gh[i * 2 * k..(i + 1) * 2 * k];
        row[c] = -1.0;
        row[k..].iter_mut().for_each(|h| *h = 1.0);
    }
    gh
}

/// One tree (`kind = tree`) or a bagged forest: leaves hold means / class frequencies, pre-divided
/// by the number of trees so the sum is the average.
fn fit_averaged_trees(
    cfg: &ModelConfig,
    x: ArrayView2<f64>,
    gh: &[f64],
    k: usize,
    classify: bool,
) -> Model {
    let n = x.nrows();
    let threads = par::resolve_threads(cfg.threads);
    let data = BinnedData::new(x, cfg.max_bins, threads);
    let forest = cfg.kind == Kind::Forest;
    let n_trees = if forest { cfg.n_trees } else { 1 };
    let p = data.n_features().max(1) as f64;
    let colsample = if forest {
        Some(
            cfg.colsample
                .unwrap_or(if classify { p.sqrt() / p } else { 1.0 / 3.0 }),
        )
    } else {
        None
    };
    let params = GrowParams {
        max_depth: cfg.depth(),
        max_leaves: cfg.max_leaf_nodes.unwrap_or(usize::MAX),
        min_samples_leaf: cfg.min_leaf(),
        lambda: 0.0,
        min_child_weight: 0.0,
        shrinkage: 1.0 / n_trees as f64,
        features: None,
        node_colsample: colsample,
        // A forest spends its threads on whole trees; a single tree on its histograms.
        threads: if forest { 1 } else { threads },
    };
    // Each tree draws from its own stream: the forest is the same for any thread count.
    let trees = par::map(n_trees, if forest { threads } else { 1 }, |t| {
        let mut rng = ChaCha12Rng::seed_from_u64(mix(cfg.seed, t as u64));
        let mut rows: Vec<u32> = if forest {
            use rand::Rng;
            // Bootstrap as counts, then the sorted index list (no sort of n draws).
            let mut counts = vec![0u32; n];
            for _ in 0..n {
                counts[rng.gen_range(0..n)] += 1;
            }
            let mut r = Vec::with_capacity(n);
            for (i, c) in counts.iter().enumerate() {
                r.extend(std::iter::repeat_n(i as u32, *c as usize));
            }
            r
        } else {
            (0..n as u32).collect()
        };
        grow(&data, gh, k, &mut rows, &params, &mut rng).tree
    });
    Model::Trees {
        base: vec![0.0; k],
        trees,
    }
}

fn predict_raw(model: &Model, x: &Array2<f64>, mut each: impl FnMut(usize, &[f64])) {
    let mut out = vec![0.0; model.n_outputs()];
    let xs = x.as_standard_layout();
    for (i, row) in xs.rows().into_iter().enumerate() {
        if let Some(r) = row.as_slice() {
            model.raw_row(r, &mut out);
            each(i, &out);
        }
    }
}

impl PredictInplace<Array2<f64>, Array1<f64>> for Regressor {
    fn predict_inplace(&self, x: &Array2<f64>, y: &mut Array1<f64>) {
        predict_raw(&self.model, x, |i, out| y[i] = out[0]);
    }

    fn default_target(&self, x: &Array2<f64>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

/// Class of a raw output vector: the sign of a single logit, else the first argmax.
pub fn decide(out: &[f64]) -> usize {
    if out.len() == 1 {
        return (out[0] > 0.0) as usize;
    }
    let mut best = 0;
    for (j, v) in out.iter().enumerate() {
        if *v > out[best] {
            best = j;
        }
    }
    best
}

impl PredictInplace<Array2<f64>, Array1<usize>> for Classifier {
    fn predict_inplace(&self, x: &Array2<f64>, y: &mut Array1<usize>) {
        predict_raw(&self.model, x, |i, out| y[i] = decide(out));
    }

    fn default_target(&self, x: &Array2<f64>) -> Array1<usize> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use linfa::Dataset;

    fn xor_like(n: usize) -> (Array2<f64>, Vec<f64>, Vec<usize>) {
        let x = Array2::from_shape_fn((n, 3), |(i, j)| ((i * (j + 3) * 7919) % 101) as f64 / 10.0);
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| 2.0 * r[0] + if r[1] > 5.0 { 10.0 } else { 0.0 })
            .collect();
        let c: Vec<usize> = x
            .rows()
            .into_iter()
            .map(|r| ((r[0] > 5.0) ^ (r[1] > 5.0)) as usize)
            .collect();
        (x, y, c)
    }

    fn rmse(a: &[f64], b: &[f64]) -> f64 {
        (a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
    }

    #[test]
    fn every_kind_learns_regression() {
        let (x, y, _) = xor_like(400);
        let sd = rmse(&y, &vec![y.iter().sum::<f64>() / 400.0; 400]);
        for kind in [Kind::Tree, Kind::Forest, Kind::Boosted, Kind::Linear] {
            let cfg = ModelConfig {
                kind,
                n_trees: 20,
                n_rounds: 100,
                ..Default::default()
            };
            let ds = Dataset::new(x.clone(), Array1::from(y.clone()));
            let m = LearnerParams::new(cfg).fit(&ds).unwrap();
            let p: Array1<f64> = m.predict(&x);
            let e = rmse(p.as_slice().unwrap(), &y);
            assert!(e < 0.5 * sd, "{kind:?}: rmse {e} vs sd {sd}");
        }
    }

    #[test]
    fn trees_learn_xor_classes() {
        let (x, _, c) = xor_like(400);
        for kind in [Kind::Tree, Kind::Forest, Kind::Boosted, Kind::LinfaTree] {
            let cfg = ModelConfig {
                kind,
                n_trees: 20,
                n_rounds: 100,
                ..Default::default()
            };
            let ds = Dataset::new(x.clone(), Array1::from(c.clone()));
            let m = LearnerParams::new(cfg).fit(&ds).unwrap();
            let p: Array1<usize> = m.predict(&x);
            let acc = p.iter().zip(&c).filter(|(a, b)| a == b).count() as f64 / 400.0;
            assert!(acc > 0.9, "{kind:?}: accuracy {acc}");
        }
    }

    #[test]
    fn multiclass_boosting() {
        let (x, _, _) = xor_like(300);
        let c: Vec<usize> = x
            .rows()
            .into_iter()
            .map(|r| (r[0] / 3.5) as usize)
            .collect();
        let ds = Dataset::new(x.clone(), Array1::from(c.clone()));
        let m = LearnerParams::new(ModelConfig {
            kind: Kind::Boosted,
            n_rounds: 60,
            ..Default::default()
        })
        .fit(&ds)
        .unwrap();
        assert_eq!(m.n_classes, 3);
        let p: Array1<usize> = m.predict(&x);
        let acc = p.iter().zip(&c).filter(|(a, b)| a == b).count() as f64 / 300.0;
        assert!(acc > 0.95, "accuracy {acc}");
    }

    #[test]
    fn decide_breaks_ties_to_first_class() {
        assert_eq!(decide(&[0.5, 0.5]), 0);
        assert_eq!(decide(&[0.2, 0.5, 0.5]), 1);
        assert_eq!(decide(&[0.0]), 0);
        assert_eq!(decide(&[0.1]), 1);
    }
}
