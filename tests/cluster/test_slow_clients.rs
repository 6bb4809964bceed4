//! Clients that connect and say nothing hold a connection slot only until the handshake
//! deadline; past `cluster.max_connections` a connection is closed at once.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::{Cluster, NodeSpec};

/// Whether the node closes `stream` within `within` (end of stream or reset).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a Refused frame may come first
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn silent_clients_cannot_hold_the_node() {
    let mut cluster = Cluster::start_with("slow-clients", 1, |spec: NodeSpec| {
        spec.cluster_key("max_connections = 2")
            .cluster_key("handshake_timeout_ms = 1000")
    });
    let addr = cluster.at(0).addr();
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // Both slots are taken by silent clients: a third connection is closed at once.
    let mut third = TcpStream::connect(addr).expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_millis(500)),
        "a connection over the limit was kept"
    );
    // The silent ones are dropped at the handshake deadline...
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(3)),
            "a silent client kept its connection past the handshake deadline"
        );
    }
    // ...and the node serves again.
    let ran = cluster.at(0).ctl(&["status"]);
    assert_eq!(ran.code, Some(0), "{ran}");
    assert!(cluster.at(0).log().contains("connections already open"));
}
