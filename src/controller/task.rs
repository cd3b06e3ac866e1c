//! The controller loop: each heartbeat interval, on the Raft leader only,
//! decide and propose.

use std::time::{Duration, Instant};

use raftgres_raft::RaftHandle;
use raftgres_storage::DynamicConfig;
use tokio_util::sync::CancellationToken;

use super::decide::{Decision, Input, decide};
use crate::agent::plan::handover_active;
use crate::lease::SharedViews;
use crate::ops::now_ms;

/// How often the controller decides while a switchover is pending.
const HANDOVER_INTERVAL: Duration = Duration::from_millis(50);

pub async fn run(
    handle: RaftHandle,
    views: SharedViews,
    cluster_id: String,
    initial_config: DynamicConfig,
    cancel: CancellationToken,
) {
    let me = handle.id();
    let mut last_wait = String::new();
    let mut epoch_seen: Option<(u64, Instant)> = None;
    let mut handover_since: Option<Instant> = None;
    let mut state_rx = handle.subscribe();
    loop {
        let state = handle.local_state().state;
        let mut interval = Duration::from_millis(state.config.heartbeat_interval_ms.max(50));
        if handover_active(&state, now_ms()) {
            // A handover waits on replicas' reports; look often.
            interval = interval.min(HANDOVER_INTERVAL);
        }
        if state.primary.is_none() && state.switchover.is_some() {
            handover_since.get_or_insert_with(Instant::now);
        } else {
            handover_since = None;
        }
        let status = handle.status();
        let is_leader = status.leader == Some(me) && status.role == "leader";
        let decision = {
            let mut v = views.lock().expect("views lock poisoned");
            if is_leader && v.leader_term != Some(status.term) {
                // A new term: whatever was recorded belongs to an earlier
                // leadership, possibly interrupted by another leader's.
                v.leader_term = Some(status.term);
                v.leader_since = None;
                v.nodes.clear();
                epoch_seen = None;
            }
            if !is_leader {
                v.leader_term = None;
                if v.leader_since.take().is_some() {
                    tracing::info!("controller: no longer the Raft leader");
                }
                v.nodes.clear();
                epoch_seen = None;
                None
            } else {
                let leader_since = *v.leader_since.get_or_insert_with(|| {
                    tracing::info!("controller: this node leads; waiting out a full lease before any failover");
                    Instant::now()
                });
                let epoch_since = match epoch_seen {
                    Some((e, at)) if e == state.epoch => at,
                    _ => {
                        let now = Instant::now();
                        epoch_seen = Some((state.epoch, now));
                        now
                    }
                };
                Some(decide(&Input {
                    state: &state,
                    views: &v.nodes,
                    leader_since,
                    epoch_since,
                    now: Instant::now(),
                    cluster_id: &cluster_id,
                    initial_config: &initial_config,
                    handover_since,
                }))
            }
        };
        match decision {
            Some(Decision::Propose(cmd)) => {
                last_wait.clear();
                tracing::info!(command = %cmd, "controller proposes");
                match handle.propose(cmd.clone()).await {
                    Ok(p) => match p.outcome {
                        Ok(events) => {
                            for e in events {
                                tracing::info!("controller: {e}");
                            }
                        }
                        Err(r) => {
                            tracing::warn!(command = %cmd, "controller proposal rejected: {r}")
                        }
                    },
                    Err(e) => tracing::warn!(command = %cmd, "failed to propose: {e}"),
                }
            }
            Some(Decision::Wait(why)) if !why.is_empty() && why != last_wait => {
                tracing::info!("controller waits: {why}");
                last_wait = why;
            }
            _ => {}
        }
        state_rx.borrow_and_update();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = state_rx.changed() => {}
        }
    }
}
