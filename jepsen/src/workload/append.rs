//! The list-append workload (Elle's): SERIALIZABLE transactions of one to
//! four micro-operations over a small window of keys, each an append of an
//! element unique to its key or a read of the key's whole list, through the
//! primary port. A key is retired after [`MAX_WRITES`] appends and a fresh
//! one takes its place, so lists stay short enough to check.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{Instant, timeout_at};
use tokio_postgres::{Client, IsolationLevel};

use super::{Failure, OP_TIMEOUT, Shared, classify, connect, timed_out};
use crate::history::{Elem, F, Key, Mop, OpType, Value};
use crate::hosts::PRIMARY_PORT;

/// Keys in use at once.
pub const KEY_COUNT: usize = 8;
/// Appends to a key before it is retired.
pub const MAX_WRITES: i64 = 256;

const APPEND: &str = "INSERT INTO jepsen_append AS t (k, v) VALUES ($1, $2) \
                      ON CONFLICT (k) DO UPDATE SET v = t.v || ',' || excluded.v";
const READ: &str = "SELECT v FROM jepsen_append WHERE k = $1";

/// The keys in use and the next element of each.
#[derive(Debug)]
pub struct Keys {
    inner: Mutex<KeysInner>,
}

#[derive(Debug)]
struct KeysInner {
    active: Vec<Key>,
    /// Next element to append, per key ever used.
    next_elem: BTreeMap<Key, Elem>,
    next_key: Key,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new()
    }
}

