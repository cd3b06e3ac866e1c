//! The data directory: durability across reopen, and refusal of directories
//! this build must not touch.

use std::fs;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote};
use raftgres_storage::error::StorageError;
use raftgres_storage::ondisk::DataVersion;
use raftgres_storage::{Command, DynamicConfig, LogStore, Request, StateMachine, Store, TypeConfig};

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request { command, proposer: 1, proposed_at_ms: index }),
    }
}

fn open(dir: &Path) -> (LogStore, StateMachine) {
    Store::open(dir, "c1", 1).expect("open store")
}

async fn must_append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    log.append_durable(entries).await.expect("append");
}

#[tokio::test]
async fn vote_log_and_snapshot_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(dir.path());
        log.save_vote(&Vote::new(5, 2)).await.unwrap();
        let entries = vec![
            entry(5, 1, Command::InitializeCluster { cluster_id: "c1".into(), config: DynamicConfig::default() }),
            entry(5, 2, Command::SetMaintenance { on: true }),
        ];
        must_append(&mut log, entries.clone()).await;
        sm.apply(entries).await.unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(5, 2)));
        must_append(&mut log, vec![entry(5, 3, Command::SetMaintenance { on: false })]).await;
    }
    let (mut log, mut sm) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(5, 2)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(5, 3)));
    assert_eq!(log.try_get_log_entries(1..4).await.unwrap().len(), 3);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(5, 2)), "state is rebuilt from the snapshot");
    assert!(sm.current().state.maintenance, "snapshot holds the state at index 2");
    assert_eq!(sm.current().state.history.len(), 2, "and its event history");
}

fn expect_err(dir: &Path, cluster: &str, node: u64) -> StorageError {
    // A sled handle dropped just before lets go of its file lock only when
    // its background thread ends: while the directory reads as locked, ask
    // again (with a deadline) for the error the test is about.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, cluster, node) {
            Ok(_) => panic!("opening {} as {cluster}/{node} should have failed", dir.display()),
            Err(StorageError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return e,
        }
    }
}

#[test]
fn another_cluster_or_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let e = expect_err(dir.path(), "other", 1);
    assert!(matches!(e, StorageError::ClusterMismatch { .. }), "{e}");
    assert!(e.to_string().contains("\"c1\""), "{e}");
    let e = expect_err(dir.path(), "c1", 2);
    assert!(matches!(e, StorageError::NodeMismatch { found: 1, expected: 2, .. }), "{e}");
    // Refusal changed nothing: the right owner still opens it.
    drop(open(dir.path()));
}

#[test]
fn a_newer_format_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("raft-v4")).unwrap();
    let e = expect_err(dir.path(), "c1", 1);
    assert!(matches!(e, StorageError::UnsupportedVersion { found: 4, supported: 3, .. }), "{e}");
    assert!(!dir.path().join(DataVersion::CURRENT.dir_name()).exists(), "nothing was created");
}

#[test]
fn a_corrupted_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let db = dir.path().join(DataVersion::CURRENT.dir_name()).join("db");
    let len = fs::metadata(&db).unwrap().len() as usize;
    fs::write(&db, vec![0xA5u8; len.max(4096)]).unwrap();
    let e = expect_err(dir.path(), "c1", 1);
    assert!(matches!(e, StorageError::Corrupted { .. } | StorageError::Sled { .. }), "{e}");
}

#[test]
fn a_corrupted_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open(dir.path());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { sm.get_snapshot_builder().await.build_snapshot().await.unwrap() });
    }
    let snap = dir.path().join(DataVersion::CURRENT.dir_name()).join("snapshot");
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(&snap, &bytes).unwrap();
    let e = expect_err(dir.path(), "c1", 1);
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn a_directory_without_header_but_with_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join(DataVersion::CURRENT.dir_name());
    {
        let db = sled::open(&v).unwrap();
        db.insert(b"\x03junk", b"junk".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let e = expect_err(dir.path(), "c1", 1);
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("no format header"), "{e}");
    assert!(Store::open(dir.path(), "c1", 1).is_err(), "a refused directory stays refused");
}

#[test]
fn a_directory_in_use_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let open_store = open(dir.path());
    let Err(e) = Store::open(dir.path(), "c1", 1) else { panic!("a second open should have failed") };
    assert!(matches!(e, StorageError::Locked { .. }), "{e}");
    drop(open_store);
    drop(open(dir.path()));
}
