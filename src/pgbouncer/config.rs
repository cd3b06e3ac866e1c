//! The `[pgbouncer]` section of a node's configuration: where PgBouncer's
//! admin console listens, the file its `pgbouncer.ini` includes, the
//! template of that file's `[databases]` section, and the pause bounds.
//! It must never log the admin password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::render::{Target, render_databases};

/// The section as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBouncerSection {
    /// Host of PgBouncer's admin console (its `listen_addr`).
    #[serde(default = "default_admin_host")]
    pub admin_host: String,
    /// Port of PgBouncer (`listen_port`).
    #[serde(default = "default_admin_port")]
    pub admin_port: u16,
    /// A user listed in PgBouncer's `admin_users`.
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// A file holding the admin user's password (read at start); or
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// the name of an environment variable holding it. Neither: no
    /// password (PgBouncer trusts the connection).
    #[serde(default)]
    pub admin_password_env: Option<String>,
    /// The file `pgbouncer.ini` pulls in with `%include`: raftgres
    /// rewrites it (atomically) on every change of primary.
    pub databases_file: PathBuf,
    /// The lines of its `[databases]` section, a minijinja template with
    /// `host`, `port`, `name` (the primary member's), `epoch` and
    /// `cluster`.
    pub databases_template: String,
    /// How long PgBouncer's PAUSE may take to finish the running
    /// transactions before the pause is given up (and RESUMEd).
    #[serde(default = "default_pause_wait_ms")]
    pub pause_wait_ms: u64,
    /// How long pools stay paused at most: a switchover that has not
    /// re-pointed PgBouncer by then gets its pools RESUMEd anyway.
    #[serde(default = "default_pause_timeout_ms")]
    pub pause_timeout_ms: u64,
}

fn default_admin_host() -> String {
    "127.0.0.1".into()
}
fn default_admin_port() -> u16 {
    6432
}
fn default_admin_user() -> String {
    "pgbouncer".into()
}
fn default_pause_wait_ms() -> u64 {
    5_000
}
fn default_pause_timeout_ms() -> u64 {
    15_000
}

/// A password that never shows in logs or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "(none)" } else { "(redacted)" })
    }
}

/// The resolved section.
#[derive(Clone, Debug)]
pub struct PgBouncerConfig {
    pub admin_host: String,
    pub admin_port: u16,
    pub admin_user: String,
    pub admin_password: Secret,
    pub databases_file: PathBuf,
    pub databases_template: String,
    pub pause_wait: Duration,
    pub pause_timeout: Duration,
}

