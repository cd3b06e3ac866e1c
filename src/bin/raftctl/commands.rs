//! The commands: connect to the first endpoint that answers, call the
//! admin service, hand the answer to the printer.

use std::io::Write;
use std::time::{Duration, Instant};

use raftgres_api::haproxy;
use raftgres_api::patroni_config;
use raftgres_api::time::parse_rfc3339_ms;
use raftgres_api::{ClusterStatus, HostPort, MemberStatus, Role};
use raftgres_proto::admin as pb;
use raftgres_proto::admin::admin_client::AdminClient;
use serde_json::{Value, json};
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::cli::{Cli, Cmd, ConfigCmd, DsnRole, HaproxyArgs, MemberCmd, Watch};
use crate::confirm::{self, confirm};
use crate::exit::{Exit, Failure, Result};
use crate::output::{ConfigResult, Election, Printer, printer};
use crate::{http, node_config, probe, restart};

/// How to reach the cluster: every endpoint, the token, TLS, the deadline.
#[derive(Clone)]
struct Settings {
    endpoints: Vec<String>,
    token: Option<String>,
    tls: Option<ClientTlsConfig>,
    timeout: Duration,
}

impl Settings {
    fn from_cli(cli: &Cli) -> Result<Settings> {
        let file = match &cli.config {
            Some(path) => node_config::read(path).map_err(Failure::usage)?,
            None => node_config::FromFile::default(),
        };
        let token_file = cli.token_file.as_ref().or(file.token_file.as_ref());
        let token = match (cli.token.as_ref().or(file.token.as_ref()), token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| Failure::usage(format!("read token file {}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let tls = match cli.ca_file.as_ref().or(file.ca_file.as_ref()) {
            None => None,
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| Failure::usage(format!("read CA file {}: {e}", p.display())))?;
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            }
        };
        let endpoints: Vec<String> = match &cli.endpoints {
            Some(list) => list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect(),
            None if !file.endpoints.is_empty() => file.endpoints,
            None => vec![DEFAULT_ENDPOINT.to_string()],
        };
        if endpoints.is_empty() {
            return Err(Failure::usage("no endpoint given (--endpoints or RAFTCTL_ENDPOINTS)"));
        }
        let api_ca = cli.cacert.as_ref().or(file.api_cacert.as_ref());
        let identity = match (cli.cert.as_ref().or(file.api_cert.as_ref()), cli.key.as_ref().or(file.api_key.as_ref()))
        {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => return Err(Failure::usage("--cert and --key go together")),
        };
        if let Some(ca) = api_ca {
            http::use_tls(ca, identity).map_err(Failure::usage)?;
        }
        Ok(Settings { endpoints, token, tls, timeout: Duration::from_secs(cli.timeout) })
    }

    /// A channel to `ep`.
    async fn open(&self, ep: &str) -> Result<std::result::Result<Channel, String>> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = if ep.contains("://") { ep.to_string() } else { format!("{scheme}://{ep}") };
        let mut endpoint = match Endpoint::from_shared(url) {
            Ok(e) => e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
            Err(e) => return Err(Failure::usage(format!("invalid endpoint {ep:?}: {e}"))),
        };
        if let Some(t) = &self.tls {
            endpoint = endpoint.tls_config(t.clone()).map_err(|e| Failure::usage(format!("TLS for {ep}: {e}")))?;
        }
        Ok(endpoint.connect().await.map_err(|e| source_chain(&e)))
    }
}

/// Where raftctl looks without `--endpoints` or `--config`.
const DEFAULT_ENDPOINT: &str = "127.0.0.1:7001";

/// A connection to one daemon's admin service.
struct Ctl {
    client: AdminClient<Channel>,
    settings: Settings,
    /// The endpoint connected to, and its place in the list.
    endpoint: String,
    at: usize,
}

impl Ctl {
    async fn connect(cli: &Cli) -> Result<Ctl> {
        Self::connect_from(Settings::from_cli(cli)?, 0).await
    }

