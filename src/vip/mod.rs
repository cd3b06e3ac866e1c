//! The virtual IP: one address, bound on the primary's interface only
//! while its lease allows writes, so clients that connect to it always
//! reach the one server that may write.
//!
//! The task here owns the address. It holds it while [`hold_until`] says
//! so — the fence's own write deadline ([`crate::fence::write_deadline`])
//! less [`LEAD`], and never for an epoch the agent stood down from for a
//! switchover — and removes it otherwise, at start (an address a crashed
//! daemon left behind) and when the daemon stops. It announces a takeover
//! with gratuitous ARP. It runs on its own task: a slow netlink call
//! holds up neither the lease heartbeat nor the fence.
//!
//! It wakes when the replicated state, the lease (other than a renewal of
//! one that still allows writes) or the stand-down changes, at the moment
//! it must let go, before its guard's deadline to move it, and every
//! [`RECHECK`] to repair an address removed or added by hand.
//!
//! A daemon that is killed or hangs cannot remove the address: its guard
//! process (`raftgres vip-guard`, the loop of [`crate::watchdog::guard`])
//! removes it at the write deadline it was last given.
//!
//! It never decides who is primary and never touches another address.

pub mod link;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_raft::RaftHandle;
use raftgres_storage::{ClusterState, NodeId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::link::{GARP_COUNT, GARP_SPACING, Interface, Link, LinkError};
use crate::fence::write_deadline;
use crate::lease::Lease;
use crate::watchdog::Watchdog;

/// The address is let go this long before the lease stops allowing
/// writes, so that it is gone by the time the fence stops PostgreSQL.
pub const LEAD: Duration = Duration::from_millis(50);

/// How often the address is checked when nothing changes: an address
/// removed by hand on the primary (or added by hand elsewhere) is put
/// right within this.
pub const RECHECK: Duration = Duration::from_secs(5);

/// The guard is given a later deadline this long before the one it holds
/// runs out.
const REARM_AHEAD: Duration = Duration::from_millis(500);

/// A failed netlink call is tried again after this, doubling up to
/// [`RETRY_MAX`].
const RETRY: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How long the daemon's shutdown tries to remove the address.
const REMOVE_ON_EXIT: Duration = Duration::from_secs(3);

/// The resolved `[vip]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipConfig {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub interface: String,
}

impl VipConfig {
    /// `10.0.0.10/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix_len)
    }
}

/// Parses `a.b.c.d/len`: an IPv4 address a host may hold (not loopback,
/// multicast, unspecified, nor the network or broadcast address of its
/// prefix) and a prefix length of 1 to 32.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let Some((addr, len)) = text.split_once('/') else {
        return Err(format!("{text:?} has no prefix length: write it as address/length, e.g. 10.0.0.10/24"));
    };
    if addr.contains(':') {
        return Err(format!("{text:?}: only IPv4 addresses are supported"));
    }
    let address: Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let prefix_len: u8 = match len.parse() {
        Ok(n @ 1..=32) => n,
        _ => return Err(format!("{len:?} is not a prefix length (1 to 32)")),
    };
    let why = if address.is_loopback() {
        Some("a loopback address")
    } else if address.is_multicast() {
        Some("a multicast address")
    } else if address.is_unspecified() {
        Some("the unspecified address")
    } else if address.is_broadcast() {
        Some("the broadcast address")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(format!("{address} is {why}"));
    }
    if prefix_len <= 30 {
        let host_bits = u32::MAX >> prefix_len;
        let host = u32::from(address) & host_bits;
        if host == 0 {
            return Err(format!("{address} is the network address of /{prefix_len}"));
        }
        if host == host_bits {
            return Err(format!("{address} is the broadcast address of /{prefix_len}"));
        }
    }
    Ok((address, prefix_len))
}

/// An interface name the kernel accepts: 1 to 15 bytes, no `/`, `:` or
/// white space, not `.` or `..`.
pub fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty: name the interface the address is bound on, e.g. eth0".into());
    }
    if name.len() > 15 {
        return Err(format!("{name:?} is longer than 15 bytes, the kernel's limit"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} may not be an interface name"));
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(format!("{name:?} may not contain '/', ':' or white space"));
    }
    Ok(())
}

/// Until when `me` may hold the address: [`LEAD`] before its lease stops
/// allowing writes, if the state names it primary in the lease's epoch and
/// the agent has not stood down from that epoch for a switchover.
pub fn hold_until(state: &ClusterState, me: NodeId, lease: &Option<Lease>, stood_down: Option<u64>) -> Option<Instant> {
    let epoch = lease.as_ref()?.epoch;
    if stood_down.is_some_and(|e| e >= epoch) {
        return None;
    }
    write_deadline(state, me, lease)?.checked_sub(LEAD)
}

