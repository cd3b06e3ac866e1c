//! The dual-primary checker: no two nodes accept writes at the same time.
//!
//! Throughout the run the runner *probes* every node: a tiny insert sent
//! directly to that node's PostgreSQL (not through the router) with a short
//! timeout. An `ok` probe proves the node accepted a write at some instant
//! inside the probe's window `[invoke, completion]`; a `fail` or `info` probe
//! proves nothing either way.
//!
//! The rule:
//!
//! - A node's *acceptance run* is a maximal sequence of its probes (in the
//!   order it was probed) that all completed `ok`, with no `fail` or `info`
//!   among them.
//! - A run's *definite interval* is `[completion of its first probe, invoke of
//!   its last probe]`, when the first completion precedes the last invoke.
//!   Throughout it the node was accepting writes: it accepted one at or
//!   before the start and one at or after the end, and every probe between
//!   succeeded. (This assumes the node did not lose and regain the primary
//!   role between two consecutive probes.) A run of one probe, or one whose
//!   probes overlap, has no definite interval; each of its probes still
//!   leaves a point of acceptance somewhere in its window.
//! - **Invalid** when two different nodes' definite intervals overlap, or
//!   when one node's definite interval wholly contains another node's `ok`
//!   probe window: both nodes then accepted writes at the same instant.
//! - Unknown when no probe succeeded at all; valid otherwise.
//!
//! Each finding names the two nodes, their times in seconds since the start
//! of the run and the history indexes of the probes that bound them. The
//! runs themselves ([`runs`]) are what the report draws in the per-node
//! lane.

use super::call::Calls;
use super::{Anomaly, ms};
use crate::history::{F, OpType};
use crate::record::{CheckerResult, Verdict};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One `ok` probe's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// History index of the completion.
    pub op: u64,
    pub invoke: u64,
    pub complete: u64,
}

/// One acceptance run of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    pub node: String,
    pub probes: Vec<Window>,
}

impl Run {
    /// `[completion of the first probe, invoke of the last]`, if not empty.
    pub fn definite(&self) -> Option<(u64, u64)> {
        let (first, last) = (self.probes.first()?, self.probes.last()?);
        (first.complete < last.invoke).then_some((first.complete, last.invoke))
    }

    /// From the first invoke to the last completion: where acceptance may
    /// have happened.
    pub fn extent(&self) -> (u64, u64) {
        let start = self.probes.first().map_or(0, |p| p.invoke);
        let end = self.probes.last().map_or(0, |p| p.complete);
        (start, end)
    }

    fn bounds(&self) -> String {
        match (self.probes.first(), self.probes.last()) {
            (Some(f), Some(l)) if f.op != l.op => format!("probes op {}–{}, {} ok", f.op, l.op, self.probes.len()),
            (Some(f), _) => format!("probe op {}", f.op),
            _ => String::new(),
        }
    }
}

/// Each node's acceptance runs, in time order, and notes on probes that
/// could not be placed.
pub fn runs(calls: &Calls) -> (BTreeMap<String, Vec<Run>>, Vec<String>) {
    let mut out: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    let mut open: BTreeMap<String, Run> = BTreeMap::new();
    let mut malformed = Vec::new();
    for call in calls.calls.iter().filter(|c| c.f() == F::Probe) {
        let Some(node) = call.node() else {
            malformed.push(format!("op {}: a probe without a node", call.index()));
            continue;
        };
        let window = match (call.outcome(), call.invoke_time(), call.complete_time()) {
            (OpType::Ok, Some(invoke), Some(complete)) => Some(Window { op: call.index(), invoke, complete }),
            (OpType::Ok, _, _) => {
                malformed.push(format!("op {}: an ok probe without its invoke", call.index()));
                None
            }
            _ => None,
        };
        match window {
            Some(w) => open
                .entry(node.to_string())
                .or_insert_with(|| Run { node: node.to_string(), probes: vec![] })
                .probes
                .push(w),
            None => {
                if let Some(run) = open.remove(node) {
                    out.entry(node.to_string()).or_default().push(run);
                }
            }
        }
    }
    for (node, run) in open {
        out.entry(node).or_default().push(run);
    }
    (out, malformed)
}

/// A run's acceptance span, as the details and the report show it.
#[derive(Debug, Serialize)]
struct Span {
    start_ms: f64,
    end_ms: f64,
    definite_start_ms: Option<f64>,
    definite_end_ms: Option<f64>,
    probes: usize,
    first_op: u64,
    last_op: u64,
}

