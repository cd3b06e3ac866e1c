//! Scale: Raft commit latency and node-death failover as the membership
//! grows, and the restart of a node after a long Raft log, on local
//! clusters with real PostgreSQL on every node (release build).
//!
//! Run: `cargo bench --bench scale`. Options (defaults in brackets):
//! `--sizes 3,5,7` voters per cluster, each plus `--learners 2`;
//! `--rounds 3` node deaths per size; `--proposals 500` sequential
//! commits; `--log-entries 1000000` Raft entries to produce on the
//! `--log-on 5`-voter cluster (0: skip), within `--log-budget-min 20`
//! minutes (when the budget runs out first, the restart is measured after
//! what was produced, and the time for the full count is extrapolated);
//! `--log-clients 32` concurrent proposers; `--leader-placement any` (or
//! `avoid_primary`), the clusters' `raft.leader_placement`; `--keep` keeps
//! every cluster directory.
//!
//! Each size gets a fresh cluster: the voters are initial members; each
//! learner's daemon starts as a joining node and is added with the admin
//! call `raftctl member add` makes (`AddMember`, not promoted). Every node
//! runs PostgreSQL, learners as replicas too. Measured:
//! - commit latency: `SetMaintenance` admin calls (`raftctl pause` and
//!   `resume`), each one Raft entry, alternating on and off: sequential on
//!   the Raft leader's admin service, sequential through a follower (it
//!   forwards to the leader), and 16 concurrent clients on the leader
//!   (about half of theirs are refused as "unchanged": still one committed
//!   entry each);
//! - node death: the primary's daemon, postmaster and every PostgreSQL
//!   process are SIGKILLed; measured up to the first INSERT that a node
//!   answering `GET /primary` with 200 accepts. The round records whether
//!   the dead node led Raft (with `avoid_primary` it first waits, at most
//!   10 s, for the leadership to leave the primary's node). The killed node
//!   is restarted and the cluster waited for (healthy, every replica
//!   streaming) between rounds;
//! - restart of a follower (a voter that neither leads Raft nor is
//!   primary), before and after the long log: a clean restart (SIGTERM,
//!   which stops its PostgreSQL too, then start) and a crash of the daemon
//!   alone (SIGKILL; its PostgreSQL keeps running). From the start of the
//!   new daemon: its API answers `/liveness` 200, the Raft leader hears its
//!   report (`silent_ms` in the leader's `/patroni`), `/health` 200 and
//!   `/replica` with streaming. After the clean stop the bench opens the
//!   stopped node's store itself and reads the log bounds (is the log
//!   purged?), the snapshot's index, and how long the open takes; it
//!   reports the snapshot file and the sled directory sizes.
//!
//! The long log is produced by `--log-clients` concurrent `SetMaintenance`
//! calls on the leader; maintenance mode is off again before the restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use raftgres::config::LeaderPlacement;
use raftgres::playground::{LocalCluster, http_get, node_health};
use raftgres::postgres::pidfile::children_of;
use raftgres_proto::admin::admin_client::AdminClient;
use raftgres_proto::admin::{AddMemberRequest, SetMaintenanceRequest, StatusRequest};
use tokio_postgres::NoTls;
use tonic::transport::Channel;

const EXE: &str = env!("CARGO_BIN_EXE_raftgres");

/// The voters: one primary, streaming replicas.
const CLUSTER_UP: Duration = Duration::from_secs(300);
/// A learner's daemon answers its admin service.
const DAEMON_UP: Duration = Duration::from_secs(60);
/// A killed or restarted node back as a streaming replica.
const REJOIN: Duration = Duration::from_secs(180);
/// From the kill to the first write on a new primary.
const FIRST_WRITE: Duration = Duration::from_secs(90);
/// One health check or one write attempt.
const ATTEMPT: Duration = Duration::from_millis(500);
/// The Raft leadership leaves the primary's node.
const LEADER_MOVES: Duration = Duration::from_secs(10);
/// One admin call.
const CALL: Duration = Duration::from_secs(10);
/// A restarted daemon reaches every milestone.
const RESTARTED: Duration = Duration::from_secs(180);
/// A daemon's clean shutdown.
const DAEMON_EXIT: Duration = Duration::from_secs(60);

const CONCURRENT_CLIENTS: usize = 16;

struct Args {
    sizes: Vec<usize>,
    learners: usize,
    rounds: usize,
    proposals: usize,
    log_entries: u64,
    log_on: usize,
    log_clients: usize,
    log_budget: Duration,
    placement: LeaderPlacement,
    keep: bool,
}

fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let number = |name: &str, default: u64| {
        value(name)
            .map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name}: a number, not {v:?}")))
            .unwrap_or(default)
    };
    Args {
        sizes: value("--sizes")
            .map(|s| s.split(',').map(|n| n.trim().parse().expect("--sizes: numbers, e.g. 3,5,7")).collect())
            .unwrap_or_else(|| vec![3, 5, 7]),
        learners: number("--learners", 2) as usize,
        rounds: number("--rounds", 3) as usize,
        proposals: number("--proposals", 500) as usize,
        log_entries: number("--log-entries", 1_000_000),
        log_on: number("--log-on", 5) as usize,
        log_clients: number("--log-clients", 32) as usize,
        log_budget: Duration::from_secs(number("--log-budget-min", 20) * 60),
        placement: match value("--leader-placement").as_deref() {
            None | Some("any") => LeaderPlacement::Any,
            Some("avoid_primary") => LeaderPlacement::AvoidPrimary,
            Some(other) => panic!("--leader-placement: any or avoid_primary, not {other:?}"),
        },
        keep: args.iter().any(|a| a == "--keep"),
    }
}

/// The 1-, 5- and 15-minute load averages, as `uptime` prints them.
fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A running local cluster: its layout and its daemons. Dropping it kills
/// whatever still runs, so that a panic leaves no cluster behind.
struct Cluster {
    c: LocalCluster,
    voters: usize,
    daemons: BTreeMap<u64, Child>,
}

