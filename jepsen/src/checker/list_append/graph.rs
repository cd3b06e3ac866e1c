//! The dependency graph of list-append transactions: which transaction must
//! precede which, and why.
//!
//! Data edges come from the inferred version order of each key (see the
//! module above for how it is inferred):
//!
//! - `ww`: T1 → T2 when T2 appended the element right after T1's. An `ok`
//!   append that no read ever saw comes after the last element read, so it
//!   gets a `ww` edge from that element's writer.
//! - `wr`: T1 → T2 when T2's (external) read of a key ends in T1's element.
//! - `rw`: T1 → T2 when T1's (external) read of a key ends just before T2's
//!   element, or when T1 read the whole known order and T2's `ok` append was
//!   never read.
//!
//! Order edges come from the clients:
//!
//! - `process`: consecutive transactions of one process.
//! - `realtime`: T1 → T2 when T1 completed `ok` before T2 was invoked.
//!   Only a transitive reduction is built, as Elle does: a buffer of
//!   completed transactions, each linked to every transaction invoked while
//!   it is in the buffer, and dropped from it when a transaction invoked
//!   after it completes. An `info` transaction may have taken effect at any
//!   later time, so it has no outgoing realtime edges.
//!
//! Self-edges are dropped, and so is every edge touching a `fail`
//! transaction.

use super::Txn;
use crate::checker::ms;
use crate::history::{Elem, Key, OpType};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// The kind of a dependency; also a bit in an edge's mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rel {
    Ww,
    Wr,
    Rw,
    Process,
    Realtime,
}

impl Rel {
    pub const ALL: [Rel; 5] = [Rel::Ww, Rel::Wr, Rel::Rw, Rel::Process, Rel::Realtime];

    pub const fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Rel::Ww => "ww",
            Rel::Wr => "wr",
            Rel::Rw => "rw",
            Rel::Process => "process",
            Rel::Realtime => "realtime",
        }
    }

    /// The preferred kind among a mask: data before order edges, and `rw`
    /// last among data, so a found cycle is classified as weakly as it can
    /// be.
    pub fn first_in(mask: u8) -> Option<Rel> {
        Rel::ALL.into_iter().find(|r| mask & r.bit() != 0)
    }
}

/// Why an edge exists, kept for the first occurrence of each kind.
#[derive(Clone, Debug)]
pub enum Why {
    /// `to` appended `next` to `key` right after `from`'s `prev`.
    Ww {
        key: Key,
        prev: Elem,
        next: Elem,
        unseen: bool,
    },
    /// `to` read `key` ending in `from`'s `elem`.
    Wr {
        key: Key,
        elem: Elem,
    },
    /// `from` read `key` ending at `last` and missed `to`'s `next`.
    Rw {
        key: Key,
        last: Option<Elem>,
        next: Elem,
        unseen: bool,
    },
    Process {
        process: u64,
    },
    Realtime {
        completed: u64,
        invoked: u64,
    },
}

/// One edge: its kinds and the reason for each.
#[derive(Clone, Debug, Default)]
pub struct Edge {
    pub mask: u8,
    pub why: Vec<(Rel, Why)>,
}

/// Transactions (by index into the analysed list) and their dependencies.
#[derive(Debug, Default)]
pub struct Graph {
    pub edges: HashMap<(usize, usize), Edge>,
}

impl Graph {
    pub fn add(&mut self, from: usize, to: usize, rel: Rel, why: Why) {
        if from == to {
            return;
        }
        let edge = self.edges.entry((from, to)).or_default();
        if edge.mask & rel.bit() == 0 {
            edge.mask |= rel.bit();
            edge.why.push((rel, why));
        }
    }

    /// Count of edges carrying each kind, for the details.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        Rel::ALL.iter().map(|r| (r.name(), self.edges.values().filter(|e| e.mask & r.bit() != 0).count())).collect()
    }

    /// One line explaining the step `from` → `to` as `rel`.
    pub fn explain(&self, txns: &[Txn], from: usize, to: usize, rel: Rel) -> String {
        let a = txns[from].name;
        let b = txns[to].name;
        let why = self.edges.get(&(from, to)).and_then(|e| e.why.iter().find(|(r, _)| *r == rel)).map(|(_, w)| w);
        let mut s = String::new();
        let _ = match why {
            Some(Why::Ww { key, prev, next, unseen: false }) => {
                write!(s, "T{b} appended {next} to key {key} after T{a}'s {prev}")
            }
            Some(Why::Ww { key, prev, next, unseen: true }) => write!(
                s,
                "T{b} appended {next} to key {key}, which no read saw, so after T{a}'s {prev}, the last element read"
            ),
            Some(Why::Wr { key, elem }) => write!(s, "T{b} read key {key} ending in T{a}'s append of {elem}"),
            Some(Why::Rw { key, last, next, unseen }) => {
                let seen = match last {
                    Some(e) => format!("ending in {e}"),
                    None => "as empty".to_string(),
                };
                let never = if *unseen { " (never read, so after every element read)" } else { "" };
                write!(s, "T{a} read key {key} {seen} and did not see T{b}'s append of {next}{never}")
            }
            Some(Why::Process { process }) => write!(s, "T{a} then T{b} ran on process {process}"),
            Some(Why::Realtime { completed, invoked }) => write!(
                s,
                "T{a} completed at {:.3} s before T{b} began at {:.3} s",
                ms(*completed) / 1000.0,
                ms(*invoked) / 1000.0
            ),
            None => write!(s, "T{a} precedes T{b}"),
        };
        let _ = write!(s, " ({})", rel.name());
        s
    }
}

