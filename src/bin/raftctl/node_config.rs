//! `raftctl -c /etc/raftgres/raftgres.toml`: the few fields of a node's
//! configuration file raftctl needs (where the admin service listens, the
//! token, the CA), read here: raftctl does not link the daemon's library.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// What a node's file tells raftctl.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FromFile {
    /// This node's Raft address first, then the other initial members'.
    pub endpoints: Vec<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// The members' HTTPS API: `[http] cafile`, `certfile`, `keyfile` (a
    /// node's certificate is a client certificate its CA signed).
    pub api_cacert: Option<PathBuf>,
    pub api_cert: Option<PathBuf>,
    pub api_key: Option<PathBuf>,
}

fn text<'a>(t: &'a Table, section: &str, key: &str) -> Option<&'a str> {
    t.get(section)?.get(key)?.as_str()
}

/// An address clients can dial: a wildcard listen address is not one.
fn dialable(addr: &str) -> bool {
    !(addr.starts_with("0.0.0.0:") || addr.starts_with("[::]:"))
}

/// Parses a node's file (TOML).
pub fn parse(content: &str) -> Result<FromFile, String> {
    let t: Table = content.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    let mut endpoints: Vec<String> = Vec::new();
    let own = text(&t, "raft", "advertise").or_else(|| text(&t, "raft", "listen").filter(|a| dialable(a)));
    endpoints.extend(own.map(str::to_string));
    let members = t.get("raft").and_then(|r| r.get("initial_members")).and_then(Value::as_array);
    for m in members.into_iter().flatten() {
        if let Some(a) = m.get("raft_addr").and_then(Value::as_str)
            && !endpoints.iter().any(|e| e == a)
        {
            endpoints.push(a.to_string());
        }
    }
    if endpoints.is_empty() {
        return Err("it names no Raft address ([raft] advertise, listen or initial_members)".into());
    }
    Ok(FromFile {
        endpoints,
        token: text(&t, "security", "token").map(str::to_string),
        token_file: text(&t, "security", "token_file").map(PathBuf::from),
        ca_file: text(&t, "security", "tls_ca_file").map(PathBuf::from),
        api_cacert: text(&t, "http", "cafile").map(PathBuf::from),
        api_cert: text(&t, "http", "certfile").map(PathBuf::from),
        api_key: text(&t, "http", "keyfile").map(PathBuf::from),
    })
}

/// Reads and parses a node's file.
pub fn read(path: &Path) -> Result<FromFile, String> {
    let content = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    parse(&content).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_file_gives_endpoints_token_and_ca() {
        let f = parse(
            r#"
            cluster_id = "demo"
            [raft]
            listen = "0.0.0.0:7001"
            advertise = "10.0.0.2:7001"
            [[raft.initial_members]]
            id = 1
            name = "pg1"
            raft_addr = "10.0.0.1:7001"
            [[raft.initial_members]]
            id = 2
            name = "pg2"
            raft_addr = "10.0.0.2:7001"
            [security]
            token = "secret"
            tls_ca_file = "/etc/raftgres/ca.pem"
            [tags]
            nofailover = true
            "#,
        )
        .expect("parses");
        assert_eq!(f.endpoints, vec!["10.0.0.2:7001", "10.0.0.1:7001"]);
        assert_eq!(f.token.as_deref(), Some("secret"));
        assert_eq!(f.ca_file, Some(PathBuf::from("/etc/raftgres/ca.pem")));
        let f = parse("[raft]\nlisten = \"0.0.0.0:7001\"\n").err();
        assert!(f.is_some_and(|e| e.contains("Raft address")));
        assert!(parse("not toml [").is_err());
    }
}
