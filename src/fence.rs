//! The fence: stops a primary PostgreSQL the moment this node may no longer
//! accept writes — its lease is about to run out, or the replicated state
//! no longer names it primary. Runs on its own task, so that no PostgreSQL
//! operation or Raft delay can hold it up.
//!
//! It wakes when something it acts on changes (the lease, the replicated
//! state, the flag saying PostgreSQL may be a primary) and at the next
//! moment time alone changes the answer: when the lease stops allowing
//! writes, when the watchdog device is due to be fed. While it is stopping
//! a server it checks every [`POLL`]; otherwise at least every
//! [`IDLE_CHECK`].
//!
//! The stop is an immediate shutdown (SIGQUIT to the postmaster): clients
//! are cut off at once; the data directory recovers at the next start.
//!
//! The fence also tends the kernel watchdog device the agent opened
//! ([`DeviceSlot::tend`]): fed while the lease holds, closed cleanly when
//! PostgreSQL is no longer a primary, left unfed once the lease ran out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_raft::RaftHandle;
use raftgres_storage::ClusterState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
use crate::postgres::Runner;
use crate::watchdog::Watchdog;
use crate::watchdog::device::DeviceSlot;

/// How often the fence repeats a stop while a server that may not write
/// still runs.
const POLL: Duration = Duration::from_millis(20);

/// The longest the fence waits without a change; every moment at which
/// time alone changes what it does is a wake-up of its own, so this is a
/// backstop only.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// True while this node may serve writes: the replicated state names it
/// primary and its lease for that epoch has more than the demote margin
/// left.
pub fn writes_allowed(handle: &RaftHandle, lease: &Option<Lease>, now: Instant) -> bool {
    write_deadline(&handle.cluster_state(), handle.id(), lease).is_some_and(|end| now < end)
}

/// Until when `me` may serve writes under `lease`, if the state names it
/// primary in the lease's epoch: `demote_margin_ms` before the lease ends.
pub fn write_deadline(state: &ClusterState, me: raftgres_storage::NodeId, lease: &Option<Lease>) -> Option<Instant> {
    let margin = Duration::from_millis(state.config.demote_margin_ms);
    let epoch = state.primary.as_ref().filter(|p| p.node == me)?.epoch;
    lease.filter(|l| l.epoch == epoch).and_then(|l| l.expires_at.checked_sub(margin))
}

/// When the fence looks next, given what it found at `now`: soon and
/// again while a server that may be primary is not allowed to write,
/// else at the next moment time alone changes the answer (the write
/// deadline, the device's next feed or expiry), at the latest after
/// [`IDLE_CHECK`].
fn next_check(
    now: Instant,
    allowed: bool,
    may_be_primary: bool,
    write_deadline: Option<Instant>,
    device_due: Option<Instant>,
) -> Instant {
    if !allowed && may_be_primary {
        return now + POLL;
    }
    let deadline = write_deadline.filter(|_| allowed);
    [deadline, device_due].into_iter().flatten().fold(now + IDLE_CHECK, Instant::min).max(now)
}

/// Set while the local PostgreSQL may be accepting writes: the agent sets
/// it before it starts, creates or promotes a primary and whenever it sees
/// one, and clears it only when it sees a standby or no server at all. A
/// failed observation leaves it as it was. The fence is woken by every
/// change.
#[derive(Clone, Debug)]
pub struct PrimaryFlag(Arc<watch::Sender<bool>>);

impl Default for PrimaryFlag {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl PrimaryFlag {
    pub fn set(&self, may_be_primary: bool) {
        self.0.send_if_modified(|v| std::mem::replace(v, may_be_primary) != may_be_primary);
    }

    pub fn get(&self) -> bool {
        *self.0.borrow()
    }

