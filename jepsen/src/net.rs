//! The harness's network: one network namespace per host on a bridge that
//! lives in a namespace of its own, the partitions (nftables rules inside
//! each host's namespace) and the checks that a partition is really in
//! force.
//!
//! Layout, all under names starting with `rgj-` so a stale run's leftovers
//! are recognised and removed at the next start:
//!
//! - `rgj-net`: holds the bridge `rgj-br0` and the bridge end of every veth
//!   pair. It has no address: nothing outside the harness's namespaces can
//!   reach the hosts, and the root namespace's network is never touched.
//! - `rgj-n1`, `rgj-n2`, …: one per host, `eth0` at `10.77.0.(10 + slot)`,
//!   loopback up.
//! - `rgj-client`: `eth0` at `10.77.0.2`; HAProxy and every client run here
//!   (the harness process moves itself into it before its runtime starts).
//!
//! Namespaces, links and addresses are made with `ip`, rules with `nft -f -`
//! (nftables has no maintained Rust library). Sockets that must belong to a
//! host's namespace (the partition checks) are created on a short-lived
//! thread that entered it: a socket keeps the namespace it was made in.
//!
//! [`Net`] lays out the same shape under another prefix and subnet, for the
//! daemon's own namespace tests.
//!
//! This module must never touch a namespace, link or process whose name or
//! namespace is not the harness's own.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

/// Every name the harness creates starts with this.
pub const PREFIX: &str = "rgj-";
/// The namespace that holds the bridge.
pub const BRIDGE_NS: &str = "rgj-net";
pub const BRIDGE: &str = "rgj-br0";
/// The clients' namespace.
pub const CLIENT_NS: &str = "rgj-client";
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Port of the partition checks' echo listener on every host.
pub const ECHO_PORT: u16 = 7999;

/// The namespace of host `slot` (from 1).
pub fn host_ns(slot: usize) -> String {
    format!("rgj-n{slot}")
}

/// The address of host `slot` (from 1).
pub fn host_addr(slot: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + slot as u8)
}

/// Runs `ip` with `args`; an error carries its standard error.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("run ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The namespaces under /run/netns whose names start with [`PREFIX`].
pub fn our_namespaces() -> Vec<String> {
    Net::HARNESS.namespaces()
}

/// Creates the bridge namespace, the client namespace and one namespace per
/// host slot, wired to the bridge.
pub fn create(slots: usize) -> anyhow::Result<()> {
    Net::HARNESS.create(slots)
}

/// Kills every process inside one of our namespaces, then deletes the
/// namespaces (their links and rules go with them). Used at the end of a
/// run and, at the start of one, for a previous run's leftovers.
pub fn destroy() -> Vec<String> {
    Net::HARNESS.destroy()
}

/// One set of namespaces on a bridge, as the harness lays them out: the
/// harness's own is [`Net::HARNESS`]; others (the daemon's integration
/// tests) use another prefix and subnet, so both can exist at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    /// Every namespace's name starts with this.
    pub prefix: String,
    /// The first three octets of the /24 the hosts and the client share.
    pub subnet: [u8; 3],
}

impl Net {
    /// The harness's layout (see the module's documentation).
    pub const HARNESS: NetRef<'static> = NetRef { prefix: PREFIX, subnet: [10, 77, 0] };

    pub fn new(prefix: &str, subnet: [u8; 3]) -> Net {
        Net { prefix: prefix.to_string(), subnet }
    }

