//! The local PostgreSQL instance: finding its binaries, running them as the
//! right OS user, writing the configuration raftgres manages, and observing
//! the server over SQL.
//!
//! This module performs actions it is told to perform; it never decides
//! what PostgreSQL should be. That is `agent::plan`.

pub mod binaries;
pub mod conf;
pub mod control;
pub mod history;
pub mod lsn;
pub mod observe;
pub mod pidfile;
pub mod runner;
pub mod settings;

pub use binaries::Binaries;
pub use control::ClusterControlState;
pub use observe::{Observation, Observer};
pub use runner::{PgError, Runner};
