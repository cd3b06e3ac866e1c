//! The availability checker: how long writes stopped succeeding, around
//! each fault and overall. This is liveness, reported beside the safety
//! verdicts rather than mixed into them.
//!
//! A *write* is an `ok` call that changed data: an `add`, or a `txn` with at
//! least one `append`. Probes are not counted: they go to nodes directly,
//! not through the router clients use.
//!
//! - For each fault: the time from its start, and from its heal, to the
//!   completion of the first write invoked at or after that instant.
//! - The longest window without a completed write, between the first write
//!   invoked and the last write that completed.
//! - The share of workload calls (`txn`, `add`, `read`) that ended `info`,
//!   and the calls per second by outcome.
//!
//! Verdict: valid, unless no write was invoked and acknowledged after the
//! final heal (the latest end of any fault, or the start of the run with no
//! faults): then unknown. With a bound, invalid when the first write after
//! the final heal took longer than the bound, or never came.

use super::call::{Call, Calls};
use super::ms;
use crate::history::{F, Mop, OpType, Value};
use crate::record::{CheckerResult, Fault, Verdict};
use serde::Serialize;
use std::time::Duration;

/// Whether a call is an acknowledged write.
pub fn is_write(call: &Call) -> bool {
    call.outcome() == OpType::Ok
        && match call.f() {
            F::Add => true,
            F::Txn => matches!(call.value(), Value::Txn(m) if m.iter().any(|m| matches!(m, Mop::Append(..)))),
            _ => false,
        }
}

/// The completion time of the first acknowledged write invoked at or after
/// `t` (ns), if any.
pub fn first_write_after(calls: &Calls, t: u64) -> Option<u64> {
    calls
        .calls
        .iter()
        .filter(|c| is_write(c) && c.invoke_time().is_some_and(|i| i >= t))
        .filter_map(|c| c.complete_time())
        .min()
}

