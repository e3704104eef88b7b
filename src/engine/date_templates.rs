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
    /// When the line names its zone (`PDT Apr 16 21:05:29`).
    pub(super) offset: Option<i32>,
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

/// `HH:MM:SS` or `H:MM:SS` at `i`, unvalidated: (hour, minute, second, end).
pub(super) fn hms_loose(b: &[u8], i: usize) -> Option<(u32, u32, u32, usize)> {
    if b.get(i + 1) == Some(&b':') {
        let hour = digit(b, i)?;
        let minute = num2(b, i + 2)?;
        expect(b, i + 4, b':')?;
        let second = num2(b, i + 5)?;
        return Some((hour, minute, second, i + 7));
    }
    let (hour, minute, second) = hms(b, i)?;
    Some((hour, minute, second, i + 8))
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

/// A wall-clock date and time as a template found it at `span`.
fn wall_found(
    (year, month, day): (i64, u32, u32),
    (hour, minute, second, micros): (u32, u32, u32, u32),
    offset: Option<i32>,
    span: Range<usize>,
) -> Found {
    Found {
        time: Parsed::Wall(WallClock {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
            offset,
        }),
        span,
    }
}

/// The offset after the blank at `j` (`… +08:00`): (offset, end); a blank and a sign that
/// are no offset leave the date without one, ending at `j`.
fn offset_after_blank(b: &[u8], j: usize) -> (Option<i32>, usize) {
    match parse_offset(b, j + 1) {
        Some((offset, end)) => (Some(offset), end),
        None => (None, j),
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|offset]` at `i`.
pub(super) fn parse_iso8601(b: &[u8], i: usize) -> Option<Found> {
    let year = num4(b, i)?;
    // `2026-11-22`, and syslog-ng's `2026.11.22` (the same separator twice).
    let separator = *b.get(i + 4).filter(|&&c| c == b'-' || c == b'.')?;
    let month = num2(b, i + 5)?;
    expect(b, i + 7, separator)?;
    let day = num2(b, i + 8)?;
    // `T`, a blank, or two blanks before a space-padded hour (`2015-10-07  8:25:38`).
    let time_start = match (b.get(i + 10), b.get(i + 11)) {
        (Some(b'T' | b't'), _) => i + 11,
        (Some(b' '), Some(b' ')) => i + 12,
        (Some(b' '), _) => i + 11,
        _ => return None,
    };
    let (hour, minute, second, after) = hms_loose(b, time_start)?;
    let (micros, j) = fraction(b, after)?;
    let (offset, end) = match (b.get(j), b.get(j + 1)) {
        (Some(b'Z' | b'z'), _) => (Some(0), j + 1),
        (Some(b'+' | b'-'), _) => {
            let (offset, end) = parse_offset(b, j)?;
            (Some(offset), end)
        }
        // An offset after a blank (`2019-11-26 01:04:49.008 +08:00`).
        (Some(b' '), Some(b'+' | b'-')) => offset_after_blank(b, j),
        _ => (None, j),
    };
    if is_digit_at(b, end) {
        return None;
    }
    Some(wall_found(
        (i64::from(year), month, day),
        (hour, minute, second, micros),
        offset,
        i..end,
    ))
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
            offset: None,
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
    Some(wall_found(
        (i64::from(year), month, day),
        (hour, minute, second, 0),
        None,
        i..end,
    ))
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
    let (offset, end, close) = match (b.get(i + 20), b.get(i + 21)) {
        // An empty offset (`[31/Jan/2015:14:29:44 ]`, Apache's `%{%z}t` unset).
        (Some(b' '), Some(b']')) => (None, i + 20, i + 21),
        // CLF always writes the offset as `+HHMM`.
        (Some(b' '), _) => match parse_offset(b, i + 21)? {
            (offset, end) if end == i + 26 => (Some(offset), end, end),
            _ => return None,
        },
        _ => (None, i + 20, i + 20),
    };
    expect(b, close, b']')?;
    Some(wall_found(
        (i64::from(year), month, day),
        (hour, minute, second, 0),
        offset,
        i..end,
    ))
}

/// A date that may lack its year: asctime writes one, or not.
pub(super) enum Dated {
    Full(Found),
    YearLess(SyslogDate, Range<usize>),
}

/// Time zone abbreviations that name one offset the world over, in seconds east of UTC.
/// Ambiguous ones (`IST`: India, Ireland or Israel; `CST`: America or China) are left out,
/// so a date naming them is not read rather than read with a guess.
const ZONE_ABBREVIATIONS: [(&[u8], i32); 22] = [
    (b"UTC", 0),
    (b"GMT", 0),
    (b"WET", 0),
    (b"WEST", 3600),
    (b"CET", 3600),
    (b"CEST", 7200),
    (b"EET", 7200),
    (b"EEST", 10_800),
    (b"MSK", 10_800),
    (b"JST", 32_400),
    (b"KST", 32_400),
    (b"AEST", 36_000),
    (b"AEDT", 39_600),
    (b"EST", -18_000),
    (b"EDT", -14_400),
    (b"CDT", -18_000),
    (b"MST", -25_200),
    (b"MDT", -21_600),
    (b"PST", -28_800),
    (b"PDT", -25_200),
    (b"AKST", -32_400),
    (b"AKDT", -28_800),
];

const WEEKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

/// A zone abbreviation and a blank at `i`: (offset, end).
fn zone_abbreviation(b: &[u8], i: usize) -> Option<(i32, usize)> {
    ZONE_ABBREVIATIONS.iter().find_map(|(name, offset)| {
        let end = i + name.len();
        (b.get(i..end) == Some(name) && b.get(end) == Some(&b' ')).then_some((*offset, end + 1))
    })
}

/// Four digits of a year at `i` that no other digit follows.
fn year_at(b: &[u8], i: usize) -> Option<i64> {
    let year = num4(b, i)?;
    (!is_digit_at(b, i + 4)).then_some(i64::from(year))
}

/// asctime and its relatives, as Apache's error log, vsftpd, monit and macOS write them:
/// `Thu Jul 11 01:21:41 2013`, `Thu Sep 25 09:27:18.813902 2014`, `Oct 27 2015 12:35:40`,
/// `PDT Apr 16 21:05:29`. Plain `Mon dd HH:MM:SS` is syslog's; this template wants a
/// weekday, a zone or a year before the time, so that a line's date never depends on which
/// template happened to match the line before.
pub(super) fn parse_asctime(b: &[u8], i: usize) -> Option<Dated> {
    let (offset, mut j) = match zone_abbreviation(b, i) {
        Some((offset, end)) => (Some(offset), end),
        None => (None, i),
    };
    let mut marked = offset.is_some();
    if b.get(j..j + 3).is_some_and(|w| WEEKDAYS.contains(&w)) {
        expect(b, j + 3, b' ')?;
        j += 4;
        marked = true;
    }
    let month = month_abbrev(b, j)?;
    expect(b, j + 3, b' ')?;
    let (day, after_day) = match (b.get(j + 4), digit(b, j + 5)) {
        (Some(b' '), Some(d)) => (d, j + 6),
        (Some(b'0'..=b'9'), Some(d)) => (digit(b, j + 4)? * 10 + d, j + 6),
        (Some(b'0'..=b'9'), None) => (digit(b, j + 4)?, j + 5),
        _ => return None,
    };
    expect(b, after_day, b' ')?;
    let (year, hour, minute, second, micros, end) = match year_at(b, after_day + 1) {
        Some(year) => {
            expect(b, after_day + 5, b' ')?;
            let (h, m, s, after) = hms_loose(b, after_day + 6)?;
            let (micros, end) = fraction(b, after)?;
            (Some(year), h, m, s, micros, end)
        }
        None => {
            let (h, m, s, after) = hms_loose(b, after_day + 1)?;
            let (micros, end) = fraction(b, after)?;
            match (b.get(end), year_at(b, end + 1)) {
                (Some(b' '), Some(year)) if marked => (Some(year), h, m, s, micros, end + 5),
                _ => (None, h, m, s, micros, end),
            }
        }
    };
    if !(marked || year.is_some()) || is_digit_at(b, end) || day == 0 || day > 31 {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let span = i..end;
    Some(match year {
        Some(year) => Dated::Full(wall_found(
            (year, month, day),
            (hour, minute, second, micros),
            offset,
            span,
        )),
        None => Dated::YearLess(
            SyslogDate {
                month,
                day,
                sod: i64::from(hour * 3600 + minute * 60 + second),
                micros,
                offset,
            },
            span,
        ),
    })
}

/// One or two digits at `i`: (value, end).
fn num1or2(b: &[u8], i: usize) -> Option<(u32, usize)> {
    let first = digit(b, i)?;
    match digit(b, i + 1) {
        Some(second) => Some((first * 10 + second, i + 2)),
        None => Some((first, i + 1)),
    }
}

/// Day-first dates: `22-Jan-2013 22:28:21 +0200` (roundcube), `11-Aug-2013 03:36:11.372`
/// (BIND), `22/Jan/2013:22:28:21`, and numeric ones, `11-06-2013 02:09:40` (3proxy),
/// `17/07/08 17:23:25`. A numeric date whose first number cannot be a day of a month
/// whose second could (`01-27-2012`) is read month first, as US software writes it.
pub(super) fn parse_day_first(b: &[u8], i: usize) -> Option<Found> {
    let (first, j) = num1or2(b, i)?;
    let separator = *b.get(j).filter(|&&c| c == b'-' || c == b'/')?;
    let (day, month, year, time_start, named) = match month_abbrev(b, j + 1) {
        Some(month) => {
            expect(b, j + 4, separator)?;
            let year = year_at(b, j + 5)?;
            // `[ :]?` between date and time.
            let t = match b.get(j + 9) {
                Some(b' ' | b':') => j + 10,
                _ => j + 9,
            };
            (first, month, year, t, true)
        }
        None => {
            let (second, k) = num1or2(b, j + 1)?;
            expect(b, k, separator)?;
            let (year, after_year) = match year_at(b, k + 1) {
                Some(year) => (year, k + 5),
                None => (2000 + i64::from(num2(b, k + 1)?), k + 3),
            };
            expect(b, after_year, b' ')?;
            let (day, month) = if first > 12 || second <= 12 {
                (first, second)
            } else {
                (second, first)
            };
            (day, month, year, after_year + 1, false)
        }
    };
    let (hour, minute, second, after) = hms_loose(b, time_start)?;
    let (micros, j) = fraction(b, after)?;
    // Only the named-month forms carry an offset (`+0200` after a numeric date is some
    // other field of the line, 3proxy's for one).
    let (offset, end) = match (named, b.get(j), b.get(j + 1)) {
        (true, Some(b' '), Some(b'+' | b'-')) => offset_after_blank(b, j),
        _ => (None, j),
    };
    if is_digit_at(b, end) {
        return None;
    }
    Some(wall_found(
        (year, month, day),
        (hour, minute, second, micros),
        offset,
        i..end,
    ))
}

/// MySQL's (before 5.7) and MariaDB's error log: `130324  0:04:00`, `130324 17:56:13`
/// (`yymmdd`, then one blank before a two-digit hour, two before a one-digit one).
pub(super) fn parse_mysql(b: &[u8], i: usize) -> Option<Found> {
    let year = 2000 + i64::from(num2(b, i)?);
    let month = num2(b, i + 2)?;
    let day = num2(b, i + 4)?;
    expect(b, i + 6, b' ')?;
    let time_start = if b.get(i + 7) == Some(&b' ') {
        i + 8
    } else {
        i + 7
    };
    let (hour, minute, second, end) = hms_loose(b, time_start)?;
    if is_digit_at(b, end) {
        return None;
    }
    Some(wall_found(
        (year, month, day),
        (hour, minute, second, 0),
        None,
        i..end,
    ))
}

/// daemontools' TAI64N label, `@400000004c91b044077a9e94`: 2^62 plus the seconds, then
/// the nanoseconds, in hexadecimal. The seconds are taken as UTC seconds, as fail2ban and
/// multilog's users read them (the ten-odd seconds TAI runs ahead are not subtracted).
pub(super) fn parse_tai64n(b: &[u8], i: usize) -> Option<Found> {
    expect(b, i, b'@')?;
    let hex = |from: usize, len: usize| -> Option<u64> {
        let text = std::str::from_utf8(b.get(from..from + len)?).ok()?;
        if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok()
    };
    let label = hex(i + 1, 16)?;
    let nanos = hex(i + 17, 8)?;
    if b.get(i + 25).is_some_and(u8::is_ascii_hexdigit) || nanos >= 1_000_000_000 {
        return None;
    }
    let secs = i64::try_from(label.checked_sub(1 << 62)?).ok()?;
    Some(Found {
        time: Parsed::Utc {
            micros: secs.checked_mul(1_000_000)? + i64::try_from(nanos / 1000).ok()?,
        },
        span: i..i + 25,
    })
}
