//! The list-append checker: Elle's inference, checked against strict
//! serializability.
//!
//! Clients run transactions of `append k e` and `read k` micro-operations;
//! elements are unique per key. A read of `k` returning `[3 1 2]` reveals the
//! prefix of `k`'s version order, so the longest read of each key *is* its
//! version order, and every other read must be a prefix of it. From that
//! order we infer who depended on whom, and a cycle of dependencies is a
//! transaction order no serial execution can explain.
//!
//! The rule, step by step (after Kingsbury & Alvaro, "Elle", VLDB 2020):
//!
//! 1. Pair invocations and completions ([`crate::checker::call`]); each
//!    `txn` call is a transaction named `T<index>` after its completion
//!    record's history index. `ok` = committed, `fail` = did not happen,
//!    `info` = unknown (its appends count only if someone read them).
//! 2. Within each `ok` transaction: **internal** — a read disagrees with the
//!    transaction's own earlier reads and appends of the key;
//!    **duplicate-elements** — a read (of `ok` or `info`) lists an element
//!    twice. Across the history: **duplicate-appends** — one element
//!    appended to one key more than once.
//! 3. Per key, the reads of `ok` transactions and the external reads of
//!    `info` ones (those before the transaction's own appends to the key),
//!    sorted by length: each must be a prefix of the longest, else
//!    **incompatible-order**. The longest is the version order.
//! 4. **G1a** (aborted read): an `ok` read holds an element appended by a
//!    `fail` transaction. **G1b** (intermediate read): an `ok` read ends in an
//!    element its writer (another transaction) later appended past.
//!    **unknown-element**: an `ok` read holds an element nobody appended.
//!    **lost-append**: an `ok` append missing from the version order
//!    although a read of that key, invoked after the append completed,
//!    did not see it.
//! 5. Edges `ww`, `wr`, `rw`, `process`, `realtime` ([`graph`]), then
//!    strongly connected components and a named witness cycle per
//!    component ([`cycle`]): G0, G1c, G-single, G2-item, G-nonadjacent, each
//!    possibly `-process` or `-realtime`.
//!
//! Verdict: every anomaly above is forbidden by strict serializability and
//! makes the run invalid. A malformed transaction or a cycle search that
//! ran out of budget makes it unknown (when nothing invalid was found).

mod cycle;
mod graph;

use super::Anomaly;
use super::call::{Call, Calls};
use crate::history::{Elem, F, Key, Mop, OpType, Value};
use crate::record::{CheckerResult, Verdict};
use graph::{ExtRead, Graph, KeyOrder};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The default step budget of the cycle search per component: enough for a
/// component of several thousand transactions.
pub const DEFAULT_CYCLE_SEARCH_STEPS: u64 = 20_000_000;

/// How the checker is tuned.
#[derive(Clone, Debug)]
pub struct Options {
    /// Edge visits the cycle search may spend per strongly connected
    /// component before reporting `cycle-search-timeout`.
    pub cycle_search_steps: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { cycle_search_steps: DEFAULT_CYCLE_SEARCH_STEPS }
    }
}

/// A transaction as the checker sees it.
pub(crate) struct Txn<'a> {
    /// The history index of its completion (or invoke): the `T` number.
    pub name: u64,
    pub call: &'a Call<'a>,
    pub outcome: OpType,
    pub mops: &'a [Mop],
}

/// Anomaly names that make the verdict unknown rather than invalid.
const UNKNOWN_KINDS: [&str; 2] = ["cycle-search-timeout", "malformed"];

/// The findings, serialised as the result's `details`.
#[derive(Debug, Default, Serialize)]
struct Report {
    txns: usize,
    ok: usize,
    info: usize,
    fail: usize,
    keys: usize,
    /// Edge counts by kind.
    edges: BTreeMap<&'static str, usize>,
    components: usize,
    /// Anomaly name to how many were found.
    anomaly_types: BTreeMap<String, usize>,
    anomalies: Vec<Anomaly>,
}

