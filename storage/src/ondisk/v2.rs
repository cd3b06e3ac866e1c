//! The types of on-disk format v2 that differ from today's, frozen so that
//! v2 data can still be read.
//!
//! These definitions must never change: they are the layout v2 wrote, and
//! bincode reads fields by position. They reuse today's nested types, whose
//! encoding has not changed since v2 (`Event` only gained variants at its
//! end, which v2 never wrote).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::dynamic_config::DynamicConfig;
use crate::event::EventRecord;
use crate::member::Member;
use crate::state::{ClusterState, Primary, Switchover};
use crate::timeline::{ForcedFailover, TimelineRecord, WalPosition};
use crate::typ::{LogId, NodeId, StoredMembership};

/// `ClusterState` as v2 wrote it: today's fields minus `sync_quorum`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStateV2 {
    pub cluster_id: Option<String>,
    pub members: BTreeMap<NodeId, Member>,
    pub epoch: u64,
    pub primary: Option<Primary>,
    pub sync_standbys: BTreeSet<NodeId>,
    pub config: DynamicConfig,
    pub config_version: u64,
    pub maintenance: bool,
    pub switchover: Option<Switchover>,
    pub failovers: u64,
    pub switchovers: u64,
    pub history: VecDeque<EventRecord>,
    pub timeline: Option<TimelineRecord>,
    pub position: Option<WalPosition>,
    pub forced_failover: Option<ForcedFailover>,
}

impl From<ClusterStateV2> for ClusterState {
    /// v2 had no quorum mode: its set was always waited for in full.
    fn from(v2: ClusterStateV2) -> Self {
        ClusterState {
            cluster_id: v2.cluster_id,
            members: v2.members,
            epoch: v2.epoch,
            primary: v2.primary,
            sync_standbys: v2.sync_standbys,
            config: v2.config,
            config_version: v2.config_version,
            maintenance: v2.maintenance,
            switchover: v2.switchover,
            failovers: v2.failovers,
            switchovers: v2.switchovers,
            history: v2.history,
            timeline: v2.timeline,
            position: v2.position,
            forced_failover: v2.forced_failover,
            sync_quorum: None,
        }
    }
}

/// The snapshot payload as v2 wrote it; `format` is 2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPayloadV2 {
    pub format: u32,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: ClusterStateV2,
}
