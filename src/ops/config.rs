//! The dynamic configuration (read, change as a whole or by JSON merge
//! patch, compare-and-set, dry run) and the event history.

use raftgres_storage::{Command, DynamicConfig, EventRecord};
use serde_json::Value;

use super::{OpError, Ops};

/// A configuration change request.
#[derive(Clone, Debug, Default)]
pub struct ConfigChange {
    pub json: String,
    /// JSON merge patch (RFC 7396) instead of a whole document.
    pub merge: bool,
    pub if_version: Option<u64>,
    pub dry_run: bool,
}

/// "; did you mean …?" for serde's "unknown field `x`, expected one of …".
fn suggestion(error: &str) -> String {
    let Some(rest) = error.strip_prefix("unknown field `") else {
        return String::new();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match raftgres_api::patroni_config::did_you_mean(field, known) {
        Some(k) => format!("; did you mean {k:?}?"),
        None => String::new(),
    }
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Ops {
    /// The dynamic configuration, read linearizably, with its version.
    pub async fn get_config(&self) -> Result<(u64, DynamicConfig), OpError> {
        Ok(self.handle.read(|s| (s.config_version, s.config.clone())).await?)
    }

    /// Validates and applies a configuration change. Returns the version,
    /// the resulting configuration and whether it changed.
    pub async fn set_config(&self, change: &ConfigChange) -> Result<(u64, DynamicConfig, bool), OpError> {
        let (version, current) = self.get_config().await?;
        if let Some(v) = change.if_version
            && v != version
        {
            return Err(OpError::Conflict(format!(
                "the configuration is at version {version}, not {v}; read it again and retry"
            )));
        }
        let input: Value =
            serde_json::from_str(&change.json).map_err(|e| OpError::Invalid(format!("not valid JSON: {e}")))?;
        let doc = if change.merge {
            let mut doc = serde_json::to_value(&current).map_err(|e| OpError::Internal(e.to_string()))?;
            merge_patch(&mut doc, &input);
            doc
        } else {
            input
        };
        let next: DynamicConfig = serde_json::from_value(doc)
            .map_err(|e| OpError::Invalid(format!("invalid configuration: {e}{}", suggestion(&e.to_string()))))?;
        self.check_parameters(&current, &next)?;
        // The replicated state's own rules (valid, and allowed to replace
        // the current configuration at run time), checked here too so that
        // a dry run answers as the real change would.
        let cmd = Command::ChangeConfig { if_version: Some(version), config: next.clone() };
        self.handle.cluster_state().decide(&cmd).map_err(OpError::from)?;
        if change.dry_run || next == current {
            return Ok((version, if change.dry_run { next } else { current }, false));
        }
        self.propose(cmd).await?;
        Ok((version + 1, next, true))
    }

    /// Checks every added or changed PostgreSQL parameter against the local
    /// server's catalog (name, type, unit, range, enumeration, context), so
    /// a value the server would refuse at its next reload or start is never
    /// committed. Reports every refusal, not only the first.
    fn check_parameters(&self, current: &DynamicConfig, next: &DynamicConfig) -> Result<(), OpError> {
        let changed: Vec<(&String, &String)> = next
            .postgresql_parameters
            .iter()
            .filter(|(name, value)| current.postgresql_parameters.get(*name) != Some(*value))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let Some(catalog) = self.parameters.borrow().catalog.clone() else {
            let me = self.name_of(&self.state(), self.handle.id());
            return Err(OpError::Unavailable(format!(
                "cannot check PostgreSQL parameters on {me}: its PostgreSQL has not answered since the daemon \
                 started; send the change to a member whose PostgreSQL runs"
            )));
        };
        let refusals: Vec<String> = changed
            .iter()
            .filter_map(|(name, value)| catalog.check(name, value).err())
            .map(|r| r.to_string())
            .collect();
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(OpError::Invalid(format!("invalid configuration: {}; nothing changed", refusals.join("; "))))
        }
    }

    /// The newest `limit` events (all kept when 0), oldest first.
    pub async fn history(&self, limit: usize) -> Result<Vec<EventRecord>, OpError> {
        let history = self.handle.read(|s| s.history.clone()).await?;
        let skip = if limit == 0 { 0 } else { history.len().saturating_sub(limit) };
        Ok(history.into_iter().skip(skip).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let e = serde_json::from_value::<DynamicConfig>(json!({"maximum_lag_on_falover": 1})).unwrap_err();
        assert_eq!(suggestion(&e.to_string()), "; did you mean \"maximum_lag_on_failover\"?", "{e}");
        assert_eq!(suggestion("invalid type: string"), "");
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(&mut doc, &json!({"a": null, "b": {"c": 5, "d": null}, "e": {"x": 1}, "f": "new"}));
        assert_eq!(doc, json!({"b": {"c": 5}, "e": {"x": 1}, "f": "new"}));
    }
}
