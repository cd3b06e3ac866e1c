//! A local cluster on loopback with real PostgreSQL: the layout (ports,
//! directories, configuration files) shared with the integration tests,
//! and the `raftgres playground` command.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftgres_api::{NodeStatus, ReplicationState};

use crate::config::{
    FileConfig, HttpSection, InitialMember, NodeSection, PostgresSection, RaftSection, SecuritySection,
};
use crate::http::client::ClientError;

/// A free TCP port on 127.0.0.1, outside the kernel's ephemeral range: see
/// [`free_port_on`].
pub fn free_port() -> std::io::Result<u16> {
    free_port_on("127.0.0.1")
}

/// A TCP port free on 127.0.0.1 and on `host`, for a listener to bind later.
///
/// The port comes from outside the ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`). The kernel picks the local
/// port of every outgoing connection, and of a bind to port 0, from that
/// range: a port found there can be taken by a daemon's own connection
/// before its listener binds it ("Address already in use"). Candidates are
/// tried from a random start, each is bound once to check it is free, and
/// none is handed out twice by this process. Another process could still
/// take a port before it is used; the window is small and a clash fails
/// loudly.
pub fn free_port_on(host: &str) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind};
    let ip = (host, 0)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::AddrNotAvailable, format!("{host}: no address")))?
        .ip();
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let ephemeral = ephemeral_ports();
    let range = candidate_ports(ephemeral).ok_or_else(|| {
        Error::new(ErrorKind::AddrNotAvailable, format!("no ports outside the ephemeral range {ephemeral:?}"))
    })?;
    let len = u32::from(*range.end() - *range.start()) + 1;
    let mut given = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let start = *given.next.get_or_insert_with(|| random_u32() % len);
    for i in 0..len {
        let offset = (start + i) % len;
        let port = *range.start() + offset as u16;
        if given.ports.contains(&port) {
            continue;
        }
        // Bound and dropped at once: the check that nothing listens there.
        let free = |ip: IpAddr| match TcpListener::bind(SocketAddr::new(ip, port)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AddrInUse => Ok(false),
            Err(e) => Err(e),
        };
        if free(loopback)? && (ip == loopback || free(ip)?) {
            given.ports.insert(port);
            given.next = Some((offset + 1) % len);
            return Ok(port);
        }
    }
    Err(Error::new(ErrorKind::AddrInUse, format!("no free port in {range:?} on {host}")))
}

/// Ports this process handed out, and where the next search starts (an
/// offset into the candidate range, random at first).
struct HandedOut {
    ports: BTreeSet<u16>,
    next: Option<u32>,
}

static HANDED_OUT: Mutex<HandedOut> = Mutex::new(HandedOut { ports: BTreeSet::new(), next: None });

/// The kernel's ephemeral port range, or Linux's default when it cannot be
/// read.
fn ephemeral_ports() -> (u16, u16) {
    let read = || {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let mut ports = text.split_whitespace().map(|p| p.parse::<u16>().ok());
        let (low, high) = (ports.next()??, ports.next()??);
        (low <= high).then_some((low, high))
    };
    read().unwrap_or((32768, 60999))
}

/// Where [`free_port_on`] looks, given the ephemeral range: from 10000 up
/// to it, or above it when that leaves more room (an ephemeral range that
/// starts low); `None` when neither side has a port.
fn candidate_ports((low, high): (u16, u16)) -> Option<RangeInclusive<u16>> {
    const FIRST: u16 = 10000;
    const ENOUGH: u16 = 1000;
    let below = low.saturating_sub(FIRST);
    let above = u16::MAX - high;
    if below > 0 && (below >= ENOUGH || below >= above) {
        Some(FIRST..=low - 1)
    } else if above > 0 {
        Some(high + 1..=u16::MAX)
    } else {
        None
    }
}

/// Random bits from the kernel, or from the pid and the clock.
fn random_u32() -> u32 {
    match random_bytes::<4>() {
        Ok(bytes) => u32::from_le_bytes(bytes),
        Err(_) => {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            std::process::id().wrapping_mul(2_654_435_761) ^ nanos
        }
    }
}

