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
use std::sync::Arc;
use std::time::Duration;

use raftgres_api::HostPort;
use raftgres_raft::network::security::{Tls, Token};
use raftgres_storage::member::validate_tags;
use raftgres_storage::{DynamicConfig, Tags, validate_name};
use serde::{Deserialize, Serialize};

use crate::callbacks::{CallbacksConfig, split_command};
use crate::http::tls::{HttpTls, VerifyClient};
use crate::pgbouncer::{PgBouncerConfig, PgBouncerSection};
use crate::vip::VipConfig;
use crate::watchdog::device::{WatchdogConfig, WatchdogMode, timeout_for};

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
    /// Absent on a proxy-only node (one with a `[pgbouncer]` section that
    /// runs no PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSection>,
    pub security: SecuritySection,
    /// This member's tags (Patroni's `tags`): nofailover, noloadbalance,
    /// nosync, failover_priority, and free-form ones for `?tag_k=v` checks.
    /// Values may be TOML strings, booleans or numbers (`nofailover = true`).
    #[serde(default, deserialize_with = "tags_from_toml")]
    pub tags: Tags,
    #[serde(default)]
    pub dynamic: DynamicConfig,
    /// The kernel watchdog device (`/dev/watchdog`).
    #[serde(default)]
    pub watchdog: WatchdogSection,
    /// Programs run on PostgreSQL's start, stop, restart and role change,
    /// and before a promotion (Patroni's `postgresql.callbacks` and
    /// `pre_promote`).
    #[serde(default)]
    pub callbacks: CallbacksSection,
    /// PgBouncer follows the primary on this node (see `crate::pgbouncer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer: Option<PgBouncerSection>,
    /// The virtual IP the primary holds while its lease allows writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<VipSection>,
}

/// The `[vip]` section: an address bound on the primary's interface only
/// while its lease allows writes (see [`crate::vip`]). Static: a change
/// needs a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// The address with its prefix length, IPv4 CIDR: `10.0.0.10/24`.
    pub address: String,
    /// The interface it is bound on: `eth0`.
    pub interface: String,
}

/// The `[callbacks]` section. Each command is a program and, optionally,
/// its own arguments, split as a shell splits words but run without one.
/// Read at start only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksSection {
    /// Run after the agent started PostgreSQL, as
    /// `<command> on_start <role> <cluster_id>`; role is `primary` or
    /// `replica` (Patroni 4's names).
    #[serde(default)]
    pub on_start: Option<String>,
    /// Run after the agent stopped PostgreSQL, with the role it ran as.
    #[serde(default)]
    pub on_stop: Option<String>,
    /// Run after a restart an operator asked for (`raftctl restart`,
    /// `POST /restart`).
    #[serde(default)]
    pub on_restart: Option<String>,
    /// Run when this node's PostgreSQL changes role: promoted (`primary`)
    /// or running as a replica after it was primary (`replica`).
    #[serde(default)]
    pub on_role_change: Option<String>,
    /// Run with no arguments before this node promotes its PostgreSQL; a
    /// non-zero exit or a timeout vetoes the promotion and the node gives
    /// the role back.
    #[serde(default)]
    pub pre_promote: Option<String>,
    /// A callback still running after this long is killed (with what it
    /// started); for `pre_promote`, that is a veto.
    #[serde(default = "default_callback_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for CallbacksSection {
    fn default() -> Self {
        Self {
            on_start: None,
            on_stop: None,
            on_restart: None,
            on_role_change: None,
            pre_promote: None,
            timeout_ms: default_callback_timeout_ms(),
        }
    }
}

fn default_callback_timeout_ms() -> u64 {
    crate::callbacks::DEFAULT_TIMEOUT_MS
}

/// The shortest and longest `callbacks.timeout_ms` allowed.
const CALLBACK_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=600_000;

/// The `[watchdog]` section: whether and how a primary holds the kernel
/// watchdog device, which resets the machine when the daemon stops feeding
/// it (killed, hung, or its lease ran out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSection {
    /// `off` (default), `automatic` (use the device when it works, warn when
    /// it does not) or `required` (never take the primary role without it).
    #[serde(default)]
    pub mode: WatchdogMode,
    /// The device; a path that is not a character device is a stand-in
    /// that records the protocol as text and resets nothing.
    #[serde(default = "default_watchdog_device")]
    pub device: PathBuf,
    /// The device's timeout is `dynamic.lease_ttl_ms` minus this, in whole
    /// seconds rounded down: at least 1 s, and this is the part of each
    /// lease in which a renewal must arrive for the device to be fed.
    #[serde(default = "default_safety_margin_ms")]
    pub safety_margin_ms: u64,
}

impl Default for WatchdogSection {
    fn default() -> Self {
        Self {
            mode: WatchdogMode::Off,
            device: default_watchdog_device(),
            safety_margin_ms: default_safety_margin_ms(),
        }
    }
}

fn default_watchdog_device() -> PathBuf {
    "/dev/watchdog".into()
}
fn default_safety_margin_ms() -> u64 {
    500
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
    /// Where the Raft leader may run: `any` (the default) leaves it where
    /// elections put it; `avoid_primary` hands the leadership to a
    /// follower when it lands on the primary's node, so that the primary's
    /// death never also costs a Raft election. Off by default: openraft
    /// 0.9 has no leader transfer, and the election a hand-over starts can
    /// leave the primary without lease grants long enough to be fenced
    /// (seen in a chaos run under membership changes and CPU starvation).
    #[serde(default)]
    pub leader_placement: LeaderPlacement,
}

/// `raft.leader_placement`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderPlacement {
    AvoidPrimary,
    #[default]
    Any,
}

