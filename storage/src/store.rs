//! Opening a node's data directory: version check (and the upgrade of an
//! older version), header check, integrity scan, and the durability
//! primitive shared by the log store and the state machine.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::encoding;
use crate::error::StorageError;
use crate::keyspace::{HeaderSpace, LogMetaKey, LogMetaSpace, LogSpace, Tables, VoteSpace};
use crate::log_store::LogStore;
use crate::ondisk::{self, DataVersion, Header, read_control_file, write_control_file};
use crate::snapshot::StoredSnapshot;
use crate::state_machine::StateMachine;

pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"RGSNAP01";

/// A node's open data directory. Cheap to clone; the log store and the
/// state machine each hold one.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    tables: Tables,
    /// sled's data file, kept open to fdatasync after each flush: sled's own
    /// flush uses `sync_file_range`, which does not survive a power loss.
    db_file: File,
    dir: PathBuf,
    header: Header,
}

impl Store {
    /// Opens (or creates) the Raft data of `node_id` in cluster `cluster_id`
    /// under `data_dir`, and returns its log store and state machine.
    pub fn open(data_dir: &Path, cluster_id: &str, node_id: u64) -> Result<(LogStore, StateMachine), StorageError> {
        let store = Store::open_store(data_dir, cluster_id, node_id)?;
        let sm = StateMachine::open(store.clone())?;
        Ok((LogStore::new(store), sm))
    }

    fn open_store(data_dir: &Path, cluster_id: &str, node_id: u64) -> Result<Store, StorageError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| StorageError::Io { path, error }
        };
        fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let dir = data_dir.join(DataVersion::CURRENT.dir_name());
        let (db, fresh) = match check_versions(data_dir)? {
            Some((older, version)) => {
                (ondisk::upgrade::upgrade(data_dir, (&older, version), &dir, cluster_id, node_id)?, false)
            }
            None => {
                let fresh = !dir.exists();
                (open_sled(&dir)?, fresh)
            }
        };
        let tables = Tables::new((*db).clone(), &dir);
        let db_file = File::open(dir.join("db")).map_err(io(&dir))?;

        let header = match tables.get::<HeaderSpace>(&()).map_err(|e| corrupted(&dir, e))? {
            None if !fresh || !tables.is_empty() => {
                // A directory that existed before this open always has a
                // header: sled lost it, this is not a raftgres directory, or
                // an upgrade stopped before it wrote one.
                let mut reason =
                    "it has no format header (sled could not recover it, or it was not written by raftgres)"
                        .to_string();
                if let Some(older) = newest_older(data_dir) {
                    reason += &format!(
                        "; if an upgrade from {} stopped before writing it, remove {} to retry the upgrade",
                        older.display(),
                        dir.display()
                    );
                }
                return Err(StorageError::Corrupted { path: dir, reason });
            }
            None => {
                let header = Header::new(cluster_id, node_id);
                tables.insert::<HeaderSpace>(&(), &header.encode()?)?;
                header
            }
            Some(bytes) => match Header::decode(&bytes) {
                Ok(h) => h,
                Err(ondisk::header::HeaderError::UnknownVersion(found)) => {
                    return Err(StorageError::UnsupportedVersion {
                        path: dir,
                        found,
                        supported: DataVersion::CURRENT.number(),
                    });
                }
                Err(ondisk::header::HeaderError::Malformed(reason)) => {
                    return Err(StorageError::Corrupted { path: dir, reason: format!("format header: {reason}") });
                }
            },
        };
        if header.version != DataVersion::CURRENT.number() {
            return Err(StorageError::Corrupted {
                reason: format!(
                    "its format header says v{}, but the directory is named for v{}",
                    header.version,
                    DataVersion::CURRENT.number()
                ),
                path: dir,
            });
        }
        if header.upgrading {
            return Err(StorageError::UpgradeInProgress {
                path: dir,
                version: header.version,
                from: newest_older(data_dir).unwrap_or_else(|| data_dir.join("raft-v<earlier>")),
            });
        }
        if header.cluster_id != cluster_id {
            return Err(StorageError::ClusterMismatch {
                path: dir,
                found: header.cluster_id,
                expected: cluster_id.to_string(),
            });
        }
        if header.node_id != node_id {
            return Err(StorageError::NodeMismatch { path: dir, found: header.node_id, expected: node_id });
        }

        let store = Store { inner: Arc::new(Inner { db, tables, db_file, dir: dir.clone(), header }) };
        if fresh {
            store.sync_blocking()?;
            ondisk::fsync_dir(&dir).map_err(io(&dir))?;
            ondisk::fsync_dir(data_dir).map_err(io(data_dir))?;
        }
        store.check_integrity()?;
        Ok(store)
    }

    pub(crate) fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    /// The directory of the current format version.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A probe that tells when every clone of this store is gone, so the
    /// directory can be opened again.
    pub fn release_probe(&self) -> ReleaseProbe {
        ReleaseProbe(Arc::downgrade(&self.inner))
    }

    pub fn header(&self) -> &Header {
        &self.inner.header
    }

    /// Makes every write so far durable: sled flush, then fdatasync of its
    /// data file. Blocking.
    pub(crate) fn sync_blocking(&self) -> Result<(), StorageError> {
        sync_db(&self.inner.db, &self.inner.db_file, &self.inner.dir)
    }

    /// [`Store::sync_blocking`] off the async executor.
    pub(crate) async fn sync(&self) -> Result<(), StorageError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.sync_blocking()).await.map_err(|e| StorageError::Io {
            path: self.inner.dir.clone(),
            error: std::io::Error::other(format!("sync task failed: {e}")),
        })?
    }

    /// The persisted snapshot, if any.
    pub(crate) fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let path = self.inner.dir.join(SNAPSHOT_FILE);
        let bytes = read_control_file(&path, SNAPSHOT_MAGIC)
            .map_err(|e| StorageError::Corrupted { path: self.inner.dir.clone(), reason: e.to_string() })?;
        match bytes {
            None => Ok(None),
            Some(bytes) => {
                Ok(Some(encoding::decode("stored snapshot", &bytes).map_err(|e| corrupted(&path, e.into()))?))
            }
        }
    }

    /// Durably replaces the persisted snapshot. Blocking.
    pub(crate) fn write_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let bytes = encoding::encode("stored snapshot", snapshot)?;
        let path = self.inner.dir.join(SNAPSHOT_FILE);
        write_control_file(&path, SNAPSHOT_MAGIC, &bytes).map_err(|error| StorageError::Io { path, error })
    }

    /// Refuses a directory whose vote, log or snapshot does not decode, or
    /// whose log has holes.
    fn check_integrity(&self) -> Result<(), StorageError> {
        check_tables(self.tables(), &self.inner.dir)?;
        self.read_snapshot()?;
        Ok(())
    }
}

