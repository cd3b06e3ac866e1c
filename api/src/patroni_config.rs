//! Patroni's dynamic-configuration keys in raftgres's terms: what a
//! `PATCH /config` written for Patroni, or `raftctl config set` typed by a
//! Patroni user, means here. Only keys with a clear equivalent are mapped;
//! the others are refused with the reason, naming the raftgres key where
//! there is one. raftgres's own keys pass through unchanged.

use serde_json::{Map, Value};

/// A merge patch in raftgres's keys, and the maintenance change Patroni's
/// `pause` asked for (`null` resumes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Translated {
    pub patch: Map<String, Value>,
    pub pause: Option<bool>,
}

/// Patroni keys raftgres has no equivalent for, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("retry_timeout", "Raft retries on its own; the lease is lease_ttl_ms"),
    ("primary_start_timeout", "a primary that does not start gives up its lease; see postgres_restart_attempts"),
    ("primary_stop_timeout", "raftgres stops PostgreSQL with its own deadlines"),
    ("primary_race_backoff", "elections go through the Raft log, there is no race"),
    ("check_timeline", "raftgres always checks the recorded timeline"),
    ("max_timelines_history", "the history keeps a fixed number of events"),
    ("maximum_lag_on_syncnode", "synchronous replication is managed by synchronous_mode"),
    ("synchronous_mode_strict", "set synchronous_mode to \"strict\""),
    ("failsafe_mode", "Raft keeps a primary only with a quorum; there is no failsafe mode"),
    ("slots", "replication slots of members are managed; other slots are not"),
    ("ignore_slots", "slots other than the members' are never dropped"),
    ("standby_cluster", "standby clusters are not supported"),
    ("member_slots_ttl", "a member's slot lives as long as the member"),
    ("master_start_timeout", "see postgres_restart_attempts"),
];

/// Patroni keys inside `postgresql` with a raftgres equivalent.
const POSTGRESQL_KEYS: &[&str] = &["parameters", "use_pg_rewind", "pg_hba"];

fn seconds_to_ms(key: &str, target: &str, v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        v => v
            .as_u64()
            .and_then(|s| s.checked_mul(1000))
            .map(Value::from)
            .ok_or_else(|| format!("{key} must be a number of seconds (raftgres's {target} is in milliseconds)")),
    }
}

/// A parameter value as raftgres stores it: text.
fn parameter_text(v: Value) -> Value {
    match v {
        Value::Null | Value::String(_) => v,
        other => Value::String(other.to_string()),
    }
}

/// Maps a Patroni-shaped merge patch onto raftgres's keys.
pub fn translate(patch: &Value) -> Result<Translated, String> {
    let Some(obj) = patch.as_object() else {
        return Err("the configuration patch must be a JSON object".into());
    };
    let mut t = Translated::default();
    // Two spellings of one setting in one patch: refused, not guessed.
    let put = |t: &mut Translated, from: &str, key: &str, value: Value| {
        if t.patch.insert(key.to_string(), value).is_some() {
            return Err(format!("{from} and {key} name the same setting; give one of them"));
        }
        Ok(())
    };
    for (key, value) in obj {
        match key.as_str() {
            "ttl" => {
                put(&mut t, "ttl", "lease_ttl_ms", seconds_to_ms("ttl", "lease_ttl_ms", value)?)?;
            }
            "loop_wait" => {
                let ms = seconds_to_ms("loop_wait", "heartbeat_interval_ms", value)?;
                put(&mut t, "loop_wait", "heartbeat_interval_ms", ms)?;
            }
            "pause" => {
                t.pause = Some(match value {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    _ => return Err("pause must be true, false or null".into()),
                });
            }
            "postgresql" => {
                let Some(pg) = value.as_object() else {
                    return Err("postgresql must be an object (e.g. {\"parameters\": {...}})".into());
                };
                for (k, v) in pg {
                    match k.as_str() {
                        "parameters" => {
                            let Some(params) = v.as_object() else {
                                return Err("postgresql.parameters must be an object".into());
                            };
                            let target = t
                                .patch
                                .entry("postgresql_parameters")
                                .or_insert_with(|| Value::Object(Map::new()))
                                .as_object_mut()
                                .ok_or("postgresql_parameters given twice")?;
                            for (name, v) in params {
                                target.insert(name.clone(), parameter_text(v.clone()));
                            }
                        }
                        "use_pg_rewind" => {
                            put(&mut t, "postgresql.use_pg_rewind", "use_pg_rewind", v.clone())?;
                        }
                        "pg_hba" => {
                            put(&mut t, "postgresql.pg_hba", "pg_hba", v.clone())?;
                        }
                        other => {
                            return Err(format!(
                                "postgresql.{other} has no equivalent in raftgres's dynamic configuration (it maps \
                                 postgresql.{}); node-local PostgreSQL settings live in the node's file",
                                POSTGRESQL_KEYS.join(" and postgresql.")
                            ));
                        }
                    }
                }
            }
            other => {
                if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == other) {
                    return Err(format!("Patroni's {other} has no equivalent in raftgres: {why}"));
                }
                put(&mut t, key, key, value.clone())?;
            }
        }
    }
    Ok(t)
}

