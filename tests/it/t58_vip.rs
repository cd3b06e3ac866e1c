//! The virtual IP on real daemons, each node in a network namespace of its
//! own on a bridge, a client in another: the client reaches the primary
//! through the address after a node's death, a switchover and a partition
//! of the primary, and a sampler that reads every node's addresses every
//! ~20 ms finds the address on at most one node at every sample, and never
//! again on a deposed node once the new primary holds it. Needs root
//! (namespaces, nftables); skipped otherwise.
//!
//! With `RAFTGRES_VIP_ROUNDS=N` it then repeats N rounds of a node death
//! and a switchover, checked the same way, and prints how long the address
//! took to move (the figures in docs/benchmarks.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftgres::vip::link::Link;
use raftgres::vip::{RECHECK, VipConfig};
use raftgres_jepsen::net::{self, HEAL_RULESET, Net};
use tokio_postgres::NoTls;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{DAEMON_START, FAILOVER, REJOIN, SWITCHOVER};
use crate::support::{phase, wait_for};

/// How often the sampler reads every node's addresses.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The namespaces, bridge and veths of one run; removed (with every
/// process inside) when dropped, on failure too.
struct Lab {
    net: Net,
}

impl Lab {
    fn create(nodes: usize) -> Lab {
        let pid = std::process::id();
        let net = Net::new(&format!("rgv-{pid}-"), [10, 79, (pid % 250) as u8]);
        for note in net.destroy() {
            info!("leftovers: {note}");
        }
        let lab = Lab { net };
        lab.net.create(nodes).expect("create the network namespaces");
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for note in self.net.destroy() {
            eprintln!("cleaning up the namespaces: {note}");
        }
    }
}

/// One reading of every node's addresses.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    /// The nodes that held the address.
    holders: Vec<u64>,
}

