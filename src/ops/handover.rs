//! Moving the primary role: switchover (planned, no acknowledged write
//! lost), failover to a chosen member, and maintenance mode.

use std::time::{Duration, Instant};

use raftgres_api::{PgState, Role};
use raftgres_storage::{ClusterState, Command, ElectionReason, Lsn, MemberState, NodeId, now_ms};

use super::status::fetch;
use super::{Done, OpError, Ops};

/// How long `wait` on a switchover or failover waits for the new primary.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(60);

/// Refuses a manual failover to `name` (on `timeline`, at `lsn`) that would
/// lose writes the state recorded: a node behind the recorded timeline, or
/// further behind the recorded position than `maximum_lag_on_failover`.
pub fn check_loss(state: &ClusterState, name: &str, timeline: Option<u32>, lsn: Option<u64>) -> Result<(), OpError> {
    let hint = "to accept that loss, repeat with --accept-data-loss";
    if let Some(t) = state.timeline
        && timeline.is_none_or(|tl| tl < t.timeline)
    {
        let owner = state.member(t.node).map(|m| m.name.clone()).unwrap_or_else(|| t.node.to_string());
        return Err(OpError::Refused(format!(
            "{name} is on timeline {}, behind timeline {} that {owner} was promoted onto in epoch {}: failing over to \
             it loses the writes only {owner} had; {hint}",
            timeline.unwrap_or(0),
            t.timeline,
            t.epoch
        )));
    }
    if let Some(p) = state.position {
        let lag = p.lsn.saturating_sub(lsn.unwrap_or(0));
        if lag > state.config.maximum_lag_on_failover {
            return Err(OpError::Refused(format!(
                "{name} is {lag} bytes behind the last recorded primary position {} (maximum_lag_on_failover {}); {hint}",
                Lsn(p.lsn),
                state.config.maximum_lag_on_failover
            )));
        }
    }
    Ok(())
}

/// A scheduled switchover must lie in the future.
pub fn check_schedule(at_ms: u64, now_ms: u64) -> Result<(), OpError> {
    if at_ms <= now_ms {
        return Err(OpError::Invalid("the scheduled time is in the past".into()));
    }
    Ok(())
}

impl Ops {
    /// Checks that `id` can take over now: a registered, streaming replica
    /// that may be promoted, whose daemon runs.
    async fn check_target(&self, state: &ClusterState, id: NodeId) -> Result<(), OpError> {
        let m = state.member(id).ok_or_else(|| OpError::NotFound(format!("node {id} is not a registered member")))?;
        if !m.may_be_promoted() {
            return Err(OpError::Refused(format!("{} is tagged nofailover", m.name)));
        }
        if m.state != MemberState::Streaming {
            return Err(OpError::Refused(format!("{} is not a streaming replica (it is {})", m.name, m.state)));
        }
        self.check_alive(state, id).await
    }

    /// Refuses a target whose daemon is not running, judged on fresh
    /// reports only: the replicated member state is the last one the member
    /// reported, which a dead member never corrects. It is silent to the
    /// Raft leader for longer than a lease (the bound the controller counts
    /// a member healthy within), or it does not answer on its API as a
    /// running replica.
    async fn check_alive(&self, state: &ClusterState, id: NodeId) -> Result<(), OpError> {
        let m = state.member(id).ok_or_else(|| OpError::NotFound(format!("node {id} is not a registered member")))?;
        let bound = Duration::from_millis(state.config.lease_ttl_ms);
        if let Some(silent) = self.silence(state, id).await
            && silent > bound
        {
            return Err(OpError::Refused(format!(
                "{}'s daemon has not reported for {:.1} s; it is not running",
                m.name,
                silent.as_secs_f64()
            )));
        }
        match fetch(Some(m.api_url.clone())).await {
            None => Err(OpError::Refused(format!(
                "{}'s daemon does not answer on its API ({}); it is not running",
                m.name, m.api_url
            ))),
            Some(doc) if doc.role != Role::Replica || doc.state != PgState::Running => Err(OpError::Refused(format!(
                "{} is not a running replica: its daemon reports role {}, PostgreSQL {}",
                m.name, doc.role, doc.state
            ))),
            Some(_) => Ok(()),
        }
    }

