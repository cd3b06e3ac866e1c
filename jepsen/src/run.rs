//! One run, start to verdict: hosts up, a healthy cluster, the tables,
//! warm-up, workloads and nemesis for the time limit, then the final phase
//! (heal everything, wait for convergence, read every node), the files of
//! the run directory, the logs, and the check.
//!
//! Whatever happens (an error, Ctrl-C, a panic), everything the run created
//! is removed before it exits: processes, namespaces (with their links and
//! rules) and, unless `--keep`, the data directory. A previous run's
//! leftovers are removed at the start.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown or the harness failed, 130
//! interrupted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::hosts::{Cluster, Mode, futures_join, http_get};
use crate::nemesis::{Kind, Nemesis};
use crate::net;
use crate::record::{CheckerResult, Results, Verdict};
use crate::workload::{self, Lines, Recorder, Shared};

/// A workload the clients run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Unique inserts; every node read at the end.
    Set,
    /// Elle's list-append transactions.
    Append,
}

/// Everything a run is given.
#[derive(Clone, Debug)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub nodes: usize,
    /// Seconds of faults (and workload) after the warm-up.
    pub time_limit: Duration,
    pub warmup: Duration,
    /// Mean time between nemesis steps (jittered 0.5x..1.5x).
    pub interval: Duration,
    pub seed: u64,
    pub nemesis: BTreeSet<Kind>,
    /// `--nemesis` as given.
    pub nemesis_spec: String,
    pub mode: Mode,
    pub concurrency: usize,
    pub workloads: Vec<Workload>,
    pub keep: bool,
    pub run_dir: PathBuf,
    /// How long the cluster may take to converge after the final heal.
    pub converge_timeout: Duration,
}

impl Options {
    fn config(&self) -> Value {
        json!({
            "nodes": self.nodes,
            "time_limit_s": self.time_limit.as_secs_f64(),
            "warmup_s": self.warmup.as_secs_f64(),
            "interval_s": self.interval.as_secs_f64(),
            "nemesis": self.nemesis_spec,
            "nemesis_kinds": self.nemesis.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "mode": self.mode,
            "concurrency": self.concurrency,
            "workloads": self.workloads,
            "converge_timeout_s": self.converge_timeout.as_secs_f64(),
            "bin_dir": self.bin_dir,
        })
    }

    /// The command that repeats this run's schedule.
    pub fn reproduce(&self) -> String {
        let workloads: Vec<&str> = self
            .workloads
            .iter()
            .map(|w| match w {
                Workload::Set => "set",
                Workload::Append => "append",
            })
            .collect();
        format!(
            "raftgres-jepsen run --bin-dir {} --seed {} --nodes {} --time-limit {} --interval {} --nemesis {} \
             --mode {} --concurrency {} --workload {}",
            self.bin_dir.display(),
            self.seed,
            self.nodes,
            self.time_limit.as_secs(),
            self.interval.as_secs_f64(),
            self.nemesis_spec,
            self.mode.synchronous_mode().replace("off", "async"),
            self.concurrency,
            workloads.join(",")
        )
    }
}

/// The default run directory: `jepsen/runs/<timestamp>-seed<N>`.
pub fn default_run_dir(seed: u64) -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%dT%H%M%S");
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runs").join(format!("{stamp}-seed{seed}"))
}

/// What the runner leaves for [`check`] beside the histories.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub seed: u64,
    pub config: Value,
    pub convergence: CheckerResult,
}

