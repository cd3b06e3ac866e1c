//! The daemon: wires storage, Raft, the lease, the controller, the agent,
//! the fence and the HTTP API together ([`Daemon::start`]), runs until a
//! signal or a critical task's end ([`Daemon::wait`]), and shuts them down
//! in order ([`Daemon::shutdown`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use raftgres_raft::network::security::Transport;
use raftgres_raft::{NodeConfig, RaftHandle, RaftNode};
use raftgres_storage::{Command, NodeInfo, ReleaseReason};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::admin::AdminService;
use crate::agent::task::{Agent, AgentLinks};
use crate::callbacks::VetoHold;
use crate::config::{Config, FileConfig};
use crate::controller::task::Controller;
use crate::fence::PrimaryFlag;
use crate::lease::Lease;
use crate::lease::{self, LeaseGrantor, Views};
use crate::ops::Ops;
use crate::postgres::runner::StopMode;
use crate::postgres::settings::ParameterState;
use crate::postgres::{Binaries, Observation, Runner};
use crate::reload::Reloader;
use crate::vip::{self, VipConfig, VipHandle};
use crate::watchdog::Watchdog;
use crate::watchdog::device::{self, DeviceError, DeviceSlot, Refusal, WatchdogMode, timeout_for};
use crate::{fence, handoff, http};

/// How long shutdown waits for the agent to finish its current step.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for the other tasks once cancelled.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an aborted task gets to unwind.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// How long shutdown tries to release the primary role.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopping Raft leader waits for the primary's successor to
/// run under a lease it granted, its promotion recorded.
const LEADER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The daemon's long-running tasks. Each is critical: one that ends while
/// the daemon runs stops the daemon with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// Failover decisions, on the Raft leader.
    Controller,
    /// The lease heartbeat.
    Heartbeat,
    /// Stops a primary whose lease runs out.
    Fence,
    /// Makes PostgreSQL match the replicated state.
    Agent,
    /// The HTTP API.
    Http,
    /// Keeps PgBouncer pointed at the primary.
    PgBouncer,
    /// Holds the virtual IP while the lease allows writes.
    Vip,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Controller => "controller",
            Task::Heartbeat => "heartbeat",
            Task::Fence => "fence",
            Task::Agent => "agent",
            Task::Http => "http",
            Task::PgBouncer => "pgbouncer",
            Task::Vip => "vip",
        })
    }
}

/// The tasks, in one `JoinSet`, known by [`Task`].
#[derive(Default)]
struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    running: HashMap<tokio::task::Id, Task>,
    aborts: HashMap<Task, AbortHandle>,
}

impl Tasks {
    fn spawn(&mut self, task: Task, fut: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let abort = self.set.spawn(fut);
        self.running.insert(abort.id(), task);
        self.aborts.insert(task, abort);
    }

    /// The next task to end, with how it ended; `None` when none runs.
    async fn next(&mut self) -> Option<(Task, anyhow::Result<()>)> {
        let (id, result) = match self.set.join_next_with_id().await? {
            Ok((id, r)) => (id, r),
            Err(e) => (e.id(), Err(anyhow!("{e}"))),
        };
        let task = self.running.remove(&id).expect("every task is spawned through Tasks::spawn");
        self.aborts.remove(&task);
        Some((task, result))
    }

    /// Waits until every task of `wanted` has ended, aborting those still
    /// running after `timeout` (and then waiting a moment for the abort);
    /// logs how each ended.
    async fn join(&mut self, wanted: &[Task], timeout: Duration) {
        let mut deadline = tokio::time::Instant::now() + timeout;
        let mut aborted = false;
        while wanted.iter().any(|t| self.aborts.contains_key(t)) {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(None) => return,
                Ok(Some((task, Ok(())))) => tracing::debug!("the {task} task stopped"),
                Ok(Some((task, Err(e)))) => tracing::warn!("the {task} task failed: {e:#}"),
                Err(_) if !aborted => {
                    for (task, abort) in wanted.iter().filter_map(|t| self.aborts.get(t).map(|a| (t, a))) {
                        tracing::warn!("the {task} task did not stop within {timeout:?}; aborting it");
                        abort.abort();
                    }
                    aborted = true;
                    deadline = tokio::time::Instant::now() + ABORT_GRACE;
                }
                Err(_) => return,
            }
        }
    }
}

