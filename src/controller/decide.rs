//! The pure failover decision.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raftgres_storage::{
    ClusterState, Command, DynamicConfig, ElectionReason, Event, NodeId, ReleaseReason, Switchover, SyncMode,
};

use crate::lease::NodeView;

/// Everything the decision looks at.
pub struct Input<'a> {
    pub state: &'a ClusterState,
    pub views: &'a BTreeMap<NodeId, NodeView>,
    /// When this node became Raft leader.
    pub leader_since: Instant,
    /// From when a silent primary's lease is counted, in place of
    /// `leader_since`: earlier when the leaders before this one left a
    /// witnessed bound on the leases they granted (raftgres_raft::witness).
    pub lease_floor: Instant,
    /// When this controller first saw the current epoch.
    pub epoch_since: Instant,
    pub now: Instant,
    /// Wall clock, Unix milliseconds (for scheduled switchovers).
    pub now_ms: u64,
    pub cluster_id: &'a str,
    /// The configuration a new cluster starts with.
    pub initial_config: &'a DynamicConfig,
    /// When this controller first saw the current switchover handover (the
    /// old primary released, no new one yet).
    pub handover_since: Option<Instant>,
}

/// How long a switchover target gets to receive the old primary's last WAL
/// before the switchover is dropped (and an ordinary failover follows).
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the controller concluded this turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Propose this command.
    Propose(Command),
    /// Nothing to do, with the reason when it is worth logging.
    Wait(String),
    /// The primary is lost and no node may take over automatically: the
    /// reason is shown to operators (`raftctl list`, metrics).
    Blocked(String),
}

/// Decides one turn.
pub fn decide(input: &Input) -> Decision {
    let state = input.state;
    if !state.is_initialized() {
        return Decision::Propose(Command::InitializeCluster {
            cluster_id: input.cluster_id.to_string(),
            config: input.initial_config.clone(),
        });
    }
    let config = &state.config;
    let ttl = Duration::from_millis(config.lease_ttl_ms);
    let fresh =
        |id: &NodeId| input.views.get(id).filter(|v| input.now.saturating_duration_since(v.last_contact) <= ttl);

    if state.epoch == 0 {
        return bootstrap(input, &fresh);
    }
    // Silent: no fresh report, and this leader has led long enough to have
    // had one (a new leader starts with no reports at all).
    let led_a_lease = input.now.saturating_duration_since(input.leader_since) > ttl;
    let silent = |id: &NodeId| led_a_lease && fresh(id).is_none();
    if state.primary.is_none()
        && let Some(from) = released_for_switchover(state)
    {
        match &state.switchover {
            Some(sw) => return handover(input, sw, target_gone(state, sw, &silent), &fresh),
            // Cancelled after the primary released the role: while it
            // reports, stopped, it holds every write and takes the role
            // back; otherwise an ordinary failover follows.
            None if fresh(&from).is_some_and(|v| !v.report.running) => {
                return Decision::Propose(Command::ElectPrimary {
                    if_epoch: state.epoch,
                    node: from,
                    reason: ElectionReason::Failover,
                });
            }
            None => {}
        }
    }
    if state.primary.is_none()
        && let Some(from) = target_gave_back(input, &fresh)
    {
        return Decision::Propose(Command::ElectPrimary {
            if_epoch: state.epoch,
            node: from,
            reason: ElectionReason::Failover,
        });
    }
    if let (Some(p), Some(sw)) = (&state.primary, &state.switchover)
        && sw.from == p.node
        && sw.at_ms.is_none_or(|at| at <= input.now_ms)
        && target_gone(state, sw, &silent)
    {
        // The target's daemon stopped reporting after the switchover was
        // accepted: the primary must not shut down for it.
        return Decision::Propose(Command::CancelSwitchover);
    }
    if state.maintenance {
        return Decision::Wait("maintenance mode".into());
    }
    match &state.primary {
        Some(p) => {
            // Count from the later of the last lease granted for this
            // epoch, our election (a new leader knows nothing of grants by
            // its predecessor, unless a quorum witnessed their bound: then
            // a lease before that bound) and the epoch's start (a new
            // primary gets a lease period to take its first one). Heartbeats without a
            // grant do not count: a primary that cannot get a lease is not
            // serving writes.
            let granted = input
                .views
                .get(&p.node)
                .and_then(|v| v.last_grant)
                .filter(|(epoch, _)| *epoch == p.epoch)
                .map(|(_, at)| at);
            let since = input.lease_floor.max(input.epoch_since).max(granted.unwrap_or(input.lease_floor));
            let silence = input.now.saturating_duration_since(since);
            let expiry = ttl + Duration::from_millis(config.drift_margin_ms);
            if silence <= expiry {
                return Decision::Wait(String::new());
            }
            // Positions count once the primary can no longer have written:
            // a report from before may miss its last commits.
            let settled = since + ttl;
            if quorum_settling(input, p.node, settled, &fresh) {
                return Decision::Wait("waiting for the quorum standbys to report where their WAL ends".into());
            }
            match candidate(input, Some(p.node), Some(settled), &fresh) {
                Ok(node) => failover_to(state, node),
                Err(why) => Decision::Blocked(format!(
                    "primary {} silent for {silence:?} but no failover candidate: {why}",
                    p.node
                )),
            }
        }
        None => match candidate(input, None, None, &fresh) {
            Ok(node) => failover_to(state, node),
            Err(_) if never_held_data(input, &fresh) => bootstrap(input, &fresh),
            Err(_) if let Some(node) = released_may_return(input, &fresh) => Decision::Propose(Command::ElectPrimary {
                if_epoch: state.epoch,
                node,
                reason: ElectionReason::Failover,
            }),
            Err(why) => Decision::Blocked(format!("no primary and no failover candidate: {why}")),
        },
    }
}

/// Elects `node` after the primary was lost: an operator's forced failover
/// is recorded as manual.
fn failover_to(state: &ClusterState, node: NodeId) -> Decision {
    let forced = state.forced_failover.is_some_and(|f| f.epoch == state.epoch && f.to == node);
    let reason = if forced { ElectionReason::Manual } else { ElectionReason::Failover };
    Decision::Propose(Command::ElectPrimary { if_epoch: state.epoch, node, reason })
}

/// The primary of the current epoch that released the role for a
/// switchover.
fn released_for_switchover(state: &ClusterState) -> Option<NodeId> {
    state.history.iter().rev().find_map(|r| match &r.event {
        Event::PrimaryReleased { epoch, node, reason } if *epoch == state.epoch => {
            Some((*reason == ReleaseReason::Switchover).then_some(*node))
        }
        _ => None,
    })?
}

