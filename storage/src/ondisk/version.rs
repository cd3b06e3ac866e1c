//! On-disk format versions, newest last.

/// A format of the data directory. Each version carries a date and a
/// one-line summary; `docs/compatibility.md` keeps the table by release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataVersion {
    V1,
    V2,
    V3,
}

impl DataVersion {
    /// The version this build writes.
    pub const CURRENT: DataVersion = DataVersion::V3;

    /// The versions this build converts to [`DataVersion::CURRENT`] when it
    /// opens a data directory that holds no current one (from the newest
    /// present), oldest first.
    pub const UPGRADES_FROM: [DataVersion; 2] = [DataVersion::V1, DataVersion::V2];

    pub fn number(self) -> u32 {
        match self {
            DataVersion::V1 => 1,
            DataVersion::V2 => 2,
            DataVersion::V3 => 3,
        }
    }

    pub fn from_number(n: u32) -> Option<Self> {
        match n {
            1 => Some(DataVersion::V1),
            2 => Some(DataVersion::V2),
            3 => Some(DataVersion::V3),
            _ => None,
        }
    }

    /// Date and summary of the format.
    pub fn description(self) -> &'static str {
        match self {
            DataVersion::V1 => {
                "2026-11-23: one sled tree with typed key spaces (header, vote, log, log_meta), \
                 bincode 2 values; snapshot in a checksummed control file"
            }
            DataVersion::V2 => {
                "2026-11-30: v1 plus the primary's recorded timeline, WAL position and forced failover in the \
                 cluster state (snapshot payload v2); new commands and events appended"
            }
            DataVersion::V3 => {
                "2026-11-30: v2 plus the synchronous quorum in the cluster state (snapshot payload v3); \
                 the quorum command and event appended"
            }
        }
    }

    /// Name of the directory holding data of this version.
    pub fn dir_name(self) -> String {
        format!("raft-v{}", self.number())
    }

    /// The version number a directory name stands for, if it names one.
    pub fn parse_dir_name(name: &str) -> Option<u32> {
        name.strip_prefix("raft-v")?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip() {
        let v = DataVersion::CURRENT;
        assert_eq!(DataVersion::parse_dir_name(&v.dir_name()), Some(v.number()));
        assert_eq!(DataVersion::from_number(v.number()), Some(v));
        assert_eq!(DataVersion::parse_dir_name("raft-vx"), None);
        assert_eq!(DataVersion::from_number(99), None);
        assert!(v.description().starts_with("20"));
    }

    #[test]
    fn versions_are_numbered_in_order() {
        let all = [DataVersion::V1, DataVersion::V2, DataVersion::V3];
        assert_eq!(all.last(), Some(&DataVersion::CURRENT));
        for (i, v) in all.iter().enumerate() {
            assert_eq!(v.number(), i as u32 + 1);
            assert_eq!(DataVersion::from_number(v.number()), Some(*v));
            assert_eq!(v.dir_name(), format!("raft-v{}", i + 1));
        }
        assert!(all.windows(2).all(|w| w[0] < w[1] && w[0].description() <= w[1].description()));
        assert!(DataVersion::UPGRADES_FROM.iter().all(|v| *v < DataVersion::CURRENT));
    }
}
