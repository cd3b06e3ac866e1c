//! A small synthetic run (three nodes, a partition of the primary during
//! which the old primary keeps accepting writes, a daemon kill) written as
//! a report. Set `RAFTGRES_REPORT_EXAMPLE=<dir>` to keep the page for a
//! look in a browser.

use super::*;
use crate::checker::{CheckOptions, check_history};
use crate::history::{F, Mop, Value};

/// A deterministic xorshift generator, enough for a synthetic history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Planned {
    process: u64,
    invoke: u64,
    complete: Option<u64>,
    outcome: OpType,
    f: F,
    value: Value,
    node: Option<String>,
    applied: bool,
}

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn primary_at(t: u64) -> &'static str {
    match t {
        _ if t < 24 * S => "n1",
        _ if t < 46 * S => "n2",
        _ => "n3",
    }
}

/// Whether the router could reach a primary: not between the partition and
/// the election, nor while the second failover runs.
fn writable(t: u64) -> bool {
    !((20 * S..24 * S).contains(&t) || (45 * S..47 * S).contains(&t))
}

fn synthetic_run() -> (Vec<Op>, Vec<Fault>, Vec<RoleSample>) {
    let mut rng = Rng(0x5eed_1234_abcd);
    let end = 58 * S;
    let mut planned: Vec<Planned> = Vec::new();
    // Four list-append clients and two set clients.
    for worker in 0..6u64 {
        let mut process = worker;
        let mut t = worker * 7 * MS;
        let mut next_elem = worker as i64 * 100_000;
        while t < end {
            let ok = writable(t);
            let latency = if ok { 2 * MS + rng.below(18 * MS) } else { 1000 * MS + rng.below(100 * MS) };
            let outcome = if ok {
                OpType::Ok
            } else if rng.below(3) == 0 {
                OpType::Fail
            } else {
                OpType::Info
            };
            let (f, value) = if worker < 4 {
                let mops = (0..1 + rng.below(3))
                    .map(|_| {
                        let k = rng.below(4);
                        if rng.below(2) == 0 {
                            next_elem += 1;
                            Mop::Append(k, next_elem)
                        } else {
                            Mop::Read(k, None)
                        }
                    })
                    .collect();
                (F::Txn, Value::Txn(mops))
            } else {
                next_elem += 1;
                (F::Add, Value::Int(next_elem))
            };
            let applied = outcome == OpType::Ok || (outcome == OpType::Info && rng.below(2) == 0);
            planned.push(Planned {
                process,
                invoke: t,
                complete: Some(t + latency),
                outcome,
                f,
                value,
                node: None,
                applied,
            });
            if outcome == OpType::Info {
                process += 10;
            }
            t += latency + 20 * MS + rng.below(60 * MS);
        }
    }
    // Probes every 250 ms to each node; n1 keeps accepting writes until 30 s
    // although n2 was elected at 24 s: a dual primary.
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        let mut t = i as u64 * 80 * MS;
        let mut seq = 0;
        while t < end {
            let accepts = primary_at(t) == *node || (*node == "n1" && t < 30 * S);
            let outcome = if accepts && writable(t) || (*node == "n1" && (20 * S..30 * S).contains(&t)) {
                OpType::Ok
            } else {
                OpType::Fail
            };
            seq += 1;
            planned.push(Planned {
                process: 1000 + i as u64,
                invoke: t,
                complete: Some(t + 3 * MS),
                outcome,
                f: F::Probe,
                value: Value::Int(seq),
                node: Some(node.to_string()),
                applied: false,
            });
            t += 250 * MS;
        }
    }

    // Execute the txns and adds at their completion, in that order.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|i| planned[*i].complete);
    let mut lists: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    let mut set: Vec<i64> = Vec::new();
    let mut stale_done = false;
    for i in order {
        let p = &mut planned[i];
        if !p.applied {
            continue;
        }
        match &mut p.value {
            Value::Txn(mops) => {
                let single = mops.len() == 1;
                for m in mops.iter_mut() {
                    match m {
                        Mop::Append(k, e) => lists.entry(*k).or_default().push(*e),
                        Mop::Read(k, v) => {
                            let mut l = lists.get(k).cloned().unwrap_or_default();
                            // One stale read on the deposed primary n1.
                            if single && !stale_done && p.invoke > 26 * S && l.len() > 2 {
                                l.pop();
                                stale_done = true;
                            }
                            *v = Some(l);
                        }
                    }
                }
            }
            // n1's acknowledged adds during the split never reach n2.
            Value::Int(e) if p.outcome == OpType::Ok && (24 * S..30 * S).contains(&p.invoke) && *e % 5 == 0 => {}
            Value::Int(e) => set.push(*e),
            _ => {}
        }
    }
    // Final reads of the set from every node.
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        let mut v = set.clone();
        v.sort_unstable();
        planned.push(Planned {
            process: 2000 + i as u64,
            invoke: end + S + i as u64 * 10 * MS,
            complete: Some(end + S + i as u64 * 10 * MS + 5 * MS),
            outcome: OpType::Ok,
            f: F::Read,
            value: Value::Ints(v),
            node: Some(node.to_string()),
            applied: true,
        });
    }

    let mut records: Vec<(u64, bool, Op)> = Vec::new();
    for p in &planned {
        let invoke_value = match &p.value {
            Value::Txn(m) => Value::Txn(
                m.iter().map(|m| if let Mop::Read(k, _) = m { Mop::Read(*k, None) } else { m.clone() }).collect(),
            ),
            Value::Ints(_) => Value::None,
            v => v.clone(),
        };
        let base = Op {
            index: 0,
            time: p.invoke,
            process: p.process,
            kind: OpType::Invoke,
            f: p.f,
            value: invoke_value.clone(),
            node: p.node.clone(),
            error: None,
        };
        records.push((p.invoke, false, base.clone()));
        if let Some(c) = p.complete {
            let value = if p.outcome == OpType::Ok { p.value.clone() } else { invoke_value };
            let error = match p.outcome {
                OpType::Info => Some("timeout during COMMIT".to_string()),
                OpType::Fail => Some("no primary: connection refused".to_string()),
                _ => None,
            };
            records.push((c, true, Op { time: c, kind: p.outcome, value, error, ..base }));
        }
    }
    records.sort_by_key(|(t, completion, _)| (*t, !*completion));
    let history: Vec<Op> =
        records.into_iter().enumerate().map(|(i, (_, _, op))| Op { index: i as u64, ..op }).collect();

    let faults = vec![
        Fault {
            start: 20 * S,
            end: Some(35 * S),
            kind: "partition-primary".into(),
            targets: vec!["n1".into()],
            detail: "nft: drop n1 <-> n2,n3".into(),
            verified: Some(true),
        },
        Fault {
            start: 45 * S,
            end: Some(50 * S),
            kind: "kill-daemon".into(),
            targets: vec!["n2".into()],
            detail: "SIGKILL pid 4242".into(),
            verified: None,
        },
        Fault {
            start: 52 * S,
            end: Some(55 * S),
            kind: "pause-postgres".into(),
            targets: vec!["n1".into()],
            detail: "SIGSTOP pid 5151".into(),
            verified: Some(false),
        },
    ];
    let mut roles = Vec::new();
    for t in (0..59).map(|s| s * S + 500 * MS) {
        for node in ["n1", "n2", "n3"] {
            let role = match node {
                "n1" if (24 * S..30 * S).contains(&t) => "primary",
                "n1" if (30 * S..36 * S).contains(&t) => "rewinding",
                "n2" if (45 * S..50 * S).contains(&t) => "down",
                _ if primary_at(t) == node => "primary",
                _ => "replica",
            };
            roles.push(RoleSample { time: t, node: node.into(), role: role.into() });
        }
    }
    (history, faults, roles)
}