    /// Connects to the first endpoint that answers, starting at `start`
    /// and going round the list.
    async fn connect_from(settings: Settings, start: usize) -> Result<Ctl> {
        let n = settings.endpoints.len();
        let mut errors = Vec::new();
        let mut wrong_port = false;
        for k in 0..n {
            let at = (start + k) % n;
            let ep = settings.endpoints[at].clone();
            match settings.open(&ep).await? {
                Ok(ch) => {
                    return Ok(Ctl { client: AdminClient::new(ch), settings, endpoint: ep, at });
                }
                Err(e) => match probe::what_answers(&ep).await {
                    Some(other) => {
                        wrong_port = true;
                        errors.push(probe::advice(&ep, other));
                    }
                    None => errors.push(format!("{ep}: {e}")),
                },
            }
        }
        let exit = if wrong_port { Exit::Usage } else { Exit::Unreachable };
        Err(Failure::new(exit, format!("cannot reach the cluster: {}", errors.join("; "))))
    }

    /// After the connected node went away: the next endpoint that
    /// answers, trying round the list until `deadline`.
    async fn reconnect(&mut self, deadline: Instant) -> Result<()> {
        loop {
            match Self::connect_from(self.settings.clone(), self.at + 1).await {
                Ok(c) => {
                    *self = c;
                    return Ok(());
                }
                Err(f) if f.exit != Exit::Unreachable || Instant::now() >= deadline => return Err(f),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// A failure in the operator's terms: when the endpoint is not an
    /// admin service at all, which port it is and which one to use.
    async fn explain(&self, f: Failure) -> Failure {
        if !f.probe {
            return f;
        }
        match probe::what_answers(&self.endpoint).await {
            Some(other) => Failure::usage(probe::advice(&self.endpoint, other)),
            None => f,
        }
    }

    /// A request with the token and the default deadline.
    fn req<T>(&self, msg: T) -> Request<T> {
        self.req_for(msg, self.settings.timeout)
    }

    fn req_for<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut r = self.authorized(msg);
        r.set_timeout(timeout);
        r
    }

    /// A request with the token and no deadline (a stream).
    fn authorized<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.settings.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    /// The cluster as it is now: read before a change, to check the names
    /// it was given and to say what the change will do.
    async fn current(&mut self) -> Result<ClusterStatus> {
        Ok(self.client.status(self.req(pb::StatusRequest {})).await?.into_inner().into())
    }
}

/// What a switchover will do, shown before asking.
fn switchover_plan(s: &ClusterStatus, to: Option<&str>, at: Option<&str>) -> String {
    let primary = s.primary.as_deref().unwrap_or("(no primary)");
    let to = to.unwrap_or("the most up-to-date streaming replica");
    let when = at.map(|a| format!("at {a}")).unwrap_or_else(|| "now".into());
    format!(
        "Switchover of cluster {}: the primary {primary} is demoted and {to} promoted, {when}. Connections to \
         {primary} are cut and writes pause until {to} runs as primary.",
        s.cluster_id
    )
}

/// What a failover will do, shown before asking.
fn failover_plan(s: &ClusterStatus, to: &str, accept_data_loss: bool) -> String {
    let mut plan = match s.primary.as_deref() {
        Some(p) => format!(
            "Failover of cluster {} to {to}: {p} holds the primary role, so it is demoted first (a switchover); \
             connections to {p} are cut and writes pause until {to} runs as primary.",
            s.cluster_id
        ),
        None => format!("Failover of cluster {}: no member holds the primary role; {to} is promoted.", s.cluster_id),
    };
    if accept_data_loss {
        plan.push_str(" Writes only the lost primary had are given up for good.");
    }
    plan
}

/// The member `who` names (a name or an id), or the refusal the daemon
/// would give.
/// Refuses, before asking anything, a handover target the cluster would
/// refuse: one whose daemon does not answer, or, in synchronous mode, one
/// outside the synchronous set.
fn check_target(s: &ClusterStatus, m: &MemberStatus, must_run: bool) -> Result<()> {
    if must_run && matches!(m.role, Role::Unreachable | Role::Unknown) {
        return Err(Failure::new(
            Exit::Refused,
            format!(
                "{} is not running (its daemon does not answer, or PostgreSQL is {}); nothing changed",
                m.name, m.state
            ),
        ));
    }
    let in_set = |m: &&MemberStatus| m.sync_standby || m.quorum_standby;
    let sync: Vec<&str> = s.members.iter().filter(in_set).map(|m| m.name.as_str()).collect();
    if !sync.is_empty() && !in_set(&m) {
        return Err(Failure::new(
            Exit::Refused,
            format!(
                "{} is not a synchronous standby, so it may lack acknowledged writes; the synchronous standbys: {}",
                m.name,
                sync.join(", ")
            ),
        ));
    }
    Ok(())
}

fn must_member<'a>(s: &'a ClusterStatus, who: &str) -> Result<&'a MemberStatus> {
    let who = who.trim();
    s.members.iter().find(|m| m.name == who).or_else(|| s.members.iter().find(|m| m.id.to_string() == who)).ok_or_else(
        || {
            let names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
            Failure::new(Exit::Refused, format!("unknown member {who:?}; members: {}", names.join(", ")))
        },
    )
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

/// `key=value` pairs as a JSON merge patch.
pub fn patch_from_pairs(pairs: &[String]) -> Result<Value> {
    let mut patch = serde_json::Map::new();
    let mut params = serde_json::Map::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(Failure::usage(format!("{pair:?} is not key=value")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Failure::usage(format!("{pair:?} has an empty key")));
        }
        let param = key.strip_prefix("postgresql_parameters.").or_else(|| key.strip_prefix("postgresql.parameters."));
        if let Some(param) = param {
            let value = if raw == "null" { Value::Null } else { Value::String(raw.to_string()) };
            params.insert(param.to_string(), value);
            continue;
        }
        let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        patch.insert(key.to_string(), value);
    }
    if !params.is_empty() {
        if patch.contains_key("postgresql") {
            return Err(Failure::usage("set parameters either as postgresql=... or as postgresql.parameters.NAME=..."));
        }
        patch.insert("postgresql".into(), json!({ "parameters": params }));
    }
    Ok(Value::Object(patch))
}