/// Checks a run directory: every checker over `history.jsonl` and
/// `nemesis.jsonl` (the set checker against the final primary the
/// convergence check found), the convergence result the runner wrote in
/// `run.json`, then `report.html`. A directory the checkers cannot read
/// gives an `unknown` verdict saying why.
pub fn check(dir: &Path) -> Results {
    let info: Option<RunInfo> =
        std::fs::read_to_string(dir.join("run.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let Some(info) = info else {
        let mut results = Results::new(0, Value::Null);
        results.add("convergence", unknown("no run.json in the run directory"));
        return results;
    };
    let final_primary = info.convergence.details["primary"].as_str().map(str::to_string);
    let options = crate::checker::CheckOptions { final_primary, ..crate::checker::CheckOptions::default() };
    let mut results = match crate::checker::check_dir_with(dir, &options, info.seed, info.config.clone()) {
        Ok(results) => results,
        Err(e) => {
            let mut results = Results::new(info.seed, info.config.clone());
            results.add("history", unknown(&format!("the checkers could not read the run: {e}")));
            results
        }
    };
    results.add("convergence", info.convergence);
    let history = crate::history::read(&dir.join("history.jsonl")).unwrap_or_default();
    let faults = crate::checker::read_jsonl(&dir.join("nemesis.jsonl")).unwrap_or_default();
    let roles = crate::checker::read_jsonl(&dir.join("roles.jsonl")).unwrap_or_default();
    if let Err(e) = crate::report::write_html(dir, &results, &history, &faults, &roles) {
        eprintln!("failed to write report.html: {e}");
    }
    results
}

/// Removes the data directory (and the namespaces) when dropped, so a
/// panic cleans up too.
struct Teardown {
    data_dir: PathBuf,
    keep: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        for note in net::destroy() {
            eprintln!("cleanup: {note}");
        }
        if self.keep {
            let _ = std::fs::write(self.data_dir.join("KEEP"), "kept by --keep\n");
            eprintln!("kept the data directory {}", self.data_dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.data_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("cleanup: failed to remove {}: {e}", self.data_dir.display());
        }
    }
}

/// Data directories of earlier runs start with this, under the temporary
/// directory.
const DATA_PREFIX: &str = "rgj-data-";

/// Removes a previous run's namespaces, processes and data directories
/// (those not kept with `--keep`).
fn clean_stale() {
    let names = net::our_namespaces();
    if !names.is_empty() {
        eprintln!("removing a previous run's namespaces: {}", names.join(" "));
        for note in net::destroy() {
            eprintln!("cleanup: {note}");
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in dir.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(DATA_PREFIX) && !entry.path().join("KEEP").exists() {
                eprintln!("removing a previous run's data directory {}", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Holds the lock that keeps two runs apart (they would share names).
fn lock() -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/raftgres-jepsen.lock")
        .context("open /run/raftgres-jepsen.lock")?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another raftgres-jepsen run is in progress on this machine"))
}

/// Runs the whole thing; returns the process exit code.
pub fn main(opts: Options) -> i32 {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "raftgres-jepsen must run as root: it creates network namespaces, nftables rules and runs PostgreSQL \
             as the postgres user (try: sudo {})",
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        return 2;
    }
    for bin in ["raftgres", "raftctl"] {
        if !opts.bin_dir.join(bin).is_file() {
            eprintln!("no {bin} in {} (give --bin-dir)", opts.bin_dir.display());
            return 2;
        }
    }
    let _lock = match lock() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e:#}");
            return 2;
        }
    };
    clean_stale();
    eprintln!("seed {} (reproduce: {})", opts.seed, opts.reproduce());
    let stamp = chrono::Local::now().format("%Y%m%dT%H%M%S");
    let data_dir = std::env::temp_dir().join(format!("{DATA_PREFIX}{stamp}-seed{}", opts.seed));
    let _teardown = Teardown { data_dir: data_dir.clone(), keep: opts.keep };
    if let Err(e) = prepare(&opts, &data_dir) {
        eprintln!("setup failed: {e:#}");
        return 2;
    }
    // Every thread of the runtime starts inside the client namespace: the
    // clients, HAProxy and raftctl run there.
    if let Err(e) = net::enter(net::CLIENT_NS) {
        eprintln!("{e:#}");
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("start the runtime: {e}");
            return 2;
        }
    };
    let code = runtime.block_on(run(opts, data_dir));
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

/// Directories, the run directory's `latest` link, and the namespaces.
fn prepare(opts: &Options, data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&opts.run_dir).with_context(|| format!("create {}", opts.run_dir.display()))?;
    if let (Some(parent), Some(name)) = (opts.run_dir.parent(), opts.run_dir.file_name()) {
        let latest = parent.join("latest");
        let _ = std::fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(name, &latest);
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o755))?;
    // One spare host for members added by the nemesis.
    net::create(opts.nodes + 1).context("create the network namespaces")
}

