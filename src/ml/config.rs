//! Model settings: the `[model]` table of a node's config. `ModelConfig::default()` is the strong
//! default a user gets without configuring anything (tuned on the seed protocol, see docs/ml.md).

use serde::{Deserialize, Serialize};

use super::error::{MlError, Result};

/// Which weak learner a node trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Pick `linear`, `forest` or `boosted` by k-fold cross-validation on the training split
    /// (see `auto.rs`); the fitted pipeline records the choice.
    Auto,
    /// One CART tree.
    Tree,
    /// Bagged trees with per-split feature subsampling.
    Forest,
    /// Gradient-boosted trees (squared loss; logistic / softmax for classification).
    Boosted,
    /// A `linear` model on the tree features, then gradient-boosted trees fitted from its
    /// outputs (on its residuals, for squared loss): straight-line trends that trees can only
    /// approximate by steps, and the interactions a line cannot express.
    Hybrid,
    /// Ridge regression / L2-regularized logistic regression on one-hot, standardized features.
    Linear,
    /// One classification tree grown by the linfa-trees crate (exact splits, Gini);
    /// classification only.
    #[serde(rename = "linfa-tree")]
    LinfaTree,
}

impl Kind {
    /// The name used in config files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Auto => "auto",
            Kind::Tree => "tree",
            Kind::Forest => "forest",
            Kind::Boosted => "boosted",
            Kind::Hybrid => "hybrid",
            Kind::Linear => "linear",
            Kind::LinfaTree => "linfa-tree",
        }
    }
}

/// Transform of a regression label before fitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `log` when every label is ≥ 0 and the training labels are right-skewed (skewness > 0.75),
    /// else `identity`. Ignored for classification.
    Auto,
    Identity,
    /// Fit on `ln(1 + y)`, predict `exp(ŷ) − 1`: squared loss there is RMSLE.
    Log,
}

/// Training rows from which boosting defaults to the faster learning rate and column sample.
pub const LARGE_SHARD: usize = 50_000;

/// Feature count up to which a small shard's boosting rounds see every feature.
pub const FEW_FEATURES: usize = 16;

/// Hyperparameters. `None` means "the default of this kind" (see the field docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub kind: Kind,
    /// Tree depth limit. Default: tree and linfa-tree 6, forest unlimited (fully grown), boosted 4.
    pub max_depth: Option<usize>,
    /// Leaf limit (best-first growth). Default: unlimited.
    pub max_leaf_nodes: Option<usize>,
    /// Minimum rows in a leaf. Default: tree / forest 1, boosted 10.
    pub min_samples_leaf: Option<usize>,
    /// Forest size.
    pub n_trees: usize,
    /// Boosting rounds: the cap when early stopping is on.
    pub n_rounds: usize,
    /// Boosting early stopping: stop after this many rounds without improvement of the loss on an
    /// inner slice of the training rows (10 %, 20 % below 1,000 rows), keep the best round.
    /// 0 turns early stopping off: exactly `n_rounds` rounds on every training row.
    pub n_iter_no_change: usize,
    /// Boosting shrinkage. Default: 0.05 below [`LARGE_SHARD`] training rows, 0.1 from there (a
    /// large shard early-stops in about half the rounds at 0.1, at the same validation loss).
    pub learning_rate: Option<f64>,
    /// Boosting: fraction of rows drawn (without replacement) for each round.
    pub subsample: f64,
    /// Fraction of features considered: per split for forest (default √p / p for classification,
    /// 1/3 for regression), per round for boosted (default: every feature on a small shard with
    /// at most [`FEW_FEATURES`] features, else 0.5). Unused by tree and linear.
    pub colsample: Option<f64>,
    /// L2 penalty on leaf values (boosted).
    pub lambda: f64,
    /// L2 penalty of the linear models (on standardized features). Default: ridge regression
    /// picks it by leave-one-out error among 0.1 · √10^k (k = 0..9); logistic regression 1.
    pub alpha: Option<f64>,
    /// Histogram bins per feature, 2..=256.
    pub max_bins: usize,
    /// Regression label transform.
    pub target: Target,
    /// Seed of every random choice in fitting (bootstrap, subsampling).
    pub seed: u64,
    /// Threads for fitting (histograms, forest trees, cross-validation folds). Default: the
    /// machine's cores. A fit is the same bit for bit whatever the thread count.
    pub threads: Option<usize>,
    /// `kind = "auto"`: time budget of the cross-validation. Candidates are tried cheapest first;
    /// those not reached within the budget are skipped (the choice then depends on timing).
    pub auto_budget_ms: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: Kind::Auto,
            max_depth: None,
            max_leaf_nodes: None,
            min_samples_leaf: None,
            n_trees: 100,
            n_rounds: 1000,
            n_iter_no_change: 10,
            learning_rate: None,
            subsample: 0.8,
            colsample: None,
            lambda: 1.0,
            alpha: None,
            max_bins: 256,
            target: Target::Auto,
            seed: 42,
            threads: None,
            auto_budget_ms: 60_000,
        }
    }
}