#[derive(Debug, Serialize)]
struct FaultLiveness {
    kind: String,
    targets: Vec<String>,
    start_ms: f64,
    end_ms: Option<f64>,
    /// From the fault's start to the first write after it.
    first_write_after_start_ms: Option<f64>,
    /// From the heal to the first write after it.
    first_write_after_heal_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Gap {
    start_ms: f64,
    end_ms: f64,
    length_ms: f64,
}

#[derive(Debug, Serialize)]
struct Rates {
    ok: f64,
    fail: f64,
    info: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    writes: usize,
    faults: Vec<FaultLiveness>,
    final_heal_ms: f64,
    first_write_after_final_heal_ms: Option<f64>,
    bound_ms: Option<f64>,
    longest_gap: Option<Gap>,
    info_share: f64,
    ops_per_s: Rates,
    never_healed: usize,
}

/// Check liveness; `bound` is the longest acceptable time from the final
/// heal to the first write.
pub fn check(calls: &Calls, faults: &[Fault], bound: Option<Duration>) -> CheckerResult {
    let after = |t: u64| first_write_after(calls, t).map(|w| ms(w.saturating_sub(t)));
    let per_fault: Vec<FaultLiveness> = faults
        .iter()
        .map(|f| FaultLiveness {
            kind: f.kind.clone(),
            targets: f.targets.clone(),
            start_ms: ms(f.start),
            end_ms: f.end.map(ms),
            first_write_after_start_ms: after(f.start),
            first_write_after_heal_ms: f.end.and_then(after),
        })
        .collect();
    let final_heal = faults.iter().filter_map(|f| f.end).max().unwrap_or(0);
    let after_heal = after(final_heal);

    let writes: Vec<&Call> = calls.calls.iter().filter(|c| is_write(c)).collect();
    let mut done: Vec<u64> = writes.iter().filter_map(|c| c.complete_time()).collect();
    done.sort_unstable();
    let first_invoke = calls
        .calls
        .iter()
        .filter(|c| matches!(c.f(), F::Add | F::Txn))
        .filter_map(|c| c.invoke_time().or(c.complete_time()))
        .min();
    let longest_gap = first_invoke.and_then(|start| {
        std::iter::once(start)
            .chain(done.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by_key(|(a, b)| b - a)
            .map(|(a, b)| Gap { start_ms: ms(a), end_ms: ms(b), length_ms: ms(b - a) })
    });

    let workload: Vec<&Call> = calls.calls.iter().filter(|c| matches!(c.f(), F::Add | F::Txn | F::Read)).collect();
    let count = |o: OpType| workload.iter().filter(|c| c.outcome() == o).count();
    let span = {
        let start = workload.iter().filter_map(|c| c.invoke_time().or(c.complete_time())).min().unwrap_or(0);
        let end = workload.iter().filter_map(|c| c.complete_time().or(c.invoke_time())).max().unwrap_or(0);
        (ms(end.saturating_sub(start)) / 1e3).max(1e-3)
    };
    let info = count(OpType::Info);
    let report = Report {
        writes: writes.len(),
        faults: per_fault,
        final_heal_ms: ms(final_heal),
        first_write_after_final_heal_ms: after_heal,
        bound_ms: bound.map(|b| b.as_secs_f64() * 1e3),
        longest_gap,
        info_share: if workload.is_empty() { 0.0 } else { info as f64 / workload.len() as f64 },
        ops_per_s: Rates {
            ok: count(OpType::Ok) as f64 / span,
            fail: count(OpType::Fail) as f64 / span,
            info: info as f64 / span,
        },
        never_healed: faults.iter().filter(|f| f.end.is_none()).count(),
    };

    let over_bound = match (bound, after_heal) {
        (Some(b), Some(t)) => t > b.as_secs_f64() * 1e3,
        (Some(_), None) => true,
        _ => false,
    };
    let verdict = if over_bound {
        Verdict::Invalid
    } else if after_heal.is_none() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    let heal = if faults.is_empty() { "the start" } else { "the final heal" };
    let mut parts = vec![match after_heal {
        Some(t) => format!("first write {:.3} s after {heal}", t / 1e3),
        None => format!("no write acknowledged after {heal} ({:.3} s)", ms(final_heal) / 1e3),
    }];
    if let (Some(b), true) = (report.bound_ms, over_bound) {
        parts[0].push_str(&format!(", over the {:.3} s bound", b / 1e3));
    }
    if let Some(g) = &report.longest_gap {
        parts.push(format!("longest gap without a write {:.3} s (from {:.3} s)", g.length_ms / 1e3, g.start_ms / 1e3));
    }
    parts.push(format!("{:.1}% info", report.info_share * 100.0));
    parts.push(format!("{:.1} ok/s", report.ops_per_s.ok));
    if report.never_healed > 0 {
        parts.push(format!("{} fault(s) never healed", report.never_healed));
    }
    CheckerResult { verdict, summary: parts.join("; "), details: serde_json::to_value(&report).unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::call::pair;
    use crate::checker::call::tests::ops;

    fn fault(start_ms: u64, end_ms: Option<u64>) -> Fault {
        Fault {
            start: start_ms * 1_000_000,
            end: end_ms.map(|e| e * 1_000_000),
            kind: "partition-primary".into(),
            targets: vec!["n1".into()],
            detail: String::new(),
            verified: Some(true),
        }
    }

    fn history() -> Vec<crate::history::Op> {
        use OpType::*;
        ops(&[
            (0, Invoke, F::Add, Value::Int(1), 0),
            (0, Ok, F::Add, Value::Int(1), 10),
            (1, Invoke, F::Add, Value::Int(2), 100),
            (1, Info, F::Add, Value::Int(2), 1100),
            (2, Invoke, F::Txn, Value::Txn(vec![Mop::Read(1, None)]), 1200),
            (2, Ok, F::Txn, Value::Txn(vec![Mop::Read(1, Some(vec![]))]), 1210),
            (3, Invoke, F::Txn, Value::Txn(vec![Mop::Append(1, 1)]), 2000),
            (3, Ok, F::Txn, Value::Txn(vec![Mop::Append(1, 1)]), 2500),
        ])
    }

    #[test]
    fn times_to_the_first_write_and_the_longest_gap() {
        let h = history();
        let r = check(&pair(&h), &[fault(50, Some(1500))], None);
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
        let d = &r.details;
        assert_eq!(d["faults"][0]["first_write_after_start_ms"], 2450.0);
        assert_eq!(d["faults"][0]["first_write_after_heal_ms"], 1000.0);
        assert_eq!(d["longest_gap"]["start_ms"], 10.0);
        assert_eq!(d["longest_gap"]["end_ms"], 2500.0);
        assert_eq!(d["info_share"], 0.25);
        assert!(r.summary.starts_with("first write 1.000 s after the final heal"), "{}", r.summary);
    }

    #[test]
    fn no_write_after_the_final_heal_is_unknown_and_a_bound_makes_it_invalid() {
        let h = history();
        let calls = pair(&h);
        assert_eq!(check(&calls, &[fault(50, Some(2100))], None).verdict, Verdict::Unknown);
        assert_eq!(check(&calls, &[fault(50, Some(2100))], Some(Duration::from_secs(5))).verdict, Verdict::Invalid);
        assert_eq!(check(&calls, &[fault(50, Some(1500))], Some(Duration::from_millis(999))).verdict, Verdict::Invalid);
        assert_eq!(check(&calls, &[fault(50, Some(1500))], Some(Duration::from_millis(1000))).verdict, Verdict::Valid);
    }
}
