//! A fitted pipeline: schema and preprocessing, learner, task, label encoding and metadata — the
//! whole model file. Any node can apply any node's pipeline to raw rows.

use linfa::traits::{Fit, Predict};
use linfa::Dataset;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::auto;
use super::config::{Kind, ModelConfig, Target};
use super::data::{Labels, Rows, Table, Task};
use super::error::{MlError, Result};
use super::learner::{Classifier, FoldLabels, LearnerParams, Model, Regressor};
use super::linear::InputKind;
use super::metrics::Predictions;
use super::preprocess::Preprocessor;
use super::schema::Schema;
use super::serve::Served;
use super::typed::TypedRows;

mod cv;

/// Magic string at the top of every model file.
pub const MODEL_MAGIC: &str = "ensemble-cluster-model";
/// Version of the model file layout; bumped on any incompatible change (2: `auto` and
/// `linfa-tree` kinds, early stopping and thread settings, `kind` / `cv_score` in the metadata;
/// 3: the `hybrid` kind, linear models' input ranges and log columns, `alpha` optional).
pub const FORMAT_VERSION: u32 = 3;

/// Model files larger than this are refused before decoding.
pub const MAX_MODEL_BYTES: usize = 1 << 30;

/// Rows encoded at once by [`Pipeline::predict`].
pub const PREDICT_CHUNK_ROWS: usize = 4096;

/// Who trained a model, on what, and how long it took.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelMeta {
    pub node: String,
    pub version: u64,
    /// Training rows (set by `Pipeline::fit`).
    pub rows: usize,
    /// Wall time of training, set by the caller with `Pipeline::set_train_ms` (`fit` leaves it as
    /// given so that the model bytes are a function of data, config and seed only).
    pub train_ms: u64,
    /// The fitting seed (set by `Pipeline::fit` from `ModelConfig::seed`).
    pub seed: u64,
    /// The label column (set by `Pipeline::fit`).
    pub label: String,
    /// The learner fitted (set by `Pipeline::fit`): the configured kind, or what `auto` chose.
    pub kind: String,
    /// `kind = "auto"` only: the chosen learner's mean cross-validation loss on the training
    /// split (RMSLE or RMSE for regression, 1 − accuracy for classification; lower is better).
    pub cv_score: Option<f64>,
    /// `kind = "auto"` only: every candidate's mean CV loss (`None`: skipped for the budget).
    pub cv_scores: Vec<(String, Option<f64>)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Learner {
    Regressor(Regressor),
    Classifier(Classifier),
}

/// A fitted pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    task: Task,
    config: ModelConfig,
    /// The resolved label transform (`identity` or `log`; never `auto`).
    target: Target,
    /// Class names, sorted; index = class code.
    classes: Vec<String>,
    prep: Preprocessor,
    learner: Learner,
    meta: ModelMeta,
}

#[derive(Serialize)]
struct FileOut<'a> {
    magic: &'a str,
    format_version: u32,
    pipeline: &'a Pipeline,
}

#[derive(Deserialize)]
struct FileHeader {
    magic: String,
    format_version: u32,
}

#[derive(Deserialize)]
struct FileIn {
    pipeline: Pipeline,
}

/// The labels a regression learner fits: `ln(1 + y)` for a log target.
fn transform_labels(target: Target, y: &[f64]) -> Vec<f64> {
    match target {
        Target::Log => y.iter().map(|v| v.ln_1p()).collect(),
        _ => y.to_vec(),
    }
}

/// Skewness (third standardized moment) of a sample.
fn skewness(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let m = y.iter().sum::<f64>() / n;
    let v = y.iter().map(|a| (a - m).powi(2)).sum::<f64>() / n;
    if v <= 0.0 {
        return 0.0;
    }
    y.iter().map(|a| (a - m).powi(3)).sum::<f64>() / n / v.powf(1.5)
}

/// Trees of a decoded model: outputs, leaf offsets and children (forward only) in bounds.
fn check_trees(trees: &[super::tree::Tree], n_outputs: usize, n_features: usize) -> Result<()> {
    let bad = |m: &str| Err(MlError::ModelFile(format!("inconsistent model: {m}")));
    for t in trees {
        if t.n_outputs != n_outputs || t.nodes.is_empty() {
            return bad("tree outputs");
        }
        for (i, n) in t.nodes.iter().enumerate() {
            if n.feature == u32::MAX {
                if n.left as usize + t.n_outputs > t.values.len() {
                    return bad("leaf value index");
                }
            } else if n.feature as usize >= n_features
                || n.left as usize <= i
                || n.right as usize <= i
                || n.left as usize >= t.nodes.len()
                || n.right as usize >= t.nodes.len()
            {
                return bad("tree node");
            }
        }
    }
    Ok(())
}

