//! A proxy-only node: `raftgres run` with a `[pgbouncer]` section and no
//! `[postgres]` one, typically on an application host beside PgBouncer.
//! It runs a Raft learner (it holds the log, never votes and counts in no
//! quorum), registers itself through the initial members at start, keeps
//! PgBouncer pointed at the primary, and serves a small HTTP API (health,
//! `/pgbouncer` and its pause controls). It never runs PostgreSQL, takes
//! no lease and is no failover candidate: it registers no member in the
//! replicated state. Cut off from the cluster, its replica of the state
//! stands still, and PgBouncer keeps its last target.

use std::time::Duration;

use anyhow::{Context, anyhow};
use raftgres_raft::RaftNode;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::http::pgbouncer::{ProxyApi, proxy_router};
use crate::pgbouncer::Proxy;

/// How soon a failed join is tried again.
const JOIN_RETRY: Duration = Duration::from_secs(1);

/// How long shutdown waits for the tasks.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the proxy-only node until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let pgbouncer = config.pgbouncer.clone().ok_or_else(|| anyhow!("a proxy-only node needs a [pgbouncer] section"))?;
    tracing::info!(node = config.node_id, name = %config.node_name, cluster = %config.cluster_id, "starting a proxy-only node");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
    let raft_listener = TcpListener::bind(config.raft_listen)
        .await
        .with_context(|| format!("listen on {} (raft.listen)", config.raft_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("listen on {} (http.listen)", config.http_listen))?;
    let node_config = Daemon::node_config(&config);
    let me = node_config.info.clone();
    let node = RaftNode::start_with(node_config, raft_listener, Routes::default()).await.context("start Raft")?;
    let handle = node.handle().clone();
    let proxy = Proxy::new(pgbouncer, &config.cluster_id);
    let cancel = CancellationToken::new();
    let mut tasks: JoinSet<&'static str> = JoinSet::new();

    let seeds: Vec<String> = config.initial_members.iter().map(|m| m.raft_addr.clone()).collect();
    let (h, c) = (handle.clone(), cancel.clone());
    tasks.spawn(async move {
        join(&h, &seeds, me, &c).await;
        "join"
    });
    let (p, h, c) = (proxy.clone(), handle.clone(), cancel.clone());
    tasks.spawn(async move {
        p.follow(h, c).await;
        "pgbouncer"
    });
    let api = ProxyApi {
        handle: handle.clone(),
        proxy,
        token: config.token.clone(),
        node_name: config.node_name.clone(),
        cluster_id: config.cluster_id.clone(),
    };
    let c = cancel.clone();
    tasks.spawn(async move {
        let serve =
            axum::serve(http_listener, proxy_router(api)).with_graceful_shutdown(async move { c.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("failed to serve the HTTP API: {e}");
        }
        "http"
    });
    tracing::info!(raft = %config.raft_advertise, http = %config.http_advertise, "ready");

    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    // The join task ends once joined; any other task's end is a failure.
    let failure = loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break None }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break None }
            ended = tasks.join_next() => match ended {
                Some(Ok("join")) => {}
                other => break Some(format!("{other:?}")),
            },
        }
    };
    cancel.cancel();
    let _ = tokio::time::timeout(STOP_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    drop(handle);
    node.shutdown().await;
    tracing::info!("stopped");
    match failure {
        Some(why) => Err(anyhow!("a task stopped: {why}")),
        None => Ok(()),
    }
}

/// Asks the cluster, through each seed in turn, to add this node as a
/// learner, until one accepts or `cancel`. A node already in the
/// membership (a restart) asks nothing.
async fn join(
    handle: &raftgres_raft::RaftHandle,
    seeds: &[String],
    me: raftgres_storage::NodeInfo,
    cancel: &CancellationToken,
) {
    let mut attempt = 0u64;
    loop {
        if handle.status().is_member() {
            tracing::info!("this node is in the Raft membership");
            return;
        }
        for seed in seeds {
            if cancel.is_cancelled() {
                return;
            }
            match handle.join_via(seed, me.clone()).await {
                Ok(log_id) => {
                    tracing::info!(seed = %seed, index = log_id.index, "joined the cluster as a learner");
                    return;
                }
                Err(e) if attempt.is_multiple_of(10) => {
                    tracing::warn!(seed = %seed, "failed to join through {seed}: {e}; retrying")
                }
                Err(e) => tracing::debug!(seed = %seed, "failed to join: {e}"),
            }
        }
        attempt += 1;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(JOIN_RETRY) => {}
        }
    }
}
