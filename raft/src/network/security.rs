//! Who may talk to a node: the cluster token every request carries, and the
//! source address outgoing connections use.
//!
//! With a token configured, every gRPC request a node serves (the Raft
//! transport and anything served beside it, such as the admin service) must
//! carry `authorization: Bearer <token>`; every request it sends carries it.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// Why a token, TLS material or a peer address cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("{0}")]
    InvalidToken(String),
    #[error("{what} {path}: {reason}")]
    Pem { what: &'static str, path: String, reason: String },
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },
    #[error("TLS for {addr}: {reason}")]
    Tls { addr: String, reason: String },
}

/// The shared secret of a cluster. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: Arc<str>,
    /// `Bearer <secret>`, made once: every request a node sends carries it.
    header: MetadataValue<Ascii>,
}

impl Token {
    /// A token: at least 16 characters, printable ASCII without spaces (it
    /// travels in an HTTP header).
    pub fn new(secret: &str) -> Result<Token, SecurityError> {
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(SecurityError::InvalidToken(format!(
                "a token needs at least 16 characters, this one has {}",
                secret.len()
            )));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecurityError::InvalidToken(
                "a token may hold only printable ASCII characters without spaces".into(),
            ));
        }
        let header = MetadataValue::try_from(format!("Bearer {secret}"))
            .map_err(|e| SecurityError::InvalidToken(format!("a token must fit in a header: {e}")))?;
        Ok(Token { secret: secret.into(), header })
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(self.secret.as_bytes(), presented.as_bytes())
    }

    /// Checks an `Authorization` header value: `Bearer <token>`.
    pub fn matches_header(&self, value: &str) -> bool {
        value.strip_prefix("Bearer ").is_some_and(|t| self.matches(t.trim()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// TLS material of a node (PEM): the cluster's CA, and this node's
/// certificate and key. Peers are verified against the CA; the key is never
/// printed.
#[derive(Clone)]
pub struct Tls {
    ca: Arc<Vec<u8>>,
    cert: Arc<Vec<u8>>,
    key: Arc<Vec<u8>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls { ca, cert, key: <redacted> }")
    }
}

fn read_pem(what: &'static str, path: &Path, marker: &str) -> Result<Vec<u8>, SecurityError> {
    let pem_error = |reason: String| SecurityError::Pem { what, path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| pem_error(format!("cannot be read: {e}")))?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(pem_error(format!("holds no PEM {marker:?} block")));
    }
    Ok(bytes)
}

impl Tls {
    /// Reads and checks the three PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Tls, SecurityError> {
        Ok(Tls {
            ca: Arc::new(read_pem("CA certificate", ca, "BEGIN CERTIFICATE")?),
            cert: Arc::new(read_pem("certificate", cert, "BEGIN CERTIFICATE")?),
            key: Arc::new(read_pem("private key", key, "PRIVATE KEY")?),
        })
    }

    /// Serves with this node's certificate. Client certificates signed by
    /// the CA are accepted but not required: the token authorizes, so
    /// `raftctl` needs only the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(self.cert.as_slice(), self.key.as_slice()))
            .client_ca_root(Certificate::from_pem(self.ca.as_slice()))
            .client_auth_optional(true)
    }

    /// Verifies peers against the CA and presents this node's certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.as_slice()))
            .identity(Identity::from_pem(self.cert.as_slice(), self.key.as_slice()))
    }
}

/// How a node's transport authenticates and connects.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Required on every request served, sent with every request made.
    pub token: Option<Token>,
    /// Source address of outgoing connections (the address the node
    /// listens on), so that peers and firewalls see one address per node.
    pub local_ip: Option<IpAddr>,
    /// TLS for everything served and sent; plain HTTP/2 without it.
    pub tls: Option<Tls>,
}

impl Transport {
    /// An endpoint for a peer's `host:port`, with TLS when configured.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, SecurityError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| SecurityError::InvalidAddress { addr: addr.to_string(), reason: e.to_string() })?
            .local_address(self.local_ip);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.client_config())
                .map_err(|e| SecurityError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
        }
        Ok(endpoint)
    }

    /// Adds the token to an outgoing request.
    pub fn authorize<T>(&self, request: &mut Request<T>) {
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.header.clone());
        }
    }

    /// Checks an incoming request's token.
    pub fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check(self.token.as_ref(), request)
    }
}

/// Checks `request` against `token`: `Unauthenticated` when it carries none
/// or another one; anything goes without a token.
pub fn check<T>(token: Option<&Token>, request: &Request<T>) -> Result<(), Status> {
    let Some(token) = token else {
        return Ok(());
    };
    match request.metadata().get("authorization").map(|v| v.to_str()) {
        None => Err(Status::unauthenticated("this cluster requires a token (authorization: Bearer <token>)")),
        Some(Ok(v)) if token.matches_header(v) => Ok(()),
        Some(_) => Err(Status::unauthenticated("wrong cluster token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_printed() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it......").is_err());
        let t = Token::new("0123456789abcdef").unwrap();
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeF"));
        assert!(!t.matches("0123456789abcde"));
        assert!(t.matches_header("Bearer 0123456789abcdef"));
        assert!(!t.matches_header("Basic 0123456789abcdef"));
    }

    #[test]
    fn requests_need_the_token_when_one_is_set() {
        let t = Token::new("0123456789abcdef").unwrap();
        let transport = Transport { token: Some(t.clone()), local_ip: None, tls: None };
        let mut req = Request::new(());
        assert_eq!(check(Some(&t), &req).unwrap_err().code(), tonic::Code::Unauthenticated);
        transport.authorize(&mut req);
        assert!(check(Some(&t), &req).is_ok());
        let other = Token::new("fedcba9876543210").unwrap();
        assert_eq!(check(Some(&other), &req).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(check(None, &Request::new(())).is_ok());
    }
}
