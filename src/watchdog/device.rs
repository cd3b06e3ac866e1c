//! The kernel watchdog device (`/dev/watchdog`): a timer in the kernel or
//! in hardware that resets the machine unless it is fed. The agent opens it
//! before this node takes the primary role; the fence feeds it while the
//! lease holds and closes it with the magic character `V` when the role
//! ends cleanly. A daemon that dies, hangs or loses its lease leaves it
//! unfed, and the machine resets no later than the lease ends.
//!
//! The timeout is `lease_ttl - safety_margin` in whole seconds, rounded
//! down, and the device is fed only while at least that much of the lease
//! remains: the timer then cannot outlast the lease, whenever the last feed
//! came.
//!
//! A path that is not a character device is a *stand-in* (a regular file or
//! a FIFO): what a device takes as ioctls is written to it as text lines
//! (`timeout <seconds>`, `keepalive`, and `V` for the magic close), so tests
//! can watch the protocol without a kernel device. A stand-in resets
//! nothing; opening one is logged as a warning.
//!
//! Never decide here whether this node may be primary: the agent decides
//! when to open, the fence feeds on the lease.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::libc::c_int;
use raftgres_storage::Tags;
use raftgres_storage::member::TAG_NOFAILOVER;
use serde::{Deserialize, Serialize};

/// The ioctls of `<linux/watchdog.h>`.
mod ioctl {
    nix::ioctl_read!(keepalive, b'W', 5, nix::libc::c_int);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, nix::libc::c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, nix::libc::c_int);
}

/// How the node uses the device (the `[watchdog]` section's `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    /// Not used.
    #[default]
    Off,
    /// Used when it works; a node whose device fails is primary without it,
    /// with a warning.
    Automatic,
    /// A node never takes the primary role without a working device.
    Required,
}

impl WatchdogMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchdogMode::Off => "off",
            WatchdogMode::Automatic => "automatic",
            WatchdogMode::Required => "required",
        }
    }
}

/// The resolved `[watchdog]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchdogConfig {
    pub mode: WatchdogMode,
    pub device: PathBuf,
    pub safety_margin: Duration,
}

/// A held device is fed at most this often.
pub const FEED_EVERY: Duration = Duration::from_millis(200);

/// The device timeout for `lease_ttl`: `lease_ttl - margin` in whole
/// seconds, rounded down so the timer never outlasts the lease; `None` when
/// that is less than the one second a device counts in.
pub fn timeout_for(lease_ttl: Duration, margin: Duration) -> Option<u32> {
    let secs = lease_ttl.saturating_sub(margin).as_secs().min(c_int::MAX as u64);
    (secs >= 1).then_some(secs as u32)
}

/// Why the device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: set the timeout to {asked}s: {source}")]
    SetTimeout { path: PathBuf, asked: u32, source: std::io::Error },
    #[error("{path}: read the timeout back: {source}")]
    GetTimeout { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} does not take a timeout of {asked}s (it keeps {got}s): the machine could reset after the lease ends"
    )]
    TimeoutRefused { path: PathBuf, asked: u32, got: i64 },
    #[error(
        "the lease ({lease_ttl_ms} ms) minus watchdog.safety_margin_ms ({margin_ms} ms) is under the one second a \
         device counts in"
    )]
    LeaseTooShort { lease_ttl_ms: u64, margin_ms: u64 },
}

/// Whether `path` could be opened for writing, checked without opening it
/// (opening a device starts its timer).
pub fn probe(path: &Path) -> Result<(), DeviceError> {
    let open = |source: std::io::Error| DeviceError::Open { path: path.to_path_buf(), source };
    std::fs::metadata(path).map_err(open)?;
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).map_err(|e| open(e.into()))
}

/// An open watchdog device (or stand-in). Dropping it closes it without
/// the magic character: the timer runs on.
pub struct Device {
    file: File,
    path: PathBuf,
    stand_in: bool,
    timeout: Duration,
    /// When it was last fed (taken before the feed: the earliest the timer
    /// can have restarted).
    fed_at: Instant,
    feed_failing: bool,
}

