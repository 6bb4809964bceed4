//! The Open Inference Protocol (KServe v2 REST) as types, and the conversion between its
//! tensors and the node's rows: one input tensor per feature column, shape `[N]` or `[N, 1]`,
//! `FP64` (any numeric type is accepted) or `BYTES`; the output `prediction` has one element
//! per row. Inputs come as JSON `data` or, as `tritonclient` sends them by default, in the
//! binary tensor extension (`Inference-Header-Content-Length`).
//!
//! Everything here is pure, so the edge cases (shapes, datatypes, unknown columns, short
//! binary sections) are unit-tested without a node.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::error::ApiError;
use crate::answer::{FeatureInfo, Predicted, RowsPrediction};
use crate::ml::data::is_missing_token;
use crate::ml::{Rows, Value};

/// The name of the cluster's aggregate model.
pub const ENSEMBLE: &str = "ensemble";
/// The name of the output tensor.
pub const OUTPUT: &str = "prediction";

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
}

#[derive(Debug, Deserialize)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Json>>,
    #[serde(default)]
    pub data: Option<Json>,
}

#[derive(Debug, Serialize)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub parameters: Map<String, Json>,
    pub outputs: Vec<OutputTensor>,
}

#[derive(Debug, Serialize)]
pub struct OutputTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: String,
    pub data: Vec<Json>,
}

/// A tensor's metadata in `GET /v2/models/{name}`.
#[derive(Debug, Serialize)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// The model metadata's inputs: one per feature column.
pub fn input_meta(features: &[FeatureInfo]) -> Vec<TensorMeta> {
    features
        .iter()
        .map(|f| TensorMeta {
            name: f.name.clone(),
            datatype: if f.numeric { "FP64" } else { "BYTES" },
            shape: vec![-1],
        })
        .collect()
}

/// The output's metadata for a task (`regression` or `classification`).
pub fn output_meta(task: &str) -> TensorMeta {
    TensorMeta {
        name: OUTPUT.into(),
        datatype: output_datatype(task),
        shape: vec![-1],
    }
}

fn output_datatype(task: &str) -> &'static str {
    if task == "classification" {
        "BYTES"
    } else {
        "FP64"
    }
}

/// Splits a request body into its JSON header and binary section: the whole body is JSON
/// unless the client gave `Inference-Header-Content-Length`.
pub fn split_body<'a>(
    body: &'a [u8],
    header_len: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(len) = header_len else {
        return Ok((body, &[]));
    };
    let len: usize = len.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Inference-Header-Content-Length {len:?} is not a number"
        ))
    })?;
    if len > body.len() {
        return Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length {len} is longer than the body ({} bytes)",
            body.len()
        )));
    }
    Ok(body.split_at(len))
}

/// The rows of an inference request, checked against the model's columns.
pub fn to_rows(
    req: &InferRequest,
    mut binary: &[u8],
    features: &[FeatureInfo],
) -> Result<Rows, ApiError> {
    if req.inputs.is_empty() {
        return Err(ApiError::bad_request("the request has no inputs"));
    }
    let mut rows_n: Option<usize> = None;
    let mut columns = Vec::with_capacity(req.inputs.len());
    let mut cells: Vec<Vec<Value>> = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let name = &input.name;
        let Some(feature) = features.iter().find(|f| &f.name == name) else {
            return Err(ApiError::bad_request(format!(
                "unknown input {name:?}: the model's inputs are {}",
                features
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if columns.contains(name) {
            return Err(ApiError::bad_request(format!(
                "input {name:?} is given twice"
            )));
        }
        let n = rows_of_shape(name, &input.shape)?;
        match rows_n {
            None => rows_n = Some(n),
            Some(m) if m != n => {
                return Err(ApiError::bad_request(format!(
                    "input {name:?} has {n} rows but the inputs before it have {m}"
                )))
            }
            Some(_) => {}
        }
        let kind = Datatype::parse(name, &input.datatype)?;
        if kind != Datatype::Bytes && !feature.numeric {
            return Err(ApiError::bad_request(format!(
                "input {name:?} is a categorical column: its datatype must be BYTES, not {}",
                input.datatype
            )));
        }
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .map(|v| {
                v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "input {name:?}: binary_data_size must be a count"
                    ))
                })
            })
            .transpose()?;
        let values = match (binary_size, &input.data) {
            (Some(size), _) => {
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "input {name:?}: binary_data_size {size} is more than the {} bytes left",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                kind.decode_binary(name, mine)?
            }
            (None, Some(data)) => {
                let mut flat = Vec::with_capacity(n);
                flatten(data, &mut flat);
                flat.into_iter()
                    .map(|v| kind.decode_json(name, v))
                    .collect::<Result<Vec<_>, _>>()?
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "input {name:?} has neither data nor binary_data_size"
                )))
            }
        };
        if values.len() != n {
            return Err(ApiError::bad_request(format!(
                "input {name:?} has {} elements for shape {:?}",
                values.len(),
                input.shape
            )));
        }
        columns.push(name.clone());
        cells.push(values);
    }
    let n = rows_n.unwrap_or(0);
    let data = (0..n)
        .map(|i| cells.iter().map(|c| c[i].clone()).collect())
        .collect();
    Ok(Rows { columns, data })
}

