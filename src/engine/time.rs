//! Time as the engine sees it: instants passed in from outside, never read from a clock.
//!
//! Timestamps are microseconds since the Unix epoch because that is the journal's own
//! resolution (`__REALTIME_TIMESTAMP`); file lines are converted to it by the date detector.
//! Durations are parsed from the human forms admins already type for fail2ban ("10m", "1h",
//! "1w", "1h30m", plain seconds) and a ban time may also be permanent ("permanent" or -1).

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }

    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1_000_000))
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339 in UTC with microseconds when they are not zero: `2026-11-22T02:26:07Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_micros(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_micros(d)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.as_secs();
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected a number followed by a unit (s, m, h, d, w), e.g. \"10m\" or \"1h30m\"")]
    Syntax(String),
    #[error("unknown unit {unit:?} in duration {input:?}: use s, m, h, d or w")]
    Unit { input: String, unit: String },
    #[error("duration {0:?} is too large")]
    Overflow(String),
    #[error("duration {0:?} is negative; only a ban time may be -1 (permanent)")]
    Negative(String),
}

/// Parses "10m", "1h30m", "2d", "1w", "90" (seconds), "1.5h". Zero is allowed.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(input.to_string()));
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::Syntax(input.to_string()));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| DurationError::Syntax(input.to_string()))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let seconds_per_unit = match unit.to_ascii_lowercase().as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            _ => {
                return Err(DurationError::Unit {
                    input: input.to_string(),
                    unit: unit.to_string(),
                })
            }
        };
        total += value * seconds_per_unit;
        rest = rest[unit_len..].trim_start();
        // A bare number is only allowed on its own: "10 5" is a typo, not 15 seconds.
        if unit.is_empty() && !rest.is_empty() {
            return Err(DurationError::Syntax(input.to_string()));
        }
    }
    // Ten years is beyond any sensible window or ban; "permanent" exists for longer.
    if !total.is_finite() || total > 10.0 * 366.0 * 86_400.0 {
        return Err(DurationError::Overflow(input.to_string()));
    }
    Ok(Duration::from_micros((total * 1e6).round() as u64))
}

/// How long a ban lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BanTime {
    For(Duration),
    Permanent,
}

impl BanTime {
    /// Parses a duration, or "permanent"/"forever"/"-1" for a ban that never expires.
    pub fn parse(input: &str) -> Result<BanTime, DurationError> {
        match input.trim() {
            "-1" | "permanent" | "forever" => Ok(BanTime::Permanent),
            other => parse_duration(other).map(BanTime::For),
        }
    }

    /// When a ban starting at `start` ends, `None` for a permanent one.
    pub fn until(self, start: Timestamp) -> Option<Timestamp> {
        match self {
            BanTime::For(d) => Some(start + d),
            BanTime::Permanent => None,
        }
    }
}

/// Formats a duration the way it is written in the configuration ("1h30m", "10m", "45s").
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

impl fmt::Display for BanTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTime::For(d) => f.write_str(&format_duration(*d)),
            BanTime::Permanent => f.write_str("permanent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [
            -800_000i64,
            -1,
            0,
            1,
            365,
            10_957,
            19_000,
            20_779,
            2_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Timestamp::from_secs(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_micros(1_443_703_594_000_123).to_rfc3339(),
            "2015-10-01T12:46:34.000123Z"
        );
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2 days"), Ok(Duration::from_secs(172_800)));
        assert!(matches!(
            parse_duration("10x"),
            Err(DurationError::Unit { .. })
        ));
        assert!(matches!(parse_duration("m"), Err(DurationError::Syntax(_))));
        assert!(matches!(
            parse_duration("10 5"),
            Err(DurationError::Syntax(_))
        ));
        assert!(matches!(parse_duration(""), Err(DurationError::Empty)));
        assert!(matches!(
            parse_duration("-5m"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("99999w"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn ban_times() {
        assert_eq!(BanTime::parse("-1"), Ok(BanTime::Permanent));
        assert_eq!(BanTime::parse("permanent"), Ok(BanTime::Permanent));
        assert_eq!(
            BanTime::parse("1d"),
            Ok(BanTime::For(Duration::from_secs(86_400)))
        );
        assert_eq!(BanTime::For(Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(BanTime::Permanent.until(Timestamp::from_secs(5)), None);
        assert_eq!(
            BanTime::For(Duration::from_secs(10)).until(Timestamp::from_secs(5)),
            Some(Timestamp::from_secs(15))
        );
    }
}
