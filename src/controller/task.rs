//! The controller loop: each heartbeat interval (and whenever the state
//! changes), on the Raft leader only, decide and propose. A node that does
//! not lead waits for a change of leadership instead of ticking.

use std::time::{Duration, Instant};

use raftgres_raft::{Inherited, RaftHandle, RaftStatus, ServerState};
use raftgres_storage::{ClusterState, Command, DynamicConfig, now_ms};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::decide::{Decision, Input, decide};
use super::placement::{PlacementInput, placement_target};
use crate::lease::{ReportTimes, SharedViews, Views};

/// How often the controller decides while a switchover is pending.
const HANDOVER_INTERVAL: Duration = Duration::from_millis(50);

/// How long a node that does not lead waits without a change of
/// leadership or state before it looks again (a backstop: it is woken by
/// every such change).
const FOLLOWER_BACKSTOP: Duration = Duration::from_secs(1);

/// The controller of one daemon: feeds [`decide`] with the replicated
/// state, the leader's views of the nodes and the clock, and proposes what
/// it returns.
pub struct Controller {
    handle: RaftHandle,
    views: SharedViews,
    cluster_id: String,
    initial_config: DynamicConfig,
    /// The last reason it waited, so a wait is logged once.
    last_wait: String,
    /// The epoch this leadership first saw, and when.
    epoch_seen: Option<(u64, Instant)>,
    /// Since when the primary has released the role to a switchover.
    handover_since: Option<Instant>,
    /// Why the lost primary cannot be replaced automatically, while that
    /// holds; shown by the node's status and metrics.
    blocked: watch::Sender<Option<String>>,
    /// When each node last reported, while this node leads; shown by the
    /// status and checked by switchover and failover requests.
    reports: watch::Sender<ReportTimes>,
    /// Keep the Raft leadership off the primary's node.
    avoid_primary: bool,
    /// When this node last handed its leadership over.
    last_handover: Option<Instant>,
}

impl Controller {
    pub fn new(
        handle: RaftHandle,
        views: SharedViews,
        cluster_id: String,
        initial_config: DynamicConfig,
        blocked: watch::Sender<Option<String>>,
        reports: watch::Sender<ReportTimes>,
        avoid_primary: bool,
    ) -> Self {
        Self {
            blocked,
            reports,
            avoid_primary,
            last_handover: None,
            handle,
            views,
            cluster_id,
            initial_config,
            last_wait: String::new(),
            epoch_seen: None,
            handover_since: None,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut state_rx = self.handle.subscribe();
        // Changes of role, term, leader and membership only.
        let mut server_rx = self.handle.raft().server_metrics();
        loop {
            // Marked seen before `decide` reads the role: a later change
            // wakes the wait below.
            let leads = {
                let m = server_rx.borrow_and_update();
                m.state == ServerState::Leader && m.current_leader == Some(m.id)
            };
            let state = self.handle.cluster_state();
            let mut interval = Duration::from_millis(state.config.heartbeat_interval_ms.max(50));
            if state.handover_active(now_ms()) {
                // A handover waits on replicas' reports; look often.
                interval = interval.min(HANDOVER_INTERVAL);
            }
            if state.primary.is_none() && state.switchover.is_some() {
                self.handover_since.get_or_insert_with(Instant::now);
            } else {
                self.handover_since = None;
            }
            let mut blocked_now = false;
            let decision = self.decide(&state);
            let leads = leads || decision.is_some();
            match decision {
                Some(Decision::Propose(cmd)) => {
                    self.last_wait.clear();
                    let applied = self.propose(cmd.clone()).await;
                    if let (Some(false), Command::ElectPrimary { if_epoch, .. }) = (applied, &cmd) {
                        // Rejected: the epoch was not ended after all.
                        self.views.lock().expect("views lock poisoned").undepose(*if_epoch);
                    }
                    // An unknown outcome keeps the mark: the election is in
                    // this leader's log and commits as soon as a quorum
                    // answers (the same quorum a grant would need), or the
                    // term changes and a new leadership starts without it.
                }
                Some(Decision::Wait(why)) if !why.is_empty() && why != self.last_wait => {
                    tracing::info!("controller waits: {why}");
                    self.last_wait = why;
                }
                Some(Decision::Blocked(why)) => {
                    let key = without_silence(&why);
                    if key != self.last_wait {
                        tracing::warn!("automatic failover blocked: {why}");
                        self.last_wait = key;
                    }
                    self.blocked.send_if_modified(|b| (b.as_ref() != Some(&why)).then(|| *b = Some(why)).is_some());
                    blocked_now = true;
                }
                _ => {}
            }
            if !blocked_now {
                self.blocked.send_if_modified(|b| b.take().is_some());
            }
            if self.avoid_primary {
                self.place(&state).await;
            }
            if !leads {
                // Nothing to decide until this node leads, and openraft
                // announces that in the server metrics at once.
                interval = FOLLOWER_BACKSTOP;
            }
            state_rx.borrow_and_update();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = state_rx.changed() => {}
                Ok(()) = server_rx.changed() => {}
            }
        }
    }

