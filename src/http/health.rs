//! Patroni-compatible health-check semantics, as pure functions: which check
//! a path names (by substring, in Patroni's order), the query filters
//! (`lag`, `replication_state`, `tag_<key>`), and whether this node passes.

use std::collections::BTreeMap;

use raftgres_api::size::parse_size;

/// The checks a path can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// `/`, `/primary`, `/master`, `/read-write`.
    Primary,
    /// `/leader`: holds the primary role (used by vip-manager).
    Leader,
    /// `/standby-leader`: never, as raftgres has no standby clusters.
    StandbyLeader,
    Replica,
    /// `/read-only`: primary, or a replica that passes the replica check.
    ReadOnly,
    Health,
    Sync,
    Async,
    /// `/read-only-sync`: primary, or a synchronous standby.
    ReadOnlySync,
    /// `/quorum`: a quorum standby.
    Quorum,
    /// `/read-only-quorum`: primary, or a quorum standby.
    ReadOnlyQuorum,
    Liveness,
    Readiness,
    /// Anything else: 503.
    Unknown,
}

/// Maps a path to its check the way Patroni does: by substring, in order.
pub fn route(path: &str) -> Check {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return Check::Primary;
    }
    if p.contains("standby_leader") || p.contains("standby-leader") {
        Check::StandbyLeader
    } else if p.contains("leader") {
        Check::Leader
    } else if p.contains("master") || p.contains("primary") || p.contains("read-write") {
        Check::Primary
    } else if p.contains("replica") {
        Check::Replica
    } else if p.contains("read-only") && (p.contains("sync") || p.contains("quorum")) {
        if p.contains("quorum") { Check::ReadOnlyQuorum } else { Check::ReadOnlySync }
    } else if p.contains("read-only") {
        Check::ReadOnly
    } else if p.contains("health") {
        Check::Health
    } else if p == "/liveness" {
        Check::Liveness
    } else if p == "/readiness" {
        Check::Readiness
    } else if p == "/sync" || p == "/synchronous" {
        Check::Sync
    } else if p == "/quorum" {
        Check::Quorum
    } else if p == "/async" || p == "/asynchronous" {
        Check::Async
    } else {
        Check::Unknown
    }
}

/// Filters from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Maximum replay lag in bytes.
    pub lag: Option<u64>,
    pub replication_state: Option<String>,
    /// `tag_<key>=<value>` pairs.
    pub tags: BTreeMap<String, String>,
}

/// A health-check query that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("lag={0} is not a size (e.g. 1048576, 16MB)")]
pub struct BadLag(pub String);

/// Parses the query string; an unparsable `lag` is an error (Patroni
/// ignores it; a typo in an HAProxy check should be seen, not ignored).
pub fn parse_query(query: Option<&str>) -> Result<Filters, BadLag> {
    let mut f = Filters::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace('+', " ").replace("%20", " ");
        if k == "lag" {
            f.lag = Some(parse_size(&v).ok_or_else(|| BadLag(v.clone()))?);
        } else if k == "replication_state" {
            f.replication_state = Some(v);
        } else if let Some(tag) = k.strip_prefix("tag_") {
            f.tags.insert(tag.to_string(), v);
        }
    }
    Ok(f)
}

/// What the checks look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Named primary, lease valid for writes, PostgreSQL out of recovery.
    pub primary: bool,
    /// The replicated state names this node primary (it may still be
    /// promoting, or have lost its lease).
    pub named_primary: bool,
    /// PostgreSQL answers SQL.
    pub running: bool,
    /// PostgreSQL is in recovery (a replica).
    pub in_recovery: bool,
    pub streaming: bool,
    pub replay_lsn: Option<u64>,
    /// The furthest WAL position known for the primary.
    pub primary_lsn: Option<u64>,
    pub tags: BTreeMap<String, String>,
    pub noloadbalance: bool,
    /// In the committed synchronous-standby set (synchronous mode on).
    pub sync_standby: bool,
    /// In the committed quorum set (quorum mode).
    pub quorum_standby: bool,
    /// The daemon's loops ran recently.
    pub alive: bool,
}

impl NodeFacts {
    /// Patroni's "replica OK".
    fn replica_ok(&self, f: &Filters) -> bool {
        // A node elected primary leaves the replica checks at once, before
        // its promotion completes, so load balancers stop sending reads
        // meant for replicas as early as possible.
        if self.noloadbalance || !self.running || !self.in_recovery || self.primary || self.named_primary {
            return false;
        }
        if let (Some(max), Some(primary), Some(replay)) = (f.lag, self.primary_lsn, self.replay_lsn)
            && primary.saturating_sub(replay) > max
        {
            return false;
        }
        if let Some(state) = &f.replication_state {
            let actual = if self.streaming { "streaming" } else { "in archive recovery" };
            if state != actual {
                return false;
            }
        }
        f.tags.iter().all(|(k, v)| self.tags.get(k).is_some_and(|t| t.eq_ignore_ascii_case(v)))
    }

