//! The synchronous-standby set, as the primary's agent keeps it (RFC 0001,
//! "The synchronous set"): pure decisions over what PostgreSQL reports in
//! `pg_stat_replication`, and the `synchronous_standby_names` they call
//! for. The invariant: every member of the committed set is a standby
//! PostgreSQL waits for. So the set is widened in PostgreSQL first and in
//! Raft only once the new standby is synchronous and has caught up, and
//! narrowed in Raft first and in PostgreSQL after.

use std::collections::{BTreeMap, BTreeSet};

use raftgres_storage::{NodeId, SyncMode};

/// One standby as the primary sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standby {
    pub id: NodeId,
    /// Its WAL sender streams.
    pub streaming: bool,
    /// PostgreSQL waits for it (`sync_state` is `sync` or `quorum`).
    pub waited_for: bool,
    /// Flushed up to, on the standby.
    pub flush: Option<u64>,
    /// Tagged `nosync`, or not a member: never synchronous.
    pub excluded: bool,
}

/// A standby being added: PostgreSQL was told to wait for it; once it
/// does, `target` is the primary's flush position at that moment, and the
/// standby must flush past it before the wider set is committed. Every
/// commit acknowledged before PostgreSQL waited for it lies at or below
/// `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widening {
    pub node: NodeId,
    pub target: Option<u64>,
}

/// What the primary's agent does next about the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    Nothing,
    /// Tell PostgreSQL to wait for this standby too (a reload).
    StartWidening(NodeId),
    /// PostgreSQL now waits for the standby: remember where the primary's
    /// flush position is.
    SetTarget(u64),
    /// Commit this set in Raft (a widening whose standby caught up, or a
    /// narrowing, which comes before PostgreSQL stops waiting).
    Commit(BTreeSet<NodeId>),
    /// The standby being added went away: stop waiting for it.
    AbandonWidening,
}

/// What the decision reads.
pub struct SyncInput<'a> {
    pub mode: SyncMode,
    /// `synchronous_node_count`.
    pub count: usize,
    pub committed: &'a BTreeSet<NodeId>,
    pub widening: Option<&'a Widening>,
    pub standbys: &'a [Standby],
    /// Committed standbys that have not streamed for longer than the
    /// grace the agent allows (a new primary's standbys need a moment to
    /// follow it).
    pub failed: &'a BTreeSet<NodeId>,
    /// The primary's WAL flush position now.
    pub primary_flush: u64,
}

/// The next step, one at a time.
pub fn sync_step(i: &SyncInput) -> SyncStep {
    let standby = |id: NodeId| i.standbys.iter().find(|s| s.id == id);
    let healthy = |id: NodeId| standby(id).is_some_and(|s| s.streaming && !s.excluded);
    if i.mode == SyncMode::Off {
        if i.widening.is_some() {
            return SyncStep::AbandonWidening;
        }
        return if i.committed.is_empty() { SyncStep::Nothing } else { SyncStep::Commit(BTreeSet::new()) };
    }
    // Members that must leave: failed, excluded, or no longer standbys.
    let leaving: BTreeSet<NodeId> = i
        .committed
        .iter()
        .copied()
        .filter(|id| i.failed.contains(id) || standby(*id).is_some_and(|s| s.excluded))
        .collect();
    let staying: BTreeSet<NodeId> = i.committed.difference(&leaving).copied().collect();
    if !leaving.is_empty() && (i.mode == SyncMode::On || staying.len() >= i.count.max(1)) {
        // `on` degrades at once; `strict` only once replacements are in.
        return SyncStep::Commit(staying);
    }
    if let Some(w) = i.widening {
        if !healthy(w.node) || i.committed.contains(&w.node) {
            return SyncStep::AbandonWidening;
        }
        let s = standby(w.node).expect("healthy");
        return match w.target {
            None if s.waited_for => SyncStep::SetTarget(i.primary_flush),
            None => SyncStep::Nothing,
            Some(target) if s.waited_for && s.flush.is_some_and(|f| f >= target) => {
                let mut wider = i.committed.clone();
                wider.insert(w.node);
                SyncStep::Commit(wider)
            }
            Some(_) => SyncStep::Nothing,
        };
    }
    if staying.len() < i.count {
        let best = i
            .standbys
            .iter()
            .filter(|s| s.streaming && !s.excluded && !i.committed.contains(&s.id))
            .max_by_key(|s| (s.flush, std::cmp::Reverse(s.id)));
        return match best {
            Some(s) => SyncStep::StartWidening(s.id),
            None => SyncStep::Nothing,
        };
    }
    if leaving.is_empty() && i.committed.len() > i.count {
        // `synchronous_node_count` was lowered: keep the furthest ahead.
        let mut by_flush: Vec<NodeId> = i.committed.iter().copied().collect();
        by_flush.sort_by_key(|id| (std::cmp::Reverse(standby(*id).and_then(|s| s.flush)), *id));
        return SyncStep::Commit(by_flush.into_iter().take(i.count).collect());
    }
    SyncStep::Nothing
}

/// The name PostgreSQL waits for in strict mode when no standby is
/// synchronous: none has it, so commits wait.
pub const NO_STANDBY: &str = "raftgres_no_synchronous_standby";

