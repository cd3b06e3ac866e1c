//! Property tests of the fold: the state is a pure function of the log.

use std::collections::BTreeSet;

use proptest::prelude::*;
use raftgres_storage::snapshot::SnapshotPayload;
use raftgres_storage::{
    ApplyContext, ClusterState, Command, DynamicConfig, ElectionReason, EventRecord, Member, MemberState,
    ReleaseReason, SyncMode,
};

const NODES: u64 = 5;

fn node() -> impl Strategy<Value = u64> {
    1..=NODES
}

fn command() -> impl Strategy<Value = Command> {
    let reason = prop_oneof![
        Just(ElectionReason::Bootstrap),
        Just(ElectionReason::Failover),
        Just(ElectionReason::Switchover),
        Just(ElectionReason::Manual)
    ];
    let member_state = prop_oneof![
        Just(MemberState::Unknown),
        Just(MemberState::Running),
        Just(MemberState::Streaming),
        Just(MemberState::Crashed)
    ];
    prop_oneof![
        Just(Command::InitializeCluster { cluster_id: "c".into(), config: DynamicConfig::default() }),
        node().prop_map(|id| Command::AddMember { member: Member::new(id, format!("pg{id}")) }),
        node().prop_map(|node| Command::RemoveMember { node }),
        (node(), any::<bool>()).prop_map(|(node, nofailover)| Command::SetMemberTags {
            node,
            tags: [("nofailover".to_string(), nofailover.to_string())].into(),
        }),
        (0..6u64, node(), reason).prop_map(|(if_epoch, node, reason)| Command::ElectPrimary { if_epoch, node, reason }),
        (0..6u64, node()).prop_map(|(epoch, node)| Command::ReleasePrimary {
            epoch,
            node,
            reason: ReleaseReason::Shutdown
        }),
        (0..6u64, proptest::collection::btree_set(node(), 0..3))
            .prop_map(|(epoch, standbys)| Command::SetSyncStandbys { epoch, standbys }),
        (proptest::option::of(0..4u64), any::<bool>(), 1000..3000u64).prop_map(|(if_version, sync, lease)| {
            Command::ChangeConfig {
                if_version,
                config: DynamicConfig {
                    lease_ttl_ms: lease,
                    synchronous_mode: if sync { SyncMode::On } else { SyncMode::Off },
                    ..DynamicConfig::default()
                },
            }
        }),
        any::<bool>().prop_map(|on| Command::SetMaintenance { on }),
        (node(), proptest::option::of(node()), proptest::option::of(0..10u64))
            .prop_map(|(from, to, at_ms)| Command::ScheduleSwitchover { from, to, at_ms }),
        Just(Command::CancelSwitchover),
        (node(), member_state).prop_map(|(node, state)| Command::SetMemberState { node, state }),
    ]
}

/// Applies `commands` from scratch; returns every intermediate state and
/// the recorded events.
fn run(commands: &[Command]) -> (Vec<ClusterState>, Vec<EventRecord>) {
    let mut state = ClusterState::default();
    let mut states = vec![state.clone()];
    let mut records = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let ctx = ApplyContext { index: i as u64 + 1, time_ms: 1000 + i as u64 };
        let before = state.clone();
        match state.apply(cmd, ctx) {
            Ok(events) => records.extend(events.into_iter().map(|event| EventRecord {
                index: ctx.index,
                at_ms: ctx.time_ms,
                event,
            })),
            Err(_) => assert_eq!(state, before, "a rejected command changed the state"),
        }
        states.push(state.clone());
    }
    (states, records)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replay_from_any_snapshot_point_matches_replay_from_scratch(
        commands in proptest::collection::vec(command(), 1..120),
        cut in any::<prop::sample::Index>(),
    ) {
        let (states, records) = run(&commands);
        let last = states.last().expect("at least the initial state").clone();

        // Replaying the recorded events from scratch gives the same state.
        let mut scratch = ClusterState::default();
        for r in &records {
            scratch.fold(r);
        }
        prop_assert_eq!(&scratch, &last);

        // A snapshot at any log position, encoded and decoded as it is on
        // disk, then the remaining commands re-applied, gives the same state.
        let k = cut.index(states.len());
        let payload = SnapshotPayload::new(None, Default::default(), states[k].clone());
        let mut from_snapshot = SnapshotPayload::decode(&payload.encode().expect("encode")).expect("decode").state;
        for (i, cmd) in commands.iter().enumerate().skip(k) {
            let _ = from_snapshot.apply(cmd, ApplyContext { index: i as u64 + 1, time_ms: 1000 + i as u64 });
        }
        prop_assert_eq!(&from_snapshot, &last);
    }

    #[test]
    fn epochs_only_grow_and_one_primary_per_epoch(commands in proptest::collection::vec(command(), 1..150)) {
        let (states, records) = run(&commands);
        for w in states.windows(2) {
            prop_assert!(w[1].epoch >= w[0].epoch, "epoch went back from {} to {}", w[0].epoch, w[1].epoch);
            if let Some(p) = &w[1].primary {
                prop_assert_eq!(p.epoch, w[1].epoch, "the primary belongs to the current epoch");
                prop_assert!(w[1].members.contains_key(&p.node), "the primary is a member");
            }
        }
        let mut seen = BTreeSet::new();
        for r in &records {
            if let raftgres_storage::Event::PrimaryElected { epoch, .. } = r.event {
                prop_assert!(seen.insert(epoch), "epoch {} elected twice", epoch);
            }
        }
    }
}
