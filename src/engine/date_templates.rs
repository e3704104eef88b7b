//! The byte parsers of the standard date templates: each reads one date format at a given
//! position of a line, or finds it in the line's first [`SEARCH_WINDOW`] bytes, and says
//! where the date text is and what it says, before any time zone is applied.
//!
//! [`crate::engine::datetime`] decides which to try and turns what they find into instants;
//! they are apart from it so that each stays a small, bounds-checked function over bytes
//! (log text is attacker-influenced: anything odd is `None`, never a guess).

use std::ops::Range;

use memchr::memmem::Finder;

use super::time::days_from_civil;

/// How far into a line the unanchored templates look for a date, and how many leading blanks
/// are skipped before the anchored ones: dates sit near the start of a line, and scanning
/// further would make very long (possibly hostile) lines expensive.
pub const SEARCH_WINDOW: usize = 512;

/// What precedes the epoch seconds in Linux audit records.
pub(super) const AUDIT_MARKER: &[u8] = b"audit(";

/// What follows the date in the common and combined log formats: the quoted request.
pub(super) const CLF_DATE_END: &[u8] = b"] \"";
/// `dd/Mon/yyyy:HH:MM:SS +zzzz` and `dd/Mon/yyyy:HH:MM:SS`.
pub(super) const CLF_DATE_LENGTHS: [usize; 2] = [26, 20];

/// What a template parser found, before time zone conversion.
pub(super) struct Found {
    pub(super) time: Parsed,
    pub(super) span: Range<usize>,
}

pub(super) enum Parsed {
    /// An instant given directly (epoch seconds).
    Utc {
        micros: i64,
    },
    Wall(WallClock),
}

/// A full calendar date and time as written in the line; `offset` when the line gives one.
pub(super) struct WallClock {
    pub(super) year: i64,
    pub(super) month: u32,
    pub(super) day: u32,
    pub(super) hour: u32,
    pub(super) minute: u32,
    pub(super) second: u32,
    pub(super) micros: u32,
    pub(super) offset: Option<i32>,
}

impl WallClock {
    /// Seconds since the epoch as if the wall clock were UTC, `None` for impossible dates.
    pub(super) fn local_secs(&self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let sod = i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        Some(days_from_civil(self.year, self.month, self.day) * 86_400 + sod)
    }
}

/// A syslog date: no year yet, that depends on `now`.
pub(super) struct SyslogDate {
    pub(super) month: u32,
    pub(super) day: u32,
    pub(super) sod: i64,
    pub(super) micros: u32,
}

pub(super) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

pub(super) fn skip_blanks(line: &[u8]) -> usize {
    let window = &line[..line.len().min(SEARCH_WINDOW)];
    window
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(window.len())
}

pub(super) fn digit(b: &[u8], i: usize) -> Option<u32> {
    match b.get(i) {
        Some(c @ b'0'..=b'9') => Some(u32::from(c - b'0')),
        _ => None,
    }
}

pub(super) fn is_digit_at(b: &[u8], i: usize) -> bool {
    matches!(b.get(i), Some(b'0'..=b'9'))
}

pub(super) fn num2(b: &[u8], i: usize) -> Option<u32> {
    Some(digit(b, i)? * 10 + digit(b, i + 1)?)
}

pub(super) fn num4(b: &[u8], i: usize) -> Option<u32> {
    Some(num2(b, i)? * 100 + num2(b, i + 2)?)
}

pub(super) fn expect(b: &[u8], i: usize, c: u8) -> Option<()> {
    (b.get(i) == Some(&c)).then_some(())
}

