//! The cluster as this node sees it: the replicated state, Raft membership,
//! and each member's live status fetched from its own API.

use std::time::Duration;

use futures::future::join_all;
use raftgres_api::{ClusterStatus, MemberStatus, NodeStatus, PgState, RaftRole, Role, SwitchoverStatus};
use raftgres_storage::NodeId;

use super::Ops;
use crate::http::client;

/// How long a member's API gets to answer a status fetch.
const MEMBER_FETCH_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long `status` tries to confirm its view with the Raft leader.
const STATUS_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET <api>/patroni`, parsed; `None` when the member does not answer.
pub(super) async fn fetch(api_url: Option<String>) -> Option<NodeStatus> {
    let url = format!("{}/patroni", api_url?);
    let reply = client::request("GET", &url, None, &[], None, MEMBER_FETCH_TIMEOUT).await.ok()?;
    if reply.status != 200 {
        return None;
    }
    match serde_json::from_str(&reply.body) {
        Ok(doc) => Some(doc),
        Err(e) => {
            tracing::debug!(url, "unreadable node status: {e}");
            None
        }
    }
}

impl Ops {
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
        let urls = ids.iter().map(|id| {
            state.member(*id).map(|m| m.api_url.clone()).filter(|u| !u.is_empty()).or_else(|| {
                raft_members
                    .get(id)
                    .map(|(i, _)| i.api_addr.clone())
                    .filter(|a| !a.is_empty())
                    .map(|a| if a.starts_with("http") { a } else { format!("http://{a}") })
            })
        });
        let live: Vec<Option<NodeStatus>> = join_all(urls.map(fetch)).await;
        let failover_blocked = ids
            .iter()
            .zip(&live)
            .find(|(id, _)| raft.leader == Some(**id))
            .and_then(|(_, doc)| doc.as_ref())
            .and_then(|d| d.raftgres.failover_blocked.clone());
        let primary_lsn = live.iter().flatten().find(|d| d.role == Role::Primary).and_then(|d| d.xlog.location());
        let mut members = Vec::new();
        for (id, doc) in ids.iter().zip(live) {
            let m = state.member(*id);
            let info = raft_members.get(id);
            let raft_role = match info {
                None => RaftRole::None,
                Some(_) if raft.leader == Some(*id) => RaftRole::Leader,
                Some((_, true)) => RaftRole::Follower,
                Some((_, false)) => RaftRole::Learner,
            };
            let mut s = MemberStatus {
                id: *id,
                name: m.map(|m| m.name.clone()).or_else(|| info.map(|(i, _)| i.name.clone())).unwrap_or_default(),
                host: m.map(|m| m.pg_host.clone()).unwrap_or_default(),
                port: m.map(|m| m.pg_port).unwrap_or(0),
                api_url: m.map(|m| m.api_url.clone()).unwrap_or_default(),
                raft_addr: info.map(|(i, _)| i.raft_addr.clone()).unwrap_or_default(),
                raft_role,
                tags: m.map(|m| m.tags.clone()).unwrap_or_default(),
                registered: m.is_some(),
                sync_standby: state.is_sync_standby(*id),
                quorum_standby: state.is_quorum_standby(*id),
                ..Default::default()
            };
            match doc {
                None => {
                    if s.raft_role == RaftRole::Follower {
                        s.raft_role = RaftRole::Unknown;
                    }
                    // Its last reported state may be long gone: a daemon
                    // that stopped never corrects it.
                    s.role = Role::Unreachable;
                    s.state = PgState::Unknown;
                }
                Some(d) => {
                    s.role = d.role;
                    s.state = d.listed_state();
                    s.timeline = d.timeline;
                    s.raft_term = Some(d.raftgres.raft.term);
                    s.lsn = d.raftgres.lsn.clone();
                    s.pending_restart = d.pending_restart_reason.clone();
                    s.last_error = d.raftgres.last_error.clone();
                    s.scheduled_restart = d.scheduled_restart.as_ref().map(|r| r.schedule.clone());
                    s.lag_bytes = match d.role {
                        Role::Replica => primary_lsn.zip(d.xlog.replayed_location()).map(|(p, r)| p.saturating_sub(r)),
                        Role::Primary => Some(0),
                        _ => None,
                    };
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
            failover_blocked,
        }
    }
}
