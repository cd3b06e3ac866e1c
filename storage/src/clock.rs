//! The wall clock as proposers read it: Unix milliseconds. It stamps
//! commands before they enter the log and schedules switchovers; `apply`
//! never calls it (the proposer's time reaches `apply` inside the entry).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
