//! Requests to a member's HTTP API (`reload` has no admin call, and
//! conditional or scheduled restarts are Patroni's `POST /restart`):
//! HTTP/1.0 over plain TCP or TLS (`https://`, with `--cacert`), enough
//! for the daemon's own API.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts members' API certificates signed by `ca`, presenting
/// `identity` (certificate, key) when given.
pub fn use_tls(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<(), String> {
    let certs = |p: &Path| {
        CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("read {}: {e}", p.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("read {}: {e}", key.display()))?;
            builder.with_client_auth_cert(certs(cert)?, key).map_err(|e| format!("client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    let _ = TLS.set(Arc::new(config));
    Ok(())
}

/// Whether the URL is `https://`, and its `host:port`.
fn authority(api_url: &str) -> Result<(bool, &str), String> {
    let (tls, rest) = match (api_url.strip_prefix("http://"), api_url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(format!("{api_url:?} is not an http:// or https:// URL")),
    };
    Ok((tls, rest.split('/').next().unwrap_or(rest)))
}

/// Sends `req` on `s` and reads the whole answer.
async fn exchange(mut s: impl AsyncRead + AsyncWrite + Unpin, host: &str, req: &str) -> Result<String, String> {
    s.write_all(req.as_bytes()).await.map_err(|e| format!("send to {host}: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.map_err(|e| format!("read from {host}: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// POSTs an empty body to `path`; the status code and body.
pub async fn post(api_url: &str, path: &str, token: Option<&str>, timeout: Duration) -> Result<(u16, String), String> {
    request("POST", api_url, path, "", token, timeout).await
}

/// Sends `method` with a JSON `body` (empty for none) to `path`; the
/// status code and body.
pub async fn request(
    method: &str,
    api_url: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let (tls, host) = authority(api_url)?;
    let call = async {
        let s = TcpStream::connect(host).await.map_err(|e| format!("connect to {host}: {e}"))?;
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let kind = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {host}\r\n{auth}{kind}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if !tls {
            return exchange(s, host, &req).await;
        }
        let config = TLS.get().ok_or(format!("{api_url} is HTTPS: give the CA that signed it with --cacert"))?;
        let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(['[', ']']);
        let name = ServerName::try_from(name.to_string()).map_err(|e| format!("{host}: {e}"))?;
        let s = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, s)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        exchange(s, host, &req).await
    };
    let answer = tokio::time::timeout(timeout, call).await.map_err(|_| format!("{host} did not answer"))??;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{host} answered no HTTP status"))?;
    Ok((code, body.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls() {
        assert_eq!(authority("http://10.0.0.1:8008"), Ok((false, "10.0.0.1:8008")));
        assert_eq!(authority("http://db1:8008/"), Ok((false, "db1:8008")));
        assert_eq!(authority("https://db1:8008"), Ok((true, "db1:8008")));
        assert!(authority("ftp://db1:8008").is_err());
    }
}