/// One running daemon.
pub struct Daemon {
    config: Arc<Config>,
    node: RaftNode,
    handle: RaftHandle,
    runner: Arc<Runner>,
    /// The admin service reads the operations through this cell.
    ops: Arc<OnceLock<Ops>>,
    reloader: Arc<Reloader>,
    tasks: Tasks,
    /// Stops the virtual IP's task (which removes the address), first.
    vip_cancel: CancellationToken,
    /// Stops the agent, next.
    agent_cancel: CancellationToken,
    /// Stops the controller, the lease heartbeat and the fence, once
    /// PostgreSQL is down.
    tasks_cancel: CancellationToken,
    /// Stops the HTTP API, last.
    http_cancel: CancellationToken,
    /// This node's lease, as the heartbeat keeps it.
    lease: watch::Receiver<Option<Lease>>,
    /// The watchdog process this daemon feeds.
    watchdog_pid: i32,
    /// SIGUSR2 asked for a hand-off: exit leaving PostgreSQL running.
    handoff: bool,
    /// The kernel watchdog device, while held.
    device: DeviceSlot,
    /// What this node, as Raft leader, knows of each member's heartbeats
    /// and grants.
    views: lease::SharedViews,
}

/// Runs the daemon until SIGTERM or SIGINT; an error means a component
/// failed and the process should exit non-zero. `file` is the
/// configuration file the daemon was started from (read again on SIGHUP
/// and `POST /reload`).
pub async fn run(config: Config, file: Option<(PathBuf, FileConfig)>) -> anyhow::Result<()> {
    if !config.runs_postgres {
        return crate::proxy_daemon::run(config).await;
    }
    let mut daemon = Daemon::start(config, file).await?;
    let failure = daemon.wait().await?;
    if let Some((task, why)) = &failure {
        tracing::error!("a critical task stopped: {task}: {why}");
    }
    if daemon.handoff && failure.is_none() {
        daemon.hand_off().await;
    } else {
        daemon.shutdown().await;
    }
    match failure {
        Some((task, why)) => Err(anyhow!("{task} task stopped: {why}")),
        None => Ok(()),
    }
}

impl Daemon {
    /// Opens storage, starts Raft (initializing the cluster if this node
    /// is an initial member), PostgreSQL's supervision and the APIs.
    pub async fn start(config: Config, file: Option<(PathBuf, FileConfig)>) -> anyhow::Result<Daemon> {
        let config = Arc::new(config);
        tracing::info!(node = config.node_id, name = %config.node_name, cluster = %config.cluster_id, "starting");
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
        let runner = Arc::new(Self::runner(&config)?);
        let raft_listener = TcpListener::bind(config.raft_listen)
            .await
            .with_context(|| format!("listen on {} (raft.listen)", config.raft_listen))?;
        let http_listener = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("listen on {} (http.listen)", config.http_listen))?;

