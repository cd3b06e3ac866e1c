//! Pairing a history's records into calls: each `invoke` with the one
//! completion that the same process records next.
//!
//! Every checker reads the history through [`Call`]s. The pairing never
//! fails: a record that does not fit is kept and noted, so a malformed
//! history makes a checker say `unknown` rather than panic.
//!
//! - An `invoke` with no completion by the end of the history is an
//!   indeterminate call, as if it had completed `info` (Elle does the same).
//! - A second `invoke` by a process whose first is still open closes the
//!   first as indeterminate, and is noted.
//! - A completion with no open `invoke` (the runner's final reads are
//!   written that way) is a call whose invocation time is unknown.
//! - A completion whose `f` differs from its invoke's is noted and closes the
//!   invoke as indeterminate.

use crate::history::{F, Op, OpType, Value};
use std::collections::HashMap;

/// One logical operation: an invocation and its completion.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    pub invoke: Option<&'a Op>,
    pub completion: Option<&'a Op>,
}

impl<'a> Call<'a> {
    /// The operation's function.
    pub fn f(&self) -> F {
        self.any().f
    }

    pub fn process(&self) -> u64 {
        self.any().process
    }

    /// `Ok`, `Fail` or `Info`; a call that never completed is `Info`.
    pub fn outcome(&self) -> OpType {
        match self.completion {
            Some(c) if c.kind != OpType::Invoke => c.kind,
            _ => OpType::Info,
        }
    }

    /// Nanoseconds since the run began when the call was invoked, if known.
    pub fn invoke_time(&self) -> Option<u64> {
        self.invoke.map(|o| o.time)
    }

    /// When the call completed, if it did.
    pub fn complete_time(&self) -> Option<u64> {
        self.completion.map(|o| o.time)
    }

    /// The history index that names the call: its completion's, or its
    /// invoke's if it never completed.
    pub fn index(&self) -> u64 {
        self.completion.or(self.invoke).map(|o| o.index).unwrap_or_default()
    }

    /// The node the call went to directly, from either record.
    pub fn node(&self) -> Option<&'a str> {
        self.completion.and_then(|o| o.node.as_deref()).or_else(|| self.invoke.and_then(|o| o.node.as_deref()))
    }

    /// The most informative value: the completion's when it has one, else
    /// the invoke's.
    pub fn value(&self) -> &'a Value {
        match (self.completion, self.invoke) {
            (Some(c), _) if c.value != Value::None => &c.value,
            (_, Some(i)) => &i.value,
            (Some(c), None) => &c.value,
            (None, None) => &Value::None,
        }
    }

    /// The error text a client saw, if any.
    pub fn error(&self) -> Option<&'a str> {
        self.completion.and_then(|o| o.error.as_deref())
    }

    fn any(&self) -> &'a Op {
        self.invoke.or(self.completion).expect("a call has at least one record")
    }
}

/// The calls of a history, in the order they began (invoke order; a
/// completion without an invoke sits where it was recorded), plus notes on
/// records that did not pair cleanly.
#[derive(Debug, Default)]
pub struct Calls<'a> {
    pub calls: Vec<Call<'a>>,
    pub malformed: Vec<String>,
}

/// Pair a history's records. The records are taken in `index` order.
pub fn pair(history: &[Op]) -> Calls<'_> {
    let mut ordered: Vec<&Op> = history.iter().collect();
    ordered.sort_by_key(|o| o.index);
    let mut calls: Vec<Call> = Vec::new();
    let mut malformed = Vec::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    for op in ordered {
        match op.kind {
            OpType::Invoke => {
                if let Some(prev) = open.insert(op.process, calls.len()) {
                    malformed.push(format!(
                        "op {}: process {} invoked again while op {} was open; that one counts as indeterminate",
                        op.index,
                        op.process,
                        calls[prev].index()
                    ));
                }
                calls.push(Call { invoke: Some(op), completion: None });
            }
            _ => match open.remove(&op.process) {
                Some(at) if calls[at].f() == op.f => calls[at].completion = Some(op),
                Some(at) => {
                    malformed.push(format!(
                        "op {}: completes a {:?} but process {} had invoked a {:?} (op {})",
                        op.index,
                        op.f,
                        op.process,
                        calls[at].f(),
                        calls[at].index()
                    ));
                    calls.push(Call { invoke: None, completion: Some(op) });
                }
                None => calls.push(Call { invoke: None, completion: Some(op) }),
            },
        }
    }
    Calls { calls, malformed }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::Mop;

    /// A compact way to write histories in tests: `(process, type, f, value,
    /// time in ms)`; indexes follow the order given.
    pub(crate) fn ops(records: &[(u64, OpType, F, Value, u64)]) -> Vec<Op> {
        records
            .iter()
            .enumerate()
            .map(|(i, (p, t, f, v, ms))| Op {
                index: i as u64,
                time: ms * 1_000_000,
                process: *p,
                kind: *t,
                f: *f,
                value: v.clone(),
                node: None,
                error: None,
            })
            .collect()
    }

    #[test]
    fn invokes_pair_with_the_next_completion_of_their_process() {
        let h = ops(&[
            (0, OpType::Invoke, F::Add, Value::Int(1), 1),
            (1, OpType::Invoke, F::Txn, Value::Txn(vec![Mop::Append(1, 1)]), 2),
            (0, OpType::Ok, F::Add, Value::Int(1), 3),
            (2, OpType::Ok, F::Read, Value::Ints(vec![1]), 4),
            (3, OpType::Invoke, F::Add, Value::Int(2), 5),
            (3, OpType::Invoke, F::Add, Value::Int(3), 6),
        ]);
        let c = pair(&h);
        assert_eq!(c.calls.len(), 5);
        assert_eq!(c.calls[0].outcome(), OpType::Ok);
        assert_eq!(c.calls[0].index(), 2);
        assert_eq!(c.calls[0].invoke_time(), Some(1_000_000));
        assert_eq!(c.calls[1].outcome(), OpType::Info, "never completed");
        assert_eq!(c.calls[2].invoke_time(), None, "a completion without invoke");
        assert_eq!(c.calls[2].outcome(), OpType::Ok);
        assert_eq!(c.calls[3].outcome(), OpType::Info);
        assert_eq!(c.malformed.len(), 1);
    }

    #[test]
    fn a_completion_of_another_function_is_noted() {
        let h = ops(&[(0, OpType::Invoke, F::Add, Value::Int(1), 1), (0, OpType::Ok, F::Read, Value::None, 2)]);
        let c = pair(&h);
        assert_eq!(c.calls.len(), 2);
        assert_eq!(c.malformed.len(), 1);
        assert_eq!(c.calls[0].outcome(), OpType::Info);
    }
}
