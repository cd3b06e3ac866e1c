//! Operator actions, shared by the admin gRPC service and the HTTP API:
//! each checks its input against the replicated state first, so bad input
//! is refused with a clear error and changes nothing, then goes through
//! Raft (forwarded to the leader by the handle) or to the member it is
//! about.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftgres_raft::{HandleError, RaftHandle};
use raftgres_storage::{
    ClusterState, Command, DynamicConfig, ElectionReason, EventRecord, MemberState, NodeId, NodeInfo, Reject,
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::http::client;

/// How long a member's API gets to answer a status fetch.
const MEMBER_FETCH_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long `status` tries to confirm its view with the Raft leader.
const STATUS_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `wait` on a switchover or failover waits for the new primary.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(60);

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request itself is malformed; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// It names a member the cluster does not have; nothing was changed.
    #[error("{0}")]
    NotFound(String),
    /// The cluster state does not allow it now; nothing was changed.
    #[error("{0}")]
    Refused(String),
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
            Reject::UnknownMember { .. } => OpError::NotFound(r.to_string()),
            Reject::InvalidConfig { .. } | Reject::InvalidTag { .. } | Reject::EmptyName => {
                OpError::Invalid(r.to_string())
            }
            other => OpError::Refused(other.to_string()),
        }
    }
}

/// What the agent is asked to do to the local PostgreSQL.
#[derive(Debug)]
pub enum AgentRequest {
    Restart { reply: oneshot::Sender<Result<String, String>> },
    Reinitialize { reply: oneshot::Sender<Result<String, String>> },
}

/// One member as `raftctl list` and `/cluster` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub api_url: String,
    pub raft_addr: String,
    /// primary | replica | unknown | unreachable
    pub role: String,
    pub state: String,
    pub timeline: Option<u32>,
    pub lag_bytes: Option<u64>,
    /// leader | follower | learner | none
    pub raft_role: String,
    pub raft_term: Option<u64>,
    pub tags: BTreeMap<String, String>,
    pub registered: bool,
    pub lsn: Option<String>,
}