    fn as_ref(&self) -> NetRef<'_> {
        NetRef { prefix: &self.prefix, subnet: self.subnet }
    }

    pub fn bridge_ns(&self) -> String {
        self.as_ref().bridge_ns()
    }
    pub fn client_ns(&self) -> String {
        self.as_ref().client_ns()
    }
    pub fn client_addr(&self) -> Ipv4Addr {
        self.as_ref().addr(2)
    }
    pub fn host_ns(&self, slot: usize) -> String {
        self.as_ref().host_ns(slot)
    }
    pub fn host_addr(&self, slot: usize) -> Ipv4Addr {
        self.as_ref().addr(10 + slot as u8)
    }
    /// Another address of the subnet, `.last`.
    pub fn addr(&self, last: u8) -> Ipv4Addr {
        self.as_ref().addr(last)
    }
    pub fn create(&self, slots: usize) -> anyhow::Result<()> {
        self.as_ref().create(slots)
    }
    pub fn destroy(&self) -> Vec<String> {
        self.as_ref().destroy()
    }
    pub fn namespaces(&self) -> Vec<String> {
        self.as_ref().namespaces()
    }
}

/// A [`Net`] borrowed or built in a constant.
#[derive(Clone, Copy, Debug)]
pub struct NetRef<'a> {
    pub prefix: &'a str,
    pub subnet: [u8; 3],
}

impl NetRef<'_> {
    fn bridge_ns(&self) -> String {
        format!("{}net", self.prefix)
    }
    fn client_ns(&self) -> String {
        format!("{}client", self.prefix)
    }
    fn host_ns(&self, slot: usize) -> String {
        format!("{}n{slot}", self.prefix)
    }
    fn addr(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.retain(|n| n.starts_with(self.prefix));
        names.sort();
        names
    }

    pub fn create(&self, slots: usize) -> anyhow::Result<()> {
        let bridge_ns = self.bridge_ns();
        ip(&["netns", "add", &bridge_ns])?;
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &bridge_ns, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &bridge_ns, "link", "set", BRIDGE, "up"])?;
        self.attach(&self.client_ns(), "v-client", self.addr(2))?;
        for slot in 1..=slots {
            self.attach(&self.host_ns(slot), &format!("v-n{slot}"), self.addr(10 + slot as u8))?;
        }
        Ok(())
    }

    /// Creates namespace `ns` with `eth0` at `addr`/24, its peer `veth` on
    /// the bridge.
    fn attach(&self, ns: &str, veth: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        let bridge_ns = self.bridge_ns();
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &bridge_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(&["-n", &bridge_ns, "link", "set", veth, "master", BRIDGE, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    pub fn destroy(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let names = self.namespaces();
        for _ in 0..50 {
            let pids = pids_in(&names);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = pids_in(&names);
        if !left.is_empty() {
            notes.push(format!("processes still in the namespaces: {left:?}"));
        }
        for name in names {
            if let Err(e) = ip(&["netns", "del", &name]) {
                notes.push(format!("{e:#}"));
            }
        }
        notes
    }
}

/// The (device, inode) identity of a namespace file.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Processes (other than this one) whose network namespace is one of
/// `names`.
pub fn pids_in(names: &[String]) -> Vec<i32> {
    let ids: Vec<(u64, u64)> = names.iter().filter_map(|n| ns_id(&Path::new("/run/netns").join(n))).collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return pids };
    for entry in dir.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Some(id) = ns_id(&entry.path().join("ns/net"))
            && ids.contains(&id)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Moves the calling thread into namespace `ns`.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let file = File::open(Path::new("/run/netns").join(ns)).with_context(|| format!("open namespace {ns}"))?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).with_context(|| format!("enter namespace {ns}"))?;
    Ok(())
}

/// Runs `f` on a fresh thread inside namespace `ns`; sockets it makes
/// belong to `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || -> anyhow::Result<T> {
        enter(&ns)?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a thread in namespace panicked"))?
}

/// Makes `cmd` start inside namespace `ns` (it enters the namespace between
/// fork and exec), so the pid it returns is the program's own.
pub fn command_in(ns: &str, cmd: &mut tokio::process::Command) -> anyhow::Result<()> {
    std_command_in(ns, cmd.as_std_mut())
}

