//! Snapshots: the cluster state (with its bounded event-history tail) at a
//! log position, as sent to lagging followers and kept on disk so the log
//! can be purged.

use serde::{Deserialize, Serialize};

use crate::encoding::{self, DecodeError, EncodeError};
use crate::ondisk::DataVersion;
use crate::ondisk::v1::SnapshotPayloadV1;
use crate::ondisk::v2::SnapshotPayloadV2;
use crate::state::ClusterState;
use crate::typ::{LogId, SnapshotMeta, StoredMembership};

/// What a snapshot's data bytes hold.
///
/// `format` comes first so that it can be decoded alone: the rest is
/// decoded with the types of that format (see [`SnapshotPayload::decode`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// On-disk format version of the encoding.
    pub format: u32,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: ClusterState,
}

impl SnapshotPayload {
    pub fn new(last_applied: Option<LogId>, membership: StoredMembership, state: ClusterState) -> Self {
        Self { format: DataVersion::CURRENT.number(), last_applied, membership, state }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encoding::encode("snapshot payload", self)
    }

    /// Decodes a payload of any format this build reads: the format number
    /// first, then the rest with that format's types. A v1 payload is
    /// converted (v1 and v2); the result is always of the current format.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let format = Self::format_of(bytes)?;
        match DataVersion::from_number(format) {
            Some(DataVersion::V3) => encoding::decode("snapshot payload v3", bytes),
            Some(DataVersion::V2) => {
                let v2: SnapshotPayloadV2 = encoding::decode("snapshot payload v2", bytes)?;
                Ok(Self::new(v2.last_applied, v2.membership, v2.state.into()))
            }
            Some(DataVersion::V1) => {
                let v1: SnapshotPayloadV1 = encoding::decode("snapshot payload v1", bytes)?;
                Ok(Self::new(v1.last_applied, v1.membership, v1.state.into()))
            }
            None => Err(DecodeError { what: "snapshot payload", reason: format!("unknown format v{format}") }),
        }
    }

    /// The format number a payload starts with. It is a varint (1 to 5
    /// bytes, its length told by its first byte), so exactly one prefix of
    /// the payload decodes as a whole `u32`.
    fn format_of(bytes: &[u8]) -> Result<u32, DecodeError> {
        (1..=bytes.len().min(5))
            .find_map(|len| encoding::decode::<u32>("snapshot payload format", &bytes[..len]).ok())
            .ok_or_else(|| DecodeError {
                what: "snapshot payload",
                reason: "it does not start with a format number".into(),
            })
    }
}

