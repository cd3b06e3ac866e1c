//! The agent: runs on every daemon and makes the local PostgreSQL match the
//! replicated state. [`plan`] is pure (desired state and observations in,
//! actions out); [`task`] observes, plans, acts and reports.

pub mod marker;
pub mod plan;
pub mod request;
pub mod sync;
pub mod task;

pub use plan::{PgAction, PlanInput, plan};
pub use request::{AgentError, AgentRequest};