/// A decoded linear model: one entry per feature in every per-feature vector.
fn check_linear(l: &super::linear::Linear, n_features: usize) -> Result<()> {
    if l.mean.len() != n_features
        || l.scale.len() != n_features
        || l.lo.len() != n_features
        || l.hi.len() != n_features
        || l.log.len() != n_features
        || l.weights.len() != l.bias.len()
        || l.weights.iter().any(|w| w.len() != n_features)
    {
        return Err(MlError::ModelFile(
            "inconsistent model: linear weights".into(),
        ));
    }
    Ok(())
}

impl Pipeline {
    /// Fit preprocessing and learner on a training table. `meta.rows`, `meta.seed` and
    /// `meta.label` are filled in; the rest of `meta` is kept as given.
    /// With `kind = "auto"` the learner is chosen by cross-validation first (see [`auto`]); the
    /// pipeline's config then names the chosen kind, and `meta` records it with its CV loss.
    pub fn fit(train: &Table, cfg: &ModelConfig, meta: ModelMeta) -> Result<Pipeline> {
        cfg.validate()?;
        if train.is_empty() {
            return Err(MlError::Data("no training rows".into()));
        }
        if cfg.kind != Kind::Auto {
            return Pipeline::fit_kind(train, cfg, meta);
        }
        let choice = auto::choose(
            train,
            cfg,
            |fit, held, fold_cfg| {
                Pipeline::fit_kind(fit, fold_cfg, ModelMeta::default())?.cv_loss(held)
            },
            Pipeline::cv_boosting,
        )?;
        // The round count the CV found, scaled to the larger sample: no second search.
        let chosen = match choice.n_rounds {
            Some(n_rounds) => ModelConfig {
                kind: choice.kind,
                n_rounds,
                n_iter_no_change: 0,
                ..cfg.clone()
            },
            None => ModelConfig {
                kind: choice.kind,
                ..cfg.clone()
            },
        };
        let mut p = Pipeline::fit_kind(train, &chosen, meta)?;
        p.meta.cv_score = Some(choice.cv_score);
        p.meta.cv_scores = choice
            .scores
            .iter()
            .map(|(k, s)| (k.name().to_string(), *s))
            .collect();
        Ok(p)
    }

    /// Fit one given kind (never `auto`).
    fn fit_kind(train: &Table, cfg: &ModelConfig, meta: ModelMeta) -> Result<Pipeline> {
        let (shell, x, y) = Pipeline::prepare(train, cfg, meta)?;
        let params = LearnerParams::new(cfg.clone()).inputs(shell.line_inputs());
        let learner = match y {
            FoldLabels::Regression(y) => {
                Learner::Regressor(params.fit(&Dataset::new(x, Array1::from(y)))?)
            }
            FoldLabels::Classes(y, _) => {
                Learner::Classifier(params.fit(&Dataset::new(x, Array1::from(y)))?)
            }
        };
        Ok(Pipeline { learner, ..shell })
    }

    /// How a line takes each encoded input: a categorical's code is a smoothed mean of the
    /// fitted label (regression) or of the class-1 indicator (two classes), so it is taken as
    /// such ([`InputKind::Code`]); numbers and codes that rank levels by frequency (three
    /// classes or more) are measured values.
    fn line_inputs(&self) -> Vec<InputKind> {
        let by_label = self.task == Task::Regression || self.classes.len() == 2;
        self.prep
            .ordinal_codes()
            .into_iter()
            .map(|code| {
                if code && by_label {
                    InputKind::Code
                } else {
                    InputKind::Measured
                }
            })
            .collect()
    }

