use super::*;
use crate::history::{Mop, OpType, Value};
use crate::record::Verdict;

fn op(index: u64, process: u64, kind: OpType, f: F, value: Value, node: Option<&str>) -> Op {
    Op { index, time: index * 1_000_000, process, kind, f, value, node: node.map(str::to_string), error: None }
}

/// A small run directory with every kind of operation.
fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = [
        op(0, 0, OpType::Invoke, F::Txn, Value::Txn(vec![Mop::Append(1, 1)]), None),
        op(1, 0, OpType::Ok, F::Txn, Value::Txn(vec![Mop::Append(1, 1)]), None),
        op(2, 1, OpType::Invoke, F::Add, Value::Int(5), None),
        op(3, 1, OpType::Ok, F::Add, Value::Int(5), None),
        op(4, 2, OpType::Invoke, F::Probe, Value::Int(1), Some("n1")),
        op(5, 2, OpType::Ok, F::Probe, Value::Int(1), Some("n1")),
        op(6, 0, OpType::Invoke, F::Txn, Value::Txn(vec![Mop::Read(1, None)]), None),
        op(7, 0, OpType::Ok, F::Txn, Value::Txn(vec![Mop::Read(1, Some(vec![1]))]), None),
        op(8, 3, OpType::Ok, F::Read, Value::Ints(vec![5]), Some("n1")),
    ];
    let mut out = Vec::new();
    for o in &h {
        history::write_line(&mut out, o).expect("write");
    }
    std::fs::write(dir.path().join("history.jsonl"), out).expect("write history");
    let fault = Fault {
        start: 0,
        end: Some(500_000),
        kind: "kill-primary".into(),
        targets: vec!["n1".into()],
        detail: String::new(),
        verified: None,
    };
    std::fs::write(dir.path().join("nemesis.jsonl"), serde_json::to_string(&fault).unwrap() + "\n").unwrap();
    dir
}

#[test]
fn check_dir_runs_every_checker_with_operations_and_writes_results() {
    let dir = run_dir();
    let results = check_dir(dir.path(), Some("n1"), 42, serde_json::json!({"nodes": 3})).expect("check");
    let names: Vec<&str> = results.checkers.keys().map(String::as_str).collect();
    assert_eq!(names, ["availability", "dual-primary", "list-append", "set"]);
    assert_eq!(results.verdict, Verdict::Valid, "{results:#?}");
    assert_eq!(results.seed, 42);
    write_results(dir.path(), &results).expect("write results");
    let back: Results = serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(back, results);
}

#[test]
fn a_missing_history_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = check_dir(dir.path(), None, 1, serde_json::Value::Null).unwrap_err();
    assert!(err.to_string().contains("history.jsonl"), "{err}");
}

#[test]
fn an_empty_history_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("history.jsonl"), "").unwrap();
    let results = check_dir(dir.path(), None, 1, serde_json::Value::Null).unwrap();
    assert_eq!(results.verdict, Verdict::Unknown);
}

#[test]
fn jsonl_lines_that_do_not_parse_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nemesis.jsonl");
    std::fs::write(&path, "\n{\"bad\": 1}\n").unwrap();
    let err = read_jsonl::<Fault>(&path).unwrap_err();
    assert!(err.to_string().contains("nemesis.jsonl:2"), "{err}");
}
