//! The checkers: each reads the recorded history (and the fault schedule)
//! and gives a tri-state [`Verdict`] with a one-line summary and details.
//!
//! One file per invariant, each opening with the exact rule it applies:
//!
//! | checker | file | guarantee |
//! |---|---|---|
//! | `list-append` | [`list_append`] | strict serializability of the list-append transactions (Elle's inference) |
//! | `set` | [`set`] | no acknowledged insert lost; every node ends with the primary's set |
//! | `dual-primary` | [`dual_primary`] | no two nodes accept writes at the same time |
//! | `availability` | [`availability`] | liveness: time to the first write after each fault, longest unavailability |
//!
//! [`check_dir`] runs every checker that has operations of its kind over a
//! run directory and returns the [`Results`]; the runner adds its own
//! `convergence` result and writes them with [`write_results`]. The checkers
//! never panic on a malformed history: what does not fit is noted and makes
//! the verdict `unknown` at worst.

pub mod availability;
pub mod call;
pub mod dual_primary;
pub mod list_append;
pub mod set;

use crate::history::{self, F, Op};
use crate::record::{CheckerResult, Fault, Results, Verdict};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One finding, in the shape every checker puts in its `details.anomalies`
/// and the report renders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The anomaly's name, e.g. `G-single-realtime`, `lost`, `dual-primary`.
    #[serde(rename = "type")]
    pub kind: String,
    /// History indexes of the records involved, in the order the explanation
    /// mentions them.
    pub ops: Vec<u64>,
    /// One line per step a reader follows.
    pub explanation: Vec<String>,
}

impl Anomaly {
    pub fn new(kind: &str, ops: Vec<u64>, explanation: Vec<String>) -> Anomaly {
        Anomaly { kind: kind.to_string(), ops, explanation }
    }
}

/// What a run's checks can be tuned with.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The node the runner found primary after healing; its final read is
    /// the set checker's reference.
    pub final_primary: Option<String>,
    /// Make the run invalid when the first write after the final heal took
    /// longer than this.
    pub write_bound_after_heal: Option<Duration>,
    /// How many graph steps the list-append cycle search may take per
    /// strongly connected component before it gives up (`unknown`).
    pub cycle_search_steps: u64,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            final_primary: None,
            write_bound_after_heal: None,
            cycle_search_steps: list_append::DEFAULT_CYCLE_SEARCH_STEPS,
        }
    }
}

/// Why a run directory could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Check a run directory with default options and the given final primary.
/// See [`check_dir_with`].
pub fn check_dir(
    dir: &Path,
    final_primary: Option<&str>,
    seed: u64,
    config: serde_json::Value,
) -> Result<Results, CheckError> {
    let options = CheckOptions { final_primary: final_primary.map(str::to_string), ..CheckOptions::default() };
    check_dir_with(dir, &options, seed, config)
}

/// Read `history.jsonl` and `nemesis.jsonl` (absent = no faults) from `dir`
/// and run every checker that has operations of its kind.
pub fn check_dir_with(
    dir: &Path,
    options: &CheckOptions,
    seed: u64,
    config: serde_json::Value,
) -> Result<Results, CheckError> {
    let path = dir.join("history.jsonl");
    let ops = history::read(&path).map_err(|source| CheckError::Read { path, source })?;
    let path = dir.join("nemesis.jsonl");
    let faults = if path.exists() {
        read_jsonl::<Fault>(&path).map_err(|source| CheckError::Read { path, source })?
    } else {
        Vec::new()
    };
    Ok(check_history(&ops, &faults, options, seed, config))
}

/// Run every checker that has operations of its kind over a history.
pub fn check_history(
    ops: &[Op],
    faults: &[Fault],
    options: &CheckOptions,
    seed: u64,
    config: serde_json::Value,
) -> Results {
    let mut results = Results::new(seed, config);
    let calls = call::pair(ops);
    let has = |f: F| ops.iter().any(|o| o.f == f);
    if ops.is_empty() {
        results.add(
            "history",
            CheckerResult {
                verdict: Verdict::Unknown,
                summary: "the history has no operations".to_string(),
                details: serde_json::Value::Null,
            },
        );
    }
    if has(F::Txn) {
        let opts = list_append::Options { cycle_search_steps: options.cycle_search_steps };
        results.add("list-append", list_append::check(&calls, &opts));
    }
    if has(F::Add) || has(F::Read) {
        results.add("set", set::check(&calls, options.final_primary.as_deref()));
    }
    if has(F::Probe) {
        results.add("dual-primary", dual_primary::check(&calls));
    }
    if has(F::Txn) || has(F::Add) {
        results.add("availability", availability::check(&calls, faults, options.write_bound_after_heal));
    }
    if !calls.malformed.is_empty() {
        results.add(
            "history",
            CheckerResult {
                verdict: Verdict::Unknown,
                summary: format!("{} records did not pair: {}", calls.malformed.len(), calls.malformed[0]),
                details: serde_json::json!({ "malformed": calls.malformed }),
            },
        );
    }
    results
}

/// Write `results.json` into `dir`, pretty-printed.
pub fn write_results(dir: &Path, results: &Results) -> Result<(), CheckError> {
    let path = dir.join("results.json");
    let mut text = serde_json::to_string_pretty(results)
        .map_err(io::Error::from)
        .map_err(|source| CheckError::Write { path: path.clone(), source })?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|source| CheckError::Write { path, source })
}

/// Read a file of one JSON record per line (`nemesis.jsonl`,
/// `roles.jsonl`); an unreadable line is an error naming the line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), n + 1)))?;
        out.push(record);
    }
    Ok(out)
}

/// Nanoseconds to milliseconds.
pub(crate) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// `1, 2, 3` or `1, 2, 3 … (+7 more)`.
pub(crate) fn id_list<T: std::fmt::Display>(ids: &[T], max: usize) -> String {
    let mut s: Vec<String> = ids.iter().take(max).map(|i| i.to_string()).collect();
    if ids.len() > max {
        s.push(format!("… (+{} more)", ids.len() - max));
    }
    s.join(", ")
}

#[cfg(test)]
mod tests;