/// A switchover target gave the role back before it promoted (its
/// `pre_promote` vetoed the promotion): it still reports as a running
/// replica and no promotion was recorded in its epoch, so it never wrote.
/// The old primary, stopped cleanly for the switchover and reporting with
/// its data, holds every write and takes the role back, as when a target
/// does not take over in time. Returns that old primary.
fn target_gave_back<'a>(input: &Input<'a>, fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>) -> Option<NodeId> {
    let state = input.state;
    let target = state.released_primary()?;
    if state.timeline.is_some_and(|t| t.epoch == state.epoch) {
        return None;
    }
    let mut events =
        state.history.iter().rev().map(|r| &r.event).skip_while(|e| !matches!(e, Event::PrimaryElected { .. }));
    let Some(Event::PrimaryElected { epoch, node, reason: ElectionReason::Switchover }) = events.next() else {
        return None;
    };
    if *epoch != state.epoch || *node != target {
        return None;
    }
    let from = events.find_map(|e| match e {
        Event::PrimaryReleased { epoch, node, reason: ReleaseReason::Switchover } if *epoch + 1 == state.epoch => {
            Some(Some(*node))
        }
        Event::PrimaryReleased { .. } | Event::PrimaryElected { .. } => Some(None),
        _ => None,
    })??;
    let t = fresh(&target)?;
    let old = fresh(&from)?;
    // The state must accept it: in synchronous mode the target's epoch has
    // a set of its own, which a member of takes over instead.
    let may = state.check_candidate(from, ElectionReason::Failover).is_ok();
    (t.report.is_replica() && may && old.report.data_present && !old.report.running).then_some(from)
}

/// No member the switchover could go to reports any more: its target, or
/// without one, every other member.
fn target_gone(state: &ClusterState, sw: &Switchover, silent: &dyn Fn(&NodeId) -> bool) -> bool {
    match sw.to {
        Some(t) => silent(&t),
        None => state.members.keys().filter(|id| **id != sw.from).all(silent),
    }
}

/// A switchover whose primary released the role: elect the target once it
/// has received everything the old primary wrote (past its shutdown
/// checkpoint), so no acknowledged write is lost. A target that does not get
/// there in time gives the role back to the old primary, which holds every
/// write, or, when the old primary no longer reports, goes to any replica
/// past that point. An old primary that never reported where its WAL ends
/// (its stop was not clean, or it died after releasing) cannot hold the
/// handover up for longer than the same timeout: an ordinary, lag-checked
/// failover follows, unless in maintenance mode. A target that stopped
/// reporting (`gone`) is not waited for: the old primary takes the role
/// back at once.
fn handover<'a>(
    input: &Input<'a>,
    sw: &Switchover,
    gone: bool,
    fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>,
) -> Decision {
    let state = input.state;
    let waited = input.handover_since.map(|s| input.now.saturating_duration_since(s)).unwrap_or_default();
    let old = fresh(&sw.from).map(|v| &v.report).filter(|r| !r.running);
    // Where the old primary's WAL ends, also from a report that is no
    // longer fresh: a primary that released the role does not write again.
    let end = old
        .and_then(|r| r.checkpoint_lsn)
        .or_else(|| input.views.get(&sw.from).map(|v| &v.report).filter(|r| !r.running).and_then(|r| r.checkpoint_lsn));
    let Some(end) = end else {
        if waited <= HANDOVER_TIMEOUT {
            return Decision::Wait("switchover: waiting for the old primary's final WAL position".into());
        }
        if state.maintenance {
            return Decision::Wait(
                "switchover: the old primary never reported its final WAL position; maintenance mode: an \
                 operator decides"
                    .into(),
            );
        }
        return match candidate(input, Some(sw.from), None, fresh) {
            Ok(node) => failover_to(state, node),
            Err(why) => Decision::Blocked(format!(
                "switchover: no final WAL position from the old primary after {HANDOVER_TIMEOUT:?}, and no \
                 failover candidate: {why}"
            )),
        };
    };
    let timed_out = waited > HANDOVER_TIMEOUT || gone;
    if timed_out && old.is_some() {
        return Decision::Propose(Command::ElectPrimary {
            if_epoch: state.epoch,
            node: sw.from,
            reason: ElectionReason::Failover,
        });
    }
    // Before the timeout, the target; after it (the old primary gone),
    // any replica that has everything the old primary wrote. Only one
    // the state accepts (in synchronous mode a member of the set): a
    // refused proposal would be made again every turn, writes paused.
    let reason = if timed_out { ElectionReason::Failover } else { ElectionReason::Switchover };
    let mut pool: Vec<(NodeId, u64, u32)> = state
        .members
        .values()
        .filter(|m| m.id != sw.from && (timed_out || sw.to.is_none_or(|t| t == m.id)))
        .filter(|m| state.check_candidate(m.id, reason).is_ok())
        .filter_map(|m| fresh(&m.id).map(|v| (m, v)))
        .filter(|(_, v)| v.report.is_replica())
        .filter_map(|(m, v)| v.report.lsn().filter(|l| *l > end).map(|l| (m.id, l, m.failover_priority())))
        .collect();
    pool.sort_by_key(|(id, lsn, prio)| (std::cmp::Reverse(*lsn), std::cmp::Reverse(*prio), *id));
    match pool.first() {
        Some((node, _, _)) => Decision::Propose(Command::ElectPrimary { if_epoch: state.epoch, node: *node, reason }),
        None => Decision::Wait(format!("switchover: waiting for a target to receive WAL past {end:#x}")),
    }
}

/// No replica runs to take over (the others may need a running primary to
/// rewind or clone from), and the primary that released the role reports,
/// stopped, with its data: it holds every acknowledged write of the epoch,
/// so it takes the role back, once a lease period after its release has
/// passed (a server that really cannot start then retries at that pace).
/// Its release may have come from a start the fence stopped while it had
/// no lease, which a new epoch's lease cures. Each release in a row (no
/// other node elected in between, within [`RETURN_WINDOW_MS`]) doubles the
/// wait, up to [`RETURN_BACKOFF_MAX_MS`]: a server that keeps failing is not
/// re-elected every lease period.
fn released_may_return<'a>(input: &Input<'a>, fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>) -> Option<NodeId> {
    let state = input.state;
    let node = state.released_primary()?;
    let released_at = state.history.iter().rev().find_map(|r| match r.event {
        Event::PrimaryReleased { epoch, node: n, .. } if epoch == state.epoch && n == node => Some(r.at_ms),
        _ => None,
    })?;
    if input.now_ms.saturating_sub(released_at) < return_wait_ms(state, node, input.now_ms) {
        return None;
    }
    let v = fresh(&node)?;
    let member = state.member(node)?;
    let timeline_ok = state.timeline.is_none_or(|t| v.report.timeline.is_none_or(|tl| tl >= t.timeline));
    (member.may_be_promoted() && v.report.data_present && !v.report.running && timeline_ok).then_some(node)
}

/// Releases further back than this do not count towards the backoff of
/// [`released_may_return`].
const RETURN_WINDOW_MS: u64 = 10 * 60 * 1000;