/// `Jan`..`Dec` (as written by syslog and CLF) to 1..=12.
pub(super) fn month_abbrev(b: &[u8], i: usize) -> Option<u32> {
    let m = b.get(i..i + 3)?;
    Some(match m {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// `HH:MM:SS` at `i`, unvalidated.
pub(super) fn hms(b: &[u8], i: usize) -> Option<(u32, u32, u32)> {
    let h = num2(b, i)?;
    expect(b, i + 2, b':')?;
    let m = num2(b, i + 3)?;
    expect(b, i + 5, b':')?;
    let s = num2(b, i + 6)?;
    Some((h, m, s))
}

/// An optional `.ffffff` or `,fff` fraction at `i`: (microseconds, end). More than nine
/// digits is refused rather than scanned, so a hostile run of digits stays cheap.
pub(super) fn fraction(b: &[u8], i: usize) -> Option<(u32, usize)> {
    if !matches!(b.get(i), Some(b'.' | b',')) || !is_digit_at(b, i + 1) {
        return Some((0, i));
    }
    let mut micros = 0;
    let mut j = i + 1;
    while let Some(d) = digit(b, j) {
        let n = j - i;
        if n > 9 {
            return None;
        }
        if n <= 6 {
            micros = micros * 10 + d;
        }
        j += 1;
    }
    for _ in (j - i)..=6 {
        micros *= 10;
    }
    Some((micros, j))
}

/// `+HH:MM`, `+HHMM` or `+HH` (or `-`) at `i`: (seconds east of UTC, end).
pub(super) fn parse_offset(b: &[u8], i: usize) -> Option<(i32, usize)> {
    let sign = match b.get(i) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let hours = num2(b, i + 1)?;
    let (minutes, end) = match b.get(i + 3) {
        Some(b':') => (num2(b, i + 4)?, i + 6),
        Some(b'0'..=b'9') => (num2(b, i + 3)?, i + 5),
        _ => (0, i + 3),
    };
    if hours > 23 || minutes > 59 || is_digit_at(b, end) {
        return None;
    }
    Some((sign * (hours * 3600 + minutes * 60) as i32, end))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|offset]` at `i`.
pub(super) fn parse_iso8601(b: &[u8], i: usize) -> Option<Found> {
    let year = num4(b, i)?;
    expect(b, i + 4, b'-')?;
    let month = num2(b, i + 5)?;
    expect(b, i + 7, b'-')?;
    let day = num2(b, i + 8)?;
    if !matches!(b.get(i + 10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = hms(b, i + 11)?;
    let (micros, j) = fraction(b, i + 19)?;
    let (offset, end) = match b.get(j) {
        Some(b'Z' | b'z') => (Some(0), j + 1),
        Some(b'+' | b'-') => {
            let (offset, end) = parse_offset(b, j)?;
            (Some(offset), end)
        }
        _ => (None, j),
    };
    if is_digit_at(b, end) {
        return None;
    }
    Some(Found {
        time: Parsed::Wall(WallClock {
            year: i64::from(year),
            month,
            day,
            hour,
            minute,
            second,
            micros,
            offset,
        }),
        span: i..end,
    })
}

/// `<PRI>VERSION TIMESTAMP` at `i`; the span is the timestamp only.
pub(super) fn parse_rfc5424(b: &[u8], i: usize) -> Option<Found> {
    expect(b, i, b'<')?;
    let mut j = i + 1;
    let mut pri = 0;
    while let Some(d) = digit(b, j) {
        pri = pri * 10 + d;
        j += 1;
        if j - i > 4 {
            return None;
        }
    }
    if j == i + 1 || pri > 191 {
        return None;
    }
    expect(b, j, b'>')?;
    j += 1;
    // VERSION is NONZERO-DIGIT 0*2DIGIT.
    if !matches!(b.get(j), Some(b'1'..=b'9')) {
        return None;
    }
    let version_start = j;
    while is_digit_at(b, j) {
        j += 1;
        if j - version_start > 3 {
            return None;
        }
    }
    expect(b, j, b' ')?;
    // RFC 3339 requires the `T` separator, unlike the looser ISO template.
    if !matches!(b.get(j + 11), Some(b'T' | b't')) {
        return None;
    }
    parse_iso8601(b, j + 1)
}

/// `Mon dd HH:MM:SS[.frac]` with `dd` as `22`, ` 2` or `2`.
pub(super) fn parse_syslog(b: &[u8], i: usize) -> Option<(SyslogDate, Range<usize>)> {
    let month = month_abbrev(b, i)?;
    expect(b, i + 3, b' ')?;
    let (day, j) = match (b.get(i + 4), digit(b, i + 5)) {
        (Some(b' '), Some(d)) => (d, i + 6),
        (Some(b'0'..=b'9'), Some(d)) => (digit(b, i + 4)? * 10 + d, i + 6),
        (Some(b'0'..=b'9'), None) => (digit(b, i + 4)?, i + 5),
        _ => return None,
    };
    expect(b, j, b' ')?;
    let (hour, minute, second) = hms(b, j + 1)?;
    let (micros, end) = fraction(b, j + 9)?;
    if is_digit_at(b, end) || day == 0 || day > 31 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let sod = i64::from(hour * 3600 + minute * 60 + second);
    Some((
        SyslogDate {
            month,
            day,
            sod,
            micros,
        },
        i..end,
    ))
}

/// `YYYY/MM/DD HH:MM:SS` at `i` (nginx's error log, always local time).
pub(super) fn parse_nginx_error(b: &[u8], i: usize) -> Option<Found> {
    let year = num4(b, i)?;
    expect(b, i + 4, b'/')?;
    let month = num2(b, i + 5)?;
    expect(b, i + 7, b'/')?;
    let day = num2(b, i + 8)?;
    expect(b, i + 10, b' ')?;
    let (hour, minute, second) = hms(b, i + 11)?;
    let end = i + 19;
    if is_digit_at(b, end) {
        return None;
    }
    Some(Found {
        time: Parsed::Wall(WallClock {
            year: i64::from(year),
            month,
            day,
            hour,
            minute,
            second,
            micros: 0,
            offset: None,
        }),
        span: i..end,
    })
}

/// Ten digits of Unix seconds and an optional fraction at `i`: (micros, end).
pub(super) fn epoch_at(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let mut secs: i64 = 0;
    for k in 0..10 {
        secs = secs * 10 + i64::from(digit(b, i + k)?);
    }
    let (micros, end) = match b.get(i + 10) {
        Some(b'.') => fraction(b, i + 10)?,
        _ => (0, i + 10),
    };
    if is_digit_at(b, end) {
        return None;
    }
    Some((secs * 1_000_000 + i64::from(micros), end))
}

pub(super) fn parse_epoch(b: &[u8], i: usize) -> Option<Found> {
    let (micros, end) = epoch_at(b, i)?;
    Some(Found {
        time: Parsed::Utc { micros },
        span: i..end,
    })
}

/// `audit(SECONDS.FRAC:SERIAL)` anywhere in the search window.
pub(super) fn find_audit(marker: &Finder<'static>, b: &[u8]) -> Option<Found> {
    let window = &b[..b.len().min(SEARCH_WINDOW)];
    for pos in marker.find_iter(window) {
        let start = pos + AUDIT_MARKER.len();
        if let Some((micros, end)) = epoch_at(b, start) {
            if b.get(end) == Some(&b':') {
                return Some(Found {
                    time: Parsed::Utc { micros },
                    span: start..end,
                });
            }
        }
    }
    None
}

/// `[dd/Mon/yyyy:HH:MM:SS[ +zzzz]]`; span without brackets.
///
/// In the common and combined log formats the date comes right before the quoted request,
/// after the user name, which is the client's (nginx: the Basic credentials) and may hold
/// a forged `[date]` and any amount of padding, but never a `"` (nginx and Apache escape it
/// there). So the date that ends at the line's first `] "` is taken, however far into the
/// line (a substring search, linear); a forged earlier date would otherwise date the
/// client's failures out of `findtime`. Lines without one: the first date in the search
/// window.
pub(super) fn find_clf(date_end: &Finder<'static>, b: &[u8]) -> Option<Found> {
    if let Some(end) = date_end.find(b) {
        let before_request = CLF_DATE_LENGTHS.iter().find_map(|len| {
            let open = end.checked_sub(len + 1)?;
            (b[open] == b'[').then(|| parse_clf(b, open + 1)).flatten()
        });
        if before_request.is_some() {
            return before_request;
        }
    }
    let window = &b[..b.len().min(SEARCH_WINDOW)];
    memchr::memchr_iter(b'[', window).find_map(|pos| parse_clf(b, pos + 1))
}

pub(super) fn parse_clf(b: &[u8], i: usize) -> Option<Found> {
    let day = num2(b, i)?;
    expect(b, i + 2, b'/')?;
    let month = month_abbrev(b, i + 3)?;
    expect(b, i + 6, b'/')?;
    let year = num4(b, i + 7)?;
    expect(b, i + 11, b':')?;
    let (hour, minute, second) = hms(b, i + 12)?;
    let (offset, end) = match b.get(i + 20) {
        // CLF always writes the offset as `+HHMM`.
        Some(b' ') => match parse_offset(b, i + 21)? {
            (offset, end) if end == i + 26 => (Some(offset), end),
            _ => return None,
        },
        _ => (None, i + 20),
    };
    expect(b, end, b']')?;
    Some(Found {
        time: Parsed::Wall(WallClock {
            year: i64::from(year),
            month,
            day,
            hour,
            minute,
            second,
            micros: 0,
            offset,
        }),
        span: i..end,
    })
}