impl Device {
    /// Opens `path` and sets its timeout to `timeout_s`; a device that does
    /// not keep exactly that timeout is closed again with the magic
    /// character and refused.
    pub fn open(path: &Path, timeout_s: u32) -> Result<Device, DeviceError> {
        let open = |source: std::io::Error| DeviceError::Open { path: path.to_path_buf(), source };
        let stand_in = !std::fs::metadata(path).map_err(open)?.file_type().is_char_device();
        let fed_at = Instant::now();
        // A FIFO without a reader must not block the open.
        let file = OpenOptions::new()
            .write(true)
            .append(stand_in)
            .custom_flags(if stand_in { nix::libc::O_NONBLOCK } else { 0 })
            .open(path)
            .map_err(open)?;
        let mut device = Device {
            file,
            path: path.to_path_buf(),
            stand_in,
            timeout: Duration::from_secs(timeout_s.into()),
            fed_at,
            feed_failing: false,
        };
        if let Err(e) = device.set_timeout(timeout_s) {
            if let Err(close) = device.close() {
                tracing::error!("failed to close the refused watchdog device cleanly: {close}");
            }
            return Err(e);
        }
        Ok(device)
    }

    fn set_timeout(&mut self, secs: u32) -> Result<(), DeviceError> {
        let path = || self.path.clone();
        if self.stand_in {
            return self
                .file
                .write_all(format!("timeout {secs}\n").as_bytes())
                .map_err(|source| DeviceError::SetTimeout { path: path(), asked: secs, source });
        }
        let fd = self.file.as_raw_fd();
        let mut asked = secs as c_int;
        // SAFETY: `fd` is an open file and the argument a valid c_int.
        unsafe { ioctl::set_timeout(fd, &mut asked) }.map_err(|e| DeviceError::SetTimeout {
            path: path(),
            asked: secs,
            source: e.into(),
        })?;
        let mut got: c_int = 0;
        // SAFETY: as above.
        unsafe { ioctl::get_timeout(fd, &mut got) }
            .map_err(|e| DeviceError::GetTimeout { path: path(), source: e.into() })?;
        if i64::from(got) != i64::from(secs) {
            return Err(DeviceError::TimeoutRefused { path: path(), asked: secs, got: got.into() });
        }
        Ok(())
    }

    /// Restarts the timer.
    pub fn feed(&mut self) -> std::io::Result<()> {
        let at = Instant::now();
        if self.stand_in {
            self.file.write_all(b"keepalive\n")?;
        } else {
            let mut unused: c_int = 0;
            // SAFETY: `fd` is an open file and the argument a valid c_int.
            unsafe { ioctl::keepalive(self.file.as_raw_fd(), &mut unused) }?;
        }
        self.fed_at = at;
        Ok(())
    }

    /// Closes with the magic character: the timer stops.
    pub fn close(mut self) -> std::io::Result<()> {
        let magic: &[u8] = if self.stand_in { b"V\n" } else { b"V" };
        self.file.write_all(magic)
    }

    /// When the timer fires unless fed again.
    pub fn fires_at(&self) -> Instant {
        self.fed_at + self.timeout
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_stand_in(&self) -> bool {
        self.stand_in
    }
}

/// What the fence does with a held device on one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tend {
    Feed,
    /// The role ended cleanly: close with the magic character.
    Close,
    /// The lease ran out under a primary, or the timer already fired: leave
    /// it unfed and never close it cleanly.
    Abandon,
    Wait,
}

/// Decides one look. `lease_end` is when this node's lease ends; the device
/// is fed only while at least its timeout of the lease remains.
pub fn tend(
    now: Instant,
    fed_at: Instant,
    timeout: Duration,
    may_be_primary: bool,
    writes_allowed: bool,
    lease_end: Option<Instant>,
) -> Tend {
    if now >= fed_at + timeout {
        return Tend::Abandon;
    }
    if !may_be_primary {
        return Tend::Close;
    }
    if !writes_allowed {
        return Tend::Abandon;
    }
    match lease_end {
        Some(end) if now + timeout <= end && now >= fed_at + FEED_EVERY => Tend::Feed,
        _ => Tend::Wait,
    }
}

