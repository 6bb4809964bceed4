//! The multi-host harness itself: hosts reach each other over TCP, a link set down cuts a host
//! off and set up brings it back, commands run inside a host, and nothing is left behind.

mod hosts;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hosts::Hosts;

/// An echo server on `listener` until `stop` is set (or a minute has passed).
fn echo(listener: TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4];
                    if conn.read_exact(&mut buf).is_ok() {
                        let _ = conn.write_all(&buf);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// From host `from`: dial `to`, send "ping", return what came back.
fn ping(hosts: &Hosts, from: usize, to: SocketAddr) -> std::io::Result<Vec<u8>> {
    hosts.in_host(from, move || -> std::io::Result<Vec<u8>> {
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_millis(500))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        conn.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    })?
}

/// Polls `ping` until it answers, at most `limit`.
fn reachable_within(hosts: &Hosts, from: usize, to: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if matches!(ping(hosts, from, to), Ok(ref b) if b == b"ping") {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn listed_namespaces() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_hosts_talk_and_a_link_down_cuts_them_apart() {
    let hosts = match Hosts::create(2) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let a = hosts.host(0).addr;
    let b = hosts.host(1).addr;
    assert_ne!(a, b);

    // A listener on the unspecified address inside host 0, reached at host 0's own address.
    let listener = hosts
        .in_host(0, || TcpListener::bind("0.0.0.0:0"))
        .expect("enter host 0")
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = SocketAddr::from((a, port));
    let stop = Arc::new(AtomicBool::new(false));
    let echo_thread = echo(listener, stop.clone());

    assert!(
        reachable_within(&hosts, 1, server, Duration::from_secs(10)),
        "host 1 must reach host 0 at {server}"
    );
    // The listener lives in host 0 only: this process's own namespace doesn't see it.
    assert!(TcpStream::connect_timeout(&server, Duration::from_millis(300)).is_err());

    // Commands run inside a host see that host's interface and address.
    let out = hosts
        .command(1, "ip")
        .args(["-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip in host 1");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("{b}/24")), "{shown}");
    assert!(!shown.contains(&format!("{a}/")), "{shown}");

    hosts.set_link(0, false).expect("link down");
    for _ in 0..3 {
        assert!(
            ping(&hosts, 1, server).is_err(),
            "host 0 must be unreachable with its link down"
        );
    }
    hosts.set_link(0, true).expect("link up");
    assert!(
        reachable_within(&hosts, 1, server, Duration::from_secs(10)),
        "host 0 must be reachable again after link up"
    );

    stop.store(true, Ordering::Relaxed);
    echo_thread.join().expect("echo thread");
    let names = hosts.namespaces();
    assert_eq!(names.len(), 3, "{names:?}");
    drop(hosts);
    let left = listed_namespaces();
    for ns in names {
        assert!(!left.contains(&ns), "{ns} left behind: {left}");
    }
}

#[test]
fn a_panicking_test_leaves_no_namespace_behind() {
    let names = match std::panic::catch_unwind(|| -> Result<(), String> {
        let hosts = Hosts::create(1)?;
        let names = hosts.namespaces();
        assert!(listed_namespaces().contains(&names[1]));
        let mut child = hosts
            .spawn(hosts.command(0, "sleep").arg("30"))
            .expect("spawn in host");
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "runs in host 0"
        );
        std::panic::panic_any(names);
    }) {
        Ok(Err(why)) => {
            eprintln!("skipped: {why}");
            return;
        }
        Ok(Ok(())) => unreachable!("the closure always panics or skips"),
        Err(payload) => *payload
            .downcast::<Vec<String>>()
            .expect("the names travel in the panic"),
    };
    let left = listed_namespaces();
    for ns in names {
        assert!(!left.contains(&ns), "{ns} left behind: {left}");
    }
}