/// One node of a local cluster.
#[derive(Clone, Debug)]
pub struct LocalNode {
    pub id: u64,
    pub name: String,
    pub raft_port: u16,
    pub http_port: u16,
    pub pg_port: u16,
    pub dir: PathBuf,
    /// Loopback address every listener of this node binds (and its Raft
    /// traffic leaves from).
    pub host: String,
    /// Added to a running cluster rather than forming it: not an initial
    /// member.
    pub joining: bool,
}

impl LocalNode {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("raftgres.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub fn api_url(&self) -> String {
        format!("http://{}:{}", self.host, self.http_port)
    }

    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.host, self.raft_port)
    }

    /// Starts `exe run --config <this node's file>`, appending its output
    /// to the node's log.
    pub fn spawn(&self, exe: &Path) -> std::io::Result<std::process::Child> {
        self.command(exe)?.spawn()
    }

    /// The command [`LocalNode::spawn`] runs, for a caller that adjusts it.
    pub fn command(&self, exe: &Path) -> std::io::Result<std::process::Command> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(cmd)
    }

    /// The pid of this node's live postmaster.
    pub fn postmaster_pid(&self) -> Option<i32> {
        crate::postgres::pidfile::live_postmaster(&self.dir.join("pgdata"))
    }
}

/// The layout of an n-node cluster under one directory.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    pub dir: PathBuf,
    pub cluster_id: String,
    pub superuser_password: String,
    pub replication_password: String,
    /// The cluster token.
    pub token: String,
    pub nodes: Vec<LocalNode>,
}

/// Writes a file only its owner can read (it holds the cluster token).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

/// Comma-separated Raft (admin) addresses of the cluster, for raftctl.
pub fn endpoints(cluster: &LocalCluster) -> String {
    cluster.nodes.iter().map(|n| n.raft_addr()).collect::<Vec<_>>().join(",")
}

