//! The HTTP API (axum). Health checks answer 200 or 503 with the node-status
//! JSON, for every method; HAProxy's `OPTIONS`/`HEAD` probes get the same
//! status. The full Patroni-compatible surface grows here.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::any;
use raftgres_raft::RaftHandle;
use raftgres_storage::SyncMode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::health::NodeFacts;
use crate::fence::writes_allowed;
use crate::lease::Lease;
use crate::postgres::{Observation, lsn};

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub handle: RaftHandle,
    pub node_name: String,
    pub cluster_id: String,
    pub lease: watch::Receiver<Option<Lease>>,
    pub observation: watch::Receiver<Observation>,
    /// The primary's WAL position as the Raft leader last heard it.
    pub primary_lsn: watch::Receiver<Option<u64>>,
}

type Shared = Arc<ApiState>;

pub mod health;

pub fn router(state: ApiState) -> Router {
    Router::new().route("/patroni", any(status)).fallback(any(health_check)).with_state(Arc::new(state))
}

pub async fn serve(listener: TcpListener, state: ApiState, cancel: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(async move { cancel.cancelled().await }).await
}

/// This node is primary: named by the replicated state, holding a lease
/// that allows writes, and its PostgreSQL is out of recovery.
fn is_primary(s: &ApiState) -> bool {
    writes_allowed(&s.handle, &s.lease.borrow(), Instant::now()) && s.observation.borrow().is_primary()
}

fn answer(ok: bool, s: &ApiState) -> Response {
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(node_status(s))).into_response()
}

/// Every path but the JSON documents: Patroni's health checks.
async fn health_check(State(s): State<Shared>, uri: Uri) -> Response {
    let filters = match health::parse_query(uri.query()) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(uri = %uri, "bad health-check query: {e}");
            return answer(false, &s);
        }
    };
    let check = health::route(uri.path());
    answer(facts(&s).passes(check, &filters), &s)
}

fn facts(s: &ApiState) -> NodeFacts {
    let o = s.observation.borrow().clone();
    let state = s.handle.local_state().state;
    let member = state.member(s.handle.id());
    let primary = is_primary(s);
    NodeFacts {
        primary,
        running: o.accepting,
        in_recovery: o.in_recovery == Some(true),
        streaming: o.streaming,
        replay_lsn: o.replay_lsn,
        // Like Patroni: the furthest of what the leader heard from the
        // primary and what this replica has received.
        primary_lsn: (*s.primary_lsn.borrow()).max(o.receive_lsn),
        tags: member.map(|m| m.tags.clone()).unwrap_or_default(),
        noloadbalance: member.is_some_and(|m| m.noloadbalance()),
        sync_standby: state.config.synchronous_mode != SyncMode::Off && state.sync_standbys.contains(&s.handle.id()),
        alive: s.handle.status().role != "shutdown",
    }
}

async fn status(State(s): State<Shared>) -> Response {
    (StatusCode::OK, Json(node_status(&s))).into_response()
}

/// The node-status document (Patroni's `/patroni` shape, plus raftgres's
/// own fields).
pub fn node_status(s: &ApiState) -> Value {
    let o = s.observation.borrow().clone();
    let applied = s.handle.local_state();
    let state = &applied.state;
    let raft = s.handle.status();
    let me = s.handle.id();
    let lease_ms = s.lease.borrow().map(|l| l.expires_at.saturating_duration_since(Instant::now()).as_millis() as u64);
    let role = if is_primary(s) {
        "primary"
    } else if o.is_replica() {
        "replica"
    } else {
        "unknown"
    };
    let pg_state = if o.accepting {
        "running"
    } else if o.running {
        "starting"
    } else {
        "stopped"
    };
    let xlog = if o.in_recovery == Some(false) {
        json!({ "location": o.write_lsn })
    } else {
        json!({ "received_location": o.receive_lsn, "replayed_location": o.replay_lsn, "paused": false })
    };
    json!({
        "state": pg_state,
        "role": role,
        "server_version": o.server_version,
        "timeline": o.timeline,
        "xlog": xlog,
        "replication_state": if o.streaming { Some("streaming") } else { None },
        "database_system_identifier": o.system_id,
        "cluster_unlocked": state.primary.is_none(),
        "pause": state.maintenance,
        "patroni": { "version": env!("CARGO_PKG_VERSION"), "scope": s.cluster_id, "name": s.node_name },
        "raftgres": {
            "node_id": me,
            "epoch": state.epoch,
            "primary": state.primary.as_ref().map(|p| p.node),
            "lease_remaining_ms": lease_ms,
            "raft": { "role": raft.role, "term": raft.term, "leader": raft.leader, "applied": raft.last_applied },
            "lsn": o.lsn().map(lsn::format),
        },
    })
}
