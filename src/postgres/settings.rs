//! The server's parameter catalog (`pg_settings`), read from the running
//! server, and the checks a parameter change must pass before it is
//! committed: a name the server knows, a value of the right type, unit,
//! range or enumeration, and a context that allows setting it. The checks
//! follow PostgreSQL's own parsing (`guc.c`: `parse_bool`, `parse_int`,
//! `parse_real`, enum lookup), so a value accepted here is one the server
//! accepts at its next reload or start.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use raftgres_api::PendingChange;
use tokio_postgres::Client;

/// When a change of a parameter takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Read by the server at a reload (contexts `sighup`, `superuser`,
    /// `user`, `backend`, `superuser-backend`; `backend` ones for new
    /// sessions only).
    Reload,
    /// Needs a restart (context `postmaster`).
    Restart,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Bool,
    Integer { min: f64, max: f64 },
    Real { min: f64, max: f64 },
    Enum(Vec<String>),
    String,
}

/// One row of `pg_settings`.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub name: String,
    pub kind: Kind,
    /// The unit a bare number is in (`8kB`, `kB`, `MB`, `ms`, `s`, `min`),
    /// if any.
    pub unit: Option<String>,
    /// `pg_settings.context`.
    pub context: String,
}

/// Why a parameter cannot be set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub name: String,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgresql_parameters.{}: {}", self.name, self.message)
    }
}

/// Every parameter the server knows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub settings: BTreeMap<String, Setting>,
    /// `server_version`, for messages.
    pub server_version: String,
}

/// What the agent knows of the local server's parameters, shared with the
/// operations and the API.
#[derive(Clone, Debug, Default)]
pub struct ParameterState {
    /// The catalog, once the server has accepted connections.
    pub catalog: Option<Arc<Catalog>>,
    /// Parameters changed since the server started that need a restart.
    pub pending_restart: BTreeMap<String, PendingChange>,
}

/// Parameters whose change waits for a restart (`pg_settings.pending_restart`),
/// with the running value and the one asked for.
pub async fn pending_restart(
    client: &Client,
    wanted: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, PendingChange>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT name, current_setting(name) FROM pg_settings \
             WHERE pending_restart AND name <> 'hot_standby'",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let name: String = r.get(0);
            let new_value = wanted.get(&name).cloned().unwrap_or_else(|| "?".into());
            (name, PendingChange { old_value: r.get(1), new_value })
        })
        .collect())
}

const QUERY: &str = "SELECT name, vartype, unit, context, min_val, max_val, enumvals, \
                     current_setting('server_version') FROM pg_settings";

impl Catalog {
    /// Reads `pg_settings` from a running server.
    pub async fn load(client: &Client) -> Result<Catalog, tokio_postgres::Error> {
        let rows = client.query(QUERY, &[]).await?;
        let mut catalog = Catalog::default();
        for row in rows {
            let name: String = row.get(0);
            let vartype: String = row.get(1);
            let min = row.get::<_, Option<String>>(4).and_then(|v| v.parse().ok()).unwrap_or(f64::MIN);
            let max = row.get::<_, Option<String>>(5).and_then(|v| v.parse().ok()).unwrap_or(f64::MAX);
            let kind = match vartype.as_str() {
                "bool" => Kind::Bool,
                "integer" => Kind::Integer { min, max },
                "real" => Kind::Real { min, max },
                "enum" => Kind::Enum(row.get::<_, Option<Vec<String>>>(6).unwrap_or_default()),
                _ => Kind::String,
            };
            let version: String = row.get(7);
            catalog.server_version = version.split_whitespace().next().unwrap_or_default().to_string();
            let setting = Setting { name: name.clone(), kind, unit: row.get(2), context: row.get(3) };
            catalog.settings.insert(name, setting);
        }
        Ok(catalog)
    }

    /// Checks one parameter; says when a change of it takes effect.
    pub fn check(&self, name: &str, value: &str) -> Result<Apply, Refusal> {
        let refuse = |message: String| Refusal { name: name.to_string(), message };
        let Some(s) = self.settings.get(name) else {
            if name.contains('.') {
                // A custom or extension parameter (`pg_stat_statements.max`)
                // whose library is not loaded yet: the server takes any
                // string for it until then.
                return Ok(Apply::Reload);
            }
            return Err(refuse(match self.nearest(name) {
                Some(near) => {
                    format!("PostgreSQL {} has no parameter {name:?}; did you mean {near:?}?", self.server_version)
                }
                None => format!("PostgreSQL {} has no parameter {name:?}", self.server_version),
            }));
        };
        let apply = match s.context.as_str() {
            "internal" => {
                return Err(refuse("is fixed when PostgreSQL is built or initialized; it cannot be set".into()));
            }
            "postmaster" => Apply::Restart,
            _ => Apply::Reload,
        };
        s.check_value(value).map_err(refuse)?;
        Ok(apply)
    }

