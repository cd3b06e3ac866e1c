//! Restarts of this node's PostgreSQL with Patroni's conditions (`role`,
//! `postgres_version`, `restart_pending`), at once or at a scheduled time.
//! A scheduled restart is kept in memory on this node, one at a time, and
//! its conditions are checked when it runs, as Patroni does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftgres_api::ScheduledRestart;
use raftgres_api::time::format_ms;
use raftgres_storage::now_ms;
use tokio::task::AbortHandle;

use super::{Done, OpError, Ops};

/// Which role a conditional restart requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleFilter {
    Primary,
    Replica,
}

impl RoleFilter {
    /// Patroni's spellings (`master` and `leader` as older and newer names
    /// of the primary).
    pub fn parse(s: &str) -> Option<RoleFilter> {
        match s {
            "primary" | "master" | "leader" | "standby_leader" => Some(RoleFilter::Primary),
            "replica" | "standby" => Some(RoleFilter::Replica),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RoleFilter::Primary => "primary",
            RoleFilter::Replica => "replica",
        }
    }
}

/// When a restart may run; every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartConditions {
    pub role: Option<RoleFilter>,
    /// Only if the running server is older than this (`15.10`).
    pub postgres_version: Option<Version>,
    /// Only if a changed parameter waits for a restart.
    pub restart_pending: bool,
}

/// A PostgreSQL version, compared numerically part by part.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// `15.10`, `16`, or a `server_version` such as `15.8 (Debian 15.8-1)`.
    pub fn parse(s: &str) -> Option<Version> {
        let head = s.split_whitespace().next()?;
        let parts: Option<Vec<u32>> = head.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty() && p.len() <= 3).map(Version)
    }
}

/// What the conditions are checked against.
#[derive(Clone, Debug, Default)]
pub struct RestartFacts {
    pub primary: bool,
    pub replica: bool,
    pub server_version: Option<String>,
    pub pending_restart: bool,
}

impl RestartConditions {
    /// `Ok` when every condition holds, else which one does not.
    pub fn check(&self, facts: &RestartFacts) -> Result<(), String> {
        match self.role {
            Some(RoleFilter::Primary) if !facts.primary => return Err("host role mismatch: not the primary".into()),
            Some(RoleFilter::Replica) if !facts.replica => return Err("host role mismatch: not a replica".into()),
            _ => {}
        }
        if let Some(wanted) = &self.postgres_version {
            match facts.server_version.as_deref().and_then(Version::parse) {
                Some(running) if running < *wanted => {}
                Some(_) => return Err("postgres version mismatch: the server is not older".into()),
                None => return Err("postgres version mismatch: the running version is unknown".into()),
            }
        }
        if self.restart_pending && !facts.pending_restart {
            return Err("pending restart flag is not set".into());
        }
        Ok(())
    }
}

/// The one scheduled restart of this node.
pub(super) struct Scheduled {
    info: ScheduledRestart,
    task: AbortHandle,
}

/// Shared by the operations' clones.
pub(super) type ScheduleSlot = Arc<Mutex<Option<Scheduled>>>;

impl Ops {
    fn restart_facts(&self) -> RestartFacts {
        let o = self.observation.borrow().clone();
        let state = self.state();
        RestartFacts {
            primary: state.primary_node() == Some(self.handle.id()) && o.in_recovery == Some(false),
            replica: o.in_recovery == Some(true),
            server_version: o.server_version.clone(),
            pending_restart: !self.parameters.borrow().pending_restart.is_empty(),
        }
    }

    /// Restarts this node's PostgreSQL if `conditions` hold now; when they
    /// do not, nothing is done and the inner error says which failed.
    pub async fn restart_if(&self, conditions: &RestartConditions) -> Result<Result<Done, String>, OpError> {
        if let Err(why) = conditions.check(&self.restart_facts()) {
            tracing::info!("restart not done: {why}");
            return Ok(Err(why));
        }
        self.restart_local().await.map(Ok)
    }

    /// Schedules a restart of this node at `at_ms` (Unix ms); its
    /// conditions are checked then. One at a time; refused in maintenance
    /// mode, as Patroni does.
    pub fn schedule_restart(&self, at_ms: u64, conditions: RestartConditions) -> Result<Done, OpError> {
        if self.state().maintenance {
            return Err(OpError::Refused("Can't schedule restart in the paused state".into()));
        }
        let now = now_ms();
        if at_ms <= now {
            return Err(OpError::Invalid("Cannot schedule restart in the past".into()));
        }
        let mut slot = self.scheduled.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|s| !s.task.is_finished()) {
            return Err(OpError::Conflict("Another restart is already scheduled".into()));
        }
        let info = ScheduledRestart {
            schedule: format_ms(at_ms),
            role: conditions.role.map(|r| r.as_str().to_string()),
            postgres_version: conditions
                .postgres_version
                .as_ref()
                .map(|v| v.0.iter().map(u32::to_string).collect::<Vec<_>>().join(".")),
            restart_pending: conditions.restart_pending,
        };
        let ops = self.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
            if ops.state().maintenance {
                tracing::warn!("scheduled restart dropped: the cluster is in maintenance mode");
            } else {
                match ops.restart_if(&conditions).await {
                    Ok(Ok(d)) => tracing::info!("scheduled restart: {}", d.message),
                    Ok(Err(why)) => tracing::info!("scheduled restart skipped: {why}"),
                    Err(e) => tracing::error!("scheduled restart failed: {e}"),
                }
            }
            ops.scheduled.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
        tracing::info!(at = %info.schedule, "restart scheduled");
        *slot = Some(Scheduled { info, task: task.abort_handle() });
        Ok(Done::new("Restart scheduled", 0))
    }

    /// Drops the scheduled restart.
    pub fn cancel_scheduled_restart(&self) -> Result<Done, OpError> {
        match self.scheduled.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(s) if !s.task.is_finished() => {
                s.task.abort();
                Ok(Done::new("scheduled restart deleted", 0))
            }
            _ => Err(OpError::NotFound("no restarts are scheduled".into())),
        }
    }

    /// The scheduled restart, if one waits.
    pub fn scheduled_restart(&self) -> Option<ScheduledRestart> {
        let slot = self.scheduled.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|s| !s.task.is_finished()).map(|s| s.info.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s| Version::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert!(v("15.8 (Debian 15.8-0+deb12u1)") < v("15.10"));
        assert!(v("15.10") < v("16"));
        assert!(v("9.6.24") < v("10"));
        assert_eq!(Version::parse("fifteen"), None);
        assert_eq!(Version::parse(""), None);
    }

    #[test]
    fn every_condition_must_hold() {
        let replica =
            RestartFacts { primary: false, replica: true, server_version: Some("15.8".into()), pending_restart: false };
        assert_eq!(RestartConditions::default().check(&replica), Ok(()));
        let primary_only = RestartConditions { role: Some(RoleFilter::Primary), ..Default::default() };
        assert!(primary_only.check(&replica).unwrap_err().contains("role mismatch"));
        let pending = RestartConditions { restart_pending: true, ..Default::default() };
        assert!(pending.check(&replica).unwrap_err().contains("pending restart"));
        assert_eq!(pending.check(&RestartFacts { pending_restart: true, ..replica.clone() }), Ok(()));
        let older_than = |s| RestartConditions { postgres_version: Version::parse(s), ..Default::default() };
        assert_eq!(older_than("15.9").check(&replica), Ok(()));
        assert!(older_than("15.8").check(&replica).unwrap_err().contains("version mismatch"));
        assert!(older_than("15.9").check(&RestartFacts { server_version: None, ..replica }).is_err());
    }
}
