//! The upgrade of a v1 or v2 data directory at open, on directories written
//! the way those builds wrote them: raw sled, the key spaces, bincode, a
//! header of their version and a snapshot whose payload holds their cluster
//! state.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    CommittedLeaderId, EntryPayload, LogId, Membership, RaftLogReader, SnapshotMeta, StoredMembership, Vote,
};
use raftgres_storage::encoding;
use raftgres_storage::error::StorageError;
use raftgres_storage::keyspace::{HeaderSpace, KeySpace, LogMetaKey, LogMetaSpace, LogSpace, Tables, VoteSpace};
use raftgres_storage::ondisk::v1::{ClusterStateV1, SnapshotPayloadV1};
use raftgres_storage::ondisk::v2::{ClusterStateV2, SnapshotPayloadV2};
use raftgres_storage::ondisk::{Header, write_control_file};
use raftgres_storage::snapshot::{SnapshotPayload, StoredSnapshot};
use raftgres_storage::typ::Entry;
use raftgres_storage::{
    ApplyContext, ClusterState, Command, DynamicConfig, ElectionReason, LogStore, Member, NodeInfo, Request,
    StateMachine, Store,
};

const SCRATCH: &str = "upgrade-from-raft-v1.tmp";
/// The directory of the format this build writes.
const CURRENT: &str = "raft-v3";
/// The snapshot file's magic, as v1 wrote it.
const SNAPSHOT_MAGIC: &[u8; 8] = b"RGSNAP01";
const TERM: u64 = 2;
/// The snapshot covers entries up to here; the log is purged up to
/// `PURGED` and holds the entries after it, up to `LAST`.
const SNAPSHOT_AT: u64 = 6;
const PURGED: u64 = 4;
const LAST: u64 = 9;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(TERM, 1), index)
}

fn membership() -> Membership<u64, NodeInfo> {
    let nodes = BTreeMap::from([(1u64, NodeInfo::new("pg1", "127.0.0.1:1")), (2, NodeInfo::new("pg2", "127.0.0.1:2"))]);
    Membership::new(vec![[1u64, 2].into()], nodes)
}

/// Commands of v1 only, at log indexes 3 to `LAST`.
fn commands() -> Vec<(u64, Command)> {
    let commands = vec![
        Command::InitializeCluster { cluster_id: "c1".into(), config: DynamicConfig::default() },
        Command::AddMember { member: Member::new(1, "pg1") },
        Command::AddMember { member: Member::new(2, "pg2") },
        Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap },
        Command::SetSyncStandbys { epoch: 1, standbys: BTreeSet::from([2]) },
        Command::ScheduleSwitchover { from: 1, to: Some(2), at_ms: None },
        Command::SetMaintenance { on: true },
    ];
    (3..).zip(commands).collect()
}

/// The whole log: a membership entry, the leader's blank entry, commands.
fn entries() -> Vec<Entry> {
    let mut entries = vec![
        Entry { log_id: log_id(1), payload: EntryPayload::Membership(membership()) },
        Entry { log_id: log_id(2), payload: EntryPayload::Blank },
    ];
    for (index, command) in commands() {
        entries.push(Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Request { command, proposer: 1, proposed_at_ms: 1000 + index }),
        });
    }
    assert_eq!(entries.len() as u64, LAST);
    entries
}

/// The state after applying the log up to `upto`, as the state machine does.
fn state_at(upto: u64) -> ClusterState {
    let mut state = ClusterState::default();
    for (index, command) in commands().into_iter().filter(|(i, _)| *i <= upto) {
        state.apply(&command, ApplyContext { index, time_ms: 1000 + index }).expect("the sample log applies");
    }
    state
}

fn to_v1(s: ClusterState) -> ClusterStateV1 {
    assert_eq!((&s.timeline, &s.position, &s.forced_failover), (&None, &None, &None));
    ClusterStateV1 {
        cluster_id: s.cluster_id,
        members: s.members,
        epoch: s.epoch,
        primary: s.primary,
        sync_standbys: s.sync_standbys,
        config: s.config,
        config_version: s.config_version,
        maintenance: s.maintenance,
        switchover: s.switchover,
        failovers: s.failovers,
        switchovers: s.switchovers,
        history: s.history,
    }
}

