//! The primary lease: the safety core that keeps a deposed primary from
//! accepting writes once another node may be promoted.
//!
//! Every daemon sends a heartbeat to the Raft leader each
//! `heartbeat_interval_ms`. A primary's heartbeat names the epoch it holds;
//! the leader answers with a grant only after it has confirmed its own
//! leadership with a quorum (a linearizable read) and seen that the sender
//! is still primary in that epoch. The lease then runs for `lease_ttl_ms`
//! from the heartbeat's *send* time, on the sender's monotonic clock.
//!
//! The controller, on the leader, treats the primary as gone only after
//! `lease_ttl_ms + drift_margin_ms` without a heartbeat, counted from the
//! later of the last heartbeat's *receipt* and its own election, so the
//! primary's lease has run out by the time a new one is promoted.
//!
//! Never decide here what PostgreSQL should be: the fence acts on the lease,
//! the agent on the replicated state.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftgres_raft::{AppHandler, Inherited, RaftHandle, Rider};
use raftgres_storage::encoding;
use raftgres_storage::{ClusterState, NodeId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::postgres::Observation;

/// A lease this node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
    pub expires_at: Instant,
}

impl Lease {
    /// True while `epoch`'s primary may accept writes: the lease is for that
    /// epoch and more than `demote_margin` of it remains.
    pub fn allows_writes(&self, epoch: u64, now: Instant, demote_margin: Duration) -> bool {
        self.epoch == epoch && now + demote_margin < self.expires_at
    }

    /// True when `next` only extends this lease, which still allows writes
    /// at `now`: whoever acts on [`Lease::allows_writes`] decides the same
    /// under either, so the renewal is no news to them.
    pub fn renewed_by(&self, next: &Lease, now: Instant, demote_margin: Duration) -> bool {
        next.epoch == self.epoch
            && next.expires_at >= self.expires_at
            && self.allows_writes(self.epoch, now, demote_margin)
    }
}

/// What every daemon sends to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeId,
    /// The epoch whose primary lease the sender asks to renew.
    pub epoch: Option<u64>,
    pub report: Observation,
}

/// The leader's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The epoch the lease was granted for, if any.
    pub granted: Option<u64>,
    /// The current primary's WAL position as the leader last heard it;
    /// replicas measure their lag against it.
    pub primary_lsn: Option<u64>,
}

/// Heartbeats and replies start with this tag and a version byte, so that a
/// later release can change them and still answer this one during a rolling
/// upgrade. Without the tag a message is version 0, the untagged format of
/// the first development builds, still understood.
const WIRE_TAG: &[u8; 4] = b"RGHB";

/// The heartbeat version this release sends. A change to [`Heartbeat`],
/// [`HeartbeatReply`] or [`Observation`] (bincode reads fields by position)
/// needs a new version here, and decoding of the old one kept.
pub const HEARTBEAT_VERSION: u8 = 1;

