//! The virtual IP on real daemons, each node in a network namespace of its
//! own on a bridge, a client in another: the client reaches the primary
//! through the address after a node's death, a switchover and a partition
//! of the primary, and a sampler that reads every node's addresses every
//! ~20 ms finds the address on at most one node at every sample, and never
//! again on a deposed node once the new primary holds it. Needs root
//! (namespaces, nftables); skipped otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftgres::playground::http_get;
use raftgres::vip::VipConfig;
use raftgres::vip::link::Link;
use raftgres_jepsen::net::{self, HEAL_RULESET, Net};
use tokio_postgres::NoTls;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{FAILOVER, REJOIN, SWITCHOVER};
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
    let (_, text) = http_get(&format!("{}/metrics", c.api(id))).await.ok()?;
    text.lines()
        .find(|l| l.starts_with("raftgres_vip_held"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
            f.postgres.listen_addresses = "*".into();
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

    let second = phase("node death", async {
        let from = Instant::now();
        c.kill_node(first);
        let others: Vec<u64> = (1..=3).filter(|id| *id != first).collect();
        let p = c.must_primary(&others, FAILOVER).await;
        let taken = sampler.must_see_alone(p, from, FAILOVER).await;
        let reached = must_reach(&c, &vip, p, FAILOVER).await;
        info!(
            moved = ?taken - from,
            reachable = ?reached - from,
            "failover: the address moved from node {first} to node {p}"
        );
        sampler.must_be_exclusive(from, Some(first), taken);
        c.start_node(first);
        c.must_healthy(&[1, 2, 3], REJOIN).await;
        p
    })
    .await;

    let third = phase("switchover", async {
        let target = (1..=3).find(|id| *id != second).expect("another node");
        let from = Instant::now();
        c.must_raftctl(&["switchover", "--to", &format!("pg{target}"), "--force"]);
        let taken = sampler.must_see_alone(target, from, SWITCHOVER).await;
        let reached = must_reach(&c, &vip, target, SWITCHOVER).await;
        info!(
            moved = ?taken - from,
            reachable = ?reached - from,
            "switchover: the address moved from node {second} to node {target}"
        );
        sampler.must_be_exclusive(from, Some(second), taken);
        c.must_healthy(&[1, 2, 3], REJOIN).await;
        target
    })
    .await;

    phase("partition of the primary", async {
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
    })
    .await;
    drop(sampler);
    drop(c);
}
