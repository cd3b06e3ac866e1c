//! What to do next to PostgreSQL, decided from the replicated state, the
//! lease and what was observed. One step per turn; the task re-observes
//! before the next.

use std::time::Duration;

use raftgres_storage::{ClusterState, DynamicConfig, ElectionReason, Lsn, MemberState, NodeId, ReleaseReason};

use crate::postgres::Observation;
use crate::postgres::control::ClusterControlState;
use crate::postgres::runner::StopMode;

/// A replica that has not streamed for this long while its upstream is up
/// has probably diverged; it is stopped and rewound.
pub const STUCK_REPLICA: Duration = Duration::from_secs(15);

/// Facts the task keeps about this daemon's recent past.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalFacts {
    /// pg_rewind succeeded; the next start must be as a standby.
    pub rewound: bool,
    /// pg_rewind failed on this data directory.
    pub rewind_failed: bool,
    /// The replica could not follow its upstream; rewind before restart.
    pub needs_rewind: bool,
    /// How long a running replica has gone without streaming.
    pub not_streaming_for: Duration,
    /// PostgreSQL died under this primary more often than allowed.
    pub restarts_exhausted: bool,
    /// The postmaster runs and says it serves, but has not answered for
    /// longer than `postgres.hang_timeout_ms`.
    pub hung: bool,
    /// The local marker says this node ran as primary and has not been
    /// rewound or cloned since: it may hold writes nobody else has.
    pub was_primary: bool,
    /// This node shut its primary of this epoch down cleanly for a
    /// switchover: its WAL ends at the shutdown checkpoint the target
    /// received, so it can follow the switchover's new primary (epoch + 1)
    /// without a rewind. Any other new primary may have forked earlier.
    pub clean_demote: Option<u64>,
}

pub struct PlanInput<'a> {
    pub me: NodeId,
    pub state: &'a ClusterState,
    /// This node holds a lease that allows writes in the state's epoch.
    pub lease_ok: bool,
    pub observed: &'a Observation,
    /// `pg_controldata` of a stopped data directory.
    pub control: Option<ClusterControlState>,
    pub facts: &'a LocalFacts,
    /// Wall clock, Unix milliseconds (for scheduled switchovers).
    pub now_ms: u64,
    /// Maintenance mode, and no operator request (restart, reinit) is being
    /// carried out: PostgreSQL is left alone, see [`allowed_hands_off`].
    pub hands_off: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgAction {
    /// New cluster: initdb, start as primary, create the replication role.
    Initdb,
    /// Clone the primary into an empty data directory.
    BaseBackup {
        host: String,
        port: u16,
    },
    StartPrimary,
    StartStandby {
        upstream: Option<(String, u16)>,
    },
    Promote,
    /// Point a running standby at a new upstream.
    Follow {
        host: String,
        port: u16,
    },
    Stop(StopMode),
    /// Finish crash recovery of a stopped former primary (single-user mode).
    Recover,
    Rewind {
        host: String,
        port: u16,
    },
    /// Remove the data directory so it is cloned again.
    Wipe,
    /// Make sure every other member has a replication slot here.
    EnsureSlots(Vec<NodeId>),
    /// Give up the primary role.
    Release(ReleaseReason),
    /// Switchover: shut the primary down cleanly, then release the role so
    /// the target is elected once it has received all WAL.
    Demote,
}

/// A replica that could not stream, and that pg_rewind found nothing to
/// rewind in this many times in a row, has diverged on the same timeline.
pub const NOOP_REWINDS: u32 = 2;

