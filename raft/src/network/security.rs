//! Who may talk to a node: the cluster token every request carries, and the
//! source address outgoing connections use.
//!
//! With a token configured, every gRPC request a node serves (the Raft
//! transport and anything served beside it, such as the admin service) must
//! carry `authorization: Bearer <token>`; every request it sends carries it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// The shared secret of a cluster. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    /// A token: at least 16 characters, printable ASCII without spaces (it
    /// travels in an HTTP header).
    pub fn new(secret: &str) -> Result<Token, String> {
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(format!("a token needs at least 16 characters, this one has {}", secret.len()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token may hold only printable ASCII characters without spaces".into());
        }
        Ok(Token(secret.into()))
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), presented.as_bytes())
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

/// How a node's transport authenticates and connects.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Required on every request served, sent with every request made.
    pub token: Option<Token>,
    /// Source address of outgoing connections (the address the node
    /// listens on), so that peers and firewalls see one address per node.
    pub local_ip: Option<IpAddr>,
}

impl Transport {
    /// Adds the token to an outgoing request.
    pub fn authorize<T>(&self, request: &mut Request<T>) {
        if let Some(token) = &self.token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {}", token.secret()))
        {
            request.metadata_mut().insert("authorization", value);
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
        let transport = Transport { token: Some(t.clone()), local_ip: None };
        let mut req = Request::new(());
        assert_eq!(check(Some(&t), &req).unwrap_err().code(), tonic::Code::Unauthenticated);
        transport.authorize(&mut req);
        assert!(check(Some(&t), &req).is_ok());
        let other = Token::new("fedcba9876543210").unwrap();
        assert_eq!(check(Some(&other), &req).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(check(None, &Request::new(())).is_ok());
    }
}
