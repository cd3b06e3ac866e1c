//! Switchover seen by clients of PgBouncer in transaction pooling, on a
//! local 3-node cluster with real PostgreSQL and Debian's pgbouncer
//! (release build).
//!
//! Run: `cargo bench --bench pgbouncer` (add `-- --rounds N`, default 10,
//! and `-- --clients K`, default 4).
//!
//! Node 1 runs the PgBouncer follower. Each of K clients holds one
//! connection to PgBouncer and INSERTs unique values (one autocommit
//! transaction each, simple query protocol) as fast as they are
//! acknowledged; an error is counted and the client reconnects. Each round
//! requests `POST /switchover` from the primary to the next node
//! (1 → 2 → 3 → 1 …) and waits for the old primary to stream again.
//! Measured per round: the longest gap between two acknowledged writes of
//! any client (the pause the clients saw), the longest single write, the
//! errors, and acknowledged values missing from the new primary.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::playground::{LocalCluster, free_port_on, node_health};
use tokio_postgres::NoTls;

const EXE: &str = env!("CARGO_BIN_EXE_raftgres");
const CLUSTER_UP: Duration = Duration::from_secs(120);
const SETTLED: Duration = Duration::from_secs(120);
const WRITES_BEFORE: Duration = Duration::from_secs(1);
const WRITES_AFTER: Duration = Duration::from_secs(1);
const REQUEST: Duration = Duration::from_secs(60);

static VALUES: AtomicI64 = AtomicI64::new(1);

struct Procs {
    c: LocalCluster,
    daemons: BTreeMap<u64, Child>,
    pgbouncer: Option<Child>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.daemons) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut p) = self.pgbouncer.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for n in &self.c.nodes {
            if let Some(pm) = n.postmaster_pid() {
                let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
            }
        }
    }
}

