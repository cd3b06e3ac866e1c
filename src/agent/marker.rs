//! The local "was primary" marker: written (durably) before this node's
//! PostgreSQL starts or is promoted as a primary, removed only once a rewind
//! or a fresh clone has made it a copy of another primary, or a clean
//! switchover showed its WAL ends where the new primary's history began.
//!
//! A former primary killed mid-shutdown or during crash recovery can have a
//! control file that looks like a standby's; the marker is what says it may
//! hold writes no other member has, so it must be rewound before it
//! follows anyone.

use std::io;
use std::path::{Path, PathBuf};

use raftgres_storage::ondisk::{fsync_dir, read_control_file, write_control_file};

const MAGIC: &[u8; 8] = b"RGWASPRI";
const FILE: &str = "was-primary";

/// The marker of one node, in its state directory (beside `raft-v2/`,
/// outside the PostgreSQL data directory, so a re-clone does not remove it
/// by accident).
#[derive(Clone, Debug)]
pub struct PrimaryMarker {
    path: PathBuf,
}

impl PrimaryMarker {
    pub fn new(state_dir: &Path) -> Self {
        Self { path: state_dir.join(FILE) }
    }

    /// The epoch this node last ran as primary in, if it may still hold
    /// that history. An unreadable marker counts as present.
    pub fn epoch(&self) -> Option<u64> {
        match read_control_file(&self.path, MAGIC) {
            Ok(None) => None,
            Ok(Some(bytes)) => Some(bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)),
            Err(e) => {
                tracing::warn!("the was-primary marker is damaged ({e}); treating this node as a former primary");
                Some(0)
            }
        }
    }

    /// Records, durably, that this node runs as primary of `epoch`.
    pub fn record(&self, epoch: u64) -> io::Result<()> {
        write_control_file(&self.path, MAGIC, &epoch.to_be_bytes())
    }

    /// This node's data is a copy of another primary's now.
    pub fn clear(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => fsync_dir(self.path.parent().unwrap_or(Path::new("/"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_cleared_and_damaged() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let m = PrimaryMarker::new(dir.path());
        assert_eq!(m.epoch(), None);
        m.record(7).expect("record");
        assert_eq!(PrimaryMarker::new(dir.path()).epoch(), Some(7), "survives a restart");
        m.clear().expect("clear");
        assert_eq!(m.epoch(), None);
        m.clear().expect("clearing twice is fine");
        std::fs::write(dir.path().join(FILE), b"garbage").expect("write");
        assert_eq!(m.epoch(), Some(0), "a damaged marker still marks the node");
    }
}
