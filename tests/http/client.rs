//! What the HTTP tests share: a minimal HTTP/1.1 client over loopback (one request per
//! connection; a streaming variant that sends and reads at once), and the runner of
//! tests/python/oip_client.py, which drives the node with the official Python clients.

// Each test binary uses its own part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::{self, wait_until, Node, NodeSpec};

/// A loopback port nobody listens on now (the OS picks; the node binds it right after).
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The spec of a node serving HTTP on `http`.
pub fn with_http(spec: NodeSpec, http: SocketAddr, tokens: &str) -> NodeSpec {
    spec.toml(&format!("[http]\nlisten = \"{http}\"\n{tokens}"))
}

pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
    /// A chunked body ended with its last (empty) chunk; always true for other bodies.
    pub complete: bool,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    len: usize,
) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    )
}

/// One HTTP/1.1 request with `Connection: close`; the answer read to its end.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(request_head(addr, method, path, token, body.len()).as_bytes())
        .expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    parse_reply(&raw)
}

/// Like [`http`] for a large body: a thread sends it while the answer is read, as a streaming
/// client does (the node answers before the body has all arrived).
pub fn http_streaming(addr: SocketAddr, path: &str, body: Vec<u8>) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone the socket");
    let head = request_head(addr, "POST", path, None, body.len());
    let sender = std::thread::spawn(move || {
        // The node may answer (an error) and close before taking the whole body.
        let _ = w
            .write_all(head.as_bytes())
            .and_then(|_| w.write_all(&body));
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut raw = Vec::new();
    // A node that cuts an answer off resets the connection: keep what arrived before.
    let _ = s.read_to_end(&mut raw);
    let _ = sender.join();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {} bytes: {text:.200}", raw.len()));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let (body, complete) = if chunked {
        dechunk(body)
    } else {
        (body.to_string(), true)
    };
    Reply {
        status,
        headers: head.to_string(),
        body,
        complete,
    }
}

/// The data of a chunked body, and whether its last (empty) chunk arrived.
fn dechunk(mut body: &str) -> (String, bool) {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            return (out, true);
        }
        if rest.len() < n {
            out.push_str(rest);
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    (out, false)
}

/// Waits until something accepts connections at `addr`.
pub fn wait_http(node: &Node, addr: SocketAddr) {
    let up = wait_until(Duration::from_secs(20), || TcpStream::connect(addr).is_ok());
    if !up {
        node.fail(&format!("no HTTP on {addr}"));
    }
}

fn python() -> String {
    std::env::var("ENSEMBLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs tests/python/oip_client.py; fails the test with its output when it fails.
pub fn python_client(args: &[&str]) {
    let script = util::repo_file("tests/python/oip_client.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install python3 with `pip install tritonclient[http] \
                 prometheus_client numpy`, or set ENSEMBLE_TEST_PYTHON",
                python()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "oip_client.py {args:?} failed:\n{stdout}\n{stderr}"
    );
}

/// The first `n` rows of a CSV (header kept), written to `dest`.
pub fn head_csv(src: &Path, dest: &Path, n: usize) {
    let text = std::fs::read_to_string(src).expect("readable");
    let lines: Vec<&str> = text.lines().take(n + 1).collect();
    std::fs::write(dest, lines.join("\n") + "\n").expect("write");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_say_whether_they_ended() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            ("abcde".into(), true)
        );
        assert_eq!(dechunk("3\r\nabc\r\n5\r\nde"), ("abcde".into(), false));
    }
}