/// Check the probes among the calls.
pub fn check(calls: &Calls) -> CheckerResult {
    let (runs, malformed) = runs(calls);
    let all: Vec<&Run> = runs.values().flatten().collect();
    let mut anomalies = Vec::new();
    let mut findings = Vec::new();
    let mut reported: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (i, a) in all.iter().enumerate() {
        let Some((a0, a1)) = a.definite() else { continue };
        for (j, b) in all.iter().enumerate() {
            if a.node == b.node || reported.contains(&(i.min(j), i.max(j))) {
                continue;
            }
            if let Some((b0, b1)) = b.definite()
                && a0 < b1
                && b0 < a1
            {
                reported.insert((i.min(j), i.max(j)));
                findings.push(serde_json::json!({
                    "rule": "definite intervals overlap",
                    "nodes": [a.node, b.node],
                    "intervals_ms": [[ms(a0), ms(a1)], [ms(b0), ms(b1)]],
                    "overlap_ms": [ms(a0.max(b0)), ms(a1.min(b1))],
                    "probe_ops": [[a.probes[0].op, a.probes[a.probes.len() - 1].op], [b.probes[0].op, b.probes[b.probes.len() - 1].op]],
                }));
                anomalies.push(Anomaly::new(
                    "dual-primary",
                    vec![
                        a.probes[0].op,
                        a.probes[a.probes.len() - 1].op,
                        b.probes[0].op,
                        b.probes[b.probes.len() - 1].op,
                    ],
                    vec![
                        format!("{} accepted writes throughout {} ({})", a.node, secs(a0, a1), a.bounds()),
                        format!("{} accepted writes throughout {} ({})", b.node, secs(b0, b1), b.bounds()),
                        format!(
                            "both accepted writes from {:.3} s to {:.3} s",
                            ms(a0.max(b0)) / 1e3,
                            ms(a1.min(b1)) / 1e3
                        ),
                    ],
                ));
                continue;
            }
            // Probes of b wholly inside a's definite interval.
            let start = b.probes.partition_point(|p| p.invoke < a0);
            if let Some(p) = b.probes[start..].iter().take_while(|p| p.invoke <= a1).find(|p| p.complete <= a1) {
                reported.insert((i.min(j), i.max(j)));
                findings.push(serde_json::json!({
                    "rule": "a probe window inside a definite interval",
                    "nodes": [a.node, b.node],
                    "intervals_ms": [[ms(a0), ms(a1)], [ms(p.invoke), ms(p.complete)]],
                    "probe_ops": [[a.probes[0].op, a.probes[a.probes.len() - 1].op], [p.op, p.op]],
                }));
                anomalies.push(Anomaly::new(
                    "dual-primary",
                    vec![a.probes[0].op, a.probes[a.probes.len() - 1].op, p.op],
                    vec![
                        format!("{} accepted writes throughout {} ({})", a.node, secs(a0, a1), a.bounds()),
                        format!(
                            "{} accepted a probe write (op {}) within {}, inside that interval",
                            b.node,
                            p.op,
                            secs(p.invoke, p.complete)
                        ),
                    ],
                ));
            }
        }
    }
    let ok_probes: usize = all.iter().map(|r| r.probes.len()).sum();
    let verdict = if !anomalies.is_empty() {
        Verdict::Invalid
    } else if ok_probes == 0 || !malformed.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    let summary = if let Some(first) = anomalies.first() {
        format!(
            "{} time(s) two nodes accepted writes at once; first: {}",
            anomalies.len(),
            first.explanation.join("; ")
        )
    } else if ok_probes == 0 {
        "no probe succeeded: nothing to compare".to_string()
    } else {
        format!(
            "no two nodes accepted writes at once ({} ok probes in {} runs over {} nodes)",
            ok_probes,
            all.len(),
            runs.len()
        )
    };
    let spans: BTreeMap<&String, Vec<Span>> = runs
        .iter()
        .map(|(node, rs)| {
            let spans = rs
                .iter()
                .map(|r| {
                    let (s, e) = r.extent();
                    let d = r.definite();
                    Span {
                        start_ms: ms(s),
                        end_ms: ms(e),
                        definite_start_ms: d.map(|d| ms(d.0)),
                        definite_end_ms: d.map(|d| ms(d.1)),
                        probes: r.probes.len(),
                        first_op: r.probes.first().map_or(0, |p| p.op),
                        last_op: r.probes.last().map_or(0, |p| p.op),
                    }
                })
                .collect();
            (node, spans)
        })
        .collect();
    let details = serde_json::json!({
        "ok_probes": ok_probes,
        "runs": all.len(),
        "spans": spans,
        "malformed": malformed,
        "findings": findings,
        "anomalies": anomalies,
    });
    CheckerResult { verdict, summary, details }
}

