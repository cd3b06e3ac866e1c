//! Snapshots: the cluster state (with its bounded event-history tail) at a
//! log position, as sent to lagging followers and kept on disk so the log
//! can be purged.

use serde::{Deserialize, Serialize};

use crate::encoding::{self, DecodeError, EncodeError};
use crate::ondisk::DataVersion;
use crate::state::ClusterState;
use crate::typ::{LogId, SnapshotMeta, StoredMembership};

/// What a snapshot's data bytes hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// On-disk format version that wrote the payload.
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

    /// Decodes and checks the format version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let payload: SnapshotPayload = encoding::decode("snapshot payload", bytes)?;
        if DataVersion::from_number(payload.format).is_none() {
            return Err(DecodeError {
                what: "snapshot payload",
                reason: format!("unknown format v{}", payload.format),
            });
        }
        Ok(payload)
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
    use super::*;

    #[test]
    fn payload_round_trips_and_checks_format() {
        let p = SnapshotPayload::new(None, StoredMembership::default(), ClusterState::default());
        let bytes = p.encode().unwrap();
        assert_eq!(SnapshotPayload::decode(&bytes).unwrap(), p);
        let future = SnapshotPayload { format: 99, ..p };
        assert!(SnapshotPayload::decode(&future.encode().unwrap()).is_err());
        let stored = StoredSnapshot { meta: SnapshotMeta::default(), data: bytes };
        let enc = encoding::encode("stored snapshot", &stored).unwrap();
        assert_eq!(encoding::decode::<StoredSnapshot>("stored snapshot", &enc).unwrap(), stored);
    }
}
