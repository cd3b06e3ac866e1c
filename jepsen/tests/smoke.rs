//! Short chaos runs of the real binaries, as root: a smoke run with
//! partitions, kills and pauses in synchronous mode that must leave a
//! complete run directory, a converged cluster and no safety anomaly; and
//! the harness's own credibility check: in asynchronous mode, isolating the
//! primary while clients write must make the set checker report lost
//! acknowledged writes, and in synchronous mode the same run reports none.
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
        &["--time-limit", "60", "--interval", "6", "--seed", "1", "--nemesis", "partition,kill,pause", "--mode", "on"],
    );
    must_be_clean();
    for file in ["history.jsonl", "nemesis.jsonl", "roles.jsonl", "results.json", "report.html", "haproxy.cfg"] {
        assert!(dir.join(file).is_file(), "{file} missing in {}", dir.display());
    }
    assert!(dir.join("logs").read_dir().expect("logs/").count() >= 3, "a log directory per member");
    let results = must_read_results(&dir);
    let convergence = &results.checkers["convergence"];
    assert_eq!(convergence.verdict, Verdict::Valid, "{}", convergence.summary);
    assert!(convergence.details["seconds"].as_f64().is_some());
    // The safety properties hold in synchronous mode whatever the faults.
    for checker in ["set", "list-append", "dual-primary"] {
        let r = results.checkers.get(checker).unwrap_or_else(|| panic!("no {checker} result: {results:?}"));
        assert_eq!(r.verdict, Verdict::Valid, "{checker}: {} (run directory {})", r.summary, dir.display());
    }
    let report = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(report.contains("<svg") && report.contains("VALID"), "the report shows its plots and verdict");
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

/// `--nemesis partition-primary` with one writer per slot as fast as it
/// goes, in `mode`.
fn isolate_the_primary(bins: &Path, mode: &str, seed: u64) -> (i32, PathBuf) {
    let seed = seed.to_string();
    must_run(
        &format!("isolate-{mode}"),
        bins,
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
            mode,
            "--workload",
            "set",
            "--concurrency",
            "8",
        ],
    )
}

/// The harness must be able to fail a run: asynchronous replication loses
/// what the isolated primary acknowledged before its lease ran out, once it
/// is rewound after the heal. The set checker must say so, with the ids,
/// and the run's verdict is invalid (exit code 1).
#[test]
fn in_asynchronous_mode_isolating_the_primary_loses_acknowledged_writes() {
    let Some(bins) = bin_dir() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = Vec::new();
    for seed in [11, 12, 13] {
        let (code, dir) = isolate_the_primary(&bins, "async", seed);
        must_be_clean();
        let results = must_read_results(&dir);
        let faults = must_read_faults(&dir);
        assert!(faults.iter().any(|f| f.kind == "partition-primary" && f.verified == Some(true)), "{faults:?}");
        let primary = results.checkers["convergence"].details["primary"].as_str().expect("a primary").to_string();
        // Counted here without the checker, to check the checker.
        let (lost, acked) = lost_writes(&dir, &primary);
        let set = &results.checkers["set"];
        seen.push(format!("seed {seed}: {lost} of {acked} acknowledged adds lost; set checker: {}", set.summary));
        if lost > 0 {
            assert_eq!(set.verdict, Verdict::Invalid, "the set checker missed {lost} lost writes: {}", set.summary);
            assert_eq!(set.details["lost"].as_array().map(|l| l.len()), Some(lost), "{}", set.details);
            assert_eq!((code, results.verdict), (1, Verdict::Invalid), "an invalid run exits 1");
            eprintln!("{}", seen.join("; "));
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    panic!("isolating the primary in asynchronous mode lost nothing: {}", seen.join("; "));
}

/// The same run in synchronous mode: the isolated primary's commits wait
/// for a standby it cannot reach, so nothing it acknowledged is lost.
#[test]
fn in_synchronous_mode_isolating_the_primary_loses_nothing() {
    let Some(bins) = bin_dir() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_, dir) = isolate_the_primary(&bins, "on", 11);
    must_be_clean();
    let results = must_read_results(&dir);
    let faults = must_read_faults(&dir);
    assert!(faults.iter().any(|f| f.kind == "partition-primary" && f.verified == Some(true)), "{faults:?}");
    let primary = results.checkers["convergence"].details["primary"].as_str().expect("a primary").to_string();
    let (lost, acked) = lost_writes(&dir, &primary);
    assert!(acked > 0, "nothing was acknowledged");
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged adds lost in synchronous mode");
    let set = &results.checkers["set"];
    assert_eq!(set.verdict, Verdict::Valid, "{}", set.summary);
    assert_eq!(results.checkers["dual-primary"].verdict, Verdict::Valid);
    let _ = std::fs::remove_dir_all(&dir);
}
