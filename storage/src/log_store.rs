//! The Raft log and vote, kept in sled and made durable (sled flush plus
//! fdatasync) before openraft is told they are persisted.

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};

use crate::keyspace::{LogMetaKey, LogMetaSpace, LogSpace, Tables, VoteSpace};
use crate::store::Store;
use crate::typ::{Entry, LogId, LogState, RaftStorageError, TypeConfig, Vote};

/// openraft's log storage over a [`Store`]. Clones share the store and serve
/// as log readers.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    fn tables(&self) -> &Tables {
        self.store.tables()
    }

    async fn sync(&self) -> Result<(), crate::StorageError> {
        self.store.sync().await
    }

    /// Writes `entries` and makes them durable; the body of `append`
    /// without openraft's callback.
    pub async fn append_durable(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), RaftStorageError> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            Tables::batch_insert::<LogSpace>(&mut batch, &entry.log_id.index, &entry)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        self.tables().apply(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.sync().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        self.tables()
            .range::<LogSpace>(range)
            .map(|item| item.map(|(_, e)| e).map_err(|e| StorageIOError::read_logs(&e).into()))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState, RaftStorageError> {
        let t = self.tables();
        let last_purged_log_id =
            t.get::<LogMetaSpace>(&LogMetaKey::LastPurged).map_err(|e| StorageIOError::read_logs(&e))?;
        let last = match t.key_bounds::<LogSpace>().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, last)) => t
                .range::<LogSpace>(last..=last)
                .next()
                .transpose()
                .map_err(|e| StorageIOError::read_logs(&e))?
                .map(|(_, e)| e.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftStorageError> {
        self.tables().insert::<VoteSpace>(&(), vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.sync().await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftStorageError> {
        Ok(self.tables().get::<VoteSpace>(&()).map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        // Not synced: losing it only means re-learning the commit index from
        // the leader; the entries themselves are durable.
        let mut batch = sled::Batch::default();
        match committed {
            Some(c) => Tables::batch_insert::<LogMetaSpace>(&mut batch, &LogMetaKey::Committed, &c)
                .map_err(|e| StorageIOError::write(&e))?,
            None => Tables::batch_remove::<LogMetaSpace>(&mut batch, &LogMetaKey::Committed),
        }
        self.tables().apply(batch).map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        Ok(self.tables().get::<LogMetaSpace>(&LogMetaKey::Committed).map_err(|e| StorageIOError::read(&e))?)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_durable(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let t = self.tables();
        let keys = t.keys::<LogSpace>(log_id.index..).map_err(|e| StorageIOError::write_logs(&e))?;
        let mut batch = sled::Batch::default();
        for k in keys {
            Tables::batch_remove::<LogSpace>(&mut batch, &k);
        }
        t.apply(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.sync().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let t = self.tables();
        let keys = t.keys::<LogSpace>(..=log_id.index).map_err(|e| StorageIOError::write_logs(&e))?;
        let mut batch = sled::Batch::default();
        Tables::batch_insert::<LogMetaSpace>(&mut batch, &LogMetaKey::LastPurged, &log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        for k in keys {
            Tables::batch_remove::<LogSpace>(&mut batch, &k);
        }
        t.apply(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.sync().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
