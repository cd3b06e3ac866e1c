//! Operator mistakes that must not cost an outage, and operator habits
//! that must work, against real daemons and real PostgreSQL: a switchover
//! or failover to a member whose daemon is stopped is refused and changes
//! nothing; in maintenance mode a PostgreSQL stopped by hand stays stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::http::client;
use serde_json::Value;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{REJOIN, SETTLED};
use crate::support::wait_for;

fn members(status: &Value) -> Vec<Value> {
    status["members"].as_array().cloned().unwrap_or_default()
}

fn member<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("{name} is not listed: {status}"))
}

/// Polls `<api>/primary` until stopped; counts the answers that were not
/// 200, and all answers.
struct PrimaryWatch {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU32>,
    failures: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl PrimaryWatch {
    fn start(api: String) -> Self {
        let (stop, polls, failures) = (Arc::default(), Arc::default(), Arc::default());
        let (s, p, f): (Arc<AtomicBool>, Arc<AtomicU32>, Arc<AtomicU32>) =
            (Arc::clone(&stop), Arc::clone(&polls), Arc::clone(&failures));
        let task = tokio::spawn(async move {
            let url = format!("{api}/primary");
            while !s.load(Ordering::SeqCst) {
                let reply = client::request("GET", &url, None, &[], None, Duration::from_secs(1)).await;
                p.fetch_add(1, Ordering::SeqCst);
                if !reply.as_ref().is_ok_and(|r| r.status == 200) {
                    f.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(?reply, "/primary did not answer 200");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        PrimaryWatch { stop, polls, failures, task }
    }

    /// Stops polling; (answers, answers that were not 200).
    async fn finish(self) -> (u32, u32) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the /primary poller");
        (self.polls.load(Ordering::SeqCst), self.failures.load(Ordering::SeqCst))
    }
}

/// A replica's daemon is stopped: `list` shows it `unknown`, and
/// `switchover --to` and `failover --to` it are refused (exit 1) without
/// touching the primary, whose `/primary` answers 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handover_to_a_stopped_member_is_refused_and_it_is_listed_unknown() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let down = [1, 2, 3].into_iter().find(|id| *id != primary).expect("a replica");
    let name = format!("pg{down}");
    let before = c.raftctl_json(&["list"]);
    let epoch = before["epoch"].as_u64().expect("epoch");

    info!("--- {name}'s daemon stops (and its PostgreSQL with it)");
    c.stop_node(down).await;
    let status = wait_for(&format!("{name} listed unknown"), SETTLED, async || {
        let status = c.raftctl_json(&["list"]);
        let m = member(&status, &name);
        if m["state"] == "unknown" { Ok(status) } else { Err(status) }
    })
    .await;
    assert_eq!(member(&status, &name)["role"], "unreachable", "{status}");
    assert_eq!(member(&status, &name)["raft_role"], "unknown", "not claimed a follower: {status}");
    let cluster: Value = serde_json::from_str(
        &client::request("GET", &format!("{}/cluster", c.api(primary)), None, &[], None, SETTLED)
            .await
            .expect("GET /cluster")
            .body,
    )
    .expect("/cluster is JSON");
    let listed = cluster["members"].as_array().and_then(|ms| ms.iter().find(|m| m["name"] == name.as_str()));
    assert_eq!(listed.map(|m| m["state"].clone()), Some(Value::from("unknown")), "{cluster}");

    info!("--- switchover and failover to {name} are refused; the primary keeps answering");
    let watch = PrimaryWatch::start(c.api(primary));
    for verb in ["switchover", "failover"] {
        let (code, out, err) = c.raftctl(&[verb, "--to", &name, "--force"]);
        assert_eq!(code, 1, "{verb} --to {name} is refused: {err}{out}");
        assert!(err.contains(&name) && err.contains("not running"), "{verb}: the reason names it: {err}");
    }
    // An accepted request would have shut the primary down at once: watch
    // a few heartbeats more, failing at the first answer that is not 200.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        let failures = watch.failures.load(Ordering::SeqCst);
        assert_eq!(failures, 0, "/primary stopped answering 200 after the refused requests");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (polls, failures) = watch.finish().await;
    assert!(polls >= 10, "the primary was polled ({polls} answers)");
    assert_eq!(failures, 0, "/primary answered 200 throughout ({failures} of {polls} not)");
    let after = c.raftctl_json(&["list"]);
    assert_eq!(after["primary"], before["primary"], "{after}");
    assert_eq!(after["epoch"].as_u64(), Some(epoch), "{after}");
    assert_eq!(after["switchover"], Value::Null, "nothing scheduled: {after}");
    assert_eq!(members(&after).len(), 3, "{after}");
}

/// Maintenance mode means hands off: a replica's PostgreSQL stopped by
/// hand while paused stays stopped, its daemon reporting it stopped; after
/// `resume` the agent starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_maintenance_mode_a_postgresql_stopped_by_hand_stays_stopped() {
    let c = DaemonCluster::start(2, |_| {}).await;
    let primary = c.must_healthy(&[1, 2], SETTLED).await;
    let replica = if primary == 1 { 2 } else { 1 };
    let name = format!("pg{replica}");
    let out = c.must_raftctl(&["pause"]);
    assert!(out.contains("maintenance mode on"), "{out}");
    wait_for("maintenance mode on both nodes", SETTLED, async || {
        let mut paused = Vec::new();
        for id in [1, 2] {
            let doc = client::request("GET", &format!("{}/patroni", c.api(id)), None, &[], None, SETTLED).await;
            let doc: Option<Value> = doc.ok().and_then(|r| serde_json::from_str(&r.body).ok());
            paused.push(doc.map(|d| d["pause"].clone()));
        }
        if paused.iter().all(|p| p == &Some(Value::Bool(true))) { Ok(()) } else { Err(paused) }
    })
    .await;

    info!("--- {name}'s PostgreSQL is stopped by hand (SIGINT: fast shutdown)");
    let pid = c.postmaster_pid(replica).expect("the replica's postmaster runs");
    kill(Pid::from_raw(pid), Signal::SIGINT).expect("signal the postmaster");
    wait_for(&format!("{name}'s postmaster to exit"), SETTLED, async || match kill(Pid::from_raw(pid), None) {
        Err(_) => Ok(()),
        Ok(()) => Err("still running"),
    })
    .await;
    // Its daemon reports it stopped, and nothing starts it: watch for a
    // dozen agent turns, failing at the first sign of a restart.
    let window = Instant::now();
    let mut reported_stopped = false;
    while window.elapsed() < Duration::from_secs(3) || !reported_stopped {
        assert!(window.elapsed() < SETTLED, "{name} was never reported stopped");
        let restarted = c.postmaster_pid(replica);
        assert_eq!(restarted, None, "{name}'s PostgreSQL was started again in maintenance mode");
        let status = c.raftctl_json(&["list"]);
        let m = member(&status, &name);
        assert_ne!(m["role"], "unreachable", "its daemon keeps answering: {status}");
        reported_stopped |= m["state"] == "stopped";
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.must_healthy(&[primary], SETTLED).await, primary, "the primary is untouched");

    info!("--- resume: the agent starts {name} again");
    let out = c.must_raftctl(&["resume"]);
    assert!(out.contains("maintenance mode off"), "{out}");
    c.must_healthy(&[1, 2], REJOIN).await;
    assert_ne!(c.postmaster_pid(replica), None);
}

/// A daemon started as a new node, not yet in the Raft membership, logs
/// the exact `raftctl member add` command that adds it, and does not claim
/// the cluster is unlocked; the logged command adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_waiting_to_be_added_says_how() {
    let mut c = DaemonCluster::start(2, |_| {}).await;
    let new = c.spawn_joiner();
    let node = c.layout.node(new).clone();
    let want = format!(
        "raftctl member add --id {new} --name {} --raft-addr {} --api-url {}",
        node.name,
        node.raft_addr(),
        node.api_url()
    );
    wait_for("the new node to log how to add it", SETTLED, async || {
        if c.log(new).contains(&want) { Ok(()) } else { Err(c.log(new).lines().last().map(str::to_string)) }
    })
    .await;
    let doc = wait_for("the new node's /patroni", SETTLED, async || {
        let r = client::request("GET", &format!("{}/patroni", node.api_url()), None, &[], None, SETTLED).await;
        r.map_err(|e| e.to_string()).and_then(|r| serde_json::from_str::<Value>(&r.body).map_err(|e| e.to_string()))
    })
    .await;
    assert_eq!(doc["cluster_unlocked"], false, "it knows nothing of the lock yet: {doc}");
    let metrics = client::request("GET", &format!("{}/metrics", node.api_url()), None, &[], None, SETTLED)
        .await
        .expect("GET /metrics")
        .body;
    let unlocked = metrics.lines().find(|l| l.starts_with("patroni_cluster_unlocked{"));
    assert!(unlocked.is_some_and(|l| l.ends_with(" 0")), "{unlocked:?}");

    info!("--- the logged command adds it");
    let args: Vec<&str> = want.split(' ').skip(1).collect();
    let out = c.must_raftctl(&args);
    assert!(out.contains("learner"), "{out}");
    let status = c.raftctl_json(&["list"]);
    assert!(members(&status).iter().any(|m| m["name"] == node.name.as_str()), "{status}");
}