/// Opens the sled database in `dir`, creating it if needed.
///
/// Without sled's background flusher (`flush_every_ms`): it woke twice a
/// second to write buffers and fsync the file even when nothing had
/// changed, and every write that must survive a crash is made durable by
/// [`sync_db`] anyway. What it also did: write the committed index (which
/// is stored without a sync) within 500 ms, so a crash of the process now
/// loses it as a power loss already could, and the leader tells it again;
/// and clean sparse segments, which a log that is appended to and purged
/// does not need (a log-like run of 300,000 appends, purged to the last
/// 1,200, ended at the same 8 MiB with and without it). sled still
/// flushes when the last handle is dropped.
///
/// A directory whose last handle in this process was just dropped can stay
/// locked a moment longer (sled's I/O threads finish their work and drop
/// their references after the caller's): a lock is retried for up to
/// [`LOCK_WAIT`] before the directory is refused as in use.
pub(crate) fn open_sled(dir: &Path) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match try_open_sled(dir) {
            Err(StorageError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// How long [`open_sled`] retries a locked directory.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn try_open_sled(dir: &Path) -> Result<sled::Db, StorageError> {
    sled::Config::new().path(dir).flush_every_ms(None).open().map_err(|e| match e {
        // sled wraps the failed flock in a message of its own.
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock") =>
        {
            StorageError::Locked { path: dir.to_path_buf() }
        }
        e => StorageError::Corrupted { path: dir.to_path_buf(), reason: format!("sled cannot open it: {e}") },
    })
}

/// The durability primitive: sled flush, then fdatasync of sled's data
/// file `db_file` (sled's own flush uses `sync_file_range`, which does not
/// survive a power loss). Blocking.
pub(crate) fn sync_db(db: &sled::Db, db_file: &File, dir: &Path) -> Result<(), StorageError> {
    db.flush().map_err(|error| StorageError::Sled { path: dir.to_path_buf(), error })?;
    db_file.sync_data().map_err(|error| StorageError::Io { path: dir.join("db"), error })
}

/// Refuses tables whose vote or log bookkeeping does not decode, whose log
/// has holes, or whose entries do not decode or sit at the wrong index.
/// `dir` names the directory in the errors.
pub(crate) fn check_tables(t: &Tables, dir: &Path) -> Result<(), StorageError> {
    t.get::<VoteSpace>(&()).map_err(|e| corrupted(dir, e))?;
    let purged = t.get::<LogMetaSpace>(&LogMetaKey::LastPurged).map_err(|e| corrupted(dir, e))?;
    t.get::<LogMetaSpace>(&LogMetaKey::Committed).map_err(|e| corrupted(dir, e))?;
    let mut expected = purged.map(|p| p.index + 1);
    for item in t.range::<LogSpace>(..) {
        let (index, entry) = item.map_err(|e| corrupted(dir, e))?;
        if let Some(want) = expected
            && index != want
        {
            return Err(StorageError::Corrupted {
                path: dir.to_path_buf(),
                reason: format!("the Raft log has a hole: expected entry {want}, found {index}"),
            });
        }
        if entry.log_id.index != index {
            return Err(StorageError::Corrupted {
                path: dir.to_path_buf(),
                reason: format!("log entry stored at {index} claims index {}", entry.log_id.index),
            });
        }
        expected = Some(index + 1);
    }
    Ok(())
}

/// See [`Store::release_probe`].
#[derive(Clone)]
pub struct ReleaseProbe(std::sync::Weak<Inner>);

impl ReleaseProbe {
    /// True once the sled database is closed.
    pub fn is_released(&self) -> bool {
        self.0.strong_count() == 0
    }
}

pub(crate) fn corrupted(path: &Path, e: StorageError) -> StorageError {
    match e {
        StorageError::Corrupted { .. } => e,
        other => StorageError::Corrupted { path: path.to_path_buf(), reason: other.to_string() },
    }
}

/// The newest earlier-version directory in `data_dir` this build upgrades
/// from, if any.
fn newest_older(data_dir: &Path) -> Option<PathBuf> {
    DataVersion::UPGRADES_FROM.iter().rev().map(|v| data_dir.join(v.dir_name())).find(|d| d.exists())
}

/// Refuses a data directory that holds a format version this build neither
/// reads nor upgrades. Returns the directory to upgrade, with its version,
/// when the data directory holds no current version: the newest of
/// [`DataVersion::UPGRADES_FROM`] present (an older one beside it is what
/// an earlier upgrade left behind).
fn check_versions(data_dir: &Path) -> Result<Option<(PathBuf, DataVersion)>, StorageError> {
    let entries = fs::read_dir(data_dir).map_err(|error| StorageError::Io { path: data_dir.to_path_buf(), error })?;
    let mut current = false;
    let mut older: Option<(PathBuf, DataVersion)> = None;
    for entry in entries {
        let entry = entry.map_err(|error| StorageError::Io { path: data_dir.to_path_buf(), error })?;
        let name = entry.file_name();
        let upgradable = |n: u32| DataVersion::UPGRADES_FROM.iter().copied().find(|v| v.number() == n);
        match name.to_str().and_then(DataVersion::parse_dir_name) {
            None => {}
            Some(found) if found == DataVersion::CURRENT.number() => current = true,
            Some(found) if upgradable(found).is_some() => {
                let v = upgradable(found).expect("checked");
                if older.as_ref().is_none_or(|(_, o)| *o < v) {
                    older = Some((entry.path(), v));
                }
            }
            Some(found) => {
                return Err(StorageError::UnsupportedVersion {
                    path: entry.path(),
                    found,
                    supported: DataVersion::CURRENT.number(),
                });
            }
        }
    }
    Ok(if current { None } else { older })
}
