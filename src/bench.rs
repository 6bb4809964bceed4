//! `ensemble-node bench`: a load client. Sends N global predictions (or bare protocol round
//! trips with `--ping`) to one node, C at a time over one connection, and prints latency
//! percentiles and throughput as one JSON line. With `--http URL` the predictions go through the
//! node's Open Inference Protocol route instead, C keep-alive connections ([`crate::http::load`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ctl::{self, Target};
use crate::error::{Error, Result};
use crate::http;
use crate::ml::{load_rows, Rows, RowsResolver};
use crate::net::{Link, TlsFiles};
use crate::protocol::{Request, Response};

/// What to send, how many, how many at once.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The node to load (host:port); not needed with `--http`.
    #[arg(required_unless_present = "http")]
    pub addr: Option<String>,
    /// Load the node's HTTP API instead: `POST /v2/models/ensemble/infer` at this URL
    /// (`http://HOST:PORT`, or `https://HOST:PORT` with --ca, --cert and --key).
    #[arg(long)]
    pub http: Option<String>,
    /// With `--http`: rows per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// With `--http`: the bearer token, if the node has tokens.
    #[arg(long)]
    pub http_token: Option<String>,
    /// Bare protocol round trips instead of predictions.
    #[arg(long)]
    pub ping: bool,
    /// The row to predict, as a JSON object.
    #[arg(long, conflicts_with = "rows_from")]
    pub row_json: Option<String>,
    /// Predict rows of this CSV, one per request, in turn.
    #[arg(long)]
    pub rows_from: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Stop after this long even if not all requests were sent, in milliseconds.
    #[arg(long)]
    pub duration_ms: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Deadline of one request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Latency percentiles of sorted samples (µs).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The requests to send in turn: pings, or one row each of `rows`, resolved here by the
/// cluster's schema (asked of the node on `link`) as a client does.
async fn requests_from(
    rows: Option<&Rows>,
    link: &Link,
    timeout: Duration,
) -> Result<Vec<Request>> {
    let Some(rows) = rows else {
        return Ok(vec![Request::Ping]);
    };
    let schema = ctl::schema(link, timeout).await?;
    let mut resolver = RowsResolver::new(&schema, &rows.columns, false, 1);
    rows.data
        .iter()
        .map(|r| {
            resolver.push(r).map_err(|e| Error::Other(e.to_string()))?;
            Ok(Request::PredictEnsemble {
                rows: resolver.take(),
            })
        })
        .collect()
}

/// The rows `--row-json` or `--rows-from` name.
fn rows_from(args: &BenchArgs) -> Result<Rows> {
    if let Some(text) = &args.row_json {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Rows::from_json_object(&map)),
            _ => Err(Error::Other("--row-json takes one JSON object".into())),
        };
    }
    let Some(path) = &args.rows_from else {
        return Err(Error::Other(
            "give --ping, --row-json JSON or --rows-from FILE".into(),
        ));
    };
    let rows = load_rows(path).map_err(|e| Error::Other(e.to_string()))?;
    if rows.is_empty() {
        return Err(Error::Other(format!("{} has no rows", path.display())));
    }
    Ok(rows)
}