fn vote() -> Vote<u64> {
    Vote::new_committed(TERM, 1)
}

fn to_v2(s: ClusterState) -> ClusterStateV2 {
    assert_eq!(s.sync_quorum, None);
    ClusterStateV2 {
        cluster_id: s.cluster_id,
        members: s.members,
        epoch: s.epoch,
        primary: s.primary,
        sync_standbys: s.sync_standbys,
        config: s.config,
        config_version: s.config_version,
        maintenance: s.maintenance,
        switchover: s.switchover,
        failovers: s.failovers,
        switchovers: s.switchovers,
        history: s.history,
        timeline: s.timeline,
        position: s.position,
        forced_failover: s.forced_failover,
    }
}

fn header(version: u32) -> Header {
    Header { version, cluster_id: "c1".into(), node_id: 1, upgrading: false, created_by: "0.1.0".into() }
}

/// Writes `<data_dir>/raft-v1/` as a v1 build did, and waits until sled has
/// let go of it.
fn write_v1(data_dir: &Path) -> PathBuf {
    write_old(data_dir, 1)
}

/// Writes `<data_dir>/raft-v<version>/` (1 or 2) as that build did.
fn write_old(data_dir: &Path, version: u32) -> PathBuf {
    let dir = data_dir.join(format!("raft-v{version}"));
    {
        let db = sled::Config::new().path(&dir).open().unwrap();
        let t = Tables::new((*db).clone(), &dir);
        t.insert::<HeaderSpace>(&(), &header(version).encode().unwrap()).unwrap();
        t.insert::<VoteSpace>(&(), &vote()).unwrap();
        for entry in entries().into_iter().filter(|e| e.log_id.index > PURGED) {
            t.insert::<LogSpace>(&entry.log_id.index, &entry).unwrap();
        }
        t.insert::<LogMetaSpace>(&LogMetaKey::LastPurged, &log_id(PURGED)).unwrap();
        t.insert::<LogMetaSpace>(&LogMetaKey::Committed, &log_id(LAST)).unwrap();
        db.flush().unwrap();
    }
    let last_membership = StoredMembership::new(Some(log_id(1)), membership());
    let payload = match version {
        1 => encoding::encode(
            "v1 snapshot payload",
            &SnapshotPayloadV1 {
                format: 1,
                last_applied: Some(log_id(SNAPSHOT_AT)),
                membership: last_membership.clone(),
                state: to_v1(state_at(SNAPSHOT_AT)),
            },
        ),
        _ => encoding::encode(
            "v2 snapshot payload",
            &SnapshotPayloadV2 {
                format: 2,
                last_applied: Some(log_id(SNAPSHOT_AT)),
                membership: last_membership.clone(),
                state: to_v2(state_at(SNAPSHOT_AT)),
            },
        ),
    }
    .unwrap();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(SNAPSHOT_AT)),
        last_membership,
        snapshot_id: format!("2-1-{SNAPSHOT_AT}-1"),
    };
    let stored = StoredSnapshot { meta, data: payload };
    let bytes = encoding::encode("stored snapshot", &stored).unwrap();
    write_control_file(&dir.join("snapshot"), SNAPSHOT_MAGIC, &bytes).unwrap();
    wait_released(&dir);
    dir
}

/// Polls (with a deadline) until no sled handle holds `dir`: a dropped
/// handle lets go of its lock, and stops writing, only when its background
/// thread ends.
fn wait_released(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = File::open(dir.join("db")).unwrap();
    loop {
        match file.try_lock() {
            Ok(()) => return file.unlock().unwrap(),
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{} is still locked: {e}", dir.display()),
        }
    }
}

