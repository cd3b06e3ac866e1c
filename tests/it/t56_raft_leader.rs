//! The Raft leader on a node that does not run the primary: the replicas'
//! heartbeats ride on its AppendEntries while the primary renews its lease
//! on its own, and its death elects another leader before the primary's
//! lease runs out, so the primary keeps running.

use std::time::Duration;

use raftgres::playground::http_get;
use serde_json::Value;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{HANDOVER_ACCEPTED, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
use crate::support::{phase, wait_for};

/// The leader's view of a node must be no older than this: two lease
/// heartbeat intervals (250 ms) and the Raft heartbeat that carries it.
const FRESH_MS: u64 = 700;

/// How many times the test kills the Raft leader.
const LEADER_DEATHS: usize = 5;

/// The Raft leader and the primary, as `raftctl list` names them.
fn leader_and_primary(c: &DaemonCluster) -> Result<(u64, u64), String> {
    placement(c).map(|(l, p, _)| (l, p))
}

/// The Raft leader, the primary and the epoch, as `raftctl list` names
/// them.
fn placement(c: &DaemonCluster) -> Result<(u64, u64, u64), String> {
    let s: Value = match c.raftctl(&["list", "-o", "json"]) {
        (0, out, _) => serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?,
        (code, out, err) => return Err(format!("raftctl list exited {code}: {err}{out}")),
    };
    match (s["raft_leader"].as_u64(), s["members"].as_array(), s["epoch"].as_u64()) {
        (Some(l), Some(ms), Some(e)) => {
            let p = ms.iter().find(|m| m["role"] == "primary").and_then(|m| m["id"].as_u64());
            p.map(|p| (l, p, e)).ok_or_else(|| format!("no primary: {s}"))
        }
        _ => Err(format!("no Raft leader: {s}")),
    }
}

/// Waits for a Raft leader on another node than the primary, switching
/// over away from the leader when they share a node.
async fn leader_off_primary(c: &DaemonCluster) -> (u64, u64) {
    for _ in 0..3 {
        let (l, p) = wait_for("a Raft leader and a primary", SETTLED, async || leader_and_primary(c)).await;
        if l != p {
            return (l, p);
        }
        let target = [1, 2, 3].into_iter().find(|id| *id != l).expect("another node");
        info!(leader = l, target, "--- the primary leads Raft: switching over");
        let to = format!("pg{target}");
        wait_for("the switchover to be accepted", HANDOVER_ACCEPTED, async || {
            match c.raftctl(&["switchover", "--to", &to, "--force"]) {
                (0, out, _) => Ok(out),
                (code, out, err) => Err(format!("raftctl switchover exited {code}: {err}{out}")),
            }
        })
        .await;
        c.must_primary(&[target], SWITCHOVER).await;
    }
    panic!("the Raft leadership followed the primary three times");
}

/// How long the leader last heard from `id`, by its `/patroni` document.
async fn silence_on_leader(c: &DaemonCluster, leader: u64, id: u64) -> Result<u64, String> {
    let (_, body) = http_get(&format!("{}/patroni", c.api(leader))).await.map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    doc["raftgres"]["silent_ms"][id.to_string()].as_u64().ok_or_else(|| format!("no silence of node {id}: {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_report_on_the_raft_heartbeats_and_the_primary_renews_on_its_own() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    let (leader, primary) = leader_off_primary(&c).await;
    let replica = [1, 2, 3].into_iter().find(|id| *id != leader && *id != primary).expect("a third node");
    info!(leader, primary, replica, "--- placement");

    let sent = "raftgres_lease_heartbeats_sent_total";
    let carried = "raftgres_lease_heartbeats_carried_total";
    phase("the replica stops sending its heartbeat on its own", async {
        // Over a second: no heartbeat of its own, several carried, and
        // the leader's view of it stays fresh.
        wait_for("a second without a heartbeat of the replica's own", SETTLED, async || {
            let before = (c.metric(replica, sent).await, c.metric(replica, carried).await);
            let (Some(s0), Some(c0)) = before else { return Err(format!("no counters: {before:?}")) };
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (s1, c1) = (c.metric(replica, sent).await, c.metric(replica, carried).await);
            let silent = silence_on_leader(&c, leader, replica).await?;
            match (s1, c1) {
                (Some(s1), Some(c1)) if s1 == s0 && c1 >= c0 + 2 && silent <= FRESH_MS => Ok(()),
                other => Err(format!("sent {s0} -> {:?}, carried {c0} -> {:?}, silent {silent} ms", other.0, other.1)),
            }
        })
        .await;
    })
    .await;

    phase("the primary renews its lease on its own, and carries nothing", async {
        let (s0, c0) = (c.metric(primary, sent).await, c.metric(primary, carried).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (s1, c1) = (c.metric(primary, sent).await, c.metric(primary, carried).await);
        let renewals = s1.zip(s0).map(|(a, b)| a - b);
        assert!(renewals.is_some_and(|n| n >= 2), "renewals in a second: {renewals:?}");
        assert_eq!(c0, c1, "a primary's heartbeat never rides");
        wait_for("the leader to have heard from the primary lately", SETTLED, async || {
            match silence_on_leader(&c, leader, primary).await? {
                ms if ms <= FRESH_MS => Ok(()),
                ms => Err(format!("silent for {ms} ms")),
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_raft_leaders_death_does_not_stop_a_healthy_primary() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    for round in 1..=LEADER_DEATHS {
        let (leader, primary) = leader_off_primary(&c).await;
        c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
        let postmaster = c.postmaster_pid(primary).expect("the primary's postmaster");
        let (_, _, epoch) = wait_for("the epoch", SETTLED, async || placement(&c)).await;
        info!(round, leader, primary, postmaster, "--- killing the Raft leader");
        c.kill_node(leader);
        let after = wait_for("another Raft leader", SETTLED, async || match placement(&c) {
            Ok((l, p, e)) if l != leader => Ok((p, e)),
            other => Err(format!("{other:?}")),
        })
        .await;
        assert_eq!(after, (primary, epoch), "no failover: the primary still runs in its epoch");
        // The new leader renews the lease: a write on the primary commits
        // after the election, on the same postmaster, in the same epoch.
        let client = c.must_pg(primary).await;
        client.batch_execute("CREATE TABLE IF NOT EXISTS t (v int); INSERT INTO t VALUES (1)").await.expect("write");
        assert_eq!(c.postmaster_pid(primary), Some(postmaster), "the primary's PostgreSQL was not stopped");
        let (_, p, e) = wait_for("the placement", SETTLED, async || placement(&c)).await;
        assert_eq!((p, e), (primary, epoch), "no election of a primary");
        assert!(!c.log(primary).contains("fenced:"), "the fence never stopped the primary:\n{}", c.log(primary));
        c.start_node(leader);
    }
}

/// A daemon that leads Raft and runs the primary, stopped cleanly, sees
/// the role through its change before it leaves the Raft leadership: its
/// controller elects the successor once the role is released, and it
/// waits until the successor runs under a lease it granted, its promotion
/// recorded, so the successor answers `/primary` and writes while the
/// others elect the next Raft leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_raft_leader_that_stops_leaves_the_successor_primary_a_lease() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.make_primary_lead_raft().await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create a table");
    info!(primary, "--- stopping the daemon that leads Raft and runs the primary");
    assert_eq!(c.stop_node(primary).await, Some(0), "a clean exit");
    let log = c.log(primary);
    let line = log
        .lines()
        .find(|l| l.contains("the new primary runs under a lease this leader granted"))
        .unwrap_or_else(|| panic!("the stopping leader did not wait for its successor's lease:\n{log}"));
    let (_, next) =
        wait_for("a Raft leader and a primary among the others", SETTLED, async || match leader_and_primary(&c) {
            Ok((l, p)) if others.contains(&l) && others.contains(&p) => Ok((l, p)),
            other => Err(format!("{other:?}")),
        })
        .await;
    assert!(line.contains(&format!("primary=pg{next}")), "the lease was the successor's: {line}");
    c.must_accept_write(next, 1, SWITCHOVER).await;
}
