//! Custom date patterns: fail2ban's `datepattern`, for logs whose dates banhound's built-in
//! templates do not know, or sit where they would not look.
//!
//! A pattern is a regex in which strftime directives (`%Y`, `%m`, `%d`, `%H`, `%M`, `%S`,
//! `%f`, `%b`, `%p`, `%z`, fail2ban's `%ExY` …) stand for the date's fields, plus fail2ban's
//! markers, as its manual describes them:
//! - `{^LN-BEG}` in front anchors the date at the start of the line (after at most two
//!   characters); alone, it means the standard templates at the start of the line;
//! - `{DATE}` is where one of the standard dates stands (`^[^\[]*\[({DATE})`);
//! - `{DEFAULT}` is the standard detection; `{NONE}`: lines have no date;
//! - `{UNB}` in front: no word boundaries around the date;
//! - `Epoch`/`EPOCH` are Unix seconds, `ISO8601` an ISO 8601 date and time;
//! - several patterns, one a line, are tried in order.
//!
//! `TAI64N` is one of the standard templates, so a `TAI64N` alternative is the standard
//! detection (at the start of the line with `{^LN-BEG}`). The regexes run on the `regex` crate, so a
//! pattern costs linear time on hostile lines; the date detector gives them only the start of
//! a line (its search window).

use regex::bytes::{Regex, RegexBuilder};

/// Why a `datepattern` is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatePatternError {
    #[error("unknown directive %{0} in the date pattern")]
    Directive(String),
    #[error("the date pattern does not compile: {0}")]
    Regex(String),
    #[error("an empty date pattern")]
    Empty,
}

/// A compiled `datepattern`: alternatives tried in order.
#[derive(Clone, Debug)]
pub struct DatePattern {
    pub(crate) alternatives: Vec<Alternative>,
    source: String,
}

#[derive(Clone, Debug)]
pub(crate) enum Alternative {
    /// A regex with strftime fields.
    Format(FormatRegex),
    /// A standard date, at the end of `prefix`'s match (`{DATE}`), at the start of the line
    /// (`anchored`), or wherever the standard detection finds one.
    Standard {
        prefix: Option<Prefix>,
        anchored: bool,
    },
    /// `{NONE}`: no date.
    NoDate,
}

/// What comes before `{DATE}` in a pattern.
#[derive(Clone, Debug)]
pub(crate) struct Prefix {
    pub(crate) regex: Regex,
    /// The pattern gives the date no group of its own (`^<W>{DATE}`), so, as in fail2ban,
    /// its whole match is the date and is cut from the line, the prefix with it; with a
    /// group (`^[^\[]*\[({DATE})`) the group is: from where it opens (the capture group
    /// `group` of `regex`, in which the groups open at `{DATE}` are closed there) to where
    /// it closes, after the date and `group_rest` (`\s*\]` in `(\[{DATE}\s*\])`).
    pub(crate) cut: bool,
    pub(crate) group: Option<usize>,
    pub(crate) group_rest: Option<Regex>,
}

/// The capture groups of a format regex.
#[derive(Clone, Debug)]
pub(crate) struct FormatRegex {
    regex: Regex,
    /// The date's own group (the pattern's first group, if it has one of its own), else the
    /// whole match.
    date_group: Option<usize>,
}

/// The fields of a date a format regex found; what is missing is inferred by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DateFields {
    pub year: Option<i64>,
    pub month: Option<u32>,
    pub day: Option<u32>,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
    /// `%p`: Some(true) for PM.
    pub pm: Option<bool>,
    /// Seconds east of UTC, when the date says.
    pub offset: Option<i32>,
    /// `%s` / Epoch: the instant itself (seconds, micros).
    pub epoch: Option<(i64, u32)>,
    pub span: std::ops::Range<usize>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

