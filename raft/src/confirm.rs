//! Leadership confirmed by the AppendEntries the leader sends anyway.
//!
//! openraft's `ensure_linearizable` sends a round of AppendEntries to every
//! voter and waits for a quorum; the lease grantor needs that confirmation
//! for every renewal, four times a second, on top of the Raft heartbeats
//! that already go to every voter several times a second. The transport
//! records, per peer, the send time of the latest AppendEntries of the
//! current term that the peer accepted (any answer but a higher vote,
//! which is what openraft counts too). Once a quorum accepted requests sent
//! after an instant, this node was leader at that instant: any later leader
//! needs votes from a quorum, and a member of it accepted this leader's
//! request before voting (a node that has voted refuses the old term).
//!
//! [`AckClock::quorum_since`] answers whether that holds; the handle asks
//! for a heartbeat at once ([`crate::pulse`]), waits for it, and falls back
//! to openraft's own round when the heartbeats do not bring it soon enough.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raftgres_storage::NodeId;
use tokio::sync::Notify;

/// Shared by the transport's client, which records, and the handle, which
/// waits.
#[derive(Clone, Debug, Default)]
pub struct AckClock {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per peer: the term and send time of the latest accepted request.
    acked: Mutex<BTreeMap<NodeId, (u64, Instant)>>,
    changed: Notify,
}

impl AckClock {
    /// `peer` accepted an AppendEntries of `term` sent at `sent`.
    pub fn accepted(&self, peer: NodeId, term: u64, sent: Instant) {
        {
            let mut a = self.inner.acked.lock().unwrap_or_else(|e| e.into_inner());
            let e = a.entry(peer).or_insert((term, sent));
            if (term, sent) > *e {
                *e = (term, sent);
            }
        }
        self.inner.changed.notify_waiters();
    }

    /// A quorum of each voter set (this node, `me`, counts for itself)
    /// accepted requests of `term` sent at `since` or later.
    pub fn quorum_since(&self, term: u64, me: NodeId, configs: &[BTreeSet<NodeId>], since: Instant) -> bool {
        let a = self.inner.acked.lock().unwrap_or_else(|e| e.into_inner());
        let confirmed = |id: &NodeId| *id == me || a.get(id).is_some_and(|(t, at)| *t == term && *at >= since);
        !configs.is_empty()
            && configs.iter().all(|voters| voters.iter().filter(|id| confirmed(id)).count() * 2 > voters.len())
    }

    /// Resolves at the next recorded acceptance.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_quorum_must_accept_requests_sent_after_the_instant_in_the_same_term() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let c = AckClock::default();
        let three = [set(&[1, 2, 3])];
        assert!(!c.quorum_since(5, 1, &three, t0), "only itself");
        c.accepted(2, 5, t0 - ms(10));
        assert!(!c.quorum_since(5, 1, &three, t0), "sent before the instant");
        c.accepted(3, 4, t0 + ms(10));
        assert!(!c.quorum_since(5, 1, &three, t0), "an earlier term");
        c.accepted(2, 5, t0 + ms(5));
        assert!(c.quorum_since(5, 1, &three, t0));
        assert!(!c.quorum_since(6, 1, &three, t0), "a later term of this node's");
        // A late answer to an older request does not move the clock back.
        c.accepted(2, 5, t0 - ms(50));
        assert!(c.quorum_since(5, 1, &three, t0));
        // Joint membership: each voter set needs its quorum.
        let joint = [set(&[1, 2, 3]), set(&[1, 4, 5])];
        assert!(!c.quorum_since(5, 1, &joint, t0));
        c.accepted(4, 5, t0 + ms(1));
        assert!(c.quorum_since(5, 1, &joint, t0));
        assert!(!c.quorum_since(5, 1, &[], t0), "no membership, no quorum");
    }
}