/// Encodes `body` in `version` of the heartbeat wire format.
fn encode_versioned<T: Serialize>(what: &'static str, version: u8, body: &T) -> Result<Vec<u8>, HeartbeatError> {
    let bytes = encoding::encode(what, body)?;
    if version == 0 {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(WIRE_TAG.len() + 1 + bytes.len());
    out.extend_from_slice(WIRE_TAG);
    out.push(version);
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// Decodes a heartbeat message of any version this release understands;
/// returns the version it came in.
fn decode_versioned<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<(u8, T), HeartbeatError> {
    // An untagged (version 0) heartbeat starts with its node id and an
    // option tag (0 or 1), and a reply with an option tag: neither can start
    // with the tag, whose second byte is neither.
    let Some(rest) = bytes.strip_prefix(WIRE_TAG) else {
        return Ok((0, encoding::decode(what, bytes)?));
    };
    match rest.split_first() {
        Some((&1, body)) => Ok((1, encoding::decode(what, body)?)),
        Some((&v, _)) => Err(HeartbeatError::UnsupportedVersion { version: v, newest: HEARTBEAT_VERSION }),
        None => Err(HeartbeatError::UnsupportedVersion { version: 0, newest: HEARTBEAT_VERSION }),
    }
}

/// A heartbeat as this release sends it.
pub fn encode_heartbeat(hb: &Heartbeat) -> Result<Vec<u8>, HeartbeatError> {
    encode_versioned("heartbeat", HEARTBEAT_VERSION, hb)
}

/// A heartbeat of any version this release understands, and its version.
pub fn decode_heartbeat(bytes: &[u8]) -> Result<(u8, Heartbeat), HeartbeatError> {
    decode_versioned("heartbeat", bytes)
}

/// A reply in the version the heartbeat came in, so the sender reads it.
pub fn encode_reply(version: u8, reply: &HeartbeatReply) -> Result<Vec<u8>, HeartbeatError> {
    encode_versioned("heartbeat reply", version, reply)
}

pub fn decode_reply(bytes: &[u8]) -> Result<HeartbeatReply, HeartbeatError> {
    decode_versioned("heartbeat reply", bytes).map(|(_, r)| r)
}

/// The latest heartbeat of one node, as the leader saw it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub last_contact: Instant,
    pub report: Observation,
    /// The last lease granted to this node: its epoch and when the leader
    /// received the heartbeat it granted (never earlier than the send
    /// time the lease runs from).
    pub last_grant: Option<(u64, Instant)>,
}

/// What the leader knows from heartbeats; shared by the lease grantor (which
/// records) and the controller (which decides).
#[derive(Debug, Default)]
pub struct Views {
    /// When this node last became Raft leader; `None` while it is not.
    pub leader_since: Option<Instant>,
    /// The Raft term `leader_since` belongs to.
    pub leader_term: Option<u64>,
    /// What this leadership inherited of leases granted before it
    /// (raftgres_raft::witness); `None` until it first decides.
    pub inherited: Option<Inherited>,
    pub nodes: BTreeMap<NodeId, NodeView>,
    /// The epoch whose end this leader has decided (a failover is being
    /// proposed): no lease is granted for it any more, so a heartbeat
    /// confirmed just before the election applies cannot extend the old
    /// primary's lease past the controller's decision.
    pub deposing: Option<u64>,
}

impl Views {
    /// Grants `from` a lease for `epoch` if the state names it primary in
    /// that epoch and the epoch is not being deposed; records the grant.
    /// Called under the same lock the controller decides under.
    pub fn grant(&mut self, state: &ClusterState, from: NodeId, epoch: u64, now: Instant) -> Option<u64> {
        let primary = state.primary.as_ref().filter(|p| p.node == from && p.epoch == epoch)?;
        if self.deposing.is_some_and(|d| d >= primary.epoch) {
            return None;
        }
        if let Some(n) = self.nodes.get_mut(&from) {
            // Never moved back: a confirmation that ends after a later
            // heartbeat's (a retried call) must not shorten the count.
            let at = match n.last_grant {
                Some((e, at)) if e == epoch => at.max(now),
                _ => now,
            };
            n.last_grant = Some((epoch, at));
        }
        Some(epoch)
    }

    /// Records a report that rode on a Raft heartbeat
    /// ([`Riding`]), composed at `at`. Only a report that asks for no
    /// lease, from a node `state` does not name primary: a primary's
    /// contact is its lease, never a report. A heartbeat sent on its own
    /// and received later than `at` is kept.
    pub fn record_ridden(
        &mut self,
        state: &ClusterState,
        from: NodeId,
        hb: Heartbeat,
        at: Instant,
    ) -> Result<(), String> {
        if hb.node != from {
            return Err(HeartbeatError::WrongSender { claimed: hb.node, from }.to_string());
        }
        if hb.epoch.is_some() || state.primary_node() == Some(from) {
            return Err(format!("node {from}: a primary's heartbeat does not ride"));
        }
        let view = self.nodes.entry(from).or_insert_with(|| NodeView {
            last_contact: at,
            report: hb.report.clone(),
            last_grant: None,
        });
        if at >= view.last_contact {
            view.last_contact = at;
            view.report = hb.report;
        }
        Ok(())
    }

    /// Stops granting leases for `epoch` (and earlier ones).
    pub fn depose(&mut self, epoch: u64) {
        self.deposing = Some(self.deposing.map_or(epoch, |d| d.max(epoch)));
    }

    /// Withdraws a decision to depose `epoch` that did not take effect (the
    /// election was rejected), so a primary that returns can lead again.
    pub fn undepose(&mut self, epoch: u64) {
        if self.deposing == Some(epoch) {
            self.deposing = None;
        }
    }

    /// Forgets everything: a new leadership starts from nothing.
    pub fn reset(&mut self) {
        self.leader_since = None;
        self.inherited = None;
        self.nodes.clear();
        self.deposing = None;
    }
}

pub type SharedViews = Arc<Mutex<Views>>;

/// When each node last reported to this node as Raft leader, for the
/// operator interfaces; the controller publishes it (empty on a node that
/// does not lead). A node the leader has not heard from since its election
/// is silent for at least as long as the leadership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportTimes {
    /// When this node became leader; `None` while it is not.
    pub leader_since: Option<Instant>,
    pub last: BTreeMap<NodeId, Instant>,
}

