//! Failure modes where promoting a replica would silently lose
//! acknowledged writes: the controller refuses, says why, and an operator
//! can accept the loss. The tests run in named phases: a failure names its
//! phase.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::playground::http_get;
use raftgres::postgres::pidfile::{children_of, proc_stat};
use serde_json::Value;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{
    FAILOVER, HANDOVER_ACCEPTED, REJOIN, REPLICAS_FOLLOW, REPLICATED, SETTLED, SWITCHOVER, WRITE,
};
use crate::support::{metric, phase, wait_for};

/// Rows of the table only the primary gets: about 48 MB of WAL, as in the
/// report (200,000 rows, 45 MB).
const ROWS: i64 = 200_000;

/// How long the controller may take, after the kill, to say it is blocked:
/// a Raft election, then a full lease from it.
const BLOCKED: Duration = Duration::from_secs(20);

/// Whatever happens, no process this test stopped outlives it (only those
/// still stopped: a pid may be reused meanwhile).
#[derive(Default)]
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if proc_stat(*pid).is_some_and(|s| s.state == 'T') {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }
}

/// How long the lost primary has been silent, as the controller's reason
/// says it ("primary N silent for 2.5s but ..."), in `Duration`'s debug
/// spelling.
fn silence(reason: &str) -> Option<Duration> {
    let (_, rest) = reason.split_once("silent for ")?;
    let d = rest.split_whitespace().next()?;
    let (number, scale) = if let Some(n) = d.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = d.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = d.strip_suffix("ns") {
        (n, 1e-9)
    } else {
        (d.strip_suffix('s')?, 1.0)
    };
    Some(Duration::from_secs_f64(number.parse::<f64>().ok()? * scale))
}

#[test]
fn silence_reads_durations_in_debug_spelling() {
    let reason = |d: Duration| format!("primary 1 silent for {d:?} but no failover candidate: pg2: 5 bytes behind");
    for d in [Duration::from_millis(2345), Duration::from_millis(850), Duration::from_secs(12)] {
        let got = silence(&reason(d)).expect("parsed");
        assert!(got.abs_diff(d) < Duration::from_micros(1), "{d:?} read as {got:?}");
    }
    assert_eq!(silence("no primary and no failover candidate"), None);
}

/// The cluster's status as `raftctl list -o json` prints it, or why not.
fn list_json(c: &DaemonCluster) -> Result<Value, String> {
    match c.raftctl(&["list", "-o", "json"]) {
        (0, out, _) => serde_json::from_str(&out).map_err(|e| format!("{e}: {out}")),
        (code, out, err) => Err(format!("raftctl list exited {code}: {err}{out}")),
    }
}

/// A WAL position of node `id`'s PostgreSQL, in bytes: `expr` is an
/// `pg_lsn` expression.
async fn lsn_of(c: &DaemonCluster, id: u64, expr: &str) -> Option<i64> {
    let sql = format!("SELECT pg_wal_lsn_diff({expr}, '0/0')::bigint");
    let row = c.must_pg(id).await.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql} on node {id}: {e}"));
    row.get(0)
}

/// Panics if any of `ids` answers 200 on `/primary`.
async fn assert_no_primary(c: &DaemonCluster, ids: &[u64], when: &str) {
    for id in ids {
        if let Ok((200, body)) = http_get(&format!("{}/primary", c.api(*id))).await {
            panic!("{when}: node {id} answers /primary with 200: {body}");
        }
    }
}

/// Panics unless every one of `ids` runs PostgreSQL in recovery.
async fn assert_in_recovery(c: &DaemonCluster, ids: &[u64], when: &str) {
    for id in ids {
        let row = c.must_pg(*id).await.query_one("SELECT pg_is_in_recovery()", &[]).await;
        let in_recovery: bool = row.unwrap_or_else(|e| panic!("{when}: node {id}: {e}")).get(0);
        assert!(in_recovery, "{when}: node {id}'s PostgreSQL was promoted");
    }
}

/// Whether node `id` has the table `name`.
async fn has_table(c: &DaemonCluster, id: u64, name: &str) -> bool {
    let row = c.must_pg(id).await.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await;
    row.unwrap_or_else(|e| panic!("look up {name} on node {id}: {e}")).get(0)
}

