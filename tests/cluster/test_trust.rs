//! Trust no peer or client beyond its role: gossip cannot move a member; a client cannot send
//! model requests and a member cannot run console commands; a remote `predict-file` never names a
//! file on the node (ctl streams the client's own file); idle or surplus clients cannot keep a
//! member out.
//!
//! These tests speak the protocol through the library's own `net::dial`, as a forged member or
//! as a client, against real node processes.

use std::time::Duration;

use ensemble_cluster::cluster::swim::wire::{self, Incarnation, Packet, Rumor, Status};
use ensemble_cluster::net::{self, Greeting, Secret};
use ensemble_cluster::protocol::{Message, NodeInfo, Request, Response, Role};
use futures::{SinkExt, StreamExt};

use crate::shards::{csv_row_json, house_prices, letter, shard};
use crate::util::{wait_until, Cluster, NodeSpec, CLUSTER, SECRET};

fn greeting() -> Greeting {
    Greeting {
        cluster: CLUSTER.into(),
        secret: Secret::new(Some(SECRET.into())),
        max_frame_bytes: 1 << 20,
        timeout: Duration::from_secs(5),
        tls: None,
    }
}

/// Runs `work` on a fresh actix system (what the library's links need).
fn run<T>(work: impl std::future::Future<Output = T>) -> T {
    actix_rt::System::new().block_on(work)
}

/// Sends one request on a raw connection and reads frames until its response.
async fn ask(conn: &mut net::Conn, id: u64, body: Request) -> Response {
    conn.send(Message::Request { id, body })
        .await
        .expect("sent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, conn.next())
            .await
            .expect("an answer in time")
            .expect("the connection stays open")
            .expect("a valid frame");
        if let Message::Response { id: got, body } = frame {
            if got == id {
                return body;
            }
        }
    }
}

