//! The replicated event log over real gRPC on loopback: elections, commits,
//! leader loss, restart from disk, membership changes, quorum loss,
//! partitions and cluster isolation.

use std::time::{Duration, Instant};

use raftgres_proto::raft::RaftRequest;
use raftgres_proto::raft::raft_transport_client::RaftTransportClient;
use raftgres_raft::{HandleError, Inherited, NodeConfig, RaftNode};
use raftgres_storage::{Command, NodeInfo};
use tokio::net::TcpListener;
use tracing::info;

use crate::support::cluster::{TestCluster, member, must_apply, must_read};
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_a_leader_and_commit() {
    let c = TestCluster::start(3).await;
    let leader = c.must_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("a follower");

    info!("--- a proposal on a follower is forwarded to the leader and committed");
    must_apply(c.handle(follower), Command::AddMember { member: member(1, "pg1") }).await;
    must_apply(c.handle(leader), Command::AddMember { member: member(2, "pg2") }).await;

    info!("--- every node reads both members linearizably");
    for id in [1, 2, 3] {
        let names = must_read(c.handle(id), |s| s.members.values().map(|m| m.name.clone()).collect::<Vec<_>>()).await;
        assert_eq!(names, ["pg1", "pg2"], "node {id}");
    }

    info!("--- a rejected command comes back as a rejection and changes nothing");
    let p = c.handle(follower).propose(Command::AddMember { member: member(2, "again") }).await.expect("propose");
    assert!(p.outcome.is_err(), "{p:?}");
    assert_eq!(must_read(c.handle(leader), |s| s.members.len()).await, 2);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_elects_another_and_loses_no_committed_entry() {
    let mut c = TestCluster::start(3).await;
    let old = c.must_leader(&[1, 2, 3]).await;
    for i in 1..=20 {
        must_apply(c.handle(old), Command::AddMember { member: member(i, &format!("m{i}")) }).await;
    }
    let committed = must_read(c.handle(old), |s| s.clone()).await;

    info!("--- stop leader {old}");
    c.stop(old).await;
    let rest: Vec<_> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = c.must_leader(&rest).await;
    assert_ne!(new, old);

    info!("--- the new leader {new} has every committed entry and commits more");
    let state = must_read(c.handle(new), |s| s.clone()).await;
    assert_eq!(state.members, committed.members);
    must_apply(c.handle(new), Command::AddMember { member: member(21, "m21") }).await;
    for id in &rest {
        assert_eq!(must_read(c.handle(*id), |s| s.members.len()).await, 21, "node {id}");
    }

    info!("--- the old leader rejoins as a follower and catches up");
    c.restart(old).await;
    let leader = c.must_leader(&[1, 2, 3]).await;
    assert_ne!(leader, old, "a restarted node rejoins under the existing leader");
    assert_eq!(must_read(c.handle(old), |s| s.members.len()).await, 21);
    c.shutdown().await;
}

/// The bound of a lease the leader is about to grant reaches the quorum
/// that confirms its leadership, and the next leader inherits it through
/// the votes it gets (raftgres_raft::witness): never earlier than the
/// bound, whatever the nodes' own restarts say.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_next_leader_inherits_the_bound_of_a_lease_its_predecessor_granted() {
    let mut c = TestCluster::start(3).await;
    for id in [1, 2, 3] {
        c.handle(id).witness().set_longest_lease(Duration::from_secs(2));
    }
    let old = c.must_leader(&[1, 2, 3]).await;
    // Far past what a node that just started vouches for by itself (its
    // start plus the longest lease), so only a witnessed notice explains it.
    let bound = Instant::now() + Duration::from_secs(20);
    c.handle(old).witness().notice(bound);
    c.handle(old).raft().ensure_linearizable().await.expect("leadership confirmed by a quorum");

    info!("--- stop leader {old}; the next one inherits the bound");
    c.stop(old).await;
    let rest: Vec<_> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = c.must_leader(&rest).await;
    let term = c.handle(new).status().term;
    match c.handle(new).inherited_lease(term, Instant::now()) {
        Inherited::Bound(Some(b)) => assert!(b >= bound, "inherited {:?} before the bound", bound - b),
        other => panic!("leader {new} of term {term} inherited {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_recovers_vote_and_log_from_disk() {
    let mut c = TestCluster::start(3).await;
    let leader = c.must_leader(&[1, 2, 3]).await;
    for i in 1..=10 {
        must_apply(c.handle(leader), Command::AddMember { member: member(i, &format!("m{i}")) }).await;
    }
    let target = if leader == 3 { 2 } else { 3 };
    // Make sure the target has applied everything before the stop.
    must_read(c.handle(target), |_| ()).await;
    let before = c.handle(target).status();
    let vote_before = c.handle(target).metrics().borrow().vote;

    info!("--- stop every node, then start {target} alone: it can learn nothing from peers");
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    // No election while we look: the stored vote must be what it reports.
    c.tune = |cfg| cfg.election_timeout = (Duration::from_secs(30), Duration::from_secs(60));
    let h = c.restart(target).await;
    let vote_after = wait_for("the restarted node to report its stored vote", Duration::from_secs(5), async || {
        let vote = h.metrics().borrow().vote;
        if vote == Default::default() { Err(vote) } else { Ok(vote) }
    })
    .await;
    let after = h.status();
    assert_eq!(vote_after, vote_before, "vote recovered");
    assert_eq!(after.term, before.term, "term recovered");
    assert_eq!(after.last_log_index, before.last_log_index, "log recovered");
    let applied = wait_for("the committed entries re-applied", Duration::from_secs(5), async || {
        let n = h.cluster_state().members.len();
        if n == 10 { Ok(n) } else { Err(n) }
    })
    .await;
    assert_eq!(applied, 10);

    info!("--- the rest come back and the cluster commits again");
    c.tune = |cfg| cfg.request_timeout = Duration::from_secs(3);
    for id in [1, 2, 3] {
        if id != target {
            c.restart(id).await;
        }
    }
    let leader = c.must_leader(&[1, 2, 3]).await;
    must_apply(c.handle(leader), Command::AddMember { member: member(11, "m11") }).await;
    assert_eq!(must_read(c.handle(target), |s| s.members.len()).await, 11);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_a_learner_promote_it_and_remove_a_voter() {
    fn small_snapshots(c: &mut NodeConfig) {
        c.request_timeout = Duration::from_secs(5);
        c.snapshot_every = 30;
        c.keep_behind_snapshot = 0;
    }
    let mut c = TestCluster::start_with(3, small_snapshots).await;
    let leader = c.must_leader(&[1, 2, 3]).await;
    for i in 1..=60 {
        must_apply(c.handle(leader), Command::AddMember { member: member(i, &format!("m{i}")) }).await;
    }
    wait_for("the leader to purge its log behind a snapshot", Duration::from_secs(10), async || {
        let purged = c.handle(leader).metrics().borrow().purged;
        if purged.is_some() { Ok(()) } else { Err(purged) }
    })
    .await;

    info!("--- start node 4 empty and add it as a learner: it needs the snapshot");
    c.start_new_node(4).await;
    let info4 = c.infos[&4].clone();
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("a follower");
    c.handle(follower).add_learner(4, info4).await.expect("add learner through a follower");
    let status = c.handle(leader).status();
    assert!(status.learners.contains(&4), "{status:?}");
    wait_for("the learner to have the state", Duration::from_secs(10), async || {
        let n = c.handle(4).cluster_state().members.len();
        if n == 60 { Ok(()) } else { Err(n) }
    })
    .await;

    info!("--- promote 4, then remove voter 1 while writes continue");
    c.handle(leader).promote(4).await.expect("promote");
    let writer = {
        let h = c.handle(4).clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 100..130u64 {
                if let Ok(p) = h.propose(Command::AddMember { member: member(i, &format!("w{i}")) }).await
                    && p.outcome.is_ok()
                {
                    acked.push(i);
                }
            }
            acked
        })
    };
    c.handle(4).remove_node(1).await.expect("remove voter 1");
    let acked = writer.await.expect("writer task");
    assert!(!acked.is_empty(), "writes continued during the change");
    let leader = c.must_leader(&[2, 3, 4]).await;
    let status = c.handle(leader).status();
    assert_eq!(status.voters, [2, 3, 4].into(), "{status:?}");
    assert!(status.learners.is_empty(), "{status:?}");
    let members = must_read(c.handle(4), |s| s.members.clone()).await;
    for id in &acked {
        assert!(members.contains_key(id), "acknowledged write {id} is missing");
    }
    // A proposal whose answer was lost in the leader change may still have
    // committed: at least every acknowledged write, at most every attempt.
    assert!(
        (60 + acked.len()..=90).contains(&members.len()),
        "{} members, {} acknowledged",
        members.len(),
        acked.len()
    );

    info!("--- unknown and invalid changes are refused and change nothing");
    let e = c.handle(2).promote(9).await.expect_err("promoting an unknown node");
    assert!(matches!(e, HandleError::Refused(_)), "{e}");
    let e = c.handle(2).remove_node(9).await.expect_err("removing an unknown node");
    assert!(matches!(e, HandleError::Refused(_)), "{e}");
    assert_eq!(c.handle(leader).status().voters, [2, 3, 4].into());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_survive_losing_two_but_not_three() {
    let mut c = TestCluster::start(5).await;
    let leader = c.must_leader(&[1, 2, 3, 4, 5]).await;
    must_apply(c.handle(leader), Command::AddMember { member: member(1, "before") }).await;
    let other = [1, 2, 3, 4, 5].into_iter().find(|id| *id != leader).expect("another node");

    info!("--- stop the leader {leader} and node {other}");
    c.stop(leader).await;
    c.stop(other).await;
    let rest = c.running();
    let new = c.must_leader(&rest).await;
    must_apply(c.handle(new), Command::AddMember { member: member(2, "after") }).await;
    for id in &rest {
        assert_eq!(must_read(c.handle(*id), |s| s.members.len()).await, 2, "node {id}");
    }

    info!("--- losing a third node loses the quorum: nothing commits");
    c.stop(new).await;
    let left = c.running();
    let e = c.handle(left[0]).propose(Command::AddMember { member: member(3, "lost") }).await;
    assert!(e.is_err(), "a minority committed: {e:?}");
    c.shutdown().await;
}

/// A lease renewal's leadership confirmation rides on the heartbeats
/// (raftgres_raft::confirm): it holds in a healthy cluster, and a leader
/// cut off from its quorum cannot have it, though its peers accepted every
/// heartbeat it sent before the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_heartbeats_accepted_after_the_instant_confirm_the_leadership() {
    let c = TestCluster::start(3).await;
    let old = c.must_leader(&[1, 2, 3]).await;
    let others: Vec<_> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let wait = Duration::from_millis(300);
    c.handle(old).confirm_leadership(Instant::now(), wait).await.expect("confirmed in a healthy cluster");

    info!("--- cut leader {old} off from {others:?}");
    c.partition(&[old], &others);
    let cut = Instant::now();
    let r = c.handle(old).confirm_leadership(cut, wait).await;
    assert!(r.is_err(), "a leader cut off from its quorum confirmed its leadership");
    // A follower is never confirmed.
    assert!(c.handle(others[0]).confirm_leadership(Instant::now(), wait).await.is_err());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_minority_cannot_commit() {
    let c = TestCluster::start(3).await;
    let old = c.must_leader(&[1, 2, 3]).await;
    let majority: Vec<_> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();

    info!("--- cut leader {old} off from {majority:?}");
    c.partition(&[old], &majority);
    let stranded = c.handle(old).propose(Command::AddMember { member: member(7, "stranded") }).await;
    assert!(stranded.is_err(), "the minority side committed: {stranded:?}");
    let read = c.handle(old).read(|s| s.members.len()).await;
    assert!(read.is_err(), "the minority side served a linearizable read: {read:?}");

    info!("--- the majority elects a leader and commits");
    let new = c.must_leader(&majority).await;
    must_apply(c.handle(new), Command::AddMember { member: member(8, "majority") }).await;

    info!("--- after healing, every node has the majority's entry and not the stranded one");
    c.heal();
    let leader = c.must_leader(&[1, 2, 3]).await;
    assert_ne!(leader, old, "the stranded leader must not win with a shorter log");
    for id in [1, 2, 3] {
        let names = must_read(c.handle(id), |s| s.members.values().map(|m| m.name.clone()).collect::<Vec<_>>()).await;
        assert_eq!(names, ["majority"], "node {id}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_of_another_cluster_is_refused() {
    let c = TestCluster::start(3).await;
    let seed = c.infos[&1].raft_addr.clone();

    info!("--- a node configured for another cluster asks to join");
    let dir = tempfile::tempdir().expect("temporary directory");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let info = NodeInfo::new("intruder", addr);
    let mut config = NodeConfig::new(9, "another-cluster", dir.path(), info.clone());
    config.request_timeout = Duration::from_secs(3);
    let intruder = RaftNode::start(config, listener).await.expect("start intruder");
    let e = intruder.handle().join_via(&seed, info).await.expect_err("join must be refused");
    assert!(matches!(e, HandleError::WrongCluster { .. }), "{e}");
    assert!(e.to_string().contains("cluster id mismatch"), "{e}");

    info!("--- a raw Raft message with another cluster id is refused");
    let mut client = RaftTransportClient::connect(format!("http://{seed}")).await.expect("connect");
    let status = client
        .append_entries(RaftRequest {
            cluster_id: "another-cluster".into(),
            from: 9,
            to: 1,
            payload: vec![1, 2, 3],
            ..Default::default()
        })
        .await
        .expect_err("must be refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");

    info!("--- garbage from a peer of this cluster is refused without harm");
    let status = client
        .vote(RaftRequest {
            cluster_id: c.cluster_id.clone(),
            from: 2,
            to: 1,
            payload: vec![0xFF; 7],
            ..Default::default()
        })
        .await
        .expect_err("must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");

    info!("--- the cluster is unchanged and healthy");
    let leader = c.must_leader(&[1, 2, 3]).await;
    let status = c.handle(leader).status();
    assert_eq!(status.voters, [1, 2, 3].into());
    assert!(status.learners.is_empty());
    must_apply(c.handle(leader), Command::AddMember { member: member(1, "still-works") }).await;
    intruder.shutdown().await;
    c.shutdown().await;
}
