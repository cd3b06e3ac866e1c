//! Hand-written histories, one per anomaly the checker names, and valid
//! ones it must accept.

use super::*;
use crate::checker::call::pair;
use crate::history::Op;

/// A history under construction; each record is one millisecond after the
/// previous one.
#[derive(Default)]
struct H {
    ops: Vec<Op>,
    open: HashMap<u64, Vec<Mop>>,
}

fn ap(k: Key, e: Elem) -> Mop {
    Mop::Append(k, e)
}

fn r(k: Key, list: &[Elem]) -> Mop {
    Mop::Read(k, Some(list.to_vec()))
}

impl H {
    fn record(&mut self, process: u64, kind: OpType, mops: Vec<Mop>) -> u64 {
        let index = self.ops.len() as u64;
        self.ops.push(Op {
            index,
            time: (index + 1) * 1_000_000,
            process,
            kind,
            f: F::Txn,
            value: Value::Txn(mops),
            node: None,
            error: None,
        });
        index
    }

    /// Invoke a transaction; its reads are recorded as unknown.
    fn invoke(&mut self, process: u64, mops: &[Mop]) -> &mut H {
        let blank =
            mops.iter().map(|m| if let Mop::Read(k, _) = m { Mop::Read(*k, None) } else { m.clone() }).collect();
        self.record(process, OpType::Invoke, blank);
        self.open.insert(process, mops.to_vec());
        self
    }

    /// Complete `process`'s open transaction with `kind` and the reads given
    /// at invoke; returns the transaction's name (its index).
    fn complete(&mut self, process: u64, kind: OpType) -> u64 {
        let mops = self.open.remove(&process).expect("an open transaction");
        let mops = if kind == OpType::Ok {
            mops
        } else {
            mops.into_iter().map(|m| if let Mop::Read(k, _) = m { Mop::Read(k, None) } else { m }).collect()
        };
        self.record(process, kind, mops)
    }

    fn ok(&mut self, process: u64) -> u64 {
        self.complete(process, OpType::Ok)
    }

    /// A transaction invoked and completed `ok` before anything else happens.
    fn txn(&mut self, process: u64, mops: &[Mop]) -> u64 {
        self.invoke(process, mops);
        self.ok(process)
    }

    fn check(&self) -> CheckerResult {
        self.check_with(&Options::default())
    }

    fn check_with(&self, options: &Options) -> CheckerResult {
        check(&pair(&self.ops), options)
    }
}

fn types(r: &CheckerResult) -> Vec<String> {
    r.details["anomaly_types"].as_object().expect("anomaly_types").keys().cloned().collect()
}

fn anomalies<'a>(r: &'a CheckerResult, kind: &str) -> Vec<&'a serde_json::Value> {
    r.details["anomalies"].as_array().expect("anomalies").iter().filter(|a| a["type"] == kind).collect()
}

