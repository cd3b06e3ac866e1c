//! `ClusterState`: the replicated state as a pure fold of events.
//!
//! [`ClusterState::decide`] checks a command's precondition against the
//! state and returns the events it records, or a [`Reject`].
//! [`ClusterState::fold`] applies one event. [`ClusterState::apply`] does
//! both. None of them reads a clock, does I/O or draws randomness: the same
//! log gives the same state on every replica.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{Command, ElectionReason};
use crate::dynamic_config::{DynamicConfig, SyncMode};
use crate::event::{Event, EventRecord};
use crate::member::{Member, MemberState, validate_name, validate_tags};
use crate::reject::Reject;
use crate::timeline::{ForcedFailover, TimelineRecord, WalPosition};
use crate::typ::NodeId;

/// How many events the state keeps for `history`; older ones are dropped.
/// Snapshots carry this tail, so history survives log compaction.
pub const HISTORY_LIMIT: usize = 1000;

/// What `apply` knows about the entry beyond the command: where it sits in
/// the log and the proposer's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyContext {
    pub index: u64,
    pub time_ms: u64,
}

/// The current primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primary {
    pub node: NodeId,
    pub epoch: u64,
    pub reason: ElectionReason,
    /// Proposer's time of the election, milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// A planned switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switchover {
    pub from: NodeId,
    pub to: Option<NodeId>,
    pub at_ms: Option<u64>,
}

/// The replicated state of a raftgres cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Set once by `InitializeCluster`.
    pub cluster_id: Option<String>,
    pub members: BTreeMap<NodeId, Member>,
    /// The highest epoch ever elected; only grows. 0 before bootstrap.
    pub epoch: u64,
    /// The primary of `epoch`, unless it released the role.
    pub primary: Option<Primary>,
    /// The committed synchronous-standby set of the current primary.
    pub sync_standbys: BTreeSet<NodeId>,
    pub config: DynamicConfig,
    /// Bumped by every configuration change; 0 before initialization.
    pub config_version: u64,
    pub maintenance: bool,
    pub switchover: Option<Switchover>,
    pub failovers: u64,
    pub switchovers: u64,
    /// The latest events, oldest first, at most [`HISTORY_LIMIT`].
    pub history: VecDeque<EventRecord>,
    /// The timeline of the newest completed promotion: only nodes on it
    /// are failover candidates.
    pub timeline: Option<TimelineRecord>,
    /// The primary's latest recorded WAL position: the lag reference when
    /// its own report is gone.
    pub position: Option<WalPosition>,
    /// An operator's failover accepting the loss of the lost primary's
    /// unreplicated writes; cleared by the next election.
    pub forced_failover: Option<ForcedFailover>,
    /// Quorum mode: PostgreSQL waits for any this many of `sync_standbys`
    /// (RFC 0003). `None`: it waits for every one of them (`on`,
    /// `strict`). Since on-disk format v3.
    pub sync_quorum: Option<u32>,
}

impl ClusterState {
    pub fn is_initialized(&self) -> bool {
        self.cluster_id.is_some()
    }

    pub fn member(&self, node: NodeId) -> Option<&Member> {
        self.members.get(&node)
    }

    /// A switchover is pending and due at `now_ms` (Unix milliseconds): the
    /// loops that carry a handover run faster until it is done.
    pub fn handover_active(&self, now_ms: u64) -> bool {
        self.switchover.as_ref().is_some_and(|sw| sw.at_ms.is_none_or(|at| at <= now_ms))
    }

    /// The node the state names primary, if any.
    pub fn primary_node(&self) -> Option<NodeId> {
        self.primary.as_ref().map(|p| p.node)
    }

    /// The node that released the primary role of the current epoch, if
    /// the role is free because it did: it held every write acknowledged
    /// in the epoch.
    pub fn released_primary(&self) -> Option<NodeId> {
        if self.primary.is_some() {
            return None;
        }
        self.history
            .iter()
            .rev()
            .find_map(|r| match &r.event {
                Event::PrimaryReleased { epoch, node, .. } if *epoch == self.epoch => Some(*node),
                Event::PrimaryElected { .. } => Some(0),
                _ => None,
            })
            .filter(|n| *n != 0)
    }

    /// `node` is a synchronous standby: in the committed set, waited for
    /// in full (`on`, `strict`).
    pub fn is_sync_standby(&self, node: NodeId) -> bool {
        self.config.synchronous_mode != SyncMode::Off
            && self.sync_quorum.is_none()
            && self.sync_standbys.contains(&node)
    }

    /// `node` is a quorum standby: one of the set PostgreSQL takes any `k`
    /// of (quorum mode, `k` at least 1).
    pub fn is_quorum_standby(&self, node: NodeId) -> bool {
        self.config.synchronous_mode != SyncMode::Off
            && self.sync_quorum.is_some_and(|k| k > 0)
            && self.sync_standbys.contains(&node)
    }

    /// The committed synchronous record as (standbys, how many of them
    /// hold every acknowledged commit), or `None` when nothing is known to
    /// be anywhere but on the primary: synchronous mode is off, the set is
    /// empty, or a quorum of 0 (degraded). Every acknowledged commit is on
    /// at least that many of those standbys.
    pub fn sync_record(&self) -> Option<(&BTreeSet<NodeId>, usize)> {
        if self.config.synchronous_mode == SyncMode::Off || self.sync_standbys.is_empty() {
            return None;
        }
        let k = self.sync_quorum.map_or(self.sync_standbys.len(), |k| k as usize);
        (k > 0).then_some((&self.sync_standbys, k.min(self.sync_standbys.len())))
    }

    /// Checks `cmd` and records its events into the state.
    pub fn apply(&mut self, cmd: &Command, ctx: ApplyContext) -> Result<Vec<Event>, Reject> {
        let events = self.decide(cmd)?;
        for event in &events {
            self.fold(&EventRecord { index: ctx.index, at_ms: ctx.time_ms, event: event.clone() });
        }
        Ok(events)
    }

