//! Champion / challenger: after a drift retrain the new model (challenger) replaces the one that
//! answers (champion) only if it does at least as well on a held-out slice of the recent rows,
//! which neither model trained on, and no worse than `tolerance` (relative) on the rows of the
//! challenger's validation split that the champion did not train on either ([`unseen_rows`]: on
//! rows it trained on, the champion would look better than it is). The rule is a pure function
//! of the four errors, tested here; the model actor measures them and applies the answer.

use serde::{Deserialize, Serialize};

use super::RowError;
use crate::ml::data::{Column, ColumnData, Labels, Table};
use crate::ml::error::Result;
use crate::ml::pipeline::Pipeline;

/// Errors (lower is better, one metric) of both models.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapScores {
    pub metric: String,
    /// Held-out recent rows (0: none, the holdout errors are then ignored).
    pub holdout_rows: usize,
    pub current_holdout: f64,
    pub challenger_holdout: f64,
    /// Both models on the challenger's validation split (None when it is empty).
    pub current_valid: Option<f64>,
    pub challenger_valid: Option<f64>,
}

/// The decision, as the `drift` command shows it (`swap`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Swap {
    pub metric: String,
    /// The current model's error on the held-out recent rows (on the validation split when there
    /// are none).
    pub current: f64,
    /// The challenger's error on the same rows.
    pub challenger: f64,
    pub accepted: bool,
    pub holdout_rows: usize,
    pub current_valid: Option<f64>,
    pub challenger_valid: Option<f64>,
    pub tolerance: f64,
    /// Why, in words.
    pub reason: String,
}

/// Accept the challenger when its holdout error is ≤ the current model's, and its validation
/// error ≤ (1 + `tolerance`) × the current model's on the same split.
pub fn decide_swap(s: &SwapScores, tolerance: f64) -> Swap {
    let holdout = s.holdout_rows > 0;
    let holdout_ok = !holdout || s.challenger_holdout <= s.current_holdout;
    let valid_ok = match (s.current_valid, s.challenger_valid) {
        (Some(c), Some(n)) => n <= c * (1.0 + tolerance),
        _ => true,
    };
    let (current, challenger) = if holdout {
        (s.current_holdout, s.challenger_holdout)
    } else {
        (
            s.current_valid.unwrap_or(f64::NAN),
            s.challenger_valid.unwrap_or(f64::NAN),
        )
    };
    let m = &s.metric;
    let reason = if !holdout_ok {
        format!(
            "the new model's {m} on {} held-out recent rows is {:.4}, the current one's {:.4}",
            s.holdout_rows, s.challenger_holdout, s.current_holdout
        )
    } else if !valid_ok {
        format!(
            "the new model's validation {m} {:.4} is worse than the current one's {:.4} by more \
             than {:.0} %",
            s.challenger_valid.unwrap_or(f64::NAN),
            s.current_valid.unwrap_or(f64::NAN),
            tolerance * 100.0
        )
    } else if holdout {
        format!(
            "{m} on {} held-out recent rows: new {:.4} ≤ current {:.4}",
            s.holdout_rows, s.challenger_holdout, s.current_holdout
        )
    } else {
        format!("no held-out rows; validation {m}: new {challenger:.4}, current {current:.4}")
    };
    Swap {
        metric: m.clone(),
        current,
        challenger,
        accepted: holdout_ok && valid_ok,
        holdout_rows: s.holdout_rows,
        current_valid: s.current_valid,
        challenger_valid: s.challenger_valid,
        tolerance,
        reason,
    }
}

/// The row indices of the (train, validation) split of an `n`-row table, as
/// [`Table::split`] makes it (it depends on `n`, the fraction and the seed only).
pub fn split_indices(n: usize, valid_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let index = Table {
        columns: vec![Column {
            name: "row".into(),
            data: ColumnData::Numeric((0..n).map(|i| Some(i as f64)).collect()),
        }],
        labels: Labels::Regression(vec![0.0; n]),
        label_name: "y".into(),
    };
    let (train, valid) = index.split(valid_fraction, seed);
    let rows = |t: &Table| match t.columns.first().map(|c| &c.data) {
        Some(ColumnData::Numeric(v)) => v.iter().flatten().map(|x| *x as usize).collect(),
        _ => Vec::new(),
    };
    (rows(&train), rows(&valid))
}

/// Positions, within the validation split of an `n`-row table, of the rows the current model did
/// not train on, given that it was trained on the split of the first `current_rows` rows of the
/// same table (rows are appended at the end). None when the table is shorter than that.
pub fn unseen_rows(
    n: usize,
    current_rows: usize,
    valid_fraction: f64,
    seed: u64,
) -> Option<Vec<usize>> {
    if current_rows > n {
        return None;
    }
    let (_, valid) = split_indices(n, valid_fraction, seed);
    let (trained, _) = split_indices(current_rows, valid_fraction, seed);
    let trained: std::collections::HashSet<usize> = trained.into_iter().collect();
    Some(
        valid
            .iter()
            .enumerate()
            .filter(|(_, i)| !trained.contains(i))
            .map(|(p, _)| p)
            .collect(),
    )
}