impl Keys {
    pub fn new() -> Keys {
        let active: Vec<Key> = (0..KEY_COUNT as Key).collect();
        let next_elem = active.iter().map(|k| (*k, 1)).collect();
        Keys { inner: Mutex::new(KeysInner { active, next_elem, next_key: KEY_COUNT as Key }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeysInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transaction of 1..=4 micro-operations: appends take the key's next
    /// element (and retire it at [`MAX_WRITES`]), reads carry `None`.
    pub fn txn(&self, rng: &mut impl Rng) -> Vec<Mop> {
        let len = rng.random_range(1..=4);
        let mut inner = self.lock();
        let mut mops = Vec::with_capacity(len);
        for _ in 0..len {
            let slot = rng.random_range(0..inner.active.len());
            let key = inner.active[slot];
            if rng.random_bool(0.5) {
                let elem = inner.next_elem.get(&key).copied().unwrap_or(1);
                inner.next_elem.insert(key, elem + 1);
                if elem >= MAX_WRITES {
                    let fresh = inner.next_key;
                    inner.next_key += 1;
                    inner.active[slot] = fresh;
                    inner.next_elem.insert(fresh, 1);
                }
                mops.push(Mop::Append(key, elem));
            } else {
                mops.push(Mop::Read(key, None));
            }
        }
        mops
    }

    /// Every key ever used.
    pub fn all(&self) -> Vec<Key> {
        self.lock().next_elem.keys().copied().collect()
    }
}

/// One list-append worker, until `shared.stop`.
pub async fn worker(shared: Arc<Shared>, worker: u64, keys: Arc<Keys>, seed: u64) {
    let rec = &shared.recorder;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (worker.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let mut process = worker;
    let mut client: Option<Client> = None;
    while !shared.stopped() {
        let mops = keys.txn(&mut rng);
        rec.record(process, OpType::Invoke, F::Txn, Value::Txn(mops.clone()), None, None);
        match run(&mut client, &mops).await {
            Ok(done) => {
                rec.record(process, OpType::Ok, F::Txn, Value::Txn(done), None, None);
            }
            Err(failure) => {
                let connecting = client.is_none();
                rec.record(process, failure.kind, F::Txn, Value::Txn(mops), None, Some(failure.error));
                if failure.kind == OpType::Info {
                    process += shared.concurrency;
                }
                client = None;
                if connecting {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Parses a stored list, `"1,2,3"`.
pub fn parse_list(text: &str) -> Result<Vec<Elem>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(|e| e.parse::<Elem>().map_err(|_| format!("not a list element: {e:?} in {text:?}"))).collect()
}

async fn run(client: &mut Option<Client>, mops: &[Mop]) -> Result<Vec<Mop>, Failure> {
    let deadline = Instant::now() + OP_TIMEOUT;
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = None;
        let c = connect("127.0.0.1", PRIMARY_PORT, super::CONNECT_TIMEOUT)
            .await
            .map_err(|error| Failure { kind: OpType::Fail, error })?;
        *client = Some(c);
    }
    let c = client.as_mut().expect("connected above");
    let txn =
        match timeout_at(deadline, c.build_transaction().isolation_level(IsolationLevel::Serializable).start()).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(classify(&e, false)),
            Err(_) => return Err(timed_out("BEGIN", false)),
        };
    let mut done = Vec::with_capacity(mops.len());
    for mop in mops {
        match mop {
            Mop::Append(k, e) => {
                let key = *k as i64;
                match timeout_at(deadline, txn.execute(APPEND, &[&key, &e.to_string()])).await {
                    Ok(Ok(_)) => done.push(mop.clone()),
                    Ok(Err(e)) => return Err(classify(&e, false)),
                    Err(_) => return Err(timed_out("an append", false)),
                }
            }
            Mop::Read(k, _) => {
                let key = *k as i64;
                match timeout_at(deadline, txn.query_opt(READ, &[&key])).await {
                    Ok(Ok(row)) => {
                        let list = match row {
                            Some(row) => parse_list(&row.get::<_, String>(0))
                                .map_err(|error| Failure { kind: OpType::Fail, error })?,
                            None => Vec::new(),
                        };
                        done.push(Mop::Read(*k, Some(list)));
                    }
                    Ok(Err(e)) => return Err(classify(&e, false)),
                    Err(_) => return Err(timed_out("a read", false)),
                }
            }
        }
    }
    match timeout_at(deadline, txn.commit()).await {
        Ok(Ok(())) => Ok(done),
        Ok(Err(e)) => Err(classify(&e, true)),
        Err(_) => Err(timed_out("COMMIT", true)),
    }
}

/// Reads every key directly on `node`'s PostgreSQL at `host` in one
/// statement (one snapshot), recorded as a `txn` of reads with `node`.
pub async fn final_read(shared: &Shared, process: u64, node: &str, host: &str, keys: &[Key]) -> bool {
    let rec = &shared.recorder;
    let invoke: Vec<Mop> = keys.iter().map(|k| Mop::Read(*k, None)).collect();
    rec.record(process, OpType::Invoke, F::Txn, Value::Txn(invoke.clone()), Some(node.to_string()), None);
    let result = async {
        let c = connect(host, crate::hosts::PG_PORT, super::CONNECT_TIMEOUT).await?;
        let rows = tokio::time::timeout(Duration::from_secs(30), c.query("SELECT k, v FROM jepsen_append", &[]))
            .await
            .map_err(|_| "client timeout during SELECT".to_string())?
            .map_err(|e| super::describe(&e))?;
        let mut lists = BTreeMap::new();
        for row in rows {
            lists.insert(row.get::<_, i64>(0) as Key, parse_list(&row.get::<_, String>(1))?);
        }
        Ok::<_, String>(keys.iter().map(|k| Mop::Read(*k, Some(lists.remove(k).unwrap_or_default()))).collect())
    }
    .await;
    match result {
        Ok(mops) => {
            rec.record(process, OpType::Ok, F::Txn, Value::Txn(mops), Some(node.to_string()), None);
            true
        }
        Err(error) => {
            rec.record(process, OpType::Fail, F::Txn, Value::Txn(invoke), Some(node.to_string()), Some(error));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_unique_per_key_and_keys_retire() {
        let keys = Keys::new();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen: BTreeMap<Key, Vec<Elem>> = BTreeMap::new();
        for _ in 0..5000 {
            let txn = keys.txn(&mut rng);
            assert!((1..=4).contains(&txn.len()));
            for mop in txn {
                if let Mop::Append(k, e) = mop {
                    seen.entry(k).or_default().push(e);
                }
            }
        }
        for (k, elems) in &seen {
            let mut sorted = elems.clone();
            sorted.dedup();
            assert_eq!(&sorted, elems, "key {k} got a duplicate append");
            assert!(elems.len() as i64 <= MAX_WRITES, "key {k} got {} appends", elems.len());
        }
        assert!(seen.len() > KEY_COUNT, "no key was retired");
        assert_eq!(keys.lock().active.len(), KEY_COUNT);
    }

    #[test]
    fn stored_lists_parse() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(parse_list("3,1,2"), Ok(vec![3, 1, 2]));
        assert!(parse_list("1,,2").is_err());
    }
}