/// Check the list-append transactions among the calls.
pub fn check(calls: &Calls, options: &Options) -> CheckerResult {
    let mut report = Report::default();
    let mut txns = Vec::new();
    for call in calls.calls.iter().filter(|c| c.f() == F::Txn) {
        match call.value() {
            Value::Txn(mops) => txns.push(Txn { name: call.index(), call, outcome: call.outcome(), mops }),
            _ if call.outcome() == OpType::Fail => {}
            _ => report.anomalies.push(Anomaly::new(
                "malformed",
                vec![call.index()],
                vec![format!("op {}: a txn whose value is not a list of micro-operations", call.index())],
            )),
        }
    }
    report.txns = txns.len();
    report.ok = txns.iter().filter(|t| t.outcome == OpType::Ok).count();
    report.info = txns.iter().filter(|t| t.outcome == OpType::Info).count();
    report.fail = txns.iter().filter(|t| t.outcome == OpType::Fail).count();

    let found = &mut report.anomalies;
    internal(&txns, found);
    let writers = writers(&txns, found);
    let reads = reads(&txns);
    let orders = orders(&txns, &reads, &writers, found);
    report.keys = orders.len();
    reads_of_the_wrong_elements(&txns, &writers, found);
    lost_appends(&txns, &orders, &reads, found);

    let mut g = Graph::default();
    let ext: Vec<ExtRead> = reads.iter().filter(|r| r.external).map(|r| (r.txn, r.key, r.list)).collect();
    graph::add_data_edges(&mut g, &orders, &writers.ok_or_info, &ext);
    graph::add_order_edges(&mut g, &txns);
    report.edges = g.counts().into_iter().collect();
    let components = cycle::components(txns.len(), &g);
    report.components = components.len();
    for component in &components {
        match cycle::search(&g, component, options.cycle_search_steps) {
            cycle::Found::Cycle(c, cut) => {
                let n = c.nodes.len();
                let mut explanation: Vec<String> =
                    (0..n).map(|i| g.explain(&txns, c.nodes[i], c.nodes[(i + 1) % n], c.steps[i])).collect();
                if cut {
                    explanation.push(format!(
                        "(the search of this cycle's component of {} transactions ran out of budget; it may hold a worse anomaly)",
                        component.len()
                    ));
                }
                let ops = c.nodes.iter().map(|t| txns[*t].name).collect();
                report.anomalies.push(Anomaly::new(&c.name(), ops, explanation));
            }
            cycle::Found::Timeout(nodes) => report.anomalies.push(Anomaly::new(
                "cycle-search-timeout",
                nodes.iter().take(50).map(|t| txns[*t].name).collect(),
                vec![format!(
                    "a cycle among {} transactions exists, but no witness was found within {} steps",
                    nodes.len(),
                    options.cycle_search_steps
                )],
            )),
        }
    }

    for a in &report.anomalies {
        *report.anomaly_types.entry(a.kind.clone()).or_default() += 1;
    }
    let invalid = report.anomaly_types.keys().any(|k| !UNKNOWN_KINDS.contains(&k.as_str()));
    let verdict = if invalid {
        Verdict::Invalid
    } else if !report.anomaly_types.is_empty() || report.ok == 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    let summary = if report.anomaly_types.is_empty() {
        format!(
            "{} txns ({} ok, {} info, {} fail) over {} keys, no anomaly",
            report.txns, report.ok, report.info, report.fail, report.keys
        )
    } else {
        let types: Vec<String> = report.anomaly_types.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        format!("{} in {} txns ({} ok, {} info)", types.join(", "), report.txns, report.ok, report.info)
    };
    CheckerResult { verdict, summary, details: serde_json::to_value(&report).unwrap_or_default() }
}