/// Edit distance of two short words (keys, commands).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a typo or
/// contains it (`lag` → `maximum_lag_on_failover`).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if c.contains(&word) && word.len() >= 3 { 1 } else { distance(&word, c) };
        if d <= (c.len() / 3).max(2) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patroni_keys_map_onto_raftgres_keys() {
        let t = translate(&json!({
            "ttl": 30, "loop_wait": 10, "maximum_lag_on_failover": 1048576, "pause": true,
            "postgresql": {"parameters": {"work_mem": "8MB", "max_connections": 200}, "use_pg_rewind": false,
                           "pg_hba": ["local all all trust"]},
            "drift_margin_ms": null,
        }))
        .expect("maps");
        assert_eq!(t.pause, Some(true));
        assert_eq!(
            Value::Object(t.patch),
            json!({"lease_ttl_ms": 30000, "drift_margin_ms": null, "heartbeat_interval_ms": 10000, "maximum_lag_on_failover": 1048576,
                   "use_pg_rewind": false, "pg_hba": ["local all all trust"], "postgresql_parameters": {"work_mem": "8MB", "max_connections": "200"}})
        );
        assert_eq!(translate(&json!({"pause": null})).expect("resume").pause, Some(false));
        let e = translate(&json!({"ttl": 30, "lease_ttl_ms": 3000})).expect_err("two spellings");
        assert!(e.contains("ttl") && e.contains("lease_ttl_ms"), "{e}");
    }

    #[test]
    fn keys_without_an_equivalent_are_refused_with_the_reason() {
        let e = translate(&json!({"retry_timeout": 10})).expect_err("refused");
        assert!(e.contains("retry_timeout") && e.contains("lease_ttl_ms"), "{e}");
        let e = translate(&json!({"synchronous_mode_strict": true})).expect_err("refused");
        assert!(e.contains("synchronous_mode"), "{e}");
        let e = translate(&json!({"postgresql": {"pg_ident": []}})).expect_err("refused");
        assert!(e.contains("postgresql.pg_ident"), "{e}");
        assert!(translate(&json!({"ttl": "long"})).is_err());
        assert!(translate(&json!([1])).is_err());
    }

    #[test]
    fn typos_find_the_real_key() {
        let keys = ["lease_ttl_ms", "maximum_lag_on_failover", "use_pg_rewind", "synchronous_mode"];
        assert_eq!(did_you_mean("maximum_lag_on_failvoer", keys), Some("maximum_lag_on_failover"));
        assert_eq!(did_you_mean("use_rewind", keys), Some("use_pg_rewind"));
        assert_eq!(did_you_mean("lag", keys), Some("maximum_lag_on_failover"));
        assert_eq!(did_you_mean("frobnicate", keys), None);
    }
}