impl Cluster {
    /// Lays out `voters` initial members and `learners` joining nodes;
    /// starts nothing.
    fn layout(voters: usize, learners: usize, placement: LeaderPlacement) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("raftgres-bench-scale-{voters}+{learners}-"))
            .tempdir()
            .context("create a temporary directory")?
            .keep();
        let mut c = LocalCluster::layout(&dir, voters + learners, "bench").context("lay out the cluster")?;
        for n in c.nodes.iter_mut().skip(voters) {
            n.joining = true;
        }
        c.write_configs(|f| f.raft.leader_placement = placement).context("write configuration files")?;
        Ok(Cluster { c, voters, daemons: BTreeMap::new() })
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let child = self.c.node(id).spawn(Path::new(EXE)).with_context(|| format!("start pg{id}'s daemon"))?;
        self.daemons.insert(id, child);
        Ok(())
    }

    fn ids(&self) -> Vec<u64> {
        self.c.nodes.iter().map(|n| n.id).collect()
    }

    fn voter_ids(&self) -> Vec<u64> {
        self.ids().into_iter().take(self.voters).collect()
    }

    fn learner_ids(&self) -> Vec<u64> {
        self.ids().into_iter().skip(self.voters).collect()
    }

    /// SIGKILLs node `id`'s daemon, its postmaster and every PostgreSQL
    /// process under the postmaster; reaps the daemon.
    fn kill_node(&mut self, id: u64) {
        let pm = self.c.node(id).postmaster_pid();
        let backends = pm.map(children_of).unwrap_or_default();
        if let Some(mut daemon) = self.daemons.remove(&id) {
            let _ = daemon.kill();
            for pid in pm.into_iter().chain(backends) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = daemon.wait();
        }
    }

    /// SIGKILLs node `id`'s daemon alone; its PostgreSQL keeps running.
    fn kill_daemon(&mut self, id: u64) {
        if let Some(mut daemon) = self.daemons.remove(&id) {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }

    /// SIGTERMs node `id`'s daemon and waits for it to exit.
    async fn stop_daemon(&mut self, id: u64) -> anyhow::Result<Duration> {
        let mut daemon = self.daemons.remove(&id).ok_or_else(|| anyhow!("pg{id} has no daemon"))?;
        let t = Instant::now();
        let _ = kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM);
        while daemon.try_wait()?.is_none() {
            if t.elapsed() > DAEMON_EXIT {
                let _ = daemon.kill();
                let _ = daemon.wait();
                bail!("pg{id}'s daemon did not exit within {DAEMON_EXIT:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(t.elapsed())
    }

    /// SIGTERMs every daemon and waits for each, then kills what is left.
    async fn stop(&mut self) {
        for child in self.daemons.values() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < DAEMON_EXIT
            && self.daemons.values_mut().any(|child| child.try_wait().ok().flatten().is_none())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill_all();
    }

    fn kill_all(&mut self) {
        for id in self.ids() {
            self.kill_node(id);
            if let Some(pm) = self.c.node(id).postmaster_pid() {
                let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Waits for one primary among `ids` and streaming replicas on every other
/// one; returns the primary.
async fn healthy(c: &LocalCluster, ids: &[u64], deadline: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        let checks = ids.iter().map(|id| async move { (*id, node_health(&c.node(*id).api_url()).await) });
        let seen = futures::future::join_all(checks).await;
        let primaries: Vec<u64> =
            seen.iter().filter(|(_, h)| h.as_ref().is_ok_and(|h| h.primary)).map(|(id, _)| *id).collect();
        let streaming =
            seen.iter().filter(|(_, h)| h.as_ref().is_ok_and(|h| !h.primary && h.replica && h.streaming)).count();
        if primaries.len() == 1 && streaming == ids.len() - 1 {
            return Ok(primaries[0]);
        }
        if start.elapsed() > deadline {
            let seen: Vec<String> = seen.iter().map(|(id, h)| format!("pg{id}: {h:?}")).collect();
            bail!("not healthy within {deadline:?}; last seen {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node `id`'s `/patroni` document.
async fn patroni(c: &LocalCluster, id: u64) -> Option<serde_json::Value> {
    let (status, body) = http_get(&format!("{}/patroni", c.node(id).api_url())).await.ok()?;
    if status != 200 && status != 503 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// The Raft leader as the first of `ask` that knows one reports it.
async fn raft_leader(c: &LocalCluster, ask: &[u64]) -> Option<u64> {
    for id in ask {
        if let Some(l) = patroni(c, *id).await.and_then(|d| d["raftgres"]["raft"]["leader"].as_u64()) {
            return Some(l);
        }
    }
    None
}

/// The highest Raft index any node reports applied.
async fn applied(c: &LocalCluster) -> u64 {
    let reads = c.nodes.iter().map(|n| async move {
        patroni(c, n.id).await.and_then(|d| d["raftgres"]["raft"]["applied"].as_u64()).unwrap_or(0)
    });
    futures::future::join_all(reads).await.into_iter().max().unwrap_or(0)
}

/// An admin client of the daemon at `raft_addr`.
async fn admin(raft_addr: &str) -> anyhow::Result<AdminClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}"))
        .context("admin endpoint")?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connect to the admin service at {raft_addr}"))?;
    Ok(AdminClient::new(channel))
}

/// A request with the cluster token and a deadline.
fn authorized<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("a token is ASCII"));
    r.set_timeout(CALL);
    r
}

/// One `SetMaintenance` call: Ok when it committed an entry, whether it
/// changed the mode or was refused as unchanged.
async fn maintenance(client: &mut AdminClient<Channel>, token: &str, on: bool) -> Result<(), tonic::Status> {
    match client.set_maintenance(authorized(token, SetMaintenanceRequest { on })).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Ok(()),
        Err(s) => Err(s),
    }
}

/// Starts the voters, then each learner: its daemon, then `AddMember`
/// through the leader; waits until all are healthy. Returns the time.
async fn bring_up(cl: &mut Cluster) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for id in cl.voter_ids() {
        cl.spawn(id)?;
    }
    let voters = cl.voter_ids();
    healthy(&cl.c, &voters, CLUSTER_UP).await.context("the voters")?;
    for id in cl.learner_ids() {
        cl.spawn(id)?;
        let node = cl.c.node(id).clone();
        let t = Instant::now();
        loop {
            let answered = async {
                admin(&node.raft_addr()).await?.status(authorized(&cl.c.token, StatusRequest {})).await?;
                anyhow::Ok(())
            };
            if answered.await.is_ok() {
                break;
            }
            if t.elapsed() > DAEMON_UP {
                bail!("pg{id}'s admin service did not answer within {DAEMON_UP:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let leader = raft_leader(&cl.c, &voters).await.ok_or_else(|| anyhow!("no Raft leader known"))?;
        let mut client = admin(&cl.c.node(leader).raft_addr()).await?;
        let mut req = authorized(
            &cl.c.token,
            AddMemberRequest {
                id,
                name: node.name.clone(),
                raft_addr: node.raft_addr(),
                api_url: node.api_url(),
                promote: false,
            },
        );
        req.set_timeout(Duration::from_secs(60));
        let reply = client.add_member(req).await.with_context(|| format!("add pg{id} as a learner"))?;
        println!("  {}", reply.into_inner().message);
    }
    healthy(&cl.c, &cl.ids(), CLUSTER_UP).await.context("voters and learners")?;
    Ok(start.elapsed())
}

/// Raft roles as the cluster status reports them: (voters, learners).
async fn roles(cl: &Cluster) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let leader = raft_leader(&cl.c, &cl.voter_ids()).await.ok_or_else(|| anyhow!("no Raft leader known"))?;
    let status = admin(&cl.c.node(leader).raft_addr())
        .await?
        .status(authorized(&cl.c.token, StatusRequest {}))
        .await
        .context("status")?
        .into_inner();
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for m in status.members {
        match m.raft_role.as_str() {
            "learner" => learners.push(m.name),
            "leader" | "follower" => voters.push(m.name),
            other => bail!("{} has Raft role {other:?}", m.name),
        }
    }
    Ok((voters, learners))
}

struct Latency {
    leader: Vec<Duration>,
    follower: Vec<Duration>,
    concurrent: Vec<Duration>,
    concurrent_elapsed: Duration,
}

async fn sequential(addr: &str, token: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut client = admin(addr).await?;
    let mut times = Vec::with_capacity(n);
    // Even: maintenance mode ends as it started, off.
    for i in 0..n.next_multiple_of(2) {
        let t = Instant::now();
        maintenance(&mut client, token, i % 2 == 0).await.context("SetMaintenance")?;
        times.push(t.elapsed());
    }
    Ok(times)
}

async fn commit_latency(cl: &Cluster, n: usize) -> anyhow::Result<Latency> {
    let c = &cl.c;
    let leader = raft_leader(c, &cl.voter_ids()).await.ok_or_else(|| anyhow!("no Raft leader known"))?;
    let follower = *cl.voter_ids().iter().find(|id| **id != leader).expect("more than one voter");
    let leader_addr = c.node(leader).raft_addr();
    let leader_times = sequential(&leader_addr, &c.token, n).await.context("on the leader")?;
    let follower_times =
        sequential(&c.node(follower).raft_addr(), &c.token, n / 2).await.context("through a follower")?;
    let start = Instant::now();
    let clients: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|k| {
            let (addr, token) = (leader_addr.clone(), c.token.clone());
            tokio::spawn(async move {
                let mut client = admin(&addr).await?;
                let mut times = Vec::new();
                for i in 0..n / CONCURRENT_CLIENTS * 2 {
                    let t = Instant::now();
                    maintenance(&mut client, &token, (i + k) % 2 == 0).await.context("SetMaintenance")?;
                    times.push(t.elapsed());
                }
                anyhow::Ok(times)
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for client in clients {
        concurrent.extend(client.await.context("client task")??);
    }
    let concurrent_elapsed = start.elapsed();
    let mut client = admin(&leader_addr).await?;
    maintenance(&mut client, &c.token, false).await.context("maintenance off")?;
    Ok(Latency { leader: leader_times, follower: follower_times, concurrent, concurrent_elapsed })
}

struct Death {
    killed: u64,
    led_raft: bool,
    new_primary: u64,
    new_primary_learner: bool,
    first_write: Duration,
    load: String,
}

/// The first INSERT accepted by a node that answers `/primary` with 200,
/// trying every `poll`: (node, time since `since`).
async fn first_write(c: &LocalCluster, since: Instant) -> anyhow::Result<(u64, Duration)> {
    loop {
        let checks = c.nodes.iter().map(|n| async move {
            let url = format!("{}/primary", n.api_url());
            let r = raftgres::http::client::request("GET", &url, None, &[], None, ATTEMPT).await;
            (n.id, r.is_ok_and(|r| r.status == 200))
        });
        for (id, primary) in futures::future::join_all(checks).await {
            if !primary {
                continue;
            }
            let uri = c.pg_uri(id);
            let attempt = async {
                let (client, conn) = tokio_postgres::connect(&uri, NoTls).await.ok()?;
                tokio::spawn(conn);
                client.execute("INSERT INTO t VALUES (1)", &[]).await.ok()
            };
            if tokio::time::timeout(ATTEMPT, attempt).await.ok().flatten().is_some() {
                return Ok((id, since.elapsed()));
            }
        }
        if since.elapsed() > FIRST_WRITE {
            bail!("no write accepted within {FIRST_WRITE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn death_round(cl: &mut Cluster, placement: LeaderPlacement) -> anyhow::Result<Death> {
    let all = cl.ids();
    let primary = healthy(&cl.c, &all, REJOIN).await?;
    let others: Vec<u64> = all.iter().copied().filter(|id| *id != primary).collect();
    let t = Instant::now();
    while placement == LeaderPlacement::AvoidPrimary
        && raft_leader(&cl.c, &others).await.is_none_or(|l| l == primary)
        && t.elapsed() < LEADER_MOVES
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let led_raft = raft_leader(&cl.c, &others).await == Some(primary);
    let load = load();
    let killed_at = Instant::now();
    cl.kill_node(primary);
    let (new_primary, first_write) = first_write(&cl.c, killed_at).await?;
    cl.spawn(primary)?;
    healthy(&cl.c, &all, REJOIN).await.with_context(|| format!("after restarting pg{primary}"))?;
    Ok(Death {
        killed: primary,
        led_raft,
        new_primary,
        new_primary_learner: cl.learner_ids().contains(&new_primary),
        first_write,
        load,
    })
}

/// How a follower is restarted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    /// SIGTERM: the daemon stops its PostgreSQL too.
    Clean,
    /// SIGKILL of the daemon alone.
    Crash,
}

/// What the stopped node's store held, read by opening it.
struct Stored {
    open: Duration,
    /// Last purged and last log index.
    log: (Option<u64>, Option<u64>),
    snapshot_index: Option<u64>,
}

struct Restart {
    how: Stop,
    node: u64,
    /// SIGTERM → the daemon exited.
    stopped_in: Option<Duration>,
    stored: Option<Stored>,
    snapshot_bytes: u64,
    raft_dir_bytes: u64,
    /// From the new daemon's start.
    api: Duration,
    reported: Duration,
    pg_up: Duration,
    streaming: Duration,
    load: String,
}

/// The bytes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// The node's Raft data directory (`raft-v<N>`).
fn raft_dir(c: &LocalCluster, id: u64) -> PathBuf {
    c.node(id).dir.join(raftgres_storage::ondisk::DataVersion::CURRENT.dir_name())
}

/// Opens a stopped node's store, reads its log bounds and its snapshot,
/// and closes it again.
async fn read_store(c: &LocalCluster, id: u64) -> anyhow::Result<Stored> {
    let (dir, cluster) = (c.node(id).dir.clone(), c.cluster_id.clone());
    let t = Instant::now();
    let (mut log, mut sm) =
        tokio::task::spawn_blocking(move || raftgres_storage::Store::open(&dir, &cluster, id)).await??;
    let open = t.elapsed();
    let state = log.get_log_state().await.map_err(|e| anyhow!("read the log state: {e}"))?;
    let snapshot = sm.get_current_snapshot().await.map_err(|e| anyhow!("read the snapshot: {e}"))?;
    let stored = Stored {
        open,
        log: (state.last_purged_log_id.map(|l| l.index), state.last_log_id.map(|l| l.index)),
        snapshot_index: snapshot.and_then(|s| s.meta.last_log_id).map(|l| l.index),
    };
    let probe = sm.release_probe();
    drop((log, sm));
    let t = Instant::now();
    while !probe.is_released() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("the store of pg{id} stayed open");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(stored)
}

/// Restarts follower `id` and times its way back.
async fn restart(cl: &mut Cluster, id: u64, how: Stop) -> anyhow::Result<Restart> {
    let c = cl.c.clone();
    let load = load();
    let stopped_in = match how {
        Stop::Clean => Some(cl.stop_daemon(id).await?),
        Stop::Crash => {
            cl.kill_daemon(id);
            None
        }
    };
    let stored = if how == Stop::Clean { Some(read_store(&c, id).await?) } else { None };
    let raft = raft_dir(&c, id);
    let snapshot_bytes = std::fs::metadata(raft.join("snapshot")).map(|m| m.len()).unwrap_or(0);
    let raft_dir_bytes = du(&raft);
    let others: Vec<u64> = cl.voter_ids().into_iter().filter(|n| *n != id).collect();
    let leader = raft_leader(&c, &others).await.ok_or_else(|| anyhow!("no Raft leader known"))?;
    let api_url = c.node(id).api_url();

    let start = Instant::now();
    cl.spawn(id)?;
    let (mut api, mut reported, mut pg_up, mut streaming) = (None, None, None, None);
    while api.is_none() || reported.is_none() || pg_up.is_none() || streaming.is_none() {
        if start.elapsed() > RESTARTED {
            bail!(
                "pg{id} restarted ({how:?}): after {RESTARTED:?} API {api:?}, reported {reported:?}, PostgreSQL up \
                 {pg_up:?}, streaming {streaming:?}"
            );
        }
        let since = start.elapsed();
        if api.is_none() && matches!(http_get(&format!("{api_url}/liveness")).await, Ok((200, _))) {
            api = Some(since);
        }
        if reported.is_none()
            && let Some(doc) = patroni(&c, leader).await
            && let Some(silent) = doc["raftgres"]["silent_ms"][id.to_string()].as_u64()
            && Duration::from_millis(silent) < start.elapsed()
        {
            // The leader heard from it after it started.
            reported = Some(start.elapsed() - Duration::from_millis(silent));
        }
        if pg_up.is_none() && matches!(http_get(&format!("{api_url}/health")).await, Ok((200, _))) {
            pg_up = Some(since);
        }
        if streaming.is_none() && node_health(&api_url).await.is_ok_and(|h| h.replica && h.streaming) {
            streaming = Some(since);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Restart {
        how,
        node: id,
        stopped_in,
        stored,
        snapshot_bytes,
        raft_dir_bytes,
        api: api.expect("set"),
        reported: reported.expect("set"),
        pg_up: pg_up.expect("set"),
        streaming: streaming.expect("set"),
        load,
    })
}

/// A voter that neither leads Raft nor is primary.
async fn quiet_follower(cl: &Cluster) -> anyhow::Result<u64> {
    let primary = healthy(&cl.c, &cl.ids(), REJOIN).await?;
    let leader = raft_leader(&cl.c, &cl.voter_ids()).await.ok_or_else(|| anyhow!("no Raft leader known"))?;
    cl.voter_ids()
        .into_iter()
        .rev()
        .find(|id| *id != primary && *id != leader)
        .ok_or_else(|| anyhow!("no voter apart from the primary and the leader"))
}

struct Fill {
    target: u64,
    clients: usize,
    produced: u64,
    elapsed: Duration,
    calls: u64,
    errors: u64,
    loads: Vec<String>,
}

impl Fill {
    fn rate(&self) -> f64 {
        self.produced as f64 / self.elapsed.as_secs_f64()
    }
}

/// Commits `target` Raft entries (or as many as `budget` allows) with
/// concurrent `SetMaintenance` calls on the leader.
async fn fill_log(cl: &Cluster, target: u64, clients: usize, budget: Duration) -> anyhow::Result<Fill> {
    let c = &cl.c;
    let leader = raft_leader(c, &cl.voter_ids()).await.ok_or_else(|| anyhow!("no Raft leader known"))?;
    let addr = c.node(leader).raft_addr();
    let first = applied(c).await;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let (addr, token) = (addr.clone(), c.token.clone());
            let (stop, calls, errors) = (stop.clone(), calls.clone(), errors.clone());
            tokio::spawn(async move {
                let mut client = admin(&addr).await?;
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    match maintenance(&mut client, &token, i % 2 == 0).await {
                        Ok(()) => calls.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let start = Instant::now();
    let mut loads = Vec::new();
    let mut last_print = Instant::now();
    let produced = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let produced = applied(c).await.saturating_sub(first);
        if last_print.elapsed() >= Duration::from_secs(30) {
            last_print = Instant::now();
            loads.push(load());
            println!(
                "  log: {produced} entries in {:.0} s ({:.0}/s), {} errors, load {}",
                start.elapsed().as_secs_f64(),
                produced as f64 / start.elapsed().as_secs_f64(),
                errors.load(Ordering::Relaxed),
                load()
            );
        }
        if produced >= target || start.elapsed() >= budget {
            break produced;
        }
    };
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.context("proposer task")??;
    }
    let elapsed = start.elapsed();
    let mut client = admin(&addr).await?;
    maintenance(&mut client, &c.token, false).await.context("maintenance off")?;
    Ok(Fill {
        target,
        clients,
        produced,
        elapsed,
        calls: calls.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        loads,
    })
}

struct SizeRun {
    voters: usize,
    learners: usize,
    up: Option<Duration>,
    roles: Option<(Vec<String>, Vec<String>)>,
    latency: Option<Latency>,
    deaths: Vec<Death>,
    restarts: Vec<(&'static str, Restart)>,
    fill: Option<Fill>,
    failure: Option<String>,
}

async fn run_size(voters: usize, args: &Args) -> SizeRun {
    let mut run = SizeRun {
        voters,
        learners: args.learners,
        up: None,
        roles: None,
        latency: None,
        deaths: Vec::new(),
        restarts: Vec::new(),
        fill: None,
        failure: None,
    };
    let tag = format!("{voters}+{}", args.learners);
    let mut cl = match Cluster::layout(voters, args.learners, args.placement) {
        Ok(cl) => cl,
        Err(e) => {
            run.failure = Some(format!("{e:#}"));
            return run;
        }
    };
    println!("{tag}: cluster in {}, load {}", cl.c.dir.display(), load());
    let result = async {
        run.up = Some(bring_up(&mut cl).await?);
        let primary = healthy(&cl.c, &cl.ids(), REJOIN).await?;
        let client = {
            let (client, conn) = tokio_postgres::connect(&cl.c.pg_uri(primary), NoTls).await?;
            tokio::spawn(conn);
            client
        };
        client.batch_execute("CREATE TABLE t (v int)").await.context("CREATE TABLE")?;
        let roles = roles(&cl).await?;
        println!(
            "{tag}: up after {:.1} s: voters {}, learners {}; primary pg{primary}",
            run.up.expect("set").as_secs_f64(),
            roles.0.join(","),
            roles.1.join(",")
        );
        run.roles = Some(roles);

        let latency = commit_latency(&cl, args.proposals).await?;
        println!(
            "{tag}: commit on the leader p50 {:.2} ms p99 {:.2} ms; through a follower p50 {:.2} ms; \
             {CONCURRENT_CLIENTS} clients {:.0}/s p50 {:.2} ms (load {})",
            ms(percentile(&latency.leader, 0.5)),
            ms(percentile(&latency.leader, 0.99)),
            ms(percentile(&latency.follower, 0.5)),
            latency.concurrent.len() as f64 / latency.concurrent_elapsed.as_secs_f64(),
            ms(percentile(&latency.concurrent, 0.5)),
            load()
        );
        run.latency = Some(latency);

        for i in 1..=args.rounds {
            let d = death_round(&mut cl, args.placement).await.with_context(|| format!("node death round {i}"))?;
            println!(
                "{tag}: death {i}: killed pg{} ({}), first write on pg{}{} after {:.2} s (load {})",
                d.killed,
                if d.led_raft { "it led Raft" } else { "another node led Raft" },
                d.new_primary,
                if d.new_primary_learner { ", a learner" } else { "" },
                d.first_write.as_secs_f64(),
                d.load
            );
            run.deaths.push(d);
        }

        if voters == args.log_on && args.log_entries > 0 {
            for how in [Stop::Clean, Stop::Crash] {
                let id = quiet_follower(&cl).await?;
                let r = restart(&mut cl, id, how).await.with_context(|| format!("restart pg{id} ({how:?})"))?;
                print_restart(&tag, "short log", &r);
                run.restarts.push(("short log", r));
            }
            println!(
                "{tag}: producing {} Raft entries with {} clients (budget {} min)",
                args.log_entries,
                args.log_clients,
                args.log_budget.as_secs() / 60
            );
            let fill = fill_log(&cl, args.log_entries, args.log_clients, args.log_budget).await?;
            println!(
                "{tag}: {} entries in {:.0} s ({:.0}/s; {} calls answered, {} errors){}",
                fill.produced,
                fill.elapsed.as_secs_f64(),
                fill.rate(),
                fill.calls,
                fill.errors,
                if fill.produced < fill.target {
                    format!(
                        "; the budget ran out: {} would take about {:.0} min at this rate",
                        fill.target,
                        fill.target as f64 / fill.rate() / 60.0
                    )
                } else {
                    String::new()
                }
            );
            run.fill = Some(fill);
            healthy(&cl.c, &cl.ids(), REJOIN).await.context("after the long log")?;
            for how in [Stop::Clean, Stop::Crash] {
                let id = quiet_follower(&cl).await?;
                let r = restart(&mut cl, id, how).await.with_context(|| format!("restart pg{id} ({how:?})"))?;
                print_restart(&tag, "long log", &r);
                run.restarts.push(("long log", r));
            }
        }
        anyhow::Ok(())
    }
    .await;
    cl.stop().await;
    if let Err(e) = result {
        println!("{tag}: FAILED: {e:#}");
        run.failure = Some(format!("{e:#}"));
    }
    if run.failure.is_some() || args.keep {
        println!("{tag}: cluster kept in {} (daemon.log in each node's directory)", cl.c.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&cl.c.dir);
    }
    run
}

fn print_restart(tag: &str, log: &str, r: &Restart) {
    let stored = match &r.stored {
        Some(s) => format!(
            "store opened offline in {:.1} ms: log purged up to {:?}, last {:?}, snapshot at {:?}; ",
            ms(s.open),
            s.log.0,
            s.log.1,
            s.snapshot_index
        ),
        None => String::new(),
    };
    println!(
        "{tag}: {log}: {:?} restart of pg{}{}: {stored}snapshot {} B, raft dir {:.1} MiB; API after {:.3} s, reported \
         to the leader after {:.3} s, PostgreSQL up after {:.3} s, streaming after {:.3} s (load {})",
        r.how,
        r.node,
        r.stopped_in.map(|d| format!(" (stopped in {:.2} s)", d.as_secs_f64())).unwrap_or_default(),
        r.snapshot_bytes,
        r.raft_dir_bytes as f64 / 1048576.0,
        r.api.as_secs_f64(),
        r.reported.as_secs_f64(),
        r.pg_up.as_secs_f64(),
        r.streaming.as_secs_f64(),
        r.load
    );
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let rank = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = args();
    println!(
        "clusters of {} voters, each plus {} learners, on loopback with PostgreSQL on every node; default dynamic \
         config, raft.leader_placement {:?}; {} node deaths per size; load average at start {}\n",
        args.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        args.learners,
        args.placement,
        args.rounds,
        load()
    );
    let mut runs = Vec::new();
    for voters in args.sizes.clone() {
        runs.push(run_size(voters, &args).await);
        println!();
    }

    println!("load average at end {}\n", load());
    println!(
        "| voters + learners | up (s) | commit on the leader p50 / p99 (ms) | through a follower p50 / p99 (ms) | \
         {CONCURRENT_CLIENTS} clients commits/s, p50 (ms) | node death → first write median / max (s) | … the dead \
         node led Raft (rounds, median s) | … another node led Raft (rounds, median s) | new primary a learner |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for run in &runs {
        let up = run.up.map(|d| format!("{:.1}", d.as_secs_f64())).unwrap_or_else(|| "—".into());
        let (leader, follower, concurrent) = match &run.latency {
            Some(l) => (
                format!("{:.2} / {:.2}", ms(percentile(&l.leader, 0.5)), ms(percentile(&l.leader, 0.99))),
                format!("{:.2} / {:.2}", ms(percentile(&l.follower, 0.5)), ms(percentile(&l.follower, 0.99))),
                format!(
                    "{:.0}, {:.2}",
                    l.concurrent.len() as f64 / l.concurrent_elapsed.as_secs_f64(),
                    ms(percentile(&l.concurrent, 0.5))
                ),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let deaths: Vec<Duration> = run.deaths.iter().map(|d| d.first_write).collect();
        let death = if deaths.is_empty() {
            "—".into()
        } else {
            format!(
                "{:.2} / {:.2}",
                percentile(&deaths, 0.5).as_secs_f64(),
                deaths.iter().max().expect("some").as_secs_f64()
            )
        };
        let split = |led: bool| {
            let v: Vec<Duration> = run.deaths.iter().filter(|d| d.led_raft == led).map(|d| d.first_write).collect();
            if v.is_empty() { "0".into() } else { format!("{}, {:.2}", v.len(), percentile(&v, 0.5).as_secs_f64()) }
        };
        let learner = run.deaths.iter().filter(|d| d.new_primary_learner).count();
        println!(
            "| {} + {}{} | {up} | {leader} | {follower} | {concurrent} | {death} | {} | {} | {learner} of {} |",
            run.voters,
            run.learners,
            if run.failure.is_some() { " (failed)" } else { "" },
            split(true),
            split(false),
            run.deaths.len()
        );
    }

    let with_restarts: Vec<&SizeRun> = runs.iter().filter(|r| !r.restarts.is_empty()).collect();
    for run in with_restarts {
        println!();
        if let Some(f) = &run.fill {
            println!(
                "{} + {}: {} Raft entries produced in {:.0} s ({:.0}/s, {} concurrent SetMaintenance clients){}",
                run.voters,
                run.learners,
                f.produced,
                f.elapsed.as_secs_f64(),
                f.rate(),
                f.clients,
                if f.produced < f.target {
                    format!("; {} would take about {:.0} min", f.target, f.target as f64 / f.rate() / 60.0)
                } else {
                    String::new()
                }
            );
            if !f.loads.is_empty() {
                println!("load averages while producing: {}", f.loads.join("; "));
            }
        }
        println!(
            "\n| log | restart | Raft log on disk after a clean stop (purged up to / last) | snapshot at index | \
             snapshot file (KiB) | sled directory (MiB) | store open, offline (ms) | API answers (s) | reported to \
             the leader (s) | PostgreSQL up (s) | streaming (s) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (log, r) in &run.restarts {
            let (bounds, snap, open) = match &r.stored {
                Some(s) => (
                    format!("{} / {}", opt(s.log.0), opt(s.log.1)),
                    opt(s.snapshot_index),
                    format!("{:.1}", ms(s.open)),
                ),
                None => ("—".into(), "—".into(), "—".into()),
            };
            println!(
                "| {log} | {} | {bounds} | {snap} | {:.1} | {:.1} | {open} | {:.3} | {:.3} | {:.3} | {:.3} |",
                match r.how {
                    Stop::Clean => "clean (SIGTERM)",
                    Stop::Crash => "daemon crash (SIGKILL)",
                },
                r.snapshot_bytes as f64 / 1024.0,
                r.raft_dir_bytes as f64 / 1048576.0,
                r.api.as_secs_f64(),
                r.reported.as_secs_f64(),
                r.pg_up.as_secs_f64(),
                r.streaming.as_secs_f64()
            );
        }
    }
    let failed: Vec<String> =
        runs.iter().filter_map(|r| r.failure.as_ref().map(|e| format!("{} + {}: {e}", r.voters, r.learners))).collect();
    if !failed.is_empty() {
        println!("\nfailed:\n{}", failed.join("\n"));
        std::process::exit(1);
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}
