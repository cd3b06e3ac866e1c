//! The state machine: applies committed entries to [`ClusterState`],
//! builds and installs snapshots, and publishes every applied state to
//! watchers.
//!
//! Applied state is not written on every apply: snapshots are durable, and
//! on start the state is rebuilt from the last snapshot; openraft re-applies
//! the committed entries after it (the log keeps them until a snapshot
//! covers them).

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::watch;

use crate::error::StorageError;
use crate::snapshot::{SnapshotPayload, StoredSnapshot};
use crate::state::{ApplyContext, ClusterState};
use crate::store::Store;
use crate::typ::{Entry, LogId, RaftStorageError, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// The state after the last applied entry, as watchers see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: Arc<ClusterState>,
}

struct Inner {
    applied: AppliedState,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: u64,
}

/// openraft's state machine over a [`Store`]. Clones share everything.
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    inner: Arc<Mutex<Inner>>,
    watch: watch::Sender<AppliedState>,
}

impl StateMachine {
    pub(crate) fn open(store: Store) -> Result<Self, StorageError> {
        let applied = match store.read_snapshot()? {
            Some(snap) => {
                let payload = SnapshotPayload::decode(&snap.data).map_err(|e| StorageError::Corrupted {
                    path: store.dir().to_path_buf(),
                    reason: format!("snapshot: {e}"),
                })?;
                AppliedState {
                    last_applied: payload.last_applied,
                    membership: payload.membership,
                    state: Arc::new(payload.state),
                }
            }
            None => AppliedState::default(),
        };
        let (watch, _) = watch::channel(applied.clone());
        Ok(Self { store, inner: Arc::new(Mutex::new(Inner { applied, snapshot_seq: 0 })), watch })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-apply; the state may be torn, and
        // continuing would diverge from the other replicas.
        self.inner.lock().expect("state machine lock poisoned: a previous apply panicked")
    }

    /// The cluster state after the last applied entry, without the
    /// membership (cheaper than [`Self::current`]).
    pub fn current_state(&self) -> Arc<ClusterState> {
        self.lock().applied.state.clone()
    }

    /// The state after the last applied entry (may lag the leader).
    pub fn current(&self) -> AppliedState {
        self.lock().applied.clone()
    }

    /// Tells when the underlying store has been closed.
    pub fn release_probe(&self) -> crate::store::ReleaseProbe {
        self.store.release_probe()
    }

    /// Watch every applied state.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.watch.subscribe()
    }

    fn publish(&self, applied: AppliedState) {
        self.watch.send_replace(applied);
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftStorageError> {
        let (applied, seq) = {
            let mut inner = self.lock();
            inner.snapshot_seq += 1;
            (inner.applied.clone(), inner.snapshot_seq)
        };
        let payload = SnapshotPayload::new(applied.last_applied, applied.membership.clone(), (*applied.state).clone());
        let data = payload.encode().map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snapshot_id = match applied.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id: applied.last_applied, last_membership: applied.membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let store = self.store.clone();
        let data = tokio::task::spawn_blocking(move || store.write_snapshot(&stored).map(|()| stored.data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &std::io::Error::other(e.to_string())))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        let inner = self.lock();
        Ok((inner.applied.last_applied, inner.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let applied = {
            let mut inner = self.lock();
            let applied = &mut inner.applied;
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Blank,
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::Membership
                    }
                    EntryPayload::Normal(req) => {
                        let ctx = ApplyContext { index: entry.log_id.index, time_ms: req.proposed_at_ms };
                        match Arc::make_mut(&mut applied.state).apply(&req.command, ctx) {
                            Ok(events) => {
                                for e in &events {
                                    tracing::info!(index = entry.log_id.index, "{e}");
                                }
                                Response::Applied(events)
                            }
                            Err(reject) => {
                                tracing::debug!(index = entry.log_id.index, command = %req.command, "rejected: {reject}");
                                Response::Rejected(reject)
                            }
                        }
                    }
                };
                responses.push(response);
            }
            applied.clone()
        };
        self.publish(applied);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        let payload =
            SnapshotPayload::decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        if payload.last_applied != meta.last_log_id {
            let e = std::io::Error::other(format!(
                "snapshot payload is at {:?} but its metadata says {:?}",
                payload.last_applied, meta.last_log_id
            ));
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
        }
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write_snapshot(&stored))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &std::io::Error::other(e.to_string())))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state: Arc::new(payload.state),
        };
        self.lock().applied = applied.clone();
        self.publish(applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, RaftStorageError> {
        let stored = self.store.read_snapshot().map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