/// The whole cluster as one node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub epoch: u64,
    pub primary: Option<String>,
    pub maintenance: bool,
    pub config_version: u64,
    pub switchover: Option<SwitchoverStatus>,
    pub raft_term: u64,
    pub raft_leader: Option<NodeId>,
    pub failovers: u64,
    pub switchovers: u64,
    pub members: Vec<MemberStatus>,
    pub served_by: NodeId,
    /// The view could not be confirmed by a linearizable read.
    pub stale: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwitchoverStatus {
    pub from: String,
    pub to: Option<String>,
    pub at_ms: Option<u64>,
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

/// A configuration change request.
#[derive(Clone, Debug, Default)]
pub struct ConfigChange {
    pub json: String,
    /// JSON merge patch (RFC 7396) instead of a whole document.
    pub merge: bool,
    pub if_version: Option<u64>,
    pub dry_run: bool,
}

/// The operations of one daemon.
#[derive(Clone)]
pub struct Ops {
    pub handle: RaftHandle,
    agent: mpsc::Sender<AgentRequest>,
    /// Cancelled when the daemon stops: ends long-lived calls (event
    /// streams) so the server can shut down.
    pub shutdown: CancellationToken,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A short snake_case name of an event's kind.
pub fn event_kind(record: &EventRecord) -> String {
    let v = serde_json::to_value(&record.event).unwrap_or(Value::Null);
    let name = match &v {
        Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Ops {
    pub fn new(handle: RaftHandle, agent: mpsc::Sender<AgentRequest>) -> Self {
        Self { handle, agent, shutdown: CancellationToken::new() }
    }

    fn state(&self) -> Arc<ClusterState> {
        self.handle.local_state().state
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

    /// The cluster with each member's live state, fetched from its API.
    pub async fn status(&self) -> ClusterStatus {
        // Confirm the view with the leader when possible; a partitioned or
        // removed node still answers, flagged stale.
        let confirmed = tokio::time::timeout(STATUS_READ_TIMEOUT, self.handle.read(|_| ())).await;
        let stale = !matches!(confirmed, Ok(Ok(())));
        let state = self.state();
        let raft = self.handle.status();
        let raft_members = self.raft_members();
        let mut ids: Vec<NodeId> = state.members.keys().copied().collect();
        ids.extend(raft_members.keys().copied().filter(|id| !state.members.contains_key(id)));
        let fetches = ids.iter().map(|id| {
            let url = state.member(*id).map(|m| m.api_url.clone()).filter(|u| !u.is_empty()).or_else(|| {
                raft_members
                    .get(id)
                    .map(|(i, _)| i.api_addr.clone())
                    .filter(|a| !a.is_empty())
                    .map(|a| if a.starts_with("http") { a } else { format!("http://{a}") })
            });
            async move {
                match url {
                    Some(u) => client::request("GET", &format!("{u}/patroni"), None, &[], None, MEMBER_FETCH_TIMEOUT)
                        .await
                        .ok()
                        .filter(|r| r.status == 200)
                        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok()),
                    None => None,
                }
            }
        });
        let live: Vec<Option<Value>> = futures_join_all(fetches).await;
        let primary_lsn =
            live.iter().flatten().find(|v| v["role"] == "primary").and_then(|v| v["xlog"]["location"].as_u64());
        let mut members = Vec::new();
        for (id, doc) in ids.iter().zip(live) {
            let m = state.member(*id);
            let info = raft_members.get(id);
            let raft_role = match info {
                None => "none",
                Some(_) if raft.leader == Some(*id) => "leader",
                Some((_, true)) => "follower",
                Some((_, false)) => "learner",
            };
            let mut s = MemberStatus {
                id: *id,
                name: m.map(|m| m.name.clone()).or_else(|| info.map(|(i, _)| i.name.clone())).unwrap_or_default(),
                host: m.map(|m| m.pg_host.clone()).unwrap_or_default(),
                port: m.map(|m| m.pg_port).unwrap_or(0),
                api_url: m.map(|m| m.api_url.clone()).unwrap_or_default(),
                raft_addr: info.map(|(i, _)| i.raft_addr.clone()).unwrap_or_default(),
                raft_role: raft_role.into(),
                tags: m.map(|m| m.tags.clone()).unwrap_or_default(),
                registered: m.is_some(),
                ..Default::default()
            };
            match doc {
                None => {
                    s.role = "unreachable".into();
                    s.state = m.map(|m| m.state.as_str().to_string()).unwrap_or_else(|| "unknown".into());
                }
                Some(v) => {
                    s.role = v["role"].as_str().unwrap_or("unknown").to_string();
                    s.state = if v["replication_state"] == "streaming" {
                        "streaming".into()
                    } else {
                        v["state"].as_str().unwrap_or("unknown").to_string()
                    };
                    s.timeline = v["timeline"].as_u64().map(|t| t as u32);
                    s.raft_term = v["raftgres"]["raft"]["term"].as_u64();
                    s.lsn = v["raftgres"]["lsn"].as_str().map(str::to_string);
                    if s.role == "replica" {
                        let replayed = v["xlog"]["replayed_location"].as_u64();
                        s.lag_bytes = primary_lsn.zip(replayed).map(|(p, r)| p.saturating_sub(r));
                    } else if s.role == "primary" {
                        s.lag_bytes = Some(0);
                    }
                }
            }
            members.push(s);
        }
        ClusterStatus {
            cluster_id: state.cluster_id.clone().unwrap_or_else(|| self.handle.cluster_id().to_string()),
            epoch: state.epoch,
            primary: state.primary.as_ref().map(|p| self.name_of(&state, p.node)),
            maintenance: state.maintenance,
            config_version: state.config_version,
            switchover: state.switchover.as_ref().map(|sw| SwitchoverStatus {
                from: self.name_of(&state, sw.from),
                to: sw.to.map(|t| self.name_of(&state, t)),
                at_ms: sw.at_ms,
            }),
            raft_term: raft.term,
            raft_leader: raft.leader,
            failovers: state.failovers,
            switchovers: state.switchovers,
            members,
            served_by: self.handle.id(),
            stale,
        }
    }

    /// Adds a node to Raft as a learner, waits until it caught up, and with
    /// `promote` makes it a voter. The daemon registers itself as a member
    /// once it has the log.
    pub async fn add_member(
        &self,
        id: NodeId,
        name: &str,
        raft_addr: &str,
        api_url: &str,
        promote: bool,
    ) -> Result<Done, OpError> {
        if id == 0 {
            return Err(OpError::Invalid("node id must be at least 1".into()));
        }
        if name.is_empty()
            || name.len() > 63
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(OpError::Invalid(format!("member name {name:?} must be 1-63 characters of [A-Za-z0-9_.-]")));
        }
        if raft_addr.rsplit_once(':').and_then(|(h, p)| p.parse::<u16>().ok().filter(|_| !h.is_empty())).is_none() {
            return Err(OpError::Invalid(format!("raft address {raft_addr:?} is not host:port")));
        }
        let state = self.state();
        let raft = self.raft_members();
        if let Some((info, _)) = raft.get(&id) {
            return Err(OpError::Refused(format!("node {id} is already in the cluster as {:?}", info.name)));
        }
        if let Some(m) = state.member(id) {
            return Err(OpError::Refused(format!("node id {id} is registered to member {:?}", m.name)));
        }
        if state.members.values().any(|m| m.name == name) || raft.values().any(|(i, _)| i.name == name) {
            return Err(OpError::Refused(format!("a member named {name:?} exists")));
        }
        self.probe(id, raft_addr).await?;
        let mut info = NodeInfo::new(name.to_string(), raft_addr.to_string());
        info.api_addr = api_url.trim_start_matches("http://").to_string();
        let log_id = match self.handle.add_learner(id, info).await {
            Ok(l) => l,
            Err(e) => {
                // Do not leave a learner that never caught up behind.
                if self.raft_members().contains_key(&id) {
                    let _ = self.handle.remove_node(id).await;
                }
                return Err(OpError::from(e));
            }
        };
        let mut index = log_id.index;
        let mut message = format!("added {name} (node {id}) as a learner; it has caught up");
        if promote {
            index = self.handle.promote(id).await?.index;
            message = format!("added {name} (node {id}) and promoted it to voter");
        }
        Ok(Done::new(message, index))
    }

    /// Checks that `raft_addr` is node `id` of this cluster, waiting to be
    /// added, before it enters the membership.
    async fn probe(&self, id: NodeId, raft_addr: &str) -> Result<(), OpError> {
        use raftgres_proto::admin::admin_client::AdminClient;
        let transport = self.handle.transport();
        let endpoint = transport.endpoint(raft_addr).map_err(OpError::Invalid)?.connect_timeout(Duration::from_secs(2));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| OpError::Unavailable(format!("cannot reach the new node at {raft_addr}: {e}")))?;
        let mut req = tonic::Request::new(raftgres_proto::admin::StatusRequest {});
        req.set_timeout(Duration::from_secs(5));
        transport.authorize(&mut req);
        let status = AdminClient::new(channel)
            .status(req)
            .await
            .map_err(|s| {
                let m = format!("the node at {raft_addr} did not answer a status call: {}", s.message());
                if s.code() == tonic::Code::Unavailable { OpError::Unavailable(m) } else { OpError::Refused(m) }
            })?
            .into_inner();
        let ours = self.handle.cluster_id();
        if status.cluster_id != ours {
            return Err(OpError::Refused(format!(
                "the node at {raft_addr} belongs to cluster {:?}, not {ours:?}",
                status.cluster_id
            )));
        }
        if status.served_by != id {
            return Err(OpError::Refused(format!("the node at {raft_addr} is node {}, not {id}", status.served_by)));
        }
        Ok(())
    }

    /// Makes a learner a voter.
    pub async fn promote_member(&self, who: &str) -> Result<Done, OpError> {
        let id = self.resolve(who)?;
        match self.raft_members().get(&id) {
            None => return Err(OpError::Refused(format!("{who} is not in the Raft membership; add it first"))),
            Some((_, true)) => return Err(OpError::Refused(format!("{who} is already a voter"))),
            Some((_, false)) => {}
        }
        let log_id = self.handle.promote(id).await?;
        Ok(Done::new(format!("{who} (node {id}) is a voter"), log_id.index))
    }

    /// Removes a member from Raft and from the replicated state. The
    /// primary and synchronous standbys are refused.
    pub async fn remove_member(&self, who: &str) -> Result<Done, OpError> {
        let id = self.resolve(who)?;
        let raft = self.raft_members();
        if raft.get(&id).is_some_and(|(_, voter)| *voter) && raft.values().filter(|(_, v)| *v).count() <= 1 {
            return Err(OpError::Refused(format!("{who} is the last voter")));
        }
        // Unregister first: the state machine checks the precondition (not
        // the primary, not a synchronous standby) atomically with the
        // change, so a refusal leaves Raft membership untouched.
        let mut index = 0;
        if self.handle.read(|s| s.member(id).is_some()).await? {
            index = self.propose(Command::RemoveMember { node: id }).await?;
        }
        if raft.contains_key(&id) {
            index = self.handle.remove_node(id).await?.index;
        }
        Ok(Done::new(format!("removed {who} (node {id}); stop its daemon"), index))
    }

    /// Checks that `id` can take over now: a registered, streaming replica
    /// that may be promoted.
    fn check_target(&self, state: &ClusterState, id: NodeId) -> Result<(), OpError> {
        let m = state.member(id).ok_or_else(|| OpError::NotFound(format!("node {id} is not a registered member")))?;
        if m.nofailover() || m.failover_priority() == 0 {
            return Err(OpError::Refused(format!("{} is tagged nofailover", m.name)));
        }
        if m.state != MemberState::Streaming {
            return Err(OpError::Refused(format!("{} is not a streaming replica (it is {})", m.name, m.state)));
        }
        Ok(())
    }

    /// Plans a switchover away from the primary, to `to` or the best
    /// replica, now or at `at_ms`. With `wait` (and no `at_ms`), returns once
    /// the new primary is elected.
    pub async fn switchover(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        at_ms: Option<u64>,
        wait: bool,
    ) -> Result<Done, OpError> {
        let state = self.state();
        let Some(primary) = state.primary.clone() else {
            return Err(OpError::Refused("no member holds the primary role; use failover".into()));
        };
        if let Some(f) = from.filter(|f| !f.is_empty()) {
            let fid = self.resolve(f)?;
            if fid != primary.node {
                return Err(OpError::Refused(format!(
                    "{f} is not the primary; {} is",
                    self.name_of(&state, primary.node)
                )));
            }
        }
        let to = match to.filter(|t| !t.is_empty()) {
            Some(t) => {
                let id = self.resolve(t)?;
                if id == primary.node {
                    return Err(OpError::Refused(format!("{t} is already the primary")));
                }
                if at_ms.is_none() {
                    self.check_target(&state, id)?;
                }
                Some(id)
            }
            None => {
                let any =
                    state.members.values().any(|m| m.id != primary.node && self.check_target(&state, m.id).is_ok());
                if !any && at_ms.is_none() {
                    return Err(OpError::Refused("no streaming replica can take over".into()));
                }
                None
            }
        };
        if let Some(at) = at_ms
            && at <= now_ms()
        {
            return Err(OpError::Invalid("the scheduled time is in the past".into()));
        }
        let index = self.propose(Command::ScheduleSwitchover { from: primary.node, to, at_ms }).await?;
        let target = to.map(|t| self.name_of(&state, t)).unwrap_or_else(|| "the best replica".into());
        if at_ms.is_some() {
            return Ok(Done::new(format!("switchover to {target} scheduled"), index));
        }
        if !wait {
            return Ok(Done::new(format!("switchover to {target} started"), index));
        }
        self.wait_handover(primary.epoch, to, index).await
    }

    /// Waits until a primary of a later epoch runs, or the switchover is
    /// dropped.
    async fn wait_handover(&self, epoch: u64, to: Option<NodeId>, scheduled: u64) -> Result<Done, OpError> {
        let mut rx = self.handle.subscribe();
        let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
        loop {
            let applied = rx.borrow_and_update().clone();
            let s = &applied.state;
            // This node may apply the schedule after the leader answered.
            let seen = applied.last_applied.is_some_and(|l| l.index >= scheduled);
            if seen
                && s.epoch > epoch
                && let Some(p) = &s.primary
            {
                let name = self.name_of(s, p.node);
                if to.is_some_and(|t| t != p.node) {
                    return Err(OpError::Refused(format!("{name} became primary instead of the requested member")));
                }
                let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
                return Ok(Done::new(format!("{name} is the new primary (epoch {})", p.epoch), index));
            }
            if seen
                && s.switchover.is_none()
                && s.epoch == epoch
                && s.primary.as_ref().is_some_and(|p| p.epoch == epoch)
            {
                return Err(OpError::Refused("the switchover was cancelled; the primary is unchanged".into()));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(OpError::Unavailable("the node is shutting down".into())),
                Err(_) => {
                    return Err(OpError::Unavailable(format!(
                        "no new primary within {HANDOVER_WAIT:?}; see raftctl list and history"
                    )));
                }
            }
        }
    }

    pub async fn cancel_switchover(&self) -> Result<Done, OpError> {
        let index = self.propose(Command::CancelSwitchover).await?;
        Ok(Done::new("scheduled switchover cancelled", index))
    }

    /// Makes `to` primary: through a switchover while a primary holds the
    /// role (no acknowledged write is lost), or by electing it when none
    /// does.
    pub async fn failover(&self, to: &str, wait: bool) -> Result<Done, OpError> {
        let id = self.resolve(to)?;
        let state = self.state();
        if state.primary.is_none() && state.switchover.is_some() {
            return Err(OpError::Refused(
                "a switchover is handing over; wait for it, or cancel it (switchover --cancel) first".into(),
            ));
        }
        if state.primary.is_some() {
            self.check_target(&state, id)?;
        } else {
            // No primary: replicas run but stream from nobody. Like
            // Patroni's failover in a leaderless cluster, the operator's
            // choice skips the lag check.
            let m = state.member(id).ok_or_else(|| OpError::NotFound(format!("{to} is not a registered member")))?;
            if m.nofailover() || m.failover_priority() == 0 {
                return Err(OpError::Refused(format!("{to} is tagged nofailover")));
            }
            if !matches!(m.state, MemberState::Running | MemberState::Streaming) {
                return Err(OpError::Refused(format!("{to} is not running (it is {})", m.state)));
            }
        }
        match &state.primary {
            Some(p) if p.node == id => Err(OpError::Refused(format!("{to} is already the primary"))),
            Some(p) => {
                let (epoch, from) = (p.epoch, p.node);
                let index = self.propose(Command::ScheduleSwitchover { from, to: Some(id), at_ms: None }).await?;
                if !wait {
                    return Ok(Done::new(format!("failover to {to} started"), index));
                }
                self.wait_handover(epoch, Some(id), index).await
            }
            None => {
                let epoch = state.epoch;
                let index = self
                    .propose(Command::ElectPrimary { if_epoch: epoch, node: id, reason: ElectionReason::Manual })
                    .await?;
                if !wait {
                    return Ok(Done::new(format!("{to} elected primary in epoch {}", epoch + 1), index));
                }
                self.wait_running(id, Duration::from_secs(60)).await?;
                Ok(Done::new(format!("{to} is the new primary (epoch {})", epoch + 1), index))
            }
        }
    }

    async fn wait_running(&self, id: NodeId, timeout: Duration) -> Result<(), OpError> {
        let mut rx = self.handle.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if rx.borrow_and_update().state.member(id).is_some_and(|m| m.state == MemberState::Running) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(OpError::Unavailable(format!("node {id} did not report running within {timeout:?}"))),
            }
        }
    }

    /// Maintenance mode on (pause) or off (resume).
    pub async fn set_maintenance(&self, on: bool) -> Result<Done, OpError> {
        let index = self.propose(Command::SetMaintenance { on }).await?;
        Ok(Done::new(if on { "maintenance mode on: automatic failover paused" } else { "maintenance mode off" }, index))
    }

    /// The dynamic configuration, read linearizably, with its version.
    pub async fn get_config(&self) -> Result<(u64, DynamicConfig), OpError> {
        Ok(self.handle.read(|s| (s.config_version, s.config.clone())).await?)
    }

    /// Validates and applies a configuration change. Returns the version,
    /// the resulting configuration and whether it changed.
    pub async fn set_config(&self, change: &ConfigChange) -> Result<(u64, DynamicConfig, bool), OpError> {
        let (version, current) = self.get_config().await?;
        if let Some(v) = change.if_version
            && v != version
        {
            return Err(OpError::Refused(format!(
                "the configuration is at version {version}, not {v}; read it again and retry"
            )));
        }
        let input: Value =
            serde_json::from_str(&change.json).map_err(|e| OpError::Invalid(format!("not valid JSON: {e}")))?;
        let doc = if change.merge {
            let mut doc = serde_json::to_value(&current).map_err(|e| OpError::Internal(e.to_string()))?;
            merge_patch(&mut doc, &input);
            doc
        } else {
            input
        };
        let next: DynamicConfig =
            serde_json::from_value(doc).map_err(|e| OpError::Invalid(format!("invalid configuration: {e}")))?;
        if let Err(violations) = next.validate() {
            let list: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.field, v.message)).collect();
            return Err(OpError::Invalid(format!("invalid configuration: {}", list.join("; "))));
        }
        if next.synchronous_mode != raftgres_storage::SyncMode::Off {
            return Err(OpError::Invalid(
                "invalid configuration: synchronous_mode: synchronous replication is not implemented yet; only \
                 \"off\" is accepted"
                    .into(),
            ));
        }
        if next.lease_ttl_ms < current.lease_ttl_ms {
            // A primary holding a lease granted under the longer TTL would
            // outlive what a leader under the shorter one waits for.
            return Err(OpError::Refused(format!(
                "lease_ttl_ms can only grow at runtime ({} -> {}): a lease granted under the old value would \
                 outlive the new wait; restart every daemon with the lower value in [dynamic] instead",
                current.lease_ttl_ms, next.lease_ttl_ms
            )));
        }
        if change.dry_run || next == current {
            return Ok((version, if change.dry_run { next } else { current }, false));
        }
        self.propose(Command::ChangeConfig { if_version: Some(version), config: next.clone() }).await?;
        Ok((version + 1, next, true))
    }

    /// The newest `limit` events (all kept when 0), oldest first.
    pub async fn history(&self, limit: usize) -> Result<Vec<EventRecord>, OpError> {
        let history = self.handle.read(|s| s.history.clone()).await?;
        let skip = if limit == 0 { 0 } else { history.len().saturating_sub(limit) };
        Ok(history.into_iter().skip(skip).collect())
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
        rx: oneshot::Receiver<Result<String, String>>,
    ) -> Result<Done, OpError> {
        self.agent.send(req).await.map_err(|_| OpError::Unavailable("the agent is not running".into()))?;
        match rx.await {
            Ok(Ok(message)) => Ok(Done::new(message, 0)),
            Ok(Err(e)) => Err(OpError::Refused(e)),
            Err(_) => Err(OpError::Unavailable("the agent stopped before answering".into())),
        }
    }

    /// The Raft address of a member, for calls that must run on it.
    pub fn raft_addr_of(&self, id: NodeId) -> Option<String> {
        self.raft_members().get(&id).map(|(i, _)| i.raft_addr.clone())
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a status fetch panicked"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(&mut doc, &json!({"a": null, "b": {"c": 5, "d": null}, "e": {"x": 1}, "f": "new"}));
        assert_eq!(doc, json!({"b": {"c": 5}, "e": {"x": 1}, "f": "new"}));
    }

    #[test]
    fn event_kinds_are_snake_case() {
        let r = EventRecord {
            index: 1,
            at_ms: 0,
            event: raftgres_storage::Event::PrimaryElected { epoch: 1, node: 1, reason: ElectionReason::Bootstrap },
        };
        assert_eq!(event_kind(&r), "primary_elected");
    }
}
