//! The admin gRPC service (`proto/admin.proto`), served beside the Raft
//! transport on the Raft port, under the same cluster-token check. Every
//! call maps to an [`Ops`] operation; calls about another member are
//! forwarded to it.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use raftgres_proto::admin as pb;
use raftgres_proto::admin::admin_client::AdminClient;
use raftgres_proto::admin::admin_server::{Admin, AdminServer};
use raftgres_storage::EventRecord;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::history;
use crate::ops::{ConfigChange, Done, OpError, Ops};

/// How long a forwarded per-member call (restart, reinitialize) may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(600);

impl From<OpError> for Status {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(m) => Status::invalid_argument(m),
            OpError::NotFound(m) => Status::not_found(m),
            OpError::Refused(m) => Status::failed_precondition(m),
            OpError::Conflict(m) => Status::aborted(m),
            OpError::Unavailable(m) => Status::unavailable(m),
            OpError::Internal(m) => Status::internal(m),
        }
    }
}

fn reply(d: Done) -> Response<pb::OperationReply> {
    Response::new(pb::OperationReply { message: d.message, index: d.index })
}

/// An event as `raftctl` shows it: member names, elections with their
/// timeline, no Rust type names (see [`crate::history`]).
pub fn event_to_pb(r: &EventRecord, c: &history::Context) -> pb::Event {
    pb::Event {
        index: r.index,
        at_ms: r.at_ms,
        kind: r.event.kind().to_string(),
        text: history::text(&r.event, c),
        json: history::json(&r.event, c).to_string(),
    }
}

/// The service of one daemon. It is served from the moment the Raft
/// listener is, before the daemon's operations exist: until they are set,
/// calls answer `Unavailable`.
pub struct AdminService {
    ops: Arc<OnceLock<Ops>>,
}

impl AdminService {
    pub fn server(ops: Arc<OnceLock<Ops>>) -> AdminServer<AdminService> {
        AdminServer::new(AdminService { ops })
    }

    fn ops(&self) -> Result<&Ops, Status> {
        self.ops.get().ok_or_else(|| Status::unavailable("the daemon is starting"))
    }