    /// Whether this node passes `check`.
    pub fn passes(&self, check: Check, f: &Filters) -> bool {
        match check {
            Check::Primary | Check::Leader => self.primary,
            Check::StandbyLeader | Check::Unknown => false,
            Check::Replica => self.replica_ok(f),
            Check::ReadOnly => self.primary || self.replica_ok(f),
            Check::Health => self.running,
            Check::Sync => self.sync_standby && self.replica_ok(f),
            Check::Async => !self.sync_standby && !self.quorum_standby && self.replica_ok(f),
            Check::ReadOnlySync => self.primary || (self.sync_standby && self.replica_ok(f)),
            Check::Quorum => self.quorum_standby && self.replica_ok(f),
            Check::ReadOnlyQuorum => self.primary || (self.quorum_standby && self.replica_ok(f)),
            Check::Liveness => self.alive,
            Check::Readiness => {
                self.primary
                    || (self.running
                        && self.streaming
                        && self.replica_ok(&Filters { lag: f.lag, ..Filters::default() }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_like_patroni() {
        for (path, check) in [
            ("/", Check::Primary),
            ("", Check::Primary),
            ("/primary", Check::Primary),
            ("/master", Check::Primary),
            ("/read-write", Check::Primary),
            ("/leader", Check::Leader),
            ("/standby-leader", Check::StandbyLeader),
            ("/standby_leader", Check::StandbyLeader),
            ("/replica", Check::Replica),
            ("/read-only", Check::ReadOnly),
            ("/read-only-sync", Check::ReadOnlySync),
            ("/read-only-synchronous", Check::ReadOnlySync),
            ("/read-only-quorum", Check::ReadOnlyQuorum),
            ("/quorum", Check::Quorum),
            ("/health", Check::Health),
            ("/sync", Check::Sync),
            ("/synchronous", Check::Sync),
            ("/async", Check::Async),
            ("/asynchronous", Check::Async),
            ("/liveness", Check::Liveness),
            ("/readiness", Check::Readiness),
            ("/nonsense", Check::Unknown),
        ] {
            assert_eq!(route(path), check, "{path}");
        }
    }

    #[test]
    fn queries_parse() {
        let f = parse_query(Some("lag=100MB&replication_state=streaming&tag_dc=eu1")).unwrap();
        assert_eq!(f.lag, Some(100 << 20));
        assert_eq!(f.replication_state.as_deref(), Some("streaming"));
        assert_eq!(f.tags.get("dc").map(String::as_str), Some("eu1"));
        assert_eq!(
            parse_query(Some("replication_state=in+archive+recovery")).unwrap().replication_state.as_deref(),
            Some("in archive recovery")
        );
        assert!(parse_query(Some("lag=lots")).is_err());
        assert_eq!(parse_query(None).unwrap(), Filters::default());
    }

    fn replica() -> NodeFacts {
        NodeFacts {
            running: true,
            in_recovery: true,
            streaming: true,
            replay_lsn: Some(1000),
            primary_lsn: Some(1000),
            alive: true,
            ..NodeFacts::default()
        }
    }

    #[test]
    fn each_check_in_each_role() {
        let none = Filters::default();
        let primary = NodeFacts { primary: true, running: true, alive: true, ..NodeFacts::default() };
        let r = replica();
        let stopped = NodeFacts { alive: true, ..NodeFacts::default() };
        let table = [
            (Check::Primary, [true, false, false]),
            (Check::Leader, [true, false, false]),
            (Check::StandbyLeader, [false, false, false]),
            (Check::Replica, [false, true, false]),
            (Check::ReadOnly, [true, true, false]),
            (Check::Health, [true, true, false]),
            (Check::Sync, [false, false, false]),
            (Check::Async, [false, true, false]),
            (Check::ReadOnlySync, [true, false, false]),
            (Check::Quorum, [false, false, false]),
            (Check::ReadOnlyQuorum, [true, false, false]),
            (Check::Liveness, [true, true, true]),
            (Check::Readiness, [true, true, false]),
            (Check::Unknown, [false, false, false]),
        ];
        for (check, want) in table {
            let got = [primary.passes(check, &none), r.passes(check, &none), stopped.passes(check, &none)];
            assert_eq!(got, want, "{check:?} for primary, replica, stopped");
        }
        let sync = NodeFacts { sync_standby: true, ..replica() };
        assert!(sync.passes(Check::Sync, &none) && !sync.passes(Check::Async, &none));
        assert!(sync.passes(Check::ReadOnlySync, &none));
        assert!(!sync.passes(Check::Quorum, &none) && !sync.passes(Check::ReadOnlyQuorum, &none));
        let quorum = NodeFacts { quorum_standby: true, ..replica() };
        assert!(quorum.passes(Check::Quorum, &none) && quorum.passes(Check::ReadOnlyQuorum, &none));
        assert!(!quorum.passes(Check::Sync, &none) && !quorum.passes(Check::Async, &none));
        let promoting = NodeFacts { named_primary: true, ..replica() };
        assert!(!promoting.passes(Check::Replica, &none), "an elected replica leaves the replica checks");
        assert!(!promoting.passes(Check::Primary, &none), "and is not primary before its promotion");
    }

    #[test]
    fn replica_filters() {
        let lagging = NodeFacts { replay_lsn: Some(1000), primary_lsn: Some(1000 + (20 << 20)), ..replica() };
        assert!(lagging.passes(Check::Replica, &Filters::default()));
        assert!(!lagging.passes(Check::Replica, &parse_query(Some("lag=16MB")).unwrap()));
        assert!(lagging.passes(Check::Replica, &parse_query(Some("lag=32MB")).unwrap()));
        let archive = NodeFacts { streaming: false, ..replica() };
        assert!(!archive.passes(Check::Replica, &parse_query(Some("replication_state=streaming")).unwrap()));
        let tagged = NodeFacts { tags: [("dc".to_string(), "EU1".to_string())].into(), ..replica() };
        assert!(tagged.passes(Check::Replica, &parse_query(Some("tag_dc=eu1")).unwrap()));
        assert!(!tagged.passes(Check::Replica, &parse_query(Some("tag_dc=us1")).unwrap()));
        assert!(!replica().passes(Check::Replica, &parse_query(Some("tag_dc=eu1")).unwrap()));
        let nolb = NodeFacts { noloadbalance: true, ..replica() };
        assert!(!nolb.passes(Check::Replica, &Filters::default()));
        assert!(!nolb.passes(Check::ReadOnly, &Filters::default()));
    }
}
