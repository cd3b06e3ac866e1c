//! PgBouncer's admin console: one short connection per command, over the
//! simple query protocol (the console understands nothing else). Errors
//! name the console's address, never the password.

use std::time::Duration;

use tokio_postgres::{Config as PgConfig, NoTls, SimpleQueryMessage};

use super::config::PgBouncerConfig;

/// How long connecting to the console may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connect to PgBouncer's admin console at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("PgBouncer refused {command}: {reason}")]
    Refused { command: &'static str, reason: String },
    #[error("{command} did not complete within {waited:?}")]
    Timeout { command: &'static str, waited: Duration },
}

impl AdminError {
    /// The console's refusal says the pooler already is as asked
    /// ("already suspended/paused", "not paused/suspended").
    pub fn is_already(&self) -> bool {
        matches!(self, AdminError::Refused { reason, .. } if reason.contains("already") || reason.contains("not paused"))
    }
}

/// Runs `command` (`PAUSE`, `RESUME`, `RELOAD`, `SHOW ...`) on the console,
/// within `timeout`; returns the rows of its result, each as its columns.
pub async fn run(
    config: &PgBouncerConfig,
    command: &'static str,
    timeout: Duration,
) -> Result<Vec<Vec<Option<String>>>, AdminError> {
    let addr = format!("{}:{}", config.admin_host, config.admin_port);
    let mut pg = PgConfig::new();
    pg.host(&config.admin_host)
        .port(config.admin_port)
        .user(&config.admin_user)
        .dbname("pgbouncer")
        .application_name("raftgres")
        .connect_timeout(CONNECT_TIMEOUT);
    if !config.admin_password.expose().is_empty() {
        pg.password(config.admin_password.expose());
    }
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, pg.connect(NoTls))
        .await
        .map_err(|_| AdminError::Connect {
            addr: addr.clone(),
            reason: format!("timed out after {CONNECT_TIMEOUT:?}"),
        })?
        .map_err(|e| AdminError::Connect { addr: addr.clone(), reason: reason(&e) })?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = tokio::time::timeout(timeout, client.simple_query(command)).await;
    drop(client);
    conn.abort();
    let messages = result
        .map_err(|_| AdminError::Timeout { command, waited: timeout })?
        .map_err(|e| AdminError::Refused { command, reason: reason(&e) })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

/// The server's message when there is one (tokio-postgres's own text is
/// just "db error").
fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}
