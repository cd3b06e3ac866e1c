//! The command line: etcdctl's noun-verb grammar, global endpoints, token,
//! deadline and output format.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(name = "raftctl", version, about = "Manage a raftgres cluster")]
#[command(after_help = "Exit codes: 0 done; 1 refused by the cluster (nothing changed); 2 bad arguments or input \
                        (nothing changed); 3 cluster unreachable or no answer; 4 token refused.")]
pub struct Cli {
    /// Admin addresses (the daemons' Raft host:port), comma-separated; the
    /// first that answers is used.
    #[arg(long, short = 'e', env = "RAFTCTL_ENDPOINTS", default_value = "127.0.0.1:7001", global = true)]
    pub endpoints: String,
    /// The cluster token.
    #[arg(long, env = "RAFTCTL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the cluster token.
    #[arg(long, env = "RAFTCTL_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): connect with TLS and verify the
    /// daemon against it.
    #[arg(long, env = "RAFTCTL_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Deadline of one call, in seconds (switchover and failover wait longer).
    #[arg(long, default_value_t = 10, global = true)]
    pub timeout: u64,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Same as `-o json`.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

impl Cli {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Members with role, state, timeline, lag and Raft role/term.
    ///
    /// Example: raftctl list
    ///
    /// Sample output:
    ///   Cluster: demo (epoch 3, Raft term 5)
    ///   │ Member ┆ Host           ┆ Role    ┆ State     ┆ TL ┆ Lag in MB ┆ Raft         ┆ Tags │
    ///   │ pg1    ┆ 10.0.0.1:5432  ┆ Leader  ┆ running   ┆ 3  ┆           ┆ leader / 5   ┆      │
    ///   │ pg2    ┆ 10.0.0.2:5432  ┆ Replica ┆ streaming ┆ 3  ┆ 0.0       ┆ follower / 5 ┆      │
    #[command(alias = "status", verbatim_doc_comment)]
    List,
    /// Raft membership changes.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Hand the primary role to another member without losing writes.
    ///
    /// Example: raftctl switchover --to pg2
    #[command(verbatim_doc_comment)]
    Switchover {
        /// Expected current primary.
        #[arg(long)]
        from: Option<String>,
        /// Target member (default: the best streaming replica).
        #[arg(long)]
        to: Option<String>,
        /// When, RFC 3339 (e.g. 2026-11-23T03:00:00Z); default: now.
        #[arg(long)]
        at: Option<String>,
        /// Drop the scheduled switchover instead.
        #[arg(long, conflicts_with_all = ["from", "to", "at"])]
        cancel: bool,
        /// Return once started instead of waiting for the new primary.
        #[arg(long)]
        no_wait: bool,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Make a member primary: a switchover while a primary holds the role,
    /// an election when none does.
    ///
    /// Example: raftctl failover --to pg2
    #[command(verbatim_doc_comment)]
    Failover {
        #[arg(long)]
        to: String,
        #[arg(long)]
        no_wait: bool,
        /// Fail over even though the target is behind the lost primary's
        /// timeline or lag limit, losing the writes only that primary had.
        #[arg(long)]
        accept_data_loss: bool,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Maintenance mode: pause automatic failover.
    Pause,
    /// Resume automatic failover.
    Resume,
    /// The dynamic configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The elections: epoch, timeline, switch point, reason, time and new
    /// primary (as `patronictl history`); `--all` shows every event.
    ///
    /// Example: raftctl history
    ///
    /// Sample output:
    ///   │ Epoch ┆ TL ┆ LSN       ┆ Reason     ┆ Timestamp                     ┆ New Primary │
    ///   │ 1     ┆ 1  ┆ 0/0       ┆ bootstrap  ┆ 2026-01-05T10:00:00.120+00:00 ┆ pg1         │
    ///   │ 2     ┆ 2  ┆ 0/3000060 ┆ switchover ┆ 2026-01-05T11:02:13.004+00:00 ┆ pg2         │
    #[command(verbatim_doc_comment)]
    History {
        /// Every kept event (membership, configuration, maintenance,
        /// releases...), not only the elections.
        #[arg(long, short = 'a')]
        all: bool,
        /// The newest N rows only.
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Events as they happen.
    Events {
        /// Keep printing new events until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Replay kept events after this log index first.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Restart a member's PostgreSQL (asks first when it is the primary).
    Restart {
        member: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Re-clone a replica from the primary: its data directory is
    /// replaced. Asks first.
    #[command(alias = "reinitialize")]
    Reinit {
        member: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Print an HAProxy configuration for the cluster (Pigsty's four services).
    HaproxyConfig(HaproxyArgs),
}

#[derive(Subcommand)]
pub enum MemberCmd {
    /// Add a node as a learner (it catches up first), optionally as a voter.
    ///
    /// Example: raftctl member add --id 4 --name pg4 --raft-addr 10.0.0.4:7001 --api-url http://10.0.0.4:8008 --voter
    #[command(verbatim_doc_comment)]
    Add {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        name: String,
        /// The new node's Raft address, host:port.
        #[arg(long)]
        raft_addr: String,
        /// Its HTTP API, e.g. http://10.0.0.4:8008.
        #[arg(long, default_value = "")]
        api_url: String,
        /// Make it a voter once it caught up.
        #[arg(long)]
        voter: bool,
    },
    /// Make a learner a voter.
    Promote { member: String },
    /// Remove a member (not the primary).
    Remove { member: String },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the dynamic configuration.
    Show,
    /// Change keys: key=value (JSON value or string), key=null resets to
    /// the default; postgresql_parameters.<name>=<value> sets a parameter.
    ///
    /// Example: raftctl config set maximum_lag_on_failover=16777216 postgresql_parameters.work_mem=8MB
    #[command(verbatim_doc_comment)]
    Set {
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Only if the configuration is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
        /// Validate and print the result; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Edit the configuration in $EDITOR, see the difference and confirm;
    /// applied only if nobody changed it meanwhile.
    Edit {
        /// Apply without showing the difference and asking (required
        /// without a terminal).
        #[arg(long, short = 'f')]
        force: bool,
    },
}

#[derive(Args)]
pub struct HaproxyArgs {
    #[arg(long, default_value = "*")]
    pub bind: String,
    #[arg(long, default_value_t = 5433)]
    pub primary_port: u16,
    #[arg(long, default_value_t = 5434)]
    pub replica_port: u16,
    #[arg(long, default_value_t = 5436)]
    pub default_port: u16,
    #[arg(long, default_value_t = 5438)]
    pub offline_port: u16,
    /// Replicas further behind are taken out of the replica service.
    #[arg(long, default_value = "16MB")]
    pub max_replica_lag: String,
    #[arg(long)]
    pub stats_port: Option<u16>,
    /// Health-check interval, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub check_interval_ms: u64,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub file: Option<PathBuf>,
}
