//! A small HTTP/1 client for the daemons' APIs: member status fetches,
//! `raftctl`, and tests.

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
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| ClientError::Timeout { method: m.clone(), url: u.clone(), timeout })?
        .map_err(|e| ClientError::Transport { method: m.clone(), url: u.clone(), reason: e.to_string() })?;
    let status = resp.status().as_u16();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = tokio::time::timeout(timeout, resp.into_body().collect())
        .await
        .map_err(|_| ClientError::Timeout { method: m.clone(), url: u.clone(), timeout })?
        .map_err(|e| ClientError::Transport { method: m, url: u, reason: e.to_string() })?
        .to_bytes();
    Ok(Reply { status, body: String::from_utf8_lossy(&body).into_owned(), etag })
}

/// `GET url` with a 3 s deadline: status and body.
pub async fn get(url: &str) -> Result<(u16, String), ClientError> {
    let r = request("GET", url, None, &[], None, Duration::from_secs(3)).await?;
    Ok((r.status, r.body))
}
