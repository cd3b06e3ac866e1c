//! Starting, initializing and stopping a Raft node: storage, openraft core
//! and the gRPC transport server, owned together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{Raft, SnapshotPolicy};
use raftgres_proto::raft::raft_transport_server::RaftTransportServer;
use raftgres_storage::store::ReleaseProbe;
use raftgres_storage::{NodeId, NodeInfo, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::{InterceptorLayer, Routes, RoutesBuilder};
use tonic::transport::server::TcpIncoming;

use crate::confirm::AckClock;
use crate::error::{HandleError, NodeError};
use crate::handle::RaftHandle;
use crate::network::client::NetworkFactory;
use crate::network::filter::NetworkFilter;
use crate::network::peers::Peers;
use crate::network::security::{self, Transport};
use crate::network::server::RaftServer;
use crate::piggyback::RiderSlot;
use crate::witness::LeaseWitness;

/// Largest gRPC message accepted: a snapshot chunk or a batch of entries.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long `shutdown` waits for the storage to close.
const STORAGE_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node needs to run Raft.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// Every Raft message carries it; a peer of another cluster is refused.
    pub cluster_id: String,
    /// Holds `raft-v<N>/`.
    pub data_dir: PathBuf,
    /// Name and advertised addresses of this node.
    pub info: NodeInfo,
    /// Leader heartbeat; also the deadline of one replication round.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range
    /// starts an election. Keep it well under the primary lease.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for lagging followers.
    pub keep_behind_snapshot: u64,
    /// Deadline of one handle request (propose, read, membership change).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Cluster token and source address of the transport.
    pub transport: Transport,
}

impl NodeConfig {
    /// Defaults for a node: 100 ms heartbeats, 300–400 ms elections.
    pub fn new(node_id: NodeId, cluster_id: &str, data_dir: impl Into<PathBuf>, info: NodeInfo) -> Self {
        Self {
            node_id,
            cluster_id: cluster_id.to_string(),
            data_dir: data_dir.into(),
            info,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(300), Duration::from_millis(400)),
            snapshot_every: 1000,
            keep_behind_snapshot: 200,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            transport: Transport::default(),
        }
    }

    fn openraft_config(&self) -> Result<openraft::Config, NodeError> {
        let ms = |d: Duration| d.as_millis() as u64;
        openraft::Config {
            cluster_name: self.cluster_id.clone(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            install_snapshot_timeout: 2_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            // Sent by `crate::pulse` instead.
            enable_heartbeat: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// A running node: storage, openraft core and the transport server.
pub struct RaftNode {
    handle: RaftHandle,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop_server: oneshot::Sender<()>,
    local_addr: SocketAddr,
    storage: ReleaseProbe,
}

impl RaftNode {
    /// Opens the node's storage and serves the Raft transport on `listener`.
    /// A node with empty storage waits to be initialized or added.
    pub async fn start(config: NodeConfig, listener: TcpListener) -> Result<RaftNode, NodeError> {
        Self::start_with(config, listener, Routes::default()).await
    }

    /// Like [`RaftNode::start`], serving `extra` gRPC services on the same
    /// listener, under the same token check.
    pub async fn start_with(config: NodeConfig, listener: TcpListener, extra: Routes) -> Result<RaftNode, NodeError> {
        let raft_config = Arc::new(config.openraft_config()?);
        let local_addr =
            listener.local_addr().map_err(|error| NodeError::Listen { addr: config.info.raft_addr.clone(), error })?;
        let open = {
            let config = config.clone();
            move || Store::open(&config.data_dir, &config.cluster_id, config.node_id)
        };
        let (log, sm) = tokio::task::spawn_blocking(open)
            .await
            .map_err(|e| NodeError::Fatal(format!("open storage task: {e}")))??;
        let storage = sm.release_probe();
        let shared = crate::network::Shared {
            filter: NetworkFilter::default(),
            peers: Peers::new(config.connect_timeout, config.transport.clone()),
            witness: LeaseWitness::default(),
            acks: AckClock::default(),
            rider: RiderSlot::default(),
            pulse: crate::pulse::Pulse::default(),
        };
        let network = NetworkFactory::new(&config.cluster_id, config.node_id, config.transport.clone(), shared.clone());
        let raft = Raft::new(config.node_id, raft_config, network, log, sm.clone())
            .await
            .map_err(|e| NodeError::Fatal(e.to_string()))?;
        // Three Raft heartbeat intervals: two within a follower's patience
        // (`election_timeout_max + election_timeout_min`, which the
        // configuration keeps at least six).
        tokio::spawn(crate::pulse::run(
            raft.clone(),
            shared.pulse.clone(),
            sm.subscribe(),
            3 * config.heartbeat_interval,
        ));
        let handle = RaftHandle::new(&config, raft, sm, shared);
        let service = RaftTransportServer::new(RaftServer::new(handle.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (stop_server, stopped) = oneshot::channel::<()>();
        let token = config.transport.token.clone();
        let auth = InterceptorLayer::new(move |req: tonic::Request<()>| {
            security::check(token.as_ref(), &req)?;
            Ok(req)
        });
        let mut routes = RoutesBuilder::from(extra);
        routes.add_service(service);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.transport.tls {
            builder = builder.tls_config(tls.server_config()).map_err(|e| NodeError::Config(format!("TLS: {e}")))?;
        }
        let server = tokio::spawn(
            builder
                .tcp_nodelay(true)
                .layer(auth)
                .add_routes(routes.routes())
                // Our own listener bypasses the builder's nodelay setting;
                // without it, small replies wait ~40 ms for delayed ACKs.
                .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(node = config.node_id, addr = %local_addr, cluster = %config.cluster_id, "Raft node started");
        Ok(RaftNode { handle, server, stop_server, local_addr, storage })
    }

    pub fn handle(&self) -> &RaftHandle {
        &self.handle
    }

    /// The address the transport actually listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Forms a new cluster of `members` (this node among them). Calling it
    /// again, or on every initial member with the same set, is harmless.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<(), HandleError> {
        match self.handle.raft().is_initialized().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(f) => return Err(HandleError::Fatal(f.to_string())),
        }
        match self.handle.raft().initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(HandleError::Refused(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(HandleError::Fatal(f.to_string())),
        }
    }

    /// Stops the transport and the Raft core, and waits (a bounded time)
    /// until the storage is closed, so the directory can be reopened. Other
    /// clones of the handle keep the storage open until they are dropped.
    pub async fn shutdown(self) {
        let RaftNode { handle, server, stop_server, storage, .. } = self;
        let id = handle.id();
        handle.clear_app_handler();
        let _ = stop_server.send(());
        if let Err(e) = handle.raft().shutdown().await {
            tracing::warn!(node = id, "failed to join the Raft core: {e}");
        }
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(node = id, "Raft transport ended with an error: {e}"),
            Err(e) => tracing::warn!(node = id, "failed to join the Raft transport: {e}"),
        }
        drop(handle);
        // openraft's state-machine worker and in-flight fsync tasks end
        // shortly after the core; wait for them to drop their store clones.
        let deadline = tokio::time::Instant::now() + STORAGE_RELEASE_TIMEOUT;
        while !storage.is_released() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(node = id, "Raft storage still open {STORAGE_RELEASE_TIMEOUT:?} after shutdown");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(node = id, "Raft node stopped");
    }
}
