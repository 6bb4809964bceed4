//! The HTTP side of `ensemble-node bench --http URL`: Open Inference Protocol requests to
//! `/v2/models/ensemble/infer` over keep-alive HTTP/1.1 connections, one per request in flight,
//! so the figures are comparable with the TCP bench (one connection, requests multiplexed).
//!
//! The client is a minimal HTTP/1.1 writer and reader (Content-Length bodies, which is what the
//! node's server sends): enough for a load generator, without another HTTP stack to build. An
//! `https://` URL is served over rustls, verified against the cluster CA like any HTTPS client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::{json, Map, Value as Json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};
use crate::ml::{Rows, Value};
use crate::net::tls::https_client_config;
use crate::net::TlsFiles;

/// Where the node's HTTP API is: `host:port`, and the TLS client for an `https://` URL.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Endpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT` (then `tls` holds the cluster CA, and this
    /// client's certificate).
    pub fn new(url: &str, tls: Option<&TlsFiles>) -> Result<Endpoint> {
        let host = host_of(url)?;
        let tls = match (url.starts_with("https://"), tls) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::Other(
                    "an https:// URL needs the cluster CA: give --ca, --cert and --key".into(),
                ))
            }
            (true, Some(files)) => {
                let config = https_client_config(files).map_err(|e| Error::Config {
                    file: "TLS files".into(),
                    reason: e.to_string(),
                })?;
                let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
                let name = name.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(name.to_string())
                    .map_err(|e| Error::Other(format!("{url}: bad host name: {e}")))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Endpoint { host, tls })
    }
}

/// What to send: the node's address and the request bodies, used in turn.
pub struct Load {
    pub endpoint: Endpoint,
    pub token: Option<String>,
    pub bodies: Vec<String>,
    /// Deadline of one request (an answer later than that counts as an error).
    pub timeout: Duration,
}

/// A plain or TLS byte stream.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// One keep-alive connection.
struct Conn {
    stream: BufReader<Box<dyn Io>>,
}

fn io(e: std::io::Error) -> Error {
    Error::Other(format!("HTTP: {e}"))
}

impl Conn {
    async fn open(endpoint: &Endpoint) -> Result<Conn> {
        let host = &endpoint.host;
        let stream = TcpStream::connect(host)
            .await
            .map_err(|e| Error::Other(format!("cannot connect to {host}: {e}")))?;
        // Small requests must not wait for Nagle's algorithm.
        stream.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Io> = match &endpoint.tls {
            None => Box::new(stream),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| Error::Other(format!("HTTPS to {host}: {e}")))?,
            ),
        };
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one request; the status and the body.
    async fn call(&mut self, head: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await.map_err(io)?;
        s.write_all(body).await.map_err(io)?;
        // TLS keeps what the socket did not take yet: only a flush sends all of it.
        s.flush().await.map_err(io)?;
        let mut status = 0u16;
        let mut length: Option<usize> = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await.map_err(io)? == 0 {
                return Err(Error::Other(
                    "HTTP: the server closed the connection".into(),
                ));
            }
            if status == 0 {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| Error::Other(format!("HTTP: bad status line {line:?}")))?;
            } else if line == "\r\n" {
                break;
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                }
            }
        }
        let length = length.ok_or_else(|| Error::Other("HTTP: no Content-Length".into()))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok((status, body))
    }
}

fn head(method: &str, path: &str, host: &str, token: Option<&str>, len: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

/// `http://host:port[/...]` or `https://...` → `host:port`.
pub fn host_of(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || !host.contains(':') {
        return Err(Error::Other(format!(
            "--http takes http://HOST:PORT or https://HOST:PORT, not {url:?}"
        )));
    }
    Ok(host.to_string())
}

/// The request bodies for `rows`, `batch` rows each (rows in turn), typed by the ensemble's
/// metadata; at most `limit` bodies.
pub async fn prepare(
    endpoint: Endpoint,
    token: Option<String>,
    rows: &Rows,
    batch: usize,
    limit: usize,
    timeout: Duration,
) -> Result<Load> {
    let mut conn = Conn::open(&endpoint).await?;
    let h = head(
        "GET",
        "/v2/models/ensemble",
        &endpoint.host,
        token.as_deref(),
        0,
    );
    let (status, reply) = conn.call(&h, b"").await?;
    let meta: Json = serde_json::from_slice(&reply)
        .map_err(|e| Error::Other(format!("model metadata is not JSON: {e}")))?;
    if status != 200 {
        return Err(Error::Other(format!("model metadata: {status} {meta}")));
    }
    let inputs: Vec<(String, bool)> = meta["inputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["name"].as_str()?.to_string(), t["datatype"] == "FP64")))
                .collect()
        })
        .unwrap_or_default();
    let batch = batch.max(1);
    let n = rows.len();
    let count = n.div_ceil(batch).clamp(1, limit.max(1));
    let bodies = (0..count)
        .map(|i| body(rows, &inputs, (i * batch) % n.max(1), batch))
        .collect();
    Ok(Load {
        endpoint,
        token,
        bodies,
        timeout,
    })
}

