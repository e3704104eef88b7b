//! The backtracking fallback: the few fail2ban regexes a linear-time engine cannot run
//! (lookarounds, backreferences, conditionals) go to `fancy-regex`, bounded per line by a
//! backtrack limit and a line length, and gated by a linear-time superset so that most lines
//! never reach it. [`Engine`] is the one type the matcher calls for either engine.

use super::spans::Slots;
use super::split::{SpanPath, Split};
use regex::bytes::Regex;
use std::fmt;

/// How many times a backtracking regex may backtrack on one line before giving up on it.
/// The sshd filter needs well under a thousand on ordinary lines.
pub const BACKTRACK_LIMIT: usize = 100_000;
/// The longest line a backtracking regex is run on; longer ones are given up on (a miss).
/// [`BACKTRACK_LIMIT`] alone does not bound the work: forward steps are not backtracking,
/// and a lookaround holding `.*` inside a repetition (`(?:(?=.*x)\S+ )+`) scans the rest
/// of the line at every step, which is quadratic in the line's length.
pub const BACKTRACKING_MAX_LINE: usize = 8 << 10;

/// Which engine runs a regex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The `regex` crate: linear time, bytes.
    Linear,
    /// `fancy-regex` with [`BACKTRACK_LIMIT`]: for lookarounds, backreferences, conditionals.
    Backtracking,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Linear => "linear",
            EngineKind::Backtracking => "backtracking",
        })
    }
}

/// A compiled regex on one of the two engines.
#[derive(Debug)]
pub(super) enum Engine {
    Linear {
        regex: Regex,
        /// Its spans without the capture engine, when its shape allows ([`Split`]).
        split: Option<Box<Split>>,
    },
    Backtracking {
        regex: fancy_regex::Regex,
        /// A linear-time regex matching a superset of `regex`'s matches (lookarounds
        /// dropped, conditionals made alternations): lines it rejects never reach the
        /// backtracking engine.
        gate: Option<Regex>,
    },
}

impl Engine {
    pub(super) fn kind(&self) -> EngineKind {
        match self {
            Engine::Linear { .. } => EngineKind::Linear,
            Engine::Backtracking { .. } => EngineKind::Backtracking,
        }
    }

    pub(super) fn span_path(&self) -> SpanPath {
        match self {
            Engine::Linear {
                split: Some(split), ..
            } => split.path(),
            Engine::Linear { .. } => SpanPath::WholeText,
            Engine::Backtracking { .. } => SpanPath::Backtracking,
        }
    }

    pub(super) fn capture_names(&self) -> Vec<Option<String>> {
        match self {
            Engine::Linear { regex: r, .. } => {
                r.capture_names().map(|n| n.map(str::to_string)).collect()
            }
            Engine::Backtracking { regex: r, .. } => {
                r.capture_names().map(|n| n.map(str::to_string)).collect()
            }
        }
    }

    pub(super) fn slots(&self) -> Slots {
        match self {
            Engine::Linear {
                regex: r,
                split: Some(split),
            } => Slots::Split {
                spans: vec![None; r.captures_len()],
                locs: r.capture_locations(),
                cache: Box::new(split.cache()),
            },
            Engine::Linear { regex: r, .. } => Slots::Linear(r.capture_locations()),
            Engine::Backtracking { regex: r, .. } => {
                Slots::Backtracking(vec![None; r.captures_len()])
            }
        }
    }

    /// Matches `text`, filling `slots`; `scratch` is the backtracking engine's.
    pub(super) fn captures_read(
        &self,
        slots: &mut Slots,
        text: &[u8],
        scratch: &mut BacktrackScratch,
    ) -> bool {
        match (self, slots) {
            (Engine::Linear { regex: r, .. }, Slots::Linear(locs)) => {
                r.captures_read(locs, text).is_some()
            }
            (
                Engine::Linear {
                    regex: r,
                    split: Some(split),
                },
                Slots::Split { spans, locs, cache },
            ) => match split.captures(text, cache, spans) {
                Some(matched) => matched,
                None => {
                    let matched = r.captures_read(locs, text).is_some();
                    for (i, span) in spans.iter_mut().enumerate() {
                        *span = locs.get(i);
                    }
                    matched
                }
            },
            (Engine::Backtracking { regex: r, gate }, Slots::Backtracking(spans)) => {
                if gate.as_ref().is_some_and(|g| !g.is_match(text)) {
                    return false;
                }
                run_backtracking(scratch, text, |line| {
                    Ok(r.captures(line).map_err(|_| GaveUp)?.map(|caps| {
                        for (i, span) in spans.iter_mut().enumerate() {
                            *span = caps.get(i).map(|m| (m.start(), m.end()));
                        }
                    }))
                })
                .is_some()
            }
            _ => false,
        }
    }

