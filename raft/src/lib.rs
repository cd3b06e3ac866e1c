//! raftgres-raft: openraft over gRPC.
//!
//! This crate owns the Raft transport (a tonic service and client that carry
//! openraft's messages, refusing traffic of another cluster), starting,
//! initializing and joining a node, and a small handle API the daemon uses:
//! propose a command, linearizable read, membership change, metrics.
//!
//! It must never know about PostgreSQL: the meaning of the log belongs to
//! `raftgres-storage`, the use of it to the daemon.

#![allow(clippy::result_large_err)]

pub mod confirm;
pub mod convert;
pub mod error;
pub mod handle;
pub mod network;
pub mod node;
pub mod piggyback;
pub mod pulse;
pub mod witness;

pub use convert::forward::{ForwardRequest, ForwardResponse, MembershipChange};
pub use error::{HandleError, NodeError};
pub use handle::{AppHandler, Proposal, RaftHandle, RaftStatus};
pub use network::filter::NetworkFilter;
pub use node::{NodeConfig, RaftNode};
pub use openraft::ServerState;
pub use piggyback::Rider;
pub use raftgres_storage::{NodeId, NodeInfo};
pub use witness::{Inherited, LeaseWitness};
