//! The shared fixture: ports, directories, waits and faults.

pub mod cluster;
pub mod daemon;

use std::fmt::Debug;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Logs to the test writer once per process; `RUST_LOG` overrides the
/// default filter.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error,h2=warn,tower=warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

/// Polls `probe` until it returns `Ok`, or panics after `deadline` with the
/// last observation.
pub async fn wait_for<T, O: Debug>(what: &str, deadline: Duration, mut probe: impl AsyncFnMut() -> Result<T, O>) -> T {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        match probe().await {
            Ok(v) => {
                tracing::debug!("{what}: ok after {:?}", start.elapsed());
                return v;
            }
            Err(last) => {
                if start.elapsed() > deadline {
                    panic!("timed out after {deadline:?} waiting for {what}; last observation: {last:?}");
                }
                polls += 1;
                if polls.is_multiple_of(50) {
                    tracing::info!("still waiting for {what} ({:?}): {last:?}", start.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
