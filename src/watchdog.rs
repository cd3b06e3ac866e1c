//! The watchdog: a tiny separate process that stops a primary PostgreSQL
//! when the daemon stops renewing its permission — because the daemon was
//! killed, paused or hung. It is the backstop of the fence (DESIGN
//! invariant 4).
//!
//! The daemon feeds it over a pipe, one line per change:
//! `arm <deadline>` (CLOCK_MONOTONIC nanoseconds, shared by all processes)
//! while PostgreSQL may be primary, `disarm` when it cannot be. When an armed
//! deadline passes, the watchdog sends SIGQUIT (immediate shutdown) to the
//! postmaster named in `postmaster.pid`. When the pipe closes (the daemon
//! died), it keeps enforcing the last deadline and then exits. It ignores
//! SIGINT and SIGTERM and runs in its own process group, so it outlives the
//! daemon on purpose.
//!
//! The same loop ([`guard`]) runs the virtual IP's guard, which removes
//! the address instead (see [`crate::vip`]).
//!
//! `/dev/watchdog` (a kernel or hardware timer that resets the machine) is
//! held by the daemon itself, not by this process: see [`device`].

pub mod device;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// `deadline` (a std `Instant`) on CLOCK_MONOTONIC.
pub fn to_monotonic_ns(deadline: Instant) -> u64 {
    let now = monotonic_ns();
    let ahead = deadline.saturating_duration_since(Instant::now());
    now + ahead.as_nanos() as u64
}

/// One line of the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    Arm { deadline_ns: u64 },
    Disarm,
}

impl Feed {
    pub fn parse(line: &str) -> Option<Feed> {
        let mut words = line.split_whitespace();
        match (words.next()?, words.next()) {
            ("arm", Some(n)) => Some(Feed::Arm { deadline_ns: n.parse().ok()? }),
            ("disarm", None) => Some(Feed::Disarm),
            _ => None,
        }
    }

    fn line(self) -> String {
        match self {
            Feed::Arm { deadline_ns } => format!("arm {deadline_ns}\n"),
            Feed::Disarm => "disarm\n".into(),
        }
    }
}

/// Tells the watchdog `pid`, left by a daemon that handed off, that this
/// daemon's watchdog now guards `pgdata`'s postmaster; only a raftgres
/// watchdog for that directory is signalled.
pub fn stand_down(pid: i32, pgdata: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.contains(&b"watchdog".as_slice())
        && args.contains(&pgdata.as_os_str().as_encoded_bytes())
        && pid != std::process::id() as i32;
    ours && signal::kill(Pid::from_raw(pid), Signal::SIGUSR1).is_ok()
}

fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    crate::postgres::pidfile::live_postmaster(pgdata)
}

/// What wakes the watchdog process.
enum Event {
    /// A line from the daemon.
    Feed(Feed),
    /// The pipe closed: the daemon is gone.
    DaemonGone,
    /// SIGUSR1: a successor daemon's watchdog guards the postmaster.
    StandDown,
}

/// The watchdog process's main loop (`raftgres watchdog --pgdata DIR`):
/// [`guard`] with SIGQUIT to the postmaster as its action.
pub fn run(pgdata: PathBuf) {
    guard("watchdog", || {
        if let Some(pid) = postmaster_pid(&pgdata) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGQUIT);
            eprintln!("raftgres watchdog: lease deadline passed without renewal; sent SIGQUIT to postmaster {pid}");
        }
        true
    });
}

/// How soon a guard runs an action again that failed.
const GUARD_RETRY: Duration = Duration::from_millis(200);