    /// Sees every change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
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
    mut lease: watch::Receiver<Option<Lease>>,
    may_be_primary: PrimaryFlag,
    backstops: Backstops,
    mut predecessor: Option<i32>,
    cancel: CancellationToken,
) {
    let Backstops { process: mut watchdog, device } = backstops;
    let mut state_rx = handle.subscribe();
    let mut flag_rx = may_be_primary.subscribe();
    let mut fenced = false;
    loop {
        // Marked seen before they are read: a change from here on wakes
        // the wait below.
        state_rx.borrow_and_update();
        lease.borrow_and_update();
        flag_rx.borrow_and_update();
        let now = Instant::now();
        let state = handle.cluster_state();
        let current = *lease.borrow();
        let deadline = write_deadline(&state, handle.id(), &current);
        let allowed = deadline.is_some_and(|end| now < end);
        let primary_may_run = may_be_primary.get();
        let lease_end = current.map(|l| l.expires_at);
        device.tend(now, primary_may_run, allowed, lease_end);
        if !primary_may_run {
            watchdog.disarm();
        } else if allowed && let Some(end) = deadline {
            watchdog.arm(end);
            // A handed-off daemon's watchdog guarded PostgreSQL until now.
            if let Some(pid) = predecessor.take() {
                let told = crate::watchdog::stand_down(pid, runner.data_dir());
                tracing::info!(pid, told, "this daemon's watchdog is armed; the predecessor's stands down");
            }
        }
        if allowed || !primary_may_run {
            fenced = false;
        } else if runner.quit_now() && !fenced {
            fenced = true;
            tracing::warn!(
                lease = ?current.map(|l| (l.epoch, l.expires_at.saturating_duration_since(Instant::now()))),
                "fenced: no valid lease for writes; PostgreSQL stopped immediately"
            );
        }
        let next = next_check(now, allowed, primary_may_run, deadline, device.next_due(now, lease_end));
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
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
            Ok(()) = state_rx.changed() => {}
            Ok(()) = lease.changed() => {}
            Ok(()) = flag_rx.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_again_when_time_alone_changes_the_answer() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // A replica: nothing due but the backstop.
        assert_eq!(next_check(now, false, false, None, None), now + IDLE_CHECK);
        // A primary under a lease: at the write deadline, or the device's
        // next feed if sooner.
        assert_eq!(next_check(now, true, true, Some(now + ms(1500)), None), now + IDLE_CHECK);
        assert_eq!(next_check(now, true, true, Some(now + ms(700)), None), now + ms(700));
        assert_eq!(next_check(now, true, true, Some(now + ms(700)), Some(now + ms(200))), now + ms(200));
        // Stopping a server that may not write: again and again, soon.
        assert_eq!(next_check(now, false, true, Some(now - ms(5)), Some(now + ms(900))), now + POLL);
        // A deadline of a lease that no longer allows writes is no reason
        // to wake, and nothing is scheduled in the past.
        assert_eq!(next_check(now, false, false, Some(now + ms(10)), None), now + IDLE_CHECK);
        assert_eq!(next_check(now, true, true, Some(now + ms(10)), Some(now - ms(10))), now);
    }

    #[test]
    fn the_write_deadline_is_the_demote_margin_before_the_lease_ends() {
        let state = crate::lease::tests::one_primary();
        let now = Instant::now();
        let expires_at = now + Duration::from_millis(2000);
        let margin = Duration::from_millis(state.config.demote_margin_ms);
        let l = Lease { epoch: 1, expires_at };
        let lease = Some(l);
        assert_eq!(write_deadline(&state, 1, &lease), Some(expires_at - margin));
        assert_eq!(write_deadline(&state, 2, &lease), None, "not the primary");
        assert_eq!(write_deadline(&state, 1, &Some(Lease { epoch: 2, expires_at })), None, "another epoch");
        assert_eq!(write_deadline(&state, 1, &None), None);
        // The same rule as the lease's own.
        assert!(l.allows_writes(1, expires_at - margin - Duration::from_millis(1), margin));
        assert!(!l.allows_writes(1, expires_at - margin, margin));
    }

    #[test]
    fn the_flag_tells_its_changes_only() {
        let flag = PrimaryFlag::default();
        let mut rx = flag.subscribe();
        flag.set(false);
        assert!(!rx.has_changed().expect("open"), "no change");
        flag.set(true);
        assert!(rx.has_changed().expect("open"));
        assert!(*rx.borrow_and_update());
        assert!(flag.get());
    }
}
