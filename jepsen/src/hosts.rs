//! The hosts and the raftgres cluster on them, driven as a black box: each
//! host (a network namespace, see [`crate::net`]) runs `raftgres run` with a
//! configuration file this module writes; the daemon runs PostgreSQL. The
//! harness reaches the daemons over their HTTP API and through `raftctl`,
//! and HAProxy (configured by `raftctl haproxy-config`) in the client
//! namespace routes the workloads to the primary.
//!
//! A host is a slot; a member is a raftgres node (an id, a name, a data
//! directory) running on a slot. Member ids are never reused: a member
//! removed and replaced by a fresh one on the same slot gets a new id and
//! name. This module must never decide who is primary for the workloads;
//! [`Cluster::primary`] is for the nemesis and the final phase only.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net;

pub const RAFT_PORT: u16 = 7001;
pub const HTTP_PORT: u16 = 8008;
pub const PG_PORT: u16 = 5432;
/// HAProxy's primary service, in the client namespace.
pub const PRIMARY_PORT: u16 = 5433;
pub const PG_PASSWORD: &str = "jepsen-postgres-pw";
pub const CLUSTER_ID: &str = "jepsen";

/// A raftgres node: its identity and data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub dir: PathBuf,
}

/// What runs on a host now.
#[derive(Debug, Default)]
pub struct HostState {
    /// The member on this host; `None` while the slot is free.
    pub member: Option<Member>,
    /// The pid of its running daemon.
    pub daemon: Option<i32>,
    /// Processes this harness stopped with SIGSTOP and has not resumed.
    pub stopped: Vec<i32>,
    /// A fault acts on this host; membership changes leave it alone.
    pub busy: bool,
}

/// One host: a network namespace with its own address.
#[derive(Debug)]
pub struct Host {
    pub slot: usize,
    pub ns: String,
    pub addr: Ipv4Addr,
    pub state: Mutex<HostState>,
}

impl Host {
    pub fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn member(&self) -> Option<Member> {
        self.state().member.clone()
    }

    pub fn name(&self) -> Option<String> {
        self.state().member.as_ref().map(|m| m.name.clone())
    }

    pub fn raft_addr(&self) -> String {
        format!("{}:{RAFT_PORT}", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}:{HTTP_PORT}", self.addr)
    }

    /// The pid of the live postmaster of this host's member.
    pub fn postmaster(&self) -> Option<i32> {
        let member = self.member()?;
        let text = std::fs::read_to_string(member.dir.join("pgdata/postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        (pid > 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
    }
}

/// The children of `pid` (PostgreSQL's backends and auxiliary processes).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string)))
                .flatten()
                .and_then(|ppid| ppid.parse::<i32>().ok())
                == Some(pid)
        })
        .collect()
}

/// Sends `sig` to `pid`; a process already gone is not an error.
pub fn signal(pid: i32, sig: Signal) -> bool {
    kill(Pid::from_raw(pid), sig).is_ok()
}

/// `synchronous_mode` for the cluster's dynamic configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Asynchronous replication (`synchronous_mode = "off"`).
    Async,
    On,
    Strict,
    /// Quorum commit: any `synchronous_node_count` of the standbys.
    Quorum,
}

impl Mode {
    pub fn synchronous_mode(self) -> &'static str {
        match self {
            Mode::Async => "off",
            Mode::On => "on",
            Mode::Strict => "strict",
            Mode::Quorum => "quorum",
        }
    }
}

/// The cluster: its hosts and how to reach and drive it.
#[derive(Debug)]
pub struct Cluster {
    pub hosts: Vec<Host>,
    /// Where `raftgres` and `raftctl` are.
    pub bin_dir: PathBuf,
    /// Every member's directory is made under this one.
    pub data_dir: PathBuf,
    pub token: String,
    pub mode: Mode,
    /// Members the cluster starts with (and returns to).
    pub nodes: usize,
    next_id: AtomicU64,
    /// Every member that ever ran, for the logs.
    pub ever: Mutex<Vec<Member>>,
    /// HAProxy's master process and its configuration file.
    haproxy: Mutex<Option<(i32, PathBuf)>>,
}

