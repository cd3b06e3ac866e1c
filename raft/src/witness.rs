//! Lease witnesses: what a new Raft leader learns about the primary lease
//! its predecessor may have granted, so it need not wait a full lease from
//! its own election before it may replace a primary that died with it.
//!
//! The rule, in three parts:
//!
//! 1. **Notice.** Before the leader confirms its leadership for a grant (the
//!    quorum round of `ensure_linearizable`), it records a *notice*: a
//!    bound on when the lease it is about to grant can end. Every
//!    AppendEntries it sends carries the time left to that bound. A
//!    follower records the bound (its receipt time plus the time left)
//!    *before* openraft sees the request, so a follower that confirms the
//!    leadership for a grant has witnessed its bound; the grant needs a
//!    quorum of confirmations, so a quorum has witnessed every lease.
//! 2. **Vote.** A node that grants its vote to a candidate sends, with the
//!    reply, the time left to the latest bound it has witnessed (or
//!    recorded as leader). Having voted, it refuses the old term's
//!    AppendEntries, so it confirms no later grant. A node that started
//!    less than a lease ago may have witnessed a bound before it restarted
//!    and forgotten it: it reports its start plus the longest lease instead.
//! 3. **Inherit.** A new leader whose quorum of the current membership (its
//!    own vote and the granted votes that carried a bound) reported bounds
//!    knows that no lease outlasts the latest of them: that quorum
//!    intersects the quorum that confirmed any grant. Without such a quorum
//!    (a peer of an older release sends no bound) it knows nothing and
//!    waits a full lease from its election, as before.
//!
//! Times cross the wire as milliseconds left, never as clock readings: each
//! end adds them to its own monotonic clock at receipt, which can only move
//! a bound later (the message took time to arrive). Clock rates are assumed
//! to agree within the drift margin the controller adds, as for the lease.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftgres_storage::NodeId;

/// Shared by the transport's client and server and by the daemon.
#[derive(Clone, Debug)]
pub struct LeaseWitness {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// When this process began to witness: bounds it may have witnessed
    /// before are lost.
    started: Instant,
    /// The longest lease the cluster grants (`lease_ttl_ms`), once the
    /// daemon has said; until then this node cannot vouch for its past.
    longest: Option<Duration>,
    /// The latest lease bound witnessed or recorded as leader.
    bound: Option<Instant>,
    /// As leader: the bound the AppendEntries it sends carry.
    notice: Option<Instant>,
    /// As candidate: the bounds its granted votes carried, for one term.
    election: Option<Election>,
}

#[derive(Debug)]
struct Election {
    term: u64,
    /// Each voter that granted its vote, with the bound it reported
    /// (`None`: a lease is known to have ended; absent: it did not say).
    bounds: BTreeMap<NodeId, Option<Instant>>,
}

/// What a new leader knows of leases granted before its election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inherited {
    /// No quorum vouched: count a full lease from the election.
    Unknown,
    /// No lease granted before the election lasts past this instant
    /// (`None`: every lease has already ended).
    Bound(Option<Instant>),
}

impl Default for LeaseWitness {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl LeaseWitness {
    pub fn new(started: Instant) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner { started, longest: None, bound: None, notice: None, election: None })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The longest lease the cluster grants; a node vouches for leases it
    /// witnessed before it started only once this is known.
    pub fn set_longest_lease(&self, ttl: Duration) {
        let mut i = self.lock();
        i.longest = Some(i.longest.map_or(ttl, |l| l.max(ttl)));
    }

    /// Leader: a lease about to be granted ends by `bound`. Called before
    /// the leadership is confirmed for the grant.
    pub fn notice(&self, bound: Instant) {
        let mut i = self.lock();
        i.notice = Some(i.notice.map_or(bound, |n| n.max(bound)));
        i.bound = Some(i.bound.map_or(bound, |b| b.max(bound)));
    }

