//! The configuration raftgres writes into a data directory: `raftgres.conf`
//! (included from `postgresql.conf`), `pg_hba.conf` after initdb, and
//! `standby.signal`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The role PostgreSQL is started in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerRole {
    Primary,
    /// A standby streaming from `upstream` (host, port), or waiting for one.
    Standby {
        upstream: Option<(String, u16)>,
    },
}

/// Everything `raftgres.conf` is rendered from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConf {
    pub role: ServerRole,
    pub node_id: u64,
    pub node_name: String,
    pub listen_addresses: String,
    pub port: u16,
    pub socket_dir: String,
    pub replication_user: String,
    pub replication_password: String,
    /// Dynamic-config parameters, already validated.
    pub parameters: BTreeMap<String, String>,
    /// What a primary waits for (empty: nothing; a standby ignores it).
    pub synchronous_standby_names: String,
}

/// The name of a member's physical replication slot on the primary.
pub fn slot_name(node_id: u64) -> String {
    format!("raftgres_{node_id}")
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

impl ServerConf {
    pub fn render(&self) -> String {
        let mut out = String::from("# Managed by raftgres; rewritten before every start. Do not edit.\n");
        let mut set = |k: &str, v: String| {
            let _ = writeln!(out, "{k} = {v}");
        };
        // Defaults first; dynamic parameters may override them.
        let mut params: BTreeMap<String, String> = BTreeMap::from([
            ("wal_level".into(), "replica".into()),
            ("max_wal_senders".into(), "10".into()),
            ("max_replication_slots".into(), "10".into()),
            ("wal_keep_size".into(), "256MB".into()),
            // Slots reserve WAL as soon as they exist; a member that never
            // comes back must not fill the disk.
            ("max_slot_wal_keep_size".into(), "4GB".into()),
            ("hot_standby_feedback".into(), "on".into()),
            ("wal_log_hints".into(), "on".into()),
            // A replica whose upstream changed (failover, switchover) finds
            // the new one within a second instead of five.
            ("wal_retrieve_retry_interval".into(), "1s".into()),
        ]);
        params.extend(self.parameters.clone());
        for (k, v) in &params {
            set(k, quote(v));
        }
        set("listen_addresses", quote(&self.listen_addresses));
        set("port", self.port.to_string());
        set("unix_socket_directories", quote(&self.socket_dir));
        set("cluster_name", quote(&self.node_name));
        set("hot_standby", "on".into());
        set("recovery_target_timeline", quote("latest"));
        set("synchronous_standby_names", quote(&self.synchronous_standby_names));
        if let ServerRole::Standby { upstream: Some((host, port)) } = &self.role {
            let conninfo = format!(
                "host={host} port={port} user={} password={} application_name={} connect_timeout=2",
                self.replication_user, self.replication_password, self.node_name
            );
            set("primary_conninfo", quote(&conninfo));
            set("primary_slot_name", quote(&slot_name(self.node_id)));
        } else {
            set("primary_conninfo", quote(""));
            set("primary_slot_name", quote(""));
        }
        out
    }

    /// Writes `raftgres.conf` and the standby signal; returns true when the
    /// file changed.
    pub fn write(&self, data_dir: &Path) -> std::io::Result<bool> {
        let path = data_dir.join("raftgres.conf");
        let text = self.render();
        let mut changed = std::fs::read_to_string(&path).map(|old| old != text).unwrap_or(true);
        if changed {
            std::fs::write(&path, text)?;
        }
        let signal = data_dir.join("standby.signal");
        let want_signal = matches!(self.role, ServerRole::Standby { .. });
        if want_signal && !signal.exists() {
            std::fs::write(&signal, "")?;
            changed = true;
        } else if !want_signal && signal.exists() {
            std::fs::remove_file(&signal)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// Makes `postgresql.conf` include `raftgres.conf` (once).
pub fn ensure_include(data_dir: &Path) -> std::io::Result<()> {
    let path = data_dir.join("postgresql.conf");
    let text = std::fs::read_to_string(&path)?;
    let line = "include_if_exists = 'raftgres.conf'";
    if !text.lines().any(|l| l.trim() == line) {
        std::fs::write(&path, format!("{text}\n# raftgres\n{line}\n"))?;
    }
    Ok(())
}

/// `pg_hba.conf`: the operator's rules when the configuration has them,
/// else raftgres's default. The default trusts the Unix socket (private to
/// the PostgreSQL OS user), allows replication connections only from the
/// members' own addresses and from loopback, and asks every TCP login for a
/// password.
pub fn render_hba(rules: Option<&[String]>, replication_user: &str, member_hosts: &[String]) -> String {
    let mut out = String::from("# Managed by raftgres; rewritten when the configuration or the members change.\n");
    if let Some(rules) = rules {
        for r in rules {
            out.push_str(r);
            out.push('\n');
        }
        return out;
    }
    out.push_str("local   all             all                          trust\n");
    out.push_str("local   replication     all                          trust\n");
    // Loopback too: members on one host (a playground, a test) connect
    // from 127.0.0.1 whatever address they advertise.
    let mut hosts: Vec<String> = ["127.0.0.0/8".to_string(), "::1/128".to_string()].into();
    hosts.extend(member_hosts.iter().filter(|h| !h.is_empty()).map(|h| match h.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => format!("{a}/32"),
        Ok(std::net::IpAddr::V6(a)) => format!("{a}/128"),
        Err(_) => h.clone(),
    }));
    hosts.sort();
    hosts.dedup();
    for h in hosts {
        let _ = writeln!(out, "host    replication     {replication_user}  {h}    scram-sha-256");
    }
    out.push_str("host    all             all                 0.0.0.0/0    scram-sha-256\n");
    out.push_str("host    all             all                 ::/0         scram-sha-256\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(role: ServerRole) -> ServerConf {
        ServerConf {
            role,
            node_id: 2,
            node_name: "pg2".into(),
            listen_addresses: "127.0.0.1".into(),
            port: 5433,
            socket_dir: "/tmp/s".into(),
            replication_user: "replicator".into(),
            replication_password: "pw".into(),
            parameters: BTreeMap::from([("work_mem".into(), "8MB".into()), ("wal_keep_size".into(), "1GB".into())]),
            synchronous_standby_names: String::new(),
        }
    }

    #[test]
    fn standby_conf_names_upstream_and_slot() {
        let text = conf(ServerRole::Standby { upstream: Some(("10.0.0.1".into(), 5432)) }).render();
        assert!(text.contains("primary_conninfo = 'host=10.0.0.1 port=5432 user=replicator password=pw"), "{text}");
        assert!(text.contains("primary_slot_name = 'raftgres_2'"), "{text}");
        assert!(text.contains("work_mem = '8MB'"));
        assert!(text.contains("wal_keep_size = '1GB'"), "dynamic parameters override defaults: {text}");
        assert!(!text.contains("wal_keep_size = '256MB'"));
    }

    #[test]
    fn primary_conf_has_no_upstream_and_files_follow_the_role() {
        let dir = tempfile::tempdir().unwrap();
        let text = conf(ServerRole::Primary).render();
        assert!(text.contains("primary_conninfo = ''"), "{text}");
        assert!(conf(ServerRole::Standby { upstream: None }).write(dir.path()).unwrap());
        assert!(dir.path().join("standby.signal").exists());
        assert!(!conf(ServerRole::Standby { upstream: None }).write(dir.path()).unwrap(), "unchanged");
        assert!(conf(ServerRole::Primary).write(dir.path()).unwrap());
        assert!(!dir.path().join("standby.signal").exists());
    }

    #[test]
    fn hba_allows_replication_from_members_only_unless_the_operator_says_otherwise() {
        let hosts =
            ["10.0.0.2".to_string(), "10.0.0.1".into(), "db3.example".into(), "fd00::3".into(), "10.0.0.1".into()];
        let text = render_hba(None, "replicator", &hosts);
        let replication: Vec<&str> = text.lines().filter(|l| l.starts_with("host    replication")).collect();
        assert_eq!(replication.len(), 6, "one rule per member address, and loopback: {text}");
        assert!(text.contains("replicator  10.0.0.1/32    scram-sha-256"), "{text}");
        assert!(text.contains("replicator  fd00::3/128"), "{text}");
        assert!(text.contains("replicator  db3.example"), "{text}");
        assert!(!text.lines().any(|l| l.contains("replication") && l.contains("0.0.0.0/0")), "{text}");
        let rules = vec!["local all all peer".to_string(), "hostssl all all 0.0.0.0/0 cert".into()];
        let text = render_hba(Some(&rules), "replicator", &hosts);
        assert!(text.ends_with("local all all peer\nhostssl all all 0.0.0.0/0 cert\n"), "{text}");
        assert!(!text.contains("10.0.0.1"), "the operator's rules only: {text}");
    }
}
