//! A prediction request of more than `cluster.max_rows_per_request` rows is refused with an
//! error that says so, and the connection and the node go on. The frames are built by hand: a
//! batch of no columns takes no bytes per row, so a frame of a few dozen bytes can announce four
//! billion rows, which a node that predicted them would allocate for.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::shards::house_prices;
use crate::test_bad_frames::{client_handshake, connect, frame, mp, read_frame};
use crate::util::Cluster;

/// Typed rows as the protocol encodes them (`TypedRows`' wire form), written here by hand.
#[derive(Serialize)]
struct Wire {
    schema: Bytes,
    rows: u32,
    nums: Bytes,
    codes: Bytes,
    dict_text: Bytes,
    dict_ends: Bytes,
    dict_counts: Bytes,
}

#[derive(Serialize)]
enum Body {
    Predict { rows: Wire },
    PredictEnsemble { rows: Wire },
}

#[derive(Serialize)]
enum Message {
    Request { id: u64, body: Body },
}

/// `rows` rows of no columns: the schema of no columns, every buffer empty.
fn no_columns(rows: u32) -> Wire {
    let schema = ensemble_cluster::ml::Schema::new(Vec::new());
    Wire {
        schema: schema.encoded().clone(),
        rows,
        nums: Bytes::new(),
        codes: Bytes::new(),
        dict_text: Bytes::new(),
        dict_ends: Bytes::new(),
        dict_counts: Bytes::new(),
    }
}

/// Sends request `id` and returns the text of its answer (MessagePack; the strings in it
/// readable), and how long it took.
fn ask(stream: &mut TcpStream, id: u64, body: Body) -> (String, Duration) {
    let bytes = rmp_serde::to_vec_named(&Message::Request { id, body }).expect("encodes");
    assert!(bytes.len() < 256, "a small frame: {} bytes", bytes.len());
    let started = Instant::now();
    stream.write_all(&frame(&bytes)).expect("send the request");
    let answer = read_frame(stream);
    let took = started.elapsed();
    let mut head = vec![0x81];
    head.extend(mp::str("Response"));
    head.push(0x82);
    head.extend(mp::str("id"));
    head.extend(mp::uint(id as u8));
    assert!(
        answer.starts_with(&head),
        "request {id}: not its answer: {:02x?}",
        &answer[..answer.len().min(64)]
    );
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

#[test]
fn a_request_of_more_rows_than_the_cap_is_refused_and_the_node_goes_on() {
    const CAP: u32 = 8192;
    // No secret: the byte-level handshake has no HMAC to compute.
    let mut cluster = Cluster::start_with("row-cap", 1, |spec| {
        spec.secret(None)
            .cluster_key(&format!("max_rows_per_request = {CAP}"))
            .toml(&house_prices('A'))
    });
    let n1 = cluster.node("n1");
    let t = n1.command("train");
    assert_eq!(t["ok"], true, "{t}");
    let (mut stream, _) = connect(n1.addr());
    client_handshake(&mut stream);

    // At the cap: predicted (every column missing), 8,192 predictions back.
    let (text, _) = ask(
        &mut stream,
        1,
        Body::PredictEnsemble {
            rows: no_columns(CAP),
        },
    );
    assert!(
        text.contains("Ensemble") && !text.contains("Error"),
        "{CAP} rows should be predicted: {}",
        &text[..text.len().min(300)]
    );
    let refusal = |rows: u32| {
        format!("{rows} rows in one request; at most {CAP} (cluster.max_rows_per_request)")
    };
    // One row more, then four billion, to the cluster and to this node's model alone.
    let cases = [
        (
            2,
            Body::PredictEnsemble {
                rows: no_columns(CAP + 1),
            },
            CAP + 1,
        ),
        (
            3,
            Body::PredictEnsemble {
                rows: no_columns(u32::MAX),
            },
            u32::MAX,
        ),
        (
            4,
            Body::Predict {
                rows: no_columns(u32::MAX),
            },
            u32::MAX,
        ),
    ];
    for (id, body, rows) in cases {
        let (text, took) = ask(&mut stream, id, body);
        assert!(
            text.contains("Error") && text.contains(&refusal(rows)),
            "request {id} ({rows} rows) should be refused: {text}"
        );
        assert!(
            took < Duration::from_secs(2),
            "request {id}: refused only after {took:?}"
        );
    }
    // The same connection still works, and so does the node.
    let status = mp::variant(
        "Request",
        &[mp::uint(5), mp::variant("Command", &[mp::str("status")])],
    );
    stream.write_all(&frame(&status)).expect("send status");
    let answer = String::from_utf8_lossy(&read_frame(&mut stream)).into_owned();
    assert!(
        answer.contains("\"ok\":true"),
        "status after the refusals: {answer}"
    );
    let p = n1.command(r#"predict {"LotArea": 8450}"#);
    assert_eq!(p["ok"], true, "{p}");
}
