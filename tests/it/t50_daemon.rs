//! The daemon with real PostgreSQL: bootstrap, replication, failover on node
//! death, rejoin with pg_rewind, PostgreSQL crashes, clean shutdown, and
//! refusal of another cluster.

use std::time::{Duration, Instant};

use tracing::info;

use raftgres::playground::http_get;
use raftgres::postgres::pidfile::{children_of, proc_stat};

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{DAEMON_START, FAILOVER, FAILOVER_SLACK, REJOIN, REPLICATED, SETTLED, WRITE};
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_replicate_fail_over_on_node_death_and_rejoin() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let lease = Duration::from_millis(c.layout.file_config(1).dynamic.lease_ttl_ms);
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    info!("--- primary {primary}, replicas {replicas:?}");
    assert_eq!(c.health(primary).await.expect("health").timeline, Some(1));

    info!("--- health checks answer by role, with Patroni's paths and filters");
    for (path, on_primary, on_replica) in [
        ("/", 200, 503),
        ("/master", 200, 503),
        ("/leader", 200, 503),
        ("/read-write", 200, 503),
        ("/replica", 503, 200),
        ("/replica?lag=16MB&replication_state=streaming", 503, 200),
        ("/replica?tag_dc=nowhere", 503, 503),
        ("/read-only", 200, 200),
        ("/async", 503, 200),
        ("/sync", 503, 503),
        ("/health", 200, 200),
        ("/liveness", 200, 200),
        ("/readiness", 200, 200),
        ("/read-only-sync", 200, 503),
        ("/no-such-check", 503, 503),
    ] {
        for (node, want) in [(primary, on_primary), (replicas[0], on_replica)] {
            let (code, body) = http_get(&format!("{}{path}", c.api(node))).await.expect("GET");
            assert_eq!(code, want, "{path} on node {node}: {body}");
            assert!(body.contains("\"patroni\""), "{path} answers with the node-status JSON: {body}");
        }
    }

    info!("--- rows written on the primary reach both replicas");
    let client = c.must_pg(primary).await;
    client
        .batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)")
        .await
        .unwrap_or_else(|e| panic!("create table: {e:?}"));
    for v in 0..100i64 {
        client.execute("INSERT INTO t VALUES ($1)", &[&v]).await.expect("insert");
    }
    for r in &replicas {
        c.must_rows(*r, 100, REPLICATED).await;
    }
    let replica_client = c.must_pg(replicas[0]).await;
    let e = replica_client.execute("INSERT INTO t VALUES (-1)", &[]).await.expect_err("a replica is read-only");
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION), "{e:?}");
    drop((client, replica_client));

    info!("--- kill -9 the primary's daemon and postmaster");
    let killed_at = Instant::now();
    c.kill_node(primary);
    let new = c.must_primary(&replicas, lease + FAILOVER_SLACK).await;
    let accepted = c.must_accept_write(new, 1000, lease + FAILOVER_SLACK).await;
    info!("--- node {new} accepted a write {:?} after the kill", accepted - killed_at);
    let client = c.must_pg(new).await;
    let n: i64 = client.query_one("SELECT count(*) FROM t WHERE v < 100", &[]).await.expect("count").get(0);
    assert_eq!(n, 100, "every row the replicas had replayed survived the failover");
    assert_eq!(c.must_timeline(new).await, 2, "promotion starts timeline 2");
    let other = replicas.iter().copied().find(|id| *id != new).expect("the other replica");
    c.must_rows(other, 101, REPLICATED).await;

    info!("--- the killed node restarts and rejoins as a replica of {new} on timeline 2");
    c.start_node(primary);
    c.must_healthy(&[1, 2, 3], REJOIN).await;
    let h = c.health(primary).await.expect("health");
    assert!(h.replica && h.streaming && !h.primary, "{h:?}");
    assert_eq!(h.timeline, Some(2));
    c.must_rows(primary, 101, REPLICATED).await;
    assert!(c.log(primary).contains("pg_rewind done"), "the old primary was rewound");

    info!("--- kill only the new primary's postmaster: it is restarted in place");
    let pm = c.kill_postmaster(new);
    c.must_accept_write(new, 1001, lease + FAILOVER_SLACK).await;
    let restarted = c.postmaster_pid(new).expect("a postmaster runs again");
    assert_ne!(restarted, pm, "PostgreSQL was restarted");
    let back = c.must_healthy(&[1, 2, 3], REJOIN).await;
    assert_eq!(back, new, "with postgres_restart_attempts = 1 the primary restarts PostgreSQL itself");
    assert_eq!(c.must_timeline(new).await, 2, "a restart keeps the timeline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_and_clean_shutdowns_fail_over_without_waiting_for_the_lease() {
    // A long lease makes "did not wait for it" observable.
    let mut c = DaemonCluster::start(3, |f| {
        f.dynamic.lease_ttl_ms = 8000;
        f.dynamic.postgres_restart_attempts = 0;
    })
    .await;
    let lease = Duration::from_millis(8000);
    let first = c.must_healthy(&[1, 2, 3], SETTLED).await;
    c.must_pg(first).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create table");

    info!("--- kill the primary's postmaster; restart attempts are 0, so it releases");
    let t = Instant::now();
    c.kill_postmaster(first);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != first).collect();
    let second = c.must_primary(&others, lease).await;
    let took = t.elapsed();
    info!("--- postmaster crash failover to {second} in {took:?}");
    assert!(took < lease, "failover after a PostgreSQL crash waited {took:?}, as long as the lease");
    c.must_accept_write(second, 1, WRITE).await;
    c.must_healthy(&[1, 2, 3], REJOIN).await;

    info!("--- SIGTERM the primary's daemon: it stops PostgreSQL and releases");
    let t = Instant::now();
    let code = c.stop_node(second).await;
    assert_eq!(code, Some(0), "clean shutdown exits 0");
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != second).collect();
    let third = c.must_primary(&rest, lease).await;
    let took = t.elapsed();
    info!("--- clean-shutdown failover to {third} in {took:?}");
    assert!(took < lease, "clean-shutdown failover waited {took:?}, as long as the lease");
    c.must_accept_write(third, 2, WRITE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_configured_for_another_cluster_cannot_join() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let victim = if primary == 3 { 2 } else { 3 };

    info!("--- restart node {victim} with a configuration naming another cluster");
    c.stop_node(victim).await;
    let node = c.layout.node(victim).clone();
    let mut foreign = c.layout.file_config(victim);
    foreign.cluster_id = "someone-else".into();
    std::fs::write(node.config_path(), foreign.to_toml()).expect("write config");
    c.start_node(victim);
    wait_for("the foreign daemon to refuse its data directory", DAEMON_START, async || {
        let log = c.log(victim);
        if log.contains("belongs to cluster") { Ok(()) } else { Err(log.lines().last().map(str::to_string)) }
    })
    .await;
    info!("--- the daemon refused its own data directory; with a fresh one its peers refuse it");
    c.kill_node(victim);
    let fresh = node.dir.join("fresh");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    foreign.node.data_dir = fresh;
    std::fs::write(node.config_path(), foreign.to_toml()).expect("write config");
    c.start_node(victim);
    wait_for("peers to refuse the foreign node", DAEMON_START, async || {
        let log = c.log(victim);
        if log.contains("cluster id mismatch") { Ok(()) } else { Err(()) }
    })
    .await;
    let h = c.health(victim).await;
    assert!(h.as_ref().is_ok_and(|h| !h.primary && !h.replica), "{h:?}");
    info!("--- the cluster is unaffected");
    let still = c.must_primary(&[1, 2, 3], SETTLED).await;
    assert_eq!(still, primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_daemon_cannot_leave_a_second_primary() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let old = c.must_healthy(&[1, 2, 3], SETTLED).await;
    paused_primary_daemon(&c, old).await;
}

/// The paused daemon leads Raft too: the next leader knows when the lease
/// it granted ends only from what its electing quorum witnessed
/// (raftgres_raft::witness), and must not elect before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_daemon_that_leads_raft_cannot_leave_a_second_primary() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let old = c.make_primary_lead_raft().await;
    paused_primary_daemon(&c, old).await;
}

