//! Operator requests to the agent about this node's own PostgreSQL, carried
//! out between turns of its loop.

use tokio::sync::oneshot;

/// Why the agent did not carry out a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// Not allowed in the current state; nothing was done.
    #[error("{0}")]
    Refused(String),
    /// Started, but did not finish.
    #[error("{0}")]
    Failed(String),
}

/// What the agent is asked to do to the local PostgreSQL; the reply is a
/// message for people.
#[derive(Debug)]
pub enum AgentRequest {
    Restart { reply: oneshot::Sender<Result<String, AgentError>> },
    Reinitialize { reply: oneshot::Sender<Result<String, AgentError>> },
}
