//! `ensemble-node ctl ADDR COMMAND...`: a one-shot client that runs one console command on a
//! running node over the cluster protocol and prints the node's JSON answer.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::net::{self, Greeting, Link, Secret, TlsFiles};
use crate::protocol::{Request, Response, Role};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub cluster: String,
    pub secret: Secret,
    pub timeout: Duration,
    pub max_frame_bytes: usize,
    /// The client's CA, certificate and key when the node speaks TLS.
    pub tls: Option<TlsFiles>,
}

/// Opens a client link to a node.
pub async fn connect(target: &Target) -> Result<Link> {
    let greeting = Greeting {
        cluster: target.cluster.clone(),
        secret: target.secret.clone(),
        max_frame_bytes: target.max_frame_bytes,
        timeout: target.timeout.min(Duration::from_secs(10)),
    };
    let dialed = net::dial(target.addr, Role::Client, &greeting).await?;
    let sink = actix::Actor::start(Discard).recipient();
    Ok(Link::spawn(
        dialed.conn,
        dialed.node.id,
        "client".into(),
        dialed.tag,
        sink,
    ))
}

/// Runs `line` on the node at `target` and returns its JSON answer.
pub async fn run_command(target: &Target, line: &str) -> Result<Value> {
    let link = connect(target).await?;
    let response = link
        .request(
            Request::Command {
                line: line.to_string(),
            },
            target.timeout,
        )
        .await;
    link.close("done");
    match response? {
        Response::Output { json } => serde_json::from_str(&json)
            .map_err(|e| Error::Other(format!("node sent invalid JSON: {e}"))),
        Response::Error { reason } => Err(Error::Other(reason)),
        other => Err(Error::Other(format!("unexpected answer {other:?}"))),
    }
}

/// Swallows events of client links (a client serves no requests).
struct Discard;

impl actix::Actor for Discard {
    type Context = actix::Context<Self>;
}

impl actix::Handler<net::FromLink> for Discard {
    type Result = ();
    fn handle(&mut self, msg: net::FromLink, _ctx: &mut actix::Context<Self>) {
        if let net::LinkEvent::Request { id, .. } = msg.event {
            msg.link.respond(
                id,
                Response::Error {
                    reason: "a client serves no requests".into(),
                },
            );
        }
    }
}