    pub(super) fn is_match(&self, text: &[u8], scratch: &mut BacktrackScratch) -> bool {
        match self {
            Engine::Linear { regex: r, .. } => r.is_match(text),
            Engine::Backtracking { regex: r, gate } => {
                gate.as_ref().is_none_or(|g| g.is_match(text))
                    && run_backtracking(scratch, text, |line| {
                        Ok(r.is_match(line).map_err(|_| GaveUp)?.then_some(()))
                    })
                    .is_some()
            }
        }
    }
}

/// What the backtracking engine keeps between lines.
#[derive(Debug, Default)]
pub(super) struct BacktrackScratch {
    /// UTF-8 copy of a line that is not UTF-8.
    pub(super) text: String,
    /// Searches given up on: line over [`BACKTRACKING_MAX_LINE`] or [`BACKTRACK_LIMIT`] hit.
    pub(super) gave_up: u64,
}

/// A backtracking search stopped by its limit.
pub(super) struct GaveUp;

/// Runs a backtracking `search` on `text`. A line too long for the engine, or a search
/// that reaches the backtrack limit, is a miss (the line is not worth more), counted.
pub(super) fn run_backtracking<T>(
    scratch: &mut BacktrackScratch,
    text: &[u8],
    search: impl FnOnce(&str) -> Result<Option<T>, GaveUp>,
) -> Option<T> {
    if text.len() > BACKTRACKING_MAX_LINE {
        scratch.gave_up += 1;
        return None;
    }
    search(as_str(text, &mut scratch.text)).unwrap_or_else(|_| {
        scratch.gave_up += 1;
        None
    })
}

/// `text` as `&str`: itself when it is UTF-8, else a copy in `scratch` with each invalid
/// byte replaced by `?`, so offsets into it are offsets into `text`.
pub(super) fn as_str<'a>(text: &'a [u8], scratch: &'a mut String) -> &'a str {
    if let Ok(s) = std::str::from_utf8(text) {
        return s;
    }
    scratch.clear();
    for chunk in text.utf8_chunks() {
        scratch.push_str(chunk.valid());
        scratch.extend(std::iter::repeat_n('?', chunk.invalid().len()));
    }
    scratch
}

/// A pattern that matches at least everything `pattern` (a backtracking one) matches, in
/// the `regex` crate's syntax, for literal analysis: lookarounds dropped, conditionals made
/// alternations, backreferences made "anything". Literals it requires, `pattern` requires.
pub(super) fn relax_for_literals(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &pattern[i..];
        if let Some(escaped) = rest.strip_prefix('\\') {
            match bytes.get(i + 1) {
                Some(b'1'..=b'9') => {
                    out.push_str("(?:.*)");
                    i += 2;
                }
                Some(b'k') => {
                    let end = rest.find('>').map_or(rest.len(), |e| e + 1);
                    out.push_str("(?:.*)");
                    i += end;
                }
                _ => {
                    let len = escaped.chars().next().map_or(1, |c| 1 + c.len_utf8());
                    out.push_str(&rest[..len]);
                    i += len;
                }
            }
            continue;
        }
        if ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .any(|l| rest.starts_with(l))
        {
            i += group_len(rest);
            continue;
        }
        if let Some(cond) = rest.strip_prefix("(?(") {
            let end = cond.find(')').map_or(cond.len(), |e| e + 1);
            out.push_str("(?:");
            i += 3 + end;
            continue;
        }
        if let Some(atomic) = rest.strip_prefix("(?>") {
            out.push_str("(?:");
            i += rest.len() - atomic.len();
            continue;
        }
        let c = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&rest[..c]);
        i += c;
    }
    out
}

/// The length of the group that `s` opens, up to its closing parenthesis (escapes and
/// character classes skipped); all of `s` if it is not closed.
pub(super) fn group_len(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut depth, mut i, mut in_class) = (0usize, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}
