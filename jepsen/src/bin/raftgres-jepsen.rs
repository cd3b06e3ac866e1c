//! `raftgres-jepsen run`: one chaos run against real `raftgres` and
//! `raftctl` binaries. See `raftgres_jepsen::run` for what a run does and
//! its exit codes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftgres_jepsen::hosts::Mode;
use raftgres_jepsen::nemesis;
use raftgres_jepsen::run::{self, Options, Workload};

#[derive(Parser)]
#[command(name = "raftgres-jepsen", version, about = "Chaos runs against a raftgres cluster in network namespaces")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster in network namespaces, run workloads under faults,
    /// heal, check; exit 0 valid, 1 invalid, 2 unknown or harness failure,
    /// 130 interrupted.
    ///
    /// Example: raftgres-jepsen run --bin-dir target/debug --time-limit 60 --seed 7
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Directory holding `raftgres` and `raftctl` (default: this
    /// executable's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Members the cluster starts with (one more host is kept for members
    /// the nemesis adds).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    nodes: u8,
    /// Seconds of workload and faults, after the warm-up.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Seconds of workload before the first fault.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Mean seconds between nemesis steps; each wait is jittered 0.5x..1.5x.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Seed of the nemesis schedule and of the generated operations
    /// (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault families (partition, kill, pause, membership, switchover), single
    /// kinds (partition-primary, partition-replica, partition-halves,
    /// partition-one-way, partition-majorities-ring, partition-bridge,
    /// kill-primary, kill-postmaster, kill-promotion, pause-daemon,
    /// pause-postmaster, add-node, remove-node, switchover), `all` or `none`.
    #[arg(long, default_value = "partition,kill,pause,membership,switchover")]
    nemesis: String,
    /// Replication mode the cluster starts with (synchronous_mode off, on,
    /// strict).
    #[arg(long, value_enum, default_value_t = Mode::Async)]
    mode: Mode,
    /// Client workers, spread over the workloads.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Workloads, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "set,append")]
    workload: Vec<Workload>,
    /// Keep the nodes' data directories.
    #[arg(long)]
    keep: bool,
    /// Where the run's files go (default: jepsen/runs/<timestamp>-seed<N>,
    /// with a `latest` link beside it).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Seconds the cluster may take to converge after the final heal.
    #[arg(long, default_value_t = 120)]
    converge_timeout: u64,
}

fn main() {
    let Cmd::Run(args) = Cli::parse().command;
    let kinds = match nemesis::parse_kinds(&args.nemesis) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    if args.concurrency == 0 || args.workload.is_empty() {
        eprintln!("error: --concurrency and --workload need at least one");
        std::process::exit(2);
    }
    let bin_dir = args.bin_dir.unwrap_or_else(|| {
        std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.to_path_buf())).unwrap_or_default()
    });
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (nanos as u64) % 1_000_000
    });
    let mut workloads = args.workload;
    workloads.dedup();
    let opts = Options {
        bin_dir,
        nodes: args.nodes as usize,
        time_limit: Duration::from_secs(args.time_limit),
        warmup: Duration::from_secs(args.warmup),
        interval: Duration::from_secs_f64(args.interval.max(0.1)),
        seed,
        nemesis: kinds,
        nemesis_spec: args.nemesis,
        mode: args.mode,
        concurrency: args.concurrency,
        workloads,
        keep: args.keep,
        run_dir: args.run_dir.unwrap_or_else(|| run::default_run_dir(seed)),
        converge_timeout: Duration::from_secs(args.converge_timeout),
    };
    std::process::exit(run::main(opts));
}