/// What the task last did, for the operator interfaces and the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipStatus {
    /// The address is bound here, as the last netlink call found or left
    /// it.
    pub held: bool,
    /// The highest epoch whose stand-down the task has carried out (the
    /// address was found or made absent with it in force).
    pub stood_down: Option<u64>,
    /// Netlink calls that failed since the daemon started.
    pub failures: u64,
    /// The last failure, until a call succeeds.
    pub error: Option<String>,
}

/// The agent's end of the task: it asks for the address to go before a
/// switchover stops its primary.
#[derive(Clone)]
pub struct VipHandle {
    stand_down: Arc<watch::Sender<Option<u64>>>,
    status: watch::Receiver<VipStatus>,
}

/// The task's end of [`VipHandle`].
pub struct VipLinks {
    pub stand_down: watch::Receiver<Option<u64>>,
    pub status: watch::Sender<VipStatus>,
}

impl VipHandle {
    pub fn new() -> (VipHandle, VipLinks) {
        let (stand_down_tx, stand_down) = watch::channel(None);
        let (status, status_rx) = watch::channel(VipStatus::default());
        (VipHandle { stand_down: Arc::new(stand_down_tx), status: status_rx }, VipLinks { stand_down, status })
    }

    pub fn status(&self) -> watch::Receiver<VipStatus> {
        self.status.clone()
    }

    /// Stops holding the address for `epoch` (and earlier) and waits up to
    /// `timeout` until it is gone; false when it may still be bound.
    pub async fn release(&self, epoch: u64, timeout: Duration) -> bool {
        self.stand_down.send_if_modified(|v| {
            let raise = v.is_none_or(|e| e < epoch);
            if raise {
                *v = Some(epoch);
            }
            raise
        });
        let mut rx = self.status.clone();
        let done = |s: &VipStatus| !s.held && s.stood_down.is_some_and(|e| e >= epoch);
        matches!(tokio::time::timeout(timeout, rx.wait_for(done)).await, Ok(Ok(_)))
    }

    /// Takes back a stand-down whose switchover did not go ahead: no
    /// release of `epoch` was proposed.
    pub fn resume(&self, epoch: u64) {
        self.stand_down.send_if_modified(|v| {
            let undo = *v == Some(epoch);
            if undo {
                *v = None;
            }
            undo
        });
    }
}

/// Where the address stands, as far as the task knows.
struct Holder {
    vip: VipConfig,
    link: Option<Link>,
    /// What the last successful call left: `None` until one succeeds, and
    /// again after a failure.
    believed: Option<bool>,
    checked_at: Instant,
    announcing: Option<JoinHandle<()>>,
    retry: Duration,
    status: watch::Sender<VipStatus>,
}

impl Holder {
    /// Makes the address present (`want`) or absent; logs what changed.
    async fn reconcile(&mut self, want: bool) -> Result<(), LinkError> {
        let link = match self.link.take() {
            Some(l) => l,
            None => Link::open()?,
        };
        let link = self.link.insert(link);
        if want {
            if let Some(ifc) = link.add(&self.vip).await? {
                tracing::info!(address = %self.vip.cidr(), interface = %self.vip.interface, "virtual IP bound");
                self.announce(ifc);
            }
        } else {
            if let Some(a) = self.announcing.take() {
                a.abort();
            }
            if link.remove(&self.vip).await? {
                tracing::info!(address = %self.vip.cidr(), interface = %self.vip.interface, "virtual IP removed");
            }
        }
        Ok(())
    }

    /// Sends [`GARP_COUNT`] gratuitous ARPs [`GARP_SPACING`] apart, on a
    /// task of their own.
    fn announce(&mut self, ifc: Interface) {
        if let Some(a) = self.announcing.take() {
            a.abort();
        }
        let (address, interface) = (self.vip.address, self.vip.interface.clone());
        self.announcing = Some(tokio::spawn(async move {
            for i in 0..GARP_COUNT {
                if i > 0 {
                    tokio::time::sleep(GARP_SPACING).await;
                }
                if let Err(e) = link::send_garp(ifc, address) {
                    tracing::warn!(%interface, "failed to send a gratuitous ARP for {address}: {e}");
                    return;
                }
            }
        }));
    }

