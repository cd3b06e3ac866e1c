//! The handle the daemon uses to talk to its Raft node: propose a command,
//! read linearizably, change membership, read metrics. Requests a follower
//! cannot serve are forwarded to the leader over the Raft transport.
//!
//! Proposals are at-least-once across a leader change: a proposal the old
//! leader appended but did not confirm may still commit, and the retry is
//! then applied again. Commands that change roles carry a precondition
//! (epoch, config version, current state), so their repeat is rejected.
//! Reports of a current value (member state, tags, a config change without
//! a version) are last-writer-wins: a delayed repeat can briefly restore an
//! older value until the next report.

use crate::network::security::Transport;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft, ServerState};
use raftgres_storage::typ::{LogId, RaftMetrics};
use raftgres_storage::{
    AppliedState, ClusterState, Command, Event, NodeId, NodeInfo, Reject, Request, StateMachine, TypeConfig,
};
use tokio::sync::watch;

use crate::confirm::AckClock;
use crate::convert::{
    self,
    forward::{ForwardError, ForwardRequest, ForwardResponse, MembershipChange},
};
use crate::error::HandleError;
use crate::network::filter::NetworkFilter;
use crate::network::peers::Peers;
use crate::node::NodeConfig;
use crate::piggyback::{Rider, RiderSlot};
use crate::witness::{Inherited, LeaseWitness};

/// Serves application messages that followers send to the Raft leader
/// over the Raft transport (`RaftHandle::call_leader`). Runs on the leader
/// only; it decides itself what leadership confirmation it needs.
pub trait AppHandler: Send + Sync + 'static {
    fn call(&self, from: NodeId, payload: Vec<u8>) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;
}

/// The committed result of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub log_id: LogId,
    /// The events recorded, or why the command was rejected.
    pub outcome: Result<Vec<Event>, Reject>,
}

/// A summary of the node's Raft metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: NodeId,
    pub role: ServerState,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Leader only: how long ago a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

impl RaftStatus {
    /// This node is the leader it knows of.
    pub fn is_leader(&self) -> bool {
        self.role == ServerState::Leader && self.leader == Some(self.id)
    }

    /// This node is in the Raft membership, as a voter or a learner.
    pub fn is_member(&self) -> bool {
        self.voters.contains(&self.id) || self.learners.contains(&self.id)
    }
}

/// Cheap to clone; every clone talks to the same node.
#[derive(Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    cluster_id: String,
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    filter: NetworkFilter,
    request_timeout: Duration,
    transport: Transport,
    /// Shared with openraft's network: one channel per peer.
    peers: Peers,
    /// Shared with openraft's network: lease bounds noticed and witnessed.
    witness: LeaseWitness,
    /// Shared with openraft's network: which peers accepted what.
    acks: AckClock,
    app: Mutex<Option<Arc<dyn AppHandler>>>,
    /// Shared with openraft's network: what rides on AppendEntries.
    rider: RiderSlot,
    /// Asks for a heartbeat ([`crate::pulse`]).
    pulse: crate::pulse::Pulse,
}

impl RaftHandle {
    pub(crate) fn new(
        config: &NodeConfig,
        raft: Raft<TypeConfig>,
        sm: StateMachine,
        shared: crate::network::Shared,
    ) -> Self {
        let crate::network::Shared { filter, peers, witness, acks, rider, pulse } = shared;
        Self {
            inner: Arc::new(Inner {
                id: config.node_id,
                cluster_id: config.cluster_id.clone(),
                raft,
                sm,
                filter,
                request_timeout: config.request_timeout,
                transport: config.transport.clone(),
                peers,
                witness,
                acks,
                app: Mutex::new(None),
                rider,
                pulse,
            }),
        }
    }

    /// The lease bounds this node noticed as leader and witnessed as
    /// follower ([`crate::witness`]).
    pub fn witness(&self) -> &LeaseWitness {
        &self.inner.witness
    }

