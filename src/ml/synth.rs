//! Seeded synthetic shards for tests, demos and benchmarks (the `gen` tool writes them to a file:
//! `src/tools/gen.rs`).
//!
//! Features `x0..x{F-1}` ~ U(0, 1) (then moved by `shift` standard deviations, 1/√12 each), label
//! `y`. Regression is Friedman #1, `y = 10 sin(π x0 x1) + 20 (x2 − 0.5)² + 10 x3 + 5 x4 + ε`,
//! ε ~ N(0, noise²), the other features are noise. Classification cuts the same latent score into
//! `classes` classes `c0, c1, …` at the quantiles of its unshifted distribution (balanced without
//! shift). The label is computed from the moved features: a shift is covariate shift, the concept
//! stays. Each row draws its features then its noise from one `StdRng`, so a file of N rows is the
//! prefix of one of M > N rows with the same arguments.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use ndarray_rand::rand::{Rng, SeedableRng};
use ndarray_rand::rand_distr::{Normal, Uniform};
use rand::rngs::StdRng;

use super::data::Task;
use super::error::{MlError, Result};

/// Standard deviation of U(0, 1).
pub const UNIFORM_STD: f64 = 0.288_675_134_594_812_9; // 1/√12

/// What to generate. `out` only names the destination in I/O errors.
#[derive(Debug, Clone)]
pub struct Synth {
    pub rows: usize,
    /// Feature columns x0..x{F-1} (at least 5: Friedman #1 uses x0..x4).
    pub features: usize,
    pub task: Task,
    /// Classes for classification (labels c0, c1, ...).
    pub classes: usize,
    /// Move every feature by this many standard deviations of its unshifted distribution.
    pub shift: f64,
    /// Standard deviation of the Gaussian noise on the Friedman score.
    pub noise: f64,
    pub seed: u64,
    pub out: PathBuf,
}

/// The name the generator settings had when they were also the command line; kept for callers.
pub type GenArgs = Synth;

impl Synth {
    /// Defaults of the command line with `rows` and `out` set.
    pub fn new(rows: usize, out: impl Into<PathBuf>) -> Synth {
        Synth {
            rows,
            features: 10,
            task: Task::Regression,
            classes: 2,
            shift: 0.0,
            noise: 1.0,
            seed: 42,
            out: out.into(),
        }
    }

    /// Check the ranges; the messages name the command-line options.
    pub fn validate(&self) -> Result<()> {
        let bad = |rule: &str| Err(MlError::Config(format!("gen: {rule}")));
        if self.features < 5 {
            return bad("--features must be at least 5 (Friedman #1 uses x0..x4)");
        }
        if self.task == Task::Classification && self.classes < 2 {
            return bad("--classes must be at least 2");
        }
        if !self.shift.is_finite() {
            return bad("--shift must be a finite number");
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad("--noise must be a number ≥ 0");
        }
        Ok(())
    }

    /// The header line's cells: `x0, …, x{F-1}, y`.
    pub fn header(&self) -> Vec<String> {
        (0..self.features)
            .map(|j| format!("x{j}"))
            .chain(std::iter::once("y".to_string()))
            .collect()
    }
}

/// Friedman #1 without noise.
fn friedman(x: &[f64]) -> f64 {
    10.0 * (std::f64::consts::PI * x[0] * x[1]).sin()
        + 20.0 * (x[2] - 0.5).powi(2)
        + 10.0 * x[3]
        + 5.0 * x[4]
}

/// Class cut points: the k/K quantiles (k = 1..K−1) of the unshifted latent score, estimated from
/// 100,000 draws of a fixed stream (so they depend on K and the noise only).
fn class_cuts(classes: usize, noise: f64) -> Result<Vec<f64>> {
    const DRAWS: usize = 100_000;
    let mut rng = StdRng::seed_from_u64(0x5EED_C1A5);
    let unif = Uniform::new(0.0, 1.0);
    let normal = Normal::new(0.0, noise).map_err(|e| MlError::Config(format!("gen: {e}")))?;
    let mut x = [0.0; 5];
    let mut latent: Vec<f64> = (0..DRAWS)
        .map(|_| {
            for v in x.iter_mut() {
                *v = rng.sample(unif);
            }
            friedman(&x) + rng.sample(normal)
        })
        .collect();
    latent.sort_unstable_by(f64::total_cmp);
    Ok((1..classes).map(|k| latent[k * DRAWS / classes]).collect())
}

