//! The prefregex shortcut: for the common shape `PREFIX<F-CONTENT>.+</F-CONTENT>$`, PREFIX
//! alone finds the content, without running captures over the whole line.

use super::backtracking::EngineKind;
use super::tags::{translate_tags, FIELD_GROUP_PREFIX, MLFID_FIELD};
use super::Dialect;
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use regex_syntax::hir::{Hir, HirKind};

/// The prefix of a prefregex `PREFIX<F-CONTENT>.+</F-CONTENT>$` (or `.*`), when PREFIX has
/// no tags of its own.
#[derive(Debug)]
pub(super) struct PrefixOnly {
    pub(super) prefix: Regex,
    pub(super) content_may_be_empty: bool,
    /// The prefix's `<F-MLFID>` group, its only capture if any.
    pub(super) mlfid_group: Option<usize>,
    /// The prefix has no assertion but its leading `^`: its captures can be taken on the
    /// text it matched alone, which is much shorter than the line.
    pub(super) captures_on_match: bool,
}

impl PrefixOnly {
    /// The content, when the shortcut gives exactly what the full prefregex would: the
    /// prefix's own leftmost-first match is the full regex's choice as long as what follows
    /// can be matched by `.+$`, i.e. is non-empty (for `.+`) and has no newline. Otherwise
    /// `None`, and the caller runs the full prefregex.
    pub(super) fn content<'a>(&self, message: &'a [u8]) -> Option<&'a [u8]> {
        let m = self.prefix.find(message)?;
        self.rest(message, (m.start(), m.end()))
    }

    /// [`PrefixOnly::content`], with the prefix's captures (the session id) in `locs`. The
    /// full regex's leftmost-first choice of the prefix is the prefix's own, so the
    /// captures are the same too.
    pub(super) fn content_captured<'a>(
        &self,
        message: &'a [u8],
        locs: &mut CaptureLocations,
    ) -> Option<&'a [u8]> {
        self.prefix.captures_read(locs, message)?;
        self.rest(message, locs.get(0)?)
    }

    /// The prefix's captures in `locs`, for a line whose prefix match is known to end at
    /// `end`: without assertions that look past it, the match on `message[..end]` is the
    /// same match, found in a fraction of the time.
    pub(super) fn captures_ending_at(
        &self,
        message: &[u8],
        end: usize,
        locs: &mut CaptureLocations,
    ) -> bool {
        if self.captures_on_match {
            if let Some(prefix) = message.get(..end) {
                if self.prefix.captures_read(locs, prefix).is_some()
                    && locs.get(0) == Some((0, end))
                {
                    return true;
                }
            }
        }
        self.prefix.captures_read(locs, message).is_some()
    }

    pub(super) fn rest<'a>(
        &self,
        message: &'a [u8],
        (start, end): (usize, usize),
    ) -> Option<&'a [u8]> {
        if start != 0 {
            return None;
        }
        let rest = &message[end..];
        if (rest.is_empty() && !self.content_may_be_empty) || memchr::memchr(b'\n', rest).is_some()
        {
            return None;
        }
        Some(rest)
    }
}

pub(super) fn prefix_only(prefregex: &str, dialect: Dialect) -> Option<PrefixOnly> {
    let (prefix, may_be_empty) =
        if let Some(p) = prefregex.strip_suffix("<F-CONTENT>.+</F-CONTENT>$") {
            (p, false)
        } else {
            (prefregex.strip_suffix("<F-CONTENT>.*</F-CONTENT>$")?, true)
        };
    if !prefix.starts_with('^') || prefix.ends_with('\\') {
        return None;
    }
    let translated = translate_tags(prefix, EngineKind::Linear, dialect).ok()?;
    if translated.needs_backtracking {
        return None;
    }
    let prefix = RegexBuilder::new(&translated.pattern)
        .unicode(false)
        .build()
        .ok()?;
    // Tags in the prefix (an address, a user) need the full prefregex; a session id alone
    // is captured by the shortcut when it is wanted.
    let mlfid_name = format!("{FIELD_GROUP_PREFIX}{MLFID_FIELD}");
    let mlfid_group = match prefix.captures_len() {
        1 => None,
        2 if prefix.capture_names().nth(1).flatten() == Some(mlfid_name.as_str()) => Some(1),
        _ => return None,
    };
    let captures_on_match = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(&translated.pattern)
        .is_ok_and(|hir| looks_only_at_start(&hir));
    Some(PrefixOnly {
        prefix,
        content_may_be_empty: may_be_empty,
        mlfid_group,
        captures_on_match,
    })
}

/// Whether the only assertion in `hir` is the start of the text.
pub(super) fn looks_only_at_start(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Look(look) => *look == regex_syntax::hir::Look::Start,
        HirKind::Capture(cap) => looks_only_at_start(&cap.sub),
        HirKind::Repetition(rep) => looks_only_at_start(&rep.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().all(looks_only_at_start),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => true,
    }
}
