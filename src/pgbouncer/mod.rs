//! PgBouncer follows the primary. On every node whose configuration has a
//! `[pgbouncer]` section, the follower task watches the replicated state;
//! when the primary that can take writes changes, it renders the
//! `[databases]` file from the template, replaces it atomically and has
//! PgBouncer `RELOAD`. It never renders a file without a primary: while
//! none can take writes, or while this node cannot hear the cluster,
//! PgBouncer keeps its last target.
//!
//! [`Proxy`] also PAUSEs and RESUMEs PgBouncer's pools for a switchover:
//! every pause carries a deadline after which this node RESUMEs by
//! itself, a PAUSE that fails or takes too long is RESUMEd at once, and a
//! re-point while paused RESUMEs too. This module must never log the admin
//! password, and never leave pools paused without a timer that ends it.

pub mod admin;
pub mod config;
pub mod render;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raftgres_raft::RaftHandle;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::admin::AdminError;
pub use self::config::{PgBouncerConfig, PgBouncerSection};
use self::render::{Target, databases_file};

/// How long a `RELOAD` or `RESUME` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a failed re-point is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// What this node's PgBouncer does, as `GET /pgbouncer` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// The primary PgBouncer was last pointed at (rendered and reloaded);
    /// `None` until the first re-point since this daemon started.
    pub target: Option<Target>,
    /// The pools are paused (by this daemon).
    pub paused: bool,
    /// The last failed re-point or admin command, until one succeeds.
    pub last_error: Option<String>,
}

/// This node's PgBouncer: its follower's status and the pause controls.
/// Clones share it.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    config: PgBouncerConfig,
    cluster: String,
    status: watch::Sender<ProxyStatus>,
    /// The timer that RESUMEs a pause at its deadline. Held across PAUSE
    /// and RESUME so they never interleave.
    deadline: Mutex<Deadline>,
}

/// The pause deadline's timer, and which pause it belongs to: every PAUSE
/// and RESUME starts a new generation, and a timer of an older one does
/// nothing.
#[derive(Default)]
struct Deadline {
    generation: u64,
    timer: Option<JoinHandle<()>>,
}

impl Deadline {
    /// Ends the current pause's timer; returns the new generation.
    fn next(&mut self) -> u64 {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.generation += 1;
        self.generation
    }
}

/// Why a pause did not take.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("{0}; the pools were RESUMEd")]
    Failed(AdminError),
}