    /// Everything of a fit but the learner: the label transform, classes and preprocessing
    /// fitted on `train`, returned with the learner's matrix and labels (the pipeline's learner
    /// a placeholder until set).
    fn prepare(
        train: &Table,
        cfg: &ModelConfig,
        mut meta: ModelMeta,
    ) -> Result<(Pipeline, Array2<f64>, FoldLabels)> {
        if train.is_empty() {
            return Err(MlError::Data("no training rows".into()));
        }
        if cfg.kind == Kind::LinfaTree && matches!(train.labels, Labels::Regression(_)) {
            return Err(super::linfa_tree::regression_error());
        }
        meta.kind = cfg.kind.name().to_string();
        meta.rows = train.len();
        meta.seed = cfg.seed;
        meta.label = train.label_name.clone();
        let placeholder = |n_features| {
            Learner::Regressor(Regressor {
                model: Model::Trees {
                    base: Vec::new(),
                    trees: Vec::new(),
                },
                n_features,
            })
        };
        match &train.labels {
            Labels::Regression(y) => {
                let target = match cfg.target {
                    Target::Auto if y.iter().all(|v| *v >= 0.0) && skewness(y) > 0.75 => {
                        Target::Log
                    }
                    Target::Auto => Target::Identity,
                    Target::Log if y.iter().any(|v| *v < 0.0) => {
                        return Err(MlError::Config(
                            "model.target = \"log\" needs labels ≥ 0".into(),
                        ))
                    }
                    t => t,
                };
                let yf = transform_labels(target, y);
                let prep = Preprocessor::fit(train, Some(&yf), cfg.kind == Kind::Linear);
                let x = prep.transform_table(train)?;
                let shell = Pipeline {
                    task: Task::Regression,
                    config: cfg.clone(),
                    target,
                    classes: Vec::new(),
                    prep,
                    learner: placeholder(x.ncols()),
                    meta,
                };
                Ok((shell, x, FoldLabels::Regression(yf)))
            }
            Labels::Classification(y) => {
                let mut classes: Vec<String> = y.clone();
                classes.sort();
                classes.dedup();
                let codes: Vec<usize> = y
                    .iter()
                    .map(|c| classes.binary_search(c).unwrap_or(0))
                    .collect();
                let stat: Option<Vec<f64>> =
                    (classes.len() == 2).then(|| codes.iter().map(|&c| c as f64).collect());
                let prep = Preprocessor::fit(train, stat.as_deref(), cfg.kind == Kind::Linear);
                let x = prep.transform_table(train)?;
                let n_classes = classes.len().max(2);
                let shell = Pipeline {
                    task: Task::Classification,
                    config: cfg.clone(),
                    target: Target::Identity,
                    classes,
                    prep,
                    learner: placeholder(x.ncols()),
                    meta,
                };
                Ok((shell, x, FoldLabels::Classes(codes, n_classes)))
            }
        }
    }

    /// Predict raw rows (columns by name; absent columns and unseen categories count as missing).
    ///
    /// The rows are encoded [`PREDICT_CHUNK_ROWS`] at a time: the encoded matrix has a column
    /// per feature of the model, so for a request of many short rows it would be far larger
    /// than the request itself.
    pub fn predict(&self, rows: &Rows) -> Result<Predictions> {
        let mut out = self.predict_range(rows, 0..PREDICT_CHUNK_ROWS)?;
        for start in (PREDICT_CHUNK_ROWS..rows.len()).step_by(PREDICT_CHUNK_ROWS) {
            let more = self.predict_range(rows, start..start + PREDICT_CHUNK_ROWS)?;
            match (&mut out, more) {
                (Predictions::Regression(a), Predictions::Regression(b)) => a.extend(b),
                (Predictions::Classification(a), Predictions::Classification(b)) => a.extend(b),
                _ => return Err(MlError::Mismatch("predictions of different tasks".into())),
            }
        }
        Ok(out)
    }

