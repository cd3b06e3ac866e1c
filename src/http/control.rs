//! The JSON and control endpoints: `/cluster`, `/history`, `/config`,
//! `/switchover`, `/failover`, `/restart`, `/reinitialize`, `/reload`.
//! Control endpoints answer with a plain-text message, like Patroni's.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use raftgres_api::Role;
use raftgres_api::patroni_config;
use raftgres_api::time::{format_ms, parse_rfc3339_ms};

use super::Shared;
use crate::history;
use crate::ops::handover::check_schedule;
use crate::ops::restart::{RestartConditions, RoleFilter, Version};
use crate::ops::{ConfigChange, Done, OpError};

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    m.push('\n');
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m).into_response()
}

fn error(e: OpError) -> Response {
    let code = match &e {
        OpError::Invalid(_) => StatusCode::BAD_REQUEST,
        OpError::NotFound(_) | OpError::Refused(_) => StatusCode::PRECONDITION_FAILED,
        OpError::Conflict(_) => StatusCode::CONFLICT,
        OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, e.to_string())
}

fn done(code: StatusCode, d: Done) -> Response {
    text(code, d.message)
}

/// A request that does not parse: 400 with the reason.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        text(StatusCode::BAD_REQUEST, self.0)
    }
}

/// Parses a JSON body (an empty body is `{}`).
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, BadRequest> {
    let raw = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
    serde_json::from_slice(raw).map_err(|e| BadRequest(format!("invalid request body: {e}")))
}

pub async fn cluster(State(s): State<Shared>) -> Response {
    let status = s.ops.status().await;
    let members: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::Replica if m.sync_standby => "sync_standby",
                Role::Replica if m.quorum_standby => "quorum_standby",
                _ => m.role.cluster_name(),
            };
            json!({
                "name": m.name, "role": role, "state": m.state, "api_url": m.api_url, "host": m.host,
                "port": m.port, "timeline": m.timeline, "tags": m.tags, "lag": m.lag_bytes, "lsn": m.lsn,
                "raft": { "id": m.id, "role": m.raft_role, "term": m.raft_term, "addr": m.raft_addr },
            })
        })
        .collect();
    let scheduled =
        status.switchover.as_ref().map(|sw| json!({ "from": sw.from, "to": sw.to, "at": sw.at_ms.map(format_ms) }));
    Json(json!({
        "scope": status.cluster_id,
        "members": members,
        "pause": status.maintenance,
        "scheduled_switchover": scheduled,
        "raftgres": {
            "epoch": status.epoch, "primary": status.primary, "config_version": status.config_version,
            "raft_term": status.raft_term, "raft_leader": status.raft_leader,
            "failovers": status.failovers, "switchovers": status.switchovers, "stale": status.stale,
        },
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    limit: usize,
    /// Every event (raftgres's log) instead of Patroni's rows.
    #[serde(default)]
    all: bool,
}

/// Patroni's `[[timeline, lsn, reason, timestamp, new_leader], …]`, one
/// row per promotion that ended a timeline; `?all=true` gives every kept
/// event instead, with member names (`?limit=N` keeps the newest N).
pub async fn history(State(s): State<Shared>, Query(q): Query<HistoryQuery>) -> Response {
    let events = match s.ops.history(0).await {
        Ok(events) => events,
        Err(e) => return error(e),
    };
    let context = history::Context::of(&s.handle.cluster_state());
    let mut rows: Vec<Value> = if q.all {
        events
            .iter()
            .map(|r| {
                json!({
                    "index": r.index, "at": format_ms(r.at_ms), "at_ms": r.at_ms, "kind": r.event.kind(),
                    "text": history::text(&r.event, &context), "event": history::json(&r.event, &context),
                })
            })
            .collect()
    } else {
        history::patroni_rows(&events, &context)
    };
    if q.limit > 0 && rows.len() > q.limit {
        rows.drain(..rows.len() - q.limit);
    }
    Json(rows).into_response()
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

pub async fn get_config(State(s): State<Shared>) -> Response {
    match s.ops.get_config().await {
        Ok((version, config)) => ([(header::ETAG, etag(version))], Json(config)).into_response(),
        Err(e) => error(e),
    }
}

/// `If-Match: "<version>"` makes the change a compare-and-set.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, BadRequest> {
    match headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("")) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse::<u64>()
            .map(Some)
            .map_err(|_| BadRequest(format!("If-Match {v:?} is not a configuration version"))),
    }
}

