//! The dynamic configuration: cluster-wide settings that live in the Raft
//! log, change at run time, and are validated before they are applied.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Synchronous replication mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous replication; a failover may lose the last writes.
    #[default]
    Off,
    /// Synchronous while a standby is available; degrades to asynchronous
    /// when none is.
    On,
    /// Synchronous always: writes block rather than degrade.
    Strict,
    /// `ANY k` of the eligible standbys; a failover needs a candidate that,
    /// with the other reachable standbys, proves it holds every
    /// acknowledged commit.
    Quorum,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Strict => "strict",
            SyncMode::Quorum => "quorum",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "false" => Ok(SyncMode::Off),
            "on" | "true" => Ok(SyncMode::On),
            "strict" => Ok(SyncMode::Strict),
            "quorum" => Ok(SyncMode::Quorum),
            other => Err(format!("unknown synchronous mode {other:?}: expected off, on, strict or quorum")),
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cluster-wide settings replicated through Raft.
///
/// The timing fields depend on each other; [`DynamicConfig::validate`]
/// checks every relation and reports all violations at once.
///
/// Two encodings: people read and write it as JSON or TOML (with `pg_hba`
/// a field of its own), and the Raft log and snapshots store it in the
/// binary layout of on-disk format v2, which has no `pg_hba` field: there
/// the rules travel in `postgresql_parameters` under the reserved key
/// [`PG_HBA_KEY`], one rule per line. Which encoding applies is the
/// format's own answer to `is_human_readable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicConfig {
    /// How long a primary's lease lasts, counted from the send time of the
    /// heartbeat that was confirmed. Must exceed three heartbeats plus the
    /// drift and demote margins.
    pub lease_ttl_ms: u64,
    /// How often every daemon reports to the Raft leader and renews its lease.
    pub heartbeat_interval_ms: u64,
    /// Clock-rate drift allowance: the controller waits this much longer than
    /// `lease_ttl_ms` before it treats a silent primary's lease as expired.
    pub drift_margin_ms: u64,
    /// The primary starts demoting this long before its lease ends, so that
    /// it accepts no writes when the lease does end.
    pub demote_margin_ms: u64,
    /// A replica further behind than this many bytes is not a failover
    /// candidate. Written as bytes or with a unit (`16MB`), as in Patroni.
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: SyncMode,
    /// How many synchronous standbys the primary waits for.
    pub synchronous_node_count: u32,
    /// How many times a crashed PostgreSQL is restarted in place before the
    /// daemon gives up its lease so that another node takes over. 0 fails
    /// over at once.
    pub postgres_restart_attempts: u32,
    /// Rewind a former primary with `pg_rewind` before it follows.
    pub use_pg_rewind: bool,
    /// Re-clone with `pg_basebackup` when `pg_rewind` fails.
    pub reclone_on_rewind_failure: bool,
    /// PostgreSQL parameters applied on every member.
    pub postgresql_parameters: BTreeMap<String, String>,
    /// The client authentication rules (`pg_hba.conf` lines) of every
    /// member; `None`: raftgres's default, which allows replication only
    /// from the members' own addresses.
    pub pg_hba: Option<Vec<String>>,
}

/// Where the stored (binary) layout keeps `pg_hba`; not a name an operator
/// can set.
pub const PG_HBA_KEY: &str = "raftgres.pg_hba";

/// The readable layout: every field, `pg_hba` included.
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "DynamicConfig")]
struct Readable {
    /// How long a primary's lease lasts, counted from the send time of the
    /// heartbeat that was confirmed. Must exceed three heartbeats plus the
    /// drift and demote margins.
    pub lease_ttl_ms: u64,
    /// How often every daemon reports to the Raft leader and renews its lease.
    pub heartbeat_interval_ms: u64,
    /// Clock-rate drift allowance: the controller waits this much longer than
    /// `lease_ttl_ms` before it treats a silent primary's lease as expired.
    pub drift_margin_ms: u64,
    /// The primary starts demoting this long before its lease ends, so that
    /// it accepts no writes when the lease does end.
    pub demote_margin_ms: u64,
    /// A replica further behind than this many bytes is not a failover
    /// candidate. Bytes, or a size with a unit (`16MB`), as in Patroni.
    #[serde(deserialize_with = "bytes_or_size")]
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: SyncMode,
    /// How many synchronous standbys the primary waits for.
    pub synchronous_node_count: u32,
    /// How many times a crashed PostgreSQL is restarted in place before the
    /// daemon gives up its lease so that another node takes over. 0 fails
    /// over at once.
    pub postgres_restart_attempts: u32,
    /// Rewind a former primary with `pg_rewind` before it follows.
    pub use_pg_rewind: bool,
    /// Re-clone with `pg_basebackup` when `pg_rewind` fails.
    pub reclone_on_rewind_failure: bool,
    /// PostgreSQL parameters applied on every member.
    pub postgresql_parameters: BTreeMap<String, String>,
    pg_hba: Option<Vec<String>>,
}

