//! Synchronous replication: what each `synchronous_mode` costs in commit
//! latency and what it keeps when the primary dies, on a local 3-node
//! cluster with real PostgreSQL (release build).
//!
//! Run: `cargo bench --bench synchronous` (add `-- --rounds N`, default 10,
//! and `-- --modes off,on,strict,quorum`, default all four). Each mode gets
//! a fresh cluster with the mode in its dynamic configuration. Once it is
//! healthy and, for `on` and `strict`, a standby answers `GET /sync` with
//! 200 (`GET /quorum` in quorum mode, where the primary waits for any 1 of
//! its 2 standbys), it measures:
//! - commit latency: one client doing 500 autocommit INSERTs on one
//!   connection, then 8 clients doing 200 each on their own connections;
//! - node death under writes, N rounds: a writer inserts unique values
//!   through the current primary; after about 1 s the primary's daemon,
//!   postmaster and every PostgreSQL process are SIGKILLed. Measured: the
//!   time from the kill to the first write a surviving node accepts, and
//!   the acknowledged values (their INSERT returned Ok) missing from the new
//!   primary's table. The killed node is restarted before the next round.
//!
//! Each mode is in the cluster's initial dynamic configuration.
//! `-- --switch-to-strict` starts `strict` under `on` instead and switches
//! with `PATCH /config` once a standby is synchronous.
//!
//! A failed round ends its mode. Every wait has a deadline; the cluster
//! directory is kept, for its logs, when a round failed or lost an
//! acknowledged write (always with `-- --keep`). Each round line gives the
//! wall-clock time of the first write after the kill, to find it in the
//! daemons' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::playground::{LocalCluster, http_get, node_health};
use raftgres::postgres::pidfile::children_of;
use raftgres_storage::SyncMode;
use tokio_postgres::{Client, NoTls};

const EXE: &str = env!("CARGO_BIN_EXE_raftgres");

/// A fresh cluster: one primary, two streaming replicas.
const CLUSTER_UP: Duration = Duration::from_secs(120);
/// The primary's agent makes a standby synchronous in a few turns.
const SYNC_ESTABLISHED: Duration = Duration::from_secs(60);
/// A killed node restarted: rewound if need be, streaming again.
const REJOIN: Duration = Duration::from_secs(120);
/// From the kill to the first write a surviving node accepts.
const FIRST_WRITE: Duration = Duration::from_secs(90);
/// One latency phase, all its commits.
const LATENCY_PHASE: Duration = Duration::from_secs(180);
/// One writer attempt: connect if need be, then INSERT.
const ATTEMPT: Duration = Duration::from_millis(500);
/// Writes before the kill.
const WRITES_BEFORE_KILL: Duration = Duration::from_secs(1);
/// Writes after the first one on the new primary.
const WRITES_AFTER_FAILOVER: Duration = Duration::from_millis(500);
/// A whole node-death round, whatever happens inside it.
const ROUND: Duration = Duration::from_secs(420);
/// A daemon's clean shutdown at the end of a mode.
const DAEMON_EXIT: Duration = Duration::from_secs(60);

const SINGLE_COMMITS: usize = 500;
const CLIENTS: usize = 8;
const COMMITS_PER_CLIENT: usize = 200;

struct Args {
    rounds: usize,
    modes: Vec<SyncMode>,
    switch_to_strict: bool,
    /// Keep every cluster directory, not only those of failed modes.
    keep: bool,
}

fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let rounds = value("--rounds").map(|r| r.parse().expect("--rounds: a number")).unwrap_or(10);
    let modes = value("--modes")
        .map(|m| {
            m.split(',').map(|s| s.trim().parse::<SyncMode>().expect("--modes: off, on, strict, quorum")).collect()
        })
        .unwrap_or_else(|| vec![SyncMode::Off, SyncMode::On, SyncMode::Strict, SyncMode::Quorum]);
    let flag = |name: &str| args.iter().any(|a| a == name);
    Args { rounds, modes, switch_to_strict: flag("--switch-to-strict"), keep: flag("--keep") }
}

/// A running local cluster: its layout and its daemons. Dropping it kills
/// whatever still runs, so that a panic leaves no cluster behind.
struct Cluster {
    c: LocalCluster,
    daemons: BTreeMap<u64, Child>,
}

