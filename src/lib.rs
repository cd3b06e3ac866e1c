//! raftgres: PostgreSQL high availability without an external consensus
//! store. Each daemon embeds a Raft replica whose log is the cluster's event
//! log; failover, health endpoints, the virtual IP and the PgBouncer target
//! all derive from that replicated state.
//!
//! The Raft core lives in `raftgres-raft` and the event model in
//! `raftgres-storage`; this crate is the daemon and `raftctl`. It never
//! opens sled directly.

pub mod admin;
pub mod agent;
pub mod callbacks;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod fence;
pub mod handoff;
pub mod history;
pub mod http;
pub mod lease;
pub mod logging;
pub mod ops;
pub mod pgbouncer;
pub mod playground;
pub mod postgres;
pub mod proxy_daemon;
pub mod reload;
pub mod vip;
pub mod watchdog;
