//! Synchronous replication through Raft: with `synchronous_mode` on, a
//! client writing while the primary dies loses no acknowledged write; `on`
//! degrades to asynchronous when no standby is left and recovers when one
//! returns; `strict` blocks instead and resumes. Phases are named: a
//! failure names its phase.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::playground::http_get;
use raftgres::postgres::pidfile::children_of;
use serde_json::Value;
use tokio::sync::watch;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{FAILOVER, REJOIN, REPLICAS_FOLLOW, WRITE};
use crate::support::{phase, wait_for};

/// How long the primary's agent may take to make a standby synchronous
/// (a few turns: tell PostgreSQL, see it wait, see it catch up, commit).
const SYNC_ESTABLISHED: Duration = Duration::from_secs(20);

/// How long a write in strict mode is watched to make sure it does not
/// commit while no standby is synchronous.
const BLOCKED_FOR: Duration = Duration::from_secs(4);

/// The members `raftctl list` names synchronous standbys.
fn sync_standbys(c: &DaemonCluster) -> BTreeSet<u64> {
    let s = c.raftctl_json(&["list"]);
    s["members"]
        .as_array()
        .map(|ms| ms.iter().filter(|m| m["sync_standby"] == true).filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// Waits until exactly `n` members are synchronous standbys; returns them.
async fn must_sync(c: &DaemonCluster, n: usize) -> BTreeSet<u64> {
    wait_for(&format!("{n} synchronous standby(s)"), SYNC_ESTABLISHED, async || {
        let set = sync_standbys(c);
        if set.len() == n { Ok(set) } else { Err(set) }
    })
    .await
}

/// SIGKILLs a node's daemon, postmaster and every PostgreSQL process
/// (`kill_node` reaps the daemon afterwards).
fn kill_everything(c: &DaemonCluster, id: u64) {
    let pm = c.postmaster_pid(id);
    let children = pm.map(children_of).unwrap_or_default();
    c.signal_daemon(id, Signal::SIGKILL);
    for pid in pm.into_iter().chain(children) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

async fn status_of(c: &DaemonCluster, id: u64, path: &str) -> u16 {
    http_get(&format!("{}{path}", c.api(id))).await.map(|(code, _)| code).unwrap_or(0)
}

/// Values that are in `t` on node `id`, out of `values`.
async fn present(c: &DaemonCluster, id: u64, values: &[i64]) -> usize {
    let client = c.must_pg(id).await;
    let row = client.query_one("SELECT count(*) FROM t WHERE v = ANY($1)", &[&values]).await.expect("count");
    row.get::<_, i64>(0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synchronous_on_loses_no_acknowledged_write_when_the_primary_dies() {
    no_acknowledged_write_lost("on", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synchronous_strict_loses_no_acknowledged_write_when_the_primary_dies() {
    no_acknowledged_write_lost("strict", 2).await;
}

/// A cluster whose first configuration says `strict` starts: raftgres's own
/// statements at bootstrap (the replication role) wait for no standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_strict_from_the_start_bootstraps() {
    let c = DaemonCluster::start(3, |f| f.dynamic.synchronous_mode = raftgres_storage::SyncMode::Strict).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    must_sync(&c, 1).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    c.must_accept_write(primary, 1, WRITE).await;
}

/// Switches `mode` on, then `rounds` times: a writer writes through the
/// primary, the primary dies, the new primary must be the synchronous
/// standby and hold every acknowledged write.
async fn no_acknowledged_write_lost(mode: &str, rounds: usize) {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    let mut primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");

    phase("synchronous mode switched on at run time", async {
        c.must_raftctl(&["config", "set", &format!("synchronous_mode={mode}")]);
        let set = must_sync(&c, 1).await;
        let s = *set.first().expect("one");
        let other = [1, 2, 3].into_iter().find(|id| *id != primary && *id != s).expect("the other replica");
        assert_eq!(status_of(&c, s, "/sync").await, 200, "the synchronous standby answers /sync");
        assert_eq!(status_of(&c, other, "/sync").await, 503);
        assert_eq!(status_of(&c, other, "/async").await, 200);
        let table = c.must_raftctl(&["list"]);
        assert!(table.contains("Sync Standby"), "{table}");
        let client = c.must_pg(primary).await;
        let names: String = client.query_one("SHOW synchronous_standby_names", &[]).await.expect("SHOW").get(0);
        assert_eq!(names, format!("ANY 1 (\"pg{s}\")"), "PostgreSQL waits for the committed set");
        // A standby holds what it would inherit, so that from the moment it
        // is promoted it waits for the set, before its agent reloads.
        let on_other: String =
            c.must_pg(other).await.query_one("SHOW synchronous_standby_names", &[]).await.expect("SHOW").get(0);
        assert_eq!(on_other, format!("ANY 1 (\"pg{s}\")"), "a standby is armed with the set without itself");
    })
    .await;

    let mut next = 0_i64;
    for round in 1..=rounds {
        primary = phase(&format!("round {round}: the primary dies under writes"), async {
            let before = must_sync(&c, 1).await;
            let (stop_tx, stop_rx) = watch::channel(false);
            let acked = Arc::new(Mutex::new(Vec::new()));
            let writer = {
                let acked = acked.clone();
                let c = &c;
                let start = next;
                async move {
                    let mut v = start;
                    while !*stop_rx.borrow() {
                        v += 1;
                        if c.try_write(primary, v).await {
                            acked.lock().expect("acked").push(v);
                        }
                    }
                    v
                }
            };
            let killer = {
                let c = &c;
                let acked = acked.clone();
                async move {
                    wait_for("a few acknowledged writes", WRITE, async || {
                        let n = acked.lock().expect("acked").len();
                        if n >= 20 { Ok(()) } else { Err(n) }
                    })
                    .await;
                    kill_everything(c, primary);
                    info!(round, primary, "--- primary killed under writes");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = stop_tx.send(true);
                }
            };
            let (last, ()) = tokio::join!(writer, killer);
            next = last;
            c.kill_node(primary);
            let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
            let new = c.must_primary(&others, FAILOVER).await;
            assert!(before.contains(&new), "the new primary {new} was the synchronous standby {before:?}");
            let acked = acked.lock().expect("acked").clone();
            let found = present(&c, new, &acked).await;
            assert_eq!(
                found,
                acked.len(),
                "every acknowledged write is on the new primary ({} acknowledged)",
                acked.len()
            );
            c.start_node(primary);
            c.must_healthy(&[1, 2, 3], REJOIN).await;
            new
        })
        .await;
    }
}

/// Stops node `id`'s PostgreSQL by hand (fast shutdown), its daemon left
/// running: in maintenance mode the agent leaves it stopped, and the
/// primary keeps its Raft quorum.
async fn stop_postgres(c: &DaemonCluster, id: u64) {
    let pm = c.postmaster_pid(id).unwrap_or_else(|| panic!("node {id} runs no postmaster"));
    kill(Pid::from_raw(pm), Signal::SIGINT).expect("SIGINT the postmaster");
    wait_for(&format!("node {id}'s PostgreSQL to stop"), WRITE, async || match c.postmaster_pid(id) {
        None => Ok(()),
        Some(pid) => Err(pid),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_degrades_and_recovers_and_strict_blocks_and_resumes() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    c.must_raftctl(&["config", "set", "synchronous_mode=on"]);
    must_sync(&c, 1).await;
    // Hands off: PostgreSQL stopped by hand stays stopped.
    c.must_raftctl(&["pause"]);

    phase("on: with no standby left, writes go on asynchronously", async {
        for r in &replicas {
            stop_postgres(&c, *r).await;
        }
        c.must_accept_write(primary, 1, WRITE).await;
        assert!(sync_standbys(&c).is_empty(), "the set was narrowed to nothing");
        let events = c.raftctl_json(&["history", "--all"]);
        let texts: Vec<&str> = events.as_array().expect("events").iter().filter_map(|e| e["text"].as_str()).collect();
        assert!(
            texts.iter().any(|t| t.contains("synchronous standbys of epoch") && t.ends_with(": none")),
            "{texts:?}"
        );
    })
    .await;

    phase("on: a returning standby is synchronous again", async {
        c.must_raftctl(&["restart", &format!("pg{}", replicas[0])]);
        assert_eq!(must_sync(&c, 1).await, [replicas[0]].into());
        c.must_accept_write(primary, 2, WRITE).await;
    })
    .await;

    phase("strict: writes wait while no standby is synchronous", async {
        c.must_raftctl(&["config", "set", "synchronous_mode=strict"]);
        stop_postgres(&c, replicas[0]).await;
        let client = c.must_pg(primary).await;
        let blocked = tokio::time::timeout(BLOCKED_FOR, client.execute("INSERT INTO t VALUES (3)", &[])).await;
        assert!(blocked.is_err(), "a write committed with no synchronous standby: {blocked:?}");
        assert_eq!(sync_standbys(&c), [replicas[0]].into(), "strict never narrows to nothing");
        let doc: Value = serde_json::from_str(&http_get(&format!("{}/patroni", c.api(primary))).await.expect("GET").1)
            .expect("JSON");
        assert_eq!(doc["role"], "primary", "{doc}");
    })
    .await;

    phase("strict: a returning standby releases the writes", async {
        c.must_raftctl(&["restart", &format!("pg{}", replicas[1])]);
        c.must_accept_write(primary, 4, REJOIN).await;
        assert_eq!(must_sync(&c, 1).await, [replicas[1]].into(), "the returning standby replaced the lost one");
        c.must_raftctl(&["resume"]);
        c.must_healthy(&[1, 2, 3], REJOIN).await;
        wait_for("the blocked write to commit once it could", WRITE, async || {
            match present(&c, primary, &[1, 2, 3, 4]).await {
                4 => Ok(()),
                n => Err(n),
            }
        })
        .await;
    })
    .await;
}

/// The mode changes at run time while a client writes (`on`, `quorum`,
/// `strict`, `quorum`, `on`, `off`): every change takes
/// effect without a restart or a write error, and every acknowledged write
/// is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mode_changes_under_writes() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    let started = c.postmaster_started(primary).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let acked = acked.clone();
        let c = &c;
        async move {
            let client = c.must_pg(primary).await;
            let mut v = 0_i64;
            let mut errors = Vec::new();
            while !*stop_rx.borrow() {
                v += 1;
                match client.execute("INSERT INTO t VALUES ($1)", &[&v]).await {
                    Ok(_) => acked.lock().expect("acked").push(v),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            errors
        }
    };
    let changes = {
        let acked = acked.clone();
        let c = &c;
        async move {
            let modes =
                [("on", 1, 0), ("quorum", 0, 2), ("strict", 1, 0), ("quorum", 0, 2), ("on", 1, 0), ("off", 0, 0)];
            for (mode, sync, quorum) in modes {
                c.must_raftctl(&["config", "set", &format!("synchronous_mode={mode}")]);
                wait_for(&format!("{sync} sync and {quorum} quorum standbys"), SYNC_ESTABLISHED, async || {
                    let list = c.raftctl_json(&["list"]);
                    let count = |key: &str| {
                        list["members"].as_array().map_or(0, |ms| ms.iter().filter(|m| m[key] == true).count())
                    };
                    let got = (count("sync_standby"), count("quorum_standby"));
                    if got == (sync, quorum) { Ok(()) } else { Err(got) }
                })
                .await;
                let before = acked.lock().expect("acked").len();
                wait_for(&format!("writes to go on in {mode} mode"), WRITE, async || {
                    let n = acked.lock().expect("acked").len();
                    if n >= before + 50 { Ok(()) } else { Err(n) }
                })
                .await;
                info!(mode, acked = acked.lock().expect("acked").len(), "--- mode changed under writes");
            }
            let _ = stop_tx.send(true);
        }
    };
    let (errors, ()) = tokio::join!(writer, changes);
    assert!(errors.is_empty(), "no write failed: {errors:?}");
    let acked = acked.lock().expect("acked").clone();
    assert_eq!(present(&c, primary, &acked).await, acked.len());
    let now = c.postmaster_started(primary).await;
    assert_eq!(now, started, "no restart");
}

/// Sends `signal` to node `id`'s postmaster and every PostgreSQL process.
fn signal_postgres(c: &DaemonCluster, id: u64, signal: Signal) {
    let pm = c.postmaster_pid(id).unwrap_or_else(|| panic!("node {id} runs no postmaster"));
    for pid in std::iter::once(pm).chain(children_of(pm)) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Node `id`'s WAL receiver process.
fn walreceiver(c: &DaemonCluster, id: u64) -> Pid {
    let pm = c.postmaster_pid(id).unwrap_or_else(|| panic!("node {id} runs no postmaster"));
    children_of(pm)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(11).any(|w| w == b"walreceiver"))
        })
        .map(Pid::from_raw)
        .unwrap_or_else(|| panic!("node {id} runs no WAL receiver"))
}

/// The primary dies while a standby is being added (PostgreSQL already
/// waits for it, Raft does not name it yet), and the only other member of
/// the committed set is hung. The standby being added lacks writes
/// acknowledged before PostgreSQL waited for it, so it must not be
/// promoted: failover waits for the committed standby, which holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_in_the_middle_of_adding_a_standby_promotes_only_the_committed_set() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    c.must_raftctl(&["config", "set", "synchronous_mode=on"]);
    let a = *must_sync(&c, 1).await.first().expect("one");
    let b = [1, 2, 3].into_iter().find(|id| *id != primary && *id != a).expect("the other replica");
    let receiver = walreceiver(&c, b);
    let mut acked = Vec::new();

    phase("writes acknowledged while the other standby receives nothing", async {
        kill(receiver, Signal::SIGSTOP).expect("SIGSTOP the WAL receiver");
        let client = c.must_pg(primary).await;
        for v in 1..=100_i64 {
            tokio::time::timeout(WRITE, client.execute("INSERT INTO t VALUES ($1)", &[&v]))
                .await
                .unwrap_or_else(|_| panic!("write {v} on the primary timed out"))
                .unwrap_or_else(|e| panic!("write {v} on the primary: {e}"));
            acked.push(v);
        }
    })
    .await;

    phase("the stalled standby is being added: PostgreSQL waits for it, Raft does not name it", async {
        c.must_raftctl(&["config", "set", "synchronous_node_count=2"]);
        let want = format!("ANY 2 (\"pg{}\", \"pg{}\")", a.min(b), a.max(b));
        wait_for("the primary to wait for both standbys", SYNC_ESTABLISHED, async || {
            let client = c.must_pg(primary).await;
            let names: String = client.query_one("SHOW synchronous_standby_names", &[]).await.expect("SHOW").get(0);
            if names == want { Ok(()) } else { Err(names) }
        })
        .await;
        assert!(!c.try_write(primary, 1000).await, "a commit waits for the stalled standby");
        assert_eq!(sync_standbys(&c), [a].into(), "Raft still names only the committed standby");
    })
    .await;

    phase("the primary dies and the committed standby hangs: only it may be elected", async {
        signal_postgres(&c, a, Signal::SIGSTOP);
        kill_everything(&c, primary);
        c.kill_node(primary);
        // The controller refuses the standby being added: it says so, or,
        // when the hung standby still reported healthy at the decision,
        // elects that one (whose promotion waits for its PostgreSQL).
        let pa = format!("pg{a}");
        wait_for("the controller to refuse the standby being added", FAILOVER, async || {
            let list = c.must_raftctl(&["list"]);
            let doc = c.raftctl_json(&["list"]);
            if list.contains("Automatic failover blocked") || doc["primary"] == pa.as_str() {
                Ok(())
            } else {
                Err(list)
            }
        })
        .await;
        assert_ne!(
            c.raftctl_json(&["list"])["primary"],
            format!("pg{b}").as_str(),
            "the standby being added was elected"
        );
        assert_ne!(status_of(&c, b, "/primary").await, 200, "the standby being added was promoted");
    })
    .await;

    phase("the committed standby returns and is promoted with every acknowledged write", async {
        signal_postgres(&c, a, Signal::SIGCONT);
        let new = c.must_primary(&[a, b], FAILOVER).await;
        assert_eq!(new, a, "only the committed standby may be promoted");
        assert_eq!(present(&c, a, &acked).await, acked.len(), "every acknowledged write is on the new primary");
        kill(receiver, Signal::SIGCONT).expect("SIGCONT the WAL receiver");
        c.start_node(primary);
        c.must_healthy(&[1, 2, 3], REJOIN).await;
    })
    .await;
}

/// A synchronous standby that stops answering without its connection
/// closing (a network partition that drops packets: its WAL sender keeps
/// saying "streaming" until `wal_sender_timeout`, 60 s) is replaced within
/// seconds, not a minute: commits stop waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_synchronous_standby_is_replaced_before_the_wal_sender_notices() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    c.must_raftctl(&["config", "set", "synchronous_mode=on"]);
    let a = *must_sync(&c, 1).await.first().expect("one");
    let b = [1, 2, 3].into_iter().find(|id| *id != primary && *id != a).expect("the other replica");
    let receiver = walreceiver(&c, a);

    phase("the synchronous standby falls silent; a commit waits seconds, not a minute", async {
        kill(receiver, Signal::SIGSTOP).expect("SIGSTOP the WAL receiver");
        let client = c.must_pg(primary).await;
        let started = std::time::Instant::now();
        let write =
            tokio::time::timeout(Duration::from_secs(15), client.execute("INSERT INTO t VALUES (1)", &[])).await;
        assert!(matches!(write, Ok(Ok(1))), "the commit still waits for the silent standby: {write:?}");
        info!(waited = ?started.elapsed(), "--- commit released");
        assert_eq!(must_sync(&c, 1).await, [b].into(), "the other standby replaced it");
    })
    .await;
    kill(receiver, Signal::SIGCONT).expect("SIGCONT the WAL receiver");
    c.must_healthy(&[1, 2, 3], REJOIN).await;
}
