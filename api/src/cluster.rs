//! The whole cluster as one node sees it: `raftctl list`, `/cluster` and
//! the admin service's `Status` call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::status::{PendingChange, PgState, RaftRole, Role};

/// One member, from the replicated state and its own API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub name: String,
    /// Where clients reach its PostgreSQL.
    pub host: String,
    pub port: u16,
    pub api_url: String,
    pub raft_addr: String,
    /// Live, from the member's API; `unreachable` when it did not answer.
    pub role: Role,
    pub state: PgState,
    pub timeline: Option<u32>,
    /// Bytes replayed behind the primary; 0 on the primary.
    pub lag_bytes: Option<u64>,
    pub raft_role: RaftRole,
    /// The member's own Raft term, when it answered.
    pub raft_term: Option<u64>,
    pub tags: BTreeMap<String, String>,
    /// Registered in the replicated state (a learner may not be yet).
    pub registered: bool,
    pub lsn: Option<String>,
    /// Parameters whose change waits for a restart of this member.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_restart: BTreeMap<String, PendingChange>,
    /// The member's last failed PostgreSQL action, while it is not up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// A restart scheduled on it, when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<String>,
    /// In the committed synchronous-standby set (synchronous mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_standby: bool,
    /// In the set PostgreSQL takes any `k` of (quorum mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quorum_standby: bool,
}

/// A scheduled or running switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverStatus {
    pub from: String,
    /// None: the best replica.
    pub to: Option<String>,
    /// None: now.
    pub at_ms: Option<u64>,
}

/// The cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub epoch: u64,
    /// Name of the primary.
    pub primary: Option<String>,
    pub maintenance: bool,
    pub config_version: u64,
    pub switchover: Option<SwitchoverStatus>,
    pub raft_term: u64,
    pub raft_leader: Option<u64>,
    pub failovers: u64,
    pub switchovers: u64,
    pub members: Vec<MemberStatus>,
    /// The node that answered.
    pub served_by: u64,
    /// The view could not be confirmed with the Raft leader (no quorum, or
    /// the node is no longer a member): it may be out of date.
    pub stale: bool,
    /// Why the lost primary cannot be replaced automatically, as the Raft
    /// leader's controller last concluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_blocked: Option<String>,
}
