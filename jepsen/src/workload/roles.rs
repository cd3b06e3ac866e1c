//! The role sampler: every [`INTERVAL`] each member's daemon is asked for
//! its `/patroni` document, and the role it reports (`down` when it does
//! not answer in time) goes to `roles.jsonl`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Lines, Recorder};
use crate::hosts::{Cluster, futures_join, status};
use crate::record::RoleSample;

pub const INTERVAL: Duration = Duration::from_millis(250);
const TIMEOUT: Duration = Duration::from_millis(200);

/// The latest role of each member, by name.
pub type Latest = Arc<Mutex<BTreeMap<String, String>>>;

/// Samples until `stop`.
pub async fn sampler(
    cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    out: Arc<Lines>,
    latest: Latest,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let members = cluster.members();
        let time = recorder.now();
        let answers = futures_join(members.iter().map(|(h, _)| status(h.addr, TIMEOUT)).collect()).await;
        let mut now = BTreeMap::new();
        for ((_, member), answer) in members.iter().zip(answers) {
            let role = match answer {
                Some(doc) => doc["role"].as_str().unwrap_or("unknown").to_string(),
                None => "down".to_string(),
            };
            out.write(&RoleSample { time, node: member.name.clone(), role: role.clone() });
            now.insert(member.name.clone(), role);
        }
        *latest.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}