/// The longest [`released_may_return`] waits.
const RETURN_BACKOFF_MAX_MS: u64 = 60 * 1000;

/// How long after its latest release `node` may take the role back: a
/// lease period, doubled for each earlier release of it in a row.
fn return_wait_ms(state: &ClusterState, node: NodeId, now_ms: u64) -> u64 {
    let mut releases = 0u32;
    for r in state.history.iter().rev() {
        if now_ms.saturating_sub(r.at_ms) > RETURN_WINDOW_MS {
            break;
        }
        match r.event {
            Event::PrimaryReleased { node: n, .. } if n == node => releases += 1,
            Event::PrimaryReleased { .. } => break,
            Event::PrimaryElected { node: n, .. } if n != node => break,
            _ => {}
        }
    }
    let doublings = releases.saturating_sub(1).min(16);
    state.config.lease_ttl_ms.saturating_mul(1 << doublings).min(RETURN_BACKOFF_MAX_MS.max(state.config.lease_ttl_ms))
}

/// The first primary gave the role up before its promotion was recorded
/// (it never served), and every member reports an empty data directory:
/// nothing exists to lose, so the cluster is bootstrapped again instead of
/// waiting for a candidate that cannot exist. Any member silent or holding
/// data rules it out.
fn never_held_data<'a>(input: &Input<'a>, fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>) -> bool {
    let state = input.state;
    state.primary.is_none()
        && state.timeline.is_none()
        && !state.members.is_empty()
        && state.members.keys().all(|id| fresh(id).is_some_and(|v| !v.report.data_present))
}

fn bootstrap<'a>(input: &Input<'a>, fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>) -> Decision {
    let state = input.state;
    let mut eligible: Vec<(NodeId, &NodeView)> = state
        .members
        .values()
        .filter(|m| m.may_be_promoted())
        .filter_map(|m| fresh(&m.id).map(|v| (m.id, v)))
        .collect();
    if eligible.is_empty() {
        return Decision::Wait("bootstrap: no registered member has reported yet".into());
    }
    // A member that already holds data (a cluster re-formed around existing
    // PostgreSQL) wins, the most advanced first; else the lowest id.
    eligible.sort_by_key(|(id, v)| (!v.report.data_present, std::cmp::Reverse(v.report.lsn()), *id));
    let node = eligible[0].0;
    Decision::Propose(Command::ElectPrimary { if_epoch: state.epoch, node, reason: ElectionReason::Bootstrap })
}

/// The best failover candidate: a healthy, reachable replica that may be
/// promoted, on the newest timeline, within the lag limit, in the
/// synchronous set when synchronous mode is on; highest LSN first, then
/// failover priority, then the lowest id.
///
/// The timeline is the newest of the recorded one (a completed promotion),
/// the old primary's last report and the candidates' own: a node on an
/// older timeline would, once promoted, take a number the newer history
/// already uses. The lag is measured against the primary's position: its
/// last report if this leader saw one, else the position recorded in the
/// replicated state; without either, no candidate is elected. An
/// operator's forced failover skips both checks: it accepted the loss.
fn candidate<'a>(
    input: &Input<'a>,
    old: Option<NodeId>,
    settled: Option<Instant>,
    fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>,
) -> Result<NodeId, String> {
    let state = input.state;
    let config = &state.config;
    if let Some(forced) = state.forced_failover.filter(|f| f.epoch == state.epoch) {
        let name = state.member(forced.to).map(|m| m.name.as_str()).unwrap_or("?");
        return match fresh(&forced.to) {
            Some(v) if v.report.is_replica() => Ok(forced.to),
            Some(_) => Err(format!("forced failover to {name}: it is not a running replica")),
            None => Err(format!("forced failover to {name}: no recent heartbeat")),
        };
    }
    let mut rejected = Vec::new();
    let mut pool: Vec<(NodeId, &NodeView, u32)> = Vec::new();
    for m in state.members.values() {
        if Some(m.id) == old {
            continue;
        }
        let Some(v) = fresh(&m.id) else {
            rejected.push(format!("{}: no recent heartbeat", m.name));
            continue;
        };
        if !m.may_be_promoted() {
            rejected.push(format!("{}: nofailover", m.name));
            continue;
        }
        if !v.report.is_replica() {
            rejected.push(format!("{}: not a running replica", m.name));
            continue;
        }
        if let Some((set, _)) = state.sync_record()
            && !set.contains(&m.id)
        {
            rejected.push(format!("{}: not a synchronous standby", m.name));
            continue;
        }
        if config.synchronous_mode == SyncMode::Strict && state.sync_standbys.is_empty() {
            rejected.push(format!(
                "{}: synchronous_mode is strict and no standby is synchronous, so nobody is known to hold every \
                 acknowledged write",
                m.name
            ));
            continue;
        }
        pool.push((m.id, v, m.failover_priority()));
    }
    let old_report = old.and_then(|o| input.views.get(&o)).map(|v| &v.report);
    let recorded = state.timeline.map(|t| t.timeline);
    let timeline = [recorded, old_report.and_then(|r| r.timeline)]
        .into_iter()
        .chain(pool.iter().map(|(_, v, _)| v.report.timeline))
        .flatten()
        .max();
    // The best candidate's position is a lower bound too, but never the
    // only one: it says nothing of what the primary wrote past it.
    let best_lsn = pool.iter().filter_map(|(_, v, _)| v.report.lsn()).max();
    let reference =
        old_report.and_then(|r| r.lsn()).max(state.position.map(|p| p.lsn)).map(|r| r.max(best_lsn.unwrap_or(0)));
    let Some(reference) = reference else {
        return Err(format!(
            "no record of the primary's WAL position to measure the lag against (maximum_lag_on_failover): \
             promoting a replica could lose any number of acknowledged writes; {}",
            FORCE_HINT
        ));
    };
    pool.retain(|(id, v, _)| {
        let name = &state.members[id].name;
        if timeline.is_some() && v.report.timeline < timeline {
            let whose = match state.timeline.filter(|t| Some(t.timeline) == timeline) {
                Some(t) => format!("recorded for {} in epoch {}", name_of(state, t.node), t.epoch),
                None => "the newest reported".into(),
            };
            rejected.push(format!(
                "{name}: timeline {}, the primary's is {} ({whose})",
                v.report.timeline.unwrap_or(0),
                timeline.unwrap_or(0)
            ));
            return false;
        }
        let lag = reference.saturating_sub(v.report.lsn().unwrap_or(0));
        if lag > config.maximum_lag_on_failover {
            rejected.push(format!("{name}: {lag} bytes behind (limit {})", config.maximum_lag_on_failover));
            return false;
        }
        true
    });
    if let Some((set, k)) = state.sync_record()
        && k < set.len()
    {
        // Quorum (RFC 0003): each acknowledged commit is on `k` of the set,
        // so any `m - k + 1` of them include one holding it; the candidate
        // must be among that many reporting members and behind none.
        let need = set.len() - k + 1;
        let reporting: Vec<(NodeId, u64)> = set
            .iter()
            .filter(|id| Some(**id) != old)
            .filter_map(|id| {
                let v = fresh(id).filter(|v| settled.is_none_or(|t| v.last_contact >= t))?;
                v.report.lsn().map(|lsn| (*id, lsn))
            })
            .collect();
        if reporting.len() < need {
            let names: Vec<String> = set.iter().map(|id| name_of(state, *id)).collect();
            return Err(format!(
                "synchronous quorum: each acknowledged write is on any {k} of {}, so {need} of them must report to \
                 show who holds them all, and {} do; {FORCE_HINT}",
                names.join(", "),
                reporting.len()
            ));
        }
        let (ahead, furthest) =
            reporting.iter().max_by_key(|(id, lsn)| (*lsn, std::cmp::Reverse(*id))).copied().expect("need >= 1");
        pool.retain(|(id, v, _)| {
            let behind = v.report.lsn().is_none_or(|lsn| lsn < furthest);
            if behind {
                rejected.push(format!(
                    "{}: behind {} of the synchronous quorum",
                    name_of(state, *id),
                    name_of(state, ahead)
                ));
            }
            !behind
        });
    }
    pool.sort_by_key(|(id, v, prio)| (std::cmp::Reverse(v.report.lsn()), std::cmp::Reverse(*prio), *id));
    // An operator's pick (failover --to while the primary was lost) wins
    // when it is eligible.
    if let Some(target) = state.switchover.as_ref().filter(|sw| sw.at_ms.is_none()).and_then(|sw| sw.to)
        && let Some(i) = pool.iter().position(|(id, _, _)| *id == target)
    {
        pool.swap(0, i);
    }
    match pool.first() {
        Some((id, _, _)) => Ok(*id),
        None if rejected.is_empty() => Err("no other members".into()),
        None => Err(format!("{}; {FORCE_HINT}", rejected.join("; "))),
    }
}

