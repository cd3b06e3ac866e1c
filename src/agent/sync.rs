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

/// Quorum mode (RFC 0003): a record PostgreSQL must apply before Raft
/// commits it. A smaller set (a standby removed) is committed once
/// PostgreSQL counts acknowledgements only from it; a larger quorum once
/// PostgreSQL waits for it and that many standbys have flushed past
/// `target`, the primary's flush position when it began to wait: every
/// commit acknowledged before lies at or below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumChange {
    pub standbys: BTreeSet<NodeId>,
    pub quorum: u32,
    /// PostgreSQL was seen running with it (by a session that read its
    /// configuration after the reload).
    pub applied: bool,
    pub target: Option<u64>,
}

/// What the primary's agent does next about the quorum record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuorumStep {
    Nothing,
    /// Commit this record in Raft (standbys added, quorum lowered, or a
    /// change PostgreSQL already applied).
    Commit(BTreeSet<NodeId>, u32),
    /// Render this record for PostgreSQL first (standbys removed, quorum
    /// raised).
    Start(BTreeSet<NodeId>, u32),
    /// PostgreSQL's own session applies the change: remember it.
    Applied,
    /// A turn later, its WAL senders have too: every commit acknowledged
    /// under the old record lies at or below the primary's flush position
    /// now, the target the standbys must pass.
    SetTarget(u64),
    /// The change is done or no longer right.
    Abandon,
}

/// What the quorum decision reads.
pub struct QuorumInput<'a> {
    /// `synchronous_node_count`: the quorum wanted.
    pub count: usize,
    pub committed: &'a BTreeSet<NodeId>,
    /// The committed quorum; `None` is a set waited for in full.
    pub committed_quorum: Option<u32>,
    pub pending: Option<&'a QuorumChange>,
    /// PostgreSQL runs with what the pending change renders, now.
    pub applied_now: bool,
    pub standbys: &'a [Standby],
    /// Committed standbys that have not streamed for longer than the grace.
    pub failed: &'a BTreeSet<NodeId>,
    pub primary_flush: u64,
}

/// The quorum a record stands for.
pub fn quorum_of(committed: &BTreeSet<NodeId>, quorum: Option<u32>) -> usize {
    quorum.map_or(committed.len(), |k| k as usize)
}

/// The next quorum step, one at a time. The set holds every eligible
/// standby that streams; the quorum is `synchronous_node_count`, or fewer
/// while fewer standbys stream (it degrades like `on`).
pub fn quorum_step(i: &QuorumInput) -> QuorumStep {
    let standby = |id: NodeId| i.standbys.iter().find(|s| s.id == id);
    let k = quorum_of(i.committed, i.committed_quorum);
    let gone = |id: &NodeId| i.failed.contains(id) || standby(*id).is_none_or(|s| s.excluded);
    if let Some(p) = i.pending {
        let still_valid = p.standbys.is_subset(i.committed)
            && !p.standbys.iter().any(gone)
            && (p.quorum as usize) <= p.standbys.len();
        if (&p.standbys, Some(p.quorum)) == (i.committed, i.committed_quorum) || !still_valid {
            return QuorumStep::Abandon;
        }
        if !i.applied_now {
            return QuorumStep::Nothing;
        }
        if !p.applied {
            return QuorumStep::Applied;
        }
        if p.quorum as usize <= k {
            // A removal: PostgreSQL no longer counts the removed standbys.
            return QuorumStep::Commit(p.standbys.clone(), p.quorum);
        }
        if p.target.is_none() {
            return QuorumStep::SetTarget(i.primary_flush);
        }
        let caught_up = p
            .standbys
            .iter()
            .filter_map(|id| standby(*id))
            .filter(|s| s.streaming && s.flush.zip(p.target).is_some_and(|(f, t)| f >= t))
            .count();
        return if caught_up >= p.quorum as usize {
            QuorumStep::Commit(p.standbys.clone(), p.quorum)
        } else {
            QuorumStep::Nothing
        };
    }
    let leaving: BTreeSet<NodeId> = i.committed.iter().copied().filter(gone).collect();
    if !leaving.is_empty() {
        let staying: BTreeSet<NodeId> = i.committed.difference(&leaving).copied().collect();
        if k > staying.len() {
            // Lower the quorum first, in Raft: the record then asks more
            // of a failover, never less.
            return QuorumStep::Commit(i.committed.clone(), staying.len() as u32);
        }
        return QuorumStep::Start(staying, k as u32);
    }
    let joining: BTreeSet<NodeId> = i
        .standbys
        .iter()
        .filter(|s| s.streaming && !s.excluded && !i.committed.contains(&s.id) && !i.failed.contains(&s.id))
        .map(|s| s.id)
        .collect();
    if !joining.is_empty() {
        // Added in Raft first: PostgreSQL counts its acknowledgements only
        // once the record names it.
        let wider = i.committed.union(&joining).copied().collect();
        return QuorumStep::Commit(wider, k as u32);
    }
    let wanted = i.count.min(i.committed.len());
    if k > wanted {
        return QuorumStep::Commit(i.committed.clone(), wanted as u32);
    }
    let streaming = i.committed.iter().filter(|id| standby(**id).is_some_and(|s| s.streaming)).count();
    let reachable = wanted.min(streaming);
    if reachable > k {
        return QuorumStep::Start(i.committed.clone(), reachable as u32);
    }
    if i.committed_quorum.is_none() && !i.committed.is_empty() {
        // A set from `on` or `strict`: record it as the quorum it is.
        return QuorumStep::Commit(i.committed.clone(), k as u32);
    }
    QuorumStep::Nothing
}