/// Scores the current model and the challenger on the held-out recent rows `held` and on `valid`,
/// rows neither trained on (one metric for both, see [`RowError::for_labels`]), and decides with
/// [`decide_swap`].
pub fn judge_swap(
    current: &Pipeline,
    challenger: &Pipeline,
    held: &Table,
    valid: &Table,
    tolerance: f64,
) -> Result<Swap> {
    let kind = RowError::for_labels(&[&held.labels, &valid.labels]);
    let err = |m: &Pipeline, t: &Table| -> Result<Option<f64>> {
        if t.is_empty() {
            return Ok(None);
        }
        kind.model_error(m, t).map(Some)
    };
    let scores = SwapScores {
        metric: kind.metric().into(),
        holdout_rows: held.len(),
        current_holdout: err(current, held)?.unwrap_or(0.0),
        challenger_holdout: err(challenger, held)?.unwrap_or(0.0),
        current_valid: err(current, valid)?,
        challenger_valid: err(challenger, valid)?,
    };
    Ok(decide_swap(&scores, tolerance))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{parse_csv, DataSpec, Task};
    use crate::ml::synth::{write_rows, GenArgs};
    use crate::ml::{Kind, ModelConfig, ModelMeta};

    fn generated(rows: usize, seed: u64, shift: f64) -> Table {
        let mut args = GenArgs::new(rows, "gen.csv");
        (args.seed, args.shift) = (seed, shift);
        let mut buf = Vec::new();
        write_rows(&args, true, &mut buf).unwrap();
        let spec = DataSpec {
            label: "y".into(),
            task: Task::Regression,
            drop: vec![],
        };
        parse_csv(std::path::Path::new("gen.csv"), &buf, &spec).unwrap()
    }

    fn fit(t: &Table) -> Pipeline {
        let cfg = ModelConfig {
            kind: Kind::Tree,
            ..Default::default()
        };
        Pipeline::fit(t, &cfg, ModelMeta::default()).unwrap()
    }

    #[test]
    fn split_indices_follow_the_table_split() {
        let (train, valid) = split_indices(10, 0.3, 42);
        assert_eq!((train.len(), valid.len()), (7, 3));
        let mut all: Vec<usize> = train.iter().chain(&valid).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // Rows 0..6 were split (seed 42) for the current model; of the 10-row table's validation
        // rows, those it did not train on are its own validation rows and the rows ≥ 6.
        let unseen = unseen_rows(10, 6, 0.3, 42).unwrap();
        let (cur_train, _) = split_indices(6, 0.3, 42);
        for (p, i) in valid.iter().enumerate() {
            assert_eq!(unseen.contains(&p), !cur_train.contains(i), "row {i}");
        }
        assert!(unseen_rows(5, 6, 0.3, 42).is_none());
    }

    /// A model that learned the shifted rows beats one that never saw them, on shifted rows; a
    /// model trained on scrambled labels loses to the current one and is refused.
    #[test]
    fn judged_on_real_models() {
        let old = generated(1_500, 1, 0.0);
        let current = fit(&old);
        let mut both = generated(1_500, 2, 1.0);
        let held = both.select(&(1_000..1_500).collect::<Vec<_>>());
        both = both.select(&(0..1_000).collect::<Vec<_>>());
        let challenger = fit(&both);
        let valid = generated(300, 3, 1.0);
        let s = judge_swap(&current, &challenger, &held, &valid, 0.05).unwrap();
        assert!(s.accepted && s.challenger < s.current, "{s:?}");
        assert_eq!((s.holdout_rows, s.metric.as_str()), (500, "rmse"));

        let mut scrambled = both.clone();
        if let Labels::Regression(v) = &mut scrambled.labels {
            v.reverse();
        }
        let bad = fit(&scrambled);
        let s = judge_swap(&challenger, &bad, &held, &valid, 0.05).unwrap();
        assert!(!s.accepted && s.challenger > s.current, "{s:?}");
        assert!(
            s.reason.contains("500 held-out recent rows"),
            "{}",
            s.reason
        );
    }

    fn scores(h: (f64, f64), v: (f64, f64), rows: usize) -> SwapScores {
        SwapScores {
            metric: "rmse".into(),
            holdout_rows: rows,
            current_holdout: h.0,
            challenger_holdout: h.1,
            current_valid: Some(v.0),
            challenger_valid: Some(v.1),
        }
    }

    #[test]
    fn better_on_recent_rows_and_close_on_validation_is_accepted() {
        let s = decide_swap(&scores((2.0, 1.0), (1.0, 1.05), 60), 0.1);
        assert!(s.accepted, "{s:?}");
        assert_eq!((s.current, s.challenger), (2.0, 1.0));
        // A tie on the recent rows is enough.
        assert!(decide_swap(&scores((1.0, 1.0), (1.0, 1.0), 60), 0.0).accepted);
    }

    #[test]
    fn worse_on_recent_rows_is_refused() {
        let s = decide_swap(&scores((1.0, 1.2), (1.0, 0.5), 60), 0.1);
        assert!(!s.accepted);
        assert!(s.reason.contains("60 held-out recent rows"), "{}", s.reason);
    }

    #[test]
    fn much_worse_on_validation_is_refused() {
        // 1.2 > 1.0 × 1.1
        let s = decide_swap(&scores((2.0, 1.0), (1.0, 1.2), 60), 0.1);
        assert!(!s.accepted);
        assert!(s.reason.contains("10 %"), "{}", s.reason);
        assert!(decide_swap(&scores((2.0, 1.0), (1.0, 1.2), 60), 0.25).accepted);
    }

    #[test]
    fn without_held_out_rows_validation_decides() {
        let s = decide_swap(&scores((0.0, 9.0), (1.0, 1.05), 0), 0.1);
        assert!(
            s.accepted && s.current == 1.0 && s.challenger == 1.05,
            "{s:?}"
        );
        let none = SwapScores {
            current_valid: None,
            challenger_valid: None,
            ..scores((0.0, 0.0), (0.0, 0.0), 0)
        };
        assert!(decide_swap(&none, 0.1).accepted);
    }
}
