//! One beat for the loops that run every heartbeat interval.
//!
//! The agent, the lease heartbeat and the controller each run every
//! `heartbeat_interval_ms`. Each waiting out its own interval from the end
//! of its last turn, they woke the daemon three times an interval at
//! unrelated moments. Woken at the same instants (whole intervals since the
//! daemon started), they share one timer wake-up. Each still runs at least
//! once an interval, and at once on the events it waits for.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The instant the beats count from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The first beat of `interval` after `now`. A loop that waits for it after
/// its turn runs again at most `interval` later.
pub fn next_beat(now: Instant, interval: Duration) -> Instant {
    let origin = origin();
    if now < origin {
        // The first caller's `now`, read before the origin was set.
        return origin;
    }
    let period = interval.as_nanos().max(1);
    let since = now.saturating_duration_since(origin).as_nanos();
    let beats = since / period + 1;
    origin + Duration::from_nanos(u64::try_from(beats * period).unwrap_or(u64::MAX))
}

/// [`next_beat`] as a tokio instant, for `sleep_until`.
pub fn next_beat_tokio(now: Instant, interval: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(next_beat(now, interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_whole_intervals_apart_and_never_further_than_one_away() {
        let i = Duration::from_millis(250);
        let first = Instant::now();
        assert!(next_beat(first, i) <= first + i, "the first call");
        let now = Instant::now();
        let b = next_beat(now, i);
        assert!(b > now && b <= now + i, "{:?}", b - now);
        // Loops of the same interval that turned at different moments wake
        // at the same beat.
        let mid = b - i / 2;
        assert_eq!(next_beat(mid, i), b);
        assert_eq!(next_beat(mid + Duration::from_millis(100), i), b);
        assert_eq!(next_beat(b, i), b + i, "at a beat, the next one");
        assert_eq!(next_beat(b - Duration::from_nanos(1), i), b);
        assert_eq!(next_beat(b + i / 2, i), b + i);
        // A shorter interval that divides it shares its beats.
        let fast = Duration::from_millis(50);
        assert_eq!(next_beat(b - Duration::from_millis(10), fast), b);
    }
}