/// `--at`: RFC 3339, or `now` (0) as patronictl's `--scheduled now`.
fn parse_at(at: &str) -> Result<u64> {
    if at.trim().eq_ignore_ascii_case("now") {
        return Ok(0);
    }
    parse_rfc3339_ms(at).map_err(|e| Failure::usage(format!("--at {at:?} is not an RFC 3339 time with a zone: {e}")))
}

/// Runs one command; output goes to `out` through the chosen printer.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    if let Some(r) = offline(&cli, out) {
        return r;
    }
    let mut ctl = Ctl::connect(&cli).await?;
    match dispatch(cli, &mut ctl, out).await {
        Err(f) => Err(ctl.explain(f).await),
        ok => ok,
    }
}

/// Commands answered without the cluster: the version, and patronictl
/// commands spelled differently here (pointing to the real one).
fn offline(cli: &Cli, out: &mut dyn Write) -> Option<Result<()>> {
    let hint = match &cli.cmd {
        Cmd::Version => {
            return Some(writeln!(out, "raftctl version {}", env!("CARGO_PKG_VERSION")).map_err(Failure::from));
        }
        Cmd::Flush { args } if args.iter().any(|a| a == "restart") => {
            "a scheduled restart is dropped on the member itself: DELETE /restart on its HTTP API (with the token)"
        }
        Cmd::Flush { .. } => "a scheduled switchover is dropped with: raftctl switchover --cancel",
        Cmd::Query { .. } => "raftctl runs no SQL; connect with psql \"$(raftctl dsn) dbname=... user=...\"",
        Cmd::Remove { .. } => {
            "raftgres keeps the cluster in its own Raft log, not in a DCS: remove members one at a time with \
             raftctl member remove MEMBER, and delete a node's data directory once it is stopped"
        }
        _ => return None,
    };
    Some(Err(Failure::usage(hint)))
}

