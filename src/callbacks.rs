//! Patroni's callbacks: operator programs run when the agent starts, stops
//! or restarts PostgreSQL or this node's role changes (`on_start`,
//! `on_stop`, `on_restart`, `on_role_change`), and the `pre_promote` check
//! that may veto a promotion.
//!
//! A callback runs beside the agent, never in its way: [`Callbacks::fire`]
//! spawns it and returns. As in Patroni, one callback runs at a time: a new
//! one kills the one still running (its whole process group) before it
//! starts, so slow scripts never pile up. Each is killed at
//! `callbacks.timeout_ms`, and its output is logged line by line under its
//! name. `pre_promote` is the one the agent waits for, since its exit
//! status decides whether the promotion happens; it runs on its own and
//! kills no other callback. This module must never touch PostgreSQL or the
//! replicated state.

use std::fmt;
use std::os::unix::process::CommandExt as _;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use raftgres_storage::Tags;
use raftgres_storage::member::TAG_NOFAILOVER;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// `callbacks.timeout_ms` when the file does not set it.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The event a callback is run for; its name is the first argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    OnStart,
    OnStop,
    OnRestart,
    OnRoleChange,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::OnStart => "on_start",
            Action::OnStop => "on_stop",
            Action::OnRestart => "on_restart",
            Action::OnRoleChange => "on_role_change",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role passed to a callback: Patroni 4's names (`primary`, not the
/// `master` of Patroni before 4.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// The resolved `[callbacks]` section: each command split into a program
/// and its own arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbacksConfig {
    pub on_start: Option<Vec<String>>,
    pub on_stop: Option<Vec<String>>,
    pub on_restart: Option<Vec<String>>,
    pub on_role_change: Option<Vec<String>>,
    pub pre_promote: Option<Vec<String>>,
    pub timeout: Duration,
}

impl CallbacksConfig {
    fn command(&self, action: Action) -> Option<&Vec<String>> {
        match action {
            Action::OnStart => self.on_start.as_ref(),
            Action::OnStop => self.on_stop.as_ref(),
            Action::OnRestart => self.on_restart.as_ref(),
            Action::OnRoleChange => self.on_role_change.as_ref(),
        }
    }
}

/// Splits a configured command into words, as a shell would without
/// expanding anything: spaces separate words; single quotes keep
/// everything, double quotes keep everything but `\"` and `\\`, and a
/// backslash outside quotes keeps the next character.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a backslash ends the command".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        return Err("is empty".into());
    }
    Ok(words)
}

/// The arguments a callback runs with: its own, then Patroni's
/// `<action> <role> <cluster>`.
pub fn callback_args(command: &[String], action: Action, role: Role, cluster: &str) -> Vec<String> {
    let mut argv = command.to_vec();
    argv.extend([action.as_str().to_string(), role.as_str().to_string(), cluster.to_string()]);
    argv
}

/// Why `pre_promote` vetoed a promotion.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Veto {
    #[error("pre_promote exited with {0}")]
    Exited(String),
    #[error("pre_promote did not finish within {0:?} and was killed")]
    TimedOut(Duration),
    #[error("pre_promote could not be started: {0}")]
    Spawn(String),
}

/// Runs the configured callbacks of one node.
#[derive(Clone)]
pub struct Callbacks {
    config: Arc<CallbacksConfig>,
    cluster: String,
    /// The callback that runs now, if any: its number and what kills it.
    running: Arc<Mutex<Option<(u64, CancellationToken)>>>,
    started: Arc<AtomicU64>,
}

impl Callbacks {
    pub fn new(config: CallbacksConfig, cluster: &str) -> Self {
        Self {
            config: Arc::new(config),
            cluster: cluster.to_string(),
            running: Arc::default(),
            started: Arc::default(),
        }
    }

