//! Mutual TLS between in-process parties on loopback: who is accepted, who is refused, and that
//! refusals come as errors, quickly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ensemble_cluster::net::tls::identity_of;
use ensemble_cluster::net::{CertRole, Identity, Tls, TlsError, TlsFiles};
use ensemble_cluster::tools::certs::CertAuthority;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A fresh folder with a CA; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("ensemble-tls-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        CertAuthority::open_or_create(&path).expect("CA");
        Dir(path)
    }

    fn issue(&self, name: &str, role: CertRole) -> TlsFiles {
        let (ca, _) = CertAuthority::open_or_create(&self.0).expect("CA");
        let [cert, key] = ca.write(&self.0, name, role).expect("issue");
        TlsFiles {
            ca: self.0.join("ca.pem"),
            cert,
            key,
        }
    }

    fn tls(&self, name: &str, role: CertRole) -> Tls {
        Tls::load(&self.issue(name, role)).expect("load")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A listener whose first connection is accepted by `server`; the task's result is the accept
/// result, after echoing one line when the handshake succeeded.
async fn serve_once(
    server: Tls,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<Identity, TlsError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept tcp");
        let (mut stream, peer) = server.accept(tcp).await?;
        let mut buf = [0u8; 5];
        if stream.read_exact(&mut buf).await.is_ok() {
            let _ = stream.write_all(&buf).await;
            let _ = stream.flush().await;
        }
        Ok(peer)
    });
    (addr, task)
}

async fn dial(
    client: &Tls,
    addr: std::net::SocketAddr,
    expected: Option<&str>,
) -> Result<(ensemble_cluster::net::Stream, Identity), TlsError> {
    let tcp = TcpStream::connect(addr).await.expect("connect tcp");
    client.connect(tcp, expected).await
}

/// Waits for the server task, which must end within `limit`.
async fn server_result(
    task: tokio::task::JoinHandle<Result<Identity, TlsError>>,
    limit: Duration,
) -> Result<Identity, TlsError> {
    tokio::time::timeout(limit, task)
        .await
        .expect("server side must finish in time")
        .expect("server task")
}

#[tokio::test]
async fn members_authenticate_each_other_and_carry_bytes() {
    let dir = Dir::new("mutual");
    let n1 = dir.tls("n1", CertRole::Member);
    let n2 = dir.tls("n2", CertRole::Member);
    assert_eq!(
        n1.identity(),
        &Identity {
            name: "n1".into(),
            role: CertRole::Member
        }
    );
    let (addr, task) = serve_once(n1).await;
    let (mut stream, server) = dial(&n2, addr, Some("n1")).await.expect("connect");
    assert!(stream.is_tls());
    assert_eq!(stream.peer_addr().expect("peer"), addr);
    assert_eq!(server.name, "n1");
    assert_eq!(server.role, CertRole::Member);
    stream.write_all(b"hello").await.expect("write");
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).await.expect("echo");
    assert_eq!(&back, b"hello");
    let client = server_result(task, Duration::from_secs(5))
        .await
        .expect("server accepts n2");
    assert_eq!(
        client,
        Identity {
            name: "n2".into(),
            role: CertRole::Member
        }
    );
}

