//! A Raft cluster of in-process nodes, each with its own sled directory and
//! its own gRPC server on a loopback port picked by the kernel.

use std::collections::BTreeMap;
use std::time::Duration;

use raftgres_raft::{HandleError, NodeConfig, RaftHandle, RaftNode, ServerState};
use raftgres_storage::{ClusterState, Command, DynamicConfig, Event, NodeId, NodeInfo};
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::wait_for;

pub const CLUSTER_ID: &str = "it-cluster";

pub struct TestCluster {
    pub dir: TempDir,
    pub cluster_id: String,
    /// Running nodes; a stopped node keeps its entry in `infos`.
    nodes: BTreeMap<NodeId, RaftNode>,
    pub infos: BTreeMap<NodeId, NodeInfo>,
    /// Applied to every node started from now on.
    pub tune: fn(&mut NodeConfig),
}

fn default_tune(c: &mut NodeConfig) {
    c.request_timeout = Duration::from_secs(3);
}

impl TestCluster {
    /// Starts `n` voters (ids 1..=n), initializes Raft and the cluster state,
    /// and waits for a leader.
    pub async fn start(n: u64) -> TestCluster {
        Self::start_with(n, default_tune).await
    }

    pub async fn start_with(n: u64, tune: fn(&mut NodeConfig)) -> TestCluster {
        super::init_tracing();
        let mut c = TestCluster {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            cluster_id: CLUSTER_ID.to_string(),
            nodes: BTreeMap::new(),
            infos: BTreeMap::new(),
            tune,
        };
        for id in 1..=n {
            c.start_new_node(id).await;
        }
        let members = c.infos.clone();
        c.node(1).initialize(members).await.expect("initialize Raft");
        let leader = c.must_leader(&(1..=n).collect::<Vec<_>>()).await;
        c.handle(leader)
            .propose(Command::InitializeCluster { cluster_id: CLUSTER_ID.into(), config: DynamicConfig::default() })
            .await
            .expect("propose initialize")
            .outcome
            .expect("initialize accepted");
        c
    }

    /// Starts a node with fresh storage on a new port; it is not a member
    /// until added.
    pub async fn start_new_node(&mut self, id: NodeId) -> &RaftHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        let info = NodeInfo::new(format!("n{id}"), addr);
        self.infos.insert(id, info);
        self.boot(id, listener).await
    }

    async fn boot(&mut self, id: NodeId, listener: TcpListener) -> &RaftHandle {
        let info = self.infos[&id].clone();
        let mut config = NodeConfig::new(id, &self.cluster_id, self.dir.path().join(format!("n{id}")), info);
        (self.tune)(&mut config);
        let node = RaftNode::start(config, listener).await.expect("start Raft node");
        self.nodes.insert(id, node);
        self.handle(id)
    }

    /// Restarts a stopped node from its data directory on its old address.
    /// The stopped instance's last tasks may still hold its storage for a
    /// moment: the start is retried while the storage is locked.
    pub async fn restart(&mut self, id: NodeId) -> &RaftHandle {
        assert!(!self.nodes.contains_key(&id), "node {id} is running");
        let addr = self.infos[&id].raft_addr.clone();
        let info = self.infos[&id].clone();
        let mut config = NodeConfig::new(id, &self.cluster_id, self.dir.path().join(format!("n{id}")), info);
        (self.tune)(&mut config);
        let node = wait_for(&format!("node {id} to start again on {addr}"), Duration::from_secs(10), async || {
            let listener = TcpListener::bind(&addr).await.map_err(|e| e.to_string())?;
            match RaftNode::start(config.clone(), listener).await {
                Ok(node) => Ok(node),
                Err(e) if format!("{e:?}").contains("Locked") => Err(format!("{e:?}")),
                Err(e) => panic!("start Raft node {id}: {e:?}"),
            }
        })
        .await;
        self.nodes.insert(id, node);
        self.handle(id)
    }

    /// Stops a node: its server goes away and its Raft core ends.
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        node.shutdown().await;
    }

    pub fn node(&self, id: NodeId) -> &RaftNode {
        self.nodes.get(&id).unwrap_or_else(|| panic!("node {id} is not running"))
    }

    pub fn handle(&self, id: NodeId) -> &RaftHandle {
        self.node(id).handle()
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Waits until the nodes `among` agree on one leader that is among them.
    pub async fn must_leader(&self, among: &[NodeId]) -> NodeId {
        wait_for("one leader among the nodes", Duration::from_secs(10), async || {
            let views: Vec<(NodeId, Option<NodeId>, ServerState)> = among
                .iter()
                .map(|id| {
                    let s = self.handle(*id).status();
                    (*id, s.leader, s.role)
                })
                .collect();
            let leaders: Vec<NodeId> =
                views.iter().filter(|(_, _, r)| *r == ServerState::Leader).map(|(id, _, _)| *id).collect();
            match leaders.as_slice() {
                [l] if views.iter().all(|(_, seen, _)| *seen == Some(*l)) => Ok(*l),
                _ => Err(views),
            }
        })
        .await
    }

    /// Partitions `a` from `b` in both directions.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                if let Some(n) = self.nodes.get(x) {
                    n.handle().filter().block(*y);
                }
                if let Some(n) = self.nodes.get(y) {
                    n.handle().filter().block(*x);
                }
            }
        }
    }

    pub fn heal(&self) {
        for n in self.nodes.values() {
            n.handle().filter().heal();
        }
    }

    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

/// Proposes on `h` and panics unless the command was applied.
pub async fn must_apply(h: &RaftHandle, command: Command) -> Vec<Event> {
    let what = command.to_string();
    match h.propose(command).await {
        Ok(p) => p.outcome.unwrap_or_else(|r| panic!("{what} was rejected: {r}")),
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Reads linearizably on `h`, panicking on error.
pub async fn must_read<T>(h: &RaftHandle, f: impl FnOnce(&ClusterState) -> T) -> T {
    h.read(f).await.unwrap_or_else(|e: HandleError| panic!("linearizable read on node {} failed: {e}", h.id()))
}

/// A member named `name`, for proposals that add rows to the state.
pub fn member(id: NodeId, name: &str) -> raftgres_storage::Member {
    raftgres_storage::Member::new(id, name)
}