async fn change_config(s: Shared, headers: HeaderMap, bytes: Bytes, merge: bool) -> Response {
    let if_version = match if_match(&headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let json = String::from_utf8_lossy(&bytes).into_owned();
    match s.ops.set_config(&ConfigChange { json, merge, if_version, dry_run: false }).await {
        Ok((version, config, _)) => ([(header::ETAG, etag(version))], Json(config)).into_response(),
        Err(e) => error(e),
    }
}

/// A merge patch in raftgres's keys or in Patroni's shape (`ttl`,
/// `loop_wait`, `postgresql.parameters`, `pause`, ...; see
/// [`patroni_config::translate`]): keys without an equivalent get a 400
/// with the reason, and nothing changes.
pub async fn patch_config(State(s): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    translated_change(s, headers, bytes, true).await
}

/// The whole document, in raftgres's keys or in Patroni's shape, as
/// `PATCH /config` takes it; keys it leaves out return to their defaults.
pub async fn put_config(State(s): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    translated_change(s, headers, bytes, false).await
}

async fn translated_change(s: Shared, headers: HeaderMap, bytes: Bytes, merge: bool) -> Response {
    let raw: Value = match body(&bytes) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let t = match patroni_config::translate(&raw) {
        Ok(t) => t,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    let Some(on) = t.pause else {
        return change_config(s, headers, Bytes::from(Value::Object(t.patch).to_string()), merge).await;
    };
    if !t.patch.is_empty() || !merge {
        let r = change_config(s.clone(), headers, Bytes::from(Value::Object(t.patch).to_string()), merge).await;
        if !r.status().is_success() {
            return r;
        }
    }
    // Patroni's pause is raftgres's maintenance mode: a change of its own,
    // made once the configuration part was accepted.
    if let Err(e) = s.ops.set_maintenance(on).await {
        return error(e);
    }
    get_config(State(s)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    #[serde(default, alias = "primary")]
    leader: Option<String>,
    #[serde(default)]
    candidate: Option<String>,
    #[serde(default)]
    scheduled_at: Option<String>,
}

pub async fn switchover(State(s): State<Shared>, bytes: Bytes) -> Response {
    let b: SwitchoverBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Some(leader) = b.leader.filter(|l| !l.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Switchover could be performed only from a specific leader");
    };
    let at = match b.scheduled_at.as_deref().map(parse_rfc3339_ms) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => {
            return text(StatusCode::UNPROCESSABLE_ENTITY, format!("Unable to parse scheduled timestamp: {e}"));
        }
    };
    // Patroni answers a time in the past with 422, like an unparsable one.
    if let Some(at) = at
        && let Err(e) = check_schedule(at, raftgres_storage::now_ms())
    {
        return text(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    match s.ops.switchover(Some(&leader), b.candidate.as_deref(), at, at.is_none()).await {
        Ok(d) if at.is_some() => done(StatusCode::ACCEPTED, d),
        Ok(d) => done(StatusCode::OK, d),
        Err(e) => error(e),
    }
}

pub async fn cancel_switchover(State(s): State<Shared>) -> Response {
    match s.ops.cancel_switchover().await {
        Ok(d) => done(StatusCode::OK, d),
        Err(OpError::NotFound(m)) => text(StatusCode::NOT_FOUND, m),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    #[serde(default)]
    candidate: Option<String>,
    #[serde(default, alias = "primary")]
    leader: Option<String>,
}

pub async fn failover(State(s): State<Shared>, bytes: Bytes) -> Response {
    let b: FailoverBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Some(candidate) = b.candidate.filter(|c| !c.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Failover could be performed only to a specific candidate");
    };
    if let Some(leader) = b.leader.filter(|l| !l.is_empty()) {
        let primary = s.handle.cluster_state().primary_node();
        match s.ops.resolve(&leader) {
            Ok(id) if Some(id) == primary => {}
            Ok(_) => return text(StatusCode::PRECONDITION_FAILED, "leader name does not match"),
            Err(e) => return error(e),
        }
    }
    match s.ops.failover(&candidate, true, false).await {
        Ok(d) => done(StatusCode::OK, d),
        Err(e) => error(e),
    }
}

/// `POST /restart` with Patroni's body: `schedule` (RFC 3339 with a zone),
/// `role`, `postgres_version`, `timeout`, `restart_pending`. Conditions
/// that do not hold answer 503 "restart conditions are not satisfied".
pub async fn restart(State(s): State<Shared>, bytes: Bytes) -> Response {
    let raw = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
    let doc: serde_json::Map<String, Value> = match serde_json::from_slice(raw) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")),
    };
    if doc.contains_key("schedule") && s.handle.cluster_state().maintenance {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Can't schedule restart in the paused state");
    }
    let mut conditions = RestartConditions::default();
    let mut schedule = None;
    for (key, value) in &doc {
        match key.as_str() {
            "schedule" => {
                let Some(at) = value.as_str() else {
                    return text(StatusCode::BAD_REQUEST, "schedule must be a timestamp string");
                };
                match parse_rfc3339_ms(at) {
                    Ok(ms) => schedule = Some(ms),
                    Err(_) if chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").is_ok() => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            "Timezone information is mandatory for the scheduled restart",
                        );
                    }
                    Err(_) => {
                        return text(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
                        );
                    }
                }
            }
            "role" => match value.as_str().and_then(RoleFilter::parse) {
                Some(r) => conditions.role = Some(r),
                None => {
                    return text(StatusCode::BAD_REQUEST, "PostgreSQL role should be either primary or replica");
                }
            },
            "postgres_version" => match value.as_str().and_then(Version::parse) {
                Some(v) => conditions.postgres_version = Some(v),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("postgres_version {value} is not a PostgreSQL version such as \"15.10\""),
                    );
                }
            },
            "restart_pending" => conditions.restart_pending = true,
            // The restart waits until PostgreSQL is up in any case.
            "timeout" => {}
            other => {
                return text(StatusCode::BAD_REQUEST, format!("Unknown filter for the scheduled restart: {other}"));
            }
        }
    }
    if let Some(at_ms) = schedule {
        return match s.ops.schedule_restart(at_ms, conditions) {
            Ok(d) => done(StatusCode::ACCEPTED, d),
            Err(OpError::Invalid(m)) => text(StatusCode::UNPROCESSABLE_ENTITY, m),
            Err(e) => error(e),
        };
    }
    match s.ops.restart_if(&conditions).await {
        Ok(Ok(d)) => done(StatusCode::OK, d),
        Ok(Err(_)) => text(StatusCode::SERVICE_UNAVAILABLE, "restart conditions are not satisfied"),
        Err(OpError::Refused(m)) => text(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(e) => error(e),
    }
}

/// `DELETE /restart`: drops the scheduled restart.
pub async fn cancel_restart(State(s): State<Shared>) -> Response {
    match s.ops.cancel_scheduled_restart() {
        Ok(d) => done(StatusCode::OK, d),
        Err(OpError::NotFound(m)) => text(StatusCode::NOT_FOUND, m),
        Err(e) => error(e),
    }
}

pub async fn reinitialize(State(s): State<Shared>) -> Response {
    match s.ops.reinitialize_local().await {
        Ok(d) => done(StatusCode::OK, d),
        Err(OpError::Refused(m)) => text(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(e) => error(e),
    }
}

pub async fn reload(State(s): State<Shared>) -> Response {
    match s.reloader.reload().await {
        Ok(m) => text(StatusCode::OK, m),
        Err(e) => error(e),
    }
}