#[tokio::test]
async fn client_roles_are_read_from_the_certificate() {
    let dir = Dir::new("roles");
    let n1 = dir.tls("n1", CertRole::Member);
    for (name, role) in [("alice", CertRole::Operator), ("bob", CertRole::Reader)] {
        let client = dir.tls(name, role);
        assert_eq!(client.identity().role, role);
        let (addr, task) = serve_once(n1.clone()).await;
        // Seed dialing: the server's id is not known yet.
        let (_stream, server) = dial(&client, addr, None).await.expect("connect");
        assert_eq!(server.name, "n1");
        drop(_stream);
        let seen = server_result(task, Duration::from_secs(5))
            .await
            .expect("accepted");
        assert_eq!(seen.name, name);
        assert_eq!(seen.role, role);
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_both_ways() {
    let ours = Dir::new("ca-ours");
    let theirs = Dir::new("ca-theirs");
    let n1 = ours.tls("n1", CertRole::Member);
    let intruder = theirs.tls("n2", CertRole::Member);

    // Their client, our server.
    let (addr, task) = serve_once(n1.clone()).await;
    let _ = dial(&intruder, addr, Some("n1")).await;
    let err = server_result(task, Duration::from_secs(5))
        .await
        .expect_err("server must refuse a foreign client");
    assert!(matches!(err, TlsError::Handshake(_)), "{err}");

    // Our client, their server.
    let (addr, task) = serve_once(intruder).await;
    let err = dial(&n1, addr, None)
        .await
        .expect_err("client must refuse a foreign server");
    assert!(matches!(err, TlsError::Handshake(_)), "{err}");
    assert!(server_result(task, Duration::from_secs(5)).await.is_err());
}

#[tokio::test]
async fn a_member_reached_under_another_id_is_refused() {
    let dir = Dir::new("wrong-id");
    let n1 = dir.tls("n1", CertRole::Member);
    let n2 = dir.tls("n2", CertRole::Member);
    let (addr, _task) = serve_once(n1).await;
    match dial(&n2, addr, Some("n3")).await {
        Err(TlsError::WrongPeer { expected, found }) => {
            assert_eq!(expected, "n3");
            assert_eq!(found.name, "n1");
        }
        other => panic!("expected WrongPeer, got {:?}", other.map(|(_, id)| id)),
    }
}

#[tokio::test]
async fn a_client_certificate_cannot_serve_as_a_member() {
    let dir = Dir::new("client-as-server");
    let n2 = dir.tls("n2", CertRole::Member);
    // An operator certificate lacks the server-authentication usage.
    let (addr, _task) = serve_once(dir.tls("alice", CertRole::Operator)).await;
    let err = dial(&n2, addr, None).await.expect_err("must be refused");
    assert!(matches!(err, TlsError::Handshake(_)), "{err}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = Dir::new("no-client-cert");
    let n1 = dir.tls("n1", CertRole::Member);
    let (addr, task) = serve_once(n1).await;

    // A well-behaved TLS client that trusts the CA but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(dir.0.join("ca.pem")).expect("ca pem");
    roots.add(ca).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let name = ServerName::try_from("n1").expect("name");
    if let Ok(mut stream) = connector.connect(name, tcp).await {
        // TLS 1.3: the client finishes first; the server's refusal arrives on the next read.
        let _ = stream.write_all(b"hello").await;
        let mut buf = [0u8; 5];
        assert!(
            stream.read_exact(&mut buf).await.is_err(),
            "no echo without a client certificate"
        );
    }
    let err = server_result(task, Duration::from_secs(5))
        .await
        .expect_err("server must refuse");
    assert!(matches!(err, TlsError::Handshake(_)), "{err}");
}

#[tokio::test]
async fn plaintext_against_a_tls_acceptor_fails_quickly() {
    let dir = Dir::new("plaintext");
    let n1 = dir.tls("n1", CertRole::Member);
    let (addr, task) = serve_once(n1.clone()).await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    tcp.write_all(b"ENSEMBLE hello, this is not TLS\n")
        .await
        .expect("write");
    let err = server_result(task, Duration::from_secs(5))
        .await
        .expect_err("must be refused");
    assert!(matches!(err, TlsError::Handshake(_)), "{err}");
    // Refused on the first bytes, long before the handshake deadline.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A client that sends nothing is cut off at the deadline.
    let (addr, task) = serve_once(n1.with_timeout(Duration::from_millis(200))).await;
    let _silent = TcpStream::connect(addr).await.expect("tcp");
    let err = server_result(task, Duration::from_secs(5))
        .await
        .expect_err("must time out");
    assert!(matches!(err, TlsError::Timeout(_)), "{err}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = Dir::new("load-errors");
    let good = dir.issue("n1", CertRole::Member);

    let missing = TlsFiles {
        key: dir.0.join("nope.key"),
        ..good.clone()
    };
    let msg = Tls::load(&missing).expect_err("missing key").to_string();
    assert!(msg.contains("nope.key"), "{msg}");

    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let msg = Tls::load(&TlsFiles {
        cert: junk.clone(),
        ..good.clone()
    })
    .expect_err("no PEM")
    .to_string();
    assert!(msg.contains("junk.pem"), "{msg}");
    let msg = Tls::load(&TlsFiles {
        ca: junk,
        ..good.clone()
    })
    .expect_err("no CA")
    .to_string();
    assert!(msg.contains("junk.pem"), "{msg}");

    // A key that is not the certificate's.
    let other = dir.issue("n2", CertRole::Member);
    let err = Tls::load(&TlsFiles {
        key: other.key,
        ..good
    })
    .expect_err("mismatched key");
    assert!(matches!(err, TlsError::Setup { .. }), "{err}");
}

#[test]
fn a_certificate_without_a_role_has_no_identity() {
    let plain = rcgen::generate_simple_self_signed(vec!["n1".to_string()]).expect("cert");
    let err = identity_of(plain.cert.der()).expect_err("no role URI");
    assert!(err.to_string().contains("urn:ensemble:role:"), "{err}");
    let dir = Dir::new("identity");
    let files = dir.issue("r1", CertRole::Reader);
    let der = CertificateDer::from_pem_file(&files.cert).expect("pem");
    assert_eq!(
        identity_of(&der).expect("identity"),
        Identity {
            name: "r1".into(),
            role: CertRole::Reader
        }
    );
}
