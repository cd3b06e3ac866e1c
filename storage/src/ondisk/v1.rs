//! The types of on-disk format v1 that differ from today's, frozen so that
//! v1 data can still be read.
//!
//! These definitions must never change: they are the layout v1 wrote, and
//! bincode reads fields by position. They reuse today's nested types
//! (`Member`, `DynamicConfig`, `Primary`, `Switchover`, `EventRecord`), whose
//! encoding has not changed since v1 (`Event` only gained variants at its
//! end, which v1 never wrote). A later change to one of those types must
//! first freeze its v1 layout here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::dynamic_config::DynamicConfig;
use crate::event::EventRecord;
use crate::member::Member;
use crate::state::{ClusterState, Primary, Switchover};
use crate::typ::{LogId, NodeId, StoredMembership};

/// `ClusterState` as v1 wrote it: today's fields minus `timeline`,
/// `position` and `forced_failover`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStateV1 {
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
}

impl From<ClusterStateV1> for ClusterState {
    /// v1 recorded no timeline, WAL position or forced failover.
    fn from(v1: ClusterStateV1) -> Self {
        ClusterState {
            cluster_id: v1.cluster_id,
            members: v1.members,
            epoch: v1.epoch,
            primary: v1.primary,
            sync_standbys: v1.sync_standbys,
            config: v1.config,
            config_version: v1.config_version,
            maintenance: v1.maintenance,
            switchover: v1.switchover,
            failovers: v1.failovers,
            switchovers: v1.switchovers,
            history: v1.history,
            timeline: None,
            position: None,
            forced_failover: None,
            sync_quorum: None,
        }
    }
}

/// The snapshot payload as v1 wrote it; `format` is 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPayloadV1 {
    pub format: u32,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: ClusterStateV1,
}