#[test]
fn a_report_for_a_small_run_holds_the_plots_the_verdict_and_the_anomalies() {
    let (history, faults, roles) = synthetic_run();
    let options = CheckOptions { final_primary: Some("n3".into()), ..CheckOptions::default() };
    let config = serde_json::json!({"nodes": 3, "time_limit_s": 58, "nemesis": "partition,kill,pause"});
    let results = check_history(&history, &faults, &options, 7, config);
    assert_eq!(results.verdict, Verdict::Invalid, "{results:#?}");
    assert_eq!(results.checkers["dual-primary"].verdict, Verdict::Invalid);
    assert_eq!(results.checkers["list-append"].verdict, Verdict::Invalid);
    assert!(
        results.checkers["list-append"].summary.contains("G-single-realtime"),
        "{}",
        results.checkers["list-append"].summary
    );
    assert_eq!(results.checkers["set"].verdict, Verdict::Invalid);

    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("RAFTGRES_REPORT_EXAMPLE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    write_html(&dir, &results, &history, &faults, &roles).expect("write report");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("<circle"), "latency points");
    assert!(html.contains("<polyline") || html.contains("<path"), "throughput lines");
    assert!(html.contains("<span class=\"badge invalid big\">INVALID</span>"));
    for needle in ["G-single-realtime", "dual-primary", "partition-primary", "kill-daemon", "lost", "n1", "n2", "n3"] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert!(
        !html.contains("http://")
            || html.matches("http://").count() == html.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(!html.contains("https://"));
    assert!(!html.contains("<script"));
}

#[test]
fn a_report_of_an_empty_run_still_renders() {
    let results = Results::new(1, serde_json::Value::Null);
    let html = render_html(&results, &[], &[], &[]).unwrap();
    assert!(html.contains("VALID"));
    assert!(html.contains("No completed workload operation"));
    assert!(html.contains("No fault was applied"));
}

#[test]
fn text_from_the_history_is_escaped() {
    let mut results = Results::new(1, serde_json::json!({"note": "<b>&"}));
    results.add(
        "x<y>",
        crate::record::CheckerResult {
            verdict: Verdict::Unknown,
            summary: "<script>".into(),
            details: serde_json::Value::Null,
        },
    );
    let html = render_html(&results, &[], &[], &[]).unwrap();
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    assert!(html.contains("&lt;b&gt;&amp;"));
}

#[test]
fn long_values_are_cut_to_their_ends() {
    assert_eq!(short_value(&Value::Ints((1..=20).collect())), "[1, 2, 3, …, 18, 19, 20] (20 elements)");
    let txn = Value::Txn(vec![Mop::Append(2, 7), Mop::Read(3, Some((1..=9).collect())), Mop::Read(4, None)]);
    assert_eq!(short_value(&txn), "append 2 7; r 3 […, 5, 6, 7, 8, 9] (9 elements); r 4 ?");
}
