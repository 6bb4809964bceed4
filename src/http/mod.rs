//! The node's HTTP API, served by actix-web in the node's actix system: the Open Inference
//! Protocol ([`v2`], types in [`oip`]), the console's commands as JSON ([`v1`]), Prometheus
//! metrics ([`metrics`]) and a live status page ([`page`]).
//!
//! Every route turns into a [`Command`] sent to the [`ClusterActor`], so HTTP clients get the
//! same typed answers as the console and `ctl`. The server runs its own workers (threads), which
//! keep slow HTTP clients off the node's cluster thread.

pub mod auth;
pub mod error;
pub mod load;
pub mod metrics;
pub mod oip;
pub mod page;
pub mod predict_file;
pub mod v1;
pub mod v2;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::dev::Service;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use self::auth::Auth;
use self::error::ApiError;
use self::metrics::Metrics;
use crate::actors::{ClusterActor, Exec};
use crate::answer::{Answer, ModelInfo};
use crate::command::Command;
use crate::config::HttpSettings;
use crate::net::tls::https_server_config;
use crate::net::{TlsError, TlsFiles};

/// Largest request body: a CSV for `/v1/predict-file` or a big inference batch.
const MAX_BODY: usize = 64 << 20;
/// HTTP worker threads; the cluster work itself runs on the node's actors.
const WORKERS: usize = 2;
/// How long an inference request may check its columns against a schema read earlier, rather
/// than ask the cluster actor again (a retrain on the same shard keeps the columns; a schema
/// change is seen within this time).
const SCHEMA_TTL: Duration = Duration::from_secs(1);

/// What every handler shares.
pub struct State {
    pub cluster: Addr<ClusterActor>,
    pub auth: Auth,
    pub metrics: Metrics,
    /// This node's id: the name of its own model in the Open Inference Protocol.
    pub node: String,
    /// The last model description read, and when.
    schema: Mutex<Option<(Instant, Arc<ModelInfo>)>>,
}

pub type Shared = web::Data<Arc<State>>;

impl State {
    /// Runs a command on the node, recording it under `name`.
    pub async fn exec(&self, name: &str, command: Command) -> Answer {
        let started = Instant::now();
        let answer = match self.cluster.send(Exec(command)).await {
            Ok(answer) => answer,
            Err(e) => Answer::error(format!("the node is not answering: {e}")),
        };
        self.metrics
            .command(name, answer.is_ok(), started.elapsed());
        answer
    }

    /// This node's model as read at most [`SCHEMA_TTL`] ago: what inference checks its inputs
    /// against, kept off the cluster actor's mailbox on the hot path.
    pub async fn schema(&self) -> Result<Arc<ModelInfo>, ApiError> {
        if let Ok(cached) = self.schema.lock() {
            if let Some((at, info)) = cached.as_ref() {
                if at.elapsed() < SCHEMA_TTL {
                    return Ok(info.clone());
                }
            }
        }
        let info = Arc::new(self.model().await?);
        if let Ok(mut cached) = self.schema.lock() {
            *cached = Some((Instant::now(), info.clone()));
        }
        Ok(info)
    }

    /// This node's current model, or 503 when it has none.
    pub async fn model(&self) -> Result<ModelInfo, ApiError> {
        match self.exec("model", Command::Model).await {
            Answer::Model(m) => Ok(*m),
            Answer::Failure(f) => Err(ApiError::unavailable(f.error)),
            _ => Err(ApiError::unavailable(
                "the node answered with something else",
            )),
        }
    }
}

/// Why the HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot serve HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTPS: {0}")]
    Tls(#[from] TlsError),
}

/// Binds `[http] listen` and serves the API on the current actix system; returns the bound
/// address (the port may have been 0). With `tls` (the node's `[tls]` files) it serves HTTPS
/// only, with the node's certificate.
pub fn start(
    settings: &HttpSettings,
    tls: Option<&TlsFiles>,
    cluster: Addr<ClusterActor>,
    node: String,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(listen) = settings.listen else {
        return Ok(None);
    };
    let tls = tls.map(https_server_config).transpose()?;
    let state = Arc::new(State {
        cluster,
        auth: Auth::new(settings),
        metrics: Metrics::new(),
        node,
        schema: Mutex::new(None),
    });
    let server = HttpServer::new(move || {
        let state = web::Data::new(state.clone());
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .wrap_fn(move |req, srv| {
                let endpoint = req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_string());
                let method = req.method().to_string();
                let started = Instant::now();
                let state = state.clone();
                let response = srv.call(req);
                async move {
                    let response = response.await?;
                    let status = response.status().as_u16();
                    state
                        .metrics
                        .request(&endpoint, &method, status, started.elapsed());
                    Ok(response)
                }
            })
            .configure(v2::routes)
            .configure(v1::routes)
            .configure(page::routes)
            .default_service(web::to(not_found))
    })
    .workers(WORKERS)
    .disable_signals()
    .shutdown_timeout(1)
    .on_connect(auth::client_certificate);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(config) => server.bind_rustls_0_23(listen, config),
        None => server.bind(listen),
    }
    .map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let bound = server.addrs().first().copied();
    actix_rt::spawn(server.run());
    if let Some(addr) = bound {
        tracing::info!("HTTP API on {scheme}://{addr}/");
    }
    Ok(bound)
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no endpoint {} {}; see /v1/openapi.json",
        req.method(),
        req.path()
    )))
}

/// A JSON body, or 400 naming what is wrong with it.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}
