//! The status model to and from the admin service's protobuf messages.
//! Unset protobuf fields (empty strings, zeros) become `None`; a role or
//! state name this version does not know reads as `unknown`.

use raftgres_proto::admin as pb;

use crate::cluster::{ClusterStatus, MemberStatus, SwitchoverStatus};
use crate::status::PendingChange;

fn some_str(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn some_u64(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

impl From<MemberStatus> for pb::MemberStatus {
    fn from(m: MemberStatus) -> Self {
        pb::MemberStatus {
            id: m.id,
            name: m.name,
            host: m.host,
            port: m.port as u32,
            api_url: m.api_url,
            raft_addr: m.raft_addr,
            role: m.role.as_str().to_string(),
            state: m.state.as_str().to_string(),
            timeline: m.timeline,
            lag_bytes: m.lag_bytes,
            raft_role: m.raft_role.as_str().to_string(),
            raft_term: m.raft_term,
            tags: m.tags.into_iter().collect(),
            registered: m.registered,
            lsn: m.lsn,
            pending_restart: m
                .pending_restart
                .into_iter()
                .map(|(name, c)| pb::PendingRestart { name, old_value: c.old_value, new_value: c.new_value })
                .collect(),
            last_error: m.last_error,
            scheduled_restart: m.scheduled_restart,
            sync_standby: m.sync_standby,
            quorum_standby: m.quorum_standby,
        }
    }
}

impl From<pb::MemberStatus> for MemberStatus {
    fn from(m: pb::MemberStatus) -> Self {
        MemberStatus {
            id: m.id,
            name: m.name,
            host: m.host,
            port: u16::try_from(m.port).unwrap_or(0),
            api_url: m.api_url,
            raft_addr: m.raft_addr,
            role: m.role.parse().unwrap_or_default(),
            state: m.state.parse().unwrap_or_default(),
            timeline: m.timeline,
            lag_bytes: m.lag_bytes,
            raft_role: m.raft_role.parse().unwrap_or_default(),
            raft_term: m.raft_term,
            tags: m.tags.into_iter().collect(),
            registered: m.registered,
            lsn: m.lsn,
            pending_restart: m
                .pending_restart
                .into_iter()
                .map(|p| (p.name, PendingChange { old_value: p.old_value, new_value: p.new_value }))
                .collect(),
            last_error: m.last_error,
            scheduled_restart: m.scheduled_restart,
            sync_standby: m.sync_standby,
            quorum_standby: m.quorum_standby,
        }
    }
}

impl From<ClusterStatus> for pb::ClusterStatus {
    fn from(s: ClusterStatus) -> Self {
        pb::ClusterStatus {
            cluster_id: s.cluster_id,
            epoch: s.epoch,
            primary: s.primary.unwrap_or_default(),
            maintenance: s.maintenance,
            config_version: s.config_version,
            switchover: s.switchover.map(|sw| pb::ScheduledSwitchover {
                from: sw.from,
                to: sw.to.unwrap_or_default(),
                at_ms: sw.at_ms.unwrap_or(0),
            }),
            raft_term: s.raft_term,
            raft_leader: s.raft_leader.unwrap_or(0),
            failovers: s.failovers,
            switchovers: s.switchovers,
            members: s.members.into_iter().map(Into::into).collect(),
            served_by: s.served_by,
            stale: s.stale,
            failover_blocked: s.failover_blocked.unwrap_or_default(),
        }
    }
}

impl From<pb::ClusterStatus> for ClusterStatus {
    fn from(s: pb::ClusterStatus) -> Self {
        ClusterStatus {
            cluster_id: s.cluster_id,
            epoch: s.epoch,
            primary: some_str(s.primary),
            maintenance: s.maintenance,
            config_version: s.config_version,
            switchover: s.switchover.map(|sw| SwitchoverStatus {
                from: sw.from,
                to: some_str(sw.to),
                at_ms: some_u64(sw.at_ms),
            }),
            raft_term: s.raft_term,
            raft_leader: some_u64(s.raft_leader),
            failovers: s.failovers,
            switchovers: s.switchovers,
            members: s.members.into_iter().map(Into::into).collect(),
            served_by: s.served_by,
            stale: s.stale,
            failover_blocked: some_str(s.failover_blocked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PgState, RaftRole, Role};

    #[test]
    fn status_survives_the_wire() {
        let s = ClusterStatus {
            cluster_id: "c".into(),
            epoch: 3,
            primary: Some("pg1".into()),
            switchover: Some(SwitchoverStatus { from: "pg1".into(), to: None, at_ms: Some(5) }),
            raft_leader: Some(2),
            members: vec![MemberStatus {
                id: 1,
                name: "pg1".into(),
                port: 5432,
                role: Role::Primary,
                state: PgState::CreatingReplica,
                raft_role: RaftRole::Learner,
                tags: [("dc".to_string(), "eu".to_string())].into(),
                lag_bytes: Some(0),
                ..MemberStatus::default()
            }],
            served_by: 2,
            failover_blocked: Some("no candidate".into()),
            ..ClusterStatus::default()
        };
        let wire: pb::ClusterStatus = s.clone().into();
        assert_eq!(wire.members[0].state, "creating replica");
        assert_eq!(ClusterStatus::from(wire), s);
        let empty = ClusterStatus::from(pb::ClusterStatus::default());
        assert_eq!((empty.primary, empty.raft_leader, empty.switchover), (None, None, None));
    }
}
