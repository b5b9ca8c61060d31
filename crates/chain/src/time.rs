//! Chain time strings. The FIO API renders expirations as UTC
//! `YYYY-MM-DDTHH:MM:SS` (strftime `%Y-%m-%dT%T`, no zone, no fraction);
//! `head_block_time` adds `.mmm`. We convert by hand (civil-from-days) rather
//! than pull a date crate for two functions.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// Howard Hinnant's days_from_civil / civil_from_days (public-domain algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Render unix seconds the way the chain does: `2025-01-01T00:00:00`.
pub fn format_chain_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Parse `YYYY-MM-DDTHH:MM:SS` (optionally `.fff` and/or a trailing `Z`) as UTC.
/// Strict: anything else is `None`, so a hostile answer cannot smuggle in a
/// date we would misread.
pub fn parse_chain_time(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let s = match s.split_once('.') {
        Some((head, frac)) if !frac.is_empty() && frac.len() <= 9 => {
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            head
        }
        Some(_) => return None,
        None => s,
    };
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    // Reject dates like Feb 31 that days_from_civil would silently roll over.
    if civil_from_days(days) != (y, mo, d) {
        return None;
    }
    let t = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_values() {
        assert_eq!(format_chain_time(0), "1970-01-01T00:00:00");
        // The constant the chain prints for every address since FIP-31.
        assert_eq!(format_chain_time(4_294_967_295), "2106-02-07T06:28:15");
        assert_eq!(parse_chain_time("2106-02-07T06:28:15"), Some(4_294_967_295));
        assert_eq!(parse_chain_time("2025-01-01T00:00:00"), Some(1_735_689_600));
        assert_eq!(
            parse_chain_time("2025-01-01T00:00:00.500"),
            Some(1_735_689_600)
        );
        for t in [1u64, 951_782_400, 1_709_164_800, 2_000_000_000] {
            assert_eq!(parse_chain_time(&format_chain_time(t)), Some(t));
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2025",
            "2025-02-31T00:00:00",
            "2025-13-01T00:00:00",
            "2025-01-01 00:00:00",
            "+025-01-01T00:00:00",
            "2025-01-01T00:00:00.",
            "2025-01-01T00:00:00.x",
            "２０２５-01-01T00:00:00",
        ] {
            assert_eq!(parse_chain_time(bad), None, "{bad}");
        }
    }
}