    /// The known name closest to a mistyped one, if any is close.
    fn nearest(&self, name: &str) -> Option<&str> {
        self.settings
            .keys()
            .map(|k| (strsim::damerau_levenshtein(name, k), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min()
            .map(|(_, k)| k.as_str())
    }
}

impl Setting {
    /// Parses `value` as the server would for this parameter.
    pub fn check_value(&self, value: &str) -> Result<(), String> {
        match &self.kind {
            Kind::Bool => parse_bool(value)
                .map(|_| ())
                .ok_or_else(|| format!("{value:?} is not a boolean (on, off, true, false, yes, no, 1, 0)")),
            Kind::Enum(values) => {
                if values.iter().any(|v| v.eq_ignore_ascii_case(value.trim())) {
                    Ok(())
                } else {
                    Err(format!("{value:?} is not one of: {}", values.join(", ")))
                }
            }
            Kind::Integer { min, max } => {
                let n = parse_number(value, self.unit.as_deref(), true).map_err(|e| self.bad_number(value, &e))?;
                self.in_range(value, n.round(), *min, *max)
            }
            Kind::Real { min, max } => {
                let n = parse_number(value, self.unit.as_deref(), false).map_err(|e| self.bad_number(value, &e))?;
                self.in_range(value, n, *min, *max)
            }
            Kind::String => {
                if value.contains('\0') {
                    Err("a value must not contain NUL".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    fn bad_number(&self, value: &str, why: &str) -> String {
        match &self.unit {
            Some(u) => format!("{value:?} is not a valid value ({why}); a number, in {u} unless a unit is given"),
            None => format!("{value:?} is not a valid value ({why}); a number without a unit"),
        }
    }

    fn in_range(&self, value: &str, n: f64, min: f64, max: f64) -> Result<(), String> {
        if n < min || n > max {
            let unit = self.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            return Err(format!("{value:?} is outside the range {}..={}{unit}", number(min), number(max)));
        }
        Ok(())
    }
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// PostgreSQL's `parse_bool`: a case-insensitive prefix of true, false,
/// yes, no (at least two letters for on and off), or 1, 0.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    let prefix = |word: &str, min: usize| v.len() >= min && word.starts_with(&v);
    if prefix("true", 1) || prefix("yes", 1) || prefix("on", 2) || v == "1" {
        Some(true)
    } else if prefix("false", 1) || prefix("no", 1) || prefix("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

const MEMORY_UNITS: &[(&str, f64)] =
    &[("B", 1.0), ("kB", 1024.0), ("MB", 1048576.0), ("GB", 1073741824.0), ("TB", 1099511627776.0)];
const TIME_UNITS: &[(&str, f64)] =
    &[("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("min", 60000.0), ("h", 3600000.0), ("d", 86400000.0)];

/// A base unit as bytes or milliseconds: `8kB` is 8192 bytes.
fn unit_size(unit: &str) -> Option<(bool, f64)> {
    let digits: String = unit.chars().take_while(|c| c.is_ascii_digit()).collect();
    let factor: f64 = if digits.is_empty() { 1.0 } else { digits.parse().ok()? };
    let name = &unit[digits.len()..];
    if let Some((_, m)) = MEMORY_UNITS.iter().find(|(u, _)| *u == name) {
        return Some((true, factor * m));
    }
    TIME_UNITS.iter().find(|(u, _)| *u == name).map(|(_, m)| (false, factor * m))
}

/// PostgreSQL's `parse_int`/`parse_real`: a number (integers also in hex
/// or octal), optionally followed by a unit of the parameter's kind
/// (case-sensitive, as the server reads it); the result in the
/// parameter's own unit.
pub fn parse_number(value: &str, unit: Option<&str>, integer: bool) -> Result<f64, String> {
    let v = value.trim();
    let digits = v.trim_start_matches(['-', '+']);
    if integer && let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        let n = i64::from_str_radix(hex, 16).map_err(|_| "not a hexadecimal number".to_string())? as f64;
        return Ok(if v.starts_with('-') { -n } else { n });
    }
    let split = v
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '-' || *c == '+') && *i == 0)))
        .map(|(i, _)| i)
        .unwrap_or(v.len());
    let (num, rest) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| "not a number".to_string())?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(n);
    }
    let Some(base) = unit.and_then(unit_size) else {
        return Err(format!("{rest:?} is not a unit this parameter takes"));
    };
    let units = if base.0 { MEMORY_UNITS } else { TIME_UNITS };
    let Some((_, m)) = units.iter().find(|(u, _)| *u == rest) else {
        let valid: Vec<&str> = units.iter().map(|(u, _)| *u).collect();
        return Err(format!("{rest:?} is not a valid unit; use one of {}", valid.join(", ")));
    };
    Ok(n * m / base.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut c = Catalog { server_version: "15.8".into(), ..Catalog::default() };
        let mut add = |name: &str, kind: Kind, unit: Option<&str>, context: &str| {
            let s = Setting { name: name.into(), kind, unit: unit.map(String::from), context: context.into() };
            c.settings.insert(name.into(), s);
        };
        add("work_mem", Kind::Integer { min: 64.0, max: 2147483647.0 }, Some("kB"), "user");
        add("shared_buffers", Kind::Integer { min: 16.0, max: 1073741823.0 }, Some("8kB"), "postmaster");
        add("max_connections", Kind::Integer { min: 1.0, max: 262143.0 }, None, "postmaster");
        add("statement_timeout", Kind::Integer { min: 0.0, max: 2147483647.0 }, Some("ms"), "user");
        add("checkpoint_timeout", Kind::Integer { min: 30.0, max: 86400.0 }, Some("s"), "sighup");
        add("random_page_cost", Kind::Real { min: 0.0, max: 1.79769e308 }, None, "user");
        add("vacuum_cost_delay", Kind::Real { min: 0.0, max: 100.0 }, Some("ms"), "user");
        add("log_connections", Kind::Bool, None, "superuser-backend");
        add("log_min_messages", Kind::Enum(vec!["debug1".into(), "info".into(), "warning".into()]), None, "superuser");
        add("application_name", Kind::String, None, "user");
        add("block_size", Kind::Integer { min: 8192.0, max: 8192.0 }, None, "internal");
        c
    }

    #[test]
    fn names_are_checked_with_a_suggestion() {
        let c = catalog();
        let e = c.check("wrok_mem", "8MB").unwrap_err();
        assert!(e.message.contains("no parameter \"wrok_mem\"; did you mean \"work_mem\""), "{e}");
        assert!(e.to_string().starts_with("postgresql_parameters.wrok_mem: "), "{e}");
        let e = c.check("nothing_like_it", "1").unwrap_err();
        assert!(!e.message.contains("did you mean"), "{e}");
        assert_eq!(c.check("pg_stat_statements.max", "10000"), Ok(Apply::Reload), "custom parameters pass");
        assert!(c.check("block_size", "8192").unwrap_err().message.contains("cannot be set"));
    }

    #[test]
    fn values_are_parsed_as_postgresql_does() {
        let c = catalog();
        assert_eq!(c.check("work_mem", "8MB"), Ok(Apply::Reload));
        assert_eq!(c.check("work_mem", "8192"), Ok(Apply::Reload));
        assert_eq!(c.check("work_mem", " 1.5GB "), Ok(Apply::Reload));
        let e = c.check("work_mem", "lots").unwrap_err();
        assert!(e.message.contains("\"lots\" is not a valid value") && e.message.contains("in kB"), "{e}");
        assert!(
            c.check("work_mem", "8mb").unwrap_err().message.contains("not a valid unit"),
            "units are case-sensitive"
        );
        assert!(c.check("work_mem", "8ms").unwrap_err().message.contains("not a valid unit"), "a time unit for memory");
        assert!(c.check("work_mem", "32kB").unwrap_err().message.contains("outside the range 64..=2147483647 kB"));
        assert_eq!(c.check("shared_buffers", "128MB"), Ok(Apply::Restart));
        assert!(c.check("shared_buffers", "64kB").is_err(), "8 pages, below 16");
        assert_eq!(c.check("max_connections", "200"), Ok(Apply::Restart));
        assert!(c.check("max_connections", "200MB").unwrap_err().message.contains("not a unit this parameter takes"));
        assert!(c.check("max_connections", "0").is_err());
        assert_eq!(c.check("max_connections", "0x10"), Ok(Apply::Restart));
        assert_eq!(c.check("statement_timeout", "5min"), Ok(Apply::Reload));
        assert_eq!(c.check("checkpoint_timeout", "1h"), Ok(Apply::Reload));
        assert!(c.check("checkpoint_timeout", "2d").is_err(), "172800 s is above 86400");
        assert!(c.check("checkpoint_timeout", "10s").is_err());
        assert_eq!(c.check("random_page_cost", "1.1"), Ok(Apply::Reload));
        assert!(c.check("random_page_cost", "-1").is_err());
        assert_eq!(c.check("vacuum_cost_delay", "2ms"), Ok(Apply::Reload));
        assert_eq!(c.check("vacuum_cost_delay", "500us"), Ok(Apply::Reload));
        assert_eq!(c.check("log_connections", "on"), Ok(Apply::Reload));
        assert_eq!(c.check("log_connections", "TRUE"), Ok(Apply::Reload));
        assert!(c.check("log_connections", "o").is_err(), "ambiguous between on and off");
        assert!(c.check("log_connections", "maybe").unwrap_err().message.contains("not a boolean"));
        assert_eq!(c.check("log_min_messages", "WARNING"), Ok(Apply::Reload));
        let e = c.check("log_min_messages", "loud").unwrap_err();
        assert!(e.message.contains("not one of: debug1, info, warning"), "{e}");
        assert_eq!(c.check("application_name", "anything at all"), Ok(Apply::Reload));
    }

    #[test]
    fn booleans_follow_parse_bool() {
        for (v, want) in [("on", true), ("of", false), ("y", true), ("n", false), ("1", true), ("0", false)] {
            assert_eq!(parse_bool(v), Some(want), "{v}");
        }
        for v in ["", "o", "2", "yess", "offf"] {
            assert_eq!(parse_bool(v), None, "{v}");
        }
    }
}
