//! What answers on an address that does not speak the admin protocol: the
//! daemon's HTTP API, or PostgreSQL. Used only after a call failed, to turn
//! a transport error into "that is the wrong port".

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What kind of server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Other {
    Http,
    Postgres,
}

/// The advice for an endpoint where `other` answered.
pub fn advice(endpoint: &str, other: Other) -> String {
    let what = match other {
        Other::Http => "the HTTP API port",
        Other::Postgres => "a PostgreSQL port",
    };
    format!(
        "{endpoint} is {what}; raftctl talks to the Raft/admin port (raft_addr in the node's configuration, \
         default 7001): pass it with --endpoints or RAFTCTL_ENDPOINTS"
    )
}

/// `host:port` of an endpoint written as `host:port` or a URL.
fn host_port(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map(|(_, r)| r).unwrap_or(endpoint);
    rest.split('/').next().unwrap_or(rest)
}

/// Reads what the server sends back to `hello`, at most `n` bytes.
async fn answer(addr: &str, hello: &[u8], n: usize) -> Option<Vec<u8>> {
    let mut s = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(hello).await.ok()?;
    let mut buf = vec![0; n];
    let got = tokio::time::timeout(PROBE_TIMEOUT, s.read(&mut buf)).await.ok()?.ok()?;
    buf.truncate(got);
    Some(buf)
}

/// Asks the endpoint in HTTP/1, then with PostgreSQL's SSL request.
pub async fn what_answers(endpoint: &str) -> Option<Other> {
    let addr = host_port(endpoint);
    let http = answer(addr, b"GET / HTTP/1.0\r\nUser-Agent: raftctl\r\n\r\n", 5).await;
    if http.as_deref().is_some_and(|a| a.starts_with(b"HTTP/")) {
        return Some(Other::Http);
    }
    // SSLRequest: length 8, code 80877103. PostgreSQL answers one byte.
    let pg = answer(addr, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 2).await;
    match pg.as_deref() {
        Some([b'S' | b'N']) => Some(Other::Postgres),
        // An old server that refuses the request with an error message.
        Some([b'E', ..]) => Some(Other::Postgres),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_host_port() {
        assert_eq!(host_port("10.0.0.1:7001"), "10.0.0.1:7001");
        assert_eq!(host_port("https://db1:7001/"), "db1:7001");
        assert!(advice("db1:8008", Other::Http).contains("HTTP API port"));
        assert!(advice("db1:5432", Other::Postgres).contains("raft_addr"));
    }
}
