//! A raw TCP client that breaks the protocol (garbage, a truncated frame, a frame announcing
//! 4 GiB or, in the handshake, more than 64 KiB, an unknown message, garbage after a correct
//! handshake) gets its connection closed; the node logs why, still answers `ctl ... status`, and
//! its peer link is untouched.
//!
//! The handshake here is written byte by byte from the protocol as the README documents it
//! (MessagePack per rmp-serde: a message is a one-entry map from the variant's name to the array
//! of its fields), so this also checks that description.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{wait_until, Cluster, Node};

/// The nodes of this test close a connection that has not finished its handshake after 1 s.
const HANDSHAKE_TIMEOUT_MS: u64 = 1_000;
/// How long the node gets to close a bad connection.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A frame: 4-byte big-endian length, then the body.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Just enough MessagePack to write a handshake and a request.
pub(crate) mod mp {
    pub fn str(s: &str) -> Vec<u8> {
        assert!(s.len() < 32, "fixstr only");
        let mut out = vec![0xa0 | s.len() as u8];
        out.extend_from_slice(s.as_bytes());
        out
    }
    pub fn bin(b: &[u8]) -> Vec<u8> {
        assert!(b.len() < 256, "bin8 only");
        let mut out = vec![0xc4, b.len() as u8];
        out.extend_from_slice(b);
        out
    }
    pub fn uint(n: u8) -> Vec<u8> {
        assert!(n < 128, "positive fixint only");
        vec![n]
    }
    pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
        assert!(items.len() < 16, "fixarray only");
        let mut out = vec![0x90 | items.len() as u8];
        items.iter().for_each(|i| out.extend_from_slice(i));
        out
    }
    /// An enum variant with fields: `{name: [fields...]}`.
    pub fn variant(name: &str, fields: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0x81];
        out.extend(str(name));
        out.extend(array(fields));
        out
    }
}

pub(crate) fn connect(addr: SocketAddr) -> (TcpStream, String) {
    let stream = TcpStream::connect(addr).expect("connect to the node");
    let local = stream.local_addr().expect("local address").to_string();
    (stream, local)
}

/// Reads whatever the node sends until it closes the connection; fails after `within`.
fn expect_closed(stream: &mut TcpStream, within: Duration, case: &str) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{case}: the node kept the connection open");
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return got
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{case}: reading failed: {e}"),
        }
    }
}

/// Reads one whole frame's body.
pub(crate) fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).expect("a frame header");
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).expect("a frame body");
    body
}

/// The line of the node's log that says it closed the connection of `who` (a client's address).
fn logged_line(node: &Node, who: &str) -> Option<String> {
    node.log()
        .lines()
        .find(|l| l.contains(who) && l.contains("clos"))
        .map(String::from)
}

/// After a bad client: the node logged something about that client, answers `ctl status`, and
/// still sees its peer up.
fn check_node_is_fine(cluster: &mut Cluster, client: &str, case: &str) -> String {
    let n1 = cluster.node("n1");
    let mut line = None;
    wait_until(Duration::from_secs(3), || {
        line = logged_line(n1, client);
        line.is_some()
    });
    let line = line.unwrap_or_else(|| n1.fail(&format!("{case}: nothing logged about {client}")));
    let ran = n1.ctl(&["status"]);
    assert_eq!(ran.code, Some(0), "{case}: {ran}");
    assert_eq!(ran.json()["peers_up"], 1, "{case}: {ran}");
    let (formed, views) = cluster.formed();
    assert!(formed, "{case}: the cluster changed:\n{views}");
    line
}

/// The handshake of a client, byte by byte, with a node that has no secret.
pub(crate) fn client_handshake(stream: &mut TcpStream) {
    // Hello { version, cluster, role: Client, nonce } → Challenge { node, nonce, proof }.
    let hello = mp::variant(
        "Hello",
        &[
            mp::uint(ensemble_cluster::protocol::PROTOCOL_VERSION as u8),
            mp::str(crate::util::CLUSTER),
            mp::str("Client"),
            mp::bin(&[7; 16]),
        ],
    );
    stream.write_all(&frame(&hello)).expect("send hello");
    let challenge = read_frame(stream);
    assert!(
        challenge.starts_with(&mp::variant("Challenge", &[])[..11]),
        "expected a challenge, got {challenge:02x?}"
    );
    // Auth { proof: empty } (the node has no secret) → Welcome { members }.
    stream
        .write_all(&frame(&mp::variant("Auth", &[mp::bin(&[])])))
        .expect("send auth");
    let welcome = read_frame(stream);
    assert!(
        welcome.starts_with(&mp::variant("Welcome", &[])[..9]),
        "expected a welcome, got {welcome:02x?}"
    );
}

