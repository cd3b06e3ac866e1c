//! Switchover seen by a client that finds the primary only through the
//! health checks, as HAProxy does, on a local 3-node cluster with real
//! PostgreSQL (release build).
//!
//! Run: `cargo bench --bench switchover` (add `-- --rounds N`, default 10,
//! `-- --clients K`, default 2, `-- --poll-ms P`, default 50, and `-- --keep`
//! to keep the cluster directory whatever happens).
//!
//! One cluster serves every round. A prober asks every node's `GET /primary`
//! every P ms, and at once when a writer asks after an error. Each of K
//! writers holds one connection to a node the last probe answered 200 for,
//! and INSERTs unique values (autocommit) as fast as they are acknowledged.
//! After an error the writer drops its connection and waits for a probe
//! that started after the error before it connects again; it never tries
//! the other nodes' PostgreSQL on its own. It also drops its connection
//! when its node answers `/primary` with anything but 200 (HAProxy's
//! `on-marked-down shutdown-sessions`).
//!
//! Each round requests `POST /switchover` from the primary to the next node
//! (1 → 2 → 3 → 1 …) while the writers run, and records for every attempt
//! the node, the time it was sent and the time it returned. Measured:
//! - the longest gap between two acknowledged writes (of any writer);
//! - the failed attempts and their kinds: a clean error is a refused,
//!   reset or closed connection, "the database system is shutting down",
//!   "terminating connection due to administrator command" or a read-only
//!   transaction; anything else (a timeout included: its outcome is
//!   unknown) is reported as unexpected;
//! - violations: a write acknowledged by the old primary after the new
//!   primary's first acknowledged write. "sent after" counts those whose
//!   INSERT was sent after that first acknowledgement (certain violations);
//!   "in flight" those sent before and acknowledged after;
//! - acknowledged values missing from the new primary's table (`SELECT`),
//!   per round and, at the end, every round's values on the final primary.
//!
//! The cluster directory is kept, with the daemons' logs, when a round
//! failed, had a violation, lost a write or saw an unexpected error. Each
//! round line gives the wall-clock time of the request, to find it in the
//! logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::playground::{LocalCluster, node_health};
use tokio::sync::{Notify, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const EXE: &str = env!("CARGO_BIN_EXE_raftgres");

/// A fresh cluster: one primary, two streaming replicas.
const CLUSTER_UP: Duration = Duration::from_secs(120);
/// After a switchover: the old primary back as a streaming replica.
const SETTLED: Duration = Duration::from_secs(120);
/// One health check (HAProxy's `timeout check`).
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// One writer attempt: a connect, or an INSERT.
const ATTEMPT: Duration = Duration::from_secs(1);
/// Writes before the request.
const WRITES_BEFORE: Duration = Duration::from_secs(1);
/// Writes after the first one on the new primary.
const WRITES_AFTER: Duration = Duration::from_secs(1);
/// From the request to the new primary's first acknowledged write.
const FIRST_WRITE: Duration = Duration::from_secs(60);
/// The `POST /switchover` call.
const REQUEST: Duration = Duration::from_secs(60);
/// After an error a writer asks for a probe at once; the prober still
/// leaves this much between two probes.
const MIN_PROBE_SPACING: Duration = Duration::from_millis(10);
/// A daemon's clean shutdown at the end.
const DAEMON_EXIT: Duration = Duration::from_secs(60);

/// The switchover figures of `cargo bench --bench failover` in
/// docs/benchmarks.md (its latest run, 2026-11-30), whose client retries
/// against both nodes' PostgreSQL in turn: longest gap, median and max.
const FAILOVER_BENCH_GAP: (f64, f64) = (0.210, 0.277);

struct Args {
    rounds: usize,
    clients: usize,
    poll: Duration,
    keep: bool,
}

fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    Args {
        rounds: value("--rounds").map(|r| r.parse().expect("--rounds: a number")).unwrap_or(10),
        clients: value("--clients").map(|r| r.parse().expect("--clients: a number")).unwrap_or(2),
        poll: Duration::from_millis(value("--poll-ms").map(|r| r.parse().expect("--poll-ms: a number")).unwrap_or(50)),
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
    daemons: BTreeMap<u64, Child>,
}

impl Cluster {
    fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("raftgres-bench-switchover-")
            .tempdir()
            .context("create a temporary directory")?
            .keep();
        let c = LocalCluster::layout(&dir, 3, "bench").context("lay out the cluster")?;
        c.write_configs(|_| {}).context("write configuration files")?;
        let mut daemons = BTreeMap::new();
        for n in &c.nodes {
            daemons.insert(n.id, n.spawn(Path::new(EXE)).with_context(|| format!("start {}'s daemon", n.name))?);
        }
        Ok(Cluster { c, daemons })
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
        for (_, mut child) in std::mem::take(&mut self.daemons) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for n in &self.c.nodes {
            if let Some(pm) = n.postmaster_pid() {
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

async fn connect(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// One round of health checks: each node's `GET /primary` status, `None`
/// when it did not answer.
#[derive(Clone, Debug)]
struct Probe {
    started: Instant,
    answers: Vec<(u64, Option<u16>)>,
}

impl Probe {
    fn primaries(&self) -> Vec<u64> {
        self.answers.iter().filter(|(_, s)| *s == Some(200)).map(|(id, _)| *id).collect()
    }

    /// `id` answered, and not with 200.
    fn marked_down(&self, id: u64) -> bool {
        self.answers.iter().any(|(n, s)| *n == id && s.is_some_and(|s| s != 200))
    }
}

/// Asks every node's `/primary` every `poll`, or as soon as `now` is
/// notified (but never more often than every [`MIN_PROBE_SPACING`]);
/// publishes each round and keeps them all in `log`.
async fn prober(
    apis: Vec<(u64, String)>,
    poll: Duration,
    now: Arc<Notify>,
    tx: watch::Sender<Probe>,
    log: Arc<Mutex<Vec<Probe>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let checks = apis.iter().map(|(id, api)| async move {
            let url = format!("{api}/primary");
            let r = raftgres::http::client::request("GET", &url, None, &[], None, CHECK_TIMEOUT).await;
            (*id, r.ok().map(|r| r.status))
        });
        let probe = Probe { started, answers: futures::future::join_all(checks).await };
        log.lock().expect("probe log").push(probe.clone());
        let _ = tx.send(probe);
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = now.notified() => {}
        }
        tokio::time::sleep(MIN_PROBE_SPACING.saturating_sub(started.elapsed())).await;
    }
}

/// How long the new primary's PostgreSQL takes to leave recovery, as seen
/// by `SELECT pg_is_in_recovery()` every 10 ms on its own connection (a
/// diagnostic beside the writers, who never connect there before `/primary`
/// says so): the first time it answers false.
async fn out_of_recovery(uri: String, stop: Arc<AtomicBool>) -> Option<Instant> {
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = tokio::time::timeout(ATTEMPT, connect(&uri)).await.ok().and_then(|c| c.ok());
        }
        if let Some(c) = &client {
            match tokio::time::timeout(ATTEMPT, c.query_one("SELECT pg_is_in_recovery()", &[])).await {
                Ok(Ok(row)) if !row.get::<_, bool>(0) => return Some(Instant::now()),
                Ok(Ok(_)) => {}
                _ => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    Refused,
    /// Reset, closed, broken pipe, end of file.
    Closed,
    ShuttingDown,
    AdminShutdown,
    ReadOnly,
    /// No answer within [`ATTEMPT`]: the INSERT may or may not have
    /// committed.
    Timeout,
    Other(String),
}

impl Failure {
    fn clean(&self) -> bool {
        !matches!(self, Failure::Timeout | Failure::Other(_))
    }

    fn classify(e: &tokio_postgres::Error) -> Failure {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            return if *code == SqlState::CANNOT_CONNECT_NOW && db.message().contains("shutting down") {
                Failure::ShuttingDown
            } else if *code == SqlState::ADMIN_SHUTDOWN {
                Failure::AdminShutdown
            } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
                Failure::ReadOnly
            } else {
                Failure::Other(format!("{} {}", code.code(), db.message()))
            };
        }
        if e.is_closed() {
            return Failure::Closed;
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return match io.kind() {
                    ConnectionRefused => Failure::Refused,
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Failure::Closed,
                    _ => Failure::Other(format!("{e}: {io}")),
                };
            }
            source = s.source();
        }
        // tokio-postgres reports a server that hung up during the start-up
        // exchange this way.
        if e.to_string().contains("unexpected EOF") || e.to_string().contains("connection closed") {
            return Failure::Closed;
        }
        Failure::Other(e.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused => write!(f, "connection refused"),
            Failure::Closed => write!(f, "connection reset/closed"),
            Failure::ShuttingDown => write!(f, "the database system is shutting down"),
            Failure::AdminShutdown => write!(f, "terminating connection due to administrator command"),
            Failure::ReadOnly => write!(f, "read-only transaction"),
            Failure::Timeout => write!(f, "timeout (outcome unknown)"),
            Failure::Other(m) => write!(f, "unexpected: {m}"),
        }
    }
}

/// One attempt of a writer: a connect or an INSERT.
#[derive(Clone, Debug)]
struct Attempt {
    node: u64,
    /// The value, for an INSERT.
    value: Option<i64>,
    sent: Instant,
    returned: Instant,
    outcome: Result<(), Failure>,
}

/// What the writers share.
struct Writers {
    uris: BTreeMap<u64, String>,
    values: AtomicI64,
    attempts: Mutex<Vec<Attempt>>,
    /// Connections dropped because their node answered `/primary` with
    /// something else than 200.
    marked_down: AtomicI64,
    /// Probes a writer chose from that named more than one primary.
    ambiguous: AtomicI64,
    poll_now: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

/// Inserts unique values through whichever node the health checks name,
/// until `stop`.
async fn writer(w: Arc<Writers>, mut probes: watch::Receiver<Probe>) {
    let mut conn: Option<(u64, Client)> = None;
    // After an error: connect again only from a probe started after it.
    let mut failed_at: Option<Instant> = None;
    while !w.stop.load(Ordering::Relaxed) {
        if let Some((id, _)) = &conn
            && probes.borrow().marked_down(*id)
        {
            conn = None;
            w.marked_down.fetch_add(1, Ordering::Relaxed);
        }
        let Some((id, client)) = &conn else {
            let probe = probes.borrow_and_update().clone();
            let primaries = probe.primaries();
            if failed_at.is_some_and(|t| probe.started < t) || primaries.is_empty() {
                w.poll_now.notify_one();
                let _ = tokio::time::timeout(Duration::from_millis(200), probes.changed()).await;
                continue;
            }
            if primaries.len() > 1 {
                w.ambiguous.fetch_add(1, Ordering::Relaxed);
            }
            let id = primaries[0];
            let sent = Instant::now();
            let outcome = match tokio::time::timeout(ATTEMPT, connect(&w.uris[&id])).await {
                Ok(Ok(client)) => {
                    conn = Some((id, client));
                    failed_at = None;
                    continue;
                }
                Ok(Err(e)) => Failure::classify(&e),
                Err(_) => Failure::Timeout,
            };
            let returned = Instant::now();
            w.attempts.lock().expect("attempts").push(Attempt {
                node: id,
                value: None,
                sent,
                returned,
                outcome: Err(outcome),
            });
            failed_at = Some(returned);
            w.poll_now.notify_one();
            continue;
        };
        let id = *id;
        let value = w.values.fetch_add(1, Ordering::Relaxed) + 1;
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(ATTEMPT, client.execute("INSERT INTO t VALUES ($1)", &[&value])).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Failure::classify(&e)),
            Err(_) => Err(Failure::Timeout),
        };
        let returned = Instant::now();
        if outcome.is_err() {
            conn = None;
            failed_at = Some(returned);
            w.poll_now.notify_one();
        }
        w.attempts.lock().expect("attempts").push(Attempt { node: id, value: Some(value), sent, returned, outcome });
    }
}