    /// How long the Raft leader has not heard from `id`: this node's own
    /// view when it leads, else the leader's node-status document; `None`
    /// when no leader answers.
    async fn silence(&self, state: &ClusterState, id: NodeId) -> Option<Duration> {
        let status = self.handle.status();
        if status.is_leader() {
            return self.reports.borrow().silence(id, Instant::now());
        }
        let leader = status.leader?;
        let url = state.member(leader).map(|m| m.api_url.clone()).filter(|u| !u.is_empty()).or_else(|| {
            let addr = self.raft_members().get(&leader).map(|(i, _)| i.api_addr.clone()).filter(|a| !a.is_empty())?;
            Some(if addr.starts_with("http") { addr } else { format!("http://{addr}") })
        })?;
        let doc = fetch(Some(url)).await?;
        doc.raftgres.silent_ms?.get(&id).map(|ms| Duration::from_millis(*ms))
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
                    self.check_target(&state, id).await?;
                }
                Some(id)
            }
            None => {
                if at_ms.is_none() {
                    let mut why = Vec::new();
                    for m in state.members.values().filter(|m| m.id != primary.node) {
                        match self.check_target(&state, m.id).await {
                            Ok(()) => {
                                why.clear();
                                break;
                            }
                            Err(e) => why.push(e.to_string()),
                        }
                    }
                    if !why.is_empty() || state.members.len() < 2 {
                        return Err(OpError::Refused(format!(
                            "no streaming replica can take over: {}",
                            if why.is_empty() { "no other members".into() } else { why.join("; ") }
                        )));
                    }
                }
                None
            }
        };
        if let Some(at) = at_ms {
            check_schedule(at, now_ms())?;
        }
        // Clients of every PgBouncer wait rather than fail: pools pause
        // (running transactions finish, server connections close) before
        // the primary is asked to step down.
        let paused = if at_ms.is_none() { self.pause_pgbouncers().await } else { Vec::new() };
        let index = match self.propose(Command::ScheduleSwitchover { from: primary.node, to, at_ms }).await {
            Ok(index) => index,
            Err(e) => {
                self.resume_pgbouncers(&paused, None).await;
                return Err(e);
            }
        };
        let target = to.map(|t| self.name_of(&state, t)).unwrap_or_else(|| "the best replica".into());
        if at_ms.is_some() {
            return Ok(Done::new(format!("switchover to {target} scheduled"), index));
        }
        if !wait {
            if !paused.is_empty() {
                let ops = self.clone();
                tokio::spawn(async move {
                    let done = ops.wait_handover(primary.epoch, to, index, true).await;
                    ops.resume_pgbouncers(&paused, done.ok().map(|_| ops.state().epoch)).await;
                });
            }
            return Ok(Done::new(format!("switchover to {target} started"), index));
        }
        let done = self.wait_handover(primary.epoch, to, index, true).await;
        self.resume_pgbouncers(&paused, done.as_ref().ok().map(|_| self.state().epoch)).await;
        done
    }

    /// Waits until a primary of a later epoch runs, or (for a scheduled
    /// switchover, not a forced failover) the switchover is dropped.
    async fn wait_handover(
        &self,
        epoch: u64,
        to: Option<NodeId>,
        scheduled: u64,
        switchover: bool,
    ) -> Result<Done, OpError> {
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
                    return Err(OpError::Refused(match to.and_then(|t| s.member(t)).filter(|m| vetoed(m)) {
                        Some(m) => format!(
                            "{}'s pre_promote vetoed its promotion; {name} is primary (epoch {})",
                            m.name, p.epoch
                        ),
                        None => format!("{name} became primary instead of the requested member"),
                    }));
                }
                if s.timeline.is_none_or(|t| t.epoch != p.epoch) {
                    // Elected, not yet promoted: its pre_promote may still
                    // veto it.
                    self.wait_change(&mut rx, deadline).await?;
                    continue;
                }
                let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
                return Ok(Done::new(format!("{name} is the new primary (epoch {})", p.epoch), index));
            }
            if switchover
                && seen
                && s.switchover.is_none()
                && s.epoch == epoch
                && s.primary.as_ref().is_some_and(|p| p.epoch == epoch)
            {
                return Err(OpError::Refused("the switchover was cancelled; the primary is unchanged".into()));
            }
            if seen
                && s.primary.is_none()
                && let Some(m) = to.and_then(|t| s.member(t)).filter(|m| vetoed(m))
            {
                return Err(OpError::Refused(format!(
                    "{}'s pre_promote vetoed its promotion and it gave the role back; see raftctl list and history",
                    m.name
                )));
            }
            self.wait_change(&mut rx, deadline).await?;
        }
    }

    /// Waits for the next applied change, until `deadline`.
    async fn wait_change(
        &self,
        rx: &mut tokio::sync::watch::Receiver<raftgres_storage::AppliedState>,
        deadline: tokio::time::Instant,
    ) -> Result<(), OpError> {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(OpError::Unavailable("the node is shutting down".into())),
            Err(_) => Err(OpError::Unavailable(format!(
                "no new primary within {HANDOVER_WAIT:?}; see raftctl list and history"
            ))),
        }
    }

    pub async fn cancel_switchover(&self) -> Result<Done, OpError> {
        let index = self.propose(Command::CancelSwitchover).await?;
        Ok(Done::new("scheduled switchover cancelled", index))
    }

    /// Makes `to` primary: through a switchover while a primary holds the
    /// role (no acknowledged write is lost), or by electing it when none
    /// does, if it is on the recorded timeline and within the lag limit of
    /// the recorded position. With `accept_data_loss`, the operator accepts
    /// losing the writes only the lost primary had: the controller elects
    /// `to` once the old primary's lease has run out, whatever its timeline
    /// and lag.
    pub async fn failover(&self, to: &str, wait: bool, accept_data_loss: bool) -> Result<Done, OpError> {
        let id = self.resolve(to)?;
        let state = self.state();
        if state.primary.is_none() && state.switchover.is_some() {
            return Err(OpError::Refused(
                "a switchover is handing over; wait for it, or cancel it (switchover --cancel) first".into(),
            ));
        }
        if state.primary.as_ref().is_some_and(|p| p.node == id) {
            return Err(OpError::Refused(format!("{to} is already the primary")));
        }
        if accept_data_loss {
            return self.forced_failover(&state, id, to, wait).await;
        }
        if state.primary.is_some() {
            self.check_target(&state, id).await?;
        } else {
            let m = state.member(id).ok_or_else(|| OpError::NotFound(format!("{to} is not a registered member")))?;
            if !m.may_be_promoted() {
                return Err(OpError::Refused(format!("{to} is tagged nofailover")));
            }
            if !matches!(m.state, MemberState::Running | MemberState::Streaming) {
                return Err(OpError::Refused(format!("{to} is not running (it is {})", m.state)));
            }
            self.check_alive(&state, id).await?;
            // No primary: replicas run but stream from nobody. The operator
            // picks the node; the rules that keep writes are still checked
            // against what the state recorded of the last primary.
            let doc = fetch(Some(m.api_url.clone()))
                .await
                .ok_or_else(|| OpError::Unavailable(format!("{to} does not answer on its API ({})", m.api_url)))?;
            let lsn = doc.xlog.received_location().max(doc.xlog.replayed_location());
            check_loss(&state, to, doc.timeline, lsn)?;
        }
        match &state.primary {
            Some(p) => {
                let (epoch, from) = (p.epoch, p.node);
                let index = self.propose(Command::ScheduleSwitchover { from, to: Some(id), at_ms: None }).await?;
                if !wait {
                    return Ok(Done::new(format!("failover to {to} started"), index));
                }
                self.wait_handover(epoch, Some(id), index, true).await
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

    /// Records the operator's acceptance of the loss; the controller elects
    /// `id` once no lease can be held by the old primary. A primary that
    /// still answers as one is not failed over this way: a switchover
    /// loses nothing.
    async fn forced_failover(&self, state: &ClusterState, id: NodeId, to: &str, wait: bool) -> Result<Done, OpError> {
        self.check_alive(state, id).await?;
        if let Some(p) = &state.primary
            && let Some(m) = state.member(p.node)
            && fetch(Some(m.api_url.clone())).await.is_some_and(|d| d.role == Role::Primary)
        {
            return Err(OpError::Refused(format!(
                "{} still runs as the primary; use switchover, which loses nothing",
                m.name
            )));
        }
        let epoch = state.epoch;
        let lost = match &state.primary {
            Some(p) => self.name_of(state, p.node),
            None => "the last primary".into(),
        };
        let index = self.propose(Command::ForceFailover { epoch, to: id }).await?;
        let what = format!(
            "failover to {to} forced: writes that only {lost} had (after {}) are lost",
            state.position.map(|p| Lsn(p.lsn).to_string()).unwrap_or_else(|| "its last recorded position".into())
        );
        if !wait {
            return Ok(Done::new(what, index));
        }
        let done = self.wait_handover(epoch, Some(id), index, false).await?;
        Ok(Done::new(format!("{what}; {}", done.message), done.index))
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
        Ok(Done::new(
            if on {
                "maintenance mode on: automatic failover paused, PostgreSQL left alone"
            } else {
                "maintenance mode off"
            },
            index,
        ))
    }
}

/// The member keeps out of elections because its `pre_promote` vetoed a
/// promotion.
fn vetoed(m: &raftgres_storage::Member) -> bool {
    m.tags.get(crate::callbacks::TAG_PRE_PROMOTE).is_some_and(|v| v == "vetoed")
}