    /// Confirms that this node led Raft at `since`, from the AppendEntries
    /// it sends ([`crate::confirm`]; it asks for a heartbeat at once,
    /// [`crate::pulse`]), and that it has applied every
    /// entry of earlier terms; after `wait` without that, by openraft's own
    /// round (`ensure_linearizable`). Either way, a quorum has accepted a
    /// request sent at `since` or later.
    pub async fn confirm_leadership(&self, since: Instant, wait: Duration) -> Result<(), String> {
        // The heartbeats that confirm it go now, not at the next idle one.
        self.inner.pulse.request();
        let deadline = tokio::time::Instant::from_std(since + wait);
        let mut metrics = self.inner.raft.metrics();
        loop {
            let changed = self.inner.acks.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (term, leads, applied_in_term, configs) = {
                let m = metrics.borrow_and_update();
                let applied_in_term = m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term);
                let leads = m.state == ServerState::Leader && m.current_leader == Some(self.inner.id);
                (m.current_term, leads, applied_in_term, m.membership_config.membership().get_joint_config().clone())
            };
            if !leads {
                return Err("this node no longer leads Raft".into());
            }
            if applied_in_term && self.inner.acks.quorum_since(term, self.inner.id, &configs, since) {
                return Ok(());
            }
            tokio::select! {
                _ = &mut changed => {}
                r = metrics.changed() => if r.is_err() { return Err("Raft stopped".into()) },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        tracing::debug!(?wait, "leadership not confirmed by the heartbeats; confirming with a round of its own");
        self.inner.raft.ensure_linearizable().await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// What this node, leading `term`, knows of leases granted before its
    /// election.
    pub fn inherited_lease(&self, term: u64, now: Instant) -> Inherited {
        let configs: Vec<BTreeSet<NodeId>> = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            m.membership_config.membership().get_joint_config().clone()
        };
        self.inner.witness.inherited(term, self.inner.id, &configs, now)
    }

    /// The token and source address this node's transport uses.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// The underlying openraft handle, for what this API does not cover.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// The fault switch of this node's links.
    pub fn filter(&self) -> &NetworkFilter {
        &self.inner.filter
    }

    /// Installs the handler of application messages (see [`AppHandler`]).
    pub fn set_app_handler(&self, handler: Arc<dyn AppHandler>) {
        *self.inner.app.lock().expect("app handler lock poisoned") = Some(handler);
    }

    /// Removes the application handler and the rider (they may hold a
    /// clone of this handle; dropping them breaks the cycle on shutdown).
    pub fn clear_app_handler(&self) {
        self.inner.app.lock().expect("app handler lock poisoned").take();
        self.inner.rider.set(None);
    }

    /// Installs what rides on AppendEntries (see [`crate::piggyback`]).
    pub fn set_rider(&self, rider: Arc<dyn Rider>) {
        self.inner.rider.set(Some(rider));
    }

    pub(crate) fn rider(&self) -> Option<Arc<dyn Rider>> {
        self.inner.rider.get()
    }

    /// Sends an application message to the leader's [`AppHandler`] and
    /// returns its answer, retrying through leader changes until `timeout`.
    pub async fn call_leader(&self, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, HandleError> {
        match self.forward_or_local(ForwardRequest::App(payload), timeout).await? {
            ForwardResponse::App(reply) => Ok(reply),
            other => Err(HandleError::Refused(format!("unexpected answer to an application call: {other:?}"))),
        }
    }

    /// The locally applied state; may lag the leader. Use [`Self::read`]
    /// for a linearizable view.
    pub fn local_state(&self) -> AppliedState {
        self.inner.sm.current()
    }

    /// The locally applied cluster state (what [`Self::local_state`]
    /// holds, without cloning the membership).
    pub fn cluster_state(&self) -> Arc<ClusterState> {
        self.inner.sm.current_state()
    }

    /// Every locally applied state, as it is applied.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.inner.sm.subscribe()
    }

    /// openraft's metrics channel.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.inner.raft.metrics()
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        RaftStatus {
            id: m.id,
            role: m.state,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }

    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Commits `command` through the leader and returns its outcome.
    pub async fn propose(&self, command: Command) -> Result<Proposal, HandleError> {
        let request = Request { command, proposer: self.id(), proposed_at_ms: raftgres_storage::now_ms() };
        match self.forward_or_local(ForwardRequest::Propose(request), self.inner.request_timeout).await? {
            ForwardResponse::Proposed { log_id, response } => Ok(Proposal { log_id, outcome: response.into_result() }),
            other => Err(HandleError::Refused(format!("unexpected answer to a proposal: {other:?}"))),
        }
    }

    /// Reads the state linearizably: the leader confirms its leadership with
    /// a quorum, and this node waits until it has applied everything the
    /// leader had committed at that moment.
    pub async fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> Result<T, HandleError> {
        let start = Instant::now();
        let log_id = match self.forward_or_local(ForwardRequest::ReadIndex, self.inner.request_timeout).await? {
            ForwardResponse::ReadIndex { log_id } => log_id,
            other => {
                return Err(HandleError::Refused(format!("unexpected answer to a read: {other:?}")));
            }
        };
        if let Some(log_id) = log_id {
            let remaining = self.inner.request_timeout.saturating_sub(start.elapsed());
            self.inner
                .raft
                .wait(Some(remaining))
                .applied_index_at_least(Some(log_id.index), "linearizable read")
                .await
                .map_err(|_| HandleError::Timeout { waited: start.elapsed(), during: "catch up for a read" })?;
        }
        Ok(f(&self.inner.sm.current().state))
    }

    /// Adds a learner and returns once it has caught up with the leader.
    pub async fn add_learner(&self, id: NodeId, node: NodeInfo) -> Result<LogId, HandleError> {
        self.membership_result(
            self.forward_or_local(ForwardRequest::AddLearner { id, node }, self.inner.request_timeout).await?,
        )
    }

    /// Makes a caught-up learner a voter.
    pub async fn promote(&self, id: NodeId) -> Result<LogId, HandleError> {
        self.change_membership(MembershipChange::AddVoters([id].into())).await
    }

    /// Removes a node, voter or learner, from the Raft group.
    pub async fn remove_node(&self, id: NodeId) -> Result<LogId, HandleError> {
        let is_voter = self.status().voters.contains(&id);
        let change = if is_voter {
            MembershipChange::RemoveVoters([id].into())
        } else {
            MembershipChange::RemoveLearners([id].into())
        };
        self.change_membership(change).await
    }

    pub async fn change_membership(&self, change: MembershipChange) -> Result<LogId, HandleError> {
        self.membership_result(
            self.forward_or_local(ForwardRequest::ChangeMembership(change), self.inner.request_timeout).await?,
        )
    }

    fn membership_result(&self, r: ForwardResponse) -> Result<LogId, HandleError> {
        match r {
            ForwardResponse::MembershipChanged { log_id } => Ok(log_id),
            other => Err(HandleError::Refused(format!("unexpected answer to a membership change: {other:?}"))),
        }
    }

    /// Asks the cluster reachable at `seed_addr` to add this node as a
    /// learner, following redirects to the leader.
    pub async fn join_via(&self, seed_addr: &str, me: NodeInfo) -> Result<LogId, HandleError> {
        let start = Instant::now();
        let mut addr = seed_addr.to_string();
        let mut target = 0;
        let req = ForwardRequest::AddLearner { id: self.id(), node: me };
        loop {
            let remaining = self.inner.request_timeout.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(HandleError::Timeout { waited: start.elapsed(), during: "join" });
            }
            match self.send_forward(target, &addr, &req, remaining).await {
                Ok(Ok(r)) => return self.membership_result(r),
                Ok(Err(ForwardError::NotLeader { leader: Some((id, node)) })) => {
                    target = id;
                    addr = node.raft_addr;
                }
                Ok(Err(ForwardError::NotLeader { leader: None })) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => return Err(forward_error(e)),
                Err(status) => match self.status_error(target, &addr, status) {
                    e @ HandleError::Transport { outcome_unknown: false, .. } => {
                        tracing::debug!("join: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    e => return Err(e),
                },
            }
        }
    }

    /// Runs `req` here if this node leads, else forwards it to the leader,
    /// retrying through leader changes until the request timeout.
    async fn forward_or_local(&self, req: ForwardRequest, timeout: Duration) -> Result<ForwardResponse, HandleError> {
        let start = Instant::now();
        let mut metrics = self.inner.raft.metrics();
        let mut last: Option<HandleError> = None;
        loop {
            let remaining = timeout.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(last.unwrap_or(HandleError::NoLeader { waited: start.elapsed() }));
            }
            let leader = self.leader();
            let attempt = match &leader {
                None => None,
                Some((id, _)) if *id == self.id() => {
                    match tokio::time::timeout(remaining, self.execute_local(self.id(), req.clone())).await {
                        Err(_) => {
                            return Err(HandleError::Timeout { waited: start.elapsed(), during: req.kind() });
                        }
                        Ok(Ok(r)) => return Ok(r),
                        Ok(Err(ForwardError::NotLeader { .. })) => None,
                        Ok(Err(e)) => return Err(forward_error(e)),
                    }
                }
                Some((id, node)) => match self.send_forward(*id, &node.raft_addr, &req, remaining).await {
                    Ok(Ok(r)) => return Ok(r),
                    Ok(Err(ForwardError::NotLeader { .. })) => None,
                    Ok(Err(e)) => return Err(forward_error(e)),
                    Err(status) => match self.status_error(*id, &node.raft_addr, status) {
                        e @ HandleError::Transport { outcome_unknown: false, .. } => Some(e),
                        e => return Err(e),
                    },
                },
            };
            if let Some(e) = attempt {
                last = Some(e);
            }
            // Wait for a change of leader knowledge, at most a little while.
            let wait = remaining.min(Duration::from_millis(50));
            let _ = tokio::time::timeout(wait, metrics.changed()).await;
        }
    }

    fn status_error(&self, leader: NodeId, addr: &str, status: tonic::Status) -> HandleError {
        match status.code() {
            tonic::Code::PermissionDenied => {
                HandleError::WrongCluster { addr: addr.to_string(), message: status.message().to_string() }
            }
            tonic::Code::DeadlineExceeded => {
                HandleError::Timeout { waited: self.inner.request_timeout, during: "forward" }
            }
            code => HandleError::Transport {
                leader,
                addr: addr.to_string(),
                message: status.message().to_string(),
                // Unavailable: the connection failed, so nothing was sent.
                outcome_unknown: code != tonic::Code::Unavailable,
            },
        }
    }

    async fn send_forward(
        &self,
        target: NodeId,
        addr: &str,
        req: &ForwardRequest,
        timeout: Duration,
    ) -> Result<Result<ForwardResponse, ForwardError>, tonic::Status> {
        if target != 0 && self.inner.filter.is_blocked(target) {
            return Err(tonic::Status::unavailable(format!("link to node {target} is cut by the fault filter")));
        }
        let mut client =
            self.inner.peers.client(addr).map_err(|e| tonic::Status::unavailable(format!("Raft peer: {e}")))?;
        let message = convert::request(self.cluster_id(), self.id(), target, "forwarded request", req)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        self.inner.transport.authorize(&mut request);
        let reply = client.forward(request).await?.into_inner();
        convert::reply_payload("forwarded reply", &reply).map_err(|e| tonic::Status::internal(e.to_string()))
    }

    /// Asks the voter `target` to start an election, so that it takes over
    /// this node's leadership (openraft 0.9 has no leader transfer). The
    /// target must be up to date to win; if it does not, another election
    /// follows after the election timeout, as after a lost leader.
    pub async fn hand_leadership_to(&self, target: NodeId) -> Result<(), HandleError> {
        let status = self.status();
        if !status.is_leader() {
            return Err(HandleError::Refused("this node does not lead".into()));
        }
        let node = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&target)
            .cloned()
            .ok_or_else(|| HandleError::Refused(format!("node {target} is not a member")))?;
        let req = ForwardRequest::Elect { term: status.term };
        match self.send_forward(target, &node.raft_addr, &req, self.inner.request_timeout).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(forward_error(e)),
            Err(status) => Err(self.status_error(target, &node.raft_addr, status)),
        }
    }

    /// Carries out a request on this node, which must be the leader.
    pub(crate) async fn execute_local(
        &self,
        from: NodeId,
        req: ForwardRequest,
    ) -> Result<ForwardResponse, ForwardError> {
        let raft = &self.inner.raft;
        let timeout = self.inner.request_timeout;
        let run = async {
            match req {
                ForwardRequest::Propose(request) => match raft.client_write(request).await {
                    Ok(resp) => Ok(ForwardResponse::Proposed { log_id: resp.log_id, response: resp.data }),
                    Err(e) => Err(write_error(e)),
                },
                ForwardRequest::ReadIndex => match raft.ensure_linearizable().await {
                    Ok(log_id) => Ok(ForwardResponse::ReadIndex { log_id }),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                        Err(ForwardError::NotLeader { leader: f.leader_id.zip(f.leader_node) })
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                        Err(ForwardError::Refused(q.to_string()))
                    }
                    Err(RaftError::Fatal(f)) => Err(ForwardError::Fatal(f.to_string())),
                },
                ForwardRequest::AddLearner { id, node } => {
                    let resp = raft.add_learner(id, node, true).await.map_err(write_error)?;
                    self.wait_caught_up(id, resp.log_id.index).await?;
                    Ok(ForwardResponse::MembershipChanged { log_id: resp.log_id })
                }
                ForwardRequest::App(payload) => {
                    let m = raft.metrics().borrow().clone();
                    if m.current_leader != Some(self.id()) {
                        let leader = m
                            .current_leader
                            .and_then(|id| m.membership_config.membership().get_node(&id).map(|n| (id, n.clone())));
                        return Err(ForwardError::NotLeader { leader });
                    }
                    let handler = self.inner.app.lock().expect("app handler lock poisoned").clone();
                    match handler {
                        Some(h) => h.call(from, payload).await.map(ForwardResponse::App).map_err(ForwardError::Refused),
                        None => Err(ForwardError::Refused("this node serves no application messages yet".into())),
                    }
                }
                ForwardRequest::Elect { term } => {
                    let m = raft.metrics().borrow().clone();
                    if m.current_leader != Some(from) || m.current_term != term {
                        return Err(ForwardError::Refused(format!(
                            "node {from} is not this node's leader in term {term} (leader {:?}, term {})",
                            m.current_leader, m.current_term
                        )));
                    }
                    if !m.membership_config.membership().voter_ids().any(|id| id == self.id()) {
                        return Err(ForwardError::Refused("this node is not a voter".into()));
                    }
                    raft.trigger().elect().await.map_err(|e| ForwardError::Fatal(e.to_string()))?;
                    tracing::info!(from, term, "starting an election: the leader hands its leadership over");
                    Ok(ForwardResponse::Electing)
                }
                ForwardRequest::ChangeMembership(change) => {
                    self.check_change(&change)?;
                    let (members, retain): (ChangeMembers<NodeId, NodeInfo>, bool) = match change {
                        MembershipChange::AddVoters(ids) => (ChangeMembers::AddVoterIds(ids), true),
                        MembershipChange::RemoveVoters(ids) => (ChangeMembers::RemoveVoters(ids), false),
                        MembershipChange::RemoveLearners(ids) => (ChangeMembers::RemoveNodes(ids), false),
                    };
                    let resp = raft.change_membership(members, retain).await.map_err(write_error)?;
                    Ok(ForwardResponse::MembershipChanged { log_id: resp.log_id })
                }
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(ForwardError::Unknown(format!("not done within {timeout:?}"))))
    }

    /// Refuses a membership change that names unknown nodes or would leave
    /// no voter.
    fn check_change(&self, change: &MembershipChange) -> Result<(), ForwardError> {
        let status = self.status();
        match change {
            MembershipChange::AddVoters(ids) => {
                for id in ids {
                    if !status.learners.contains(id) && !status.voters.contains(id) {
                        return Err(ForwardError::Refused(format!("node {id} is not a learner; add it first")));
                    }
                }
            }
            MembershipChange::RemoveVoters(ids) => {
                for id in ids {
                    if !status.voters.contains(id) {
                        return Err(ForwardError::Refused(format!("node {id} is not a voter")));
                    }
                }
                if status.voters.iter().all(|v| ids.contains(v)) {
                    return Err(ForwardError::Refused("removing every voter would leave no quorum".into()));
                }
            }
            MembershipChange::RemoveLearners(ids) => {
                for id in ids {
                    if !status.learners.contains(id) {
                        return Err(ForwardError::Refused(format!("node {id} is not a learner")));
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until the leader has replicated up to `index` to `id`.
    /// (`add_learner(.., blocking)` returns while the learner may still be
    /// thousands of entries behind.)
    async fn wait_caught_up(&self, id: NodeId, index: u64) -> Result<(), ForwardError> {
        self.inner
            .raft
            .wait(Some(self.inner.request_timeout))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .is_some_and(|matched| matched.index >= index)
                },
                "learner caught up",
            )
            .await
            .map(|_| ())
            .map_err(|e| ForwardError::Unknown(format!("learner {id} added but not caught up: {e}")))
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ForwardError::NotLeader { leader: f.leader_id.zip(f.leader_node) }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ForwardError::Refused(c.to_string()),
        RaftError::Fatal(f) => ForwardError::Fatal(f.to_string()),
    }
}

fn forward_error(e: ForwardError) -> HandleError {
    match e {
        ForwardError::Refused(m) => HandleError::Refused(m),
        ForwardError::Unknown(m) => HandleError::Unknown(m),
        ForwardError::Fatal(m) => HandleError::Fatal(m),
        ForwardError::NotLeader { .. } => HandleError::NoLeader { waited: Duration::ZERO },
    }
}