/// One inference request: `batch` rows from `start` (wrapping), one tensor per known column.
fn body(rows: &Rows, inputs: &[(String, bool)], start: usize, batch: usize) -> String {
    let n = rows.len().max(1);
    let picked: Vec<&Vec<Value>> = (0..batch).map(|k| &rows.data[(start + k) % n]).collect();
    let tensors: Vec<Json> = inputs
        .iter()
        .filter_map(|(name, numeric)| {
            let at = rows.columns.iter().position(|c| c == name)?;
            let data: Vec<Json> = picked
                .iter()
                .map(|r| match (&r[at], numeric) {
                    (Value::Num(x), _) => json!(x),
                    (Value::Text(s), true) => s.parse::<f64>().map_or(Json::Null, |x| json!(x)),
                    (Value::Text(s), false) => json!(s),
                    (Value::Missing, _) => Json::Null,
                })
                .collect();
            let mut t = Map::new();
            t.insert("name".into(), json!(name));
            t.insert("shape".into(), json!([batch]));
            t.insert(
                "datatype".into(),
                json!(if *numeric { "FP64" } else { "BYTES" }),
            );
            t.insert("data".into(), Json::Array(data));
            Some(Json::Object(t))
        })
        .collect();
    json!({ "inputs": tensors }).to_string()
}

/// What one worker saw.
#[derive(Default)]
pub struct Tally {
    pub latencies_us: Vec<u64>,
    pub errors: usize,
    pub partial: usize,
    /// The last error, to say why requests failed.
    pub last_error: Option<String>,
}

/// Sends requests `next()` hands out, on one keep-alive connection, until it hands out none.
pub async fn worker(load: &Load, mut next: impl FnMut() -> Option<usize>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    while let Some(i) = next() {
        let body = &load.bodies[i % load.bodies.len()];
        let h = head(
            "POST",
            "/v2/models/ensemble/infer",
            &load.endpoint.host,
            load.token.as_deref(),
            body.len(),
        );
        let t0 = Instant::now();
        let call = async {
            match conn.as_mut() {
                Some(c) => c.call(&h, body.as_bytes()).await,
                None => match Conn::open(&load.endpoint).await {
                    Ok(c) => conn.insert(c).call(&h, body.as_bytes()).await,
                    Err(e) => Err(e),
                },
            }
        };
        let result = tokio::time::timeout(load.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Other(format!(
                    "no answer within {} ms",
                    load.timeout.as_millis()
                )))
            });
        match result {
            Ok((200, reply)) => {
                let reply: Json = serde_json::from_slice(&reply).unwrap_or(Json::Null);
                let p = &reply["parameters"];
                if p["answered"].as_u64() < p["asked"].as_u64() {
                    tally.partial += 1;
                }
            }
            Ok((status, reply)) => {
                tally.errors += 1;
                tally.last_error = Some(format!("{status}: {}", String::from_utf8_lossy(&reply)));
            }
            Err(e) => {
                tally.errors += 1;
                tally.last_error = Some(e.to_string());
                conn = None;
            }
        }
        tally.latencies_us.push(t0.elapsed().as_micros() as u64);
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_bodies() {
        assert_eq!(
            host_of("http://127.0.0.1:8101/").ok().as_deref(),
            Some("127.0.0.1:8101")
        );
        assert!(host_of("http://localhost").is_err());
        assert_eq!(
            host_of("https://127.0.0.1:8101").ok().as_deref(),
            Some("127.0.0.1:8101")
        );
        assert!(
            Endpoint::new("https://127.0.0.1:8101", None).is_err(),
            "no CA"
        );
        let rows = Rows {
            columns: vec!["Id".into(), "LotArea".into(), "Street".into()],
            data: vec![
                vec![
                    Value::Text("1".into()),
                    Value::Text("8450".into()),
                    Value::Missing,
                ],
                vec![
                    Value::Text("2".into()),
                    Value::Missing,
                    Value::Text("Pave".into()),
                ],
            ],
        };
        let inputs = vec![("LotArea".to_string(), true), ("Street".to_string(), false)];
        let b: Json = serde_json::from_str(&body(&rows, &inputs, 1, 2)).expect("json");
        assert_eq!(b["inputs"][0]["data"], json!([null, 8450.0]));
        assert_eq!(b["inputs"][1]["data"], json!(["Pave", null]));
        assert_eq!(b["inputs"][1]["shape"], json!([2]));
        assert_eq!(
            b["inputs"].as_array().map(Vec::len),
            Some(2),
            "Id is not an input"
        );
    }
}
