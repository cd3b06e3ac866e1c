//! The upgrade of an earlier format's data directory to the current one,
//! run when a node opens a data directory that holds no current directory:
//! from the newest earlier version present (`raft-v2/`, else `raft-v1/`).
//!
//! Every later version changed only the snapshot payload (the cluster state
//! gained fields) and appended variants to the log's commands and events,
//! so the vote, the log entries and the log bookkeeping an earlier version
//! wrote decode unchanged. The upgrade:
//!
//! 1. locks the source directory as its own daemon does, so no daemon of
//!    the earlier release writes it meanwhile;
//! 2. copies it to a scratch directory and reads the copy: opening a sled
//!    database writes to it, and the source must stay byte for byte as it
//!    was;
//! 3. checks everything before writing anything: the header (the source's
//!    version, this cluster and node), every key (each log entry must
//!    decode with this release's types), the log's continuity, and the
//!    snapshot, whose payload is decoded with the source's types and
//!    re-encoded in the current format;
//! 4. creates the current directory with a header whose `upgrading` flag is
//!    set, copies the vote, the log and the log bookkeeping verbatim, writes
//!    the converted snapshot, makes all of it durable, removes the scratch
//!    copy, and clears the flag as its last step.
//!
//! A failed upgrade removes what it wrote. A crash leaves the current
//! directory with the flag set (or with no header at all if it came before
//! the header was written), and such a directory is refused: removing it
//! retries the upgrade from the source, which is left untouched.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::Path;

use crate::encoding::{self, DecodeError};
use crate::error::StorageError;
use crate::keyspace::{HeaderSpace, KeyCodec, KeySpace, LogMetaKey, LogMetaSpace, LogSpace, Tables, VoteSpace};
use crate::ondisk::header::HeaderError;
use crate::ondisk::{DataVersion, Header, fsync_dir, read_control_file, write_control_file};
use crate::snapshot::{SnapshotPayload, StoredSnapshot};
use crate::store::{SNAPSHOT_FILE, SNAPSHOT_MAGIC, check_tables, corrupted, open_sled, sync_db};

/// The name of the copy of the source directory the upgrade reads, beside
/// it in the data directory (`upgrade-from-raft-v2.tmp`). Not a `raft-v<N>`
/// name, so no release takes it for data.
pub(crate) fn scratch_name(version: DataVersion) -> String {
    format!("upgrade-from-{}.tmp", version.dir_name())
}

/// Upgrades the directory `from`, of format `version`, into the new
/// directory `to`, both in `data_dir`, and returns the open database of
/// `to`.
pub(crate) fn upgrade(
    data_dir: &Path,
    (from, version): (&Path, DataVersion),
    to: &Path,
    cluster_id: &str,
    node_id: u64,
) -> Result<sled::Db, StorageError> {
    tracing::info!(
        "upgrading {} (on-disk format v{}) to {} (v{})",
        from.display(),
        version.number(),
        to.display(),
        DataVersion::CURRENT.number()
    );
    let _lock = lock_source(from)?;
    let scratch = data_dir.join(scratch_name(version));
    remove_dir(&scratch)?;

    let source = match read_source((from, version), &scratch, cluster_id, node_id) {
        Ok(source) => source,
        Err(e) => {
            discard(&scratch);
            return Err(e);
        }
    };
    if to.exists() {
        // Another process created it since the versions were checked: it is
        // not this upgrade's to write or to remove.
        drop(source);
        discard(&scratch);
        return Err(StorageError::Locked { path: to.to_path_buf() });
    }
    let written = write_target(data_dir, to, &source, cluster_id, node_id);
    drop(source);
    let finished = written.and_then(|target| {
        remove_dir(&scratch)?;
        target.finish()
    });
    match finished {
        Ok(db) => {
            tracing::info!(
                "upgraded {} to {}; {} is no longer read, and can be removed once the cluster runs the new release",
                from.display(),
                to.display(),
                from.display()
            );
            Ok(db)
        }
        Err(e) => {
            discard(&scratch);
            discard(to);
            Err(e)
        }
    }
}

/// What the upgrade read from the source directory, checked.
struct Source {
    /// The scratch copy's database.
    db: sled::Db,
    /// The snapshot, its payload already converted to the current format.
    snapshot: Option<StoredSnapshot>,
}

