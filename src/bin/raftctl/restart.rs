//! `raftctl restart`: which members, in which order, with which of
//! Patroni's `POST /restart` conditions. Replicas go first, one at a time;
//! the primary goes last, in place or after a switchover.

use raftgres_api::time::parse_rfc3339_ms;
use raftgres_api::{ClusterStatus, MemberStatus};
use serde_json::{Map, Value};

use crate::exit::{Exit, Failure, Result};

/// What the operator asked for.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    pub members: Vec<String>,
    pub all: bool,
    pub pending: bool,
    pub role: Option<String>,
    pub pg_version: Option<String>,
    pub scheduled: Option<String>,
    pub switchover: bool,
    pub force: bool,
}

/// One member's restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// The primary hands its role to a restarted replica first.
    pub switch_over_first: bool,
}

fn is_primary(s: &ClusterStatus, m: &MemberStatus) -> bool {
    s.primary.as_deref() == Some(m.name.as_str())
}

/// The restarts, in order.
pub fn plan(s: &ClusterStatus, w: &Wanted) -> Result<Vec<Step>> {
    let mut chosen: Vec<&MemberStatus> = if !w.members.is_empty() {
        let mut v = Vec::new();
        for who in &w.members {
            let m = s.members.iter().find(|m| m.name == *who || m.id.to_string() == *who).ok_or_else(|| {
                let names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
                Failure::new(Exit::Refused, format!("unknown member {who:?}; members: {}", names.join(", ")))
            })?;
            v.push(m);
        }
        v
    } else if w.all || w.pending {
        s.members.iter().filter(|m| m.registered).collect()
    } else {
        return Err(Failure::usage("name the members to restart, or give --all or --pending"));
    };
    match w.role.as_deref() {
        None | Some("any") => {}
        Some("primary" | "leader" | "master") => chosen.retain(|m| is_primary(s, m)),
        Some("replica" | "standby") => chosen.retain(|m| !is_primary(s, m)),
        Some(other) => {
            return Err(Failure::usage(format!("--role {other:?}: expected primary, replica or any")));
        }
    }
    if w.pending && w.scheduled.is_none() {
        // Decided now, as patronictl does; each member checks again.
        chosen.retain(|m| !m.pending_restart.is_empty());
    }
    if w.switchover && w.scheduled.is_some() {
        return Err(Failure::usage("--switchover cannot be scheduled; schedule a switchover with raftctl switchover"));
    }
    chosen.sort_by_key(|m| (is_primary(s, m), m.name.clone()));
    chosen.dedup_by_key(|m| m.id);
    Ok(chosen
        .into_iter()
        .map(|m| Step {
            name: m.name.clone(),
            switch_over_first: w.switchover && is_primary(s, m) && w.scheduled.is_none(),
        })
        .collect())
}

/// The `POST /restart` body: the conditions each member checks.
pub fn body(w: &Wanted) -> Result<String> {
    let mut b = Map::new();
    if w.pending {
        b.insert("restart_pending".into(), Value::Bool(true));
    }
    if let Some(v) = &w.pg_version {
        b.insert("postgres_version".into(), Value::String(v.clone()));
    }
    if let Some(at) = &w.scheduled {
        parse_rfc3339_ms(at)
            .map_err(|e| Failure::usage(format!("--scheduled {at:?} is not an RFC 3339 time with a zone: {e}")))?;
        b.insert("schedule".into(), Value::String(at.clone()));
    }
    Ok(Value::Object(b).to_string())
}

/// Whether the serving primary is among the restarts.
pub fn touches_primary(s: &ClusterStatus, plan: &[Step]) -> bool {
    plan.iter().any(|p| s.primary.as_deref() == Some(p.name.as_str()))
}