fn secs(a: u64, b: u64) -> String {
    format!("{:.3}–{:.3} s", ms(a) / 1e3, ms(b) / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::call::pair;
    use crate::history::{Op, Value};

    /// Probes as `(node, outcome, invoke ms, complete ms)`, each on its own
    /// process; records are ordered by time.
    fn history(probes: &[(&str, OpType, u64, u64)]) -> Vec<Op> {
        let mut records: Vec<(u64, u64, OpType, &str)> = Vec::new();
        for (p, (node, outcome, inv, done)) in probes.iter().enumerate() {
            records.push((*inv, p as u64, OpType::Invoke, node));
            records.push((*done, p as u64, *outcome, node));
        }
        records.sort_by_key(|r| (r.0, r.2 != OpType::Invoke));
        records
            .into_iter()
            .enumerate()
            .map(|(i, (t, process, kind, node))| Op {
                index: i as u64,
                time: t * 1_000_000,
                process,
                kind,
                f: F::Probe,
                value: Value::Int(process as i64),
                node: Some(node.to_string()),
                error: None,
            })
            .collect()
    }

    fn check_probes(probes: &[(&str, OpType, u64, u64)]) -> CheckerResult {
        check(&pair(&history(probes)))
    }

    use OpType::{Fail, Info, Ok};

    #[test]
    fn a_clean_failover_is_valid() {
        let r = check_probes(&[
            ("n1", Ok, 0, 10),
            ("n1", Ok, 100, 110),
            ("n1", Ok, 200, 210),
            ("n1", Info, 300, 400),
            ("n2", Fail, 0, 5),
            ("n2", Fail, 300, 305),
            ("n2", Ok, 350, 360),
            ("n2", Ok, 450, 460),
            ("n1", Fail, 500, 505),
        ]);
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
        assert_eq!(r.details["runs"], 2);
        let n1 = &r.details["spans"]["n1"][0];
        assert_eq!(n1["definite_start_ms"], 10.0);
        assert_eq!(n1["definite_end_ms"], 200.0);
    }

    #[test]
    fn overlapping_definite_intervals_are_dual_primary() {
        let r = check_probes(&[
            ("n1", Ok, 0, 10),
            ("n1", Ok, 100, 110),
            ("n1", Ok, 200, 210),
            ("n2", Ok, 50, 60),
            ("n2", Ok, 150, 160),
            ("n2", Ok, 250, 260),
        ]);
        assert_eq!(r.verdict, Verdict::Invalid);
        let a = &r.details["anomalies"][0];
        assert_eq!(a["type"], "dual-primary");
        let text = a["explanation"].to_string();
        assert!(text.contains("n1 accepted writes throughout 0.010–0.200 s"), "{text}");
        assert!(text.contains("both accepted writes from 0.060 s to 0.200 s"), "{text}");
        assert_eq!(r.details["anomalies"].as_array().unwrap().len(), 1, "reported once per pair");
        let f = &r.details["findings"][0];
        assert_eq!(f["nodes"], serde_json::json!(["n1", "n2"]));
        assert_eq!(f["overlap_ms"], serde_json::json!([60.0, 200.0]));
    }

    #[test]
    fn a_single_probe_inside_another_nodes_definite_interval_is_dual_primary() {
        let r = check_probes(&[
            ("n1", Ok, 0, 10),
            ("n1", Ok, 100, 110),
            ("n1", Ok, 200, 210),
            ("n3", Fail, 20, 30),
            ("n3", Ok, 120, 130),
            ("n3", Info, 220, 330),
        ]);
        assert_eq!(r.verdict, Verdict::Invalid);
        let text = r.details["anomalies"][0]["explanation"].to_string();
        assert!(text.contains("n3 accepted a probe write"), "{text}");
        assert_eq!(r.details["findings"][0]["rule"], "a probe window inside a definite interval");
        assert_eq!(r.details["findings"][0]["intervals_ms"][1], serde_json::json!([120.0, 130.0]));
    }

    #[test]
    fn windows_that_may_not_overlap_are_not_a_finding() {
        // n2's single ok probe straddles the end of n1's definite interval,
        // and their runs' extents overlap: not proof of two primaries.
        let r = check_probes(&[
            ("n1", Ok, 0, 10),
            ("n1", Ok, 100, 110),
            ("n1", Fail, 200, 210),
            ("n2", Ok, 90, 150),
            ("n2", Ok, 105, 200),
        ]);
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
    }

    #[test]
    fn no_successful_probe_is_unknown() {
        let r = check_probes(&[("n1", Fail, 0, 10), ("n2", Info, 0, 100)]);
        assert_eq!(r.verdict, Verdict::Unknown);
    }
}