/// The current directory written but still flagged as upgrading.
struct Target {
    db: sled::Db,
    db_file: File,
    tables: Tables,
    header: Header,
}

impl Target {
    /// Clears the `upgrading` flag, durably: the last step.
    fn finish(mut self) -> Result<sled::Db, StorageError> {
        self.header.upgrading = false;
        self.tables.insert::<HeaderSpace>(&(), &self.header.encode()?)?;
        sync_db(&self.db, &self.db_file, self.tables.path())?;
        Ok(self.db)
    }
}

/// Takes the lock sled takes on `<dir>/db` (an exclusive `flock`), without
/// opening the database.
fn lock_source(from: &Path) -> Result<File, StorageError> {
    let path = from.join("db");
    let file = File::open(&path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => StorageError::Corrupted {
            path: from.to_path_buf(),
            reason: "it holds no sled database (no db file)".into(),
        },
        _ => StorageError::Io { path: path.clone(), error },
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path: from.to_path_buf() }),
        Err(TryLockError::Error(error)) => Err(StorageError::Io { path, error }),
    }
}

fn read_source(
    (from, version): (&Path, DataVersion),
    scratch: &Path,
    cluster_id: &str,
    node_id: u64,
) -> Result<Source, StorageError> {
    copy_dir(from, scratch)?;
    let db = open_sled(scratch).map_err(|e| match e {
        StorageError::Corrupted { reason, .. } => StorageError::Corrupted { path: from.to_path_buf(), reason },
        e => e,
    })?;
    // Errors name the directory the data comes from, not the copy.
    let tables = Tables::new((*db).clone(), from);
    check_header(&tables, (from, version), cluster_id, node_id)?;
    check_keys(&db, from)?;
    check_tables(&tables, from)?;
    let snapshot = convert_snapshot(from)?;
    Ok(Source { db, snapshot })
}

fn check_header(
    tables: &Tables,
    (from, version): (&Path, DataVersion),
    cluster_id: &str,
    node_id: u64,
) -> Result<(), StorageError> {
    let corrupt = |reason: String| StorageError::Corrupted { path: from.to_path_buf(), reason };
    let bytes = tables.get::<HeaderSpace>(&()).map_err(|e| corrupted(from, e))?.ok_or_else(|| {
        corrupt("it has no format header (sled could not recover it, or it was not written by raftgres)".into())
    })?;
    let header = Header::decode(&bytes).map_err(|e| match e {
        HeaderError::Malformed(reason) => corrupt(format!("format header: {reason}")),
        HeaderError::UnknownVersion(found) => StorageError::UnsupportedVersion {
            path: from.to_path_buf(),
            found,
            supported: DataVersion::CURRENT.number(),
        },
    })?;
    let v = version.number();
    if header.version != v {
        return Err(corrupt(format!(
            "its format header says v{}, but the directory is named for v{v}",
            header.version
        )));
    }
    if header.upgrading {
        return Err(corrupt(format!(
            "it was left in the middle of an upgrade to v{v}: remove {} to upgrade from the earlier directory beside \
             it, which that upgrade left untouched",
            from.display()
        )));
    }
    if header.cluster_id != cluster_id {
        return Err(StorageError::ClusterMismatch {
            path: from.to_path_buf(),
            found: header.cluster_id,
            expected: cluster_id.to_string(),
        });
    }
    if header.node_id != node_id {
        return Err(StorageError::NodeMismatch { path: from.to_path_buf(), found: header.node_id, expected: node_id });
    }
    Ok(())
}

/// Checks that every key belongs to a table the source's format wrote and that its value
/// decodes with this release's types.
fn check_keys(db: &sled::Db, from: &Path) -> Result<(), StorageError> {
    let corrupt = |reason: String| StorageError::Corrupted { path: from.to_path_buf(), reason };
    for item in db.iter() {
        let (key, value) = item.map_err(|error| StorageError::Sled { path: from.to_path_buf(), error })?;
        let Some((&prefix, rest)) = key.split_first() else {
            return Err(corrupt("it holds an empty key".into()));
        };
        match prefix {
            HeaderSpace::PREFIX if rest.is_empty() => {}
            VoteSpace::PREFIX if rest.is_empty() => {
                decode::<VoteSpace>(&value).map_err(|e| corrupt(format!("the vote does not decode: {e}")))?;
            }
            LogSpace::PREFIX => {
                let index = u64::decode(rest).ok_or_else(|| corrupt(format!("malformed log key {:?}", &key[..])))?;
                decode::<LogSpace>(&value).map_err(|e| {
                    corrupt(format!("log entry {index} does not decode with this release's types: {e}"))
                })?;
            }
            LogMetaSpace::PREFIX => {
                let meta = LogMetaKey::decode(rest)
                    .ok_or_else(|| corrupt(format!("malformed log_meta key {:?}", &key[..])))?;
                decode::<LogMetaSpace>(&value)
                    .map_err(|e| corrupt(format!("log_meta {meta:?} does not decode: {e}")))?;
            }
            _ => return Err(corrupt(format!("it holds a key of no known table: {:?}", &key[..]))),
        }
    }
    Ok(())
}

