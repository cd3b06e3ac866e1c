//! A member of the cluster as the replicated state knows it: identity, where
//! its PostgreSQL and API listen, its tags, and its last reported state.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::typ::NodeId;

/// Patroni-style member tags: free-form `key = value`, with a few keys that
/// raftgres interprets (see [`Tags::validate`]).
pub type Tags = BTreeMap<String, String>;

/// Tag keys with a meaning, and the values they accept.
pub const TAG_NOFAILOVER: &str = "nofailover";
pub const TAG_NOLOADBALANCE: &str = "noloadbalance";
pub const TAG_NOSYNC: &str = "nosync";
pub const TAG_FAILOVER_PRIORITY: &str = "failover_priority";

/// Why a member (or cluster) name is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{name:?} must be 1-63 characters of [A-Za-z0-9_.-]")]
pub struct InvalidName {
    pub name: String,
}

/// The one naming rule of raftgres: 1-63 characters of `[A-Za-z0-9_.-]`, so
/// a name is safe in a file name, a URL, an HAProxy `server` line and a
/// PostgreSQL `application_name`. `apply` enforces it on member names; the
/// configuration file applies it to the cluster id and the node name.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok { Ok(()) } else { Err(InvalidName { name: name.to_string() }) }
}

/// Checks the tags raftgres interprets; returns `(key, value, reason)` of the
/// first bad one.
pub fn validate_tags(tags: &Tags) -> Result<(), (String, String, String)> {
    for (key, value) in tags {
        if key.is_empty() || key.len() > 63 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err((key.clone(), value.clone(), "a tag key is 1-63 characters of [A-Za-z0-9_-]".into()));
        }
        match key.as_str() {
            TAG_NOFAILOVER | TAG_NOLOADBALANCE | TAG_NOSYNC if parse_bool(value).is_none() => {
                return Err((key.clone(), value.clone(), "expected true or false".into()));
            }
            TAG_FAILOVER_PRIORITY if value.parse::<u32>().is_err() => {
                return Err((key.clone(), value.clone(), "expected a non-negative integer".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The PostgreSQL state a member last reported. Recorded only on transitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    #[default]
    Unknown,
    Starting,
    Running,
    Streaming,
    Stopped,
    Crashed,
    CreatingReplica,
    Rewinding,
    Demoting,
}

impl MemberState {
    /// The lowercase name used in APIs (Patroni's spelling where one exists).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Unknown => "unknown",
            MemberState::Starting => "starting",
            MemberState::Running => "running",
            MemberState::Streaming => "streaming",
            MemberState::Stopped => "stopped",
            MemberState::Crashed => "crashed",
            MemberState::CreatingReplica => "creating replica",
            MemberState::Rewinding => "rewinding",
            MemberState::Demoting => "demoting",
        }
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's registration: what an operator or the joining daemon supplies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// Unique human name.
    pub name: String,
    /// Host clients use to reach this member's PostgreSQL.
    pub pg_host: String,
    pub pg_port: u16,
    /// Base URL of the member's HTTP API, e.g. `http://10.0.0.1:8008`.
    pub api_url: String,
    pub tags: Tags,
    /// Last state reported; changes through `SetMemberState`.
    pub state: MemberState,
}

impl Member {
    pub fn new(id: NodeId, name: impl Into<String>) -> Self {
        Self {
            id,
            name: name.into(),
            pg_host: String::new(),
            pg_port: 5432,
            api_url: String::new(),
            tags: Tags::new(),
            state: MemberState::Unknown,
        }
    }

    /// True when the member is tagged `nofailover`.
    pub fn nofailover(&self) -> bool {
        self.tags.get(TAG_NOFAILOVER).and_then(|v| parse_bool(v)).unwrap_or(false)
    }

    /// True when the member is tagged `nosync`.
    pub fn nosync(&self) -> bool {
        self.tags.get(TAG_NOSYNC).and_then(|v| parse_bool(v)).unwrap_or(false)
    }

    /// True when the member is tagged `noloadbalance`.
    pub fn noloadbalance(&self) -> bool {
        self.tags.get(TAG_NOLOADBALANCE).and_then(|v| parse_bool(v)).unwrap_or(false)
    }

    /// Failover priority: higher wins among equally advanced candidates.
    /// Defaults to 1; 0 means never (like `nofailover`).
    pub fn failover_priority(&self) -> u32 {
        self.tags.get(TAG_FAILOVER_PRIORITY).and_then(|v| v.parse().ok()).unwrap_or(1)
    }

    /// The member may ever be promoted: not tagged `nofailover`, and its
    /// failover priority is not 0. Whether it may be promoted *now* also
    /// depends on its state and lag, which the callers judge.
    pub fn may_be_promoted(&self) -> bool {
        !self.nofailover() && self.failover_priority() > 0
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(id {})", self.name, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreted_tags_are_checked() {
        let mut tags = Tags::new();
        tags.insert("nofailover".into(), "maybe".into());
        assert!(validate_tags(&tags).is_err());
        tags.insert("nofailover".into(), "true".into());
        tags.insert("failover_priority".into(), "-1".into());
        assert!(validate_tags(&tags).is_err());
        tags.insert("failover_priority".into(), "3".into());
        tags.insert("rack".into(), "b2".into());
        assert!(validate_tags(&tags).is_ok());
        tags.insert("bad key".into(), "x".into());
        assert!(validate_tags(&tags).is_err());
    }

    #[test]
    fn tag_accessors() {
        let mut m = Member::new(1, "a");
        assert!(!m.nofailover());
        assert_eq!(m.failover_priority(), 1);
        m.tags.insert("nofailover".into(), "True".into());
        m.tags.insert("failover_priority".into(), "7".into());
        assert!(m.nofailover());
        assert_eq!(m.failover_priority(), 7);
        assert!(!m.may_be_promoted());
        m.tags.insert("nofailover".into(), "false".into());
        assert!(m.may_be_promoted());
        m.tags.insert("failover_priority".into(), "0".into());
        assert!(!m.may_be_promoted(), "priority 0 means never");
    }

    #[test]
    fn names() {
        for ok in ["pg1", "node-2", "a.b_c", &"x".repeat(63)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "pg 1", "pg/1", "é", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