async fn dispatch(cli: Cli, ctl: &mut Ctl, out: &mut dyn Write) -> Result<()> {
    let p = printer(cli.format());
    let long = Duration::from_secs(cli.timeout.max(90));
    match cli.cmd {
        Cmd::List(w) => watch(ctl, &*p, out, w, false).await?,
        Cmd::Topology(w) => watch(ctl, &*p, out, w, true).await?,
        Cmd::Dsn { role, member } => {
            let s = ctl.current().await?;
            let m = match &member {
                Some(who) => must_member(&s, who)?,
                None => pick_by_role(&s, role)?,
            };
            p.dsn(out, &m.host, m.port)?;
        }
        Cmd::ShowConfig => config(ctl, &*p, out, ConfigCmd::Show).await?,
        Cmd::EditConfig { set, pg, force } => {
            let mut pairs = set;
            pairs.extend(pg.iter().map(|kv| format!("postgresql_parameters.{kv}")));
            let cmd = if pairs.is_empty() {
                ConfigCmd::Edit { force }
            } else {
                ConfigCmd::Set { pairs, if_version: None, dry_run: false }
            };
            config(ctl, &*p, out, cmd).await?;
        }
        Cmd::Reload { members } => reload(ctl, out, members).await?,
        Cmd::Member(cmd) => member(ctl, &*p, out, cmd, long).await?,
        Cmd::Switchover { cancel: true, .. } => {
            let reply = ctl.client.cancel_switchover(ctl.req(pb::CancelSwitchoverRequest {})).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::Switchover { from, to, at, no_wait, force, .. } => {
            let at_ms = at.as_deref().map(parse_at).transpose()?.unwrap_or(0);
            let s = ctl.current().await?;
            let primary = s.primary.clone();
            if let Some(from) = &from {
                let m = must_member(&s, from)?;
                if primary.as_deref() != Some(m.name.as_str()) {
                    return Err(Failure::new(
                        Exit::Refused,
                        format!("{} is not the primary ({})", m.name, primary.as_deref().unwrap_or("there is none")),
                    ));
                }
            }
            if let Some(to) = &to
                && primary.as_deref() == Some(must_member(&s, to)?.name.as_str())
            {
                return Err(Failure::new(Exit::Refused, format!("{to} is already the primary")));
            }
            if let Some(to) = &to {
                check_target(&s, must_member(&s, to)?, true)?;
            }
            confirm(&switchover_plan(&s, to.as_deref(), at.as_deref()), force)?;
            let wait = !no_wait && at_ms == 0;
            if wait {
                eprintln!(
                    "switching over to {}; waiting for the new primary...",
                    to.as_deref().unwrap_or("the best replica")
                );
            }
            let r = pb::SwitchoverRequest { from: from.unwrap_or_default(), to: to.unwrap_or_default(), at_ms, wait };
            let reply = ctl.client.switchover(ctl.req_for(r, long)).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::Failover { to, no_wait, accept_data_loss, force } => {
            let s = ctl.current().await?;
            let target = must_member(&s, &to)?;
            if s.primary.as_deref() == Some(target.name.as_str()) {
                return Err(Failure::new(Exit::Refused, format!("{to} is already the primary")));
            }
            if !accept_data_loss {
                check_target(&s, target, s.primary.is_some())?;
            }
            confirm(&failover_plan(&s, &target.name, accept_data_loss), force)?;
            if accept_data_loss {
                eprintln!("accepting the loss of writes only the lost primary had");
            }
            if !no_wait {
                eprintln!("failing over to {to}; waiting for it to run as primary...");
            }
            let r = pb::FailoverRequest { to, wait: !no_wait, accept_data_loss };
            let reply = ctl.client.failover(ctl.req_for(r, long)).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::Pause | Cmd::Resume => {
            let on = matches!(cli.cmd, Cmd::Pause);
            let reply = ctl.client.set_maintenance(ctl.req(pb::SetMaintenanceRequest { on })).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::Config(cmd) => config(ctl, &*p, out, cmd).await?,
        Cmd::History { all: true, limit } => {
            let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit })).await?.into_inner();
            p.history(out, &h.events)?;
        }
        Cmd::History { all: false, limit } => {
            let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit: 0 })).await?.into_inner();
            let mut rows: Vec<Election> = h.events.iter().filter_map(Election::from_event).collect();
            if limit > 0 && rows.len() > limit as usize {
                rows.drain(..rows.len() - limit as usize);
            }
            p.elections(out, &rows)?;
        }
        Cmd::Events { follow: false, after } => {
            let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit: 0 })).await?.into_inner();
            for e in h.events.iter().filter(|e| e.index > after) {
                p.event(out, e)?;
            }
        }
        Cmd::Events { follow: true, after } => follow(ctl, &*p, out, after).await?,
        Cmd::Restart { members, all, pending, role, pg_version, scheduled, switchover, force } => {
            let wanted = restart::Wanted { members, all, pending, role, pg_version, scheduled, switchover, force };
            restart_members(ctl, out, wanted, long).await?;
        }
        Cmd::Reinit { member, force } => {
            let s = ctl.current().await?;
            let m = must_member(&s, &member)?;
            if s.primary.as_deref() == Some(m.name.as_str()) {
                return Err(Failure::new(
                    Exit::Refused,
                    format!("{} is the primary; only a replica can be reinitialized from it", m.name),
                ));
            }
            confirm(
                &format!(
                    "Reinitialization of {}: its data directory is deleted and cloned again from the primary {}; \
                     it serves no reads until the copy is complete.",
                    m.name,
                    s.primary.as_deref().unwrap_or("(none now)")
                ),
                force,
            )?;
            eprintln!("reinitializing {member} from the primary...");
            let long = Duration::from_secs(cli.timeout.max(660));
            let reply = ctl.client.reinitialize(ctl.req_for(pb::MemberRequest { member }, long)).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::HaproxyConfig(a) => haproxy_config(ctl, out, a).await?,
        Cmd::Version | Cmd::Flush { .. } | Cmd::Query { .. } | Cmd::Remove { .. } => {
            unreachable!("answered by offline()")
        }
    }
    Ok(())
}