/// Rows of a `[N]` or `[N, 1]` tensor.
fn rows_of_shape(name: &str, shape: &[i64]) -> Result<usize, ApiError> {
    match shape {
        [n] | [n, 1] if *n >= 1 => Ok(*n as usize),
        _ => Err(ApiError::bad_request(format!(
            "input {name:?} has shape {shape:?}: expected [N] or [N, 1] with N ≥ 1 (one tensor \
             per column)"
        ))),
    }
}

/// Row-major flattening of nested JSON arrays.
fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Datatype {
    Bytes,
    F64,
    F32,
    I64,
    I32,
    /// Other integer types: JSON only.
    Int,
}

impl Datatype {
    fn parse(name: &str, s: &str) -> Result<Datatype, ApiError> {
        Ok(match s {
            "BYTES" => Datatype::Bytes,
            "FP64" => Datatype::F64,
            "FP32" => Datatype::F32,
            "INT64" => Datatype::I64,
            "INT32" => Datatype::I32,
            "INT8" | "INT16" | "UINT8" | "UINT16" | "UINT32" | "UINT64" => Datatype::Int,
            other => {
                return Err(ApiError::bad_request(format!(
                    "input {name:?} has datatype {other:?}: FP64 (or another numeric type) is for \
                     numeric columns, BYTES for categorical ones"
                )))
            }
        })
    }

    fn decode_json(self, name: &str, v: &Json) -> Result<Value, ApiError> {
        match (self, v) {
            (_, Json::Null) => Ok(Value::Missing),
            (Datatype::Bytes, Json::String(s)) => Ok(text(s)),
            (Datatype::Bytes, Json::Number(n)) => Ok(n.as_f64().map_or(Value::Missing, Value::Num)),
            (Datatype::Bytes, _) => Err(ApiError::bad_request(format!(
                "input {name:?} is BYTES: its elements must be strings"
            ))),
            (_, Json::Number(n)) => Ok(n
                .as_f64()
                .filter(|x| x.is_finite())
                .map_or(Value::Missing, Value::Num)),
            (_, _) => Err(ApiError::bad_request(format!(
                "input {name:?} is numeric: its elements must be numbers (or null for missing)"
            ))),
        }
    }

    fn decode_binary(self, name: &str, bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
        let fixed = |width: usize, read: fn(&[u8]) -> f64| -> Result<Vec<Value>, ApiError> {
            if !bytes.len().is_multiple_of(width) {
                return Err(ApiError::bad_request(format!(
                    "input {name:?}: {} binary bytes are not whole {width}-byte elements",
                    bytes.len()
                )));
            }
            Ok(bytes
                .chunks_exact(width)
                .map(|c| {
                    let x = read(c);
                    if x.is_finite() {
                        Value::Num(x)
                    } else {
                        Value::Missing
                    }
                })
                .collect())
        };
        match self {
            Datatype::F64 => fixed(8, |c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
            Datatype::F32 => fixed(4, |c| {
                f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64
            }),
            Datatype::I64 => fixed(8, |c| {
                i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64
            }),
            Datatype::I32 => fixed(4, |c| {
                i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64
            }),
            Datatype::Int => Err(ApiError::bad_request(format!(
                "input {name:?}: binary data is accepted for FP64, FP32, INT64, INT32 and BYTES"
            ))),
            Datatype::Bytes => {
                let mut out = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    let short = || {
                        ApiError::bad_request(format!(
                            "input {name:?}: the binary BYTES data ends inside an element"
                        ))
                    };
                    let len_bytes: [u8; 4] = rest
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(short)?;
                    let len = u32::from_le_bytes(len_bytes) as usize;
                    let s = rest.get(4..4 + len).ok_or_else(short)?;
                    out.push(text(&String::from_utf8_lossy(s)));
                    rest = &rest[4 + len..];
                }
                Ok(out)
            }
        }
    }
}

/// A text cell as a CSV cell would be read: missing tokens are missing.
fn text(s: &str) -> Value {
    let s = s.trim();
    if is_missing_token(s) {
        Value::Missing
    } else {
        Value::Text(s.to_string())
    }
}