    /// Leader: what an AppendEntries sent at `now` carries, in milliseconds
    /// left (rounded up).
    pub fn outgoing_notice(&self, now: Instant) -> Option<u64> {
        let n = self.lock().notice?;
        (n > now).then(|| ceil_ms(n - now))
    }

    /// Follower: an AppendEntries received at `now` carried `left_ms`.
    pub fn witness(&self, now: Instant, left_ms: u64) {
        let bound = now + Duration::from_millis(left_ms);
        let mut i = self.lock();
        i.bound = Some(i.bound.map_or(bound, |b| b.max(bound)));
    }

    /// This node's vouched bound at `now`: `None` when it cannot vouch,
    /// `Some(None)` when it knows of no lease that has not ended.
    fn vouched(i: &Inner, now: Instant) -> Option<Option<Instant>> {
        let longest = i.longest?;
        let forgotten = i.started + longest;
        let bound = match i.bound {
            Some(b) => Some(b.max(forgotten)),
            None => Some(forgotten),
        };
        Some(bound.filter(|b| *b > now))
    }

    /// Voter: what a granted vote sent at `now` carries, in milliseconds
    /// left (0: no lease known); `None` when this node cannot vouch.
    pub fn vote_reply(&self, now: Instant) -> Option<u64> {
        let i = self.lock();
        Self::vouched(&i, now).map(|b| b.map_or(0, |b| ceil_ms(b - now)))
    }

    /// Candidate: it asks for votes in `term`; bounds of earlier terms are
    /// dropped.
    pub fn start_election(&self, term: u64) {
        let mut i = self.lock();
        if i.election.as_ref().is_none_or(|e| e.term < term) {
            i.election = Some(Election { term, bounds: BTreeMap::new() });
        }
    }

    /// Candidate: `voter` granted its vote in `term`, with a reply received
    /// at `now` that carried `left_ms` (`None`: it did not vouch).
    pub fn granted(&self, term: u64, voter: NodeId, now: Instant, left_ms: Option<u64>) {
        let mut i = self.lock();
        let Some(e) = i.election.as_mut().filter(|e| e.term == term) else { return };
        match left_ms {
            Some(ms) => {
                let bound = (ms > 0).then(|| now + Duration::from_millis(ms));
                e.bounds.insert(voter, bound);
            }
            None => {
                e.bounds.remove(&voter);
            }
        }
    }

    /// Leader of `term`: the latest bound its electing quorum vouched for.
    /// `me` is this node; `configs` the membership's voter sets (two during
    /// a joint change, each of which needs a quorum).
    pub fn inherited(&self, term: u64, me: NodeId, configs: &[BTreeSet<NodeId>], now: Instant) -> Inherited {
        let i = self.lock();
        let Some(own) = Self::vouched(&i, now) else { return Inherited::Unknown };
        let empty = BTreeMap::new();
        let bounds = match &i.election {
            Some(e) if e.term == term => &e.bounds,
            // Elected without asking anyone (a single voter), or elected
            // in a term this node did not ask for votes in.
            _ => &empty,
        };
        let vouched = |id: &NodeId| *id == me || bounds.contains_key(id);
        let quorum = !configs.is_empty()
            && configs.iter().all(|voters| voters.iter().filter(|id| vouched(id)).count() * 2 > voters.len());
        if !quorum {
            return Inherited::Unknown;
        }
        let latest = bounds.values().copied().chain([own]).flatten().max();
        Inherited::Bound(latest.filter(|b| *b > now))
    }
}

fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if d > Duration::from_millis(ms as u64) { ms + 1 } else { ms };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(2000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// A node that has run for longer than a lease and knows the lease.
    fn settled(t0: Instant) -> LeaseWitness {
        let w = LeaseWitness::new(t0);
        w.set_longest_lease(TTL);
        w
    }

    #[test]
    fn a_grant_witnessed_by_a_follower_reaches_the_next_leader_through_its_vote() {
        let t0 = Instant::now();
        let now = t0 + ms(10_000);
        // The leader notices a lease ending 2 s from now; its AppendEntries
        // carry the time left, which the follower adds to its receipt time.
        let leader = settled(t0);
        leader.notice(now + TTL);
        let left = leader.outgoing_notice(now).expect("a notice");
        assert_eq!(left, 2000);
        let follower = settled(t0);
        follower.witness(now + ms(5), left);
        // The leader dies; the follower votes for the third node 500 ms
        // later and reports what is left of the bound.
        let at_vote = now + ms(500);
        let reply = follower.vote_reply(at_vote).expect("vouches");
        assert_eq!(reply, 1505);
        let candidate = settled(t0);
        candidate.start_election(7);
        candidate.granted(7, 2, at_vote + ms(1), Some(reply));
        let configs = [set(&[1, 2, 3])];
        let inherited = candidate.inherited(7, 3, &configs, at_vote + ms(2));
        assert_eq!(inherited, Inherited::Bound(Some(now + ms(2006))));
        // Never earlier than the lease the old leader granted.
        let Inherited::Bound(Some(b)) = inherited else { unreachable!() };
        assert!(b >= now + TTL);
    }

    #[test]
    fn a_candidate_without_a_vouching_quorum_knows_nothing() {
        let t0 = Instant::now();
        let now = t0 + ms(10_000);
        let candidate = settled(t0);
        candidate.start_election(4);
        // A voter of an older release sends no bound.
        candidate.granted(4, 2, now, None);
        let five = [set(&[1, 2, 3, 4, 5])];
        assert_eq!(candidate.inherited(4, 3, &five, now), Inherited::Unknown);
        candidate.granted(4, 1, now, Some(0));
        assert_eq!(candidate.inherited(4, 3, &five, now), Inherited::Unknown, "2 of 5");
        candidate.granted(4, 4, now, Some(300));
        assert_eq!(candidate.inherited(4, 3, &five, now), Inherited::Bound(Some(now + ms(300))));
        // Bounds of another term do not count.
        assert_eq!(candidate.inherited(5, 3, &five, now), Inherited::Unknown);
        // A joint membership needs a quorum of each voter set.
        let joint = [set(&[1, 2, 3, 4, 5]), set(&[3, 6, 7])];
        assert_eq!(candidate.inherited(4, 3, &joint, now), Inherited::Unknown);
        // A later election drops the earlier term's bounds.
        candidate.start_election(6);
        assert_eq!(candidate.inherited(6, 3, &five, now), Inherited::Unknown);
    }

    #[test]
    fn a_node_that_restarted_within_a_lease_vouches_only_for_its_start_plus_a_lease() {
        let started = Instant::now();
        let w = LeaseWitness::new(started);
        assert_eq!(w.vote_reply(started + ms(10)), None, "the longest lease is not known yet");
        w.set_longest_lease(TTL);
        assert_eq!(w.vote_reply(started + ms(10)), Some(1990));
        assert_eq!(w.vote_reply(started + ms(2500)), Some(0), "long enough ago");
        // The candidate's own start counts the same way.
        w.start_election(2);
        assert_eq!(w.inherited(2, 1, &[set(&[1])], started + ms(100)), Inherited::Bound(Some(started + TTL)));
    }

    #[test]
    fn a_leader_vouches_for_its_own_notices_and_stops_sending_them_once_they_end() {
        let t0 = Instant::now();
        let now = t0 + ms(10_000);
        let w = settled(t0);
        w.notice(now + ms(1000));
        w.notice(now + ms(600)); // never moves back
        assert_eq!(w.outgoing_notice(now), Some(1000));
        assert_eq!(w.vote_reply(now), Some(1000));
        assert_eq!(w.outgoing_notice(now + ms(1000)), None);
        assert_eq!(w.vote_reply(now + ms(1200)), Some(0));
    }

    #[test]
    fn time_left_rounds_up() {
        assert_eq!(ceil_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ceil_ms(ms(3)), 3);
        assert_eq!(ceil_ms(Duration::ZERO), 0);
    }
}
