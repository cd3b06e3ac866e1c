//! A cluster of real `raftgres` daemon processes with real PostgreSQL on
//! loopback. Ports come from `free_port_on`, outside the kernel's ephemeral
//! range; every wait polls a condition.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::config::FileConfig;
use raftgres::playground::{LocalCluster, NodeHealth, node_health};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};
use tracing::info;

use super::deadline::{CLUSTER_UP, DAEMON_EXIT};
use super::wait_for;

/// Daemon clusters are heavy (3 PostgreSQL servers each); on a 2-core
/// machine they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct DaemonCluster {
    pub layout: LocalCluster,
    /// The APIs serve HTTPS (`http.certfile`); the test process's client
    /// TLS is set with `raftgres::http::client::use_tls`.
    https: bool,
    children: BTreeMap<u64, Child>,
    /// The network namespace of each node, for a cluster laid out in
    /// namespaces ([`DaemonCluster::start_in`]).
    netns: BTreeMap<u64, String>,
    _dir: TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl DaemonCluster {
    /// Starts `n` daemons with configurations adjusted by `tune`, and waits
    /// for one primary and `n - 1` streaming replicas.
    pub async fn start(n: usize, tune: impl Fn(&mut FileConfig)) -> DaemonCluster {
        Self::start_on(n, |_| "127.0.0.1".into(), tune).await
    }

    /// Like [`DaemonCluster::start`], every node on its own loopback
    /// address `host(id)` (so firewall rules can single one out).
    pub async fn start_on(n: usize, host: impl Fn(u64) -> String, tune: impl Fn(&mut FileConfig)) -> DaemonCluster {
        Self::start_all(n, host, false, tune).await
    }

    /// Like [`DaemonCluster::start`], with APIs that `tune` puts behind
    /// HTTPS.
    pub async fn start_https(n: usize, tune: impl Fn(&mut FileConfig)) -> DaemonCluster {
        Self::start_all(n, |_| "127.0.0.1".into(), true, tune).await
    }

    async fn start_all(
        n: usize,
        host: impl Fn(u64) -> String,
        https: bool,
        tune: impl Fn(&mut FileConfig),
    ) -> DaemonCluster {
        super::init_tracing();
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new().prefix("raftgres-it-").tempdir().expect("temporary directory");
        let layout = LocalCluster::layout_on(dir.path(), n, "it-daemons", host).expect("lay out the cluster");
        layout.write_configs(tune).expect("write configurations");
        let mut c = DaemonCluster {
            layout,
            https,
            children: BTreeMap::new(),
            netns: BTreeMap::new(),
            _dir: dir,
            _serial: serial,
        };
        for id in 1..=n as u64 {
            c.start_node(id);
        }
        c.must_healthy(&(1..=n as u64).collect::<Vec<_>>(), CLUSTER_UP).await;
        c
    }

    /// Like [`DaemonCluster::start_on`], node `id` at `host(id)` inside
    /// network namespace `netns(id)`, its ports found free there. The
    /// caller's thread must reach the hosts (it runs in a namespace on
    /// their bridge).
    pub async fn start_in(
        n: usize,
        netns: impl Fn(u64) -> String,
        host: impl Fn(u64) -> String,
        tune: impl Fn(&mut FileConfig),
    ) -> DaemonCluster {
        super::init_tracing();
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new().prefix("raftgres-it-").tempdir().expect("temporary directory");
        let port = |id: u64, host: &str| {
            let host = host.to_string();
            raftgres_jepsen::net::in_ns(&netns(id), move || raftgres::playground::free_port_on(&host))
                .map_err(std::io::Error::other)?
        };
        // Every PostgreSQL listens on one port, as behind a virtual IP:
        // the first node's, unless another node's other ports took it.
        let layout = (0..10)
            .find_map(|_| {
                let mut layout =
                    LocalCluster::layout_with(dir.path(), n, "it-netns", &host, port).expect("lay out the cluster");
                let pg_port = layout.nodes[0].pg_port;
                let clash = layout.nodes.iter().any(|n| n.raft_port == pg_port || n.http_port == pg_port);
                layout.nodes.iter_mut().for_each(|n| n.pg_port = pg_port);
                (!clash).then_some(layout)
            })
            .expect("one PostgreSQL port free on every node");
        layout.write_configs(tune).expect("write configurations");
        let netns = (1..=n as u64).map(|id| (id, netns(id))).collect();
        let mut c =
            DaemonCluster { layout, https: false, children: BTreeMap::new(), netns, _dir: dir, _serial: serial };
        for id in 1..=n as u64 {
            c.start_node(id);
        }
        c.must_healthy(&(1..=n as u64).collect::<Vec<_>>(), CLUSTER_UP).await;
        c
    }

    /// Starts (or restarts) node `id`'s daemon; its output is appended to
    /// the node's log.
    pub fn start_node(&mut self, id: u64) {
        assert!(!self.children.contains_key(&id), "node {id} is already running");
        let mut cmd =
            self.layout.node(id).command(std::path::Path::new(env!("CARGO_BIN_EXE_raftgres"))).expect("log file");
        if let Some(ns) = self.netns.get(&id) {
            raftgres_jepsen::net::std_command_in(ns, &mut cmd).expect("enter the node's namespace");
        }
        let child = cmd.spawn().expect("start raftgres");
        info!(node = id, pid = child.id(), "daemon started");
        self.children.insert(id, child);
    }

    pub fn postmaster_pid(&self, id: u64) -> Option<i32> {
        self.layout.node(id).postmaster_pid()
    }

    /// SIGKILLs node `id`'s PostgreSQL postmaster only.
    pub fn kill_postmaster(&self, id: u64) -> i32 {
        let pid = self.postmaster_pid(id).unwrap_or_else(|| panic!("node {id} has no running postmaster"));
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill postmaster");
        pid
    }

    /// SIGKILLs node `id`'s daemon and its postmaster: the node dies.
    pub fn kill_node(&mut self, id: u64) {
        let mut child = self.children.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        let pm = self.postmaster_pid(id);
        // An already exited daemon is fine.
        let _ = child.kill();
        if let Some(pm) = pm {
            let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
        }
        let _ = child.wait();
        info!(node = id, postmaster = ?pm, "node killed");
    }

    /// Sends `sig` to node `id`'s daemon (SIGSTOP pauses it, SIGCONT resumes).
    pub fn signal_daemon(&self, id: u64, sig: Signal) {
        let child = self.children.get(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal daemon");
    }

    /// Tries one INSERT on node `id`; true if it committed.
    pub async fn try_write(&self, id: u64, value: i64) -> bool {
        let attempt = async {
            let client = self.pg(id).await.ok()?;
            client.execute("INSERT INTO t VALUES ($1)", &[&value]).await.ok()
        };
        tokio::time::timeout(Duration::from_millis(500), attempt).await.ok().flatten().is_some()
    }

    /// SIGTERMs node `id`'s daemon and waits for it to exit; returns its
    /// exit code.
    pub async fn stop_node(&mut self, id: u64) -> Option<i32> {
        let mut child = self.children.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal daemon");
        wait_for(&format!("daemon {id} to exit"), DAEMON_EXIT, async || match child.try_wait() {
            Ok(Some(status)) => Ok(status.code()),
            other => Err(format!("{other:?}")),
        })
        .await
    }

    /// SIGUSR2s node `id`'s daemon (hand off: exit leaving PostgreSQL
    /// running) and waits for it to exit; returns its exit code.
    pub async fn hand_off_node(&mut self, id: u64) -> Option<i32> {
        let mut child = self.children.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR2).expect("signal daemon");
        wait_for(&format!("daemon {id} to hand off"), DAEMON_EXIT, async || match child.try_wait() {
            Ok(Some(status)) => Ok(status.code()),
            other => Err(format!("{other:?}")),
        })
        .await
    }

    /// The value of metric `name` on node `id`'s `/metrics`.
    pub async fn metric(&self, id: u64, name: &str) -> Option<i64> {
        let (_, text) = raftgres::playground::http_get(&format!("{}/metrics", self.api(id))).await.ok()?;
        super::metric(&text, name)
    }

    pub fn api(&self, id: u64) -> String {
        let url = self.layout.node(id).api_url();
        if self.https { url.replacen("http://", "https://", 1) } else { url }
    }

    pub async fn health(&self, id: u64) -> Result<NodeHealth, String> {
        node_health(&self.api(id)).await.map_err(|e| e.to_string())
    }

    /// Waits until exactly one of `among` is primary and the others stream.
    pub async fn must_healthy(&self, among: &[u64], deadline: Duration) -> u64 {
        wait_for("one primary and streaming replicas", deadline, async || {
            let mut views = Vec::new();
            for id in among {
                views.push((*id, self.health(*id).await));
            }
            let primaries: Vec<u64> =
                views.iter().filter(|(_, h)| h.as_ref().is_ok_and(|h| h.primary)).map(|(id, _)| *id).collect();
            let streaming = views.iter().filter(|(_, h)| h.as_ref().is_ok_and(|h| h.replica && h.streaming)).count();
            match primaries.as_slice() {
                [p] if streaming == among.len() - 1 => Ok(*p),
                _ => Err(views),
            }
        })
        .await
    }

    /// Waits until one of `among` answers 200 on `/primary`.
    pub async fn must_primary(&self, among: &[u64], deadline: Duration) -> u64 {
        wait_for("a primary", deadline, async || {
            let mut views = Vec::new();
            for id in among {
                let h = self.health(*id).await;
                if h.as_ref().is_ok_and(|h| h.primary) {
                    return Ok(*id);
                }
                views.push((*id, h));
            }
            Err(views)
        })
        .await
    }

    /// A superuser connection to node `id`'s PostgreSQL over TCP.
    pub async fn pg(&self, id: u64) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(&self.layout.pg_uri(id), NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub async fn must_pg(&self, id: u64) -> Client {
        self.pg(id).await.unwrap_or_else(|e| panic!("connect to node {id}'s PostgreSQL: {e}"))
    }

    /// When node `id`'s PostgreSQL started, as text: unchanged means not
    /// restarted.
    pub async fn postmaster_started(&self, id: u64) -> String {
        let row = self.must_pg(id).await.query_one("SELECT pg_postmaster_start_time()::text", &[]).await;
        row.unwrap_or_else(|e| panic!("start time of node {id}: {e}")).get(0)
    }

    /// Waits until node `id` has `n` rows in `t`.
    pub async fn must_rows(&self, id: u64, n: i64, deadline: Duration) {
        wait_for(&format!("{n} rows on node {id}"), deadline, async || {
            let client = self.pg(id).await.map_err(|e| e.to_string())?;
            let got: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.map_err(|e| e.to_string())?.get(0);
            if got == n { Ok(()) } else { Err(format!("{got} rows")) }
        })
        .await
    }

    /// Waits until a write on node `id` succeeds; returns when it did.
    pub async fn must_accept_write(&self, id: u64, value: i64, deadline: Duration) -> Instant {
        wait_for(&format!("node {id} to accept a write"), deadline, async || {
            let client = self.pg(id).await.map_err(|e| e.to_string())?;
            client.execute("INSERT INTO t VALUES ($1)", &[&value]).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(Instant::now())
        })
        .await
    }

    /// The timeline node `id`'s primary writes on.
    pub async fn must_timeline(&self, id: u64) -> u32 {
        let row = self
            .must_pg(id)
            .await
            .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
            .await
            .unwrap_or_else(|e| panic!("timeline of node {id}: {e:?}"));
        let walfile: String = row.get(0);
        u32::from_str_radix(&walfile[..8], 16).expect("a WAL file name starts with the timeline")
    }

    /// Lays out and starts one more node that is not an initial member;
    /// it waits to be added with `raftctl member add`. Returns its id.
    pub fn spawn_joiner(&mut self) -> u64 {
        let id = self.layout.add_node().expect("lay out a new node").id;
        let config = self.layout.file_config(id);
        raftgres::playground::write_private(&self.layout.node(id).config_path(), &config.to_toml())
            .expect("write its configuration");
        self.start_node(id);
        id
    }

    /// Runs `raftctl` against this cluster (endpoints and token from the
    /// environment): exit code, stdout, stderr.
    pub fn raftctl(&self, args: &[&str]) -> (i32, String, String) {
        self.raftctl_with(args, &[])
    }

    /// Like [`DaemonCluster::raftctl`], with extra environment variables
    /// (which may override the endpoints or the token).
    pub fn raftctl_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_raftctl"));
        cmd.args(args)
            .env("RAFTCTL_ENDPOINTS", raftgres::playground::endpoints(&self.layout))
            .env("RAFTCTL_TOKEN", &self.layout.token)
            .env_remove("RAFTCTL_TOKEN_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run raftctl");
        let r = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        info!(?args, code = r.0, "raftctl");
        r
    }

    /// `raftctl <args>` that must succeed; its stdout.
    pub fn must_raftctl(&self, args: &[&str]) -> String {
        let (code, out, err) = self.raftctl(args);
        assert_eq!(code, 0, "raftctl {args:?} failed: {err}{out}");
        out
    }

    /// `raftctl <args> --json` parsed.
    pub fn raftctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.must_raftctl(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("raftctl {args:?} printed no JSON ({e}): {out}"))
    }

    /// Makes the primary the Raft leader too, switching over to the leader
    /// (which may move meanwhile: a few attempts). Returns the primary.
    pub async fn make_primary_lead_raft(&self) -> u64 {
        use super::deadline::{HANDOVER_ACCEPTED, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
        for attempt in 1..=3 {
            let primary = self.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
            let status = wait_for("raftctl list to name a Raft leader", SETTLED, async || {
                let s: serde_json::Value = match self.raftctl(&["list", "-o", "json"]) {
                    (0, out, _) => serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?,
                    (code, out, err) => return Err(format!("raftctl list exited {code}: {err}{out}")),
                };
                if s["raft_leader"].as_u64().is_some() { Ok(s) } else { Err(format!("no leader: {s}")) }
            })
            .await;
            let leader = status["raft_leader"].as_u64().expect("checked");
            if leader == primary {
                let m = status["members"].as_array().expect("members").iter().find(|m| m["id"] == primary).cloned();
                assert_eq!(m.as_ref().map(|m| m["raft_role"].clone()), Some("leader".into()), "{status}");
                return primary;
            }
            info!(attempt, primary, leader, "--- switching over to the Raft leader");
            let target = format!("pg{leader}");
            wait_for("switchover --to the Raft leader to be accepted", HANDOVER_ACCEPTED, async || {
                match self.raftctl(&["switchover", "--to", &target, "--force"]) {
                    (0, out, _) => Ok(out),
                    (1, _, err) if err.contains("not a streaming replica") => Err(err),
                    (code, out, err) => panic!("switchover failed ({code}): {err}{out}"),
                }
            })
            .await;
            assert_eq!(self.must_primary(&[leader], SWITCHOVER).await, leader);
        }
        panic!("Raft leadership moved away from the primary three times");
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.layout.node(id).log_path()).unwrap_or_default()
    }
}

impl Drop for DaemonCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill_node(id);
        }
        // Postmasters outlive their daemons; stop any that remain.
        for n in &self.layout.nodes {
            if let Some(pid) = self.postmaster_pid(n.id) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// On a failure, prints the end of every daemon's log (they go with the
/// cluster's temporary directory). Hold it for the test's length.
pub struct LogsOnPanic(Vec<(u64, std::path::PathBuf)>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (id, path) in &self.0 {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(300)..].join("\n");
            eprintln!("===== daemon log of node {id} (last 300 lines) =====\n{tail}");
        }
    }
}

impl DaemonCluster {
    /// Prints the daemons' logs if the test fails while this is held.
    pub fn logs_on_panic(&self) -> LogsOnPanic {
        LogsOnPanic(self.layout.nodes.iter().map(|n| (n.id, n.log_path())).collect())
    }
}
