//! Short chaos runs of the real binaries, as root: a smoke run with
//! partitions, kills and pauses that must leave a complete run directory
//! and a converged cluster, and the harness's own credibility check: in
//! asynchronous mode, isolating the primary while clients write must lose
//! acknowledged writes.
//!
//! The `raftgres` and `raftctl` binaries come from `RAFTGRES_JEPSEN_BIN_DIR`
//! or the workspace's `target/debug`. Without root or without them, the
//! tests say so and pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use raftgres_jepsen::history::{self, F, OpType, Value};
use raftgres_jepsen::record::{Fault, Results, Verdict};

/// Runs share namespace names: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn bin_dir() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: not root (the harness needs network namespaces and nftables)");
        return None;
    }
    let dir = std::env::var_os("RAFTGRES_JEPSEN_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    if ["raftgres", "raftctl"].iter().all(|b| dir.join(b).is_file()) {
        Some(dir)
    } else {
        eprintln!("skipped: no raftgres and raftctl in {} (set RAFTGRES_JEPSEN_BIN_DIR)", dir.display());
        None
    }
}

/// Runs the harness with `args` into a fresh run directory; its exit code
/// and the directory.
fn must_run(name: &str, bin_dir: &Path, args: &[&str]) -> (i32, PathBuf) {
    let run_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("jepsen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let status = Command::new(env!("CARGO_BIN_EXE_raftgres-jepsen"))
        .arg("run")
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(args)
        .status()
        .expect("run raftgres-jepsen");
    (status.code().unwrap_or(-1), run_dir)
}

fn must_read_results(dir: &Path) -> Results {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json parses")
}

fn must_read_faults(dir: &Path) -> Vec<Fault> {
    std::fs::read_to_string(dir.join("nemesis.jsonl"))
        .expect("nemesis.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a fault line parses"))
        .collect()
}

/// Nothing the harness makes is left: no namespace named rgj-*.
fn must_be_clean() {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("rgj-"), "namespaces left behind:\n{text}");
}

/// Acknowledged adds missing from the final primary's final read.
fn lost_writes(dir: &Path, final_primary: &str) -> (usize, usize) {
    let ops = history::read(&dir.join("history.jsonl")).expect("history.jsonl");
    let acked: BTreeSet<i64> = ops
        .iter()
        .filter(|o| o.f == F::Add && o.kind == OpType::Ok)
        .filter_map(|o| match o.value {
            Value::Int(v) => Some(v),
            _ => None,
        })
        .collect();
    let read = ops
        .iter()
        .rev()
        .find(|o| o.f == F::Read && o.kind == OpType::Ok && o.node.as_deref() == Some(final_primary))
        .unwrap_or_else(|| panic!("no final read of {final_primary}"));
    let Value::Ints(seen) = &read.value else { panic!("a read's value is a list: {read:?}") };
    let seen: BTreeSet<i64> = seen.iter().copied().collect();
    (acked.difference(&seen).count(), acked.len())
}

#[test]
fn a_short_run_with_partitions_kills_and_pauses_converges_and_writes_its_files() {
    let Some(bins) = bin_dir() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (code, dir) = must_run(
        "smoke",
        &bins,
        &["--time-limit", "60", "--interval", "6", "--seed", "1", "--nemesis", "partition,kill,pause"],
    );
    must_be_clean();
    for file in ["history.jsonl", "nemesis.jsonl", "roles.jsonl", "results.json", "haproxy.cfg"] {
        assert!(dir.join(file).is_file(), "{file} missing in {}", dir.display());
    }
    assert!(dir.join("logs").read_dir().expect("logs/").count() >= 3, "a log directory per member");
    let results = must_read_results(&dir);
    let convergence = &results.checkers["convergence"];
    assert_eq!(convergence.verdict, Verdict::Valid, "{}", convergence.summary);
    assert!(convergence.details["seconds"].as_f64().is_some());
    assert_eq!(results.seed, 1);
    assert!(code == 0 || code == 1 || code == 2, "exit code {code}");
    let faults = must_read_faults(&dir);
    assert!(!faults.is_empty(), "no fault was applied");
    for f in &faults {
        assert!(f.end.is_some(), "fault not healed: {f:?}");
        if f.kind.starts_with("partition") {
            assert_eq!(f.verified, Some(true), "partition not verified: {f:?}");
        }
    }
    let ops = history::read(&dir.join("history.jsonl")).expect("history.jsonl");
    assert!(ops.iter().any(|o| o.f == F::Txn && o.kind == OpType::Ok), "no transaction succeeded");
    assert!(ops.iter().any(|o| o.f == F::Probe && o.kind == OpType::Ok), "no probe succeeded");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The harness must be able to fail a run: asynchronous replication loses
/// what the isolated primary acknowledged before its lease ran out, once it
/// is rewound after the heal.
#[test]
fn in_asynchronous_mode_isolating_the_primary_loses_acknowledged_writes() {
    let Some(bins) = bin_dir() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = Vec::new();
    for seed in [11, 12, 13] {
        let seed = seed.to_string();
        let (_, dir) = must_run(
            "async-loss",
            &bins,
            &[
                "--time-limit",
                "20",
                "--warmup",
                "3",
                "--interval",
                "8",
                "--seed",
                &seed,
                "--nemesis",
                "partition-primary",
                "--mode",
                "async",
                "--workload",
                "set",
                "--concurrency",
                "8",
            ],
        );
        must_be_clean();
        let results = must_read_results(&dir);
        let convergence = &results.checkers["convergence"];
        let faults = must_read_faults(&dir);
        assert!(faults.iter().any(|f| f.kind == "partition-primary" && f.verified == Some(true)), "{faults:?}");
        let primary = convergence.details["primary"].as_str().expect("a converged primary").to_string();
        let (lost, acked) = lost_writes(&dir, &primary);
        seen.push(format!("seed {seed}: {lost} of {acked} acknowledged adds lost"));
        let _ = std::fs::remove_dir_all(&dir);
        if lost > 0 {
            eprintln!("{}", seen.join("; "));
            return;
        }
    }
    panic!("isolating the primary in asynchronous mode lost nothing: {}", seen.join("; "));
}
