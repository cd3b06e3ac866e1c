//! The openraft type configuration of raftgres, declared once, and the
//! aliases of openraft's generic types used across the workspace.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::event::Event;
use crate::reject::Reject;

/// A node's id in the Raft group. Stable for the node's life.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The Raft types of raftgres: the log carries [`Request`]s, the state
    /// machine answers with [`Response`]s.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Snapshot = openraft::storage::Snapshot<TypeConfig>;
pub type RaftStorageError = openraft::StorageError<NodeId>;
pub type LogState = openraft::storage::LogState<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeInfo>;

/// How to reach a node: the address its Raft transport listens on, and the
/// address of its operator API. Carried in openraft's membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Human name of the member, unique in the cluster.
    pub name: String,
    /// `host:port` of the Raft gRPC transport.
    pub raft_addr: String,
    /// `host:port` of the HTTP API, empty when unknown.
    pub api_addr: String,
}

impl NodeInfo {
    pub fn new(name: impl Into<String>, raft_addr: impl Into<String>) -> Self {
        Self { name: name.into(), raft_addr: raft_addr.into(), api_addr: String::new() }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

/// One log entry's application payload: a command and the proposer's
/// context. The proposer's wall clock travels here so that `apply` never
/// reads a clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    /// Node that proposed the command.
    pub proposer: NodeId,
    /// Proposer's wall-clock time, milliseconds since the Unix epoch.
    pub proposed_at_ms: u64,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (by node {})", self.command, self.proposer)
    }
}

/// What applying one log entry produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A blank entry (a new leader's first entry).
    Blank,
    /// A Raft membership entry.
    Membership,
    /// The command's precondition held; these events were recorded.
    Applied(Vec<Event>),
    /// The command's precondition failed; nothing changed.
    Rejected(Reject),
}

impl Response {
    /// The command's result as a `Result`, for proposers.
    pub fn into_result(self) -> Result<Vec<Event>, Reject> {
        match self {
            Response::Applied(events) => Ok(events),
            Response::Rejected(reject) => Err(reject),
            Response::Blank | Response::Membership => Ok(Vec::new()),
        }
    }
}