/// `list` and `topology`, once or every period of `w` (patronictl's `-W`,
/// `-w N`), clearing the screen between on a terminal.
async fn watch(ctl: &mut Ctl, p: &dyn Printer, out: &mut dyn Write, w: Watch, tree: bool) -> Result<()> {
    let clear = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let s = ctl.current().await?;
        if w.period().is_some() && clear {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        if tree {
            p.topology(out, &s)?
        } else {
            p.status(out, &s)?
        }
        out.flush()?;
        match w.period() {
            None => return Ok(()),
            Some(period) => tokio::time::sleep(period).await,
        }
    }
}

/// The member `dsn --role` names.
fn pick_by_role(s: &ClusterStatus, role: DsnRole) -> Result<&MemberStatus> {
    let is_primary = |m: &MemberStatus| s.primary.as_deref() == Some(m.name.as_str());
    let found = match role {
        DsnRole::Primary => s.members.iter().find(|m| is_primary(m)),
        DsnRole::Replica => s.members.iter().find(|m| !is_primary(m) && m.role == Role::Replica),
        DsnRole::Any => s.members.iter().find(|m| is_primary(m)).or_else(|| s.members.first()),
    };
    found.ok_or_else(|| Failure::new(Exit::Refused, format!("no {role:?} among the members").to_lowercase()))
}

/// Every key of `patch` must be a key of the configuration `current`
/// (JSON); a mistyped one gets the key it probably meant.
fn check_keys(patch: &serde_json::Map<String, Value>, current: &str) -> Result<()> {
    let current: Value = serde_json::from_str(current).unwrap_or(Value::Null);
    let Some(known) = current.as_object() else { return Ok(()) };
    let Some(key) = patch.keys().find(|k| !known.contains_key(*k)) else { return Ok(()) };
    let hint = match patroni_config::did_you_mean(key, known.keys().map(String::as_str)) {
        Some(k) => format!("did you mean {k}?"),
        None => format!("keys: {}", known.keys().cloned().collect::<Vec<_>>().join(", ")),
    };
    Err(Failure::usage(format!("unknown configuration key {key:?}; {hint} Nothing changed.")))
}

