//! Runs PostgreSQL's tools against the local data directory, as the
//! PostgreSQL OS user when the daemon runs as root.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
use tokio::process::Command;

use super::binaries::Binaries;
use super::conf::{self, ServerConf};
use super::control::ClusterControlState;
use super::pidfile::{children_of, proc_stat};

/// A PostgreSQL tool or file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{tool} {status}: {output}")]
    Tool { tool: String, status: String, output: String },
    /// pg_rewind could not connect to its source server: worth another
    /// try, unlike any other pg_rewind failure.
    #[error("pg_rewind cannot reach its source: {output}")]
    SourceUnreachable { output: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A statement on the local server failed (or the connection did).
    /// Names what was being done, never the statement: it may hold a
    /// password, and the error reaches `/patroni`.
    #[error("{what}: {source}")]
    Sql { what: &'static str, source: tokio_postgres::Error },
    /// PostgreSQL still runs where it must be down.
    #[error("PostgreSQL still runs; not {0}")]
    StillRunning(&'static str),
    #[error("{0}")]
    VipHeld(String),
    /// The replicated state did not take a proposal.
    #[error("{what}: {message}")]
    Propose { what: &'static str, message: String },
    #[error("{0}")]
    Setup(String),
    /// The server did not start; `reason` holds the server log's lines
    /// that say why.
    #[error("PostgreSQL did not start: {reason}")]
    StartFailed {
        reason: String,
        /// The configuration is at fault (a bad parameter, a missing
        /// library): no rewind or re-clone can help.
        config: bool,
    },
    /// The data directory's history forked from the primary's although
    /// pg_rewind found nothing to rewind.
    #[error("diverged from the primary: {0}")]
    Forked(String),
}

/// What a file holds past `offset` (at most the last 64 KiB of it).
fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = if len < offset { 0 } else { offset.max(len.saturating_sub(64 * 1024)) };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Why a start failed, from what the server logged meanwhile: its
/// FATAL/PANIC lines with the lines that explain them (an invalid or
/// unknown parameter, a missing file), at most five; and whether the
/// configuration is at fault.
pub fn start_failure(log: &str) -> Option<(String, bool)> {
    const EXPLAINS: &[&str] = &[
        "invalid value for parameter",
        "unrecognized configuration parameter",
        "parameter \"",
        "could not access file",
        "could not load library",
        "syntax error in file",
        "could not create",
        "could not map",
    ];
    let strip = |l: &str| {
        // Drop the log line prefix (time, pid) up to the severity.
        ["FATAL:", "PANIC:", "LOG:", "DETAIL:", "HINT:", "ERROR:"]
            .iter()
            .filter_map(|sev| l.find(sev))
            .min()
            .map(|i| l[i..].split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let lines: Vec<String> = log
        .lines()
        .filter(|l| {
            l.contains("FATAL:")
                || l.contains("PANIC:")
                || EXPLAINS.iter().any(|e| l.contains(e))
                || l.contains("DETAIL:")
        })
        .filter_map(strip)
        .collect();
    if !lines.iter().any(|l| l.starts_with("FATAL:") || l.starts_with("PANIC:")) {
        return None;
    }
    let mut keep: Vec<String> = Vec::new();
    for l in lines {
        if !keep.contains(&l) {
            keep.push(l);
        }
    }
    let keep: Vec<String> = keep.split_off(keep.len().saturating_sub(5));
    let config = keep.iter().any(|l| {
        l.contains("configuration file")
            || l.contains("invalid value for parameter")
            || l.contains("unrecognized configuration parameter")
            || l.contains("could not access file")
            || l.contains("could not load library")
    });
    Some((keep.join(" | "), config))
}

/// Runs file-system work that may block (a large directory removed, an
/// fsync) on tokio's blocking pool rather than on an async worker.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PgError> + Send + 'static,
) -> Result<T, PgError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| PgError::Setup(format!("a file-system task failed: {e}")))?
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// How to stop the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, checkpoint, shut down cleanly.
    Fast,
    /// Quit at once; crash recovery at the next start. Used to fence.
    Immediate,
}

/// Local PostgreSQL operations.
pub struct Runner {
    bins: Binaries,
    data_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: PathBuf,
    /// Owner of the data directory when the daemon runs as root.
    owner: Option<(Uid, Gid)>,
    superuser: String,
    superuser_password: String,
}

impl Runner {
    pub fn new(
        bins: Binaries,
        data_dir: PathBuf,
        state_dir: &Path,
        socket_dir: PathBuf,
        run_as: &str,
        superuser: &str,
        superuser_password: &str,
    ) -> Result<Runner, PgError> {
        let owner = if Uid::effective().is_root() {
            let user = User::from_name(run_as)
                .map_err(|e| PgError::Setup(format!("look up user {run_as}: {e}")))?
                .ok_or_else(|| {
                    PgError::Setup(format!(
                        "PostgreSQL cannot run as root and user {run_as:?} (postgres.run_as) does not exist"
                    ))
                })?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        Ok(Runner {
            bins,
            data_dir,
            log_file: state_dir.join("postgres.log"),
            socket_dir,
            owner,
            superuser: superuser.to_string(),
            superuser_password: superuser_password.to_string(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Creates the socket directory and log file, owned by the PostgreSQL
    /// user.
    pub fn prepare(&self) -> Result<(), PgError> {
        std::fs::create_dir_all(&self.socket_dir).map_err(io(format!("create {}", self.socket_dir.display())))?;
        set_mode(&self.socket_dir, 0o700)?;
        self.chown(&self.socket_dir)?;
        if !self.log_file.exists() {
            std::fs::write(&self.log_file, "").map_err(io(format!("create {}", self.log_file.display())))?;
        }
        self.chown(&self.log_file)?;
        Ok(())
    }

    fn chown(&self, path: &Path) -> Result<(), PgError> {
        if let Some((uid, gid)) = self.owner {
            nix::unistd::chown(path, Some(uid), Some(gid))
                .map_err(|e| PgError::Setup(format!("chown {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Creates an empty data directory with the mode PostgreSQL demands.
    /// Removing an old one can take seconds: it runs off the async
    /// workers, which the lease heartbeat and the fence share.
    async fn create_empty_data_dir(&self) -> Result<(), PgError> {
        let dir = self.data_dir.clone();
        blocking(move || {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
            }
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            set_mode(&dir, 0o700)
        })
        .await?;
        self.chown(&self.data_dir)
    }

    async fn run(&self, tool: &str, args: &[&str], password: Option<&str>) -> Result<String, PgError> {
        self.run_capture(tool, args, password).await.map(|(stdout, _)| stdout)
    }

    /// Runs a tool; its standard output and standard error.
    async fn run_capture(
        &self,
        tool: &str,
        args: &[&str],
        password: Option<&str>,
    ) -> Result<(String, String), PgError> {
        let mut cmd = Command::new(self.bins.path(tool));
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).current_dir("/");
        cmd.env("LC_ALL", "C");
        if let Some(pw) = password {
            cmd.env("PGPASSWORD", pw);
        }
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        tracing::debug!(tool, ?args, "running");
        let out = cmd.output().await.map_err(io(format!("run {tool}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().chain(stdout.lines()).rev().take(6).collect();
            return Err(PgError::Tool {
                tool: tool.to_string(),
                status: out.status.to_string(),
                output: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
        Ok((stdout, stderr))
    }

    fn data_str(&self) -> &str {
        self.data_dir.to_str().unwrap_or_default()
    }

    /// True when the data directory holds a cluster.
    pub fn data_present(&self) -> bool {
        self.data_dir.join("PG_VERSION").exists()
    }

    /// Removes a `postmaster.pid` that names no live postmaster of this
    /// directory (left by a crash or a reboot, its pid maybe reused):
    /// PostgreSQL refuses to start while the pid it names is alive.
    fn remove_stale_pid_file(&self) -> Result<(), PgError> {
        let path = self.data_dir.join("postmaster.pid");
        if path.exists() && self.postmaster_pid().is_none() {
            tracing::warn!("removing a stale postmaster.pid");
            std::fs::remove_file(&path).map_err(io("remove a stale postmaster.pid"))?;
        }
        Ok(())
    }

    /// The pid of a live postmaster, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        super::pidfile::live_postmaster(&self.data_dir)
    }

    /// What the postmaster last wrote as its status in `postmaster.pid`
    /// (`starting`, `stopping`, `ready`, `standby`), while it runs.
    pub fn pm_status(&self) -> Option<PmStatus> {
        self.postmaster_pid()?;
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        PmStatus::parse(&text)
    }

    /// SIGKILLs the postmaster and its children: the one stop that works on
    /// a server that does not run (stopped processes, a stalled disk), where
    /// a shutdown request would wait forever. The postmaster is stopped
    /// first, so it forks nothing while its children are listed; children
    /// go too, so a stopped backend does not keep the shared memory a
    /// restart needs. Returns the processes signalled.
    pub fn kill_now(&self) -> Vec<i32> {
        let Some(pm) = self.postmaster_pid() else {
            return Vec::new();
        };
        let _ = signal::kill(Pid::from_raw(pm), Signal::SIGSTOP);
        let mut pids = children_of(pm);
        pids.push(pm);
        pids.retain(|pid| signal::kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok());
        pids
    }

    /// Waits until none of `pids` runs, up to `timeout`.
    pub async fn wait_gone(&self, pids: &[i32], timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // A killed child stays a zombie until init reaps it: gone.
            let alive = pids.iter().any(|pid| proc_stat(*pid).is_some_and(|s| s.state != 'Z'));
            if !alive {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `pg_controldata`'s cluster state and checkpoint timeline.
    pub async fn control_state(&self) -> Result<Option<(ClusterControlState, u32)>, PgError> {
        if !self.data_present() {
            return Ok(None);
        }
        let out = self.run("pg_controldata", &["-D", self.data_str()], None).await?;
        Ok(ClusterControlState::parse(&out))
    }

    /// `pg_controldata`'s latest checkpoint location.
    pub async fn checkpoint_lsn(&self) -> Result<Option<u64>, PgError> {
        if !self.data_present() {
            return Ok(None);
        }
        let out = self.run("pg_controldata", &["-D", self.data_str()], None).await?;
        Ok(ClusterControlState::checkpoint_lsn(&out))
    }

    /// A new cluster, with checksums (so pg_rewind works) and raftgres's
    /// client authentication.
    pub async fn initdb(&self, replication_user: &str) -> Result<(), PgError> {
        self.create_empty_data_dir().await?;
        let pwfile = self.socket_dir.join("initdb.pw");
        std::fs::write(&pwfile, &self.superuser_password).map_err(io("write the initdb password file"))?;
        self.chown(&pwfile)?;
        let pwarg = format!("--pwfile={}", pwfile.display());
        let result = self
            .run(
                "initdb",
                &[
                    "-D",
                    self.data_str(),
                    "--data-checksums",
                    "-U",
                    &self.superuser,
                    &pwarg,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                None,
            )
            .await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
        std::fs::write(self.data_dir.join("pg_hba.conf"), conf::render_hba(None, replication_user, &[]))
            .map_err(io("write pg_hba.conf"))?;
        conf::ensure_include(&self.data_dir).map_err(io("include raftgres.conf"))?;
        Ok(())
    }

    /// A fresh copy of the primary at `host:port`.
    pub async fn basebackup(&self, host: &str, port: u16, user: &str, password: &str) -> Result<(), PgError> {
        self.create_empty_data_dir().await?;
        let port = port.to_string();
        let result = self
            .run(
                "pg_basebackup",
                &["-D", self.data_str(), "-h", host, "-p", &port, "-U", user, "-X", "stream", "-c", "fast", "-w"],
                Some(password),
            )
            .await;
        if result.is_err() {
            // Leave no half-copied directory that looks like a cluster.
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        result.map(|_| ())
    }

    /// Rewinds this (stopped, cleanly shut down) former primary to follow
    /// the primary at `host:port`.
    pub async fn rewind(&self, host: &str, port: u16) -> Result<Rewind, PgError> {
        let source = format!("host={host} port={port} user={} dbname=postgres connect_timeout=5", self.superuser);
        let pw = self.superuser_password.clone();
        match self.run_capture("pg_rewind", &["-D", self.data_str(), "--source-server", &source], Some(&pw)).await {
            // pg_rewind's own words (on standard error) when the histories
            // have not forked.
            Ok((out, err)) if out.contains("no rewind required") || err.contains("no rewind required") => {
                Ok(Rewind::NotNeeded)
            }
            Ok(_) => Ok(Rewind::Rewound),
            // pg_rewind says so only in its output (libpq's message).
            Err(PgError::Tool { output, .. }) if output.contains("could not connect") => {
                Err(PgError::SourceUnreachable { output })
            }
            Err(e) => Err(e),
        }
    }

    /// Completes crash recovery of a stopped data directory in single-user
    /// mode, so it is cleanly shut down (pg_rewind requires that).
    pub async fn single_user_recovery(&self) -> Result<(), PgError> {
        self.remove_stale_pid_file()?;
        let signal = self.data_dir.join("standby.signal");
        if signal.exists() {
            std::fs::remove_file(&signal).map_err(io("remove standby.signal"))?;
        }
        self.run(
            "postgres",
            &["--single", "-D", self.data_str(), "-c", "archive_mode=off", "-c", "hot_standby=off", "postgres"],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Writes the managed configuration, owned by the PostgreSQL user.
    pub fn write_conf(&self, conf: &ServerConf) -> Result<bool, PgError> {
        conf::ensure_include(&self.data_dir).map_err(io("include raftgres.conf"))?;
        let changed = conf.write(&self.data_dir).map_err(io("write raftgres.conf"))?;
        self.chown(&self.data_dir.join("raftgres.conf"))?;
        let signal = self.data_dir.join("standby.signal");
        if signal.exists() {
            self.chown(&signal)?;
        }
        Ok(changed)
    }

    /// Writes `pg_hba.conf` (owned by the PostgreSQL user); true when it
    /// changed.
    pub fn write_hba(&self, text: &str) -> Result<bool, PgError> {
        let path = self.data_dir.join("pg_hba.conf");
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        std::fs::write(&path, text).map_err(io("write pg_hba.conf"))?;
        self.chown(&path)?;
        Ok(true)
    }

    /// Starts the server with `conf` and waits until it accepts connections.
    pub async fn start(&self, conf: &ServerConf) -> Result<(), PgError> {
        self.write_conf(conf)?;
        self.remove_stale_pid_file()?;
        let log = self.log_file.to_str().unwrap_or_default().to_string();
        let before = std::fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        match self.run("pg_ctl", &["start", "-D", self.data_str(), "-l", &log, "-w", "-t", "300", "-s"], None).await {
            Ok(_) => Ok(()),
            Err(e @ PgError::Tool { .. }) => {
                let written = read_from(&self.log_file, before);
                match start_failure(&written) {
                    Some((reason, config)) => Err(PgError::StartFailed { reason, config }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn stop(&self, mode: StopMode) -> Result<(), PgError> {
        if self.postmaster_pid().is_none() {
            return Ok(());
        }
        let m = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        match self.run("pg_ctl", &["stop", "-D", self.data_str(), "-m", m, "-w", "-t", "60", "-s"], None).await {
            Ok(_) => Ok(()),
            Err(_) if self.postmaster_pid().is_none() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops the postmaster with SIGQUIT (immediate shutdown) without waiting
    /// for pg_ctl: the fastest way to stop accepting writes.
    pub fn quit_now(&self) -> bool {
        match self.postmaster_pid() {
            Some(pid) => signal::kill(Pid::from_raw(pid), Signal::SIGQUIT).is_ok(),
            None => false,
        }
    }

    /// Asks the standby to promote and returns at once: `pg_ctl promote
    /// -w` would look at the control file only every 100 ms; the caller
    /// watches for the end of recovery over SQL instead.
    pub async fn request_promotion(&self) -> Result<(), PgError> {
        self.run("pg_ctl", &["promote", "-D", self.data_str(), "-W", "-s"], None).await.map(|_| ())
    }

    /// Removes the data directory (before a re-clone), on the blocking
    /// pool: a large one takes seconds.
    pub async fn wipe(&self) -> Result<(), PgError> {
        let dir = self.data_dir.clone();
        blocking(move || {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
            }
            Ok(())
        })
        .await
    }

    /// Waits until the postmaster is gone, up to `timeout`.
    pub async fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.postmaster_pid().is_some() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// What `pg_rewind` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewind {
    /// It copied what changed since the fork.
    Rewound,
    /// The histories had not forked ("no rewind required").
    NotNeeded,
}

/// The postmaster's status line in `postmaster.pid` (its eighth line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmStatus {
    /// Starting up or in crash recovery: not answering is expected.
    Starting,
    Stopping,
    /// Accepting connections as a primary.
    Ready,
    /// Accepting read-only connections as a standby.
    Standby,
}

impl PmStatus {
    pub fn parse(pid_file: &str) -> Option<PmStatus> {
        match pid_file.lines().nth(7)?.trim() {
            "starting" => Some(PmStatus::Starting),
            "stopping" => Some(PmStatus::Stopping),
            "ready" => Some(PmStatus::Ready),
            "standby" => Some(PmStatus::Standby),
            _ => None,
        }
    }

    /// The postmaster says it serves connections.
    pub fn serving(self) -> bool {
        matches!(self, PmStatus::Ready | PmStatus::Standby)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PgError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmaster_status_line() {
        let file = "4242\n/var/lib/pg\n1700000000\n5432\n/run\n127.0.0.1\n  1234  5678\nready   \n";
        assert_eq!(PmStatus::parse(file), Some(PmStatus::Ready));
        assert_eq!(PmStatus::parse(&file.replace("ready   ", "starting")), Some(PmStatus::Starting));
        assert_eq!(PmStatus::parse(&file.replace("ready   ", "standby ")), Some(PmStatus::Standby));
        assert_eq!(PmStatus::parse("4242\n/var/lib/pg\n"), None, "a file still being written");
        assert!(PmStatus::Standby.serving() && !PmStatus::Starting.serving());
    }

    #[test]
    fn a_failed_start_is_explained_by_the_server_log() {
        let log = "2026-11-30 08:00:00.000 UTC [1234] LOG:  invalid value for parameter \"work_mem\": \"lots\"\n\
                   2026-11-30 08:00:00.000 UTC [1234] FATAL:  configuration file \"/d/raftgres.conf\" contains errors\n";
        let (reason, config) = start_failure(log).expect("a reason");
        assert_eq!(
            reason,
            "LOG: invalid value for parameter \"work_mem\": \"lots\" | \
             FATAL: configuration file \"/d/raftgres.conf\" contains errors"
        );
        assert!(config);
        let log = "2026-11-30 08:00:00.000 UTC [99] FATAL:  could not access file \"nope\": No such file or directory\n\
                   2026-11-30 08:00:00.000 UTC [99] LOG:  database system is shut down\n";
        let (reason, config) = start_failure(log).expect("a reason");
        assert_eq!(reason, "FATAL: could not access file \"nope\": No such file or directory");
        assert!(config);
        let log = "2026-11-30 08:00:00.000 UTC [7] FATAL:  requested timeline 3 is not a child of this server's history\n\
                   2026-11-30 08:00:00.000 UTC [7] DETAIL:  Latest checkpoint is at 0/3000028 on timeline 2.\n";
        let (reason, config) = start_failure(log).expect("a reason");
        assert!(reason.contains("timeline 3") && reason.contains("DETAIL: Latest checkpoint"), "{reason}");
        assert!(!config, "a history problem, for a rewind");
        assert_eq!(start_failure("2026-11-30 LOG:  database system is ready\n"), None);
    }
}
