//! One gRPC channel per peer address, shared by everything a node sends:
//! openraft's replication streams, its votes, the extra heartbeat round of
//! a linearizable read, and the handle's forwarded requests.
//!
//! openraft 0.9 asks the network factory for a new client for every
//! leadership check (`ensure_linearizable`) and every election. A channel
//! made afresh each time opened a TCP connection and an HTTP/2 session per
//! request: on an idle cluster the leader connected to each follower four
//! times a second, once per lease renewal. A tonic channel multiplexes
//! requests over one connection and reconnects by itself when it breaks, so
//! one per address is enough.
//!
//! Never decide here who may be reached: the fault filter and the cluster
//! id check stay with each request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftgres_proto::raft::raft_transport_client::RaftTransportClient;
use tonic::transport::Channel;

use super::security::{SecurityError, Transport};

/// The channels of one node, by peer address. Cheap to clone; clones share
/// the channels.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    connect_timeout: Duration,
    transport: Transport,
    channels: Mutex<HashMap<String, RaftTransportClient<Channel>>>,
}

impl Peers {
    pub fn new(connect_timeout: Duration, transport: Transport) -> Self {
        Self { inner: Arc::new(Inner { connect_timeout, transport, channels: Mutex::new(HashMap::new()) }) }
    }

    /// The client of `addr` (`host:port`), connecting lazily on first use.
    pub fn client(&self, addr: &str) -> Result<RaftTransportClient<Channel>, SecurityError> {
        let mut channels = self.inner.channels.lock().expect("peer channel lock poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let client = super::connect_lazy(addr, self.inner.connect_timeout, &self.inner.transport)?;
        channels.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// How many peer addresses have a channel.
    pub fn len(&self) -> usize {
        self.inner.channels.lock().expect("peer channel lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_channel_per_address() {
        let peers = Peers::new(Duration::from_millis(100), Transport::default());
        peers.client("127.0.0.1:1").expect("a client");
        peers.client("127.0.0.1:1").expect("the same client");
        peers.clone().client("127.0.0.1:2").expect("another client");
        assert_eq!(peers.len(), 2);
        assert!(peers.client("not an address").is_err());
        assert_eq!(peers.len(), 2, "a refused address is not kept");
    }
}