impl Proxy {
    pub fn new(config: PgBouncerConfig, cluster: &str) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                config,
                cluster: cluster.to_string(),
                status: watch::channel(ProxyStatus::default()).0,
                deadline: Mutex::new(Deadline::default()),
            }),
        }
    }

    pub fn status(&self) -> ProxyStatus {
        self.inner.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ProxyStatus> {
        self.inner.status.subscribe()
    }

    /// How long pools stay paused at most.
    pub fn pause_timeout(&self) -> Duration {
        self.inner.config.pause_timeout
    }

    /// PAUSEs the pools: returns once PgBouncer has let the running
    /// transactions finish and closed its server connections. The pools
    /// RESUME by themselves after `pause_timeout`. A PAUSE that fails or
    /// does not finish within `pause_wait` is RESUMEd before returning.
    /// Runs to its end even when the caller goes away.
    pub async fn pause(&self) -> Result<Duration, PauseError> {
        let this = self.clone();
        let task = tokio::spawn(async move { this.pause_now().await });
        task.await.unwrap_or_else(|e| {
            Err(PauseError::Failed(AdminError::Refused { command: "PAUSE", reason: e.to_string() }))
        })
    }

    async fn pause_now(&self) -> Result<Duration, PauseError> {
        let c = &self.inner.config;
        let mut deadline = self.inner.deadline.lock().await;
        let started = std::time::Instant::now();
        match admin::run(c, "PAUSE", c.pause_wait).await {
            Ok(_) => {}
            Err(e) if e.is_already() => {}
            Err(e) => {
                tracing::warn!("failed to pause PgBouncer: {e}; resuming it");
                if let Err(r) = admin::run(c, "RESUME", COMMAND_TIMEOUT).await
                    && !r.is_already()
                {
                    tracing::error!("failed to resume PgBouncer after a failed pause: {r}");
                }
                self.inner.status.send_modify(|s| {
                    s.paused = false;
                    s.last_error = Some(e.to_string());
                });
                return Err(PauseError::Failed(e));
            }
        }
        let took = started.elapsed();
        let generation = deadline.next();
        let this = self.clone();
        let timeout = c.pause_timeout;
        deadline.timer = Some(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::warn!(after = ?timeout, "PgBouncer's pause reached its deadline; resuming");
            this.resume_at_deadline(generation).await;
        }));
        self.inner.status.send_modify(|s| s.paused = true);
        tracing::info!(took = ?took, deadline = ?timeout, "PgBouncer paused");
        Ok(took)
    }

    /// RESUMEs the pools (a pooler that is not paused is fine).
    pub async fn resume(&self, why: &str) -> Result<(), AdminError> {
        let mut deadline = self.inner.deadline.lock().await;
        deadline.next();
        self.resume_locked(why).await
    }

    /// The deadline of pause `generation`: RESUMEs, and keeps trying until
    /// it succeeds or another PAUSE or RESUME takes over. Pools must not
    /// stay paused.
    async fn resume_at_deadline(&self, generation: u64) {
        loop {
            {
                let deadline = self.inner.deadline.lock().await;
                if deadline.generation != generation {
                    return;
                }
                match self.resume_locked("the pause deadline").await {
                    Ok(()) => return,
                    Err(e) => tracing::error!("failed to resume PgBouncer at the pause deadline: {e}; retrying"),
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn resume_locked(&self, why: &str) -> Result<(), AdminError> {
        match admin::run(&self.inner.config, "RESUME", COMMAND_TIMEOUT).await {
            Ok(_) => tracing::info!(why, "PgBouncer resumed"),
            Err(e) if e.is_already() => tracing::debug!(why, "PgBouncer was not paused"),
            Err(e) => {
                self.inner.status.send_modify(|s| s.last_error = Some(e.to_string()));
                return Err(e);
            }
        }
        self.inner.status.send_modify(|s| s.paused = false);
        Ok(())
    }

    /// Points PgBouncer at `target`: renders the file, replaces it, and
    /// RELOADs; RESUMEs pools a switchover paused.
    async fn repoint(&self, target: &Target) -> Result<(), String> {
        let c = &self.inner.config;
        let text = databases_file(&c.databases_template, &self.inner.cluster, target).map_err(|e| e.to_string())?;
        let path = c.databases_file.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &text))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("write {}: {e}", c.databases_file.display()))?;
        admin::run(c, "RELOAD", COMMAND_TIMEOUT).await.map_err(|e| e.to_string())?;
        self.inner.status.send_modify(|s| {
            s.target = Some(target.clone());
            s.last_error = None;
        });
        tracing::info!(%target, file = %c.databases_file.display(), "PgBouncer re-pointed");
        if self.inner.status.borrow().paused
            && let Err(e) = self.resume("re-pointed at the new primary").await
        {
            tracing::warn!("failed to resume PgBouncer after re-pointing it: {e}; the pause deadline resumes it");
        }
        Ok(())
    }

    /// The follower: re-points PgBouncer whenever the primary that can take
    /// writes changes, until `cancel`. Reconcile-loop shape: each turn
    /// compares the state's target with the last one applied.
    pub async fn follow(self, handle: RaftHandle, cancel: CancellationToken) {
        let mut rx = handle.subscribe();
        let mut applied: Option<Target> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let wanted = Target::of(&rx.borrow_and_update().state);
            if let Some(t) = wanted.filter(|t| applied.as_ref() != Some(t)) {
                match self.repoint(&t).await {
                    Ok(()) => {
                        applied = Some(t);
                        retry_at = None;
                    }
                    Err(e) => {
                        tracing::warn!(target = %t, "failed to re-point PgBouncer: {e}; retrying");
                        self.inner.status.send_modify(|s| s.last_error = Some(e));
                        retry_at = Some(tokio::time::Instant::now() + RETRY);
                    }
                }
            }
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = rx.changed() => if changed.is_err() { break },
                _ = retry => {}
            }
        }
        // Never leave pools paused behind a stopping daemon.
        if self.inner.status.borrow().paused
            && let Err(e) = self.resume("the daemon stops").await
        {
            tracing::error!("failed to resume PgBouncer on shutdown: {e}");
        }
    }
}

/// Replaces `path` with `text`: a temporary file beside it, fsynced, renamed
/// over it, and the directory fsynced. Readers see the old file or the new
/// one, never a part.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let tmp = dir.join(format!(".{}.raftgres-tmp", name.to_string_lossy()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("databases.ini");
        std::fs::write(&path, "old").expect("write");
        write_atomically(&path, "new\n").expect("replace");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