/// `Store::open`, asked again while a just-dropped handle still holds the
/// directory.
fn try_open(data_dir: &Path, cluster: &str) -> Result<(LogStore, StateMachine), StorageError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(data_dir, cluster, 1) {
            Err(StorageError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open(data_dir: &Path) -> (LogStore, StateMachine) {
    try_open(data_dir, "c1").expect("open store")
}

fn open_err(data_dir: &Path, cluster: &str) -> StorageError {
    match try_open(data_dir, cluster) {
        Ok(_) => panic!("opening {} should have failed", data_dir.display()),
        Err(e) => e,
    }
}

/// Every file under `dir` and its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    assert!(out.contains_key(Path::new("db")), "{} holds a sled database", dir.display());
    out
}

fn names(data_dir: &Path) -> BTreeSet<String> {
    fs::read_dir(data_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

/// Checks everything the v1 directory held, as the store now reads it.
async fn assert_upgraded(log: &mut LogStore, sm: &mut StateMachine) {
    assert_eq!(log.read_vote().await.unwrap(), Some(vote()));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(LAST)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(PURGED)));
    assert_eq!(state.last_log_id, Some(log_id(LAST)));
    let kept: Vec<Entry> = entries().into_iter().filter(|e| e.log_id.index > PURGED).collect();
    assert_eq!(log.try_get_log_entries(..).await.unwrap(), kept, "every log entry, unchanged");

    // The state machine starts from the converted snapshot...
    let (applied, members) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(SNAPSHOT_AT)));
    assert_eq!(members, StoredMembership::new(Some(log_id(1)), membership()));
    let from_snapshot = sm.current().state;
    assert_eq!(*from_snapshot, state_at(SNAPSHOT_AT));
    assert_eq!(from_snapshot.primary_node(), Some(1), "the snapshot is not trivially empty");
    assert_eq!((from_snapshot.timeline, from_snapshot.position, from_snapshot.forced_failover), (None, None, None));
    // ...and re-applies the committed entries after it, as openraft does.
    let after = log.try_get_log_entries(SNAPSHOT_AT + 1..=LAST).await.unwrap();
    assert_eq!(after.len() as u64, LAST - SNAPSHOT_AT);
    let responses = sm.apply(after).await.unwrap();
    assert!(responses.iter().all(|r| matches!(r, raftgres_storage::Response::Applied(events) if !events.is_empty())));
    assert_eq!(sm.current().last_applied, Some(log_id(LAST)));
    assert_eq!(*sm.current().state, state_at(LAST));
    assert!(sm.current().state.maintenance && sm.current().state.switchover.is_some());
}

#[tokio::test]
async fn a_v1_directory_is_upgraded_at_open() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    let before = contents(&v1);

    {
        let (mut log, mut sm) = open(data.path());
        assert_upgraded(&mut log, &mut sm).await;
        assert_eq!(contents(&v1), before, "raft-v1/ is byte for byte as it was");
        assert_eq!(names(data.path()), BTreeSet::from(["raft-v1".into(), CURRENT.into()]), "no scratch copy is left");
        // The converted snapshot is a current payload, checksummed and durable.
        let snapshot = sm.get_current_snapshot().await.unwrap().expect("the snapshot was carried over");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(SNAPSHOT_AT)));
        let current: SnapshotPayload = encoding::decode("payload", snapshot.snapshot.get_ref()).unwrap();
        assert_eq!(current.format, 3);
        assert_eq!(current.state, state_at(SNAPSHOT_AT));
    }

    // The second open reads the current directory alone: raft-v1/ could be
    // garbage now.
    fs::write(v1.join("snapshot"), b"no longer read").unwrap();
    let (mut log, mut sm) = open(data.path());
    assert_upgraded(&mut log, &mut sm).await;
}