fn lines(a: &serde_json::Value) -> Vec<String> {
    a["explanation"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_valid_concurrent_history_with_indeterminate_transactions_passes() {
    let mut h = H::default();
    // T1 appends 1 to key 1 while T2 reads key 1 concurrently (sees it).
    h.invoke(0, &[ap(1, 1)]).invoke(1, &[r(1, &[1])]);
    h.ok(0);
    h.ok(1);
    // An indeterminate append that nobody ever read: imposes nothing.
    h.invoke(2, &[ap(1, 2)]).complete(2, OpType::Info);
    // An indeterminate append that did land: a later read sees it.
    h.invoke(3, &[ap(2, 1), ap(1, 3)]).complete(3, OpType::Info);
    // Concurrent appends and reads on two keys; serial order p5, p4.
    h.invoke(4, &[ap(1, 4), r(2, &[1, 2])]).invoke(5, &[r(1, &[1, 3]), ap(2, 2)]);
    h.ok(5);
    h.ok(4);
    // A failed append, never read.
    h.invoke(6, &[ap(2, 9)]).complete(6, OpType::Fail);
    // Reads after everything, including a read of a key's own append.
    h.txn(7, &[r(1, &[1, 3, 4]), r(2, &[1, 2]), ap(3, 1), r(3, &[1])]);
    h.txn(7, &[r(3, &[1])]);
    let res = h.check();
    assert_eq!(res.verdict, Verdict::Valid, "{} {:#}", res.summary, res.details);
    assert!(res.summary.contains("no anomaly"), "{}", res.summary);
    assert!(res.details["edges"]["realtime"].as_u64().unwrap() > 0);
    assert!(res.details["edges"]["rw"].as_u64().unwrap() > 0);
}

#[test]
fn g0_write_cycle() {
    let mut h = H::default();
    // T1 and T2 interleave their appends to keys 1 and 2 in opposite orders.
    h.invoke(0, &[ap(1, 1), ap(2, 2)]).invoke(1, &[ap(1, 2), ap(2, 1)]);
    let t1 = h.ok(0);
    let t2 = h.ok(1);
    h.txn(2, &[r(1, &[1, 2]), r(2, &[1, 2])]);
    let res = h.check();
    assert_eq!(res.verdict, Verdict::Invalid);
    assert_eq!(types(&res), ["G0"]);
    let a = anomalies(&res, "G0")[0];
    let l = lines(a);
    assert!(l.contains(&format!("T{t2} appended 2 to key 1 after T{t1}'s 1 (ww)")), "{l:?}");
    assert!(l.contains(&format!("T{t1} appended 2 to key 2 after T{t2}'s 1 (ww)")), "{l:?}");
}

#[test]
fn g1c_circular_information_flow() {
    let mut h = H::default();
    // Each sees the other's append: wr both ways.
    h.invoke(0, &[ap(1, 1), r(2, &[1])]).invoke(1, &[ap(2, 1), r(1, &[1])]);
    let t1 = h.ok(0);
    let t2 = h.ok(1);
    let res = h.check();
    assert_eq!(types(&res), ["G1c"]);
    let l = lines(anomalies(&res, "G1c")[0]);
    assert!(l.contains(&format!("T{t1} read key 2 ending in T{t2}'s append of 1 (wr)")), "{l:?}");
}

#[test]
fn g_single_read_skew() {
    let mut h = H::default();
    // T1 sees T2's append to key 2 but not its append to key 1.
    h.invoke(0, &[r(1, &[]), r(2, &[1])]).invoke(1, &[ap(1, 1), ap(2, 1)]);
    let t2 = h.ok(1);
    let t1 = h.ok(0);
    h.txn(2, &[r(1, &[1])]);
    let res = h.check();
    assert_eq!(types(&res), ["G-single"]);
    let l = lines(anomalies(&res, "G-single")[0]);
    assert!(l.contains(&format!("T{t1} read key 1 as empty and did not see T{t2}'s append of 1 (rw)")), "{l:?}");
}

#[test]
fn g_single_realtime_stale_read_on_a_deposed_primary() {
    let mut h = H::default();
    let t1 = h.txn(0, &[ap(1, 1)]);
    // T2 commits on the new primary, strictly after T1.
    let t2 = h.txn(1, &[ap(1, 2)]);
    // T3 begins after T2 committed and reads the old primary's state.
    let t3 = h.txn(2, &[r(1, &[1])]);
    h.txn(3, &[r(1, &[1, 2])]);
    let res = h.check();
    assert_eq!(res.verdict, Verdict::Invalid);
    assert_eq!(types(&res), ["G-single-realtime"]);
    let a = anomalies(&res, "G-single-realtime")[0];
    let l = lines(a);
    assert!(l.contains(&format!("T{t3} read key 1 ending in 1 and did not see T{t2}'s append of 2 (rw)")), "{l:?}");
    assert!(l.iter().any(|x| x.starts_with(&format!("T{t2} completed at")) && x.ends_with("(realtime)")), "{l:?}");
    assert!(!a["ops"].as_array().unwrap().contains(&t1.into()), "the shortest witness is T2, T3");
}

#[test]
fn g_single_process_a_session_misses_its_own_write() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    h.txn(0, &[r(1, &[])]);
    h.txn(1, &[r(1, &[1])]);
    let res = h.check();
    assert_eq!(types(&res), ["G-single-process"]);
}

#[test]
fn g2_item_write_skew() {
    let mut h = H::default();
    // Each reads the key the other appends to, both see it empty.
    h.invoke(0, &[r(1, &[]), ap(2, 1)]).invoke(1, &[r(2, &[]), ap(1, 1)]);
    h.ok(0);
    h.ok(1);
    h.txn(2, &[r(1, &[1]), r(2, &[1])]);
    let res = h.check();
    assert_eq!(types(&res), ["G2-item"]);
    assert_eq!(res.verdict, Verdict::Invalid);
}

#[test]
fn g2_item_is_found_from_never_read_appends_too() {
    let mut h = H::default();
    h.invoke(0, &[r(1, &[]), ap(2, 1)]).invoke(1, &[r(2, &[]), ap(1, 1)]);
    h.ok(0);
    h.ok(1);
    let res = h.check();
    assert_eq!(types(&res), ["G2-item"]);
    let l = lines(anomalies(&res, "G2-item")[0]);
    assert!(l[0].contains("never read"), "{l:?}");
}

#[test]
fn g_nonadjacent() {
    let mut h = H::default();
    // T1 -rw-> T2 -ww-> T3 -rw-> T4 -ww-> T1, all concurrent.
    h.invoke(0, &[r(1, &[]), ap(4, 2)])
        .invoke(1, &[ap(1, 1), ap(2, 1)])
        .invoke(2, &[r(3, &[]), ap(2, 2)])
        .invoke(3, &[ap(3, 1), ap(4, 1)]);
    for p in 0..4 {
        h.ok(p);
    }
    h.txn(4, &[r(1, &[1]), r(2, &[1, 2]), r(3, &[1]), r(4, &[1, 2])]);
    let res = h.check();
    assert_eq!(types(&res), ["G-nonadjacent"]);
    assert_eq!(anomalies(&res, "G-nonadjacent")[0]["ops"].as_array().unwrap().len(), 4);
}

#[test]
fn g1a_aborted_read() {
    let mut h = H::default();
    h.invoke(0, &[ap(1, 1)]);
    let t1 = h.complete(0, OpType::Fail);
    let t2 = h.txn(1, &[r(1, &[1])]);
    let res = h.check();
    assert_eq!(types(&res), ["G1a"]);
    let a = anomalies(&res, "G1a")[0];
    assert_eq!(a["ops"], serde_json::json!([t1, t2]));
    assert!(lines(a)[0].contains("which failed"), "{a}");
}

#[test]
fn g1b_intermediate_read() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1), ap(1, 2)]);
    h.txn(1, &[r(1, &[1])]);
    let res = h.check();
    assert!(types(&res).contains(&"G1b".to_string()), "{:?}", types(&res));
    assert_eq!(res.verdict, Verdict::Invalid);
}

