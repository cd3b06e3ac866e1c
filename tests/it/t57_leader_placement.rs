//! The Raft leader keeps off the primary's node (`raft.leader_placement =
//! "avoid_primary"`, off by default): after bootstrap, and after a switchover onto
//! the node that leads Raft, the leadership moves to another node; the
//! primary keeps its lease throughout.

use std::time::Duration;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::REPLICAS_FOLLOW;
use crate::support::{phase, wait_for};

/// Settling (2 s), a hand-over and the election it starts, with margin.
const MOVED: Duration = Duration::from_secs(20);

/// The member `raftctl list` names Raft leader, and the primary.
fn leader_and_primary(c: &DaemonCluster) -> (Option<u64>, Option<u64>) {
    let s = c.raftctl_json(&["list"]);
    let members = s["members"].as_array().cloned().unwrap_or_default();
    let find = |key: &str, value: &str| members.iter().find(|m| m[key] == value).and_then(|m| m["id"].as_u64());
    (find("raft_role", "leader"), find("role", "primary"))
}

async fn must_leader_off_primary(c: &DaemonCluster) -> (u64, u64) {
    wait_for("the Raft leader on another node than the primary", MOVED, async || match leader_and_primary(c) {
        (Some(l), Some(p)) if l != p => Ok((l, p)),
        other => Err(other),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_raft_leader_moves_off_the_primarys_node() {
    let c =
        DaemonCluster::start(3, |f| f.raft.leader_placement = raftgres::config::LeaderPlacement::AvoidPrimary).await;
    let _logs = c.logs_on_panic();
    let first = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;

    let (leader, primary) = phase("after bootstrap", must_leader_off_primary(&c)).await;
    assert_eq!(primary, first);

    phase("after a switchover onto the node that leads Raft", async {
        c.must_raftctl(&["switchover", "--to", &format!("pg{leader}"), "--force"]);
        let (l, p) = must_leader_off_primary(&c).await;
        assert_eq!(p, leader, "the switchover's target is primary");
        assert_ne!(l, leader);
        // The hand-over cost the primary no lease: it answers writes.
        c.must_pg(p).await.batch_execute("CREATE TABLE t (v int)").await.expect("a write on the primary");
        let history = c.must_raftctl(&["history"]);
        assert!(history.contains("switchover") && !history.contains("failover"), "no failover followed: {history}");
    })
    .await;
}