/// The inferred order of one key: the longest read, and who appended what.
#[derive(Debug, Default)]
pub struct KeyOrder {
    pub order: Vec<Elem>,
    /// `ok` appends whose element no read saw.
    pub unseen: Vec<(usize, Elem)>,
}

/// External reads: (reader, key, the list read), from `ok` and `info`
/// transactions, taken before the reader appended to the key itself.
pub type ExtRead<'a> = (usize, Key, &'a [Elem]);

/// Add the `ww`, `wr` and `rw` edges of every key.
pub fn add_data_edges(
    graph: &mut Graph,
    orders: &BTreeMap<Key, KeyOrder>,
    writer: &HashMap<(Key, Elem), usize>,
    reads: &[ExtRead],
) {
    for (&key, ko) in orders {
        for pair in ko.order.windows(2) {
            if let (Some(&a), Some(&b)) = (writer.get(&(key, pair[0])), writer.get(&(key, pair[1]))) {
                graph.add(a, b, Rel::Ww, Why::Ww { key, prev: pair[0], next: pair[1], unseen: false });
            }
        }
        if let Some(&last) = ko.order.last()
            && let Some(&a) = writer.get(&(key, last))
        {
            for &(t, e) in &ko.unseen {
                graph.add(a, t, Rel::Ww, Why::Ww { key, prev: last, next: e, unseen: true });
            }
        }
    }
    for &(reader, key, list) in reads {
        let Some(ko) = orders.get(&key) else { continue };
        if let Some(&last) = list.last()
            && let Some(&w) = writer.get(&(key, last))
        {
            graph.add(w, reader, Rel::Wr, Why::Wr { key, elem: last });
        }
        // rw only from a read that is a prefix of the known order; the
        // others are reported as incompatible orders.
        if !ko.order.starts_with(list) {
            continue;
        }
        let last = list.last().copied();
        match ko.order.get(list.len()) {
            Some(&next) => {
                if let Some(&w) = writer.get(&(key, next)) {
                    graph.add(reader, w, Rel::Rw, Why::Rw { key, last, next, unseen: false });
                }
            }
            None => {
                for &(t, next) in &ko.unseen {
                    graph.add(reader, t, Rel::Rw, Why::Rw { key, last, next, unseen: true });
                }
            }
        }
    }
}

/// Add `process` and `realtime` edges among the `ok` and `info`
/// transactions.
pub fn add_order_edges(graph: &mut Graph, txns: &[Txn]) {
    let live = |t: &Txn| matches!(t.outcome, OpType::Ok | OpType::Info);
    // Transactions are in invoke order, so per-process order is list order.
    let mut last_of: HashMap<u64, usize> = HashMap::new();
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| live(t)) {
        let process = t.call.process();
        if let Some(prev) = last_of.insert(process, i) {
            graph.add(prev, i, Rel::Process, Why::Process { process });
        }
    }

    enum Event {
        Invoke(usize),
        Complete(usize),
    }
    let mut events: Vec<(u64, Event)> = Vec::new();
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| live(t)) {
        if let Some(inv) = t.call.invoke {
            events.push((inv.index, Event::Invoke(i)));
        }
        if t.outcome == OpType::Ok
            && let Some(c) = t.call.completion
        {
            events.push((c.index, Event::Complete(i)));
        }
    }
    events.sort_by_key(|(index, _)| *index);
    let mut buffer: BTreeSet<usize> = BTreeSet::new();
    let mut seen_at_invoke: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, event) in events {
        match event {
            Event::Invoke(i) => {
                let invoked = txns[i].call.invoke_time().unwrap_or_default();
                for &b in &buffer {
                    let completed = txns[b].call.complete_time().unwrap_or_default();
                    graph.add(b, i, Rel::Realtime, Why::Realtime { completed, invoked });
                }
                seen_at_invoke.insert(i, buffer.iter().copied().collect());
            }
            Event::Complete(i) => {
                for b in seen_at_invoke.remove(&i).unwrap_or_default() {
                    buffer.remove(&b);
                }
                buffer.insert(i);
            }
        }
    }
}