/// A random token: 32 hex characters from the kernel's generator.
pub fn random_token() -> std::io::Result<String> {
    Ok(random_bytes::<16>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// `N` bytes from the kernel's generator.
fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    use std::io::Read;
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

impl LocalCluster {
    /// Allocates ports and creates one directory per node under `dir`
    /// (made traversable, since PostgreSQL runs as its own user under root).
    /// Every node is on 127.0.0.1.
    pub fn layout(dir: &Path, n: usize, cluster_id: &str) -> std::io::Result<LocalCluster> {
        Self::layout_on(dir, n, cluster_id, |_| "127.0.0.1".into())
    }

    /// Like [`LocalCluster::layout`], node `id` on the loopback address
    /// `host(id)`; its ports are free there.
    pub fn layout_on(
        dir: &Path,
        n: usize,
        cluster_id: &str,
        host: impl Fn(u64) -> String,
    ) -> std::io::Result<LocalCluster> {
        Self::layout_with(dir, n, cluster_id, host, |_, host| free_port_on(host))
    }

    /// Like [`LocalCluster::layout_on`], each port from `port(id, host)`
    /// (a node in a network namespace of its own finds its free ports
    /// there).
    pub fn layout_with(
        dir: &Path,
        n: usize,
        cluster_id: &str,
        host: impl Fn(u64) -> String,
        port: impl Fn(u64, &str) -> std::io::Result<u16>,
    ) -> std::io::Result<LocalCluster> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let mut nodes = Vec::new();
        for i in 1..=n as u64 {
            let node_dir = dir.join(format!("pg{i}"));
            std::fs::create_dir_all(&node_dir)?;
            std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o755))?;
            let host = host(i);
            nodes.push(LocalNode {
                id: i,
                name: format!("pg{i}"),
                raft_port: port(i, &host)?,
                http_port: port(i, &host)?,
                pg_port: port(i, &host)?,
                dir: node_dir,
                host,
                joining: false,
            });
        }
        Ok(LocalCluster {
            dir: dir.to_path_buf(),
            cluster_id: cluster_id.to_string(),
            superuser_password: "postgres-pw".into(),
            replication_password: "replicator-pw".into(),
            token: random_token()?,
            nodes,
        })
    }

    /// Lays out one more node that joins the running cluster (added with
    /// `raftctl member add`), with the next free id.
    pub fn add_node(&mut self) -> std::io::Result<&LocalNode> {
        use std::os::unix::fs::PermissionsExt;
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let node_dir = self.dir.join(format!("pg{id}"));
        std::fs::create_dir_all(&node_dir)?;
        std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o755))?;
        let host = self.nodes.first().map(|n| n.host.clone()).unwrap_or_else(|| "127.0.0.1".into());
        self.nodes.push(LocalNode {
            id,
            name: format!("pg{id}"),
            raft_port: free_port_on(&host)?,
            http_port: free_port_on(&host)?,
            pg_port: free_port_on(&host)?,
            dir: node_dir,
            host,
            joining: true,
        });
        Ok(self.nodes.last().expect("just pushed"))
    }

    pub fn node(&self, id: u64) -> &LocalNode {
        self.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The configuration of node `id`.
    pub fn file_config(&self, id: u64) -> FileConfig {
        let node = self.node(id);
        FileConfig {
            cluster_id: self.cluster_id.clone(),
            node: NodeSection { id: node.id, name: node.name.clone(), data_dir: node.dir.clone() },
            raft: RaftSection {
                listen: node.raft_addr(),
                advertise: None,
                initial_members: self
                    .nodes
                    .iter()
                    .filter(|n| !n.joining)
                    .map(|n| InitialMember { id: n.id, name: n.name.clone(), raft_addr: n.raft_addr() })
                    .collect(),
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 300,
                election_timeout_max_ms: 400,
                leader_placement: Default::default(),
            },
            http: HttpSection { listen: format!("{}:{}", node.host, node.http_port), ..HttpSection::default() },
            postgres: Some(PostgresSection {
                bin_dir: None,
                data_dir: None,
                listen_addresses: node.host.clone(),
                advertise_host: None,
                port: node.pg_port,
                superuser: "postgres".into(),
                superuser_password: self.superuser_password.clone(),
                replication_user: "replicator".into(),
                replication_password: self.replication_password.clone(),
                run_as: "postgres".into(),
                hang_timeout_ms: crate::config::DEFAULT_HANG_TIMEOUT_MS,
            }),
            security: SecuritySection { token: Some(self.token.clone()), ..SecuritySection::default() },
            tags: Default::default(),
            dynamic: Default::default(),
            watchdog: Default::default(),
            callbacks: Default::default(),
            pgbouncer: None,
            vip: None,
        }
    }

    /// Writes every node's configuration file, after `tune`.
    pub fn write_configs(&self, tune: impl Fn(&mut FileConfig)) -> std::io::Result<()> {
        for n in &self.nodes {
            let mut c = self.file_config(n.id);
            tune(&mut c);
            write_private(&n.config_path(), &c.to_toml())?;
        }
        Ok(())
    }

    /// A libpq URI for node `id`'s PostgreSQL.
    pub fn pg_uri(&self, id: u64) -> String {
        let n = self.node(id);
        format!("postgresql://postgres:{}@{}:{}/postgres", self.superuser_password, n.host, n.pg_port)
    }
}

/// GET `url`; returns the status code and body.
pub async fn http_get(url: &str) -> Result<(u16, String), ClientError> {
    crate::http::client::get(url).await
}

/// A node's role and state as its API reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    pub primary: bool,
    pub replica: bool,
    pub streaming: bool,
    pub timeline: Option<u64>,
    /// The last PostgreSQL action that failed on the node, while it keeps
    /// failing.
    pub last_error: Option<String>,
}

/// Why a node's health could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Http(#[from] ClientError),
    #[error("{url}: not a node status: {source}")]
    Parse { url: String, source: serde_json::Error },
}

/// Asks a node's API whether it is primary, replica, streaming.
pub async fn node_health(api_url: &str) -> Result<NodeHealth, HealthError> {
    let url = format!("{api_url}/primary");
    let (primary, body) = http_get(&url).await?;
    let (replica, _) = http_get(&format!("{api_url}/replica")).await?;
    let doc: NodeStatus = serde_json::from_str(&body).map_err(|source| HealthError::Parse { url, source })?;
    Ok(NodeHealth {
        primary: primary == 200,
        replica: replica == 200,
        streaming: doc.replication_state == Some(ReplicationState::Streaming),
        timeline: doc.timeline.map(u64::from),
        last_error: doc.raftgres.last_error,
    })
}

