//! Requests to a member's HTTP API (`reload` has no admin call, and
//! conditional or scheduled restarts are Patroni's `POST /restart`):
//! HTTP/1.0 over plain TCP, enough for the daemon's own API.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of an `http://` URL.
fn authority(api_url: &str) -> Result<&str, String> {
    let Some(rest) = api_url.strip_prefix("http://") else {
        return Err(format!("{api_url:?} is not an http:// URL"));
    };
    Ok(rest.split('/').next().unwrap_or(rest))
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
    let host = authority(api_url)?;
    let exchange = async {
        let mut s = TcpStream::connect(host).await.map_err(|e| format!("connect to {host}: {e}"))?;
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let kind = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {host}\r\n{auth}{kind}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.map_err(|e| format!("send to {host}: {e}"))?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.map_err(|e| format!("read from {host}: {e}"))?;
        Ok::<_, String>(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("{host} did not answer"))??;
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
    fn only_plain_http_urls() {
        assert_eq!(authority("http://10.0.0.1:8008"), Ok("10.0.0.1:8008"));
        assert_eq!(authority("http://db1:8008/"), Ok("db1:8008"));
        assert!(authority("https://db1:8008").is_err());
    }
}
