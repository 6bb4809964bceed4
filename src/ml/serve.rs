//! A pipeline in service: [`Served`] predicts [`TypedRows`] with the compiled model, its
//! preprocessing bound once to each schema batches arrive in. Built when a model goes into
//! service; the pipeline it comes from stays what training, scoring and the model file use.

use std::sync::{Arc, Mutex};

use super::compiled::CompiledModel;
use super::config::Target;
use super::data::Task;
use super::error::{MlError, Result};
use super::learner::{decide, Model};
use super::metrics::Predictions;
use super::preprocess::{Binding, Preprocessor};
use super::schema::Schema;
use super::typed::TypedRows;

/// Schemas a model keeps its bindings for (a cluster uses one or two at a time).
const BINDINGS: usize = 8;

/// A model ready to answer typed batches.
pub struct Served {
    schema: Arc<Schema>,
    prep: Preprocessor,
    model: CompiledModel,
    task: Task,
    target: Target,
    classes: Vec<String>,
    bindings: Mutex<Vec<(Arc<Schema>, Arc<Binding>)>>,
}

impl Served {
    /// The parts of a pipeline ([`super::pipeline::Pipeline::served`]), its model compiled.
    pub(crate) fn new(
        schema: Schema,
        prep: &Preprocessor,
        model: &Model,
        task: Task,
        target: Target,
        classes: &[String],
    ) -> Served {
        Served {
            schema: schema.shared(),
            prep: prep.clone(),
            model: CompiledModel::new(model),
            task,
            target,
            classes: classes.to_vec(),
            bindings: Mutex::new(Vec::new()),
        }
    }