/// SIGSTOPs the primary's daemon: its PostgreSQL must be stopped by the
/// watchdog before another node accepts a write, and the node rejoins as a
/// replica when it resumes.
async fn paused_primary_daemon(c: &DaemonCluster, old: u64) {
    c.must_pg(old).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create table");
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let pm = c.postmaster_pid(old).expect("primary's postmaster");

    info!("--- SIGSTOP the primary's daemon; its PostgreSQL keeps running");
    let paused = Instant::now();
    c.signal_daemon(old, nix::sys::signal::Signal::SIGSTOP);
    let mut fenced_at = None;
    let mut promoted_at = None;
    let mut value = 0;
    while promoted_at.is_none() && paused.elapsed() < FAILOVER {
        if fenced_at.is_none() && c.postmaster_pid(old) != Some(pm) {
            fenced_at = Some(paused.elapsed());
        }
        for id in &others {
            value += 1;
            if promoted_at.is_none() && c.try_write(*id, value).await {
                promoted_at = Some(paused.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    info!("--- watchdog stopped the old primary at {fenced_at:?}; a new primary took a write at {promoted_at:?}");
    let promoted_at = promoted_at.expect("a new primary accepted writes within 30 s");
    let fenced_at = fenced_at.expect("the paused primary's PostgreSQL was stopped");
    assert!(fenced_at < promoted_at, "two primaries: old stopped at {fenced_at:?}, new wrote at {promoted_at:?}");
    assert!(!c.try_write(old, -1).await, "the old primary refuses writes");

    info!("--- SIGCONT: the old node rejoins as a replica");
    c.signal_daemon(old, nix::sys::signal::Signal::SIGCONT);
    let primary = c.must_healthy(&[1, 2, 3], REJOIN).await;
    assert_ne!(primary, old);
}

/// A primary whose PostgreSQL hangs (every process stopped: it neither
/// answers nor dies, and its daemon keeps the lease) gives the role up
/// after `postgres.hang_timeout_ms`, so the cluster does not go without a
/// writable primary for as long as the hang lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_primary_postgres_gives_up_the_role() {
    let hang = Duration::from_millis(5000);
    let c = DaemonCluster::start(3, |f| {
        f.postgres.as_mut().expect("a database node").hang_timeout_ms = hang.as_millis() as u64
    })
    .await;
    let old = c.must_healthy(&[1, 2, 3], SETTLED).await;
    c.must_pg(old).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create table");
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let pm = c.postmaster_pid(old).expect("primary's postmaster");
    let mut stopped = children_of(pm);
    stopped.push(pm);
    // Whatever happens below, no process this test stopped outlives it
    // (only those still stopped: a pid may be reused meanwhile).
    struct KillOnDrop(Vec<i32>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            for pid in &self.0 {
                if proc_stat(*pid).is_some_and(|s| s.state == 'T') {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
    let _cleanup = KillOnDrop(stopped.clone());

    info!("--- SIGSTOP the primary's postmaster and its {} children", stopped.len() - 1);
    let hung_at = Instant::now();
    for pid in &stopped {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGSTOP);
    }
    let new = c.must_primary(&others, hang + FAILOVER_SLACK + FAILOVER_SLACK).await;
    c.must_accept_write(new, 1, WRITE).await;
    info!("--- {new} accepts writes {:?} after the hang began", hung_at.elapsed());
    // The hung postmaster itself is gone (the data directory may already
    // be in single-user crash recovery, with a postmaster.pid of its own).
    assert!(proc_stat(pm).is_none_or(|s| s.state == 'Z'), "the hung postmaster {pm} was killed");
    for pid in &stopped {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGCONT);
    }
    info!("--- the old node rejoins as a replica");
    let primary = c.must_healthy(&[1, 2, 3], REJOIN).await;
    assert_eq!(primary, new);
}

/// A `postmaster.pid` left by a crash or a reboot whose pid now belongs to
/// another live process (here one of the PostgreSQL user's, which
/// PostgreSQL's own check also takes for a running postmaster) does not
/// stall the node: the daemon sees that process is not this data
/// directory's postmaster, removes the stale file and starts PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_pid_file_with_a_reused_pid_does_not_stall_the_node() {
    use std::os::unix::process::CommandExt;
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let replica = [1, 2, 3].into_iter().find(|id| *id != primary).expect("a replica");
    c.stop_node(replica).await;
    assert!(c.postmaster_pid(replica).is_none(), "its PostgreSQL stopped with it");

    info!("--- a live process of the PostgreSQL user takes the place of the pid in postmaster.pid");
    let mut impostor = std::process::Command::new("sleep");
    impostor.arg("300").current_dir("/");
    if nix::unistd::Uid::effective().is_root()
        && let Ok(Some(pg)) = nix::unistd::User::from_name("postgres")
    {
        impostor.uid(pg.uid.as_raw()).gid(pg.gid.as_raw());
    }
    let mut impostor = impostor.spawn().expect("start a stand-in process");
    let pgdata = c.layout.node(replica).dir.join("pgdata");
    std::fs::write(pgdata.join("postmaster.pid"), format!("{}\n{}\n", impostor.id(), pgdata.display()))
        .expect("write a stale postmaster.pid");

    c.start_node(replica);
    let healthy = c.must_healthy(&[1, 2, 3], REJOIN).await;
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(healthy, primary);
    assert!(c.postmaster_pid(replica).is_some_and(|pid| pid != impostor.id() as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_that_hands_off_restarts_without_restarting_postgres_or_failing_over() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create table");
    let postmaster = c.postmaster_pid(primary).expect("the primary's postmaster runs");
    let epoch = c.raftctl_json(&["list"])["epoch"].as_u64().expect("epoch");

    info!("--- SIGUSR2 the primary's daemon: it exits, PostgreSQL keeps running");
    let code = c.hand_off_node(primary).await;
    assert_eq!(code, Some(0), "a hand-off exits 0");
    assert_eq!(c.postmaster_pid(primary), Some(postmaster), "PostgreSQL outlives the daemon that handed off");

    info!("--- a new daemon adopts it");
    c.start_node(primary);
    let back = c.must_primary(&[primary], DAEMON_START).await;
    assert_eq!(back, primary);
    c.must_accept_write(primary, 1, WRITE).await;
    let log = c.log(primary);
    assert!(log.contains("adopting the lease"), "the new daemon took the lease over:\n{log}");
    // The predecessor's watchdog, which would stop PostgreSQL when the
    // handed-off lease ends, stands down once the new one is armed.
    let pgdata = c.layout.node(primary).dir.join("pgdata");
    let watchdogs = || {
        std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|cmd| {
                let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
                args.contains(&b"watchdog".as_slice()) && args.contains(&pgdata.as_os_str().as_encoded_bytes())
            })
            .count()
    };
    wait_for("one watchdog to guard the postmaster", DAEMON_START, async || match watchdogs() {
        1 => Ok(()),
        n => Err(n),
    })
    .await;
    c.must_accept_write(primary, 2, WRITE).await;
    assert_eq!(c.postmaster_pid(primary), Some(postmaster), "PostgreSQL was never restarted");
    let status = c.raftctl_json(&["list"]);
    assert_eq!(status["epoch"].as_u64(), Some(epoch), "no failover: {status}");
    let history = c.must_raftctl(&["history", "--all"]);
    assert_eq!(history.matches("primary_elected").count(), 1, "only the bootstrap election:\n{history}");
}
