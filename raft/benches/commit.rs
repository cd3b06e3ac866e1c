//! Commit latency and throughput of the replicated event log: a 3-node
//! cluster in one process, real gRPC on loopback, every append fsynced.
//!
//! Run: `cargo bench -p raftgres-raft --bench commit` (release build).
//! Options after `--`: `--proposals N` (sequential, default 1000),
//! `--proposers N` (concurrent, default 16), `--each N` (default 100).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use raftgres_raft::{NodeConfig, RaftHandle, RaftNode};
use raftgres_storage::{Command, DynamicConfig, Member, MemberState, NodeInfo};
use tokio::net::TcpListener;

struct Options {
    proposals: u64,
    proposers: u64,
    each: u64,
}

fn options() -> Options {
    let mut o = Options { proposals: 1000, proposers: 16, each: 100 };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let value = || w[1].parse::<u64>().unwrap_or_else(|_| panic!("{} needs a number, got {:?}", w[0], w[1]));
        match w[0].as_str() {
            "--proposals" => o.proposals = value(),
            "--proposers" => o.proposers = value(),
            "--each" => o.each = value(),
            _ => {}
        }
    }
    o
}

fn toggle(i: u64) -> Command {
    let state = if i.is_multiple_of(2) { MemberState::Running } else { MemberState::Streaming };
    Command::SetMemberState { node: 1, state }
}

async fn timed_proposals(h: &RaftHandle, n: u64) -> (Histogram<u64>, Duration) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        h.propose(toggle(i)).await.expect("propose");
        hist.record(t.elapsed().as_micros() as u64).expect("record");
    }
    (hist, start.elapsed())
}

fn row(name: &str, hist: &Histogram<u64>, elapsed: Duration) {
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
        hist.len(),
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        hist.len() as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut listeners = Vec::new();
    let mut infos = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        infos.insert(id, NodeInfo::new(format!("n{id}"), l.local_addr().expect("addr").to_string()));
        listeners.push((id, l));
    }
    let mut nodes = Vec::new();
    for (id, l) in listeners {
        let mut config = NodeConfig::new(id, "bench", dir.path().join(format!("n{id}")), infos[&id].clone());
        config.request_timeout = Duration::from_secs(30);
        nodes.push(RaftNode::start(config, l).await.expect("start node"));
    }
    nodes[0].initialize(infos.clone()).await.expect("initialize");
    let leader = loop {
        if let Some(l) = nodes[0].handle().status().leader
            && nodes.iter().all(|n| n.handle().status().leader == Some(l))
        {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let lh = nodes[(leader - 1) as usize].handle().clone();
    let fh = nodes[(leader % 3) as usize].handle().clone();
    lh.propose(Command::InitializeCluster { cluster_id: "bench".into(), config: DynamicConfig::default() })
        .await
        .expect("initialize cluster");
    lh.propose(Command::AddMember { member: Member::new(1, "pg1") }).await.expect("add member");

    println!("3 voters, loopback gRPC, fdatasync on every append and vote\n");
    println!("| workload | ops | p50 ms | p99 ms | max ms | ops/s |");
    println!("|---|---|---|---|---|---|");

    let (hist, elapsed) = timed_proposals(&lh, o.proposals).await;
    row("sequential proposals on the leader", &hist, elapsed);

    let (hist, elapsed) = timed_proposals(&fh, o.proposals / 2).await;
    row("sequential proposals on a follower (forwarded)", &hist, elapsed);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..o.proposers {
        let h = if p % 2 == 0 { lh.clone() } else { fh.clone() };
        let each = o.each;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            for i in 0..each {
                let t = Instant::now();
                h.propose(toggle(i + p)).await.expect("propose");
                hist.record(t.elapsed().as_micros() as u64).expect("record");
            }
            hist
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        all.add(t.await.expect("proposer task")).expect("merge");
    }
    row(&format!("{} concurrent proposers (half via a follower)", o.proposers), &all, start.elapsed());

    for (name, h) in [("linearizable read on the leader", &lh), ("linearizable read on a follower", &fh)] {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        let start = Instant::now();
        for _ in 0..o.proposals {
            let t = Instant::now();
            h.read(|s| s.epoch).await.expect("read");
            hist.record(t.elapsed().as_micros() as u64).expect("record");
        }
        row(name, &hist, start.elapsed());
    }

    drop((lh, fh));
    for n in nodes {
        n.shutdown().await;
    }
}
