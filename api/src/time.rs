//! Times as the APIs print them.

/// RFC 3339 of Unix milliseconds (the number itself if out of range).
pub fn format_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map(|t| t.to_rfc3339()).unwrap_or_else(|| ms.to_string())
}

/// Unix milliseconds of an RFC 3339 time with a zone.
pub fn parse_rfc3339_ms(s: &str) -> Result<u64, chrono::ParseError> {
    Ok(chrono::DateTime::parse_from_rfc3339(s)?.timestamp_millis().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse_rfc3339_ms("2026-11-23T03:00:00Z").expect("valid");
        assert_eq!(ms, 1_795_402_800_000);
        assert_eq!(format_ms(ms), "2026-11-23T03:00:00+00:00");
        assert!(parse_rfc3339_ms("tomorrow").is_err());
    }
}