    /// What to do now; `None` on a node that does not lead Raft.
    fn decide(&mut self, state: &ClusterState) -> Option<Decision> {
        let status = self.handle.status();
        let views = self.views.clone();
        let mut v = views.lock().expect("views lock poisoned");
        if !status.is_leader() {
            self.follow(&mut v);
            return None;
        }
        self.lead(&mut v, &status);
        let now = Instant::now();
        let leader_since = *v.leader_since.get_or_insert(now);
        let inherited = *v.inherited.get_or_insert_with(|| {
            let inherited = self.handle.inherited_lease(status.term, now);
            match inherited {
                Inherited::Unknown => {
                    tracing::info!("controller: this node leads; waiting out a full lease before any failover")
                }
                Inherited::Bound(Some(b)) => tracing::info!(
                    "controller: this node leads; the primary lease granted before may last {} ms more",
                    b.saturating_duration_since(now).as_millis()
                ),
                Inherited::Bound(None) => {
                    tracing::info!("controller: this node leads; no primary lease granted before is left")
                }
            }
            inherited
        });
        let ttl = Duration::from_millis(state.config.lease_ttl_ms);
        let lease_floor = lease_floor(inherited, leader_since, ttl);
        let epoch_since = match self.epoch_seen {
            Some((e, at)) if e == state.epoch => at,
            seen => {
                let at = match (seen, inherited, &state.primary) {
                    // The epoch began before this leadership, and its
                    // primary held a lease: it had its chance.
                    (None, Inherited::Bound(Some(_)), _) => lease_floor,
                    // It held none that is left: it may be new and not
                    // have asked yet, so its grace runs from its election.
                    (None, Inherited::Bound(None), Some(p)) => {
                        let age = Duration::from_millis(now_ms().saturating_sub(p.since_ms));
                        now.checked_sub(age).unwrap_or(now)
                    }
                    _ => now,
                };
                self.epoch_seen = Some((state.epoch, at));
                at
            }
        };
        let times = ReportTimes {
            leader_since: Some(leader_since),
            last: v.nodes.iter().map(|(id, n)| (*id, n.last_contact)).collect(),
        };
        self.reports.send_if_modified(|r| (*r != times).then(|| *r = times).is_some());
        let decision = decide(&Input {
            state,
            views: &v.nodes,
            leader_since,
            lease_floor,
            epoch_since,
            now: Instant::now(),
            now_ms: now_ms(),
            cluster_id: &self.cluster_id,
            initial_config: &self.initial_config,
            handover_since: self.handover_since,
        });
        if let Decision::Propose(Command::ElectPrimary { if_epoch, .. }) = &decision
            && state.primary.as_ref().is_some_and(|p| p.epoch == *if_epoch)
        {
            // Deposing a primary that still holds the epoch: from this
            // moment, under the lock the grantor takes, no lease for it.
            v.depose(*if_epoch);
        }
        Some(decision)
    }