/// A random cluster token.
fn token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a run stopped early.
#[derive(Debug)]
enum Stop {
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Stop {
        Stop::Failed(e)
    }
}

/// Runs `fut` unless the run is interrupted first.
async fn unless_interrupted<T>(
    cancel: &mut watch::Receiver<bool>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Stop> {
    if *cancel.borrow() {
        return Err(Stop::Interrupted);
    }
    tokio::select! {
        v = fut => Ok(v),
        _ = cancel.wait_for(|c| *c) => Err(Stop::Interrupted),
    }
}

/// The tasks of the run, for the final phase and the teardown.
struct Running {
    recorder: Arc<Recorder>,
    roles_out: Arc<Lines>,
    nemesis_out: Arc<Lines>,
    nemesis: Option<Arc<Nemesis>>,
    /// Stops the workers.
    stop_workers: watch::Sender<bool>,
    /// Stops probes and role sampling.
    stop_observers: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    observers: Vec<tokio::task::JoinHandle<()>>,
    keys: Arc<workload::append::Keys>,
}

async fn run(opts: Options, data_dir: PathBuf) -> i32 {
    let (cancel_tx, mut cancel) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted: stopping and cleaning up");
        let _ = cancel_tx.send(true);
    });
    let cluster = Arc::new(Cluster::new(opts.bin_dir.clone(), data_dir, opts.nodes, 1, opts.mode, token()));
    let start = Instant::now();
    let mut running: Option<Running> = None;
    let outcome = drive(&opts, &cluster, start, &mut cancel, &mut running).await;
    let convergence = match &outcome {
        Ok(c) => c.clone(),
        Err(Stop::Interrupted) => unknown("interrupted before convergence was checked"),
        Err(Stop::Failed(e)) => {
            eprintln!("run failed: {e:#}");
            unknown(&format!("the harness failed: {e:#}"))
        }
    };
    finish(&opts, &cluster, running).await;
    let info = RunInfo { seed: opts.seed, config: opts.config(), convergence };
    if let Err(e) =
        std::fs::write(opts.run_dir.join("run.json"), serde_json::to_string_pretty(&info).unwrap_or_default())
    {
        eprintln!("failed to write run.json: {e}");
    }
    let results = check(&opts.run_dir);
    if let Err(e) =
        std::fs::write(opts.run_dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap_or_default())
    {
        eprintln!("failed to write results.json: {e}");
    }
    for (name, r) in &results.checkers {
        eprintln!("{name}: {:?}: {}", r.verdict, r.summary);
    }
    eprintln!("verdict: {:?}; run directory {}", results.verdict, opts.run_dir.display());
    match outcome {
        Err(Stop::Interrupted) => 130,
        Err(Stop::Failed(_)) => 2,
        Ok(_) => {
            if results.verdict != Verdict::Valid {
                eprintln!("reproduce: {}", opts.reproduce());
            }
            results.verdict.exit_code()
        }
    }
}

fn unknown(summary: &str) -> CheckerResult {
    CheckerResult { verdict: Verdict::Unknown, summary: summary.to_string(), details: Value::Null }
}