/// Internal consistency and duplicate elements within each transaction.
fn internal(txns: &[Txn], found: &mut Vec<Anomaly>) {
    for t in txns {
        // What the transaction knows of each key: the list it last read plus
        // its appends since, or only its appends if it has not read the key.
        let mut known: HashMap<Key, (bool, Vec<Elem>)> = HashMap::new();
        for mop in t.mops {
            match mop {
                Mop::Append(k, e) => known.entry(*k).or_default().1.push(*e),
                Mop::Read(k, Some(list)) => {
                    let mut seen = HashSet::new();
                    if t.outcome != OpType::Fail
                        && let Some(dup) = list.iter().find(|e| !seen.insert(**e))
                    {
                        found.push(Anomaly::new(
                            "duplicate-elements",
                            vec![t.name],
                            vec![format!("T{} read key {k} as {list:?}, which holds {dup} twice", t.name)],
                        ));
                    }
                    if t.outcome == OpType::Ok
                        && let Some((read_before, expect)) = known.get(k)
                    {
                        let fits = if *read_before { list == expect } else { list.ends_with(expect) };
                        if !fits {
                            let what = if *read_before { "expected" } else { "expected a list ending in" };
                            found.push(Anomaly::new(
                                "internal",
                                vec![t.name],
                                vec![format!(
                                    "T{} read key {k} as {list:?}, but after its own earlier reads and appends it {what} {expect:?}",
                                    t.name
                                )],
                            ));
                        }
                    }
                    known.insert(*k, (true, list.clone()));
                }
                Mop::Read(_, None) => {}
            }
        }
    }
}

/// Who appended each element.
struct Writers {
    /// By `ok` and `info` transactions.
    ok_or_info: HashMap<(Key, Elem), usize>,
    /// By `fail` transactions.
    failed: HashMap<(Key, Elem), usize>,
    /// Each transaction's last append to each key.
    last_append: HashMap<(usize, Key), Elem>,
}

fn writers(txns: &[Txn], found: &mut Vec<Anomaly>) -> Writers {
    let mut w = Writers { ok_or_info: HashMap::new(), failed: HashMap::new(), last_append: HashMap::new() };
    let mut first: HashMap<(Key, Elem), usize> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for mop in t.mops {
            let Mop::Append(k, e) = *mop else { continue };
            if let Some(&other) = first.get(&(k, e)) {
                found.push(Anomaly::new(
                    "duplicate-appends",
                    vec![txns[other].name, t.name],
                    vec![format!("T{} and T{} both appended {e} to key {k}", txns[other].name, t.name)],
                ));
                continue;
            }
            first.insert((k, e), i);
            if t.outcome == OpType::Fail {
                w.failed.insert((k, e), i);
            } else {
                w.ok_or_info.insert((k, e), i);
                w.last_append.insert((i, k), e);
            }
        }
    }
    w
}

/// One read of a key by a transaction.
struct Read<'a> {
    txn: usize,
    key: Key,
    list: &'a [Elem],
    /// Before the transaction appended to the key itself.
    external: bool,
}

/// The reads of `ok` transactions, and the external reads of `info` ones.
fn reads<'a>(txns: &'a [Txn]) -> Vec<Read<'a>> {
    let mut out = Vec::new();
    for (i, t) in txns.iter().enumerate() {
        if t.outcome == OpType::Fail {
            continue;
        }
        let mut appended: HashSet<Key> = HashSet::new();
        let mut read: HashSet<Key> = HashSet::new();
        for mop in t.mops {
            match mop {
                Mop::Append(k, _) => {
                    appended.insert(*k);
                }
                Mop::Read(k, Some(list)) => {
                    let external = !appended.contains(k) && !read.contains(k);
                    if t.outcome == OpType::Ok || !appended.contains(k) {
                        out.push(Read { txn: i, key: *k, list, external });
                    }
                    read.insert(*k);
                }
                Mop::Read(_, None) => {}
            }
        }
    }
    out
}

