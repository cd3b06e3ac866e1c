//! raftgres-storage: the replicated event model and its durable home.
//!
//! This crate owns what the Raft log *means* and how it is kept on disk:
//! - the event model: [`Command`]s with preconditions, the [`Event`]s they
//!   record, [`ClusterState`] as a pure fold of events, and the [`Reject`]
//!   reasons a proposer gets back;
//! - the openraft type configuration ([`typ`]);
//! - the sled-backed log store and state machine, snapshots, and the
//!   versioned on-disk format.
//!
//! It must never open a socket, spawn PostgreSQL, or read the clock inside
//! `apply`: time travels inside a command as data.

#![allow(clippy::result_large_err)]

pub mod clock;
pub mod command;
pub mod dynamic_config;
pub mod encoding;
pub mod error;
pub mod event;
pub mod keyspace;
pub mod log_store;
pub mod member;
pub mod ondisk;
pub mod reject;
pub mod snapshot;
pub mod state;
pub mod state_machine;
pub mod store;
pub mod timeline;
pub mod typ;

pub use clock::now_ms;
pub use command::{Command, ElectionReason, ReleaseReason};
pub use dynamic_config::{ConfigViolation, DynamicConfig, SyncMode};
pub use error::StorageError;
pub use event::{Event, EventRecord};
pub use log_store::LogStore;
pub use member::{InvalidName, Member, MemberState, Tags, validate_name};
pub use reject::Reject;
pub use state::{ApplyContext, ClusterState, Primary, Switchover};
pub use state_machine::{AppliedState, StateMachine};
pub use store::Store;
pub use timeline::{ForcedFailover, Lsn, TimelineRecord, WalPosition};
pub use typ::{NodeId, NodeInfo, Request, Response, TypeConfig};
