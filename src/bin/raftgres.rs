//! The raftgres daemon and its offline commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftgres::config::{ConfigError, DEFAULT_CONFIG, FileConfig};
use raftgres::logging::{self, LogFormat};
use raftgres::playground::{PlaygroundOptions, run_playground};

#[derive(Parser)]
#[command(name = "raftgres", version, about = "PostgreSQL high availability with an embedded Raft log")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon for one node.
    Run {
        /// The node's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a commented default configuration file.
    ShowConfig,
    /// Validate a configuration file and name every bad field.
    CheckConfig { file: PathBuf },
    /// The watchdog process the daemon starts (internal).
    #[command(hide = true)]
    Watchdog {
        #[arg(long)]
        pgdata: PathBuf,
    },
    /// Remove the configured virtual IP from this host, if bound (for
    /// systemd's ExecStopPost: a daemon that is not running holds no lease).
    VipRemove {
        /// The node's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The virtual IP's guard process the daemon starts (internal).
    #[command(hide = true)]
    VipGuard {
        #[arg(long)]
        address: String,
        #[arg(long)]
        interface: String,
    },
    /// Start a local cluster on loopback with real PostgreSQL; Ctrl-C stops it.
    Playground {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Directory for the nodes' data (default: a new temporary directory,
        /// removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the directory on exit.
        #[arg(long)]
        keep: bool,
    },
}

fn load(path: &std::path::Path) -> Result<raftgres::config::Config, ConfigError> {
    FileConfig::load(path)?.validate()
}

/// The daemon's runtime: one async worker thread (`TOKIO_WORKER_THREADS`
/// sets another number), and tokio's blocking pool beside it. An idle
/// daemon is woken a few dozen times a second by small events; with two
/// workers each wake-up woke both threads, with one it costs one context
/// switch. Work that may block (fsyncs, a data directory removed, a
/// snapshot written) runs on the blocking pool, so the lease heartbeat and
/// the fence are not held up by it; the watchdog process stops
/// PostgreSQL if the daemon stalls all the same.
fn daemon_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.enable_all().build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Watchdog { pgdata } => {
            raftgres::watchdog::run(pgdata);
            ExitCode::SUCCESS
        }
        Cmd::VipGuard { address, interface } => {
            let vip = raftgres::vip::parse_cidr(&address).and_then(|(address, prefix_len)| {
                raftgres::vip::check_interface(&interface).map(|()| raftgres::vip::VipConfig {
                    address,
                    prefix_len,
                    interface,
                })
            });
            match vip {
                Ok(vip) => {
                    raftgres::vip::guard_main(vip);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("raftgres vip-guard: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::VipRemove { config } => match load(&config) {
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
            Ok(c) => match c.vip {
                None => {
                    println!("{}: no [vip] section; nothing to remove", config.display());
                    ExitCode::SUCCESS
                }
                Some(vip) => match raftgres::vip::remove_now(&vip) {
                    Ok(true) => {
                        println!("removed {} from {}", vip.cidr(), vip.interface);
                        ExitCode::SUCCESS
                    }
                    Ok(false) => {
                        println!("{} is not bound on {}", vip.cidr(), vip.interface);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("failed to remove {}: {e}", vip.cidr());
                        ExitCode::from(1)
                    }
                },
            },
        },
        Cmd::ShowConfig => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig { file } => match load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(1)
            }
        },
        Cmd::Run { config } => {
            logging::init(cli.log_format, "info,openraft=warn,h2=warn,tower=warn,hyper=warn");
            let (file, resolved) = match FileConfig::load(&config).and_then(|f| f.validate().map(|c| (f, c))) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("raftgres: {}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            let path = std::fs::canonicalize(&config).unwrap_or(config);
            let rt = daemon_runtime().expect("start the async runtime");
            match rt.block_on(raftgres::daemon::run(resolved, Some((path, file)))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("raftgres failed: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Playground { nodes, dir, keep } => {
            logging::init(cli.log_format, "warn");
            let rt = tokio::runtime::Runtime::new().expect("start the async runtime");
            match rt.block_on(run_playground(PlaygroundOptions { nodes, dir, keep })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raftgres playground: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
