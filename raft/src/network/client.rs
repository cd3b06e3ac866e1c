//! openraft's network over gRPC: one lazily connected channel per peer
//! address, shared through [`Peers`] (openraft asks for a new client per
//! leadership check and per election), every request stamped with the
//! cluster id, replies decoded into openraft's results.

use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use raftgres_proto::raft::RaftReply;
use raftgres_proto::raft::raft_transport_client::RaftTransportClient;
use raftgres_storage::{NodeId, NodeInfo, TypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::filter::NetworkFilter;
use super::peers::Peers;
use super::security::Transport;
use crate::confirm::AckClock;
use crate::convert;
use crate::piggyback::RiderSlot;
use crate::witness::LeaseWitness;

/// How long after an unreachable peer before trying it again. openraft's
/// default is 500 ms, which would dominate a restarted node's catch-up.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// Creates a [`Connection`] per peer for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    cluster_id: String,
    self_id: NodeId,
    filter: NetworkFilter,
    peers: Peers,
    transport: Transport,
    witness: LeaseWitness,
    acks: AckClock,
    rider: RiderSlot,
}

impl NetworkFactory {
    pub fn new(cluster_id: &str, self_id: NodeId, transport: Transport, shared: super::Shared) -> Self {
        let super::Shared { filter, peers, witness, acks, rider, .. } = shared;
        Self { cluster_id: cluster_id.to_string(), self_id, filter, peers, transport, witness, acks, rider }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Connection {
        Connection {
            factory: self.clone(),
            target,
            addr: node.raft_addr.clone(),
            client: self.peers.client(&node.raft_addr),
        }
    }
}

/// The link to one peer.
pub struct Connection {
    factory: NetworkFactory,
    target: NodeId,
    addr: String,
    client: Result<RaftTransportClient<Channel>, super::security::SecurityError>,
}

#[derive(Clone, Copy, Debug)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::AppendEntries => "append entries",
            Rpc::Vote => "vote",
            Rpc::InstallSnapshot => "install snapshot",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl Connection {
    /// Sends `req`; returns the reply and the message that carried it,
    /// for what rides on it ([`crate::witness`], [`crate::piggyback`]).
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<(Resp, RaftReply), RPCError<NodeId, NodeInfo, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.factory.filter.is_blocked(self.target) {
            return Err(RPCError::Unreachable(Unreachable::new(&TransportError(format!(
                "link to node {} is cut by the fault filter",
                self.target
            )))));
        }
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(format!("Raft peer: {e}")))));
            }
        };
        let message = convert::request(&self.factory.cluster_id, self.factory.self_id, self.target, rpc.name(), req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut message = message;
        if let Rpc::AppendEntries = rpc {
            message.lease_notice_ms = self.factory.witness.outgoing_notice(Instant::now());
            message.note = self.factory.rider.get().and_then(|r| r.outgoing_note());
        }
        let mut request = tonic::Request::new(message);
        request.set_timeout(ttl);
        self.factory.transport.authorize(&mut request);
        let mut client = client;
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::PermissionDenied | tonic::Code::FailedPrecondition => {
                        if status.code() != tonic::Code::Unavailable {
                            tracing::warn!(target = self.target, addr = %self.addr, "peer refused {}: {}", rpc.name(), status.message());
                        }
                        RPCError::Unreachable(Unreachable::new(&status))
                    }
                    _ => RPCError::Network(NetworkError::new(&status)),
                });
            }
        };
        let result: Result<Resp, E> =
            convert::reply_payload(rpc.name(), &reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))?;
        Ok((resp, reply))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let sent = Instant::now();
        let (resp, reply) =
            self.call::<_, AppendEntriesResponse<NodeId>, _>(Rpc::AppendEntries, &rpc, option.hard_ttl()).await?;
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            // The peer accepted this leadership's vote ([`crate::confirm`]).
            self.factory.acks.accepted(self.target, rpc.vote.leader_id().term, sent);
            if let (Some(report), Some(rider)) = (&reply.report, self.factory.rider.get()) {
                let age = Duration::from_millis(reply.report_age_ms.unwrap_or(0));
                rider.report(self.target, report, age);
            }
        }
        Ok(resp)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl()).await.map(|(r, _)| r)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let term = rpc.vote.leader_id().term;
        let witness = self.factory.witness.clone();
        witness.start_election(term);
        let (resp, reply) = self.call::<_, VoteResponse<NodeId>, _>(Rpc::Vote, &rpc, option.hard_ttl()).await?;
        if resp.vote_granted && resp.vote == rpc.vote {
            witness.granted(term, self.target, Instant::now(), reply.lease_bound_ms);
        }
        Ok(resp)
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
