//! Timestamps: microseconds since the Unix epoch, rendered as RFC 3339 in UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::error::{Error, Result};

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// Nanoseconds since the Unix epoch (UTC): file times as `utimensat` sets them.
pub type Nanos = i64;

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> Nanos {
    Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_else(|| now_micros().saturating_mul(1000))
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// `2026-11-21T05:58:17.123456+00:00`.
pub fn to_iso(t: Micros) -> String {
    match Utc.timestamp_micros(t).single() {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Micros, false),
        None => t.to_string(),
    }
}

/// `2026-11-21 05:58` (the reference's list format).
pub fn to_minute(t: Micros) -> String {
    match Utc.timestamp_micros(t).single() {
        Some(dt) => dt.format("%Y-%m-%d %H:%M").to_string(),
        None => t.to_string(),
    }
}

/// `2026-11-21 05:58:17`.
pub fn to_second(t: Micros) -> String {
    match Utc.timestamp_micros(t).single() {
        Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => t.to_string(),
    }
}

/// Parses a point in time: RFC 3339 (`2026-11-21T05:58:17Z`, offsets allowed), a naive
/// `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` taken as UTC, a bare date (midnight UTC) or `@SECONDS`.
pub fn parse_time(s: &str) -> Result<Micros> {
    let s = s.trim();
    if let Some(secs) = s.strip_prefix('@') {
        return secs
            .parse::<i64>()
            .map(|v| v.saturating_mul(1_000_000))
            .map_err(|_| bad_time(s));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(dt.and_utc().timestamp_micros());
    }
    Err(bad_time(s))
}

fn bad_time(s: &str) -> Error {
    Error::invalid(format!(
        "{s:?} is not a time; use RFC 3339 (2026-11-21T05:58:17Z), 'YYYY-MM-DD HH:MM[:SS]' (UTC), 'YYYY-MM-DD' or @UNIX_SECONDS"
    ))
}

/// Parses a duration: avm's one grammar for every duration a person writes (TTLs, `--older-than`,
/// expiry, plugin time limits): a number with a unit, `250ms`, `90s`, `15m`, `2h`, `7d`, `1w`,
/// or several (`1h 30m`), as the `humantime` crate reads them; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| bad_duration(s));
    }
    humantime::parse_duration(s).map_err(|_| bad_duration(s))
}

fn bad_duration(s: &str) -> Error {
    Error::invalid(format!(
        "{s:?} is not a duration; use a number with a unit (e.g. 250ms, 90s, 15m, 2h, 7d, 1w, or 1h 30m); a bare number is seconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_iso() {
        let t = 1_763_704_697_123_456;
        assert_eq!(parse_time(&to_iso(t)).unwrap(), t);
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(parse_time("1970-01-01 00:01").unwrap(), 60_000_000);
        assert_eq!(parse_time("@5").unwrap(), 5_000_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_duration("1w").unwrap().as_secs(), 604_800);
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