/// Whether a stopped data directory that pg_rewind found nothing to rewind
/// in has forked from the primary's history anyway. pg_rewind compares
/// timeline numbers, and two nodes promoted from the same timeline get the
/// same number. `local` is the directory's newest timeline and where it
/// began; `marker` the epoch of the was-primary marker. Proof of a fork:
/// - the recorded timeline (another node's promotion) has this number but
///   began elsewhere here;
/// - this node ran as primary in an earlier epoch than the recorded
///   promotion, and is on its timeline number without having been rewound
///   or cloned since: it promoted onto that number itself;
/// - it could not stream, and pg_rewind found nothing, `NOOP_REWINDS` times.
pub fn diverged(
    state: &ClusterState,
    me: NodeId,
    local: Option<(u32, Option<u64>)>,
    marker: Option<u64>,
    noop_rewinds: u32,
) -> Option<String> {
    if noop_rewinds >= NOOP_REWINDS {
        return Some(format!(
            "it could not stream from the primary, and pg_rewind found nothing to rewind {noop_rewinds} times: its WAL \
             forked on the same timeline"
        ));
    }
    let recorded = state.timeline.filter(|t| t.node != me)?;
    let (timeline, start) = local?;
    if timeline != recorded.timeline {
        return None;
    }
    if let Some(start) = start
        && start != recorded.switchpoint
    {
        return Some(format!(
            "timeline {timeline} began at {} here but at {} on the primary: two promotions took the same number",
            Lsn(start),
            Lsn(recorded.switchpoint)
        ));
    }
    if let Some(epoch) = marker.filter(|e| *e < recorded.epoch) {
        return Some(format!(
            "this node was promoted onto timeline {timeline} as primary of epoch {epoch}, and the primary of epoch {} \
             was promoted onto the same number without following it",
            recorded.epoch
        ));
    }
    None
}

/// The member state to report for what was observed.
pub fn member_state(o: &Observation) -> MemberState {
    match (o.data_present, o.running, o.accepting) {
        (_, true, true) if o.in_recovery == Some(true) && o.streaming => MemberState::Streaming,
        (_, true, true) => MemberState::Running,
        (_, true, false) => MemberState::Starting,
        _ => MemberState::Stopped,
    }
}

/// The next actions.
pub fn plan(input: &PlanInput) -> Vec<PgAction> {
    let actions = plan_reconcile(input);
    if !input.hands_off {
        return actions;
    }
    actions.into_iter().filter(|a| allowed_hands_off(input, a)).collect()
}

/// What the agent still does by itself in maintenance mode, where an
/// operator may stop, upgrade or move PostgreSQL by hand:
/// - what an operator asked for through the cluster: a switchover's
///   demotion and promotion, and restarting the server this agent stopped
///   for a switchover (as the new standby, or as the primary again when the
///   handover was given back);
/// - what does not start or stop the server: following a new upstream
///   (a reload), replication slots;
/// - the safety rules: a server that runs as a primary the state does not
///   name is stopped, as the fence stops one whose lease runs out.
///
/// Never by itself: initdb, clone, start, stop, crash recovery, rewind,
/// re-clone, or releasing the role of a primary whose server stopped.
pub fn allowed_hands_off(input: &PlanInput, action: &PgAction) -> bool {
    match action {
        PgAction::Promote | PgAction::Demote | PgAction::Follow { .. } | PgAction::EnsureSlots(_) => true,
        PgAction::Stop(_) => input.observed.is_primary() && input.state.primary_node() != Some(input.me),
        PgAction::StartPrimary | PgAction::StartStandby { .. } => input.facts.clean_demote.is_some(),
        PgAction::Initdb
        | PgAction::BaseBackup { .. }
        | PgAction::Recover
        | PgAction::Rewind { .. }
        | PgAction::Wipe
        | PgAction::Release(_) => false,
    }
}

/// The next actions, maintenance mode aside.
fn plan_reconcile(input: &PlanInput) -> Vec<PgAction> {
    let PlanInput { me, state, lease_ok, observed: o, control, facts, .. } = input;
    let primary = state.primary.as_ref();
    match primary {
        Some(p) if p.node == *me => plan_primary(input, p.reason),
        Some(p) => {
            if o.is_primary() {
                // Deposed: no writes may land here any more.
                return vec![PgAction::Stop(StopMode::Immediate)];
            }
            let clean_follow =
                facts.clean_demote.is_some_and(|e| p.epoch == e + 1 && p.reason == ElectionReason::Switchover);
            let Some(up) = state.member(p.node) else {
                return vec![];
            };
            let upstream =
                Upstream { host: up.pg_host.clone(), port: up.pg_port, ready: up.state == MemberState::Running };
            plan_replica(o, *control, facts, clean_follow, upstream, &state.config)
        }
        None => {
            let _ = lease_ok;
            if o.is_primary() {
                return vec![PgAction::Stop(StopMode::Immediate)];
            }
            if o.data_present
                && !o.running
                && control.is_some_and(|c| !c.was_primary())
                && !facts.needs_rewind
                && !facts.was_primary
            {
                // Keep replicas readable while no primary is named.
                return vec![PgAction::StartStandby { upstream: None }];
            }
            vec![]
        }
    }
}

