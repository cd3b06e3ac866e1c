//! Timeline history files (`pg_wal/<timeline>.history`): where each
//! timeline of a server's past began. PostgreSQL writes one at every
//! promotion and a standby fetches its upstream's.

use std::path::Path;

/// One line of a history file: `parent` ended (and the next timeline
/// began) at `switchpoint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: u32,
    pub switchpoint: u64,
}

/// The entries of a history file; comment and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<HistoryEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let parent = fields.next()?.parse().ok()?;
            let switchpoint = super::lsn::parse(fields.next()?)?;
            Some(HistoryEntry { parent, switchpoint })
        })
        .collect()
}

/// Where `timeline` began in this data directory's history: 0 for
/// timeline 1, else the last switch point its history file names; `None`
/// when the file is missing or unreadable.
pub fn timeline_start(data_dir: &Path, timeline: u32) -> Option<u64> {
    if timeline <= 1 {
        return Some(0);
    }
    let text = std::fs::read_to_string(data_dir.join("pg_wal").join(format!("{timeline:08X}.history"))).ok()?;
    parse(&text).last().map(|e| e.switchpoint)
}

/// The newest timeline this data directory knows of: the highest with a
/// history file in `pg_wal`, or `at_least` (the control file's).
pub fn newest_timeline(data_dir: &Path, at_least: u32) -> u32 {
    let newest = std::fs::read_dir(data_dir.join("pg_wal")).ok().into_iter().flatten().filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()
    });
    newest.chain(std::iter::once(at_least)).max().unwrap_or(at_least)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_files_parse_as_postgresql_writes_them() {
        let text = "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n";
        assert_eq!(
            parse(text),
            vec![
                HistoryEntry { parent: 1, switchpoint: 0x300_0060 },
                HistoryEntry { parent: 2, switchpoint: 0x500_0000 }
            ]
        );
        assert_eq!(parse("# comment\ngarbage\n"), vec![]);
    }

    #[test]
    fn a_timeline_starts_where_its_history_file_says() {
        let dir = std::env::temp_dir().join(format!("raftgres-history-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pg_wal")).unwrap();
        std::fs::write(dir.join("pg_wal/00000003.history"), "1\t0/3000060\tx\n2\t0/4000A0\tx\n").unwrap();
        assert_eq!(timeline_start(&dir, 1), Some(0));
        assert_eq!(timeline_start(&dir, 3), Some(0x40_00A0));
        assert_eq!(timeline_start(&dir, 2), None);
        assert_eq!(newest_timeline(&dir, 2), 3);
        assert_eq!(newest_timeline(&dir, 5), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
