//! The agent loop: every heartbeat interval, observe PostgreSQL, plan the
//! next step against the replicated state, carry it out, and report the
//! member's state when it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_raft::RaftHandle;
use raftgres_storage::{
    ClusterState, Command, Lsn, Member, MemberState, NodeId, Reject, ReleaseReason, SyncMode, now_ms,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::marker::PrimaryMarker;
use super::plan::{LocalFacts, PgAction, PlanInput, diverged, member_state, plan};
use super::request::{AgentError, AgentRequest};
use super::sync::{
    QuorumChange, QuorumInput, QuorumStep, Standby, SyncInput, SyncStep, Widening, inherited, quorum_names, quorum_of,
    quorum_step, standby_names, sync_step,
};
use crate::callbacks::{Action, Callbacks, Role, VetoHold};
use crate::config::Config;
use crate::fence::PrimaryFlag;
use crate::lease::Lease;
use crate::postgres::conf::{ServerConf, ServerRole, render_hba, slot_name};
use crate::postgres::control::ClusterControlState;
use crate::postgres::history::{newest_timeline, timeline_start};
use crate::postgres::runner::{Rewind, StopMode, blocking};
use crate::postgres::settings::{Catalog, ParameterState, pending_restart};
use crate::postgres::{Observation, Observer, PgError, Runner};
use crate::vip::VipHandle;
use crate::watchdog::device::{Device, DeviceError, DeviceSlot, Refusal, WatchdogMode, published_tags, timeout_for};

/// A standby that fails to start this many times in a row is rewound.
const STANDBY_START_ATTEMPTS: u32 = 3;

/// How often the agent turns while a switchover is pending.
const HANDOVER_INTERVAL: Duration = Duration::from_millis(50);

/// How long a promotion may take before the agent gives up on this turn
/// (as `pg_ctl promote -w -t 60` did).
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a switchover's demotion waits for the virtual IP to go.
const VIP_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a requested restart may take.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a re-clone may take before the request is answered anyway.
const REINIT_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a primary records its WAL position in the replicated state.
const POSITION_INTERVAL: Duration = Duration::from_secs(1);

/// The first pause after a failed start (of a node that is not primary);
/// it doubles with every failure in a row, up to [`START_BACKOFF_MAX`].
const START_BACKOFF: Duration = Duration::from_secs(1);
const START_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the configuration files were rendered from: the applied state,
/// the standby being added, the quorum being changed, and whether the
/// server was in recovery.
type Rendered = (Arc<ClusterState>, Option<Widening>, Option<QuorumChange>, Option<bool>);

/// How long a committed synchronous standby may not stream before the set
/// is narrowed without it (a new primary's standbys need a moment to
/// follow it; meanwhile commits wait).
const SYNC_GRACE: Duration = Duration::from_secs(2);

/// How long a standby that has WAL to flush may go without replying before
/// it counts as not streaming. A network partition that drops packets
/// leaves its WAL sender "streaming" until `wal_sender_timeout` (60 s by
/// default) while every commit waits for it; its replies stop at once.
const SYNC_STALL: Duration = Duration::from_secs(1);

/// How long after a reload the server is asked which changes wait for a
/// restart (it applies a reload asynchronously).
const PENDING_CHECK_DELAY: Duration = Duration::from_secs(1);

/// How often a primary checks its members' slots again when the member set
/// has not changed (a slot may have lost its WAL, or been dropped by hand).
const SLOTS_RECHECK: Duration = Duration::from_secs(30);

/// How often a node that is not a member yet repeats how to add it.
const JOIN_HINT_INTERVAL: Duration = Duration::from_secs(30);

/// PostgreSQL that ran this long as primary has its crash count reset.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// How long a node whose `pre_promote` vetoed its promotion stays out of
/// elections (tagged `nofailover`) before it may be elected again.
pub const VETO_HOLD: Duration = Duration::from_secs(30);

/// What the agent shares with the rest of the daemon.
pub struct AgentLinks {
    /// This node's lease, from the heartbeat task.
    pub lease: watch::Receiver<Option<Lease>>,
    /// What the agent last observed, for the heartbeat and the API.
    pub observation: watch::Sender<Observation>,
    /// The last PostgreSQL action that failed, until PostgreSQL accepts
    /// connections.
    pub last_error: watch::Sender<Option<String>>,
    /// Shared with the fence.
    pub may_be_primary: PrimaryFlag,
    /// The server's parameter catalog and the changes waiting for a
    /// restart.
    pub parameters: watch::Sender<ParameterState>,
    /// Operator requests.
    pub requests: mpsc::Receiver<AgentRequest>,
    /// The kernel watchdog device, once opened; the fence tends it.
    pub device: DeviceSlot,
    /// Set when `required` mode cannot use the device.
    pub refusal: Refusal,
    /// Set while this node keeps out of elections after `pre_promote`
    /// vetoed its promotion.
    pub veto: VetoHold,
    /// The virtual IP's task, when one is configured: the address goes
    /// before a switchover stops this primary.
    pub vip: Option<VipHandle>,
}

pub struct Agent {
    handle: RaftHandle,
    runner: Arc<Runner>,
    observer: Observer,
    config: Arc<Config>,
    links: AgentLinks,
    /// "This node ran as primary": see [`PrimaryMarker`].
    marker: PrimaryMarker,
    facts: LocalFacts,
    not_streaming_since: Option<Instant>,
    /// Since when a postmaster that says it serves has not answered.
    unanswered_since: Option<Instant>,
    /// Set while PostgreSQL runs as the primary this node is; cleared when
    /// the agent stops it on purpose.
    primary_running_since: Option<Instant>,
    crashes: u32,
    standby_start_failures: u32,
    /// The standby being made synchronous (primary only).
    widening: Option<Widening>,
    /// Quorum mode: the record PostgreSQL applies before Raft (primary only).
    quorum_change: Option<QuorumChange>,
    /// Since when each committed synchronous standby has not streamed.
    sync_unhealthy_since: BTreeMap<NodeId, Instant>,
    /// What the configuration files were last rendered from: the applied
    /// state, the standby being added or quorum being changed, and whether
    /// the server was in recovery.
    maintained: Option<Rendered>,
    /// The `pg_hba.conf` last written and read by the server.
    hba_written: Option<String>,
    /// Failed starts in a row, and when the next may be tried: a server
    /// that does not start is retried with a growing pause, not in a loop.
    start_failures: u32,
    start_retry_at: Option<(Instant, u64)>,
    /// The configuration last written, so a parameter change can be
    /// written for the role the server runs in and applied by reload.
    last_conf: Option<ServerConf>,
    /// When to ask the server which changed parameters wait for a restart
    /// (a moment after a reload).
    pending_check: Option<Instant>,
    /// The members whose slots were last made sure of, and when.
    slots_ensured: Option<(Vec<NodeId>, Instant)>,
    reported: Option<MemberState>,
    report: Option<JoinHandle<()>>,
    /// The primary epoch this node released (for a switchover or after
    /// crashes). Until the local state shows the release, a lagging view
    /// must not restart or promote PostgreSQL as that epoch's primary.
    released_epoch: Option<(u64, ReleaseReason)>,
    /// The last proposal of this primary's WAL position, and when.
    position: Option<(JoinHandle<()>, Instant)>,
    /// The epoch whose promotion record was refused (logged once).
    promotion_refused: Option<u64>,
    /// pg_rewind said "no rewind required" to a replica stopped because it
    /// could not stream, this many times in a row.
    noop_rewinds: u32,
    /// An operator request (restart, reinit) is being carried out: in
    /// maintenance mode too, the turns may start PostgreSQL.
    serving: bool,
    /// The epoch in which `automatic` mode failed to open the watchdog
    /// device and went on without it (tried again in the next).
    device_failed: Option<u64>,
    /// The operator's callbacks and `pre_promote`.
    callbacks: Callbacks,
    /// The role PostgreSQL last ran in, kept while it is stopped: a start
    /// or an observation in another role is a role change.
    role_seen: Option<Role>,
    /// An operator's restart is being carried out: its start fires
    /// `on_restart`.
    restarting: bool,
}

/// The `raftctl` command that adds this node to the cluster.
pub fn join_command(c: &Config) -> String {
    format!(
        "raftctl member add --id {} --name {} --raft-addr {} --api-url {}",
        c.node_id,
        c.node_name,
        c.raft_advertise,
        c.api_url()
    )
}

impl Agent {
    pub fn new(handle: RaftHandle, runner: Arc<Runner>, config: Arc<Config>, links: AgentLinks) -> Self {
        let observer =
            Observer::new(config.pg_socket_dir.clone(), config.pg_port, &config.superuser, config.pg_data_dir.clone());
        let marker = PrimaryMarker::new(&config.data_dir);
        let facts = LocalFacts { was_primary: marker.epoch().is_some(), ..LocalFacts::default() };
        let callbacks = Callbacks::new(config.callbacks.clone(), &config.cluster_id);
        Self {
            callbacks,
            role_seen: None,
            restarting: false,
            handle,
            runner,
            observer,
            config,
            links,
            marker,
            facts,
            not_streaming_since: None,
            unanswered_since: None,
            primary_running_since: None,
            crashes: 0,
            standby_start_failures: 0,
            slots_ensured: None,
            last_conf: None,
            pending_check: None,
            start_failures: 0,
            start_retry_at: None,
            hba_written: None,
            maintained: None,
            widening: None,
            quorum_change: None,
            sync_unhealthy_since: BTreeMap::new(),
            reported: None,
            report: None,
            released_epoch: None,
            position: None,
            promotion_refused: None,
            noop_rewinds: 0,
            serving: false,
            device_failed: None,
        }
    }

    fn me(&self) -> NodeId {
        self.config.node_id
    }

    /// This node's epoch as primary, if the state names it primary.
    fn my_epoch(&self, state: &ClusterState) -> Option<u64> {
        state.primary.as_ref().filter(|p| p.node == self.me()).map(|p| p.epoch)
    }

    /// Registers this node as a member of the replicated state (once).
    /// A node that is not an initial member waits to be added to Raft
    /// first, and says how, every [`JOIN_HINT_INTERVAL`].
    async fn register(&self, cancel: &CancellationToken) {
        let c = &self.config;
        let initial = c.initial_members.iter().any(|m| m.id == c.node_id);
        let mut hinted: Option<Instant> = None;
        let mut member = Member::new(c.node_id, c.node_name.clone());
        member.pg_host = c.pg_advertise_host.clone();
        member.pg_port = c.pg_port;
        member.api_url = c.api_url();
        member.tags = published_tags(&c.tags, self.links.refusal.is_set());
        loop {
            let state = self.handle.cluster_state();
            if state.is_initialized() && state.members.contains_key(&c.node_id) {
                self.publish_tags(&member.tags).await;
                return;
            }
            if !initial
                && !self.handle.status().is_member()
                && hinted.is_none_or(|at| at.elapsed() >= JOIN_HINT_INTERVAL)
            {
                hinted = Some(Instant::now());
                tracing::info!("this node is not a member of the cluster yet; to add it, run: {}", join_command(c));
            }
            if state.is_initialized() {
                match self.handle.propose(Command::AddMember { member: member.clone() }).await {
                    Ok(p) => match p.outcome {
                        Ok(_) | Err(Reject::DuplicateMember { .. }) => {
                            tracing::info!(member = %member, "registered");
                            return;
                        }
                        Err(r) => tracing::error!("failed to register as a member: {r}"),
                    },
                    Err(e) => tracing::debug!("register: {e}"),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Proposes `tags` as this member's unless they are committed already:
    /// at start the configured tags (they may have changed while the daemon
    /// was down) with the watchdog refusal folded in.
    async fn publish_tags(&self, tags: &raftgres_storage::Tags) {
        let state = self.handle.cluster_state();
        if state.member(self.me()).is_none_or(|m| &m.tags == tags) {
            return;
        }
        let cmd = Command::SetMemberTags { node: self.me(), tags: tags.clone() };
        match tokio::time::timeout(Duration::from_secs(2), self.handle.propose(cmd)).await {
            Ok(Ok(p)) => match p.outcome {
                Ok(_) => tracing::info!(?tags, "published this member's tags"),
                Err(r) => tracing::error!("publishing this member's tags was refused: {r}"),
            },
            Ok(Err(e)) => tracing::warn!("failed to publish this member's tags: {e}"),
            Err(_) => tracing::warn!("publishing this member's tags timed out"),
        }
    }

    /// Makes sure the kernel watchdog device is held before PostgreSQL runs
    /// as this node's primary. `Err` only in `required` mode, with why the
    /// device cannot be used; `automatic` mode warns and goes on.
    fn ensure_device(&mut self, state: &ClusterState) -> Result<(), String> {
        let w = &self.config.watchdog;
        if w.mode == WatchdogMode::Off || self.links.device.is_held() {
            return Ok(());
        }
        let epoch = self.my_epoch(state).unwrap_or(0);
        if w.mode == WatchdogMode::Automatic && self.device_failed == Some(epoch) {
            return Ok(());
        }
        let ttl = state.config.lease_ttl_ms;
        let opened = match timeout_for(Duration::from_millis(ttl), w.safety_margin) {
            Some(secs) => Device::open(&w.device, secs),
            None => {
                Err(DeviceError::LeaseTooShort { lease_ttl_ms: ttl, margin_ms: w.safety_margin.as_millis() as u64 })
            }
        };
        match opened {
            Ok(device) => {
                if device.is_stand_in() {
                    tracing::warn!(
                        device = %w.device.display(),
                        "the watchdog device is not a character device: a stand-in that resets nothing"
                    );
                }
                tracing::info!(device = %w.device.display(), timeout = ?device.timeout(), "watchdog device opened");
                self.links.device.put(device);
                Ok(())
            }
            Err(e) if w.mode == WatchdogMode::Automatic => {
                self.device_failed = Some(epoch);
                tracing::warn!(
                    "watchdog.mode is automatic: the watchdog device cannot be used ({e}); going on without it"
                );
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// `required` mode without a usable device: this node must not be
    /// primary. It publishes `nofailover` (so no controller elects it
    /// again), stops a PostgreSQL that runs as its primary, and releases the
    /// role it was given. The release is recorded as `manual`: the event
    /// log has no reason of its own for it.
    async fn refuse_primary(&mut self, state: &ClusterState, why: &str) {
        let msg = refusal_message(why);
        tracing::error!("{msg}");
        self.links.last_error.send_replace(Some(msg));
        self.links.refusal.set(why.to_string());
        if let Some(m) = state.member(self.me()) {
            self.publish_tags(&published_tags(&m.tags, true)).await;
        }
        let Some(epoch) = self.my_epoch(state) else {
            return;
        };
        if self.runner.postmaster_pid().is_some() && self.links.may_be_primary.get() {
            self.observer.disconnect();
            self.primary_running_since = None;
            if let Err(e) = self.runner.stop(StopMode::Immediate).await {
                tracing::error!("failed to stop PostgreSQL running as primary without its watchdog: {e}");
                return;
            }
            if !self.runner.wait_stopped(Duration::from_secs(10)).await {
                tracing::error!("PostgreSQL running as primary without its watchdog does not stop");
                return;
            }
            self.stopped(Role::Primary);
            self.links.may_be_primary.set(false);
        }
        let reason = ReleaseReason::Manual;
        self.released_epoch = Some((epoch, reason));
        let cmd = Command::ReleasePrimary { epoch, node: self.me(), reason };
        match self.handle.propose(cmd).await {
            Ok(p) => tracing::warn!(outcome = ?p.outcome, "released the primary role: no watchdog device"),
            Err(e) => tracing::error!("failed to release the primary role: {e}"),
        }
    }

    /// Runs until cancelled, finishing the current step first. A turn runs
    /// every heartbeat interval, and at once when the replicated state
    /// changes or the lease does in a way a turn acts on (acquired, lost,
    /// another epoch, writes allowed again): a handover must not wait out
    /// an interval. A primary's renewal of a lease that still allows writes
    /// changes nothing a turn decides, so it does not bring the next turn
    /// forward.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.register(&cancel).await;
        let mut state_rx = self.handle.subscribe();
        let mut lease_rx = self.links.lease.clone();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            self.turn().await;
            let state = self.handle.cluster_state();
            let mut interval = Duration::from_millis(state.config.heartbeat_interval_ms);
            if state.handover_active(now_ms()) {
                interval = interval.min(HANDOVER_INTERVAL);
            }
            let margin = Duration::from_millis(state.config.demote_margin_ms);
            state_rx.borrow_and_update();
            let seen = *lease_rx.borrow_and_update();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = state_rx.changed() => {}
                _ = crate::lease::news(&mut lease_rx, seen, margin) => {}
                Some(req) = self.links.requests.recv() => self.serve(req, &cancel).await,
            }
        }
    }

    /// Carries out an operator request between turns.
    async fn serve(&mut self, req: AgentRequest, cancel: &CancellationToken) {
        match req {
            AgentRequest::Restart { reply } => {
                let r = self.restart(cancel).await;
                let _ = reply.send(r);
            }
            AgentRequest::Reinitialize { reply } => {
                let r = self.reinitialize(cancel).await;
                let _ = reply.send(r);
            }
        }
    }

    /// Runs turns until PostgreSQL accepts connections again; an error
    /// says why it did not (a failed start ends the wait at once). They may
    /// start it in maintenance mode too: an operator asked.
    async fn turns_until_up(&mut self, cancel: &CancellationToken, timeout: Duration) -> Result<(), String> {
        self.serving = true;
        let r = self.turns_until_up_serving(cancel, timeout).await;
        self.serving = false;
        r
    }

    async fn turns_until_up_serving(&mut self, cancel: &CancellationToken, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let failures = self.start_failures;
        while Instant::now() < deadline && !cancel.is_cancelled() {
            self.turn().await;
            if self.links.observation.borrow().accepting {
                return Ok(());
            }
            if self.start_failures > failures {
                let why = self.links.last_error.borrow().clone().unwrap_or_else(|| "it did not start".into());
                return Err(why);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("it is not up after {timeout:?}"))
    }

    async fn restart(&mut self, cancel: &CancellationToken) -> Result<String, AgentError> {
        tracing::info!("restarting PostgreSQL on request");
        // An operator's restart is tried at once, whatever the pause after
        // earlier failed starts.
        self.start_retry_at = None;
        self.primary_running_since = None;
        self.observer.disconnect();
        if self.runner.postmaster_pid().is_some() {
            self.runner.stop(StopMode::Fast).await.map_err(|e| AgentError::Failed(format!("stop PostgreSQL: {e}")))?;
        }
        let name = self.config.node_name.clone();
        self.restarting = true;
        let up = self.turns_until_up(cancel, RESTART_TIMEOUT).await;
        self.restarting = false;
        match up {
            Ok(()) => Ok(format!("restarted PostgreSQL on {name}")),
            Err(why) => Err(AgentError::Failed(format!("PostgreSQL on {name} did not come back: {why}"))),
        }
    }

    async fn reinitialize(&mut self, cancel: &CancellationToken) -> Result<String, AgentError> {
        let state = self.handle.cluster_state();
        if state.primary_node() == Some(self.me()) || self.links.may_be_primary.get() {
            return Err(AgentError::Refused("the primary cannot be reinitialized; switch over first".into()));
        }
        if state.primary.is_none() {
            return Err(AgentError::Refused(
                "no primary to clone from; this data directory may be the best failover candidate".into(),
            ));
        }
        if state.switchover.as_ref().is_some_and(|sw| sw.to == Some(self.me())) {
            return Err(AgentError::Refused("this member is the target of a pending switchover".into()));
        }
        tracing::warn!("reinitializing: removing the data directory and cloning the primary again");
        self.observer.disconnect();
        if self.runner.postmaster_pid().is_some() {
            self.runner
                .stop(StopMode::Immediate)
                .await
                .map_err(|e| AgentError::Failed(format!("stop PostgreSQL: {e}")))?;
        }
        self.runner.wipe().await.map_err(|e| AgentError::Failed(format!("remove the data directory: {e}")))?;
        self.facts = LocalFacts { was_primary: self.marker.epoch().is_some(), ..LocalFacts::default() };
        let name = self.config.node_name.clone();
        match self.turns_until_up(cancel, REINIT_TIMEOUT).await {
            Ok(()) => Ok(format!("reinitialized {name} from the primary")),
            Err(why) => Err(AgentError::Failed(format!("{name} was re-cloned but is not up: {why}"))),
        }
    }

    fn server_conf(&self, state: &ClusterState, role: ServerRole) -> ServerConf {
        let c = &self.config;
        ServerConf {
            node_id: c.node_id,
            node_name: c.node_name.clone(),
            listen_addresses: c.pg_listen_addresses.clone(),
            port: c.pg_port,
            socket_dir: c.pg_socket_dir.display().to_string(),
            replication_user: c.replication_user.clone(),
            replication_password: c.replication_password.clone(),
            parameters: state.config.postgresql_parameters.clone(),
            synchronous_standby_names: self.standby_names(state),
            role,
        }
    }

    /// What this node's PostgreSQL waits for as primary: the committed
    /// synchronous set and the standby being added. A standby is given the
    /// same set without itself, which is what it inherits if it is
    /// promoted: PostgreSQL ignores it until then, and from the moment of
    /// promotion waits for it, before any agent turn could reload it.
    fn standby_names(&self, state: &ClusterState) -> String {
        if state.config.synchronous_mode == SyncMode::Quorum || state.sync_quorum.is_some() {
            return self.quorum_standby_names(state);
        }
        let mut waited = state.sync_standbys.clone();
        if let Some(w) = &self.widening {
            waited.insert(w.node);
        }
        waited.remove(&self.me());
        let names = state.members.values().map(|m| (m.id, m.name.clone())).collect();
        standby_names(state.config.synchronous_mode, &waited, &names)
    }

    /// Quorum mode (RFC 0003): the primary waits for the change it is
    /// making, or else the committed record; a standby for the record it
    /// would inherit if promoted (itself removed, one fewer).
    fn quorum_standby_names(&self, state: &ClusterState) -> String {
        let names = state.members.values().map(|m| (m.id, m.name.clone())).collect();
        let me = self.me();
        if state.primary_node() == Some(me) {
            if let Some(p) = &self.quorum_change {
                return quorum_names(&p.standbys, p.quorum as usize, &names);
            }
            let mut set = state.sync_standbys.clone();
            set.remove(&me);
            return quorum_names(&set, quorum_of(&state.sync_standbys, state.sync_quorum), &names);
        }
        let (set, quorum) = inherited(&state.sync_standbys, state.sync_quorum, me);
        quorum_names(&set, quorum_of(&set, quorum), &names)
    }

    /// Keeps the synchronous set (RFC 0001): reads `pg_stat_replication`,
    /// takes one step, and proposes a changed set through Raft. Widening
    /// reaches PostgreSQL before Raft, narrowing after.
    async fn manage_sync(&mut self, state: &ClusterState, epoch: u64) {
        let mode = state.config.synchronous_mode;
        if mode == SyncMode::Off
            && state.sync_standbys.is_empty()
            && state.sync_quorum.is_none()
            && self.widening.is_none()
        {
            self.sync_unhealthy_since.clear();
            self.quorum_change = None;
            return;
        }
        const QUERY: &str = "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint, r.application_name, \
                             r.state, r.sync_state, pg_wal_lsn_diff(r.flush_lsn, '0/0')::bigint, \
                             current_setting('synchronous_standby_names'), \
                             (extract(epoch from clock_timestamp() - r.reply_time) * 1000)::bigint \
                             FROM (SELECT 1) one LEFT JOIN pg_stat_replication r ON true";
        let rows = match self.observer.client().await {
            Ok(client) => match tokio::time::timeout(Duration::from_secs(2), client.query(QUERY, &[])).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => return tracing::debug!("read pg_stat_replication: {e}"),
                Err(_) => return tracing::debug!("read pg_stat_replication: timed out"),
            },
            Err(e) => return tracing::debug!("read pg_stat_replication: {e}"),
        };
        let primary_flush = rows.first().and_then(|r| r.get::<_, Option<i64>>(0)).unwrap_or(0).max(0) as u64;
        let mut standbys: Vec<Standby> = Vec::new();
        for m in state.members.values().filter(|m| m.id != self.me()) {
            let row = rows.iter().find(|r| r.get::<_, Option<String>>(1).as_deref() == Some(m.name.as_str()));
            let text = |i: usize| row.and_then(|r| r.get::<_, Option<String>>(i));
            let flush = row.and_then(|r| r.get::<_, Option<i64>>(4)).map(|f| f.max(0) as u64);
            let reply_age =
                row.and_then(|r| r.get::<_, Option<i64>>(6)).map(|ms| Duration::from_millis(ms.max(0) as u64));
            // Behind the primary and silent: its connection is gone even if
            // its WAL sender has not noticed yet.
            let stalled = flush.is_none_or(|f| f < primary_flush) && reply_age.is_some_and(|age| age > SYNC_STALL);
            standbys.push(Standby {
                id: m.id,
                streaming: text(2).as_deref() == Some("streaming") && !stalled,
                waited_for: matches!(text(3).as_deref(), Some("sync" | "quorum")),
                flush,
                excluded: m.nosync(),
            });
        }
        let now = Instant::now();
        let mut failed = BTreeSet::new();
        for id in &state.sync_standbys {
            if standbys.iter().any(|s| s.id == *id && s.streaming) {
                self.sync_unhealthy_since.remove(id);
            } else if now.duration_since(*self.sync_unhealthy_since.entry(*id).or_insert(now)) >= SYNC_GRACE {
                failed.insert(*id);
            }
        }
        self.sync_unhealthy_since.retain(|id, _| state.sync_standbys.contains(id));
        if mode == SyncMode::Quorum {
            self.widening = None;
            let running = rows.first().and_then(|r| r.get::<_, Option<String>>(5)).unwrap_or_default();
            return self.manage_quorum(state, epoch, &standbys, &failed, primary_flush, &running).await;
        }
        self.quorum_change = None;
        if state.sync_quorum.is_some() {
            // Leaving quorum mode: no standby of the quorum is known to hold
            // every commit, so the set starts empty, in Raft first.
            return self.propose_sync(state, epoch, BTreeSet::new()).await;
        }
        let step = sync_step(&SyncInput {
            mode,
            count: state.config.synchronous_node_count as usize,
            committed: &state.sync_standbys,
            widening: self.widening.as_ref(),
            standbys: &standbys,
            failed: &failed,
            primary_flush,
        });
        match step {
            SyncStep::Nothing => {}
            SyncStep::StartWidening(node) => {
                tracing::info!(standby = node, "waiting for a new synchronous standby to catch up");
                self.widening = Some(Widening { node, target: None });
            }
            SyncStep::SetTarget(lsn) => {
                if let Some(w) = &mut self.widening {
                    w.target = Some(lsn);
                }
            }
            SyncStep::AbandonWidening => {
                match &self.widening {
                    Some(w) if state.sync_standbys.contains(&w.node) => {}
                    Some(w) => tracing::info!(standby = w.node, "the standby being made synchronous went away"),
                    None => {}
                }
                self.widening = None;
            }
            SyncStep::Commit(to) => self.propose_sync(state, epoch, to).await,
        }
    }

    /// Quorum mode: one step of RFC 0003's order.
    async fn manage_quorum(
        &mut self,
        state: &ClusterState,
        epoch: u64,
        standbys: &[Standby],
        failed: &BTreeSet<NodeId>,
        primary_flush: u64,
        running: &str,
    ) {
        let names = state.members.values().map(|m| (m.id, m.name.clone())).collect();
        let applied_now = self
            .quorum_change
            .as_ref()
            .is_some_and(|p| quorum_names(&p.standbys, p.quorum as usize, &names) == running);
        let step = quorum_step(&QuorumInput {
            count: state.config.synchronous_node_count as usize,
            committed: &state.sync_standbys,
            committed_quorum: state.sync_quorum,
            pending: self.quorum_change.as_ref(),
            applied_now,
            standbys,
            failed,
            primary_flush,
        });
        match step {
            QuorumStep::Nothing => {}
            QuorumStep::Start(set, quorum) => {
                tracing::info!(standbys = ?set, quorum, "changing the synchronous quorum in PostgreSQL first");
                self.quorum_change = Some(QuorumChange { standbys: set, quorum, applied: false, target: None });
            }
            QuorumStep::Applied => {
                if let Some(p) = &mut self.quorum_change {
                    p.applied = true;
                }
            }
            QuorumStep::SetTarget(lsn) => {
                if let Some(p) = &mut self.quorum_change {
                    p.target = Some(lsn);
                }
            }
            QuorumStep::Abandon => self.quorum_change = None,
            QuorumStep::Commit(to, quorum) => {
                let cmd = Command::ChangeSyncQuorum {
                    epoch,
                    from: state.sync_standbys.clone(),
                    from_quorum: state.sync_quorum,
                    to: to.clone(),
                    quorum,
                };
                match tokio::time::timeout(Duration::from_secs(2), self.handle.propose(cmd)).await {
                    Ok(Ok(p)) => match p.outcome {
                        Ok(_) if quorum == 0 && !to.is_empty() => tracing::warn!(
                            "fewer standbys stream than the quorum needs: replication is asynchronous until one \
                             catches up"
                        ),
                        Ok(_) => tracing::info!(standbys = ?to, quorum, "synchronous quorum changed"),
                        Err(r) => tracing::warn!("changing the synchronous quorum was refused: {r}"),
                    },
                    Ok(Err(e)) => tracing::warn!("failed to change the synchronous quorum: {e}"),
                    Err(_) => tracing::warn!("changing the synchronous quorum timed out"),
                }
            }
        }
    }

    /// Proposes a new synchronous set (`on`, `strict`, or leaving quorum
    /// mode) by compare-and-set.
    async fn propose_sync(&mut self, state: &ClusterState, epoch: u64, to: BTreeSet<NodeId>) {
        let mode = state.config.synchronous_mode;
        let from = state.sync_standbys.clone();
        let cmd = Command::ChangeSyncStandbys { epoch, from: from.clone(), to: to.clone() };
        match tokio::time::timeout(Duration::from_secs(2), self.handle.propose(cmd)).await {
            Ok(Ok(p)) => match p.outcome {
                // The standby being added stays in what PostgreSQL waits
                // for until the state this agent reads shows it committed
                // (the next step then drops the widening): never a moment
                // when a committed standby is not waited for.
                Ok(_) if to.is_empty() && mode != SyncMode::Off => {
                    tracing::warn!("no synchronous standby left: replication is asynchronous until one catches up")
                }
                Ok(_) => tracing::info!(from = ?from, to = ?to, "synchronous standbys changed"),
                Err(r) => tracing::warn!("changing the synchronous standbys was refused: {r}"),
            },
            Ok(Err(e)) => tracing::warn!("failed to change the synchronous standbys: {e}"),
            Err(_) => tracing::warn!("changing the synchronous standbys timed out"),
        }
    }

    /// Observes the server; for a stopped data directory also its control
    /// state, and where a cleanly stopped primary's WAL ends.
    ///
    /// Over a connection that is still open, an answer is proof enough that
    /// the postmaster runs (its backends end with it), and `postmaster.pid`
    /// is read only when there is no such connection or it did not answer.
    async fn observe(&mut self) -> (Observation, Option<ClusterControlState>) {
        let data_present = self.runner.data_present();
        let mut o = if self.observer.connected() {
            let o = self.observer.observe(data_present, true).await;
            if o.accepting { o } else { Observation { running: self.runner.postmaster_pid().is_some(), ..o } }
        } else {
            let running = self.runner.postmaster_pid().is_some();
            self.observer.observe(data_present, running).await
        };
        let control = if o.data_present && !o.running {
            match self.runner.control_state().await {
                Ok(c) => c.map(|(state, _)| state),
                Err(e) => {
                    tracing::warn!("failed to read pg_controldata: {e}");
                    None
                }
            }
        } else {
            None
        };
        if control == Some(ClusterControlState::ShutDown) {
            // Where a cleanly stopped primary's WAL ends: a switchover
            // target must have received past it.
            o.checkpoint_lsn = self.runner.checkpoint_lsn().await.ok().flatten();
        }
        (o, control)
    }

    /// One turn of the loop.
    pub async fn turn(&mut self) {
        let (o, control) = self.observe().await;
        match (o.running, o.in_recovery) {
            (false, _) | (true, Some(true)) => self.links.may_be_primary.set(false),
            (true, Some(false)) => self.links.may_be_primary.set(true),
            (true, None) => {} // unknown: keep what was last known
        }
        if let Some(why) = self.links.refusal.reason() {
            // Shown for as long as it holds, not only until PostgreSQL runs.
            let msg = refusal_message(&why);
            self.links.last_error.send_if_modified(|e| {
                let changed = e.as_ref() != Some(&msg);
                *e = Some(msg);
                changed
            });
        } else if let Some(msg) = self.links.veto.message() {
            // Shown for as long as this node keeps out of elections.
            self.links.last_error.send_if_modified(|e| {
                let changed = e.as_ref() != Some(&msg);
                *e = Some(msg);
                changed
            });
        } else if o.accepting {
            self.links.last_error.send_if_modified(|e| e.take().is_some());
        }
        self.links.observation.send_replace(o.clone());
        self.notice_role(&o);
        let state = self.handle.cluster_state();
        self.end_veto_hold(&state).await;
        let my_epoch = self.my_epoch(&state);
        if let (Some(epoch), Some((released, reason))) = (my_epoch, self.released_epoch)
            && epoch == released
        {
            // Released, but the release is not applied here yet (or did not
            // commit): never start or promote for this epoch again; make
            // sure the release goes through.
            self.retry_release(epoch, reason).await;
            self.report_state(member_state(&o));
            return;
        }
        let now = Instant::now();
        self.update_facts(&state, my_epoch, &o, now);
        let demote_margin = Duration::from_millis(state.config.demote_margin_ms);
        let lease_ok =
            my_epoch.is_some_and(|e| self.links.lease.borrow().is_some_and(|l| l.allows_writes(e, now, demote_margin)));
        let actions = plan(&PlanInput {
            me: self.me(),
            state: &state,
            lease_ok,
            observed: &o,
            control,
            facts: &self.facts,
            now_ms: now_ms(),
            hands_off: state.maintenance && !self.serving,
        });
        if let Some(epoch) = my_epoch
            && o.is_primary()
            && lease_ok
        {
            // A primary found running (after a restart or a hand-off) takes
            // the device too.
            if let Err(why) = self.ensure_device(&state) {
                self.refuse_primary(&state, &why).await;
                self.report_state(member_state(&o));
                return;
            }
            self.record_promotion(&state, epoch, &o).await;
            self.record_position(&state, epoch, &o);
        }
        let mut promoted = false;
        for action in actions {
            if my_epoch.is_none()
                && matches!(action, PgAction::StartPrimary | PgAction::StartStandby { .. })
                && let Some((at, version)) = self.start_retry_at
                && now < at
                && version == state.config_version
            {
                // Backing off after a failed start, unless the
                // configuration changed since (it may be the fix).
                break;
            }
            if action == PgAction::Promote
                && let Some(epoch) = my_epoch
                && !self.may_promote(epoch, demote_margin).await
            {
                break;
            }
            if matches!(action, PgAction::Initdb | PgAction::StartPrimary | PgAction::Promote) {
                // The flag first: the fence closes a device it finds held
                // while PostgreSQL may not be a primary.
                self.links.may_be_primary.set(true);
                if let Err(why) = self.ensure_device(&state) {
                    self.links.may_be_primary.set(false);
                    self.refuse_primary(&state, &why).await;
                    break;
                }
            }
            if let Err(e) = self.execute(&state, &action).await {
                tracing::error!(action = ?action, "failed to {e}");
                self.links.last_error.send_replace(Some(format!("{}: {e}", describe(&action))));
                if my_epoch.is_some()
                    && matches!(action, PgAction::StartPrimary | PgAction::StartStandby { .. } | PgAction::Promote)
                {
                    self.crashes += 1;
                }
                break;
            }
            promoted |= matches!(action, PgAction::Initdb | PgAction::StartPrimary | PgAction::Promote);
        }
        if promoted && let Some(epoch) = my_epoch {
            // Record the new timeline now, not a turn later: `/primary`
            // waits for it.
            let (o, _) = self.observe().await;
            if o.is_primary() {
                self.record_promotion(&state, epoch, &o).await;
            }
        }
        match my_epoch {
            Some(epoch) if o.is_primary() && lease_ok => self.manage_sync(&state, epoch).await,
            Some(_) => {}
            None => {
                self.widening = None;
                self.quorum_change = None;
            }
        }
        if self.maintain_parameters(&state, &o).await {
            self.maintained = Some((state.clone(), self.widening.clone(), self.quorum_change.clone(), o.in_recovery));
        } else {
            self.maintained = None;
        }
        self.report_state(member_state(&o));
    }

    /// Runs `pre_promote` before this node, primary of `epoch`, promotes
    /// its PostgreSQL. A veto gives the role back (see
    /// [`Agent::veto_promotion`]). While it ran, the role or the lease may
    /// have gone: then this turn promotes nothing, and the next plans again.
    async fn may_promote(&mut self, epoch: u64, demote_margin: Duration) -> bool {
        if let Err(veto) = self.callbacks.pre_promote().await {
            self.veto_promotion(epoch, &veto.to_string()).await;
            return false;
        }
        let state = self.handle.cluster_state();
        let lease_ok = self.links.lease.borrow().is_some_and(|l| l.allows_writes(epoch, Instant::now(), demote_margin));
        if self.my_epoch(&state) != Some(epoch) || !lease_ok {
            tracing::info!(epoch, "the role or its lease changed while pre_promote ran; not promoting this turn");
            return false;
        }
        true
    }

    /// `pre_promote` vetoed the promotion of this node, primary of `epoch`
    /// and still a replica: it publishes `nofailover` (and
    /// `pre_promote = "vetoed"`) for [`VETO_HOLD`], so that the controller
    /// elects another candidate or, after a switchover, gives the role back
    /// to the old primary, and then releases the role. PostgreSQL keeps
    /// running as a replica: it never wrote as this epoch's primary.
    async fn veto_promotion(&mut self, epoch: u64, why: &str) {
        let msg = format!("promotion vetoed: {why}; gave the primary role back (out of elections for {VETO_HOLD:?})");
        tracing::error!(epoch, "{msg}");
        self.links.last_error.send_replace(Some(msg.clone()));
        let state = self.handle.cluster_state();
        let published = state.member(self.me()).map(|m| m.tags.clone()).unwrap_or_default();
        let tags = self.links.veto.start(Instant::now() + VETO_HOLD, msg, &published);
        self.publish_tags(&tags).await;
        let reason = ReleaseReason::Manual;
        self.released_epoch = Some((epoch, reason));
        let cmd = Command::ReleasePrimary { epoch, node: self.me(), reason };
        match tokio::time::timeout(Duration::from_secs(2), self.handle.propose(cmd)).await {
            Ok(Ok(p)) => tracing::warn!(outcome = ?p.outcome, "released the primary role: pre_promote vetoed it"),
            Ok(Err(e)) => tracing::error!("failed to release the primary role: {e}"),
            Err(_) => tracing::error!("releasing the primary role timed out"),
        }
    }

    /// Ends a veto hold that ran out: the tags are published without it,
    /// and this node may be elected again (and run `pre_promote` again).
    async fn end_veto_hold(&mut self, state: &ClusterState) {
        let published = state.member(self.me()).map(|m| m.tags.clone()).unwrap_or_default();
        if let Some(tags) = self.links.veto.end_if_over(Instant::now(), &published) {
            tracing::info!("the hold after a vetoed promotion is over; this node may be elected again");
            self.publish_tags(&tags).await;
        }
    }

    /// Fires `on_role_change` when PostgreSQL is seen running in another
    /// role than before (a promotion or a start by this agent fires it
    /// themselves; this catches the rest).
    fn notice_role(&mut self, o: &Observation) {
        let role = match (o.accepting, o.in_recovery) {
            (true, Some(false)) => Role::Primary,
            (true, Some(true)) => Role::Replica,
            _ => return,
        };
        if self.role_seen.replace(role).is_some_and(|r| r != role) {
            self.callbacks.fire(Action::OnRoleChange, role);
        }
    }

    /// PostgreSQL was started as `role`: `on_restart` for an operator's
    /// restart, `on_role_change` when it last ran in the other role,
    /// `on_start` otherwise.
    fn started_as(&mut self, role: Role) {
        let action = match self.role_seen.replace(role) {
            _ if self.restarting => Action::OnRestart,
            Some(r) if r != role => Action::OnRoleChange,
            _ => Action::OnStart,
        };
        self.callbacks.fire(action, role);
    }

    /// The agent stopped PostgreSQL on purpose.
    fn stopped(&mut self, was: Role) {
        self.role_seen = Some(was);
        self.callbacks.fire(Action::OnStop, was);
    }

    /// Records, once per epoch, the timeline this primary runs on and where
    /// it began; `/primary` answers only once it is recorded, so no routed
    /// write lands on a timeline the cluster does not know of.
    async fn record_promotion(&mut self, state: &ClusterState, epoch: u64, o: &Observation) {
        let Some(timeline) = o.timeline else {
            return;
        };
        let me = self.me();
        if state.timeline.is_some_and(|t| t.epoch == epoch && t.node == me && t.timeline == timeline) {
            return;
        }
        let Some(switchpoint) = timeline_start(self.runner.data_dir(), timeline) else {
            tracing::warn!(timeline, "no history file for this primary's timeline yet");
            return;
        };
        let cmd = Command::RecordPromotion { epoch, node: me, timeline, switchpoint };
        match tokio::time::timeout(Duration::from_secs(2), self.handle.propose(cmd)).await {
            Ok(Ok(p)) => match p.outcome {
                Ok(_) => tracing::info!(timeline, switchpoint = %Lsn(switchpoint), "promotion recorded"),
                Err(r) if self.promotion_refused != Some(epoch) => {
                    self.promotion_refused = Some(epoch);
                    tracing::error!("recording this primary's timeline was refused: {r}");
                    self.links.last_error.send_replace(Some(format!("record the promotion: {r}")));
                }
                Err(_) => {}
            },
            Ok(Err(e)) => tracing::warn!("failed to record the promotion: {e}"),
            Err(_) => tracing::warn!("recording the promotion timed out"),
        }
    }

    /// Records where this primary's WAL stands, at most once a
    /// [`POSITION_INTERVAL`] and only when it moved: the lag reference for
    /// a failover that no longer has this node's report.
    fn record_position(&mut self, state: &ClusterState, epoch: u64, o: &Observation) {
        let (Some(lsn), Some(timeline)) = (o.write_lsn, o.timeline) else {
            return;
        };
        if state.position.is_some_and(|p| p.epoch == epoch && p.lsn >= lsn) {
            return;
        }
        if self.position.as_ref().is_some_and(|(h, at)| !h.is_finished() || at.elapsed() < POSITION_INTERVAL) {
            return;
        }
        let handle = self.handle.clone();
        let cmd = Command::RecordPosition { epoch, node: self.me(), timeline, lsn };
        let task = tokio::spawn(async move {
            if let Err(e) = handle.propose(cmd).await {
                tracing::debug!("record the primary's position: {e}");
            }
        });
        self.position = Some((task, Instant::now()));
    }

    async fn retry_release(&self, epoch: u64, reason: ReleaseReason) {
        let cmd = Command::ReleasePrimary { epoch, node: self.me(), reason };
        match tokio::time::timeout(Duration::from_secs(2), self.handle.propose(cmd)).await {
            Ok(Ok(p)) => tracing::debug!(outcome = ?p.outcome, "release retried"),
            Ok(Err(e)) => tracing::warn!("failed to release the primary role: {e}"),
            Err(_) => tracing::warn!("releasing the primary role timed out"),
        }
    }

    /// Keeps the facts `plan` reads about this node's recent past: crashes
    /// of a primary (PostgreSQL vanished without the agent stopping it) and
    /// how long a replica has not streamed.
    fn update_facts(&mut self, state: &ClusterState, my_epoch: Option<u64>, o: &Observation, now: Instant) {
        match (my_epoch, o.is_primary(), self.primary_running_since) {
            (Some(_), true, None) => self.primary_running_since = Some(now),
            (Some(_), true, Some(since)) if now.duration_since(since) >= STABLE_AFTER && self.crashes > 0 => {
                self.crashes = 0;
            }
            (Some(_), false, Some(_)) if !o.running && state.maintenance => {
                // Maintenance mode: stopped by hand, most likely; left alone.
                self.primary_running_since = None;
                tracing::warn!("PostgreSQL of this primary stopped in maintenance mode; it is left stopped");
            }
            (Some(_), false, Some(_)) if !o.running => {
                self.crashes += 1;
                self.primary_running_since = None;
                tracing::warn!(crashes = self.crashes, "PostgreSQL stopped unexpectedly under this primary");
            }
            (None, _, Some(_)) => self.primary_running_since = None,
            _ => {}
        }
        self.facts.restarts_exhausted = my_epoch.is_some() && self.crashes > state.config.postgres_restart_attempts;
        if o.is_replica() && !o.streaming {
            self.not_streaming_since.get_or_insert(now);
        } else {
            self.not_streaming_since = None;
        }
        if o.streaming {
            self.noop_rewinds = 0;
        }
        self.facts.not_streaming_for = self.not_streaming_since.map(|s| now.duration_since(s)).unwrap_or_default();
        // Hung: no answer at all, while the postmaster says it serves (not
        // starting up, not in crash recovery, not stopping).
        // (`postmaster.pid` is read only when the observation went
        // unanswered, not every turn.)
        if o.running
            && !o.accepting
            && self.observer.unanswered()
            && self.runner.pm_status().is_some_and(|s| s.serving())
        {
            let since = *self.unanswered_since.get_or_insert(now);
            self.facts.hung = self.config.pg_hang_timeout.is_some_and(|bound| now.duration_since(since) >= bound);
        } else {
            self.unanswered_since = None;
            self.facts.hung = false;
        }
    }

    /// Proposes `state` unless a report is in flight or it is already both
    /// reported and committed: a failed report is retried next turn.
    fn report_state(&mut self, state: MemberState) {
        if self.report.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        let committed = self.handle.cluster_state().member(self.me()).map(|m| m.state);
        if self.reported == Some(state) && committed == Some(state) {
            return;
        }
        let handle = self.handle.clone();
        let node = self.me();
        self.reported = Some(state);
        self.report = Some(tokio::spawn(async move {
            if let Err(e) = handle.propose(Command::SetMemberState { node, state }).await {
                tracing::debug!("report member state: {e}");
            }
        }));
    }

    async fn execute(&mut self, state: &ClusterState, action: &PgAction) -> Result<(), PgError> {
        match action {
            // Repeated every turn while nothing changes; not news.
            PgAction::EnsureSlots(_) | PgAction::Follow { .. } => tracing::debug!(action = ?action, "agent"),
            _ => tracing::info!(action = ?action, "agent"),
        }
        if matches!(action, PgAction::Initdb | PgAction::StartPrimary | PgAction::Promote) {
            // From here on the fence guards the server as a primary, and the
            // marker says this data may hold writes nobody else has.
            self.links.may_be_primary.set(true);
            let epoch = self.my_epoch(state).unwrap_or(0);
            let marker = self.marker.clone();
            blocking(move || {
                marker
                    .record(epoch)
                    .map_err(|source| PgError::Io { what: "record the was-primary marker".into(), source })
            })
            .await?;
            self.facts.was_primary = true;
        }
        match action {
            PgAction::Initdb => self.initdb(state).await,
            PgAction::BaseBackup { host, port } => self.base_backup(state, host, *port).await,
            PgAction::StartPrimary => self.start(self.server_conf(state, ServerRole::Primary)).await,
            PgAction::StartStandby { upstream } => self.start_standby(state, upstream).await,
            PgAction::Promote => self.promote(state).await,
            PgAction::Follow { host, port } => self.follow(state, host, *port).await,
            PgAction::Stop(mode) => self.stop(state, *mode).await,
            PgAction::Recover => self.recover().await,
            PgAction::Rewind { host, port } => self.rewind(state, host, *port).await,
            PgAction::Wipe => self.wipe().await,
            PgAction::EnsureSlots(ids) => self.ensure_slots(ids).await,
            PgAction::Demote => self.demote(state).await,
            PgAction::Release(reason) => self.release(state, *reason).await,
        }
    }

    /// A new cluster: initdb, start as primary, create the replication role.
    async fn initdb(&mut self, state: &ClusterState) -> Result<(), PgError> {
        self.report_state(MemberState::Starting);
        self.runner.initdb(&self.config.replication_user).await?;
        self.start(self.server_conf(state, ServerRole::Primary)).await?;
        self.create_roles().await
    }

    async fn base_backup(&mut self, state: &ClusterState, host: &str, port: u16) -> Result<(), PgError> {
        self.report_state(MemberState::CreatingReplica);
        let c = &self.config;
        self.runner.basebackup(host, port, &c.replication_user, &c.replication_password).await?;
        self.clear_marker().await?;
        let conf = self.server_conf(state, ServerRole::Standby { upstream: Some((host.to_string(), port)) });
        self.start(conf).await
    }

    async fn start_standby(&mut self, state: &ClusterState, upstream: &Option<(String, u16)>) -> Result<(), PgError> {
        let conf = self.server_conf(state, ServerRole::Standby { upstream: upstream.clone() });
        if let Err(e) = self.start(conf).await {
            if matches!(e, PgError::StartFailed { config: true, .. }) {
                // Neither a rewind nor a re-clone repairs a configuration.
                return Err(e);
            }
            self.standby_start_failures += 1;
            if self.standby_start_failures >= STANDBY_START_ATTEMPTS && upstream.is_some() {
                // It cannot follow this upstream from where it is: rewind (or
                // re-clone) instead of retrying forever.
                tracing::warn!(failures = self.standby_start_failures, "standby does not start; rewinding");
                self.facts.needs_rewind = true;
                self.facts.rewound = false;
                self.standby_start_failures = 0;
            }
            return Err(e);
        }
        self.standby_start_failures = 0;
        if self.facts.clean_demote.is_some() && upstream.is_some() {
            // A clean switchover: this WAL ends at the shutdown checkpoint
            // the new primary received, so its history is a prefix of the
            // new primary's.
            self.clear_marker().await?;
        }
        self.facts.rewound = false;
        self.facts.clean_demote = None;
        self.facts.needs_rewind = false;
        Ok(())
    }

    /// This node's data is a copy of another primary's now.
    async fn clear_marker(&mut self) -> Result<(), PgError> {
        let marker = self.marker.clone();
        blocking(move || {
            marker.clear().map_err(|source| PgError::Io { what: "remove the was-primary marker".into(), source })
        })
        .await?;
        self.facts.was_primary = false;
        Ok(())
    }

    /// Starts the server with `conf`; what waited for a restart no longer
    /// does, and the catalog is read again (a new library may add
    /// parameters).
    async fn start(&mut self, conf: ServerConf) -> Result<(), PgError> {
        self.last_conf = Some(conf.clone());
        self.pending_check = None;
        self.links.parameters.send_modify(|p| {
            p.pending_restart.clear();
            p.catalog = None;
        });
        let state = self.handle.cluster_state();
        let hba = self.hba(&state);
        self.runner.write_hba(&hba)?;
        self.hba_written = Some(hba);
        match self.runner.start(&conf).await {
            Ok(()) => {
                self.start_failures = 0;
                self.start_retry_at = None;
                self.started_as(match conf.role {
                    ServerRole::Primary => Role::Primary,
                    ServerRole::Standby { .. } => Role::Replica,
                });
                Ok(())
            }
            Err(e) => {
                self.start_failures += 1;
                let exp = self.start_failures.saturating_sub(1).min(6);
                let pause = (START_BACKOFF * 2u32.pow(exp)).min(START_BACKOFF_MAX);
                let version = self.handle.cluster_state().config_version;
                self.start_retry_at = Some((Instant::now() + pause, version));
                tracing::warn!(failures = self.start_failures, retry_in = ?pause, "PostgreSQL did not start");
                Err(e)
            }
        }
    }

    /// Keeps the running server's parameters in step with the replicated
    /// configuration: reads its catalog once it answers, writes a changed
    /// configuration for the role it runs in and reloads it (on every node
    /// at once, as each applies the change), then asks which changes wait
    /// for a restart. Never restarts it.
    /// False when writing or reloading failed (tried again next turn).
    async fn maintain_parameters(&mut self, state: &ClusterState, o: &Observation) -> bool {
        if !o.accepting {
            return false;
        }
        let mut ok = true;
        if self.links.parameters.borrow().catalog.is_none() {
            match self.observer.client().await {
                Ok(client) => match Catalog::load(client).await {
                    Ok(c) => self.links.parameters.send_modify(|p| p.catalog = Some(Arc::new(c))),
                    Err(e) => tracing::debug!("read pg_settings: {e}"),
                },
                Err(e) => tracing::debug!("read pg_settings: {e}"),
            }
        }
        // Nothing the files are rendered from changed since the last turn
        // (the same applied state, widening and role): no rendering.
        let unchanged = self.maintained.as_ref().is_some_and(|(st, w, q, r)| {
            std::ptr::eq(Arc::as_ptr(st), state)
                && *w == self.widening
                && *q == self.quorum_change
                && *r == o.in_recovery
        });
        if let Some(last) = self.last_conf.as_ref().filter(|_| !unchanged) {
            let role = match (&last.role, o.in_recovery) {
                (ServerRole::Standby { .. }, Some(false)) => Some(ServerRole::Primary),
                (ServerRole::Primary, Some(true)) | (_, None) => None,
                (role, _) => Some(role.clone()),
            };
            if let Some(role) = role {
                let names = self.standby_names(state);
                let conf = ServerConf {
                    role,
                    parameters: state.config.postgresql_parameters.clone(),
                    synchronous_standby_names: names,
                    ..last.clone()
                };
                if &conf != last {
                    let what =
                        if conf.parameters != last.parameters { "the parameters" } else { "the standbys to wait for" };
                    match self.apply_by_reload(conf).await {
                        Ok(()) => tracing::info!(version = state.config_version, "applied {what} by reload"),
                        Err(e) => {
                            ok = false;
                            tracing::warn!("failed to apply {what}: {e}");
                        }
                    }
                }
            }
        }
        let hba = if unchanged { None } else { Some(self.hba(state)) };
        if let Some(hba) = hba.filter(|h| self.hba_written.as_ref() != Some(h)) {
            match self.runner.write_hba(&hba) {
                Ok(false) => self.hba_written = Some(hba),
                Ok(true) => match self.sql("reload the configuration", "SELECT pg_reload_conf()").await {
                    Ok(()) => {
                        tracing::info!("applied the client authentication rules by reload");
                        self.hba_written = Some(hba);
                    }
                    Err(e) => {
                        ok = false;
                        tracing::warn!("failed to reload after writing pg_hba.conf: {e}");
                    }
                },
                Err(e) => {
                    ok = false;
                    tracing::warn!("failed to write pg_hba.conf: {e}");
                }
            }
        }
        if self.pending_check.is_some_and(|at| Instant::now() >= at) {
            self.pending_check = None;
            let wanted = &state.config.postgresql_parameters;
            let pending = match self.observer.client().await {
                Ok(client) => pending_restart(client, wanted).await,
                Err(e) => Err(e),
            };
            match pending {
                Ok(pending) => {
                    if !pending.is_empty() {
                        let names: Vec<&String> = pending.keys().collect();
                        tracing::info!(parameters = ?names, "changed parameters wait for a restart");
                    }
                    self.links.parameters.send_if_modified(|p| {
                        let changed = p.pending_restart != pending;
                        p.pending_restart = pending;
                        changed
                    });
                }
                Err(e) => {
                    tracing::debug!("read pending restarts: {e}");
                    self.pending_check = Some(Instant::now() + PENDING_CHECK_DELAY);
                }
            }
        }
        ok
    }

    /// The `pg_hba.conf` the configuration and the members call for.
    fn hba(&self, state: &ClusterState) -> String {
        let hosts: Vec<String> = state.members.values().map(|m| m.pg_host.clone()).collect();
        render_hba(state.config.pg_hba.as_deref(), &self.config.replication_user, &hosts)
    }

    async fn apply_by_reload(&mut self, conf: ServerConf) -> Result<(), PgError> {
        let changed = self.runner.write_conf(&conf)?;
        self.last_conf = Some(conf);
        if changed {
            self.sql("reload the configuration", "SELECT pg_reload_conf()").await?;
            self.pending_check = Some(Instant::now() + PENDING_CHECK_DELAY);
        }
        Ok(())
    }

    async fn promote(&mut self, state: &ClusterState) -> Result<(), PgError> {
        // The standbys to wait for must be in force the moment promotion
        // completes: a commit acknowledged before would be missing from
        // the synchronous standbys that may be promoted next.
        if let Some(last) = &self.last_conf {
            let conf = ServerConf { synchronous_standby_names: self.standby_names(state), ..last.clone() };
            if conf != *last {
                self.apply_by_reload(conf).await?;
            }
        }
        self.runner.request_promotion().await?;
        self.wait_out_of_recovery().await?;
        self.role_seen = Some(Role::Primary);
        self.callbacks.fire(Action::OnRoleChange, Role::Primary);
        self.slots_ensured = None;
        // pg_rewind reads the source's timeline from its control file;
        // without a checkpoint after promotion, a former primary rewound
        // from here gets the old timeline and cannot follow.
        if let Err(e) = self.sql("checkpoint", "CHECKPOINT").await {
            tracing::warn!("failed to checkpoint after promotion: {e}");
        }
        Ok(())
    }

    /// Waits until the server that was asked to promote leaves recovery,
    /// looking every 10 ms over the observer's connection (promotion does
    /// not close it): `/primary` answers only once the promotion is
    /// recorded, which follows this.
    async fn wait_out_of_recovery(&mut self) -> Result<(), PgError> {
        let what = "wait for the promotion to complete";
        let deadline = Instant::now() + PROMOTION_TIMEOUT;
        loop {
            let client = self.observer.client().await.map_err(|source| PgError::Sql { what, source })?;
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await;
            match row.map(|r| r.get::<_, bool>(0)) {
                Ok(false) => return Ok(()),
                Ok(true) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
                Ok(true) => {
                    return Err(PgError::Setup(format!(
                        "still in recovery {PROMOTION_TIMEOUT:?} after the promotion request"
                    )));
                }
                Err(source) => return Err(PgError::Sql { what, source }),
            }
        }
    }

    /// Points a running standby at a new upstream (a no-op when it already
    /// follows it).
    async fn follow(&mut self, state: &ClusterState, host: &str, port: u16) -> Result<(), PgError> {
        let conf = self.server_conf(state, ServerRole::Standby { upstream: Some((host.to_string(), port)) });
        let changed = self.runner.write_conf(&conf)?;
        self.last_conf = Some(conf);
        if changed {
            tracing::info!(upstream = %format!("{host}:{port}"), "following a new upstream");
            self.sql("reload the configuration", "SELECT pg_reload_conf()").await?;
            self.pending_check = Some(Instant::now() + PENDING_CHECK_DELAY);
        }
        Ok(())
    }

    async fn stop(&mut self, state: &ClusterState, mode: StopMode) -> Result<(), PgError> {
        self.primary_running_since = None;
        self.observer.disconnect();
        if mode == StopMode::Fast && state.primary_node() != Some(self.me()) {
            // A replica stopped because it could not follow.
            self.facts.needs_rewind = true;
        }
        let was = self.running_role();
        self.runner.stop(mode).await?;
        if let Some(role) = was {
            self.stopped(role);
        }
        Ok(())
    }

    /// The role of a PostgreSQL that runs now, as last seen.
    fn running_role(&self) -> Option<Role> {
        self.runner.postmaster_pid().is_some().then(|| self.role_seen.unwrap_or(Role::Replica))
    }

    async fn recover(&mut self) -> Result<(), PgError> {
        if let Err(e) = self.runner.single_user_recovery().await {
            // Cannot be repaired in place: re-clone if allowed.
            self.facts.rewind_failed = true;
            return Err(e);
        }
        Ok(())
    }

    async fn rewind(&mut self, state: &ClusterState, host: &str, port: u16) -> Result<(), PgError> {
        self.report_state(MemberState::Rewinding);
        match self.runner.rewind(host, port).await {
            Ok(outcome) => {
                match outcome {
                    Rewind::Rewound => tracing::info!("pg_rewind done"),
                    Rewind::NotNeeded => tracing::info!("pg_rewind: no rewind required"),
                }
                if outcome == Rewind::NotNeeded {
                    if self.facts.needs_rewind && !self.facts.was_primary {
                        self.noop_rewinds += 1;
                    }
                    let local = self.local_timeline().await;
                    let marker = self.marker.epoch();
                    let verdict = diverged(state, self.me(), local, marker, self.noop_rewinds);
                    if let Some(why) = verdict {
                        // pg_rewind compares timeline numbers; this history
                        // forked anyway. Only a fresh copy is left.
                        tracing::error!("this data directory forked from the primary's history: {why}");
                        self.facts.rewind_failed = true;
                        self.noop_rewinds = 0;
                        return Err(PgError::Forked(why));
                    }
                }
                self.clear_marker().await?;
                self.facts.rewound = true;
                self.facts.needs_rewind = false;
                Ok(())
            }
            // Not reaching the source is worth another try.
            Err(e @ PgError::SourceUnreachable { .. }) => Err(e),
            Err(e) => {
                // Any other failure means the directory cannot be rewound.
                self.facts.rewind_failed = true;
                Err(e)
            }
        }
    }

    /// The newest timeline of the stopped data directory and where it
    /// began, from `pg_controldata` and the history files in `pg_wal`.
    async fn local_timeline(&self) -> Option<(u32, Option<u64>)> {
        let control = self.runner.control_state().await.ok().flatten()?.1;
        let dir = self.runner.data_dir();
        let timeline = newest_timeline(dir, control);
        Some((timeline, timeline_start(dir, timeline)))
    }

    async fn wipe(&mut self) -> Result<(), PgError> {
        tracing::warn!(dir = %self.runner.data_dir().display(), "removing the data directory to clone it again");
        self.runner.wipe().await?;
        self.facts = LocalFacts { was_primary: self.marker.epoch().is_some(), ..LocalFacts::default() };
        Ok(())
    }

    /// Switchover: shut the primary down cleanly, then release the role so
    /// the target is elected once it has received all WAL.
    async fn demote(&mut self, state: &ClusterState) -> Result<(), PgError> {
        self.report_state(MemberState::Demoting);
        let vip_epoch = self.links.vip.clone().zip(self.my_epoch(state));
        if let Some((vip, epoch)) = &vip_epoch {
            // Clients stop reaching this server before it stops: the
            // address is gone before the release lets the target take it.
            if !vip.release(*epoch, VIP_RELEASE_TIMEOUT).await {
                vip.resume(*epoch);
                return Err(PgError::VipHeld(format!(
                    "the virtual IP is still bound after {VIP_RELEASE_TIMEOUT:?}; not demoting for the switchover"
                )));
            }
        }
        self.primary_running_since = None;
        self.observer.disconnect();
        let was_running = self.runner.postmaster_pid().is_some();
        if was_running {
            // A clean shutdown: the walsenders hand every WAL record, the
            // shutdown checkpoint included, to the streaming replicas before
            // the postmaster exits.
            let stopped = match self.runner.stop(StopMode::Fast).await {
                Err(e) => Err(e),
                Ok(()) if !self.runner.wait_stopped(Duration::from_secs(30)).await => {
                    Err(PgError::StillRunning("handing over"))
                }
                Ok(()) => Ok(()),
            };
            if let Err(e) = stopped {
                // Nothing was released: this node stays primary and may
                // hold the address again.
                if let Some((vip, epoch)) = &vip_epoch {
                    vip.resume(*epoch);
                }
                return Err(e);
            }
            self.stopped(Role::Primary);
        }
        self.links.may_be_primary.set(false);
        if let Some(epoch) = self.my_epoch(state) {
            self.facts.clean_demote = was_running.then_some(epoch);
            self.released_epoch = Some((epoch, ReleaseReason::Switchover));
            let cmd = Command::ReleasePrimary { epoch, node: self.me(), reason: ReleaseReason::Switchover };
            let p = self
                .handle
                .propose(cmd)
                .await
                .map_err(|e| PgError::Propose { what: "release", message: e.to_string() })?;
            tracing::info!(outcome = ?p.outcome, "demoted for a switchover");
        }
        Ok(())
    }

    /// Gives up the primary role, only once the server is down: the
    /// controller fails over at once, without waiting for the lease. A hung
    /// server is killed: a shutdown request would wait on it forever.
    async fn release(&mut self, state: &ClusterState, reason: ReleaseReason) -> Result<(), PgError> {
        self.observer.disconnect();
        let was = self.running_role();
        if self.facts.hung {
            let killed = self.runner.kill_now();
            tracing::error!(
                processes = killed.len(),
                "PostgreSQL does not answer; killed it to give up the primary role"
            );
            if !self.runner.wait_gone(&killed, Duration::from_secs(10)).await {
                return Err(PgError::StillRunning("releasing the primary role"));
            }
            self.facts.hung = false;
            self.unanswered_since = None;
        } else {
            self.runner.stop(StopMode::Immediate).await?;
        }
        if !self.runner.wait_stopped(Duration::from_secs(10)).await {
            return Err(PgError::StillRunning("releasing the primary role"));
        }
        if let Some(role) = was {
            self.stopped(role);
        }
        self.links.may_be_primary.set(false);
        if let Some(epoch) = self.my_epoch(state) {
            self.released_epoch = Some((epoch, reason));
            let cmd = Command::ReleasePrimary { epoch, node: self.me(), reason };
            match self.handle.propose(cmd).await {
                Ok(p) => {
                    tracing::warn!(outcome = ?p.outcome, "released the primary role");
                    self.crashes = 0;
                }
                Err(e) => tracing::error!("failed to release the primary role: {e}"),
            }
        }
        Ok(())
    }

    /// Runs `query` on the local server; an error names `what`, never the
    /// query.
    async fn sql(&mut self, what: &'static str, query: &str) -> Result<(), PgError> {
        let sql_error = |source| PgError::Sql { what, source };
        let client = self.observer.client().await.map_err(sql_error)?;
        client.batch_execute(query).await.map_err(sql_error)
    }

    async fn create_roles(&mut self) -> Result<(), PgError> {
        let c = self.config.clone();
        let query = format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') THEN
                 CREATE ROLE {user} WITH REPLICATION LOGIN PASSWORD '{pw}';
               END IF;
             END $$;",
            user = c.replication_user,
            pw = c.replication_password
        );
        self.sql("create the replication role", &query).await
    }

    /// Makes sure every other member has a replication slot here and drops
    /// the slots of former members; done again only when the set changes.
    /// A slot reserves WAL from the moment it is created
    /// (`immediately_reserve`), so a member that is down while this node
    /// becomes primary finds the WAL it needs when it returns;
    /// `max_slot_wal_keep_size` bounds what a member that never returns can
    /// hold back.
    async fn ensure_slots(&mut self, ids: &[NodeId]) -> Result<(), PgError> {
        if let Some((done, at)) = &self.slots_ensured
            && done == ids
            && at.elapsed() < SLOTS_RECHECK
        {
            return Ok(());
        }
        // A slot that lost its WAL to max_slot_wal_keep_size cannot serve
        // its member again, even after a re-clone: it is made anew.
        let mut query = String::from(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name LIKE 'raftgres\\_%' AND NOT active AND wal_status = 'lost';",
        );
        for id in ids {
            let name = slot_name(*id);
            query.push_str(&format!(
                "SELECT pg_create_physical_replication_slot('{name}', true) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{name}');"
            ));
        }
        let keep: Vec<String> = ids.iter().map(|id| format!("'{}'", slot_name(*id))).collect();
        query.push_str(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name LIKE 'raftgres\\_%' AND NOT active{};",
            if keep.is_empty() { String::new() } else { format!(" AND slot_name NOT IN ({})", keep.join(",")) }
        ));
        self.sql("ensure replication slots", &query).await?;
        self.slots_ensured = Some((ids.to_vec(), Instant::now()));
        Ok(())
    }
}

/// Why this node does not take the primary role, for `last_error`.
fn refusal_message(why: &str) -> String {
    format!(
        "watchdog.mode is required and the watchdog device cannot be used ({why}): this node does not take the \
         primary role"
    )
}

/// An action in words, for `last_error` (shown by `raftctl list` and
/// `/patroni`).
fn describe(action: &PgAction) -> &'static str {
    match action {
        PgAction::Initdb => "initialize the data directory",
        PgAction::BaseBackup { .. } => "clone the primary",
        PgAction::StartPrimary => "start as primary",
        PgAction::StartStandby { .. } => "start as a standby",
        PgAction::Promote => "promote",
        PgAction::Follow { .. } => "follow the primary",
        PgAction::Stop(_) => "stop PostgreSQL",
        PgAction::Recover => "finish crash recovery",
        PgAction::Rewind { .. } => "rewind",
        PgAction::Wipe => "remove the data directory",
        PgAction::EnsureSlots(_) => "ensure replication slots",
        PgAction::Release(_) => "release the primary role",
        PgAction::Demote => "demote for a switchover",
    }
}