    /// Hands the leadership to a follower when this leader runs on the
    /// primary's node ([`super::placement`]).
    async fn place(&mut self, state: &ClusterState) {
        let status = self.handle.status();
        if !status.is_leader() {
            return;
        }
        let now = Instant::now();
        let ttl = Duration::from_millis(state.config.lease_ttl_ms);
        let (leading_for, reporting, since_grant) = {
            let v = self.views.lock().expect("views lock poisoned");
            let leading_for = v.leader_since.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
            let since_grant = state.primary.as_ref().and_then(|p| {
                let (epoch, at) = v.nodes.get(&p.node)?.last_grant?;
                (epoch == p.epoch).then(|| now.saturating_duration_since(at))
            });
            let reporting = v
                .nodes
                .iter()
                .filter(|(_, n)| now.saturating_duration_since(n.last_contact) <= ttl)
                .map(|(id, _)| *id)
                .collect();
            (leading_for, reporting, since_grant)
        };
        let matched = self
            .handle
            .metrics()
            .borrow()
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, log)| (*id, log.map(|l| l.index))).collect())
            .unwrap_or_default();
        let target = placement_target(&PlacementInput {
            state,
            me: status.id,
            voters: &status.voters,
            matched: &matched,
            last_log_index: status.last_log_index,
            reporting: &reporting,
            leading_for,
            epoch_for: self.epoch_seen.map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(at)),
            since_last_attempt: self.last_handover.map(|at| now.saturating_duration_since(at)),
            since_grant,
        });
        let Some(target) = target else { return };
        self.last_handover = Some(now);
        let name = state.member(target).map_or_else(|| target.to_string(), |m| m.name.clone());
        tracing::info!(to = %name, "handing the Raft leadership over: this node runs the primary");
        if let Err(e) = self.handle.hand_leadership_to(target).await {
            tracing::warn!(to = %name, "handing the Raft leadership over failed: {e}");
        }
    }

    /// A new term: whatever was recorded belongs to an earlier leadership,
    /// possibly interrupted by another leader's.
    fn lead(&mut self, v: &mut Views, status: &RaftStatus) {
        if v.leader_term != Some(status.term) {
            v.leader_term = Some(status.term);
            v.reset();
            self.epoch_seen = None;
        }
    }

    /// Not the leader: forget the views; a later leadership starts afresh.
    fn follow(&mut self, v: &mut Views) {
        v.leader_term = None;
        if v.leader_since.is_some() {
            tracing::info!("controller: no longer the Raft leader");
        }
        v.reset();
        self.epoch_seen = None;
        self.reports
            .send_if_modified(|r| (*r != ReportTimes::default()).then(|| *r = ReportTimes::default()).is_some());
    }

    /// Proposes `cmd`: `Some(true)` applied, `Some(false)` rejected, `None`
    /// outcome unknown.
    async fn propose(&self, cmd: Command) -> Option<bool> {
        tracing::info!(command = %cmd, "controller proposes");
        match self.handle.propose(cmd.clone()).await {
            Ok(p) => match p.outcome {
                Ok(events) => {
                    for e in events {
                        tracing::info!("controller: {e}");
                    }
                    Some(true)
                }
                Err(r) => {
                    tracing::warn!(command = %cmd, "controller proposal rejected: {r}");
                    Some(false)
                }
            },
            Err(e) => {
                tracing::warn!(command = %cmd, "failed to propose: {e}");
                None
            }
        }
    }
}

/// A blocked reason without the growing "silent for <duration>", so the
/// same refusal is logged once.
fn without_silence(why: &str) -> String {
    match why.split_once("silent for ") {
        Some((head, tail)) => format!("{head}{}", tail.split_once(' ').map(|(_, rest)| rest).unwrap_or("")),
        None => why.to_string(),
    }
}

/// From when the controller counts a silent primary's lease, in place of
/// its own election: a full lease before the inherited bound, or the
/// election when nothing was inherited.
fn lease_floor(inherited: Inherited, leader_since: Instant, ttl: Duration) -> Instant {
    let floor = match inherited {
        Inherited::Unknown => leader_since,
        Inherited::Bound(Some(bound)) => bound.checked_sub(ttl).unwrap_or(leader_since),
        Inherited::Bound(None) => leader_since.checked_sub(ttl).unwrap_or(leader_since),
    };
    floor.min(leader_since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_the_same_however_long_the_silence() {
        let a = without_silence("primary 1 silent for 2.26s but no failover candidate: pg2: 5 bytes behind");
        let b = without_silence("primary 1 silent for 9.1s but no failover candidate: pg2: 5 bytes behind");
        assert_eq!(a, b);
        assert_eq!(a, "primary 1 but no failover candidate: pg2: 5 bytes behind");
        assert_eq!(without_silence("no primary and no failover candidate"), "no primary and no failover candidate");
    }

    #[test]
    fn a_silent_primary_is_counted_from_a_lease_before_the_inherited_bound() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let ms = Duration::from_millis;
        let elected = t0 + ms(600);
        assert_eq!(lease_floor(Inherited::Unknown, elected, ms(2000)), elected);
        assert_eq!(lease_floor(Inherited::Bound(Some(t0 + ms(1900))), elected, ms(2000)), t0 - ms(100));
        assert_eq!(lease_floor(Inherited::Bound(None), elected, ms(2000)), elected - ms(2000));
        // Never later than the election.
        assert_eq!(lease_floor(Inherited::Bound(Some(t0 + ms(9000))), elected, ms(2000)), elected);
    }
}
