//! The controller: runs on every daemon, acts only on the Raft leader.
//! It initializes the cluster, elects the bootstrap primary, and fails over
//! when the primary's lease has run out or the primary released it.
//!
//! [`decide`] is pure (state, views, time in; commands out); [`task`] feeds
//! it and proposes what it returns. It never touches PostgreSQL. The
//! leader also keeps itself off the primary's node ([`placement`]).

pub mod decide;
pub mod placement;
pub mod task;

pub use decide::{Decision, decide};