fn start() -> Cluster {
    // No secret: the byte-level handshake below has no HMAC to compute.
    Cluster::start_with("bad-frames", 2, |spec| {
        spec.secret(None)
            .cluster_key(&format!("handshake_timeout_ms = {HANDSHAKE_TIMEOUT_MS}"))
    })
}

#[test]
fn bad_frames_close_only_their_connection() {
    let mut cluster = start();
    let addr = cluster.node("n1").addr();

    // (name, bytes sent, half-close after sending, what the log line must say). Every bad frame
    // is refused as soon as it is read: well before the handshake deadline, which would close a
    // node that ignored it. Only a frame that never completes waits for that deadline.
    let truncated = {
        let mut f = 100u32.to_be_bytes().to_vec();
        f.extend_from_slice(&[0x81; 10]);
        f
    };
    let cases: [(&str, Vec<u8>, bool, &str); 7] = [
        (
            "text garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            // "GET " read as a length.
            "frame of 1195725856 bytes exceeds the limit",
        ),
        (
            "garbage body",
            frame(&[0xc1; 8]),
            false,
            "malformed frame: wrong msgpack marker",
        ),
        (
            "unknown message",
            frame(&mp::variant("Bogus", &[])),
            false,
            "malformed frame: unknown variant `Bogus`",
        ),
        (
            "truncated frame, then end of stream",
            truncated.clone(),
            true,
            "bytes remaining on stream",
        ),
        (
            "truncated frame, then silence",
            truncated,
            false,
            "no complete handshake within 1000 ms",
        ),
        (
            "a frame announcing 4 GiB",
            vec![0xff; 4],
            false,
            "frame of 4294967295 bytes exceeds the limit",
        ),
        (
            // Far below cluster.max_frame_bytes: before the handshake, 64 KiB is the limit.
            "a handshake frame of 64 KiB and one byte",
            (64 * 1024 + 1u32).to_be_bytes().to_vec(),
            false,
            "frame of 65537 bytes exceeds the limit of 65536 bytes",
        ),
    ];
    let refused_within = Duration::from_millis(HANDSHAKE_TIMEOUT_MS / 2);
    for (case, bytes, half_close, reason) in cases {
        let started = Instant::now();
        let (mut stream, local) = connect(addr);
        stream.write_all(&bytes).expect("send");
        if half_close {
            stream.shutdown(Shutdown::Write).expect("half-close");
        }
        expect_closed(&mut stream, CLOSE_WITHIN, case);
        let closed_after = started.elapsed();
        let line = check_node_is_fine(&mut cluster, &local, case);
        assert!(
            line.contains(reason),
            "{case}: the log should say {reason:?}: {line}"
        );
        if case.ends_with("silence") {
            assert!(
                closed_after >= Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
                "{case}: closed after {closed_after:?}, before the handshake deadline"
            );
        } else {
            assert!(
                closed_after < refused_within,
                "{case}: closed only after {closed_after:?}: the bad frame was not refused as read"
            );
        }
    }
}

#[test]
fn garbage_after_a_handshake_closes_that_connection() {
    let mut cluster = start();
    let addr = cluster.node("n1").addr();
    let (mut stream, local) = connect(addr);

    client_handshake(&mut stream);
    // Request { id: 5, body: Command { line: "status" } } → Response { id: 5, Output { json } }.
    let request = mp::variant(
        "Request",
        &[mp::uint(5), mp::variant("Command", &[mp::str("status")])],
    );
    stream.write_all(&frame(&request)).expect("send request");
    let response = read_frame(&mut stream);
    // Nodes write structs as maps of field names: {"Response": {"id": 5, "body": ...}}.
    let mut expected = vec![0x81];
    expected.extend(mp::str("Response"));
    expected.push(0x82);
    expected.extend(mp::str("id"));
    expected.extend(mp::uint(5));
    assert!(
        response.starts_with(&expected),
        "expected a response to request 5, got {response:02x?}"
    );
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.contains("\"ok\":true") && text.contains("\"node\":\"n1\""),
        "the response carries no status: {text}"
    );

    // Now garbage on the open link.
    let started = Instant::now();
    stream.write_all(&frame(&[0xc1; 8])).expect("send garbage");
    expect_closed(&mut stream, CLOSE_WITHIN, "garbage after the handshake");
    let closed_after = started.elapsed();
    let line = check_node_is_fine(&mut cluster, &local, "garbage after the handshake");
    assert!(
        line.contains("malformed frame: wrong msgpack marker"),
        "the log should say why: {line}"
    );
    // An authenticated client has no handshake deadline: only the refusal closes it.
    assert!(
        closed_after < Duration::from_millis(HANDSHAKE_TIMEOUT_MS / 2),
        "closed only after {closed_after:?}"
    );
}