impl ModelConfig {
    /// Check every range; the error names the key, e.g. `model.max_depth must be ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, rule: &str| Err(MlError::Config(format!("model.{key} must be {rule}")));
        if self.max_depth == Some(0) {
            return bad("max_depth", "≥ 1");
        }
        if matches!(self.max_leaf_nodes, Some(n) if n < 2) {
            return bad("max_leaf_nodes", "≥ 2");
        }
        if self.min_samples_leaf == Some(0) {
            return bad("min_samples_leaf", "≥ 1");
        }
        if self.n_trees == 0 {
            return bad("n_trees", "≥ 1");
        }
        if self.n_rounds == 0 {
            return bad("n_rounds", "≥ 1");
        }
        if matches!(self.learning_rate, Some(r) if !(r > 0.0 && r <= 1.0)) {
            return bad("learning_rate", "in (0, 1]");
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample", "in (0, 1]");
        }
        if matches!(self.colsample, Some(c) if !(c > 0.0 && c <= 1.0)) {
            return bad("colsample", "in (0, 1]");
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad("lambda", "a finite number ≥ 0");
        }
        if matches!(self.alpha, Some(a) if !(a >= 0.0 && a.is_finite())) {
            return bad("alpha", "a finite number ≥ 0");
        }
        if !(2..=256).contains(&self.max_bins) {
            return bad("max_bins", "in 2..=256");
        }
        if self.threads == Some(0) {
            return bad("threads", "≥ 1");
        }
        if self.auto_budget_ms == 0 {
            return bad("auto_budget_ms", "≥ 1");
        }
        Ok(())
    }

    pub(crate) fn depth(&self) -> usize {
        self.max_depth.unwrap_or(match self.kind {
            Kind::Tree | Kind::LinfaTree => 6,
            Kind::Forest => usize::MAX,
            Kind::Boosted | Kind::Hybrid | Kind::Linear | Kind::Auto => 4,
        })
    }

    pub(crate) fn min_leaf(&self) -> usize {
        self.min_samples_leaf.unwrap_or(match self.kind {
            Kind::Boosted | Kind::Hybrid => 10,
            _ => 1,
        })
    }

    /// Boosting shrinkage for a fit on `n_rows` rows (see `learning_rate`).
    pub(crate) fn rate(&self, n_rows: usize) -> f64 {
        self.learning_rate
            .unwrap_or(if n_rows < LARGE_SHARD { 0.05 } else { 0.1 })
    }

    /// Boosting: fraction of the `n_features` features drawn per round for a fit on `n_rows` rows
    /// (see `colsample`). Half the features decorrelate the rounds where there are many of them
    /// (House Prices); with few features on a small shard, leaving out the one that matters
    /// costs more than the decorrelation gains.
    pub(crate) fn round_colsample(&self, n_rows: usize, n_features: usize) -> f64 {
        self.colsample
            .unwrap_or(if n_rows < LARGE_SHARD && n_features <= FEW_FEATURES {
                1.0
            } else {
                0.5
            })
    }

    /// Parse the `[model]` table of a TOML document; no table means the defaults.
    pub fn from_toml_str(doc: &str) -> Result<ModelConfig> {
        #[derive(Deserialize)]
        struct File {
            model: Option<ModelConfig>,
        }
        let f: File = toml::from_str(doc).map_err(|e| MlError::Config(e.to_string()))?;
        let cfg = f.model.unwrap_or_default();
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ModelConfig::default().validate().unwrap();
    }

    #[test]
    fn error_names_the_key() {
        let cfg = ModelConfig {
            max_depth: Some(0),
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("model.max_depth must be ≥ 1"), "{e}");
        let e = ModelConfig::from_toml_str("[model]\nlearning_rate = 2.0\n").unwrap_err();
        assert!(e.to_string().contains("model.learning_rate"), "{e}");
    }

    #[test]
    fn toml_table_and_unknown_keys() {
        let cfg = ModelConfig::from_toml_str(
            "[node]\nid = 'a'\n[model]\nkind = 'tree'\nmax_depth = 3\nmax_leaf_nodes = 10\n",
        )
        .unwrap();
        assert_eq!(cfg.kind, Kind::Tree);
        assert_eq!(cfg.max_depth, Some(3));
        assert_eq!(cfg.n_rounds, ModelConfig::default().n_rounds);
        let e = ModelConfig::from_toml_str("[model]\nmax_dept = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_dept"), "{e}");
        assert_eq!(
            ModelConfig::from_toml_str("").unwrap(),
            ModelConfig::default()
        );
    }

    #[test]
    fn readable_through_the_config_crate() {
        // The node reads its whole config with the `config` crate; the [model] table must work there.
        let c = ::config::Config::builder()
            .add_source(::config::File::from_str(
                "[model]\nkind = \"forest\"\nn_trees = 7\nlearning_rate = 0.1\n",
                ::config::FileFormat::Toml,
            ))
            .build()
            .unwrap();
        let m: ModelConfig = c.get("model").unwrap();
        assert_eq!(
            (m.kind, m.n_trees, m.learning_rate),
            (Kind::Forest, 7, Some(0.1))
        );
    }
}