        let ops_cell = Arc::new(OnceLock::new());
        let admin = Routes::new(AdminService::server(ops_cell.clone()));
        let node =
            RaftNode::start_with(Self::node_config(&config), raft_listener, admin).await.context("start Raft")?;
        let handle = node.handle().clone();
        let (agent_tx, agent_rx) = mpsc::channel(4);
        let (obs_tx, obs_rx) = watch::channel(Observation::default());
        let (params_tx, params_rx) = watch::channel(ParameterState::default());
        let (reports_tx, reports_rx) = watch::channel(lease::ReportTimes::default());
        let ops = Ops::new(handle.clone(), agent_tx, obs_rx.clone(), params_rx.clone(), reports_rx.clone());
        let _ = ops_cell.set(ops.clone());
        let refusal = Refusal::default();
        let veto = VetoHold::default();
        Self::probe_watchdog(&config, &handle, &refusal);
        let reloader = Arc::new(Reloader::new(
            file.as_ref().map(|(p, _)| p.clone()),
            file.map(|(_, f)| f),
            config.node_id,
            handle.clone(),
            refusal.clone(),
            veto.clone(),
        ));
        if config.initial_members.iter().any(|m| m.id == config.node_id) {
            let members: BTreeMap<_, _> = config
                .initial_members
                .iter()
                .map(|m| (m.id, NodeInfo::new(m.name.clone(), m.raft_addr.clone())))
                .collect();
            node.initialize(members).await.context("initialize Raft")?;
        }
        let views = Arc::new(Mutex::new(Views::default()));
        handle.set_app_handler(Arc::new(LeaseGrantor { handle: handle.clone(), views: views.clone() }));
        let views_for_riding = views.clone();

        let (lease_tx, lease_rx) = watch::channel(None);
        let exe = std::env::current_exe().context("find the raftgres executable")?;
        let watchdog = Watchdog::spawn(&exe, &config.pg_data_dir).context("start the watchdog process")?;
        let predecessor = handoff::take(&config.data_dir).and_then(|h| {
            let lease = h.lease()?;
            tracing::info!(
                epoch = h.epoch,
                left = ?lease.expires_at.saturating_duration_since(Instant::now()),
                watchdog = h.watchdog_pid,
                "adopting the lease and the PostgreSQL of the daemon that handed off"
            );
            lease_tx.send_replace(Some(lease));
            Some(h.watchdog_pid)
        });
        let mut daemon = Daemon {
            views: views.clone(),
            lease: lease_rx.clone(),
            watchdog_pid: watchdog.pid(),
            handoff: false,
            device: DeviceSlot::default(),
            config: config.clone(),
            node,
            handle: handle.clone(),
            runner: runner.clone(),
            ops: ops_cell,
            reloader: reloader.clone(),
            tasks: Tasks::default(),
            vip_cancel: CancellationToken::new(),
            agent_cancel: CancellationToken::new(),
            tasks_cancel: CancellationToken::new(),
            http_cancel: CancellationToken::new(),
        };
        let (primary_lsn_tx, primary_lsn_rx) = watch::channel(None);
        let (ran_tx, ran_rx) = watch::channel(Instant::now());
        let (error_tx, error_rx) = watch::channel(None);
        let may_be_primary = PrimaryFlag::default();