fn plan_primary(input: &PlanInput, reason: ElectionReason) -> Vec<PgAction> {
    let PlanInput { me, state, lease_ok, observed: o, control, facts, now_ms, .. } = input;
    if facts.restarts_exhausted {
        return vec![PgAction::Release(ReleaseReason::PostgresFailed)];
    }
    if facts.hung && someone_can_take_over(state, *me) {
        // A hung primary accepts nothing, and the lease would keep it
        // primary for as long as the hang lasts: give the role up so a
        // streaming replica takes over. With no such replica, waiting for
        // the hang to end is the shorter outage.
        return vec![PgAction::Release(ReleaseReason::PostgresFailed)];
    }
    if !o.data_present && !o.running && reason != ElectionReason::Bootstrap {
        // Elected with no data directory: a rewind or re-clone wiped it
        // while the election was in flight, or its volume is gone. It can
        // never serve this epoch, and nobody may take over while it holds
        // the role: give it up, so the controller elects a member with
        // data under the usual rules (a released primary without data is
        // never given the role back).
        return vec![PgAction::Release(ReleaseReason::PostgresFailed)];
    }
    if switchover_due(state, *me, *now_ms) {
        return vec![PgAction::Demote];
    }
    if !lease_ok {
        // Promote or start only under a lease; the fence stops a primary
        // whose lease ran out.
        return vec![];
    }
    if !o.data_present {
        return if reason == ElectionReason::Bootstrap { vec![PgAction::Initdb] } else { vec![] };
    }
    if !o.running {
        let was_standby = facts.rewound || control.is_some_and(|c| !c.was_primary());
        return if was_standby {
            // Start as a standby and promote, so the new primary gets its
            // own timeline.
            vec![PgAction::StartStandby { upstream: None }]
        } else {
            vec![PgAction::StartPrimary]
        };
    }
    if !o.accepting {
        return vec![];
    }
    if o.in_recovery == Some(true) {
        return vec![PgAction::Promote];
    }
    let others: Vec<NodeId> = state.members.keys().copied().filter(|id| id != me).collect();
    vec![PgAction::EnsureSlots(others)]
}

/// Another member is a streaming replica that may be promoted.
fn someone_can_take_over(state: &ClusterState, me: NodeId) -> bool {
    state.members.values().any(|m| m.id != me && m.state == MemberState::Streaming && m.may_be_promoted())
}

/// A switchover away from `me` is due and its target (or, without one, some
/// replica) is streaming and may be promoted.
pub fn switchover_due(state: &ClusterState, me: NodeId, now_ms: u64) -> bool {
    let Some(sw) = &state.switchover else {
        return false;
    };
    if sw.from != me || sw.at_ms.is_some_and(|at| at > now_ms) {
        return false;
    }
    let ready = |m: &&raftgres_storage::Member| m.id != me && m.state == MemberState::Streaming && m.may_be_promoted();
    match sw.to {
        Some(t) => state.member(t).filter(ready).is_some(),
        None => state.members.values().any(|m| ready(&m)),
    }
}

/// The primary a replica follows.
struct Upstream {
    host: String,
    port: u16,
    /// Its PostgreSQL runs: it can be cloned, rewound from and followed.
    ready: bool,
}

