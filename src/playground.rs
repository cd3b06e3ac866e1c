//! A local cluster on loopback with real PostgreSQL: the layout (ports,
//! directories, configuration files) shared with the integration tests,
//! and the `raftgres playground` command.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftgres_api::{NodeStatus, ReplicationState};

use crate::http::client::ClientError;
use crate::config::{
    FileConfig, HttpSection, InitialMember, NodeSection, PostgresSection, RaftSection, SecuritySection,
};

/// A port the kernel just handed out on loopback. Another process could
/// take it before it is used; the window is small and a clash fails loudly.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        std::process::Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    /// The pid of this node's live postmaster.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.join("pgdata/postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok().map(|()| pid)
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
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl LocalCluster {
    /// Allocates ports and creates one directory per node under `dir`
    /// (made traversable, since PostgreSQL runs as its own user under root).
    pub fn layout(dir: &Path, n: usize, cluster_id: &str) -> std::io::Result<LocalCluster> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let mut nodes = Vec::new();
        for i in 1..=n as u64 {
            let node_dir = dir.join(format!("pg{i}"));
            std::fs::create_dir_all(&node_dir)?;
            std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o755))?;
            nodes.push(LocalNode {
                id: i,
                name: format!("pg{i}"),
                raft_port: free_port()?,
                http_port: free_port()?,
                pg_port: free_port()?,
                dir: node_dir,
                host: "127.0.0.1".into(),
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
            raft_port: free_port()?,
            http_port: free_port()?,
            pg_port: free_port()?,
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
                election_timeout_max_ms: 600,
            },
            http: HttpSection { listen: format!("{}:{}", node.host, node.http_port), advertise: None },
            postgres: PostgresSection {
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
            },
            security: SecuritySection { token: Some(self.token.clone()), ..SecuritySection::default() },
            tags: Default::default(),
            dynamic: Default::default(),
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

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install a SIGTERM handler")?;
    let result = tokio::select! {
        r = wait_healthy(&cluster, &mut children) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow::anyhow!("terminated")),
    };
    match result {
        Ok(()) => {
            print_summary(&cluster).await;
            println!("\nPress Ctrl-C to stop the cluster.");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sigterm.recv() => {}
            }
        }
        Err(e) => eprintln!("playground: {e:#}"),
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
    Ok(())
}

async fn wait_healthy(
    cluster: &LocalCluster,
    children: &mut BTreeMap<u64, tokio::process::Child>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last: BTreeMap<u64, String> = BTreeMap::new();
    println!("waiting for a primary and streaming replicas...");
    loop {
        for (id, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(cluster.node(*id).log_path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "pg{id} exited ({status}); last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let mut primaries = 0;
        let mut streaming = 0;
        for n in &cluster.nodes {
            let now = match node_health(&n.api_url()).await {
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
            if last.get(&n.id) != Some(&now) {
                println!("  [{:>5.1}s] {}: {now}", start.elapsed().as_secs_f64(), n.name);
                last.insert(n.id, now);
            }
        }
        if primaries == 1 && streaming == cluster.nodes.len() - 1 {
            println!("healthy after {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("the cluster did not become healthy within 300s; see the logs in {}", cluster.dir.display());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
