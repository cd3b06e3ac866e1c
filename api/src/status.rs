//! The node-status document: what `GET /patroni` (and every health check's
//! `GET`) answers, in Patroni's shape plus a `raftgres` object. The daemon
//! serializes it and `Ops::status` reads it back from every member, through
//! this one type, so a renamed field fails to compile instead of reading as
//! `None`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node's role, as Patroni spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Named primary, holding a lease that allows writes, out of recovery.
    Primary,
    /// PostgreSQL runs in recovery.
    Replica,
    /// In a cluster listing only: the member's API did not answer.
    Unreachable,
    /// Also what a name this version does not know reads as.
    #[default]
    #[serde(other)]
    Unknown,
}

/// PostgreSQL's state, with Patroni's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgState {
    Starting,
    Running,
    /// A replica whose WAL receiver streams.
    Streaming,
    Stopped,
    Crashed,
    #[serde(rename = "creating replica")]
    CreatingReplica,
    Rewinding,
    Demoting,
    /// Also what a name this version does not know reads as.
    #[default]
    #[serde(other)]
    Unknown,
}

/// Patroni's `replication_state` of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplicationState {
    #[serde(rename = "streaming")]
    Streaming,
    #[serde(rename = "in archive recovery")]
    InArchiveRecovery,
}

/// A node's place in Raft.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    /// A voter whose daemon does not answer: whether it still follows is
    /// not known.
    Unknown,
    /// Not in the Raft membership; also what a name this version does not
    /// know reads as.
    #[default]
    #[serde(other)]
    None,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name the APIs use.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($s => Ok(<$t>::$v),)*
                    other => Err(UnknownName { what: stringify!($t), name: other.to_string() }),
                }
            }
        }
    };
}

names!(Role { Primary => "primary", Replica => "replica", Unknown => "unknown", Unreachable => "unreachable" });
names!(PgState {
    Unknown => "unknown",
    Starting => "starting",
    Running => "running",
    Streaming => "streaming",
    Stopped => "stopped",
    Crashed => "crashed",
    CreatingReplica => "creating replica",
    Rewinding => "rewinding",
    Demoting => "demoting",
});
names!(ReplicationState { Streaming => "streaming", InArchiveRecovery => "in archive recovery" });
names!(RaftRole {
    Leader => "leader",
    Follower => "follower",
    Candidate => "candidate",
    Learner => "learner",
    Shutdown => "shutdown",
    Unknown => "unknown",
    None => "none",
});

/// A name that is not one of an enum's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a {what}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

impl Role {
    /// The role in Patroni's `/cluster` and `patronictl list`: the primary
    /// is the "leader" there.
    pub fn cluster_name(self) -> &'static str {
        match self {
            Role::Primary => "leader",
            other => other.as_str(),
        }
    }
}

/// WAL positions: written on a primary; received and replayed on a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Xlog {
    Primary(PrimaryXlog),
    Replica(ReplicaXlog),
}

/// A primary's WAL position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryXlog {
    pub location: Option<u64>,
}

/// A replica's WAL positions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaXlog {
    pub received_location: Option<u64>,
    pub replayed_location: Option<u64>,
    pub paused: bool,
}

impl Default for Xlog {
    fn default() -> Self {
        Xlog::Replica(ReplicaXlog::default())
    }
}

impl Xlog {
    /// A primary's write position.
    pub fn location(&self) -> Option<u64> {
        match self {
            Xlog::Primary(p) => p.location,
            Xlog::Replica(_) => None,
        }
    }

    /// A replica's receive position.
    pub fn received_location(&self) -> Option<u64> {
        match self {
            Xlog::Replica(r) => r.received_location,
            Xlog::Primary(_) => None,
        }
    }

    /// A replica's replay position.
    pub fn replayed_location(&self) -> Option<u64> {
        match self {
            Xlog::Replica(r) => r.replayed_location,
            Xlog::Primary(_) => None,
        }
    }
}

/// Patroni's `patroni` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatroniInfo {
    pub version: String,
    /// The cluster id.
    pub scope: String,
    /// The member name.
    pub name: String,
}

/// This node's view of Raft.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftInfo {
    pub role: RaftRole,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied: Option<u64>,
}

/// raftgres's own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftgresInfo {
    pub node_id: u64,
    /// The current primary epoch.
    pub epoch: u64,
    /// Node id of the primary the replicated state names.
    pub primary: Option<u64>,
    /// Time left on this node's primary lease.
    pub lease_remaining_ms: Option<u64>,
    pub raft: RaftInfo,
    /// The furthest WAL position this server has, `X/Y`.
    pub lsn: Option<String>,
    /// The last PostgreSQL action that failed here, until PostgreSQL
    /// accepts connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// On the Raft leader: why the lost primary cannot be replaced
    /// automatically, while that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_blocked: Option<String>,
    /// On the Raft leader: how long ago each member's daemon last reported
    /// (its heartbeat), in milliseconds, by node id. A member not heard from
    /// since this leader's election counts from the election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<BTreeMap<u64, u64>>,
}