/// Options of `raftgres playground`.
pub struct PlaygroundOptions {
    pub nodes: usize,
    pub dir: Option<PathBuf>,
    pub keep: bool,
}

/// Starts a local cluster, waits until it is healthy, prints how to reach
/// it, and stops everything on Ctrl-C.
pub async fn run_playground(opts: PlaygroundOptions) -> anyhow::Result<()> {
    let temp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("raftgres-playground-").tempdir().context("create a directory")?;
            temp.path().to_path_buf()
        }
    };
    if opts.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let cluster = LocalCluster::layout(&dir, opts.nodes, "playground").context("lay out the cluster")?;
    cluster.write_configs(|_| {}).context("write configuration files")?;
    println!("raftgres playground: {} nodes in {}", opts.nodes, dir.display());

    let exe = std::env::current_exe().context("find the raftgres executable")?;
    let mut children = BTreeMap::new();
    for n in &cluster.nodes {
        let log = std::fs::File::create(n.log_path()).context("create a log file")?;
        let child = tokio::process::Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(n.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start a daemon")?;
        println!("  started {} (pid {}), log {}", n.name, child.id().unwrap_or(0), n.log_path().display());
        children.insert(n.id, child);
    }

    // Streams, not `ctrl_c()` futures: a signal that arrives between two
    // waits (while the summary prints) is kept for the next one, not lost.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install a SIGTERM handler")?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("install a SIGINT handler")?;
    let result = tokio::select! {
        r = wait_healthy(&cluster, &mut children) => r,
        _ = sigint.recv() => Err(anyhow::anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow::anyhow!("terminated")),
    };
    if result.is_ok() {
        print_summary(&cluster).await;
        println!("\nPress Ctrl-C to stop the cluster.");
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    }
    println!("stopping...");
    for (id, child) in children.iter_mut() {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
            Ok(Ok(status)) => println!("  pg{id} stopped ({status})"),
            _ => {
                let _ = child.kill().await;
                println!("  pg{id} killed");
            }
        }
    }
    if opts.keep || opts.dir.is_some() {
        println!("kept {}", dir.display());
    }
    // A cluster that never became healthy is a failure: the caller prints
    // why and exits non-zero, after everything was stopped.
    result
}

