//! Errors of the Raft layer, in two levels: [`HandleError`] says one request
//! failed (and whether its outcome is known), [`NodeError`] says the node
//! could not start or has died.

use std::time::Duration;

use raftgres_storage::NodeId;
use thiserror::Error;

/// A node could not start, or stopped for good.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("open Raft storage: {0}")]
    Storage(raftgres_storage::StorageError),
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("Raft core stopped: {0}")]
    Fatal(String),
    #[error("Raft transport on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
}

impl From<raftgres_storage::StorageError> for NodeError {
    fn from(e: raftgres_storage::StorageError) -> Self {
        NodeError::Storage(e)
    }
}

/// One request through the handle failed.
#[derive(Debug, Error)]
pub enum HandleError {
    /// No leader was known before the deadline (no quorum, or an election in
    /// progress). Nothing was proposed.
    #[error("no Raft leader known after {waited:?}")]
    NoLeader { waited: Duration },
    /// The deadline passed; for a proposal, it may or may not have committed.
    #[error("timed out after {waited:?} during {during}")]
    Timeout { waited: Duration, during: &'static str },
    /// The leader could not be reached or answered with a transport error.
    /// `outcome_unknown` is true when the request may have been delivered.
    #[error("forward to leader {leader} at {addr}: {message}")]
    Transport { leader: NodeId, addr: String, message: String, outcome_unknown: bool },
    /// A peer refused the request because it belongs to another cluster.
    #[error("{addr} refused the request: {message}")]
    WrongCluster { addr: String, message: String },
    /// The request was delivered and refused (e.g. a membership change that
    /// is not allowed now).
    #[error("{0}")]
    Refused(String),
    /// The leader accepted the request but could not confirm its outcome
    /// (e.g. it lost leadership while committing).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// This node's Raft core has stopped; the node must be restarted.
    #[error("this Raft node has stopped: {0}")]
    Fatal(String),
}