/// `reload`: POST /reload on each member's HTTP API (all by default).
/// `restart`: conditional restarts through each member's `POST /restart`,
/// one at a time, replicas first; scheduled ones are only registered.
async fn restart_members(ctl: &mut Ctl, out: &mut dyn Write, w: restart::Wanted, long: Duration) -> Result<()> {
    let s = ctl.current().await?;
    let plan = restart::plan(&s, &w)?;
    if plan.is_empty() {
        writeln!(out, "nothing to restart: no member matches")?;
        return Ok(());
    }
    let body = restart::body(&w)?;
    confirm(
        &restart::describe(&s, &plan, &w),
        w.force || (!restart::touches_primary(&s, &plan) && w.scheduled.is_none()),
    )?;
    let token = ctl.settings.token.clone();
    let mut failed = Vec::new();
    for step in plan {
        let name = step.name.clone();
        if step.switch_over_first {
            eprintln!("switching over from {name} before restarting it...");
            let r = pb::SwitchoverRequest { from: name.clone(), to: String::new(), at_ms: 0, wait: true };
            let reply = ctl.client.switchover(ctl.req_for(r, long)).await?.into_inner();
            writeln!(out, "{}", reply.message)?;
            if w.pending {
                // The switchover stopped and started it as a standby: what
                // waited for a restart may already be applied.
                wait_back(ctl, &name, long).await?;
                let now = ctl.current().await?;
                if now.members.iter().any(|m| m.name == name && m.pending_restart.is_empty()) {
                    writeln!(out, "Success: restart on member {name} (by the switchover)")?;
                    continue;
                }
            }
        }
        if w.scheduled.is_none() {
            eprintln!("restarting PostgreSQL on {name}...");
        }
        let api = s.members.iter().find(|m| m.name == name).map(|m| m.api_url.clone()).unwrap_or_default();
        match http::request("POST", &api, "/restart", &body, token.as_deref(), long).await {
            Ok((200, _)) => {
                writeln!(out, "Success: restart on member {name}")?;
                wait_back(ctl, &name, long).await?;
            }
            Ok((202, _)) => writeln!(out, "Success: restart scheduled on member {name}")?,
            Ok((503, text)) if text.contains("restart conditions are not satisfied") => {
                writeln!(out, "Skipped: restart conditions are not satisfied on member {name}")?
            }
            Ok((code, text)) => {
                writeln!(out, "Failed: restart on member {name} ({code}): {text}")?;
                failed.push(name);
                if w.scheduled.is_none() {
                    break;
                }
            }
            Err(e) => {
                writeln!(out, "Failed: restart on member {name}: {e}")?;
                failed.push(name);
                if w.scheduled.is_none() {
                    break;
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Refused,
            format!("restart failed on {}; the others were not touched after it", failed.join(", ")),
        ))
    }
}

/// Waits until `name` runs again: the primary answering, a replica
/// streaming.
async fn wait_back(ctl: &mut Ctl, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = ctl.current().await?;
        if let Some(m) = s.members.iter().find(|m| m.name == name)
            && (m.role == Role::Primary || m.state == raftgres_api::PgState::Streaming)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(Exit::Unreachable, format!("{name} is not back {timeout:?} after its restart")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn reload(ctl: &mut Ctl, out: &mut dyn Write, members: Vec<String>) -> Result<()> {
    let s = ctl.current().await?;
    let targets: Vec<&MemberStatus> = if members.is_empty() {
        s.members.iter().collect()
    } else {
        members.iter().map(|m| must_member(&s, m)).collect::<Result<_>>()?
    };
    let mut failed = false;
    for m in targets {
        match http::post(&m.api_url, "/reload", ctl.settings.token.as_deref(), ctl.settings.timeout).await {
            Ok((code, body)) if (200..300).contains(&code) => writeln!(out, "{}: {body}", m.name)?,
            Ok((code, body)) => {
                failed = true;
                writeln!(out, "{}: failed ({code}): {body}", m.name)?;
            }
            Err(e) => {
                failed = true;
                writeln!(out, "{}: failed: {e}", m.name)?;
            }
        }
    }
    if failed {
        return Err(Failure::new(Exit::Refused, "reload failed on some members (see above)"));
    }
    Ok(())
}

/// `events --follow`: prints events as they are applied. When the node
/// it follows stops, it goes on with the next endpoint that answers, from
/// the last event it printed.
async fn follow(ctl: &mut Ctl, p: &dyn Printer, out: &mut dyn Write, after: u64) -> Result<()> {
    let mut last = after;
    let patience = ctl.settings.timeout.max(Duration::from_secs(30));
    loop {
        eprintln!("following events from {} (Ctrl-C to stop)", ctl.endpoint);
        let why = match ctl.client.events(ctl.authorized(pb::EventsRequest { after_index: last })).await {
            Err(s) => Failure::from(s),
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(e)) => {
                            last = last.max(e.index);
                            p.event(out, &e)?;
                        }
                        Ok(None) => break Failure::new(Exit::Unreachable, "the stream ended"),
                        Err(s) => break Failure::from(s),
                    }
                }
            }
        };
        if why.exit != Exit::Unreachable {
            return Err(why);
        }
        eprintln!("lost {} ({}); following from the next endpoint", ctl.endpoint, why.message);
        ctl.reconnect(Instant::now() + patience).await?;
    }
}

