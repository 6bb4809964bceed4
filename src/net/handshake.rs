//! Opening a connection: (mutual TLS, then) `Hello` → `Challenge` → `Auth` → `Welcome`, under one
//! deadline.
//!
//! Both sides prove they know the cluster secret without sending it: each signs the other's
//! random nonce with HMAC-SHA256 keyed by the secret. A side without a secret sends an empty
//! proof, which a side with a secret refuses. With TLS, each side's certificate also says who it
//! is: a member may only speak for the node its certificate names, and a client's certificate
//! gives its role (operator or reader).

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::link::Access;
use super::tls::{CertRole, Identity, Tls};
use super::{Conn, Stream};
use crate::error::{Error, Result};
use crate::protocol::{
    FrameCodec, Message, NodeInfo, ProtocolError, Role, HANDSHAKE_MAX_FRAME, PROTOCOL_VERSION,
};

/// The cluster secret, if any. Debug never prints it.
#[derive(Clone, Default)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn new(secret: Option<String>) -> Self {
        Secret(secret.filter(|s| !s.is_empty()))
    }

    /// HMAC-SHA256 over the length-prefixed parts, keyed by the secret.
    fn mac(key: &str, label: &str, cluster: &str, first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
        for part in [label.as_bytes(), cluster.as_bytes(), first, second] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn proof(&self, label: &str, cluster: &str, first: &[u8], second: &[u8]) -> Bytes {
        match &self.0 {
            None => Bytes::new(),
            Some(key) => Bytes::from(
                Self::mac(key, label, cluster, first, second)
                    .finalize()
                    .into_bytes()
                    .to_vec(),
            ),
        }
    }

    /// Checks a proof in constant time. Without a secret every proof is accepted.
    fn verify(&self, label: &str, cluster: &str, first: &[u8], second: &[u8], got: &[u8]) -> bool {
        match &self.0 {
            None => true,
            Some(key) => Self::mac(key, label, cluster, first, second)
                .verify_slice(got)
                .is_ok(),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(set)"
        } else {
            "Secret(none)"
        })
    }
}

/// What one side says about itself in a handshake.
#[derive(Debug, Clone)]
pub struct Greeting {
    pub cluster: String,
    pub secret: Secret,
    pub max_frame_bytes: usize,
    pub timeout: Duration,
    /// Mutual TLS on every connection; `None` for plain TCP (loopback only).
    pub tls: Option<Tls>,
}

/// A connection the dialer opened: the acceptor, and the members it knows.
pub struct Dialed {
    pub conn: Conn,
    /// Identifies this connection on both ends (taken from the dialer's nonce).
    pub tag: u64,
    pub node: NodeInfo,
    pub members: Vec<NodeInfo>,
}

/// The connection tag both ends derive from the dialer's nonce.
fn tag_of(nonce: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    for (dst, src) in first.iter_mut().zip(nonce) {
        *dst = *src;
    }
    u64::from_be_bytes(first)
}

fn nonce() -> Bytes {
    let mut n = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut n);
    Bytes::copy_from_slice(&n)
}

async fn next(conn: &mut Conn, step: &str) -> Result<Message> {
    match conn.next().await {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(e)) => Err(e.into()),
        None => Err(Error::Closed(format!("peer closed the connection {step}"))),
    }
}

