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
use super::{parse_json, predict_file, Shared};
use crate::answer::Answer;
use crate::command::Command;
use crate::net::Access;

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
        .route(
            "/v1/predict-file",
            web::post().to(predict_file::predict_file),
        )
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