impl ReportTimes {
    /// How long `id` has been silent as far as this leader knows; `None`
    /// on a node that does not lead.
    pub fn silence(&self, id: NodeId, now: Instant) -> Option<Duration> {
        let since = self.last.get(&id).copied().or(self.leader_since)?;
        Some(now.saturating_duration_since(since))
    }
}

/// Serves heartbeats on the Raft leader.
pub struct LeaseGrantor {
    pub handle: RaftHandle,
    pub views: SharedViews,
}

/// Why the leader did not answer a heartbeat.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error(transparent)]
    Decode(#[from] raftgres_storage::encoding::DecodeError),
    #[error(transparent)]
    Encode(#[from] raftgres_storage::encoding::EncodeError),
    #[error("heartbeat for node {claimed} sent by node {from}")]
    WrongSender { claimed: NodeId, from: NodeId },
    #[error("confirm leadership: {0}")]
    NotLeader(String),
    #[error("heartbeat version {version} is not understood here (this node speaks up to {newest})")]
    UnsupportedVersion { version: u8, newest: u8 },
}

impl LeaseGrantor {
    async fn serve(
        handle: RaftHandle,
        views: SharedViews,
        from: NodeId,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HeartbeatError> {
        let (version, hb) = decode_heartbeat(&payload)?;
        if hb.node != from {
            return Err(HeartbeatError::WrongSender { claimed: hb.node, from });
        }
        // The lease runs from the heartbeat's send time, so it ends no
        // later than a lease counted from its receipt: the grant is
        // recorded at the receipt, however long the confirmation takes.
        let received = Instant::now();
        {
            let mut v = views.lock().expect("views lock poisoned");
            let last_grant = v.nodes.get(&from).and_then(|n| n.last_grant);
            v.nodes.insert(from, NodeView { last_contact: received, report: hb.report, last_grant });
        }
        let granted = match hb.epoch {
            None => None,
            Some(epoch) => {
                // Leadership confirmed by a quorum *here* (never forwarded:
                // a grant must come from the leader that will count the
                // silence), then the state applied up to the read index.
                // The followers that confirm it witness the bound of the
                // lease first, so a successor knows when it ends
                // (raftgres_raft::witness).
                let (ttl, wait) = {
                    let state = handle.cluster_state();
                    (state.config.lease_ttl_ms, state.config.heartbeat_interval_ms)
                };
                let (ttl, wait) = (Duration::from_millis(ttl), Duration::from_millis(wait));
                handle.witness().notice(Instant::now() + ttl);
                let renewal = views
                    .lock()
                    .expect("views lock poisoned")
                    .nodes
                    .get(&from)
                    .and_then(|n| n.last_grant)
                    .is_some_and(|(e, _)| e == epoch);
                if renewal {
                    // A renewal rides on the Raft heartbeats sent after the
                    // notice (raftgres_raft::confirm): no round of its own.
                    handle.confirm_leadership(Instant::now(), wait).await.map_err(HeartbeatError::NotLeader)?;
                } else {
                    // A first grant (a new primary waits for it to promote)
                    // gets its own round at once.
                    handle.raft().ensure_linearizable().await.map_err(|e| HeartbeatError::NotLeader(e.to_string()))?;
                }
                let state = handle.cluster_state();
                if Duration::from_millis(state.config.lease_ttl_ms) > ttl {
                    // A longer lease was committed meanwhile: the bound
                    // witnessed is too short for it. The next beat gets it.
                    None
                } else {
                    views.lock().expect("views lock poisoned").grant(&state, from, epoch, received)
                }
            }
        };
        let primary_lsn = {
            let state = handle.cluster_state();
            let v = views.lock().expect("views lock poisoned");
            state.primary_node().and_then(|p| v.nodes.get(&p)).and_then(|n| n.report.lsn())
        };
        encode_reply(version, &HeartbeatReply { granted, primary_lsn })
    }
}

impl AppHandler for LeaseGrantor {
    fn call(&self, from: NodeId, payload: Vec<u8>) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>> {
        // The error crosses the wire as text, to the node that sent it.
        let (handle, views) = (self.handle.clone(), self.views.clone());
        Box::pin(async move { Self::serve(handle, views, from, payload).await.map_err(|e| e.to_string()) })
    }
}

/// A heartbeat that asks for no lease needs no answer of its own, so it
/// rides on the Raft heartbeats ([`raftgres_raft::piggyback`]): a node that
/// is not primary attaches its latest heartbeat to its AppendEntries
/// replies, and the leader attaches the primary's WAL position to its
/// requests. The node then stops sending it on its own, which saves a round
/// trip per node and interval. A primary's heartbeat, a lease renewal,
/// always goes on its own: only [`LeaseGrantor`] grants.
///
/// The leader counts a report that rode as contact at the moment it was
/// composed, never later, as if it had been sent then; one older than two
/// heartbeat intervals does not ride (a heartbeat task that stopped must
/// show as silence).
pub struct Riding {
    views: SharedViews,
    handle: RaftHandle,
    /// This node's latest heartbeat, when it was composed, and until when
    /// it may ride.
    outgoing: Mutex<Option<(Vec<u8>, Instant, Instant)>>,
    /// When the leader's last note arrived with an AppendEntries this node
    /// accepted.
    last_note: Mutex<Option<Instant>>,
    /// The primary's WAL position as the leader last told it.
    pub primary_lsn: watch::Sender<Option<u64>>,
    sent: AtomicU64,
    attached: AtomicU64,
}

impl Riding {
    pub fn new(handle: RaftHandle, views: SharedViews, primary_lsn: watch::Sender<Option<u64>>) -> Self {
        Self {
            views,
            handle,
            outgoing: Mutex::new(None),
            last_note: Mutex::new(None),
            primary_lsn,
            sent: AtomicU64::new(0),
            attached: AtomicU64::new(0),
        }
    }

    /// Lets `heartbeat` (encoded, composed at `at`) ride until `until`, or
    /// nothing.
    fn set_outgoing(&self, heartbeat: Option<(Vec<u8>, Instant, Instant)>) {
        *self.outgoing.lock().expect("riding lock poisoned") = heartbeat;
    }

    /// The leader's notes arrive: its AppendEntries carry this node's
    /// heartbeats to it.
    fn carried(&self, now: Instant, within: Duration) -> bool {
        self.last_note
            .lock()
            .expect("riding lock poisoned")
            .is_some_and(|at| now.saturating_duration_since(at) <= within)
    }

    /// Heartbeats this node sent on its own, and reports it attached to
    /// AppendEntries replies.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.attached.load(Ordering::Relaxed))
    }
}

impl Rider for Riding {
    fn outgoing_note(&self) -> Option<Vec<u8>> {
        let primary_lsn = {
            let state = self.handle.cluster_state();
            let v = self.views.lock().expect("views lock poisoned");
            state.primary_node().and_then(|p| v.nodes.get(&p)).and_then(|n| n.report.lsn())
        };
        encode_reply(HEARTBEAT_VERSION, &HeartbeatReply { granted: None, primary_lsn }).ok()
    }

    fn report(&self, from: NodeId, report: &[u8], age: Duration) {
        let now = Instant::now();
        let at = now.checked_sub(age).unwrap_or(now);
        let state = self.handle.cluster_state();
        let result = decode_heartbeat(report)
            .map_err(|e| e.to_string())
            .and_then(|(_, hb)| self.views.lock().expect("views lock poisoned").record_ridden(&state, from, hb, at));
        if let Err(e) = result {
            tracing::debug!(from, "ignored a report that rode on an AppendEntries reply: {e}");
        }
    }

    fn note(&self, from: NodeId, note: &[u8]) {
        match decode_reply(note) {
            Ok(r) => {
                self.primary_lsn.send_if_modified(|l| (*l != r.primary_lsn).then(|| *l = r.primary_lsn).is_some());
                *self.last_note.lock().expect("riding lock poisoned") = Some(Instant::now());
            }
            Err(e) => tracing::debug!(from, "ignored the leader's note: {e}"),
        }
    }

    fn outgoing_report(&self) -> Option<(Vec<u8>, Duration)> {
        let now = Instant::now();
        let out = self.outgoing.lock().expect("riding lock poisoned");
        let (bytes, at, until) = out.as_ref()?;
        if now > *until {
            return None;
        }
        self.attached.fetch_add(1, Ordering::Relaxed);
        Some((bytes.clone(), now.saturating_duration_since(*at)))
    }
}

/// Sends heartbeats and keeps this node's lease. Runs on its own task so a
/// slow PostgreSQL operation never delays a renewal.
pub async fn heartbeat_task(
    handle: RaftHandle,
    observation: watch::Receiver<Observation>,
    lease: watch::Sender<Option<Lease>>,
    riding: Arc<Riding>,
    ran: watch::Sender<Instant>,
    cancel: CancellationToken,
) {
    let me = handle.id();
    let mut state_rx = handle.subscribe();
    loop {
        ran.send_replace(Instant::now());
        let state = handle.cluster_state();
        let mut interval = Duration::from_millis(state.config.heartbeat_interval_ms);
        if state.handover_active(raftgres_storage::now_ms()) {
            // The controller waits on fresh reports during a handover.
            interval = interval.min(Duration::from_millis(50));
        }
        let ttl = Duration::from_millis(state.config.lease_ttl_ms);
        handle.witness().set_longest_lease(ttl);
        let epoch = state.primary.as_ref().filter(|p| p.node == me).map(|p| p.epoch);
        let hb = Heartbeat { node: me, epoch, report: observation.borrow().clone() };
        let sent = Instant::now();
        let next = tokio::time::Instant::from_std(sent + interval);
        let encoded = encode_heartbeat(&hb);
        // Rides only while it asks for no lease; it keeps being sent on its
        // own while the leader's notes do not arrive, during a handover
        // (which waits on fresh reports), and on the leader itself.
        let rides = epoch.is_none();
        riding.set_outgoing(match &encoded {
            Ok(payload) if rides => Some((payload.clone(), sent, sent + 2 * interval)),
            _ => None,
        });
        let carried = rides
            && !state.handover_active(raftgres_storage::now_ms())
            && handle.leader().is_some_and(|(l, _)| l != me)
            && riding.carried(sent, 2 * interval);
        match encoded {
            Err(e) => tracing::error!("failed to encode a heartbeat: {e}"),
            Ok(_) if carried => {}
            Ok(payload) => {
                riding.sent.fetch_add(1, Ordering::Relaxed);
                let call = handle.call_leader(payload, ttl);
                let reply = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = call => r,
                };
                let reply =
                    reply.map_err(|e| e.to_string()).and_then(|bytes| decode_reply(&bytes).map_err(|e| e.to_string()));
                if let Ok(r) = &reply {
                    riding.primary_lsn.send_replace(r.primary_lsn);
                }
                match reply {
                    Ok(HeartbeatReply { granted: Some(e), .. }) if Some(e) == epoch => {
                        let renewed = Lease { epoch: e, expires_at: sent + ttl };
                        if lease.borrow().is_none_or(|l| l.epoch != e) {
                            tracing::info!(epoch = e, "primary lease acquired");
                        }
                        lease.send_replace(Some(renewed));
                    }
                    Ok(_) => {
                        if epoch.is_some() {
                            tracing::debug!(?epoch, "lease not granted");
                        }
                    }
                    Err(e) => tracing::debug!("heartbeat failed: {e}"),
                }
            }
        }
        // A new epoch naming this node gets its lease at once.
        state_rx.borrow_and_update();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = state_rx.changed() => {}
        }
    }
}

