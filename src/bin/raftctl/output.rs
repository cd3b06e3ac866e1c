//! Printers, one per output format (`-o table|json`), with a method per
//! response; command code never formats. Everything goes to standard
//! output through `io::Write`, so a closed pipe is an error the caller can
//! tell apart (and treat as success), never a panic.

use std::io::{self, Write};

use clap::ValueEnum;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use raftgres_api::time::format_ms;
use raftgres_api::{ClusterStatus, MemberStatus, Role};
use raftgres_proto::admin as pb;
use serde_json::{Value, json};

/// The output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and text for people.
    #[default]
    Table,
    /// JSON for programs; streams print one object per line.
    Json,
}

/// A configuration change's result.
pub struct ConfigResult<'a> {
    pub version: u64,
    /// The resulting configuration, JSON.
    pub json: &'a str,
    pub changed: bool,
    pub dry_run: bool,
}

/// One election, as `history` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Election {
    pub index: u64,
    pub epoch: u64,
    /// The timeline and switch point its promotion recorded, once it did.
    pub timeline: Option<u64>,
    pub lsn: Option<String>,
    pub reason: String,
    pub at_ms: u64,
    pub at: String,
    pub new_primary: String,
}

impl Election {
    /// The election a `primary_elected` event records.
    pub fn from_event(e: &pb::Event) -> Option<Election> {
        if e.kind != "primary_elected" {
            return None;
        }
        let v: Value = serde_json::from_str(&e.json).ok()?;
        Some(Election {
            index: e.index,
            epoch: v["epoch"].as_u64()?,
            timeline: v["timeline"].as_u64(),
            lsn: v["lsn"].as_str().map(str::to_string),
            reason: v["reason"].as_str().unwrap_or_default().to_string(),
            at_ms: e.at_ms,
            at: format_ms(e.at_ms),
            new_primary: v["member"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// One method per response.
pub trait Printer {
    /// `list`.
    fn status(&self, out: &mut dyn Write, s: &ClusterStatus) -> io::Result<()>;
    /// `topology`: `list` as a tree, the primary first.
    fn topology(&self, out: &mut dyn Write, s: &ClusterStatus) -> io::Result<()>;
    /// `dsn`: a libpq connection string.
    fn dsn(&self, out: &mut dyn Write, host: &str, port: u16) -> io::Result<()>;
    /// `config show`.
    fn config(&self, out: &mut dyn Write, version: u64, json: &str) -> io::Result<()>;
    /// `config set` and `config edit`.
    fn config_result(&self, out: &mut dyn Write, r: &ConfigResult) -> io::Result<()>;
    /// `history`: the elections.
    fn elections(&self, out: &mut dyn Write, rows: &[Election]) -> io::Result<()>;
    /// `history --all`: every event at once.
    fn history(&self, out: &mut dyn Write, events: &[pb::Event]) -> io::Result<()>;
    /// `events`: one event of a stream.
    fn event(&self, out: &mut dyn Write, e: &pb::Event) -> io::Result<()>;
    /// The answer to a change (switchover, member add, ...).
    fn done(&self, out: &mut dyn Write, reply: &pb::OperationReply) -> io::Result<()>;
}

pub fn printer(format: Format) -> Box<dyn Printer> {
    match format {
        Format::Table => Box::new(TablePrinter),
        Format::Json => Box::new(JsonPrinter),
    }
}

pub struct TablePrinter;

fn lag_text(m: &MemberStatus) -> String {
    match (m.role, m.lag_bytes) {
        (Role::Primary, _) => String::new(),
        (_, Some(b)) => format!("{:.1}", b as f64 / 1_048_576.0),
        (_, None) => "unknown".into(),
    }
}

/// The role as `patronictl list` shows it.
fn role_text(role: Role) -> &'static str {
    match role {
        Role::Primary => "Leader",
        Role::Replica => "Replica",
        Role::Unreachable => "unreachable",
        Role::Unknown => "unknown",
    }
}

fn event_line(e: &pb::Event) -> String {
    format!("{}  [{:>6}]  {:<22} {}", format_ms(e.at_ms), e.index, e.kind, e.text)
}

impl TablePrinter {
    /// The members' table under the cluster line; `tree` puts the primary
    /// first and indents the replicas below it, as `patronictl topology`.
    fn members(&self, out: &mut dyn Write, s: &ClusterStatus, tree: bool) -> io::Result<()> {
        let mut header = format!("Cluster: {} (epoch {}, Raft term {})", s.cluster_id, s.epoch, s.raft_term);
        if s.maintenance {
            header.push_str("  [maintenance mode: automatic failover paused]");
        }
        writeln!(out, "{header}")?;
        if s.stale {
            writeln!(
                out,
                "WARNING: node {} could not confirm this view with the Raft leader (no quorum, or it is no longer \
                 a member); it may be out of date",
                s.served_by
            )?;
        }
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
        let pending = s.members.iter().any(|m| !m.pending_restart.is_empty());
        let scheduled = s.members.iter().any(|m| m.scheduled_restart.is_some());
        let mut header = vec!["Member", "Host", "Role", "State", "TL", "Lag in MB", "Raft"];
        if pending {
            header.push("Pending restart");
        }
        if scheduled {
            header.push("Scheduled restart");
        }
        header.push("Tags");
        t.set_header(header);
        let mut members: Vec<&MemberStatus> = s.members.iter().collect();
        let is_primary = |m: &MemberStatus| s.primary.as_deref() == Some(m.name.as_str());
        if tree {
            members.sort_by_key(|m| !is_primary(m));
        }
        for m in members {
            let name =
                if tree && s.primary.is_some() && !is_primary(m) { format!("+ {}", m.name) } else { m.name.clone() };
            let raft = match m.raft_term {
                Some(term) => format!("{} / {term}", m.raft_role),
                None => m.raft_role.to_string(),
            };
            let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let role = match m.role {
                Role::Replica if m.sync_standby => "Sync Standby",
                Role::Replica if m.quorum_standby => "Quorum Standby",
                role => role_text(role),
            };
            let mut row = vec![
                name,
                if m.port != 0 { format!("{}:{}", m.host, m.port) } else { String::new() },
                role.to_string(),
                m.state.to_string(),
                m.timeline.map(|t| t.to_string()).unwrap_or_default(),
                lag_text(m),
                raft,
            ];
            if pending {
                row.push(if m.pending_restart.is_empty() { String::new() } else { "*".into() });
            }
            if scheduled {
                row.push(m.scheduled_restart.clone().unwrap_or_default());
            }
            row.push(tags.join(","));
            t.add_row(row);
        }
        writeln!(out, "{t}")?;
        if let Some(sw) = &s.switchover {
            let to = sw.to.as_deref().unwrap_or("the best replica");
            let at = sw.at_ms.map(format_ms).unwrap_or_else(|| "now".into());
            writeln!(out, "Switchover scheduled: {} -> {to} at {at}", sw.from)?;
        }
        if let Some(why) = &s.failover_blocked {
            writeln!(out, "Automatic failover blocked: {why}")?;
        }
        for m in s.members.iter().filter(|m| !m.pending_restart.is_empty()) {
            let reasons: Vec<String> =
                m.pending_restart.iter().map(|(k, c)| format!("{k}: {}->{}", c.old_value, c.new_value)).collect();
            writeln!(out, "Pending restart on {}: {}", m.name, reasons.join(", "))?;
        }
        for m in &s.members {
            if let Some(e) = &m.last_error {
                writeln!(out, "Last error on {}: {e}", m.name)?;
            }
        }
        Ok(())
    }
}

impl Printer for TablePrinter {
    fn status(&self, out: &mut dyn Write, s: &ClusterStatus) -> io::Result<()> {
        self.members(out, s, false)
    }

    fn topology(&self, out: &mut dyn Write, s: &ClusterStatus) -> io::Result<()> {
        self.members(out, s, true)
    }

    fn dsn(&self, out: &mut dyn Write, host: &str, port: u16) -> io::Result<()> {
        writeln!(out, "host={host} port={port}")
    }

    fn config(&self, out: &mut dyn Write, version: u64, json: &str) -> io::Result<()> {
        writeln!(out, "# version {version}")?;
        writeln!(out, "{json}")
    }

    fn config_result(&self, out: &mut dyn Write, r: &ConfigResult) -> io::Result<()> {
        if r.dry_run {
            writeln!(out, "# valid; nothing changed (dry run)\n{}", r.json)
        } else if r.changed {
            writeln!(out, "configuration changed to version {}", r.version)
        } else {
            writeln!(out, "nothing to change (version {})", r.version)
        }
    }

    fn elections(&self, out: &mut dyn Write, rows: &[Election]) -> io::Result<()> {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
        t.set_header(vec!["Epoch", "TL", "LSN", "Reason", "Timestamp", "New Primary"]);
        for r in rows {
            t.add_row(vec![
                r.epoch.to_string(),
                r.timeline.map(|t| t.to_string()).unwrap_or_default(),
                r.lsn.clone().unwrap_or_default(),
                r.reason.clone(),
                r.at.clone(),
                r.new_primary.clone(),
            ]);
        }
        writeln!(out, "{t}")
    }

    fn history(&self, out: &mut dyn Write, events: &[pb::Event]) -> io::Result<()> {
        for e in events {
            writeln!(out, "{}", event_line(e))?;
        }
        Ok(())
    }

    fn event(&self, out: &mut dyn Write, e: &pb::Event) -> io::Result<()> {
        writeln!(out, "{}", event_line(e))?;
        out.flush()
    }

    fn done(&self, out: &mut dyn Write, reply: &pb::OperationReply) -> io::Result<()> {
        writeln!(out, "{}", reply.message)
    }
}

pub struct JsonPrinter;

fn event_json(e: &pb::Event) -> Value {
    json!({
        "index": e.index, "at_ms": e.at_ms, "at": format_ms(e.at_ms), "kind": e.kind, "text": e.text,
        "event": serde_json::from_str::<Value>(&e.json).unwrap_or(Value::Null),
    })
}

fn pretty(out: &mut dyn Write, v: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)
}

impl Printer for JsonPrinter {
    fn status(&self, out: &mut dyn Write, s: &ClusterStatus) -> io::Result<()> {
        // Through a `Value`: keys sorted, as every other JSON answer.
        pretty(out, &serde_json::to_value(s)?)
    }

    fn topology(&self, out: &mut dyn Write, s: &ClusterStatus) -> io::Result<()> {
        self.status(out, s)
    }

    fn dsn(&self, out: &mut dyn Write, host: &str, port: u16) -> io::Result<()> {
        pretty(out, &json!({ "host": host, "port": port, "dsn": format!("host={host} port={port}") }))
    }

    fn config(&self, out: &mut dyn Write, version: u64, json: &str) -> io::Result<()> {
        let config: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        pretty(out, &json!({ "version": version, "config": config }))
    }

    fn config_result(&self, out: &mut dyn Write, r: &ConfigResult) -> io::Result<()> {
        let config: Value = serde_json::from_str(r.json).unwrap_or(Value::Null);
        pretty(out, &json!({ "version": r.version, "changed": r.changed, "dry_run": r.dry_run, "config": config }))
    }

    fn elections(&self, out: &mut dyn Write, rows: &[Election]) -> io::Result<()> {
        pretty(out, &serde_json::to_value(rows)?)
    }

    fn history(&self, out: &mut dyn Write, events: &[pb::Event]) -> io::Result<()> {
        pretty(out, &events.iter().map(event_json).collect::<Vec<_>>())
    }

    fn event(&self, out: &mut dyn Write, e: &pb::Event) -> io::Result<()> {
        writeln!(out, "{}", event_json(e))?;
        out.flush()
    }

    fn done(&self, out: &mut dyn Write, reply: &pb::OperationReply) -> io::Result<()> {
        pretty(out, &json!({ "message": reply.message, "index": reply.index }))
    }
}

#[cfg(test)]
mod tests {
    use raftgres_api::{PgState, RaftRole, SwitchoverStatus};

    use super::*;

    fn status() -> ClusterStatus {
        ClusterStatus {
            cluster_id: "c".into(),
            epoch: 2,
            primary: Some("pg1".into()),
            raft_term: 4,
            switchover: Some(SwitchoverStatus { from: "pg1".into(), to: None, at_ms: None }),
            members: vec![
                MemberStatus {
                    id: 1,
                    name: "pg1".into(),
                    host: "10.0.0.1".into(),
                    port: 5432,
                    role: Role::Primary,
                    state: PgState::Running,
                    timeline: Some(2),
                    lag_bytes: Some(0),
                    raft_role: RaftRole::Leader,
                    raft_term: Some(4),
                    ..MemberStatus::default()
                },
                MemberStatus {
                    id: 2,
                    name: "pg2".into(),
                    role: Role::Replica,
                    state: PgState::Streaming,
                    lag_bytes: Some(3 << 20),
                    raft_role: RaftRole::Follower,
                    ..MemberStatus::default()
                },
            ],
            ..ClusterStatus::default()
        }
    }

    fn render(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("writes to memory");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn table_shows_roles_as_patronictl_does() {
        let text = render(|o| TablePrinter.status(o, &status()));
        assert!(text.starts_with("Cluster: c (epoch 2, Raft term 4)"), "{text}");
        assert!(text.contains("Leader") && text.contains("Replica") && text.contains("streaming"), "{text}");
        assert!(text.contains("leader / 4") && text.contains("3.0"), "{text}");
        assert!(text.contains("Switchover scheduled: pg1 -> the best replica at now"), "{text}");
    }

    #[test]
    fn topology_puts_the_primary_first_and_indents_replicas() {
        let mut s = status();
        s.members.reverse();
        let text = render(|o| TablePrinter.topology(o, &s));
        let (p1, p2) = (text.find("pg1").expect("pg1"), text.find("+ pg2").expect("+ pg2"));
        assert!(p1 < p2, "{text}");
        assert_eq!(render(|o| TablePrinter.dsn(o, "10.0.0.1", 5432)), "host=10.0.0.1 port=5432\n");
    }

    #[test]
    fn json_is_the_status_model() {
        let v: Value = serde_json::from_str(&render(|o| JsonPrinter.status(o, &status()))).expect("JSON");
        assert_eq!(v["primary"], "pg1");
        assert_eq!(v["raft_leader"], Value::Null);
        assert_eq!(v["members"][0]["role"], "primary");
        assert_eq!(v["members"][1]["state"], "streaming");
        assert_eq!(v["members"][1]["raft_role"], "follower");
        assert_eq!(v["switchover"]["to"], Value::Null);
    }

    #[test]
    fn history_shows_elections_by_name() {
        let e = pb::Event {
            index: 9,
            at_ms: 0,
            kind: "primary_elected".into(),
            text: "pg2 elected primary in epoch 2 (switchover); timeline 2 from 0/3000060".into(),
            json: r#"{"kind":"primary_elected","epoch":2,"member":"pg2","member_id":2,"reason":"switchover",
                      "timeline":2,"lsn":"0/3000060"}"#
                .into(),
        };
        let other = pb::Event { kind: "maintenance_changed".into(), json: "{}".into(), ..e.clone() };
        assert_eq!(Election::from_event(&other), None);
        let row = Election::from_event(&e).expect("an election");
        let text = render(|o| TablePrinter.elections(o, std::slice::from_ref(&row)));
        for want in ["Epoch", "TL", "LSN", "Reason", "New Primary", "0/3000060", "switchover", "pg2"] {
            assert!(text.contains(want), "{want} missing: {text}");
        }
        let v: Value = serde_json::from_str(&render(|o| JsonPrinter.elections(o, &[row]))).expect("JSON");
        assert_eq!(v[0]["new_primary"], "pg2");
        assert_eq!(v[0]["timeline"], 2);
        assert!(!v.to_string().contains("Some") && !v.to_string().contains("None"));
    }

    #[test]
    fn events_stream_one_json_object_per_line() {
        let e = pb::Event {
            index: 7,
            at_ms: 0,
            kind: "maintenance_changed".into(),
            text: "maintenance on".into(),
            json: "{}".into(),
        };
        let text = render(|o| JsonPrinter.event(o, &e));
        assert_eq!(text.lines().count(), 1);
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["kind"], "maintenance_changed");
    }
}
