//! Times given on the command line (`test-filter --since/--until/--now`), in the forms admins
//! already type for `journalctl --since` (systemd.time(7)): RFC 3339, `2026-12-01 10:00`,
//! `2026-12-01`, `15:53`, `today`/`yesterday`/`tomorrow`/`now`, `-10min`, `+1h`,
//! `2h 30min ago`, `@1700000000`.
//!
//! Wall-clock forms are read in a time zone the caller gives (test-filter's `--timezone`), and
//! relative forms count from a `now` the caller gives, so the parser reads no clock itself.

use crate::engine::datetime::Zone;
use crate::engine::time::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};

/// Why a time argument was not understood.
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not a time: {reason} (forms: 2026-11-22T10:00:00Z, \"2026-11-22 10:00\", 2026-11-22, 15:53, today, yesterday, now, -10min, \"2h ago\", @SECONDS)")]
pub struct TimeArgError {
    input: String,
    reason: String,
}

/// The jiff zone wall-clock forms are read in.
pub fn time_zone(zone: &Zone) -> TimeZone {
    match zone {
        Zone::Utc => TimeZone::UTC,
        Zone::Fixed(secs) => Offset::from_seconds(*secs).map_or(TimeZone::UTC, TimeZone::fixed),
        Zone::Named(tz) => tz.clone(),
    }
}

/// Parses `input` as a time; `now` anchors relative forms and `today`, `tz` wall-clock ones.
pub fn parse(input: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, TimeArgError> {
    let fail = |reason: &str| TimeArgError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(fail("it is empty"));
    }
    let now_jiff = jiff::Timestamp::from_microsecond(now.as_micros())
        .map_err(|_| fail("the current time is out of range"))?;
    let today = now_jiff.to_zoned(tz.clone()).date();
    let at_midnight = |date: Date| local(tz, date.to_datetime(Time::midnight()));
    match s {
        "now" => return Ok(now),
        "today" => return at_midnight(today).ok_or_else(|| fail("no such local time")),
        "yesterday" | "tomorrow" => {
            let days = if s == "yesterday" { -1 } else { 1 };
            let date = today
                .checked_add(jiff::Span::new().days(days))
                .map_err(|_| fail("out of range"))?;
            return at_midnight(date).ok_or_else(|| fail("no such local time"));
        }
        _ => {}
    }
    if let Some(secs) = s.strip_prefix('@') {
        let secs: i64 = secs
            .parse()
            .map_err(|_| fail("@ takes seconds since 1970"))?;
        return Ok(Timestamp::from_secs(secs));
    }
    if let Some(offset) = relative(s).map_err(|reason| fail(&reason))? {
        let us = now
            .as_micros()
            .checked_add(offset)
            .ok_or_else(|| fail("out of range"))?;
        return Ok(Timestamp::from_micros(us));
    }
    if let Ok(instant) = s.parse::<jiff::Timestamp>() {
        return Ok(Timestamp::from_micros(instant.as_microsecond()));
    }
    let civil = if let Ok(dt) = s.parse::<DateTime>() {
        dt
    } else if let Ok(date) = s.parse::<Date>() {
        date.to_datetime(Time::midnight())
    } else if let Ok(time) = s.parse::<Time>() {
        today.to_datetime(time)
    } else {
        return Err(fail("not a form banhound knows"));
    };
    local(tz, civil).ok_or_else(|| fail("no such local time"))
}

fn local(tz: &TimeZone, civil: DateTime) -> Option<Timestamp> {
    let instant = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
    Some(Timestamp::from_micros(instant.as_microsecond()))
}