/// What will happen, shown before asking.
pub fn describe(s: &ClusterStatus, plan: &[Step], w: &Wanted) -> String {
    let names: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    if let Some(at) = &w.scheduled {
        return format!(
            "Scheduled restart of PostgreSQL on {} at {at}, each member checking its conditions then.",
            names.join(", ")
        );
    }
    let mut text = format!("Restart of PostgreSQL on {}, one at a time", names.join(", "));
    if let Some(p) = plan.iter().find(|p| s.primary.as_deref() == Some(p.name.as_str())) {
        if p.switch_over_first {
            text.push_str(&format!(
                "; the primary {} last, after a switchover to a restarted replica (writes pause during the \
                 switchover)",
                p.name
            ));
        } else {
            text.push_str(&format!(
                "; the primary {} last, in place: connections are cut and writes fail until it is back",
                p.name
            ));
        }
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use raftgres_api::{PendingChange, Role};

    use super::*;

    fn cluster() -> ClusterStatus {
        let member = |id: u64, role: Role, pending: bool| MemberStatus {
            id,
            name: format!("pg{id}"),
            role,
            registered: true,
            pending_restart: if pending {
                BTreeMap::from([("max_connections".into(), PendingChange::default())])
            } else {
                BTreeMap::new()
            },
            ..MemberStatus::default()
        };
        ClusterStatus {
            primary: Some("pg1".into()),
            members: vec![
                member(1, Role::Primary, true),
                member(2, Role::Replica, false),
                member(3, Role::Replica, true),
            ],
            ..ClusterStatus::default()
        }
    }

    fn names(plan: &[Step]) -> Vec<(&str, bool)> {
        plan.iter().map(|p| (p.name.as_str(), p.switch_over_first)).collect()
    }

    #[test]
    fn replicas_first_the_primary_last() {
        let s = cluster();
        let all = Wanted { all: true, ..Wanted::default() };
        assert_eq!(names(&plan(&s, &all).unwrap()), [("pg2", false), ("pg3", false), ("pg1", false)]);
        let rolling = Wanted { switchover: true, ..all.clone() };
        assert_eq!(names(&plan(&s, &rolling).unwrap()), [("pg2", false), ("pg3", false), ("pg1", true)]);
        let pending = Wanted { pending: true, ..Wanted::default() };
        assert_eq!(names(&plan(&s, &pending).unwrap()), [("pg3", false), ("pg1", false)]);
        let replicas = Wanted { role: Some("replica".into()), ..all.clone() };
        assert_eq!(names(&plan(&s, &replicas).unwrap()), [("pg2", false), ("pg3", false)]);
        let named = Wanted { members: vec!["pg1".into(), "pg2".into()], ..Wanted::default() };
        assert_eq!(names(&plan(&s, &named).unwrap()), [("pg2", false), ("pg1", false)]);
    }

    #[test]
    fn bad_requests_are_refused() {
        let s = cluster();
        assert_eq!(plan(&s, &Wanted::default()).err().map(|f| f.exit), Some(Exit::Usage));
        let unknown = Wanted { members: vec!["pg9".into()], ..Wanted::default() };
        assert_eq!(plan(&s, &unknown).err().map(|f| f.exit), Some(Exit::Refused));
        let role = Wanted { all: true, role: Some("king".into()), ..Wanted::default() };
        assert_eq!(plan(&s, &role).err().map(|f| f.exit), Some(Exit::Usage));
        let at = Wanted { scheduled: Some("tomorrow".into()), ..Wanted::default() };
        assert_eq!(body(&at).err().map(|f| f.exit), Some(Exit::Usage));
    }

    #[test]
    fn the_body_carries_patroni_s_conditions() {
        let w = Wanted {
            pending: true,
            pg_version: Some("15.10".into()),
            scheduled: Some("2026-12-01T03:00:00Z".into()),
            ..Wanted::default()
        };
        let b: Value = serde_json::from_str(&body(&w).unwrap()).unwrap();
        assert_eq!(
            b,
            serde_json::json!({"restart_pending": true, "postgres_version": "15.10", "schedule": "2026-12-01T03:00:00Z"})
        );
        let s = cluster();
        let text = describe(&s, &plan(&s, &Wanted { all: true, ..Wanted::default() }).unwrap(), &Wanted::default());
        assert!(text.contains("the primary pg1 last, in place"), "{text}");
    }
}
