//! `raftctl`: manage a raftgres cluster through any daemon's admin service.
//!
//! Exit codes: 0 done; 1 refused by the cluster (nothing changed); 2 bad
//! arguments or input (nothing changed); 3 the cluster could not be reached
//! or did not answer; 4 the token was refused.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use raftgres::haproxy;
use raftgres::http::control::format_ms;
use raftgres_proto::admin as pb;
use raftgres_proto::admin::admin_client::AdminClient;
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

#[derive(Parser)]
#[command(name = "raftctl", version, about = "Manage a raftgres cluster")]
#[command(after_help = "Exit codes: 0 done; 1 refused by the cluster (nothing changed); 2 bad arguments or input \
                        (nothing changed); 3 cluster unreachable or no answer; 4 token refused.")]
struct Cli {
    /// Admin addresses (the daemons' Raft host:port), comma-separated; the
    /// first that answers is used.
    #[arg(long, short = 'e', env = "RAFTCTL_ENDPOINTS", default_value = "127.0.0.1:7001", global = true)]
    endpoints: String,
    /// The cluster token.
    #[arg(long, env = "RAFTCTL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the cluster token.
    #[arg(long, env = "RAFTCTL_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    /// The cluster's CA certificate (PEM): connect with TLS and verify the
    /// daemon against it.
    #[arg(long, env = "RAFTCTL_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// Deadline of one call, in seconds (switchover and failover wait longer).
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Copy)]
struct JsonFlag {
    /// Print JSON instead of a table or text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Members with role, state, timeline, lag and Raft role/term.
    #[command(alias = "status")]
    List(JsonFlag),
    /// Raft membership changes.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Hand the primary role to another member without losing writes.
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
    },
    /// Make a member primary: a switchover while a primary holds the role,
    /// an election when none does.
    Failover {
        #[arg(long)]
        to: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Maintenance mode: pause automatic failover.
    Pause,
    /// Resume automatic failover.
    Resume,
    /// The dynamic configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The cluster's event history.
    History {
        /// The newest N events only.
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Events as they happen.
    Events {
        /// Keep printing new events until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Replay kept events after this log index first.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Restart a member's PostgreSQL.
    Restart { member: String },
    /// Re-clone a replica from the primary.
    #[command(alias = "reinitialize")]
    Reinit { member: String },
    /// Print an HAProxy configuration for the cluster (Pigsty's four services).
    HaproxyConfig(HaproxyArgs),
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Add a node as a learner (it catches up first), optionally as a voter.
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
enum ConfigCmd {
    /// Print the dynamic configuration.
    Show(JsonFlag),
    /// Change keys: key=value (JSON value or string), key=null resets to
    /// the default; postgresql_parameters.<name>=<value> sets a parameter.
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
    /// Edit the configuration in $EDITOR; applied only if nobody changed it
    /// meanwhile.
    Edit,
}

#[derive(Args)]
struct HaproxyArgs {
    #[arg(long, default_value = "*")]
    bind: String,
    #[arg(long, default_value_t = 5433)]
    primary_port: u16,
    #[arg(long, default_value_t = 5434)]
    replica_port: u16,
    #[arg(long, default_value_t = 5436)]
    default_port: u16,
    #[arg(long, default_value_t = 5438)]
    offline_port: u16,
    /// Replicas further behind are taken out of the replica service.
    #[arg(long, default_value = "16MB")]
    max_replica_lag: String,
    #[arg(long)]
    stats_port: Option<u16>,
    /// Health-check interval, milliseconds.
    #[arg(long, default_value_t = 1000)]
    check_interval_ms: u64,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<std::path::PathBuf>,
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        let code = match s.code() {
            Code::InvalidArgument => 2,
            Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => 1,
            Code::Unauthenticated | Code::PermissionDenied => 4,
            _ => 3,
        };
        Failure::new(code, s.message().to_string())
    }
}

type Result<T> = std::result::Result<T, Failure>;

struct Ctl {
    client: AdminClient<Channel>,
    token: Option<String>,
    timeout: Duration,
    endpoint: String,
}

impl Ctl {
    async fn connect(cli: &Cli) -> Result<Ctl> {
        let token = match (&cli.token, &cli.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| Failure::new(2, format!("read token file {}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let tls = match &cli.ca_file {
            None => None,
            Some(p) => {
                let pem =
                    std::fs::read(p).map_err(|e| Failure::new(2, format!("read CA file {}: {e}", p.display())))?;
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            }
        };
        let mut errors = Vec::new();
        for ep in cli.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = if ep.contains("://") { ep.to_string() } else { format!("{scheme}://{ep}") };
            let mut endpoint = match Endpoint::from_shared(url) {
                Ok(e) => e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
                Err(e) => return Err(Failure::new(2, format!("invalid endpoint {ep:?}: {e}"))),
            };
            if let Some(t) = &tls {
                endpoint = endpoint.tls_config(t.clone()).map_err(|e| Failure::new(2, format!("TLS for {ep}: {e}")))?;
            }
            match endpoint.connect().await {
                Ok(ch) => {
                    return Ok(Ctl {
                        client: AdminClient::new(ch),
                        token,
                        timeout: Duration::from_secs(cli.timeout),
                        endpoint: ep.to_string(),
                    });
                }
                Err(e) => errors.push(format!("{ep}: {}", source_chain(&e))),
            }
        }
        if errors.is_empty() {
            return Err(Failure::new(2, "no endpoint given (--endpoints or RAFTCTL_ENDPOINTS)"));
        }
        Err(Failure::new(3, format!("cannot reach the cluster: {}", errors.join("; "))))
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        self.req_for(msg, self.timeout)
    }

    fn req_for<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut r = self.authorized(msg);
        r.set_timeout(timeout);
        r
    }

    /// A request with the token and no deadline (a stream).
    fn authorized<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("JSON values serialize"));
}

fn member_json(m: &pb::MemberStatus) -> Value {
    json!({
        "id": m.id, "name": m.name, "host": m.host, "port": m.port, "api_url": m.api_url,
        "raft_addr": m.raft_addr, "role": m.role, "state": m.state, "timeline": m.timeline,
        "lag_bytes": m.lag_bytes, "raft_role": m.raft_role, "raft_term": m.raft_term,
        "tags": m.tags, "registered": m.registered, "lsn": m.lsn,
    })
}

fn status_json(s: &pb::ClusterStatus) -> Value {
    json!({
        "cluster_id": s.cluster_id, "epoch": s.epoch,
        "primary": (!s.primary.is_empty()).then_some(&s.primary),
        "maintenance": s.maintenance, "config_version": s.config_version,
        "switchover": s.switchover.as_ref().map(|sw| json!({
            "from": sw.from, "to": (!sw.to.is_empty()).then_some(&sw.to),
            "at_ms": (sw.at_ms != 0).then_some(sw.at_ms),
        })),
        "raft_term": s.raft_term, "raft_leader": (s.raft_leader != 0).then_some(s.raft_leader),
        "failovers": s.failovers, "switchovers": s.switchovers,
        "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
        "served_by": s.served_by, "stale": s.stale,
    })
}

fn lag_text(m: &pb::MemberStatus) -> String {
    match (m.role.as_str(), m.lag_bytes) {
        ("primary", _) => String::new(),
        (_, Some(b)) => format!("{:.1}", b as f64 / 1_048_576.0),
        (_, None) => "unknown".into(),
    }
}

fn print_status(s: &pb::ClusterStatus) {
    let mut header = format!("Cluster: {} (epoch {}, Raft term {})", s.cluster_id, s.epoch, s.raft_term);
    if s.maintenance {
        header.push_str("  [maintenance mode: automatic failover paused]");
    }
    println!("{header}");
    if s.stale {
        println!(
            "WARNING: node {} could not confirm this view with the Raft leader (no quorum, or it is no longer a \
             member); it may be out of date",
            s.served_by
        );
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(vec!["Member", "Host", "Role", "State", "TL", "Lag in MB", "Raft", "Tags"]);
    for m in &s.members {
        let role = match m.role.as_str() {
            "primary" => "Leader",
            "replica" => "Replica",
            "unreachable" => "unreachable",
            _ => "unknown",
        };
        let raft = match m.raft_term {
            Some(term) => format!("{} / {term}", m.raft_role),
            None => m.raft_role.clone(),
        };
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.add_row(vec![
            m.name.clone(),
            if m.port != 0 { format!("{}:{}", m.host, m.port) } else { String::new() },
            role.to_string(),
            m.state.clone(),
            m.timeline.map(|t| t.to_string()).unwrap_or_default(),
            lag_text(m),
            raft,
            tags.join(","),
        ]);
    }
    println!("{t}");
    if let Some(sw) = &s.switchover {
        let to = if sw.to.is_empty() { "the best replica" } else { &sw.to };
        let at = if sw.at_ms == 0 { "now".to_string() } else { format_ms(sw.at_ms) };
        println!("Switchover scheduled: {} -> {to} at {at}", sw.from);
    }
}

fn event_line(e: &pb::Event) -> String {
    format!("{}  [{:>6}]  {:<22} {}", format_ms(e.at_ms), e.index, e.kind, e.text)
}

fn event_json(e: &pb::Event) -> Value {
    json!({
        "index": e.index, "at_ms": e.at_ms, "at": format_ms(e.at_ms), "kind": e.kind, "text": e.text,
        "event": serde_json::from_str::<Value>(&e.json).unwrap_or(Value::Null),
    })
}

/// `key=value` pairs as a JSON merge patch.
fn patch_from_pairs(pairs: &[String]) -> Result<Value> {
    let mut patch = serde_json::Map::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(Failure::new(2, format!("{pair:?} is not key=value")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Failure::new(2, format!("{pair:?} has an empty key")));
        }
        if let Some(param) = key.strip_prefix("postgresql_parameters.") {
            let value = if raw == "null" { Value::Null } else { Value::String(raw.to_string()) };
            let params = patch.entry("postgresql_parameters").or_insert_with(|| json!({}));
            params.as_object_mut().expect("made an object").insert(param.to_string(), value);
            continue;
        }
        let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        patch.insert(key.to_string(), value);
    }
    Ok(Value::Object(patch))
}

fn parse_at(at: &str) -> Result<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(at)
        .map_err(|e| Failure::new(2, format!("--at {at:?} is not an RFC 3339 time with a zone: {e}")))?;
    Ok(t.timestamp_millis().max(0) as u64)
}

