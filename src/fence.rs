//! The fence: stops a primary PostgreSQL the moment this node may no longer
//! accept writes — its lease is about to run out, or the replicated state
//! no longer names it primary. Runs on its own task, polling often, so that
//! no PostgreSQL operation or Raft delay can hold it up.
//!
//! The stop is an immediate shutdown (SIGQUIT to the postmaster): clients
//! are cut off at once; the data directory recovers at the next start.
//!
//! The fence also tends the kernel watchdog device the agent opened
//! ([`DeviceSlot::tend`]): fed while the lease holds, closed cleanly when
//! PostgreSQL is no longer a primary, left unfed once the lease ran out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raftgres_raft::RaftHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
use crate::postgres::Runner;
use crate::watchdog::Watchdog;
use crate::watchdog::device::DeviceSlot;

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

/// Set while the local PostgreSQL may be accepting writes: the agent sets
/// it before it starts, creates or promotes a primary and whenever it sees
/// one, and clears it only when it sees a standby or no server at all. A
/// failed observation leaves it as it was.
#[derive(Clone, Debug, Default)]
pub struct PrimaryFlag(Arc<AtomicBool>);

impl PrimaryFlag {
    pub fn set(&self, may_be_primary: bool) {
        self.0.store(may_be_primary, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What stops a primary when this daemon cannot: the watchdog process
/// and the kernel watchdog device.
pub struct Backstops {
    pub process: Watchdog,
    pub device: DeviceSlot,
}

pub async fn run(
    handle: RaftHandle,
    runner: Arc<Runner>,
    lease: watch::Receiver<Option<Lease>>,
    may_be_primary: PrimaryFlag,
    backstops: Backstops,
    mut predecessor: Option<i32>,
    cancel: CancellationToken,
) {
    let Backstops { process: mut watchdog, device } = backstops;
    let mut fenced = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                if runner.postmaster_pid().is_none() {
                    watchdog.stop();
                    device.close("the daemon stops and PostgreSQL is down");
                }
                // Otherwise dropping the pipe leaves the watchdog enforcing
                // the last deadline on its own, and the device stays as it
                // is: the daemon closes it for a hand-off, or it goes unfed.
                return;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = Instant::now();
        let allowed = writes_allowed(&handle, &lease.borrow(), now);
        let lease_end = lease.borrow().map(|l| l.expires_at);
        device.tend(now, may_be_primary.get(), allowed, lease_end);
        if !may_be_primary.get() {
            watchdog.disarm();
        } else if allowed && let Some(l) = *lease.borrow() {
            let margin = Duration::from_millis(handle.local_state().state.config.demote_margin_ms);
            watchdog.arm(l.expires_at - margin);
            // A handed-off daemon's watchdog guarded PostgreSQL until now.
            if let Some(pid) = predecessor.take() {
                let told = crate::watchdog::stand_down(pid, runner.data_dir());
                tracing::info!(pid, told, "this daemon's watchdog is armed; the predecessor's stands down");
            }
        }
        if allowed || !may_be_primary.get() {
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