    /// Starts `action`'s callback, if one is configured, after killing the
    /// one still running; returns at once.
    pub fn fire(&self, action: Action, role: Role) {
        let Some(command) = self.config.command(action) else {
            return;
        };
        let argv = callback_args(command, action, role, &self.cluster);
        let token = CancellationToken::new();
        let number = self.started.fetch_add(1, Ordering::Relaxed);
        if let Some((_, previous)) =
            self.running.lock().unwrap_or_else(|e| e.into_inner()).replace((number, token.clone()))
        {
            previous.cancel();
        }
        tracing::info!(callback = action.as_str(), role = role.as_str(), "running callback");
        let timeout = self.config.timeout;
        let running = self.running.clone();
        tokio::spawn(async move {
            let outcome = run(action.as_str(), &argv, timeout, &token).await;
            match outcome {
                Ok(s) if s.success() => tracing::info!(callback = action.as_str(), "callback finished"),
                Ok(s) => tracing::warn!(callback = action.as_str(), "callback exited with {}", describe(s)),
                Err(Ended::Superseded) => {
                    tracing::warn!(callback = action.as_str(), "callback killed: a newer callback started")
                }
                Err(e) => tracing::warn!(callback = action.as_str(), "failed to run the callback: {e}"),
            }
            running.lock().unwrap_or_else(|e| e.into_inner()).take_if(|(n, _)| *n == number);
        });
    }

    /// Runs `pre_promote` and waits for it: `Ok` when none is configured or
    /// it exited 0; a non-zero exit, a timeout or a failure to start it is
    /// a veto.
    pub async fn pre_promote(&self) -> Result<(), Veto> {
        let Some(argv) = &self.config.pre_promote else {
            return Ok(());
        };
        tracing::info!(callback = "pre_promote", "running callback");
        let never = CancellationToken::new();
        match run("pre_promote", argv, self.config.timeout, &never).await {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(Veto::Exited(describe(s))),
            Err(Ended::TimedOut(t)) => Err(Veto::TimedOut(t)),
            Err(e) => Err(Veto::Spawn(e.to_string())),
        }
    }
}

/// How a callback ended other than by exiting.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("{0}")]
    Spawn(std::io::Error),
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("superseded")]
    Superseded,
    #[error("wait: {0}")]
    Wait(std::io::Error),
}

/// "status 1" or "signal 9".
fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => s.to_string(),
    }
}

/// Runs `argv` in a process group of its own, logging its output, until it
/// exits, `timeout` passes or `cancel` fires; the last two kill the group.
async fn run(
    name: &'static str,
    argv: &[String],
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<ExitStatus, Ended> {
    let (program, args) = argv.split_first().ok_or_else(|| Ended::Spawn(std::io::ErrorKind::InvalidInput.into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.as_std_mut().process_group(0);
    let mut child = cmd.spawn().map_err(Ended::Spawn)?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(name, "stdout", out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(name, "stderr", err));
    }
    let ended = tokio::select! {
        status = child.wait() => return status.map_err(Ended::Wait),
        _ = tokio::time::sleep(timeout) => Ended::TimedOut(timeout),
        _ = cancel.cancelled() => Ended::Superseded,
    };
    kill_group(&mut child);
    let _ = child.wait().await;
    if let Ended::TimedOut(_) = ended {
        tracing::warn!(callback = name, "callback killed after {timeout:?}");
    }
    Err(ended)
}

/// SIGKILLs the child's process group (the child and what it started).
fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let _ = child.start_kill();
}

async fn log_lines(name: &'static str, stream: &'static str, r: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(callback = name, stream, "{line}");
    }
}

/// The tag a node publishes while it holds off the primary role after its
/// `pre_promote` vetoed a promotion; `nofailover` is published with it.
pub const TAG_PRE_PROMOTE: &str = "pre_promote";

/// A vetoed promotion: until when this node keeps out of elections, why,
/// and the `nofailover` it published before. Shared by the agent, which
/// starts and ends it, and the reloader, which folds it into the tags it
/// publishes.
#[derive(Clone, Debug, Default)]
pub struct VetoHold(Arc<Mutex<Option<Hold>>>);

#[derive(Clone, Debug)]
struct Hold {
    until: Instant,
    message: String,
    nofailover: Option<String>,
}

