//! `/pgbouncer`: this node's PgBouncer follower (`GET`: its target and
//! whether its pools are paused) and its pause controls (`POST
//! /pgbouncer/pause`, `POST /pgbouncer/resume`, which need the cluster
//! token). A node without a `[pgbouncer]` section answers 404, which a
//! switchover reads as "no PgBouncer here".
//!
//! Also the whole API of a proxy-only node ([`proxy_router`]): these routes
//! plus `/health`, `/liveness`, `/readiness` and a `/patroni` document
//! that says it runs no PostgreSQL.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use raftgres_api::status::{PatroniInfo, RaftInfo, RaftgresInfo};
use raftgres_api::{NodeStatus, PgState, Role};
use raftgres_raft::network::security::Token;
use raftgres_raft::{RaftHandle, ServerState};
use serde_json::json;

use super::{Shared, raft_role};
use crate::pgbouncer::Proxy;

/// `GET /pgbouncer`.
pub fn status(proxy: Option<&Proxy>) -> Response {
    match proxy {
        Some(p) => (StatusCode::OK, Json(p.status())).into_response(),
        None => none(),
    }
}

/// `POST /pgbouncer/pause`: 200 once the pools are paused (with the time
/// PAUSE took and the deadline), 503 when the pause failed (the pools were
/// resumed).
pub async fn pause(proxy: Option<&Proxy>) -> Response {
    let Some(p) = proxy else { return none() };
    match p.pause().await {
        Ok(took) => (
            StatusCode::OK,
            Json(json!({
                "paused": true,
                "took_ms": took.as_millis() as u64,
                "deadline_ms": p.pause_timeout().as_millis() as u64,
            })),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// `POST /pgbouncer/resume`.
pub async fn resume(proxy: Option<&Proxy>) -> Response {
    let Some(p) = proxy else { return none() };
    match p.resume("asked over the API").await {
        Ok(()) => (StatusCode::OK, Json(json!({ "paused": false }))).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

fn none() -> Response {
    (StatusCode::NOT_FOUND, "this node runs no PgBouncer follower (no [pgbouncer] section)\n").into_response()
}

/// The routes on a database node's API.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/pgbouncer", get(async |State(s): State<Shared>| status(s.pgbouncer.as_ref())))
        .route("/pgbouncer/pause", post(async |State(s): State<Shared>| pause(s.pgbouncer.as_ref()).await))
        .route("/pgbouncer/resume", post(async |State(s): State<Shared>| resume(s.pgbouncer.as_ref()).await))
}

/// What a proxy-only node's API reads.
#[derive(Clone)]
pub struct ProxyApi {
    pub handle: RaftHandle,
    pub proxy: Proxy,
    pub token: Token,
    pub node_name: String,
    pub cluster_id: String,
}

/// The API of a proxy-only node.
pub fn proxy_router(api: ProxyApi) -> Router {
    let api = Arc::new(api);
    Router::new()
        .route("/pgbouncer", get(async |State(a): State<Arc<ProxyApi>>| status(Some(&a.proxy))))
        .route("/pgbouncer/pause", post(async |State(a): State<Arc<ProxyApi>>| pause(Some(&a.proxy)).await))
        .route("/pgbouncer/resume", post(async |State(a): State<Arc<ProxyApi>>| resume(Some(&a.proxy)).await))
        .route("/patroni", get(proxy_status))
        .route("/status", get(proxy_status))
        .route("/health", get(proxy_health))
        .route("/liveness", get(proxy_health))
        .route("/readiness", get(proxy_health))
        .layer(middleware::from_fn_with_state(api.clone(), require_token))
        .with_state(api)
}

/// Unsafe methods need the cluster token, as on a database node.
async fn require_token(State(a): State<Arc<ProxyApi>>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !safe && !presented.is_some_and(|v| a.token.matches_header(v)) {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), "refused an unauthenticated request");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"raftgres\"")],
            "this request needs the cluster token: Authorization: Bearer <token>\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// 200 while the Raft core runs and PgBouncer was last re-pointed (or
/// nothing asked it to yet); 503 with the last error otherwise.
async fn proxy_health(State(a): State<Arc<ProxyApi>>) -> Response {
    let s = a.proxy.status();
    let running = a.handle.status().role != ServerState::Shutdown;
    let code = if running && s.last_error.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(s)).into_response()
}

/// A node-status document with no PostgreSQL: `raftctl list` shows the
/// node as a Raft learner of role and state `unknown`.
async fn proxy_status(State(a): State<Arc<ProxyApi>>) -> Response {
    let state = a.handle.cluster_state();
    let raft = a.handle.status();
    let doc = NodeStatus {
        state: PgState::Unknown,
        role: Role::Unknown,
        pause: state.maintenance,
        cluster_unlocked: state.primary.is_none() && raft.is_member(),
        patroni: PatroniInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            scope: a.cluster_id.clone(),
            name: a.node_name.clone(),
        },
        raftgres: RaftgresInfo {
            node_id: a.handle.id(),
            epoch: state.epoch,
            primary: state.primary_node(),
            raft: RaftInfo {
                role: raft_role(raft.role),
                term: raft.term,
                leader: raft.leader,
                applied: raft.last_applied,
            },
            last_error: a.proxy.status().last_error,
            ..Default::default()
        },
        ..Default::default()
    };
    (StatusCode::OK, Json(doc)).into_response()
}
