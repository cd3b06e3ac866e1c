//! The set checker: no acknowledged insert is lost, nothing appears that was
//! never inserted, and every node ends with the same set.
//!
//! The set workload inserts unique integers (`add`) through the primary port
//! and, after every fault is healed, reads the whole set from each node
//! directly (`read` with `node` set). The rule, after Jepsen's `set` checker:
//!
//! - *attempted*: every integer an `add` was invoked with; *acknowledged*:
//!   those whose `add` completed `ok`.
//! - The *reference read* is the last `ok` read from the final primary (the
//!   node the runner found primary after healing). Without a final primary,
//!   it is the last `ok` read of the history.
//! - **lost** = acknowledged − reference read. Invalid.
//! - **unexpected** = elements of any `ok` read that were never attempted.
//!   Invalid.
//! - **divergence**: every other node's last `ok` read must equal the
//!   reference. A node lacking elements the primary has, or holding elements
//!   the primary lacks (`unexpected-on-replica`), makes the run invalid.
//! - *recovered* = `info` adds (outcome unknown) present in the reference
//!   read. Allowed, reported.
//! - No reference read at all: unknown.

use super::call::{Call, Calls};
use super::{Anomaly, id_list, ms};
use crate::history::{F, OpType, Value};
use crate::record::{CheckerResult, Verdict};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The last `ok` read of one node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeRead {
    pub node: String,
    /// History index of the read's completion.
    pub op: u64,
    pub count: usize,
    /// Elements the reference read has and this node lacks.
    pub missing: Vec<i64>,
    /// Elements this node has and the reference read lacks.
    pub extra: Vec<i64>,
}

/// The findings, serialised as the result's `details`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SetReport {
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// The node whose read is the reference, if it was read directly.
    pub reference_node: Option<String>,
    pub reference_op: Option<u64>,
    pub lost: Vec<i64>,
    pub unexpected: Vec<i64>,
    pub recovered: Vec<i64>,
    pub nodes: Vec<NodeRead>,
    pub malformed: Vec<String>,
    pub anomalies: Vec<Anomaly>,
}

/// Check the set workload's calls. `final_primary` names the node whose
/// final read is the reference.
pub fn check(calls: &Calls, final_primary: Option<&str>) -> CheckerResult {
    let report = analyse(calls, final_primary);
    let verdict = verdict(&report);
    let summary = summary(&report, verdict);
    CheckerResult { verdict, summary, details: serde_json::to_value(&report).unwrap_or_default() }
}