/// The stored layout of on-disk format v2: never change it without a new
/// format version.
#[derive(Serialize, Deserialize)]
#[serde(rename = "DynamicConfig")]
struct Stored {
    /// How long a primary's lease lasts, counted from the send time of the
    /// heartbeat that was confirmed. Must exceed three heartbeats plus the
    /// drift and demote margins.
    pub lease_ttl_ms: u64,
    /// How often every daemon reports to the Raft leader and renews its lease.
    pub heartbeat_interval_ms: u64,
    /// Clock-rate drift allowance: the controller waits this much longer than
    /// `lease_ttl_ms` before it treats a silent primary's lease as expired.
    pub drift_margin_ms: u64,
    /// The primary starts demoting this long before its lease ends, so that
    /// it accepts no writes when the lease does end.
    pub demote_margin_ms: u64,
    /// A replica further behind than this many bytes is not a failover
    /// candidate.
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: SyncMode,
    /// How many synchronous standbys the primary waits for.
    pub synchronous_node_count: u32,
    /// How many times a crashed PostgreSQL is restarted in place before the
    /// daemon gives up its lease so that another node takes over. 0 fails
    /// over at once.
    pub postgres_restart_attempts: u32,
    /// Rewind a former primary with `pg_rewind` before it follows.
    pub use_pg_rewind: bool,
    /// Re-clone with `pg_basebackup` when `pg_rewind` fails.
    pub reclone_on_rewind_failure: bool,
    /// PostgreSQL parameters applied on every member.
    pub postgresql_parameters: BTreeMap<String, String>,
}

impl Default for Readable {
    fn default() -> Self {
        DynamicConfig::default().into()
    }
}

impl From<DynamicConfig> for Readable {
    fn from(c: DynamicConfig) -> Self {
        let DynamicConfig {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            postgresql_parameters,
            pg_hba,
        } = c;
        Readable {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            postgresql_parameters,
            pg_hba,
        }
    }
}

impl From<Readable> for DynamicConfig {
    fn from(c: Readable) -> Self {
        let Readable {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            postgresql_parameters,
            pg_hba,
        } = c;
        DynamicConfig {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            postgresql_parameters,
            pg_hba,
        }
    }
}

impl From<DynamicConfig> for Stored {
    fn from(c: DynamicConfig) -> Self {
        let DynamicConfig {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            mut postgresql_parameters,
            pg_hba,
        } = c;
        if let Some(rules) = pg_hba {
            postgresql_parameters.insert(PG_HBA_KEY.to_string(), rules.join("\n"));
        }
        Stored {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            postgresql_parameters,
        }
    }
}

impl From<Stored> for DynamicConfig {
    fn from(c: Stored) -> Self {
        let Stored {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            mut postgresql_parameters,
        } = c;
        let pg_hba = postgresql_parameters.remove(PG_HBA_KEY).map(|r| r.lines().map(String::from).collect());
        DynamicConfig {
            lease_ttl_ms,
            heartbeat_interval_ms,
            drift_margin_ms,
            demote_margin_ms,
            maximum_lag_on_failover,
            synchronous_mode,
            synchronous_node_count,
            postgres_restart_attempts,
            use_pg_rewind,
            reclone_on_rewind_failure,
            postgresql_parameters,
            pg_hba,
        }
    }
}