/// [`command_in`] for a `std::process::Command`.
pub fn std_command_in(ns: &str, cmd: &mut std::process::Command) -> anyhow::Result<()> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::os::unix::process::CommandExt;
    let file = File::open(Path::new("/run/netns").join(ns)).with_context(|| format!("open namespace {ns}"))?;
    let fd = file.as_raw_fd();
    // SAFETY: the closure only calls setns(2), async-signal-safe, on a
    // descriptor the parent keeps open until the child has exec'd (it is
    // moved into the closure, which lives as long as the command).
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &file;
            let fd = BorrowedFd::borrow_raw(fd);
            setns(fd, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    Ok(())
}

/// Runs `nft -f -` with `ruleset` inside namespace `ns`.
pub fn nft(ns: &str, ruleset: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft")?;
    child.stdin.take().expect("piped").write_all(ruleset.as_bytes()).context("write the ruleset")?;
    let out = child.wait_with_output().context("wait for nft")?;
    if !out.status.success() {
        bail!("nft in {ns}: {}\n{ruleset}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The `inet jepsen` table for a host that drops every packet from
/// `drop_from` and every packet to `drop_to`.
///
/// Stateless and early: the chains hook prerouting (the input side, before
/// routing) and output at priority `raw` (-300), ahead of connection
/// tracking, and match addresses only, with no `ct state` accept before the
/// drop, so established connections are cut as well as new ones. Packets
/// are dropped, never rejected: peers hear nothing, as in a real partition.
/// Loading it replaces the table atomically (one nft transaction).
pub fn partition_ruleset(drop_from: &[Ipv4Addr], drop_to: &[Ipv4Addr]) -> String {
    let set = |addrs: &[Ipv4Addr]| addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
    let mut text = String::from("table inet jepsen\ndelete table inet jepsen\ntable inet jepsen {\n");
    text.push_str("  chain input {\n    type filter hook prerouting priority raw; policy accept;\n");
    if !drop_from.is_empty() {
        text.push_str(&format!("    ip saddr {{ {} }} drop\n", set(drop_from)));
    }
    text.push_str("  }\n  chain output {\n    type filter hook output priority raw; policy accept;\n");
    if !drop_to.is_empty() {
        text.push_str(&format!("    ip daddr {{ {} }} drop\n", set(drop_to)));
    }
    text.push_str("  }\n}\n");
    text
}

/// Removes the `inet jepsen` table (there or not).
pub const HEAL_RULESET: &str = "table inet jepsen\ndelete table inet jepsen\n";

/// Starts an echo listener on `addr`:[`ECHO_PORT`] inside `ns`, serving
/// every connection on its own task until the runtime ends.
pub fn start_echo(ns: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
    let listener = in_ns(ns, move || TcpListener::bind((addr, ECHO_PORT)))?
        .with_context(|| format!("bind the echo listener on {addr}:{ECHO_PORT}"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(())
}

/// Opens a TCP connection from inside `ns` to `to`.
pub fn connect_from(ns: &str, to: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
    Ok(in_ns(ns, move || TcpStream::connect_timeout(&to, timeout))??)
}

/// Whether a byte written on `stream` comes back within `timeout`.
pub fn echoes(stream: &mut TcpStream, timeout: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut buf = [0u8; 1];
    stream.write_all(b"x").is_ok() && stream.read_exact(&mut buf).is_ok() && buf == *b"x"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_ruleset_drops_statelessly_early_on_both_sides() {
        let text = partition_ruleset(&[host_addr(2), host_addr(3)], &[host_addr(2)]);
        assert!(text.starts_with("table inet jepsen\ndelete table inet jepsen\n"), "{text}");
        assert!(text.contains("hook prerouting priority raw"), "{text}");
        assert!(text.contains("hook output priority raw"), "{text}");
        assert!(text.contains("ip saddr { 10.77.0.12, 10.77.0.13 } drop"), "{text}");
        assert!(text.contains("ip daddr { 10.77.0.12 } drop"), "{text}");
        assert!(!text.contains("ct state") && !text.contains("reject"), "{text}");
    }
}
