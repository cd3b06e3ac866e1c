//! The history as operators read it: every event with member names
//! instead of node ids, in words and in a flat JSON object with no Rust
//! type names, and each election joined with the timeline and switch point
//! its promotion recorded (what `patronictl history` shows: timeline, LSN,
//! reason, time, new leader). Pure: it takes the replicated state and
//! touches nothing.

use std::collections::BTreeMap;

use raftgres_api::time::format_ms;
use raftgres_storage::{ClusterState, Event, EventRecord, Lsn, NodeId};
use serde_json::{Value, json};

/// What an event needs from the rest of the history to be read: member
/// names, and the promotion of each epoch.
#[derive(Clone, Debug, Default)]
pub struct Context {
    names: BTreeMap<NodeId, String>,
    /// Epoch → (timeline, switch point) of its recorded promotion.
    promotions: BTreeMap<u64, (u32, u64)>,
}

impl Context {
    /// Names from the current members and from every `MemberAdded` kept
    /// (so a removed member keeps its name); promotions from the kept
    /// history and the newest timeline record.
    pub fn of(state: &ClusterState) -> Context {
        let mut c = Context::default();
        for r in &state.history {
            c.learn(&r.event);
        }
        for (id, m) in &state.members {
            c.names.insert(*id, m.name.clone());
        }
        if let Some(t) = &state.timeline {
            c.promotions.entry(t.epoch).or_insert((t.timeline, t.switchpoint));
        }
        c
    }

    /// Takes what `e` tells about names and promotions.
    pub fn learn(&mut self, e: &Event) {
        match e {
            Event::MemberAdded { member } => {
                self.names.insert(member.id, member.name.clone());
            }
            Event::PromotionRecorded { epoch, timeline, switchpoint, .. } => {
                self.promotions.insert(*epoch, (*timeline, *switchpoint));
            }
            _ => {}
        }
    }

    /// A member's name, or `node <id>` for one never seen by name.
    pub fn name(&self, id: NodeId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| format!("node {id}"))
    }

    fn names(&self, ids: impl IntoIterator<Item = NodeId>) -> Vec<String> {
        ids.into_iter().map(|id| self.name(id)).collect()
    }

    /// The timeline and switch point the primary of `epoch` recorded.
    pub fn promotion(&self, epoch: u64) -> Option<(u32, u64)> {
        self.promotions.get(&epoch).copied()
    }
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return "none".into();
    }
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// The event in words, with member names.
pub fn text(e: &Event, c: &Context) -> String {
    match e {
        Event::ClusterInitialized { cluster_id, .. } => format!("cluster {cluster_id} initialized"),
        Event::MemberAdded { member } => format!("member {} (node {}) added", member.name, member.id),
        Event::MemberRemoved { node } => format!("member {} removed", c.name(*node)),
        Event::MemberTagsChanged { node, tags } => format!("member {} tags: {}", c.name(*node), tags_text(tags)),
        Event::PrimaryElected { epoch, node, reason } => {
            let mut t = format!("{} elected primary in epoch {epoch} ({reason})", c.name(*node));
            if let Some((timeline, switchpoint)) = c.promotion(*epoch) {
                t.push_str(&format!("; timeline {timeline} from {}", Lsn(switchpoint)));
            }
            t
        }
        Event::PrimaryReleased { epoch, node, reason } => {
            format!("{} released the primary role of epoch {epoch} ({reason})", c.name(*node))
        }
        Event::SyncStandbysChanged { epoch, standbys } => {
            let names = c.names(standbys.iter().copied());
            let names = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            format!("synchronous standbys of epoch {epoch}: {names}")
        }
        Event::ConfigChanged { version, .. } => format!("configuration changed to version {version}"),
        Event::MaintenanceChanged { on } => format!("maintenance mode {}", if *on { "on" } else { "off" }),
        Event::SwitchoverScheduled { from, to, at_ms } => format!(
            "switchover from {} to {} scheduled for {}",
            c.name(*from),
            to.map(|t| c.name(t)).unwrap_or_else(|| "the best replica".into()),
            at_ms.map(format_ms).unwrap_or_else(|| "now".into())
        ),
        Event::SwitchoverCancelled { from, to } => format!(
            "switchover from {} to {} cancelled",
            c.name(*from),
            to.map(|t| c.name(t)).unwrap_or_else(|| "the best replica".into())
        ),
        Event::MemberStateChanged { node, from, to } => format!("member {}: {from} -> {to}", c.name(*node)),
        Event::PromotionRecorded { epoch, node, timeline, switchpoint } => {
            format!("{} runs epoch {epoch} on timeline {timeline} from {}", c.name(*node), Lsn(*switchpoint))
        }
        Event::PositionRecorded { epoch, node, lsn, .. } => {
            format!("primary {} of epoch {epoch} at {}", c.name(*node), Lsn(*lsn))
        }
        Event::FailoverForced { epoch, to } => format!(
            "operator forced a failover from epoch {epoch} to {}, accepting the loss of writes only the old primary \
             had",
            c.name(*to)
        ),
        Event::SyncQuorumChanged { epoch, standbys, quorum } => {
            let names = c.names(standbys.iter().copied());
            match (quorum, names.is_empty()) {
                (0, _) | (_, true) => format!("synchronous quorum of epoch {epoch}: none (asynchronous)"),
                (k, false) => format!("synchronous quorum of epoch {epoch}: any {k} of {}", names.join(", ")),
            }
        }
    }
}

