//! Mutual TLS between nodes and clients (rustls with the `ring` provider, no OpenSSL).
//!
//! One cluster CA signs every certificate. Both sides of a connection present a certificate and
//! verify the other's chain against that CA; a client without a certificate is refused. Host
//! names are never checked, since a node may be reached by any of its addresses or DNS names: who
//! the peer is comes from its certificate alone.
//!
//! # Identity in a certificate
//! The subject alternative name (SAN) extension of a cluster certificate holds exactly:
//! - one `dNSName`: the holder's name (a node id, or an operator's or reader's name);
//! - one `uniformResourceIdentifier` `urn:ensemble:role:ROLE`, ROLE being `member`, `operator` or
//!   `reader` (see [`CertRole`]).
//!
//! Member certificates carry both the server- and client-authentication extended key usages;
//! operator and reader certificates only the client one, so they cannot serve as a node.
//! `ensemble-node certs` writes such certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use super::stream::Stream;

/// Prefix of the SAN URI that carries a certificate's role.
pub const ROLE_URN_PREFIX: &str = "urn:ensemble:role:";

/// How long [`Tls::accept`] and [`Tls::connect`] wait for the TLS handshake unless told otherwise
/// ([`Tls::with_timeout`]): a peer that sends nothing, or plaintext, must not hold a task forever.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the holder of a certificate may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertRole {
    /// A node of the cluster.
    Member,
    /// A client allowed every command.
    Operator,
    /// A client allowed only commands that change nothing.
    Reader,
}

impl CertRole {
    /// The word used in the certificate's role URI.
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Member => "member",
            CertRole::Operator => "operator",
            CertRole::Reader => "reader",
        }
    }

    /// The SAN URI that states this role.
    pub fn urn(self) -> String {
        format!("{ROLE_URN_PREFIX}{}", self.as_str())
    }

    fn from_word(word: &str) -> Option<CertRole> {
        match word {
            "member" => Some(CertRole::Member),
            "operator" => Some(CertRole::Operator),
            "reader" => Some(CertRole::Reader),
            _ => None,
        }
    }
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds a certificate, as its SAN states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: CertRole,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.role, self.name)
    }
}

/// Where a party's PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate.
    pub ca: PathBuf,
    /// This party's certificate, signed by the CA.
    pub cert: PathBuf,
    /// This party's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// What can go wrong loading TLS files or securing a connection.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind expected.
    #[error("{file}: {reason}")]
    Pem { file: PathBuf, reason: String },
    /// Our own certificate, key and CA do not make a valid configuration.
    #[error("TLS setup from {cert} and {key}: {source}")]
    Setup {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    /// The TLS handshake failed (bad chain, no client certificate, not TLS at all, ...).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The peer's certificate chains to our CA but carries no valid cluster identity.
    #[error("peer certificate: {0}")]
    BadIdentity(String),
    /// The peer is not who we meant to reach.
    #[error("expected member {expected:?}, the peer is {found}")]
    WrongPeer { expected: String, found: Identity },
}

/// A party's TLS setup: both the acceptor and the connector side. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    identity: Identity,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("identity", &self.inner.identity)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Tls {
    /// Reads the CA, certificate and key; the error names the file at fault. Fails when the
    /// certificate carries no cluster identity or the key does not belong to it.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let ca = read_certs(&files.ca)?;
        let chain = read_certs(&files.cert)?;
        let key = read_key(&files.key)?;
        let identity = identity_of(&chain[0]).map_err(|e| TlsError::Pem {
            file: files.cert.clone(),
            reason: e.0,
        })?;
        let roots = root_store(&files.ca, ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let setup = |source| TlsError::Setup {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| setup(rustls::Error::General(e.to_string())))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(setup)?;

        let server_verifier = Arc::new(CaOnlyVerifier {
            roots,
            provider: provider.clone(),
        });
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(setup)?;
        // Names are not how peers are identified; don't announce one.
        client.enable_sni = false;

        Ok(Tls {
            inner: Arc::new(Inner {
                identity,
                acceptor: TlsAcceptor::from(Arc::new(server)),
                connector: TlsConnector::from(Arc::new(client)),
            }),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// The same setup with another bound on each TLS handshake.
    pub fn with_timeout(mut self, timeout: Duration) -> Tls {
        self.timeout = timeout;
        self
    }

    /// Our identity, from our own certificate.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Runs the server side of the handshake on an accepted connection; the client must present
    /// a certificate signed by the cluster CA.
    pub async fn accept(&self, tcp: TcpStream) -> Result<(Stream, Identity), TlsError> {
        let handshake = self.inner.acceptor.accept(tcp);
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| TlsError::Timeout(self.timeout))?
            .map_err(TlsError::Handshake)?;
        let peer = peer_identity(tls.get_ref().1.peer_certificates())?;
        Ok((Stream::Server(Box::new(tls)), peer))
    }

    /// Runs the client side of the handshake on a dialed connection.
    ///
    /// `expected`: the node id we mean to reach (None when dialing a seed whose id we don't know
    /// yet). With `Some(id)` the server must be a member named `id`; with `None` it must be a
    /// member.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        expected: Option<&str>,
    ) -> Result<(Stream, Identity), TlsError> {
        // With SNI off and our own verifier, this name is neither sent nor checked.
        let name = ServerName::try_from("ensemble.invalid")
            .map_err(|e| TlsError::Handshake(std::io::Error::other(e)))?;
        let handshake = self.inner.connector.connect(name, tcp);
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| TlsError::Timeout(self.timeout))?
            .map_err(TlsError::Handshake)?;
        let peer = peer_identity(tls.get_ref().1.peer_certificates())?;
        let is_expected =
            peer.role == CertRole::Member && expected.is_none_or(|id| peer.name == id);
        if !is_expected {
            return Err(TlsError::WrongPeer {
                expected: expected.unwrap_or("any member").to_string(),
                found: peer,
            });
        }
        Ok((Stream::Client(Box::new(tls)), peer))
    }
}

