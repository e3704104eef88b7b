//! The literal gate: the literals each failregex cannot match without, found by analysing
//! the regex, searched for in one Aho-Corasick pass over the whole message. The
//! multi-pattern pass reads a prefregex's content, so it can only run after the prefregex;
//! when that prefregex needs the capture engine, this gate keeps the lines no failregex can
//! match — most of them — from paying for it.

use super::tags::CompiledRegex;
use aho_corasick::{AhoCorasick, MatchKind};
use regex_syntax::hir::{Hir, HirKind};

/// Whether any failregex could match a line, decided by literals alone.
#[derive(Debug)]
pub(super) struct LiteralGate {
    automaton: AhoCorasick,
}

impl LiteralGate {
    /// False when no failregex can match `message`.
    pub(super) fn may_match(&self, message: &[u8]) -> bool {
        self.automaton.is_match(message)
    }
}

/// Shortest literal worth prefiltering on: shorter ones hit nearly every line.
pub(super) const MIN_LITERAL: usize = 3;

/// The gate, when every failregex has a literal (a regex without one would let every line
/// through).
pub(super) fn build_gate(fail: &[CompiledRegex]) -> Option<LiteralGate> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    for compiled in fail {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(&compiled.translated)
            .ok();
        match hir.as_ref().and_then(required_literals) {
            Some(set) if set.iter().all(|l| l.len() >= MIN_LITERAL) => {
                patterns.extend(set);
            }
            _ => return None,
        }
    }
    if patterns.is_empty() {
        return None;
    }
    let automaton = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(&patterns)
        .ok()?;
    Some(LiteralGate { automaton })
}

/// A set of literals of which any match of `hir` contains at least one, preferring the set
/// whose shortest member is longest (a longer literal rejects more lines).
pub(super) fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(vec![lit.0.to_vec()]),
        HirKind::Capture(cap) => required_literals(&cap.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => required_literals(&rep.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .filter_map(required_literals)
            .max_by_key(|set| set.iter().map(Vec::len).min().unwrap_or(0)),
        HirKind::Alternation(subs) => {
            let mut all = Vec::new();
            for sub in subs {
                all.extend(required_literals(sub)?);
            }
            Some(all)
        }
        _ => None,
    }
}