impl Cluster {
    /// A cluster of `nodes` members on slots 1..=nodes, with `spare` free
    /// slots after them for members added later.
    pub fn new(bin_dir: PathBuf, data_dir: PathBuf, nodes: usize, spare: usize, mode: Mode, token: String) -> Cluster {
        let hosts = (1..=nodes + spare)
            .map(|slot| Host {
                slot,
                ns: net::host_ns(slot),
                addr: net::host_addr(slot),
                state: Mutex::new(HostState::default()),
            })
            .collect();
        Cluster {
            hosts,
            bin_dir,
            data_dir,
            token,
            mode,
            nodes,
            next_id: AtomicU64::new(1),
            ever: Mutex::new(Vec::new()),
            haproxy: Mutex::new(None),
        }
    }

    pub fn host(&self, slot: usize) -> &Host {
        &self.hosts[slot - 1]
    }

    /// The hosts that hold a member, with it.
    pub fn members(&self) -> Vec<(&Host, Member)> {
        self.hosts.iter().filter_map(|h| h.member().map(|m| (h, m))).collect()
    }

    /// A member's host, by member name.
    pub fn host_of(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name().as_deref() == Some(name))
    }

    pub fn raftgres(&self) -> PathBuf {
        self.bin_dir.join("raftgres")
    }

    pub fn raftctl_path(&self) -> PathBuf {
        self.bin_dir.join("raftctl")
    }

    /// The Raft (admin) addresses of the current members, but `except`'s
    /// (a node that is joining answers but knows no leader yet).
    pub fn endpoints(&self, except: Option<usize>) -> String {
        self.members()
            .iter()
            .filter(|(h, _)| Some(h.slot) != except)
            .map(|(h, _)| h.raft_addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Places a new member on free slot `slot` (its configuration is
    /// written by [`Cluster::write_config`]).
    pub fn place(&self, slot: usize) -> anyhow::Result<Member> {
        use std::os::unix::fs::PermissionsExt;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let name = format!("pg{id}");
        let dir = self.data_dir.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // PostgreSQL runs as its own user under a root daemon: the
        // directory must be traversable.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let member = Member { id, name, dir };
        let mut state = self.host(slot).state();
        if state.member.is_some() {
            bail!("slot {slot} already holds a member");
        }
        state.member = Some(member.clone());
        drop(state);
        self.ever.lock().unwrap_or_else(|e| e.into_inner()).push(member.clone());
        Ok(member)
    }

    /// Writes the configuration of the member on `slot`: the current
    /// members are its initial members, itself among them unless it is
    /// `joining` a running cluster.
    pub fn write_config(&self, slot: usize, joining: bool) -> anyhow::Result<()> {
        let host = self.host(slot);
        let member = host.member().with_context(|| format!("slot {slot} holds no member"))?;
        let mut initial: Vec<(u64, String, String)> =
            self.members().iter().map(|(h, m)| (m.id, m.name.clone(), h.raft_addr())).collect();
        if joining {
            initial.retain(|(id, _, _)| *id != member.id);
        }
        let text = self.config_toml(host, &member, &initial);
        write_private(&member.dir.join("raftgres.toml"), &text)
    }

    /// Frees `slot`: the member is gone (its directory stays for the logs).
    pub fn vacate(&self, slot: usize) {
        let mut state = self.host(slot).state();
        state.member = None;
        state.daemon = None;
        state.stopped.clear();
    }

    /// A member's configuration file, in raftgres's TOML.
    fn config_toml(&self, host: &Host, member: &Member, initial: &[(u64, String, String)]) -> String {
        let mut t = String::new();
        t.push_str(&format!(
            "cluster_id = \"{CLUSTER_ID}\"\n\n[node]\nid = {}\nname = \"{}\"\n",
            member.id, member.name
        ));
        t.push_str(&format!("data_dir = \"{}\"\n\n", member.dir.display()));
        t.push_str(&format!("[raft]\nlisten = \"{}\"\n", host.raft_addr()));
        t.push_str("heartbeat_interval_ms = 100\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 400\n");
        for (id, name, addr) in initial {
            t.push_str(&format!("\n[[raft.initial_members]]\nid = {id}\nname = \"{name}\"\nraft_addr = \"{addr}\"\n"));
        }
        t.push_str(&format!("\n[http]\nlisten = \"{}:{HTTP_PORT}\"\n\n", host.addr));
        t.push_str(&format!(
            "[postgres]\nlisten_addresses = \"{}\"\nport = {PG_PORT}\nsuperuser = \"postgres\"\n\
             superuser_password = \"{PG_PASSWORD}\"\nreplication_user = \"replicator\"\n\
             replication_password = \"jepsen-replicator-pw\"\nrun_as = \"postgres\"\n\n",
            host.addr
        ));
        t.push_str(&format!("[security]\ntoken = \"{}\"\n\n", self.token));
        t.push_str(&format!("[dynamic]\nsynchronous_mode = \"{}\"\n", self.mode.synchronous_mode()));
        if self.mode == Mode::Quorum {
            // Any half of the standbys: losing the primary and all but a
            // majority of the standbys leaves enough to show who has what.
            t.push_str(&format!("synchronous_node_count = {}\n", ((self.nodes - 1) / 2).max(1)));
        }
        t
    }

    /// Starts the daemon of the member on `slot` inside its namespace,
    /// appending its output to `daemon.log`. A task waits for it and clears
    /// the pid when it exits.
    pub fn start_daemon(self: &Arc<Self>, slot: usize) -> anyhow::Result<i32> {
        let host = self.host(slot);
        let member = host.member().with_context(|| format!("slot {slot} holds no member"))?;
        if let Some(pid) = host.state().daemon {
            return Ok(pid);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(member.dir.join("daemon.log"))?;
        let mut cmd = tokio::process::Command::new(self.raftgres());
        cmd.arg("run")
            .arg("--config")
            .arg(member.dir.join("raftgres.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(false);
        net::command_in(&host.ns, &mut cmd)?;
        let mut child = cmd.spawn().with_context(|| format!("start {}", self.raftgres().display()))?;
        let pid = child.id().context("the daemon has no pid")? as i32;
        host.state().daemon = Some(pid);
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let _ = child.wait().await;
            let mut state = cluster.host(slot).state();
            if state.daemon == Some(pid) {
                state.daemon = None;
            }
        });
        Ok(pid)
    }

    /// Waits until the daemon on `slot` has exited.
    pub async fn wait_daemon_gone(&self, slot: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.host(slot).state().daemon.is_some() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops the daemon on `slot` with SIGTERM (it stops PostgreSQL), then
    /// SIGKILL after `grace`.
    pub async fn stop_daemon(&self, slot: usize, grace: Duration) {
        let host = self.host(slot);
        let (pid, stopped) = {
            let mut state = host.state();
            (state.daemon, std::mem::take(&mut state.stopped))
        };
        for p in stopped {
            signal(p, Signal::SIGCONT);
        }
        let Some(pid) = pid else { return };
        signal(pid, Signal::SIGTERM);
        if !self.wait_daemon_gone(slot, grace).await {
            signal(pid, Signal::SIGKILL);
            self.wait_daemon_gone(slot, Duration::from_secs(5)).await;
        }
    }

    /// Stops every member's daemon at once: SIGTERM (each stops its
    /// PostgreSQL), then SIGKILL for those still running after `grace`.
    pub async fn stop_all(&self, grace: Duration) {
        let mut pids = Vec::new();
        for host in &self.hosts {
            let (pid, stopped) = {
                let mut state = host.state();
                (state.daemon, std::mem::take(&mut state.stopped))
            };
            for p in stopped {
                signal(p, Signal::SIGCONT);
            }
            if let Some(pid) = pid {
                signal(pid, Signal::SIGTERM);
                pids.push((host.slot, pid));
            }
        }
        let deadline = Instant::now() + grace;
        for (slot, pid) in pids {
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.wait_daemon_gone(slot, left).await {
                signal(pid, Signal::SIGKILL);
                self.wait_daemon_gone(slot, Duration::from_secs(5)).await;
            }
        }
    }

    /// Runs `raftctl` with the current members as endpoints; returns its
    /// exit code and output (stdout, then stderr).
    pub async fn raftctl(&self, args: &[&str], timeout: Duration) -> anyhow::Result<(i32, String)> {
        self.raftctl_except(None, args, timeout).await
    }

    /// [`Cluster::raftctl`] without `except`'s member among the endpoints.
    pub async fn raftctl_except(
        &self,
        except: Option<usize>,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<(i32, String)> {
        let mut cmd = tokio::process::Command::new(self.raftctl_path());
        cmd.args(["--timeout", &timeout.as_secs().max(1).to_string()])
            .args(args)
            .env("RAFTCTL_ENDPOINTS", self.endpoints(except))
            .env("RAFTCTL_TOKEN", &self.token)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout + Duration::from_secs(15), cmd.output())
            .await
            .with_context(|| format!("raftctl {} did not finish", args.join(" ")))?
            .context("run raftctl")?;
        let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.trim().is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(err.trim());
        }
        Ok((out.status.code().unwrap_or(-1), text))
    }

    /// Each member's `/patroni` document (absent when it did not answer).
    pub async fn statuses(&self) -> BTreeMap<usize, Option<Value>> {
        let hosts: Vec<&Host> = self.members().into_iter().map(|(h, _)| h).collect();
        let answers =
            futures_join(hosts.iter().map(|h| status(h.addr, Duration::from_millis(800))).collect::<Vec<_>>()).await;
        hosts.iter().zip(answers).map(|(h, s)| (h.slot, s)).collect()
    }

    /// The slot of the member that says it is primary (for targeting
    /// faults; never for the workloads). With several, the first.
    pub async fn primary(&self) -> Option<usize> {
        self.statuses()
            .await
            .into_iter()
            .find(|(_, s)| s.as_ref().and_then(|s| s["role"].as_str()) == Some("primary"))
            .map(|(slot, _)| slot)
    }

    /// Waits for one primary and every other member a streaming replica.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let statuses = self.statuses().await;
            let mut primaries = 0;
            let mut streaming = 0;
            let mut seen = Vec::new();
            for (slot, s) in &statuses {
                let role = s.as_ref().and_then(|s| s["role"].as_str()).unwrap_or("down");
                let state = s.as_ref().and_then(|s| s["state"].as_str()).unwrap_or("-");
                if role == "primary" {
                    primaries += 1;
                } else if role == "replica" && state == "streaming"
                    || s.as_ref().and_then(|s| s["replication_state"].as_str()) == Some("streaming")
                {
                    streaming += 1;
                }
                seen.push(format!("{}: {role}/{state}", self.host(*slot).name().unwrap_or_default()));
            }
            let last = seen.join(", ");
            if primaries == 1 && streaming + 1 == statuses.len() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("no healthy cluster after {}s: {last}", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Resolves once the daemon of one of `slots` has exited, with an
    /// error naming it and quoting the end of its log: a daemon that
    /// refuses its configuration exits at once, and the cluster would
    /// never become healthy.
    pub async fn daemon_exited(&self, slots: &[usize]) -> anyhow::Error {
        loop {
            for &slot in slots {
                let host = self.host(slot);
                if host.state().daemon.is_none() {
                    let log = host.member().map(|m| m.dir.join("daemon.log"));
                    let text = log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                    return anyhow::anyhow!(
                        "the daemon of {} exited before the cluster was healthy; the end of {}:\n{tail}",
                        host.name().unwrap_or_else(|| format!("slot {slot}")),
                        log.map_or_else(|| "its log".to_string(), |p| p.display().to_string()),
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Renders HAProxy's configuration with `raftctl haproxy-config` and
    /// starts HAProxy (master-worker, in the foreground) in the client
    /// namespace, or makes the running one reload it.
    pub async fn haproxy(&self, dir: &Path) -> anyhow::Result<()> {
        let file = dir.join("haproxy.cfg");
        let file_str = file.to_string_lossy().to_string();
        let (code, out) = self
            .raftctl(
                &["haproxy-config", "--bind", "127.0.0.1", "--check-interval-ms", "500", "--file", &file_str],
                Duration::from_secs(10),
            )
            .await?;
        if code != 0 {
            bail!("raftctl haproxy-config failed ({code}): {out}");
        }
        // A reload leaves the old worker serving its open sessions; bound
        // how long, so clients of a removed member move on.
        let text = std::fs::read_to_string(&file)?;
        let text = text.replacen("\nglobal\n", "\nglobal\n    hard-stop-after 5s\n", 1);
        std::fs::write(&file, text)?;
        let running = self.haproxy.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((pid, _)) = running {
            signal(pid, Signal::SIGUSR2);
            return Ok(());
        }
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = tokio::process::Command::new("haproxy")
            .args(["-W", "-db", "-f", &file_str])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start haproxy")?;
        let pid = child.id().context("haproxy has no pid")? as i32;
        *self.haproxy.lock().unwrap_or_else(|e| e.into_inner()) = Some((pid, file));
        // The Child is kept by a task that reaps it; killing is by pid.
        tokio::spawn(async move {
            let mut child = child;
            let _ = child.wait().await;
        });
        Ok(())
    }

    /// Stops HAProxy.
    pub async fn stop_haproxy(&self) {
        let running = self.haproxy.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((pid, _)) = running {
            signal(pid, Signal::SIGTERM);
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            signal(pid, Signal::SIGKILL);
        }
    }
}

/// Joins futures concurrently without an extra dependency.
pub async fn futures_join<F>(futs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a joined task panicked"));
    }
    out
}

/// Writes a file only its owner can read (it holds the cluster token).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// GET `path` on `addr`:[`HTTP_PORT`] with HTTP/1.0; the status code and
/// body.
pub async fn http_get(addr: Ipv4Addr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let fetch = async {
        let mut sock = tokio::net::TcpStream::connect((addr, HTTP_PORT)).await?;
        sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        sock.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch).await.context("timed out")??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no status code")?;
    Ok((code, body.to_string()))
}

/// A daemon's `/patroni` document, or `None` when it did not answer.
pub async fn status(addr: Ipv4Addr, timeout: Duration) -> Option<Value> {
    let (_, body) = http_get(addr, "/patroni", timeout).await.ok()?;
    serde_json::from_str(&body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_configuration_names_its_peers_and_the_mode() {
        let c = Cluster::new(PathBuf::from("/bin"), PathBuf::from("/tmp/x"), 3, 1, Mode::Strict, "t".repeat(32));
        let host = c.host(2);
        let m = Member { id: 7, name: "pg7".into(), dir: PathBuf::from("/tmp/x/pg7") };
        let text = c.config_toml(host, &m, &[(1, "pg1".into(), "10.77.0.11:7001".into())]);
        let doc: toml_like::Doc = toml_like::parse(&text);
        assert_eq!(doc.get("node.id"), Some("7"));
        assert_eq!(doc.get("raft.listen"), Some("\"10.77.0.12:7001\""));
        assert_eq!(doc.get("postgres.listen_addresses"), Some("\"10.77.0.12\""));
        assert_eq!(doc.get("dynamic.synchronous_mode"), Some("\"strict\""));
        assert!(text.contains("[[raft.initial_members]]\nid = 1\nname = \"pg1\"\nraft_addr = \"10.77.0.11:7001\""));
    }

    /// Just enough of TOML to read back `key = value` lines by section.
    mod toml_like {
        pub struct Doc(Vec<(String, String)>);
        impl Doc {
            pub fn get(&self, key: &str) -> Option<&str> {
                self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
            }
        }
        pub fn parse(text: &str) -> Doc {
            let mut section = String::new();
            let mut out = Vec::new();
            for line in text.lines() {
                if let Some(s) = line.strip_prefix('[') {
                    section = s.trim_matches(|c| c == '[' || c == ']').to_string();
                } else if let Some((k, v)) = line.split_once(" = ") {
                    out.push((format!("{section}.{k}"), v.to_string()));
                }
            }
            Doc(out)
        }
    }

    #[test]
    fn children_of_finds_this_process_under_its_parent() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert!(children_of(parent).contains(&me));
    }
}
