//! Prometheus `/metrics` (text format, through `prometheus-client`): Raft,
//! role, WAL positions, lag, lease and failover counters, under
//! `raftgres_*`, plus the `patroni_*` names dashboards built for Patroni
//! read. Every series carries `scope` (cluster) and `name` (member).

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Shared, is_primary};

fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

fn gauge_f(r: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

fn counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    r.register(name, help, c);
}

/// The leader's commit index: the highest index a quorum of voters holds.
fn commit_index(s: &Shared) -> Option<u64> {
    let m = s.handle.metrics().borrow().clone();
    let replication = m.replication.as_ref()?;
    let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|id| {
            if *id == m.id {
                m.last_log_index.unwrap_or(0)
            } else {
                replication.get(id).and_then(|l| l.as_ref()).map(|l| l.index).unwrap_or(0)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(voters.len() / 2).copied()
}

pub fn render(s: &Shared) -> String {
    let labels = [
        (Cow::Borrowed("scope"), Cow::Owned(s.cluster_id.clone())),
        (Cow::Borrowed("name"), Cow::Owned(s.node_name.clone())),
    ];
    let mut root = Registry::with_labels(labels.into_iter());
    let o = s.observation.borrow().clone();
    let applied = s.handle.local_state();
    let state = &applied.state;
    let raft = s.handle.status();
    let primary = is_primary(s);
    let replica = o.is_replica();
    let pending = !s.parameters.borrow().pending_restart.is_empty();
    let sync = state.is_sync_standby(s.handle.id());
    let quorum = state.is_quorum_standby(s.handle.id());
    let lease_s =
        s.lease.borrow().map(|l| l.expires_at.saturating_duration_since(Instant::now()).as_secs_f64()).unwrap_or(0.0);
    let primary_lsn = (*s.primary_lsn.borrow()).max(o.receive_lsn);
    let lag = if replica { primary_lsn.zip(o.replay_lsn).map(|(p, r)| p.saturating_sub(r)) } else { None };
    {
        let r = root.sub_registry_with_prefix("raftgres");
        gauge(r, "raft_term", "Current Raft term", raft.term as i64);
        gauge(r, "raft_leader", "Node id of the Raft leader (0: none known)", raft.leader.unwrap_or(0) as i64);
        gauge(r, "raft_is_leader", "1 if this node is the Raft leader", raft.is_leader() as i64);
        gauge(r, "raft_is_voter", "1 if this node is a Raft voter", raft.voters.contains(&raft.id) as i64);
        gauge(r, "raft_last_log_index", "Index of the last Raft log entry", raft.last_log_index.unwrap_or(0) as i64);
        gauge(
            r,
            "raft_applied_index",
            "Index of the last applied Raft log entry",
            raft.last_applied.unwrap_or(0) as i64,
        );
        if let Some(c) = commit_index(s) {
            gauge(r, "raft_commit_index", "Highest index a quorum holds (leader only)", c as i64);
        }
        gauge(r, "epoch", "Current primary epoch", state.epoch as i64);
        gauge(r, "primary", "1 if this node is the primary (named, leased, out of recovery)", primary as i64);
        gauge(r, "replica", "1 if this node's PostgreSQL is a running replica", replica as i64);
        gauge(r, "postgres_up", "1 if PostgreSQL answers SQL", o.accepting as i64);
        gauge(r, "postgres_running", "1 if a postmaster runs", o.running as i64);
        gauge(r, "postgres_timeline", "PostgreSQL timeline", o.timeline.unwrap_or(0) as i64);
        gauge(r, "postgres_streaming", "1 if the WAL receiver streams", o.streaming as i64);
        gauge(r, "xlog_location", "Primary: current WAL write position", o.write_lsn.unwrap_or(0) as i64);
        gauge(r, "xlog_received_location", "Replica: last WAL received", o.receive_lsn.unwrap_or(0) as i64);
        gauge(r, "xlog_replayed_location", "Replica: last WAL replayed", o.replay_lsn.unwrap_or(0) as i64);
        if let Some(lag) = lag {
            gauge(r, "replication_lag_bytes", "Replica: bytes replayed behind the primary", lag as i64);
        }
        gauge_f(r, "lease_remaining_seconds", "Time left on this node's primary lease", lease_s);
        gauge(r, "maintenance", "1 while automatic failover is paused", state.maintenance as i64);
        gauge(
            r,
            "failover_blocked",
            "1 on the Raft leader while the lost primary cannot be replaced automatically (reason: raftctl list)",
            s.failover_blocked.borrow().is_some() as i64,
        );
        if let Some(p) = state.position {
            gauge(
                r,
                "primary_recorded_lsn",
                "The primary's WAL position as last recorded in the cluster state",
                p.lsn as i64,
            );
        }
        if let Some(t) = state.timeline {
            gauge(r, "recorded_timeline", "The timeline of the last completed promotion", t.timeline as i64);
        }
        gauge(r, "members", "Registered members", state.members.len() as i64);
        gauge(r, "pending_restart", "1 if a changed parameter waits for a restart of this node", pending as i64);
        gauge(r, "sync_standby", "1 if this node is in the committed synchronous-standby set", sync as i64);
        gauge(r, "quorum_standby", "1 if this node is in the committed quorum set", quorum as i64);
        gauge(r, "sync_standbys", "Members of the committed synchronous-standby set", state.sync_standbys.len() as i64);
        gauge(
            r,
            "sync_quorum",
            "How many of the synchronous standbys each commit waits for (all of them outside quorum mode)",
            state.sync_record().map_or(0, |(_, k)| k as i64),
        );
        if let Some(vip) = &s.vip {
            let v = vip.borrow().clone();
            gauge(r, "vip_held", "1 if the virtual IP is bound on this node", v.held as i64);
            counter(
                r,
                "vip_failures",
                "Netlink calls on the virtual IP that failed since the daemon started",
                v.failures,
            );
            gauge(r, "vip_error", "1 while the last netlink call on the virtual IP failed", v.error.is_some() as i64);
        }
        let (sent, attached) = s.heartbeats.counts();
        counter(r, "lease_heartbeats_sent", "Lease heartbeats this node sent to the Raft leader on their own", sent);
        counter(
            r,
            "lease_heartbeats_carried",
            "Heartbeats of this node (reports, no lease) carried to the Raft leader on AppendEntries replies",
            attached,
        );
        counter(r, "failovers", "Failovers (automatic and manual) since the cluster was created", state.failovers);
        counter(r, "switchovers", "Switchovers since the cluster was created", state.switchovers);
    }
    {
        let r = root.sub_registry_with_prefix("patroni");
        gauge(r, "postgres_running", "Value is 1 if Postgres is running, 0 otherwise.", o.accepting as i64);
        gauge(r, "primary", "Value is 1 if this node is the leader, 0 otherwise.", primary as i64);
        gauge(r, "replica", "Value is 1 if this node is a replica, 0 otherwise.", replica as i64);
        gauge(r, "xlog_location", "Current location of the Postgres transaction log.", o.write_lsn.unwrap_or(0) as i64);
        gauge(r, "xlog_received_location", "Current location of the received log.", o.receive_lsn.unwrap_or(0) as i64);
        gauge(r, "xlog_replayed_location", "Current location of the replayed log.", o.replay_lsn.unwrap_or(0) as i64);
        gauge(r, "postgres_streaming", "Value is 1 if Postgres is streaming.", o.streaming as i64);
        gauge(r, "postgres_timeline", "Postgres timeline of this node.", o.timeline.unwrap_or(0) as i64);
        let unlocked = state.primary.is_none() && s.handle.status().is_member();
        gauge(r, "cluster_unlocked", "Value is 1 if the cluster is unlocked.", unlocked as i64);
        gauge(r, "is_paused", "Value is 1 if auto failover is disabled.", state.maintenance as i64);
        gauge(r, "pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.", pending as i64);
        gauge(r, "sync_standby", "Value is 1 if this node is a synchronous standby, 0 otherwise.", sync as i64);
        gauge(r, "quorum_standby", "Value is 1 if this node is a quorum standby, 0 otherwise.", quorum as i64);
    }
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &root) {
        tracing::error!("failed to encode metrics: {e}");
    }
    out
}

pub async fn metrics(State(s): State<Shared>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], render(&s))
        .into_response()
}
