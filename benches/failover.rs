//! Failover timing and daemon footprint on a local 3-node cluster with real
//! PostgreSQL (release build).
//!
//! Run: `cargo bench --bench failover` (add `-- --rounds N`, default 5, and
//! `-- --leader-placement avoid_primary` to keep the Raft leader off the
//! primary's node; the default, `any`, leaves it where elections put it).
//! Each round starts a fresh cluster and measures, from the moment of the
//! fault to the first write a new primary accepts:
//! - node death: the primary's daemon and postmaster are SIGKILLed; odd
//!   rounds first make the primary the Raft leader (a switchover to the
//!   leader), even rounds a node that does not lead, and the round records
//!   which held (with `avoid_primary` the daemons place the leadership: it
//!   waits, at most 10 s, for it to leave the primary's node first);
//! - paused daemon: the primary's daemon gets SIGSTOP (its PostgreSQL keeps
//!   running); also measured: when the watchdog stops that PostgreSQL;
//! - clean shutdown: the primary's daemon gets SIGTERM.
//!
//! Before the faults it samples each idle daemon over 30 s (`--idle-secs
//! N`): its RSS, private memory and CPU, and those of its watchdog process,
//! separately;
//! its context switches (wake-ups); what it wrote to disk
//! (`/proc/<pid>/io` `write_bytes`, extrapolated to an hour); and what
//! crossed its own TCP sockets (`ss -tinp`: the kernel's per-socket
//! `bytes_sent` and `bytes_received`, TCP payload, summed over the sockets
//! the daemon holds at both ends of the window; sockets opened or closed
//! inside it are counted and reported, since a socket that came and went
//! between the two looks is not seen).

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftgres::config::LeaderPlacement;
use raftgres::playground::{LocalCluster, http_get, node_health};
use tokio_postgres::NoTls;

const EXE: &str = env!("CARGO_BIN_EXE_raftgres");

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok())
}

fn rounds() -> usize {
    arg("--rounds").unwrap_or(5) as usize
}

fn idle_window() -> Duration {
    Duration::from_secs(arg("--idle-secs").unwrap_or(30))
}

fn placement() -> LeaderPlacement {
    let args: Vec<String> = std::env::args().collect();
    match args.windows(2).find(|w| w[0] == "--leader-placement").map(|w| w[1].as_str()) {
        Some("avoid_primary") => LeaderPlacement::AvoidPrimary,
        None | Some("any") => LeaderPlacement::Any,
        Some(other) => panic!("--leader-placement: any or avoid_primary, not {other:?}"),
    }
}

/// The Raft leader, as node `id`'s `/patroni` reports it.
async fn raft_leader(c: &LocalCluster, id: u64) -> Option<u64> {
    let (_, body) = http_get(&format!("{}/patroni", c.node(id).api_url())).await.ok()?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["raftgres"]["raft"]["leader"].as_u64()
}