impl VetoHold {
    /// Holds until `until`; returns `published` with the veto folded in.
    pub fn start(&self, until: Instant, message: String, published: &Tags) -> Tags {
        let nofailover = published.get(TAG_NOFAILOVER).cloned();
        *self.lock() = Some(Hold { until, message, nofailover });
        vetoed(published)
    }

    /// The message to show while the hold lasts.
    pub fn message(&self) -> Option<String> {
        self.lock().as_ref().map(|h| h.message.clone())
    }

    /// `tags` (as configured) with the veto folded in while the hold lasts.
    pub fn fold(&self, tags: Tags) -> Tags {
        match self.lock().as_mut() {
            Some(h) => {
                h.nofailover = tags.get(TAG_NOFAILOVER).cloned();
                vetoed(&tags)
            }
            None => tags,
        }
    }

    /// Ends a hold that ran out by `now`; returns `published` without the
    /// veto, to publish.
    pub fn end_if_over(&self, now: Instant, published: &Tags) -> Option<Tags> {
        let mut hold = self.lock();
        let h = hold.take_if(|h| h.until <= now)?;
        let mut tags = published.clone();
        tags.remove(TAG_PRE_PROMOTE);
        match h.nofailover {
            Some(v) => tags.insert(TAG_NOFAILOVER.to_string(), v),
            None => tags.remove(TAG_NOFAILOVER),
        };
        Some(tags)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Hold>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn vetoed(tags: &Tags) -> Tags {
    let mut tags = tags.clone();
    tags.insert(TAG_NOFAILOVER.to_string(), "true".to_string());
    tags.insert(TAG_PRE_PROMOTE.to_string(), "vetoed".to_string());
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_without_expansion() {
        let s = |t: &str| split_command(t);
        assert_eq!(s("/bin/cb").unwrap(), vec!["/bin/cb"]);
        assert_eq!(s("  /bin/cb  --flag  x ").unwrap(), vec!["/bin/cb", "--flag", "x"]);
        assert_eq!(s("'/opt/my scripts/cb' \"a b\" c\\ d").unwrap(), vec!["/opt/my scripts/cb", "a b", "c d"]);
        assert_eq!(s(r#""say \"hi\"" '$HOME'"#).unwrap(), vec![r#"say "hi""#, "$HOME"]);
        assert_eq!(s("''").unwrap(), vec![""]);
        assert!(s("").unwrap_err().contains("empty"));
        assert!(s("   ").unwrap_err().contains("empty"));
        assert!(s("'open").unwrap_err().contains("single quote"));
        assert!(s("\"open").unwrap_err().contains("double quote"));
        assert!(s("end\\").unwrap_err().contains("backslash"));
    }

    #[test]
    fn a_veto_hold_publishes_nofailover_and_gives_back_what_was_there() {
        let hold = VetoHold::default();
        let now = Instant::now();
        let mut configured = Tags::new();
        configured.insert("dc".into(), "east".into());
        assert_eq!(hold.fold(configured.clone()), configured, "no hold, no change");
        let published = hold.start(now + Duration::from_secs(30), "vetoed".into(), &configured);
        assert_eq!(published.get(TAG_NOFAILOVER).map(String::as_str), Some("true"));
        assert_eq!(published.get(TAG_PRE_PROMOTE).map(String::as_str), Some("vetoed"));
        assert_eq!(hold.message().as_deref(), Some("vetoed"));
        assert_eq!(hold.end_if_over(now, &published), None, "not over yet");
        // A reload during the hold: its nofailover is what comes back.
        configured.insert(TAG_NOFAILOVER.into(), "false".into());
        assert_eq!(hold.fold(configured.clone()).get(TAG_NOFAILOVER).map(String::as_str), Some("true"));
        let back = hold.end_if_over(now + Duration::from_secs(30), &published).expect("over");
        assert_eq!(back, configured);
        assert_eq!(hold.message(), None);
        assert_eq!(hold.end_if_over(now + Duration::from_secs(60), &back), None, "ended once");
    }

    #[test]
    fn callbacks_get_patronis_three_arguments() {
        let cmd = vec!["/bin/cb".to_string(), "--verbose".to_string()];
        assert_eq!(
            callback_args(&cmd, Action::OnRoleChange, Role::Primary, "pg-main"),
            vec!["/bin/cb", "--verbose", "on_role_change", "primary", "pg-main"]
        );
        assert_eq!(callback_args(&cmd, Action::OnStart, Role::Replica, "c")[2..], ["on_start", "replica", "c"]);
        assert_eq!(
            [Action::OnStart, Action::OnStop, Action::OnRestart, Action::OnRoleChange].map(Action::as_str),
            ["on_start", "on_stop", "on_restart", "on_role_change"]
        );
    }

    fn config(pre_promote: &str, timeout: Duration) -> CallbacksConfig {
        CallbacksConfig {
            pre_promote: Some(vec!["/bin/sh".into(), "-c".into(), pre_promote.into()]),
            timeout,
            ..CallbacksConfig::default()
        }
    }

    #[tokio::test]
    async fn pre_promote_vetoes_on_a_failure_and_a_timeout() {
        let ok = Callbacks::new(config("exit 0", Duration::from_secs(10)), "c");
        assert_eq!(ok.pre_promote().await, Ok(()));
        let no = Callbacks::new(config("echo no; exit 3", Duration::from_secs(10)), "c");
        assert_eq!(no.pre_promote().await, Err(Veto::Exited("status 3".into())));
        let started = std::time::Instant::now();
        let hangs = Callbacks::new(config("sleep 30", Duration::from_millis(300)), "c");
        assert_eq!(hangs.pre_promote().await, Err(Veto::TimedOut(Duration::from_millis(300))));
        assert!(started.elapsed() < Duration::from_secs(10), "killed at the timeout, not at its end");
        let missing = CallbacksConfig {
            pre_promote: Some(vec!["/nonexistent/pre-promote".into()]),
            timeout: Duration::from_secs(1),
            ..CallbacksConfig::default()
        };
        assert!(matches!(Callbacks::new(missing, "c").pre_promote().await, Err(Veto::Spawn(_))));
        assert_eq!(Callbacks::new(CallbacksConfig::default(), "c").pre_promote().await, Ok(()));
    }

    #[tokio::test]
    async fn a_new_callback_kills_the_one_still_running() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("log");
        // Records its action and process id, then outlives the test.
        let script = format!("echo \"$1 $$\" >> {}; sleep 30", log.display());
        let sh = |s: &str| Some(vec!["/bin/sh".into(), "-c".into(), s.to_string(), "cb".into()]);
        let cfg = CallbacksConfig {
            on_start: sh(&script),
            on_stop: sh(&script),
            timeout: Duration::from_secs(60),
            ..CallbacksConfig::default()
        };
        let cb = Callbacks::new(cfg, "c");
        let pid_of = |action: &str| -> Option<String> {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines().find_map(|l| l.strip_prefix(&format!("{action} ")).map(str::to_string))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let wait = async |what: &str, done: &dyn Fn() -> bool| {
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        cb.fire(Action::OnStart, Role::Primary);
        wait("on_start runs", &|| pid_of("on_start").is_some()).await;
        let first = pid_of("on_start").expect("on_start's pid");
        cb.fire(Action::OnStop, Role::Primary);
        wait("on_stop runs", &|| pid_of("on_stop").is_some()).await;
        wait("on_start is killed", &|| !std::path::Path::new(&format!("/proc/{first}")).exists()).await;
        let second = pid_of("on_stop").expect("on_stop's pid");
        assert!(std::path::Path::new(&format!("/proc/{second}")).exists(), "the newer one runs on");
        cb.running.lock().expect("lock").take().expect("on_stop runs").1.cancel();
        wait("on_stop is killed", &|| !std::path::Path::new(&format!("/proc/{second}")).exists()).await;
    }
}