async fn member(ctl: &mut Ctl, p: &dyn Printer, out: &mut dyn Write, cmd: MemberCmd, long: Duration) -> Result<()> {
    let reply = match cmd {
        MemberCmd::Add { id, name, raft_addr, api_url, voter } => {
            eprintln!("adding {name} (node {id}, {raft_addr}) as a learner; waiting for it to catch up...");
            let r = pb::AddMemberRequest { id, name, raft_addr, api_url, promote: voter };
            let reply = ctl.client.add_member(ctl.req_for(r, long)).await?.into_inner();
            if !voter {
                eprintln!("next: raftctl member promote {id}, once it should vote");
            }
            reply
        }
        MemberCmd::Promote { member } => {
            ctl.client.promote_member(ctl.req(pb::MemberRequest { member })).await?.into_inner()
        }
        MemberCmd::Remove { member } => {
            ctl.client.remove_member(ctl.req(pb::MemberRequest { member })).await?.into_inner()
        }
    };
    Ok(p.done(out, &reply)?)
}

async fn config(ctl: &mut Ctl, p: &dyn Printer, out: &mut dyn Write, cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Show => {
            let c = ctl.client.get_config(ctl.req(pb::GetConfigRequest {})).await?.into_inner();
            p.config(out, c.version, &c.json)?;
        }
        ConfigCmd::Set { pairs, if_version, dry_run } => {
            let patch = patch_from_pairs(&pairs)?;
            let t = patroni_config::translate(&patch).map_err(Failure::usage)?;
            if t.pause.is_some() {
                return Err(Failure::usage(
                    "pause is not a configuration key here: use raftctl pause / raftctl resume",
                ));
            }
            let current = ctl.client.get_config(ctl.req(pb::GetConfigRequest {})).await?.into_inner();
            check_keys(&t.patch, &current.json)?;
            let r = pb::SetConfigRequest {
                json: Value::Object(t.patch).to_string(),
                merge: true,
                if_version: if_version.unwrap_or(0),
                dry_run,
            };
            let c = ctl.client.set_config(ctl.req(r)).await?.into_inner();
            p.config_result(out, &ConfigResult { version: c.version, json: &c.json, changed: c.changed, dry_run })?;
        }
        ConfigCmd::Edit { force } => {
            let c = ctl.client.get_config(ctl.req(pb::GetConfigRequest {})).await?.into_inner();
            let interactive = confirm::interactive();
            if !force && !interactive {
                return Err(Failure::usage(
                    "config edit shows the difference and asks before applying it: with no terminal to ask on, add \
                     --force (or use raftctl config set key=value); nothing changed",
                ));
            }
            let Some(edited) = edit_until_valid(&c.json, force || !interactive)? else {
                writeln!(out, "no changes")?;
                return Ok(());
            };
            if !force {
                eprintln!("{}", diff(&c.json, &edited));
                let yes =
                    confirm::ask("Apply these changes?", false, &mut std::io::stdin().lock(), &mut std::io::stderr())
                        .map_err(|e| Failure::usage(format!("read the answer: {e}; nothing changed")))?;
                if !yes {
                    return Err(Failure::new(Exit::Refused, "aborted; nothing changed"));
                }
            }
            let r = pb::SetConfigRequest { json: edited, merge: false, if_version: c.version, dry_run: false };
            let c = ctl.client.set_config(ctl.req(r)).await?.into_inner();
            p.config_result(
                out,
                &ConfigResult { version: c.version, json: &c.json, changed: c.changed, dry_run: false },
            )?;
        }
    }
    Ok(())
}

