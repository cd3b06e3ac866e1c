//! PgBouncer follows the primary: a switchover through PgBouncer in
//! transaction pooling costs its clients no error; a node-death failover
//! re-points it; a proxy-only node (a Raft learner without PostgreSQL)
//! keeps PgBouncer on its last target while cut off from the cluster, and
//! follows again once healed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raftgres::config::FileConfig;
use raftgres::playground::{free_port_on, write_private};
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{FAILOVER, HANDOVER_ACCEPTED, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
use crate::support::pgbouncer::PgBouncer;
use crate::support::{Partition, phase, wait_for};

/// How long after the new primary runs PgBouncer must point at it.
const REPOINTED: Duration = Duration::from_secs(15);

/// What a client writing through PgBouncer saw.
#[derive(Debug, Default)]
pub struct Writes {
    pub acked: Vec<i64>,
    pub errors: Vec<String>,
    /// The longest time between two acknowledged writes.
    pub longest_gap: Duration,
}

/// A client writing one row per transaction through PgBouncer over one
/// connection (reconnecting after an error), until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Writes>,
}

impl Writer {
    pub fn start(pgb: &PgBouncer, first: i64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let conninfo = format!("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=3", pgb.port);
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut w = Writes::default();
            let mut client = None;
            let mut last = Instant::now();
            let mut v = first;
            while !s.load(Ordering::Relaxed) {
                if client.is_none() {
                    match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(conn);
                            client = Some(c);
                        }
                        Err(e) => {
                            w.errors.push(format!("connect: {e}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let c = client.as_ref().expect("connected");
                match tokio::time::timeout(
                    Duration::from_secs(60),
                    c.simple_query(&format!("INSERT INTO t VALUES ({v})")),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        let now = Instant::now();
                        w.longest_gap = w.longest_gap.max(now - last);
                        last = now;
                        w.acked.push(v);
                        v += 1;
                    }
                    Ok(Err(e)) => {
                        w.errors.push(format!("insert {v}: {e}"));
                        client = None;
                    }
                    Err(_) => {
                        w.errors.push(format!("insert {v}: no answer within 60 s"));
                        client = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            w
        });
        Writer { stop, task }
    }

    pub async fn stop(self) -> Writes {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// Waits until PgBouncer sends clients to node `id`'s PostgreSQL as a
/// primary.
async fn must_reach_primary(c: &DaemonCluster, pgb: &PgBouncer, id: u64, deadline: Duration) {
    let want = c.layout.node(id).pg_port;
    wait_for(&format!("PgBouncer to reach node {id} as primary"), deadline, async || match pgb.reaches().await {
        Ok((port, false)) if port == want => Ok(()),
        other => Err((other, pgb.databases())),
    })
    .await
}

async fn must_count(c: &DaemonCluster, id: u64, values: &[i64]) {
    let client = c.must_pg(id).await;
    let got: i64 =
        client.query_one("SELECT count(DISTINCT v) FROM t WHERE v = ANY($1)", &[&values]).await.expect("count").get(0);
    assert_eq!(got, values.len() as i64, "every acknowledged write is on node {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_through_pgbouncer_costs_no_client_error_and_a_failover_repoints_it() {
    let pgb = PgBouncer::start();
    let password = std::sync::Mutex::new(String::new());
    // Node 1 runs the PgBouncer follower; the others do not.
    let mut c = DaemonCluster::start(3, |f: &mut FileConfig| {
        let pw = f.postgres.as_ref().expect("a database node").superuser_password.clone();
        *password.lock().expect("lock") = pw.clone();
        if f.node.id == 1 {
            pgb.configure(f, &pw);
        }
    })
    .await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create table");

    phase("PgBouncer follows the primary", must_reach_primary(&c, &pgb, primary, REPOINTED)).await;
    let target = [2u64, 3].into_iter().find(|id| *id != primary).expect("a replica");

    let new_primary = phase("a switchover through PgBouncer", async {
        let writer = Writer::start(&pgb, 1);
        wait_for("the writer to make progress", SETTLED, async || {
            let n: i64 = c.must_pg(primary).await.query_one("SELECT count(*) FROM t", &[]).await.map_err(|e| e.to_string())?.get(0);
            if n >= 50 { Ok(()) } else { Err(format!("{n} rows")) }
        })
        .await;
        let to = format!("pg{target}");
        let started = Instant::now();
        wait_for("the switchover to be accepted", HANDOVER_ACCEPTED, async || {
            match c.raftctl(&["switchover", "--to", &to, "--force"]) {
                (0, out, _) => Ok(out),
                (1, _, err) if err.contains("not a streaming replica") => Err(err),
                (code, out, err) => panic!("switchover failed ({code}): {err}{out}"),
            }
        })
        .await;
        info!(took = ?started.elapsed(), "--- switchover done");
        assert_eq!(c.must_primary(&[target], SWITCHOVER).await, target);
        // The writer lands rows on the new primary.
        let before = c.must_pg(target).await.query_one("SELECT count(*) FROM t", &[]).await.expect("count").get::<_, i64>(0);
        wait_for("the writer to write on the new primary", SETTLED, async || {
            let n: i64 = c.must_pg(target).await.query_one("SELECT count(*) FROM t", &[]).await.map_err(|e| e.to_string())?.get(0);
            if n >= before + 50 { Ok(()) } else { Err(format!("{n} rows")) }
        })
        .await;
        let w = writer.stop().await;
        info!(acked = w.acked.len(), errors = w.errors.len(), longest_gap = ?w.longest_gap, "--- writes through PgBouncer");
        assert!(w.errors.is_empty(), "clients saw errors across the switchover: {:?}", w.errors);
        must_count(&c, target, &w.acked).await;
        must_reach_primary(&c, &pgb, target, SETTLED).await;
        let log = c.log(1);
        assert!(log.contains("PgBouncer paused") && log.contains("PgBouncer re-pointed"), "node 1 paused and re-pointed");
        assert!(!log.contains(&*password.lock().expect("lock")), "the password never reaches the log");
        target
    })
    .await;

    phase("a failover re-points PgBouncer", async {
        c.kill_node(new_primary);
        let others: Vec<u64> = [1u64, 2, 3].into_iter().filter(|id| *id != new_primary).collect();
        let next = c.must_primary(&others, FAILOVER).await;
        let killed = Instant::now();
        must_reach_primary(&c, &pgb, next, REPOINTED).await;
        info!(after = ?killed.elapsed(), "--- PgBouncer reaches the new primary");
        assert!(pgb.databases().contains(&format!("port={}", c.layout.node(next).pg_port)), "{}", pgb.databases());
    })
    .await;
}

/// The proxy-only node: its configuration (no `[postgres]`), process and
/// ports.
struct ProxyNode {
    host: String,
    raft_port: u16,
    http_port: u16,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Drop for ProxyNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("===== proxy node log =====\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

impl ProxyNode {
    fn start(c: &DaemonCluster, pgb: &PgBouncer, host: &str) -> ProxyNode {
        let dir = c.layout.dir.join("proxy");
        std::fs::create_dir_all(&dir).expect("proxy dir");
        let mut f = c.layout.file_config(1);
        let raft_port = free_port_on(host).expect("port");
        let http_port = free_port_on(host).expect("port");
        f.node.id = 10;
        f.node.name = "app1".into();
        f.node.data_dir = dir.clone();
        f.raft.listen = format!("{host}:{raft_port}");
        f.http.listen = format!("{host}:{http_port}");
        let password = f.postgres.take().expect("a database node's file").superuser_password;
        pgb.configure(&mut f, &password);
        let config = dir.join("raftgres.toml");
        write_private(&config, &f.to_toml()).expect("write the proxy's configuration");
        let log = dir.join("raftgres.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_raftgres"))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start the proxy-only node");
        info!(pid = child.id(), "proxy-only node started");
        ProxyNode { host: host.to_string(), raft_port, http_port, child, log }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_learner_keeps_its_target_while_cut_off_and_follows_once_healed() {
    let host = |id: u64| format!("127.0.63.{id}");
    let pgb = PgBouncer::start();
    let c = DaemonCluster::start_on(3, host, |_| {}).await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    c.must_pg(primary).await.batch_execute("CREATE TABLE t (v bigint)").await.expect("create table");
    let proxy = ProxyNode::start(&c, &pgb, &host(10));

    phase("the proxy-only node joins as a learner and points PgBouncer at the primary", async {
        must_reach_primary(&c, &pgb, primary, Duration::from_secs(60)).await;
        let status = c.raftctl_json(&["list"]);
        let members = status["members"].as_array().expect("members");
        let me = members.iter().find(|m| m["name"] == "app1").unwrap_or_else(|| panic!("app1 listed: {status}"));
        assert_eq!(me["raft_role"], "learner", "{me}");
        assert_eq!(members.iter().filter(|m| m["registered"] == true).count(), 3, "no member registered: {status}");
        let (code, out, err) = c.raftctl(&["list"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("app1"), "{out}");
    })
    .await;

    let target = [2u64, 3].into_iter().find(|id| *id != primary).expect("a replica");
    let cut = phase("cut off, the proxy keeps its target across a switchover", async {
        let peers: Vec<u16> = c.layout.nodes.iter().map(|n| n.raft_port).collect();
        let cut = Partition::isolate(&proxy.host, &[proxy.raft_port, proxy.http_port], &peers);
        let to = format!("pg{target}");
        let started = Instant::now();
        wait_for("the switchover to be accepted", HANDOVER_ACCEPTED, async || {
            match c.raftctl(&["switchover", "--to", &to, "--force"]) {
                (0, out, _) => Ok(out),
                (1, _, err) if err.contains("not a streaming replica") => Err(err),
                (code, out, err) => panic!("switchover failed ({code}): {err}{out}"),
            }
        })
        .await;
        info!(took = ?started.elapsed(), "--- switchover done without the cut-off proxy");
        assert_eq!(c.must_primary(&[target], SWITCHOVER).await, target);
        c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
        // PgBouncer still sends clients to the old primary, now a replica:
        // its last target, not an empty file.
        let old = c.layout.node(primary).pg_port;
        let reached = pgb.reaches().await.expect("PgBouncer still routes");
        assert_eq!(reached, (old, true), "the last target: {}", pgb.databases());
        assert!(pgb.databases().contains(&format!("port={old}")), "{}", pgb.databases());
        cut
    })
    .await;

    phase("healed, the proxy follows the new primary", async {
        drop(cut);
        must_reach_primary(&c, &pgb, target, Duration::from_secs(60)).await;
    })
    .await;
}