/// The next moment [`tend`] may decide otherwise by time alone: the
/// earliest feed allowed (at least [`FEED_EVERY`] after the last, while at
/// least `timeout` of the lease would remain), or the moment the timer
/// fires. Any other change comes with a change of the lease or the flags,
/// which wakes the fence anyway.
pub fn next_due(now: Instant, fed_at: Instant, timeout: Duration, lease_end: Option<Instant>) -> Instant {
    let fires = fed_at + timeout;
    let feed = (fed_at + FEED_EVERY).max(now);
    match lease_end {
        Some(end) if feed + timeout <= end => feed.min(fires),
        _ => fires,
    }
}

/// The device this daemon holds, shared by the agent (which opens it), the
/// fence (which feeds and closes it) and the daemon's shutdown.
#[derive(Clone, Default)]
pub struct DeviceSlot(Arc<Mutex<Option<Device>>>);

impl DeviceSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Device>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_held(&self) -> bool {
        self.lock().is_some()
    }

    pub fn put(&self, device: Device) {
        if let Some(old) = self.lock().replace(device) {
            // Not expected: the agent opens only into an empty slot.
            if let Err(e) = old.close() {
                tracing::error!("failed to close the replaced watchdog device: {e}");
            }
        }
    }

    /// Closes the device with the magic character, if one is held.
    pub fn close(&self, why: &str) {
        let Some(device) = self.lock().take() else {
            return;
        };
        let path = device.path().display().to_string();
        match device.close() {
            Ok(()) => tracing::info!(device = %path, "watchdog device closed cleanly: {why}"),
            Err(e) => {
                tracing::error!(device = %path, "failed to close the watchdog device cleanly ({e}); it will reset the machine")
            }
        }
    }

    /// When the held device next needs the fence (see [`next_due`]);
    /// `None` without a device.
    pub fn next_due(&self, now: Instant, lease_end: Option<Instant>) -> Option<Instant> {
        let slot = self.lock();
        let device = slot.as_ref()?;
        Some(next_due(now, device.fed_at, device.timeout, lease_end))
    }

    /// One look of the fence: feeds, closes or abandons the held device.
    pub fn tend(&self, now: Instant, may_be_primary: bool, writes_allowed: bool, lease_end: Option<Instant>) {
        let mut slot = self.lock();
        let Some(device) = slot.as_mut() else {
            return;
        };
        match tend(now, device.fed_at, device.timeout, may_be_primary, writes_allowed, lease_end) {
            Tend::Wait => {}
            Tend::Feed => match device.feed() {
                Ok(()) => device.feed_failing = false,
                Err(e) if !device.feed_failing => {
                    device.feed_failing = true;
                    tracing::error!(device = %device.path.display(), "failed to feed the watchdog device: {e}");
                }
                Err(_) => {}
            },
            Tend::Close => {
                drop(slot);
                self.close("this node is no longer primary");
            }
            Tend::Abandon => {
                let device = slot.take().expect("a device is held");
                tracing::error!(
                    device = %device.path.display(),
                    stand_in = device.stand_in,
                    "the lease ran out under a primary: the watchdog device is left unfed and resets the machine \
                     (a stand-in resets nothing)"
                );
                drop(device);
            }
        }
    }
}

/// The tag published while a required device cannot be used.
pub const TAG_WATCHDOG: &str = "watchdog";

/// The tags this member publishes: the configured ones, plus
/// `nofailover = "true"` and `watchdog = "unavailable"` while its
/// `required` device cannot be used, so no controller elects it.
pub fn published_tags(configured: &Tags, refused: bool) -> Tags {
    let mut tags = configured.clone();
    if refused {
        tags.insert(TAG_NOFAILOVER.to_string(), "true".to_string());
        tags.insert(TAG_WATCHDOG.to_string(), "unavailable".to_string());
    }
    tags
}

/// Why this node refuses the primary role (`required` mode, device
/// unusable); shared by the agent, which sets it, and the reloader, which
/// publishes the tags.
#[derive(Clone, Debug, Default)]
pub struct Refusal(Arc<Mutex<Option<String>>>);