#[test]
fn incompatible_order_lost_or_reordered_append() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    h.txn(0, &[ap(1, 2)]);
    h.txn(0, &[ap(1, 3)]);
    h.invoke(1, &[r(1, &[1, 2])]).invoke(2, &[r(1, &[1, 3])]);
    h.ok(1);
    h.ok(2);
    let res = h.check();
    assert!(types(&res).contains(&"incompatible-order".to_string()), "{:?}", types(&res));
    let l = lines(anomalies(&res, "incompatible-order")[0]);
    assert!(l[0].contains("differ at position 1"), "{l:?}");
}

#[test]
fn lost_append_an_acknowledged_append_a_later_read_misses() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    let t2 = h.txn(1, &[ap(1, 2)]);
    let t3 = h.txn(2, &[r(1, &[1])]);
    let res = h.check();
    assert!(types(&res).contains(&"lost-append".to_string()), "{:?}", types(&res));
    let a = anomalies(&res, "lost-append")[0];
    assert_eq!(a["ops"], serde_json::json!([t2, t3]));
}

#[test]
fn an_acknowledged_append_concurrent_with_the_last_read_is_not_lost() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    h.invoke(1, &[ap(1, 2)]).invoke(2, &[r(1, &[1])]);
    h.ok(1);
    h.ok(2);
    let res = h.check();
    assert_eq!(res.verdict, Verdict::Valid, "{}", res.summary);
}

