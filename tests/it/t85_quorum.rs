//! Quorum commit (RFC 0003): with `synchronous_mode = "quorum"` and
//! `synchronous_node_count = 2`, a 5-node cluster's primary waits for any
//! two of its four standbys; losing the primary and one standby at once
//! under writes loses no acknowledged write, and the cluster goes on
//! writing. Phases are named: a failure names its phase.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::playground::http_get;
use raftgres::postgres::pidfile::children_of;
use tokio::sync::watch;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{FAILOVER, REJOIN, REPLICAS_FOLLOW, WRITE};
use crate::support::{phase, wait_for};

/// How long the primary's agent may take to settle the quorum (record the
/// standbys, raise the quorum in PostgreSQL, see two catch up, commit).
const QUORUM_ESTABLISHED: Duration = Duration::from_secs(30);

const ALL: [u64; 5] = [1, 2, 3, 4, 5];

/// The members `raftctl list` names quorum standbys, and the quorum the
/// primary's metrics report.
fn quorum_standbys(c: &DaemonCluster) -> BTreeSet<u64> {
    let s = c.raftctl_json(&["list"]);
    s["members"]
        .as_array()
        .map(|ms| ms.iter().filter(|m| m["quorum_standby"] == true).filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// Waits until the primary's PostgreSQL waits for any 2 of exactly
/// `standbys` and the cluster lists them as quorum standbys.
async fn must_quorum(c: &DaemonCluster, primary: u64, standbys: &[u64]) {
    let names: Vec<String> = standbys.iter().map(|id| format!("\"pg{id}\"")).collect();
    let want = format!("ANY 2 ({})", names.join(", "));
    let set: BTreeSet<u64> = standbys.iter().copied().collect();
    wait_for(&format!("the primary waiting for {want}"), QUORUM_ESTABLISHED, async || {
        let client = c.must_pg(primary).await;
        let running: String =
            client.query_one("SHOW synchronous_standby_names", &[]).await.map(|r| r.get(0)).unwrap_or_default();
        let listed = quorum_standbys(c);
        let metrics = http_get(&format!("{}/metrics", c.api(primary))).await.map(|(_, b)| b).unwrap_or_default();
        let quorum = metrics.lines().any(|l| l.starts_with("raftgres_sync_quorum") && l.ends_with(" 2"));
        if running == want && listed == set && quorum { Ok(()) } else { Err((running, listed)) }
    })
    .await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_mode_survives_losing_the_primary_and_a_standby_under_writes() {
    let mut c = DaemonCluster::start(5, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&ALL, REPLICAS_FOLLOW).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    let standbys: Vec<u64> = ALL.into_iter().filter(|id| *id != primary).collect();

    phase("quorum mode switched on at run time", async {
        c.must_raftctl(&["config", "set", "synchronous_node_count=2", "synchronous_mode=quorum"]);
        must_quorum(&c, primary, &standbys).await;
        let s = standbys[0];
        assert_eq!(status_of(&c, s, "/quorum").await, 200, "a quorum standby answers /quorum");
        assert_eq!(status_of(&c, s, "/read-only-quorum").await, 200);
        assert_eq!(status_of(&c, s, "/sync").await, 503, "it is not a synchronous standby of `on` mode");
        assert_eq!(status_of(&c, s, "/async").await, 503, "nor asynchronous");
        assert_eq!(status_of(&c, primary, "/read-only-quorum").await, 200);
        assert_eq!(status_of(&c, primary, "/quorum").await, 503);
        let table = c.must_raftctl(&["list"]);
        assert!(table.contains("Quorum Standby"), "{table}");
        // A standby is armed with what it would inherit: the others, any 1.
        let on_standby: String =
            c.must_pg(s).await.query_one("SHOW synchronous_standby_names", &[]).await.expect("SHOW").get(0);
        assert!(on_standby.starts_with("ANY 1 (") && !on_standby.contains(&format!("\"pg{s}\"")), "{on_standby}");
    })
    .await;

    let (new, lost_standby) = phase("the primary and a standby die together under writes", async {
        let lost_standby = standbys[1];
        let (stop_tx, stop_rx) = watch::channel(false);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let acked = acked.clone();
            let c = &c;
            async move {
                let mut v = 0_i64;
                while !*stop_rx.borrow() {
                    v += 1;
                    if c.try_write(primary, v).await {
                        acked.lock().expect("acked").push(v);
                    }
                }
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
                kill_everything(c, lost_standby);
                kill_everything(c, primary);
                info!(primary, lost_standby, "--- primary and a standby killed under writes");
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stop_tx.send(true);
            }
        };
        tokio::join!(writer, killer);
        c.kill_node(primary);
        c.kill_node(lost_standby);
        let others: Vec<u64> = ALL.into_iter().filter(|id| *id != primary && *id != lost_standby).collect();
        let new = c.must_primary(&others, FAILOVER).await;
        let acked = acked.lock().expect("acked").clone();
        let client = c.must_pg(new).await;
        let row = client.query_one("SELECT count(*) FROM t WHERE v = ANY($1)", &[&acked]).await.expect("count");
        assert_eq!(
            row.get::<_, i64>(0) as usize,
            acked.len(),
            "every acknowledged write is on the new primary ({} acknowledged)",
            acked.len()
        );
        // The two standbys left are enough for a quorum of 2: writes go on.
        c.must_accept_write(new, 1_000_000, WRITE).await;
        (new, lost_standby)
    })
    .await;

    phase("the lost nodes return and the quorum spans four standbys again", async {
        c.start_node(primary);
        c.start_node(lost_standby);
        c.must_healthy(&ALL, REJOIN).await;
        let standbys: Vec<u64> = ALL.into_iter().filter(|id| *id != new).collect();
        must_quorum(&c, new, &standbys).await;
        let history = c.must_raftctl(&["history", "--all"]);
        assert!(history.contains("synchronous quorum of epoch"), "{history}");
    })
    .await;
}