/// The bug report: with both replicas' WAL receivers stopped while 45 MB of
/// WAL were written and acknowledged, killing the node that was both
/// primary and Raft leader promoted a replica 3.8 s later, without the
/// table; maximum_lag_on_failover was 1 MB. The new Raft leader never saw
/// the old primary's heartbeat, so the lag is measured against the position
/// the primary recorded in the replicated state: no replica is promoted,
/// the refusal is shown, an operator's `failover --accept-data-loss` goes
/// through, and the old primary comes back rewound onto the new timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_past_the_lag_limit_is_not_promoted_when_the_primary_and_raft_leader_die() {
    // `avoid_primary` would move the Raft leader off the primary's node;
    // this case needs them together.
    let mut c = DaemonCluster::start(3, |f| f.raft.leader_placement = raftgres::config::LeaderPlacement::Any).await;
    let _logs = c.logs_on_panic();
    let dynamic = c.layout.file_config(1).dynamic;
    let lease = Duration::from_millis(dynamic.lease_ttl_ms + dynamic.drift_margin_ms);
    assert_eq!(dynamic.maximum_lag_on_failover, 1 << 20, "the default limit, as in the report");

    let primary = phase("the primary leads Raft", c.make_primary_lead_raft()).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    info!("--- node {primary} is primary and Raft leader, replicas {replicas:?}");
    let mut stopped = KillOnDrop::default();
    phase("WAL receivers stopped", phase_wal_receivers_stopped(&c, &replicas, &mut stopped)).await;
    phase("WAL only the primary has", phase_wal_only_the_primary_has(&c, primary, &replicas)).await;
    let (epoch, timeline) = phase("primary and Raft leader killed", phase_kill(&mut c, primary)).await;
    let first = phase("failover blocked", phase_failover_blocked(&c, primary, &replicas, epoch, lease)).await;
    phase("still blocked a lease later", phase_still_blocked(&c, &replicas, epoch, lease, first)).await;
    phase("WAL receivers resumed", async {
        for pid in &stopped.0 {
            let state = proc_stat(*pid).map(|s| s.state);
            assert_eq!(state, Some('T'), "WAL receiver {pid} stayed stopped through the refusal");
            kill(Pid::from_raw(*pid), Signal::SIGCONT).unwrap_or_else(|e| panic!("SIGCONT {pid}: {e}"));
        }
    })
    .await;
    let new = phase("failover --accept-data-loss", phase_forced_failover(&c, &replicas, timeline)).await;
    phase("the old primary rejoins rewound", phase_old_primary_rejoins(&mut c, primary, new, timeline + 1)).await;
}

