//! A small HTTP/1 client for the daemons' APIs: member status fetches,
//! `raftctl`, and tests. `https://` URLs use the TLS configuration given
//! to [`use_tls`] once per process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {url}: invalid request: {reason}")]
    Request { method: String, url: String, reason: String },
    #[error("{method} {url}: timed out after {timeout:?}")]
    Timeout { method: String, url: String, timeout: Duration },
    #[error("{method} {url}: {reason}")]
    Transport { method: String, url: String, reason: String },
}

/// A response: status code and body text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The `ETag` header, if any.
    pub etag: Option<String>,
}

static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Sets the TLS configuration of `https://` requests, once per process
/// (a second call changes nothing).
pub fn use_tls(config: Arc<rustls::ClientConfig>) {
    let _ = TLS.set(config);
}

/// Sends one request. `token` becomes `Authorization: Bearer <token>`;
/// `headers` are added as given.
pub async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let (m, u) = (method.to_string(), url.to_string());
    let req = builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| ClientError::Request {
        method: m.clone(),
        url: u.clone(),
        reason: e.to_string(),
    })?;
    let sent = async {
        if req.uri().scheme_str() == Some("https") {
            https(req).await
        } else {
            client.request(req).await.map_err(|e| e.to_string())
        }
    };
    let resp = tokio::time::timeout(timeout, sent)
        .await
        .map_err(|_| ClientError::Timeout { method: m.clone(), url: u.clone(), timeout })?
        .map_err(|reason| ClientError::Transport { method: m.clone(), url: u.clone(), reason })?;
    let status = resp.status().as_u16();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = tokio::time::timeout(timeout, resp.into_body().collect())
        .await
        .map_err(|_| ClientError::Timeout { method: m.clone(), url: u.clone(), timeout })?
        .map_err(|e| ClientError::Transport { method: m, url: u, reason: e.to_string() })?
        .to_bytes();
    Ok(Reply { status, body: String::from_utf8_lossy(&body).into_owned(), etag })
}

/// One request over TLS on a connection of its own.
async fn https(req: http::Request<Full<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, String> {
    let config = TLS.get().ok_or("no TLS configuration for https:// (a CA file is needed)")?;
    let host = req.uri().host().ok_or("no host in the URL")?.trim_matches(['[', ']']).to_string();
    let port = req.uri().port_u16().unwrap_or(443);
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = req;
    if let Some(authority) = req.uri().authority().cloned() {
        let value = http::HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
        req.headers_mut().insert(http::header::HOST, value);
    }
    // Origin form on the wire: the path and query only.
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    *req.uri_mut() = path.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// `GET url` with a 3 s deadline: status and body.
pub async fn get(url: &str) -> Result<(u16, String), ClientError> {
    let r = request("GET", url, None, &[], None, Duration::from_secs(3)).await?;
    Ok((r.status, r.body))
}