impl Cluster {
    /// Starts a fresh cluster whose initial dynamic configuration sets
    /// `mode`, in a directory named after `name`.
    fn start(name: &str, mode: SyncMode) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("raftgres-bench-sync-{name}-"))
            .tempdir()
            .context("create a temporary directory")?
            .keep();
        let c = LocalCluster::layout(&dir, 3, "bench").context("lay out the cluster")?;
        c.write_configs(|f| f.dynamic.synchronous_mode = mode).context("write configuration files")?;
        let mut cluster = Cluster { c, daemons: BTreeMap::new() };
        for id in [1, 2, 3] {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let child = self.c.node(id).spawn(Path::new(EXE)).with_context(|| format!("start pg{id}'s daemon"))?;
        self.daemons.insert(id, child);
        Ok(())
    }

    fn ids(&self) -> Vec<u64> {
        self.c.nodes.iter().map(|n| n.id).collect()
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

    fn log_paths(&self) -> String {
        self.c.nodes.iter().map(|n| n.log_path().display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Waits for one primary and streaming replicas on every other node;
/// returns the primary.
async fn healthy(c: &LocalCluster, deadline: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        let mut primary = None;
        let mut streaming = 0;
        let mut seen = Vec::new();
        for n in &c.nodes {
            let h = node_health(&n.api_url()).await;
            match &h {
                Ok(h) if h.primary => primary = Some(n.id),
                Ok(h) if h.replica && h.streaming => streaming += 1,
                _ => {}
            }
            seen.push(format!("{}: {h:?}", n.name));
        }
        if let Some(p) = primary
            && streaming == c.nodes.len() - 1
        {
            return Ok(p);
        }
        if start.elapsed() > deadline {
            bail!("cluster not healthy within {deadline:?}; last seen {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The nodes whose `GET /sync` (quorum mode: `GET /quorum`) answers 200:
/// the synchronous standbys.
async fn sync_standbys(c: &LocalCluster, mode: SyncMode) -> BTreeSet<u64> {
    let path = if mode == SyncMode::Quorum { "quorum" } else { "sync" };
    let mut set = BTreeSet::new();
    for n in &c.nodes {
        if matches!(http_get(&format!("{}/{path}", n.api_url())).await, Ok((200, _))) {
            set.insert(n.id);
        }
    }
    set
}

/// Waits until some node answers `GET /sync` with 200; returns the set.
async fn must_sync(c: &LocalCluster, mode: SyncMode, deadline: Duration) -> anyhow::Result<BTreeSet<u64>> {
    let start = Instant::now();
    loop {
        let set = sync_standbys(c, mode).await;
        if !set.is_empty() {
            return Ok(set);
        }
        if start.elapsed() > deadline {
            bail!("no node answered GET /sync with 200 within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets the synchronous mode at run time (`PATCH /config` on node `id`).
async fn set_mode(c: &LocalCluster, id: u64, mode: SyncMode) -> anyhow::Result<()> {
    let reply = raftgres::http::client::request(
        "PATCH",
        &format!("{}/config", c.node(id).api_url()),
        Some(&c.token),
        &[],
        Some(format!(r#"{{"synchronous_mode":"{mode}"}}"#)),
        Duration::from_secs(30),
    )
    .await
    .context("PATCH /config")?;
    if reply.status != 200 {
        bail!("PATCH /config synchronous_mode={mode}: {} {}", reply.status, reply.body);
    }
    let (status, body) = http_get(&format!("{}/config", c.node(id).api_url())).await.context("GET /config")?;
    let doc: serde_json::Value = serde_json::from_str(&body).context("GET /config: JSON")?;
    if status != 200 || doc["synchronous_mode"] != mode.as_str() {
        bail!("GET /config after PATCH synchronous_mode={mode}: {status} {body}");
    }
    Ok(())
}

async fn connect(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// What the primary's PostgreSQL waits for at commit, as it says itself:
/// `synchronous_standby_names` and each standby's `sync_state`.
async fn waits_for(client: &Client) -> anyhow::Result<String> {
    let read = async {
        let names: String = client.query_one("SHOW synchronous_standby_names", &[]).await?.get(0);
        let standbys: Vec<String> = client
            .query("SELECT application_name || ' ' || sync_state FROM pg_stat_replication ORDER BY 1", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok::<_, tokio_postgres::Error>(format!(
            "synchronous_standby_names = '{names}', pg_stat_replication: {}",
            standbys.join(", ")
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.context("read the primary's settings")?.context("SQL")
}

/// Unique values for the INSERTs of one mode.
struct Values(AtomicI64);

impl Values {
    fn next(&self) -> i64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

struct Latency {
    single: Vec<Duration>,
    multi: Vec<Duration>,
    multi_elapsed: Duration,
}

/// Times each autocommit INSERT of `n` on one connection.
async fn timed_inserts(uri: String, values: Arc<Values>, n: usize) -> anyhow::Result<Vec<Duration>> {
    let client = connect(&uri).await.context("connect to the primary")?;
    let insert = client.prepare("INSERT INTO t VALUES ($1)").await.context("prepare the INSERT")?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.execute(&insert, &[&values.next()]).await.context("INSERT")?;
        times.push(t.elapsed());
    }
    Ok(times)
}

async fn commit_latency(c: &LocalCluster, primary: u64, values: &Arc<Values>) -> anyhow::Result<Latency> {
    let uri = c.pg_uri(primary);
    let single = tokio::time::timeout(LATENCY_PHASE, timed_inserts(uri.clone(), values.clone(), SINGLE_COMMITS))
        .await
        .map_err(|_| anyhow!("{SINGLE_COMMITS} INSERTs on one connection took over {LATENCY_PHASE:?}"))??;
    let start = Instant::now();
    let clients: Vec<_> =
        (0..CLIENTS).map(|_| tokio::spawn(timed_inserts(uri.clone(), values.clone(), COMMITS_PER_CLIENT))).collect();
    let all = async {
        let mut multi = Vec::new();
        for client in clients {
            multi.extend(client.await.context("client task")??);
        }
        anyhow::Ok(multi)
    };
    let multi = tokio::time::timeout(LATENCY_PHASE, all)
        .await
        .map_err(|_| anyhow!("{CLIENTS} clients × {COMMITS_PER_CLIENT} INSERTs took over {LATENCY_PHASE:?}"))??;
    Ok(Latency { single, multi, multi_elapsed: start.elapsed() })
}

/// An INSERT that returned Ok: its value, the node, when.
#[derive(Clone, Copy)]
struct Ack {
    value: i64,
    node: u64,
    at: Instant,
    /// Wall-clock time, to find the moment in the daemons' logs.
    wall: chrono::DateTime<chrono::Utc>,
}

/// One attempt: connects if there is no connection, then INSERTs `value`.
async fn attempt(client: &mut Option<Client>, uri: &str, value: i64) -> anyhow::Result<()> {
    if client.is_none() {
        *client = Some(connect(uri).await?);
    }
    client.as_ref().expect("just connected").execute("INSERT INTO t VALUES ($1)", &[&value]).await?;
    Ok(())
}

/// Inserts unique values until `stop`, starting on `primary`. After an
/// error (or a timeout) it drops the connection and tries the next node,
/// so it finds the new primary after a failover.
async fn writer(
    nodes: Vec<(u64, String)>,
    primary: u64,
    values: Arc<Values>,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) {
    let mut at = nodes.iter().position(|(id, _)| *id == primary).expect("the primary is a node");
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        let (id, uri) = &nodes[at];
        let value = values.next();
        match tokio::time::timeout(ATTEMPT, attempt(&mut client, uri, value)).await {
            Ok(Ok(())) => {
                acks.lock().expect("acks").push(Ack { value, node: *id, at: Instant::now(), wall: chrono::Utc::now() })
            }
            _ => {
                client = None;
                at = (at + 1) % nodes.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

struct Round {
    killed: u64,
    /// `GET /sync` 200 just before the kill.
    sync_before: BTreeSet<u64>,
    new_primary: u64,
    /// Kill → first write a surviving node accepted.
    first_write: Duration,
    first_write_at: chrono::DateTime<chrono::Utc>,
    acked: usize,
    /// Acknowledged values missing from the new primary's table.
    lost: Vec<i64>,
}

impl Round {
    fn new_primary_was_sync(&self) -> bool {
        self.sync_before.contains(&self.new_primary)
    }
}

fn names(ids: &BTreeSet<u64>) -> String {
    if ids.is_empty() { "none".into() } else { ids.iter().map(|id| format!("pg{id}")).collect::<Vec<_>>().join(",") }
}

/// Kills the primary under a writer, measures, restarts the killed node
/// and waits until the cluster is back (healthy, a synchronous standby
/// again in `on` and `strict`).
async fn death_round(cl: &mut Cluster, mode: SyncMode, values: &Arc<Values>) -> anyhow::Result<Round> {
    let primary = healthy(&cl.c, REJOIN).await?;
    let nodes: Vec<(u64, String)> = cl.ids().into_iter().map(|id| (id, cl.c.pg_uri(id))).collect();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(nodes, primary, values.clone(), acks.clone(), stop.clone()));
    // Stops the writer on every way out of this function.
    let _stop = StopOnDrop(stop.clone());

    tokio::time::sleep(WRITES_BEFORE_KILL).await;
    let before = acks.lock().expect("acks").len();
    if before == 0 {
        bail!("the writer had no write acknowledged by pg{primary} in {WRITES_BEFORE_KILL:?}");
    }
    let sync_before = sync_standbys(&cl.c, mode).await;
    let killed_at = Instant::now();
    cl.kill_node(primary);

    let first = loop {
        let found = acks.lock().expect("acks").iter().find(|a| a.node != primary && a.at > killed_at).copied();
        if let Some(a) = found {
            break a;
        }
        if killed_at.elapsed() > FIRST_WRITE {
            bail!("no surviving node accepted a write within {FIRST_WRITE:?} of pg{primary}'s death");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(WRITES_AFTER_FAILOVER).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(ATTEMPT * 4, writing).await.context("the writer did not stop")?.context("writer task")?;

    let acked: Vec<i64> = acks.lock().expect("acks").iter().map(|a| a.value).collect();
    let new_primary = first.node;
    let client = connect(&cl.c.pg_uri(new_primary)).await.context("connect to the new primary")?;
    let rows =
        tokio::time::timeout(Duration::from_secs(30), client.query("SELECT v FROM t WHERE v = ANY($1)", &[&acked]))
            .await
            .context("read the acknowledged values back")?
            .context("SELECT")?;
    let present: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<i64> = acked.iter().copied().filter(|v| !present.contains(v)).collect();
    let round = Round {
        killed: primary,
        sync_before,
        new_primary,
        first_write: first.at - killed_at,
        first_write_at: first.wall,
        acked: acked.len(),
        lost,
    };

    cl.spawn(primary)?;
    healthy(&cl.c, REJOIN).await.with_context(|| format!("after restarting pg{primary}"))?;
    if mode != SyncMode::Off {
        must_sync(&cl.c, mode, SYNC_ESTABLISHED).await.with_context(|| format!("after restarting pg{primary}"))?;
    }
    Ok(round)
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct ModeRun {
    mode: SyncMode,
    latency: Option<Latency>,
    rounds: Vec<Round>,
    failure: Option<String>,
    /// Kept for its logs.
    kept: Option<String>,
}

async fn run_mode(mode: SyncMode, args: &Args) -> ModeRun {
    let mut run = ModeRun { mode, latency: None, rounds: Vec::new(), failure: None, kept: None };
    // See the module's comment.
    let switch_to_strict = mode == SyncMode::Strict && args.switch_to_strict;
    let initial = if switch_to_strict { SyncMode::On } else { mode };
    let mut cl = match Cluster::start(mode.as_str(), initial) {
        Ok(cl) => cl,
        Err(e) => {
            run.failure = Some(format!("{e:#}"));
            return run;
        }
    };
    println!("{mode}: cluster in {}", cl.c.dir.display());
    let values = Arc::new(Values(AtomicI64::new(0)));
    let result = async {
        let primary = healthy(&cl.c, CLUSTER_UP).await?;
        if mode != SyncMode::Off {
            let set = must_sync(&cl.c, mode, SYNC_ESTABLISHED).await?;
            if switch_to_strict {
                set_mode(&cl.c, primary, SyncMode::Strict).await?;
                println!("{mode}: bootstrapped under on, switched to strict with PATCH /config");
            }
            println!("{mode}: primary pg{primary}, synchronous standby {}", names(&set));
        }
        let client = connect(&cl.c.pg_uri(primary)).await.context("connect to the primary")?;
        tokio::time::timeout(Duration::from_secs(30), client.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)"))
            .await
            .context("CREATE TABLE")??;
        println!("{mode}: {}", waits_for(&client).await?);
        let latency = commit_latency(&cl.c, primary, &values).await?;
        println!(
            "{mode}: single client: commit median {:.2} ms, p99 {:.2} ms; {CLIENTS} clients: {:.0} commits/s, median {:.2} ms",
            ms(percentile(&latency.single, 0.5)),
            ms(percentile(&latency.single, 0.99)),
            latency.multi.len() as f64 / latency.multi_elapsed.as_secs_f64(),
            ms(percentile(&latency.multi, 0.5)),
        );
        run.latency = Some(latency);
        for i in 1..=args.rounds {
            let round = tokio::time::timeout(ROUND, death_round(&mut cl, mode, &values))
                .await
                .map_err(|_| anyhow!("round {i} took over {ROUND:?}"))?
                .with_context(|| format!("round {i}"))?;
            println!(
                "{mode}: round {i}: killed pg{} (synchronous standby before: {}), first write on pg{} after {:.2} s \
                 ({}), {} acknowledged, {} lost{}",
                round.killed,
                names(&round.sync_before),
                round.new_primary,
                round.first_write.as_secs_f64(),
                round.first_write_at.format("%H:%M:%S%.3fZ"),
                round.acked,
                round.lost.len(),
                if round.lost.is_empty() {
                    String::new()
                } else {
                    format!(" ({:?}{})", &round.lost[..round.lost.len().min(10)], if round.lost.len() > 10 { " …" } else { "" })
                },
            );
            run.rounds.push(round);
        }
        anyhow::Ok(())
    }
    .await;
    cl.stop().await;
    let lost_any = run.rounds.iter().any(|r| !r.lost.is_empty());
    if let Err(e) = result {
        println!("{mode}: FAILED: {e:#}");
        run.failure = Some(format!("{e:#}"));
    }
    if run.failure.is_some() || lost_any || args.keep {
        println!("{mode}: cluster kept in {} (logs: {})", cl.c.dir.display(), cl.log_paths());
        run.kept = Some(cl.c.dir.display().to_string());
    } else {
        let _ = std::fs::remove_dir_all(&cl.c.dir);
    }
    run
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
        "3 nodes on loopback, default dynamic config but synchronous_mode, synchronous_node_count 1; \
         modes {}, {} node-death rounds each\n",
        args.modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        args.rounds
    );
    let mut runs = Vec::new();
    for mode in args.modes.clone() {
        runs.push(run_mode(mode, &args).await);
        println!();
    }

    let mut bad = false;
    for run in &runs {
        let mode = run.mode;
        let was_sync: Vec<String> = run
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let answer = match (r.new_primary_was_sync(), r.sync_before.is_empty()) {
                    (true, _) => "yes",
                    (false, true) => "no (there was none)",
                    (false, false) => "no",
                };
                format!("round {}: {answer}", i + 1)
            })
            .collect();
        let required = mode != SyncMode::Off;
        let all_sync = run.rounds.iter().all(Round::new_primary_was_sync);
        println!(
            "{mode}: new primary was the synchronous standby before the kill: {}{}",
            if was_sync.is_empty() { "no rounds".into() } else { was_sync.join(", ") },
            if required && !all_sync { " — it must be in this mode" } else { "" }
        );
        bad |= run.failure.is_some() || (required && (!all_sync || run.rounds.iter().any(|r| !r.lost.is_empty())));
    }

    println!(
        "\n| mode | single-client commit median / p99 (ms) | {CLIENTS} clients commits/s | {CLIENTS} clients median (ms) \
         | node death → first write median / max (s) | acknowledged writes lost (total over rounds) | rounds |"
    );
    println!("|---|---|---|---|---|---|---|");
    for run in &runs {
        let (single, throughput, multi) = match &run.latency {
            Some(l) => (
                format!("{:.2} / {:.2}", ms(percentile(&l.single, 0.5)), ms(percentile(&l.single, 0.99))),
                format!("{:.0}", l.multi.len() as f64 / l.multi_elapsed.as_secs_f64()),
                format!("{:.2}", ms(percentile(&l.multi, 0.5))),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let deaths: Vec<Duration> = run.rounds.iter().map(|r| r.first_write).collect();
        let death = if deaths.is_empty() {
            "—".into()
        } else {
            format!(
                "{:.2} / {:.2}",
                percentile(&deaths, 0.5).as_secs_f64(),
                deaths.iter().max().expect("not empty").as_secs_f64()
            )
        };
        let lost: usize = run.rounds.iter().map(|r| r.lost.len()).sum();
        let acked: usize = run.rounds.iter().map(|r| r.acked).sum();
        let done = format!("{}{}", run.rounds.len(), if run.failure.is_some() { " (then failed)" } else { "" });
        println!("| {} | {single} | {throughput} | {multi} | {death} | {lost} of {acked} | {done} |", run.mode);
    }
    for run in &runs {
        if let Some(e) = &run.failure {
            println!("\n{}: failed: {e}", run.mode);
        }
        if let Some(dir) = &run.kept {
            println!("{}: cluster directory kept: {dir}", run.mode);
        }
    }
    if bad {
        std::process::exit(1);
    }
}
