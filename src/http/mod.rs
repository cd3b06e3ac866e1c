//! The HTTP API (axum), compatible with Patroni's: health checks answer 200
//! or 503 (the node-status JSON for `GET`, the status line alone for `HEAD`
//! and `OPTIONS`); JSON documents (`/patroni`, `/cluster`, `/history`,
//! `/config`); control endpoints; Prometheus `/metrics`. Unsafe methods
//! need the cluster token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get, post};
use raftgres_api::status::{PatroniInfo, PrimaryXlog, RaftInfo, RaftgresInfo, ReplicaXlog, Xlog};
use raftgres_api::{NodeStatus, PgState, RaftRole, ReplicationState, Role};
use raftgres_raft::network::security::Token;
use raftgres_raft::{RaftHandle, ServerState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::health::NodeFacts;
use crate::fence::writes_allowed;
use crate::lease::{Lease, ReportTimes};
use crate::ops::Ops;
use crate::postgres::settings::ParameterState;
use crate::postgres::{Observation, lsn};
use crate::reload::Reloader;

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub handle: RaftHandle,
    pub node_name: String,
    pub cluster_id: String,
    pub lease: watch::Receiver<Option<Lease>>,
    pub observation: watch::Receiver<Observation>,
    /// The parameter catalog and the changes waiting for a restart.
    pub parameters: watch::Receiver<ParameterState>,
    /// The primary's WAL position as the Raft leader last heard it.
    pub primary_lsn: watch::Receiver<Option<u64>>,
    /// When the lease heartbeat loop last ran.
    pub heartbeat_ran: watch::Receiver<Instant>,
    /// How this node's heartbeats travel (sent on their own, or riding
    /// on the Raft heartbeats).
    pub heartbeats: Arc<crate::lease::Riding>,
    /// The agent's last failed action, until PostgreSQL accepts
    /// connections.
    pub last_error: watch::Receiver<Option<String>>,
    /// The controller's reason the lost primary cannot be replaced, on the
    /// Raft leader while that holds.
    pub failover_blocked: watch::Receiver<Option<String>>,
    /// On the Raft leader: when each node last reported.
    pub reports: watch::Receiver<ReportTimes>,
    pub ops: Ops,
    pub token: Token,
    pub reloader: Arc<Reloader>,
    /// This node's PgBouncer follower, when configured.
    pub pgbouncer: Option<crate::pgbouncer::Proxy>,
    /// The virtual IP's task, when one is configured.
    pub vip: Option<watch::Receiver<crate::vip::VipStatus>>,
}

type Shared = Arc<ApiState>;

pub mod client;
pub mod control;
pub mod health;
pub mod metrics;
pub mod pgbouncer;
pub mod tls;

pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/patroni", get(status))
        .route("/status", get(status))
        .route("/cluster", get(control::cluster))
        .route("/history", get(control::history))
        .route("/config", get(control::get_config).patch(control::patch_config).put(control::put_config))
        .route("/switchover", post(control::switchover).delete(control::cancel_switchover))
        .route("/failover", post(control::failover))
        .route("/restart", post(control::restart).delete(control::cancel_restart))
        .route("/reinitialize", post(control::reinitialize))
        .route("/reload", post(control::reload))
        .route("/metrics", get(metrics::metrics))
        .merge(pgbouncer::routes())
        .fallback(any(health_check))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let shutdown = async move { cancel.cancelled().await };
    match tls {
        // HTTPS only: a plain request fails its handshake.
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await,
    }
}

/// Unsafe methods need the cluster token: 401 without it.
async fn require_token(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|v| s.token.matches_header(v)) {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), "refused an unauthenticated request");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"raftgres\"")],
                "this request needs the cluster token: Authorization: Bearer <token>\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// This node is primary: named by the replicated state, holding a lease
/// that allows writes, its PostgreSQL out of recovery, and its promotion
/// recorded (no routed write lands on a timeline the cluster does not know
/// of).
fn is_primary(s: &ApiState) -> bool {
    let state = s.handle.cluster_state();
    let recorded = state.timeline.is_some_and(|t| t.epoch == state.epoch && t.node == s.handle.id());
    recorded && writes_allowed(&s.handle, &s.lease.borrow(), Instant::now()) && s.observation.borrow().is_primary()
}

/// `GET` answers with the node-status JSON; `HEAD` and `OPTIONS` (HAProxy's
/// probes) with the status line only, like Patroni.
fn answer(ok: bool, s: &ApiState, method: &Method) -> Response {
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if method == Method::GET { (code, Json(node_status(s))).into_response() } else { code.into_response() }
}

/// Every other path: Patroni's health checks, for GET, HEAD and OPTIONS.
async fn health_check(State(s): State<Shared>, method: Method, uri: Uri) -> Response {
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD, OPTIONS")]).into_response();
    }
    let filters = match health::parse_query(uri.query()) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(uri = %uri, "bad health-check query: {e}");
            return answer(false, &s, &method);
        }
    };
    let check = health::route(uri.path());
    let mut f = facts(&s);
    if check == health::Check::Readiness && filters.lag.is_none() {
        // Patroni's default: the failover lag limit.
        let max = s.handle.cluster_state().config.maximum_lag_on_failover;
        let filters = health::Filters { lag: Some(max), ..filters };
        return answer(f.passes(check, &filters), &s, &method);
    }
    if check == health::Check::Liveness {
        f.alive = alive(&s);
    }
    answer(f.passes(check, &filters), &s, &method)
}

