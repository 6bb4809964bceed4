//! The Open Inference Protocol's REST routes (`/v2/...`). Models: `ensemble`, the cluster's
//! aggregate, and this node's own model under its node id (predicted by this node alone). Another
//! node's id is 404: ask that node's own HTTP API.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::Role;
use super::error::ApiError;
use super::oip::{self, InferRequest, ENSEMBLE};
use super::{parse_json, Shared};
use crate::answer::{Answer, Status};
use crate::command::Command;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2", web::get().to(server_metadata))
        .route("/v2/health/live", web::get().to(live))
        .route("/v2/health/ready", web::get().to(ready))
        .route("/v2/models/{name}", web::get().to(model_metadata))
        .route("/v2/models/{name}/ready", web::get().to(model_ready))
        .route("/v2/models/{name}/infer", web::post().to(infer));
}

/// Whether `name` is the ensemble (`Some(false)`), this node's own model (`Some(true)`), or
/// unknown.
fn which(state: &Shared, name: &str) -> Result<bool, ApiError> {
    if name == ENSEMBLE {
        Ok(false)
    } else if name == state.node {
        Ok(true)
    } else {
        Err(ApiError::not_found(format!(
            "unknown model {name:?}: this node serves {ENSEMBLE:?} and its own model {:?}",
            state.node
        )))
    }
}

async fn server_metadata(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    Ok(HttpResponse::Ok().json(json!({
        "name": "ensemble-cluster",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    })))
}

async fn live(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    Ok(HttpResponse::Ok().json(json!({ "live": true })))
}

async fn status(state: &Shared) -> Result<Status, ApiError> {
    match state.exec("status", Command::Status).await {
        Answer::Status(s) => Ok(*s),
        Answer::Failure(f) => Err(ApiError::unavailable(f.error)),
        _ => Err(ApiError::unavailable(
            "the node answered with something else",
        )),
    }
}

/// Ready: this node holds a model and no peer is down.
async fn ready(state: Shared, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let s = status(&state).await?;
    let ready = s.model_version.is_some() && s.peers_down == 0;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(code).json(json!({ "ready": ready })))
}

async fn model_metadata(
    state: Shared,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let own = which(&state, &name)?;
    let model = state.model().await?;
    let versions: Vec<String> = if own {
        vec![model.version.to_string()]
    } else {
        Vec::new()
    };
    Ok(HttpResponse::Ok().json(json!({
        "name": name.as_str(),
        "versions": versions,
        "platform": "ensemble-cluster",
        "inputs": oip::input_meta(&model.features),
        "outputs": [oip::output_meta(&model.task)],
    })))
}

async fn model_ready(
    state: Shared,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    which(&state, &name)?;
    let ready = state.model().await.is_ok();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(code).json(json!({ "name": name.as_str(), "ready": ready })))
}

async fn infer(
    state: Shared,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Role::Reader)?;
    let started = Instant::now();
    let local = which(&state, &name)?;
    let header_len = req
        .headers()
        .get("Inference-Header-Content-Length")
        .map(|v| v.to_str().unwrap_or("?"));
    let (header, binary) = oip::split_body(&body, header_len)?;
    let request: InferRequest = parse_json(header)?;
    let model = state.schema().await?;
    let rows = oip::to_rows(&request, binary, &model.features)?;
    let n = rows.len();
    let command = if local {
        "infer local"
    } else {
        "infer ensemble"
    };
    match state
        .exec(command, Command::PredictRows { rows, local })
        .await
    {
        Answer::PredictRows(answer) => {
            state
                .metrics
                .predicted(n, answer.answered, answer.asked, started.elapsed());
            // No model_version: the schema may be a second old, and a version that did not
            // answer would be worse than none.
            Ok(HttpResponse::Ok().json(oip::response(&name, None, request.id, &answer)))
        }
        Answer::Failure(f) => Err(ApiError::unavailable(f.error)),
        _ => Err(ApiError::unavailable(
            "the node answered with something else",
        )),
    }
}