struct Round {
    from: u64,
    to: u64,
    /// Wall-clock time of the request, to find it in the logs.
    requested_wall: chrono::DateTime<chrono::Utc>,
    /// Request → `POST /switchover` answered (the target elected).
    answered: Duration,
    /// Request → the new primary's first acknowledged write.
    first_new: Duration,
    /// Request → the last `/primary` 200 of the old primary, and the first
    /// of the new one.
    old_last_200: Option<Duration>,
    new_first_200: Option<Duration>,
    /// Request → the first failed attempt on the old primary.
    old_failed: Option<Duration>,
    /// Request → the new primary's PostgreSQL out of recovery.
    promoted: Option<Duration>,
    /// Probes in which two nodes answered `/primary` with 200.
    two_primaries_probes: usize,
    gap: Duration,
    acked: Vec<i64>,
    failures: Vec<Failure>,
    /// Acknowledged by the old primary after the new one's first
    /// acknowledgement: (sent after it, in flight across it).
    violations: (usize, usize),
    /// Acknowledged by a node that was neither.
    acked_elsewhere: usize,
    /// Acknowledged values missing from the new primary's table.
    lost: Vec<i64>,
    marked_down: i64,
    ambiguous: i64,
    load: String,
}

impl Round {
    fn unclean(&self) -> usize {
        self.failures.iter().filter(|f| !f.clean()).count()
    }

