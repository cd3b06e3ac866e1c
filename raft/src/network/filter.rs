//! A fault switch: the set of peers this node neither sends to nor accepts
//! from. Tests use it to partition nodes running in one process; in
//! production it stays empty. (The chaos harness cuts real links with
//! nftables instead.)

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use raftgres_storage::NodeId;

#[derive(Clone, Debug, Default)]
pub struct NetworkFilter {
    blocked: Arc<RwLock<BTreeSet<NodeId>>>,
}

impl NetworkFilter {
    /// Drop all traffic to and from `peer`.
    pub fn block(&self, peer: NodeId) {
        self.blocked.write().expect("filter lock poisoned").insert(peer);
    }

    pub fn unblock(&self, peer: NodeId) {
        self.blocked.write().expect("filter lock poisoned").remove(&peer);
    }

    /// Restore all links.
    pub fn heal(&self) {
        self.blocked.write().expect("filter lock poisoned").clear();
    }

    pub fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked.read().expect("filter lock poisoned").contains(&peer)
    }
}