impl DatePattern {
    pub fn parse(text: &str) -> Result<DatePattern, DatePatternError> {
        let mut alternatives = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            alternatives.push(parse_alternative(line)?);
        }
        if alternatives.is_empty() {
            return Err(DatePatternError::Empty);
        }
        Ok(DatePattern {
            alternatives,
            source: text.trim().to_string(),
        })
    }

    /// The pattern as written, for reports.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn parse_alternative(text: &str) -> Result<Alternative, DatePatternError> {
    let (line_start, rest) = match text.strip_prefix("{^LN-BEG}") {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (unbounded, rest) = match rest.strip_prefix("{UNB}") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    match rest {
        "" | "{DEFAULT}" | "TAI64N" => {
            return Ok(Alternative::Standard {
                prefix: None,
                anchored: line_start,
            })
        }
        "{NONE}" => return Ok(Alternative::NoDate),
        _ => {}
    }
    if let Some((before, after)) = rest.split_once("{DATE}") {
        let prefix = if before.is_empty() || before == "^" {
            None
        } else {
            let open = unclosed_groups(before);
            match open.first() {
                None => Some(Prefix {
                    cut: true,
                    regex: compile(before)?,
                    group: None,
                    group_rest: None,
                }),
                Some(&outermost) => {
                    let closed = format!("{before}{}", ")".repeat(open.len()));
                    let rest_of_group = group_rest(after, open.len());
                    Some(Prefix {
                        cut: false,
                        regex: compile(&closed)?,
                        group: Some(capturing_groups_before(before, outermost) + 1),
                        group_rest: match rest_of_group {
                            "" => None,
                            r => Some(compile(&format!("^(?:{r})"))?),
                        },
                    })
                }
            }
        };
        return Ok(Alternative::Standard {
            anchored: prefix.is_none() && (line_start || before == "^"),
            prefix,
        });
    }
    let body = match rest {
        // Unix seconds, and a fraction of three to six digits (fail2ban's reading: a
        // shorter or longer one is not part of the date).
        "Epoch" | "EPOCH" => r"%s(?:\.(?P<f>\d{3,6}))?".to_string(),
        "ISO8601" => r"%Y-%m-%d[T ]%H:%M:%S(?:[.,]%f)?(?:\s*%z)?".to_string(),
        other => other.to_string(),
    };
    let translated = translate(&body)?;
    let anchored = line_start || body.starts_with('^');
    let mut pattern = String::new();
    if line_start {
        pattern.push_str(r"^.{0,2}?");
    }
    let own_groups = translated.own_groups;
    let starts_with_field = body.starts_with('%');
    let ends_with_field = body
        .rfind('%')
        .is_some_and(|p| p + 2 >= body.len() || body[p..].starts_with("%Ex"));
    if !unbounded && !anchored && starts_with_field {
        pattern.push_str(r"\b");
    }
    pattern.push_str("(?P<__date>");
    pattern.push_str(&translated.regex);
    pattern.push(')');
    if !unbounded && ends_with_field {
        pattern.push_str(r"\b");
    }
    let regex = compile(&pattern)?;
    let date_group = if own_groups {
        // The pattern's own first group (after `__date`) is the date.
        Some(2)
    } else {
        None
    };
    Ok(Alternative::Format(FormatRegex { regex, date_group }))
}

fn compile(pattern: &str) -> Result<Regex, DatePatternError> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(false)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| DatePatternError::Regex(e.to_string().lines().last().unwrap_or("").into()))
}

/// Where the groups a cut at `{DATE}` leaves open start in `prefix`, outermost first.
fn unclosed_groups(prefix: &str) -> Vec<usize> {
    let bytes = prefix.as_bytes();
    let mut open = Vec::new();
    let mut i = 0;
    let mut in_class = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => open.push(i),
            b')' if !in_class => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    open
}