    /// Reconciles and records the outcome; true when it succeeded.
    async fn apply(&mut self, want: bool, now: Instant, stood_down: Option<u64>) -> bool {
        match self.reconcile(want).await {
            Ok(()) => {
                self.believed = Some(want);
                self.checked_at = now;
                self.retry = RETRY;
                let recovered = self.status.borrow().error.is_some();
                if recovered {
                    tracing::info!("the virtual IP is managed again");
                }
                self.status.send_if_modified(|s| {
                    let next = VipStatus {
                        held: want,
                        stood_down: if want { s.stood_down } else { s.stood_down.max(stood_down) },
                        failures: s.failures,
                        error: None,
                    };
                    std::mem::replace(s, next.clone()) != next
                });
                true
            }
            Err(e) => {
                let message = e.to_string();
                let repeated = self.status.borrow().error.as_deref() == Some(message.as_str());
                if repeated {
                    tracing::debug!("failed to {} the virtual IP: {message}", if want { "bind" } else { "remove" });
                } else {
                    tracing::error!(
                        "failed to {} the virtual IP: {message}; retrying",
                        if want { "bind" } else { "remove" }
                    );
                }
                self.believed = None;
                self.link = None;
                self.status.send_modify(|s| {
                    s.failures += 1;
                    s.error = Some(message);
                });
                false
            }
        }
    }
}

/// When the task looks next: at the moment it must let go, before the
/// guard's deadline runs out, after a failure's pause, at the latest after
/// [`RECHECK`].
fn next_wake(now: Instant, until: Option<Instant>, guard_deadline: Option<Instant>, after: Instant) -> Instant {
    let mut next = after;
    if let Some(u) = until.filter(|u| *u > now) {
        next = next.min(u);
        if let Some(rearm) = guard_deadline.and_then(|g| g.checked_sub(REARM_AHEAD)).filter(|r| *r > now) {
            next = next.min(rearm);
        }
    }
    next.max(now)
}

/// Returns at the next change of the lease: any change when `near` the
/// moment to let go (the guard must be given every renewal), else only
/// news ([`crate::lease::news`]).
async fn lease_wake(rx: &mut watch::Receiver<Option<Lease>>, seen: Option<Lease>, margin: Duration, near: bool) {
    if !near {
        return crate::lease::news(rx, seen, margin).await;
    }
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs until cancelled; removes the address on the way out. `guard` is
/// the guard process, armed with the write deadline while the address may
/// be bound.
pub async fn run(
    vip: VipConfig,
    handle: RaftHandle,
    mut lease: watch::Receiver<Option<Lease>>,
    links: VipLinks,
    mut guard: Option<Watchdog>,
    cancel: CancellationToken,
) {
    let VipLinks { mut stand_down, status } = links;
    let mut state_rx = handle.subscribe();
    let me = handle.id();
    let mut holder =
        Holder { vip, link: None, believed: None, checked_at: Instant::now(), announcing: None, retry: RETRY, status };
    loop {
        state_rx.borrow_and_update();
        let stood_down = *stand_down.borrow_and_update();
        let seen = *lease.borrow_and_update();
        let state = handle.cluster_state();
        let margin = Duration::from_millis(state.config.demote_margin_ms);
        let now = Instant::now();
        let until = hold_until(&state, me, &seen, stood_down);
        let want = until.is_some_and(|u| now < u);
        if want && let Some(g) = guard.as_mut() {
            // The guard removes the address at the fence's write deadline
            // if this daemon cannot.
            g.arm(until.expect("wanted") + LEAD);
        }
        // A stand-down is carried out (and reported) by a call of its own,
        // even when the address is believed absent: the agent waits for it.
        let stand_down_news = !want && stood_down > holder.status.borrow().stood_down;
        let due = holder.believed != Some(want) || now >= holder.checked_at + RECHECK || stand_down_news;
        let mut after = holder.checked_at + RECHECK;
        if due {
            if holder.apply(want, now, stood_down).await {
                after = now + RECHECK;
                if want && Instant::now() >= until.expect("wanted") {
                    // Bound too late (this task was held up): look again
                    // at once, which removes it.
                    continue;
                }
                if !want && let Some(g) = guard.as_mut() {
                    g.disarm();
                }
            } else {
                after = now + holder.retry;
                holder.retry = (holder.retry * 2).min(RETRY_MAX);
            }
        }
        let guard_deadline = guard.as_ref().and_then(|g| g.armed());
        let next = next_wake(now, until, guard_deadline, after);
        // Near the deadline every renewal is news: the guard must get it.
        let near = until.is_some_and(|u| u.saturating_duration_since(now) <= REARM_AHEAD);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
            Ok(()) = state_rx.changed() => {}
            Ok(()) = stand_down.changed() => {}
            _ = lease_wake(&mut lease, seen, margin, near) => {}
        }
    }
    let deadline = Instant::now() + REMOVE_ON_EXIT;
    loop {
        if holder.apply(false, Instant::now(), None).await {
            if let Some(g) = guard {
                g.stop();
            }
            return;
        }
        if Instant::now() + holder.retry > deadline {
            // Dropping the guard's pipe leaves it enforcing the last
            // deadline on its own.
            tracing::error!("failed to remove the virtual IP before stopping; its guard removes it at the deadline");
            return;
        }
        tokio::time::sleep(holder.retry).await;
    }
}