fn split_url(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    let (h, p) = hostport.rsplit_once(':')?;
    Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
}

async fn run(cli: Cli) -> Result<()> {
    let mut ctl = Ctl::connect(&cli).await?;
    let long = Duration::from_secs(cli.timeout.max(90));
    match cli.cmd {
        Cmd::List(f) => {
            let s = ctl.client.status(ctl.req(pb::StatusRequest {})).await?.into_inner();
            if f.json { print_json(&status_json(&s)) } else { print_status(&s) }
        }
        Cmd::Member(MemberCmd::Add { id, name, raft_addr, api_url, voter }) => {
            eprintln!("adding {name} (node {id}, {raft_addr}) as a learner; waiting for it to catch up...");
            let r = pb::AddMemberRequest { id, name, raft_addr, api_url, promote: voter };
            let reply = ctl.client.add_member(ctl.req_for(r, long)).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Member(MemberCmd::Promote { member }) => {
            let reply = ctl.client.promote_member(ctl.req(pb::MemberRequest { member })).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Member(MemberCmd::Remove { member }) => {
            let reply = ctl.client.remove_member(ctl.req(pb::MemberRequest { member })).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Switchover { cancel: true, .. } => {
            let reply = ctl.client.cancel_switchover(ctl.req(pb::CancelSwitchoverRequest {})).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Switchover { from, to, at, no_wait, .. } => {
            let at_ms = at.as_deref().map(parse_at).transpose()?.unwrap_or(0);
            let wait = !no_wait && at_ms == 0;
            if wait {
                eprintln!(
                    "switching over to {}; waiting for the new primary...",
                    to.as_deref().unwrap_or("the best replica")
                );
            }
            let r = pb::SwitchoverRequest { from: from.unwrap_or_default(), to: to.unwrap_or_default(), at_ms, wait };
            let reply = ctl.client.switchover(ctl.req_for(r, long)).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Failover { to, no_wait } => {
            if !no_wait {
                eprintln!("failing over to {to}; waiting for it to run as primary...");
            }
            let reply =
                ctl.client.failover(ctl.req_for(pb::FailoverRequest { to, wait: !no_wait }, long)).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Pause | Cmd::Resume => {
            let on = matches!(cli.cmd, Cmd::Pause);
            let reply = ctl.client.set_maintenance(ctl.req(pb::SetMaintenanceRequest { on })).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Config(ConfigCmd::Show(f)) => {
            let c = ctl.client.get_config(ctl.req(pb::GetConfigRequest {})).await?.into_inner();
            if f.json {
                let config: Value = serde_json::from_str(&c.json).unwrap_or(Value::Null);
                print_json(&json!({ "version": c.version, "config": config }));
            } else {
                println!("# version {}", c.version);
                println!("{}", c.json);
            }
        }
        Cmd::Config(ConfigCmd::Set { pairs, if_version, dry_run }) => {
            let patch = patch_from_pairs(&pairs)?;
            let r = pb::SetConfigRequest {
                json: patch.to_string(),
                merge: true,
                if_version: if_version.unwrap_or(0),
                dry_run,
            };
            let c = ctl.client.set_config(ctl.req(r)).await?.into_inner();
            if dry_run {
                println!("# valid; nothing changed (dry run)\n{}", c.json);
            } else if c.changed {
                println!("configuration changed to version {}", c.version);
            } else {
                println!("nothing to change (version {})", c.version);
            }
        }
        Cmd::Config(ConfigCmd::Edit) => {
            let c = ctl.client.get_config(ctl.req(pb::GetConfigRequest {})).await?.into_inner();
            let mut file = tempfile::Builder::new()
                .prefix("raftgres-config-")
                .suffix(".json")
                .tempfile()
                .map_err(|e| Failure::new(2, format!("create a temporary file: {e}")))?;
            file.write_all(c.json.as_bytes()).map_err(|e| Failure::new(2, format!("write: {e}")))?;
            let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(file.path())
                .status()
                .map_err(|e| Failure::new(2, format!("run {editor}: {e}")))?;
            if !status.success() {
                return Err(Failure::new(2, format!("{editor} exited with {status}; nothing changed")));
            }
            let edited = std::fs::read_to_string(file.path()).map_err(|e| Failure::new(2, format!("read: {e}")))?;
            let (before, after) = (serde_json::from_str::<Value>(&c.json).ok(), serde_json::from_str::<Value>(&edited));
            match after {
                Err(e) => {
                    return Err(Failure::new(2, format!("the edited file is not valid JSON: {e}; nothing changed")));
                }
                Ok(a) if Some(&a) == before.as_ref() => {
                    println!("no changes");
                    return Ok(());
                }
                Ok(_) => {}
            }
            let r = pb::SetConfigRequest { json: edited, merge: false, if_version: c.version, dry_run: false };
            let c = ctl.client.set_config(ctl.req(r)).await?.into_inner();
            println!("configuration changed to version {}", c.version);
        }
        Cmd::History { limit, json } => {
            let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit })).await?.into_inner();
            if json.json {
                print_json(&Value::Array(h.events.iter().map(event_json).collect()));
            } else {
                for e in &h.events {
                    println!("{}", event_line(e));
                }
            }
        }
        Cmd::Events { follow, after, json } => {
            if !follow {
                let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit: 0 })).await?.into_inner();
                for e in h.events.iter().filter(|e| e.index > after) {
                    if json.json { println!("{}", event_json(e)) } else { println!("{}", event_line(e)) }
                }
                return Ok(());
            }
            let req = ctl.authorized(pb::EventsRequest { after_index: after });
            eprintln!("following events from {} (Ctrl-C to stop)", ctl.endpoint);
            let mut stream = ctl.client.events(req).await?.into_inner();
            while let Some(e) = stream.message().await? {
                if json.json {
                    println!("{}", event_json(&e))
                } else {
                    println!("{}", event_line(&e))
                }
                let _ = std::io::stdout().flush();
            }
        }
        Cmd::Restart { member } => {
            eprintln!("restarting PostgreSQL on {member}...");
            let reply = ctl.client.restart(ctl.req_for(pb::MemberRequest { member }, long)).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::Reinit { member } => {
            eprintln!("reinitializing {member} from the primary...");
            let long = Duration::from_secs(cli.timeout.max(660));
            let reply = ctl.client.reinitialize(ctl.req_for(pb::MemberRequest { member }, long)).await?.into_inner();
            println!("{}", reply.message);
        }
        Cmd::HaproxyConfig(a) => {
            let s = ctl.client.status(ctl.req(pb::StatusRequest {})).await?.into_inner();
            let mut backends = Vec::new();
            for m in s.members.iter().filter(|m| m.registered) {
                let (api_host, api_port) = split_url(&m.api_url).ok_or_else(|| {
                    Failure::new(1, format!("member {} has no usable API URL ({:?})", m.name, m.api_url))
                })?;
                backends.push(haproxy::Backend {
                    name: m.name.clone(),
                    pg_host: m.host.clone(),
                    pg_port: m.port as u16,
                    api_host,
                    api_port,
                });
            }
            let options = haproxy::Options {
                cluster: s.cluster_id.clone(),
                bind: a.bind,
                primary_port: a.primary_port,
                replica_port: a.replica_port,
                default_port: a.default_port,
                offline_port: a.offline_port,
                max_replica_lag: a.max_replica_lag,
                stats_port: a.stats_port,
                check_interval_ms: a.check_interval_ms,
                ..haproxy::Options::default()
            };
            let text = haproxy::render(&options, &backends).map_err(|e| Failure::new(2, e.to_string()))?;
            match a.output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| Failure::new(2, format!("write {}: {e}", path.display())))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("start the async runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("raftctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_a_merge_patch() {
        let p = patch_from_pairs(&[
            "lease_ttl_ms=3000".into(),
            "use_pg_rewind=false".into(),
            "synchronous_mode=off".into(),
            "postgresql_parameters.work_mem=8MB".into(),
            "maximum_lag_on_failover=null".into(),
        ])
        .ok()
        .expect("valid pairs");
        assert_eq!(
            p,
            json!({"lease_ttl_ms": 3000, "use_pg_rewind": false, "synchronous_mode": "off",
                   "postgresql_parameters": {"work_mem": "8MB"}, "maximum_lag_on_failover": null})
        );
        assert_eq!(patch_from_pairs(&["novalue".into()]).err().map(|f| f.code), Some(2));
    }

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(split_url("http://10.0.0.1:8008"), Some(("10.0.0.1".into(), 8008)));
        assert_eq!(split_url("http://[::1]:8008/"), Some(("::1".into(), 8008)));
        assert_eq!(split_url("nope"), None);
    }
}
