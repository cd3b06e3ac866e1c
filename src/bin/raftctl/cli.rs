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
    /// A node's configuration file (e.g. /etc/raftgres/raftgres.toml):
    /// endpoints, token and CA come from it unless given otherwise.
    #[arg(long, short = 'c', env = "RAFTCTL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Admin addresses (the daemons' Raft host:port, `raft_addr`),
    /// comma-separated; the first that answers is used. Default: from
    /// `--config`, else 127.0.0.1:7001.
    #[arg(long, short = 'e', env = "RAFTCTL_ENDPOINTS", global = true)]
    pub endpoints: Option<String>,
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
    /// The CA (PEM) that signs the members' HTTPS API certificates
    /// (`[http] cafile`), for the commands that call a member's API
    /// (`reload`, a conditional `restart`). Default: from `--config`.
    #[arg(long, env = "RAFTCTL_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM) for members' APIs with
    /// `verify_client`; with `--key`.
    #[arg(long, env = "RAFTCTL_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "RAFTCTL_KEY", global = true)]
    pub key: Option<PathBuf>,
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
    List(Watch),
    /// The members as a tree: the primary, its replicas below it.
    ///
    /// Example: raftctl topology
    ///
    /// Sample output:
    ///   Cluster: demo (epoch 3, Raft term 5)
    ///   │ Member ┆ Host          ┆ Role    ┆ State     ┆ TL ┆ Lag in MB │
    ///   │ pg1    ┆ 10.0.0.1:5432 ┆ Leader  ┆ running   ┆ 3  ┆           │
    ///   │ + pg2  ┆ 10.0.0.2:5432 ┆ Replica ┆ streaming ┆ 3  ┆ 0.0       │
    #[command(verbatim_doc_comment)]
    Topology(Watch),
    /// A libpq connection string for a member: the primary by default.
    ///
    /// Example: psql "$(raftctl dsn) dbname=app user=app"
    #[command(verbatim_doc_comment)]
    Dsn {
        /// Which member.
        #[arg(long, short = 'r', value_enum, default_value_t = DsnRole::Primary, conflicts_with = "member")]
        role: DsnRole,
        /// This member.
        #[arg(long, short = 'm')]
        member: Option<String>,
    },
    /// Raft membership changes.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Hand the primary role to another member without losing writes.
    ///
    /// Example: raftctl switchover --to pg2
    #[command(verbatim_doc_comment)]
    Switchover {
        /// Expected current primary (patronictl's --leader, --primary).
        #[arg(long, visible_alias = "leader", aliases = ["primary", "master"])]
        from: Option<String>,
        /// Target member (default: the best streaming replica;
        /// patronictl's --candidate).
        #[arg(long, visible_alias = "candidate")]
        to: Option<String>,
        /// When, RFC 3339 (e.g. 2026-11-23T03:00:00Z), or `now` (the
        /// default; patronictl's --scheduled).
        #[arg(long, visible_alias = "scheduled")]
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
        /// The member to promote (patronictl's --candidate).
        #[arg(long, visible_alias = "candidate")]
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
    /// patronictl's edit-config: `config edit`, or with --set/--pg, `config
    /// set`.
    ///
    /// Example: raftctl edit-config -p work_mem=8MB -s maximum_lag_on_failover=16MB
    #[command(verbatim_doc_comment)]
    EditConfig {
        /// key=value (Patroni's key paths are accepted:
        /// postgresql.parameters.work_mem=8MB, ttl=30, loop_wait=10).
        #[arg(long, short = 's')]
        set: Vec<String>,
        /// A PostgreSQL parameter, name=value.
        #[arg(long, short = 'p')]
        pg: Vec<String>,
        /// Apply without showing the difference and asking.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// patronictl's show-config: `config show`.
    ShowConfig,
    /// Re-read a member's configuration file (tags, parameters, TLS
    /// files), every member by default: POST /reload on its HTTP API.
    ///
    /// Example: raftctl reload pg2
    #[command(verbatim_doc_comment)]
    Reload {
        /// Members (default: all).
        members: Vec<String>,
    },
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
    /// Restart members' PostgreSQL: one by one, replicas first, each back
    /// and streaming before the next; the primary last, in place or (with
    /// --switchover) after handing its role to a restarted replica. Asks
    /// first when the primary is among them.
    ///
    /// Examples: raftctl restart pg2
    ///           raftctl restart --pending            (members with changes waiting for a restart)
    ///           raftctl restart --all --switchover   (a rolling restart without restarting a primary)
    ///           raftctl restart --all --scheduled 2026-12-01T03:00:00Z
    #[command(verbatim_doc_comment)]
    Restart {
        /// Members to restart (default with --all or --pending: every member).
        members: Vec<String>,
        /// Every member.
        #[arg(long)]
        all: bool,
        /// Only members with a changed parameter waiting for a restart.
        #[arg(long)]
        pending: bool,
        /// Only members with this role: primary, replica or any.
        #[arg(long, short = 'r')]
        role: Option<String>,
        /// Only members running an older PostgreSQL than this (e.g. 15.10).
        #[arg(long)]
        pg_version: Option<String>,
        /// Schedule the restarts at this time (RFC 3339) instead; conditions
        /// are checked then, on each member.
        #[arg(long)]
        scheduled: Option<String>,
        /// Move the primary role to a restarted replica first, then restart
        /// the old primary as a replica: no restart of a serving primary.
        #[arg(long)]
        switchover: bool,
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
    /// raftctl's version (patronictl version).
    Version,
    /// patronictl flush: here `switchover --cancel`.
    #[command(hide = true)]
    Flush {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// patronictl query: here psql with `raftctl dsn`.
    #[command(hide = true)]
    Query {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// patronictl remove: not supported.
    #[command(hide = true)]
    Remove {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
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

/// The member `dsn` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DsnRole {
    /// The primary.
    #[value(alias = "leader", alias = "master")]
    Primary,
    /// A running replica.
    #[value(alias = "standby")]
    Replica,
    /// The primary, else any member.
    Any,
}

/// Repeat a read every few seconds (patronictl's -W and -w).
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct Watch {
    /// Repeat every 2 seconds, clearing the screen between.
    #[arg(short = 'W', conflicts_with = "watch")]
    pub every_two: bool,
    /// Repeat every SECONDS seconds, clearing the screen between.
    #[arg(long, short = 'w', value_name = "SECONDS")]
    pub watch: Option<u64>,
}

impl Watch {
    /// The period, when watching.
    pub fn period(&self) -> Option<std::time::Duration> {
        match (self.every_two, self.watch) {
            (_, Some(s)) => Some(std::time::Duration::from_secs(s.max(1))),
            (true, None) => Some(std::time::Duration::from_secs(2)),
            (false, None) => None,
        }
    }
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