    fn bad(&self) -> bool {
        self.violations != (0, 0) || self.acked_elsewhere > 0 || !self.lost.is_empty() || self.unclean() > 0
    }
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.3} s", d.as_secs_f64())).unwrap_or_else(|| "never".into())
}

/// Counts of each failure kind.
fn kinds(failures: &[Failure]) -> String {
    let mut counts: BTreeMap<&Failure, usize> = BTreeMap::new();
    for f in failures {
        *counts.entry(f).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(f, n)| format!("{n} × {f}")).collect::<Vec<_>>().join(", ")
}

/// One switchover from `from` to `to` under the writers; returns the
/// round's figures once the writers stopped and the values were checked.
async fn switchover_round(c: &LocalCluster, from: u64, to: u64, args: &Args) -> anyhow::Result<Round> {
    let load = load();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let poll_now = Arc::new(Notify::new());
    let (tx, rx) = watch::channel(Probe { started: Instant::now(), answers: Vec::new() });
    let probe_log = Arc::new(Mutex::new(Vec::new()));
    let apis: Vec<(u64, String)> = c.nodes.iter().map(|n| (n.id, n.api_url())).collect();
    let probing = tokio::spawn(prober(apis, args.poll, poll_now.clone(), tx, probe_log.clone(), stop.clone()));
    let w = Arc::new(Writers {
        uris: c.nodes.iter().map(|n| (n.id, c.pg_uri(n.id))).collect(),
        values: AtomicI64::new(VALUES.fetch_add(1_000_000_000, Ordering::Relaxed)),
        attempts: Mutex::new(Vec::new()),
        marked_down: AtomicI64::new(0),
        ambiguous: AtomicI64::new(0),
        poll_now,
        stop: stop.clone(),
    });
    let writers: Vec<_> = (0..args.clients).map(|_| tokio::spawn(writer(w.clone(), rx.clone()))).collect();
    let observer = tokio::spawn(out_of_recovery(c.pg_uri(to), stop.clone()));

    tokio::time::sleep(WRITES_BEFORE).await;
    let before: Vec<u64> = acks_of(&w).iter().map(|a| a.node).collect::<BTreeSet<_>>().into_iter().collect();
    if before != [from] {
        bail!("before the request the writers were acknowledged by {before:?}, not by pg{from} alone");
    }
    let body = format!(r#"{{"leader":"{}","candidate":"{}"}}"#, c.node(from).name, c.node(to).name);
    let requested_wall = chrono::Utc::now();
    let requested = Instant::now();
    let reply = raftgres::http::client::request(
        "POST",
        &format!("{}/switchover", c.node(from).api_url()),
        Some(&c.token),
        &[],
        Some(body),
        REQUEST,
    )
    .await
    .context("POST /switchover")?;
    let answered = requested.elapsed();
    if reply.status != 200 {
        bail!("POST /switchover pg{from} → pg{to}: {} {}", reply.status, reply.body);
    }
    let first_new = loop {
        if let Some(a) = acks_of(&w).into_iter().find(|a| a.node == to) {
            break a.returned;
        }
        if requested.elapsed() > FIRST_WRITE {
            bail!("no write acknowledged by pg{to} within {FIRST_WRITE:?} of the request");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(WRITES_AFTER).await;
    stop.store(true, Ordering::Relaxed);
    for writing in writers {
        tokio::time::timeout(ATTEMPT * 3, writing).await.context("a writer did not stop")?.context("writer task")?;
    }
    tokio::time::timeout(CHECK_TIMEOUT * 3, probing).await.context("the prober did not stop")?.context("prober")?;
    let promoted =
        tokio::time::timeout(ATTEMPT * 3, observer).await.context("the observer did not stop")?.context("observer")?;

    let attempts = w.attempts.lock().expect("attempts").clone();
    let mut acks: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_ok()).collect();
    acks.sort_by_key(|a| a.returned);
    let gap = acks.windows(2).map(|p| p[1].returned - p[0].returned).max().unwrap_or_default();
    let late: Vec<&&Attempt> = acks.iter().filter(|a| a.node == from && a.returned > first_new).collect();
    let violations =
        (late.iter().filter(|a| a.sent > first_new).count(), late.iter().filter(|a| a.sent <= first_new).count());
    let acked_elsewhere = acks.iter().filter(|a| a.node != from && a.node != to).count();
    let acked: Vec<i64> = acks.iter().filter_map(|a| a.value).collect();
    let failures: Vec<Failure> = attempts.iter().filter_map(|a| a.outcome.clone().err()).collect();
    let old_failed = attempts
        .iter()
        .filter(|a| a.node == from && a.outcome.is_err())
        .map(|a| a.returned)
        .min()
        .and_then(|t| t.checked_duration_since(requested));
    let lost = missing(c, to, &acked).await?;

    let probes = probe_log.lock().expect("probe log").clone();
    let since = |t: Instant| t.checked_duration_since(requested);
    let old_last_200 = probes.iter().filter(|p| p.primaries().contains(&from)).map(|p| p.started).max().and_then(since);
    let new_first_200 = probes.iter().filter(|p| p.primaries().contains(&to)).map(|p| p.started).min().and_then(since);
    let two_primaries_probes = probes.iter().filter(|p| p.primaries().len() > 1).count();
    Ok(Round {
        from,
        to,
        requested_wall,
        answered,
        first_new: first_new - requested,
        old_last_200,
        new_first_200,
        old_failed,
        promoted: promoted.and_then(|t| t.checked_duration_since(requested)),
        two_primaries_probes,
        gap,
        acked,
        failures,
        violations,
        acked_elsewhere,
        lost,
        marked_down: w.marked_down.load(Ordering::Relaxed),
        ambiguous: w.ambiguous.load(Ordering::Relaxed),
        load,
    })
}

/// Where each round's values start: rounds never share a value.
static VALUES: AtomicI64 = AtomicI64::new(0);

fn acks_of(w: &Writers) -> Vec<Attempt> {
    let mut acks: Vec<Attempt> =
        w.attempts.lock().expect("attempts").iter().filter(|a| a.outcome.is_ok()).cloned().collect();
    acks.sort_by_key(|a| a.returned);
    acks
}

/// The values of `acked` that node `id`'s table lacks.
async fn missing(c: &LocalCluster, id: u64, acked: &[i64]) -> anyhow::Result<Vec<i64>> {
    let client = connect(&c.pg_uri(id)).await.with_context(|| format!("connect to pg{id}"))?;
    let rows =
        tokio::time::timeout(Duration::from_secs(60), client.query("SELECT v FROM t WHERE v = ANY($1)", &[&acked]))
            .await
            .context("read the acknowledged values back")?
            .context("SELECT")?;
    let present: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    Ok(acked.iter().copied().filter(|v| !present.contains(v)).collect())
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::MIN, f64::max)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = args();
    println!(
        "3 nodes on loopback, default dynamic config; {} switchovers; {} writers find the primary through GET /primary \
         polled every {} ms; load average at start {}\n",
        args.rounds,
        args.clients,
        args.poll.as_millis(),
        load()
    );
    let mut cl = match Cluster::start() {
        Ok(cl) => cl,
        Err(e) => {
            println!("FAILED to start the cluster: {e:#}");
            std::process::exit(1);
        }
    };
    println!("cluster in {}", cl.c.dir.display());
    let mut rounds: Vec<Round> = Vec::new();
    let result = async {
        let mut primary = healthy(&cl.c, CLUSTER_UP).await?;
        let client = connect(&cl.c.pg_uri(primary)).await.context("connect to the primary")?;
        client.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.context("CREATE TABLE")?;
        for i in 1..=args.rounds {
            let to = primary % 3 + 1;
            let round = switchover_round(&cl.c, primary, to, &args).await.with_context(|| format!("round {i}"))?;
            println!(
                "round {i} ({}, load {}): pg{} → pg{}: longest gap {:.3} s; POST answered after {:.3} s, first write \
                 on pg{} after {:.3} s; pg{} first refused a write at {}, its /primary last answered 200 at {}; pg{} \
                 out of recovery at {}, its /primary first answered 200 at {}; {} probes with two 200s; \
                 {} acknowledged, {} failed ({}); {} connections dropped on a 503, {} picks among two primaries; \
                 violations: {} sent after, {} in flight; {} acknowledged elsewhere; {} lost{}",
                round.requested_wall.format("%H:%M:%S%.3fZ"),
                round.load,
                round.from,
                round.to,
                round.gap.as_secs_f64(),
                round.answered.as_secs_f64(),
                round.to,
                round.first_new.as_secs_f64(),
                round.from,
                fmt_opt(round.old_failed),
                fmt_opt(round.old_last_200),
                round.to,
                fmt_opt(round.promoted),
                fmt_opt(round.new_first_200),
                round.two_primaries_probes,
                round.acked.len(),
                round.failures.len(),
                kinds(&round.failures),
                round.marked_down,
                round.ambiguous,
                round.violations.0,
                round.violations.1,
                round.acked_elsewhere,
                round.lost.len(),
                if round.lost.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", &round.lost[..round.lost.len().min(10)])
                },
            );
            rounds.push(round);
            primary = healthy(&cl.c, SETTLED).await.with_context(|| format!("after round {i}"))?;
            if primary != to {
                bail!("after round {i} pg{primary} is primary, not pg{to}");
            }
        }
        let all: Vec<i64> = rounds.iter().flat_map(|r| r.acked.iter().copied()).collect();
        let lost = missing(&cl.c, primary, &all).await?;
        println!(
            "\nfinal primary pg{primary}: {} of {} acknowledged values from every round missing{}",
            lost.len(),
            all.len(),
            if lost.is_empty() { String::new() } else { format!(" {:?}", &lost[..lost.len().min(10)]) }
        );
        anyhow::Ok(lost.len())
    }
    .await;
    cl.stop().await;
    let failed = result.as_ref().err().map(|e| format!("{e:#}"));
    let lost_at_end = *result.as_ref().unwrap_or(&0);
    let bad = failed.is_some() || lost_at_end > 0 || rounds.iter().any(Round::bad);
    if let Some(e) = &failed {
        println!("FAILED: {e}");
    }
    if bad || args.keep {
        println!("cluster kept in {} (daemon.log in each node's directory)", cl.c.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&cl.c.dir);
    }
    if rounds.is_empty() {
        std::process::exit(1);
    }

    let secs = |f: fn(&Round) -> Duration| rounds.iter().map(|r| f(r).as_secs_f64()).collect::<Vec<_>>();
    let gap = secs(|r| r.gap);
    let answered = secs(|r| r.answered);
    let first = secs(|r| r.first_new);
    let failures: Vec<f64> = rounds.iter().map(|r| r.failures.len() as f64).collect();
    let all_failures: Vec<Failure> = rounds.iter().flat_map(|r| r.failures.clone()).collect();
    let violations: (usize, usize) = rounds.iter().fold((0, 0), |(a, b), r| (a + r.violations.0, b + r.violations.1));
    let lost: usize = rounds.iter().map(|r| r.lost.len()).sum();
    let acked: usize = rounds.iter().map(|r| r.acked.len()).sum();
    let two: usize = rounds.iter().map(|r| r.two_primaries_probes).sum();
    println!("\n{} switchovers, load average at end {}\n", rounds.len(), load());
    println!("| measure | median | max |");
    println!("|---|---|---|");
    println!("| longest gap between acknowledged writes (s) | {:.3} | {:.3} |", median(&gap), max(&gap));
    println!("| request → POST /switchover answered (s) | {:.3} | {:.3} |", median(&answered), max(&answered));
    println!("| request → first write on the new primary (s) | {:.3} | {:.3} |", median(&first), max(&first));
    let opt_secs = |f: fn(&Round) -> Option<Duration>| -> Vec<f64> {
        rounds.iter().filter_map(|r| f(r).map(|d| d.as_secs_f64())).collect()
    };
    let promoted = opt_secs(|r| r.promoted);
    let new_200 = opt_secs(|r| r.new_first_200);
    // How long the old primary kept answering 200 after refusing a write.
    let stale_200 = opt_secs(|r| Some(r.old_last_200?.saturating_sub(r.old_failed?)));
    for (what, v) in [
        ("request → the new primary's PostgreSQL out of recovery (s)", &promoted),
        ("request → the new primary's first /primary 200 (s)", &new_200),
        ("old primary: /primary still 200 after its first refused write (s)", &stale_200),
    ] {
        if !v.is_empty() {
            println!("| {what} | {:.3} | {:.3} |", median(v), max(v));
        }
    }
    println!("| failed attempts per switchover | {:.0} | {:.0} |", median(&failures), max(&failures));
    println!(
        "| for comparison, `cargo bench --bench failover` (client retries against every node), longest gap (s) | \
         {:.3} | {:.3} |",
        FAILOVER_BENCH_GAP.0, FAILOVER_BENCH_GAP.1
    );
    println!();
    println!("| over all switchovers | count |");
    println!("|---|---|");
    println!("| failed attempts | {} ({}) |", all_failures.len(), kinds(&all_failures));
    println!("| of which not clean errors | {} |", all_failures.iter().filter(|f| !f.clean()).count());
    println!(
        "| violations: old primary acknowledged after the new one's first write (sent after / in flight) | {} / {} |",
        violations.0, violations.1
    );
    println!("| acknowledged writes lost (per round, on its new primary) | {lost} of {acked} |");
    println!("| acknowledged writes lost (every round, on the final primary) | {lost_at_end} of {acked} |");
    println!("| probes in which two nodes answered /primary with 200 | {two} |");
    if bad {
        std::process::exit(1);
    }
}