/// The server side of a node's HTTPS (its HTTP API): the node's own certificate. A client
/// certificate is optional: HTTP requests carry bearer tokens. One that is presented must chain
/// to the cluster CA, or the handshake fails; who it names is read with [`identity_of`].
pub fn https_server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let ca = read_certs(&files.ca)?;
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let roots = root_store(&files.ca, ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup = |source| TlsError::Setup {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| setup(rustls::Error::General(e.to_string())))?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(setup)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(setup)
}

/// The client side of HTTPS to a node's HTTP API (`bench --http https://...`): the server's
/// chain must lead to the cluster CA and name the address dialled, as any HTTPS client checks;
/// this party's certificate is presented (it grants its role there, like a token).
pub fn https_client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let ca = read_certs(&files.ca)?;
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let roots = root_store(&files.ca, ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
        })
        .map_err(|source| TlsError::Setup {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn root_store(
    file: &Path,
    ca: Vec<CertificateDer<'static>>,
) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| TlsError::Pem {
            file: file.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Verifies a server's chain against the cluster CA without looking at host names.
#[derive(Debug)]
struct CaOnlyVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let bad = |reason: String| TlsError::Pem {
        file: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no certificate (BEGIN CERTIFICATE) in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        file: path.to_path_buf(),
        reason: format!("no usable private key: {e}"),
    })
}

fn peer_identity(certs: Option<&[CertificateDer<'static>]>) -> Result<Identity, TlsError> {
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| TlsError::BadIdentity("the peer presented no certificate".into()))?;
    identity_of(cert).map_err(|e| TlsError::BadIdentity(e.0))
}

/// A certificate without a valid cluster identity; the message says what is missing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoIdentity(pub String);

/// Reads the identity from a certificate's SAN (see the module doc); the error says what is
/// missing or ambiguous.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, NoIdentity> {
    let no = NoIdentity;
    use x509_parser::extensions::GeneralName;
    let (_, x509) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| no(format!("not an X.509 certificate: {e}")))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| no(format!("bad subject alternative name: {e}")))?
        .ok_or_else(|| no("no subject alternative name: not a cluster certificate".into()))?;
    let mut names = Vec::new();
    let mut roles = Vec::new();
    for general in &san.value.general_names {
        match general {
            GeneralName::DNSName(name) => names.push(name.to_string()),
            GeneralName::URI(uri) => {
                if let Some(word) = uri.strip_prefix(ROLE_URN_PREFIX) {
                    roles.push(
                        CertRole::from_word(word)
                            .ok_or_else(|| no(format!("unknown role {word:?}")))?,
                    );
                }
            }
            _ => {}
        }
    }
    let [name] = names.as_slice() else {
        return Err(no(format!(
            "expected one DNS name (the holder's name) in the SAN, found {}",
            names.len()
        )));
    };
    let [role] = roles.as_slice() else {
        return Err(no(format!(
            "expected one {ROLE_URN_PREFIX}* URI in the SAN, found {}",
            roles.len()
        )));
    };
    if name.is_empty() {
        return Err(no("empty name in the SAN".into()));
    }
    Ok(Identity {
        name: name.clone(),
        role: *role,
    })
}
