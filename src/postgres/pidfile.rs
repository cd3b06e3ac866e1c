//! `postmaster.pid`: which process, if any, is this data directory's live
//! postmaster. The one reading of it for the daemon, the watchdog process
//! and the playground; and what `/proc` says of a process (its parent and
//! run state), for the postmaster's children.
//!
//! A pid alone is not proof: after a crash or a reboot the file stays
//! behind, and its pid may belong to any process by now. A postmaster works
//! in its data directory (it changes into it at start), so a process whose
//! working directory can be read and is another directory (another device
//! and inode) is not it. The
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

/// Whether `pid`'s working directory is `dir` (the same device and inode:
/// two `stat` calls, where resolving both paths took one `readlink` per
/// path component); `None` when it cannot be told.
fn works_in(pid: i32, dir: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let cwd = std::fs::metadata(format!("/proc/{pid}/cwd")).ok()?;
    let dir = std::fs::metadata(dir).ok()?;
    Some(cwd.dev() == dir.dev() && cwd.ino() == dir.ino())
}

/// A process as `/proc/<pid>/stat` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: i32,
    /// `R`, `S`, `T` (stopped), `Z` (zombie), ...
    pub state: char,
}

/// `/proc/<pid>/stat` of a process that still exists.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so
    // read after the last closing parenthesis.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcStat { ppid, state })
}

/// The processes whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_and_their_state_are_read_from_proc() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id() as i32;
        let found = children_of(std::process::id() as i32);
        let stat = proc_stat(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&pid), "{found:?}");
        assert_eq!(stat.map(|s| s.ppid), Some(std::process::id() as i32));
        assert_eq!(proc_stat(pid), None, "reaped");
    }

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