/// The Raft core runs and the lease heartbeat loop ran within two lease
/// periods. PostgreSQL operations (a long base backup) never delay it.
fn alive(s: &ApiState) -> bool {
    let ttl = Duration::from_millis(s.handle.cluster_state().config.lease_ttl_ms);
    s.handle.status().role != ServerState::Shutdown && s.heartbeat_ran.borrow().elapsed() <= 2 * ttl
}

fn facts(s: &ApiState) -> NodeFacts {
    let o = s.observation.borrow().clone();
    let state = s.handle.cluster_state();
    let member = state.member(s.handle.id());
    let primary = is_primary(s);
    NodeFacts {
        primary,
        named_primary: state.primary_node() == Some(s.handle.id()),
        running: o.accepting,
        in_recovery: o.in_recovery == Some(true),
        streaming: o.streaming,
        replay_lsn: o.replay_lsn,
        // Like Patroni: the furthest of what the leader heard from the
        // primary and what this replica has received.
        primary_lsn: (*s.primary_lsn.borrow()).max(o.receive_lsn),
        tags: member.map(|m| m.tags.clone()).unwrap_or_default(),
        noloadbalance: member.is_some_and(|m| m.noloadbalance()),
        sync_standby: state.is_sync_standby(s.handle.id()),
        quorum_standby: state.is_quorum_standby(s.handle.id()),
        alive: s.handle.status().role != ServerState::Shutdown,
    }
}

async fn status(State(s): State<Shared>) -> Response {
    (StatusCode::OK, Json(node_status(&s))).into_response()
}

/// The node-status document (Patroni's `/patroni` shape, plus raftgres's
/// own fields).
pub fn node_status(s: &ApiState) -> NodeStatus {
    let o = s.observation.borrow().clone();
    let params = s.parameters.borrow().clone();
    let applied = s.handle.local_state();
    let state = &applied.state;
    let raft = s.handle.status();
    let lease_ms = s.lease.borrow().map(|l| l.expires_at.saturating_duration_since(Instant::now()).as_millis() as u64);
    let role = if is_primary(s) {
        Role::Primary
    } else if o.is_replica() {
        Role::Replica
    } else {
        Role::Unknown
    };
    let pg_state = if o.accepting {
        PgState::Running
    } else if o.running {
        PgState::Starting
    } else {
        PgState::Stopped
    };
    let xlog = if o.in_recovery == Some(false) {
        Xlog::Primary(PrimaryXlog { location: o.write_lsn })
    } else {
        Xlog::Replica(ReplicaXlog { received_location: o.receive_lsn, replayed_location: o.replay_lsn, paused: false })
    };
    NodeStatus {
        state: pg_state,
        role,
        server_version: o.server_version.clone(),
        timeline: o.timeline,
        xlog,
        replication_state: o.streaming.then_some(ReplicationState::Streaming),
        database_system_identifier: o.system_id.clone(),
        // A node waiting to be added knows nothing of the cluster's lock.
        cluster_unlocked: state.primary.is_none() && raft.is_member(),
        pause: state.maintenance,
        pending_restart: !params.pending_restart.is_empty(),
        pending_restart_reason: params.pending_restart.clone(),
        scheduled_restart: s.ops.scheduled_restart(),
        sync_standby: state.is_sync_standby(s.handle.id()),
        quorum_standby: state.is_quorum_standby(s.handle.id()),
        patroni: PatroniInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            scope: s.cluster_id.clone(),
            name: s.node_name.clone(),
        },
        raftgres: RaftgresInfo {
            node_id: s.handle.id(),
            epoch: state.epoch,
            primary: state.primary_node(),
            lease_remaining_ms: lease_ms,
            raft: RaftInfo {
                role: raft_role(raft.role),
                term: raft.term,
                leader: raft.leader,
                applied: raft.last_applied,
            },
            lsn: o.lsn().map(lsn::format),
            last_error: s.last_error.borrow().clone(),
            failover_blocked: s.failover_blocked.borrow().clone(),
            silent_ms: silences(s, state),
        },
    }
}

/// On the Raft leader: how long each member's daemon has been silent, in
/// milliseconds.
fn silences(s: &ApiState, state: &raftgres_storage::ClusterState) -> Option<BTreeMap<u64, u64>> {
    let reports = s.reports.borrow();
    reports.leader_since?;
    let now = Instant::now();
    let mut ids: Vec<u64> = state.members.keys().copied().collect();
    ids.extend(s.handle.local_state().membership.membership().nodes().map(|(id, _)| *id));
    Some(ids.into_iter().filter_map(|id| Some((id, reports.silence(id, now)?.as_millis() as u64))).collect())
}

/// openraft's server state in the API's spelling.
pub fn raft_role(state: ServerState) -> RaftRole {
    match state {
        ServerState::Leader => RaftRole::Leader,
        ServerState::Follower => RaftRole::Follower,
        ServerState::Candidate => RaftRole::Candidate,
        ServerState::Learner => RaftRole::Learner,
        ServerState::Shutdown => RaftRole::Shutdown,
    }
}