/// The longest a primary can go without a lease renewal when the Raft
/// leader dies (milliseconds), at these timings:
///
/// - the primary's last renewal before the death was sent up to one lease
///   heartbeat interval, plus its confirmation, before it (the leader sends
///   the confirming heartbeat at once, `raftgres_raft::pulse`; counted as a
///   tick, 1.5 Raft heartbeat intervals, as when it waited for one);
/// - a follower that heard from a leader waits openraft's leader lease
///   (`election_timeout_max`) *plus* an election timeout (up to the
///   maximum again) after the last AppendEntries before it starts an
///   election, and sees that only at its next tick.
///
/// The vote and the new leader's first grant take round trips beyond
/// that, which the demote margin's slack must cover.
pub fn leader_change_worst_ms(r: &RaftSection, lease_heartbeat_ms: u64) -> u64 {
    let tick = r.heartbeat_interval_ms * 3 / 2;
    2 * r.election_timeout_max_ms + 2 * tick + lease_heartbeat_ms
}

fn default_raft_heartbeat() -> u64 {
    100
}
fn default_election_min() -> u64 {
    300
}
fn default_election_max() -> u64 {
    400
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: String,
    #[serde(default)]
    pub advertise: Option<String>,
    /// This node's certificate (PEM; Patroni's `restapi.certfile`): with
    /// `keyfile`, the API serves HTTPS only and members' URLs are
    /// `https://`.
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    /// The CA that signs the members' and clients' certificates: this
    /// daemon checks other members' APIs against it, and clients' when
    /// `verify_client` asks.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// `none`, `optional` (a client certificate sent is checked) or
    /// `required` (every request needs one signed by `cafile`).
    #[serde(default)]
    pub verify_client: VerifyClient,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8008".into(),
            advertise: None,
            certfile: None,
            keyfile: None,
            cafile: None,
            verify_client: VerifyClient::None,
        }
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
    /// How long a primary PostgreSQL that runs and says it is ready may go
    /// without answering before it is killed and the role released; 0 off.
    #[serde(default = "default_hang_timeout_ms")]
    pub hang_timeout_ms: u64,
}

impl PostgresSection {
    /// What a proxy-only node's unused `pg_*` fields hold.
    fn absent() -> PostgresSection {
        PostgresSection {
            bin_dir: None,
            data_dir: None,
            listen_addresses: default_listen_addresses(),
            advertise_host: None,
            port: default_pg_port(),
            superuser: default_superuser(),
            superuser_password: String::new(),
            replication_user: default_replication_user(),
            replication_password: String::new(),
            run_as: default_run_as(),
            hang_timeout_ms: 0,
        }
    }
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
/// The shortest `postgres.hang_timeout_ms` allowed.
const MIN_HANG_TIMEOUT_MS: u64 = 5_000;

/// `postgres.hang_timeout_ms` when the file does not set it.
pub const DEFAULT_HANG_TIMEOUT_MS: u64 = 10_000;

fn default_hang_timeout_ms() -> u64 {
    DEFAULT_HANG_TIMEOUT_MS
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

/// Tags as Patroni writes them: strings, booleans or numbers, kept as
/// their text (`true`, `1`).
fn tags_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
    use serde::de::Error;
    let raw = std::collections::BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Boolean(b) => Ok((k, b.to_string())),
            toml::Value::Integer(i) => Ok((k, i.to_string())),
            toml::Value::Float(f) => Ok((k, f.to_string())),
            other => Err(D::Error::custom(format!(
                "tag {k} is a {}; a tag is a string, a boolean or a number",
                other.type_str()
            ))),
        })
        .collect()
}

/// A file that is not valid TOML for [`FileConfig`]: where and what. It
/// never quotes the file, which may hold the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

/// Every error found in a file: a syntax error alone, or each field of
/// the wrong type or unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseErrors(pub Vec<ParseError>);

impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} errors:", all.len())?;
                for e in all {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl ParseError {
    fn of(text: &str, e: &toml::de::Error) -> ParseError {
        ParseError {
            line: e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().to_string(),
        }
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse {path}: {error}")]
    Parse { path: PathBuf, error: ParseErrors },
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
    pub raft_leader_placement: LeaderPlacement,
    pub http_listen: SocketAddr,
    pub http_advertise: String,
    /// HTTPS of the API, when configured.
    pub http_tls: Option<Arc<HttpTls>>,
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
    /// A hung primary is killed and released after this long; `None` off.
    pub pg_hang_timeout: Option<Duration>,
    /// The dynamic configuration a new cluster starts with.
    pub initial_dynamic: DynamicConfig,
    /// Required on every admin call, unsafe HTTP request and Raft message.
    pub token: Token,
    /// TLS of the Raft port, when configured.
    pub tls: Option<Tls>,
    pub tags: Tags,
    /// The kernel watchdog device.
    pub watchdog: WatchdogConfig,
    /// The programs run on PostgreSQL's events and before a promotion.
    pub callbacks: CallbacksConfig,
    /// False on a proxy-only node: no `[postgres]` section, and the
    /// `pg_*` fields above hold unused defaults.
    pub runs_postgres: bool,
    /// PgBouncer to keep pointed at the primary, when configured.
    pub pgbouncer: Option<PgBouncerConfig>,
    /// The virtual IP, when configured.
    pub vip: Option<VipConfig>,
}

impl Config {
    /// This node's API URL, as members and `raftctl` reach it.
    pub fn api_url(&self) -> String {
        let scheme = if self.http_tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.http_advertise)
    }
}

/// PostgreSQL role names: the naming rule without `-` and `.`, so they
/// need no quoting in SQL.
fn is_role_name(s: &str) -> bool {
    validate_name(s).is_ok() && !s.contains(['-', '.'])
}

/// The host of a `host:port`.
fn host_of(addr: &str) -> String {
    addr.parse::<HostPort>().map(|hp| hp.host).unwrap_or_else(|_| addr.to_string())
}

/// serde stops at the first bad field. To find the next, the line at fault
/// gets a value of some type the field takes (or is dropped when the key is
/// unknown), and the text is parsed again; line numbers stay those of the
/// original. It stops where a fault cannot be isolated to a `key = value`
/// line (inside a multi-line array, a missing field).
fn every_field_error(text: &str, first: toml::de::Error) -> Vec<ParseError> {
    const PLACEHOLDERS: [&str; 4] = ["0", "\"\"", "false", "[]"];
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut errors = Vec::new();
    let parse = |lines: &[String]| {
        let t = lines.join("\n");
        toml::from_str::<FileConfig>(&t).err().map(|e| ParseError::of(&t, &e))
    };
    let mut next_error = Some(ParseError::of(text, &first));
    while let Some(e) = next_error.take() {
        let line = e.line;
        let unknown = e.message.starts_with("unknown field");
        errors.push(e);
        let Some(idx) = line.map(|l| l - 1).filter(|i| *i < lines.len()) else { break };
        let Some(key) = lines[idx].split_once('=').map(|(k, _)| k.trim().to_string()) else { break };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            break;
        }
        let settled = |r: &Option<ParseError>| match r {
            None => true,
            Some(e) => e.line != line && !e.message.contains(&format!("`{key}`")),
        };
        let mut found = None;
        for value in if unknown { &[][..] } else { &PLACEHOLDERS[..] } {
            lines[idx] = format!("{key} = {value}");
            let r = parse(&lines);
            if settled(&r) {
                found = Some(r);
                break;
            }
        }
        if found.is_none() {
            lines[idx] = String::new();
            let r = parse(&lines);
            if !settled(&r) {
                break;
            }
            found = Some(r);
        }
        if errors.len() >= 50 {
            break;
        }
        next_error = found.flatten();
    }
    errors
}

/// Collects every violation of a file.
#[derive(Default)]
struct Violations(Vec<FieldError>);

impl Violations {
    fn bad(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_string(), message: message.into() });
    }

    /// Keeps `r`'s value, or records its error against `field`.
    fn keep<T, E: fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.bad(field, e.to_string())).ok()
    }
}