/// SIGSTOPs both replicas' WAL receivers; their pids go to `stopped`
/// before the signal.
async fn phase_wal_receivers_stopped(c: &DaemonCluster, replicas: &[u64], stopped: &mut KillOnDrop) {
    for r in replicas {
        let pid = wait_for(&format!("node {r}'s WAL receiver"), SETTLED, async || {
            let client = c.pg(*r).await.map_err(|e| e.to_string())?;
            let row = client.query_opt("SELECT pid FROM pg_stat_wal_receiver", &[]).await.map_err(|e| e.to_string())?;
            row.map(|r| r.get::<_, i32>(0)).ok_or_else(|| "no WAL receiver".to_string())
        })
        .await;
        assert!(proc_stat(pid).is_some(), "node {r}'s WAL receiver {pid} runs");
        stopped.0.push(pid);
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap_or_else(|e| panic!("SIGSTOP {pid}: {e}"));
        wait_for(&format!("node {r}'s WAL receiver {pid} to stop"), SETTLED, async || match proc_stat(pid) {
            Some(s) if s.state == 'T' => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
        info!(node = r, pid, "--- WAL receiver stopped");
    }
}

/// Writes about 48 MB of WAL on the primary, acknowledged; the replicas do
/// not receive it, and the primary records its position past it.
async fn phase_wal_only_the_primary_has(c: &DaemonCluster, primary: u64, replicas: &[u64]) {
    let client = c.must_pg(primary).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .unwrap_or_else(|e| panic!("create the table: {e:?}"));
    let n: i64 = client.query_one("SELECT count(*) FROM big", &[]).await.expect("count").get(0);
    assert_eq!(n, ROWS);
    let written = lsn_of(c, primary, "pg_current_wal_lsn()").await.expect("a primary's WAL position");
    for r in replicas {
        let received = lsn_of(c, *r, "pg_last_wal_receive_lsn()").await.unwrap_or(0);
        assert!(
            written - received > 10 << 20,
            "node {r} received up to {received}, the primary wrote up to {written}: its WAL receiver was not stopped"
        );
    }
    let recorded = wait_for("the primary to record its position past the write", SETTLED, async || {
        let (code, text) = http_get(&format!("{}/metrics", c.api(primary))).await.map_err(|e| e.to_string())?;
        match metric(&text, "raftgres_primary_recorded_lsn") {
            Some(lsn) if code == 200 && lsn >= written => Ok(lsn),
            other => Err(format!("{code}: recorded {other:?}, written {written}")),
        }
    })
    .await;
    info!(written, recorded, "--- the primary wrote and recorded its position; the replicas stopped receiving");
}

/// SIGKILLs the primary's daemon, postmaster and PostgreSQL's other
/// processes. Returns the epoch and the timeline it ran on.
async fn phase_kill(c: &mut DaemonCluster, primary: u64) -> (u64, u32) {
    let status = list_json(c).unwrap_or_else(|e| panic!("{e}"));
    let epoch = status["epoch"].as_u64().expect("epoch");
    assert_eq!(status["raft_leader"].as_u64(), Some(primary), "still the Raft leader: {status}");
    let timeline = c.must_timeline(primary).await;
    let pm = c.postmaster_pid(primary).expect("the primary's postmaster");
    let children = children_of(pm);
    c.kill_node(primary);
    for pid in children {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    info!(epoch, timeline, "--- node {primary} killed");
    (epoch, timeline)
}

/// The new Raft leader, which never saw the old primary's heartbeat,
/// refuses to promote either replica: too far behind the recorded
/// position. Returns the leader and the silence its first refusal reports.
async fn phase_failover_blocked(
    c: &DaemonCluster,
    primary: u64,
    replicas: &[u64],
    epoch: u64,
    lease: Duration,
) -> (u64, Duration) {
    let (status, reason) = wait_for("raftctl list to show the failover blocked", BLOCKED, async || {
        assert_no_primary(c, replicas, "before the refusal").await;
        let s = list_json(c)?;
        match s["failover_blocked"].as_str() {
            Some(why) => Ok((s.clone(), why.to_string())),
            None => Err(format!("{s}")),
        }
    })
    .await;
    info!(reason, "--- blocked");
    assert!(reason.contains("bytes behind"), "{reason}");
    assert!(reason.contains(&format!("primary {primary} silent for")), "{reason}");
    assert!(reason.contains("--accept-data-loss"), "the refusal names the way out: {reason}");
    for r in replicas {
        assert!(reason.contains(&format!("pg{r}: ")), "node {r} is named in {reason}");
    }
    let first = silence(&reason).unwrap_or_else(|| panic!("no silence in {reason}"));
    assert!(first > lease, "blocked only after a full lease ({lease:?}): {reason}");
    assert_eq!(status["epoch"].as_u64(), Some(epoch), "no election: {status}");
    assert_eq!(status["primary"].as_str(), Some(format!("pg{primary}").as_str()), "{status}");
    let leader = status["raft_leader"].as_u64().expect("a Raft leader");
    assert!(replicas.contains(&leader), "a surviving node leads Raft: {status}");
    assert_no_primary(c, replicas, "when the refusal is shown").await;
    assert_in_recovery(c, replicas, "when the refusal is shown").await;

    let table = c.must_raftctl(&["list"]);
    assert!(table.contains("Automatic failover blocked: "), "{table}");
    assert!(table.contains("bytes behind"), "{table}");
    let (code, text) = http_get(&format!("{}/metrics", c.api(leader))).await.expect("GET /metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&text, "raftgres_failover_blocked"), Some(1), "on the Raft leader:\n{text}");
    let follower = replicas.iter().copied().find(|id| *id != leader).expect("the other survivor");
    let (_, text) = http_get(&format!("{}/metrics", c.api(follower))).await.expect("GET /metrics");
    assert_eq!(metric(&text, "raftgres_failover_blocked"), Some(0), "only the leader decides:\n{text}");
    (leader, first)
}

/// A further full lease later, by the controller's own count, it still
/// refuses: nobody was promoted meanwhile.
async fn phase_still_blocked(c: &DaemonCluster, replicas: &[u64], epoch: u64, lease: Duration, first: (u64, Duration)) {
    let (leader, first_silence) = first;
    let later = first_silence + lease;
    let reason = wait_for("the refusal to stand a lease later", FAILOVER, async || {
        assert_no_primary(c, replicas, "while blocked").await;
        let (code, body) = http_get(&format!("{}/patroni", c.api(leader))).await.map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&body).map_err(|e| format!("{code}: {e}: {body}"))?;
        let Some(why) = doc["raftgres"]["failover_blocked"].as_str() else {
            return Err(format!("no refusal on the leader: {doc}"));
        };
        match silence(why) {
            Some(s) if s >= later && why.contains("bytes behind") => Ok(why.to_string()),
            _ => Err(why.to_string()),
        }
    })
    .await;
    info!(reason, "--- still blocked");
    let status = list_json(c).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status["epoch"].as_u64(), Some(epoch), "no election: {status}");
    assert!(status["failover_blocked"].as_str().is_some_and(|w| w.contains("bytes behind")), "{status}");
    assert_no_primary(c, replicas, "a lease after the refusal").await;
    assert_in_recovery(c, replicas, "a lease after the refusal").await;
}

/// The operator accepts the loss: the target is elected and writable, the
/// history says the failover was forced. Returns the new primary.
async fn phase_forced_failover(c: &DaemonCluster, replicas: &[u64], timeline: u32) -> u64 {
    let target = replicas[0];
    let (code, out, err) = c.raftctl(&["failover", "--to", &format!("pg{target}"), "--accept-data-loss", "--force"]);
    assert_eq!(code, 0, "failover --accept-data-loss failed: {err}{out}");
    assert!(out.contains("forced") && out.contains(&format!("pg{target} is the new primary")), "{out}");
    assert_eq!(c.must_primary(replicas, SWITCHOVER).await, target);
    wait_for(&format!("node {target} to take a write"), WRITE, async || {
        let client = c.pg(target).await.map_err(|e| e.to_string())?;
        client.batch_execute("CREATE TABLE after_failover (i int)").await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(c.must_timeline(target).await, timeline + 1, "promotion starts a new timeline");
    assert!(!has_table(c, target, "big").await, "the table only the lost primary had is gone: the loss accepted");
    let history = c.raftctl_json(&["history", "--all"]);
    let events = history.as_array().expect("array");
    assert!(events.iter().any(|e| e["kind"] == "failover_forced"), "{history}");
    let elected = events.iter().rev().find(|e| e["kind"] == "primary_elected").expect("an election");
    let text = elected["text"].as_str().unwrap_or_default();
    assert!(text.contains(&format!("pg{target} elected")) && text.contains("(manual)"), "{elected}");
    assert_eq!(list_json(c).unwrap_or_else(|e| panic!("{e}"))["failover_blocked"], Value::Null);
    target
}

/// The killed node restarts with its was-primary marker: it is rewound onto
/// the new timeline, not started on its forked history, and streams from
/// the new primary.
async fn phase_old_primary_rejoins(c: &mut DaemonCluster, old: u64, new: u64, timeline: u32) {
    let rewinds_before = c.log(old).matches("pg_rewind done").count();
    c.start_node(old);
    assert_eq!(c.must_healthy(&[1, 2, 3], REJOIN).await, new, "exactly one primary, the new one");
    let h = c.health(old).await.expect("health");
    assert!(h.replica && h.streaming && !h.primary, "{h:?}");
    assert_eq!(h.timeline, Some(u64::from(timeline)));
    let rewinds = c.log(old).matches("pg_rewind done").count();
    assert!(rewinds > rewinds_before, "the old primary was rewound");
    wait_for(&format!("after_failover on node {old}"), REPLICATED, async || {
        if has_table(c, old, "after_failover").await { Ok(()) } else { Err("not yet") }
    })
    .await;
    assert!(!has_table(c, old, "big").await, "the old primary's forked history is gone");
    let mut primaries = Vec::new();
    for id in [1, 2, 3] {
        if let Ok((200, _)) = http_get(&format!("{}/primary", c.api(id))).await {
            primaries.push(id);
        }
    }
    assert_eq!(primaries, vec![new], "exactly one member answers /primary");
}

/// A member that is down while another node becomes primary has a slot
/// there that holds WAL from the moment it is made: with `wal_keep_size`
/// at 0, segments written and checkpointed meanwhile stay until it returns,
/// and it catches up by streaming through its slot. A slot made without
/// `immediately_reserve` has no `restart_lsn` and holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_down_while_another_becomes_primary_finds_its_wal_reserved() {
    let mut c = DaemonCluster::start(3, |f| {
        f.dynamic.postgresql_parameters.insert("wal_keep_size".into(), "0".into());
    })
    .await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    let (target, down) = (replicas[0], replicas[1]);
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    c.must_rows(target, 0, REPLICATED).await;

    phase("a member goes down", async {
        assert_eq!(c.stop_node(down).await, Some(0), "node {down} stops cleanly");
    })
    .await;
    phase("switchover while it is down", async {
        let to = format!("pg{target}");
        wait_for("the switchover to be accepted", HANDOVER_ACCEPTED, async || {
            match c.raftctl(&["switchover", "--to", &to, "--force"]) {
                (0, out, _) => Ok(out),
                (1, _, err) if err.contains("not a streaming replica") => Err(err),
                (code, out, err) => panic!("switchover failed ({code}): {err}{out}"),
            }
        })
        .await;
        assert_eq!(c.must_primary(&[target], SWITCHOVER).await, target);
    })
    .await;
    let slot = format!("raftgres_{down}");
    let reserved = phase("the new primary reserves WAL for the absent member", async {
        let client = c.must_pg(target).await;
        let keep: String = client.query_one("SHOW max_slot_wal_keep_size", &[]).await.expect("SHOW").get(0);
        assert_eq!(keep, "4GB", "a member that never returns cannot fill the disk");
        wait_for(&format!("slot {slot} on node {target} to reserve WAL"), SETTLED, async || {
            let sql = "SELECT pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, active \
                       FROM pg_replication_slots WHERE slot_name = $1";
            match client.query_opt(sql, &[&slot]).await {
                Ok(Some(row)) => match (row.get::<_, Option<i64>>(0), row.get::<_, bool>(1)) {
                    (Some(lsn), false) => Ok(lsn),
                    other => Err(format!("restart_lsn, active: {other:?}")),
                },
                other => Err(format!("{other:?}")),
            }
        })
        .await
    })
    .await;
    phase("WAL written and checkpointed meanwhile stays", async {
        let client = c.must_pg(target).await;
        for i in 0..4_i64 {
            client.execute("INSERT INTO t VALUES ($1)", &[&i]).await.expect("insert");
            client.batch_execute("SELECT pg_switch_wal(); CHECKPOINT;").await.expect("switch and checkpoint");
        }
        let sql = "SELECT pg_wal_lsn_diff(restart_lsn, '0/0')::bigint FROM pg_replication_slots WHERE slot_name = $1";
        let now: i64 = client.query_one(sql, &[&slot]).await.expect("slot").get(0);
        assert_eq!(now, reserved, "the slot still holds WAL from where it began");
        let sql = "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1";
        let status: String = client.query_one(sql, &[&slot]).await.expect("slot").get(0);
        assert_eq!(status, "reserved", "{slot}'s WAL is all there");
    })
    .await;
    phase("the member returns and streams through its slot", async {
        c.start_node(down);
        c.must_rows(down, 4, REJOIN).await;
        assert_eq!(c.must_healthy(&[1, 2, 3], REJOIN).await, target);
        let client = c.must_pg(target).await;
        let sql = "SELECT active FROM pg_replication_slots WHERE slot_name = $1";
        let active: bool = client.query_one(sql, &[&slot]).await.expect("slot").get(0);
        assert!(active, "node {down} streams through {slot}");
    })
    .await;
}