/// Connects to `addr` as `role` and runs the dialer's side of the handshake. With TLS, the node
/// that answers must hold a member certificate, of `expected` when given (a known peer), and
/// must introduce itself under the id its certificate names.
pub async fn dial(addr: &str, role: Role, me: &Greeting, expected: Option<&str>) -> Result<Dialed> {
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Unreachable {
                addr: addr.to_string(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let (stream, certified) = match &me.tls {
            Some(tls) => {
                let (stream, identity) =
                    tls.connect(tcp, expected)
                        .await
                        .map_err(|e| Error::Refused {
                            addr: addr.to_string(),
                            reason: format!("TLS: {e}"),
                        })?;
                (stream, Some(identity))
            }
            None => (Stream::Plain(tcp), None),
        };
        let mut conn = Framed::new(stream, FrameCodec::new(HANDSHAKE_MAX_FRAME));
        let my_nonce = nonce();
        conn.send(Message::Hello {
            version: PROTOCOL_VERSION,
            cluster: me.cluster.clone(),
            role,
            nonce: my_nonce.clone(),
        })
        .await?;
        let refused = |reason: String| Error::Refused {
            addr: addr.to_string(),
            reason,
        };
        let first = match next(&mut conn, "during the handshake").await {
            Err(Error::Protocol(ProtocolError::Oversized { len, .. }))
                if me.tls.is_none() && looks_like_tls(len) =>
            {
                return Err(refused(
                    "the node speaks TLS: give its cluster CA and a client certificate \
                     (--ca, --cert, --key)"
                        .into(),
                ))
            }
            other => other?,
        };
        let (node, their_nonce, proof) = match first {
            Message::Challenge { node, nonce, proof } => (node, nonce, proof),
            Message::Refused { reason } => return Err(refused(reason)),
            other => return Err(refused(format!("unexpected {} in handshake", other.name()))),
        };
        if let Some(identity) = &certified {
            if identity.name != node.id {
                return Err(refused(format!(
                    "the node introduced itself as {:?} with the certificate of {:?}",
                    node.id, identity.name
                )));
            }
        }
        if !me
            .secret
            .verify("acceptor", &me.cluster, &my_nonce, &their_nonce, &proof)
        {
            let reason =
                "authentication failed: the node does not share our cluster secret".to_string();
            // Tell the node why we hang up, so that its log says so too.
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                conn.send(Message::Refused {
                    reason: reason.clone(),
                }),
            )
            .await;
            return Err(refused(reason));
        }
        // The acceptor proved it belongs to the cluster: its frames may now be as big as any.
        conn.codec_mut().set_max(me.max_frame_bytes);
        let my_proof = me
            .secret
            .proof("dialer", &me.cluster, &their_nonce, &my_nonce);
        conn.send(Message::Auth { proof: my_proof }).await?;
        match next(&mut conn, "during the handshake").await? {
            Message::Welcome { members } => Ok(Dialed {
                conn,
                tag: tag_of(&my_nonce),
                node,
                members,
            }),
            Message::Refused { reason } => Err(refused(reason)),
            other => Err(refused(format!("unexpected {} in handshake", other.name()))),
        }
    };
    tokio::time::timeout(me.timeout, work)
        .await
        .map_err(|_| Error::Timeout(format!("handshake with {addr}")))?
}

/// An inbound connection whose handshake is done, up to (not including) `Welcome`, which the
/// caller sends once it has decided what to do with it.
pub struct Accepted {
    pub conn: Conn,
    pub role: Role,
    /// The connection's tag.
    pub tag: u64,
    /// What the dialer may ask.
    pub access: Access,
}

/// Runs the acceptor's side of the handshake (TLS first, when configured). `me` is this node.
pub async fn accept(tcp: TcpStream, me: &NodeInfo, greeting: &Greeting) -> Result<Accepted> {
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    tcp.set_nodelay(true)?;
    let (stream, certified) = match &greeting.tls {
        Some(tls) => {
            let accepted = tokio::time::timeout(greeting.timeout, tls.accept(tcp)).await;
            match accepted {
                Ok(Ok((stream, identity))) => (stream, Some(identity)),
                Ok(Err(e)) => {
                    return Err(Error::Rejected {
                        addr: peer,
                        reason: format!("TLS: {e}"),
                    })
                }
                Err(_) => {
                    return Err(Error::Rejected {
                        addr: peer,
                        reason: "no TLS handshake in time".into(),
                    })
                }
            }
        }
        None => (Stream::Plain(tcp), None),
    };
    let mut conn = Framed::new(stream, FrameCodec::new(HANDSHAKE_MAX_FRAME));
    let work = async {
        let hello = next(&mut conn, "before its hello")
            .await
            .map_err(|e| Refusal(e.to_string()))?;
        let (role, their_nonce) = match hello {
            Message::Hello {
                version,
                cluster,
                role,
                nonce,
            } => (check_hello(me, greeting, version, &cluster, &role)?, nonce),
            other => return Err(Refusal(format!("expected hello, got {}", other.name()))),
        };
        let access = access_of(&role, certified.as_ref())?;
        let my_nonce = nonce();
        let proof = greeting
            .secret
            .proof("acceptor", &greeting.cluster, &their_nonce, &my_nonce);
        conn.send(Message::Challenge {
            node: me.clone(),
            nonce: my_nonce.clone(),
            proof,
        })
        .await
        .map_err(|e| Refusal(e.to_string()))?;
        match next(&mut conn, "before its proof")
            .await
            .map_err(|e| Refusal(e.to_string()))?
        {
            Message::Auth { proof }
                if greeting.secret.verify(
                    "dialer",
                    &greeting.cluster,
                    &my_nonce,
                    &their_nonce,
                    &proof,
                ) =>
            {
                conn.codec_mut().set_max(greeting.max_frame_bytes);
                Ok((role, tag_of(&their_nonce), access))
            }
            Message::Auth { .. } => Err(Refusal(
                "authentication failed: the cluster secrets differ (or the dialer has none)"
                    .to_string(),
            )),
            Message::Refused { reason } => Err(Refusal(format!("the dialer gave up: {reason}"))),
            other => Err(Refusal(format!("expected auth, got {}", other.name()))),
        }
    };
    let outcome = match tokio::time::timeout(greeting.timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Refusal(format!(
            "no complete handshake within {} ms",
            greeting.timeout.as_millis()
        ))),
    };
    match outcome {
        Ok((role, tag, access)) => Ok(Accepted {
            conn,
            role,
            tag,
            access,
        }),
        Err(Refusal(reason)) => {
            // Tell the dialer why, best effort, then drop the connection.
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                conn.send(Message::Refused {
                    reason: reason.clone(),
                }),
            )
            .await;
            Err(Error::Rejected { addr: peer, reason })
        }
    }
}

