//! PostgreSQL log sequence numbers: `X/Y` text to `u64` and back.

/// Parses `16/B374D848` into a byte position.
pub fn parse(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return None;
    }
    Some((hi << 32) | lo)
}

pub fn format(lsn: u64) -> String {
    raftgres_storage::timeline::Lsn(lsn).to_string()
}

/// The timeline encoded in a WAL file name (first 8 hex digits).
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    u32::from_str_radix(name.get(0..8)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips() {
        assert_eq!(parse("0/0"), Some(0));
        assert_eq!(parse("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse("nonsense"), None);
        assert_eq!(parse("1/FFFFFFFFF"), None);
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
    }
}