/// Removes the address if it is bound, outside the daemon (its own
/// runtime); true when this call removed it.
pub fn remove_now(vip: &VipConfig) -> Result<bool, LinkError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LinkError::Open)?;
    runtime.block_on(async { Link::open()?.remove(vip).await })
}

/// The guard process (`raftgres vip-guard`): removes the address when an
/// armed deadline passes without a newer one.
pub fn guard_main(vip: VipConfig) {
    crate::watchdog::guard("vip-guard", || {
        let removed = remove_now(&vip);
        match removed {
            Ok(true) => {
                eprintln!(
                    "raftgres vip-guard: lease deadline passed without renewal; removed {} from {}",
                    vip.cidr(),
                    vip.interface
                );
                true
            }
            Ok(false) => true,
            Err(e) => {
                eprintln!("raftgres vip-guard: failed to remove {}: {e}; retrying", vip.cidr());
                false
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_with_their_prefix() {
        assert_eq!(parse_cidr("10.0.0.10/24"), Ok((Ipv4Addr::new(10, 0, 0, 10), 24)));
        assert_eq!(parse_cidr("192.168.1.1/32"), Ok((Ipv4Addr::new(192, 168, 1, 1), 32)));
        assert_eq!(parse_cidr("192.168.1.0/31"), Ok((Ipv4Addr::new(192, 168, 1, 0), 31)), "a point-to-point pair");
        for bad in ["10.0.0.10", "10.0.0.10/", "/24", "10.0.0.10/-1", "10.0.0.10/24/1", "::1/128", "ten/8"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        assert!(check_interface("eth0").is_ok());
        assert!(check_interface("enp0s31f6.100").is_ok());
        assert!(check_interface("br-0123456789ab").is_ok());
    }

    #[test]
    fn the_address_is_let_go_before_writes_stop_and_never_for_a_stood_down_epoch() {
        let state = crate::lease::tests::one_primary();
        let now = Instant::now();
        let expires_at = now + Duration::from_millis(2000);
        let lease = Some(Lease { epoch: 1, expires_at });
        let writes_end = write_deadline(&state, 1, &lease).expect("the primary");
        assert_eq!(hold_until(&state, 1, &lease, None), Some(writes_end - LEAD));
        assert_eq!(hold_until(&state, 2, &lease, None), None, "not the primary");
        assert_eq!(hold_until(&state, 1, &None, None), None, "no lease");
        assert_eq!(hold_until(&state, 1, &Some(Lease { epoch: 2, expires_at }), None), None, "another epoch");
        assert_eq!(hold_until(&state, 1, &lease, Some(1)), None, "stood down for a switchover");
        assert_eq!(hold_until(&state, 1, &lease, Some(0)), Some(writes_end - LEAD), "an older stand-down");
    }

    #[test]
    fn wakes_to_let_go_and_to_move_the_guard() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let recheck = now + RECHECK;
        // Not holding: only the backstop.
        assert_eq!(next_wake(now, None, None, recheck), recheck);
        // Holding: before the guard's deadline runs out, or at the moment
        // to let go once that is too close.
        assert_eq!(next_wake(now, Some(now + ms(1400)), Some(now + ms(1450)), recheck), now + ms(950));
        assert_eq!(next_wake(now, Some(now + ms(300)), Some(now + ms(350)), recheck), now + ms(300));
        // A failure's retry comes first; nothing is scheduled in the past.
        assert_eq!(next_wake(now, Some(now + ms(1400)), Some(now + ms(1450)), now + ms(100)), now + ms(100));
        assert_eq!(next_wake(now, Some(now - ms(1)), None, now - ms(5)), now);
    }

    #[tokio::test]
    async fn a_release_waits_for_the_task_to_carry_it_out() {
        let (handle, links) = VipHandle::new();
        links.status.send_replace(VipStatus { held: true, ..Default::default() });
        assert!(!handle.release(3, Duration::from_millis(20)).await, "still held");
        assert_eq!(*links.stand_down.borrow(), Some(3));
        links.status.send_replace(VipStatus { held: false, stood_down: Some(3), ..Default::default() });
        assert!(handle.release(3, Duration::from_millis(20)).await);
        // A stand-down is never lowered by an older epoch's release, and
        // is taken back only for its own epoch.
        handle.release(2, Duration::ZERO).await;
        assert_eq!(*links.stand_down.borrow(), Some(3));
        handle.resume(2);
        assert_eq!(*links.stand_down.borrow(), Some(3));
        handle.resume(3);
        assert_eq!(*links.stand_down.borrow(), None);
    }
}