/// Reads every node's addresses through netlink sockets made inside each
/// node's namespace, on a thread of its own.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(net: &Net, nodes: u64, vip: VipConfig) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let namespaces: Vec<(u64, String)> = (1..=nodes).map(|id| (id, net.host_ns(id as usize))).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, samples, errors) = (stop.clone(), samples.clone(), errors.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                let mut links = Vec::new();
                for (id, ns) in &namespaces {
                    // A netlink socket belongs to the namespace it was made in.
                    net::enter(ns).expect("enter a node's namespace");
                    links.push((*id, rt.block_on(async { Link::open() }).expect("open netlink")));
                }
                let _ = ready_tx.send(());
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let mut holders = Vec::new();
                    for (id, link) in &links {
                        match rt.block_on(link.holds(&vip)) {
                            Ok(true) => holders.push(*id),
                            Ok(false) => {}
                            Err(e) => errors.lock().expect("errors").push(format!("node {id}: {e}")),
                        }
                    }
                    samples.lock().expect("samples").push(Sample { at, holders });
                    std::thread::sleep(SAMPLE_EVERY.saturating_sub(at.elapsed()));
                }
            })
        };
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the sampler is ready");
        Sampler { stop, samples, errors, thread: Some(thread) }
    }

    fn since(&self, from: Instant) -> Vec<Sample> {
        self.samples.lock().expect("samples").iter().filter(|s| s.at >= from).cloned().collect()
    }

    /// Waits for a sample taken after `after` that shows `who` alone
    /// holding the address.
    async fn must_see_alone(&self, who: u64, after: Instant, deadline: Duration) -> Instant {
        wait_for(&format!("node {who} alone holding the address"), deadline, async || {
            let samples = self.since(after);
            samples.iter().find(|s| s.holders == [who]).map(|s| s.at).ok_or_else(|| samples.last().cloned())
        })
        .await
    }

    /// Every sample since `from` shows at most one holder, and none shows
    /// `deposed` holding it after `taken_at` (the new primary held it).
    fn must_be_exclusive(&self, from: Instant, deposed: Option<u64>, taken_at: Instant) {
        let samples = self.since(from);
        assert!(!samples.is_empty(), "no samples");
        for s in &samples {
            assert!(s.holders.len() <= 1, "the address on two nodes at once: {s:?}");
            if let Some(d) = deposed
                && s.at >= taken_at
            {
                assert!(!s.holders.contains(&d), "the deposed node {d} holds the address after the takeover: {s:?}");
            }
        }
        let errors = self.errors.lock().expect("errors");
        assert!(errors.is_empty(), "the sampler failed to read addresses: {errors:?}");
        info!(samples = samples.len(), "at most one holder at every sample");
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which node's PostgreSQL a client reaches through the address, if it is
/// out of recovery: the node is named by its data directory
/// (`…/pg<id>/pgdata`).
async fn primary_behind(c: &DaemonCluster, vip: &VipConfig) -> Result<u64, String> {
    let port = c.layout.node(1).pg_port;
    let conninfo = format!(
        "host={} port={port} user=postgres password={} dbname=postgres connect_timeout=1",
        vip.address, c.layout.superuser_password
    );
    let attempt = async {
        let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT pg_is_in_recovery(), current_setting('data_directory')", &[])
            .await
            .map_err(|e| e.to_string())?;
        let (recovery, dir): (bool, String) = (row.get(0), row.get(1));
        if recovery {
            return Err(format!("{dir} is in recovery"));
        }
        dir.trim_end_matches("/pgdata")
            .rsplit_once("/pg")
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(|| format!("no node in {dir}"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.map_err(|_| "timed out".to_string())?
}

/// Waits until a client reaches node `who`, out of recovery, through the
/// address; returns when.
async fn must_reach(c: &DaemonCluster, vip: &VipConfig, who: u64, deadline: Duration) -> Instant {
    wait_for(&format!("the address to reach node {who} as primary"), deadline, async || {
        match primary_behind(c, vip).await {
            Ok(id) if id == who => Ok(Instant::now()),
            other => Err(other),
        }
    })
    .await
}

/// The value of `raftgres_vip_held` on node `id`.
async fn vip_held_metric(c: &DaemonCluster, id: u64) -> Option<i64> {
    c.metric(id, "raftgres_vip_held").await
}

#[test]
fn t58_the_virtual_ip_follows_the_lease_and_is_never_on_two_nodes() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the virtual IP test needs root (network namespaces, nftables)");
        return;
    }
    crate::support::init_tracing();
    let lab = Lab::create(3);
    let client_ns = lab.net.client_ns();
    let net = lab.net.clone();
    // The test runs on a thread inside the client's namespace: every
    // connection it makes (SQL, HTTP, raftctl) crosses the bridge.
    let outcome = std::thread::spawn(move || {
        net::enter(&client_ns).expect("enter the client's namespace");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(scenario(net))
    })
    .join();
    drop(lab);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(net: Net) {
    let vip = VipConfig { address: net.addr(100), prefix_len: 24, interface: "eth0".into() };
    let section = raftgres::config::VipSection { address: vip.cidr(), interface: vip.interface.clone() };
    let c = DaemonCluster::start_in(
        3,
        |id| net.host_ns(id as usize),
        |id| net.host_addr(id as usize).to_string(),
        |f| {
            f.vip = Some(section.clone());
            // The server answers on the address wherever it lands.
            f.postgres.as_mut().expect("a database node").listen_addresses = "*".into();
        },
    )
    .await;
    let _logs = c.logs_on_panic();
    let sampler = Sampler::start(&net, 3, vip.clone());
    let start = Instant::now();
    let mut c = c;

    let first = phase("the primary holds the address", async {
        let p = c.must_primary(&[1, 2, 3], FAILOVER).await;
        sampler.must_see_alone(p, start, FAILOVER).await;
        must_reach(&c, &vip, p, FAILOVER).await;
        wait_for("raftgres_vip_held on every node", FAILOVER, async || {
            let mut held = Vec::new();
            for id in 1..=3 {
                held.push(vip_held_metric(&c, id).await);
            }
            let want: Vec<Option<i64>> = (1..=3).map(|id| Some((id == p) as i64)).collect();
            if held == want { Ok(()) } else { Err(held) }
        })
        .await;
        sampler.must_be_exclusive(start, None, start);
        p
    })
    .await;

    let (second, _) = phase("node death", node_death(&mut c, &sampler, &vip, first)).await;
    let (third, _) = phase("switchover", switchover(&c, &sampler, &vip, second)).await;
    let fourth = phase("partition of the primary", async {
        let others: Vec<u64> = (1..=3).filter(|id| *id != third).collect();
        let mut cut: Vec<_> = others.iter().map(|id| net.host_addr(*id as usize)).collect();
        cut.push(net.client_addr());
        let ns = net.host_ns(third as usize);
        let from = Instant::now();
        net::nft(&ns, &net::partition_ruleset(&cut, &cut)).expect("cut the primary off");
        let p = c.must_primary(&others, FAILOVER).await;
        let taken = sampler.must_see_alone(p, from, FAILOVER).await;
        let reached = must_reach(&c, &vip, p, FAILOVER).await;
        info!(
            moved = ?taken - from,
            reachable = ?reached - from,
            "partition: the address moved from node {third} to node {p}"
        );
        sampler.must_be_exclusive(from, Some(third), taken);
        net::nft(&ns, HEAL_RULESET).expect("heal");
        c.must_healthy(&[1, 2, 3], REJOIN).await;
        // Healed, the old primary rejoins as a replica: still one holder.
        sampler.must_be_exclusive(from, Some(third), taken);
        p
    })
    .await;

    let fifth = phase("clean shutdown of the primary", async {
        let from = Instant::now();
        assert_eq!(c.stop_node(fourth).await, Some(0), "a clean exit");
        let others: Vec<u64> = (1..=3).filter(|id| *id != fourth).collect();
        let p = c.must_primary(&others, FAILOVER).await;
        let taken = sampler.must_see_alone(p, from, FAILOVER).await;
        info!(moved = ?taken - from, "shutdown: the address moved from node {fourth} to node {p}");
        sampler.must_be_exclusive(from, Some(fourth), taken);
        c.start_node(fourth);
        c.must_healthy(&[1, 2, 3], REJOIN).await;
        p
    })
    .await;

    phase("an address left behind is removed", async {
        let replica = (1..=3).find(|id| *id != fifth).expect("a replica");
        let ns = net.host_ns(replica as usize);
        // Left over from a crash: the daemon starts with it bound.
        c.kill_node(replica);
        net::ip(&["-n", &ns, "addr", "add", &vip.cidr(), "dev", &vip.interface]).expect("bind the address by hand");
        let bound = Instant::now();
        c.start_node(replica);
        let gone = sampler.must_see_alone(fifth, bound, DAEMON_START).await;
        info!(after = ?gone - bound, "the restarted node {replica} removed the address it found");
        c.must_healthy(&[1, 2, 3], REJOIN).await;
        // Added by hand to a running replica: the recheck removes it.
        net::ip(&["-n", &ns, "addr", "add", &vip.cidr(), "dev", &vip.interface]).expect("bind the address by hand");
        let bound = Instant::now();
        let gone = sampler.must_see_alone(fifth, bound, RECHECK + SAMPLE_EVERY * 50).await;
        info!(after = ?gone - bound, "the running node {replica} removed the address added by hand");
        // Removed by hand from the primary: put back.
        let primary_ns = net.host_ns(fifth as usize);
        net::ip(&["-n", &primary_ns, "addr", "del", &vip.cidr(), "dev", &vip.interface])
            .expect("remove the address by hand");
        let removed = Instant::now();
        let back = sampler.must_see_alone(fifth, removed + SAMPLE_EVERY * 2, RECHECK + SAMPLE_EVERY * 50).await;
        info!(after = ?back - removed, "the primary {fifth} bound the address again");
        must_reach(&c, &vip, fifth, FAILOVER).await;
    })
    .await;
    let rounds: usize = std::env::var("RAFTGRES_VIP_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    if rounds > 0 {
        let mut primary = c.must_primary(&[1, 2, 3], FAILOVER).await;
        let (mut failovers, mut switchovers) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let (p, moved) =
                phase(&format!("round {round}: node death"), node_death(&mut c, &sampler, &vip, primary)).await;
            failovers.push(moved);
            let (p, moved) = phase(&format!("round {round}: switchover"), switchover(&c, &sampler, &vip, p)).await;
            switchovers.push(moved);
            primary = p;
        }
        for (what, figures) in [("node death", failovers), ("switchover", switchovers)] {
            let (mut bound, mut reach): (Vec<Duration>, Vec<Duration>) = figures.into_iter().unzip();
            bound.sort();
            reach.sort();
            let q = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            println!(
                "vip move after {what}, {} rounds: bound on the new primary min {:?} median {:?} max {:?}; \
                 reachable min {:?} median {:?} max {:?}",
                bound.len(),
                q(&bound, 0.0),
                q(&bound, 0.5),
                q(&bound, 1.0),
                q(&reach, 0.0),
                q(&reach, 0.5),
                q(&reach, 1.0),
            );
        }
    }
    drop(sampler);
    drop(c);
}

/// Kills the primary `old` (daemon and postmaster), waits for the address
/// on the new primary, checks the samples and brings `old` back. Returns
/// the new primary, and how long after the kill the address was bound there
/// and a client reached it.
async fn node_death(
    c: &mut DaemonCluster,
    sampler: &Sampler,
    vip: &VipConfig,
    old: u64,
) -> (u64, (Duration, Duration)) {
    let from = Instant::now();
    c.kill_node(old);
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let p = c.must_primary(&others, FAILOVER).await;
    let taken = sampler.must_see_alone(p, from, FAILOVER).await;
    let reached = must_reach(c, vip, p, FAILOVER).await;
    info!(moved = ?taken - from, reachable = ?reached - from, "failover: the address moved from node {old} to node {p}");
    sampler.must_be_exclusive(from, Some(old), taken);
    c.start_node(old);
    c.must_healthy(&[1, 2, 3], REJOIN).await;
    (p, (taken - from, reached - from))
}

/// Switches over from `old` to another node; like [`node_death`].
async fn switchover(c: &DaemonCluster, sampler: &Sampler, vip: &VipConfig, old: u64) -> (u64, (Duration, Duration)) {
    let target = (1..=3).find(|id| *id != old).expect("another node");
    let from = Instant::now();
    let to = format!("pg{target}");
    // A replica that just rejoined may restart once more after it first
    // streams; the request is refused until it streams again.
    wait_for(&format!("a switchover to {to} to be accepted"), SWITCHOVER, async || {
        match c.raftctl(&["switchover", "--to", &to, "--force"]) {
            (0, _, _) => Ok(()),
            (code, out, err) => Err((code, out, err)),
        }
    })
    .await;
    let taken = sampler.must_see_alone(target, from, SWITCHOVER).await;
    let reached = must_reach(c, vip, target, SWITCHOVER).await;
    info!(
        moved = ?taken - from,
        reachable = ?reached - from,
        "switchover: the address moved from node {old} to node {target}"
    );
    sampler.must_be_exclusive(from, Some(old), taken);
    c.must_healthy(&[1, 2, 3], REJOIN).await;
    (target, (taken - from, reached - from))
}
