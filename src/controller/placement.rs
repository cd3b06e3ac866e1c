//! Where the Raft leader runs. The primary's node should not lead Raft:
//! when a node that is both dies, the cluster first elects a new Raft
//! leader, and that leader, knowing nothing of the leases its predecessor
//! granted, waits a full lease from its own election before it fails the
//! primary over (RFC 0001) — about one second more than when the primary
//! dies alone. So the leader, finding itself on the primary's node, asks
//! an up-to-date follower to start an election and take over.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raftgres_storage::{ClusterState, NodeId};

/// How long a leadership and a primary's epoch run before the leadership
/// is moved: the cluster settles after an election first.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The primary's lease must have been granted this recently: the hand-over
/// leaves the primary without grants until the new leader's first, so it
/// starts with as much of the lease left as it can have.
pub const FRESH_GRANT: Duration = Duration::from_millis(300);

/// How long after one hand-over the next may be tried.
pub const RETRY: Duration = Duration::from_secs(5);

/// How far behind the leader's log a target may be (entries): it must win
/// the vote, so it must be about as up to date as the others.
const MAX_BEHIND: u64 = 8;

/// What the decision reads.
pub struct PlacementInput<'a> {
    pub state: &'a ClusterState,
    /// This node, the Raft leader.
    pub me: NodeId,
    pub voters: &'a BTreeSet<NodeId>,
    /// Each follower's last replicated log index, as the leader knows it.
    pub matched: &'a BTreeMap<NodeId, Option<u64>>,
    pub last_log_index: Option<u64>,
    /// Members whose daemons reported within a lease.
    pub reporting: &'a BTreeSet<NodeId>,
    pub leading_for: Duration,
    pub epoch_for: Duration,
    pub since_last_attempt: Option<Duration>,
    /// How long ago this leader last granted the primary a lease.
    pub since_grant: Option<Duration>,
}

/// The follower to hand the leadership to, if this leader runs on the
/// primary's node and the moment is right: the up-to-date reporting voter
/// furthest ahead, lowest id first.
///
/// The moment is right only in a healthy cluster: settled after the last
/// election and epoch, every voter reporting and caught up (a hand-over
/// while one is cut off, or under a fault, could cost the primary its
/// lease: no grants until the new leader's first), and the primary's
/// lease just renewed.
pub fn placement_target(i: &PlacementInput) -> Option<NodeId> {
    let s = i.state;
    if s.primary_node() != Some(i.me) || s.switchover.is_some() || s.maintenance {
        return None;
    }
    if i.leading_for < SETTLE || i.epoch_for < SETTLE || i.since_last_attempt.is_some_and(|d| d < RETRY) {
        return None;
    }
    if i.since_grant.is_none_or(|d| d > FRESH_GRANT) {
        return None;
    }
    let last = i.last_log_index.unwrap_or(0);
    let caught_up = |id: &NodeId| {
        i.reporting.contains(id)
            && i.matched.get(id).copied().flatten().is_some_and(|m| last.saturating_sub(m) <= MAX_BEHIND)
    };
    if !i.voters.iter().filter(|id| **id != i.me).all(caught_up) {
        return None;
    }
    i.voters
        .iter()
        .copied()
        .filter(|id| *id != i.me)
        .filter_map(|id| i.matched.get(&id).copied().flatten().map(|m| (id, m)))
        .max_by_key(|(id, m)| (*m, std::cmp::Reverse(*id)))
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use raftgres_storage::{ApplyContext, Command, DynamicConfig, ElectionReason, Member};

    use super::*;

    fn state(primary: NodeId) -> ClusterState {
        let mut s = ClusterState::default();
        let mut apply = |c: Command| s.apply(&c, ApplyContext::default()).expect("applies");
        apply(Command::InitializeCluster { cluster_id: "c".into(), config: DynamicConfig::default() });
        for id in 1..=3 {
            apply(Command::AddMember { member: Member::new(id, format!("pg{id}")) });
        }
        apply(Command::ElectPrimary { if_epoch: 0, node: primary, reason: ElectionReason::Bootstrap });
        s
    }

    #[test]
    fn the_leader_on_the_primarys_node_hands_over_to_an_up_to_date_follower() {
        let s = state(1);
        let voters = BTreeSet::from([1, 2, 3]);
        let matched = BTreeMap::from([(2, Some(100)), (3, Some(98))]);
        let reporting = BTreeSet::from([1, 2, 3]);
        let settled = Duration::from_secs(10);
        let input = |me, last: u64, leading_for, since_last_attempt| PlacementInput {
            state: &s,
            me,
            voters: &voters,
            matched: &matched,
            last_log_index: Some(last),
            reporting: &reporting,
            leading_for,
            epoch_for: settled,
            since_last_attempt,
            since_grant: Some(Duration::from_millis(100)),
        };
        assert_eq!(placement_target(&input(1, 100, settled, None)), Some(2), "the furthest ahead");
        assert_eq!(placement_target(&input(2, 100, settled, None)), None, "the leader is not on the primary");
        assert_eq!(placement_target(&input(1, 100, Duration::from_millis(500), None)), None, "just elected");
        assert_eq!(placement_target(&input(1, 100, settled, Some(Duration::from_secs(1)))), None, "just tried");
        assert_eq!(placement_target(&input(1, 200, settled, None)), None, "every follower lags");
        let stale_grant =
            PlacementInput { since_grant: Some(Duration::from_millis(900)), ..input(1, 100, settled, None) };
        assert_eq!(placement_target(&stale_grant), None, "the primary's lease is not fresh");
        let only_3 = BTreeSet::from([1, 3]);
        let silent = PlacementInput { reporting: &only_3, ..input(1, 100, settled, None) };
        assert_eq!(placement_target(&silent), None, "a voter is silent: the cluster is not healthy");
        let matched_3 = BTreeMap::from([(2, Some(50)), (3, Some(100))]);
        let one_lags = PlacementInput { matched: &matched_3, ..input(1, 100, settled, None) };
        assert_eq!(placement_target(&one_lags), None, "a voter lags: the cluster is not healthy");
    }
}