/// How many capturing groups open in `pattern` before byte `at` (`(` not followed by `?`,
/// or `(?P<`): the regex crate numbers groups by their opening parenthesis.
fn capturing_groups_before(pattern: &str, at: usize) -> usize {
    let bytes = &pattern.as_bytes()[..at];
    let mut count = 0;
    let mut i = 0;
    let mut in_class = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => {
                let rest = &pattern.as_bytes()[i + 1..];
                if !rest.starts_with(b"?") || rest.starts_with(b"?P<") {
                    count += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    count
}

/// The text of `after` (what follows `{DATE}`) up to where the `open` groups left open at
/// `{DATE}` are all closed.
fn group_rest(after: &str, open: usize) -> &str {
    let bytes = after.as_bytes();
    let mut depth = open;
    let mut i = 0;
    let mut in_class = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return &after[..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    after
}

struct Translated {
    regex: String,
    /// The pattern has capture groups of its own (not `(?:`).
    own_groups: bool,
}

/// strftime directives to named groups; the rest is regex and stays.
fn translate(pattern: &str) -> Result<Translated, DatePatternError> {
    let mut out = String::with_capacity(pattern.len() * 4);
    let mut own_groups = false;
    let mut seen: Vec<&'static str> = Vec::new();
    let mut chars = pattern.char_indices().peekable();
    let bytes = pattern.as_bytes();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '(' if pattern[i..].starts_with("(?P=") => {
                // A backreference (`(?P=_sep)`), which a linear-time engine lacks: the
                // group's pattern again, a little looser than the same text again.
                let rest = &pattern[i + 4..];
                let end = rest
                    .find(')')
                    .ok_or(DatePatternError::Regex("(?P=".into()))?;
                let name = &rest[..end];
                let body = group_body(pattern, name)
                    .ok_or_else(|| DatePatternError::Regex(format!("no group {name}")))?;
                out.push_str("(?:");
                out.push_str(&translate(body)?.regex);
                out.push(')');
                for _ in 0..4 + end {
                    chars.next();
                }
            }
            '(' => {
                if bytes.get(i + 1) != Some(&b'?') {
                    own_groups = true;
                }
                out.push(c);
            }
            '%' => {
                let mut directive = String::new();
                if pattern[i + 1..].starts_with("Ex") {
                    chars.next();
                    chars.next();
                    directive.push_str("Ex");
                }
                let Some((_, d)) = chars.next() else {
                    return Err(DatePatternError::Directive(String::new()));
                };
                directive.push(d);
                let (name, regex) = directive_regex(&directive)?;
                match name {
                    // A repeated field is matched again, not captured twice.
                    Some(n) if seen.contains(&n) => out.push_str(&format!("(?:{regex})")),
                    Some(n) => {
                        seen.push(n);
                        out.push_str(&format!("(?P<{n}>{regex})"));
                    }
                    None => out.push_str(regex),
                }
            }
            _ => out.push(c),
        }
    }
    Ok(Translated {
        regex: out,
        own_groups,
    })
}

/// The pattern inside `(?P<name>…)`.
fn group_body<'a>(pattern: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("(?P<{name}>");
    let start = pattern.find(&open)? + open.len();
    let bytes = pattern.as_bytes();
    let (mut depth, mut i, mut in_class) = (1usize, start, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return Some(&pattern[start..i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A directive's group name (None: matched, not used) and regex.
fn directive_regex(d: &str) -> Result<(Option<&'static str>, &'static str), DatePatternError> {
    Ok(match d {
        "Y" | "ExY" => (Some("Y"), r"\d{4}"),
        "y" | "Exy" => (Some("y"), r"\d{2}"),
        "m" | "Exm" => (Some("m"), r"1[0-2]|0?[1-9]"),
        "d" | "Exd" => (Some("d"), r"3[01]|[12]\d|0?[1-9]"),
        "e" => (Some("d"), r" ?(?:3[01]|[12]\d|[1-9])"),
        "H" | "ExH" | "k" => (Some("H"), r"2[0-3]|[01]?\d| ?\d"),
        "I" | "l" => (Some("I"), r"1[0-2]|0?[1-9]| [1-9]"),
        "M" | "ExM" => (Some("M"), r"[0-5]?\d"),
        "S" | "ExS" => (Some("S"), r"6[01]|[0-5]?\d"),
        "f" => (Some("f"), r"\d{1,6}"),
        "p" => (Some("p"), r"[AaPp][Mm]"),
        "b" | "B" | "h" => (
            Some("b"),
            r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)",
        ),
        "a" | "A" => (
            None,
            r"(?i:mon(?:day)?|tue(?:sday)?|wed(?:nesday)?|thu(?:rsday)?|fri(?:day)?|sat(?:urday)?|sun(?:day)?)",
        ),
        "z" => (Some("z"), r"Z|[+-]\d{2}(?::?\d{2})?"),
        "Z" => (Some("Z"), r"[A-Z]{3,5}"),
        "s" => (Some("s"), r"\d{10,11}"),
        "%" => (None, "%"),
        other => return Err(DatePatternError::Directive(other.to_string())),
    })
}

impl FormatRegex {
    /// The date fields in `window`, the start of a line where dates are looked for.
    pub(crate) fn fields(&self, window: &[u8]) -> Option<DateFields> {
        let caps = self.regex.captures(window)?;
        let text = |name: &str| caps.name(name).map(|m| m.as_bytes());
        let num = |name: &str| -> Option<Option<u32>> {
            match text(name) {
                None => Some(None),
                Some(t) => std::str::from_utf8(t).ok()?.trim().parse().ok().map(Some),
            }
        };
        let date = self
            .date_group
            .and_then(|g| caps.get(g))
            .or_else(|| caps.name("__date"))?;
        let mut f = DateFields {
            span: date.start()..date.end(),
            ..DateFields::default()
        };
        f.year = match (num("Y")?, num("y")?) {
            (Some(y), _) => Some(i64::from(y)),
            (None, Some(y)) => Some(2000 + i64::from(y)),
            (None, None) => None,
        };
        f.month = match (num("m")?, text("b")) {
            (Some(m), _) => Some(m),
            (None, Some(b)) => {
                let lower = b.get(..3)?.to_ascii_lowercase();
                Some(MONTHS.iter().position(|m| m.as_bytes() == lower)? as u32 + 1)
            }
            (None, None) => None,
        };
        f.day = num("d")?;
        let hour12 = num("I")?;
        f.hour = num("H")?.or(hour12).unwrap_or(0);
        f.minute = num("M")?.unwrap_or(0);
        f.second = num("S")?.unwrap_or(0);
        if let Some(frac) = text("f") {
            let mut micros = 0u32;
            for k in 0..6 {
                micros = micros * 10 + frac.get(k).map_or(0, |d| u32::from(d - b'0'));
            }
            f.micros = micros;
        }
        if let Some(p) = text("p") {
            let pm = p.eq_ignore_ascii_case(b"pm");
            f.pm = Some(pm);
            if hour12.is_some() {
                f.hour = f.hour % 12 + if pm { 12 } else { 0 };
            }
        }
        f.offset = match text("z").or(text("Z")) {
            None => None,
            Some(b"Z" | b"UTC" | b"GMT") => Some(0),
            Some(z) if z.starts_with(b"+") || z.starts_with(b"-") => Some(parse_zone(z)?),
            // A zone name other than UTC: the configured zone applies.
            Some(_) => None,
        };
        if let Some(s) = num("s")? {
            f.epoch = Some((i64::from(s), f.micros));
        }
        Some(f)
    }
}

/// `+HH`, `+HHMM`, `+HH:MM` to seconds east of UTC.
fn parse_zone(z: &[u8]) -> Option<i32> {
    let sign = if z[0] == b'-' { -1 } else { 1 };
    let digits: Vec<u8> = z[1..].iter().copied().filter(u8::is_ascii_digit).collect();
    let n = |s: &[u8]| -> Option<i32> { std::str::from_utf8(s).ok()?.parse().ok() };
    let (h, m) = match digits.len() {
        2 => (n(&digits)?, 0),
        4 => (n(&digits[..2])?, n(&digits[2..])?),
        _ => return None,
    };
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pattern: &str, line: &str) -> Option<DateFields> {
        let p = DatePattern::parse(pattern).unwrap();
        match &p.alternatives[0] {
            Alternative::Format(f) => f.fields(line.as_bytes()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strftime_fields() {
        let f = fields("^%Y-%m-%d %H:%M:%S", "2026-11-17 10:00:01 x").unwrap();
        assert_eq!(
            (f.year, f.month, f.day, f.hour, f.minute, f.second),
            (Some(2026), Some(11), Some(17), 10, 0, 1)
        );
        assert_eq!(f.span, 0..19);
        let f = fields("^%b %d, %ExY %I:%M:%S %p", "Nov 17, 2026 1:02:03 PM org.x").unwrap();
        assert_eq!((f.month, f.hour, f.minute), (Some(11), 13, 2));
        let f = fields("^%H:%M:%S.%f", "10:00:01.25 WARN x").unwrap();
        assert_eq!((f.year, f.hour, f.micros), (None, 10, 250_000));
        let f = fields(r"^\[%d/%b/%Y %H:%M:%S\]", "[17/Nov/2026 10:00:01] x").unwrap();
        assert_eq!(f.span, 0..22);
        let f = fields(r"^t=%Y-%m-%dT%H:%M:%S%z", "t=2026-11-17T10:00:01+0200 x").unwrap();
        assert_eq!(f.offset, Some(7200));
        assert!(fields("^%Y-%m-%d", "x 2026-11-17").is_none());
    }

    #[test]
    fn line_start_epoch_and_groups() {
        let f = fields("{^LN-BEG}Epoch", "1794909601.500 x").unwrap();
        assert_eq!(f.epoch, Some((1_794_909_601, 500_000)));
        let f = fields("{^LN-BEG}Epoch", "1794909601.5 x").unwrap();
        assert_eq!((f.epoch, f.span), (Some((1_794_909_601, 0)), 0..10));
        let f = fields("EPOCH", "at 1794909601 x").unwrap();
        assert_eq!((f.epoch, f.span), (Some((1_794_909_601, 0)), 3..13));
        // The pattern's own group is the date; the backreference is the group's pattern.
        let f = fields(
            r"^(?:=[^=]+={3,} )?(%ExY(?P<_sep>[-/.])%m(?P=_sep)%d)",
            "=[ x ]=== 2026/11/17 x",
        )
        .unwrap();
        assert_eq!((f.year, f.day, f.span), (Some(2026), Some(17), 10..20));
    }

    #[test]
    fn markers() {
        let p = DatePattern::parse(r"^[^\[]*\[({DATE})").unwrap();
        assert!(matches!(
            &p.alternatives[0],
            Alternative::Standard {
                prefix: Some(_),
                anchored: false
            }
        ));
        let p = DatePattern::parse("{^LN-BEG}").unwrap();
        assert!(matches!(
            &p.alternatives[0],
            Alternative::Standard {
                prefix: None,
                anchored: true
            }
        ));
        assert!(matches!(
            DatePattern::parse("{^LN-BEG}TAI64N").unwrap().alternatives[..],
            [Alternative::Standard {
                prefix: None,
                anchored: true
            }]
        ));
        assert!(matches!(
            DatePattern::parse("%Q"),
            Err(DatePatternError::Directive(_))
        ));
        let p = DatePattern::parse("^%b %d, %ExY %I:%M:%S %p\n{^LN-BEG}").unwrap();
        assert_eq!(p.alternatives.len(), 2);
        assert_eq!(unclosed_groups(r"^[^\[(]*(\[(x)\("), vec![8]);
        assert_eq!(capturing_groups_before(r"^(a)(?:b)(?P<c>d)\(([(])", 20), 3);
        assert_eq!(group_rest(r"\s*(?:x)\]) tail", 1), r"\s*(?:x)\]");
        assert_eq!(group_rest(r") tail", 1), "");
    }
}