fn error_of(response: Response) -> String {
    match response {
        Response::Error { reason } => reason,
        Response::Output { json } => json,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn gossip_cannot_move_a_member_and_roles_are_enforced() {
    let mut cluster = Cluster::start_with("trust", 2, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data)
    });
    let n1 = cluster.node("n1").addr().to_string();
    let n2_addr = cluster.node("n2").addr().to_string();
    let row = csv_row_json("house_prices/test.csv", 2);
    assert!(wait_until(Duration::from_secs(30), || {
        cluster.at(0).command(&format!("predict {row}"))["answered"] == 2
    }));

    run(async {
        // A member whose gossip says n2 moved, with the highest incarnation there is.
        let mallory = NodeInfo {
            id: "mallory".into(),
            addr: "127.0.0.1:9".into(),
            incarnation: 1,
        };
        let mut dialed = net::dial(&n1, Role::Member(mallory), &greeting(), None)
            .await
            .expect("a member with the secret is let in");
        let forged = NodeInfo {
            id: "n2".into(),
            addr: "127.0.0.1:9".into(),
            incarnation: u64::MAX,
        };
        // Membership gossip that n2 moved, then that it failed, in a run n2 could never refute.
        let forged_run = Incarnation {
            run: forged.incarnation,
            count: u32::MAX,
        };
        let news = |status| Rumor {
            id: forged.id.clone(),
            inc: forged_run,
            status,
            meta: (status == Status::Alive).then(|| forged.addr.clone()),
        };
        for status in [Status::Alive, Status::Dead] {
            let packet: Packet<String, String> = Packet::Gossip {
                rumors: vec![news(status)],
            };
            let packet = wire::encode(&packet).expect("encoded");
            for _ in 0..5 {
                let gossip = Message::Membership {
                    packet: packet.clone(),
                };
                dialed.conn.send(gossip).await.expect("gossip sent");
            }
        }
        // A member runs no console command, even one that changes nothing.
        let refused = error_of(
            ask(
                &mut dialed.conn,
                1,
                Request::Command {
                    line: "quit".into(),
                },
            )
            .await,
        );
        assert!(
            refused.contains("members of the cluster run no console commands"),
            "{refused}"
        );

        // A client sends no model request.
        let mut client = net::dial(&n1, Role::Client, &greeting(), None)
            .await
            .expect("client");
        let refused = error_of(ask(&mut client.conn, 1, Request::Train).await);
        assert!(
            refused.contains("model requests are for members"),
            "{refused}"
        );
        let refused = error_of(ask(&mut client.conn, 2, Request::GetModel).await);
        assert!(
            refused.contains("model requests are for members"),
            "{refused}"
        );
        // A remote predict-file cannot name the node's files.
        let line = "predict-file /etc/hostname /tmp/should-not-exist.csv".to_string();
        let refused = error_of(ask(&mut client.conn, 3, Request::Command { line }).await);
        assert!(refused.contains("streams the client's file"), "{refused}");
    });
    assert!(!std::path::Path::new("/tmp/should-not-exist.csv").exists());

    // n1 still knows n2 where it really is, up, and asks it; it does not fall for the forged
    // failure later either.
    let n1 = cluster.node("n1");
    let fell = wait_until(Duration::from_secs(2), || {
        n1.peer_state("n2").as_deref() != Some("up")
    });
    assert!(!fell, "n2 is {:?} at n1", n1.peer_state("n2"));
    let peers = n1.command("peers");
    let n2 = peers["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["id"] == "n2"))
        .cloned()
        .unwrap_or_else(|| panic!("n2 is gone: {peers}"));
    assert_eq!(
        (n2["addr"].as_str(), n2["state"].as_str()),
        (Some(n2_addr.as_str()), Some("up")),
        "{peers}"
    );
    let p = n1.command(&format!("predict {row}"));
    assert_eq!(p["answered"], 2, "{p}");
}

#[test]
fn ctl_predict_file_streams_the_clients_own_files() {
    let mut cluster = Cluster::start_with("stream-file", 2, |spec| {
        let data = house_prices(letter(&spec.id));
        spec.toml(&data)
    });
    let row = csv_row_json("house_prices/test.csv", 2);
    assert!(wait_until(Duration::from_secs(30), || {
        cluster.at(0).command(&format!("predict {row}"))["answered"] == 2
    }));
    // Rows of test.csv copied to a file only the client knows, 20 times over: more than one batch.
    let text = std::fs::read_to_string(shard("house_prices/test.csv")).expect("test.csv");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let body: Vec<&str> = lines.collect();
    let mut input = String::from(header);
    input.push('\n');
    for _ in 0..20 {
        for l in &body {
            input.push_str(l);
            input.push('\n');
        }
    }
    let dir = cluster.dir.path().join("client-only");
    std::fs::create_dir_all(&dir).expect("a client dir");
    let in_path = dir.join("in.csv");
    std::fs::write(&in_path, &input).expect("written");
    let out_path = dir.join("out.csv");
    let ran = cluster.at(0).ctl(&[
        "predict-file",
        &in_path.display().to_string(),
        &out_path.display().to_string(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran}");
    let report = ran.json();
    assert_eq!(report["rows"], 20 * body.len(), "{report}");
    assert_eq!(report["answered"], 2, "{report}");
    let out = std::fs::read_to_string(&out_path).expect("the client's output");
    let mut out_lines = out.lines();
    assert_eq!(out_lines.next(), Some("Id,SalePrice"));
    let rows: Vec<&str> = out_lines.collect();
    assert_eq!(rows.len(), 20 * body.len());
    // Batches come back in order: the ids follow the input's.
    for (i, r) in rows.iter().enumerate() {
        let id = body[i % body.len()].split(',').next().unwrap_or_default();
        assert!(r.starts_with(&format!("{id},")), "line {i}: {r}");
    }
}

#[test]
fn surplus_and_idle_clients_cannot_keep_members_out() {
    let mut cluster = Cluster::start_with("client-pool", 1, |spec| {
        spec.cluster_key("max_connections = 20\nclient_idle_ms = 1500")
    });
    let n1 = cluster.node("n1").addr().to_string();
    let (held, refused) = run(async {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..30 {
            match net::dial(&n1, Role::Client, &greeting(), None).await {
                Ok(d) => held.push(d.conn),
                Err(e) => {
                    assert!(e.to_string().contains("at most 20 clients"), "{e}");
                    refused += 1;
                }
            }
        }
        (held, refused)
    });
    assert_eq!((held.len(), refused), (20, 10));
    // The client slots are all taken; a member still joins.
    let spec = cluster.member_spec("n2");
    cluster.add(spec);
    let took = cluster.wait_formed(Duration::from_secs(10));
    eprintln!("a member joined past 20 held client slots in {took:?}");
    // Idle clients are dropped, which frees their slots.
    assert!(cluster
        .node("n1")
        .wait_for_log("closing an idle client connection", Duration::from_secs(5)));
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || cluster
        .node("n1")
        .ctl(&["status"])
        .code
        == Some(0)));
}

#[test]
fn unspecified_listen_address_needs_advertise() {
    let dir = crate::util::TestDir::new("advertise");
    let spec = NodeSpec::new("n1").listen("0.0.0.0:0");
    let cfg = dir.write("n1.toml", &spec.to_toml(dir.path()));
    let ran = crate::util::run(
        &["--config", &cfg.display().to_string()],
        &[],
        "",
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(2), "{ran}");
    assert!(ran.stderr.contains("node.advertise"), "{ran}");
}