/// How long the cluster may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a node may keep reporting a failed PostgreSQL action without
/// becoming healthy before the playground gives up on it.
const FAILING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a running daemon's API may stay silent before the playground
/// gives up on it.
const SILENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for one primary and streaming replicas, printing each node's
/// progress and the PostgreSQL errors it reports. Gives up, with the
/// reason, when a daemon exits, its API stays silent, or its PostgreSQL
/// keeps failing.
async fn wait_healthy(
    cluster: &LocalCluster,
    children: &mut BTreeMap<u64, tokio::process::Child>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last: BTreeMap<u64, String> = BTreeMap::new();
    let mut last_error: BTreeMap<u64, String> = BTreeMap::new();
    let mut failing_since: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut answered_at: BTreeMap<u64, Instant> = BTreeMap::new();
    println!("waiting for a primary and streaming replicas...");
    loop {
        for (id, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("pg{id} exited ({status}); last log lines:\n{}", log_tail(&cluster.node(*id).log_path(), 15));
            }
        }
        let mut primaries = 0;
        let mut streaming = 0;
        for n in &cluster.nodes {
            let health = node_health(&n.api_url()).await;
            let now = match &health {
                Ok(h) if h.primary => {
                    primaries += 1;
                    "primary".to_string()
                }
                Ok(h) if h.replica && h.streaming => {
                    streaming += 1;
                    "replica, streaming".to_string()
                }
                Ok(h) if h.replica => "replica".to_string(),
                Ok(_) => "starting".to_string(),
                Err(_) => "not answering yet".to_string(),
            };
            let elapsed = start.elapsed().as_secs_f64();
            if last.get(&n.id) != Some(&now) {
                println!("  [{elapsed:>5.1}s] {}: {now}", n.name);
                last.insert(n.id, now);
            }
            match health {
                Ok(h) => {
                    answered_at.insert(n.id, Instant::now());
                    let healthy = h.primary || (h.replica && h.streaming);
                    match h.last_error {
                        Some(error) => {
                            if last_error.get(&n.id) != Some(&error) {
                                println!("  [{elapsed:>5.1}s] {}: PostgreSQL failed: {error}", n.name);
                                last_error.insert(n.id, error.clone());
                            }
                            if healthy {
                                failing_since.remove(&n.id);
                            } else {
                                let since = *failing_since.entry(n.id).or_insert_with(Instant::now);
                                if since.elapsed() > FAILING_TIMEOUT {
                                    bail!(
                                        "{}'s PostgreSQL has kept failing for {}s: {error}; see its log {}",
                                        n.name,
                                        since.elapsed().as_secs(),
                                        n.log_path().display()
                                    );
                                }
                            }
                        }
                        None => {
                            last_error.remove(&n.id);
                            failing_since.remove(&n.id);
                        }
                    }
                }
                Err(e) => {
                    let silent = answered_at.get(&n.id).unwrap_or(&start).elapsed();
                    if silent > SILENT_TIMEOUT {
                        bail!(
                            "{}'s API at {} has not answered for {}s ({e}); last log lines:\n{}",
                            n.name,
                            n.api_url(),
                            silent.as_secs(),
                            log_tail(&n.log_path(), 15)
                        );
                    }
                }
            }
        }
        if primaries == 1 && streaming == cluster.nodes.len() - 1 {
            println!("healthy after {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > HEALTHY_TIMEOUT {
            bail!(
                "the cluster did not become healthy within {}s; see the logs in {}",
                HEALTHY_TIMEOUT.as_secs(),
                cluster.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn print_summary(cluster: &LocalCluster) {
    println!("\n{:<6} {:<9} {:<10} {:<3} {:<60} API", "member", "role", "state", "TL", "connection");
    for n in &cluster.nodes {
        let h = node_health(&n.api_url()).await.ok();
        let role = match &h {
            Some(h) if h.primary => "primary",
            Some(h) if h.replica => "replica",
            _ => "unknown",
        };
        let state = if h.as_ref().is_some_and(|h| h.streaming) { "streaming" } else { "running" };
        let tl = h.and_then(|h| h.timeline).map(|t| t.to_string()).unwrap_or_default();
        println!("{:<6} {:<9} {:<10} {:<3} {:<60} {}", n.name, role, state, tl, cluster.pg_uri(n.id), n.api_url());
    }
    println!("\nraftctl (admin gRPC):");
    println!("  export RAFTCTL_ENDPOINTS={} RAFTCTL_TOKEN={}", endpoints(cluster), cluster.token);
    let raftctl = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("raftctl")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "raftctl".into());
    println!("  {raftctl} list");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_outside_the_ephemeral_range_and_are_never_handed_out_twice() {
        let (low, high) = ephemeral_ports();
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let port = free_port().expect("a free port");
            assert!(!(low..=high).contains(&port), "{port} is in the ephemeral range {low}-{high}");
            assert!(seen.insert(port), "{port} handed out twice");
        }
        let port = free_port_on("127.0.0.2").expect("a free port on 127.0.0.2");
        assert!(!(low..=high).contains(&port) && seen.insert(port), "{port}");
    }

    #[test]
    fn candidates_lie_below_the_ephemeral_range_or_above_it_when_it_starts_low() {
        assert_eq!(candidate_ports((32768, 60999)), Some(10000..=32767));
        assert_eq!(candidate_ports((10500, 60999)), Some(61000..=65535));
        assert_eq!(candidate_ports((1024, 60999)), Some(61000..=65535));
        assert_eq!(candidate_ports((10500, 65535)), Some(10000..=10499));
        assert_eq!(candidate_ports((1024, 65535)), None);
    }
}
