//! The set workload: every worker inserts unique integers through the
//! primary port, as fast as it can (no pause between operations, so that
//! writes acknowledged by a primary that is about to lose its role are
//! plentiful). After the final heal every node's table is read directly:
//! an acknowledged insert missing from the final primary's read is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_postgres::Client;

use super::{Failure, OP_TIMEOUT, Shared, classify, connect, timed_out};
use crate::history::{F, OpType, Value};
use crate::hosts::PRIMARY_PORT;

/// One set worker, until `shared.stop`.
pub async fn worker(shared: Arc<Shared>, worker: u64, next: Arc<AtomicI64>) {
    let rec = &shared.recorder;
    let mut process = worker;
    let mut client: Option<Client> = None;
    while !shared.stopped() {
        let id = next.fetch_add(1, Ordering::SeqCst);
        rec.record(process, OpType::Invoke, F::Add, Value::Int(id), None, None);
        match add(&mut client, id).await {
            Ok(()) => {
                rec.record(process, OpType::Ok, F::Add, Value::Int(id), None, None);
            }
            Err(failure) => {
                let connecting = client.is_none();
                rec.record(process, failure.kind, F::Add, Value::Int(id), None, Some(failure.error));
                if failure.kind == OpType::Info {
                    process += shared.concurrency;
                }
                client = None;
                // Nothing to connect to: do not spin.
                if connecting {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn add(client: &mut Option<Client>, id: i64) -> Result<(), Failure> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = None;
        let c = connect("127.0.0.1", PRIMARY_PORT, super::CONNECT_TIMEOUT)
            .await
            .map_err(|error| Failure { kind: OpType::Fail, error })?;
        *client = Some(c);
    }
    let c = client.as_ref().expect("connected above");
    // An autocommit INSERT is its own COMMIT: once sent, it may have
    // happened.
    match tokio::time::timeout(OP_TIMEOUT, c.execute("INSERT INTO jepsen_set (id) VALUES ($1)", &[&id])).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(classify(&e, true)),
        Err(_) => Err(timed_out("INSERT", true)),
    }
}

/// Reads every id directly on `node`'s PostgreSQL at `host`, recorded as a
/// `read` with `node`.
pub async fn final_read(shared: &Shared, process: u64, node: &str, host: &str) -> bool {
    let rec = &shared.recorder;
    rec.record(process, OpType::Invoke, F::Read, Value::None, Some(node.to_string()), None);
    let result = async {
        let c = connect(host, crate::hosts::PG_PORT, super::CONNECT_TIMEOUT).await?;
        let rows = tokio::time::timeout(Duration::from_secs(30), c.query("SELECT id FROM jepsen_set ORDER BY id", &[]))
            .await
            .map_err(|_| "client timeout during SELECT".to_string())?
            .map_err(|e| super::describe(&e))?;
        Ok::<_, String>(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<i64>>())
    }
    .await;
    match result {
        Ok(ids) => {
            rec.record(process, OpType::Ok, F::Read, Value::Ints(ids), Some(node.to_string()), None);
            true
        }
        Err(error) => {
            rec.record(process, OpType::Fail, F::Read, Value::None, Some(node.to_string()), Some(error));
            false
        }
    }
}
