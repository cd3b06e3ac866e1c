//! Daemon hand-off: restarting the daemon (an upgrade of raftgres) without
//! stopping PostgreSQL and without a failover.
//!
//! A daemon told to hand off (SIGUSR2) stops its loops, leaves PostgreSQL
//! running and does not release the primary role. If it holds a lease, it
//! writes the lease (epoch and expiry on CLOCK_MONOTONIC) and its
//! watchdog's pid to `<data_dir>/handoff`, durably, and exits; its watchdog
//! keeps enforcing the lease's end on its own. The next daemon of this node
//! takes the file (and removes it): if it was written during this boot and
//! the lease has not run out, that lease is its own — the leader granted it
//! to this node for that epoch — so its fence and its own watchdog guard
//! PostgreSQL from the first moment, and its heartbeats renew it. Once its
//! watchdog is armed, the predecessor's is told to stand down (SIGUSR1).
//! Without a valid file, the usual rule applies: no lease, no primary.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftgres_storage::ondisk::{fsync_dir, read_control_file, write_control_file};

use crate::lease::Lease;
use crate::watchdog::monotonic_ns;

const MAGIC: &[u8; 8] = b"RGHANDOF";
const FILE: &str = "handoff";

/// What a daemon leaves to its successor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// `/proc/sys/kernel/random/boot_id`: CLOCK_MONOTONIC is per boot.
    pub boot_id: String,
    pub epoch: u64,
    /// The lease's end on CLOCK_MONOTONIC.
    pub expires_ns: u64,
    /// The watchdog left guarding PostgreSQL.
    pub watchdog_pid: i32,
}

impl Handoff {
    fn encode(&self) -> Vec<u8> {
        format!("{} {} {} {}", self.boot_id, self.epoch, self.expires_ns, self.watchdog_pid).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Handoff> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut w = text.split_whitespace();
        let h = Handoff {
            boot_id: w.next()?.to_string(),
            epoch: w.next()?.parse().ok()?,
            expires_ns: w.next()?.parse().ok()?,
            watchdog_pid: w.next()?.parse().ok()?,
        };
        w.next().is_none().then_some(h)
    }

    /// The lease as an `Instant`, if it has not run out.
    pub fn lease(&self) -> Option<Lease> {
        let left = self.expires_ns.checked_sub(monotonic_ns())?;
        Some(Lease { epoch: self.epoch, expires_at: Instant::now() + Duration::from_nanos(left) })
    }
}

/// This boot's id.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Writes the hand-off, durably.
pub fn write(state_dir: &Path, h: &Handoff) -> io::Result<()> {
    write_control_file(&path(state_dir), MAGIC, &h.encode())
}

/// Takes the predecessor's hand-off: read and removed. `None` when there is
/// none, or it is damaged, from another boot, or its lease ran out; each
/// but the first is logged.
pub fn take(state_dir: &Path) -> Option<Handoff> {
    let p = path(state_dir);
    let read = read_control_file(&p, MAGIC);
    if !matches!(read, Ok(None)) {
        match std::fs::remove_file(&p) {
            Ok(()) => {
                let _ = fsync_dir(state_dir);
            }
            Err(e) => tracing::warn!("failed to remove {}: {e}", p.display()),
        }
    }
    let h = match read {
        Ok(None) => return None,
        Ok(Some(bytes)) => Handoff::decode(&bytes),
        Err(e) => {
            tracing::warn!("ignoring a damaged hand-off file: {e}");
            return None;
        }
    };
    let Some(h) = h else {
        tracing::warn!("ignoring an unreadable hand-off file");
        return None;
    };
    if boot_id().as_deref() != Some(h.boot_id.as_str()) {
        tracing::warn!("ignoring a hand-off from another boot");
        return None;
    }
    if h.lease().is_none() {
        tracing::warn!(epoch = h.epoch, "the handed-off lease ran out before this daemon started");
        return None;
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_off_is_taken_once_and_only_while_its_lease_runs() {
        let dir = std::env::temp_dir().join(format!("raftgres-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let boot = boot_id().expect("Linux has a boot id");
        let h =
            Handoff { boot_id: boot.clone(), epoch: 4, expires_ns: monotonic_ns() + 5_000_000_000, watchdog_pid: 7 };
        write(&dir, &h).unwrap();
        let taken = take(&dir).expect("a live hand-off");
        assert_eq!(taken, h);
        assert!(taken.lease().is_some_and(|l| l.epoch == 4 && l.expires_at > Instant::now() + Duration::from_secs(4)));
        assert_eq!(take(&dir), None, "taken once");
        write(&dir, &Handoff { expires_ns: monotonic_ns() - 1, ..h.clone() }).unwrap();
        assert_eq!(take(&dir), None, "a lease that ran out");
        write(&dir, &Handoff { boot_id: "another-boot".into(), ..h.clone() }).unwrap();
        assert_eq!(take(&dir), None, "another boot");
        assert!(!path(&dir).exists(), "an unusable hand-off is removed too");
        std::fs::write(path(&dir), b"garbage").unwrap();
        assert_eq!(take(&dir), None, "damaged");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