impl Serialize for DynamicConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            Readable::from(self.clone()).serialize(serializer)
        } else {
            Stored::from(self.clone()).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for DynamicConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Readable::deserialize(deserializer).map(DynamicConfig::from)
        } else {
            Stored::deserialize(deserializer).map(DynamicConfig::from)
        }
    }
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 2_000,
            heartbeat_interval_ms: 250,
            drift_margin_ms: 200,
            demote_margin_ms: 500,
            maximum_lag_on_failover: 1024 * 1024,
            synchronous_mode: SyncMode::Off,
            synchronous_node_count: 1,
            postgres_restart_attempts: 1,
            use_pg_rewind: true,
            reclone_on_rewind_failure: true,
            postgresql_parameters: BTreeMap::new(),
            pg_hba: None,
        }
    }
}

/// `maximum_lag_on_failover`: a byte count written as an integer or as a
/// size with a unit (`16MB`, `64kB`, units of 1024 as in PostgreSQL). Only
/// readable formats (JSON, TOML) take a string; the log's binary encoding
/// stays a plain integer.
fn bytes_or_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Size;
    impl serde::de::Visitor<'_> for Size {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number of bytes or a size such as \"16MB\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("maximum_lag_on_failover: {v} is negative")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).ok_or_else(|| {
                E::custom(format!("maximum_lag_on_failover: {v:?} is not a size (e.g. 1048576, 16MB, 1GB)"))
            })
        }
    }
    if d.is_human_readable() { d.deserialize_any(Size) } else { d.deserialize_u64(Size) }
}

/// `1048576`, `16MB`, `64kB`, `1GB`: bytes, units of 1024.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// One reason a configuration is invalid: the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigViolation {
    pub field: String,
    pub message: String,
}

impl ConfigViolation {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// PostgreSQL parameters raftgres manages itself; setting them through the
/// dynamic configuration would break replication or fencing.
pub const MANAGED_PARAMETERS: &[&str] = &[
    "port",
    "listen_addresses",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "primary_conninfo",
    "primary_slot_name",
    "synchronous_standby_names",
    "hot_standby",
    "recovery_target",
    "recovery_target_timeline",
    "restore_command",
    "cluster_name",
];

/// The first word of a `pg_hba.conf` rule.
const HBA_TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
    "include",
    "include_if_exists",
    "include_dir",
];

const MIN_HEARTBEAT_MS: u64 = 50;
const MAX_HEARTBEAT_MS: u64 = 10_000;
const MAX_LEASE_MS: u64 = 600_000;

