//! Errors of the storage crate. Each variant carries what an operator needs
//! to act: the path, the versions, the cluster or node ids. Messages include
//! their cause, so causes are not chained as `source` (which would print
//! them twice under `{e:#}`).

use std::path::PathBuf;

use thiserror::Error;

use crate::encoding::{DecodeError, EncodeError};

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("data directory {path} is in use by another process (or a node not yet stopped)")]
    Locked { path: PathBuf },

    #[error("data directory {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    #[error(
        "data directory {path} holds on-disk format v{found}, but this raftgres reads only v{supported}; \
         use the raftgres release that wrote it"
    )]
    UnsupportedVersion { path: PathBuf, found: u32, supported: u32 },

    #[error("data directory {path} is corrupted: {reason}")]
    Corrupted { path: PathBuf, reason: String },

    #[error("data directory {path} belongs to cluster {found:?}, not {expected:?}")]
    ClusterMismatch { path: PathBuf, found: String, expected: String },

    #[error("data directory {path} belongs to node {found}, not node {expected}")]
    NodeMismatch { path: PathBuf, found: u64, expected: u64 },

    #[error(
        "data directory {path} was left in the middle of an upgrade to v{version}; remove {path} to retry the \
         upgrade from {from}, which the upgrade leaves untouched"
    )]
    UpgradeInProgress { path: PathBuf, version: u32, from: PathBuf },

    #[error("sled database {path}: {error}")]
    Sled { path: PathBuf, error: sled::Error },

    #[error(transparent)]
    Decode(#[from] DecodeError),

    #[error(transparent)]
    Encode(#[from] EncodeError),
}