    /// The columns this model reads, and how.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn binding(&self, schema: &Arc<Schema>) -> Arc<Binding> {
        let mut cache = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
        // Batches of one schema share it (interned): the pointer settles it without comparing.
        if let Some((_, b)) = cache
            .iter()
            .find(|(s, _)| Arc::ptr_eq(s, schema) || s == schema)
        {
            return b.clone();
        }
        let b = Arc::new(self.prep.bind(schema));
        if cache.len() >= BINDINGS {
            cache.remove(0);
        }
        cache.push((schema.clone(), b.clone()));
        b
    }

    /// Predicts every row of `rows`: the same predictions as
    /// [`super::pipeline::Pipeline::predict`] of the same
    /// cells (bit for bit for trees).
    pub fn predict(&self, rows: &TypedRows) -> Result<Predictions> {
        let n = rows.len();
        let nf = self.prep.n_features;
        let binding = self.binding(rows.schema());
        let cells = n
            .checked_mul(nf)
            .ok_or_else(|| MlError::Mismatch(format!("{n} rows of {nf} features")))?;
        let mut x = vec![0.0; cells];
        self.prep.transform_typed(&binding, rows, &mut x)?;
        let k = self.model.n_outputs();
        let mut raw = vec![0.0; n * k];
        self.model.predict(&x, nf, &mut raw);
        Ok(match self.task {
            Task::Regression => Predictions::Regression(match self.target {
                Target::Log => raw.iter().map(|v| v.exp_m1()).collect(),
                _ => raw,
            }),
            Task::Classification => Predictions::Classification(
                raw.chunks_exact(k.max(1))
                    .map(|out| {
                        self.classes
                            .get(decide(out))
                            .or(self.classes.first())
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{Kind, ModelConfig};
    use crate::ml::data::{parse_csv, DataSpec, Rows, Value};
    use crate::ml::pipeline::{ModelMeta, Pipeline};
    use crate::ml::schema::{ColumnKind, SchemaColumn};

    /// A shard with a numeric column, a categorical one, a column numeric here but categorical
    /// in another model's view, and missing cells.
    fn table(task: Task) -> crate::ml::Table {
        let mut csv = String::from("n,c,m,y\n");
        for i in 0..240 {
            let n = if i % 11 == 0 {
                "NA".to_string()
            } else {
                format!("{}", (i * 37) % 101)
            };
            let c = ["x", "y", "z", "NA"][i % 4];
            let y = match task {
                Task::Regression => format!("{}", (i * 37) % 101 + 10 * (i % 3)),
                Task::Classification => ["a", "b", "c"][(i / 7) % 3].to_string(),
            };
            csv.push_str(&format!("{n},{c},{},{y}\n", i % 5));
        }
        let spec = DataSpec {
            label: "y".into(),
            task,
            drop: vec![],
        };
        parse_csv("t".as_ref(), csv.as_bytes(), &spec).expect("a table")
    }

    fn requests() -> Rows {
        let cells = |n: Value, c: Value, m: Value| vec![n, c, m, Value::Num(7.0)];
        Rows {
            columns: vec!["n".into(), "c".into(), "m".into(), "extra".into()],
            data: vec![
                cells(Value::Num(12.0), Value::Text("y".into()), Value::Num(3.0)),
                cells(
                    Value::Text("55".into()),
                    Value::Text("unseen".into()),
                    Value::Text("2".into()),
                ),
                cells(Value::Missing, Value::Missing, Value::Missing),
                cells(
                    Value::Text("abc".into()),
                    Value::Num(1.0),
                    Value::Text("4".into()),
                ),
            ],
        }
    }

    #[test]
    fn typed_predictions_equal_the_pipelines_for_every_learner() {
        for task in [Task::Regression, Task::Classification] {
            let t = table(task);
            for kind in [Kind::Tree, Kind::Forest, Kind::Boosted, Kind::Linear] {
                let cfg = ModelConfig {
                    kind,
                    n_trees: 5,
                    n_rounds: 20,
                    ..ModelConfig::default()
                };
                let p = Pipeline::fit(&t, &cfg, ModelMeta::default()).expect("fits");
                let served = p.served();
                let rows = requests();
                let want = p.predict(&rows).expect("predicts");
                // By the model's own schema, and by a wider one where "m" is a category.
                let mut wide: Vec<SchemaColumn> = p.schema().columns().to_vec();
                wide.push(SchemaColumn {
                    name: "other".into(),
                    kind: ColumnKind::Number,
                });
                for c in wide.iter_mut().filter(|c| c.name == "m") {
                    c.kind = ColumnKind::Category;
                }
                for schema in [p.schema().shared(), Arc::new(Schema::new(wide.clone()))] {
                    let typed = TypedRows::from_rows(&schema, &rows, false).expect("resolves");
                    let got = served.predict(&typed).expect("predicts");
                    match (&got, &want, kind) {
                        (Predictions::Regression(a), Predictions::Regression(b), Kind::Linear) => {
                            for (x, y) in a.iter().zip(b) {
                                assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "{x} vs {y}");
                            }
                        }
                        _ => assert_eq!(got, want, "{task:?} {kind:?} {schema:?}"),
                    }
                }
            }
        }
    }

    /// A validation split is scored through [`TypedRows::from_table`] and the compiled model:
    /// the same predictions as the pipeline gives for the table's rows (missing cells,
    /// categories, a category the training rows never had).
    #[test]
    fn a_table_predicts_as_its_rows() {
        for task in [Task::Regression, Task::Classification] {
            let t = table(task);
            let rows: Vec<usize> = (0..t.len()).filter(|i| i % 3 == 0).collect();
            let mut held = t.select(&rows);
            if let Some(crate::ml::data::Column {
                data: crate::ml::data::ColumnData::Categorical(v),
                ..
            }) = held.columns.iter_mut().find(|c| c.name == "c")
            {
                v[0] = Some("never seen".into());
            }
            for kind in [Kind::Tree, Kind::Boosted, Kind::Hybrid, Kind::Linear] {
                let cfg = ModelConfig {
                    kind,
                    n_rounds: 20,
                    ..ModelConfig::default()
                };
                let p = Pipeline::fit(&t, &cfg, ModelMeta::default()).expect("fits");
                let got = p.predict_table(&held).expect("predicts");
                let want = p.predict(&held.rows()).expect("predicts");
                match (&got, &want) {
                    (Predictions::Regression(a), Predictions::Regression(b)) => {
                        assert_eq!(a.len(), b.len());
                        for (x, y) in a.iter().zip(b) {
                            assert!(
                                (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                                "{kind:?} {x} vs {y}"
                            );
                        }
                    }
                    _ => assert_eq!(got, want, "{task:?} {kind:?}"),
                }
            }
        }
    }
}
