//! The daemon: wires storage, Raft, the lease, the controller, the agent,
//! the fence and the HTTP API together, and shuts them down in order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use raftgres_raft::network::security::Transport;
use raftgres_raft::{NodeConfig, RaftNode};
use raftgres_storage::{Command, NodeInfo, ReleaseReason};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::admin::AdminService;
use crate::agent::task::Agent;
use crate::config::{Config, FileConfig};
use crate::fence::PrimaryFlag;
use crate::lease::{self, LeaseGrantor, Views};
use crate::ops::Ops;
use crate::postgres::runner::StopMode;
use crate::postgres::{Binaries, Observation, Runner};
use crate::reload::Reloader;
use crate::watchdog::Watchdog;
use crate::{controller, fence, http};

/// How long shutdown waits for the agent to finish its current step.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the daemon until SIGTERM or SIGINT; an error means a component
/// failed and the process should exit non-zero.
/// `file` is the configuration file the daemon was started from (read
/// again on SIGHUP and `POST /reload`).
pub async fn run(config: Config, file: Option<(PathBuf, FileConfig)>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    tracing::info!(node = config.node_id, name = %config.node_name, cluster = %config.cluster_id, "starting");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
    let bins = Binaries::find(config.pg_bin_dir.as_deref()).map_err(|e| anyhow!(e))?;
    tracing::info!(bin_dir = %bins.dir.display(), "PostgreSQL binaries");
    let runner = Arc::new(
        Runner::new(
            bins,
            config.pg_data_dir.clone(),
            &config.data_dir,
            config.pg_socket_dir.clone(),
            &config.run_as,
            &config.superuser,
            &config.superuser_password,
        )
        .context("set up PostgreSQL")?,
    );
    runner.prepare().context("prepare PostgreSQL directories")?;

    let raft_listener = TcpListener::bind(config.raft_listen)
        .await
        .with_context(|| format!("listen on {} (raft.listen)", config.raft_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("listen on {} (http.listen)", config.http_listen))?;

    let mut info = NodeInfo::new(config.node_name.clone(), config.raft_advertise.clone());
    info.api_addr = config.http_advertise.clone();
    let mut node_config = NodeConfig::new(config.node_id, &config.cluster_id, &config.data_dir, info);
    node_config.heartbeat_interval = config.raft_heartbeat;
    node_config.election_timeout = config.raft_election_timeout;
    node_config.transport = Transport {
        token: Some(config.token.clone()),
        local_ip: Some(config.raft_listen.ip()).filter(|ip| !ip.is_unspecified()),
        tls: config.tls.clone(),
    };
    let ops_cell = Arc::new(OnceLock::new());
    let admin = Routes::new(AdminService::server(ops_cell.clone()));
    let node = RaftNode::start_with(node_config, raft_listener, admin).await.context("start Raft")?;
    let handle = node.handle().clone();
    let (agent_tx, agent_rx) = mpsc::channel(4);
    let ops = Ops::new(handle.clone(), agent_tx);
    let _ = ops_cell.set(ops.clone());
    let reloader = Arc::new(Reloader::new(
        file.as_ref().map(|(p, _)| p.clone()),
        file.map(|(_, f)| f),
        config.node_id,
        handle.clone(),
    ));

    if config.initial_members.iter().any(|m| m.id == config.node_id) {
        let members: BTreeMap<_, _> =
            config.initial_members.iter().map(|m| (m.id, NodeInfo::new(m.name.clone(), m.raft_addr.clone()))).collect();
        node.initialize(members).await.context("initialize Raft")?;
    }

    let views = Arc::new(Mutex::new(Views::default()));
    handle.set_app_handler(Arc::new(LeaseGrantor { handle: handle.clone(), views: views.clone() }));

    let (lease_tx, lease_rx) = watch::channel(None);
    let (primary_lsn_tx, primary_lsn_rx) = watch::channel(None);
    let (obs_tx, obs_rx) = watch::channel(Observation::default());
    let (ran_tx, ran_rx) = watch::channel(Instant::now());
    let tasks_cancel = CancellationToken::new();
    let agent_cancel = CancellationToken::new();
    let http_cancel = CancellationToken::new();
    let may_be_primary = PrimaryFlag::default();

    let mut controller = tokio::spawn(controller::task::run(
        handle.clone(),
        views,
        config.cluster_id.clone(),
        config.initial_dynamic.clone(),
        tasks_cancel.clone(),
    ));
    let mut heartbeat = tokio::spawn(lease::heartbeat_task(
        handle.clone(),
        obs_rx.clone(),
        lease_tx,
        primary_lsn_tx,
        ran_tx,
        tasks_cancel.clone(),
    ));
    let exe = std::env::current_exe().context("find the raftgres executable")?;
    let watchdog = Watchdog::spawn(&exe, &config.pg_data_dir).context("start the watchdog process")?;
    let mut fence_task = tokio::spawn(fence::run(
        handle.clone(),
        runner.clone(),
        lease_rx.clone(),
        may_be_primary.clone(),
        watchdog,
        tasks_cancel.clone(),
    ));
    let agent =
        Agent::new(handle.clone(), runner.clone(), config.clone(), lease_rx.clone(), obs_tx, may_be_primary, agent_rx);
    let mut agent_task = tokio::spawn(agent.run(agent_cancel.clone()));
    let api = http::ApiState {
        handle: handle.clone(),
        node_name: config.node_name.clone(),
        cluster_id: config.cluster_id.clone(),
        lease: lease_rx,
        observation: obs_rx,
        primary_lsn: primary_lsn_rx,
        heartbeat_ran: ran_rx,
        ops,
        token: config.token.clone(),
        reloader: reloader.clone(),
    };
    let mut http_task = tokio::spawn(http::serve(http_listener, api, http_cancel.clone()));
    tracing::info!(raft = %config.raft_advertise, http = %config.http_advertise, "ready");

    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    let failure: Option<(&str, String)> = loop {
        break tokio::select! {
        _ = sighup.recv() => {
            let reloader = reloader.clone();
            tokio::spawn(async move {
                match reloader.reload().await {
                    Ok(m) => tracing::info!("SIGHUP: {m}"),
                    Err(e) => tracing::error!("SIGHUP: {e}"),
                }
            });
            continue;
        }
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        r = &mut controller => Some(("controller", format!("{r:?}"))),
        r = &mut heartbeat => Some(("heartbeat", format!("{r:?}"))),
        r = &mut fence_task => Some(("fence", format!("{r:?}"))),
        r = &mut agent_task => Some(("agent", r.err().map(|e| e.to_string()).unwrap_or_default())),
        r = &mut http_task => Some(("http", format!("{r:?}"))),
        };
    };
    let failed = failure.as_ref().map(|(name, _)| *name);
    if let Some((name, why)) = &failure {
        tracing::error!("a critical task stopped: {name}: {why}");
    }

    // Hand over in an order that keeps the fence on guard until
    // PostgreSQL is down: stop the agent, stop PostgreSQL (immediately if a
    // clean stop fails), and only once no postmaster runs, release the
    // primary role so failover need not wait for the lease. The lease
    // heartbeat and the fence stop last.
    agent_cancel.cancel();
    if failed != Some("agent") {
        match tokio::time::timeout(AGENT_STOP_TIMEOUT, &mut agent_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("failed to join the agent task: {e}"),
            Err(_) => {
                tracing::warn!("the agent did not stop within {AGENT_STOP_TIMEOUT:?}; aborting it");
                agent_task.abort();
            }
        }
    }
    if let Err(e) = runner.stop(StopMode::Fast).await {
        tracing::error!("failed to stop PostgreSQL cleanly: {e}; stopping it immediately");
    }
    if !runner.wait_stopped(Duration::from_secs(1)).await {
        runner.quit_now();
        runner.wait_stopped(Duration::from_secs(10)).await;
    }
    let stopped = runner.postmaster_pid().is_none();
    let state = handle.local_state().state;
    if let Some(p) = state.primary.as_ref().filter(|p| p.node == config.node_id) {
        if stopped {
            let cmd = Command::ReleasePrimary { epoch: p.epoch, node: config.node_id, reason: ReleaseReason::Shutdown };
            match tokio::time::timeout(Duration::from_secs(5), handle.propose(cmd)).await {
                Ok(Ok(p)) => tracing::info!(outcome = ?p.outcome, "released the primary role"),
                Ok(Err(e)) => tracing::warn!("failed to release the primary role: {e}"),
                Err(_) => tracing::warn!("failed to release the primary role within 5s"),
            }
        } else {
            tracing::error!(
                "PostgreSQL is still running; not releasing the primary role (failover waits for the lease)"
            );
        }
    }
    tasks_cancel.cancel();
    for (name, t) in [("controller", controller), ("heartbeat", heartbeat), ("fence", fence_task)] {
        if failed != Some(name)
            && let Err(e) = t.await
        {
            tracing::warn!("failed to join the {name} task: {e}");
        }
    }
    http_cancel.cancel();
    if failed != Some("http") {
        let _ = http_task.await;
    }
    // Every handle clone keeps the storage open; drop them before the node
    // waits for it to close.
    drop(reloader);
    if let Some(ops) = ops_cell.get() {
        ops.shutdown.cancel();
    }
    drop(ops_cell);
    drop(handle);
    node.shutdown().await;
    tracing::info!("stopped");
    match failure {
        Some((name, why)) => Err(anyhow!("{name} task stopped: {why}")),
        None => Ok(()),
    }
}