fn decode<KS: KeySpace>(bytes: &[u8]) -> Result<KS::Value, DecodeError> {
    encoding::decode(KS::NAME, bytes)
}

/// Reads `from`'s snapshot (it is only read, so the original serves) and
/// re-encodes its payload in the current format.
fn convert_snapshot(from: &Path) -> Result<Option<StoredSnapshot>, StorageError> {
    let path = from.join(SNAPSHOT_FILE);
    let bytes = read_control_file(&path, SNAPSHOT_MAGIC)
        .map_err(|e| StorageError::Corrupted { path: from.to_path_buf(), reason: e.to_string() })?;
    let Some(bytes) = bytes else { return Ok(None) };
    let stored: StoredSnapshot = encoding::decode("stored snapshot", &bytes).map_err(|e| corrupted(&path, e.into()))?;
    let payload = SnapshotPayload::decode(&stored.data)
        .map_err(|e| StorageError::Corrupted { path: path.clone(), reason: format!("snapshot: {e}") })?;
    debug_assert_eq!(payload.format, DataVersion::CURRENT.number());
    Ok(Some(StoredSnapshot { meta: stored.meta, data: payload.encode()? }))
}

/// Creates `to`, flagged as upgrading, and writes the checked source into
/// it durably.
fn write_target(
    data_dir: &Path,
    to: &Path,
    source: &Source,
    cluster_id: &str,
    node_id: u64,
) -> Result<Target, StorageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| StorageError::Io { path, error }
    };
    let db = open_sled(to)?;
    let db_file = File::open(to.join("db")).map_err(io(to))?;
    let tables = Tables::new((*db).clone(), to);
    if !tables.is_empty() {
        return Err(StorageError::Corrupted { path: to.to_path_buf(), reason: "it is not empty".into() });
    }
    let mut header = Header::new(cluster_id, node_id);
    header.upgrading = true;
    tables.insert::<HeaderSpace>(&(), &header.encode()?)?;
    sync_db(&db, &db_file, to)?;
    fsync_dir(to).map_err(io(to))?;
    fsync_dir(data_dir).map_err(io(data_dir))?;

    // The vote, the log and its bookkeeping, byte for byte.
    let header_key = HeaderSpace::key(&());
    for item in source.db.iter() {
        let (key, value) = item.map_err(|error| StorageError::Sled { path: to.to_path_buf(), error })?;
        if key.as_ref() != header_key.as_slice() {
            db.insert(key, value).map_err(|error| StorageError::Sled { path: to.to_path_buf(), error })?;
        }
    }
    sync_db(&db, &db_file, to)?;
    if let Some(snapshot) = &source.snapshot {
        let bytes = encoding::encode("stored snapshot", snapshot)?;
        let path = to.join(SNAPSHOT_FILE);
        write_control_file(&path, SNAPSHOT_MAGIC, &bytes).map_err(|error| StorageError::Io { path, error })?;
    }
    Ok(Target { db, db_file, tables, header })
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), StorageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| StorageError::Io { path, error }
    };
    fs::create_dir(to).map_err(io(to))?;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io(&source))?.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            fs::copy(&source, &target).map_err(io(&source))?;
        }
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), StorageError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::Io { path: dir.to_path_buf(), error: e }),
        _ => Ok(()),
    }
}

/// Removes what a failed upgrade wrote. Should that fail, what stays is
/// refused at the next open (flagged as upgrading, or without a header).
fn discard(dir: &Path) {
    if let Err(e) = remove_dir(dir) {
        tracing::warn!("after the failed upgrade: {e}");
    }
}