/// The loop of a guard process (the watchdog, the virtual IP's guard).
/// Runs `on_deadline` when an armed deadline passes without a newer one;
/// an action that returns false (it failed) runs again after
/// [`GUARD_RETRY`]. Returns when the daemon is gone and nothing is armed,
/// or when told to stand down. It sleeps until a feed line, a signal or
/// the armed deadline, whichever comes first: a disarmed guard does not
/// wake at all.
pub fn guard(name: &str, mut on_deadline: impl FnMut() -> bool) {
    // SAFETY: installing SIG_IGN is async-signal-safe and done before any
    // other thread exists.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal::signal(Signal::SIGTERM, SigHandler::SigIgn);
    }
    // SIGUSR1 is blocked before any other thread exists, so every thread
    // inherits the mask and the signal waits for the thread below, which
    // turns it into an event.
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    if let Err(e) = usr1.thread_block() {
        eprintln!("raftgres {name}: failed to block SIGUSR1: {e}");
    }
    let (tx, rx) = mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if usr1.wait().is_ok() {
                let _ = tx.send(Event::StandDown);
            }
        });
    }
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => {
                    if let Some(f) = Feed::parse(&l) {
                        let _ = tx.send(Event::Feed(f));
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::DaemonGone);
    });
    let mut armed: Option<u64> = None;
    let mut daemon_gone = false;
    loop {
        if daemon_gone && armed.is_none() {
            return;
        }
        let event = match armed {
            None => Some(rx.recv().unwrap_or(Event::DaemonGone)),
            Some(deadline) => {
                let left = Duration::from_nanos(deadline.saturating_sub(monotonic_ns()));
                match rx.recv_timeout(left) {
                    Ok(e) => Some(e),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Some(Event::DaemonGone),
                }
            }
        };
        match event {
            Some(Event::Feed(Feed::Arm { deadline_ns })) => armed = Some(deadline_ns),
            Some(Event::Feed(Feed::Disarm)) => armed = None,
            Some(Event::DaemonGone) => daemon_gone = true,
            Some(Event::StandDown) => {
                eprintln!("raftgres {name}: a successor guards the postmaster; exiting");
                return;
            }
            None => {}
        }
        if let Some(deadline) = armed
            && monotonic_ns() >= deadline
        {
            armed = if on_deadline() { None } else { Some(monotonic_ns() + GUARD_RETRY.as_nanos() as u64) };
        }
    }
}

/// The daemon's end of the watchdog.
pub struct Watchdog {
    child: Child,
    stdin: ChildStdin,
    last: Option<Feed>,
    /// The deadline last armed, as the daemon knows it: converted to
    /// CLOCK_MONOTONIC once, since two conversions of one deadline differ
    /// by the nanoseconds between their clock reads.
    armed: Option<Instant>,
}

impl Watchdog {
    /// Starts `exe watchdog --pgdata <pgdata>` in its own process group.
    pub fn spawn(exe: &Path, pgdata: &Path) -> std::io::Result<Watchdog> {
        Self::spawn_guard(exe, &["watchdog".as_ref(), "--pgdata".as_ref(), pgdata.as_os_str()])
    }

    /// Starts the guard process `exe <args>` (one that runs [`guard`]) in
    /// its own process group.
    pub fn spawn_guard(exe: &Path, args: &[&std::ffi::OsStr]) -> std::io::Result<Watchdog> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(exe).args(args).stdin(Stdio::piped()).process_group(0).spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("watchdog stdin not piped"))?;
        Ok(Watchdog { child, stdin, last: None, armed: None })
    }

    /// Writes `feed` unless it was the last line written; false when the
    /// write failed.
    fn send(&mut self, feed: Feed) -> bool {
        if self.last == Some(feed) {
            return true;
        }
        self.armed = None;
        match self.stdin.write_all(feed.line().as_bytes()).and_then(|()| self.stdin.flush()) {
            Ok(()) => {
                self.last = Some(feed);
                true
            }
            Err(e) => {
                tracing::error!("failed to feed the watchdog: {e}");
                false
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The deadline last armed, while armed.
    pub fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// PostgreSQL may run as primary until `deadline`.
    pub fn arm(&mut self, deadline: Instant) {
        if self.armed == Some(deadline) {
            return;
        }
        if self.send(Feed::Arm { deadline_ns: to_monotonic_ns(deadline) }) {
            self.armed = Some(deadline);
        }
    }

    /// PostgreSQL is not a primary; nothing to enforce.
    pub fn disarm(&mut self) {
        self.send(Feed::Disarm);
    }

    /// Disarms and lets the process exit (on pipe close).
    pub fn stop(mut self) {
        self.disarm();
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_lines_round_trip() {
        for f in [Feed::Arm { deadline_ns: 123 }, Feed::Disarm] {
            assert_eq!(Feed::parse(f.line().trim()), Some(f));
        }
        assert_eq!(Feed::parse("arm"), None);
        assert_eq!(Feed::parse("arm x"), None);
        assert_eq!(Feed::parse("disarm now"), None);
        assert_eq!(Feed::parse("explode"), None);
    }

    #[test]
    fn deadlines_map_onto_the_monotonic_clock() {
        let now = monotonic_ns();
        let d = to_monotonic_ns(Instant::now() + Duration::from_secs(2));
        assert!(d >= now + 1_900_000_000 && d <= now + 2_100_000_000, "{d} vs {now}");
    }
}
