//! Machine learning core: everything a node needs to learn from its own shard and to apply any
//! node's model to raw rows. No networking here.
//!
//! # Layout
//! - [`data`]: CSV → typed [`Table`] (numeric / categorical inference, missing values), raw
//!   [`Rows`], the seeded train / validation split.
//! - [`config`]: [`ModelConfig`], the `[model]` table; its `Default` is the tuned default.
//! - [`preprocess`]: imputation and categorical encoding fitted on the training split.
//! - [`tree`]: the histogram CART every tree learner grows.
//! - [`learner`], [`linear`]: tree / forest / boosted / linear / linfa-tree behind linfa's `Fit` /
//!   `Predict`.
//! - [`pipeline`]: [`Pipeline`] = preprocessing + learner + label coding + [`ModelMeta`]; the
//!   model file (MessagePack).
//! - [`metrics`]: [`score`], [`aggregate`] (mean / vote).
//! - [`drift`]: [`Reference`] (summary of the training data) and [`detect`] (tests per
//!   feature, label, model error, Holm-corrected → [`DriftReport`]); the swap rule.
//! - Serving: [`schema`] (the columns rows travel by), [`typed`] ([`TypedRows`]: rows packed by
//!   schema, and their builder), [`csv_stream`] (CSV text in chunks → typed batches),
//!   [`compiled`] (models compiled for blocks of rows), [`serve`] ([`Served`]: a model in
//!   service).
//! - [`synth`]: the synthetic data generator behind the `gen` tool.
//! - [`eval`]: [`evaluate_split`], [`combine_splits`].
//! - [`auto`]: `kind = "auto"`, the learner chosen by cross-validation; [`boost`]: gradient
//!   boosting with early stopping; [`linfa_tree`]: `kind = "linfa-tree"`; [`par`]: deterministic
//!   threads; [`sort`]: numbers sorted by a radix sort of their bits.

pub mod auto;
pub mod boost;
pub mod compiled;
pub mod config;
pub mod csv_stream;
pub mod data;
pub mod drift;
pub mod error;
pub mod eval;
pub mod learner;
pub mod levels;
pub mod linear;
pub mod linfa_tree;
pub mod metrics;
pub mod par;
pub mod pipeline;
pub mod preprocess;
pub mod schema;
pub mod serve;
pub mod shard;
pub mod sort;
pub mod synth;
pub mod tree;
pub mod typed;

pub use config::{Kind, ModelConfig, Target};
pub use csv_stream::{CsvBatch, CsvBatches, Ids};
pub use data::{
    load_csv, load_rows, parse_csv, Column, ColumnData, DataSpec, Labels, Rows, Table, Task, Value,
};
pub use drift::{
    decide_swap, detect, judge_swap, unseen_rows, DriftReport, DriftSettings, ErrorDrift,
    FeatureDrift, Reference, Swap, SwapScores,
};
pub use error::{MlError, Result};
pub use eval::{combine_splits, evaluate_split, evaluate_split_with, SplitEval, SplitStats};
pub use metrics::{aggregate, score, ClassificationScores, Predictions, RegressionScores, Scores};
pub use pipeline::{ModelMeta, Pipeline, FORMAT_VERSION};
pub use schema::{ColumnKind, Schema, SchemaColumn};
pub use serve::Served;
pub use shard::{load_shard, read_new, NewLines, Watermark};
pub use synth::{GenArgs, Synth};
pub use typed::{RowsResolver, TypedRows, TypedRowsBuilder};