fn plan_replica(
    o: &Observation,
    control: Option<ClusterControlState>,
    facts: &LocalFacts,
    clean_follow: bool,
    upstream: Upstream,
    config: &DynamicConfig,
) -> Vec<PgAction> {
    let Upstream { host, port, ready: upstream_ready } = upstream;
    let (use_rewind, reclone) = (config.use_pg_rewind, config.reclone_on_rewind_failure);
    if !o.data_present {
        return if upstream_ready { vec![PgAction::BaseBackup { host, port }] } else { vec![] };
    }
    if o.running {
        if !o.accepting {
            return vec![];
        }
        if upstream_ready && !o.streaming && facts.not_streaming_for >= STUCK_REPLICA {
            return vec![PgAction::Stop(StopMode::Fast)];
        }
        if o.upstream.as_ref() != Some(&(host.clone(), port)) {
            // Rewrites the configuration only if it names another upstream.
            return vec![PgAction::Follow { host, port }];
        }
        return vec![];
    }
    if facts.rewound || clean_follow {
        return vec![PgAction::StartStandby { upstream: Some((host, port)) }];
    }
    let diverged = facts.needs_rewind || facts.was_primary || control.is_some_and(|c| c.was_primary());
    if !diverged {
        return vec![PgAction::StartStandby { upstream: Some((host, port)) }];
    }
    if facts.rewind_failed {
        // Repair in place failed; only a fresh copy is left.
        return if reclone { vec![PgAction::Wipe] } else { vec![] };
    }
    if control == Some(ClusterControlState::InProduction) || control == Some(ClusterControlState::InArchiveRecovery) {
        return vec![PgAction::Recover];
    }
    if !upstream_ready {
        return vec![];
    }
    if use_rewind && !facts.rewind_failed {
        vec![PgAction::Rewind { host, port }]
    } else if reclone {
        vec![PgAction::Wipe]
    } else {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use raftgres_storage::{ApplyContext, Command, DynamicConfig, Member};

    use super::*;

    fn state(primary: Option<(NodeId, ElectionReason)>) -> ClusterState {
        let mut s = ClusterState::default();
        let mut i = 0;
        let mut apply = |s: &mut ClusterState, c: Command| {
            i += 1;
            s.apply(&c, ApplyContext { index: i, time_ms: 0 }).expect("applies");
        };
        apply(&mut s, Command::InitializeCluster { cluster_id: "c".into(), config: DynamicConfig::default() });
        for id in 1..=3 {
            let mut m = Member::new(id, format!("pg{id}"));
            m.pg_host = format!("10.0.0.{id}");
            m.pg_port = 5432;
            apply(&mut s, Command::AddMember { member: m });
        }
        if let Some((node, reason)) = primary {
            if reason != ElectionReason::Bootstrap {
                apply(&mut s, Command::ElectPrimary { if_epoch: 0, node: 3, reason: ElectionReason::Bootstrap });
                apply(&mut s, Command::ElectPrimary { if_epoch: 1, node, reason });
            } else {
                apply(&mut s, Command::ElectPrimary { if_epoch: 0, node, reason });
            }
            apply(&mut s, Command::SetMemberState { node, state: MemberState::Running });
        }
        s
    }

    fn obs(running: bool, in_recovery: Option<bool>) -> Observation {
        Observation {
            data_present: true,
            running,
            accepting: running,
            in_recovery: if running { in_recovery } else { None },
            ..Default::default()
        }
    }

    fn run(
        me: NodeId,
        s: &ClusterState,
        lease_ok: bool,
        o: &Observation,
        control: Option<ClusterControlState>,
        facts: &LocalFacts,
    ) -> Vec<PgAction> {
        plan(&PlanInput { me, state: s, lease_ok, observed: o, control, facts, now_ms: 0, hands_off: false })
    }

    /// The decision table: (case, me, primary, lease, observed, control, facts) → actions.
    #[test]
    fn decision_table() {
        let boot = state(Some((1, ElectionReason::Bootstrap)));
        let failed_over = state(Some((2, ElectionReason::Failover)));
        let none = state(None);
        let mut with_streaming_replica = state(Some((2, ElectionReason::Failover)));
        with_streaming_replica
            .apply(
                &Command::SetMemberState { node: 1, state: MemberState::Streaming },
                ApplyContext { index: 99, time_ms: 0 },
            )
            .expect("applies");
        let f = LocalFacts::default();
        let empty = Observation::default();
        let up2 = ("10.0.0.2".to_string(), 5432);
        let cases: Vec<(&str, Vec<PgAction>, Vec<PgAction>)> = vec![
            ("bootstrap primary with lease runs initdb", run(1, &boot, true, &empty, None, &f), vec![PgAction::Initdb]),
            ("no lease, no action", run(1, &boot, false, &empty, None, &f), vec![]),
            (
                "a primary elected by failover with no data gives the role up",
                run(2, &failed_over, true, &empty, None, &f),
                vec![PgAction::Release(ReleaseReason::PostgresFailed)],
            ),
            (
                "... also without a lease",
                run(2, &failed_over, false, &empty, None, &f),
                vec![PgAction::Release(ReleaseReason::PostgresFailed)],
            ),
            (
                "replica clones a running primary",
                run(2, &state(Some((1, ElectionReason::Bootstrap))), false, &empty, None, &f),
                {
                    // pg1 is Running in this fixture, so it clones.
                    vec![PgAction::BaseBackup { host: "10.0.0.1".into(), port: 5432 }]
                },
            ),
            (
                "elected replica is promoted",
                run(2, &failed_over, true, &obs(true, Some(true)), None, &f),
                vec![PgAction::Promote],
            ),
            (
                "elected replica without lease waits",
                run(2, &failed_over, false, &obs(true, Some(true)), None, &f),
                vec![],
            ),
            (
                "running primary keeps slots",
                run(2, &failed_over, true, &obs(true, Some(false)), None, &f),
                vec![PgAction::EnsureSlots(vec![1, 3])],
            ),
            (
                "stopped former standby elected starts as standby first",
                run(2, &failed_over, true, &obs(false, None), Some(ClusterControlState::ShutDownInRecovery), &f),
                vec![PgAction::StartStandby { upstream: None }],
            ),
            (
                "stopped primary restarts as primary",
                run(2, &failed_over, true, &obs(false, None), Some(ClusterControlState::InProduction), &f),
                vec![PgAction::StartPrimary],
            ),
            (
                "deposed primary still running is stopped at once",
                run(1, &failed_over, false, &obs(true, Some(false)), None, &f),
                vec![PgAction::Stop(StopMode::Immediate)],
            ),
            (
                "crashed former primary recovers before rewind",
                run(1, &failed_over, false, &obs(false, None), Some(ClusterControlState::InProduction), &f),
                vec![PgAction::Recover],
            ),
            (
                "cleanly stopped former primary is rewound",
                run(1, &failed_over, false, &obs(false, None), Some(ClusterControlState::ShutDown), &f),
                vec![PgAction::Rewind { host: up2.0.clone(), port: up2.1 }],
            ),
            (
                "rewound directory starts as a standby",
                run(
                    1,
                    &failed_over,
                    false,
                    &obs(false, None),
                    Some(ClusterControlState::InProduction),
                    &LocalFacts { rewound: true, ..f.clone() },
                ),
                vec![PgAction::StartStandby { upstream: Some(up2.clone()) }],
            ),
            (
                "failed rewind re-clones",
                run(
                    1,
                    &failed_over,
                    false,
                    &obs(false, None),
                    Some(ClusterControlState::ShutDown),
                    &LocalFacts { rewind_failed: true, ..f.clone() },
                ),
                vec![PgAction::Wipe],
            ),
            (
                "a directory that cannot be repaired is re-cloned",
                run(
                    1,
                    &failed_over,
                    false,
                    &obs(false, None),
                    Some(ClusterControlState::InArchiveRecovery),
                    &LocalFacts { needs_rewind: true, rewind_failed: true, ..f.clone() },
                ),
                vec![PgAction::Wipe],
            ),
            (
                "stopped standby restarts following the primary",
                run(3, &failed_over, false, &obs(false, None), Some(ClusterControlState::ShutDownInRecovery), &f),
                vec![PgAction::StartStandby { upstream: Some(up2.clone()) }],
            ),
            (
                "standby following the old primary is repointed",
                run(
                    3,
                    &failed_over,
                    false,
                    &Observation { upstream: Some(("10.0.0.1".into(), 5432)), ..obs(true, Some(true)) },
                    None,
                    &f,
                ),
                vec![PgAction::Follow { host: up2.0.clone(), port: up2.1 }],
            ),
            (
                "stuck standby is stopped for a rewind",
                run(
                    3,
                    &failed_over,
                    false,
                    &Observation { upstream: Some(up2.clone()), ..obs(true, Some(true)) },
                    None,
                    &LocalFacts { not_streaming_for: STUCK_REPLICA, ..f.clone() },
                ),
                vec![PgAction::Stop(StopMode::Fast)],
            ),
            (
                "unnamed primary is stopped when no primary is named",
                run(1, &none, false, &obs(true, Some(false)), None, &f),
                vec![PgAction::Stop(StopMode::Immediate)],
            ),
            (
                "primary whose PostgreSQL keeps dying releases",
                run(
                    2,
                    &failed_over,
                    true,
                    &obs(false, None),
                    Some(ClusterControlState::InProduction),
                    &LocalFacts { restarts_exhausted: true, ..f.clone() },
                ),
                vec![PgAction::Release(ReleaseReason::PostgresFailed)],
            ),
            (
                "a former primary whose control file looks like a standby's is rewound, not started",
                run(
                    1,
                    &failed_over,
                    false,
                    &obs(false, None),
                    Some(ClusterControlState::InArchiveRecovery),
                    &LocalFacts { was_primary: true, ..f.clone() },
                ),
                vec![PgAction::Recover],
            ),
            (
                "a former primary is not started as a standby while no primary is named",
                run(
                    1,
                    &none,
                    false,
                    &obs(false, None),
                    Some(ClusterControlState::ShutDownInRecovery),
                    &LocalFacts { was_primary: true, ..f.clone() },
                ),
                vec![],
            ),
            (
                "hung primary with nobody to take over waits for the hang to end",
                run(
                    2,
                    &state(Some((2, ElectionReason::Failover))),
                    true,
                    &Observation { accepting: false, in_recovery: None, ..obs(true, Some(false)) },
                    None,
                    &LocalFacts { hung: true, ..f.clone() },
                ),
                vec![],
            ),
            (
                "hung primary releases, with its lease still valid",
                run(
                    2,
                    &with_streaming_replica,
                    true,
                    &Observation { accepting: false, in_recovery: None, ..obs(true, Some(false)) },
                    None,
                    &LocalFacts { hung: true, ..f.clone() },
                ),
                vec![PgAction::Release(ReleaseReason::PostgresFailed)],
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    /// Maintenance mode: (case, me, primary, lease, observed, control, facts)
    /// → actions, with what the agent does outside it noted.
    #[test]
    fn maintenance_mode_leaves_postgresql_alone() {
        let paused = |me, s: &ClusterState, lease_ok, o: &Observation, control, facts: &LocalFacts| {
            plan(&PlanInput { me, state: s, lease_ok, observed: o, control, facts, now_ms: 0, hands_off: true })
        };
        let boot = state(Some((1, ElectionReason::Bootstrap)));
        let failed_over = state(Some((2, ElectionReason::Failover)));
        let none = state(None);
        let f = LocalFacts::default();
        let stopped = obs(false, None);
        let up2 = ("10.0.0.2".to_string(), 5432);
        let down = Some(ClusterControlState::ShutDownInRecovery);
        let crashed = Some(ClusterControlState::InProduction);
        let cases: Vec<(&str, Vec<PgAction>, Vec<PgAction>)> = vec![
            // Left alone (outside maintenance: the action in the name).
            ("stopped standby is not started", paused(3, &failed_over, false, &stopped, down, &f), vec![]),
            (
                "stopped standby is not started while no primary is named",
                paused(3, &none, false, &stopped, down, &f),
                vec![],
            ),
            ("primary stopped by hand is not started", paused(2, &failed_over, true, &stopped, crashed, &f), vec![]),
            (
                "primary whose PostgreSQL stopped does not release the role",
                paused(2, &failed_over, true, &stopped, crashed, &LocalFacts { restarts_exhausted: true, ..f.clone() }),
                vec![],
            ),
            (
                "hung primary is not killed",
                paused(
                    2,
                    &failed_over,
                    true,
                    &Observation { accepting: false, in_recovery: None, ..obs(true, Some(false)) },
                    None,
                    &LocalFacts { hung: true, ..f.clone() },
                ),
                vec![],
            ),
            ("empty data directory is not cloned", paused(2, &boot, false, &Observation::default(), None, &f), vec![]),
            ("bootstrap primary does not initdb", paused(1, &boot, true, &Observation::default(), None, &f), vec![]),
            ("crashed former primary is not recovered", paused(1, &failed_over, false, &stopped, crashed, &f), vec![]),
            (
                "cleanly stopped former primary is not rewound",
                paused(1, &failed_over, false, &stopped, Some(ClusterControlState::ShutDown), &f),
                vec![],
            ),
            (
                "failed rewind is not re-cloned",
                paused(
                    1,
                    &failed_over,
                    false,
                    &stopped,
                    Some(ClusterControlState::ShutDown),
                    &LocalFacts { rewind_failed: true, ..f.clone() },
                ),
                vec![],
            ),
            (
                "stuck standby is not stopped",
                paused(
                    3,
                    &failed_over,
                    false,
                    &Observation { upstream: Some(up2.clone()), ..obs(true, Some(true)) },
                    None,
                    &LocalFacts { not_streaming_for: STUCK_REPLICA, ..f.clone() },
                ),
                vec![],
            ),
            // Still done.
            (
                "deposed primary still running is stopped (the fence's rule)",
                paused(1, &failed_over, false, &obs(true, Some(false)), None, &f),
                vec![PgAction::Stop(StopMode::Immediate)],
            ),
            (
                "unnamed primary is stopped when no primary is named",
                paused(1, &none, false, &obs(true, Some(false)), None, &f),
                vec![PgAction::Stop(StopMode::Immediate)],
            ),
            (
                "a replica an operator's switchover elected is promoted",
                paused(2, &failed_over, true, &obs(true, Some(true)), None, &f),
                vec![PgAction::Promote],
            ),
            (
                "standby following the old primary is repointed",
                paused(
                    3,
                    &failed_over,
                    false,
                    &Observation { upstream: Some(("10.0.0.1".into(), 5432)), ..obs(true, Some(true)) },
                    None,
                    &f,
                ),
                vec![PgAction::Follow { host: up2.0.clone(), port: up2.1 }],
            ),
            (
                "running primary keeps slots",
                paused(2, &failed_over, true, &obs(true, Some(false)), None, &f),
                vec![PgAction::EnsureSlots(vec![1, 3])],
            ),
            (
                "a primary this agent stopped for a switchover that was given back starts again",
                paused(
                    2,
                    &failed_over,
                    true,
                    &stopped,
                    Some(ClusterControlState::ShutDown),
                    &LocalFacts { clean_demote: Some(1), ..f.clone() },
                ),
                vec![PgAction::StartPrimary],
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
        // A switchover an operator asked for still demotes the primary, and
        // the old primary restarts as the new primary's standby.
        let mut s = state(Some((1, ElectionReason::Bootstrap)));
        s.apply(
            &Command::ScheduleSwitchover { from: 1, to: Some(2), at_ms: None },
            ApplyContext { index: 50, time_ms: 0 },
        )
        .expect("applies");
        s.apply(
            &Command::SetMemberState { node: 2, state: MemberState::Streaming },
            ApplyContext { index: 51, time_ms: 0 },
        )
        .expect("applies");
        assert_eq!(paused(1, &s, true, &obs(true, Some(false)), None, &f), vec![PgAction::Demote]);
        let mut after = state(Some((2, ElectionReason::Switchover)));
        after
            .apply(
                &Command::SetMemberState { node: 2, state: MemberState::Running },
                ApplyContext { index: 50, time_ms: 0 },
            )
            .expect("applies");
        let demoted = LocalFacts { clean_demote: Some(1), ..f.clone() };
        assert_eq!(
            paused(1, &after, false, &stopped, Some(ClusterControlState::ShutDown), &demoted),
            vec![PgAction::StartStandby { upstream: Some(up2.clone()) }]
        );
    }

    #[test]
    fn a_due_switchover_demotes_only_towards_a_streaming_target() {
        let mut s = state(Some((1, ElectionReason::Bootstrap)));
        let f = LocalFacts::default();
        let mut i = 100;
        let mut apply = |s: &mut ClusterState, c: Command| {
            i += 1;
            s.apply(&c, ApplyContext { index: i, time_ms: 0 }).expect("applies");
        };
        apply(&mut s, Command::ScheduleSwitchover { from: 1, to: Some(2), at_ms: Some(5_000) });
        let input = |s: &ClusterState, now_ms| {
            plan(&PlanInput {
                me: 1,
                state: s,
                lease_ok: true,
                observed: &obs(true, Some(false)),
                control: None,
                facts: &f,
                now_ms,
                hands_off: false,
            })
        };
        assert_eq!(input(&s, 6_000), vec![PgAction::EnsureSlots(vec![2, 3])], "target not streaming yet");
        apply(&mut s, Command::SetMemberState { node: 2, state: MemberState::Streaming });
        assert_eq!(input(&s, 4_000), vec![PgAction::EnsureSlots(vec![2, 3])], "not due yet");
        assert_eq!(input(&s, 6_000), vec![PgAction::Demote]);
        assert!(!switchover_due(&s, 2, 6_000), "only the primary demotes");
        // After a clean demotion the old primary follows without a rewind.
        // After a clean demotion the old primary follows the switchover's
        // new primary without a rewind; any other new primary, it rewinds.
        let demoted = LocalFacts { clean_demote: Some(1), ..LocalFacts::default() };
        let mut s2 = state(Some((2, ElectionReason::Switchover)));
        apply(&mut s2, Command::SetMemberState { node: 2, state: MemberState::Running });
        assert_eq!(
            run(1, &s2, false, &obs(false, None), Some(ClusterControlState::ShutDown), &demoted),
            vec![PgAction::StartStandby { upstream: Some(("10.0.0.2".into(), 5432)) }]
        );
        let mut s3 = state(Some((2, ElectionReason::Failover)));
        apply(&mut s3, Command::SetMemberState { node: 2, state: MemberState::Running });
        assert_eq!(
            run(1, &s3, false, &obs(false, None), Some(ClusterControlState::ShutDown), &demoted),
            vec![PgAction::Rewind { host: "10.0.0.2".into(), port: 5432 }]
        );
    }

    #[test]
    fn member_state_follows_observation() {
        assert_eq!(member_state(&Observation::default()), MemberState::Stopped);
        assert_eq!(member_state(&obs(true, Some(false))), MemberState::Running);
        assert_eq!(member_state(&Observation { streaming: true, ..obs(true, Some(true)) }), MemberState::Streaming);
        assert_eq!(member_state(&Observation { accepting: false, ..obs(true, None) }), MemberState::Starting);
    }

    #[test]
    fn a_same_numbered_timeline_that_began_elsewhere_or_that_this_node_promoted_onto_is_a_fork() {
        // Node 1 (this node) was primary of epoch 1 and promoted onto
        // timeline 2 at 0x300; node 2, elected in epoch 2 without following
        // it, was promoted onto timeline 2 too and recorded it.
        let mut s = state(Some((1, ElectionReason::Failover)));
        let epoch = s.epoch;
        s.apply(
            &Command::ElectPrimary { if_epoch: epoch, node: 2, reason: ElectionReason::Failover },
            Default::default(),
        )
        .unwrap();
        let rec = Command::RecordPromotion { epoch: epoch + 1, node: 2, timeline: 2, switchpoint: 0x280 };
        s.apply(&rec, Default::default()).unwrap();
        let why = diverged(&s, 1, Some((2, Some(0x300))), None, 0).expect("different switch points");
        assert!(why.contains("began at 0/300 here but at 0/280"), "{why}");
        // Same switch point (both had all of timeline 1), but this node ran
        // as primary of an earlier epoch and was never rewound since.
        let why = diverged(&s, 1, Some((2, Some(0x280))), Some(epoch), 0).expect("the marker");
        assert!(why.contains("promoted onto timeline 2 as primary of epoch"), "{why}");
        // A replica that followed the recorded promotion has not forked.
        assert_eq!(diverged(&s, 1, Some((2, Some(0x280))), None, 0), None);
        // An older timeline is pg_rewind's to judge.
        assert_eq!(diverged(&s, 1, Some((1, Some(0))), Some(epoch), 0), None);
        // The recorded primary itself is not judged against its own record.
        assert_eq!(diverged(&s, 2, Some((2, Some(0x300))), None, 0), None);
        // Repeated no-op rewinds of a replica that cannot stream.
        assert!(diverged(&s, 3, Some((2, Some(0x280))), None, NOOP_REWINDS).is_some());
        assert_eq!(diverged(&s, 3, Some((2, Some(0x280))), None, NOOP_REWINDS - 1), None);
    }
}
