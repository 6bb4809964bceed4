//! `ensemble-node certs`: the cluster CA and one certificate per node and per client, in the
//! layout [`crate::net::tls`] reads (name in a SAN DNS name, role in a SAN URI).
//!
//! `DIR/ca.pem` + `DIR/ca.key` are made once and reused, so certificates issued later join the
//! same cluster; `DIR/NAME.pem` + `DIR/NAME.key` are (re)written for every name asked. Private
//! keys are created with mode 0600.
//!
//! A member certificate may also name IP addresses (`--ip`): HTTPS clients such as curl, browsers
//! and Python check that the address they dialled is in the server's certificate, while the
//! cluster itself identifies a node by its name only.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};

use crate::net::tls::CertRole;

/// How long issued certificates are valid.
const VALID_DAYS: i64 = 10 * 365;

/// Arguments of `ensemble-node certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Folder of the CA and the certificates (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// A node id to issue a member certificate for (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// A client name to issue an operator certificate for (repeatable).
    #[arg(long = "operator")]
    pub operators: Vec<String>,
    /// A client name to issue a reader certificate for (repeatable).
    #[arg(long = "reader")]
    pub readers: Vec<String>,
    /// An IP address the member certificates written now also name (repeatable), for HTTPS
    /// clients that check the address they reach a node's HTTP API at (curl, browsers).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
}

/// What can go wrong issuing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("{path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The cluster CA, able to sign.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
}

impl CertAuthority {
    /// Loads `dir/ca.pem` + `dir/ca.key`, or creates both when neither exists. Returns the CA and
    /// whether it was created.
    pub fn open_or_create(dir: &Path) -> Result<(CertAuthority, bool), CertsError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let bad = |reason: String| CertsError::BadCa {
                    path: cert_path.clone(),
                    reason,
                };
                let key_pem = read(&key_path)?;
                let key = KeyPair::from_pem(&key_pem).map_err(|e| CertsError::BadCa {
                    path: key_path.clone(),
                    reason: format!("not a private key: {e}"),
                })?;
                let cert_pem = read(&cert_path)?;
                let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                    .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
                Ok((CertAuthority { issuer }, false))
            }
            (false, false) => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::default();
                params.distinguished_name = rcgen::DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::CommonName, "ensemble cluster CA");
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                set_validity(&mut params);
                let cert = params.self_signed(&key)?;
                write_private(&key_path, &key.serialize_pem())?;
                write_public(&cert_path, &cert.pem())?;
                Ok((
                    CertAuthority {
                        issuer: Issuer::new(params, key),
                    },
                    true,
                ))
            }
            (has_cert, _) => Err(CertsError::BadCa {
                path: if has_cert { key_path } else { cert_path },
                reason: "missing while its pair exists: restore it or remove both".into(),
            }),
        }
    }

    /// Issues a certificate for `name` in `role` that also names `ips`; returns (certificate
    /// PEM, key PEM).
    pub fn issue(
        &self,
        name: &str,
        role: CertRole,
        ips: &[IpAddr],
    ) -> Result<(String, String), CertsError> {
        check_name(name)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![
            SanType::DnsName(name.try_into()?),
            SanType::URI(role.urn().try_into()?),
        ];
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            CertRole::Member => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            CertRole::Operator | CertRole::Reader => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues and writes `dir/NAME.pem` + `dir/NAME.key`; returns both paths.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        role: CertRole,
    ) -> Result<[PathBuf; 2], CertsError> {
        self.write_with_ips(dir, name, role, &[])
    }

    /// [`CertAuthority::write`] of a certificate that also names `ips`.
    pub fn write_with_ips(
        &self,
        dir: &Path,
        name: &str,
        role: CertRole,
        ips: &[IpAddr],
    ) -> Result<[PathBuf; 2], CertsError> {
        let (cert, key) = self.issue(name, role, ips)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        write_private(&key_path, &key)?;
        write_public(&cert_path, &cert)?;
        Ok([cert_path, key_path])
    }
}

/// Runs `ensemble-node certs`; the JSON report lists every file written.
pub fn run_certs(args: &CertsArgs) -> Result<Value, CertsError> {
    let mut wanted: Vec<(&str, CertRole)> = Vec::new();
    let groups = [
        (&args.nodes, CertRole::Member),
        (&args.operators, CertRole::Operator),
        (&args.readers, CertRole::Reader),
    ];
    for (names, role) in groups {
        for name in names {
            check_name(name)?;
            if wanted.iter().any(|(n, _)| n == name) {
                return Err(CertsError::BadName {
                    name: name.clone(),
                    reason: "named twice".into(),
                });
            }
            wanted.push((name, role));
        }
    }
    fs::create_dir_all(&args.dir).map_err(|source| CertsError::Io {
        path: args.dir.clone(),
        source,
    })?;
    let (ca, created) = CertAuthority::open_or_create(&args.dir)?;
    let mut written = Vec::new();
    if created {
        written.push(args.dir.join("ca.pem"));
        written.push(args.dir.join("ca.key"));
    }
    for (name, role) in wanted {
        let ips: &[IpAddr] = if role == CertRole::Member {
            &args.ips
        } else {
            &[]
        };
        written.extend(ca.write_with_ips(&args.dir, name, role, ips)?);
    }
    Ok(json!({
        "ok": true,
        "dir": args.dir.display().to_string(),
        "written": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    }))
}

/// Names become file names and SAN DNS names: keep them to what both accept.
fn check_name(name: &str) -> Result<(), CertsError> {
    let bad = |reason: &str| CertsError::BadName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(bad(
            "only ASCII letters, digits, '-', '_' and '.' (not first) are allowed",
        ));
    }
    if name == "ca" {
        return Err(bad("\"ca\" is the CA's own file name"));
    }
    Ok(())
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, so a peer whose clock is a little behind still accepts a fresh certificate.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
}

fn read(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_public(path: &Path, body: &str) -> Result<(), CertsError> {
    fs::write(path, body).map_err(|source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a key readable by its owner only, also when the file existed with wider rights.
fn write_private(path: &Path, body: &str) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(body.as_bytes()).map_err(io)
}