impl FileConfig {
    /// Reads and parses a file; does not validate.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|error| ConfigError::Parse { path: path.to_path_buf(), error })
    }

    /// Parses TOML. The error never quotes the file (it may hold the
    /// token): it names the line and what is wrong, for every field of the
    /// wrong type or unknown, not only the first.
    pub fn parse(text: &str) -> Result<FileConfig, ParseErrors> {
        let first = match toml::from_str::<FileConfig>(text) {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        if text.parse::<toml::Table>().is_err() {
            // Not TOML: nothing past the syntax error can be read.
            return Err(ParseErrors(vec![ParseError::of(text, &first)]));
        }
        Err(ParseErrors(every_field_error(text, first)))
    }

    fn raft_advertise(&self) -> String {
        self.raft.advertise.clone().unwrap_or_else(|| self.raft.listen.clone())
    }

    fn check_identity(&self, v: &mut Violations) {
        if let Err(e) = validate_name(&self.cluster_id) {
            v.bad("cluster_id", e.to_string());
        }
        if self.node.id == 0 {
            v.bad("node.id", "must be at least 1");
        }
        if let Err(e) = validate_name(&self.node.name) {
            v.bad("node.name", e.to_string());
        }
        if !self.node.data_dir.is_absolute() {
            v.bad("node.data_dir", format!("{} must be an absolute path", self.node.data_dir.display()));
        }
    }

    /// The `[raft]` section, and its timing against the lease; returns the
    /// listen address when it parses.
    fn check_raft(&self, v: &mut Violations) -> Option<SocketAddr> {
        let r = &self.raft;
        let listen = v.keep(
            "raft.listen",
            r.listen.parse::<SocketAddr>().map_err(|e| format!("{:?} is not an address:port: {e}", r.listen)),
        );
        let advertise = self.raft_advertise();
        if let Some(a) = &r.advertise {
            v.keep("raft.advertise", a.parse::<HostPort>());
        }
        if r.initial_members.is_empty() {
            v.bad("raft.initial_members", "must list the members that form the cluster");
        }
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (i, m) in r.initial_members.iter().enumerate() {
            let field = format!("raft.initial_members[{i}]");
            if m.id == 0 {
                v.bad(&field, "id must be at least 1");
            }
            if !ids.insert(m.id) {
                v.bad(&field, format!("id {} appears twice", m.id));
            }
            if let Err(e) = validate_name(&m.name) {
                v.bad(&field, format!("name {e}"));
            }
            if !names.insert(m.name.clone()) {
                v.bad(&field, format!("name {:?} appears twice", m.name));
            }
            if let Err(e) = m.raft_addr.parse::<HostPort>() {
                v.bad(&field, format!("raft_addr {e}"));
            }
            if m.id == self.node.id && (m.name != self.node.name || m.raft_addr != advertise) {
                v.bad(
                    &field,
                    format!(
                        "this node (id {}) is listed as {:?} at {}, but configured as {:?} at {advertise}",
                        m.id, m.name, m.raft_addr, self.node.name
                    ),
                );
            }
        }
        if r.election_timeout_min_ms < 3 * r.heartbeat_interval_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            v.bad(
                "raft.election_timeout_min_ms",
                format!(
                    "need heartbeat_interval_ms ({}) x 3 <= election_timeout_min_ms ({}) < election_timeout_max_ms ({})",
                    r.heartbeat_interval_ms, r.election_timeout_min_ms, r.election_timeout_max_ms
                ),
            );
        }
        // A Raft leader change must not cost a healthy primary its lease.
        let budget = self.dynamic.lease_ttl_ms.saturating_sub(self.dynamic.demote_margin_ms);
        let worst = leader_change_worst_ms(r, self.dynamic.heartbeat_interval_ms);
        if worst >= budget {
            v.bad(
                "raft.election_timeout_max_ms",
                format!(
                    "a Raft leader change can leave the primary without a renewal for {worst} ms \
                     (2 x election_timeout_max_ms ({}) + 3 x heartbeat_interval_ms ({}) + dynamic.heartbeat_interval_ms ({})), \
                     which must stay below dynamic.lease_ttl_ms - dynamic.demote_margin_ms ({budget}): \
                     a Raft leader change would otherwise stop a healthy primary",
                    r.election_timeout_max_ms, r.heartbeat_interval_ms, self.dynamic.heartbeat_interval_ms
                ),
            );
        }
        listen
    }

    fn check_postgres(&self, v: &mut Violations) {
        let Some(p) = &self.postgres else {
            if self.pgbouncer.is_none() {
                v.bad(
                    "postgres",
                    "the [postgres] section is required (only a proxy-only node, with a [pgbouncer] section, has none)",
                );
            }
            return;
        };
        if p.port == 0 {
            v.bad("postgres.port", "must not be 0");
        }
        // Well above one observation's 2 s deadline: slow answers (a long
        // fsync of the control file) must not add up to a hang.
        let min_hang = MIN_HANG_TIMEOUT_MS.max(4 * self.dynamic.heartbeat_interval_ms);
        if p.hang_timeout_ms != 0 && p.hang_timeout_ms < min_hang {
            v.bad(
                "postgres.hang_timeout_ms",
                format!(
                    "{} is below {min_hang}: one slow answer must not cost a failover (0 turns the check off)",
                    p.hang_timeout_ms
                ),
            );
        }
        if let Some(dir) = &p.bin_dir
            && !dir.join("postgres").exists()
        {
            v.bad("postgres.bin_dir", format!("{} holds no postgres binary", dir.display()));
        }
        if let Some(dir) = &p.data_dir
            && !dir.is_absolute()
        {
            v.bad("postgres.data_dir", format!("{} must be an absolute path", dir.display()));
        }
        for (field, name) in [("postgres.superuser", &p.superuser), ("postgres.replication_user", &p.replication_user)]
        {
            if !is_role_name(name) {
                v.bad(field, format!("{name:?} must be 1-63 characters of [A-Za-z0-9_]"));
            }
        }
        for (field, pw) in [
            ("postgres.superuser_password", &p.superuser_password),
            ("postgres.replication_password", &p.replication_password),
        ] {
            if pw.is_empty() {
                v.bad(field, "must not be empty");
            } else if pw.contains(['\'', '\\', '\n']) {
                v.bad(field, "must not contain quotes, backslashes or line breaks");
            }
        }
    }

    fn check_dynamic(&self, v: &mut Violations) {
        if let Err(violations) = self.dynamic.validate() {
            for e in violations {
                v.bad(&format!("dynamic.{}", e.field), e.message);
            }
        }
    }

    /// The `[watchdog]` section against the lease. Whether the device can
    /// be opened is not checked here: a `required` node whose device fails
    /// still runs, as a replica.
    fn check_watchdog(&self, v: &mut Violations) {
        let w = &self.watchdog;
        let ttl = self.dynamic.lease_ttl_ms;
        if w.safety_margin_ms >= ttl {
            v.bad(
                "watchdog.safety_margin_ms",
                format!("{} must be below dynamic.lease_ttl_ms ({ttl})", w.safety_margin_ms),
            );
            return;
        }
        if w.mode == WatchdogMode::Off {
            return;
        }
        if w.device.as_os_str().is_empty() || !w.device.is_absolute() {
            v.bad(
                "watchdog.device",
                format!("{:?} must be an absolute path (mode {})", w.device.display().to_string(), w.mode.as_str()),
            );
        }
        let margin = Duration::from_millis(w.safety_margin_ms);
        if timeout_for(Duration::from_millis(ttl), margin).is_none() {
            v.bad(
                "watchdog.safety_margin_ms",
                format!(
                    "dynamic.lease_ttl_ms ({ttl}) minus {} must leave at least 1000: the device counts whole seconds",
                    w.safety_margin_ms
                ),
            );
        }
        let heartbeat = self.dynamic.heartbeat_interval_ms;
        if w.safety_margin_ms < 2 * heartbeat {
            v.bad(
                "watchdog.safety_margin_ms",
                format!(
                    "{} is below 2 x dynamic.heartbeat_interval_ms ({}): the device is fed only in the first \
                     lease_ttl_ms - timeout of each lease, and a renewal must arrive within it",
                    w.safety_margin_ms,
                    2 * heartbeat
                ),
            );
        }
    }

    /// The `[callbacks]` section: every command splits into words, and a
    /// program named by a path is an executable file. A bare name is
    /// looked up on `PATH` when it runs.
    fn check_callbacks(&self, v: &mut Violations) -> CallbacksConfig {
        let c = &self.callbacks;
        let mut command = |name: &str, text: &Option<String>| -> Option<Vec<String>> {
            let field = format!("callbacks.{name}");
            let words = v.keep(&field, split_command(text.as_ref()?))?;
            let program = Path::new(&words[0]);
            if words[0].contains('/') {
                use std::os::unix::fs::PermissionsExt as _;
                match std::fs::metadata(program) {
                    _ if !program.is_absolute() => v.bad(&field, format!("{} must be an absolute path", words[0])),
                    Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
                    Ok(_) => v.bad(&field, format!("{} is not an executable file", words[0])),
                    Err(e) => v.bad(&field, format!("{}: {e}", words[0])),
                }
            }
            Some(words)
        };
        let resolved = CallbacksConfig {
            on_start: command("on_start", &c.on_start),
            on_stop: command("on_stop", &c.on_stop),
            on_restart: command("on_restart", &c.on_restart),
            on_role_change: command("on_role_change", &c.on_role_change),
            pre_promote: command("pre_promote", &c.pre_promote),
            timeout: Duration::from_millis(c.timeout_ms),
        };
        if !CALLBACK_TIMEOUT_MS.contains(&c.timeout_ms) {
            v.bad(
                "callbacks.timeout_ms",
                format!(
                    "{} must be between {} and {}",
                    c.timeout_ms,
                    CALLBACK_TIMEOUT_MS.start(),
                    CALLBACK_TIMEOUT_MS.end()
                ),
            );
        }
        resolved
    }

    /// HTTPS of the API: `Some(None)` when not configured, `None` when the
    /// files are incomplete or unusable.
    fn check_http_tls(&self, v: &mut Violations) -> Option<Option<Arc<HttpTls>>> {
        let h = &self.http;
        match (&h.certfile, &h.keyfile) {
            (None, None) => {
                if h.cafile.is_some() || h.verify_client != VerifyClient::None {
                    v.bad("http.cafile", "cafile and verify_client need certfile and keyfile");
                    return None;
                }
                Some(None)
            }
            (Some(cert), Some(key)) => {
                if h.verify_client != VerifyClient::None && h.cafile.is_none() {
                    v.bad(
                        "http.verify_client",
                        format!(
                            "{} needs cafile, the CA client certificates are checked against",
                            h.verify_client.as_str()
                        ),
                    );
                    return None;
                }
                let tls = HttpTls::load(cert, key, h.cafile.as_deref(), h.verify_client);
                v.keep("http.certfile", tls).map(|t| Some(Arc::new(t)))
            }
            _ => {
                v.bad("http.certfile", "set certfile and keyfile together");
                None
            }
        }
    }

    /// The `[pgbouncer]` section; a proxy-only node (no `[postgres]`)
    /// joins the cluster through the initial members and must not be one.
    fn check_pgbouncer(&self, v: &mut Violations) -> Option<PgBouncerConfig> {
        if self.postgres.is_none() && self.raft.initial_members.iter().any(|m| m.id == self.node.id) {
            v.bad(
                "raft.initial_members",
                format!(
                    "this proxy-only node (id {}) must not be an initial member: it joins as a learner through them",
                    self.node.id
                ),
            );
        }
        match self.pgbouncer.as_ref()?.validate(&self.cluster_id) {
            Ok(c) => Some(c),
            Err(errors) => {
                for (field, message) in errors {
                    v.bad(&field, message);
                }
                None
            }
        }
    }

    /// The `[vip]` section: an IPv4 CIDR and an interface name. Whether
    /// the interface exists is checked at start, not here: the file may be
    /// checked on another machine.
    fn check_vip(&self, v: &mut Violations) -> Option<Option<VipConfig>> {
        let Some(s) = &self.vip else { return Some(None) };
        let address = v.keep("vip.address", crate::vip::parse_cidr(&s.address));
        let interface =
            v.keep("vip.interface", crate::vip::check_interface(&s.interface).map(|()| s.interface.clone()));
        let (address, prefix_len) = address?;
        Some(Some(VipConfig { address, prefix_len, interface: interface? }))
    }

    /// The cluster token, inline or from its file.
    fn check_token(&self, v: &mut Violations) -> Option<Token> {
        match (&self.security.token, &self.security.token_file) {
            (Some(_), Some(_)) => {
                v.bad("security.token", "set either token or token_file, not both");
                None
            }
            (None, None) => {
                v.bad(
                    "security.token",
                    "a cluster token is required (token or token_file): it guards the admin API, \
                     unsafe HTTP requests and Raft traffic",
                );
                None
            }
            (Some(t), None) => v.keep("security.token", Token::new(t)),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    v.keep("security.token_file", Token::new(&text).map_err(|e| format!("{}: {e}", path.display())))
                }
                Err(e) => {
                    v.bad("security.token_file", format!("read {}: {e}", path.display()));
                    None
                }
            },
        }
    }

    /// TLS of the Raft port: `Some(None)` when not configured, `None` when
    /// the material is incomplete or unreadable.
    fn check_tls(&self, v: &mut Violations) -> Option<Option<Tls>> {
        let s = &self.security;
        match (&s.tls_ca_file, &s.tls_cert_file, &s.tls_key_file) {
            (None, None, None) => Some(None),
            (Some(ca), Some(cert), Some(key)) => v.keep("security.tls_ca_file", Tls::load(ca, cert, key)).map(Some),
            _ => {
                v.bad("security.tls_ca_file", "set tls_ca_file, tls_cert_file and tls_key_file together");
                None
            }
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a FileConfig always serializes to TOML")
    }

    /// Checks every field; returns the resolved configuration or every
    /// violation. One check per section, all of them run.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut v = Violations::default();
        self.check_identity(&mut v);
        let raft_listen = self.check_raft(&mut v);
        let http_listen = v.keep(
            "http.listen",
            self.http
                .listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("{:?} is not an address:port: {e}", self.http.listen)),
        );
        self.check_postgres(&mut v);
        self.check_dynamic(&mut v);
        self.check_watchdog(&mut v);
        let callbacks = self.check_callbacks(&mut v);
        if let Err((key, value, reason)) = validate_tags(&self.tags) {
            v.bad(&format!("tags.{key}"), format!("{value:?}: {reason}"));
        }
        let pgbouncer = self.check_pgbouncer(&mut v);
        let token = self.check_token(&mut v);
        let tls = self.check_tls(&mut v);
        let http_tls = self.check_http_tls(&mut v);
        let vip = self.check_vip(&mut v);
        let (Some(raft_listen), Some(http_listen), Some(token), Some(tls), Some(http_tls), Some(vip), true) =
            (raft_listen, http_listen, token, tls, http_tls, vip, v.0.is_empty())
        else {
            return Err(ConfigError::Invalid(v.0));
        };
        let raft_advertise = self.raft_advertise();
        let http_advertise = self.http.advertise.clone().unwrap_or_else(|| self.http.listen.clone());
        let pg = self.postgres.clone().unwrap_or_else(PostgresSection::absent);
        let pg_advertise_host = pg.advertise_host.clone().unwrap_or_else(|| host_of(&raft_advertise));
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
            raft_leader_placement: self.raft.leader_placement,
            http_listen,
            http_advertise,
            http_tls,
            pg_bin_dir: pg.bin_dir.clone(),
            pg_data_dir: pg.data_dir.clone().unwrap_or_else(|| self.node.data_dir.join("pgdata")),
            pg_socket_dir: self.node.data_dir.join("run"),
            pg_listen_addresses: pg.listen_addresses.clone(),
            pg_advertise_host,
            pg_port: pg.port,
            superuser: pg.superuser.clone(),
            superuser_password: pg.superuser_password.clone(),
            replication_user: pg.replication_user.clone(),
            replication_password: pg.replication_password.clone(),
            run_as: pg.run_as.clone(),
            pg_hang_timeout: (pg.hang_timeout_ms > 0).then(|| Duration::from_millis(pg.hang_timeout_ms)),
            initial_dynamic: self.dynamic.clone(),
            token,
            tls,
            tags: self.tags.clone(),
            watchdog: WatchdogConfig {
                mode: self.watchdog.mode,
                device: self.watchdog.device.clone(),
                safety_margin: Duration::from_millis(self.watchdog.safety_margin_ms),
            },
            callbacks,
            runs_postgres: self.postgres.is_some(),
            pgbouncer,
            vip,
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
        c.postgres.as_mut().expect("the template has [postgres]").replication_password = String::new();
        c.dynamic.lease_ttl_ms = 10;
        c.dynamic.synchronous_node_count = 0;
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
            "dynamic.synchronous_node_count",
            "security.token",
            "tags.nofailover",
        ] {
            assert!(fields.contains(&want), "{want} not reported in {fields:?}");
        }
    }

    #[test]
    fn raft_timings_that_would_let_a_leader_change_stop_the_primary_are_refused() {
        let base = FileConfig::parse(DEFAULT_CONFIG).expect("parse");
        // The defaults leave slack for the vote and the first grant.
        let budget = base.dynamic.lease_ttl_ms - base.dynamic.demote_margin_ms;
        assert!(leader_change_worst_ms(&base.raft, base.dynamic.heartbeat_interval_ms) + 100 <= budget);
        // 300-600 ms, the old default: followers wait up to 1.2 s after the
        // last heartbeat before they elect (measured: a healthy primary was
        // stopped in one of six deaths of the Raft leader).
        let mut c = base.clone();
        c.raft.election_timeout_max_ms = 600;
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("300-600 ms must be refused") };
        let e = errs.iter().find(|e| e.field == "raft.election_timeout_max_ms").expect("the field is named");
        assert!(e.message.contains("1750 ms") && e.message.contains("(1500)"), "{}", e.message);
        // A longer lease makes room for them.
        c.dynamic.lease_ttl_ms = 3000;
        c.validate().expect("valid with a 3 s lease");
    }

    #[test]
    fn check_config_accepts_every_synchronous_mode() {
        for mode in ["off", "on", "strict", "quorum"] {
            let mut c = FileConfig::parse(DEFAULT_CONFIG).expect("parse");
            c.dynamic.synchronous_mode = mode.parse().expect("a mode");
            c.dynamic.synchronous_node_count = 2;
            assert!(c.validate().is_ok(), "{mode}: {:?}", c.validate().err());
        }
    }

    #[test]
    fn the_watchdog_section_is_checked_against_the_lease() {
        let base = FileConfig::parse(DEFAULT_CONFIG).expect("parse");
        assert_eq!(base.watchdog, WatchdogSection::default(), "the template shows the defaults");
        let section = "[watchdog]";
        let at = DEFAULT_CONFIG.find(section).expect("the template has a [watchdog] section");
        let (head, tail) = DEFAULT_CONFIG.split_at(at);
        let text = format!("{head}{}", tail.replacen("mode = \"off\"", "mode = \"sometimes\"", 1));
        let e = FileConfig::parse(&text).expect_err("unknown mode").to_string();
        assert!(e.contains("sometimes") && e.contains("automatic") && e.contains("line "), "{e}");

        let invalid = |c: &FileConfig| -> Vec<String> {
            match c.validate() {
                Err(ConfigError::Invalid(errs)) => errs.iter().map(|e| e.to_string()).collect(),
                other => panic!("expected invalid, got {other:?}"),
            }
        };
        let mut c = base.clone();
        c.watchdog.mode = WatchdogMode::Required;
        c.watchdog.device = "dev/watchdog".into();
        c.watchdog.safety_margin_ms = 1500;
        let errs = invalid(&c);
        assert!(errs.iter().any(|e| e.starts_with("watchdog.device: ")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("watchdog.safety_margin_ms: ") && e.contains("whole seconds")),
            "{errs:?}"
        );
        c.watchdog.device = "/dev/watchdog".into();
        c.watchdog.safety_margin_ms = 2000;
        assert!(invalid(&c).iter().any(|e| e.contains("must be below dynamic.lease_ttl_ms")));
        c.watchdog.safety_margin_ms = 200;
        assert!(invalid(&c).iter().any(|e| e.contains("heartbeat_interval_ms")));
        c.watchdog.safety_margin_ms = 500;
        let resolved = c.validate().expect("valid");
        assert_eq!(resolved.watchdog.mode, WatchdogMode::Required);
        assert_eq!(resolved.watchdog.safety_margin, Duration::from_millis(500));
        // Off: the device is not looked at.
        c.watchdog.mode = WatchdogMode::Off;
        c.watchdog.device = PathBuf::new();
        c.validate().expect("off needs no device");
        // And the section round-trips.
        c.watchdog = WatchdogSection { mode: WatchdogMode::Automatic, device: "/tmp/wd".into(), safety_margin_ms: 600 };
        assert_eq!(FileConfig::parse(&c.to_toml()).expect("reparse"), c);
    }

    #[test]
    fn the_callbacks_section_is_checked() {
        let base = FileConfig::parse(DEFAULT_CONFIG).expect("parse");
        assert_eq!(base.callbacks, CallbacksSection::default(), "the template shows the defaults");
        assert_eq!(base.validate().expect("valid").callbacks.timeout, Duration::from_millis(10_000));
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = dir.path().join("cb.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").expect("write");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut c = base.clone();
        c.callbacks.on_start = Some(format!("{} --flag", script.display()));
        c.callbacks.on_stop = Some("logger -t raftgres".into());
        c.callbacks.on_role_change = Some(format!("'{}'", script.display()));
        c.callbacks.pre_promote = Some(script.display().to_string());
        c.callbacks.timeout_ms = 2_000;
        let resolved = c.validate().expect("valid").callbacks;
        assert_eq!(resolved.on_start, Some(vec![script.display().to_string(), "--flag".into()]));
        assert_eq!(resolved.on_stop, Some(vec!["logger".into(), "-t".into(), "raftgres".into()]));
        assert_eq!(resolved.on_restart, None);
        assert_eq!(resolved.timeout, Duration::from_millis(2_000));
        assert_eq!(FileConfig::parse(&c.to_toml()).expect("reparse"), c, "the section round-trips");

        c.callbacks.on_start = Some("relative/cb.sh".into());
        c.callbacks.on_stop = Some(String::new());
        c.callbacks.on_restart = Some("'/unterminated".into());
        c.callbacks.on_role_change = Some(plain.display().to_string());
        c.callbacks.pre_promote = Some("/nonexistent/pre-promote".into());
        c.callbacks.timeout_ms = 0;
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("must be invalid") };
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for want in [
            "callbacks.on_start: relative/cb.sh must be an absolute path",
            "callbacks.on_stop: is empty",
            "callbacks.on_restart: unterminated single quote",
            "is not an executable file",
            "callbacks.pre_promote: /nonexistent/pre-promote: No such file",
            "callbacks.timeout_ms: 0 must be between 100 and 600000",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want} not in {errs:#?}");
        }
        let text = DEFAULT_CONFIG.replace("[callbacks]", "[callbacks]\non_promote = \"/bin/true\"");
        let e = FileConfig::parse(&text).expect_err("unknown key").to_string();
        assert!(e.contains("on_promote"), "{e}");
    }

    #[test]
    fn the_vip_section_is_optional_and_checked() {
        let base = FileConfig::parse(DEFAULT_CONFIG).expect("parse");
        assert_eq!(base.vip, None, "the template leaves the VIP off");
        assert!(base.validate().expect("valid").vip.is_none());
        let with = |address: &str, interface: &str| {
            let text = format!("{DEFAULT_CONFIG}\n[vip]\naddress = {address:?}\ninterface = {interface:?}\n");
            FileConfig::parse(&text).expect("parses")
        };
        let c = with("10.0.0.10/24", "eth0");
        let vip = c.validate().expect("valid").vip.expect("configured");
        assert_eq!((vip.address, vip.prefix_len, vip.interface.as_str()), ([10, 0, 0, 10].into(), 24, "eth0"));
        assert_eq!(FileConfig::parse(&c.to_toml()).expect("reparse"), c, "round-trips");
        let invalid = |c: &FileConfig| -> Vec<String> {
            match c.validate() {
                Err(ConfigError::Invalid(errs)) => errs.iter().map(|e| e.to_string()).collect(),
                other => panic!("expected invalid, got {other:?}"),
            }
        };
        for (address, why) in [
            ("10.0.0.10", "prefix length"),
            ("10.0.0.10/33", "prefix length"),
            ("10.0.0.10/0", "prefix length"),
            ("10.0.0/24", "IPv4 address"),
            ("10.0.0.256/24", "IPv4 address"),
            ("fd00::10/64", "IPv4"),
            ("127.0.0.10/8", "loopback"),
            ("224.0.0.1/24", "multicast"),
            ("0.0.0.0/24", "unspecified"),
            ("10.0.0.0/24", "network address"),
            ("10.0.0.255/24", "broadcast address"),
            ("10.0.0.10/x", "prefix length"),
            ("", "no prefix length"),
        ] {
            let errs = invalid(&with(address, "eth0"));
            assert!(
                errs.iter().any(|e| e.starts_with("vip.address: ") && e.contains(why)),
                "{address:?}: want {why:?} in {errs:?}"
            );
        }
        for (interface, why) in [
            ("", "empty"),
            ("a-very-long-interface-name", "15"),
            ("eth 0", "may not contain"),
            ("eth/0", "may not contain"),
            (".", "may not be"),
        ] {
            let errs = invalid(&with("10.0.0.10/24", interface));
            assert!(
                errs.iter().any(|e| e.starts_with("vip.interface: ") && e.contains(why)),
                "{interface:?}: want {why:?} in {errs:?}"
            );
        }
        // Both fields are required, and nothing else is accepted.
        let e = FileConfig::parse(&format!("{DEFAULT_CONFIG}\n[vip]\naddress = \"10.0.0.10/24\"\n"))
            .expect_err("no interface")
            .to_string();
        assert!(e.contains("interface"), "{e}");
        let text = format!("{DEFAULT_CONFIG}\n[vip]\naddress = \"10.0.0.10/24\"\ninterface = \"eth0\"\nmac = 1\n");
        assert!(FileConfig::parse(&text).expect_err("unknown key").to_string().contains("mac"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_parse_errors() {
        let text = DEFAULT_CONFIG.replace("[postgres]", "[postgres]\nbogus = 1");
        let e = FileConfig::parse(&text).expect_err("unknown key").to_string();
        assert!(e.contains("bogus"), "{e}");
        let text = DEFAULT_CONFIG.replace("port = 5432", "port = \"five\"");
        assert!(FileConfig::parse(&text).is_err());
        // A broken line is named, never quoted: it may hold the token.
        let text =
            DEFAULT_CONFIG.replace("token = \"change-me-to-a-long-random-secret\"", "token = \"s3cret-s3cret-s3cret");
        let e = FileConfig::parse(&text).expect_err("unterminated string").to_string();
        assert!(!e.contains("s3cret") && e.starts_with("line "), "{e}");
    }

    #[test]
    fn every_wrong_type_is_reported_not_only_the_first() {
        let text = DEFAULT_CONFIG
            .replacen("id = 1\n", "id = \"one\"\n", 1)
            .replace("port = 5432", "port = \"five\"")
            .replace("[postgres]", "[postgres]\nbogus = 1")
            .replace("heartbeat_interval_ms = 250", "heartbeat_interval_ms = \"often\"");
        let ParseErrors(errors) = FileConfig::parse(&text).expect_err("four bad fields");
        let lines_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).map(|i| i + 1);
        let reported: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
        for needle in ["id = \"one\"", "port = \"five\"", "bogus = 1", "heartbeat_interval_ms = \"often\""] {
            assert!(reported.contains(&lines_of(needle)), "{needle} not reported: {errors:?}");
        }
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    /// The template's commented `[pgbouncer]` section, uncommented.
    fn with_pgbouncer(text: &str) -> String {
        let start = text.find("# [pgbouncer]").expect("the template shows [pgbouncer]");
        let end = start + text[start..].find("\n\n").expect("the section ends");
        let section: String = text[start..end]
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        format!("{}{section}{}", &text[..start], &text[end..])
    }

    #[test]
    fn the_pgbouncer_section_of_the_template_is_valid() {
        let text = with_pgbouncer(DEFAULT_CONFIG).replace("admin_password_env = ", "# admin_password_env = ");
        let text = text.replace("admin_password_file = ", "# admin_password_file = ");
        let c = FileConfig::parse(&text).expect("parses");
        let p = c.pgbouncer.as_ref().expect("the section is there");
        assert_eq!(p.admin_port, 6432);
        let resolved = c.validate().expect("valid");
        let pgb = resolved.pgbouncer.expect("resolved");
        assert_eq!(pgb.databases_file, PathBuf::from("/etc/pgbouncer/raftgres-databases.ini"));
        assert!(resolved.runs_postgres);
        assert_eq!(FileConfig::parse(&c.to_toml()).expect("reparse"), c);
    }

    #[test]
    fn a_proxy_only_node_has_no_postgres_section_and_is_no_initial_member() {
        let text = with_pgbouncer(DEFAULT_CONFIG).replace("admin_password_env = ", "# admin_password_env = ");
        let text = text.replace("admin_password_file = ", "# admin_password_file = ");
        let mut c = FileConfig::parse(&text).expect("parses");
        c.postgres = None;
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("node 1 is an initial member") };
        assert!(errs.iter().any(|e| e.field == "raft.initial_members" && e.message.contains("proxy-only")), "{errs:?}");
        c.node.id = 9;
        c.node.name = "app1".into();
        let resolved = c.validate().expect("a proxy-only node");
        assert!(!resolved.runs_postgres && resolved.pgbouncer.is_some());
        assert_eq!(FileConfig::parse(&c.to_toml()).expect("reparse"), c);
        // Neither section: the [postgres] section is required.
        c.pgbouncer = None;
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("nothing to run") };
        assert!(errs.iter().any(|e| e.field == "postgres"), "{errs:?}");
        // A bad [pgbouncer] field is reported with the others.
        let mut c = FileConfig::parse(&text).expect("parses");
        c.pgbouncer.as_mut().expect("section").databases_file = "relative".into();
        c.node.id = 0;
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("invalid") };
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"pgbouncer.databases_file") && fields.contains(&"node.id"), "{fields:?}");
    }

    #[test]
    fn tags_take_booleans_and_sizes_take_units() {
        let text = DEFAULT_CONFIG
            .replace("[tags]", "[tags]\nnofailover = true\nfailover_priority = 2")
            .replace("maximum_lag_on_failover = 1048576", "maximum_lag_on_failover = \"16MB\"");
        let c = FileConfig::parse(&text).expect("parses");
        assert_eq!(c.tags.get("nofailover").map(String::as_str), Some("true"));
        assert_eq!(c.tags.get("failover_priority").map(String::as_str), Some("2"));
        assert_eq!(c.dynamic.maximum_lag_on_failover, 16 << 20);
        c.validate().expect("valid");
    }
}