/// `-10min`, `+1h`, `2h 30min ago`, `1d left`: the offset from now in microseconds, or
/// `None` when `s` is not of this form.
fn relative(s: &str) -> Result<Option<i64>, String> {
    let (sign, span) = if let Some(rest) = s.strip_prefix('-') {
        (-1, rest)
    } else if let Some(rest) = s.strip_prefix('+') {
        (1, rest)
    } else if let Some(rest) = s.strip_suffix(" ago") {
        (-1, rest)
    } else if let Some(rest) = s.strip_suffix(" left") {
        (1, rest)
    } else {
        return Ok(None);
    };
    let mut total: i64 = 0;
    let mut rest = span.trim_start();
    if rest.is_empty() {
        return Err("a relative time needs an amount and a unit".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let amount: i64 = rest[..digits]
            .parse()
            .map_err(|_| "the amount is too large".to_string())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let micros = unit_micros(unit)
            .ok_or_else(|| format!("unknown unit {unit:?}: use us, ms, s, min, h, d, w, M or y"))?;
        total = amount
            .checked_mul(micros)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "the amount is too large".to_string())?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(Some(sign * total))
}

/// systemd.time(7)'s time span units, in microseconds (a month is 30.44 days, a year
/// 365.25, as systemd counts them).
fn unit_micros(unit: &str) -> Option<i64> {
    const S: i64 = 1_000_000;
    Some(match unit {
        "us" | "usec" => 1,
        "ms" | "msec" => 1_000,
        "" | "s" | "sec" | "second" | "seconds" => S,
        "m" | "min" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hour" | "hours" => 3_600 * S,
        "d" | "day" | "days" => 86_400 * S,
        "w" | "week" | "weeks" => 7 * 86_400 * S,
        "M" | "month" | "months" => 2_629_800 * S,
        "y" | "year" | "years" => 31_557_600 * S,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z.
    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn at(s: &str, tz: &TimeZone) -> Timestamp {
        parse(s, NOW, tz).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rfc(s: &str) -> Timestamp {
        Timestamp::from_micros(s.parse::<jiff::Timestamp>().unwrap().as_microsecond())
    }

    #[test]
    fn journalctl_forms_are_accepted() {
        let utc = TimeZone::UTC;
        assert_eq!(at("2023-11-14T22:13:20Z", &utc), NOW);
        assert_eq!(at("2023-11-15T00:13:20+02:00", &utc), NOW);
        assert_eq!(at("now", &utc), NOW);
        assert_eq!(
            at("-10min", &utc),
            Timestamp::from_secs(1_700_000_000 - 600)
        );
        assert_eq!(at("+1h", &utc), Timestamp::from_secs(1_700_000_000 + 3_600));
        assert_eq!(
            at("2h 30min ago", &utc),
            Timestamp::from_secs(1_700_000_000 - 9_000)
        );
        assert_eq!(
            at("-1h30min", &utc),
            Timestamp::from_secs(1_700_000_000 - 5_400)
        );
        assert_eq!(at("today", &utc), rfc("2023-11-14T00:00:00Z"));
        assert_eq!(at("yesterday", &utc), rfc("2023-11-13T00:00:00Z"));
        assert_eq!(at("tomorrow", &utc), rfc("2023-11-15T00:00:00Z"));
        assert_eq!(at("15:53", &utc), rfc("2023-11-14T15:53:00Z"));
        assert_eq!(at("15:53:07", &utc), rfc("2023-11-14T15:53:07Z"));
        assert_eq!(at("2026-12-01 10:00", &utc), rfc("2026-12-01T10:00:00Z"));
        assert_eq!(at("2026-12-01T10:00:30", &utc), rfc("2026-12-01T10:00:30Z"));
        assert_eq!(at("2026-12-01", &utc), rfc("2026-12-01T00:00:00Z"));
        assert_eq!(at("@1700000000", &utc), NOW);
    }

    #[test]
    fn wall_clock_forms_are_read_in_the_given_zone() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Winter: UTC+1. The date of "today" is Berlin's (already the 14th there too).
        assert_eq!(at("2026-12-01 10:00", &berlin), rfc("2026-12-01T09:00:00Z"));
        assert_eq!(at("today", &berlin), rfc("2023-11-13T23:00:00Z"));
        // At +02:00 it is already the 15th: "15:53" is that day's.
        let plus_two = time_zone(&Zone::Fixed(7_200));
        assert_eq!(at("15:53", &plus_two), rfc("2023-11-15T13:53:00Z"));
        // An explicit offset wins over the zone.
        assert_eq!(at("2023-11-14T22:13:20Z", &berlin), NOW);
    }

    #[test]
    fn other_text_is_refused_with_the_forms() {
        let utc = TimeZone::UTC;
        for bad in [
            "",
            "Nov 14 22:13:20",
            "2023-11-14T22:13:20Z trailing",
            "-10 fortnights",
            "-",
            "ago",
            "@soon",
            "25:00",
            "-99999999999999999999s",
        ] {
            let err = parse(bad, NOW, &utc).expect_err(bad).to_string();
            assert!(
                err.contains("is not a time") && err.contains("-10min"),
                "{err}"
            );
        }
    }
}