#[tokio::test]
async fn an_interrupted_upgrade_is_refused_until_the_new_directory_is_removed() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    let v2 = data.path().join(CURRENT);
    drop(open(data.path()));
    // Leave the new directory as a crash before the last step would.
    wait_released(&v2);
    {
        let db = sled::Config::new().path(&v2).open().unwrap();
        let t = Tables::new((*db).clone(), &v2);
        let mut header = Header::decode(&t.get::<HeaderSpace>(&()).unwrap().unwrap()).unwrap();
        assert_eq!((header.version, header.upgrading), (3, false));
        header.upgrading = true;
        t.insert::<HeaderSpace>(&(), &header.encode().unwrap()).unwrap();
        db.flush().unwrap();
    }
    wait_released(&v2);

    let e = open_err(data.path(), "c1");
    assert!(
        matches!(&e, StorageError::UpgradeInProgress { path, version: 3, from } if *path == v2 && *from == v1),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("remove {}", v2.display())), "{msg}");
    assert!(msg.contains(&format!("retry the upgrade from {}", v1.display())), "{msg}");
    assert!(matches!(open_err(data.path(), "c1"), StorageError::UpgradeInProgress { .. }), "it stays refused");

    // Doing what the message says retries the upgrade.
    fs::remove_dir_all(&v2).unwrap();
    let (mut log, mut sm) = open(data.path());
    assert_upgraded(&mut log, &mut sm).await;
}

/// A v1 directory the upgrade refuses: the error, and nothing left behind
/// that a later open could take for an upgraded directory.
fn assert_refused_cleanly(data_dir: &Path, cluster: &str) -> StorageError {
    let v1 = data_dir.join("raft-v1");
    let before = contents(&v1);
    let e = open_err(data_dir, cluster);
    assert!(!data_dir.join(CURRENT).exists(), "{e}: no new directory was left");
    assert!(!data_dir.join(SCRATCH).exists(), "{e}: no scratch copy was left");
    assert_eq!(contents(&v1), before, "{e}: raft-v1/ is unchanged");
    let again = open_err(data_dir, cluster);
    assert_eq!(again.to_string(), e.to_string(), "refused the same way again");
    e
}

#[test]
fn a_v1_directory_with_a_corrupted_snapshot_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    let snap = v1.join("snapshot");
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(&snap, &bytes).unwrap();
    let e = assert_refused_cleanly(data.path(), "c1");
    assert!(matches!(&e, StorageError::Corrupted { path, .. } if *path == v1), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn a_v1_snapshot_payload_that_does_not_decode_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    // Intact file, payload of an unknown format.
    let payload = SnapshotPayload { format: 9, ..SnapshotPayload::new(None, Default::default(), Default::default()) };
    let stored = StoredSnapshot { meta: SnapshotMeta::default(), data: payload.encode().unwrap() };
    write_control_file(&v1.join("snapshot"), SNAPSHOT_MAGIC, &encoding::encode("stored", &stored).unwrap()).unwrap();
    let e = assert_refused_cleanly(data.path(), "c1");
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("unknown format v9"), "{e}");
}

#[test]
fn a_v1_log_entry_that_does_not_decode_is_refused_by_index() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    {
        let db = sled::Config::new().path(&v1).open().unwrap();
        // Half of entry 8.
        let mut bad = encoding::encode("entry", &entries()[7]).unwrap();
        bad.truncate(bad.len() / 2);
        db.insert(LogSpace::key(&8), bad).unwrap();
        db.flush().unwrap();
    }
    wait_released(&v1);
    let e = assert_refused_cleanly(data.path(), "c1");
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("log entry 8 does not decode"), "{e}");
}

#[test]
fn a_v1_directory_of_another_cluster_is_refused() {
    let data = tempfile::tempdir().unwrap();
    write_v1(data.path());
    let e = assert_refused_cleanly(data.path(), "other");
    assert!(matches!(e, StorageError::ClusterMismatch { .. }), "{e}");
    assert!(e.to_string().contains("raft-v1"), "{e}");
}

#[test]
fn a_v1_directory_in_use_is_refused_as_locked() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    let held = sled::Config::new().path(&v1).open().unwrap();
    let Err(e) = Store::open(data.path(), "c1", 1) else { panic!("the upgrade should have waited for raft-v1/") };
    assert!(matches!(&e, StorageError::Locked { path } if *path == v1), "{e}");
    assert!(!data.path().join(CURRENT).exists(), "{e}");
    drop(held);
    drop(open(data.path()));
}