    /// Checks `cmd`'s precondition and returns the events it would record.
    /// Pure: the state is not changed.
    pub fn decide(&self, cmd: &Command) -> Result<Vec<Event>, Reject> {
        if !self.is_initialized() && !matches!(cmd, Command::InitializeCluster { .. }) {
            return Err(Reject::NotInitialized);
        }
        match cmd {
            Command::InitializeCluster { cluster_id, config } => {
                if let Some(existing) = &self.cluster_id {
                    return Err(Reject::AlreadyInitialized { cluster_id: existing.clone() });
                }
                if cluster_id.trim().is_empty() {
                    return Err(Reject::EmptyClusterId);
                }
                config.validate().map_err(|violations| Reject::InvalidConfig { violations })?;
                Ok(vec![Event::ClusterInitialized { cluster_id: cluster_id.clone(), config: config.clone() }])
            }
            Command::AddMember { member } => {
                validate_name(&member.name)?;
                if let Some(existing) = self.members.get(&member.id) {
                    return Err(Reject::DuplicateMember { node: member.id, name: existing.name.clone() });
                }
                if let Some(existing) = self.members.values().find(|m| m.name == member.name) {
                    return Err(Reject::DuplicateName { name: member.name.clone(), node: existing.id });
                }
                validate_tags(&member.tags).map_err(|(key, value, reason)| Reject::InvalidTag {
                    key,
                    value,
                    reason,
                })?;
                Ok(vec![Event::MemberAdded { member: member.clone() }])
            }
            Command::RemoveMember { node } => {
                self.must_member(*node)?;
                if self.primary_node() == Some(*node) {
                    return Err(Reject::MemberIsPrimary { node: *node });
                }
                if self.sync_standbys.contains(node) {
                    return Err(Reject::MemberIsSynchronous { node: *node });
                }
                let mut events = Vec::new();
                if let Some(sw) = &self.switchover
                    && (sw.to == Some(*node))
                {
                    events.push(Event::SwitchoverCancelled { from: sw.from, to: sw.to });
                }
                events.push(Event::MemberRemoved { node: *node });
                Ok(events)
            }
            Command::SetMemberTags { node, tags } => {
                let member = self.must_member(*node)?;
                validate_tags(tags).map_err(|(key, value, reason)| Reject::InvalidTag { key, value, reason })?;
                if &member.tags == tags {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::MemberTagsChanged { node: *node, tags: tags.clone() }])
            }
            Command::ElectPrimary { if_epoch, node, reason } => self.decide_elect(*if_epoch, *node, *reason),
            Command::ReleasePrimary { epoch, node, reason } => {
                self.must_primary(*node, *epoch)?;
                Ok(vec![Event::PrimaryReleased { epoch: *epoch, node: *node, reason: *reason }])
            }
            Command::SetSyncStandbys { epoch, standbys } => {
                let primary = self.must_current_primary(*epoch)?;
                for s in standbys {
                    let m = self.must_member(*s)?;
                    if *s == primary {
                        return Err(Reject::InvalidStandby { node: *s, reason: "it is the primary".into() });
                    }
                    if m.nosync() && !self.sync_standbys.contains(s) {
                        return Err(Reject::InvalidStandby { node: *s, reason: "it is tagged nosync".into() });
                    }
                }
                if &self.sync_standbys == standbys {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::SyncStandbysChanged { epoch: *epoch, standbys: standbys.clone() }])
            }
            Command::ChangeSyncStandbys { epoch, from, to } => {
                if &self.sync_standbys != from {
                    return Err(Reject::SyncSetMoved {
                        expected: from.iter().copied().collect(),
                        current: self.sync_standbys.iter().copied().collect(),
                    });
                }
                let primary = self.must_current_primary(*epoch)?;
                for s in to.difference(from) {
                    let m = self.must_member(*s)?;
                    if *s == primary {
                        return Err(Reject::InvalidStandby { node: *s, reason: "it is the primary".into() });
                    }
                    if m.nosync() {
                        return Err(Reject::InvalidStandby { node: *s, reason: "it is tagged nosync".into() });
                    }
                }
                if from == to && self.sync_quorum.is_none() {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::SyncStandbysChanged { epoch: *epoch, standbys: to.clone() }])
            }
            Command::ChangeSyncQuorum { epoch, from, from_quorum, to, quorum } => {
                if &self.sync_standbys != from || self.sync_quorum != *from_quorum {
                    return Err(Reject::SyncQuorumMoved {
                        expected: from.iter().copied().collect(),
                        expected_quorum: *from_quorum,
                        current: self.sync_standbys.iter().copied().collect(),
                        current_quorum: self.sync_quorum,
                    });
                }
                let primary = self.must_current_primary(*epoch)?;
                if *quorum as usize > to.len() {
                    return Err(Reject::InvalidQuorum { quorum: *quorum, standbys: to.len() as u32 });
                }
                for s in to.difference(from) {
                    let m = self.must_member(*s)?;
                    if *s == primary {
                        return Err(Reject::InvalidStandby { node: *s, reason: "it is the primary".into() });
                    }
                    if m.nosync() {
                        return Err(Reject::InvalidStandby { node: *s, reason: "it is tagged nosync".into() });
                    }
                }
                if from == to && *from_quorum == Some(*quorum) {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::SyncQuorumChanged { epoch: *epoch, standbys: to.clone(), quorum: *quorum }])
            }
            Command::ChangeConfig { if_version, config } => {
                if let Some(expected) = if_version
                    && *expected != self.config_version
                {
                    return Err(Reject::ConfigVersionMismatch { expected: *expected, current: self.config_version });
                }
                config.validate().map_err(|violations| Reject::InvalidConfig { violations })?;
                self.config.check_change(config).map_err(|violations| Reject::ConfigChangeRefused { violations })?;
                if config == &self.config {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::ConfigChanged { version: self.config_version + 1, config: config.clone() }])
            }
            Command::SetMaintenance { on } => {
                if self.maintenance == *on {
                    return Err(Reject::MaintenanceUnchanged { on: *on });
                }
                Ok(vec![Event::MaintenanceChanged { on: *on }])
            }
            Command::ScheduleSwitchover { from, to, at_ms } => {
                if let Some(sw) = &self.switchover {
                    return Err(Reject::SwitchoverPending { from: sw.from });
                }
                let epoch = self.epoch;
                self.must_primary(*from, epoch)?;
                if self.maintenance && at_ms.is_some() {
                    return Err(Reject::InvalidSwitchover {
                        reason: "a switchover cannot be scheduled in maintenance mode".into(),
                    });
                }
                if self.maintenance && to.is_none() {
                    return Err(Reject::InvalidSwitchover {
                        reason: "in maintenance mode a switchover needs a target".into(),
                    });
                }
                if let Some(target) = to {
                    if target == from {
                        return Err(Reject::InvalidSwitchover { reason: "the target is already the primary".into() });
                    }
                    self.check_candidate(*target, ElectionReason::Switchover)?;
                }
                Ok(vec![Event::SwitchoverScheduled { from: *from, to: *to, at_ms: *at_ms }])
            }
            Command::CancelSwitchover => match &self.switchover {
                Some(sw) => Ok(vec![Event::SwitchoverCancelled { from: sw.from, to: sw.to }]),
                None => Err(Reject::NoSwitchover),
            },
            Command::SetMemberState { node, state } => {
                let member = self.must_member(*node)?;
                if *state == MemberState::Unknown {
                    return Err(Reject::InvalidStateTransition { node: *node, from: member.state, to: *state });
                }
                if member.state == *state {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::MemberStateChanged { node: *node, from: member.state, to: *state }])
            }
            Command::RecordPromotion { epoch, node, timeline, switchpoint } => {
                self.must_current_primary(*epoch)?;
                self.must_primary(*node, *epoch)?;
                let record =
                    TimelineRecord { epoch: *epoch, node: *node, timeline: *timeline, switchpoint: *switchpoint };
                if let Some(recorded) = &self.timeline {
                    if *recorded == record {
                        return Ok(Vec::new());
                    }
                    if *timeline < recorded.timeline {
                        return Err(Reject::TimelineRegressed { timeline: *timeline, recorded: recorded.timeline });
                    }
                }
                Ok(vec![Event::PromotionRecorded {
                    epoch: *epoch,
                    node: *node,
                    timeline: *timeline,
                    switchpoint: *switchpoint,
                }])
            }
            Command::RecordPosition { epoch, node, timeline, lsn } => {
                self.must_current_primary(*epoch)?;
                self.must_primary(*node, *epoch)?;
                if self.position.is_some_and(|p| p.epoch == *epoch && p.lsn >= *lsn) {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::PositionRecorded { epoch: *epoch, node: *node, timeline: *timeline, lsn: *lsn }])
            }
            Command::ForceFailover { epoch, to } => {
                if *epoch != self.epoch {
                    return Err(Reject::StaleEpoch { expected: *epoch, current: self.epoch });
                }
                if let Some(p) = &self.primary
                    && p.node == *to
                {
                    return Err(Reject::AlreadyPrimary { node: *to, epoch: p.epoch });
                }
                self.check_candidate(*to, ElectionReason::Manual)?;
                let forced = ForcedFailover { epoch: *epoch, to: *to };
                if self.forced_failover == Some(forced) {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::FailoverForced { epoch: *epoch, to: *to }])
            }
        }
    }

    fn decide_elect(&self, if_epoch: u64, node: NodeId, reason: ElectionReason) -> Result<Vec<Event>, Reject> {
        if if_epoch != self.epoch {
            return Err(Reject::StaleEpoch { expected: if_epoch, current: self.epoch });
        }
        match reason {
            ElectionReason::Bootstrap => {
                // Again only while no primary ever served: none is named
                // and no promotion was recorded.
                if self.epoch != 0 && (self.primary.is_some() || self.timeline.is_some()) {
                    return Err(Reject::AlreadyBootstrapped { current: self.epoch });
                }
                self.must_member(node)?;
            }
            _ => {
                if self.epoch == 0 {
                    return Err(Reject::NotBootstrapped);
                }
                if let Some(p) = &self.primary
                    && p.node == node
                {
                    return Err(Reject::AlreadyPrimary { node, epoch: p.epoch });
                }
                self.check_candidate(node, reason)?;
            }
        }
        let epoch = self.epoch + 1;
        let mut events = vec![Event::PrimaryElected { epoch, node, reason }];
        // The new primary inherits the set without itself. When that leaves
        // it waiting for no standby, the degradation is recorded as such,
        // as when the set empties later.
        if self.sync_standbys.contains(&node) {
            let rest: BTreeSet<NodeId> = self.sync_standbys.iter().copied().filter(|s| *s != node).collect();
            match self.sync_quorum {
                None if rest.is_empty() => events.push(Event::SyncStandbysChanged { epoch, standbys: rest }),
                Some(k) if k <= 1 || rest.is_empty() => {
                    events.push(Event::SyncQuorumChanged { epoch, standbys: rest, quorum: 0 })
                }
                _ => {}
            }
        }
        if let Some(sw) = &self.switchover
            && !(reason == ElectionReason::Switchover && sw.to.is_none_or(|t| t == node))
        {
            events.insert(0, Event::SwitchoverCancelled { from: sw.from, to: sw.to });
        }
        Ok(events)
    }

    /// Checks that `node` may become primary for `reason`: it is a member,
    /// not tagged `nofailover`, and in synchronous mode a member of the
    /// committed synchronous-standby set (when that set is not empty).
    /// Whether `node` may be elected primary for `reason` under the
    /// member and synchronous rules (the checks `ElectPrimary` applies
    /// besides its epoch precondition).
    pub fn check_candidate(&self, node: NodeId, reason: ElectionReason) -> Result<(), Reject> {
        let member = self.must_member(node)?;
        if !member.may_be_promoted() {
            return Err(Reject::NoFailover { node });
        }
        // The primary that released the role holds every acknowledged
        // write of the epoch: the synchronous rules do not apply to it.
        let released = self.released_primary() == Some(node);
        if let Some((standbys, _)) = self.sync_record()
            && !standbys.contains(&node)
            && !released
        {
            return Err(Reject::NotSynchronous { node, standbys: standbys.iter().copied().collect() });
        }
        if self.config.synchronous_mode == SyncMode::Strict
            && self.sync_standbys.is_empty()
            && !released
            && matches!(reason, ElectionReason::Failover | ElectionReason::Switchover)
        {
            // An empty set in strict mode means PostgreSQL acknowledged
            // nothing since it emptied, but also that nobody is known to
            // have what it acknowledged before: only an operator's
            // `failover --accept-data-loss` (Manual) may pick someone.
            return Err(Reject::NoSynchronousStandby { node });
        }
        Ok(())
    }

    fn must_member(&self, node: NodeId) -> Result<&Member, Reject> {
        self.members.get(&node).ok_or(Reject::UnknownMember { node })
    }

    fn must_primary(&self, node: NodeId, epoch: u64) -> Result<(), Reject> {
        match &self.primary {
            Some(p) if p.node == node && p.epoch == epoch => Ok(()),
            other => {
                Err(Reject::NotPrimary { node, epoch, primary: other.as_ref().map(|p| p.node), current: self.epoch })
            }
        }
    }

    fn must_current_primary(&self, epoch: u64) -> Result<NodeId, Reject> {
        if epoch != self.epoch {
            return Err(Reject::StaleEpoch { expected: epoch, current: self.epoch });
        }
        match &self.primary {
            Some(p) => Ok(p.node),
            None => Err(Reject::NotPrimary { node: 0, epoch, primary: None, current: self.epoch }),
        }
    }

    /// Applies one recorded event. Total: every event that `decide` can
    /// produce folds without checks, so replay never fails.
    pub fn fold(&mut self, record: &EventRecord) {
        match &record.event {
            Event::ClusterInitialized { cluster_id, config } => {
                self.cluster_id = Some(cluster_id.clone());
                self.config = config.clone();
                self.config_version = 1;
            }
            Event::MemberAdded { member } => {
                self.members.insert(member.id, member.clone());
            }
            Event::MemberRemoved { node } => {
                self.members.remove(node);
                if self.sync_standbys.remove(node)
                    && let Some(k) = &mut self.sync_quorum
                {
                    *k = (*k).min(self.sync_standbys.len() as u32);
                }
            }
            Event::MemberTagsChanged { node, tags } => {
                if let Some(m) = self.members.get_mut(node) {
                    m.tags = tags.clone();
                }
            }
            Event::PrimaryElected { epoch, node, reason } => {
                self.epoch = *epoch;
                self.primary = Some(Primary { node: *node, epoch: *epoch, reason: *reason, since_ms: record.at_ms });
                // The standbys of the old set hold every write the old
                // primary acknowledged: the new primary inherits them (its
                // PostgreSQL waits for them) and narrows or widens the set
                // from there, through Raft.
                // In quorum mode the new primary was one of the `k` that
                // may hold a commit: the others are known to hold it on
                // `k - 1` of the rest.
                if self.sync_standbys.remove(node)
                    && let Some(k) = &mut self.sync_quorum
                {
                    *k = k.saturating_sub(1).min(self.sync_standbys.len() as u32);
                }
                self.switchover = None;
                self.forced_failover = None;
                match reason {
                    ElectionReason::Failover | ElectionReason::Manual => self.failovers += 1,
                    ElectionReason::Switchover => self.switchovers += 1,
                    ElectionReason::Bootstrap => {}
                }
            }
            Event::PrimaryReleased { epoch, node, .. } => {
                if self.primary.as_ref().is_some_and(|p| p.node == *node && p.epoch == *epoch) {
                    self.primary = None;
                }
            }
            Event::SyncStandbysChanged { standbys, .. } => {
                self.sync_standbys = standbys.clone();
                self.sync_quorum = None;
            }
            Event::SyncQuorumChanged { standbys, quorum, .. } => {
                self.sync_standbys = standbys.clone();
                self.sync_quorum = Some(*quorum);
            }
            Event::ConfigChanged { version, config } => {
                self.config = config.clone();
                self.config_version = *version;
            }
            Event::MaintenanceChanged { on } => self.maintenance = *on,
            Event::SwitchoverScheduled { from, to, at_ms } => {
                self.switchover = Some(Switchover { from: *from, to: *to, at_ms: *at_ms });
            }
            Event::SwitchoverCancelled { .. } => self.switchover = None,
            Event::MemberStateChanged { node, to, .. } => {
                if let Some(m) = self.members.get_mut(node) {
                    m.state = *to;
                }
            }
            Event::PromotionRecorded { epoch, node, timeline, switchpoint } => {
                self.timeline =
                    Some(TimelineRecord { epoch: *epoch, node: *node, timeline: *timeline, switchpoint: *switchpoint });
                // The timeline's start is where its primary's WAL stood.
                if self.position.is_none_or(|p| p.epoch != *epoch || p.lsn < *switchpoint) {
                    self.position = Some(WalPosition {
                        epoch: *epoch,
                        node: *node,
                        timeline: *timeline,
                        lsn: *switchpoint,
                        at_ms: record.at_ms,
                    });
                }
            }
            Event::PositionRecorded { epoch, node, timeline, lsn } => {
                // The primary of the epoch still writes: an operator's
                // forced failover away from it no longer applies.
                if self.forced_failover.is_some_and(|f| f.epoch == *epoch) {
                    self.forced_failover = None;
                }
                self.position = Some(WalPosition {
                    epoch: *epoch,
                    node: *node,
                    timeline: *timeline,
                    lsn: *lsn,
                    at_ms: record.at_ms,
                });
                // A register, updated every second: not history.
                return;
            }
            Event::FailoverForced { epoch, to } => {
                self.forced_failover = Some(ForcedFailover { epoch: *epoch, to: *to });
            }
        }
        self.history.push_back(record.clone());
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ReleaseReason;

    fn ctx(index: u64) -> ApplyContext {
        ApplyContext { index, time_ms: 1_700_000_000_000 + index }
    }

    fn member(id: NodeId) -> Member {
        Member::new(id, format!("pg{id}"))
    }

    /// A cluster with members 1..=n and node 1 bootstrapped as primary.
    fn cluster(n: u64) -> ClusterState {
        let mut s = ClusterState::default();
        let mut i = 0;
        let mut next = || {
            i += 1;
            ctx(i)
        };
        s.apply(&Command::InitializeCluster { cluster_id: "c1".into(), config: DynamicConfig::default() }, next())
            .expect("initialize");
        for id in 1..=n {
            s.apply(&Command::AddMember { member: member(id) }, next()).expect("add");
        }
        s.apply(&Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap }, next())
            .expect("bootstrap");
        s
    }

    #[test]
    fn commands_need_an_initialized_cluster() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(&Command::AddMember { member: member(1) }, ctx(1)), Err(Reject::NotInitialized));
        assert_eq!(s, ClusterState::default());
    }

    #[test]
    fn initialize_once_with_a_valid_config() {
        let mut s = ClusterState::default();
        let bad = DynamicConfig { lease_ttl_ms: 10, ..DynamicConfig::default() };
        let r = s.apply(&Command::InitializeCluster { cluster_id: "c".into(), config: bad }, ctx(1));
        assert!(matches!(r, Err(Reject::InvalidConfig { .. })), "{r:?}");
        assert!(!s.is_initialized());
        s.apply(&Command::InitializeCluster { cluster_id: "c".into(), config: DynamicConfig::default() }, ctx(2))
            .unwrap();
        let again =
            s.apply(&Command::InitializeCluster { cluster_id: "d".into(), config: DynamicConfig::default() }, ctx(3));
        assert_eq!(again, Err(Reject::AlreadyInitialized { cluster_id: "c".into() }));
        assert_eq!(s.config_version, 1);
    }

    #[test]
    fn members_are_unique_by_id_and_name() {
        let mut s = cluster(2);
        let dup = s.apply(&Command::AddMember { member: member(2) }, ctx(10));
        assert!(matches!(dup, Err(Reject::DuplicateMember { node: 2, .. })), "{dup:?}");
        let mut same_name = member(9);
        same_name.name = "pg1".into();
        let r = s.apply(&Command::AddMember { member: same_name }, ctx(11));
        assert_eq!(r, Err(Reject::DuplicateName { name: "pg1".into(), node: 1 }));
        assert_eq!(s.members.len(), 2);
    }

    #[test]
    fn unknown_member_is_rejected() {
        let mut s = cluster(2);
        let before = s.clone();
        assert_eq!(s.apply(&Command::RemoveMember { node: 7 }, ctx(10)), Err(Reject::UnknownMember { node: 7 }));
        let r = s.apply(&Command::SetMemberTags { node: 7, tags: Default::default() }, ctx(11));
        assert_eq!(r, Err(Reject::UnknownMember { node: 7 }));
        assert_eq!(s, before);
    }

    #[test]
    fn primary_cannot_be_removed() {
        let mut s = cluster(3);
        assert_eq!(s.apply(&Command::RemoveMember { node: 1 }, ctx(10)), Err(Reject::MemberIsPrimary { node: 1 }));
        s.apply(&Command::RemoveMember { node: 3 }, ctx(11)).unwrap();
        assert!(s.member(3).is_none());
    }

    #[test]
    fn epochs_only_grow_and_stale_elections_are_rejected() {
        let mut s = cluster(3);
        assert_eq!(s.epoch, 1);
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(10)).unwrap();
        assert_eq!(s.epoch, 2);
        assert_eq!(s.primary_node(), Some(2));
        // A second controller that saw epoch 1 must not elect again.
        let stale = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 3, reason: ElectionReason::Failover }, ctx(11));
        assert_eq!(stale, Err(Reject::StaleEpoch { expected: 1, current: 2 }));
        assert_eq!(s.primary_node(), Some(2));
        assert_eq!(s.failovers, 1);
    }

    #[test]
    fn only_the_current_primary_records_its_timeline_and_timelines_never_go_back() {
        let mut s = cluster(3);
        let rec = |epoch, node, timeline, switchpoint| Command::RecordPromotion { epoch, node, timeline, switchpoint };
        assert_eq!(
            s.apply(&rec(1, 2, 1, 0), ctx(10)),
            Err(Reject::NotPrimary { node: 2, epoch: 1, primary: Some(1), current: 1 })
        );
        s.apply(&rec(1, 1, 1, 0), ctx(11)).unwrap();
        assert_eq!(s.timeline, Some(TimelineRecord { epoch: 1, node: 1, timeline: 1, switchpoint: 0 }));
        assert_eq!(s.apply(&rec(1, 1, 1, 0), ctx(12)), Ok(vec![]), "recording it again changes nothing");
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(13)).unwrap();
        assert_eq!(s.apply(&rec(1, 1, 1, 0), ctx(14)), Err(Reject::StaleEpoch { expected: 1, current: 2 }));
        s.apply(&Command::RecordPosition { epoch: 2, node: 2, timeline: 2, lsn: 0x500 }, ctx(15)).unwrap();
        let before = s.clone();
        assert_eq!(s.apply(&rec(2, 2, 0, 0x400), ctx(16)), Err(Reject::TimelineRegressed { timeline: 0, recorded: 1 }));
        assert_eq!(s, before);
        s.apply(&rec(2, 2, 2, 0x400), ctx(17)).unwrap();
        assert_eq!(s.timeline.map(|t| (t.timeline, t.switchpoint)), Some((2, 0x400)));
        assert_eq!(s.position.map(|p| p.lsn), Some(0x500), "the switch point does not move the position back");
    }

    #[test]
    fn positions_only_advance_within_an_epoch_and_stay_out_of_history() {
        let mut s = cluster(3);
        let pos = |epoch, node, lsn| Command::RecordPosition { epoch, node, timeline: 1, lsn };
        s.apply(&pos(1, 1, 0x100), ctx(10)).unwrap();
        let events = s.history.len();
        assert_eq!(s.apply(&pos(1, 1, 0x80), ctx(11)), Ok(vec![]), "an older position is ignored");
        s.apply(&pos(1, 1, 0x200), ctx(12)).unwrap();
        assert_eq!(
            s.position,
            Some(WalPosition { epoch: 1, node: 1, timeline: 1, lsn: 0x200, at_ms: ctx(12).time_ms })
        );
        assert_eq!(s.history.len(), events, "positions are a register, not history");
        assert!(matches!(s.apply(&pos(1, 2, 0x300), ctx(13)), Err(Reject::NotPrimary { .. })));
        // A new primary's promotion resets the reference to its own line.
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(14)).unwrap();
        s.apply(&Command::RecordPromotion { epoch: 2, node: 2, timeline: 2, switchpoint: 0x180 }, ctx(15)).unwrap();
        assert_eq!(s.position.map(|p| (p.epoch, p.node, p.lsn)), Some((2, 2, 0x180)));
    }

    #[test]
    fn a_forced_failover_names_a_promotable_member_of_the_current_epoch_until_the_next_election() {
        let mut s = cluster(3);
        let mut tags = crate::member::Tags::new();
        tags.insert("nofailover".into(), "true".into());
        s.apply(&Command::SetMemberTags { node: 3, tags }, ctx(10)).unwrap();
        assert_eq!(s.apply(&Command::ForceFailover { epoch: 1, to: 3 }, ctx(11)), Err(Reject::NoFailover { node: 3 }));
        assert_eq!(
            s.apply(&Command::ForceFailover { epoch: 1, to: 1 }, ctx(12)),
            Err(Reject::AlreadyPrimary { node: 1, epoch: 1 })
        );
        assert_eq!(
            s.apply(&Command::ForceFailover { epoch: 0, to: 2 }, ctx(13)),
            Err(Reject::StaleEpoch { expected: 0, current: 1 })
        );
        assert_eq!(
            s.apply(&Command::ForceFailover { epoch: 1, to: 9 }, ctx(14)),
            Err(Reject::UnknownMember { node: 9 })
        );
        s.apply(&Command::ForceFailover { epoch: 1, to: 2 }, ctx(15)).unwrap();
        assert_eq!(s.forced_failover, Some(ForcedFailover { epoch: 1, to: 2 }));
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Manual }, ctx(16)).unwrap();
        assert_eq!(s.forced_failover, None);
    }

    #[test]
    fn bootstrap_only_once() {
        let mut s = cluster(2);
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Bootstrap }, ctx(10));
        assert_eq!(r, Err(Reject::AlreadyBootstrapped { current: 1 }), "a primary is named");
        s.apply(&Command::RecordPromotion { epoch: 1, node: 1, timeline: 1, switchpoint: 0 }, ctx(11)).unwrap();
        s.apply(&Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Shutdown }, ctx(12)).unwrap();
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Bootstrap }, ctx(13));
        assert_eq!(r, Err(Reject::AlreadyBootstrapped { current: 1 }), "a primary served: its promotion is recorded");
    }

    #[test]
    fn a_first_primary_that_never_served_can_be_bootstrapped_again() {
        let mut s = cluster(2);
        s.apply(&Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::PostgresFailed }, ctx(10))
            .unwrap();
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Bootstrap }, ctx(11));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!((s.epoch, s.primary_node()), (2, Some(2)));
    }

    #[test]
    fn nofailover_member_is_not_a_candidate() {
        let mut s = cluster(3);
        let mut tags = crate::member::Tags::new();
        tags.insert("nofailover".into(), "true".into());
        s.apply(&Command::SetMemberTags { node: 2, tags }, ctx(10)).unwrap();
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(11));
        assert_eq!(r, Err(Reject::NoFailover { node: 2 }));
    }

    #[test]
    fn release_needs_the_current_primary_and_epoch() {
        let mut s = cluster(2);
        let r = s.apply(&Command::ReleasePrimary { epoch: 1, node: 2, reason: ReleaseReason::Shutdown }, ctx(10));
        assert!(matches!(r, Err(Reject::NotPrimary { node: 2, .. })), "{r:?}");
        s.apply(&Command::ReleasePrimary { epoch: 1, node: 1, reason: ReleaseReason::Shutdown }, ctx(11)).unwrap();
        assert_eq!(s.primary, None);
        assert_eq!(s.epoch, 1, "releasing does not change the epoch");
        // The released node may be elected again in a new epoch.
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 1, reason: ElectionReason::Failover }, ctx(12)).unwrap();
        assert_eq!(s.primary_node(), Some(1));
    }

    #[test]
    fn synchronous_mode_restricts_candidates_to_the_committed_set() {
        let mut s = cluster(3);
        let config = DynamicConfig { synchronous_mode: SyncMode::On, ..DynamicConfig::default() };
        s.apply(&Command::ChangeConfig { if_version: Some(1), config }, ctx(10)).unwrap();
        s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2, 3].into() }, ctx(11)).unwrap();
        s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [2, 3].into(), to: [2].into() }, ctx(12)).unwrap();
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 3, reason: ElectionReason::Failover }, ctx(13));
        assert!(matches!(r, Err(Reject::NotSynchronous { node: 3, .. })), "{r:?}");
        let r = s.apply(&Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None }, ctx(14));
        assert!(r.is_err(), "a switchover target outside the set: {r:?}");
        assert_eq!(s.apply(&Command::RemoveMember { node: 2 }, ctx(15)), Err(Reject::MemberIsSynchronous { node: 2 }));
        s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [2].into(), to: [2, 3].into() }, ctx(16)).unwrap();
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(17)).unwrap();
        assert_eq!(s.sync_standbys, [3].into(), "the new primary inherits the old set, without itself");
    }

    #[test]
    fn a_new_primary_that_inherits_no_standby_records_the_degradation() {
        let mut s = cluster(3);
        let config = DynamicConfig { synchronous_mode: SyncMode::On, ..DynamicConfig::default() };
        s.apply(&Command::ChangeConfig { if_version: Some(1), config }, ctx(10)).unwrap();
        s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2, 3].into() }, ctx(11)).unwrap();
        // Two standbys: the new primary still waits for one; nothing more
        // is recorded.
        let events = s
            .apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(12))
            .unwrap();
        assert_eq!(events, [Event::PrimaryElected { epoch: 2, node: 2, reason: ElectionReason::Failover }]);
        // Its only standby is promoted: it waits for none, and says so.
        let events = s
            .apply(&Command::ElectPrimary { if_epoch: 2, node: 3, reason: ElectionReason::Failover }, ctx(13))
            .unwrap();
        assert_eq!(
            events,
            [
                Event::PrimaryElected { epoch: 3, node: 3, reason: ElectionReason::Failover },
                Event::SyncStandbysChanged { epoch: 3, standbys: [].into() },
            ]
        );
        assert!(s.sync_standbys.is_empty());
        assert_eq!(s.sync_quorum, None);
        let mut q = cluster(5);
        let config = DynamicConfig { synchronous_mode: SyncMode::Quorum, ..DynamicConfig::default() };
        q.apply(&Command::ChangeConfig { if_version: Some(1), config }, ctx(10)).unwrap();
        let to = [2, 3, 4].into();
        q.apply(&Command::ChangeSyncQuorum { epoch: 1, from: [].into(), from_quorum: None, to, quorum: 1 }, ctx(11))
            .unwrap();
        // Quorum mode: any 1 of 3; the promoted one was that 1, so the
        // rest are known to hold nothing: quorum 0, recorded.
        let events = q
            .apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(12))
            .unwrap();
        assert_eq!(events.last(), Some(&Event::SyncQuorumChanged { epoch: 2, standbys: [3, 4].into(), quorum: 0 }));
        assert_eq!((q.sync_standbys.clone(), q.sync_quorum), ([3, 4].into(), Some(0)));
    }

    #[test]
    fn the_quorum_record_changes_by_compare_and_set_and_a_new_primary_inherits_one_less() {
        let mut s = cluster(5);
        let config = DynamicConfig { synchronous_mode: SyncMode::Quorum, ..DynamicConfig::default() };
        s.apply(&Command::ChangeConfig { if_version: Some(1), config }, ctx(10)).unwrap();
        let change = |from: &[NodeId], from_quorum, to: &[NodeId], quorum| Command::ChangeSyncQuorum {
            epoch: 1,
            from: from.iter().copied().collect(),
            from_quorum,
            to: to.iter().copied().collect(),
            quorum,
        };
        assert_eq!(s.sync_record(), None, "nothing committed: asynchronous");
        let r = s.apply(&change(&[], None, &[2, 3], 3), ctx(11));
        assert_eq!(r, Err(Reject::InvalidQuorum { quorum: 3, standbys: 2 }));
        s.apply(&change(&[], None, &[2, 3, 4], 0), ctx(12)).unwrap();
        assert_eq!(s.sync_record(), None, "a quorum of 0 promises nothing");
        s.apply(&change(&[2, 3, 4], Some(0), &[2, 3, 4], 2), ctx(13)).unwrap();
        assert_eq!(s.sync_record(), Some((&BTreeSet::from([2, 3, 4]), 2)));
        // A delayed command from an older record is refused.
        let r = s.apply(&change(&[2, 3, 4], Some(0), &[2, 3], 0), ctx(14));
        assert!(matches!(r, Err(Reject::SyncQuorumMoved { current_quorum: Some(2), .. })), "{r:?}");
        let r = s.apply(&change(&[2, 3, 4], Some(2), &[1, 2, 3, 4], 2), ctx(15));
        assert!(matches!(r, Err(Reject::InvalidStandby { node: 1, .. })), "{r:?}");
        assert_eq!(s.apply(&Command::RemoveMember { node: 4 }, ctx(16)), Err(Reject::MemberIsSynchronous { node: 4 }));
        // A candidate outside the record is refused, one inside inherits
        // the others with one fewer: it may have been one of the two.
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 5, reason: ElectionReason::Failover }, ctx(17));
        assert!(matches!(r, Err(Reject::NotSynchronous { node: 5, .. })), "{r:?}");
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 3, reason: ElectionReason::Failover }, ctx(18)).unwrap();
        assert_eq!((s.sync_standbys.clone(), s.sync_quorum), ([2, 4].into(), Some(1)));
        // An `on` set replaces the record, waited for in full again.
        let r = s.apply(&Command::ChangeSyncStandbys { epoch: 2, from: [2, 4].into(), to: [2, 4].into() }, ctx(19));
        assert!(r.is_ok_and(|events| events.len() == 1), "the same set, no longer a quorum, is an event");
        assert_eq!((s.sync_quorum, s.sync_record()), (None, Some((&BTreeSet::from([2, 4]), 2))));
    }

    #[test]
    fn the_sync_set_changes_by_compare_and_set() {
        let mut s = cluster(3);
        let config = DynamicConfig { synchronous_mode: SyncMode::On, ..DynamicConfig::default() };
        s.apply(&Command::ChangeConfig { if_version: Some(1), config }, ctx(10)).unwrap();
        s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2].into() }, ctx(11)).unwrap();
        s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [2].into(), to: [].into() }, ctx(12)).unwrap();
        // A delayed copy of the widening does not undo the narrowing.
        let r = s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2].into() }, ctx(13));
        assert!(r.is_ok(), "from the current set it applies: {r:?}");
        let r = s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [].into(), to: [2, 3].into() }, ctx(14));
        assert_eq!(r, Err(Reject::SyncSetMoved { expected: vec![], current: vec![2] }));
        let r = s.apply(&Command::ChangeSyncStandbys { epoch: 1, from: [2].into(), to: [1, 2].into() }, ctx(15));
        assert!(matches!(r, Err(Reject::InvalidStandby { node: 1, .. })), "{r:?}");
        let r = s.apply(&Command::ChangeSyncStandbys { epoch: 0, from: [2].into(), to: [].into() }, ctx(16));
        assert!(matches!(r, Err(Reject::StaleEpoch { .. })), "{r:?}");
    }

    #[test]
    fn strict_mode_with_no_synchronous_standby_promotes_nobody_automatically() {
        let mut s = cluster(3);
        let config = DynamicConfig { synchronous_mode: SyncMode::Strict, ..DynamicConfig::default() };
        s.apply(&Command::ChangeConfig { if_version: Some(1), config }, ctx(10)).unwrap();
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Failover }, ctx(11));
        assert_eq!(r, Err(Reject::NoSynchronousStandby { node: 2 }));
        let r = s.apply(&Command::ElectPrimary { if_epoch: 1, node: 2, reason: ElectionReason::Manual }, ctx(12));
        assert!(r.is_ok(), "an operator may accept the loss: {r:?}");
    }

    #[test]
    fn sync_set_is_bound_to_the_epoch() {
        let mut s = cluster(3);
        let r = s.apply(&Command::SetSyncStandbys { epoch: 0, standbys: [2].into() }, ctx(10));
        assert_eq!(r, Err(Reject::StaleEpoch { expected: 0, current: 1 }));
        let r = s.apply(&Command::SetSyncStandbys { epoch: 1, standbys: [1].into() }, ctx(11));
        assert!(matches!(r, Err(Reject::InvalidStandby { node: 1, .. })), "{r:?}");
        let r = s.apply(&Command::SetSyncStandbys { epoch: 1, standbys: [9].into() }, ctx(12));
        assert_eq!(r, Err(Reject::UnknownMember { node: 9 }));
        assert_eq!(s.apply(&Command::SetSyncStandbys { epoch: 1, standbys: [2, 3].into() }, ctx(13)).unwrap().len(), 1);
        assert!(s.apply(&Command::SetSyncStandbys { epoch: 1, standbys: [2, 3].into() }, ctx(14)).unwrap().is_empty());
    }

    #[test]
    fn config_change_is_validated_and_compare_and_set() {
        let mut s = cluster(1);
        let before = s.clone();
        let bad = DynamicConfig { heartbeat_interval_ms: 1, ..DynamicConfig::default() };
        let r = s.apply(&Command::ChangeConfig { if_version: None, config: bad }, ctx(10));
        assert!(matches!(r, Err(Reject::InvalidConfig { .. })), "{r:?}");
        let good = DynamicConfig { maximum_lag_on_failover: 42, ..DynamicConfig::default() };
        let r = s.apply(&Command::ChangeConfig { if_version: Some(7), config: good.clone() }, ctx(11));
        assert_eq!(r, Err(Reject::ConfigVersionMismatch { expected: 7, current: 1 }));
        assert_eq!(s, before, "rejections change nothing");
        s.apply(&Command::ChangeConfig { if_version: Some(1), config: good.clone() }, ctx(12)).unwrap();
        assert_eq!(s.config, good);
        assert_eq!(s.config_version, 2);
        let before = s.clone();
        let shorter = DynamicConfig { lease_ttl_ms: 1900, ..good.clone() };
        let r = s.apply(&Command::ChangeConfig { if_version: None, config: shorter }, ctx(13));
        assert!(matches!(r, Err(Reject::ConfigChangeRefused { .. })), "the lease only grows: {r:?}");
        assert_eq!(s, before);
    }

    #[test]
    fn member_names_follow_the_naming_rule() {
        let mut s = cluster(1);
        let before = s.clone();
        for bad in ["", "pg 2", "pg/2", "ü"] {
            let r = s.apply(&Command::AddMember { member: Member::new(2, bad) }, ctx(10));
            assert!(matches!(r, Err(Reject::InvalidName(_))), "{bad:?}: {r:?}");
        }
        assert_eq!(s, before);
    }

    #[test]
    fn handover_is_active_once_due() {
        let mut s = cluster(2);
        assert!(!s.handover_active(0));
        s.switchover = Some(Switchover { from: 1, to: None, at_ms: Some(100) });
        assert!(!s.handover_active(99));
        assert!(s.handover_active(100));
        s.switchover = Some(Switchover { from: 1, to: None, at_ms: None });
        assert!(s.handover_active(0));
    }

    #[test]
    fn maintenance_transitions() {
        let mut s = cluster(1);
        assert_eq!(
            s.apply(&Command::SetMaintenance { on: false }, ctx(10)),
            Err(Reject::MaintenanceUnchanged { on: false })
        );
        s.apply(&Command::SetMaintenance { on: true }, ctx(11)).unwrap();
        assert!(s.maintenance);
        assert_eq!(
            s.apply(&Command::SetMaintenance { on: true }, ctx(12)),
            Err(Reject::MaintenanceUnchanged { on: true })
        );
    }

    #[test]
    fn switchover_schedule_cancel_and_complete() {
        let mut s = cluster(3);
        let r = s.apply(&Command::ScheduleSwitchover { from: 2, to: Some(3), at_ms: None }, ctx(10));
        assert!(matches!(r, Err(Reject::NotPrimary { node: 2, .. })), "{r:?}");
        let r = s.apply(&Command::ScheduleSwitchover { from: 1, to: Some(1), at_ms: None }, ctx(11));
        assert!(matches!(r, Err(Reject::InvalidSwitchover { .. })), "{r:?}");
        s.apply(&Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: Some(5) }, ctx(12)).unwrap();
        let r = s.apply(&Command::ScheduleSwitchover { from: 1, to: Some(2), at_ms: None }, ctx(13));
        assert_eq!(r, Err(Reject::SwitchoverPending { from: 1 }));
        s.apply(&Command::CancelSwitchover, ctx(14)).unwrap();
        assert_eq!(s.apply(&Command::CancelSwitchover, ctx(15)), Err(Reject::NoSwitchover));
        s.apply(&Command::ScheduleSwitchover { from: 1, to: Some(3), at_ms: None }, ctx(16)).unwrap();
        s.apply(&Command::ElectPrimary { if_epoch: 1, node: 3, reason: ElectionReason::Switchover }, ctx(17)).unwrap();
        assert_eq!(s.switchover, None);
        assert_eq!(s.switchovers, 1);
    }

    #[test]
    fn member_state_changes_only_on_transitions() {
        let mut s = cluster(2);
        assert_eq!(
            s.apply(&Command::SetMemberState { node: 2, state: MemberState::Streaming }, ctx(10)).unwrap().len(),
            1
        );
        assert!(
            s.apply(&Command::SetMemberState { node: 2, state: MemberState::Streaming }, ctx(11)).unwrap().is_empty()
        );
        let r = s.apply(&Command::SetMemberState { node: 2, state: MemberState::Unknown }, ctx(12));
        assert!(matches!(r, Err(Reject::InvalidStateTransition { .. })), "{r:?}");
        assert_eq!(s.member(2).map(|m| m.state), Some(MemberState::Streaming));
    }

    #[test]
    fn history_is_bounded() {
        let mut s = cluster(2);
        for i in 0..(HISTORY_LIMIT as u64 + 10) {
            let state = if i % 2 == 0 { MemberState::Running } else { MemberState::Stopped };
            s.apply(&Command::SetMemberState { node: 2, state }, ctx(100 + i)).unwrap();
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert_eq!(s.history.back().map(|r| r.index), Some(100 + HISTORY_LIMIT as u64 + 9));
    }
}