fn analyse(calls: &Calls, final_primary: Option<&str>) -> SetReport {
    let mut r = SetReport::default();
    let mut attempted = BTreeSet::new();
    let mut acknowledged: BTreeMap<i64, &Call> = BTreeMap::new();
    let mut indeterminate = BTreeSet::new();
    let mut reads: Vec<(&Call, BTreeSet<i64>)> = Vec::new();
    for call in calls.calls.iter() {
        match call.f() {
            F::Add => {
                let Value::Int(e) = *call.value() else {
                    r.malformed.push(format!("op {}: an add without an integer value", call.index()));
                    continue;
                };
                attempted.insert(e);
                match call.outcome() {
                    OpType::Ok => {
                        acknowledged.insert(e, call);
                    }
                    OpType::Fail => r.failed += 1,
                    _ => {
                        indeterminate.insert(e);
                    }
                }
            }
            F::Read if call.outcome() == OpType::Ok => match call.value() {
                Value::Ints(v) => reads.push((call, v.iter().copied().collect())),
                Value::None => reads.push((call, BTreeSet::new())),
                _ => r.malformed.push(format!("op {}: a read whose value is not a list of integers", call.index())),
            },
            _ => {}
        }
    }
    r.attempted = attempted.len();
    r.acknowledged = acknowledged.len();
    r.indeterminate = indeterminate.len();

    let mut unexpected = BTreeSet::new();
    for (call, set) in &reads {
        for e in set.difference(&attempted) {
            if unexpected.insert(*e) {
                r.anomalies.push(Anomaly::new(
                    "unexpected",
                    vec![call.index()],
                    vec![format!("op {} read {e}, which no add ever tried to insert", call.index())],
                ));
            }
        }
    }
    r.unexpected = unexpected.into_iter().collect();

    // The last ok read of each node read directly (reads are in invoke
    // order; keep the one that completed last).
    let mut last: BTreeMap<&str, &(&Call, BTreeSet<i64>)> = BTreeMap::new();
    for read in &reads {
        if let Some(node) = read.0.node() {
            let newer = last.get(node).is_none_or(|prev| prev.0.index() < read.0.index());
            if newer {
                last.insert(node, read);
            }
        }
    }
    let reference = match final_primary {
        Some(p) => last.get(p).copied(),
        None => reads.iter().max_by_key(|(c, _)| c.index()),
    };
    let Some((ref_call, ref_set)) = reference else {
        return r;
    };
    let ref_name = ref_call.node().unwrap_or("the router").to_string();
    r.reference_node = ref_call.node().map(str::to_string);
    r.reference_op = Some(ref_call.index());

    for (e, add) in &acknowledged {
        if ref_set.contains(e) {
            continue;
        }
        r.lost.push(*e);
        let elsewhere: Vec<&str> =
            last.iter().filter(|(_, (_, s))| s.contains(e)).map(|(n, _)| *n).filter(|n| *n != ref_name).collect();
        let mut line = format!(
            "add of {e} was acknowledged (op {}, at {:.3} s) but {ref_name}'s final read (op {}) lacks it",
            add.index(),
            ms(add.complete_time().unwrap_or_default()) / 1000.0,
            ref_call.index()
        );
        if !elsewhere.is_empty() {
            line.push_str(&format!("; present on {}", elsewhere.join(", ")));
        }
        r.anomalies.push(Anomaly::new("lost", vec![add.index(), ref_call.index()], vec![line]));
    }
    r.recovered = indeterminate.iter().filter(|e| ref_set.contains(e)).copied().collect();

    for (node, (call, set)) in &last {
        let missing: Vec<i64> = ref_set.difference(set).copied().collect();
        let extra: Vec<i64> = set.difference(ref_set).copied().collect();
        if *node != ref_name {
            if !missing.is_empty() {
                r.anomalies.push(Anomaly::new(
                    "divergence",
                    vec![call.index(), ref_call.index()],
                    vec![format!(
                        "{node}'s final read (op {}) lacks {} element(s) that {ref_name} has: {}",
                        call.index(),
                        missing.len(),
                        id_list(&missing, 20)
                    )],
                ));
            }
            if !extra.is_empty() {
                r.anomalies.push(Anomaly::new(
                    "unexpected-on-replica",
                    vec![call.index(), ref_call.index()],
                    vec![format!(
                        "{node}'s final read (op {}) has {} element(s) that {ref_name} lacks: {}",
                        call.index(),
                        extra.len(),
                        id_list(&extra, 20)
                    )],
                ));
            }
        }
        r.nodes.push(NodeRead { node: node.to_string(), op: call.index(), count: set.len(), missing, extra });
    }
    r
}

fn verdict(r: &SetReport) -> Verdict {
    let diverged = r.nodes.iter().any(|n| !n.missing.is_empty() || !n.extra.is_empty());
    if !r.lost.is_empty() || !r.unexpected.is_empty() || diverged {
        Verdict::Invalid
    } else if r.reference_op.is_none() || !r.malformed.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    }
}

