//! Typed sled key spaces. Every logical table lives in one sled tree under
//! a one-byte prefix, with a typed key and value; keys that must keep order
//! are big-endian. One tree means a `sled::Batch` is atomic across tables.

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::encoding::{self, u64_from_key, u64_key};
use crate::error::StorageError;
use crate::typ::{Entry, LogId, Vote};

/// A key type of a key space.
pub trait KeyCodec: Sized {
    fn encode_into(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl KeyCodec for () {
    fn encode_into(&self, _: &mut Vec<u8>) {}
    fn decode(bytes: &[u8]) -> Option<Self> {
        bytes.is_empty().then_some(())
    }
}

impl KeyCodec for u64 {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u64_key(*self));
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        u64_from_key(bytes)
    }
}

/// One logical table.
pub trait KeySpace {
    const PREFIX: u8;
    const NAME: &'static str;
    type Key: KeyCodec;
    type Value: Serialize + DeserializeOwned;

    fn key(key: &Self::Key) -> Vec<u8> {
        let mut out = vec![Self::PREFIX];
        key.encode_into(&mut out);
        out
    }
}

/// The on-disk format header (see `ondisk`), stored as framed bytes.
pub struct HeaderSpace;
impl KeySpace for HeaderSpace {
    const PREFIX: u8 = 0x01;
    const NAME: &'static str = "header";
    type Key = ();
    type Value = Vec<u8>;
}

/// The last vote this node cast or accepted.
pub struct VoteSpace;
impl KeySpace for VoteSpace {
    const PREFIX: u8 = 0x02;
    const NAME: &'static str = "vote";
    type Key = ();
    type Value = Vote;
}

/// Raft log entries by index.
pub struct LogSpace;
impl KeySpace for LogSpace {
    const PREFIX: u8 = 0x03;
    const NAME: &'static str = "log";
    type Key = u64;
    type Value = Entry;
}

/// Log bookkeeping: which log ids were purged and committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMetaKey {
    LastPurged,
    Committed,
}

impl KeyCodec for LogMetaKey {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(match self {
            LogMetaKey::LastPurged => 1,
            LogMetaKey::Committed => 2,
        });
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [1] => Some(LogMetaKey::LastPurged),
            [2] => Some(LogMetaKey::Committed),
            _ => None,
        }
    }
}

pub struct LogMetaSpace;
impl KeySpace for LogMetaSpace {
    const PREFIX: u8 = 0x04;
    const NAME: &'static str = "log_meta";
    type Key = LogMetaKey;
    type Value = LogId;
}

/// Typed access to the key spaces in one sled tree.
#[derive(Clone)]
pub struct Tables {
    tree: sled::Tree,
    path: PathBuf,
}

impl Tables {
    pub fn new(tree: sled::Tree, path: &Path) -> Self {
        Self { tree, path: path.to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sled_err(&self, error: sled::Error) -> StorageError {
        StorageError::Sled { path: self.path.clone(), error }
    }

    pub fn get<KS: KeySpace>(&self, key: &KS::Key) -> Result<Option<KS::Value>, StorageError> {
        match self.tree.get(KS::key(key)).map_err(|e| self.sled_err(e))? {
            Some(bytes) => Ok(Some(encoding::decode(KS::NAME, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn insert<KS: KeySpace>(&self, key: &KS::Key, value: &KS::Value) -> Result<(), StorageError> {
        let bytes = encoding::encode(KS::NAME, value)?;
        self.tree.insert(KS::key(key), bytes).map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    pub fn batch_insert<KS: KeySpace>(
        batch: &mut sled::Batch,
        key: &KS::Key,
        value: &KS::Value,
    ) -> Result<(), StorageError> {
        batch.insert(KS::key(key), encoding::encode(KS::NAME, value)?);
        Ok(())
    }

    pub fn batch_remove<KS: KeySpace>(batch: &mut sled::Batch, key: &KS::Key) {
        batch.remove(KS::key(key));
    }

    pub fn apply(&self, batch: sled::Batch) -> Result<(), StorageError> {
        self.tree.apply_batch(batch).map_err(|e| self.sled_err(e))
    }

    /// True when no key of any key space is stored.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Entries of a `u64`-keyed space within `range`, in key order.
    pub fn range<KS: KeySpace<Key = u64>>(
        &self,
        range: impl RangeBounds<u64>,
    ) -> impl Iterator<Item = Result<(u64, KS::Value), StorageError>> + '_ {
        self.tree.range::<Vec<u8>, _>(byte_bounds::<KS>(&range)).map(move |item| {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let key = u64::decode(&k[1..]).ok_or_else(|| StorageError::Corrupted {
                path: self.path.clone(),
                reason: format!("malformed {} key {:?}", KS::NAME, &k[..]),
            })?;
            Ok((key, encoding::decode(KS::NAME, &v)?))
        })
    }

    /// The first and last keys of a `u64`-keyed space.
    pub fn key_bounds<KS: KeySpace<Key = u64>>(&self) -> Result<Option<(u64, u64)>, StorageError> {
        let mut iter = self.tree.range::<Vec<u8>, _>(vec![KS::PREFIX]..vec![KS::PREFIX + 1]).keys();
        let first = iter.next();
        let last = iter.next_back();
        let decode = |k: sled::IVec| {
            u64::decode(&k[1..]).ok_or_else(|| StorageError::Corrupted {
                path: self.path.clone(),
                reason: format!("malformed {} key {:?}", KS::NAME, &k[..]),
            })
        };
        match first {
            None => Ok(None),
            Some(first) => {
                let first = decode(first.map_err(|e| self.sled_err(e))?)?;
                let last = match last {
                    Some(last) => decode(last.map_err(|e| self.sled_err(e))?)?,
                    None => first,
                };
                Ok(Some((first, last)))
            }
        }
    }

    /// Keys of a `u64`-keyed space within `range`.
    pub fn keys<KS: KeySpace<Key = u64>>(&self, range: impl RangeBounds<u64>) -> Result<Vec<u64>, StorageError> {
        self.tree
            .range::<Vec<u8>, _>(byte_bounds::<KS>(&range))
            .keys()
            .map(|k| {
                let k = k.map_err(|e| self.sled_err(e))?;
                u64::decode(&k[1..]).ok_or_else(|| StorageError::Corrupted {
                    path: self.path.clone(),
                    reason: format!("malformed {} key", KS::NAME),
                })
            })
            .collect()
    }
}

/// The byte-key bounds of a `u64` range within one key space.
fn byte_bounds<KS: KeySpace<Key = u64>>(range: &impl RangeBounds<u64>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = match range.start_bound() {
        Bound::Included(s) => Bound::Included(KS::key(s)),
        Bound::Excluded(s) => Bound::Excluded(KS::key(s)),
        Bound::Unbounded => Bound::Included(vec![KS::PREFIX]),
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Bound::Included(KS::key(e)),
        Bound::Excluded(e) => Bound::Excluded(KS::key(e)),
        Bound::Unbounded => Bound::Excluded(vec![KS::PREFIX + 1]),
    };
    (start, end)
}
