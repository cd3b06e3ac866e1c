//! Membership: add a node (as a learner that catches up first), promote a
//! learner, remove a member.

use std::time::Duration;

use raftgres_api::HostPort;
use raftgres_storage::{Command, NodeId, NodeInfo, validate_name};

use super::{Done, OpError, Ops};

impl Ops {
    /// Adds a node to Raft as a learner, waits until it caught up, and with
    /// `promote` makes it a voter. The daemon registers itself as a member
    /// once it has the log.
    pub async fn add_member(
        &self,
        id: NodeId,
        name: &str,
        raft_addr: &str,
        api_url: &str,
        promote: bool,
    ) -> Result<Done, OpError> {
        if id == 0 {
            return Err(OpError::Invalid("node id must be at least 1".into()));
        }
        validate_name(name).map_err(|e| OpError::Invalid(format!("member name {e}")))?;
        raft_addr.parse::<HostPort>().map_err(|e| OpError::Invalid(format!("raft address {e}")))?;
        let state = self.state();
        let raft = self.raft_members();
        if let Some((info, _)) = raft.get(&id) {
            return Err(OpError::Refused(format!("node {id} is already in the cluster as {:?}", info.name)));
        }
        if let Some(m) = state.member(id) {
            return Err(OpError::Refused(format!("node id {id} is registered to member {:?}", m.name)));
        }
        if state.members.values().any(|m| m.name == name) || raft.values().any(|(i, _)| i.name == name) {
            return Err(OpError::Refused(format!("a member named {name:?} exists")));
        }
        self.probe(id, raft_addr).await?;
        let mut info = NodeInfo::new(name.to_string(), raft_addr.to_string());
        info.api_addr = api_url.trim_start_matches("http://").to_string();
        let log_id = match self.handle.add_learner(id, info).await {
            Ok(l) => l,
            Err(e) => {
                // Do not leave a learner that never caught up behind.
                if self.raft_members().contains_key(&id) {
                    let _ = self.handle.remove_node(id).await;
                }
                return Err(OpError::from(e));
            }
        };
        let mut index = log_id.index;
        let mut message = format!("added {name} (node {id}) as a learner; it has caught up");
        if promote {
            index = self.handle.promote(id).await?.index;
            message = format!("added {name} (node {id}) and promoted it to voter");
        }
        Ok(Done::new(message, index))
    }

    /// Checks that `raft_addr` is node `id` of this cluster, waiting to be
    /// added, before it enters the membership.
    async fn probe(&self, id: NodeId, raft_addr: &str) -> Result<(), OpError> {
        use raftgres_proto::admin::admin_client::AdminClient;
        let transport = self.handle.transport();
        let endpoint = transport
            .endpoint(raft_addr)
            .map_err(|e| OpError::Invalid(e.to_string()))?
            .connect_timeout(Duration::from_secs(2));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| OpError::Unavailable(format!("cannot reach the new node at {raft_addr}: {e}")))?;
        let mut req = tonic::Request::new(raftgres_proto::admin::StatusRequest {});
        req.set_timeout(Duration::from_secs(5));
        transport.authorize(&mut req);
        let status = AdminClient::new(channel)
            .status(req)
            .await
            .map_err(|s| {
                let m = format!("the node at {raft_addr} did not answer a status call: {}", s.message());
                if s.code() == tonic::Code::Unavailable { OpError::Unavailable(m) } else { OpError::Refused(m) }
            })?
            .into_inner();
        let ours = self.handle.cluster_id();
        if status.cluster_id != ours {
            return Err(OpError::Refused(format!(
                "the node at {raft_addr} belongs to cluster {:?}, not {ours:?}",
                status.cluster_id
            )));
        }
        if status.served_by != id {
            return Err(OpError::Refused(format!("the node at {raft_addr} is node {}, not {id}", status.served_by)));
        }
        Ok(())
    }

    /// Makes a learner a voter.
    pub async fn promote_member(&self, who: &str) -> Result<Done, OpError> {
        let id = self.resolve(who)?;
        match self.raft_members().get(&id) {
            None => return Err(OpError::Refused(format!("{who} is not in the Raft membership; add it first"))),
            Some((_, true)) => return Err(OpError::Refused(format!("{who} is already a voter"))),
            Some((_, false)) => {}
        }
        let log_id = self.handle.promote(id).await?;
        Ok(Done::new(format!("{who} (node {id}) is a voter"), log_id.index))
    }

    /// Removes a member from Raft and from the replicated state. The
    /// primary and synchronous standbys are refused.
    pub async fn remove_member(&self, who: &str) -> Result<Done, OpError> {
        let id = self.resolve(who)?;
        let raft = self.raft_members();
        if raft.get(&id).is_some_and(|(_, voter)| *voter) && raft.values().filter(|(_, v)| *v).count() <= 1 {
            return Err(OpError::Refused(format!("{who} is the last voter")));
        }
        // Unregister first: the state machine checks the precondition (not
        // the primary, not a synchronous standby) atomically with the
        // change, so a refusal leaves Raft membership untouched.
        let mut index = 0;
        if self.handle.read(|s| s.member(id).is_some()).await? {
            index = self.propose(Command::RemoveMember { node: id }).await?;
        }
        if raft.contains_key(&id) {
            index = self.handle.remove_node(id).await?.index;
        }
        Ok(Done::new(format!("removed {who} (node {id}); stop its daemon"), index))
    }
}