/// The version order of each key, reporting reads that do not fit it.
fn orders(txns: &[Txn], reads: &[Read], writers: &Writers, found: &mut Vec<Anomaly>) -> BTreeMap<Key, KeyOrder> {
    let mut by_key: BTreeMap<Key, Vec<&Read>> = BTreeMap::new();
    for r in reads {
        by_key.entry(r.key).or_default().push(r);
    }
    let mut written: HashMap<Key, Vec<(usize, Elem)>> = HashMap::new();
    for (&(k, e), &t) in &writers.ok_or_info {
        by_key.entry(k).or_default();
        if txns[t].outcome == OpType::Ok {
            written.entry(k).or_default().push((t, e));
        }
    }
    let mut orders = BTreeMap::new();
    for (key, mut rs) in by_key {
        rs.sort_by_key(|r| std::cmp::Reverse(r.list.len()));
        let order: Vec<Elem> = rs.first().map(|r| r.list.to_vec()).unwrap_or_default();
        let mut reported: HashSet<&[Elem]> = HashSet::new();
        for r in &rs {
            if !order.starts_with(r.list) && reported.insert(r.list) {
                let at = r.list.iter().zip(&order).position(|(a, b)| a != b).unwrap_or(order.len());
                found.push(Anomaly::new(
                    "incompatible-order",
                    vec![txns[rs[0].txn].name, txns[r.txn].name],
                    vec![format!(
                        "key {key}: T{} read {:?} but T{} read {:?}; they differ at position {at}, so an append was lost or reordered",
                        txns[rs[0].txn].name, order, txns[r.txn].name, r.list
                    )],
                ));
            }
        }
        let in_order: HashSet<Elem> = order.iter().copied().collect();
        let mut unseen: Vec<(usize, Elem)> =
            written.remove(&key).unwrap_or_default().into_iter().filter(|(_, e)| !in_order.contains(e)).collect();
        unseen.sort_unstable();
        orders.insert(key, KeyOrder { order, unseen });
    }
    orders
}

/// G1a, G1b and elements nobody appended, in `ok` reads.
fn reads_of_the_wrong_elements(txns: &[Txn], writers: &Writers, found: &mut Vec<Anomaly>) {
    for (me, t) in txns.iter().enumerate().filter(|(_, t)| t.outcome == OpType::Ok) {
        for mop in t.mops {
            let Mop::Read(k, Some(list)) = mop else { continue };
            for e in list {
                if let Some(&w) = writers.failed.get(&(*k, *e)) {
                    found.push(Anomaly::new(
                        "G1a",
                        vec![txns[w].name, t.name],
                        vec![format!(
                            "T{} read key {k} as {list:?}, including {e}, appended by T{} which failed (aborted read)",
                            t.name, txns[w].name
                        )],
                    ));
                } else if !writers.ok_or_info.contains_key(&(*k, *e)) {
                    found.push(Anomaly::new(
                        "unknown-element",
                        vec![t.name],
                        vec![format!("T{} read {e} in key {k}, which no transaction appended", t.name)],
                    ));
                }
            }
            let Some(last) = list.last() else { continue };
            if let Some(&w) = writers.ok_or_info.get(&(*k, *last))
                && w != me
                && let Some(&final_e) = writers.last_append.get(&(w, *k))
                && final_e != *last
            {
                found.push(Anomaly::new(
                    "G1b",
                    vec![txns[w].name, t.name],
                    vec![format!(
                        "T{} read key {k} ending in {last}, but T{} appended {final_e} after {last} in the same transaction (intermediate read)",
                        t.name, txns[w].name
                    )],
                ));
            }
        }
    }
}

/// `ok` appends absent from the version order although a read invoked
/// after they completed read the key.
fn lost_appends(txns: &[Txn], orders: &BTreeMap<Key, KeyOrder>, reads: &[Read], found: &mut Vec<Anomaly>) {
    let mut by_key: HashMap<Key, Vec<&Read>> = HashMap::new();
    for r in reads.iter().filter(|r| txns[r.txn].outcome == OpType::Ok) {
        by_key.entry(r.key).or_default().push(r);
    }
    for (&key, ko) in orders {
        let Some(key_reads) = by_key.get(&key) else { continue };
        for &(w, e) in &ko.unseen {
            let Some(done) = txns[w].call.complete_time() else { continue };
            let later = key_reads
                .iter()
                .filter(|r| r.txn != w && !r.list.contains(&e))
                .find(|r| txns[r.txn].call.invoke_time().is_some_and(|t| t > done));
            if let Some(r) = later {
                found.push(Anomaly::new(
                    "lost-append",
                    vec![txns[w].name, txns[r.txn].name],
                    vec![format!(
                        "T{} appended {e} to key {key} and committed, but T{}, begun after, read {:?} without it, and no read ever saw it",
                        txns[w].name, txns[r.txn].name, r.list
                    )],
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