/// `v` rounded to 6 decimals, so that the text is short and reads back as the same number.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Write `args.rows` rows (and the header line first when `header`) to `w`.
pub fn write_rows<W: Write>(args: &Synth, header: bool, w: W) -> Result<()> {
    args.validate()?;
    let io = |source| MlError::Io {
        path: args.out.clone(),
        source,
    };
    let mut w = BufWriter::with_capacity(1 << 20, w);
    if header {
        writeln!(w, "{}", args.header().join(",")).map_err(io)?;
    }
    let cuts = match args.task {
        Task::Classification => class_cuts(args.classes, args.noise)?,
        Task::Regression => Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(args.seed);
    let unif = Uniform::new(0.0, 1.0);
    let normal = Normal::new(0.0, args.noise).map_err(|e| MlError::Config(format!("gen: {e}")))?;
    let delta = args.shift * UNIFORM_STD;
    let mut x = vec![0.0; args.features];
    for _ in 0..args.rows {
        for v in x.iter_mut() {
            *v = round6(rng.sample(unif) + delta);
        }
        let eps: f64 = rng.sample(normal);
        for v in &x {
            write!(w, "{v},").map_err(io)?;
        }
        let score = friedman(&x) + eps;
        match args.task {
            Task::Regression => writeln!(w, "{}", round6(score)).map_err(io)?,
            Task::Classification => {
                writeln!(w, "c{}", cuts.partition_point(|c| *c < score)).map_err(io)?
            }
        }
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{parse_csv, ColumnData, DataSpec, Labels};
    use crate::ml::{score, ModelConfig, ModelMeta, Pipeline, Scores};

    fn bytes(args: &Synth) -> Vec<u8> {
        let mut buf = Vec::new();
        write_rows(args, true, &mut buf).unwrap();
        buf
    }

    fn parse(b: &[u8], task: Task) -> crate::ml::Table {
        let spec = DataSpec {
            label: "y".into(),
            task,
            drop: vec![],
        };
        parse_csv(std::path::Path::new("gen.csv"), b, &spec).unwrap()
    }

    #[test]
    fn same_seed_same_file_and_prefixes() {
        let mut a = Synth::new(1_000, "x.csv");
        a.seed = 7;
        assert_eq!(bytes(&a), bytes(&a));
        let mut short = a.clone();
        short.rows = 10;
        let long = bytes(&a);
        assert!(long.starts_with(&bytes(&short)));
        let mut other = a.clone();
        other.seed = 8;
        assert_ne!(bytes(&other), long);
        let t = parse(&long, Task::Regression);
        assert_eq!((t.len(), t.columns.len()), (1_000, 10));
        assert_eq!(t.columns[9].name, "x9");
    }

    #[test]
    fn bad_arguments() {
        let mut a = Synth::new(5, "x.csv");
        a.features = 4;
        assert!(a.validate().is_err());
        a.features = 5;
        a.task = Task::Classification;
        a.classes = 1;
        assert!(a.validate().is_err());
        a.classes = 2;
        a.noise = -1.0;
        assert!(a.validate().is_err());
    }

    fn means(t: &crate::ml::Table) -> Vec<f64> {
        t.columns
            .iter()
            .map(|c| match &c.data {
                ColumnData::Numeric(v) => v.iter().flatten().sum::<f64>() / v.len() as f64,
                ColumnData::Categorical(_) => f64::NAN,
            })
            .collect()
    }

    #[test]
    fn shift_moves_means_by_one_std() {
        let mut a = Synth::new(20_000, "x.csv");
        let base = means(&parse(&bytes(&a), Task::Regression));
        a.shift = 1.0;
        a.seed = 43;
        let moved = means(&parse(&bytes(&a), Task::Regression));
        for (b, m) in base.iter().zip(&moved) {
            // Each mean has standard error 0.289/√20000 ≈ 0.002, i.e. 0.007 std.
            let d = (m - b) / UNIFORM_STD;
            assert!((d - 1.0).abs() < 0.04, "moved by {d} std");
        }
    }

    #[test]
    fn classes_are_balanced_without_shift() {
        let mut a = Synth::new(6_000, "x.csv");
        a.task = Task::Classification;
        a.classes = 3;
        let t = parse(&bytes(&a), Task::Classification);
        let Labels::Classification(v) = &t.labels else {
            panic!("classification")
        };
        for k in ["c0", "c1", "c2"] {
            let share = v.iter().filter(|c| *c == k).count() as f64 / v.len() as f64;
            assert!((share - 1.0 / 3.0).abs() < 0.03, "{k}: {share}");
        }
    }

    #[test]
    fn default_model_fits_friedman() {
        let a = Synth::new(5_000, "x.csv");
        let t = parse(&bytes(&a), Task::Regression);
        let (train, valid) = t.split(0.3, 42);
        let model = Pipeline::fit(&train, &ModelConfig::default(), ModelMeta::default()).unwrap();
        let s = score(&valid.labels, &model.predict_table(&valid).unwrap()).unwrap();
        let Scores::Regression(r) = s else {
            panic!("regression")
        };
        // Noise variance 1 against a label variance of about 24: R² can reach about 0.96.
        assert!(r.r2 > 0.8, "R² {}", r.r2);
    }
}
