//! The HTTP API (axum). Health checks answer 200 or 503 with the node-status
//! JSON, for every method; HAProxy's `OPTIONS`/`HEAD` probes get the same
//! status. The full Patroni-compatible surface grows here.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::any;
use raftgres_raft::RaftHandle;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
}

type Shared = Arc<ApiState>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", any(primary))
        .route("/primary", any(primary))
        .route("/master", any(primary))
        .route("/read-write", any(primary))
        .route("/leader", any(primary))
        .route("/replica", any(replica))
        .route("/health", any(health))
        .route("/patroni", any(status))
        .fallback(any(unknown))
        .with_state(Arc::new(state))
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

async fn primary(State(s): State<Shared>) -> Response {
    answer(is_primary(&s), &s)
}

async fn replica(State(s): State<Shared>) -> Response {
    let o = s.observation.borrow().clone();
    let me = s.handle.id();
    let named_primary = s.handle.local_state().state.primary_node() == Some(me);
    answer(o.is_replica() && !named_primary, &s)
}

async fn health(State(s): State<Shared>) -> Response {
    answer(s.observation.borrow().accepting, &s)
}

async fn status(State(s): State<Shared>) -> Response {
    (StatusCode::OK, Json(node_status(&s))).into_response()
}

async fn unknown(State(s): State<Shared>) -> Response {
    answer(false, &s)
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
