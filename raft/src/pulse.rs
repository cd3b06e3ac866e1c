//! The leader's heartbeats, sent when they are needed.
//!
//! openraft sends every follower an AppendEntries heartbeat at each tick
//! (1.5 Raft heartbeat intervals: 150 ms by default). A follower needs one
//! only often enough not to start an election: it waits the leader lease
//! (`election_timeout_max`) plus an election timeout after the last one,
//! 700 ms at least by default. The primary lease needs one after each
//! renewal's notice, which confirms the leadership for it
//! ([`crate::confirm`]). So openraft's own heartbeats are off and the
//! leader sends them here: at once when a renewal asks
//! ([`Pulse::request`]), when it has applied a new entry (followers learn
//! that an entry is committed only from the next AppendEntries, and a new
//! primary must not wait for it), and otherwise after an idle period
//! (three Raft heartbeat intervals, two within a follower's patience)
//! without one. While a primary renews four times a second, its renewals are the
//! heartbeats; each is confirmed a round trip after it asks instead of at
//! the next tick.

use std::sync::Arc;
use std::time::Duration;

use openraft::{Raft, ServerState};
use raftgres_storage::{AppliedState, TypeConfig};
use tokio::sync::Notify;

/// Asks the leader's heartbeat loop for a heartbeat.
#[derive(Clone, Debug, Default)]
pub struct Pulse {
    wanted: Arc<Notify>,
}

impl Pulse {
    /// A heartbeat to every follower as soon as possible (several requests
    /// before it goes are served by one).
    pub fn request(&self) {
        self.wanted.notify_one();
    }
}

/// The heartbeat loop of one node; ends when the Raft core stops. On a
/// node that does not lead it only waits for leadership.
pub(crate) async fn run(
    raft: Raft<TypeConfig>,
    pulse: Pulse,
    mut applied: tokio::sync::watch::Receiver<AppliedState>,
    idle: Duration,
) {
    let mut server = raft.server_metrics();
    loop {
        let leads = server.borrow_and_update().state == ServerState::Leader;
        if !leads {
            if server.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = pulse.wanted.notified() => {}
            Ok(()) = applied.changed() => {}
            r = server.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
        }
        if raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}