/// What a dialer may ask, from its role and, with TLS, its certificate: a member must hold the
/// member certificate of the id it claims; a client holds an operator or reader certificate.
/// Without TLS, a client that passed the secret check is an operator.
fn access_of(role: &Role, certified: Option<&Identity>) -> std::result::Result<Access, Refusal> {
    match (role, certified) {
        (Role::Member(_), None) => Ok(Access::Member),
        (Role::Client, None) => Ok(Access::Operator),
        (Role::Member(info), Some(id)) if id.role == CertRole::Member && id.name == info.id => {
            Ok(Access::Member)
        }
        (Role::Member(info), Some(id)) => Err(Refusal(format!(
            "the certificate of {} {:?} cannot speak for member {:?}",
            id.role, id.name, info.id
        ))),
        (Role::Client, Some(id)) => match id.role {
            CertRole::Operator => Ok(Access::Operator),
            CertRole::Reader => Ok(Access::Reader),
            CertRole::Member => Err(Refusal(format!(
                "{:?} holds a member certificate: a client needs an operator or reader one",
                id.name
            ))),
        },
    }
}

/// Whether a frame length is really the first bytes of a TLS record (content type 20–23, then
/// major version 3): what a plaintext dialer reads from a TLS node.
fn looks_like_tls(len: usize) -> bool {
    let bytes = (len as u32).to_be_bytes();
    (20..=23).contains(&bytes[0]) && bytes[1] == 3
}

/// Why a dialer is refused; the text is sent to it and logged.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Checks a dialer's hello against this node; returns its role, or why it is refused.
fn check_hello(
    me: &NodeInfo,
    greeting: &Greeting,
    version: u32,
    cluster: &str,
    role: &Role,
) -> std::result::Result<Role, Refusal> {
    if version != PROTOCOL_VERSION {
        return Err(Refusal(format!(
            "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
        )));
    }
    if cluster != greeting.cluster {
        return Err(Refusal(format!(
            "cluster {cluster:?} is not this cluster ({:?})",
            greeting.cluster
        )));
    }
    if let Role::Member(info) = role {
        if info.id == me.id {
            return Err(Refusal(format!(
                "node id {:?} is already used by this node",
                me.id
            )));
        }
    }
    Ok(role.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_match_only_with_the_same_secret() {
        let a = Secret::new(Some("s3cret".into()));
        let b = Secret::new(Some("other".into()));
        let none = Secret::new(None);
        let p = a.proof("dialer", "c", b"n1", b"n2");
        assert_eq!(p.len(), 32);
        assert!(a.verify("dialer", "c", b"n1", b"n2", &p));
        assert!(!b.verify("dialer", "c", b"n1", b"n2", &p));
        // The label, cluster and nonce order are all bound into the proof.
        assert!(!a.verify("acceptor", "c", b"n1", b"n2", &p));
        assert!(!a.verify("dialer", "d", b"n1", b"n2", &p));
        assert!(!a.verify("dialer", "c", b"n2", b"n1", &p));
        // A side with a secret refuses an empty proof; a side without one accepts anything.
        assert!(!a.verify("dialer", "c", b"n1", b"n2", &[]));
        assert!(none.verify("dialer", "c", b"n1", b"n2", &[]));
        assert!(none.proof("dialer", "c", b"n1", b"n2").is_empty());
        assert_eq!(format!("{a:?}"), "Secret(set)");
    }
}