fn write_readable(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Lays out the cluster and PgBouncer; starts both. Returns the processes
/// and PgBouncer's port.
fn start() -> anyhow::Result<(Procs, u16)> {
    let dir = tempfile::Builder::new().prefix("raftgres-bench-pgbouncer-").tempdir()?.keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let c = LocalCluster::layout(&dir.join("cluster"), 3, "bench").context("lay out the cluster")?;
    let pgb_dir = dir.join("pgbouncer");
    std::fs::create_dir_all(&pgb_dir)?;
    std::fs::set_permissions(&pgb_dir, std::fs::Permissions::from_mode(0o755))?;
    let port = free_port_on("127.0.0.1")?;
    let databases = pgb_dir.join("databases.ini");
    write_readable(
        &pgb_dir.join("pgbouncer.ini"),
        &format!(
            "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n\
             auth_file = {}\nadmin_users = pgbouncer\npool_mode = transaction\nmax_client_conn = 200\n\
             default_pool_size = 20\nserver_reset_query =\nignore_startup_parameters = extra_float_digits\n\
             logfile =\npidfile =\n%include {}\n",
            pgb_dir.join("userlist.txt").display(),
            databases.display()
        ),
    )?;
    write_readable(&pgb_dir.join("userlist.txt"), "\"postgres\" \"\"\n\"pgbouncer\" \"\"\n")?;
    write_readable(&databases, "[databases]\n")?;
    let section = format!(
        "admin_port = {port}\ndatabases_file = \"{}\"\ndatabases_template = \"postgres = host={{{{ host }}}} \
         port={{{{ port }}}} dbname=postgres user=postgres password={}\"\n",
        databases.display(),
        c.superuser_password
    );
    let section: raftgres::pgbouncer::PgBouncerSection = toml::from_str(&section).context("the [pgbouncer] section")?;
    c.write_configs(|f| {
        if f.node.id == 1 {
            f.pgbouncer = Some(section.clone());
        }
    })?;
    let log = std::fs::File::create(pgb_dir.join("pgbouncer.log"))?;
    let mut cmd = Command::new("/usr/sbin/pgbouncer");
    if nix::unistd::geteuid().is_root() {
        cmd.args(["-u", "postgres"]);
    }
    let pgbouncer = cmd
        .arg(pgb_dir.join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start pgbouncer (scripts/install-deps.sh installs it)")?;
    let mut procs = Procs { c, daemons: BTreeMap::new(), pgbouncer: Some(pgbouncer) };
    for n in procs.c.nodes.clone() {
        procs.daemons.insert(n.id, n.spawn(Path::new(EXE))?);
    }
    Ok((procs, port))
}

async fn healthy(c: &LocalCluster, deadline: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        let mut primary = None;
        let mut streaming = 0;
        for n in &c.nodes {
            match node_health(&n.api_url()).await {
                Ok(h) if h.primary => primary = Some(n.id),
                Ok(h) if h.replica && h.streaming => streaming += 1,
                _ => {}
            }
        }
        if let Some(p) = primary
            && streaming == c.nodes.len() - 1
        {
            return Ok(p);
        }
        if start.elapsed() > deadline {
            bail!("cluster not healthy within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Seen {
    acks: Vec<(Instant, i64)>,
    errors: Vec<String>,
    longest_write: Duration,
}

async fn client(conninfo: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match tokio_postgres::connect(&conninfo, NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(connection);
                    conn = Some(c);
                }
                Err(e) => {
                    seen.lock().expect("lock").errors.push(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let v = VALUES.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let r = conn.as_ref().expect("connected").simple_query(&format!("INSERT INTO t VALUES ({v})")).await;
        let mut s = seen.lock().expect("lock");
        match r {
            Ok(_) => {
                let now = Instant::now();
                s.longest_write = s.longest_write.max(now - sent);
                s.acks.push((now, v));
            }
            Err(e) => {
                s.errors.push(e.to_string());
                conn = None;
            }
        }
    }
}

struct Round {
    gap: Duration,
    longest_write: Duration,
    errors: Vec<String>,
    acked: usize,
    missing: i64,
    request: Duration,
}

async fn round(c: &LocalCluster, port: u16, from: u64, to: u64, clients: usize) -> anyhow::Result<Round> {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let tasks: Vec<_> =
        (0..clients).map(|_| tokio::spawn(client(conninfo.clone(), stop.clone(), seen.clone()))).collect();
    tokio::time::sleep(WRITES_BEFORE).await;
    let body = format!(r#"{{"leader":"{}","candidate":"{}"}}"#, c.node(from).name, c.node(to).name);
    let requested = Instant::now();
    let reply = raftgres::http::client::request(
        "POST",
        &format!("{}/switchover", c.node(from).api_url()),
        Some(&c.token),
        &[],
        Some(body),
        REQUEST,
    )
    .await?;
    let request = requested.elapsed();
    if reply.status != 200 {
        stop.store(true, Ordering::Relaxed);
        bail!("switchover refused: {} {}", reply.status, reply.body.trim());
    }
    tokio::time::sleep(WRITES_AFTER).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let s = std::mem::take(&mut *seen.lock().expect("lock"));
    let mut times: Vec<Instant> = s.acks.iter().map(|(t, _)| *t).collect();
    times.sort();
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let values: Vec<i64> = s.acks.iter().map(|(_, v)| *v).collect();
    let (pg, connection) = tokio_postgres::connect(&c.pg_uri(to), NoTls).await?;
    tokio::spawn(connection);
    let found: i64 = pg.query_one("SELECT count(DISTINCT v) FROM t WHERE v = ANY($1)", &[&values]).await?.get(0);
    Ok(Round {
        gap,
        longest_write: s.longest_write,
        errors: s.errors,
        acked: values.len(),
        missing: values.len() as i64 - found,
        request,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let rounds: usize = value("--rounds").map(|r| r.parse().expect("--rounds: a number")).unwrap_or(10);
    let clients: usize = value("--clients").map(|r| r.parse().expect("--clients: a number")).unwrap_or(4);
    if let Err(e) = run(rounds, clients).await {
        eprintln!("pgbouncer bench failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run(rounds: usize, clients: usize) -> anyhow::Result<()> {
    let (procs, port) = start()?;
    let c = &procs.c;
    let mut primary = healthy(c, CLUSTER_UP).await?;
    let (pg, connection) = tokio_postgres::connect(&c.pg_uri(primary), NoTls).await?;
    tokio::spawn(connection);
    pg.batch_execute("CREATE TABLE t (v bigint)").await?;
    drop(pg);
    println!("{rounds} switchovers, {clients} clients through PgBouncer (transaction pooling)");
    println!("round  from→to  request_s  pause_s  longest_write_s  acked  errors  missing");
    let (mut gaps, mut errors, mut missing) = (Vec::new(), 0usize, 0i64);
    for i in 1..=rounds {
        let to = primary % 3 + 1;
        // PgBouncer must point at the primary before the round starts.
        let start = Instant::now();
        loop {
            let ok = async {
                let (cl, conn) = tokio_postgres::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
                    NoTls,
                )
                .await
                .ok()?;
                tokio::spawn(conn);
                let rows = cl.simple_query("SELECT inet_server_port()").await.ok()?;
                rows.into_iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|p| p.parse::<u16>().ok()),
                    _ => None,
                })
            }
            .await;
            if ok == Some(c.node(primary).pg_port) {
                break;
            }
            if start.elapsed() > SETTLED {
                bail!("PgBouncer does not reach pg{primary}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = round(c, port, primary, to, clients).await?;
        println!(
            "{i:>5}  {primary}→{to}      {:>8.3}  {:>7.3}  {:>15.3}  {:>5}  {:>6}  {:>7}",
            r.request.as_secs_f64(),
            r.gap.as_secs_f64(),
            r.longest_write.as_secs_f64(),
            r.acked,
            r.errors.len(),
            r.missing
        );
        for e in r.errors.iter().take(3) {
            println!("       error: {e}");
        }
        gaps.push(r.gap.as_secs_f64());
        errors += r.errors.len();
        missing += r.missing;
        primary = healthy(c, SETTLED).await?;
        if primary != to {
            bail!("pg{to} is not the primary after the switchover (pg{primary} is)");
        }
    }
    let worst = gaps.iter().cloned().fold(0.0, f64::max);
    println!(
        "client pause: median {:.3} s, max {worst:.3} s; errors {errors}; missing acknowledged writes {missing}",
        median(&mut gaps.clone())
    );
    Ok(())
}
