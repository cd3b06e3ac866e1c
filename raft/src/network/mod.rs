//! The Raft transport: a gRPC client per peer for openraft's replication and
//! votes, the server side that feeds them into the local Raft, and a fault
//! filter that tests use to cut links.

pub mod client;
pub mod filter;
pub mod peers;
pub mod security;
pub mod server;

use std::time::Duration;

use raftgres_proto::raft::raft_transport_client::RaftTransportClient;
use tonic::transport::Channel;

use self::filter::NetworkFilter;
use self::peers::Peers;
use self::security::{SecurityError, Transport};
use crate::confirm::AckClock;
use crate::piggyback::RiderSlot;
use crate::witness::LeaseWitness;

/// What the handle and openraft's network share: the fault switch, the
/// channels to peers, the lease bounds witnessed, which peers accepted
/// what, and what rides on AppendEntries.
#[derive(Clone)]
pub struct Shared {
    pub filter: NetworkFilter,
    pub peers: Peers,
    pub witness: LeaseWitness,
    pub acks: AckClock,
    pub rider: RiderSlot,
    pub pulse: crate::pulse::Pulse,
}

/// Opens a lazily connecting channel to `addr` (`host:port`). Use a
/// [`peers::Peers`] cache instead of calling this per request.
pub fn connect_lazy(
    addr: &str,
    connect_timeout: Duration,
    transport: &Transport,
) -> Result<RaftTransportClient<Channel>, SecurityError> {
    let endpoint = transport
        .endpoint(addr)?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(RaftTransportClient::new(endpoint.connect_lazy()))
}
