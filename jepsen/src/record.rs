//! The other records of a run directory, shared by the runner that writes
//! them and the checkers and report that read them.
//!
//! - `nemesis.jsonl`: one [`Fault`] per line, written when the fault is
//!   healed (or at the end of the run, with `end` absent, if it never was).
//! - `roles.jsonl`: one [`RoleSample`] per line: what each daemon said its
//!   role was, sampled through its HTTP API.
//! - `results.json`: a [`Results`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One fault the nemesis applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Nanoseconds since the run began (the history's clock) when the fault
    /// was in force.
    pub start: u64,
    /// When it was healed; `None` if the run ended first.
    #[serde(default)]
    pub end: Option<u64>,
    /// The fault's kind, e.g. `partition-primary`, `kill-primary`,
    /// `pause-daemon`, `one-way`, `majorities-ring`, `add-node`.
    pub kind: String,
    /// The nodes it acted on.
    pub targets: Vec<String>,
    /// What exactly was done: rules, signals, pids.
    #[serde(default)]
    pub detail: String,
    /// Whether the fault was verified to be in force (a partition: an open
    /// and a new connection across it both failed). `None` when the kind has
    /// no check.
    #[serde(default)]
    pub verified: Option<bool>,
}

/// One sample of a node's role, as its daemon reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSample {
    pub time: u64,
    pub node: String,
    /// `primary`, `replica`, `down` (no answer) or what the daemon said.
    pub role: String,
}

/// A checker's tri-state verdict. Combining: invalid wins over unknown,
/// unknown over valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Unknown,
    Invalid,
}

impl Verdict {
    pub fn combine(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The process exit code for this verdict: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }
}

/// What one checker found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerResult {
    pub verdict: Verdict,
    /// One line a reader understands: "3 acknowledged inserts lost: 17, 18, 20".
    pub summary: String,
    /// The checker's own findings, in whatever shape suits it.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub verdict: Verdict,
    pub seed: u64,
    /// Checker name (`set`, `list-append`, `dual-primary`, `convergence`,
    /// `availability`) to its result.
    pub checkers: BTreeMap<String, CheckerResult>,
    /// The run's settings as given (nodes, time limit, nemeses, mode).
    #[serde(default)]
    pub config: serde_json::Value,
}

impl Results {
    pub fn new(seed: u64, config: serde_json::Value) -> Results {
        Results { verdict: Verdict::Valid, seed, checkers: BTreeMap::new(), config }
    }

    pub fn add(&mut self, name: &str, result: CheckerResult) {
        self.verdict = self.verdict.combine(result.verdict);
        self.checkers.insert(name.to_string(), result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_beats_unknown_beats_valid() {
        let r = |v| CheckerResult { verdict: v, summary: String::new(), details: serde_json::Value::Null };
        let mut results = Results::new(7, serde_json::Value::Null);
        results.add("a", r(Verdict::Valid));
        assert_eq!(results.verdict, Verdict::Valid);
        results.add("b", r(Verdict::Unknown));
        assert_eq!(results.verdict, Verdict::Unknown);
        results.add("c", r(Verdict::Invalid));
        results.add("d", r(Verdict::Valid));
        assert_eq!(results.verdict, Verdict::Invalid);
        assert_eq!(results.verdict.exit_code(), 1);
        let json = serde_json::to_string(&results).unwrap();
        assert!(json.contains(r#""verdict":"invalid""#), "{json}");
    }
}