impl PgBouncerSection {
    /// Checks every field: returns the resolved section, or each
    /// violation as (field, message).
    pub fn validate(&self, cluster: &str) -> Result<PgBouncerConfig, Vec<(String, String)>> {
        let mut bad = Vec::new();
        let mut push = |field: &str, message: String| bad.push((format!("pgbouncer.{field}"), message));
        if self.admin_host.trim().is_empty() {
            push("admin_host", "must not be empty".into());
        }
        if self.admin_port == 0 {
            push("admin_port", "must not be 0".into());
        }
        if self.admin_user.trim().is_empty() {
            push("admin_user", "must not be empty".into());
        }
        let password = match (&self.admin_password_file, &self.admin_password_env) {
            (Some(_), Some(_)) => {
                push("admin_password_file", "set admin_password_file or admin_password_env, not both".into());
                String::new()
            }
            (Some(path), None) => match std::fs::read_to_string(path) {
                Ok(text) => text.trim_end_matches(['\n', '\r']).to_string(),
                Err(e) => {
                    push("admin_password_file", format!("read {}: {e}", path.display()));
                    String::new()
                }
            },
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) => v,
                Err(e) => {
                    push("admin_password_env", format!("environment variable {var:?}: {e}"));
                    String::new()
                }
            },
            (None, None) => String::new(),
        };
        if !self.databases_file.is_absolute() {
            push("databases_file", format!("{} must be an absolute path", self.databases_file.display()));
        } else if self.databases_file.file_name().is_none() {
            push("databases_file", format!("{} names no file", self.databases_file.display()));
        }
        let sample = Target { host: "10.0.0.1".into(), port: 5432, name: "pg1".into(), epoch: 1 };
        match render_databases(&self.databases_template, cluster, &sample) {
            Ok(text) if !text.lines().any(|l| l.contains('=')) => {
                push("databases_template", "renders no `name = connstring` line".into());
            }
            Ok(_) => {}
            Err(e) => push("databases_template", e.to_string()),
        }
        if self.pause_wait_ms == 0 {
            push("pause_wait_ms", "must be at least 1".into());
        }
        if self.pause_timeout_ms <= self.pause_wait_ms {
            push(
                "pause_timeout_ms",
                format!("{} must exceed pause_wait_ms ({})", self.pause_timeout_ms, self.pause_wait_ms),
            );
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(PgBouncerConfig {
            admin_host: self.admin_host.clone(),
            admin_port: self.admin_port,
            admin_user: self.admin_user.clone(),
            admin_password: Secret(password),
            databases_file: self.databases_file.clone(),
            databases_template: self.databases_template.clone(),
            pause_wait: Duration::from_millis(self.pause_wait_ms),
            pause_timeout: Duration::from_millis(self.pause_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> PgBouncerSection {
        PgBouncerSection {
            admin_host: default_admin_host(),
            admin_port: 6432,
            admin_user: default_admin_user(),
            admin_password_file: None,
            admin_password_env: None,
            databases_file: "/etc/pgbouncer/raftgres.ini".into(),
            databases_template: "app = host={{ host }} port={{ port }} dbname=app".into(),
            pause_wait_ms: 5000,
            pause_timeout_ms: 15000,
        }
    }

    #[test]
    fn a_good_section_resolves_and_hides_its_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret-pw\n").expect("write");
        let mut s = section();
        s.admin_password_file = Some(pw);
        let c = s.validate("pg-main").expect("valid");
        assert_eq!(c.admin_password.expose(), "s3cret-pw");
        assert_eq!(c.pause_timeout, Duration::from_secs(15));
        assert!(!format!("{c:?}").contains("s3cret"), "the password never shows: {c:?}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut s = section();
        s.admin_port = 0;
        s.admin_user = String::new();
        s.admin_password_file = Some("/nonexistent/pw".into());
        s.admin_password_env = Some("X".into());
        s.databases_file = "relative.ini".into();
        s.databases_template = "app = host={{ hots }}".into();
        s.pause_timeout_ms = 100;
        let errs = s.validate("c").expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        for want in [
            "pgbouncer.admin_port",
            "pgbouncer.admin_user",
            "pgbouncer.admin_password_file",
            "pgbouncer.databases_file",
            "pgbouncer.databases_template",
            "pgbouncer.pause_timeout_ms",
        ] {
            assert!(fields.contains(&want), "{want} not in {errs:?}");
        }
        let template = errs.iter().find(|(f, _)| f == "pgbouncer.databases_template").expect("named");
        assert!(template.1.contains("hots"), "{template:?}");
    }

    #[test]
    fn a_template_without_a_database_line_is_refused() {
        let mut s = section();
        s.databases_template = "; nothing".into();
        let errs = s.validate("c").expect_err("invalid");
        assert!(errs[0].1.contains("renders no"), "{errs:?}");
        s.databases_template = "{% if %}".into();
        assert!(s.validate("c").is_err());
    }

    #[test]
    fn the_password_may_come_from_the_environment() {
        // SAFETY: this test's variable name is its own; no other thread
        // reads it.
        unsafe { std::env::set_var("RAFTGRES_TEST_PGB_PW", "from-env") };
        let mut s = section();
        s.admin_password_env = Some("RAFTGRES_TEST_PGB_PW".into());
        assert_eq!(s.validate("c").expect("valid").admin_password.expose(), "from-env");
        s.admin_password_env = Some("RAFTGRES_TEST_PGB_UNSET".into());
        assert!(s.validate("c").is_err());
    }
}