/// A parameter whose new value waits for a restart (Patroni's
/// `pending_restart_reason` entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// What the running server uses.
    pub old_value: String,
    /// What the configuration asks for (`?` when it is not raftgres's).
    pub new_value: String,
}

/// A restart scheduled on a node (`POST /restart` with `schedule`), with
/// the conditions checked when it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRestart {
    /// RFC 3339.
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_pending: bool,
}

/// The node-status document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    /// `running`, `starting` or `stopped`.
    pub state: PgState,
    pub role: Role,
    pub server_version: Option<String>,
    pub timeline: Option<u32>,
    pub xlog: Xlog,
    pub replication_state: Option<ReplicationState>,
    pub database_system_identifier: Option<String>,
    /// No member holds the primary role.
    pub cluster_unlocked: bool,
    /// Maintenance mode.
    pub pause: bool,
    /// A changed parameter waits for a restart.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_restart_reason: BTreeMap<String, PendingChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<ScheduledRestart>,
    /// A synchronous standby (`on`, `strict`); shown only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_standby: bool,
    /// A quorum standby (quorum mode); shown only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quorum_standby: bool,
    pub patroni: PatroniInfo,
    pub raftgres: RaftgresInfo,
}

impl NodeStatus {
    /// The state a cluster listing shows: `streaming` for a streaming
    /// replica, else PostgreSQL's state.
    pub fn listed_state(&self) -> PgState {
        if self.replication_state == Some(ReplicationState::Streaming) { PgState::Streaming } else { self.state }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn replica() -> NodeStatus {
        NodeStatus {
            state: PgState::Running,
            role: Role::Replica,
            timeline: Some(2),
            xlog: Xlog::Replica(ReplicaXlog {
                received_location: Some(200),
                replayed_location: Some(150),
                paused: false,
            }),
            replication_state: Some(ReplicationState::Streaming),
            raftgres: RaftgresInfo {
                node_id: 2,
                raft: RaftInfo { role: RaftRole::Follower, term: 3, leader: Some(1), applied: Some(9) },
                lsn: Some("0/C8".into()),
                ..RaftgresInfo::default()
            },
            ..NodeStatus::default()
        }
    }

    #[test]
    fn serialized_in_patronis_spelling() {
        let v = serde_json::to_value(replica()).expect("serializes");
        assert_eq!(v["state"], "running");
        assert_eq!(v["role"], "replica");
        assert_eq!(v["replication_state"], "streaming");
        assert_eq!(v["xlog"], json!({"received_location": 200, "replayed_location": 150, "paused": false}));
        assert_eq!(v["raftgres"]["raft"]["role"], "follower");
        assert_eq!(v["raftgres"]["raft"]["term"], 3);
        let primary =
            NodeStatus { role: Role::Primary, xlog: Xlog::Primary(PrimaryXlog { location: None }), ..replica() };
        let v = serde_json::to_value(primary).expect("serializes");
        assert_eq!(v["xlog"], json!({"location": null}));
        assert_eq!(v["role"], "primary");
    }

    #[test]
    fn reads_back_what_it_writes() {
        for doc in [replica(), NodeStatus { xlog: Xlog::Primary(PrimaryXlog { location: Some(7) }), ..replica() }] {
            let text = serde_json::to_string(&doc).expect("serializes");
            assert_eq!(serde_json::from_str::<NodeStatus>(&text).expect("parses"), doc);
        }
        let doc: NodeStatus =
            serde_json::from_str(r#"{"state": "creating replica", "role": "replica"}"#).expect("sparse parses");
        assert_eq!(doc.state, PgState::CreatingReplica);
        // A newer daemon's names read as unknown rather than failing the
        // whole document.
        let doc: NodeStatus = serde_json::from_str(r#"{"role": "overlord", "state": "dreaming"}"#).expect("parses");
        assert_eq!((doc.role, doc.state), (Role::Unknown, PgState::Unknown));
    }

    #[test]
    fn names_round_trip() {
        for r in [Role::Primary, Role::Replica, Role::Unknown, Role::Unreachable] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_value(r).expect("serializes"), r.as_str());
        }
        for s in [PgState::CreatingReplica, PgState::Streaming, PgState::Demoting] {
            assert_eq!(s.as_str().parse::<PgState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).expect("serializes"), s.as_str());
        }
        for r in [RaftRole::Leader, RaftRole::Learner, RaftRole::None] {
            assert_eq!(r.as_str().parse::<RaftRole>(), Ok(r));
            assert_eq!(serde_json::to_value(r).expect("serializes"), r.as_str());
        }
        assert_eq!(Role::Primary.cluster_name(), "leader");
        assert!("boss".parse::<Role>().is_err());
    }
}
