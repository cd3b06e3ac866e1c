//! The fence: stops a primary PostgreSQL the moment this node may no longer
//! accept writes — its lease is about to run out, or the replicated state
//! no longer names it primary. Runs on its own task, polling often, so that
//! no PostgreSQL operation or Raft delay can hold it up.
//!
//! The stop is an immediate shutdown (SIGQUIT to the postmaster): clients
//! are cut off at once; the data directory recovers at the next start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_raft::RaftHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
use crate::postgres::{Observation, Runner};

const POLL: Duration = Duration::from_millis(20);

/// True while this node may serve writes: the replicated state names it
/// primary and its lease for that epoch has more than the demote margin
/// left.
pub fn writes_allowed(handle: &RaftHandle, lease: &Option<Lease>, now: Instant) -> bool {
    let state = handle.local_state().state;
    let margin = Duration::from_millis(state.config.demote_margin_ms);
    state
        .primary
        .as_ref()
        .filter(|p| p.node == handle.id())
        .is_some_and(|p| lease.is_some_and(|l| l.allows_writes(p.epoch, now, margin)))
}

pub async fn run(
    handle: RaftHandle,
    runner: Arc<Runner>,
    lease: watch::Receiver<Option<Lease>>,
    observation: watch::Receiver<Observation>,
    cancel: CancellationToken,
) {
    let mut fenced = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let allowed = writes_allowed(&handle, &lease.borrow(), Instant::now());
        // The last observation may be up to one agent turn old; a server
        // that was last seen in recovery is not accepting writes.
        let primary_seen = observation.borrow().in_recovery == Some(false);
        if allowed || !primary_seen {
            fenced = false;
            continue;
        }
        if runner.quit_now() && !fenced {
            fenced = true;
            let l = *lease.borrow();
            tracing::warn!(
                lease = ?l.map(|l| (l.epoch, l.expires_at.saturating_duration_since(Instant::now()))),
                "fenced: no valid lease for writes; PostgreSQL stopped immediately"
            );
        }
    }
}
