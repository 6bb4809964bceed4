//! The console's commands as JSON (`/v1/...`): each route runs one [`Command`] and serves its
//! typed answer's JSON, the same fields the console's `--json` mode and `ctl` print. A failed
//! command is 503 with its `error`; a malformed request is 400.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::auth::Role;
use super::error::ApiError;
use super::{parse_json, Shared};
use crate::answer::{Answer, Predicted};
use crate::command::Command;
use crate::ml::data::is_missing_token;
use crate::ml::{Rows, Value};
use crate::net::Access;

/// Rows per cluster request of `/v1/predict-file` (as `predict-file` does).
const FILE_BATCH_ROWS: usize = 8192;

const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/train", web::post().to(train))
        .route("/v1/evaluate", web::post().to(evaluate))
        .route("/v1/status", web::get().to(status))
        .route("/v1/peers", web::get().to(peers))
        .route("/v1/drift", web::get().to(drift))
        .route("/v1/model", web::get().to(model))
        .route("/v1/report", web::get().to(report))
        .route("/v1/live", web::get().to(live))
        .route("/v1/predict", web::post().to(predict))
        .route("/v1/predict-file", web::post().to(predict_file))
        .route("/v1/openapi.json", web::get().to(openapi))
        .route("/metrics", web::get().to(metrics));
}

/// The answer's JSON: 200, or 503 for a failure.
fn serve(answer: &Answer) -> HttpResponse {
    let code = if answer.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(code).json(answer.to_json())
}

/// Runs a command for a caller holding the role the command needs (the same role a `ctl`
/// client needs for it).
async fn run(
    state: Shared,
    req: HttpRequest,
    name: &str,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let need = match command.needs() {
        Access::Operator => Role::Operator,
        Access::Reader | Access::Member => Role::Reader,
    };
    state.auth.check(&req, need)?;
    Ok(serve(&state.exec(name, command).await))
}

async fn train(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "train", Command::Train).await
}

async fn evaluate(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "evaluate", Command::Evaluate).await
}

async fn status(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "status", Command::Status).await
}

async fn peers(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "peers", Command::Peers).await
}

async fn drift(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "drift", Command::Drift).await
}

async fn model(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "model", Command::Model).await
}

async fn report(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    run(state, req, "report", Command::LastReport).await
}

async fn live(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    Ok(HttpResponse::Ok().json(state.metrics.live()))
}

#[derive(Debug, Deserialize)]
struct PredictQuery {
    #[serde(default)]
    explain: bool,
}

async fn predict(
    state: Shared,
    req: HttpRequest,
    query: web::Query<PredictQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let started = Instant::now();
    let row: Map<String, Json> = match parse_json::<Json>(&body)? {
        Json::Object(row) => row,
        _ => {
            return Err(ApiError::bad_request(
                "the body must be one JSON object of feature: value",
            ))
        }
    };
    let explain = query.explain;
    let answer = state
        .exec("predict", Command::Predict { row, explain })
        .await;
    if let Answer::Predict(p) = &answer {
        state
            .metrics
            .predicted(1, p.answered, p.asked, started.elapsed());
    }
    Ok(serve(&answer))
}

/// A CSV body as rows, cells as text (as `predict-file` reads a file); the file never touches
/// the node's disk.
fn csv_rows(body: &[u8]) -> Result<Rows, ApiError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let columns: Vec<String> = rdr
        .headers()
        .map_err(|e| ApiError::bad_request(format!("unreadable CSV header: {e}")))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    if columns.iter().all(|c| c.is_empty()) {
        return Err(ApiError::bad_request("the CSV has no header line"));
    }
    let mut data = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|e| ApiError::bad_request(format!("unreadable CSV: {e}")))?;
        data.push(
            record
                .iter()
                .map(|c| {
                    let c = c.trim();
                    if is_missing_token(c) {
                        Value::Missing
                    } else {
                        Value::Text(c.to_string())
                    }
                })
                .collect(),
        );
    }
    if data.is_empty() {
        return Err(ApiError::bad_request("the CSV has a header but no rows"));
    }
    Ok(Rows { columns, data })
}

/// `Id,<label>` lines when the CSV has an `Id` column, else one prediction per line; the
/// `X-Answered` / `X-Asked` headers say how many nodes took part (the fewest of any batch).
async fn predict_file(
    state: Shared,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let started = Instant::now();
    let rows = csv_rows(&body)?;
    let label = match state.model().await {
        Ok(m) => m.label,
        Err(_) => "prediction".into(),
    };
    let id_at = rows.columns.iter().position(|c| c == "Id");
    let mut out = String::new();
    if id_at.is_some() {
        out.push_str(&format!("Id,{label}\n"));
    }
    let (mut answered, mut asked) = (usize::MAX, 0);
    for chunk in rows.data.chunks(FILE_BATCH_ROWS) {
        let batch = Rows {
            columns: rows.columns.clone(),
            data: chunk.to_vec(),
        };
        let answer = state
            .exec(
                "predict-file",
                Command::PredictRows {
                    rows: batch,
                    local: false,
                },
            )
            .await;
        let p = match answer {
            Answer::PredictRows(p) => p,
            Answer::Failure(f) => return Err(ApiError::unavailable(f.error)),
            _ => {
                return Err(ApiError::unavailable(
                    "the node answered with something else",
                ))
            }
        };
        answered = answered.min(p.answered);
        asked = asked.max(p.asked);
        for (row, value) in chunk.iter().zip(&p.predictions) {
            let value = match value {
                Predicted::Number(x) => format!("{x}"),
                Predicted::Label(s) => s.clone(),
            };
            match id_at.and_then(|at| row.get(at)) {
                Some(Value::Text(id)) => out.push_str(&format!("{id},{value}\n")),
                Some(Value::Num(id)) => out.push_str(&format!("{id},{value}\n")),
                Some(Value::Missing) => out.push_str(&format!(",{value}\n")),
                None => out.push_str(&format!("{value}\n")),
            }
        }
    }
    state
        .metrics
        .predicted(rows.data.len(), answered, asked, started.elapsed());
    Ok(HttpResponse::Ok()
        .content_type("text/csv")
        .insert_header(("X-Answered", answered.to_string()))
        .insert_header(("X-Asked", asked.to_string()))
        .body(out))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// Prometheus text; the node's state is read from its answers now.
async fn metrics(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let status = match state.exec("status", Command::Status).await {
        Answer::Status(s) => Some(s),
        _ => None,
    };
    let peers = match state.exec("peers", Command::Peers).await {
        Answer::Peers(p) => Some(p),
        _ => None,
    };
    let model = state.model().await.ok();
    let drift = match state.exec("drift", Command::Drift).await {
        Answer::Drift(d) => Some(d),
        _ => None,
    };
    let text = state.metrics.render(
        status.as_deref(),
        peers.as_ref(),
        model.as_ref(),
        drift.as_deref(),
    );
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_bodies_become_text_rows() {
        let rows = csv_rows(b"Id,LotArea,Street\n1,8450,Pave\n2,NA,\n").expect("rows");
        assert_eq!(rows.columns, vec!["Id", "LotArea", "Street"]);
        assert_eq!(
            rows.data[1],
            vec![Value::Text("2".into()), Value::Missing, Value::Missing]
        );
        assert!(
            csv_rows(b"a,b\n1,2,3\n").is_err(),
            "ragged rows are refused"
        );
        assert!(csv_rows(b"a,b\n").is_err(), "no rows");
        assert!(csv_rows(b"").is_err(), "no header");
    }
}
