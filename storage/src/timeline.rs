//! What the replicated state records about the primary's WAL: the timeline
//! its promotion created, where its WAL stood lately, and an operator's
//! acceptance of losing a timeline nobody followed.
//!
//! PostgreSQL numbers a new timeline one past the newest it knows of, so
//! two nodes promoted from the same timeline get the same number with
//! different histories. The record lets the controller elect only nodes on
//! the recorded timeline, and lets a returning node tell a same-numbered
//! fork from the real one.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::typ::NodeId;

/// The timeline the primary of `epoch` runs on, recorded once its
/// promotion (or first start as primary) completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRecord {
    pub epoch: u64,
    pub node: NodeId,
    pub timeline: u32,
    /// Where the timeline begins: the switch point its history file names
    /// for it (0 for timeline 1).
    pub switchpoint: u64,
}

impl fmt::Display for TimelineRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeline {} from {} (node {}, epoch {})",
            self.timeline,
            Lsn(self.switchpoint),
            self.node,
            self.epoch
        )
    }
}

/// The primary's WAL position as last recorded, at most about once a
/// second: the reference `maximum_lag_on_failover` is measured against when
/// the primary's own report is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPosition {
    pub epoch: u64,
    pub node: NodeId,
    pub timeline: u32,
    pub lsn: u64,
    /// Proposer's time of the record, Unix milliseconds.
    pub at_ms: u64,
}

/// An operator asked for a failover to `to` that accepts the loss of the
/// writes only the lost primary of `epoch` had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedFailover {
    pub epoch: u64,
    pub to: NodeId,
}

/// An LSN in PostgreSQL's spelling, `X/X` in hexadecimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}