        let (blocked_tx, blocked_rx) = watch::channel(None);
        let controller = Controller::new(
            handle.clone(),
            views,
            config.cluster_id.clone(),
            config.initial_dynamic.clone(),
            blocked_tx,
            reports_tx,
            config.raft_leader_placement == crate::config::LeaderPlacement::AvoidPrimary,
        );
        let cancel = daemon.tasks_cancel.clone();
        daemon.tasks.spawn(Task::Controller, async move {
            controller.run(cancel).await;
            Ok(())
        });
        let riding = Arc::new(lease::Riding::new(handle.clone(), views_for_riding, primary_lsn_tx));
        handle.set_rider(riding.clone());
        let heartbeat = lease::heartbeat_task(
            handle.clone(),
            obs_rx.clone(),
            lease_tx,
            riding.clone(),
            ran_tx,
            daemon.tasks_cancel.clone(),
        );
        daemon.tasks.spawn(Task::Heartbeat, async move {
            heartbeat.await;
            Ok(())
        });
        let fence = fence::run(
            handle.clone(),
            runner.clone(),
            lease_rx.clone(),
            may_be_primary.clone(),
            fence::Backstops { process: watchdog, device: daemon.device.clone() },
            predecessor,
            daemon.tasks_cancel.clone(),
        );
        daemon.tasks.spawn(Task::Fence, async move {
            fence.await;
            Ok(())
        });
        let vip = match &config.vip {
            None => None,
            Some(v) => Some(daemon.start_vip(v, &exe, lease_rx.clone()).await?),
        };
        let links = AgentLinks {
            lease: lease_rx.clone(),
            observation: obs_tx,
            last_error: error_tx,
            may_be_primary,
            parameters: params_tx,
            requests: agent_rx,
            device: daemon.device.clone(),
            refusal,
            veto,
            vip: vip.clone(),
        };
        let agent = Agent::new(handle.clone(), runner, config.clone(), links);
        let cancel = daemon.agent_cancel.clone();
        daemon.tasks.spawn(Task::Agent, async move {
            agent.run(cancel).await;
            Ok(())
        });
        let api = http::ApiState {
            handle,
            node_name: config.node_name.clone(),
            cluster_id: config.cluster_id.clone(),
            lease: lease_rx,
            observation: obs_rx,
            parameters: params_rx,
            primary_lsn: primary_lsn_rx,
            heartbeat_ran: ran_rx,
            heartbeats: riding,
            last_error: error_rx,
            failover_blocked: blocked_rx,
            reports: reports_rx,
            ops,
            token: config.token.clone(),
            reloader,
            pgbouncer: config.pgbouncer.clone().map(|c| crate::pgbouncer::Proxy::new(c, &config.cluster_id)),
            vip: vip.map(|v| v.status()),
        };
        let cancel = daemon.http_cancel.clone();
        let http_tls = config.http_tls.as_ref().map(|t| t.server.clone());
        if let Some(t) = &config.http_tls {
            // Other members' APIs are HTTPS too.
            http::client::use_tls(t.client.clone());
        }
        if let Some(proxy) = api.pgbouncer.clone() {
            let (handle, cancel) = (api.handle.clone(), daemon.tasks_cancel.clone());
            daemon.tasks.spawn(Task::PgBouncer, async move {
                proxy.follow(handle, cancel).await;
                Ok(())
            });
        }
        daemon.tasks.spawn(Task::Http, async move {
            http::serve(http_listener, http_tls, api, cancel).await.context("serve the HTTP API")
        });
        tracing::info!(raft = %config.raft_advertise, http = %config.http_advertise, "ready");
        Ok(daemon)
    }

    /// Starts the virtual IP's guard process and task. An interface that
    /// does not exist (yet) is logged; the task binds the address once it
    /// does.
    async fn start_vip(
        &mut self,
        vip: &VipConfig,
        exe: &std::path::Path,
        lease: watch::Receiver<Option<Lease>>,
    ) -> anyhow::Result<VipHandle> {
        match vip::link::Link::open() {
            Ok(link) => match link.interface(vip).await {
                Ok(_) => tracing::info!(address = %vip.cidr(), interface = %vip.interface, "virtual IP configured"),
                Err(e) => tracing::error!(
                    "vip.interface: {e}; the virtual IP cannot be bound until it exists (the address {} is \
                     retried)",
                    vip.cidr()
                ),
            },
            Err(e) => tracing::error!("failed to {e}: the virtual IP cannot be managed"),
        }
        let cidr = vip.cidr();
        let args: [&std::ffi::OsStr; 5] =
            ["vip-guard".as_ref(), "--address".as_ref(), cidr.as_ref(), "--interface".as_ref(), vip.interface.as_ref()];
        let guard = Watchdog::spawn_guard(exe, &args).context("start the virtual IP's guard process")?;
        let (handle, links) = VipHandle::new();
        let task = vip::run(vip.clone(), self.handle.clone(), lease, links, Some(guard), self.vip_cancel.clone());
        self.tasks.spawn(Task::Vip, async move {
            task.await;
            Ok(())
        });
        Ok(handle)
    }

    /// `required` mode: a device that cannot be opened (checked without
    /// opening it, which would start its timer) keeps this node out of
    /// every election from the start: it registers as `nofailover`.
    fn probe_watchdog(config: &Config, handle: &RaftHandle, refusal: &Refusal) {
        let w = &config.watchdog;
        if w.mode != WatchdogMode::Required {
            return;
        }
        let state = handle.cluster_state();
        let ttl = if state.is_initialized() { state.config.lease_ttl_ms } else { config.initial_dynamic.lease_ttl_ms };
        let usable = match timeout_for(Duration::from_millis(ttl), w.safety_margin) {
            Some(_) => device::probe(&w.device),
            None => {
                Err(DeviceError::LeaseTooShort { lease_ttl_ms: ttl, margin_ms: w.safety_margin.as_millis() as u64 })
            }
        };
        if let Err(e) = usable {
            tracing::error!(
                "watchdog.mode is required and the watchdog device cannot be used ({e}): this node does not take the \
                 primary role and is published as nofailover; fix the device and restart the daemon"
            );
            refusal.set(e.to_string());
        }
    }

    fn runner(config: &Config) -> anyhow::Result<Runner> {
        let bins = Binaries::find(config.pg_bin_dir.as_deref())?;
        tracing::info!(bin_dir = %bins.dir.display(), "PostgreSQL binaries");
        let runner = Runner::new(
            bins,
            config.pg_data_dir.clone(),
            &config.data_dir,
            config.pg_socket_dir.clone(),
            &config.run_as,
            &config.superuser,
            &config.superuser_password,
        )
        .context("set up PostgreSQL")?;
        runner.prepare().context("prepare PostgreSQL directories")?;
        Ok(runner)
    }

    pub(crate) fn node_config(config: &Config) -> NodeConfig {
        let mut info = NodeInfo::new(config.node_name.clone(), config.raft_advertise.clone());
        info.api_addr = match config.http_tls {
            Some(_) => config.api_url(),
            None => config.http_advertise.clone(),
        };
        let mut node_config = NodeConfig::new(config.node_id, &config.cluster_id, &config.data_dir, info);
        node_config.heartbeat_interval = config.raft_heartbeat;
        node_config.election_timeout = config.raft_election_timeout;
        node_config.transport = Transport {
            token: Some(config.token.clone()),
            local_ip: Some(config.raft_listen.ip()).filter(|ip| !ip.is_unspecified()),
            tls: config.tls.clone(),
        };
        node_config
    }

    /// Runs until SIGTERM or SIGINT (`None`), or until a task ends, which
    /// is a failure (`Some`). SIGHUP reloads the configuration file.
    pub async fn wait(&mut self) -> anyhow::Result<Option<(Task, String)>> {
        let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
        let mut sigusr2 = signal(SignalKind::user_defined2()).context("install SIGUSR2 handler")?;
        loop {
            tokio::select! {
                _ = sighup.recv() => {
                    let reloader = self.reloader.clone();
                    tokio::spawn(async move {
                        match reloader.reload().await {
                            Ok(m) => tracing::info!("SIGHUP: {m}"),
                            Err(e) => tracing::error!("SIGHUP: {e}"),
                        }
                    });
                }
                _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(None); }
                _ = sigusr2.recv() => {
                    tracing::info!("SIGUSR2: handing off; PostgreSQL keeps running");
                    self.handoff = true;
                    return Ok(None);
                }
                _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(None); }
                ended = self.tasks.next() => {
                    return match ended {
                        Some((task, Ok(()))) => Ok(Some((task, "ended".to_string()))),
                        Some((task, Err(e))) => Ok(Some((task, format!("{e:#}")))),
                        None => Err(anyhow!("no task runs")),
                    };
                }
            }
        }
    }

    /// Hands over in an order that keeps the fence on guard until
    /// PostgreSQL is down: stop the agent, stop PostgreSQL (immediately if
    /// a clean stop fails), and only once no postmaster runs, release the
    /// primary role so failover need not wait for the lease. The lease
    /// heartbeat and the fence stop after that, the HTTP API last.
    pub async fn shutdown(mut self) {
        // The address goes first: clients stop reaching a server that is
        // about to stop.
        self.vip_cancel.cancel();
        self.tasks.join(&[Task::Vip], TASK_STOP_TIMEOUT).await;
        self.agent_cancel.cancel();
        self.tasks.join(&[Task::Agent], AGENT_STOP_TIMEOUT).await;
        if !self.handoff {
            self.stop_postgres().await;
            if self.runner.postmaster_pid().is_none() {
                // Before the release: once the state no longer names this
                // node primary, the fence would leave the device unfed.
                self.device.close("the daemon stops and PostgreSQL is down");
            }
            self.release_if_primary().await;
        }
        self.see_the_primary_through().await;
        self.tasks_cancel.cancel();
        self.tasks.join(&[Task::Controller, Task::Heartbeat, Task::Fence, Task::PgBouncer], TASK_STOP_TIMEOUT).await;
        self.http_cancel.cancel();
        self.tasks.join(&[Task::Http], TASK_STOP_TIMEOUT).await;
        // Every handle clone keeps the storage open; drop them before the
        // node waits for it to close.
        let Daemon { node, handle, ops, reloader, .. } = self;
        drop(reloader);
        if let Some(ops) = ops.get() {
            ops.shutdown.cancel();
        }
        drop(ops);
        drop(handle);
        node.shutdown().await;
        tracing::info!("stopped");
    }

    /// Exits leaving PostgreSQL running and the role held, for a
    /// successor daemon of this node (see [`handoff`]): the agent stops
    /// first, then the loops; the lease as it stands then, with the
    /// watchdog left enforcing its end, is written for the successor.
    pub async fn hand_off(mut self) {
        // No daemon would remove the address while none runs: it goes,
        // and the successor binds it again once it holds the lease.
        self.vip_cancel.cancel();
        self.tasks.join(&[Task::Vip], TASK_STOP_TIMEOUT).await;
        self.agent_cancel.cancel();
        self.tasks.join(&[Task::Agent], AGENT_STOP_TIMEOUT).await;
        self.tasks_cancel.cancel();
        self.tasks.join(&[Task::Controller, Task::Heartbeat, Task::Fence, Task::PgBouncer], TASK_STOP_TIMEOUT).await;
        // The watchdog process guards the lease until a successor renews
        // it; a device left unfed would reset the machine before the
        // successor could take it over. The successor opens it again.
        self.device.close("handing off; the successor opens it again");
        let state = self.handle.cluster_state();
        let lease = *self.lease.borrow();
        let held =
            state.primary.as_ref().filter(|p| p.node == self.config.node_id).and(lease).filter(|l| {
                state.primary.as_ref().is_some_and(|p| p.epoch == l.epoch) && l.expires_at > Instant::now()
            });
        match (held, handoff::boot_id()) {
            (Some(l), Some(boot_id)) if self.runner.postmaster_pid().is_some() => {
                let h = handoff::Handoff {
                    boot_id,
                    epoch: l.epoch,
                    expires_ns: crate::watchdog::to_monotonic_ns(l.expires_at),
                    watchdog_pid: self.watchdog_pid,
                };
                match handoff::write(&self.config.data_dir, &h) {
                    Ok(()) => tracing::info!(
                        epoch = l.epoch,
                        left = ?l.expires_at.saturating_duration_since(Instant::now()),
                        "handed off the primary's lease; the watchdog enforces it until a successor renews it"
                    ),
                    Err(e) => tracing::error!("failed to write the hand-off ({e}); the lease runs out unrenewed"),
                }
            }
            _ => tracing::info!("handed off; this node holds no lease"),
        }
        self.shutdown().await;
    }

    async fn stop_postgres(&self) {
        if let Err(e) = self.runner.stop(StopMode::Fast).await {
            tracing::error!("failed to stop PostgreSQL cleanly: {e}; stopping it immediately");
        }
        if !self.runner.wait_stopped(Duration::from_secs(1)).await {
            self.runner.quit_now();
            self.runner.wait_stopped(Duration::from_secs(10)).await;
        }
    }

    /// A Raft leader that stops first sees the primary role through its
    /// change: once it released the role, its controller (which still
    /// runs) elects the successor, and the leader waits until the
    /// successor runs under a lease granted here, its promotion recorded
    /// (`/primary` answers only then). The successor writes under that
    /// lease while the others elect the next Raft leader (0.7 s and more),
    /// which inherits the lease's bound and renews it, as after a Raft
    /// leader's death. Without the wait, the successor's first grant, and
    /// then the record of its promotion, waited for that election: a clean
    /// shutdown of a node that ran both took 1–1.3 s instead of 0.2 s.
    ///
    /// The leadership is not handed to a follower: openraft 0.9 has no
    /// leader transfer, and the others refuse a candidate's vote while
    /// the leader's own lease on them lasts (see "Where the Raft leader
    /// runs" in docs/architecture.md), so a hand-over gains nothing here.
    async fn see_the_primary_through(&self) {
        let me = self.config.node_id;
        if !self.handle.status().is_leader() {
            return;
        }
        let deadline = tokio::time::Instant::now() + LEADER_STOP_TIMEOUT;
        let mut state_rx = self.handle.subscribe();
        loop {
            let state = self.handle.cluster_state();
            // In maintenance nobody is elected; a role still held here (a
            // hand-off, a release that failed) has no successor to wait for.
            if state.maintenance || state.primary_node() == Some(me) || !self.handle.status().is_leader() {
                return;
            }
            if let Some(p) = state.primary.as_ref().filter(|p| p.node != me) {
                let granted = {
                    let v = self.views.lock().unwrap_or_else(|e| e.into_inner());
                    v.nodes.get(&p.node).and_then(|n| n.last_grant).is_some_and(|(epoch, _)| epoch == p.epoch)
                };
                // Its promotion recorded too: `/primary` answers only then.
                let recorded = state.timeline.is_some_and(|t| t.epoch == p.epoch && t.node == p.node);
                if granted && recorded {
                    let name = state.member(p.node).map_or_else(|| p.node.to_string(), |m| m.name.clone());
                    tracing::info!(
                        primary = %name,
                        epoch = p.epoch,
                        "the new primary runs under a lease this leader granted; leaving the Raft leadership"
                    );
                    return;
                }
            }
            // The grant is recorded without a state change: look again
            // shortly as well.
            let wait = tokio::time::Instant::now() + Duration::from_millis(10);
            match tokio::time::timeout_at(deadline.min(wait), state_rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        "no new primary runs under a lease from this leader yet; leaving the Raft leadership all \
                         the same"
                    );
                    return;
                }
                Err(_) => {}
            }
        }
    }

    /// Releases the primary role this node holds, once its PostgreSQL is
    /// down, so failover need not wait for the lease.
    async fn release_if_primary(&self) {
        let me = self.config.node_id;
        let state = self.handle.cluster_state();
        let Some(p) = state.primary.as_ref().filter(|p| p.node == me) else {
            return;
        };
        if self.runner.postmaster_pid().is_some() {
            tracing::error!(
                "PostgreSQL is still running; not releasing the primary role (failover waits for the lease)"
            );
            return;
        }
        let cmd = Command::ReleasePrimary { epoch: p.epoch, node: me, reason: ReleaseReason::Shutdown };
        match tokio::time::timeout(RELEASE_TIMEOUT, self.handle.propose(cmd)).await {
            Ok(Ok(p)) => tracing::info!(outcome = ?p.outcome, "released the primary role"),
            Ok(Err(e)) => tracing::warn!("failed to release the primary role: {e}"),
            Err(_) => tracing::warn!("failed to release the primary role within {RELEASE_TIMEOUT:?}"),
        }
    }
}