/// `synchronous_standby_names` for the committed set and the standby being
/// added, every one of them required; names are the members' names (their
/// `application_name`).
pub fn standby_names(mode: SyncMode, waited: &BTreeSet<NodeId>, names: &BTreeMap<NodeId, String>) -> String {
    if mode == SyncMode::Off && waited.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> =
        waited.iter().filter_map(|id| names.get(id)).map(|n| format!("\"{}\"", n.replace('"', ""))).collect();
    match (quoted.is_empty(), mode) {
        (true, SyncMode::Strict) => format!("\"{NO_STANDBY}\""),
        (true, _) => String::new(),
        (false, _) => format!("ANY {} ({})", quoted.len(), quoted.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(id: NodeId, flush: u64) -> Standby {
        Standby { id, streaming: true, waited_for: false, flush: Some(flush), excluded: false }
    }

    struct Case {
        mode: SyncMode,
        count: usize,
        committed: BTreeSet<NodeId>,
        widening: Option<Widening>,
        standbys: Vec<Standby>,
        failed: BTreeSet<NodeId>,
    }

    impl Case {
        fn new(mode: SyncMode) -> Case {
            Case {
                mode,
                count: 1,
                committed: BTreeSet::new(),
                widening: None,
                standbys: vec![standby(2, 100), standby(3, 200)],
                failed: BTreeSet::new(),
            }
        }

        fn step(&self) -> SyncStep {
            sync_step(&SyncInput {
                mode: self.mode,
                count: self.count,
                committed: &self.committed,
                widening: self.widening.as_ref(),
                standbys: &self.standbys,
                failed: &self.failed,
                primary_flush: 300,
            })
        }
    }

    #[test]
    fn widening_waits_for_postgresql_then_for_the_standby_to_catch_up() {
        let mut c = Case::new(SyncMode::On);
        assert_eq!(c.step(), SyncStep::StartWidening(3), "the standby furthest ahead");
        c.widening = Some(Widening { node: 3, target: None });
        assert_eq!(c.step(), SyncStep::Nothing, "PostgreSQL does not wait for it yet");
        c.standbys[1].waited_for = true;
        assert_eq!(c.step(), SyncStep::SetTarget(300), "from now on every commit waits for it");
        c.widening = Some(Widening { node: 3, target: Some(300) });
        assert_eq!(c.step(), SyncStep::Nothing, "flushed 200 of 300");
        c.standbys[1].flush = Some(300);
        assert_eq!(c.step(), SyncStep::Commit([3].into()));
        c.standbys[1].streaming = false;
        assert_eq!(c.step(), SyncStep::AbandonWidening, "it went away before the commit");
    }

    #[test]
    fn on_degrades_at_once_and_strict_only_once_replaced() {
        let mut c = Case::new(SyncMode::On);
        c.committed = [3].into();
        c.failed = [3].into();
        c.standbys[1].streaming = false;
        assert_eq!(c.step(), SyncStep::Commit([].into()), "on: narrow to empty, in Raft first");
        c.mode = SyncMode::Strict;
        assert_eq!(c.step(), SyncStep::StartWidening(2), "strict: replace first");
        c.widening = Some(Widening { node: 2, target: Some(300) });
        c.standbys[0] = Standby { waited_for: true, flush: Some(300), ..standby(2, 300) };
        assert_eq!(c.step(), SyncStep::Commit([2, 3].into()));
        c.widening = None;
        c.committed = [2, 3].into();
        assert_eq!(c.step(), SyncStep::Commit([2].into()), "then drop the failed one");
        c.standbys[0].streaming = false;
        c.failed = [2, 3].into();
        c.committed = [2].into();
        assert_eq!(c.step(), SyncStep::Nothing, "strict never narrows to empty");
    }

    #[test]
    fn nosync_members_leave_and_are_never_added() {
        let mut c = Case::new(SyncMode::On);
        c.standbys[1].excluded = true;
        assert_eq!(c.step(), SyncStep::StartWidening(2));
        c.committed = [3].into();
        assert_eq!(c.step(), SyncStep::Commit([].into()));
    }

    #[test]
    fn off_empties_the_set_and_a_lowered_count_keeps_the_furthest_ahead() {
        let mut c = Case::new(SyncMode::Off);
        c.committed = [2, 3].into();
        assert_eq!(c.step(), SyncStep::Commit([].into()));
        c.mode = SyncMode::On;
        assert_eq!(c.step(), SyncStep::Commit([3].into()));
        c.count = 2;
        assert_eq!(c.step(), SyncStep::Nothing);
    }

    #[test]
    fn names_require_every_standby_waited_for() {
        let names = BTreeMap::from([(2, "pg2".to_string()), (3, "pg3".to_string())]);
        assert_eq!(standby_names(SyncMode::On, &[2, 3].into(), &names), "ANY 2 (\"pg2\", \"pg3\")");
        assert_eq!(standby_names(SyncMode::On, &[].into(), &names), "");
        assert_eq!(standby_names(SyncMode::Strict, &[].into(), &names), format!("\"{NO_STANDBY}\""));
        assert_eq!(standby_names(SyncMode::Off, &[].into(), &names), "");
        assert_eq!(standby_names(SyncMode::Off, &[2].into(), &names), "ANY 1 (\"pg2\")", "until Raft narrows");
    }
}
