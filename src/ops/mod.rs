//! Operator actions, shared by the admin gRPC service and the HTTP API:
//! each checks its input against the replicated state first, so bad input
//! is refused with a clear error and changes nothing, then goes through
//! Raft (forwarded to the leader by the handle) or to the member it is
//! about.
//!
//! One file per topic: [`status`] (the cluster as this node sees it),
//! [`membership`] (add, promote, remove), [`handover`] (switchover,
//! failover, maintenance), [`config`] (dynamic configuration and history);
//! requests about this node's own PostgreSQL go to the agent.

pub mod config;
pub mod handover;
pub mod membership;
pub mod pgbouncer;
pub mod restart;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use raftgres_raft::{HandleError, RaftHandle};
use raftgres_storage::{ClusterState, Command, NodeId, NodeInfo, Reject};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use self::config::ConfigChange;
pub use self::handover::HANDOVER_WAIT;
use crate::agent::{AgentError, AgentRequest};
use crate::lease::ReportTimes;
use crate::postgres::Observation;
use crate::postgres::settings::ParameterState;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request itself is malformed; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// It names a member or object the cluster does not have; nothing was
    /// changed.
    #[error("{0}")]
    NotFound(String),
    /// The cluster state does not allow it now; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// A compare-and-set lost: the object changed since the caller read
    /// it; nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// No quorum, no leader, or a member did not answer. Whether a write
    /// took effect is unknown only when the message says so.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<HandleError> for OpError {
    fn from(e: HandleError) -> Self {
        match e {
            HandleError::Refused(m) => OpError::Refused(m),
            HandleError::Fatal(m) => OpError::Internal(m),
            other => OpError::Unavailable(other.to_string()),
        }
    }
}

impl From<Reject> for OpError {
    fn from(r: Reject) -> Self {
        match r {
            Reject::UnknownMember { .. } | Reject::NoSwitchover => OpError::NotFound(r.to_string()),
            Reject::InvalidConfig { .. } | Reject::InvalidTag { .. } | Reject::InvalidName(_) => {
                OpError::Invalid(r.to_string())
            }
            Reject::ConfigVersionMismatch { .. } => OpError::Conflict(r.to_string()),
            other => OpError::Refused(other.to_string()),
        }
    }
}

impl From<AgentError> for OpError {
    /// Either way the member is not in the state asked for; the message
    /// says whether anything was done. Both answer like Patroni's
    /// `/restart` failure (503 over HTTP, exit 1 from raftctl).
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Refused(m) => OpError::Refused(m),
            AgentError::Failed(m) => OpError::Refused(m),
        }
    }
}

/// The result of a change: a message for people and the last log index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Done {
    pub message: String,
    pub index: u64,
}

impl Done {
    fn new(message: impl Into<String>, index: u64) -> Self {
        Self { message: message.into(), index }
    }
}

/// The operations of one daemon.
#[derive(Clone)]
pub struct Ops {
    pub handle: RaftHandle,
    agent: mpsc::Sender<AgentRequest>,
    /// What the agent last observed of the local server.
    observation: watch::Receiver<Observation>,
    /// The local server's parameter catalog and pending restarts.
    parameters: watch::Receiver<ParameterState>,
    /// This node's scheduled restart.
    scheduled: restart::ScheduleSlot,
    /// When each node last reported, while this node leads Raft.
    reports: watch::Receiver<ReportTimes>,
    /// Cancelled when the daemon stops: ends long-lived calls (event
    /// streams) so the server can shut down.
    pub shutdown: CancellationToken,
}

impl Ops {
    pub fn new(
        handle: RaftHandle,
        agent: mpsc::Sender<AgentRequest>,
        observation: watch::Receiver<Observation>,
        parameters: watch::Receiver<ParameterState>,
        reports: watch::Receiver<ReportTimes>,
    ) -> Self {
        Self {
            handle,
            agent,
            observation,
            parameters,
            reports,
            scheduled: Default::default(),
            shutdown: CancellationToken::new(),
        }
    }

    fn state(&self) -> Arc<ClusterState> {
        self.handle.cluster_state()
    }

    /// Finds a member by name or numeric id, among registered members and
    /// Raft members.
    pub fn resolve(&self, who: &str) -> Result<NodeId, OpError> {
        let who = who.trim();
        if who.is_empty() {
            return Err(OpError::Invalid("a member name or id is required".into()));
        }
        let state = self.state();
        if let Some(m) = state.members.values().find(|m| m.name == who) {
            return Ok(m.id);
        }
        let raft = self.raft_members();
        if let Some((id, _)) = raft.iter().find(|(_, (info, _))| info.name == who) {
            return Ok(*id);
        }
        if let Ok(id) = who.parse::<NodeId>()
            && (state.members.contains_key(&id) || raft.contains_key(&id))
        {
            return Ok(id);
        }
        let mut known: Vec<String> = state.members.values().map(|m| m.name.clone()).collect();
        known.extend(raft.values().map(|(i, _)| i.name.clone()).filter(|n| !n.is_empty()));
        known.sort();
        known.dedup();
        Err(OpError::NotFound(format!("unknown member {who:?}; members: {}", known.join(", "))))
    }

    fn name_of(&self, state: &ClusterState, id: NodeId) -> String {
        state
            .member(id)
            .map(|m| m.name.clone())
            .or_else(|| self.raft_members().get(&id).map(|(i, _)| i.name.clone()))
            .unwrap_or_else(|| id.to_string())
    }

    /// Raft membership: id -> (info, is voter).
    fn raft_members(&self) -> BTreeMap<NodeId, (NodeInfo, bool)> {
        let applied = self.handle.local_state();
        let membership = applied.membership.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership.nodes().map(|(id, info)| (*id, (info.clone(), voters.contains(id)))).collect()
    }

    async fn propose(&self, cmd: Command) -> Result<u64, OpError> {
        let p = self.handle.propose(cmd).await?;
        p.outcome.map_err(OpError::from)?;
        Ok(p.log_id.index)
    }

    /// The Raft address of a member, for calls that must run on it.
    pub fn raft_addr_of(&self, id: NodeId) -> Option<String> {
        self.raft_members().get(&id).map(|(i, _)| i.raft_addr.clone())
    }

    /// Restarts this node's PostgreSQL.
    pub async fn restart_local(&self) -> Result<Done, OpError> {
        let (tx, rx) = oneshot::channel();
        self.ask_agent(AgentRequest::Restart { reply: tx }, rx).await
    }

    /// Re-clones this node's data directory from the primary.
    pub async fn reinitialize_local(&self) -> Result<Done, OpError> {
        let state = self.state();
        if state.primary_node() == Some(self.handle.id()) {
            return Err(OpError::Refused("the primary cannot be reinitialized; switch over first".into()));
        }
        if state.primary.is_none() {
            return Err(OpError::Refused("no primary to clone from".into()));
        }
        let (tx, rx) = oneshot::channel();
        self.ask_agent(AgentRequest::Reinitialize { reply: tx }, rx).await
    }

    async fn ask_agent(
        &self,
        req: AgentRequest,
        rx: oneshot::Receiver<Result<String, AgentError>>,
    ) -> Result<Done, OpError> {
        self.agent.send(req).await.map_err(|_| OpError::Unavailable("the agent is not running".into()))?;
        match rx.await {
            Ok(Ok(message)) => Ok(Done::new(message, 0)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(OpError::Unavailable("the agent stopped before answering".into())),
        }
    }
}
