//! The kernel watchdog device, through stand-in files (a path that is not a
//! character device gets the protocol as text lines: `timeout <s>`,
//! `keepalive`, `V`). The primary opens its device and keeps it fed; a
//! switchover closes the old primary's cleanly and opens the new one's; a
//! primary whose lease runs out, or whose daemon is killed, leaves it unfed;
//! a `required` node whose device cannot be opened never becomes primary and
//! says why, while the others carry on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use raftgres::config::FileConfig;
use raftgres::watchdog::device::WatchdogMode;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{CLUSTER_UP, FAILOVER, HANDOVER_ACCEPTED, REJOIN, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
use crate::support::wait_for;

/// What a stand-in file says about the last time the device was opened.
#[derive(Debug, PartialEq, Eq)]
struct Session {
    /// The timeout it was given, in seconds.
    timeout: u32,
    keepalives: usize,
    /// Closed with the magic character.
    closed: bool,
}

/// The last session recorded in `path`; `None` if it was never opened.
fn last_session(path: &Path) -> Option<Session> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().rposition(|l| l.starts_with("timeout "))?;
    let timeout = lines[start].trim_start_matches("timeout ").parse().expect("a timeout in seconds");
    let rest = &lines[start + 1..];
    Some(Session {
        timeout,
        keepalives: rest.iter().filter(|l| **l == "keepalive").count(),
        closed: rest.contains(&"V"),
    })
}

fn stand_in(id: u64, f: &FileConfig) -> PathBuf {
    if id == 1 { f.node.data_dir.join("no-such-watchdog") } else { f.node.data_dir.join("watchdog") }
}

/// Waits until `path`'s device is open and fed: an open session whose
/// keepalives keep coming.
async fn must_be_fed(path: &Path, what: &str) {
    let before = wait_for(&format!("{what}: the device opened and fed"), SETTLED, async || match last_session(path) {
        Some(s) if !s.closed && s.keepalives >= 2 => Ok(s.keepalives),
        other => Err(other),
    })
    .await;
    wait_for(&format!("{what}: more keepalives"), SETTLED, async || match last_session(path) {
        Some(s) if !s.closed && s.keepalives > before => Ok(()),
        other => Err(other),
    })
    .await;
}

/// Node 1 must never answer `/primary`.
async fn must_not_be_primary(c: &DaemonCluster, id: u64) {
    let h = c.health(id).await.expect("health of the refusing node");
    assert!(!h.primary, "node {id} answers as primary without its watchdog device: {h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primary_holds_the_device_and_a_required_node_without_one_never_leads() {
    // Node 1, the lowest id, would be the bootstrap primary: its device
    // path does not exist.
    let mut c = DaemonCluster::start(3, |f| {
        f.watchdog.mode = WatchdogMode::Required;
        let path = stand_in(f.node.id, f);
        if f.node.id != 1 {
            std::fs::create_dir_all(&f.node.data_dir).expect("node directory");
            std::fs::write(&path, "").expect("create the stand-in");
        }
        f.watchdog.device = path;
    })
    .await;
    let lease = Duration::from_millis(c.layout.file_config(1).dynamic.lease_ttl_ms);
    let paths: Vec<PathBuf> = (1..=3).map(|id| stand_in(id, &c.layout.file_config(id))).collect();
    let device = |id: u64| paths[id as usize - 1].clone();
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    assert_ne!(primary, 1, "the node without a watchdog device was elected");
    let other = if primary == 2 { 3 } else { 2 };

    info!("--- node 1 says why it does not lead");
    wait_for("node 1 to log why it refuses the primary role", SETTLED, async || {
        let log = c.log(1);
        match log.contains("watchdog.mode is required and the watchdog device cannot be used")
            && log.contains("no-such-watchdog")
        {
            true => Ok(()),
            false => Err(log.lines().rev().take(5).map(String::from).collect::<Vec<_>>()),
        }
    })
    .await;
    wait_for("node 1's last_error to say why", SETTLED, async || match c.health(1).await {
        Ok(h) if h.last_error.as_deref().is_some_and(|e| e.contains("no-such-watchdog")) => Ok(()),
        other => Err(other),
    })
    .await;
    let status = c.raftctl_json(&["list"]);
    assert!(status.to_string().contains("unavailable"), "node 1 publishes watchdog = unavailable: {status}");

    info!("--- the primary (node {primary}) opened its device with the lease's timeout and feeds it");
    must_be_fed(&device(primary), "the primary").await;
    let s = last_session(&device(primary)).expect("opened");
    assert_eq!(s.timeout, 1, "lease 2000 ms - margin 500 ms, rounded down to whole seconds");
    assert_eq!(last_session(&device(other)), None, "a replica does not open its device");

    info!("--- switchover to node {other}: the old primary's device closes cleanly, the new one's opens");
    let target = c.layout.node(other).name.clone();
    wait_for("the switchover to be accepted", HANDOVER_ACCEPTED, async || {
        match c.raftctl(&["switchover", "--to", &target, "--force"]) {
            (0, out, _) => Ok(out),
            (_, _, err) => Err(err),
        }
    })
    .await;
    assert_eq!(c.must_primary(&[1, 2, 3], SWITCHOVER).await, other);
    must_be_fed(&device(other), "the new primary").await;
    wait_for("the old primary's device to be closed with V", SETTLED, async || match last_session(&device(primary)) {
        Some(s) if s.closed => Ok(()),
        other => Err(other),
    })
    .await;
    c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    must_not_be_primary(&c, 1).await;

    info!("--- pause node {other}'s daemon past its lease: its device is left unfed, never closed");
    let (paused, standby) = (other, primary);
    c.signal_daemon(paused, Signal::SIGSTOP);
    let elected = c.must_primary(&[1, standby], FAILOVER).await;
    assert_eq!(elected, standby, "node 1 has no watchdog device");
    assert!(last_session(&device(paused)).is_some_and(|s| !s.closed), "a paused daemon cannot close its device");
    info!("--- resume node {paused}: its lease ran out, so the device stays unclosed");
    c.signal_daemon(paused, Signal::SIGCONT);
    wait_for("the resumed node to log that its device was left unfed", SETTLED, async || {
        match c.log(paused).contains("the watchdog device is left unfed") {
            true => Ok(()),
            false => Err(last_session(&device(paused))),
        }
    })
    .await;
    let s = last_session(&device(paused)).expect("opened");
    assert!(!s.closed, "the device of a primary whose lease ran out was closed cleanly: {s:?}");
    must_be_fed(&device(standby), "the primary after the failover").await;
    c.must_healthy(&[1, 2, 3], REJOIN).await;
    must_not_be_primary(&c, 1).await;

    info!("--- kill node {standby}'s daemon (the primary): its device is never closed; node {paused} takes over");
    c.kill_node(standby);
    let elected = c.must_primary(&[1, paused], FAILOVER + lease).await;
    assert_eq!(elected, paused, "node 1 has no watchdog device");
    let s = last_session(&device(standby)).expect("opened");
    assert!(!s.closed, "a killed daemon's device was closed cleanly: {s:?}");
    must_be_fed(&device(paused), "the primary after the kill").await;
    must_not_be_primary(&c, 1).await;

    info!("--- node {standby} comes back as a replica; the cluster is whole");
    c.start_node(standby);
    c.must_healthy(&[1, 2, 3], CLUSTER_UP).await;
    must_not_be_primary(&c, 1).await;
}
