//! The receiving side of the Raft transport: checks that a request is for
//! this cluster and this node, then hands it to the local Raft.

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest};
use raftgres_proto::raft::raft_transport_server::RaftTransport;
use raftgres_proto::raft::{RaftReply, RaftRequest};
use raftgres_storage::{NodeId, TypeConfig};
use tonic::{Request, Response, Status};

use crate::convert::{self, forward::ForwardRequest};
use crate::handle::RaftHandle;

/// The tonic service of one node.
pub struct RaftServer {
    handle: RaftHandle,
}

impl RaftServer {
    pub fn new(handle: RaftHandle) -> Self {
        Self { handle }
    }

    /// Refuses a request of another cluster, for another node, or from a
    /// peer the fault filter cuts off.
    /// `any_target` admits `to == 0`: a joining node forwarding to a seed
    /// address does not know the seed's node id.
    fn admit(&self, req: &RaftRequest, any_target: bool) -> Result<(), Status> {
        let ours = self.handle.cluster_id();
        if req.cluster_id != ours {
            tracing::warn!(from = req.from, cluster = %req.cluster_id, "refused a Raft request from another cluster");
            return Err(Status::permission_denied(format!(
                "cluster id mismatch: this node belongs to cluster {ours:?}, the request to cluster {:?}",
                req.cluster_id
            )));
        }
        let me: NodeId = self.handle.id();
        if req.to != me && !(any_target && req.to == 0) {
            return Err(Status::failed_precondition(format!(
                "node id mismatch: this is node {me}, the request is for node {}",
                req.to
            )));
        }
        if self.handle.filter().is_blocked(req.from) {
            return Err(Status::unavailable(format!("link from node {} is cut by the fault filter", req.from)));
        }
        Ok(())
    }
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl RaftTransport for RaftServer {
    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(&req, false)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            convert::request_payload("append entries", &req).map_err(bad_request)?;
        if let Some(left) = req.lease_notice_ms {
            // Witnessed before openraft sees the request: a confirmation
            // of the leadership for a grant implies this record.
            self.handle.witness().witness(std::time::Instant::now(), left);
        }
        let result = self.handle.raft().append_entries(rpc).await;
        let mut reply = convert::reply("append entries", &result).map_err(internal)?;
        if let (Ok(resp), Some(rider)) = (&result, self.handle.rider())
            && !matches!(resp, AppendEntriesResponse::HigherVote(_))
        {
            // Accepted from the leader of this term: its note is current,
            // and the leader is who the report is for.
            if let Some(note) = &req.note {
                rider.note(req.from, note);
            }
            if let Some((report, age)) = rider.outgoing_report() {
                reply.report = Some(report);
                reply.report_age_ms = Some(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            }
        }
        Ok(Response::new(reply))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(&req, false)?;
        let rpc: VoteRequest<NodeId> = convert::request_payload("vote", &req).map_err(bad_request)?;
        let result = self.handle.raft().vote(rpc).await;
        let mut reply = convert::reply("vote", &result).map_err(internal)?;
        if result.as_ref().is_ok_and(|r| r.vote_granted) {
            // Read after the vote is saved: no later grant of the old
            // leadership can be confirmed here.
            reply.lease_bound_ms = self.handle.witness().vote_reply(std::time::Instant::now());
        }
        Ok(Response::new(reply))
    }

    async fn install_snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(&req, false)?;
        let rpc: InstallSnapshotRequest<TypeConfig> =
            convert::request_payload("install snapshot", &req).map_err(bad_request)?;
        let result = self.handle.raft().install_snapshot(rpc).await;
        Ok(Response::new(convert::reply("install snapshot", &result).map_err(internal)?))
    }

    async fn forward(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(&req, true)?;
        let fwd: ForwardRequest = convert::request_payload("forwarded request", &req).map_err(bad_request)?;
        let result = self.handle.execute_local(req.from, fwd).await;
        Ok(Response::new(convert::reply("forwarded reply", &result).map_err(internal)?))
    }
}
