//! `host:port` addresses, the one parser of them: Raft addresses, API URLs,
//! PostgreSQL endpoints. An IPv6 host is written in brackets.

use std::fmt;
use std::str::FromStr;

/// A host (name, IPv4 or IPv6 address) and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Without brackets, also for IPv6.
    pub host: String,
    pub port: u16,
}

/// Why a `host:port` did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not host:port")]
pub struct InvalidHostPort(pub String);

impl FromStr for HostPort {
    type Err = InvalidHostPort;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidHostPort(s.to_string());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad());
        }
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(HostPort { host: host.to_string(), port })
    }
}

impl HostPort {
    /// The authority of a URL such as `http://10.0.0.1:8008/patroni`; a
    /// URL without a scheme is read as `host:port[/path]`.
    pub fn from_url(url: &str) -> Result<HostPort, InvalidHostPort> {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or_default();
        authority.parse().map_err(|_| InvalidHostPort(url.to_string()))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_ports() {
        let hp = |h: &str, p| HostPort { host: h.into(), port: p };
        assert_eq!("10.0.0.1:7001".parse(), Ok(hp("10.0.0.1", 7001)));
        assert_eq!("db-1.example:5432".parse(), Ok(hp("db-1.example", 5432)));
        assert_eq!("[::1]:8008".parse(), Ok(hp("::1", 8008)));
        for bad in ["", ":7001", "host", "host:", "host:70000", "::1:8008", "[::1:8008", "a b:1"] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad:?}");
        }
        assert_eq!(hp("::1", 8008).to_string(), "[::1]:8008");
        assert_eq!(hp("h", 1).to_string(), "h:1");
    }

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(HostPort::from_url("http://10.0.0.1:8008"), Ok(HostPort { host: "10.0.0.1".into(), port: 8008 }));
        assert_eq!(HostPort::from_url("http://[::1]:8008/"), Ok(HostPort { host: "::1".into(), port: 8008 }));
        assert_eq!(HostPort::from_url("127.0.0.1:8008/x"), Ok(HostPort { host: "127.0.0.1".into(), port: 8008 }));
        assert!(HostPort::from_url("nope").is_err());
    }
}