/// A snapshot as kept on disk: openraft's metadata and the payload bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::command::{Command, ElectionReason};
    use crate::dynamic_config::DynamicConfig;
    use crate::event::EventRecord;
    use crate::member::Member;
    use crate::ondisk::v1::ClusterStateV1;
    use crate::ondisk::v2::ClusterStateV2;
    use crate::state::{ApplyContext, Primary, Switchover};
    use crate::timeline::{ForcedFailover, TimelineRecord, WalPosition};
    use crate::typ::NodeInfo;

    fn membership() -> StoredMembership {
        let log_id = LogId::new(CommittedLeaderId::new(2, 1), 7);
        let nodes = BTreeMap::from([(1u64, NodeInfo::new("a", "127.0.0.1:1")), (2, NodeInfo::new("b", "127.0.0.1:2"))]);
        StoredMembership::new(Some(log_id), Membership::new(vec![[1u64, 2].into()], nodes))
    }

    /// A state with every field set, as far as the commands of its format
    /// can set them.
    fn busy_state() -> ClusterState {
        let mut s = ClusterState::default();
        let commands = [
            Command::InitializeCluster { cluster_id: "c1".into(), config: DynamicConfig::default() },
            Command::AddMember { member: Member::new(1, "pg1") },
            Command::AddMember { member: Member::new(2, "pg2") },
            Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap },
            Command::SetSyncStandbys { epoch: 1, standbys: BTreeSet::from([2]) },
            Command::ScheduleSwitchover { from: 1, to: Some(2), at_ms: Some(99) },
        ];
        for (i, c) in commands.iter().enumerate() {
            s.apply(c, ApplyContext { index: i as u64 + 1, time_ms: 1000 + i as u64 }).expect("command applies");
        }
        s.maintenance = true;
        s.failovers = 3;
        s.switchovers = 4;
        s
    }

    #[test]
    fn payload_round_trips_and_checks_format() {
        let p = SnapshotPayload::new(None, StoredMembership::default(), ClusterState::default());
        let bytes = p.encode().unwrap();
        assert_eq!(SnapshotPayload::decode(&bytes).unwrap(), p);
        let future = SnapshotPayload { format: 99, ..p.clone() };
        let e = SnapshotPayload::decode(&future.encode().unwrap()).unwrap_err();
        assert_eq!(e.reason, "unknown format v99");
        let far_future = SnapshotPayload { format: 70_000, ..p.clone() };
        let e = SnapshotPayload::decode(&far_future.encode().unwrap()).unwrap_err();
        assert_eq!(e.reason, "unknown format v70000");
        assert!(SnapshotPayload::decode(&[]).is_err());
        assert!(SnapshotPayload::decode(&[0xFB]).is_err(), "a cut format number");
        let stored = StoredSnapshot { meta: SnapshotMeta::default(), data: bytes };
        let enc = encoding::encode("stored snapshot", &stored).unwrap();
        assert_eq!(encoding::decode::<StoredSnapshot>("stored snapshot", &enc).unwrap(), stored);
    }

    #[test]
    fn a_full_current_payload_round_trips() {
        let mut state = busy_state();
        state.timeline = Some(TimelineRecord { epoch: 1, node: 1, timeline: 2, switchpoint: 0x300_0060 });
        state.position = Some(WalPosition { epoch: 1, node: 1, timeline: 2, lsn: 0x300_0100, at_ms: 5 });
        state.forced_failover = Some(ForcedFailover { epoch: 1, to: 2 });
        state.sync_quorum = Some(1);
        let p = SnapshotPayload::new(Some(LogId::new(CommittedLeaderId::new(2, 1), 9)), membership(), state);
        assert_eq!(p.format, 3);
        assert_eq!(SnapshotPayload::decode(&p.encode().unwrap()).unwrap(), p);
    }

    #[test]
    fn a_v2_payload_decodes_into_the_current_state() {
        let mut s = busy_state();
        s.timeline = Some(TimelineRecord { epoch: 1, node: 1, timeline: 2, switchpoint: 0x300_0060 });
        s.position = Some(WalPosition { epoch: 1, node: 1, timeline: 2, lsn: 0x300_0100, at_ms: 5 });
        s.forced_failover = Some(ForcedFailover { epoch: 1, to: 2 });
        let v2_state = ClusterStateV2 {
            cluster_id: s.cluster_id.clone(),
            members: s.members.clone(),
            epoch: s.epoch,
            primary: s.primary.clone(),
            sync_standbys: s.sync_standbys.clone(),
            config: s.config.clone(),
            config_version: s.config_version,
            maintenance: s.maintenance,
            switchover: s.switchover.clone(),
            failovers: s.failovers,
            switchovers: s.switchovers,
            history: s.history.clone(),
            timeline: s.timeline,
            position: s.position,
            forced_failover: s.forced_failover,
        };
        let last_applied = Some(LogId::new(CommittedLeaderId::new(2, 1), 6));
        let v2 = SnapshotPayloadV2 { format: 2, last_applied, membership: membership(), state: v2_state };
        let bytes = encoding::encode("v2 payload", &v2).unwrap();

        let p = SnapshotPayload::decode(&bytes).unwrap();
        assert_eq!(p.format, DataVersion::CURRENT.number());
        assert_eq!(p.state, s, "every v2 field carried over, the set waited for in full");
        assert_eq!(p.state.sync_quorum, None);
        assert_eq!(p.state.sync_standbys, BTreeSet::from([2]));
        assert!(p.state.timeline.is_some() && p.state.forced_failover.is_some());
        assert_ne!(encoding::decode::<SnapshotPayload>("misread", &bytes).ok(), Some(p.clone()));
        // A v3 payload labelled v2 is refused or misread, never taken as is.
        let mut quorum = p.clone();
        quorum.state.sync_quorum = Some(1);
        let mislabelled = SnapshotPayload { format: 2, ..quorum.clone() };
        assert_ne!(SnapshotPayload::decode(&mislabelled.encode().unwrap()).ok(), Some(quorum));
    }

    #[test]
    fn a_v1_payload_decodes_into_the_current_state() {
        let s = busy_state();
        let v1_state = ClusterStateV1 {
            cluster_id: s.cluster_id.clone(),
            members: s.members.clone(),
            epoch: s.epoch,
            primary: s.primary.clone(),
            sync_standbys: s.sync_standbys.clone(),
            config: s.config.clone(),
            config_version: s.config_version,
            maintenance: s.maintenance,
            switchover: s.switchover.clone(),
            failovers: s.failovers,
            switchovers: s.switchovers,
            history: s.history.clone(),
        };
        let last_applied = Some(LogId::new(CommittedLeaderId::new(2, 1), 6));
        let v1 = SnapshotPayloadV1 { format: 1, last_applied, membership: membership(), state: v1_state };
        let bytes = encoding::encode("v1 payload", &v1).unwrap();

        let p = SnapshotPayload::decode(&bytes).unwrap();
        assert_eq!(p.format, DataVersion::CURRENT.number(), "a decoded payload is of the current format");
        assert_eq!(p.last_applied, last_applied);
        assert_eq!(p.membership, membership());
        assert_eq!(p.state, s, "every v1 field carried over, the new ones empty");
        assert_eq!((p.state.timeline, p.state.position, p.state.forced_failover), (None, None, None));
        // The sample is not trivially empty.
        assert_eq!(p.state.primary.as_ref().map(|p| p.node), Some(1));
        assert_eq!(p.state.switchover, Some(Switchover { from: 1, to: Some(2), at_ms: Some(99) }));
        assert_eq!(p.state.history.len(), 6);
        assert!(matches!(p.state.history.back(), Some(EventRecord { index: 6, .. })));
        assert!(matches!(p.state.primary, Some(Primary { epoch: 1, .. })));
        assert_eq!(p.state.members.len(), 2);

        // v1 bytes read as the current layout would be misread or refused:
        // the format number is what keeps them apart.
        assert_ne!(encoding::decode::<SnapshotPayload>("misread", &bytes).ok(), Some(p.clone()));
        // Re-encoded, the payload is of the current format.
        let again = SnapshotPayload::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn a_v1_label_on_v2_bytes_is_refused() {
        let mut state = busy_state();
        state.forced_failover = Some(ForcedFailover { epoch: 1, to: 2 });
        let mislabelled = SnapshotPayload { format: 1, ..SnapshotPayload::new(None, membership(), state) };
        assert!(SnapshotPayload::decode(&mislabelled.encode().unwrap()).is_err());
    }
}
