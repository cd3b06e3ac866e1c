//! The shared fixture: ports, directories, waits and faults.

pub mod cluster;
pub mod daemon;
pub mod pgbouncer;

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::sync::Once;
use std::time::{Duration, Instant};

use futures::FutureExt;

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

/// Runs one named phase of a long test: logs `--- phase: {name}` and, if
/// the phase panics, panics again with a message that names it.
pub async fn phase<T>(name: &str, body: impl Future<Output = T>) -> T {
    tracing::info!("--- phase: {name}");
    match AssertUnwindSafe(body).catch_unwind().await {
        Ok(v) => v,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            panic!("phase {name}: {message}");
        }
    }
}

#[tokio::test]
async fn a_panic_inside_a_phase_names_the_phase() {
    let panic =
        AssertUnwindSafe(phase("demo", async { panic!("boom {}", 1) })).catch_unwind().await.expect_err("panics");
    assert_eq!(panic.downcast_ref::<String>().map(String::as_str), Some("phase demo: boom 1"));
}

/// Deadlines of the daemon tests, named by what they wait for. They are
/// generous: a 2-core machine runs three PostgreSQL servers per test, and
/// a deadline only bounds how long a failing test takes.
pub mod deadline {
    use std::time::Duration;

    /// Fresh daemons bootstrap: one primary, the others cloned and
    /// streaming.
    pub const CLUSTER_UP: Duration = Duration::from_secs(120);
    /// A state the test has just seen (the cluster healthy after start, a
    /// primary HAProxy already reaches) is read again.
    pub const SETTLED: Duration = Duration::from_secs(10);
    /// Rows written on the primary are on a replica.
    pub const REPLICATED: Duration = Duration::from_secs(30);
    /// A node that was killed, restarted, partitioned or added is a
    /// streaming replica again (pg_rewind or a clone included).
    pub const REJOIN: Duration = Duration::from_secs(90);
    /// After a switchover or a removal, the replicas stream from the
    /// primary again.
    pub const REPLICAS_FOLLOW: Duration = Duration::from_secs(30);
    /// Beyond the lease, how long a failover may take.
    pub const FAILOVER_SLACK: Duration = Duration::from_secs(8);
    /// A new primary after the old one stopped (paused or cut off) with
    /// the default lease: lease expiry, election, promotion.
    pub const FAILOVER: Duration = Duration::from_secs(30);
    /// A cut-off primary's lease runs out and its `/primary` check fails.
    pub const LEASE_LOST: Duration = Duration::from_secs(10);
    /// `raftctl switchover|failover --to` is accepted: the target's
    /// streaming state has reached the replicated state.
    pub const HANDOVER_ACCEPTED: Duration = Duration::from_secs(30);
    /// The target of an accepted switchover or failover answers as primary.
    pub const SWITCHOVER: Duration = Duration::from_secs(20);
    /// A primary (already answering `/primary`) takes a write or answers
    /// a query.
    pub const WRITE: Duration = Duration::from_secs(10);
    /// A background writer lands more rows.
    pub const WRITER_PROGRESS: Duration = Duration::from_secs(20);
    /// A daemon just started answers its admin service, or logs why it
    /// refuses to.
    pub const DAEMON_START: Duration = Duration::from_secs(30);
    /// A daemon exits after SIGTERM.
    pub const DAEMON_EXIT: Duration = Duration::from_secs(60);
    /// `raftctl events --follow` connects and prints an event.
    pub const EVENTS: Duration = Duration::from_secs(10);
    /// HAProxy's checks settle on the right backends.
    pub const HAPROXY: Duration = Duration::from_secs(20);
    /// An HTTP request that changes something (it may restart PostgreSQL).
    pub const CONTROL_REQUEST: Duration = Duration::from_secs(90);
    /// An HTTP request that only reads or writes the dynamic configuration.
    pub const CONFIG_REQUEST: Duration = Duration::from_secs(10);
}

/// An nftables table that cuts one host off: what it sends to `peer_ports`
/// and what reaches its `own_ports` is dropped. Removed on drop.
pub struct Partition {
    table: String,
}

impl Partition {
    pub fn isolate(host: &str, own_ports: &[u16], peer_ports: &[u16]) -> Partition {
        use std::io::Write;
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let table = format!("raftgres_it_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let list = |ports: &[u16]| ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        let rules = format!(
            "table inet {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    \
             ip saddr {host} tcp dport {{ {} }} drop\n    ip daddr {host} tcp dport {{ {} }} drop\n  }}\n}}\n",
            list(peer_ports),
            list(own_ports)
        );
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (scripts/install-deps.sh installs nftables)");
        child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write rules");
        assert!(child.wait().expect("nft").success(), "nft refused:\n{rules}");
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft").args(["delete", "table", "inet", &self.table]).status();
    }
}

/// The value of the first sample of `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
