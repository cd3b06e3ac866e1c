//! What `pg_controldata` says about a stopped (or crashed) data directory.

/// `Database cluster state` from `pg_controldata`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterControlState {
    /// A primary shut down cleanly.
    ShutDown,
    /// A standby shut down cleanly.
    ShutDownInRecovery,
    /// A primary that was running (or crashed).
    InProduction,
    /// A standby that was running (or crashed).
    InArchiveRecovery,
    /// Starting up, crash recovery, or anything else.
    Other,
}

impl ClusterControlState {
    pub fn parse(output: &str) -> Option<(ClusterControlState, u32)> {
        let mut state = None;
        let mut timeline = None;
        for line in output.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "Database cluster state" => {
                    state = Some(match value {
                        "shut down" => ClusterControlState::ShutDown,
                        "shut down in recovery" => ClusterControlState::ShutDownInRecovery,
                        "in production" => ClusterControlState::InProduction,
                        "in archive recovery" => ClusterControlState::InArchiveRecovery,
                        _ => ClusterControlState::Other,
                    })
                }
                "Latest checkpoint's TimeLineID" => timeline = value.parse().ok(),
                _ => {}
            }
        }
        Some((state?, timeline?))
    }

    /// `Latest checkpoint location` from `pg_controldata` output.
    pub fn checkpoint_lsn(output: &str) -> Option<u64> {
        output
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == "Latest checkpoint location")
            .and_then(|(_, v)| super::lsn::parse(v.trim()))
    }

    /// True when the directory was last a primary.
    pub fn was_primary(self) -> bool {
        matches!(self, ClusterControlState::ShutDown | ClusterControlState::InProduction)
    }

    /// True when it did not shut down cleanly.
    pub fn crashed(self) -> bool {
        matches!(
            self,
            ClusterControlState::InProduction | ClusterControlState::InArchiveRecovery | ClusterControlState::Other
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_controldata() {
        let out = "pg_control version number:            1300\n\
                   Database cluster state:               shut down in recovery\n\
                   Latest checkpoint's TimeLineID:       3\n";
        assert_eq!(ClusterControlState::parse(out), Some((ClusterControlState::ShutDownInRecovery, 3)));
        assert_eq!(ClusterControlState::parse("garbage"), None);
        assert_eq!(
            ClusterControlState::checkpoint_lsn("Latest checkpoint location:           0/3000028\n"),
            Some(0x3000028)
        );
        assert_eq!(ClusterControlState::checkpoint_lsn(out), None);
        assert!(ClusterControlState::InProduction.was_primary());
        assert!(ClusterControlState::InProduction.crashed());
        assert!(!ClusterControlState::ShutDown.crashed());
    }
}
