//! Commands: what a proposer asks the cluster to do, each with the
//! precondition under which it applies.
//!
//! A command is checked against [`crate::ClusterState`] by
//! `ClusterState::apply`; it either records events or is rejected with a
//! [`crate::Reject`], deterministically on every replica.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dynamic_config::DynamicConfig;
use crate::member::{Member, MemberState, Tags};
use crate::timeline::Lsn;
use crate::typ::NodeId;

/// Why a primary was elected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionReason {
    /// The first primary of a new cluster.
    Bootstrap,
    /// The previous primary was lost (lease expired or released).
    Failover,
    /// A planned handover.
    Switchover,
    /// An operator chose the node.
    Manual,
}

impl ElectionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ElectionReason::Bootstrap => "bootstrap",
            ElectionReason::Failover => "failover",
            ElectionReason::Switchover => "switchover",
            ElectionReason::Manual => "manual",
        }
    }
}

impl fmt::Display for ElectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a primary gave up its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The daemon is shutting down cleanly.
    Shutdown,
    /// PostgreSQL crashed and could not be restarted.
    PostgresFailed,
    /// The primary demoted for a switchover.
    Switchover,
    /// An operator asked for it.
    Manual,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Shutdown => "shutdown",
            ReleaseReason::PostgresFailed => "postgres failed",
            ReleaseReason::Switchover => "switchover",
            ReleaseReason::Manual => "manual",
        }
    }
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to change the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Name the cluster and set its first dynamic configuration.
    /// Precondition: the cluster is not initialized.
    InitializeCluster { cluster_id: String, config: DynamicConfig },
    /// Register a member. Precondition: id and name are unused.
    AddMember { member: Member },
    /// Unregister a member. Precondition: it exists, is not the primary and
    /// is not a synchronous standby.
    RemoveMember { node: NodeId },
    /// Replace a member's tags. Precondition: it exists; tags are valid.
    SetMemberTags { node: NodeId, tags: Tags },
    /// Make `node` primary in epoch `if_epoch + 1`.
    /// Precondition: the current epoch is `if_epoch`.
    ElectPrimary { if_epoch: u64, node: NodeId, reason: ElectionReason },
    /// `node` gives up the primary role it holds in `epoch`.
    ReleasePrimary { epoch: u64, node: NodeId, reason: ReleaseReason },
    /// Replace the synchronous-standby set of the primary of `epoch`.
    SetSyncStandbys { epoch: u64, standbys: BTreeSet<NodeId> },
    /// Replace the dynamic configuration. With `if_version`, only if the
    /// current configuration version is that one (compare-and-set).
    ChangeConfig { if_version: Option<u64>, config: DynamicConfig },
    /// Turn maintenance mode (automatic failover paused) on or off.
    SetMaintenance { on: bool },
    /// Plan a switchover away from the current primary `from`, to `to` (or
    /// the best candidate), at `at_ms` (or as soon as possible).
    ScheduleSwitchover { from: NodeId, to: Option<NodeId>, at_ms: Option<u64> },
    /// Drop the scheduled switchover.
    CancelSwitchover,
    /// Record a member's PostgreSQL state; records an event only on change.
    SetMemberState { node: NodeId, state: MemberState },
    /// The primary `node` of `epoch` runs on `timeline`, which began at
    /// `switchpoint`. Precondition: it is the current primary, and the
    /// timeline is not older than the one recorded.
    RecordPromotion { epoch: u64, node: NodeId, timeline: u32, switchpoint: u64 },
    /// The primary `node` of `epoch` has written WAL up to `lsn`; records an
    /// event only when the position advanced. Precondition: it is the
    /// current primary.
    RecordPosition { epoch: u64, node: NodeId, timeline: u32, lsn: u64 },
    /// An operator accepts losing the writes only the lost primary of
    /// `epoch` had, to fail over to `to` when the lag or timeline rules
    /// leave no candidate. Precondition: `epoch` is current and `to` may be
    /// promoted.
    ForceFailover { epoch: u64, to: NodeId },
    /// Replace the synchronous-standby set of the primary of `epoch`, if it
    /// is still `from` (compare-and-set: a delayed widening must not undo a
    /// later narrowing). Widen only once PostgreSQL waits for the added
    /// standbys and they have caught up; narrow before PostgreSQL stops
    /// waiting (RFC 0001).
    ChangeSyncStandbys { epoch: u64, from: BTreeSet<NodeId>, to: BTreeSet<NodeId> },
    /// Replace the quorum record of the primary of `epoch`: PostgreSQL
    /// waits for any `quorum` of `to` (`ANY k (…)`), if the record is still
    /// `from` with `from_quorum` (compare-and-set). Added standbys and a
    /// lower quorum reach Raft first; removed standbys and a higher quorum
    /// reach PostgreSQL first (RFC 0003). Precondition: `quorum` is at most
    /// the size of `to`.
    ChangeSyncQuorum { epoch: u64, from: BTreeSet<NodeId>, from_quorum: Option<u32>, to: BTreeSet<NodeId>, quorum: u32 },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::InitializeCluster { cluster_id, .. } => {
                write!(f, "initialize cluster {cluster_id}")
            }
            Command::AddMember { member } => write!(f, "add member {member}"),
            Command::RemoveMember { node } => write!(f, "remove member {node}"),
            Command::SetMemberTags { node, tags } => write!(f, "set tags of {node} to {tags:?}"),
            Command::ElectPrimary { if_epoch, node, reason } => {
                write!(f, "elect {node} primary in epoch {} if epoch is {if_epoch} ({reason})", if_epoch + 1)
            }
            Command::ReleasePrimary { epoch, node, reason } => {
                write!(f, "release primary {node} of epoch {epoch} ({reason})")
            }
            Command::SetSyncStandbys { epoch, standbys } => {
                write!(f, "set sync standbys of epoch {epoch} to {standbys:?}")
            }
            Command::ChangeConfig { if_version, .. } => match if_version {
                Some(v) => write!(f, "change config if version is {v}"),
                None => write!(f, "change config"),
            },
            Command::SetMaintenance { on } => {
                write!(f, "maintenance {}", if *on { "on" } else { "off" })
            }
            Command::ScheduleSwitchover { from, to, at_ms } => {
                write!(f, "schedule switchover from {from} to {to:?} at {at_ms:?}")
            }
            Command::CancelSwitchover => write!(f, "cancel switchover"),
            Command::SetMemberState { node, state } => write!(f, "member {node} is {state}"),
            Command::RecordPromotion { epoch, node, timeline, switchpoint } => {
                write!(f, "node {node} promoted onto timeline {timeline} at {} in epoch {epoch}", Lsn(*switchpoint))
            }
            Command::RecordPosition { epoch, node, lsn, .. } => {
                write!(f, "primary {node} of epoch {epoch} at {}", Lsn(*lsn))
            }
            Command::ForceFailover { epoch, to } => {
                write!(f, "fail over from epoch {epoch} to {to}, accepting the loss of writes only the old primary had")
            }
            Command::ChangeSyncStandbys { epoch, from, to } => {
                write!(f, "change the sync standbys of epoch {epoch} from {from:?} to {to:?}")
            }
            Command::ChangeSyncQuorum { epoch, from, from_quorum, to, quorum } => {
                let k = from_quorum.map_or_else(|| "all".to_string(), |k| k.to_string());
                write!(f, "change the sync quorum of epoch {epoch} from any {k} of {from:?} to any {quorum} of {to:?}")
            }
        }
    }
}
