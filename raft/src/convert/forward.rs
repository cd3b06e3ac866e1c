//! Requests a node forwards to the Raft leader, and their answers.

use std::collections::BTreeSet;
use std::fmt;

use raftgres_storage::typ::LogId;
use raftgres_storage::{NodeId, NodeInfo, Request, Response};
use serde::{Deserialize, Serialize};

/// A change of Raft membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Make learners voters.
    AddVoters(BTreeSet<NodeId>),
    /// Drop voters and forget them as nodes.
    RemoveVoters(BTreeSet<NodeId>),
    /// Forget learners.
    RemoveLearners(BTreeSet<NodeId>),
}

impl fmt::Display for MembershipChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipChange::AddVoters(ids) => write!(f, "add voters {ids:?}"),
            MembershipChange::RemoveVoters(ids) => write!(f, "remove voters {ids:?}"),
            MembershipChange::RemoveLearners(ids) => write!(f, "remove learners {ids:?}"),
        }
    }
}

/// What a follower asks the leader to do on its behalf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Commit a command and return its result.
    Propose(Request),
    /// Confirm leadership with a quorum and return the log id a linearizable
    /// read must wait for.
    ReadIndex,
    /// Add a learner and wait until it has caught up.
    AddLearner { id: NodeId, node: NodeInfo },
    /// Change the voter set (joint consensus).
    ChangeMembership(MembershipChange),
    /// An application message for the leader's [`crate::AppHandler`].
    App(Vec<u8>),
    /// Sent by the leader of `term` to a follower: start an election, to
    /// take the leadership over (openraft 0.9 has no transfer). The
    /// follower obeys only its current leader in its current term.
    Elect { term: u64 },
}

impl ForwardRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardRequest::Propose(_) => "propose",
            ForwardRequest::ReadIndex => "read index",
            ForwardRequest::AddLearner { .. } => "add learner",
            ForwardRequest::ChangeMembership(_) => "change membership",
            ForwardRequest::App(_) => "application call",
            ForwardRequest::Elect { .. } => "leadership hand-over",
        }
    }
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardResponse {
    Proposed {
        log_id: LogId,
        response: Response,
    },
    ReadIndex {
        log_id: Option<LogId>,
    },
    MembershipChanged {
        log_id: LogId,
    },
    App(Vec<u8>),
    /// The follower started an election.
    Electing,
}

/// Why the receiver did not carry out a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardError {
    /// The receiver is not the leader; it names the leader it knows.
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    /// The leader refused the request; nothing changed.
    Refused(String),
    /// The outcome is unknown (e.g. leadership lost while committing).
    Unknown(String),
    /// The receiver's Raft core has stopped.
    Fatal(String),
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::NotLeader { leader: Some((id, node)) } => {
                write!(f, "not the leader; leader is {id} ({node})")
            }
            ForwardError::NotLeader { leader: None } => {
                write!(f, "not the leader; no leader known")
            }
            ForwardError::Refused(m) => write!(f, "refused: {m}"),
            ForwardError::Unknown(m) => write!(f, "outcome unknown: {m}"),
            ForwardError::Fatal(m) => write!(f, "node stopped: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use raftgres_storage::encoding;
    use raftgres_storage::{Command, Reject};

    use super::*;

    #[test]
    fn forward_messages_round_trip() {
        let requests = vec![
            ForwardRequest::Propose(Request { command: Command::CancelSwitchover, proposer: 1, proposed_at_ms: 2 }),
            ForwardRequest::ReadIndex,
            ForwardRequest::AddLearner { id: 4, node: NodeInfo::new("d", "127.0.0.1:9") },
            ForwardRequest::ChangeMembership(MembershipChange::AddVoters([4].into())),
            ForwardRequest::ChangeMembership(MembershipChange::RemoveVoters([1].into())),
            ForwardRequest::ChangeMembership(MembershipChange::RemoveLearners([5].into())),
            ForwardRequest::App(vec![1, 2, 3]),
        ];
        for r in requests {
            let b = encoding::encode("t", &r).unwrap();
            assert_eq!(encoding::decode::<ForwardRequest>("t", &b).unwrap(), r);
        }
        let results: Vec<Result<ForwardResponse, ForwardError>> = vec![
            Ok(ForwardResponse::Proposed {
                log_id: LogId::default(),
                response: Response::Rejected(Reject::NoSwitchover),
            }),
            Ok(ForwardResponse::ReadIndex { log_id: None }),
            Ok(ForwardResponse::MembershipChanged { log_id: LogId::default() }),
            Err(ForwardError::NotLeader { leader: Some((2, NodeInfo::new("b", "x:1"))) }),
            Err(ForwardError::NotLeader { leader: None }),
            Err(ForwardError::Refused("no".into())),
            Err(ForwardError::Unknown("?".into())),
            Err(ForwardError::Fatal("dead".into())),
        ];
        for r in results {
            let b = encoding::encode("t", &r).unwrap();
            assert_eq!(encoding::decode::<Result<ForwardResponse, ForwardError>>("t", &b).unwrap(), r);
        }
    }
}