impl DynamicConfig {
    /// The shortest lease the other timing fields allow.
    pub fn minimum_lease_ttl_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .saturating_mul(3)
            .saturating_add(self.drift_margin_ms)
            .saturating_add(self.demote_margin_ms)
    }

    /// Checks what may not change at run time, from `self` (the current
    /// configuration) to `next`; every violation, not just the first.
    ///
    /// `lease_ttl_ms` may only grow: a primary holding a lease granted under
    /// the longer TTL would outlive what a leader under the shorter one
    /// waits for. (The file's `[dynamic]` section only seeds a new cluster,
    /// so a restart does not lower it either.)
    pub fn check_change(&self, next: &DynamicConfig) -> Result<(), Vec<ConfigViolation>> {
        let mut v = Vec::new();
        if next.lease_ttl_ms < self.lease_ttl_ms {
            v.push(ConfigViolation::new(
                "lease_ttl_ms",
                format!(
                    "can only grow at run time ({} -> {}): a lease granted under the old value would outlive \
                     what a leader waits for under the new one",
                    self.lease_ttl_ms, next.lease_ttl_ms
                ),
            ));
        }
        if v.is_empty() { Ok(()) } else { Err(v) }
    }

    /// Checks every field and every relation between fields; returns all
    /// violations, not just the first.
    pub fn validate(&self) -> Result<(), Vec<ConfigViolation>> {
        let mut v = Vec::new();
        if !(MIN_HEARTBEAT_MS..=MAX_HEARTBEAT_MS).contains(&self.heartbeat_interval_ms) {
            v.push(ConfigViolation::new(
                "heartbeat_interval_ms",
                format!("{} is outside {MIN_HEARTBEAT_MS}..={MAX_HEARTBEAT_MS}", self.heartbeat_interval_ms),
            ));
        }
        if self.lease_ttl_ms > MAX_LEASE_MS {
            v.push(ConfigViolation::new(
                "lease_ttl_ms",
                format!("{} is above the maximum {MAX_LEASE_MS}", self.lease_ttl_ms),
            ));
        }
        let minimum = self.minimum_lease_ttl_ms();
        if self.lease_ttl_ms <= minimum {
            v.push(ConfigViolation::new(
                "lease_ttl_ms",
                format!(
                    "{} must exceed 3 x heartbeat_interval_ms ({}) + drift_margin_ms ({}) + demote_margin_ms ({}) = {minimum}",
                    self.lease_ttl_ms, self.heartbeat_interval_ms, self.drift_margin_ms, self.demote_margin_ms
                ),
            ));
        }
        if self.demote_margin_ms < self.heartbeat_interval_ms {
            v.push(ConfigViolation::new(
                "demote_margin_ms",
                format!(
                    "{} must be at least heartbeat_interval_ms ({}) so a missed renewal is noticed before the lease ends",
                    self.demote_margin_ms, self.heartbeat_interval_ms
                ),
            ));
        }
        if self.synchronous_node_count == 0 {
            v.push(ConfigViolation::new("synchronous_node_count", "must be at least 1"));
        }
        if self.postgres_restart_attempts > 100 {
            v.push(ConfigViolation::new(
                "postgres_restart_attempts",
                format!("{} is above the maximum 100", self.postgres_restart_attempts),
            ));
        }
        for (name, value) in &self.postgresql_parameters {
            let field = format!("postgresql_parameters.{name}");
            let valid_name = !name.is_empty()
                && name.len() <= 63
                && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if !valid_name {
                v.push(ConfigViolation::new(field.clone(), "not a valid PostgreSQL parameter name"));
            } else if MANAGED_PARAMETERS.contains(&name.as_str()) {
                v.push(ConfigViolation::new(field.clone(), "managed by raftgres and cannot be set"));
            }
            if name.starts_with("raftgres.") {
                v.push(ConfigViolation::new(field.clone(), "the raftgres. prefix is reserved"));
            }
            if value.chars().any(|c| c == '\0' || c == '\n' || c == '\r') {
                v.push(ConfigViolation::new(field, "value must not contain NUL or line breaks"));
            }
        }
        if let Some(rules) = &self.pg_hba {
            if !rules.iter().any(|r| !r.trim().is_empty() && !r.trim_start().starts_with('#')) {
                v.push(ConfigViolation::new("pg_hba", "has no rule: nobody could connect, not even raftgres"));
            }
            for (i, rule) in rules.iter().enumerate() {
                let field = format!("pg_hba[{i}]");
                if rule.chars().any(|c| c == '\0' || c == '\n' || c == '\r') {
                    v.push(ConfigViolation::new(field, "a rule must not contain NUL or line breaks"));
                    continue;
                }
                let first = rule.split_whitespace().next().unwrap_or("");
                if !first.is_empty() && !first.starts_with('#') && !HBA_TYPES.contains(&first) {
                    v.push(ConfigViolation::new(
                        field,
                        format!("{first:?} is not a connection type ({})", HBA_TYPES.join(", ")),
                    ));
                }
            }
        }
        if v.is_empty() { Ok(()) } else { Err(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maximum_lag_on_failover_takes_units_and_stays_bytes() {
        for (text, want) in [("16777216", 16 << 20), ("\"16MB\"", 16 << 20), ("\"64kB\"", 64 << 10)] {
            let c: DynamicConfig = serde_json::from_str(&format!("{{\"maximum_lag_on_failover\": {text}}}"))
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.maximum_lag_on_failover, want, "{text}");
            assert_eq!(serde_json::to_value(&c).expect("JSON")["maximum_lag_on_failover"], want);
        }
        for bad in ["\"16 parsecs\"", "-1", "true"] {
            let e = serde_json::from_str::<DynamicConfig>(&format!("{{\"maximum_lag_on_failover\": {bad}}}"));
            assert!(e.is_err(), "{bad} accepted");
        }
        let c = DynamicConfig { maximum_lag_on_failover: 12345, ..DynamicConfig::default() };
        let bytes = crate::encoding::encode("config", &c).expect("encode");
        assert_eq!(crate::encoding::decode::<DynamicConfig>("config", &bytes).expect("decode"), c);
    }

    #[test]
    fn default_is_valid() {
        DynamicConfig::default().validate().expect("default config must be valid");
    }

    #[test]
    fn every_violation_is_reported() {
        let mut c = DynamicConfig {
            heartbeat_interval_ms: 10,
            lease_ttl_ms: 100,
            synchronous_node_count: 0,
            ..DynamicConfig::default()
        };
        c.postgresql_parameters.insert("port".into(), "5433".into());
        c.postgresql_parameters.insert("Bad-Name".into(), "1".into());
        c.postgresql_parameters.insert("work_mem".into(), "4MB\n".into());
        let errs = c.validate().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"heartbeat_interval_ms"), "{errs:?}");
        assert!(fields.contains(&"lease_ttl_ms"), "{errs:?}");
        assert!(fields.contains(&"synchronous_node_count"), "{errs:?}");
        assert!(fields.contains(&"postgresql_parameters.port"), "{errs:?}");
        assert!(fields.contains(&"postgresql_parameters.Bad-Name"), "{errs:?}");
        assert!(fields.contains(&"postgresql_parameters.work_mem"), "{errs:?}");
    }

    #[test]
    fn lease_must_exceed_heartbeats_and_margins() {
        let c = DynamicConfig { lease_ttl_ms: 1450, ..DynamicConfig::default() };
        // 3 * 250 + 200 + 500 = 1450: equal is not enough.
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "lease_ttl_ms");
        let c = DynamicConfig { lease_ttl_ms: 1451, ..DynamicConfig::default() };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_lease_only_grows_at_run_time() {
        let current = DynamicConfig::default();
        let shorter = DynamicConfig { lease_ttl_ms: 1900, ..DynamicConfig::default() };
        let longer = DynamicConfig { lease_ttl_ms: 2100, ..DynamicConfig::default() };
        let errs = current.check_change(&shorter).unwrap_err();
        assert_eq!(errs[0].field, "lease_ttl_ms");
        assert!(errs[0].message.contains("2000 -> 1900"), "{errs:?}");
        assert!(current.check_change(&longer).is_ok());
        assert!(current.check_change(&current).is_ok());
    }

    #[test]
    fn pg_hba_is_a_field_to_people_and_a_reserved_parameter_on_disk() {
        let mut c = DynamicConfig {
            pg_hba: Some(vec!["local all all trust".into(), "host all all 10.0.0.0/8 scram-sha-256".into()]),
            ..DynamicConfig::default()
        };
        c.postgresql_parameters.insert("work_mem".into(), "8MB".into());
        let json = serde_json::to_value(&c).expect("to JSON");
        assert_eq!(json["pg_hba"][1], "host all all 10.0.0.0/8 scram-sha-256");
        assert_eq!(json["postgresql_parameters"], serde_json::json!({"work_mem": "8MB"}), "no reserved key shown");
        assert_eq!(serde_json::from_value::<DynamicConfig>(json).expect("from JSON"), c);
        let bytes = crate::encoding::encode("config", &c).expect("encode");
        assert_eq!(crate::encoding::decode::<DynamicConfig>("config", &bytes).expect("decode"), c);
        // Without rules the stored bytes are those of format v2.
        let plain = DynamicConfig { pg_hba: None, ..c.clone() };
        let stored = crate::encoding::encode("config", &Stored::from(plain.clone())).expect("encode");
        assert_eq!(crate::encoding::encode("config", &plain).expect("encode"), stored);
        let parsed: Stored = crate::encoding::decode("config", &bytes).expect("decode as v2");
        assert_eq!(
            parsed.postgresql_parameters.get(PG_HBA_KEY).map(String::as_str),
            Some("local all all trust\nhost all all 10.0.0.0/8 scram-sha-256")
        );
    }

    #[test]
    fn pg_hba_rules_and_reserved_names_are_checked() {
        let mut c = DynamicConfig { pg_hba: Some(vec!["# nothing".into()]), ..DynamicConfig::default() };
        c.postgresql_parameters.insert(PG_HBA_KEY.into(), "x".into());
        let errs = c.validate().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["postgresql_parameters.raftgres.pg_hba", "pg_hba"], "{errs:?}");
        let c = DynamicConfig { pg_hba: Some(vec!["hots all all trust".into()]), ..DynamicConfig::default() };
        assert!(c.validate().unwrap_err()[0].message.contains("not a connection type"));
        let c = DynamicConfig { pg_hba: Some(vec!["host all all 10.0.0.0/8 md5".into()]), ..DynamicConfig::default() };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn sync_mode_parses() {
        assert_eq!("STRICT".parse::<SyncMode>(), Ok(SyncMode::Strict));
        assert!("sometimes".parse::<SyncMode>().is_err());
    }
}