/// Quorum mode: enough members of the set report, but not enough of them
/// since `settled`, when the primary can no longer have written; a turn
/// or two brings the rest.
fn quorum_settling<'a>(
    input: &Input<'a>,
    old: NodeId,
    settled: Instant,
    fresh: &dyn Fn(&NodeId) -> Option<&'a NodeView>,
) -> bool {
    let Some((set, k)) = input.state.sync_record().filter(|(set, k)| *k < set.len()) else { return false };
    let need = set.len() - k + 1;
    let reporting = |after: Option<Instant>| {
        set.iter()
            .filter(|id| **id != old)
            .filter_map(fresh)
            .filter(|v| after.is_none_or(|t| v.last_contact >= t) && v.report.lsn().is_some())
            .count()
    };
    reporting(None) >= need && reporting(Some(settled)) < need
}

/// How an operator overrides a refusal that protects writes only the lost
/// primary had.
const FORCE_HINT: &str = "an operator can accept that loss with `raftctl failover --to <member> --accept-data-loss`";

fn name_of(state: &ClusterState, id: NodeId) -> String {
    state.member(id).map(|m| m.name.clone()).unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use raftgres_storage::{ApplyContext, Member};

    use super::*;
    use crate::postgres::Observation;

    struct Fixture {
        state: ClusterState,
        views: BTreeMap<NodeId, NodeView>,
        start: Instant,
        index: u64,
        handover_since: Option<u64>,
    }

    impl Fixture {
        fn new(n: u64) -> Self {
            let mut f = Fixture {
                state: ClusterState::default(),
                views: BTreeMap::new(),
                start: Instant::now(),
                index: 0,
                handover_since: None,
            };
            f.apply(Command::InitializeCluster { cluster_id: "c".into(), config: DynamicConfig::default() });
            for id in 1..=n {
                f.apply(Command::AddMember { member: Member::new(id, format!("pg{id}")) });
            }
            f
        }

        fn apply(&mut self, c: Command) {
            self.index += 1;
            self.state.apply(&c, ApplyContext { index: self.index, time_ms: 0 }).expect("command applies");
        }

        /// A switchover from node 1 to node 3 whose `pre_promote` vetoed
        /// the promotion: node 3 tagged out of elections and released, node
        /// 1 stopped cleanly, every node reporting at 100 ms. Returns node
        /// 1's report.
        fn vetoed_switchover_to_3(&mut self) -> Observation {
            self.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
            self.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
            self.apply(Command::ElectPrimary { if_epoch: 1, node: 3, reason: ElectionReason::Switchover });
            let mut tags = raftgres_storage::Tags::new();
            tags.insert("nofailover".into(), "true".into());
            self.apply(Command::SetMemberTags { node: 3, tags });
            self.apply(Command::ReleasePrimary { epoch: 2, node: 3, reason: ReleaseReason::Manual });
            let stopped = Observation {
                data_present: true,
                timeline: Some(1),
                checkpoint_lsn: Some(0x200),
                ..Observation::default()
            };
            self.report(1, 100, stopped.clone());
            self.report(2, 100, replica(0x228, 1));
            self.report(3, 100, replica(0x228, 1));
            stopped
        }

        /// Node 1 bootstrapped on timeline 1, its promotion recorded.
        fn bootstrap(&mut self) {
            self.apply(Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap });
            self.apply(Command::RecordPromotion { epoch: 1, node: 1, timeline: 1, switchpoint: 0 });
        }

        /// Switches the (first, version 1) configuration to `mode`.
        fn sync_mode(&mut self, mode: SyncMode) {
            let config = DynamicConfig { synchronous_mode: mode, ..DynamicConfig::default() };
            self.apply(Command::ChangeConfig { if_version: Some(1), config });
        }

        fn report(&mut self, id: NodeId, at_ms: u64, report: Observation) {
            let last_contact = self.start + Duration::from_millis(at_ms);
            self.views.insert(id, NodeView { last_contact, report, last_grant: None });
        }

        fn grant(&mut self, id: NodeId, epoch: u64, at_ms: u64) {
            let at = self.start + Duration::from_millis(at_ms);
            self.views.get_mut(&id).expect("reported first").last_grant = Some((epoch, at));
        }

        fn decide_at(&self, leader_since_ms: u64, now_ms: u64) -> Decision {
            self.decide_with_floor(leader_since_ms, leader_since_ms, now_ms)
        }

        /// As a leader whose predecessors left a lease bound of
        /// `floor_ms` + the lease.
        fn decide_with_floor(&self, leader_since_ms: u64, floor_ms: u64, now_ms: u64) -> Decision {
            decide(&Input {
                state: &self.state,
                views: &self.views,
                leader_since: self.start + Duration::from_millis(leader_since_ms),
                lease_floor: self.start + Duration::from_millis(floor_ms),
                epoch_since: self.start,
                now: self.start + Duration::from_millis(now_ms),
                now_ms,
                cluster_id: "c",
                initial_config: &DynamicConfig::default(),
                handover_since: self.handover_since.map(|ms| self.start + Duration::from_millis(ms)),
            })
        }
    }

    fn replica(lsn: u64, tl: u32) -> Observation {
        Observation {
            data_present: true,
            running: true,
            accepting: true,
            in_recovery: Some(true),
            timeline: Some(tl),
            receive_lsn: Some(lsn),
            replay_lsn: Some(lsn),
            streaming: true,
            ..Default::default()
        }
    }

    fn primary(lsn: u64, tl: u32) -> Observation {
        Observation { in_recovery: Some(false), write_lsn: Some(lsn), streaming: false, ..replica(lsn, tl) }
    }

    fn elect(node: NodeId, if_epoch: u64, reason: ElectionReason) -> Decision {
        Decision::Propose(Command::ElectPrimary { if_epoch, node, reason })
    }

    #[test]
    fn an_uninitialized_cluster_is_initialized() {
        let f = Fixture {
            state: ClusterState::default(),
            views: BTreeMap::new(),
            start: Instant::now(),
            index: 0,
            handover_since: None,
        };
        assert!(matches!(f.decide_at(0, 0), Decision::Propose(Command::InitializeCluster { .. })));
    }

    #[test]
    fn bootstrap_picks_the_lowest_reporting_member_or_existing_data() {
        let mut f = Fixture::new(3);
        assert!(matches!(f.decide_at(0, 0), Decision::Wait(_)), "nobody reported");
        f.report(3, 0, Observation::default());
        f.report(2, 0, Observation::default());
        assert_eq!(f.decide_at(0, 10), elect(2, 0, ElectionReason::Bootstrap));
        f.report(3, 5, Observation { data_present: true, ..Default::default() });
        assert_eq!(f.decide_at(0, 10), elect(3, 0, ElectionReason::Bootstrap), "existing data wins");
    }

    #[test]
    fn a_first_primary_that_never_served_is_bootstrapped_again_when_nobody_has_data() {
        let mut f = Fixture::new(3);
        f.apply(Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::PostgresFailed });
        let mut tags = raftgres_storage::Tags::new();
        tags.insert("nofailover".into(), "true".into());
        f.apply(Command::SetMemberTags { node: 1, tags });
        for id in [1, 2, 3] {
            f.report(id, 5_000, Observation::default());
        }
        assert_eq!(f.decide_at(5_000, 5_010), elect(2, 1, ElectionReason::Bootstrap), "the lowest promotable");
        f.report(3, 5_000, Observation { data_present: true, ..Default::default() });
        assert!(matches!(f.decide_at(5_000, 5_010), Decision::Blocked(_)), "a member holds data: no bootstrap");
        f.report(3, 5_000, Observation::default());
        f.views.remove(&3);
        assert!(matches!(f.decide_at(5_000, 5_010), Decision::Blocked(_)), "a silent member may hold data");
        f.report(3, 5_000, Observation::default());
        f.apply(Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Bootstrap });
        f.apply(Command::RecordPromotion { epoch: 2, node: 2, timeline: 1, switchpoint: 0 });
        f.apply(Command::ReleasePrimary { epoch: 2, node: 2, reason: ReleaseReason::PostgresFailed });
        assert!(
            matches!(f.decide_at(5_000, 5_010), Decision::Blocked(_)),
            "a primary that served (its promotion recorded) is never bootstrapped over"
        );
    }

    #[test]
    fn no_failover_while_the_lease_may_still_be_held() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.report(1, 1000, primary(500, 1));
        f.grant(1, 1, 1000);
        f.report(2, 3000, replica(500, 1));
        f.report(3, 3000, replica(400, 1));
        // lease 2000 + drift 200 after the last grant at 1000.
        assert!(matches!(f.decide_at(0, 3200), Decision::Wait(_)));
        assert_eq!(f.decide_at(0, 3201), elect(2, 1, ElectionReason::Failover));
        // Heartbeats that get no lease do not hold off a failover.
        f.report(1, 3200, primary(500, 1));
        assert_eq!(f.decide_at(0, 3201), elect(2, 1, ElectionReason::Failover));
        // Neither does a grant for another epoch.
        f.grant(1, 0, 3200);
        assert_eq!(f.decide_at(0, 3201), elect(2, 1, ElectionReason::Failover));
    }

    #[test]
    fn quorum_failover_needs_enough_of_the_set_to_report_and_behind_none() {
        let mut f = Fixture::new(5);
        f.bootstrap();
        f.sync_mode(SyncMode::Quorum);
        // PostgreSQL waits for any 2 of 2..5: three of them must report.
        f.apply(Command::ChangeSyncQuorum {
            epoch: 1,
            from: [].into(),
            from_quorum: None,
            to: [2, 3, 4, 5].into(),
            quorum: 2,
        });
        f.report(1, 1000, primary(900, 1));
        f.report(2, 3000, replica(700, 1));
        f.report(3, 3000, replica(900, 1));
        let blocked = |d: Decision| match d {
            Decision::Blocked(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let why = blocked(f.decide_at(0, 3201));
        assert!(why.contains("3 of them must report") && why.contains("2 do"), "{why}");
        // Node 5 reports and is ahead of the others (it acknowledged the
        // last commits with node 3): it is the one elected.
        f.report(5, 3000, replica(950, 1));
        assert_eq!(f.decide_at(0, 3201), elect(5, 1, ElectionReason::Failover));
        // Not promotable, it blocks everyone behind it instead of being
        // passed over.
        let mut tags = raftgres_storage::Tags::new();
        tags.insert("nofailover".into(), "true".into());
        f.apply(Command::SetMemberTags { node: 5, tags });
        let why = blocked(f.decide_at(0, 3201));
        assert!(why.contains("pg3: behind pg5"), "{why}");
        // With every commit on all four (any 4 of 4), one reporting
        // member is enough, as in `on` mode.
        f.apply(Command::ChangeSyncQuorum {
            epoch: 1,
            from: [2, 3, 4, 5].into(),
            from_quorum: Some(2),
            to: [2, 3, 4, 5].into(),
            quorum: 4,
        });
        f.views.remove(&5);
        f.views.remove(&2);
        assert_eq!(f.decide_at(0, 3201), elect(3, 1, ElectionReason::Failover));
    }

    #[test]
    fn quorum_failover_counts_only_positions_reported_after_the_primary_could_write() {
        let mut f = Fixture::new(4);
        f.bootstrap();
        f.sync_mode(SyncMode::Quorum);
        f.apply(Command::ChangeSyncQuorum {
            epoch: 1,
            from: [].into(),
            from_quorum: None,
            to: [2, 3, 4].into(),
            quorum: 2,
        });
        f.report(1, 1000, primary(900, 1));
        f.grant(1, 1, 1000);
        // The lease granted at 1000 allowed writes until 3000: node 3's
        // report from 2900 may miss the last of them.
        f.report(2, 3100, replica(900, 1));
        f.report(3, 2900, replica(800, 1));
        let d = f.decide_at(0, 3201);
        assert!(matches!(&d, Decision::Wait(w) if w.contains("where their WAL ends")), "{d:?}");
        f.report(3, 3150, replica(950, 1));
        assert_eq!(f.decide_at(0, 3201), elect(3, 1, ElectionReason::Failover), "its final position is ahead");
    }

    #[test]
    fn a_new_leader_waits_a_full_lease_from_its_election() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.report(2, 5000, replica(500, 1));
        f.report(3, 5000, replica(500, 1));
        // This leader never heard from node 1; it was elected at 4000.
        assert!(matches!(f.decide_at(4000, 6200), Decision::Wait(_)));
        assert_eq!(f.decide_at(4000, 6201), elect(2, 1, ElectionReason::Failover));
    }

    #[test]
    fn a_new_leader_that_inherited_a_lease_bound_waits_only_until_it() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        // Elected at 4000; its electing quorum witnessed a lease that ends
        // by 5000 (granted at 3000 at the latest).
        f.report(2, 5100, replica(500, 1));
        f.report(3, 5100, replica(500, 1));
        assert!(matches!(f.decide_with_floor(4000, 3000, 5200), Decision::Wait(_)), "the drift margin");
        assert_eq!(f.decide_with_floor(4000, 3000, 5201), elect(2, 1, ElectionReason::Failover));
        // A grant this leader made itself still counts in full.
        f.report(1, 4500, primary(500, 1));
        f.grant(1, 1, 4500);
        assert!(matches!(f.decide_with_floor(4000, 3000, 6700), Decision::Wait(_)));
    }

    #[test]
    fn a_switchover_elects_the_target_only_past_the_old_primarys_last_wal() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
        f.handover_since = Some(0);
        f.report(2, 90, replica(0x500, 1));
        f.report(3, 90, replica(0x100, 1));
        f.report(1, 90, primary(0x90, 1));
        assert!(matches!(f.decide_at(0, 100), Decision::Wait(w) if w.contains("final WAL")), "old still running");
        f.report(1, 100, Observation { checkpoint_lsn: Some(0x200), ..Observation::default() });
        assert!(matches!(f.decide_at(0, 100), Decision::Wait(w) if w.contains("past")), "target behind");
        f.report(3, 150, replica(0x228, 1));
        assert_eq!(f.decide_at(0, 200), elect(3, 1, ElectionReason::Switchover), "the target, not the furthest");
        // A target that never catches up: the old primary, which holds
        // every write, gets the role back.
        f.report(3, 150, replica(0x100, 1));
        f.report(1, 19_900, Observation { checkpoint_lsn: Some(0x200), ..Observation::default() });
        assert_eq!(f.decide_at(0, 20_000), elect(1, 1, ElectionReason::Failover));
        // Without a fresh report from the old primary, nobody is elected.
        assert!(matches!(f.decide_at(0, 30_000), Decision::Wait(_)));
    }

    #[test]
    fn a_switchover_target_that_gives_the_role_back_unpromoted_returns_it_to_the_old_primary() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        let stopped = f.vetoed_switchover_to_3();
        assert_eq!(f.decide_at(0, 200), elect(1, 2, ElectionReason::Failover), "the old primary, not node 2");
        // A target that promoted (its promotion recorded) may have written:
        // no give-back, an ordinary failover decision follows.
        let mut g = Fixture::new(3);
        g.bootstrap();
        g.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
        g.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
        g.apply(Command::ElectPrimary { if_epoch: 1, node: 3, reason: ElectionReason::Switchover });
        g.apply(Command::RecordPromotion { epoch: 2, node: 3, timeline: 2, switchpoint: 0x200 });
        g.apply(Command::ReleasePrimary { epoch: 2, node: 3, reason: ReleaseReason::PostgresFailed });
        g.report(1, 100, stopped.clone());
        g.report(3, 100, replica(0x228, 2));
        assert_ne!(g.decide_at(0, 200), elect(1, 2, ElectionReason::Failover));
        // Nor when the target no longer runs as a replica.
        f.report(3, 100, Observation { data_present: true, timeline: Some(1), ..Observation::default() });
        assert_ne!(f.decide_at(0, 200), elect(1, 2, ElectionReason::Failover));
    }

    #[test]
    fn a_switchover_without_a_target_in_synchronous_mode_elects_a_synchronous_standby_not_the_furthest() {
        // Found in a chaos run: "switch over to the best replica" chose a
        // replica outside the set; the state refused it every turn and
        // writes stayed paused for 7 s, until that replica's reports went
        // stale.
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.sync_mode(SyncMode::On);
        f.apply(Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [3].into() });
        f.apply(Command::ScheduleSwitchover { from: 1, to: None, at_ms: None });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
        f.handover_since = Some(0);
        f.report(1, 100, Observation { checkpoint_lsn: Some(0x200), ..Observation::default() });
        f.report(2, 150, replica(0x500, 1));
        f.report(3, 150, replica(0x228, 1));
        assert!(f.state.check_candidate(2, ElectionReason::Switchover).is_err(), "node 2 is outside the set");
        assert_eq!(f.decide_at(0, 200), elect(3, 1, ElectionReason::Switchover), "the standby, not the furthest");
        // After the timeout too.
        f.report(1, 19_900, Observation { checkpoint_lsn: Some(0x200), ..Observation::default() });
        f.report(2, 19_950, replica(0x500, 1));
        f.report(3, 19_950, replica(0x228, 1));
        assert_ne!(f.decide_at(0, 20_000), elect(2, 1, ElectionReason::Failover));
    }

    #[test]
    fn a_vetoed_switchover_in_synchronous_mode_goes_to_a_member_of_the_set_the_state_accepts() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.sync_mode(SyncMode::On);
        f.apply(Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2, 3].into() });
        f.vetoed_switchover_to_3();
        // The set of epoch 2 is {2}: the state refuses node 1, so the
        // controller does not propose it (a refused proposal every turn)
        // and elects the synchronous standby instead.
        assert!(f.state.check_candidate(1, ElectionReason::Failover).is_err());
        assert_eq!(f.decide_at(0, 200), elect(2, 2, ElectionReason::Failover));
    }

    #[test]
    fn a_switchover_whose_old_primary_never_reports_its_end_fails_over_after_the_timeout() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
        f.handover_since = Some(0);
        // The old primary stopped, but not cleanly: no shutdown checkpoint.
        f.report(1, 9_000, Observation { data_present: true, timeline: Some(1), ..Observation::default() });
        f.report(2, 9_000, replica(0x500, 1));
        f.report(3, 9_000, replica(0x100, 1));
        assert!(matches!(f.decide_at(0, 9_000), Decision::Wait(w) if w.contains("final WAL")), "within the timeout");
        f.report(1, 10_500, Observation { data_present: true, timeline: Some(1), ..Observation::default() });
        f.report(2, 10_500, replica(0x500 + (2 << 20), 1));
        f.report(3, 10_500, replica(0x100, 1));
        // After it: an ordinary failover, lag-checked: the planned target is
        // 2 MiB behind, so the furthest replica is elected, not a wait for
        // an operator.
        assert_eq!(f.decide_at(0, 10_500), elect(2, 1, ElectionReason::Failover));
        // Not in maintenance mode.
        f.apply(Command::SetMaintenance { on: true });
        assert!(matches!(f.decide_at(0, 10_500), Decision::Wait(w) if w.contains("maintenance")));
    }

    #[test]
    fn a_switchover_whose_old_primary_dies_after_its_clean_stop_never_elects_a_replica_behind_it() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
        f.handover_since = Some(0);
        // A clean stop with its WAL ending at 0x200 (2 MiB), then the node
        // dies: its report goes stale.
        f.report(1, 100, Observation { checkpoint_lsn: Some(2 << 20), ..Observation::default() });
        f.report(2, 10_500, replica(1 << 20, 1));
        f.report(3, 10_500, replica(1 << 20, 1));
        // Past the timeout, both replicas are behind the old primary's last
        // write, within the lag limit of each other: nobody is elected.
        assert!(matches!(f.decide_at(0, 10_500), Decision::Wait(w) if w.contains("past")), "no write lost");
        // A replica that has everything is elected, target or not.
        f.report(2, 10_600, replica((2 << 20) + 0x100, 1));
        assert_eq!(f.decide_at(0, 10_600), elect(2, 1, ElectionReason::Failover));
    }

    #[test]
    fn a_switchover_whose_target_stops_reporting_is_cancelled_before_the_primary_stops() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
        f.report(1, 2_900, primary(0x200, 1));
        f.grant(1, 1, 2_900);
        f.report(2, 2_900, replica(0x200, 1));
        f.report(3, 1_000, replica(0x200, 1));
        // Within a lease of its last report, the target counts as running.
        assert_eq!(f.decide_at(0, 2_900), Decision::Wait(String::new()));
        // Past it, the switchover is cancelled: the primary keeps the role.
        assert_eq!(f.decide_at(0, 3_100), Decision::Propose(Command::CancelSwitchover));
        // A leader elected less than a lease ago has had no chance to hear
        // from it: no verdict yet.
        assert_eq!(f.decide_at(2_000, 3_100), Decision::Wait(String::new()));
        // A scheduled switchover is judged when it is due.
        f.apply(Command::CancelSwitchover);
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: Some(5_000) });
        assert_eq!(f.decide_at(0, 3_100), Decision::Wait(String::new()));
        assert_eq!(f.decide_at(0, 5_000), Decision::Propose(Command::CancelSwitchover));
        // Without a target, when no other member reports.
        f.apply(Command::CancelSwitchover);
        f.apply(Command::ScheduleSwitchover { from: 1, to: None, at_ms: None });
        assert_eq!(f.decide_at(0, 3_100), Decision::Wait(String::new()), "pg2 reports");
        assert_eq!(f.decide_at(0, 5_000), Decision::Propose(Command::CancelSwitchover));
    }

    #[test]
    fn a_switchover_target_that_stops_reporting_after_the_handover_began_gives_the_role_back_at_once() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Switchover });
        f.handover_since = Some(3_000);
        f.report(1, 3_100, Observation { checkpoint_lsn: Some(0x200), ..Observation::default() });
        f.report(2, 3_100, replica(0x228, 1));
        f.report(3, 1_000, replica(0x100, 1));
        // 100 ms into the handover, not after its 10 s timeout: the old
        // primary, which holds every write, is primary again.
        assert_eq!(f.decide_at(0, 3_100), elect(1, 1, ElectionReason::Failover));
        // The same when the switchover was cancelled after the release.
        f.apply(Command::CancelSwitchover);
        f.handover_since = None;
        f.report(3, 3_100, replica(0x228, 1));
        assert_eq!(f.decide_at(0, 3_100), elect(1, 1, ElectionReason::Failover));
    }

    #[test]
    fn a_crash_release_with_a_later_switchover_pending_fails_over_at_once() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: Some(u64::MAX) });
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::PostgresFailed });
        f.report(2, 100, replica(0x500, 1));
        f.report(3, 100, replica(0x100, 1));
        assert_eq!(f.decide_at(0, 101), elect(2, 1, ElectionReason::Failover), "the furthest, not the planned target");
    }

    #[test]
    fn a_released_primary_takes_the_role_back_when_no_replica_runs() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.sync_mode(SyncMode::On);
        f.apply(Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2].into() });
        f.index += 1;
        f.state
            .apply(
                &Command::ReleasePrimary { epoch: 1, node: 1, reason: raftgres_storage::ReleaseReason::PostgresFailed },
                ApplyContext { index: f.index, time_ms: 1_000 },
            )
            .expect("applies");
        let stopped = Observation { data_present: true, running: false, timeline: Some(1), ..Observation::default() };
        let cloning = Observation { data_present: false, running: false, ..Observation::default() };
        f.report(1, 2_900, stopped.clone());
        f.report(2, 2_900, cloning.clone());
        f.report(3, 2_900, cloning);
        assert!(matches!(f.decide_at(0, 2_900), Decision::Blocked(_)), "within a lease of its release: nobody");
        // Past it: the released primary, outside the synchronous set but
        // holding every write, is elected again.
        assert_eq!(f.decide_at(0, 3_100), elect(1, 1, ElectionReason::Failover));
        let r = f.state.decide(&Command::ElectPrimary { if_epoch: 1, node: 1, reason: ElectionReason::Failover });
        assert!(r.is_ok(), "the state accepts it: {r:?}");
        // A running replica is preferred to it.
        f.report(2, 3_000, replica(500, 1));
        assert_eq!(f.decide_at(0, 3_100), elect(2, 1, ElectionReason::Failover));
    }

    #[test]
    fn a_released_primary_that_keeps_failing_is_taken_back_ever_more_slowly() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        let stopped = Observation { data_present: true, running: false, timeline: Some(1), ..Observation::default() };
        let cloning = Observation { data_present: false, running: false, ..Observation::default() };
        let at = |f: &mut Fixture, c: Command, ms: u64| {
            f.index += 1;
            f.state.apply(&c, ApplyContext { index: f.index, time_ms: ms }).expect("applies");
        };
        let release =
            |epoch| Command::ReleasePrimary { epoch, node: 1, reason: raftgres_storage::ReleaseReason::PostgresFailed };
        // Released, re-elected, released again: the second wait is two
        // lease periods (4 s), not one.
        at(&mut f, release(1), 1_000);
        at(&mut f, Command::ElectPrimary { if_epoch: 1, node: 1, reason: ElectionReason::Failover }, 3_100);
        at(&mut f, release(2), 4_000);
        for (id, o) in [(1, stopped.clone()), (2, cloning.clone()), (3, cloning.clone())] {
            f.report(id, 7_000, o);
        }
        assert!(matches!(f.decide_at(0, 7_000), Decision::Blocked(_)), "3 s after the second release: not yet");
        assert_eq!(f.decide_at(0, 8_100), elect(1, 2, ElectionReason::Failover));
        // The wait stops growing at a minute.
        assert_eq!(return_wait_ms(&f.state, 1, 8_100), 4_000);
        for epoch in 3..=12 {
            at(&mut f, Command::ElectPrimary { if_epoch: epoch - 1, node: 1, reason: ElectionReason::Failover }, 9_000);
            at(&mut f, release(epoch), 9_000);
        }
        assert_eq!(return_wait_ms(&f.state, 1, 9_000), RETURN_BACKOFF_MAX_MS);
        // Another node's election in between starts the count again.
        at(&mut f, Command::ElectPrimary { if_epoch: 12, node: 2, reason: ElectionReason::Failover }, 9_000);
        at(&mut f, Command::ElectPrimary { if_epoch: 13, node: 1, reason: ElectionReason::Failover }, 9_000);
        at(&mut f, release(14), 9_000);
        assert_eq!(return_wait_ms(&f.state, 1, 9_000), 2_000);
    }

    #[test]
    fn a_released_primary_fails_over_at_once() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::ReleasePrimary { epoch: 1, node: 1, reason: raftgres_storage::ReleaseReason::Shutdown });
        f.report(2, 100, replica(500, 1));
        f.report(3, 100, replica(600, 1));
        assert_eq!(f.decide_at(0, 101), elect(3, 1, ElectionReason::Failover));
    }

    #[test]
    fn candidates_are_filtered_by_health_tags_timeline_and_lag() {
        let mut f = Fixture::new(5);
        f.bootstrap();
        f.apply(Command::SetMemberTags { node: 2, tags: [("nofailover".to_string(), "true".to_string())].into() });
        f.report(1, 0, primary(10_000_000, 2));
        f.report(2, 9000, replica(10_000_000, 2)); // nofailover
        f.report(3, 9000, replica(9_999_000, 1)); // wrong timeline
        f.report(4, 9000, replica(5_000_000, 2)); // too far behind
        f.report(5, 1000, replica(10_000_000, 2)); // silent
        match f.decide_at(0, 9000) {
            Decision::Blocked(why) => {
                for needle in ["nofailover", "timeline", "behind", "no recent heartbeat"] {
                    assert!(why.contains(needle), "{needle} missing from {why}");
                }
            }
            d => panic!("unexpected {d:?}"),
        }
        f.report(4, 9000, replica(9_500_000, 2));
        assert_eq!(f.decide_at(0, 9000), elect(4, 1, ElectionReason::Failover));
    }

    #[test]
    fn priority_breaks_lsn_ties_and_maintenance_blocks() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        f.apply(Command::SetMemberTags { node: 3, tags: [("failover_priority".to_string(), "5".to_string())].into() });
        f.report(2, 9000, replica(700, 1));
        f.report(3, 9000, replica(700, 1));
        assert_eq!(f.decide_at(0, 9000), elect(3, 1, ElectionReason::Failover));
        f.apply(Command::SetMaintenance { on: true });
        assert!(matches!(f.decide_at(0, 9000), Decision::Wait(_)));
    }

    #[test]
    fn without_the_old_primarys_report_the_recorded_position_is_the_lag_reference() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        // The primary wrote 45 MB that no replica received, and died with
        // the Raft leader: this leader never saw its report.
        f.report(2, 5000, replica(0x100, 1));
        f.report(3, 5000, replica(0x80, 1));
        // Within the limit of the recorded position, the furthest replica.
        f.apply(Command::RecordPosition { epoch: 1, node: 1, timeline: 1, lsn: 0x100 + 1000 });
        assert_eq!(f.decide_at(2000, 5000), elect(2, 1, ElectionReason::Failover));
        f.apply(Command::RecordPosition { epoch: 1, node: 1, timeline: 1, lsn: 45 << 20 });
        match f.decide_at(2000, 5000) {
            Decision::Blocked(why) => {
                assert!(why.contains("bytes behind") && why.contains("accept-data-loss"), "{why}")
            }
            d => panic!("a replica 45 MB behind was elected: {d:?}"),
        }
    }

    #[test]
    fn no_recorded_position_and_no_report_means_no_automatic_failover() {
        let mut f = Fixture::new(3);
        f.apply(Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap });
        f.report(2, 5000, replica(0x100, 1));
        f.report(3, 5000, replica(0x100, 1));
        match f.decide_at(2000, 5000) {
            Decision::Blocked(why) => assert!(why.contains("no record of the primary's WAL position"), "{why}"),
            d => panic!("{d:?}"),
        }
        // With the old primary's own report, its position is known.
        f.report(1, 0, primary(0x100, 1));
        assert_eq!(f.decide_at(2000, 5000), elect(2, 1, ElectionReason::Failover));
    }

    #[test]
    fn a_replica_behind_the_recorded_timeline_is_not_promoted_unless_an_operator_accepts_the_loss() {
        let mut f = Fixture::new(3);
        f.bootstrap();
        // Node 2 was promoted onto timeline 2 and recorded it, then died
        // before either other node followed it; this leader never saw it.
        f.apply(Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover });
        f.apply(Command::RecordPromotion { epoch: 2, node: 2, timeline: 2, switchpoint: 0x300 });
        f.report(1, 5000, replica(0x300, 1));
        f.report(3, 5000, replica(0x300, 1));
        match f.decide_at(2000, 5000) {
            Decision::Blocked(why) => {
                assert!(why.contains("timeline 1, the primary's is 2 (recorded for pg2 in epoch 2)"), "{why}");
                assert!(why.contains("--accept-data-loss"), "{why}");
            }
            d => panic!("promoting onto timeline 1 would fork timeline 2: {d:?}"),
        }
        // A node that followed it is elected.
        f.report(1, 5000, replica(0x400, 2));
        assert_eq!(f.decide_at(2000, 5000), elect(1, 2, ElectionReason::Failover));
        // With nobody on it, an operator's forced failover goes through,
        // lag and timeline notwithstanding, once the lease has run out.
        f.report(1, 5000, replica(0x100, 1));
        f.apply(Command::ForceFailover { epoch: 2, to: 3 });
        assert!(matches!(f.decide_at(4000, 5000), Decision::Wait(_)), "the old lease may still be held");
        assert_eq!(f.decide_at(2000, 5000), elect(3, 2, ElectionReason::Manual));
        // A forced target that does not report is not elected blindly.
        f.report(3, 1000, replica(0x300, 1));
        assert!(matches!(f.decide_at(2000, 5000), Decision::Blocked(w) if w.contains("no recent heartbeat")));
    }
}
