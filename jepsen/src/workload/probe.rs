//! The dual-primary probes: one prober per host writes to that host's
//! PostgreSQL directly (not through HAProxy) every [`INTERVAL`], with a short
//! timeout, into a table of its own. An `ok` probe means that server took a
//! write at that moment; two nodes with overlapping `ok` probes were both
//! writable at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use super::{Shared, classify, connect};
use crate::history::{F, OpType, Value};
use crate::hosts::{Cluster, PG_PORT};

pub const INTERVAL: Duration = Duration::from_millis(100);
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// The first process number of the prober of `slot`; a retired prober
/// process continues as the next number.
pub fn base_process(slot: usize) -> u64 {
    1_000_000 * slot as u64
}

/// Probes the member on `slot` (whichever it is) until `shared.stop`.
pub async fn prober(shared: Arc<Shared>, cluster: Arc<Cluster>, slot: usize) {
    let rec = &shared.recorder;
    let host = cluster.host(slot);
    let addr = host.addr.to_string();
    let mut process = base_process(slot);
    let mut client: Option<(String, Client)> = None;
    let mut seq: i64 = 0;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.stopped() {
        tick.tick().await;
        let Some(node) = host.name() else {
            client = None;
            continue;
        };
        if client.as_ref().is_some_and(|(n, c)| *n != node || c.is_closed()) {
            client = None;
        }
        seq += 1;
        rec.record(process, OpType::Invoke, F::Probe, Value::Int(seq), Some(node.clone()), None);
        let (kind, error) = match &client {
            Some(_) => (OpType::Ok, None),
            None => match connect(&addr, PG_PORT, TIMEOUT).await {
                Ok(c) => {
                    client = Some((node.clone(), c));
                    (OpType::Ok, None)
                }
                Err(e) => (OpType::Fail, Some(e)),
            },
        };
        let (kind, error) = match (&client, kind) {
            (Some((_, c)), OpType::Ok) => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&node, &seq];
                let insert = c.execute("INSERT INTO jepsen_probe (node, seq) VALUES ($1, $2)", &params);
                match tokio::time::timeout(TIMEOUT, insert).await {
                    Ok(Ok(_)) => (OpType::Ok, None),
                    Ok(Err(e)) => {
                        let f = classify(&e, true);
                        (f.kind, Some(f.error))
                    }
                    Err(_) => (OpType::Info, Some("client timeout during INSERT".to_string())),
                }
            }
            _ => (kind, error),
        };
        rec.record(process, kind, F::Probe, Value::Int(seq), Some(node), error);
        if kind != OpType::Ok {
            client = None;
        }
        if kind == OpType::Info {
            process += 1;
        }
    }
}
