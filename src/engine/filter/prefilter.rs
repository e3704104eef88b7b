//! The literal prefilter: the literals each failregex cannot match without, found by
//! analysing the regex, searched for in one Aho-Corasick pass, so that the lines no
//! failregex can match — most of them — cost one scan and no regex.

use super::tags::CompiledRegex;
use aho_corasick::{AhoCorasick, MatchKind};
use regex_syntax::hir::{Hir, HirKind};

/// Which failregexes a line could match, decided by literals alone.
#[derive(Debug)]
pub(super) struct Prefilter {
    pub(super) automaton: AhoCorasick,
    /// For each automaton pattern, the failregex it stands for.
    pub(super) pattern_regex: Vec<usize>,
    /// Failregexes without a usable literal: always candidates.
    pub(super) always: Vec<usize>,
}

impl Prefilter {
    /// False when no failregex can match `message`; otherwise sets `candidates[i]` for
    /// each failregex `i` that may.
    pub(super) fn mark_candidates(&self, message: &[u8], candidates: &mut [bool]) -> bool {
        // Most lines contain no literal at all: answer that with the automaton's fast
        // (SIMD-accelerated) search before doing the slower overlapping one.
        let literal_found = self.automaton.is_match(message);
        if !literal_found && self.always.is_empty() {
            return false;
        }
        candidates.fill(false);
        for &i in &self.always {
            candidates[i] = true;
        }
        if literal_found {
            for m in self.automaton.find_overlapping_iter(message) {
                candidates[self.pattern_regex[m.pattern().as_usize()]] = true;
            }
        }
        true
    }
}

/// Shortest literal worth prefiltering on: shorter ones hit nearly every line.
pub(super) const MIN_LITERAL: usize = 3;

pub(super) fn build_prefilter(fail: &[CompiledRegex]) -> Option<Prefilter> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut pattern_regex = Vec::new();
    let mut always = Vec::new();
    for (i, compiled) in fail.iter().enumerate() {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(&compiled.translated)
            .ok();
        match hir.as_ref().and_then(required_literals) {
            Some(set) if set.iter().all(|l| l.len() >= MIN_LITERAL) => {
                for lit in set {
                    patterns.push(lit);
                    pattern_regex.push(i);
                }
            }
            _ => always.push(i),
        }
    }
    if patterns.is_empty() {
        return None;
    }
    let automaton = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(&patterns)
        .ok()?;
    Some(Prefilter {
        automaton,
        pattern_regex,
        always,
    })
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