async fn healthy(c: &LocalCluster, deadline: Duration) -> u64 {
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
            return p;
        }
        assert!(start.elapsed() < deadline, "cluster not healthy within {deadline:?}; logs in {}", c.dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls every node in `among` with an INSERT until one succeeds; returns
/// the time it took from `since`.
async fn first_write(c: &LocalCluster, among: &[u64], since: Instant) -> Duration {
    loop {
        for id in among {
            let uri = c.pg_uri(*id);
            let attempt = async {
                let (client, conn) = tokio_postgres::connect(&uri, NoTls).await.ok()?;
                tokio::spawn(conn);
                client.execute("INSERT INTO t VALUES (1)", &[]).await.ok()
            };
            if tokio::time::timeout(Duration::from_millis(500), attempt).await.ok().flatten().is_some() {
                return since.elapsed();
            }
        }
        assert!(since.elapsed() < Duration::from_secs(60), "no write accepted within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64
}

/// Memory only this process uses (USS: `Private_Clean` + `Private_Dirty`
/// of `/proc/<pid>/smaps_rollup`). RSS also counts the pages of the
/// executable and libraries it shares with the daemon.
fn private_kb(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Bytes the process caused to be written to storage (`write_bytes`).
fn disk_written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Context switches of every live thread of the process: how often it woke.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The watchdog process a daemon started.
fn watchdog_of(daemon: u32) -> Option<u32> {
    raftgres::postgres::pidfile::children_of(daemon as i32).into_iter().map(|p| p as u32).find(|p| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"watchdog"))
    })
}

/// Per TCP socket of `pid` (local and peer address): payload bytes sent
/// and received so far, from `ss -tinp` (the kernel's `tcp_info`).
fn tcp_bytes(pid: u32) -> Option<HashMap<(String, String), (u64, u64)>> {
    let out = std::process::Command::new("ss").args(["-tinpH", "state", "established"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    let mut sockets = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            let f: Vec<&str> = line.split_whitespace().collect();
            current = (line.contains(&owner) && f.len() >= 4).then(|| (f[2].to_string(), f[3].to_string()));
            continue;
        }
        let Some(key) = current.take() else { continue };
        let field = |name: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        sockets.insert(key, (field("bytes_sent:"), field("bytes_received:")));
    }
    Some(sockets)
}

/// The node's Raft role as its `/patroni` reports it.
async fn raft_role(c: &LocalCluster, id: u64) -> Option<String> {
    let (_, body) = raftgres::playground::http_get(&format!("{}/patroni", c.node(id).api_url())).await.ok()?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["raftgres"]["raft"]["role"].as_str().map(str::to_string)
}

/// One daemon's idle footprint over a window.
#[derive(Clone, Debug, Default)]
struct Idle {
    rss_kb: u64,
    private_kb: u64,
    cpu_percent: f64,
    watchdog_rss_kb: u64,
    watchdog_private_kb: u64,
    watchdog_cpu_percent: f64,
    switches_per_s: f64,
    /// Daemon and watchdog, extrapolated to an hour.
    disk_kb_per_hour: f64,
    net_sent_per_s: f64,
    net_received_per_s: f64,
    /// Sockets opened and closed during the window (their bytes are
    /// counted partly or not at all).
    sockets_opened: usize,
    sockets_closed: usize,
}

/// Samples the idle footprint of the daemons `pids` over `window`.
async fn idle_footprint(pids: &[u32], window: Duration) -> Vec<Idle> {
    let dogs: Vec<Option<u32>> = pids.iter().map(|p| watchdog_of(*p)).collect();
    let cpu = |p: Option<u32>| p.map(cpu_ticks).unwrap_or(0);
    let disk = |p: Option<u32>| p.map(disk_written).unwrap_or(0);
    let before: Vec<_> = pids
        .iter()
        .zip(&dogs)
        .map(|(p, d)| {
            (cpu(Some(*p)), cpu(*d), context_switches(*p), disk(Some(*p)) + disk(*d), tcp_bytes(*p).unwrap_or_default())
        })
        .collect();
    tokio::time::sleep(window).await;
    let secs = window.as_secs_f64();
    let percent = |ticks: u64| ticks as f64 / ticks_per_second() / secs * 100.0;
    pids.iter()
        .zip(&dogs)
        .zip(before)
        .map(|((p, d), (cpu0, dog0, sw0, disk0, net0))| {
            let net1 = tcp_bytes(*p).unwrap_or_default();
            let (mut sent, mut received) = (0, 0);
            for (k, (s1, r1)) in &net1 {
                let (s0, r0) = net0.get(k).copied().unwrap_or((0, 0));
                sent += s1.saturating_sub(s0);
                received += r1.saturating_sub(r0);
            }
            Idle {
                rss_kb: rss_kb(*p),
                private_kb: private_kb(*p),
                cpu_percent: percent(cpu(Some(*p)).saturating_sub(cpu0)),
                watchdog_rss_kb: d.map(rss_kb).unwrap_or(0),
                watchdog_private_kb: d.map(private_kb).unwrap_or(0),
                watchdog_cpu_percent: percent(cpu(*d).saturating_sub(dog0)),
                switches_per_s: (context_switches(*p).saturating_sub(sw0)) as f64 / secs,
                disk_kb_per_hour: (disk(Some(*p)) + disk(*d)).saturating_sub(disk0) as f64 / 1024.0 * 3600.0 / secs,
                net_sent_per_s: sent as f64 / secs,
                net_received_per_s: received as f64 / secs,
                sockets_opened: net1.keys().filter(|k| !net0.contains_key(*k)).count(),
                sockets_closed: net0.keys().filter(|k| !net1.contains_key(*k)).count(),
            }
        })
        .collect()
}

fn stop_all(children: &mut [(u64, Child)], c: &LocalCluster) {
    for (_, child) in children.iter_mut() {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    for n in &c.nodes {
        if let Some(pid) = n.postmaster_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Writes continuously to whichever node accepts, through a switchover
/// requested over HTTP; returns (the longest gap between acknowledged
/// writes, request → new primary elected).
async fn switchover_gap(c: &LocalCluster, from: u64, to: u64) -> (Duration, Duration) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let uris: Vec<String> = std::iter::once(from).chain(std::iter::once(to)).map(|id| c.pg_uri(id)).collect();
        tokio::spawn(async move {
            let mut acks: Vec<Instant> = Vec::new();
            let mut client: Option<(usize, tokio_postgres::Client)> = None;
            let mut next = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if client.is_none() {
                    let uri = &uris[next % uris.len()];
                    next += 1;
                    if let Ok(Ok((cl, conn))) =
                        tokio::time::timeout(Duration::from_millis(200), tokio_postgres::connect(uri, NoTls)).await
                    {
                        tokio::spawn(conn);
                        client = Some((next, cl));
                    }
                    continue;
                }
                let (_, cl) = client.as_ref().expect("checked");
                let r =
                    tokio::time::timeout(Duration::from_millis(200), cl.execute("INSERT INTO t VALUES (2)", &[])).await;
                match r {
                    Ok(Ok(_)) => acks.push(Instant::now()),
                    _ => client = None,
                }
            }
            acks
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from_name = c.node(from).name.clone();
    let to_name = c.node(to).name.clone();
    let t = Instant::now();
    let body = format!(r#"{{"leader":"{from_name}","candidate":"{to_name}"}}"#);
    let reply = raftgres::http::client::request(
        "POST",
        &format!("{}/switchover", c.node(from).api_url()),
        Some(&c.token),
        &[],
        Some(body),
        Duration::from_secs(60),
    )
    .await
    .expect("POST /switchover");
    assert_eq!(reply.status, 200, "switchover: {}", reply.body);
    let elected = t.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acks = writer.await.expect("writer");
    let gap = acks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    (gap, elected)
}

/// Moves the primary (by switchover) so that it leads Raft (`lead`) or
/// does not; returns the primary. A few attempts: the leadership may move
/// meanwhile. With `avoid_primary` the placement is the daemon's to choose.
async fn arrange(c: &LocalCluster, mut primary: u64, lead: bool) -> u64 {
    if placement() == LeaderPlacement::AvoidPrimary {
        return primary;
    }
    for _ in 0..3 {
        let Some(leader) = raft_leader(c, primary).await else { continue };
        let to = if lead {
            if leader == primary {
                return primary;
            }
            leader
        } else {
            if leader != primary {
                return primary;
            }
            match [1, 2, 3].into_iter().find(|id| *id != primary) {
                Some(id) => id,
                None => return primary,
            }
        };
        let body = format!(r#"{{"leader":"{}","candidate":"{}"}}"#, c.node(primary).name, c.node(to).name);
        let reply = raftgres::http::client::request(
            "POST",
            &format!("{}/switchover", c.node(primary).api_url()),
            Some(&c.token),
            &[],
            Some(body),
            Duration::from_secs(60),
        )
        .await;
        if reply.as_ref().is_ok_and(|r| r.status == 200) {
            primary = healthy(c, Duration::from_secs(120)).await;
            // Past the new epoch's first lease, as in an ordinary round.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    primary
}

struct Round {
    death: Duration,
    /// The node that died also led Raft.
    leader_was_primary: bool,
    shutdown: Duration,
    /// Pause → the old primary's postmaster is gone.
    fenced: Duration,
    /// Pause → first write on the new primary.
    pause_failover: Duration,
    /// Longest gap between acknowledged writes across a switchover.
    switchover_gap: Duration,
    switchover_elected: Duration,
    idle: Vec<Idle>,
}

async fn round(i: usize) -> Round {
    // Kept on failure for its logs; removed at the end of a good round.
    let dir = tempfile::Builder::new().prefix("raftgres-bench-").tempdir().expect("temporary directory").keep();
    let c = LocalCluster::layout(&dir, 3, "bench").expect("layout");
    let placement = placement();
    c.write_configs(|f| f.raft.leader_placement = placement).expect("configs");
    let mut children: Vec<(u64, Child)> =
        c.nodes.iter().map(|n| (n.id, n.spawn(Path::new(EXE)).expect("spawn daemon"))).collect();
    let primary = healthy(&c, Duration::from_secs(120)).await;
    {
        let (client, conn) = tokio_postgres::connect(&c.pg_uri(primary), NoTls).await.expect("connect");
        tokio::spawn(conn);
        client.batch_execute("CREATE TABLE t (v int)").await.expect("create table");
    }

    // Idle footprint, once the cluster has settled (the bootstrap's last
    // reports and the table's creation are committed).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<u64> = children.iter().map(|(id, _)| *id).collect();
    let pids: Vec<u32> = children.iter().map(|(_, ch)| ch.id()).collect();
    let idle = idle_footprint(&pids, idle_window()).await;
    let mut roles = Vec::new();
    for id in &ids {
        let mut role = if *id == primary { "primary" } else { "replica" }.to_string();
        if raft_role(&c, *id).await.as_deref() == Some("leader") {
            role += ", Raft leader";
        }
        roles.push(role);
    }

    // Node death: odd rounds kill a primary that also leads Raft, even
    // rounds one that does not, so both placements get their rounds.
    let primary = arrange(&c, primary, i % 2 == 1).await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    if placement == LeaderPlacement::AvoidPrimary {
        let start = Instant::now();
        while raft_leader(&c, others[0]).await.is_none_or(|l| l == primary) && start.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let leader_was_primary = raft_leader(&c, others[0]).await == Some(primary);
    let pm = c.node(primary).postmaster_pid();
    let t = Instant::now();
    let idx = children.iter().position(|(id, _)| *id == primary).expect("primary child");
    let (_, mut dead) = children.remove(idx);
    let _ = dead.kill();
    if let Some(pm) = pm {
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    }
    let death = first_write(&c, &others, t).await;
    let _ = dead.wait();
    children.push((primary, c.node(primary).spawn(Path::new(EXE)).expect("respawn")));
    let paused = healthy(&c, Duration::from_secs(120)).await;

    // Paused daemon: its PostgreSQL keeps running until the watchdog stops it.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != paused).collect();
    let pm = c.node(paused).postmaster_pid();
    let daemon = children.iter().find(|(id, _)| *id == paused).map(|(_, ch)| ch.id()).expect("paused child");
    let t = Instant::now();
    let _ = kill(Pid::from_raw(daemon as i32), Signal::SIGSTOP);
    let fence_probe = async {
        while c.node(paused).postmaster_pid() == pm {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        t.elapsed()
    };
    let (fenced, pause_failover) = tokio::join!(fence_probe, first_write(&c, &others, t));
    let _ = kill(Pid::from_raw(daemon as i32), Signal::SIGCONT);
    let first = healthy(&c, Duration::from_secs(120)).await;

    // Switchover under a continuous writer.
    let target = [1, 2, 3].into_iter().find(|id| *id != first).expect("a replica");
    let (switchover_gap, switchover_elected) = switchover_gap(&c, first, target).await;
    let second = healthy(&c, Duration::from_secs(120)).await;

    // Clean shutdown.
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != second).collect();
    let idx = children.iter().position(|(id, _)| *id == second).expect("primary child");
    let t = Instant::now();
    let _ = kill(Pid::from_raw(children[idx].1.id() as i32), Signal::SIGTERM);
    let shutdown = first_write(&c, &rest, t).await;
    stop_all(&mut children, &c);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "round {i}: node death {:.2} s ({}), paused daemon: old primary stopped at {:.2} s, new primary wrote at {:.2} s, \
         clean shutdown {:.2} s, switchover: writes paused {:.3} s (elected after {:.3} s)",
        death.as_secs_f64(),
        if leader_was_primary { "the dead node led Raft" } else { "another node led Raft" },
        fenced.as_secs_f64(),
        pause_failover.as_secs_f64(),
        shutdown.as_secs_f64(),
        switchover_gap.as_secs_f64(),
        switchover_elected.as_secs_f64(),
    );
    for ((id, role), d) in ids.iter().zip(&roles).zip(&idle) {
        println!(
            "  idle pg{id} ({role}): CPU {:.2} %, RSS {} KiB (private {}); watchdog CPU {:.2} %, RSS {} KiB \
             (private {}); {:.0} context switches/s; disk {:.0} KiB/h; TCP sent {:.0} B/s, received {:.0} B/s \
             (sockets opened {}, closed {})",
            d.cpu_percent,
            d.rss_kb,
            d.private_kb,
            d.watchdog_cpu_percent,
            d.watchdog_rss_kb,
            d.watchdog_private_kb,
            d.switches_per_s,
            d.disk_kb_per_hour,
            d.net_sent_per_s,
            d.net_received_per_s,
            d.sockets_opened,
            d.sockets_closed,
        );
    }
    Round { death, leader_was_primary, shutdown, fenced, pause_failover, switchover_gap, switchover_elected, idle }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let n = rounds();
    println!(
        "3 nodes on loopback, default dynamic config (lease 2000 ms, heartbeat 250 ms), raft.leader_placement \
         {:?}, {n} rounds, idle sampled over {} s\n",
        placement(),
        idle_window().as_secs()
    );
    let mut all = Vec::new();
    for i in 1..=n {
        all.push(round(i).await);
    }
    let secs = |f: fn(&Round) -> Duration| all.iter().map(|r| f(r).as_secs_f64()).collect::<Vec<_>>();
    let death = secs(|r| r.death);
    let shutdown = secs(|r| r.shutdown);
    let fenced = secs(|r| r.fenced);
    let pause_failover = secs(|r| r.pause_failover);
    let gap = secs(|r| r.switchover_gap);
    let elected = secs(|r| r.switchover_elected);
    // Positive: time with two primaries; negative: the gap between them.
    let two_primaries: Vec<f64> = all.iter().map(|r| r.fenced.as_secs_f64() - r.pause_failover.as_secs_f64()).collect();
    let idle = |f: fn(&Idle) -> f64| all.iter().flat_map(|r| r.idle.iter().map(f)).collect::<Vec<f64>>();
    let rss = idle(|d| d.rss_kb as f64 / 1024.0);
    let cpu = idle(|d| d.cpu_percent);
    let max = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!("\n| measure | median | max |");
    println!("|---|---|---|");
    println!("| node death → first write on the new primary (s) | {:.2} | {:.2} |", median(death.clone()), max(&death));
    for (led, what) in [(false, "another node led Raft"), (true, "the dead node led Raft")] {
        let v: Vec<f64> = all.iter().filter(|r| r.leader_was_primary == led).map(|r| r.death.as_secs_f64()).collect();
        if !v.is_empty() {
            println!("| … {what} ({} rounds) | {:.2} | {:.2} |", v.len(), median(v.clone()), max(&v));
        }
    }
    println!(
        "| clean shutdown → first write on the new primary (s) | {:.2} | {:.2} |",
        median(shutdown.clone()),
        max(&shutdown)
    );
    println!(
        "| paused daemon → its PostgreSQL stopped by the watchdog (s) | {:.2} | {:.2} |",
        median(fenced.clone()),
        max(&fenced)
    );
    println!(
        "| paused daemon → first write on the new primary (s) | {:.2} | {:.2} |",
        median(pause_failover.clone()),
        max(&pause_failover)
    );
    println!(
        "| two primaries accepting writes (s; negative = gap between them) | {:.2} | {:.2} |",
        median(two_primaries.clone()),
        max(&two_primaries)
    );
    println!(
        "| switchover: longest gap between acknowledged writes (s) | {:.3} | {:.3} |",
        median(gap.clone()),
        max(&gap)
    );
    println!(
        "| switchover: request → new primary elected (s) | {:.3} | {:.3} |",
        median(elected.clone()),
        max(&elected)
    );
    println!("| idle daemon RSS (MiB) | {:.1} | {:.1} |", median(rss.clone()), max(&rss));
    println!("| idle daemon CPU (% of one core) | {:.2} | {:.2} |", median(cpu.clone()), max(&cpu));

    println!("\nIdle cost per daemon ({} daemons, {} s each):\n", cpu.len(), idle_window().as_secs());
    println!("| per daemon, idle | median | max |");
    println!("|---|---|---|");
    type Row = (&'static str, fn(&Idle) -> f64, usize);
    let rows: [Row; 11] = [
        ("daemon CPU (% of one core)", |d| d.cpu_percent, 2),
        ("daemon RSS (MiB)", |d| d.rss_kb as f64 / 1024.0, 1),
        ("daemon private memory (MiB)", |d| d.private_kb as f64 / 1024.0, 1),
        ("watchdog process CPU (% of one core)", |d| d.watchdog_cpu_percent, 2),
        ("watchdog process RSS (MiB)", |d| d.watchdog_rss_kb as f64 / 1024.0, 1),
        ("watchdog process private memory (MiB)", |d| d.watchdog_private_kb as f64 / 1024.0, 1),
        ("daemon context switches per second", |d| d.switches_per_s, 0),
        ("disk written per hour, daemon and watchdog (KiB)", |d| d.disk_kb_per_hour, 0),
        ("TCP payload sent per second (bytes)", |d| d.net_sent_per_s, 0),
        ("TCP payload received per second (bytes)", |d| d.net_received_per_s, 0),
        ("TCP sockets opened or closed in the window", |d| (d.sockets_opened + d.sockets_closed) as f64, 0),
    ];
    for (name, f, digits) in rows {
        let v = idle(f);
        println!("| {name} | {:.*} | {:.*} |", digits, median(v.clone()), digits, max(&v));
    }
}
