//! raftgres-api: what the daemon and its clients (`raftctl`, the chaos
//! harness, tests) share, with no daemon dependencies: the node and cluster
//! status documents with their roles and states as enums, their protobuf
//! conversions, address and size parsing, and the HAProxy renderer.
//!
//! It depends on `raftgres-proto` alone, so `raftctl` links neither sled,
//! openraft nor a PostgreSQL client. It must never reach into cluster
//! state, open files or sockets.

pub mod addr;
pub mod cluster;
pub mod convert;
pub mod haproxy;
pub mod patroni_config;
pub mod size;
pub mod status;
pub mod time;

pub use addr::HostPort;
pub use cluster::{ClusterStatus, MemberStatus, SwitchoverStatus};
pub use status::{NodeStatus, PendingChange, PgState, RaftRole, ReplicationState, Role, ScheduledRestart};
