//! The commands: connect to the first endpoint that answers, call the
//! admin service, hand the answer to the printer.

use std::io::Write;
use std::time::Duration;

use raftgres_api::haproxy;
use raftgres_api::time::parse_rfc3339_ms;
use raftgres_api::{ClusterStatus, HostPort};
use raftgres_proto::admin as pb;
use raftgres_proto::admin::admin_client::AdminClient;
use serde_json::{Value, json};
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::cli::{Cli, Cmd, ConfigCmd, HaproxyArgs, MemberCmd};
use crate::exit::{Exit, Failure, Result};
use crate::output::{ConfigResult, Printer, printer};

/// A connection to one daemon's admin service.
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
                    .map_err(|e| Failure::usage(format!("read token file {}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let tls = match &cli.ca_file {
            None => None,
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| Failure::usage(format!("read CA file {}: {e}", p.display())))?;
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            }
        };
        let mut errors = Vec::new();
        for ep in cli.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = if ep.contains("://") { ep.to_string() } else { format!("{scheme}://{ep}") };
            let mut endpoint = match Endpoint::from_shared(url) {
                Ok(e) => e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
                Err(e) => return Err(Failure::usage(format!("invalid endpoint {ep:?}: {e}"))),
            };
            if let Some(t) = &tls {
                endpoint = endpoint.tls_config(t.clone()).map_err(|e| Failure::usage(format!("TLS for {ep}: {e}")))?;
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
            return Err(Failure::usage("no endpoint given (--endpoints or RAFTCTL_ENDPOINTS)"));
        }
        Err(Failure::new(Exit::Unreachable, format!("cannot reach the cluster: {}", errors.join("; "))))
    }

    /// A request with the token and the default deadline.
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

/// `key=value` pairs as a JSON merge patch.
pub fn patch_from_pairs(pairs: &[String]) -> Result<Value> {
    let mut patch = serde_json::Map::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(Failure::usage(format!("{pair:?} is not key=value")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Failure::usage(format!("{pair:?} has an empty key")));
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
    parse_rfc3339_ms(at).map_err(|e| Failure::usage(format!("--at {at:?} is not an RFC 3339 time with a zone: {e}")))
}

/// Runs one command; output goes to `out` through the chosen printer.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let p = printer(cli.format());
    let mut ctl = Ctl::connect(&cli).await?;
    let long = Duration::from_secs(cli.timeout.max(90));
    match cli.cmd {
        Cmd::List => {
            let s: ClusterStatus = ctl.client.status(ctl.req(pb::StatusRequest {})).await?.into_inner().into();
            p.status(out, &s)?;
        }
        Cmd::Member(cmd) => member(&mut ctl, &*p, out, cmd, long).await?,
        Cmd::Switchover { cancel: true, .. } => {
            let reply = ctl.client.cancel_switchover(ctl.req(pb::CancelSwitchoverRequest {})).await?.into_inner();
            p.done(out, &reply)?;
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
            p.done(out, &reply)?;
        }
        Cmd::Failover { to, no_wait, accept_data_loss } => {
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
        Cmd::Config(cmd) => config(&mut ctl, &*p, out, cmd).await?,
        Cmd::History { limit } => {
            let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit })).await?.into_inner();
            p.history(out, &h.events)?;
        }
        Cmd::Events { follow: false, after } => {
            let h = ctl.client.history(ctl.req(pb::HistoryRequest { limit: 0 })).await?.into_inner();
            for e in h.events.iter().filter(|e| e.index > after) {
                p.event(out, e)?;
            }
        }
        Cmd::Events { follow: true, after } => {
            let req = ctl.authorized(pb::EventsRequest { after_index: after });
            eprintln!("following events from {} (Ctrl-C to stop)", ctl.endpoint);
            let mut stream = ctl.client.events(req).await?.into_inner();
            while let Some(e) = stream.message().await? {
                p.event(out, &e)?;
            }
        }
        Cmd::Restart { member } => {
            eprintln!("restarting PostgreSQL on {member}...");
            let reply = ctl.client.restart(ctl.req_for(pb::MemberRequest { member }, long)).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::Reinit { member } => {
            eprintln!("reinitializing {member} from the primary...");
            let long = Duration::from_secs(cli.timeout.max(660));
            let reply = ctl.client.reinitialize(ctl.req_for(pb::MemberRequest { member }, long)).await?.into_inner();
            p.done(out, &reply)?;
        }
        Cmd::HaproxyConfig(a) => haproxy_config(&mut ctl, out, a).await?,
    }
    Ok(())
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
            let r = pb::SetConfigRequest {
                json: patch.to_string(),
                merge: true,
                if_version: if_version.unwrap_or(0),
                dry_run,
            };
            let c = ctl.client.set_config(ctl.req(r)).await?.into_inner();
            p.config_result(out, &ConfigResult { version: c.version, json: &c.json, changed: c.changed, dry_run })?;
        }
        ConfigCmd::Edit => {
            let c = ctl.client.get_config(ctl.req(pb::GetConfigRequest {})).await?.into_inner();
            let Some(edited) = edit(&c.json)? else {
                writeln!(out, "no changes")?;
                return Ok(());
            };
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

/// Opens `json` in `$VISUAL`/`$EDITOR`; the edited text, or `None` when it
/// is unchanged.
fn edit(json: &str) -> Result<Option<String>> {
    let mut file = tempfile::Builder::new()
        .prefix("raftgres-config-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| Failure::usage(format!("create a temporary file: {e}")))?;
    file.write_all(json.as_bytes()).map_err(|e| Failure::usage(format!("write: {e}")))?;
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
    let edited = std::fs::read_to_string(file.path()).map_err(|e| Failure::usage(format!("read: {e}")))?;
    let before = serde_json::from_str::<Value>(json).ok();
    match serde_json::from_str::<Value>(&edited) {
        Err(e) => Err(Failure::usage(format!("the edited file is not valid JSON: {e}; nothing changed"))),
        Ok(after) if Some(&after) == before.as_ref() => Ok(None),
        Ok(_) => Ok(Some(edited)),
    }
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
                   "postgresql_parameters": {"work_mem": "8MB"}, "maximum_lag_on_failover": null})
        );
        assert_eq!(patch_from_pairs(&["novalue".into()]).err().map(|f| f.exit), Some(Exit::Usage));
    }
}