/// The inference response: the `prediction` tensor and who answered.
pub fn response(
    model_name: &str,
    model_version: Option<String>,
    id: Option<String>,
    answer: &RowsPrediction,
) -> InferResponse {
    let data = answer
        .predictions
        .iter()
        .map(|p| match p {
            Predicted::Number(x) => Json::from(*x),
            Predicted::Label(s) => Json::from(s.as_str()),
        })
        .collect::<Vec<_>>();
    let mut parameters = Map::new();
    parameters.insert("answered".into(), answer.answered.into());
    parameters.insert("asked".into(), answer.asked.into());
    InferResponse {
        model_name: model_name.into(),
        model_version,
        id,
        parameters,
        outputs: vec![OutputTensor {
            name: OUTPUT.into(),
            shape: vec![data.len()],
            datatype: output_datatype(&answer.task).into(),
            data,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn features() -> Vec<FeatureInfo> {
        vec![
            FeatureInfo {
                name: "LotArea".into(),
                numeric: true,
            },
            FeatureInfo {
                name: "Street".into(),
                numeric: false,
            },
        ]
    }

    fn req(v: Json) -> InferRequest {
        serde_json::from_value(v).expect("request")
    }

    #[test]
    fn json_tensors_become_rows() {
        let r = req(json!({"inputs": [
            {"name": "LotArea", "shape": [2, 1], "datatype": "FP64", "data": [[8450.0], [null]]},
            {"name": "Street", "shape": [2], "datatype": "BYTES", "data": ["Pave", "NA"]}
        ]}));
        let rows = to_rows(&r, &[], &features()).expect("rows");
        assert_eq!(rows.columns, vec!["LotArea", "Street"]);
        assert_eq!(
            rows.data[0],
            vec![Value::Num(8450.0), Value::Text("Pave".into())]
        );
        assert_eq!(rows.data[1], vec![Value::Missing, Value::Missing]);
    }

    #[test]
    fn binary_tensors_become_rows() {
        let mut bin = Vec::new();
        bin.extend(1.5f64.to_le_bytes());
        bin.extend(f64::NAN.to_le_bytes());
        for s in ["Pave", "Grvl"] {
            bin.extend((s.len() as u32).to_le_bytes());
            bin.extend(s.as_bytes());
        }
        let r = req(json!({"inputs": [
            {"name": "LotArea", "shape": [2], "datatype": "FP64",
             "parameters": {"binary_data_size": 16}},
            {"name": "Street", "shape": [2], "datatype": "BYTES",
             "parameters": {"binary_data_size": bin.len() - 16}}
        ]}));
        let rows = to_rows(&r, &bin, &features()).expect("rows");
        assert_eq!(
            rows.data[0],
            vec![Value::Num(1.5), Value::Text("Pave".into())]
        );
        assert_eq!(
            rows.data[1],
            vec![Value::Missing, Value::Text("Grvl".into())]
        );
        let err = to_rows(&r, &bin[..20], &features()).expect_err("short");
        assert!(err.message.contains("binary_data_size"), "{err}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let cases = [
            (
                json!({"name": "Nope", "shape": [1], "datatype": "FP64", "data": [1]}),
                "Nope",
            ),
            (
                json!({"name": "LotArea", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}),
                "shape",
            ),
            (
                json!({"name": "LotArea", "shape": [2], "datatype": "FP64", "data": [1]}),
                "elements",
            ),
            (
                json!({"name": "LotArea", "shape": [1], "datatype": "BOOL", "data": [true]}),
                "BOOL",
            ),
            (
                json!({"name": "Street", "shape": [1], "datatype": "FP64", "data": [1]}),
                "BYTES",
            ),
            (
                json!({"name": "LotArea", "shape": [1], "datatype": "FP64", "data": ["x"]}),
                "numbers",
            ),
            (
                json!({"name": "LotArea", "shape": [1], "datatype": "FP64"}),
                "neither",
            ),
        ];
        for (input, needle) in cases {
            let err =
                to_rows(&req(json!({"inputs": [input]})), &[], &features()).expect_err(needle);
            assert!(err.message.contains(needle), "{needle}: {err}");
        }
        let mismatched = json!({"inputs": [
            {"name": "LotArea", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "Street", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
        ]});
        assert!(to_rows(&req(mismatched), &[], &features()).is_err());
        assert!(split_body(b"{}", Some("9")).is_err());
        assert!(split_body(b"{}", Some("x")).is_err());
    }

    #[test]
    fn responses_carry_the_prediction_and_who_answered() {
        let preds = crate::ml::Predictions::Classification(vec!["B".into(), "M".into()]);
        let answer = RowsPrediction::new(&preds, 3, 4, Vec::new());
        let r = serde_json::to_value(response("ensemble", None, Some("7".into()), &answer))
            .expect("json");
        assert_eq!(r["outputs"][0]["datatype"], "BYTES");
        assert_eq!(r["outputs"][0]["shape"], json!([2]));
        assert_eq!(r["outputs"][0]["data"], json!(["B", "M"]));
        assert_eq!(r["parameters"], json!({"answered": 3, "asked": 4}));
        assert_eq!(r["id"], "7");
    }
}
