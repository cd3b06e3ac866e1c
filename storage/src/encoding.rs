//! The only place values are turned into bytes and back (bincode 2, serde
//! mode), for the Raft log, the state machine, snapshots and the Raft wire.
//!
//! bincode is not self-describing: types encoded here must not use
//! `skip_serializing_if`, `flatten`, untagged or internally tagged enums.
//! Every persisted and wire type has a round-trip test.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Upper bound on what one decode may allocate, so that a corrupted length
/// prefix or a hostile peer cannot make a node allocate without bound.
pub const DECODE_LIMIT: usize = 256 * 1024 * 1024;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

#[derive(Debug, Error)]
#[error("encode {what}: {reason}")]
pub struct EncodeError {
    pub what: &'static str,
    pub reason: String,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("decode {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

/// Encodes `value`; `what` names it in the error.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| EncodeError { what, reason: e.to_string() })
}

/// Decodes a whole buffer into `T`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| DecodeError { what, reason: e.to_string() })?;
    if used != bytes.len() {
        return Err(DecodeError { what, reason: format!("{} trailing bytes after {used}", bytes.len() - used) });
    }
    Ok(value)
}

/// Big-endian bytes of a `u64`, so that sled's byte order is numeric order.
pub fn u64_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Inverse of [`u64_key`].
pub fn u64_from_key(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
    use serde::Deserialize;

    use super::*;
    use crate::command::{Command, ElectionReason, ReleaseReason};
    use crate::dynamic_config::{DynamicConfig, SyncMode};
    use crate::event::{Event, EventRecord};
    use crate::member::{Member, MemberState};
    use crate::reject::Reject;
    use crate::state::{ApplyContext, ClusterState};
    use crate::typ::{Entry, NodeInfo, Request, Response};

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = encode("test value", &v).expect("encode");
        let back: T = decode("test value", &bytes).expect("decode");
        assert_eq!(v, back);
    }

    fn member() -> Member {
        let mut m = Member::new(3, "pg3");
        m.tags.insert("nofailover".into(), "true".into());
        m.api_url = "http://127.0.0.1:8008".into();
        m
    }

    fn config() -> DynamicConfig {
        let mut c = DynamicConfig { synchronous_mode: SyncMode::Strict, ..DynamicConfig::default() };
        c.postgresql_parameters.insert("work_mem".into(), "8MB".into());
        c
    }

    fn every_command() -> Vec<Command> {
        vec![
            Command::InitializeCluster { cluster_id: "c".into(), config: config() },
            Command::AddMember { member: member() },
            Command::RemoveMember { node: 3 },
            Command::SetMemberTags { node: 3, tags: BTreeMap::from([("a".into(), "b".into())]) },
            Command::ElectPrimary { if_epoch: 4, node: 2, reason: ElectionReason::Failover },
            Command::ReleasePrimary { epoch: 5, node: 2, reason: ReleaseReason::PostgresFailed },
            Command::SetSyncStandbys { epoch: 5, standbys: [1, 3].into() },
            Command::ChangeConfig { if_version: Some(2), config: config() },
            Command::ChangeConfig { if_version: None, config: config() },
            Command::SetMaintenance { on: true },
            Command::ScheduleSwitchover { from: 1, to: None, at_ms: Some(99) },
            Command::CancelSwitchover,
            Command::SetMemberState { node: 1, state: MemberState::CreatingReplica },
            Command::RecordPromotion { epoch: 2, node: 1, timeline: 3, switchpoint: 0x300_0060 },
            Command::RecordPosition { epoch: 2, node: 1, timeline: 3, lsn: 0x300_0100 },
            Command::ForceFailover { epoch: 2, to: 3 },
            Command::ChangeSyncStandbys { epoch: 2, from: [1].into(), to: [1, 3].into() },
        ]
    }

    #[test]
    fn commands_round_trip() {
        for c in every_command() {
            round_trip(Request { command: c, proposer: 7, proposed_at_ms: 1234 });
        }
    }

    #[test]
    fn events_and_responses_round_trip() {
        let events = vec![
            Event::ClusterInitialized { cluster_id: "c".into(), config: config() },
            Event::MemberAdded { member: member() },
            Event::MemberRemoved { node: 1 },
            Event::MemberTagsChanged { node: 1, tags: BTreeMap::new() },
            Event::PrimaryElected { epoch: 3, node: 1, reason: ElectionReason::Manual },
            Event::PrimaryReleased { epoch: 3, node: 1, reason: ReleaseReason::Shutdown },
            Event::SyncStandbysChanged { epoch: 3, standbys: [2].into() },
            Event::ConfigChanged { version: 4, config: config() },
            Event::MaintenanceChanged { on: false },
            Event::SwitchoverScheduled { from: 1, to: Some(2), at_ms: None },
            Event::SwitchoverCancelled { from: 1, to: None },
            Event::MemberStateChanged { node: 2, from: MemberState::Running, to: MemberState::Crashed },
            Event::PromotionRecorded { epoch: 3, node: 1, timeline: 2, switchpoint: 0x300_0060 },
            Event::PositionRecorded { epoch: 3, node: 1, timeline: 2, lsn: 0x300_0100 },
            Event::FailoverForced { epoch: 3, to: 2 },
        ];
        for e in &events {
            round_trip(EventRecord { index: 9, at_ms: 10, event: e.clone() });
        }
        round_trip(Response::Applied(events));
        round_trip(Response::Blank);
        round_trip(Response::Membership);
        round_trip(Response::Rejected(Reject::InvalidConfig {
            violations: DynamicConfig { lease_ttl_ms: 1, ..DynamicConfig::default() }.validate().unwrap_err(),
        }));
        round_trip(Response::Rejected(Reject::NotPrimary { node: 1, epoch: 2, primary: None, current: 3 }));
        round_trip(Response::Rejected(Reject::InvalidName(crate::member::InvalidName { name: "a b".into() })));
        round_trip(Response::Rejected(Reject::ConfigChangeRefused {
            violations: vec![crate::ConfigViolation { field: "lease_ttl_ms".into(), message: "only grows".into() }],
        }));
        round_trip(Response::Rejected(Reject::TimelineRegressed { timeline: 2, recorded: 3 }));
    }

    #[test]
    fn cluster_state_round_trips() {
        let mut s = ClusterState::default();
        for (i, c) in every_command().iter().enumerate() {
            let _ = s.apply(c, ApplyContext { index: i as u64, time_ms: 5 });
        }
        s.timeline = Some(crate::TimelineRecord { epoch: 2, node: 1, timeline: 3, switchpoint: 0x300_0060 });
        s.position = Some(crate::WalPosition { epoch: 2, node: 1, timeline: 3, lsn: 0x300_0100, at_ms: 7 });
        s.forced_failover = Some(crate::ForcedFailover { epoch: 2, to: 3 });
        round_trip(s);
    }

    #[test]
    fn openraft_entries_round_trip() {
        let log_id = LogId::new(CommittedLeaderId::new(3, 1), 17);
        let req = Request { command: Command::CancelSwitchover, proposer: 1, proposed_at_ms: 2 };
        let nodes = BTreeMap::from([(1u64, NodeInfo::new("a", "127.0.0.1:1")), (2, NodeInfo::new("b", "127.0.0.1:2"))]);
        let membership = Membership::new(vec![[1u64, 2].into()], nodes);
        for payload in [EntryPayload::Blank, EntryPayload::Normal(req), EntryPayload::Membership(membership.clone())] {
            round_trip(Entry { log_id, payload });
        }
        round_trip(Vote::new(4, 2));
        round_trip(SnapshotMeta::<u64, NodeInfo> {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(Some(log_id), membership),
            snapshot_id: "s".into(),
        });
    }

    #[test]
    fn trailing_bytes_and_garbage_are_refused() {
        let mut bytes = encode("x", &42u64).unwrap();
        bytes.push(0);
        assert!(decode::<u64>("x", &bytes).is_err());
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Big {
            v: Vec<u8>,
        }
        // A length prefix claiming far more than the limit must not allocate it.
        let hostile = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        assert!(decode::<Big>("x", &hostile).is_err());
    }

    #[test]
    fn u64_keys_sort_numerically() {
        assert!(u64_key(255) < u64_key(256));
        assert_eq!(u64_from_key(&u64_key(77)), Some(77));
        assert_eq!(u64_from_key(&[1, 2]), None);
    }
}