impl Refusal {
    pub fn set(&self, why: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_set(&self) -> bool {
        self.reason().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_timeout_rounds_down_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(timeout_for(MS(2000), MS(500)), Some(1));
        assert_eq!(timeout_for(MS(2000), MS(0)), Some(2));
        assert_eq!(timeout_for(MS(30_000), MS(5_000)), Some(25));
        assert_eq!(timeout_for(MS(10_999), MS(0)), Some(10), "rounded down, never up");
        assert_eq!(timeout_for(MS(1900), MS(1000)), None);
        assert_eq!(timeout_for(MS(500), MS(1000)), None);
    }

    #[test]
    fn the_device_is_fed_only_while_its_timeout_fits_in_the_lease() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        let lease_end = Some(t0 + MS(2000));
        // Fed at t0: too soon to feed again.
        assert_eq!(tend(t0 + MS(100), t0, timeout, true, true, lease_end), Tend::Wait);
        assert_eq!(tend(t0 + MS(300), t0, timeout, true, true, lease_end), Tend::Feed);
        // Exactly a timeout of the lease left: the last feed allowed.
        assert_eq!(tend(t0 + MS(1000), t0 + MS(700), timeout, true, true, lease_end), Tend::Feed);
        // Less left: a feed would let the timer outlast the lease.
        assert_eq!(tend(t0 + MS(1001), t0 + MS(700), timeout, true, true, lease_end), Tend::Wait);
        assert_eq!(tend(t0 + MS(300), t0, timeout, true, true, None), Tend::Wait);
    }

    #[test]
    fn the_fence_is_woken_when_the_next_feed_or_the_timer_is_due() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        let lease_end = Some(t0 + MS(2000));
        // The next feed, which tend then grants.
        let due = next_due(t0 + MS(100), t0, timeout, lease_end);
        assert_eq!(due, t0 + FEED_EVERY);
        assert_eq!(tend(due, t0, timeout, true, true, lease_end), Tend::Feed);
        // Overdue: now.
        assert_eq!(next_due(t0 + MS(300), t0, timeout, lease_end), t0 + MS(300));
        // No feed fits in the lease any more: when the timer fires, which
        // tend then abandons.
        let due = next_due(t0 + MS(1100), t0 + MS(900), timeout, lease_end);
        assert_eq!(due, t0 + MS(1900));
        assert_eq!(tend(due, t0 + MS(900), timeout, true, true, lease_end), Tend::Abandon);
        assert_eq!(next_due(t0, t0, timeout, None), t0 + timeout);
    }

    #[test]
    fn a_clean_end_closes_and_a_lost_lease_or_a_fired_timer_abandons() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        let lease_end = Some(t0 + MS(2000));
        assert_eq!(tend(t0 + MS(300), t0, timeout, false, true, lease_end), Tend::Close);
        assert_eq!(tend(t0 + MS(300), t0, timeout, false, false, lease_end), Tend::Close);
        assert_eq!(tend(t0 + MS(300), t0, timeout, true, false, lease_end), Tend::Abandon);
        // Once the timer may have fired, never a clean close.
        assert_eq!(tend(t0 + MS(1000), t0, timeout, false, true, lease_end), Tend::Abandon);
    }

    #[test]
    fn a_stand_in_records_the_protocol_and_closes_with_v() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("watchdog");
        std::fs::write(&path, "").expect("create");
        let mut d = Device::open(&path, 3).expect("open");
        assert!(d.is_stand_in());
        assert_eq!(d.timeout(), Duration::from_secs(3));
        d.feed().expect("feed");
        d.close().expect("close");
        let abandoned = Device::open(&path, 1).expect("open again");
        drop(abandoned);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "timeout 3\nkeepalive\nV\ntimeout 1\n");
    }

    #[test]
    fn a_missing_path_fails_the_probe_and_the_open() {
        let path = Path::new("/nonexistent/raftgres/watchdog");
        assert!(matches!(probe(path), Err(DeviceError::Open { .. })));
        let e = Device::open(path, 1).err().expect("refused").to_string();
        assert!(e.contains("/nonexistent/raftgres/watchdog"), "{e}");
    }

    #[test]
    fn a_refusing_node_publishes_nofailover() {
        let configured: Tags = [("rack".to_string(), "a".to_string())].into();
        assert_eq!(published_tags(&configured, false), configured);
        let published = published_tags(&configured, true);
        assert_eq!(published.get("nofailover").map(String::as_str), Some("true"));
        assert_eq!(published.get("watchdog").map(String::as_str), Some("unavailable"));
        assert_eq!(published.get("rack").map(String::as_str), Some("a"));
    }
}