    fn predict_range(&self, rows: &Rows, range: std::ops::Range<usize>) -> Result<Predictions> {
        let x = self.prep.transform_row_range(rows, range)?;
        Ok(match &self.learner {
            Learner::Regressor(m) => {
                let y: Array1<f64> = m.predict(&x);
                Predictions::Regression(match self.target {
                    Target::Log => y.iter().map(|v| v.exp_m1()).collect(),
                    _ => y.to_vec(),
                })
            }
            Learner::Classifier(m) => {
                let y: Array1<usize> = m.predict(&x);
                Predictions::Classification(
                    y.iter()
                        .map(|&c| {
                            self.classes
                                .get(c)
                                .or(self.classes.first())
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect(),
                )
            }
        })
    }

    /// Predict a parsed table (a validation split, a fold), with the compiled model: the same
    /// predictions as [`Pipeline::predict`] of its rows, several times faster on many rows.
    pub fn predict_table(&self, t: &Table) -> Result<Predictions> {
        self.served().predict(&TypedRows::from_table(t))
    }

    /// This pipeline ready to serve typed batches: its model compiled.
    pub fn served(&self) -> Served {
        Served::new(
            self.schema(),
            &self.prep,
            self.model(),
            self.task(),
            self.target(),
            &self.classes,
        )
    }

    /// The model file: MessagePack with named fields, a magic string and the format version.
    /// Deterministic: the same pipeline always gives the same bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(&FileOut {
            magic: MODEL_MAGIC,
            format_version: FORMAT_VERSION,
            pipeline: self,
        })
        .map_err(|e| MlError::ModelFile(format!("encode: {e}")))
    }

    /// Read a model file. Garbage, truncation, another format version or an inconsistent model
    /// is an error, never a panic.
    pub fn from_bytes(b: &[u8]) -> Result<Pipeline> {
        if b.len() > MAX_MODEL_BYTES {
            return Err(MlError::ModelFile(format!(
                "{} bytes, more than the {MAX_MODEL_BYTES} a model may have",
                b.len()
            )));
        }
        let h: FileHeader = rmp_serde::from_slice(b)
            .map_err(|e| MlError::ModelFile(format!("not a model file: {e}")))?;
        if h.magic != MODEL_MAGIC {
            return Err(MlError::ModelFile(format!(
                "not a model file (magic '{}')",
                h.magic
            )));
        }
        if h.format_version != FORMAT_VERSION {
            return Err(MlError::ModelFile(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                h.format_version
            )));
        }
        let f: FileIn = rmp_serde::from_slice(b)
            .map_err(|e| MlError::ModelFile(format!("corrupt model: {e}")))?;
        f.pipeline.check()?;
        Ok(f.pipeline)
    }

    /// Structural checks so that a decoded model can never index out of bounds or loop.
    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(MlError::ModelFile(format!("inconsistent model: {m}")));
        let (model, n_features, outs_ok): (&Model, usize, Vec<usize>) = match &self.learner {
            Learner::Regressor(r) => (&r.model, r.n_features, vec![1]),
            Learner::Classifier(c) => {
                if self.classes.is_empty() {
                    return bad("no classes");
                }
                // one logit (two classes, boosted or linear) or one score per class
                (&c.model, c.n_features, vec![1, c.n_classes])
            }
        };
        if n_features != self.prep.n_features {
            return bad("feature count");
        }
        // The feature count must be what the stored columns encode to: it sizes every matrix a
        // prediction allocates, so a file may not simply claim a huge one.
        let mut encoded = 0usize;
        for c in &self.prep.columns {
            encoded += match c {
                super::preprocess::ColumnPrep::Numeric { .. } => 1,
                super::preprocess::ColumnPrep::Categorical { levels, width, .. } => {
                    if self.prep.one_hot && (*width == 0 || *width > levels.len() + 1) {
                        return bad("one-hot width");
                    }
                    if self.prep.one_hot {
                        *width
                    } else {
                        1
                    }
                }
            };
        }
        if encoded != self.prep.n_features {
            return bad("feature count of the preprocessing");
        }
        if !outs_ok.contains(&model.n_outputs()) {
            return bad("output count");
        }
        match model {
            Model::Trees { trees, base } => check_trees(trees, base.len(), n_features)?,
            Model::Linear(l) => check_linear(l, n_features)?,
            Model::Hybrid { linear, trees } => {
                check_linear(linear, n_features)?;
                check_trees(trees, linear.n_outputs(), n_features)?;
            }
        }
        for c in &self.prep.columns {
            if let super::preprocess::ColumnPrep::Categorical {
                levels,
                codes,
                missing,
                width,
                ..
            } = c
            {
                if levels.len() != codes.len() {
                    return bad("categorical levels");
                }
                if self.prep.one_hot && codes.iter().chain([missing]).any(|v| *v >= *width as f64) {
                    return bad("one-hot slot");
                }
            }
        }
        Ok(())
    }

    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Record the measured training time (kept out of `fit` so bytes stay deterministic).
    pub fn set_train_ms(&mut self, ms: u64) {
        self.meta.train_ms = ms;
    }

    pub fn task(&self) -> Task {
        self.task
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The resolved label transform (`Identity` or `Log`).
    pub fn target(&self) -> Target {
        self.target
    }

    /// Class names (classification), sorted.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The input columns the model uses with whether each is numeric (else categorical): the
    /// schema a client builds a request from.
    pub fn feature_columns(&self) -> Vec<(&str, bool)> {
        self.prep
            .columns
            .iter()
            .map(|c| match c {
                super::preprocess::ColumnPrep::Numeric { name, .. } => (name.as_str(), true),
                super::preprocess::ColumnPrep::Categorical { name, .. } => (name.as_str(), false),
            })
            .collect()
    }

    /// The input columns as a schema of their own: what this model needs of a request.
    pub fn schema(&self) -> Schema {
        let columns: Vec<(String, bool)> = self
            .feature_columns()
            .into_iter()
            .map(|(name, numeric)| (name.to_string(), numeric))
            .collect();
        Schema::merge([columns.as_slice()])
    }

    pub(crate) fn model(&self) -> &Model {
        match &self.learner {
            Learner::Regressor(r) => &r.model,
            Learner::Classifier(c) => &c.model,
        }
    }

    /// Names of the input columns the model uses.
    pub fn feature_names(&self) -> Vec<&str> {
        self.prep
            .columns
            .iter()
            .map(|c| match c {
                super::preprocess::ColumnPrep::Numeric { name, .. }
                | super::preprocess::ColumnPrep::Categorical { name, .. } => name.as_str(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{parse_csv, DataSpec, Task};

    fn small() -> Pipeline {
        let mut csv = String::from("a,b,y\n");
        for i in 0..60 {
            csv.push_str(&format!("{},{},{}\n", i % 7, ["x", "y", "z"][i % 3], i % 5));
        }
        let spec = DataSpec {
            label: "y".into(),
            task: Task::Regression,
            drop: vec![],
        };
        let table = parse_csv("test".as_ref(), csv.as_bytes(), &spec).expect("a table");
        let config = ModelConfig {
            kind: super::super::config::Kind::Tree,
            ..ModelConfig::default()
        };
        Pipeline::fit(&table, &config, ModelMeta::default()).expect("fitted")
    }

    #[test]
    fn a_model_claiming_two_to_the_forty_features_is_refused_before_use() {
        let good = small();
        assert!(Pipeline::from_bytes(&good.to_bytes().expect("bytes")).is_ok());
        let huge = 1usize << 40;
        let mut bad = good.clone();
        bad.prep.n_features = huge;
        match &mut bad.learner {
            Learner::Regressor(r) => r.n_features = huge,
            Learner::Classifier(c) => c.n_features = huge,
        }
        let err = Pipeline::from_bytes(&bad.to_bytes().expect("bytes"))
            .expect_err("a 2^40-feature model loaded");
        assert!(err.to_string().contains("inconsistent model"), "{err}");
    }

    fn table(task: Task, classes: usize) -> Table {
        let mut csv = String::from("a,b,y\n");
        for i in 0..60 {
            csv.push_str(&format!(
                "{},{},{}\n",
                i % 7,
                ["x", "y", "z"][i % 3],
                i % classes
            ));
        }
        let spec = DataSpec {
            label: "y".into(),
            task,
            drop: vec![],
        };
        parse_csv("test".as_ref(), csv.as_bytes(), &spec).expect("a table")
    }

    #[test]
    fn a_line_takes_codes_by_the_label_as_codes_and_ranks_as_measured() {
        let shell = |task, classes, kind| {
            let cfg = ModelConfig {
                kind,
                ..ModelConfig::default()
            };
            let (p, _, _) = Pipeline::prepare(&table(task, classes), &cfg, ModelMeta::default())
                .expect("prepared");
            p.line_inputs()
        };
        use InputKind::{Code, Measured};
        // Column a is a number, b a categorical.
        assert_eq!(shell(Task::Regression, 5, Kind::Hybrid), [Measured, Code]);
        assert_eq!(
            shell(Task::Classification, 2, Kind::Hybrid),
            [Measured, Code]
        );
        // Three classes: b's code ranks its levels by frequency.
        assert_eq!(
            shell(Task::Classification, 3, Kind::Hybrid),
            [Measured, Measured]
        );
        // One-hot slots (linear) are measured.
        assert_eq!(
            shell(Task::Regression, 5, Kind::Linear),
            [Measured, Measured, Measured, Measured]
        );
    }
}
