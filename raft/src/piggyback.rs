//! Application messages that ride on the Raft heartbeats.
//!
//! The leader sends every follower an AppendEntries at least every Raft
//! heartbeat; a follower's daemon also reports to the leader every lease
//! heartbeat interval. For a report that needs no answer of its own, the
//! second round trip is not needed: the follower attaches its latest report
//! to its AppendEntries reply, and the leader attaches a short note for
//! every follower to its requests. This crate carries the bytes and the age
//! of the report; what they mean belongs to the daemon ([`Rider`]).
//!
//! Nothing here is a lease: a primary's lease is granted only through
//! [`crate::RaftHandle::call_leader`], which confirms the leadership.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use raftgres_storage::NodeId;

/// What the daemon does with the messages that ride on AppendEntries.
pub trait Rider: Send + Sync + 'static {
    /// Leader: the note for its AppendEntries (the same for every
    /// follower).
    fn outgoing_note(&self) -> Option<Vec<u8>>;
    /// Leader: the report `from` attached to its reply, composed `age` ago.
    fn report(&self, from: NodeId, report: &[u8], age: Duration);
    /// Follower: the note of an AppendEntries this node accepted.
    fn note(&self, from: NodeId, note: &[u8]);
    /// Follower: the report to attach to an AppendEntries reply, and how
    /// long ago it was composed.
    fn outgoing_report(&self) -> Option<(Vec<u8>, Duration)>;
}

/// The daemon's [`Rider`], shared by the handle and the transport; empty
/// until the daemon installs one (a node without one carries nothing).
#[derive(Clone, Default)]
pub struct RiderSlot(Arc<RwLock<Option<Arc<dyn Rider>>>>);

impl RiderSlot {
    pub fn get(&self) -> Option<Arc<dyn Rider>> {
        self.0.read().expect("rider lock poisoned").clone()
    }

    pub(crate) fn set(&self, rider: Option<Arc<dyn Rider>>) {
        *self.0.write().expect("rider lock poisoned") = rider;
    }
}