/// Setup, workload with faults, final phase; the convergence result.
async fn drive(
    opts: &Options,
    cluster: &Arc<Cluster>,
    start: Instant,
    cancel: &mut watch::Receiver<bool>,
    running: &mut Option<Running>,
) -> Result<CheckerResult, Stop> {
    for host in &cluster.hosts {
        net::start_echo(&host.ns, host.addr)?;
    }
    for slot in 1..=opts.nodes {
        cluster.place(slot)?;
    }
    for slot in 1..=opts.nodes {
        cluster.write_config(slot, false)?;
        cluster.start_daemon(slot)?;
    }
    eprintln!("waiting for a healthy cluster of {} nodes...", opts.nodes);
    let slots: Vec<usize> = (1..=opts.nodes).collect();
    let healthy = async {
        tokio::select! {
            r = cluster.wait_healthy(Duration::from_secs(180)) => r,
            e = cluster.daemon_exited(&slots) => Err(e),
        }
    };
    let took = unless_interrupted(cancel, healthy).await??;
    eprintln!("healthy after {:.1}s", took.as_secs_f64());
    cluster.haproxy(&opts.run_dir).await?;
    unless_interrupted(cancel, create_tables()).await??;

    let recorder = Arc::new(Recorder::start(&opts.run_dir.join("history.jsonl"), start).context("history.jsonl")?);
    let roles_out = Arc::new(Lines::create(&opts.run_dir.join("roles.jsonl")).context("roles.jsonl")?);
    let nemesis_out = Arc::new(Lines::create(&opts.run_dir.join("nemesis.jsonl")).context("nemesis.jsonl")?);
    let (stop_workers, workers_rx) = watch::channel(false);
    let (stop_observers, observers_rx) = watch::channel(false);
    let keys = Arc::new(workload::append::Keys::new());
    let worker_shared =
        Arc::new(Shared { recorder: Arc::clone(&recorder), concurrency: opts.concurrency as u64, stop: workers_rx });
    let observer_shared =
        Arc::new(Shared { recorder: Arc::clone(&recorder), concurrency: 1, stop: observers_rx.clone() });
    let latest: workload::roles::Latest = Default::default();
    let mut observers = vec![tokio::spawn(workload::roles::sampler(
        Arc::clone(cluster),
        Arc::clone(&recorder),
        Arc::clone(&roles_out),
        latest,
        observers_rx,
    ))];
    for host in &cluster.hosts {
        observers.push(tokio::spawn(workload::probe::prober(
            Arc::clone(&observer_shared),
            Arc::clone(cluster),
            host.slot,
        )));
    }
    let next_id = Arc::new(AtomicI64::new(1));
    let mut workers = Vec::new();
    for w in 0..opts.concurrency {
        let shared = Arc::clone(&worker_shared);
        workers.push(match opts.workloads[w % opts.workloads.len()] {
            Workload::Set => tokio::spawn(workload::set::worker(shared, w as u64, Arc::clone(&next_id))),
            Workload::Append => tokio::spawn(workload::append::worker(shared, w as u64, Arc::clone(&keys), opts.seed)),
        });
    }
    *running = Some(Running {
        recorder: Arc::clone(&recorder),
        roles_out,
        nemesis_out: Arc::clone(&nemesis_out),
        nemesis: None,
        stop_workers,
        stop_observers,
        workers,
        observers,
        keys: Arc::clone(&keys),
    });
    let progress = {
        let recorder = Arc::clone(&recorder);
        let mut stop = running.as_ref().expect("set above").stop_observers.subscribe();
        let nemesis_slot: Arc<std::sync::Mutex<Option<Arc<Nemesis>>>> = Default::default();
        (
            nemesis_slot.clone(),
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = stop.changed() => return,
                    }
                    let c = &recorder.counts;
                    let faults = nemesis_slot
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                        .map(|n| n.current().join(", "))
                        .unwrap_or_default();
                    eprintln!(
                        "[{:>6.1}s] ok {} fail {} info {} | faults: {}",
                        start.elapsed().as_secs_f64(),
                        c.ok.load(Ordering::Relaxed),
                        c.fail.load(Ordering::Relaxed),
                        c.info.load(Ordering::Relaxed),
                        if faults.is_empty() { "none".to_string() } else { faults }
                    );
                }
            }),
        )
    };

    eprintln!("warm-up {}s", opts.warmup.as_secs());
    unless_interrupted(cancel, tokio::time::sleep(opts.warmup)).await?;
    let nemesis = Arc::new(Nemesis::new(
        Arc::clone(cluster),
        Arc::clone(&recorder),
        nemesis_out,
        opts.run_dir.clone(),
        opts.nemesis.clone(),
        opts.interval,
    ));
    *progress.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&nemesis));
    running.as_mut().expect("set above").nemesis = Some(Arc::clone(&nemesis));
    let (stop_nemesis, stop_nemesis_rx) = watch::channel(false);
    let lanes = tokio::spawn(Arc::clone(&nemesis).run(opts.seed, stop_nemesis_rx));
    eprintln!("workload and faults for {}s", opts.time_limit.as_secs());
    let timed = unless_interrupted(cancel, tokio::time::sleep(opts.time_limit)).await;
    let _ = stop_nemesis.send(true);
    timed?;
    unless_interrupted(cancel, lanes).await?.context("the nemesis task")?;

    // The clients go on writing through the heal and the convergence, so
    // the history shows how soon writes resume.
    eprintln!("final phase: healing everything");
    unless_interrupted(cancel, nemesis.heal_all()).await?;
    let convergence = unless_interrupted(cancel, converge(cluster, opts.converge_timeout)).await?;
    let r = running.as_mut().expect("set above");
    let _ = r.stop_workers.send(true);
    for w in std::mem::take(&mut r.workers) {
        let _ = w.await;
    }
    unless_interrupted(cancel, final_reads(cluster, &worker_shared, opts, &keys)).await?;
    Ok(convergence)
}