/// `--http`: the same load through the Open Inference Protocol.
pub async fn run_http(args: &BenchArgs, url: &str, tls: Option<&TlsFiles>) -> Result<Value> {
    let rows = rows_from(args)?;
    let endpoint = http::load::Endpoint::new(url, tls)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let token = args.http_token.clone();
    let load = http::load::prepare(endpoint, token, &rows, args.batch, 10_000, timeout).await?;
    let next = Rc::new(RefCell::new(0usize));
    let total = args.requests;
    let started = Instant::now();
    let stop_at = args
        .duration_ms
        .map(|ms| started + Duration::from_millis(ms));
    let load = &load;
    let workers = (0..args.in_flight.max(1)).map(|_| {
        let next = next.clone();
        http::load::worker(load, move || {
            let mut n = next.borrow_mut();
            if *n >= total || stop_at.is_some_and(|t| Instant::now() >= t) {
                return None;
            }
            *n += 1;
            Some(*n - 1)
        })
    });
    let tallies = futures::future::join_all(workers).await;
    let secs = started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(total);
    let (mut errors, mut partial, mut last_error) = (0, 0, None);
    for t in tallies {
        latencies.extend(t.latencies_us);
        errors += t.errors;
        partial += t.partial;
        last_error = last_error.or(t.last_error);
    }
    latencies.sort_unstable();
    let per_s = if secs > 0.0 {
        (latencies.len() as f64 / secs).round()
    } else {
        0.0
    };
    Ok(json!({
        "ok": errors == 0,
        "kind": "predict",
        "transport": "http",
        "batch": args.batch.max(1),
        "requests": latencies.len(),
        "in_flight": args.in_flight,
        "p50_us": percentile(&latencies, 50.0),
        "p99_us": percentile(&latencies, 99.0),
        "max_us": latencies.last().copied().unwrap_or(0),
        "per_s": per_s,
        "rows_per_s": per_s * args.batch.max(1) as f64,
        "errors": errors,
        "partial": partial,
        "last_error": last_error,
    }))
}

/// Runs the load and returns its report.
pub async fn run(args: &BenchArgs, target: &Target) -> Result<Value> {
    let rows = if args.ping {
        None
    } else {
        Some(rows_from(args)?)
    };
    let link = ctl::connect(target).await?;
    let deadline = Duration::from_millis(args.timeout_ms);
    let requests = Rc::new(requests_from(rows.as_ref(), &link, deadline).await?);
    let next = Rc::new(RefCell::new(0usize));
    let total = args.requests;
    let started = Instant::now();
    let stop_at = args
        .duration_ms
        .map(|ms| started + Duration::from_millis(ms));
    // How many nodes contributed to each answer, in the order the answers arrived.
    let answered_log: Rc<RefCell<Vec<u32>>> = Rc::new(RefCell::new(Vec::new()));
    let workers = (0..args.in_flight.max(1)).map(|_| {
        let (link, next, requests) = (link.clone(), next.clone(), requests.clone());
        let answered_log = answered_log.clone();
        async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut partial = 0usize;
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    if *n >= total || stop_at.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                    *n += 1;
                    *n - 1
                };
                let request = requests[i % requests.len()].clone();
                let t0 = Instant::now();
                match link.request(request, deadline).await {
                    Ok(Response::Pong) => {}
                    Ok(Response::Ensemble {
                        answered, asked, ..
                    }) => {
                        if answered < asked {
                            partial += 1;
                        }
                        answered_log.borrow_mut().push(answered);
                    }
                    Ok(_) | Err(_) => errors += 1,
                }
                latencies.push(t0.elapsed().as_micros() as u64);
            }
            (latencies, errors, partial)
        }
    });
    let results = futures::future::join_all(workers).await;
    let secs = started.elapsed().as_secs_f64();
    link.close("bench done");
    let mut latencies: Vec<u64> = Vec::with_capacity(total);
    let (mut errors, mut partial) = (0, 0);
    for (l, e, p) in results {
        latencies.extend(l);
        errors += e;
        partial += p;
    }
    latencies.sort_unstable();
    let answered_log = answered_log.borrow();
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for a in answered_log.iter() {
        *answered.entry(a.to_string()).or_default() += 1;
    }
    Ok(json!({
        "ok": errors == 0,
        "kind": if args.ping { "ping" } else { "predict" },
        "requests": latencies.len(),
        "in_flight": args.in_flight,
        "p50_us": percentile(&latencies, 50.0),
        "p99_us": percentile(&latencies, 99.0),
        "max_us": latencies.last().copied().unwrap_or(0),
        "per_s": if secs > 0.0 { (latencies.len() as f64 / secs).round() } else { 0.0 },
        "errors": errors,
        "partial": partial,
        "answered": answered,
        "answered_first": answered_log.first(),
        "answered_last": answered_log.last(),
    }))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<u64> = (1..=100).collect();
        // rank = round(0.5 * 99) = 50 (round half away from zero) → the 51st value.
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