/// The event as one flat JSON object: `kind`, then its fields, members by
/// name (`member`, with `member_id`), LSNs as PostgreSQL writes them.
pub fn json(e: &Event, c: &Context) -> Value {
    let mut v = match e {
        Event::ClusterInitialized { cluster_id, config } => json!({ "cluster_id": cluster_id, "config": config }),
        Event::MemberAdded { member } => json!({
            "member": member.name, "member_id": member.id, "host": member.pg_host, "port": member.pg_port,
            "api_url": member.api_url, "tags": member.tags,
        }),
        Event::MemberRemoved { node } => json!({ "member": c.name(*node), "member_id": node }),
        Event::MemberTagsChanged { node, tags } => json!({ "member": c.name(*node), "member_id": node, "tags": tags }),
        Event::PrimaryElected { epoch, node, reason } => {
            let (timeline, lsn) = match c.promotion(*epoch) {
                Some((t, sp)) => (json!(t), json!(Lsn(sp).to_string())),
                None => (Value::Null, Value::Null),
            };
            json!({
                "epoch": epoch, "member": c.name(*node), "member_id": node, "reason": reason.as_str(),
                "timeline": timeline, "lsn": lsn,
            })
        }
        Event::PrimaryReleased { epoch, node, reason } => {
            json!({ "epoch": epoch, "member": c.name(*node), "member_id": node, "reason": reason.as_str() })
        }
        Event::SyncStandbysChanged { epoch, standbys } => {
            json!({ "epoch": epoch, "standbys": c.names(standbys.iter().copied()) })
        }
        Event::ConfigChanged { version, config } => json!({ "version": version, "config": config }),
        Event::MaintenanceChanged { on } => json!({ "on": on }),
        Event::SwitchoverScheduled { from, to, at_ms } => json!({
            "from": c.name(*from), "to": to.map(|t| c.name(t)), "at": at_ms.map(format_ms), "at_ms": at_ms,
        }),
        Event::SwitchoverCancelled { from, to } => json!({ "from": c.name(*from), "to": to.map(|t| c.name(t)) }),
        Event::MemberStateChanged { node, from, to } => json!({
            "member": c.name(*node), "member_id": node, "from": from.to_string(), "to": to.to_string(),
        }),
        Event::PromotionRecorded { epoch, node, timeline, switchpoint } => json!({
            "epoch": epoch, "member": c.name(*node), "member_id": node, "timeline": timeline,
            "lsn": Lsn(*switchpoint).to_string(),
        }),
        Event::PositionRecorded { epoch, node, timeline, lsn } => json!({
            "epoch": epoch, "member": c.name(*node), "member_id": node, "timeline": timeline,
            "lsn": Lsn(*lsn).to_string(),
        }),
        Event::FailoverForced { epoch, to } => json!({ "epoch": epoch, "to": c.name(*to), "to_id": to }),
        Event::SyncQuorumChanged { epoch, standbys, quorum } => {
            json!({ "epoch": epoch, "standbys": c.names(standbys.iter().copied()), "quorum": quorum })
        }
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), json!(e.kind()));
    }
    v
}