/// Returns at the first change of the lease that is news to a turn: not a
/// renewal (see [`Lease::renewed_by`]) of `seen`. Never returns once the
/// heartbeat task is gone.
pub async fn news(rx: &mut watch::Receiver<Option<Lease>>, mut seen: Option<Lease>, margin: Duration) {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        let next = *rx.borrow_and_update();
        match (seen, next) {
            (Some(held), Some(renewed)) if held.renewed_by(&renewed, Instant::now(), margin) => seen = next,
            _ => return,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cluster whose node 1 (`pg1`) is primary in epoch 1.
    pub(crate) fn one_primary() -> ClusterState {
        use raftgres_storage::{ApplyContext, Command, DynamicConfig, ElectionReason, Member};
        let mut state = ClusterState::default();
        let cmds = [
            Command::InitializeCluster { cluster_id: "c".into(), config: DynamicConfig::default() },
            Command::AddMember { member: Member::new(1, "pg1") },
            Command::ElectPrimary { if_epoch: 0, node: 1, reason: ElectionReason::Bootstrap },
        ];
        for (i, c) in cmds.iter().enumerate() {
            state.apply(c, ApplyContext { index: i as u64 + 1, time_ms: 0 }).expect("applies");
        }
        state
    }

    #[test]
    fn writes_stop_a_margin_before_the_lease_ends() {
        let now = Instant::now();
        let lease = Lease { epoch: 3, expires_at: now + Duration::from_millis(1000) };
        let margin = Duration::from_millis(300);
        assert!(lease.allows_writes(3, now, margin));
        assert!(!lease.allows_writes(4, now, margin), "another epoch");
        assert!(lease.allows_writes(3, now + Duration::from_millis(699), margin));
        assert!(!lease.allows_writes(3, now + Duration::from_millis(700), margin));
    }

    #[test]
    fn a_renewal_of_a_lease_that_allows_writes_is_no_news() {
        let now = Instant::now();
        let margin = Duration::from_millis(500);
        let ms = Duration::from_millis;
        let held = Lease { epoch: 3, expires_at: now + ms(1500) };
        let renewed = Lease { epoch: 3, expires_at: now + ms(2000) };
        assert!(held.renewed_by(&renewed, now, margin));
        assert!(!held.renewed_by(&Lease { epoch: 4, ..renewed }, now, margin), "another epoch");
        assert!(!held.renewed_by(&Lease { expires_at: now + ms(1000), ..renewed }, now, margin), "shorter");
        // The held lease no longer allows writes: the renewal lets writes
        // resume, which is news.
        assert!(!held.renewed_by(&renewed, now + ms(1000), margin));
    }

    #[test]
    fn heartbeats_carry_a_version_and_the_untagged_format_is_still_understood() {
        let hb = Heartbeat { node: 82, epoch: Some(5), report: Observation { running: true, ..Default::default() } };
        let bytes = encode_heartbeat(&hb).unwrap();
        assert!(bytes.starts_with(b"RGHB\x01"), "{bytes:?}");
        assert_eq!(decode_heartbeat(&bytes).unwrap(), (1, hb.clone()));
        // The untagged format of earlier builds (node 82 starts with the
        // tag's first byte, 'R') still decodes, and its reply is untagged
        // so that sender can read it.
        let old = encoding::encode("hb", &hb).unwrap();
        assert_eq!(decode_heartbeat(&old).unwrap(), (0, hb.clone()));
        let reply = HeartbeatReply { granted: Some(5), primary_lsn: Some(7) };
        let old_reply = encode_reply(0, &reply).unwrap();
        assert_eq!(encoding::decode::<HeartbeatReply>("r", &old_reply).unwrap(), reply);
        assert_eq!(decode_reply(&encode_reply(1, &reply).unwrap()).unwrap(), reply);
        assert_eq!(decode_reply(&old_reply).unwrap(), reply);
        // A version from the future is refused by name, not misread.
        let mut future = b"RGHB\x09".to_vec();
        future.extend_from_slice(&encoding::encode("hb", &hb).unwrap());
        let e = decode_heartbeat(&future).unwrap_err();
        assert!(matches!(e, HeartbeatError::UnsupportedVersion { version: 9, newest: 1 }), "{e}");
    }

    #[test]
    fn no_lease_for_an_epoch_being_deposed() {
        let state = crate::lease::tests::one_primary();
        let t0 = Instant::now();
        let mut v = Views::default();
        v.nodes.insert(1, NodeView { last_contact: t0, report: Observation::default(), last_grant: None });
        assert_eq!(v.grant(&state, 1, 1, t0), Some(1));
        assert_eq!(v.grant(&state, 2, 1, t0), None, "not the primary");
        assert_eq!(v.grant(&state, 1, 2, t0), None, "another epoch");
        // The controller decided to fail over: a heartbeat confirmed now
        // gets no lease, and the recorded grant does not move.
        v.depose(1);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(v.grant(&state, 1, 1, later), None);
        assert_eq!(v.nodes[&1].last_grant, Some((1, t0)));
        // A grant of an earlier heartbeat confirmed late does not move
        // the recorded grant back.
        v.undepose(1);
        assert_eq!(v.grant(&state, 1, 1, later), Some(1));
        assert_eq!(v.grant(&state, 1, 1, t0), Some(1));
        assert_eq!(v.nodes[&1].last_grant, Some((1, later)));
        v.depose(1);
        // A rejected election gives the epoch back; a new leadership
        // forgets the mark.
        v.undepose(1);
        assert_eq!(v.grant(&state, 1, 1, later), Some(1));
        v.depose(1);
        v.reset();
        assert_eq!(v.deposing, None);
    }

    #[test]
    fn only_a_report_that_asks_for_no_lease_rides_and_it_counts_from_when_it_was_composed() {
        let state = crate::lease::tests::one_primary();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let report =
            |node, epoch, running| Heartbeat { node, epoch, report: Observation { running, ..Default::default() } };
        let mut v = Views::default();
        // The primary's contact is its lease: a report never stands in
        // for it, with or without the epoch.
        assert!(v.record_ridden(&state, 1, report(1, Some(1), true), t0).is_err());
        assert!(v.record_ridden(&state, 1, report(1, None, true), t0).is_err());
        assert!(v.record_ridden(&state, 2, report(3, None, true), t0).is_err(), "another node's report");
        assert!(v.nodes.is_empty());
        // A replica's report counts from when it was composed.
        v.record_ridden(&state, 2, report(2, None, true), t0).expect("recorded");
        assert_eq!(v.nodes[&2].last_contact, t0);
        assert!(v.nodes[&2].report.running);
        // An older one (a heartbeat sent on its own arrived meanwhile)
        // moves nothing back.
        v.nodes.get_mut(&2).expect("recorded").last_contact = t0 + ms(200);
        v.record_ridden(&state, 2, report(2, None, false), t0 + ms(100)).expect("accepted");
        assert_eq!(v.nodes[&2].last_contact, t0 + ms(200));
        assert!(v.nodes[&2].report.running, "the newer report is kept");
        v.record_ridden(&state, 2, report(2, None, false), t0 + ms(300)).expect("recorded");
        assert_eq!(v.nodes[&2].last_contact, t0 + ms(300));
        assert!(!v.nodes[&2].report.running);
    }

    #[test]
    fn heartbeat_round_trips() {
        let hb = Heartbeat { node: 2, epoch: Some(5), report: Observation { running: true, ..Default::default() } };
        let bytes = encoding::encode("hb", &hb).unwrap();
        assert_eq!(encoding::decode::<Heartbeat>("hb", &bytes).unwrap(), hb);
        let reply = HeartbeatReply { granted: None, primary_lsn: Some(7) };
        let bytes = encoding::encode("r", &reply).unwrap();
        assert_eq!(encoding::decode::<HeartbeatReply>("r", &bytes).unwrap(), reply);
    }
}
