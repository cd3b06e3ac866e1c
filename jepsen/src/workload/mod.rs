//! The workloads: clients that write through HAProxy's primary port (they
//! never ask the harness who is primary), the per-node probes that write to
//! each PostgreSQL directly, and the role sampler. Everything they see goes
//! into the history through one [`Recorder`].
//!
//! Outcome model (what `ok`, `fail` and `info` mean here):
//! - `ok`: the server acknowledged the operation (COMMIT returned).
//! - `fail`: it certainly did not happen: an error before COMMIT was sent
//!   (the transaction cannot have committed, whatever the error), or an
//!   error with a definite SQLSTATE on COMMIT itself (a serialization
//!   failure, a read-only server, a constraint).
//! - `info`: it may or may not have happened: the connection was lost, a
//!   client-side timeout fired, or the server ended the session (SQLSTATE
//!   classes 08, 57, 58, XX), during or after COMMIT. The process that saw
//!   it is retired and its worker goes on as `process + concurrency`.

pub mod append;
pub mod probe;
pub mod roles;
pub mod set;

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};

use crate::history::{F, Op, OpType, Value};

/// How long a client may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one operation may take before it is abandoned.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Operation counts, for the progress line.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

enum Msg {
    Op(Op),
    Close(tokio::sync::oneshot::Sender<std::io::Result<()>>),
}

/// The history's single writer: indexes and timestamps are taken under one
/// lock, in the order records are sent, so `index` follows `time` and the
/// file is in real-time order.
pub struct Recorder {
    start: Instant,
    next: Mutex<u64>,
    tx: mpsc::UnboundedSender<Msg>,
    /// Transaction and add completions (probes and final reads aside).
    pub counts: Counts,
}

impl Recorder {
    /// Starts the writer task appending to `path`. `start` is the run's
    /// clock origin.
    pub fn start(path: &Path, start: Instant) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        tokio::spawn(async move {
            let mut out = std::io::BufWriter::new(file);
            let mut result = Ok(());
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Op(op) => {
                        if result.is_ok() {
                            result = crate::history::write_line(&mut out, &op);
                        }
                    }
                    Msg::Close(done) => {
                        let flushed = std::mem::replace(&mut result, Ok(())).and_then(|()| out.flush());
                        let _ = done.send(flushed);
                    }
                }
            }
        });
        Ok(Recorder { start, next: Mutex::new(0), tx, counts: Counts::default() })
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records one operation; returns its time.
    pub fn record(
        &self,
        process: u64,
        kind: OpType,
        f: F,
        value: Value,
        node: Option<String>,
        error: Option<String>,
    ) -> u64 {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let time = self.now();
        let op = Op { index: *next, time, process, kind, f, value, node, error };
        *next += 1;
        let _ = self.tx.send(Msg::Op(op));
        drop(next);
        if matches!(f, F::Txn | F::Add) {
            let counter = match kind {
                OpType::Invoke => None,
                OpType::Ok => Some(&self.counts.ok),
                OpType::Fail => Some(&self.counts.fail),
                OpType::Info => Some(&self.counts.info),
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        time
    }

    /// Writes out everything recorded so far and flushes the file.
    pub async fn flush(&self) -> std::io::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Close(done)).is_err() {
            return Err(std::io::Error::other("the history writer stopped"));
        }
        wait.await.map_err(|_| std::io::Error::other("the history writer stopped"))?
    }
}

/// A JSON-lines file written by several tasks (roles, nemesis).
pub struct Lines {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl Lines {
    pub fn create(path: &Path) -> std::io::Result<Lines> {
        Ok(Lines { out: Mutex::new(std::io::BufWriter::new(std::fs::File::create(path)?)) })
    }

    pub fn write<T: serde::Serialize>(&self, record: &T) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = serde_json::to_writer(&mut *out, record);
        let _ = out.write_all(b"\n");
    }

    pub fn flush(&self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// What a client saw of an operation that did not succeed.
#[derive(Debug)]
pub struct Failure {
    pub kind: OpType,
    pub error: String,
}

/// How an error maps onto the outcome model. `committing`: COMMIT (or an
/// autocommit statement, which is its own commit) was sent.
pub fn classify(err: &tokio_postgres::Error, committing: bool) -> Failure {
    let error = describe(err);
    if !committing {
        return Failure { kind: OpType::Fail, error };
    }
    let ambiguous = match err.code() {
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "57" | "58" | "XX")
        }
        None => true,
    };
    Failure { kind: if ambiguous { OpType::Info } else { OpType::Fail }, error }
}

/// A timeout: unknown once COMMIT was sent, a failure before.
pub fn timed_out(what: &str, committing: bool) -> Failure {
    Failure {
        kind: if committing { OpType::Info } else { OpType::Fail },
        error: format!("client timeout during {what}"),
    }
}

/// An error's text with its SQLSTATE, when the server sent one.
pub fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => format!("{err:#}"),
    }
}

/// Connects to PostgreSQL at `host:port` as the superuser, bounded by
/// `timeout`; the connection runs on its own task.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user("postgres")
        .password(crate::hosts::PG_PASSWORD)
        .dbname("postgres")
        .application_name("raftgres-jepsen")
        .connect_timeout(timeout)
        .keepalives_idle(Duration::from_secs(2))
        .tcp_user_timeout(Duration::from_secs(3));
    match tokio::time::timeout(timeout, config.connect(NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(format!("connect: {}", describe(&e))),
        Err(_) => Err("connect: client timeout".to_string()),
    }
}

/// Everything the workers share.
pub struct Shared {
    pub recorder: std::sync::Arc<Recorder>,
    /// Number of workers: a retired process `p` continues as
    /// `p + concurrency`.
    pub concurrency: u64,
    /// Set when the workers must stop.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// The SQL that creates the workloads' tables.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS jepsen_set (id bigint PRIMARY KEY);
CREATE TABLE IF NOT EXISTS jepsen_append (k bigint PRIMARY KEY, v text NOT NULL);
CREATE TABLE IF NOT EXISTS jepsen_probe (node text NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_indexed_in_the_order_they_are_written() {
        let dir = std::env::temp_dir().join(format!("rgj-test-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let rec = Recorder::start(&path, Instant::now()).unwrap();
        rec.record(0, OpType::Invoke, F::Add, Value::Int(1), None, None);
        rec.record(0, OpType::Info, F::Add, Value::Int(1), None, Some("lost".into()));
        rec.record(5, OpType::Ok, F::Read, Value::Ints(vec![1]), Some("pg1".into()), None);
        rec.flush().await.unwrap();
        let ops = crate::history::read(&path).unwrap();
        assert_eq!(ops.iter().map(|o| o.index).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(ops.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(rec.counts.info.load(Ordering::Relaxed), 1);
        assert_eq!(rec.counts.ok.load(Ordering::Relaxed), 0, "reads are not counted");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
