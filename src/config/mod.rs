//! The daemon's configuration: one TOML file per node.
//!
//! [`FileConfig`] is what the file holds (serde, every field documented in
//! [`DEFAULT_CONFIG`]); [`FileConfig::validate`] checks every field and
//! every relation, reports all violations at once, and returns the resolved
//! [`Config`] the daemon runs with.

mod template;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftgres_raft::network::security::{Tls, Token};
use raftgres_storage::member::validate_tags;
use raftgres_storage::{DynamicConfig, Tags};
use serde::{Deserialize, Serialize};

pub use template::DEFAULT_CONFIG;

/// The configuration file as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub cluster_id: String,
    pub node: NodeSection,
    pub raft: RaftSection,
    #[serde(default)]
    pub http: HttpSection,
    pub postgres: PostgresSection,
    pub security: SecuritySection,
    /// This member's tags (Patroni's `tags`): nofailover, noloadbalance,
    /// nosync, failover_priority, and free-form ones for `?tag_k=v` checks.
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub dynamic: DynamicConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// The cluster token, inline.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the cluster token (read at start).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// TLS for the Raft port (Raft and admin traffic): the cluster's CA,
    /// this node's certificate (valid for its advertised Raft host) and key,
    /// PEM. All three or none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub id: u64,
    pub name: String,
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    pub raft_addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    pub listen: String,
    #[serde(default)]
    pub advertise: Option<String>,
    pub initial_members: Vec<InitialMember>,
    #[serde(default = "default_raft_heartbeat")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_election_min")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "default_election_max")]
    pub election_timeout_max_ms: u64,
}

fn default_raft_heartbeat() -> u64 {
    100
}
fn default_election_min() -> u64 {
    300
}
fn default_election_max() -> u64 {
    600
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: String,
    #[serde(default)]
    pub advertise: Option<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8008".into(), advertise: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default = "default_listen_addresses")]
    pub listen_addresses: String,
    #[serde(default)]
    pub advertise_host: Option<String>,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    #[serde(default = "default_superuser")]
    pub superuser: String,
    pub superuser_password: String,
    #[serde(default = "default_replication_user")]
    pub replication_user: String,
    pub replication_password: String,
    #[serde(default = "default_run_as")]
    pub run_as: String,
}

fn default_listen_addresses() -> String {
    "127.0.0.1".into()
}
fn default_pg_port() -> u16 {
    5432
}
fn default_superuser() -> String {
    "postgres".into()
}
fn default_replication_user() -> String {
    "replicator".into()
}
fn default_run_as() -> String {
    "postgres".into()
}

/// One invalid field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{} invalid field(s):\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// The resolved configuration the daemon runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub cluster_id: String,
    pub node_id: u64,
    pub node_name: String,
    /// Holds `raft-v<N>/`, `pgdata/` (unless moved) and `run/`.
    pub data_dir: PathBuf,
    pub raft_listen: SocketAddr,
    pub raft_advertise: String,
    pub initial_members: Vec<InitialMember>,
    pub raft_heartbeat: Duration,
    pub raft_election_timeout: (Duration, Duration),
    pub http_listen: SocketAddr,
    pub http_advertise: String,
    pub pg_bin_dir: Option<PathBuf>,
    pub pg_data_dir: PathBuf,
    /// Directory of PostgreSQL's Unix socket, used by the daemon itself.
    pub pg_socket_dir: PathBuf,
    pub pg_listen_addresses: String,
    pub pg_advertise_host: String,
    pub pg_port: u16,
    pub superuser: String,
    pub superuser_password: String,
    pub replication_user: String,
    pub replication_password: String,
    /// OS user PostgreSQL runs as when the daemon runs as root.
    pub run_as: String,
    /// The dynamic configuration a new cluster starts with.
    pub initial_dynamic: DynamicConfig,
    /// Required on every admin call, unsafe HTTP request and Raft message.
    pub token: Token,
    /// TLS of the Raft port, when configured.
    pub tls: Option<Tls>,
    pub tags: Tags,
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