/// Creates the workloads' tables through HAProxy's primary port, retrying
/// while HAProxy finds the primary.
async fn create_tables() -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let c = workload::connect("127.0.0.1", crate::hosts::PRIMARY_PORT, Duration::from_secs(2)).await?;
            c.batch_execute(workload::SCHEMA).await.map_err(|e| workload::describe(&e))
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!("create the tables through HAProxy: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Waits for one primary, every other member streaming from it, and the same
/// event history on every daemon.
async fn converge(cluster: &Cluster, bound: Duration) -> CheckerResult {
    let start = Instant::now();
    loop {
        let members = cluster.members();
        let docs = cluster.statuses().await;
        let mut primaries = Vec::new();
        let mut not_streaming = Vec::new();
        for (slot, doc) in &docs {
            let name = cluster.host(*slot).name().unwrap_or_default();
            let role = doc.as_ref().and_then(|d| d["role"].as_str()).unwrap_or("down");
            let streaming = doc.as_ref().and_then(|d| d["replication_state"].as_str()) == Some("streaming");
            if role == "primary" {
                primaries.push(name);
            } else if !(role == "replica" && streaming) {
                not_streaming.push(format!("{name} ({role})"));
            }
        }
        let histories = futures_join(
            members.iter().map(|(h, _)| http_get(h.addr, "/history?all=true", Duration::from_secs(2))).collect(),
        )
        .await;
        let parsed: Vec<Option<Value>> = histories
            .into_iter()
            .map(|h| h.ok().filter(|(code, _)| *code == 200).and_then(|(_, body)| serde_json::from_str(&body).ok()))
            .collect();
        let same_history = parsed.iter().all(|h| h.is_some()) && parsed.windows(2).all(|w| w[0] == w[1]);
        let events = parsed.first().and_then(|h| h.as_ref()).and_then(|h| h.as_array()).map_or(0, |a| a.len());
        if primaries.len() == 1 && not_streaming.is_empty() && same_history {
            let took = start.elapsed();
            return CheckerResult {
                verdict: Verdict::Valid,
                summary: format!(
                    "converged in {:.1}s (bound {}s): {} primary, {} streaming, {events} events alike on every daemon",
                    took.as_secs_f64(),
                    bound.as_secs(),
                    primaries[0],
                    members.len() - 1
                ),
                details: json!({
                    "seconds": took.as_secs_f64(),
                    "bound_seconds": bound.as_secs_f64(),
                    "primary": primaries[0],
                    "members": members.iter().map(|(_, m)| m.name.clone()).collect::<Vec<_>>(),
                    "events": events,
                }),
            };
        }
        let last = format!(
            "primaries {primaries:?}, not streaming {not_streaming:?}, histories {}",
            if same_history { "alike" } else { "differ or missing" }
        );
        if start.elapsed() > bound {
            return CheckerResult {
                verdict: Verdict::Invalid,
                summary: format!("not converged within {}s: {last}", bound.as_secs()),
                details: json!({ "bound_seconds": bound.as_secs_f64(), "last": last }),
            };
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (bounded) until every replica has replayed the primary's WAL up
/// to where it is now, then reads every node directly.
async fn final_reads(cluster: &Cluster, shared: &Shared, opts: &Options, keys: &workload::append::Keys) {
    let members = cluster.members();
    let primary = cluster.primary().await;
    if let Some(p) = primary {
        let addr = cluster.host(p).addr.to_string();
        if let Ok(c) = workload::connect(&addr, crate::hosts::PG_PORT, Duration::from_secs(2)).await
            && let Ok(row) = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await
        {
            let target: String = row.get(0);
            let deadline = Instant::now() + Duration::from_secs(30);
            for (h, _) in &members {
                if h.slot == p {
                    continue;
                }
                let addr = h.addr.to_string();
                let Ok(c) = workload::connect(&addr, crate::hosts::PG_PORT, Duration::from_secs(2)).await else {
                    continue;
                };
                while Instant::now() < deadline {
                    let caught_up = c
                        .query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target])
                        .await
                        .ok()
                        .and_then(|r| r.get::<_, Option<bool>>(0));
                    if caught_up == Some(true) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let all_keys = keys.all();
    for (i, (h, m)) in members.iter().enumerate() {
        let addr = h.addr.to_string();
        let process = 900_000 + 2 * i as u64;
        if opts.workloads.contains(&Workload::Set) {
            workload::set::final_read(shared, process, &m.name, &addr).await;
        }
        if opts.workloads.contains(&Workload::Append) {
            workload::append::final_read(shared, process + 1, &m.name, &addr, &all_keys).await;
        }
    }
}

/// Stops everything the run started, writes out the records and copies
/// the logs.
async fn finish(opts: &Options, cluster: &Cluster, running: Option<Running>) {
    if let Some(r) = running {
        let _ = r.stop_workers.send(true);
        let _ = r.stop_observers.send(true);
        for t in r.workers.into_iter().chain(r.observers) {
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                eprintln!("a workload task did not stop in time");
            }
        }
        if let Some(n) = &r.nemesis {
            // Faults still in force are written with their end absent.
            n.record_unhealed();
        }
        if let Err(e) = r.recorder.flush().await {
            eprintln!("failed to write history.jsonl: {e}");
        }
        let _ = r.roles_out.flush();
        let _ = r.nemesis_out.flush();
        let _ = r.keys;
    }
    cluster.stop_haproxy().await;
    cluster.stop_all(Duration::from_secs(30)).await;
    copy_logs(cluster, &opts.run_dir.join("logs"));
}

/// Copies each member's daemon log and PostgreSQL log (and any other
/// `.log` outside the data directory) into `logs/<member>/`.
fn copy_logs(cluster: &Cluster, to: &Path) {
    let ever = cluster.ever.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for m in ever {
        let dest = to.join(&m.name);
        if std::fs::create_dir_all(&dest).is_err() {
            continue;
        }
        let mut stack = vec![(m.dir.clone(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.filter_map(|e| e.ok()) {
                let path = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if path.is_dir() && depth < 2 && name != "pgdata" && name != "raft-v2" {
                    stack.push((path, depth + 1));
                } else if name.ends_with(".log")
                    && let Err(err) = std::fs::copy(&path, dest.join(&name))
                {
                    eprintln!("failed to copy {}: {err}", path.display());
                }
            }
        }
    }
}