fn summary(r: &SetReport, verdict: Verdict) -> String {
    let Some(op) = r.reference_op else {
        return format!(
            "no final read from the final primary: {} of {} adds acknowledged, none checked",
            r.acknowledged, r.attempted
        );
    };
    let reference = r.reference_node.as_deref().unwrap_or("the router");
    let mut parts = Vec::new();
    if !r.lost.is_empty() {
        parts.push(format!(
            "{} of {} acknowledged adds lost from {reference}'s final read: {}",
            r.lost.len(),
            r.acknowledged,
            id_list(&r.lost, 20)
        ));
    }
    if !r.unexpected.is_empty() {
        parts.push(format!("{} never-attempted elements read: {}", r.unexpected.len(), id_list(&r.unexpected, 20)));
    }
    for n in r.nodes.iter().filter(|n| !n.missing.is_empty() || !n.extra.is_empty()) {
        parts.push(format!(
            "{} diverges from {reference} (lacks {}, has {} extra)",
            n.node,
            n.missing.len(),
            n.extra.len()
        ));
    }
    if !r.malformed.is_empty() {
        parts.push(format!("{} malformed records", r.malformed.len()));
    }
    if verdict == Verdict::Valid {
        parts.push(format!(
            "all {} acknowledged adds present in {reference}'s final read (op {op}), {} node(s) agree",
            r.acknowledged,
            r.nodes.len()
        ));
    }
    if !r.recovered.is_empty() {
        parts.push(format!("{} indeterminate adds landed", r.recovered.len()));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::call::pair;
    use crate::history::Op;

    struct H(Vec<Op>);

    impl H {
        fn new() -> H {
            H(Vec::new())
        }
        fn push(&mut self, process: u64, kind: OpType, f: F, value: Value, node: Option<&str>) {
            let index = self.0.len() as u64;
            self.0.push(Op {
                index,
                time: index * 1_000_000,
                process,
                kind,
                f,
                value,
                node: node.map(str::to_string),
                error: None,
            });
        }
        fn add(&mut self, process: u64, e: i64, outcome: OpType) {
            self.push(process, OpType::Invoke, F::Add, Value::Int(e), None);
            self.push(process, outcome, F::Add, Value::Int(e), None);
        }
        fn read(&mut self, node: &str, elems: &[i64]) {
            self.push(99, OpType::Invoke, F::Read, Value::None, Some(node));
            self.push(99, OpType::Ok, F::Read, Value::Ints(elems.to_vec()), Some(node));
        }
        fn check(&self, primary: Option<&str>) -> CheckerResult {
            check(&pair(&self.0), primary)
        }
    }

    fn kinds(r: &CheckerResult) -> Vec<String> {
        let mut k: Vec<String> = r.details["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap().to_string())
            .collect();
        k.dedup();
        k
    }

    #[test]
    fn all_acknowledged_adds_present_everywhere_is_valid_and_info_adds_may_land() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.add(1, 2, OpType::Info);
        h.add(2, 3, OpType::Fail);
        h.add(3, 4, OpType::Info);
        h.read("n1", &[1, 2]);
        h.read("n2", &[1, 2]);
        let r = h.check(Some("n1"));
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
        assert_eq!(r.details["recovered"], serde_json::json!([2]));
        assert!(r.summary.contains("all 1 acknowledged adds present in n1"), "{}", r.summary);
    }

    #[test]
    fn an_acknowledged_add_missing_from_the_final_primary_is_lost() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.add(1, 17, OpType::Ok);
        h.read("n2", &[1]);
        h.read("n1", &[1, 17]);
        let r = h.check(Some("n2"));
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.details["lost"], serde_json::json!([17]));
        assert!(r.summary.contains("1 of 2 acknowledged adds lost from n2's final read: 17"), "{}", r.summary);
        assert_eq!(kinds(&r), ["lost", "unexpected-on-replica"]);
        let line = r.details["anomalies"][0]["explanation"][0].as_str().unwrap();
        assert!(line.contains("present on n1"), "{line}");
    }

    #[test]
    fn a_replica_lacking_elements_diverges() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.add(1, 2, OpType::Info);
        h.read("n1", &[1, 2]);
        h.read("n3", &[1]);
        let r = h.check(Some("n1"));
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["divergence"]);
        assert!(r.summary.contains("n3 diverges from n1 (lacks 1, has 0 extra)"), "{}", r.summary);
    }

    #[test]
    fn an_element_never_attempted_is_unexpected() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.read("n1", &[1, 666]);
        let r = h.check(Some("n1"));
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.details["unexpected"], serde_json::json!([666]));
        assert_eq!(kinds(&r), ["unexpected"]);
    }

    #[test]
    fn no_read_of_the_final_primary_is_unknown() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.read("n2", &[1]);
        assert_eq!(h.check(Some("n1")).verdict, Verdict::Unknown);
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        assert_eq!(h.check(None).verdict, Verdict::Unknown);
    }

    #[test]
    fn without_a_final_primary_the_last_read_is_the_reference() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.add(0, 2, OpType::Ok);
        h.read("n2", &[1, 2]);
        h.read("n1", &[1]);
        let r = h.check(None);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.details["lost"], serde_json::json!([2]));
    }

    #[test]
    fn the_last_read_of_a_node_counts() {
        let mut h = H::new();
        h.add(0, 1, OpType::Ok);
        h.read("n1", &[]);
        h.read("n1", &[1]);
        assert_eq!(h.check(Some("n1")).verdict, Verdict::Valid);
    }
}
