//! The recorded history: one JSON object per line in `history.jsonl`.
//!
//! The shape is the one elle-cli reads (`index`, `time`, `process`, `type`,
//! `f`, `value`, with micro-operations `["append", k, v]` and
//! `["r", k, [..]]`), so a history can be re-checked by another checker. Two
//! optional fields carry what the set workload and the per-node probes need:
//! `node` (which node an operation went to directly, when it bypassed the
//! router) and `error` (the client's error text for `fail` and `info`).
//!
//! Every logical operation is an `invoke` record followed by exactly one
//! completion from the same process: `ok` (it happened), `fail` (it did not)
//! or `info` (unknown). A process that records `info` is retired; its worker
//! goes on under a fresh process number.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::Path;

/// How an operation record ends, or that it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum F {
    /// list-append: a transaction of [`Mop`]s, SERIALIZABLE, through the
    /// primary port.
    Txn,
    /// set: insert one unique integer through the primary port.
    Add,
    /// set: read every integer; `node` names the node read directly (the
    /// final reads after healing), absent for a read through the router.
    Read,
    /// dual-primary probe: insert into the probe table directly on `node`'s
    /// PostgreSQL with a short timeout. `value` is the probe's sequence number.
    Probe,
}

/// A key of the list-append workload.
pub type Key = u64;
/// An element appended to a key; unique per key.
pub type Elem = i64;

/// One micro-operation of a list-append transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mop {
    /// Append `elem` to `key`'s list.
    Append(Key, Elem),
    /// Read `key`'s list: `None` on invoke (and when unknown), the list on ok.
    Read(Key, Option<Vec<Elem>>),
}

impl Mop {
    pub fn key(&self) -> Key {
        match self {
            Mop::Append(k, _) | Mop::Read(k, _) => *k,
        }
    }
}

impl Serialize for Mop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        match self {
            Mop::Append(k, v) => {
                t.serialize_element("append")?;
                t.serialize_element(k)?;
                t.serialize_element(v)?;
            }
            Mop::Read(k, v) => {
                t.serialize_element("r")?;
                t.serialize_element(k)?;
                t.serialize_element(v)?;
            }
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Mop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MopVisitor;
        impl<'de> Visitor<'de> for MopVisitor {
            type Value = Mop;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"["append", key, elem] or ["r", key, null | [elems]]"#)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Mop, A::Error> {
                let f: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let key: Key = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let mop = match f.as_str() {
                    "append" => {
                        Mop::Append(key, seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?)
                    }
                    "r" => Mop::Read(key, seq.next_element()?.unwrap_or(None)),
                    other => {
                        return Err(de::Error::unknown_variant(other, &["append", "r"]));
                    }
                };
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(mop)
            }
        }
        d.deserialize_seq(MopVisitor)
    }
}

/// An operation's value; which shape depends on `f` and `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// No value: a read's invoke, or a completion that has nothing to add.
    None,
    /// `add` and `probe`: the integer inserted.
    Int(i64),
    /// `read` on ok: every integer read.
    Ints(Vec<i64>),
    /// `txn`: its micro-operations (reads filled in on ok).
    Txn(Vec<Mop>),
}

/// One record of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0, in the order records were written.
    pub index: u64,
    /// Nanoseconds since the run began, on a monotonic clock.
    pub time: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: F,
    pub value: Value,
    /// The node an operation went to directly (final reads, probes).
    #[serde(default)]
    pub node: Option<String>,
    /// The error a client saw, on `fail` and `info`.
    #[serde(default)]
    pub error: Option<String>,
}

/// Read a `history.jsonl`; an unreadable line is an error naming the line.
pub fn read(path: &Path) -> io::Result<Vec<Op>> {
    let file = std::fs::File::open(path)?;
    let mut ops = Vec::new();
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), n + 1)))?;
        ops.push(op);
    }
    Ok(ops)
}

/// Write one record as a line.
pub fn write_line(out: &mut impl Write, op: &Op) -> io::Result<()> {
    serde_json::to_writer(&mut *out, op)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_as_elle_cli_writes_them_and_round_trip() {
        let lines = [
            r#"{"index":0,"time":5,"process":0,"type":"invoke","f":"txn","value":[["append",1,7],["r",2,null]]}"#,
            r#"{"index":1,"time":9,"process":0,"type":"ok","f":"txn","value":[["append",1,7],["r",2,[1,3]]]}"#,
            r#"{"index":2,"time":10,"process":1,"type":"invoke","f":"add","value":42}"#,
            r#"{"index":3,"time":20,"process":1,"type":"info","f":"add","value":42,"error":"connection closed during COMMIT"}"#,
            r#"{"index":4,"time":30,"process":2,"type":"ok","f":"read","value":[1,2,42],"node":"n1"}"#,
            r#"{"index":5,"time":31,"process":3,"type":"invoke","f":"read","value":null}"#,
        ];
        let ops: Vec<Op> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(ops[1].value, Value::Txn(vec![Mop::Append(1, 7), Mop::Read(2, Some(vec![1, 3]))]));
        assert_eq!(ops[0].value, Value::Txn(vec![Mop::Append(1, 7), Mop::Read(2, None)]));
        assert_eq!(ops[2].value, Value::Int(42));
        assert_eq!(ops[3].kind, OpType::Info);
        assert_eq!(ops[4].value, Value::Ints(vec![1, 2, 42]));
        assert_eq!(ops[4].node.as_deref(), Some("n1"));
        assert_eq!(ops[5].value, Value::None);
        for op in &ops {
            let again: Op = serde_json::from_str(&serde_json::to_string(op).unwrap()).unwrap();
            assert_eq!(&again, op);
        }
    }

    #[test]
    fn a_malformed_micro_operation_is_refused() {
        for bad in [r#"["write",1,2]"#, r#"["append",1]"#, r#"["append",1,2,3]"#, r#"["r","x",null]"#] {
            assert!(serde_json::from_str::<Mop>(bad).is_err(), "{bad} was accepted");
        }
    }
}