impl FileConfig {
    /// Reads and parses a file; does not validate.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses TOML. The error never quotes the file (it may hold the
    /// token): it names the line and what is wrong.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| {
            let what = e.message().to_string();
            match e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)) {
                Some(line) => format!("line {line}: {what}"),
                None => what,
            }
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a FileConfig always serializes to TOML")
    }

    /// Checks every field; returns the resolved configuration or every
    /// violation.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, message: String| errs.push(FieldError { field: field.to_string(), message });

        if !is_identifier(&self.cluster_id) {
            bad("cluster_id", format!("{:?} must be 1-63 characters of [A-Za-z0-9_.-]", self.cluster_id));
        }
        if self.node.id == 0 {
            bad("node.id", "must be at least 1".into());
        }
        if !is_identifier(&self.node.name) {
            bad("node.name", format!("{:?} must be 1-63 characters of [A-Za-z0-9_.-]", self.node.name));
        }
        if !self.node.data_dir.is_absolute() {
            bad("node.data_dir", format!("{} must be an absolute path", self.node.data_dir.display()));
        }
        let raft_listen = self.raft.listen.parse::<SocketAddr>();
        if let Err(e) = &raft_listen {
            bad("raft.listen", format!("{:?} is not an address:port: {e}", self.raft.listen));
        }
        let raft_advertise = self.raft.advertise.clone().unwrap_or_else(|| self.raft.listen.clone());
        if let Some(a) = &self.raft.advertise
            && a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none()
        {
            bad("raft.advertise", format!("{a:?} is not host:port"));
        }
        if self.raft.initial_members.is_empty() {
            bad("raft.initial_members", "must list the members that form the cluster".into());
        }
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (i, m) in self.raft.initial_members.iter().enumerate() {
            let field = format!("raft.initial_members[{i}]");
            if m.id == 0 {
                bad(&field, "id must be at least 1".into());
            }
            if !ids.insert(m.id) {
                bad(&field, format!("id {} appears twice", m.id));
            }
            if !names.insert(m.name.clone()) {
                bad(&field, format!("name {:?} appears twice", m.name));
            }
            if m.raft_addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                bad(&field, format!("raft_addr {:?} is not host:port", m.raft_addr));
            }
            if m.id == self.node.id && (m.name != self.node.name || m.raft_addr != raft_advertise) {
                bad(
                    &field,
                    format!(
                        "this node (id {}) is listed as {:?} at {}, but configured as {:?} at {raft_advertise}",
                        m.id, m.name, m.raft_addr, self.node.name
                    ),
                );
            }
        }
        if self.raft.election_timeout_min_ms < 3 * self.raft.heartbeat_interval_ms
            || self.raft.election_timeout_max_ms <= self.raft.election_timeout_min_ms
        {
            bad(
                "raft.election_timeout_min_ms",
                format!(
                    "need heartbeat_interval_ms ({}) x 3 <= election_timeout_min_ms ({}) < election_timeout_max_ms ({})",
                    self.raft.heartbeat_interval_ms,
                    self.raft.election_timeout_min_ms,
                    self.raft.election_timeout_max_ms
                ),
            );
        }
        // A Raft leader change must not cost a healthy primary its lease:
        // election plus one heartbeat must fit before the demote margin.
        let budget = self.dynamic.lease_ttl_ms.saturating_sub(self.dynamic.demote_margin_ms);
        if self.raft.election_timeout_max_ms + self.dynamic.heartbeat_interval_ms >= budget {
            bad(
                "raft.election_timeout_max_ms",
                format!(
                    "{} + dynamic.heartbeat_interval_ms ({}) must stay below dynamic.lease_ttl_ms - dynamic.demote_margin_ms ({budget}): \
                     a Raft leader change would otherwise demote a healthy primary",
                    self.raft.election_timeout_max_ms, self.dynamic.heartbeat_interval_ms
                ),
            );
        }
        let http_listen = self.http.listen.parse::<SocketAddr>();
        if let Err(e) = &http_listen {
            bad("http.listen", format!("{:?} is not an address:port: {e}", self.http.listen));
        }
        if self.postgres.port == 0 {
            bad("postgres.port", "must not be 0".into());
        }
        if let Some(dir) = &self.postgres.bin_dir
            && !dir.join("postgres").exists()
        {
            bad("postgres.bin_dir", format!("{} holds no postgres binary", dir.display()));
        }
        if let Some(dir) = &self.postgres.data_dir
            && !dir.is_absolute()
        {
            bad("postgres.data_dir", format!("{} must be an absolute path", dir.display()));
        }
        for (field, v) in [
            ("postgres.superuser", &self.postgres.superuser),
            ("postgres.replication_user", &self.postgres.replication_user),
        ] {
            if !is_identifier(v) || v.contains(['-', '.']) {
                bad(field, format!("{v:?} must be 1-63 characters of [A-Za-z0-9_]"));
            }
        }
        for (field, v) in [
            ("postgres.superuser_password", &self.postgres.superuser_password),
            ("postgres.replication_password", &self.postgres.replication_password),
        ] {
            if v.is_empty() {
                bad(field, "must not be empty".into());
            } else if v.contains(['\'', '\\', '\n']) {
                bad(field, "must not contain quotes, backslashes or line breaks".into());
            }
        }
        if self.dynamic.synchronous_mode != raftgres_storage::SyncMode::Off {
            bad(
                "dynamic.synchronous_mode",
                "synchronous replication is not implemented yet; only \"off\" is accepted".into(),
            );
        }
        if let Err(violations) = self.dynamic.validate() {
            for v in violations {
                bad(&format!("dynamic.{}", v.field), v.message);
            }
        }
        if let Err((key, value, reason)) = validate_tags(&self.tags) {
            bad(&format!("tags.{key}"), format!("{value:?}: {reason}"));
        }
        let token = match (&self.security.token, &self.security.token_file) {
            (Some(_), Some(_)) => {
                bad("security.token", "set either token or token_file, not both".into());
                None
            }
            (None, None) => {
                bad(
                    "security.token",
                    "a cluster token is required (token or token_file): it guards the admin API, \
                     unsafe HTTP requests and Raft traffic"
                        .into(),
                );
                None
            }
            (Some(t), None) => match Token::new(t) {
                Ok(t) => Some(t),
                Err(e) => {
                    bad("security.token", e);
                    None
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => match Token::new(&text) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        bad("security.token_file", format!("{}: {e}", path.display()));
                        None
                    }
                },
                Err(e) => {
                    bad("security.token_file", format!("read {}: {e}", path.display()));
                    None
                }
            },
        };
        let s = &self.security;
        let tls = match (&s.tls_ca_file, &s.tls_cert_file, &s.tls_key_file) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => match Tls::load(ca, cert, key) {
                Ok(t) => Some(t),
                Err(e) => {
                    bad("security.tls_ca_file", e);
                    None
                }
            },
            _ => {
                bad("security.tls_ca_file", "set tls_ca_file, tls_cert_file and tls_key_file together".into());
                None
            }
        };
        if !errs.is_empty() {
            return Err(ConfigError::Invalid(errs));
        }

        let raft_listen = raft_listen.expect("checked above");
        let http_listen = http_listen.expect("checked above");
        let http_advertise = self.http.advertise.clone().unwrap_or_else(|| self.http.listen.clone());
        let pg_advertise_host =
            self.postgres.advertise_host.clone().unwrap_or_else(|| host_of(&raft_advertise).to_string());
        Ok(Config {
            cluster_id: self.cluster_id.clone(),
            node_id: self.node.id,
            node_name: self.node.name.clone(),
            data_dir: self.node.data_dir.clone(),
            raft_listen,
            raft_advertise,
            initial_members: self.raft.initial_members.clone(),
            raft_heartbeat: Duration::from_millis(self.raft.heartbeat_interval_ms),
            raft_election_timeout: (
                Duration::from_millis(self.raft.election_timeout_min_ms),
                Duration::from_millis(self.raft.election_timeout_max_ms),
            ),
            http_listen,
            http_advertise,
            pg_bin_dir: self.postgres.bin_dir.clone(),
            pg_data_dir: self.postgres.data_dir.clone().unwrap_or_else(|| self.node.data_dir.join("pgdata")),
            pg_socket_dir: self.node.data_dir.join("run"),
            pg_listen_addresses: self.postgres.listen_addresses.clone(),
            pg_advertise_host,
            pg_port: self.postgres.port,
            superuser: self.postgres.superuser.clone(),
            superuser_password: self.postgres.superuser_password.clone(),
            replication_user: self.postgres.replication_user.clone(),
            replication_password: self.postgres.replication_password.clone(),
            run_as: self.postgres.run_as.clone(),
            initial_dynamic: self.dynamic.clone(),
            token: token.expect("checked above"),
            tls,
            tags: self.tags.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_parses_and_is_valid() {
        let c = FileConfig::parse(DEFAULT_CONFIG).expect("the default file parses");
        let resolved = c.validate().expect("the default file is valid");
        assert_eq!(resolved.pg_data_dir, PathBuf::from("/var/lib/raftgres/pgdata"));
        let params = c.dynamic.postgresql_parameters.clone();
        assert_eq!(params.get("max_connections").map(String::as_str), Some("100"));
        assert_eq!(
            DynamicConfig { postgresql_parameters: Default::default(), ..c.dynamic.clone() },
            DynamicConfig::default()
        );
        // And it round-trips through serialization.
        assert_eq!(FileConfig::parse(&c.to_toml()).expect("reparse"), c);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut c = FileConfig::parse(DEFAULT_CONFIG).expect("parse");
        c.cluster_id = "bad id!".into();
        c.node.id = 0;
        c.node.data_dir = "relative".into();
        c.raft.listen = "nowhere".into();
        c.raft.initial_members.push(c.raft.initial_members[0].clone());
        c.http.listen = "x".into();
        c.postgres.replication_password = String::new();
        c.dynamic.lease_ttl_ms = 10;
        c.dynamic.synchronous_mode = raftgres_storage::SyncMode::On;
        c.security.token = Some("short".into());
        c.security.tls_cert_file = Some("/nonexistent.pem".into());
        c.tags.insert("nofailover".into(), "maybe".into());
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("must be invalid") };
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "cluster_id",
            "node.id",
            "node.data_dir",
            "raft.listen",
            "raft.initial_members[3]",
            "http.listen",
            "postgres.replication_password",
            "dynamic.lease_ttl_ms",
            "dynamic.synchronous_mode",
            "security.token",
            "tags.nofailover",
        ] {
            assert!(fields.contains(&want), "{want} not reported in {fields:?}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_parse_errors() {
        let text = DEFAULT_CONFIG.replace("[postgres]", "[postgres]\nbogus = 1");
        let e = FileConfig::parse(&text).expect_err("unknown key");
        assert!(e.contains("bogus"), "{e}");
        let text = DEFAULT_CONFIG.replace("port = 5432", "port = \"five\"");
        assert!(FileConfig::parse(&text).is_err());
        // A broken line is named, never quoted: it may hold the token.
        let text =
            DEFAULT_CONFIG.replace("token = \"change-me-to-a-long-random-secret\"", "token = \"s3cret-s3cret-s3cret");
        let e = FileConfig::parse(&text).expect_err("unterminated string");
        assert!(!e.contains("s3cret") && e.starts_with("line "), "{e}");
    }
}