    /// Runs `local` here if `member` is this node, else forwards `call` to
    /// the member's own admin service.
    async fn on_member<L, F>(&self, member: &str, local: L, call: F) -> Result<Response<pb::OperationReply>, Status>
    where
        L: std::future::Future<Output = Result<Done, OpError>>,
        F: AsyncFnOnce(
            &mut AdminClient<tonic::transport::Channel>,
            Request<pb::MemberRequest>,
        ) -> Result<Response<pb::OperationReply>, Status>,
    {
        let ops = self.ops()?;
        let id = ops.resolve(member)?;
        if id == ops.handle.id() {
            return Ok(reply(local.await?));
        }
        let addr =
            ops.raft_addr_of(id).ok_or_else(|| Status::not_found(format!("{member} is not in the Raft membership")))?;
        let channel = ops
            .handle
            .transport()
            .endpoint(&addr)
            .map_err(|e| Status::internal(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach {member} at {addr}: {e}")))?;
        let mut client = AdminClient::new(channel);
        let mut req = Request::new(pb::MemberRequest { member: id.to_string() });
        req.set_timeout(FORWARD_TIMEOUT);
        ops.handle.transport().authorize(&mut req);
        call(&mut client, req).await
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(self.ops()?.status().await.into()))
    }

    async fn members(&self, _: Request<pb::MembersRequest>) -> Result<Response<pb::MembersReply>, Status> {
        let status: pb::ClusterStatus = self.ops()?.status().await.into();
        Ok(Response::new(pb::MembersReply { members: status.members }))
    }

    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> Result<Response<pb::OperationReply>, Status> {
        let r = req.into_inner();
        Ok(reply(self.ops()?.add_member(r.id, &r.name, &r.raft_addr, &r.api_url, r.promote).await?))
    }

    async fn promote_member(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::OperationReply>, Status> {
        Ok(reply(self.ops()?.promote_member(&req.into_inner().member).await?))
    }

    async fn remove_member(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::OperationReply>, Status> {
        Ok(reply(self.ops()?.remove_member(&req.into_inner().member).await?))
    }

    async fn switchover(&self, req: Request<pb::SwitchoverRequest>) -> Result<Response<pb::OperationReply>, Status> {
        let r = req.into_inner();
        let at = (r.at_ms != 0).then_some(r.at_ms);
        Ok(reply(self.ops()?.switchover(Some(&r.from), Some(&r.to), at, r.wait).await?))
    }

    async fn cancel_switchover(
        &self,
        _: Request<pb::CancelSwitchoverRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        Ok(reply(self.ops()?.cancel_switchover().await?))
    }

    async fn failover(&self, req: Request<pb::FailoverRequest>) -> Result<Response<pb::OperationReply>, Status> {
        let r = req.into_inner();
        Ok(reply(self.ops()?.failover(&r.to, r.wait, r.accept_data_loss).await?))
    }

    async fn set_maintenance(
        &self,
        req: Request<pb::SetMaintenanceRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        Ok(reply(self.ops()?.set_maintenance(req.into_inner().on).await?))
    }

    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Result<Response<pb::ConfigReply>, Status> {
        let (version, config) = self.ops()?.get_config().await?;
        let json = serde_json::to_string_pretty(&config).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ConfigReply { version, json, changed: false }))
    }

    async fn set_config(&self, req: Request<pb::SetConfigRequest>) -> Result<Response<pb::ConfigReply>, Status> {
        let r = req.into_inner();
        let change = ConfigChange {
            json: r.json,
            merge: r.merge,
            if_version: (r.if_version != 0).then_some(r.if_version),
            dry_run: r.dry_run,
        };
        let (version, config, changed) = self.ops()?.set_config(&change).await?;
        let json = serde_json::to_string_pretty(&config).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ConfigReply { version, json, changed }))
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        let ops = self.ops()?;
        let events = ops.history(req.into_inner().limit as usize).await?;
        let context = history::Context::of(&ops.handle.cluster_state());
        Ok(Response::new(pb::HistoryReply { events: events.iter().map(|r| event_to_pb(r, &context)).collect() }))
    }

    type EventsStream = EventStream;

    async fn events(&self, req: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        let after = req.into_inner().after_index;
        let mut rx = self.ops()?.handle.subscribe();
        let shutdown = self.ops()?.shutdown.clone();
        let (tx, out) = mpsc::channel(64);
        tokio::spawn(async move {
            // Replay what is kept after `after`, or start from now.
            let mut last = if after == 0 {
                rx.borrow_and_update().state.history.back().map(|r| r.index + 1).unwrap_or(0)
            } else {
                after + 1
            };
            loop {
                let (batch, context): (Vec<EventRecord>, history::Context) = {
                    let applied = rx.borrow_and_update();
                    let batch = applied.state.history.iter().filter(|r| r.index >= last).cloned().collect();
                    (batch, history::Context::of(&applied.state))
                };
                for r in batch {
                    last = r.index + 1;
                    if tx.send(Ok(event_to_pb(&r, &context))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the node is shutting down"))).await;
                        return;
                    }
                    changed = rx.changed() => if changed.is_err() {
                        let _ = tx.send(Err(Status::unavailable("the node is shutting down"))).await;
                        return;
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn restart(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::OperationReply>, Status> {
        let member = req.into_inner().member;
        self.on_member(&member, self.ops()?.restart_local(), async |c, r| c.restart(r).await).await
    }

    async fn reinitialize(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::OperationReply>, Status> {
        let member = req.into_inner().member;
        self.on_member(&member, self.ops()?.reinitialize_local(), async |c, r| c.reinitialize(r).await).await
    }
}
