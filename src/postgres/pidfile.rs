//! `postmaster.pid`: which process, if any, is this data directory's live
//! postmaster. The one reading of it for the daemon, the watchdog process
//! and the playground.
//!
//! A pid alone is not proof: after a crash or a reboot the file stays
//! behind, and its pid may belong to any process by now. A postmaster works
//! in its data directory (it changes into it at start), so a process whose
//! working directory can be read and is another directory is not it. The
//! check fails closed: a process that cannot be inspected (no permission,
//! a hardened `/proc`) counts as the postmaster, since calling a live
//! postmaster dead would let the fence, the watchdog and a release pass it
//! by.

use std::path::Path;

use nix::sys::signal;
use nix::unistd::Pid;

/// The pid of `pgdata`'s live postmaster.
pub fn live_postmaster(pgdata: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    // A standalone backend (`postgres --single`) writes its pid negated.
    let pid: i32 = text.lines().next()?.trim().parse::<i32>().ok()?.checked_abs()?;
    if pid == 0 {
        return None;
    }
    // Any other answer (EPERM: another user's) means it is alive.
    if signal::kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH) {
        return None;
    }
    (works_in(pid, pgdata) != Some(false)).then_some(pid)
}

/// Whether `pid`'s working directory is `dir`; `None` when it cannot be
/// told.
fn works_in(pid: i32, dir: &Path) -> Option<bool> {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let dir = std::fs::canonicalize(dir).ok()?;
    Some(cwd == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid_file(dir: &Path, pid: u32) {
        std::fs::write(dir.join("postmaster.pid"), format!("{pid}\n{}\n", dir.display())).expect("write");
    }

    #[test]
    fn a_reused_pid_is_not_the_postmaster() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert_eq!(live_postmaster(dir.path()), None, "no file");
        // A live process that works elsewhere: the pid was reused.
        pid_file(dir.path(), std::process::id());
        assert_eq!(live_postmaster(dir.path()), None);
        // A process working in the data directory, as a postmaster does.
        let mut child =
            std::process::Command::new("sleep").arg("30").current_dir(dir.path()).spawn().expect("spawn sleep");
        pid_file(dir.path(), child.id());
        let found = live_postmaster(dir.path());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(child.id() as i32));
        assert_eq!(live_postmaster(dir.path()), None, "gone");
        // A single-user backend's negated pid names a live process too.
        let mut child =
            std::process::Command::new("sleep").arg("30").current_dir(dir.path()).spawn().expect("spawn sleep");
        std::fs::write(dir.path().join("postmaster.pid"), format!("-{}\n", child.id())).expect("write");
        let found = live_postmaster(dir.path());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(child.id() as i32));
    }
}