/// Patroni's `/history`: one row `[timeline, lsn, reason, timestamp,
/// new_leader]` per promotion that started a timeline, where `timeline` is
/// the one that ended and `lsn` the byte position where it ended.
pub fn patroni_rows(history: &[EventRecord], c: &Context) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut last_timeline = 1;
    for r in history {
        let Event::PrimaryElected { epoch, node, reason } = &r.event else { continue };
        let Some((timeline, switchpoint)) = c.promotion(*epoch) else { continue };
        if timeline <= last_timeline {
            continue;
        }
        last_timeline = timeline;
        rows.push(json!([timeline - 1, switchpoint, reason.as_str(), format_ms(r.at_ms), c.name(*node)]));
    }
    rows
}

#[cfg(test)]
mod tests {
    use raftgres_storage::{ElectionReason, Member, MemberState};

    use super::*;

    fn record(index: u64, event: Event) -> EventRecord {
        EventRecord { index, at_ms: 1_700_000_000_000 + index, event }
    }

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        s.history.extend([
            record(1, Event::MemberAdded { member: Member::new(1, "pg1") }),
            record(2, Event::MemberAdded { member: Member::new(2, "pg2") }),
            record(3, Event::PrimaryElected { epoch: 1, node: 1, reason: ElectionReason::Bootstrap }),
            record(4, Event::PromotionRecorded { epoch: 1, node: 1, timeline: 1, switchpoint: 0 }),
            record(5, Event::SwitchoverScheduled { from: 1, to: Some(2), at_ms: None }),
            record(6, Event::PrimaryElected { epoch: 2, node: 2, reason: ElectionReason::Switchover }),
            record(7, Event::PromotionRecorded { epoch: 2, node: 2, timeline: 2, switchpoint: 0x300_0060 }),
            record(8, Event::MemberRemoved { node: 1 }),
            record(9, Event::MemberStateChanged { node: 2, from: MemberState::Unknown, to: MemberState::Running }),
        ]);
        s.members.insert(2, Member::new(2, "pg2"));
        s
    }

    #[test]
    fn events_name_members_and_elections_carry_their_timeline() {
        let s = state();
        let c = Context::of(&s);
        let texts: Vec<String> = s.history.iter().map(|r| text(&r.event, &c)).collect();
        assert_eq!(texts[5], "pg2 elected primary in epoch 2 (switchover); timeline 2 from 0/3000060");
        assert_eq!(texts[4], "switchover from pg1 to pg2 scheduled for now");
        assert_eq!(texts[7], "member pg1 removed", "a removed member keeps its name");
        for (r, t) in s.history.iter().zip(&texts) {
            let j = json(&r.event, &c).to_string();
            for leak in ["Some(", "None", "PrimaryElected", "Switchover\"", "Bootstrap"] {
                assert!(!t.contains(leak) && !j.contains(leak), "{leak} in {t} / {j}");
            }
        }
        let elected = json(&s.history[5].event, &c);
        assert_eq!(elected["member"], "pg2");
        assert_eq!(elected["timeline"], 2);
        assert_eq!(elected["lsn"], "0/3000060");
        assert_eq!(elected["reason"], "switchover");
        assert_eq!(elected["kind"], "primary_elected");
        assert_eq!(Context::default().name(7), "node 7");
    }

    #[test]
    fn patroni_rows_are_the_ended_timelines() {
        let s = state();
        let c = Context::of(&s);
        let history: Vec<EventRecord> = s.history.iter().cloned().collect();
        let rows = patroni_rows(&history, &c);
        assert_eq!(rows.len(), 1, "timeline 1 has no row: {rows:?}");
        assert_eq!(rows[0][0], 1);
        assert_eq!(rows[0][1], 0x300_0060u64);
        assert_eq!(rows[0][2], "switchover");
        assert_eq!(rows[0][4], "pg2");
    }
}
