//! Events: the facts the replicated log records. The cluster state is the
//! fold of these, and `raftctl history` shows them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{ElectionReason, ReleaseReason};
use crate::dynamic_config::DynamicConfig;
use crate::member::{Member, MemberState, Tags};
use crate::timeline::Lsn;
use crate::typ::NodeId;

/// One fact about the cluster's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    ClusterInitialized {
        cluster_id: String,
        config: DynamicConfig,
    },
    MemberAdded {
        member: Member,
    },
    MemberRemoved {
        node: NodeId,
    },
    MemberTagsChanged {
        node: NodeId,
        tags: Tags,
    },
    PrimaryElected {
        epoch: u64,
        node: NodeId,
        reason: ElectionReason,
    },
    PrimaryReleased {
        epoch: u64,
        node: NodeId,
        reason: ReleaseReason,
    },
    SyncStandbysChanged {
        epoch: u64,
        standbys: BTreeSet<NodeId>,
    },
    ConfigChanged {
        version: u64,
        config: DynamicConfig,
    },
    MaintenanceChanged {
        on: bool,
    },
    SwitchoverScheduled {
        from: NodeId,
        to: Option<NodeId>,
        at_ms: Option<u64>,
    },
    SwitchoverCancelled {
        from: NodeId,
        to: Option<NodeId>,
    },
    MemberStateChanged {
        node: NodeId,
        from: MemberState,
        to: MemberState,
    },
    PromotionRecorded {
        epoch: u64,
        node: NodeId,
        timeline: u32,
        switchpoint: u64,
    },
    /// Recorded about once a second; kept in the state, not in the history.
    PositionRecorded {
        epoch: u64,
        node: NodeId,
        timeline: u32,
        lsn: u64,
    },
    FailoverForced {
        epoch: u64,
        to: NodeId,
    },
    /// Quorum mode: the primary of `epoch` waits for any `quorum` of
    /// `standbys`; 0 means it waits for none (degraded to asynchronous).
    SyncQuorumChanged {
        epoch: u64,
        standbys: BTreeSet<NodeId>,
        quorum: u32,
    },
}

impl Event {
    /// The event's kind in snake_case, as `raftctl history` and the APIs
    /// name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ClusterInitialized { .. } => "cluster_initialized",
            Event::MemberAdded { .. } => "member_added",
            Event::MemberRemoved { .. } => "member_removed",
            Event::MemberTagsChanged { .. } => "member_tags_changed",
            Event::PrimaryElected { .. } => "primary_elected",
            Event::PrimaryReleased { .. } => "primary_released",
            Event::SyncStandbysChanged { .. } => "sync_standbys_changed",
            Event::ConfigChanged { .. } => "config_changed",
            Event::MaintenanceChanged { .. } => "maintenance_changed",
            Event::SwitchoverScheduled { .. } => "switchover_scheduled",
            Event::SwitchoverCancelled { .. } => "switchover_cancelled",
            Event::MemberStateChanged { .. } => "member_state_changed",
            Event::PromotionRecorded { .. } => "promotion_recorded",
            Event::PositionRecorded { .. } => "position_recorded",
            Event::FailoverForced { .. } => "failover_forced",
            Event::SyncQuorumChanged { .. } => "sync_quorum_changed",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ClusterInitialized { cluster_id, .. } => {
                write!(f, "cluster {cluster_id} initialized")
            }
            Event::MemberAdded { member } => write!(f, "member {member} added"),
            Event::MemberRemoved { node } => write!(f, "member {node} removed"),
            Event::MemberTagsChanged { node, tags } => write!(f, "member {node} tags {tags:?}"),
            Event::PrimaryElected { epoch, node, reason } => {
                write!(f, "node {node} elected primary in epoch {epoch} ({reason})")
            }
            Event::PrimaryReleased { epoch, node, reason } => {
                write!(f, "node {node} released primary of epoch {epoch} ({reason})")
            }
            Event::SyncStandbysChanged { epoch, standbys } => {
                write!(f, "sync standbys of epoch {epoch}: {standbys:?}")
            }
            Event::ConfigChanged { version, .. } => {
                write!(f, "config changed to version {version}")
            }
            Event::MaintenanceChanged { on } => {
                write!(f, "maintenance {}", if *on { "on" } else { "off" })
            }
            Event::SwitchoverScheduled { from, to, at_ms } => {
                write!(f, "switchover from {from} to {to:?} scheduled at {at_ms:?}")
            }
            Event::SwitchoverCancelled { from, to } => {
                write!(f, "switchover from {from} to {to:?} cancelled")
            }
            Event::MemberStateChanged { node, from, to } => {
                write!(f, "member {node}: {from} -> {to}")
            }
            Event::PromotionRecorded { epoch, node, timeline, switchpoint } => {
                write!(f, "node {node} runs epoch {epoch} on timeline {timeline} from {}", Lsn(*switchpoint))
            }
            Event::PositionRecorded { epoch, node, lsn, .. } => {
                write!(f, "primary {node} of epoch {epoch} at {}", Lsn(*lsn))
            }
            Event::FailoverForced { epoch, to } => write!(
                f,
                "operator forced a failover from epoch {epoch} to node {to}, accepting the loss of writes only the \
                 old primary had"
            ),
            Event::SyncQuorumChanged { epoch, standbys, quorum } => {
                write!(f, "sync quorum of epoch {epoch}: any {quorum} of {standbys:?}")
            }
        }
    }
}

/// An event with where and when it was recorded: the Raft log index of the
/// command that produced it and the proposer's timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub index: u64,
    pub at_ms: u64,
    pub event: Event,
}

impl fmt::Display for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.index, self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ElectionReason;

    /// The kind is the variant's name in snake_case, as the serialized
    /// event spells it.
    #[test]
    fn kinds_are_the_variant_names_in_snake_case() {
        let events = [
            Event::ClusterInitialized { cluster_id: "c".into(), config: DynamicConfig::default() },
            Event::MemberAdded { member: Member::new(1, "a") },
            Event::MemberRemoved { node: 1 },
            Event::MemberTagsChanged { node: 1, tags: Tags::new() },
            Event::PrimaryElected { epoch: 1, node: 1, reason: ElectionReason::Bootstrap },
            Event::PrimaryReleased { epoch: 1, node: 1, reason: ReleaseReason::Shutdown },
            Event::SyncStandbysChanged { epoch: 1, standbys: BTreeSet::new() },
            Event::ConfigChanged { version: 2, config: DynamicConfig::default() },
            Event::MaintenanceChanged { on: true },
            Event::SwitchoverScheduled { from: 1, to: None, at_ms: None },
            Event::SwitchoverCancelled { from: 1, to: None },
            Event::MemberStateChanged { node: 1, from: MemberState::Unknown, to: MemberState::Running },
            Event::PromotionRecorded { epoch: 2, node: 1, timeline: 2, switchpoint: 0x300_0060 },
            Event::PositionRecorded { epoch: 2, node: 1, timeline: 2, lsn: 0x300_0100 },
            Event::FailoverForced { epoch: 2, to: 3 },
        ];
        for e in events {
            let v = serde_json::to_value(&e).expect("events serialize");
            let variant = v.as_object().and_then(|m| m.keys().next().cloned()).expect("an externally tagged enum");
            let mut snake = String::new();
            for (i, c) in variant.chars().enumerate() {
                if c.is_ascii_uppercase() {
                    if i > 0 {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                } else {
                    snake.push(c);
                }
            }
            assert_eq!(e.kind(), snake);
        }
    }
}