/// Opens `text` in `$VISUAL`/`$EDITOR`; what the file holds afterwards.
fn run_editor(text: &str) -> Result<String> {
    let mut file = tempfile::Builder::new()
        .prefix("raftgres-config-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| Failure::usage(format!("create a temporary file: {e}")))?;
    file.write_all(text.as_bytes()).map_err(|e| Failure::usage(format!("write: {e}")))?;
    let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .map_err(|e| Failure::usage(format!("run {editor}: {e}")))?;
    if !status.success() {
        return Err(Failure::usage(format!("{editor} exited with {status}; nothing changed")));
    }
    std::fs::read_to_string(file.path()).map_err(|e| Failure::usage(format!("read: {e}")))
}

/// Edits `json` until it parses (asking "edit again?" after a syntax
/// error, unless `once`); the edited text, or `None` when unchanged.
fn edit_until_valid(json: &str, once: bool) -> Result<Option<String>> {
    let before = serde_json::from_str::<Value>(json).ok();
    let mut text = json.to_string();
    loop {
        text = run_editor(&text)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(after) if Some(&after) == before.as_ref() => return Ok(None),
            Ok(_) => return Ok(Some(text)),
            Err(e) if once => {
                return Err(Failure::usage(format!("the edited file is not valid JSON: {e}; nothing changed")));
            }
            Err(e) => {
                eprintln!("the edited file is not valid JSON: {e}");
                let again = confirm::ask("Edit again?", true, &mut std::io::stdin().lock(), &mut std::io::stderr())
                    .unwrap_or(false);
                if !again {
                    return Err(Failure::usage("the edited file is not valid JSON; nothing changed"));
                }
            }
        }
    }
}

/// A line diff of `before` and `after`: `-` removed, `+` added, two spaces
/// kept (the longest common subsequence of lines).
pub fn diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    // lcs[i][j]: common lines of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out.join("\n")
}

async fn haproxy_config(ctl: &mut Ctl, out: &mut dyn Write, a: HaproxyArgs) -> Result<()> {
    let s: ClusterStatus = ctl.client.status(ctl.req(pb::StatusRequest {})).await?.into_inner().into();
    let mut backends = Vec::new();
    for m in s.members.iter().filter(|m| m.registered) {
        let api = HostPort::from_url(&m.api_url).map_err(|_| {
            Failure::new(Exit::Refused, format!("member {} has no usable API URL ({:?})", m.name, m.api_url))
        })?;
        backends.push(haproxy::Backend {
            name: m.name.clone(),
            pg_host: m.host.clone(),
            pg_port: m.port,
            api_host: api.host,
            api_port: api.port,
            api_tls: m.api_url.starts_with("https://"),
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
    let text = haproxy::render(&options, &backends).map_err(|e| Failure::usage(e.to_string()))?;
    match a.file {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| Failure::usage(format!("write {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        None => write!(out, "{text}")?,
    }
    Ok(())
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
        .unwrap_or_else(|f| panic!("valid pairs: {}", f.message));
        assert_eq!(
            p,
            json!({"lease_ttl_ms": 3000, "use_pg_rewind": false, "synchronous_mode": "off",
                   "postgresql": {"parameters": {"work_mem": "8MB"}}, "maximum_lag_on_failover": null})
        );
        assert_eq!(patch_from_pairs(&["novalue".into()]).err().map(|f| f.exit), Some(Exit::Usage));
    }

    #[test]
    fn the_diff_marks_changed_lines() {
        let d = diff("{\n  \"a\": 1,\n  \"b\": 2\n}", "{\n  \"a\": 1,\n  \"b\": 3\n}");
        assert_eq!(d, "  {\n    \"a\": 1,\n-   \"b\": 2\n+   \"b\": 3\n  }");
    }

    #[test]
    fn plans_say_who_is_demoted_and_promoted() {
        let s = ClusterStatus { cluster_id: "demo".into(), primary: Some("pg1".into()), ..ClusterStatus::default() };
        let plan = switchover_plan(&s, Some("pg2"), None);
        assert!(plan.contains("pg1 is demoted") && plan.contains("pg2 promoted, now"), "{plan}");
        let plan = failover_plan(&s, "pg3", true);
        assert!(plan.contains("pg1") && plan.contains("pg3") && plan.contains("given up"), "{plan}");
        let none = ClusterStatus { primary: None, ..s };
        assert!(failover_plan(&none, "pg3", false).contains("no member holds the primary role"));
    }
}