#[test]
fn internal_inconsistency() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    h.txn(1, &[ap(1, 2), r(1, &[1])]);
    h.txn(2, &[r(2, &[]), r(2, &[5])]);
    h.txn(3, &[ap(2, 5)]);
    let res = h.check();
    assert_eq!(anomalies(&res, "internal").len(), 2, "{:#}", res.details);
}

#[test]
fn duplicate_elements_and_duplicate_appends() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    h.txn(1, &[ap(1, 1)]);
    h.txn(2, &[r(1, &[1, 1])]);
    let res = h.check();
    let t = types(&res);
    assert!(t.contains(&"duplicate-elements".to_string()) && t.contains(&"duplicate-appends".to_string()), "{t:?}");
    assert_eq!(res.verdict, Verdict::Invalid);
}

#[test]
fn an_element_nobody_appended() {
    let mut h = H::default();
    h.txn(0, &[r(1, &[7])]);
    let res = h.check();
    assert_eq!(types(&res), ["unknown-element"]);
}

#[test]
fn a_cycle_search_over_budget_is_unknown() {
    let mut h = H::default();
    h.invoke(0, &[r(1, &[]), ap(2, 1)]).invoke(1, &[r(2, &[]), ap(1, 1)]);
    h.ok(0);
    h.ok(1);
    let res = h.check_with(&Options { cycle_search_steps: 1 });
    assert_eq!(types(&res), ["cycle-search-timeout"]);
    assert_eq!(res.verdict, Verdict::Unknown);
}

#[test]
fn a_malformed_transaction_is_unknown_not_a_panic() {
    let mut h = H::default();
    h.txn(0, &[ap(1, 1)]);
    h.ops.push(Op {
        index: 2,
        time: 3,
        process: 1,
        kind: OpType::Ok,
        f: F::Txn,
        value: Value::Int(3),
        node: None,
        error: None,
    });
    let res = h.check();
    assert_eq!(res.verdict, Verdict::Unknown);
    assert_eq!(types(&res), ["malformed"]);
}

#[test]
fn a_long_serial_history_passes_quickly() {
    let mut h = H::default();
    let mut lists: HashMap<Key, Vec<Elem>> = HashMap::new();
    for i in 0..3000i64 {
        let k = (i % 7) as Key;
        let list = lists.entry(k).or_default();
        let read = r(k, list);
        list.push(i);
        h.txn((i % 5) as u64, &[read, ap(k, i)]);
    }
    let res = h.check();
    assert_eq!(res.verdict, Verdict::Valid, "{}", res.summary);
}

#[test]
fn a_refined_search_over_budget_still_names_a_cycle() {
    let mut h = H::default();
    h.invoke(0, &[r(1, &[]), ap(2, 1)]).invoke(1, &[r(2, &[]), ap(1, 1)]);
    h.ok(0);
    h.ok(1);
    let res = h.check_with(&Options { cycle_search_steps: 12 });
    assert_eq!(types(&res), ["G2-item"]);
    let l = lines(anomalies(&res, "G2-item")[0]);
    assert!(l.last().unwrap().contains("ran out of budget"), "{l:?}");
}
