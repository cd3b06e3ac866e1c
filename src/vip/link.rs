//! The address on the wire: list, add and remove it on its interface
//! through rtnetlink (never by running or parsing `ip`), and announce it
//! with gratuitous ARP over an `AF_PACKET` socket.
//!
//! Never decides whether the address should be held: [`super`] does.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;

use super::VipConfig;

/// How many gratuitous ARP requests announce a takeover, and the pause
/// between them: a switch or a neighbour that missed the first hears a
/// later one.
pub const GARP_COUNT: usize = 3;
pub const GARP_SPACING: Duration = Duration::from_millis(100);

/// `ENODEV`, `EADDRNOTAVAIL` and `EEXIST` as netlink reports them.
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;
const EEXIST: i32 = 17;

/// Why an operation on the address failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("open a netlink socket: {0}")]
    Open(io::Error),
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("{what} {address} on {interface}: {message}")]
    Netlink { what: &'static str, address: String, interface: String, message: String },
}

/// The interface as the kernel knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    /// Its hardware address; `None` for an interface without one (no ARP).
    pub mac: Option<[u8; 6]>,
}

/// A netlink connection of this process's network namespace.
pub struct Link {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// The netlink error code of `e`, positive (`ENODEV` is 19), if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

impl Link {
    /// Opens a connection; needs a tokio runtime.
    pub fn open() -> Result<Link, LinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Open)?;
        Ok(Link { handle, connection: tokio::spawn(connection) })
    }

    fn failed(vip: &VipConfig, what: &'static str, e: impl ToString) -> LinkError {
        LinkError::Netlink { what, address: vip.cidr(), interface: vip.interface.clone(), message: e.to_string() }
    }

    /// The configured interface's index and hardware address.
    pub async fn interface(&self, vip: &VipConfig) -> Result<Interface, LinkError> {
        let mut links = self.handle.link().get().match_name(vip.interface.clone()).execute();
        let link = match links.try_next().await {
            Ok(Some(l)) => l,
            Ok(None) => return Err(LinkError::NoInterface(vip.interface.clone())),
            Err(e) if errno(&e) == Some(ENODEV) => return Err(LinkError::NoInterface(vip.interface.clone())),
            Err(e) => return Err(Self::failed(vip, "look up the interface of", e)),
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        Ok(Interface { index: link.header.index, mac: mac.filter(|m| m.iter().any(|b| *b != 0)) })
    }

    /// The address's entries on the interface (none or one).
    async fn entries(&self, vip: &VipConfig, index: u32) -> Result<Vec<AddressMessage>, LinkError> {
        let wanted = IpAddr::V4(vip.address);
        let stream = self.handle.address().get().set_link_index_filter(index).execute();
        let all: Vec<AddressMessage> = stream.try_collect().await.map_err(|e| Self::failed(vip, "list", e))?;
        Ok(all
            .into_iter()
            .filter(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == wanted))
            })
            .collect())
    }

    /// Whether the address is bound on the interface.
    pub async fn holds(&self, vip: &VipConfig) -> Result<bool, LinkError> {
        let ifc = self.interface(vip).await?;
        Ok(!self.entries(vip, ifc.index).await?.is_empty())
    }

    /// Binds the address unless it is bound; `Some(interface)` when this
    /// call bound it (the caller announces it), `None` when it was there.
    pub async fn add(&self, vip: &VipConfig) -> Result<Option<Interface>, LinkError> {
        let ifc = self.interface(vip).await?;
        if !self.entries(vip, ifc.index).await?.is_empty() {
            return Ok(None);
        }
        let request = self.handle.address().add(ifc.index, IpAddr::V4(vip.address), vip.prefix_len);
        match request.execute().await {
            Ok(()) => Ok(Some(ifc)),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(None),
            Err(e) => Err(Self::failed(vip, "add", e)),
        }
    }

    /// Removes the address if it is bound; true when this call removed it.
    /// An interface that no longer exists holds nothing.
    pub async fn remove(&self, vip: &VipConfig) -> Result<bool, LinkError> {
        let ifc = match self.interface(vip).await {
            Ok(i) => i,
            Err(LinkError::NoInterface(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut removed = false;
        for entry in self.entries(vip, ifc.index).await? {
            match self.handle.address().del(entry).execute().await {
                Ok(()) => removed = true,
                Err(e) if errno(&e) == Some(EADDRNOTAVAIL) => {}
                Err(e) => return Err(Self::failed(vip, "remove", e)),
            }
        }
        Ok(removed)
    }
}

/// One gratuitous ARP request frame: broadcast, sender and target protocol
/// address both `ip`, as `arping -U` sends.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address left zero, as for a request.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends one gratuitous ARP for `ip` out of `ifc` on a raw `AF_PACKET`
/// socket (CAP_NET_RAW).
pub fn send_garp(ifc: Interface, ip: Ipv4Addr) -> io::Result<()> {
    let Some(mac) = ifc.mac else { return Ok(()) };
    let protocol = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the descriptor is owned
    // at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = protocol;
    to.sll_ifindex = ifc.index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let frame = garp_frame(mac, ip);
    // SAFETY: the frame and the address outlive the call, and the lengths
    // passed are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread in a new, empty network namespace (root only;
    /// `None` otherwise), with a runtime of its own.
    fn in_new_netns<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> Option<T> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root (a network namespace of its own)");
            return None;
        }
        std::thread::spawn(move || {
            // SAFETY: unshare(2) moves only this thread into a new
            // namespace; the thread ends with the test.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "{}", io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(f())
        })
        .join()
        .map_or_else(|panic| std::panic::resume_unwind(panic), Some)
    }

    #[test]
    fn the_address_is_bound_found_and_removed_through_netlink() {
        in_new_netns(async || {
            let vip = VipConfig { address: Ipv4Addr::new(10, 0, 0, 10), prefix_len: 24, interface: "lo".into() };
            let link = Link::open().expect("netlink");
            assert!(!link.holds(&vip).await.expect("list"));
            let ifc = link.add(&vip).await.expect("add").expect("bound by this call");
            assert_eq!(ifc.mac, None, "loopback has no hardware address: no ARP");
            send_garp(ifc, vip.address).expect("nothing to announce");
            assert!(link.holds(&vip).await.expect("list"));
            assert_eq!(link.add(&vip).await.expect("add again"), None, "already bound");
            assert!(link.remove(&vip).await.expect("remove"));
            assert!(!link.remove(&vip).await.expect("remove again"), "nothing left");
            assert!(!link.holds(&vip).await.expect("list"));
            // An interface that does not exist: a clear error to bind,
            // nothing to remove.
            let missing = VipConfig { interface: "nope0".into(), ..vip };
            let e = link.add(&missing).await.expect_err("no such interface");
            assert_eq!(e.to_string(), "interface nope0 does not exist");
            assert!(!link.remove(&missing).await.expect("nothing bound on it"));
        });
    }

    #[test]
    fn a_gratuitous_arp_names_the_address_as_sender_and_target() {
        let mac = [0x02, 0, 0, 0, 0, 0x2a];
        let f = garp_frame(mac, Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(&f[0..6], &[0xff; 6], "broadcast");
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &mac, "sender hardware address");
        assert_eq!(&f[28..32], &[10, 0, 0, 10], "sender protocol address");
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 0, 0, 10], "target protocol address");
        assert!(f[42..].iter().all(|b| *b == 0), "padded to the minimum frame");
    }
}
