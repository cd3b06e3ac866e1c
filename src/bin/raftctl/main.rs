//! `raftctl`: manage a raftgres cluster through any daemon's admin service.
//!
//! A client, not a daemon: it links `raftgres-api` and the protobuf client
//! only, never the daemon library (no sled, openraft or PostgreSQL client).
//! Exit codes are [`exit::Exit`]: 0 done; 1 refused by the cluster (nothing
//! changed); 2 bad arguments or input (nothing changed); 3 the cluster
//! could not be reached or did not answer; 4 the token was refused.

mod cli;
mod commands;
mod confirm;
mod exit;
mod http;
mod node_config;
mod output;
mod probe;
mod restart;

use std::process::ExitCode;

use clap::Parser;

use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("start the async runtime");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match rt.block_on(commands::run(cli, &mut out)) {
        Ok(()) => Exit::Ok.into(),
        Err(f) if f.exit == Exit::Ok => Exit::Ok.into(),
        Err(f) => {
            eprintln!("raftctl: {}", f.message);
            f.exit.into()
        }
    }
}
