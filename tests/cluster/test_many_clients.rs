//! 1,100 idle clients against a node with the default connection limits: 1,024 are served and
//! held (`cluster.max_connections`), the rest are told the limit; a new member still joins and
//! predictions still answer while every client slot is taken; the idle clients are dropped after
//! `cluster.client_idle_ms`, and the node serves a new client again.
//!
//! The clients complete the handshake (through the library's own `net::dial`) and then say
//! nothing. They live on their own thread and actix system, which records when the node closes
//! each of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ensemble_cluster::net::{self, Greeting, Secret};
use ensemble_cluster::protocol::Role;
use futures::StreamExt;

use crate::shards::{csv_row_json, house_prices};
use crate::util::{wait_until, Cluster, CLUSTER, SECRET};

/// The figure.
const CLIENTS: usize = 1_100;
/// `cluster.max_connections` by default.
const DEFAULT_MAX_CLIENTS: usize = 1_024;
/// Clients dialing at once (below the default 256 connections in their handshake).
const DIAL_BATCH: usize = 50;
/// Short for this test, long enough for a member to join and a prediction to answer while the
/// clients are held on a busy machine.
const CLIENT_IDLE_MS: u64 = 5_000;
/// File descriptors this test needs in its own process and in the node's (sockets, pipes, logs).
const FDS_NEEDED: u64 = CLIENTS as u64 + 400;

/// What the crowd of clients has seen so far.
#[derive(Default)]
struct Seen {
    held: usize,
    refused: Vec<String>,
    dialed_all: bool,
    /// For each held client the node closed: how long after its handshake.
    closed_after: Vec<Duration>,
}

/// `CLIENTS` idle clients of `addr`, held until dropped (or two minutes).
struct Crowd {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Crowd {
    fn dial(addr: String) -> Crowd {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, stopped) = (seen.clone(), stop.clone());
        let thread = thread::spawn(move || {
            actix_rt::System::new().block_on(crowd(addr, s, stopped));
        });
        Crowd {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&lock(&self.seen))
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

async fn crowd(addr: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let greeting = Greeting {
        cluster: CLUSTER.into(),
        secret: Secret::new(Some(SECRET.into())),
        max_frame_bytes: 1 << 20,
        timeout: Duration::from_secs(10),
        tls: None,
    };
    let mut left = CLIENTS;
    while left > 0 && !stop.load(Ordering::Relaxed) {
        let n = left.min(DIAL_BATCH);
        left -= n;
        let dials = (0..n).map(|_| async {
            let dialed = net::dial(&addr, Role::Client, &greeting, None).await;
            (dialed, Instant::now())
        });
        for (dialed, opened) in futures::future::join_all(dials).await {
            match dialed {
                Ok(d) => {
                    lock(&seen).held += 1;
                    let seen = seen.clone();
                    let mut conn = d.conn;
                    actix_rt::spawn(async move {
                        // Reads until the node closes the connection (a `Refused` saying why
                        // may come first).
                        while let Some(Ok(_)) = conn.next().await {}
                        lock(&seen).closed_after.push(opened.elapsed());
                    });
                }
                Err(e) => lock(&seen).refused.push(e.to_string()),
            }
        }
    }
    lock(&seen).dialed_all = true;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raises this process's open-file limit to what the test needs (the node inherits it), or says
/// why it cannot.
fn enough_file_descriptors() -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur >= FDS_NEEDED {
        return Ok(());
    }
    if lim.rlim_max < FDS_NEEDED {
        return Err(format!(
            "RLIMIT_NOFILE is {} (hard {}), and the test needs {FDS_NEEDED}",
            lim.rlim_cur, lim.rlim_max
        ));
    }
    lim.rlim_cur = FDS_NEEDED;
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!(
            "cannot raise RLIMIT_NOFILE to {FDS_NEEDED}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[test]
fn eleven_hundred_idle_clients_do_not_keep_a_member_out() {
    if let Err(why) = enough_file_descriptors() {
        eprintln!("SKIPPED: 1,100 idle clients need more open files: {why}");
        return;
    }
    let spec = |spec: crate::util::NodeSpec| {
        let data = house_prices(crate::shards::letter(&spec.id));
        spec.toml(&data)
            .toml("[model]\nkind = \"tree\"")
            .cluster_key(&format!("client_idle_ms = {CLIENT_IDLE_MS}"))
    };
    let mut cluster = Cluster::start_with("many-clients", 1, spec);
    let row = csv_row_json("house_prices/test.csv", 4);
    assert!(wait_until(Duration::from_secs(30), || {
        cluster.at(0).command(&format!("predict {row}"))["answered"] == 1
    }));

    let started = Instant::now();
    let crowd = Crowd::dial(cluster.at(0).addr().to_string());
    assert!(
        wait_until(Duration::from_secs(60), || crowd.seen(|s| s.dialed_all)),
        "the clients were not all dialed within 60 s"
    );
    let dialed = started.elapsed();
    let (held, refused) = crowd.seen(|s| (s.held, s.refused.clone()));
    eprintln!(
        "{CLIENTS} clients dialed in {dialed:?}: {held} held, {} refused",
        refused.len()
    );
    assert_eq!(held, DEFAULT_MAX_CLIENTS, "refusals: {:?}", &refused[..]);
    assert_eq!(refused.len(), CLIENTS - DEFAULT_MAX_CLIENTS);
    assert!(
        refused
            .iter()
            .all(|r| r.contains("at most 1024 clients") && r.contains("cluster.max_connections")),
        "a refusal does not name the limit: {:?}",
        refused.first()
    );

    // Every client slot is taken: a new member joins, and predictions answer with both nodes.
    let spec_n2 = spec(cluster.member_spec("n2"));
    cluster.add(spec_n2);
    let formed_in = cluster.wait_formed(Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || {
            cluster.at(0).command(&format!("predict {row}"))["answered"] == 2
        }),
        "n2 joined but its predictions are not counted"
    );
    let busy_for = started.elapsed();
    let closed = crowd.seen(|s| s.closed_after.len());
    eprintln!(
        "n2 joined in {formed_in:?} and predicted {busy_for:?} after the first client dialed, \
         with {} of {held} clients still held",
        held - closed
    );
    assert_eq!(
        closed, 0,
        "clients were dropped before the member joined ({busy_for:?} in, idle limit \
         {CLIENT_IDLE_MS} ms): the join was not shown with every slot taken"
    );

    // The idle clients are dropped once they have been idle for client_idle_ms, not before.
    let idle = Duration::from_millis(CLIENT_IDLE_MS);
    assert!(
        wait_until(idle + Duration::from_secs(20), || crowd
            .seen(|s| s.closed_after.len())
            == held),
        "only {} of {held} idle clients were dropped",
        crowd.seen(|s| s.closed_after.len())
    );
    let (first, last) = crowd.seen(|s| {
        (
            s.closed_after.iter().min().copied(),
            s.closed_after.iter().max().copied(),
        )
    });
    eprintln!("idle clients dropped between {first:?} and {last:?} after their handshake");
    // The node counts silence from the last frame it read, a little before the client saw the
    // handshake end: a tenth of the limit covers that.
    assert!(
        first >= Some(idle.mul_f64(0.9)),
        "a client was dropped {first:?} after its handshake, before {idle:?} of silence"
    );
    assert!(cluster
        .node("n1")
        .log()
        .contains("closing an idle client connection"));
    drop(crowd);
    let ran = cluster.node("n1").ctl(&["status"]);
    assert_eq!(ran.code, Some(0), "{ran}");
}