/// `synchronous_standby_names` for a quorum record: any `k` of the set, or
/// nothing to wait for.
pub fn quorum_names(waited: &BTreeSet<NodeId>, k: usize, names: &BTreeMap<NodeId, String>) -> String {
    let quoted: Vec<String> =
        waited.iter().filter_map(|id| names.get(id)).map(|n| format!("\"{}\"", n.replace('"', ""))).collect();
    if quoted.is_empty() || k == 0 {
        return String::new();
    }
    format!("ANY {} ({})", k.min(quoted.len()), quoted.join(", "))
}

/// The record a standby inherits if it is promoted, as the replicated
/// state computes it: itself removed, and in quorum mode one fewer.
pub fn inherited(committed: &BTreeSet<NodeId>, quorum: Option<u32>, me: NodeId) -> (BTreeSet<NodeId>, Option<u32>) {
    let mut set = committed.clone();
    let mut quorum = quorum;
    if set.remove(&me)
        && let Some(k) = &mut quorum
    {
        *k = k.saturating_sub(1).min(set.len() as u32);
    }
    (set, quorum)
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

    struct Quorum {
        count: usize,
        committed: BTreeSet<NodeId>,
        quorum: Option<u32>,
        pending: Option<QuorumChange>,
        applied_now: bool,
        standbys: Vec<Standby>,
        failed: BTreeSet<NodeId>,
    }

    impl Quorum {
        fn new() -> Quorum {
            Quorum {
                count: 2,
                committed: BTreeSet::new(),
                quorum: None,
                pending: None,
                applied_now: false,
                standbys: vec![standby(2, 100), standby(3, 200), standby(4, 150), standby(5, 50)],
                failed: BTreeSet::new(),
            }
        }

        fn step(&self) -> QuorumStep {
            quorum_step(&QuorumInput {
                count: self.count,
                committed: &self.committed,
                committed_quorum: self.quorum,
                pending: self.pending.as_ref(),
                applied_now: self.applied_now,
                standbys: &self.standbys,
                failed: &self.failed,
                primary_flush: 300,
            })
        }

        /// Does what a step asks, as the agent and Raft would.
        fn run(&mut self, step: &QuorumStep) {
            match step {
                QuorumStep::Nothing => {}
                QuorumStep::Commit(set, k) => {
                    self.committed = set.clone();
                    self.quorum = Some(*k);
                }
                QuorumStep::Start(set, k) => {
                    self.pending =
                        Some(QuorumChange { standbys: set.clone(), quorum: *k, applied: false, target: None })
                }
                QuorumStep::Applied => self.pending.as_mut().unwrap().applied = true,
                QuorumStep::SetTarget(lsn) => self.pending.as_mut().unwrap().target = Some(*lsn),
                QuorumStep::Abandon => self.pending = None,
            }
        }
    }

    #[test]
    fn quorum_adds_standbys_in_raft_first_and_raises_the_quorum_in_postgresql_first() {
        let mut q = Quorum::new();
        let step = q.step();
        assert_eq!(step, QuorumStep::Commit([2, 3, 4, 5].into(), 0), "every streaming standby, recorded first");
        q.run(&step);
        let step = q.step();
        assert_eq!(step, QuorumStep::Start([2, 3, 4, 5].into(), 2), "the quorum rises in PostgreSQL first");
        q.run(&step);
        assert_eq!(q.step(), QuorumStep::Nothing, "PostgreSQL has not applied it yet");
        q.applied_now = true;
        let step = q.step();
        assert_eq!(step, QuorumStep::Applied);
        q.run(&step);
        let step = q.step();
        assert_eq!(step, QuorumStep::SetTarget(300), "a turn later, the target");
        q.run(&step);
        assert_eq!(q.step(), QuorumStep::Nothing, "no standby has flushed 300 yet");
        q.standbys[1].flush = Some(300);
        assert_eq!(q.step(), QuorumStep::Nothing, "one of two");
        q.standbys[2].flush = Some(301);
        let step = q.step();
        assert_eq!(step, QuorumStep::Commit([2, 3, 4, 5].into(), 2));
        q.run(&step);
        assert_eq!(q.step(), QuorumStep::Abandon, "the change is committed");
        q.run(&QuorumStep::Abandon);
        assert_eq!(q.step(), QuorumStep::Nothing);
    }

    #[test]
    fn quorum_removes_standbys_in_postgresql_first_and_lowers_the_quorum_in_raft_first() {
        let mut q = Quorum::new();
        q.committed = [2, 3, 4, 5].into();
        q.quorum = Some(2);
        q.failed = [4, 5].into();
        let step = q.step();
        assert_eq!(step, QuorumStep::Start([2, 3].into(), 2), "two stay: the quorum holds, PostgreSQL first");
        q.run(&step);
        q.applied_now = true;
        let step = q.step();
        q.run(&step);
        let step = q.step();
        assert_eq!(step, QuorumStep::Commit([2, 3].into(), 2), "applied: now in Raft");
        q.run(&step);
        q.run(&QuorumStep::Abandon);
        // Another goes: the quorum falls first, in Raft, then the set.
        q.failed = [3].into();
        let step = q.step();
        assert_eq!(step, QuorumStep::Commit([2, 3].into(), 1));
        q.run(&step);
        assert_eq!(q.step(), QuorumStep::Start([2].into(), 1));
        // A pending removal that a failure overtook is dropped.
        q.pending = Some(QuorumChange { standbys: [2, 3].into(), quorum: 1, applied: true, target: None });
        assert_eq!(q.step(), QuorumStep::Abandon);
    }

    #[test]
    fn quorum_honours_nosync_and_a_lower_count_and_takes_over_an_on_set() {
        let mut q = Quorum::new();
        q.standbys[3].excluded = true;
        q.committed = [2, 3].into();
        q.quorum = None;
        assert_eq!(q.step(), QuorumStep::Commit([2, 3, 4].into(), 2), "the `on` set counts in full; 5 is nosync");
        q.committed = [2, 3, 4].into();
        q.quorum = Some(2);
        q.count = 1;
        assert_eq!(q.step(), QuorumStep::Commit([2, 3, 4].into(), 1), "a lower count is committed at once");
    }

    #[test]
    fn quorum_names_and_what_a_standby_inherits() {
        let names: BTreeMap<NodeId, String> = (1..=5).map(|i| (i, format!("pg{i}"))).collect();
        assert_eq!(quorum_names(&[2, 3, 4].into(), 2, &names), r#"ANY 2 ("pg2", "pg3", "pg4")"#);
        assert_eq!(quorum_names(&[2, 3].into(), 0, &names), "");
        assert_eq!(quorum_names(&BTreeSet::new(), 1, &names), "");
        assert_eq!(inherited(&[2, 3, 4].into(), Some(2), 3), ([2, 4].into(), Some(1)));
        assert_eq!(inherited(&[2, 3, 4].into(), Some(2), 5), ([2, 3, 4].into(), Some(2)));
        assert_eq!(inherited(&[2, 3].into(), None, 3), ([2].into(), None));
    }

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