#[test]
fn a_v1_directory_beside_an_unknown_version_is_refused() {
    let data = tempfile::tempdir().unwrap();
    write_v1(data.path());
    fs::create_dir(data.path().join("raft-v4")).unwrap();
    let e = open_err(data.path(), "c1");
    assert!(matches!(e, StorageError::UnsupportedVersion { found: 4, supported: 3, .. }), "{e}");
    assert!(!data.path().join(CURRENT).exists(), "nothing was created");
}

#[test]
fn a_current_directory_with_a_v1_header_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    fs::rename(&v1, data.path().join(CURRENT)).unwrap();
    let e = open_err(data.path(), "c1");
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("header says v1"), "{e}");
}

#[test]
fn a_current_directory_left_without_a_header_says_how_to_retry() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_v1(data.path());
    let v2 = data.path().join(CURRENT);
    // A crash right after sled created the directory, before the header.
    drop(sled::Config::new().path(&v2).open().unwrap());
    wait_released(&v2);
    let e = open_err(data.path(), "c1");
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no format header"), "{msg}");
    assert!(msg.contains(&format!("remove {} to retry the upgrade", v2.display())), "{msg}");
    assert!(msg.contains(&v1.display().to_string()), "{msg}");
    fs::remove_dir_all(&v2).unwrap();
    drop(open(data.path()));
}

/// A node upgraded from v1 to v2 earlier keeps `raft-v1/` beside `raft-v2/`;
/// this build upgrades from `raft-v2/`, the newest, and leaves both as they
/// were.
#[tokio::test]
async fn a_v2_directory_is_upgraded_from_beside_an_old_v1_directory() {
    let data = tempfile::tempdir().unwrap();
    let v1 = write_old(data.path(), 1);
    // What raft-v1/ holds no longer matters once raft-v2/ exists.
    fs::write(v1.join("snapshot"), b"no longer read").unwrap();
    let v2 = write_old(data.path(), 2);
    let before = (contents(&v1), contents(&v2));
    {
        let (mut log, mut sm) = open(data.path());
        assert_upgraded(&mut log, &mut sm).await;
        assert_eq!((contents(&v1), contents(&v2)), before, "raft-v1/ and raft-v2/ are as they were");
        assert_eq!(
            names(data.path()),
            BTreeSet::from(["raft-v1".into(), "raft-v2".into(), CURRENT.into()]),
            "no scratch copy is left"
        );
        let snapshot = sm.get_current_snapshot().await.unwrap().expect("the snapshot was carried over");
        let current: SnapshotPayload = encoding::decode("payload", snapshot.snapshot.get_ref()).unwrap();
        assert_eq!((current.format, current.state.sync_quorum), (3, None));
    }
    let (mut log, mut sm) = open(data.path());
    assert_upgraded(&mut log, &mut sm).await;
}

#[test]
fn a_v2_directory_left_in_the_middle_of_its_own_upgrade_is_refused_with_the_way_out() {
    let data = tempfile::tempdir().unwrap();
    write_old(data.path(), 1);
    let v2 = write_old(data.path(), 2);
    {
        let db = sled::Config::new().path(&v2).open().unwrap();
        let t = Tables::new((*db).clone(), &v2);
        let mut h = header(2);
        h.upgrading = true;
        t.insert::<HeaderSpace>(&(), &h.encode().unwrap()).unwrap();
        db.flush().unwrap();
    }
    wait_released(&v2);
    let e = open_err(data.path(), "c1");
    assert!(e.to_string().contains(&format!("remove {}", v2.display())), "{e}");
    assert!(!data.path().join(CURRENT).exists(), "{e}: nothing was created");
    // Doing what it says upgrades from raft-v1/.
    fs::remove_dir_all(&v2).unwrap();
    drop(open(data.path()));
    assert!(data.path().join(CURRENT).exists());
}
