//! Why a command was rejected. A rejection is a deterministic result
//! returned to the proposer; nothing changed.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dynamic_config::ConfigViolation;
use crate::member::{InvalidName, MemberState};
use crate::typ::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum Reject {
    #[error("the cluster is not initialized")]
    NotInitialized,
    #[error("the cluster is already initialized as {cluster_id}")]
    AlreadyInitialized { cluster_id: String },
    #[error("cluster id must not be empty")]
    EmptyClusterId,
    #[error("unknown member {node}")]
    UnknownMember { node: NodeId },
    #[error("member id {node} is already taken by {name}")]
    DuplicateMember { node: NodeId, name: String },
    #[error("member name {name} is already taken by node {node}")]
    DuplicateName { name: String, node: NodeId },
    #[error("member name {0}")]
    InvalidName(#[from] InvalidName),
    #[error("invalid tag {key}={value}: {reason}")]
    InvalidTag { key: String, value: String, reason: String },
    #[error("stale epoch: the command expected epoch {expected}, the cluster is at {current}")]
    StaleEpoch { expected: u64, current: u64 },
    #[error("bootstrap is allowed only before the first primary; the cluster is at epoch {current}")]
    AlreadyBootstrapped { current: u64 },
    #[error("no primary was ever bootstrapped")]
    NotBootstrapped,
    #[error("node {node} is already primary in epoch {epoch}")]
    AlreadyPrimary { node: NodeId, epoch: u64 },
    #[error("node {node} is not primary in epoch {epoch} (primary: {primary:?}, current epoch {current})")]
    NotPrimary { node: NodeId, epoch: u64, primary: Option<NodeId>, current: u64 },
    #[error("node {node} is tagged nofailover")]
    NoFailover { node: NodeId },
    #[error("node {node} is not in the synchronous-standby set {standbys:?}")]
    NotSynchronous { node: NodeId, standbys: Vec<NodeId> },
    #[error("node {node} is the primary; switch over or release it first")]
    MemberIsPrimary { node: NodeId },
    #[error("node {node} is a synchronous standby; narrow the set first")]
    MemberIsSynchronous { node: NodeId },
    #[error("node {node} cannot be a synchronous standby: {reason}")]
    InvalidStandby { node: NodeId, reason: String },
    #[error("invalid configuration: {}", display_violations(violations))]
    InvalidConfig { violations: Vec<ConfigViolation> },
    #[error("config version mismatch: expected {expected}, current {current}")]
    ConfigVersionMismatch { expected: u64, current: u64 },
    #[error("maintenance mode is already {}", if *on { "on" } else { "off" })]
    MaintenanceUnchanged { on: bool },
    #[error("a switchover from {from} is already scheduled")]
    SwitchoverPending { from: NodeId },
    #[error("no switchover is scheduled")]
    NoSwitchover,
    #[error("invalid switchover: {reason}")]
    InvalidSwitchover { reason: String },
    #[error("member {node} cannot move from {from} to {to}")]
    InvalidStateTransition { node: NodeId, from: MemberState, to: MemberState },
    /// A valid configuration that may not replace the current one at run
    /// time (see [`crate::DynamicConfig::check_change`]).
    #[error("{}", display_violations(violations))]
    ConfigChangeRefused { violations: Vec<ConfigViolation> },
    /// A promotion record older than the one the state holds.
    #[error(
        "timeline {timeline} is older than the recorded timeline {recorded}: this node's history is not the \
         cluster's"
    )]
    TimelineRegressed { timeline: u32, recorded: u32 },
    /// A compare-and-set of the synchronous-standby set lost.
    #[error("the synchronous-standby set is {current:?}, not {expected:?}")]
    SyncSetMoved { expected: Vec<NodeId>, current: Vec<NodeId> },
    /// Strict synchronous mode with an empty set: no member is known to
    /// hold every acknowledged write.
    #[error(
        "node {node} cannot be promoted: synchronous_mode is strict and no standby is synchronous, so no member is \
         known to hold every acknowledged write"
    )]
    NoSynchronousStandby { node: NodeId },
    /// A compare-and-set of the quorum record lost.
    #[error(
        "the synchronous quorum is {} of {current:?}, not {} of {expected:?}",
        quorum_text(*current_quorum),
        quorum_text(*expected_quorum)
    )]
    SyncQuorumMoved {
        expected: Vec<NodeId>,
        expected_quorum: Option<u32>,
        current: Vec<NodeId>,
        current_quorum: Option<u32>,
    },
    /// A quorum larger than the standbys it counts.
    #[error("a quorum of {quorum} cannot be met by {standbys} standbys")]
    InvalidQuorum { quorum: u32, standbys: u32 },
}

fn quorum_text(k: Option<u32>) -> String {
    k.map_or_else(|| "all".into(), |k| format!("any {k}"))
}

fn display_violations(v: &[ConfigViolation]) -> String {
    v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
}
