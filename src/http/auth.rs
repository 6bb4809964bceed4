//! Bearer-token roles, the same two a `ctl` client has: a reader may look and predict, an
//! operator may also train. With no token configured the listener is loopback-only (the
//! config refuses anything else), and every request is an operator's.
//!
//! Over HTTPS a client may also present the cluster certificate it uses with `ctl` (optional:
//! tokens stay the HTTP credential). The handshake has already checked its chain against the
//! cluster CA; an operator or reader certificate then grants its role like the token would.

use std::any::Any;

use actix_web::dev::Extensions;
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;

use super::error::ApiError;
use crate::config::HttpSettings;
use crate::net::tls::{identity_of, CertRole};

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Operator,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
        }
    }
}

/// The role a connection's verified client certificate grants (a member's grants none: nodes
/// don't call each other over HTTP).
#[derive(Debug, Clone, Copy)]
struct CertGrant(Role);

/// `HttpServer::on_connect` hook: records the role of the client certificate of a TLS
/// connection, if one was presented.
pub fn client_certificate(conn: &dyn Any, data: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;
    let Some(tls) = conn.downcast_ref::<Tls>() else {
        return;
    };
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return;
    };
    match identity_of(cert) {
        Ok(id) => {
            let role = match id.role {
                CertRole::Operator => Some(Role::Operator),
                CertRole::Reader => Some(Role::Reader),
                CertRole::Member => None,
            };
            if let Some(role) = role {
                data.insert(CertGrant(role));
            }
        }
        Err(e) => tracing::debug!("HTTPS client certificate without a cluster identity: {e}"),
    }
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    operator: Option<String>,
    reader: Option<String>,
}

impl Auth {
    pub fn new(settings: &HttpSettings) -> Auth {
        Auth {
            operator: settings.operator_token.clone(),
            reader: settings.reader_token.clone(),
        }
    }

    /// The role a bearer token grants, if any.
    fn role_of(&self, token: &str) -> Option<Role> {
        let is = |t: &Option<String>| t.as_deref().is_some_and(|t| same(t, token));
        if is(&self.operator) {
            Some(Role::Operator)
        } else if is(&self.reader) {
            Some(Role::Reader)
        } else {
            None
        }
    }

    /// Lets the request through if it holds at least `need`; else 401 (no or unknown token) or
    /// 403 (a reader asking for an operator's endpoint), naming the role needed.
    pub fn check(&self, req: &HttpRequest, need: Role) -> Result<(), ApiError> {
        if self.operator.is_none() && self.reader.is_none() {
            return Ok(());
        }
        let cert = req.conn_data::<CertGrant>().map(|CertGrant(role)| *role);
        if cert.is_some_and(|role| role >= need) {
            return Ok(());
        }
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            if let Some(role) = cert {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this endpoint needs the {} role; the client certificate is a {}'s",
                        need.name(),
                        role.name()
                    ),
                ));
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "missing bearer token: this endpoint needs the {} role \
                     (Authorization: Bearer <token>)",
                    need.name()
                ),
            ));
        };
        match self.role_of(token) {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "unknown bearer token: this endpoint needs the {} role",
                    need.name()
                ),
            )),
            Some(role) if role < need => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this endpoint needs the {} role; the token is a {}'s",
                    need.name(),
                    role.name()
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Compares without stopping at the first difference, so response time says nothing about how
/// much of a guess was right.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn auth() -> Auth {
        Auth::new(&HttpSettings {
            listen: None,
            operator_token: Some("op".into()),
            reader_token: Some("rd".into()),
        })
    }

    fn with(token: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default();
        if let Some(t) = token {
            req = req.insert_header((AUTHORIZATION, format!("Bearer {t}")));
        }
        req.to_http_request()
    }

    #[test]
    fn roles_are_checked_and_named() {
        let a = auth();
        assert!(a.check(&with(Some("op")), Role::Operator).is_ok());
        assert!(a.check(&with(Some("rd")), Role::Reader).is_ok());
        let e = a
            .check(&with(Some("rd")), Role::Operator)
            .expect_err("reader");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("operator"), "{e}");
        let e = a.check(&with(None), Role::Reader).expect_err("none");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("reader"), "{e}");
        let e = a
            .check(&with(Some("guess")), Role::Reader)
            .expect_err("bad");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(Auth::default().check(&with(None), Role::Operator).is_ok());
    }
}
