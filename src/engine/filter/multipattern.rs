//! One pass for a whole filter: a multi-pattern lazy DFA over every failregex and
//! ignoreregex says which of them match a text, so that a line none matches costs that one
//! scan, and of a line that matches only the first matching failregex runs an engine that
//! reads spans, and only the matching ignoreregexes are looked at.
//!
//! The DFA's cache is bounded: when a hostile line makes it thrash, the search falls back to
//! the PikeVM (linear in the line too), so no line costs more than linear time. A
//! backtracking regex is represented by its linear-time superset (lookarounds dropped,
//! conditionals made alternations): the pass says it *may* match, and the backtracking
//! engine decides.

use regex_automata::meta;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};

/// Compiled size allowed for the whole set; a filter above it goes without the pass (every
/// regex is then tried in turn, as each one's own size limit allows).
const SET_SIZE_LIMIT: usize = 64 << 20;
/// The lazy DFA's cache, per matcher. Above it the DFA starts over, and after a few restarts
/// the search goes to the PikeVM.
const DFA_CACHE: usize = 2 << 20;

/// Which regexes of a filter a text matches, in one pass.
#[derive(Debug)]
pub(super) struct MultiPattern {
    regex: meta::Regex,
    fail_count: usize,
}

/// What the pass keeps between lines: the DFA's cache and the last answer.
#[derive(Debug, Clone)]
pub(super) struct MultiCache {
    cache: meta::Cache,
    matched: PatternSet,
}

impl MultiPattern {
    /// The pass over `fail` then `ignore` (linear-time patterns, in the `regex` crate's
    /// syntax on bytes; `None`: a regex that always has to be tried). `multi_line`: `^`/`$`
    /// match at each line of a window. `None` when the set does not compile within its limit.
    pub(super) fn new(
        fail: &[Option<&str>],
        ignore: &[Option<&str>],
        multi_line: bool,
    ) -> Option<MultiPattern> {
        // The empty pattern matches every text: "always try this one".
        let patterns: Vec<&str> = fail.iter().chain(ignore).map(|p| p.unwrap_or("")).collect();
        let regex = meta::Regex::builder()
            .syntax(
                syntax::Config::new()
                    .unicode(false)
                    .utf8(false)
                    .multi_line(multi_line),
            )
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::All)
                    .utf8_empty(false)
                    .nfa_size_limit(Some(SET_SIZE_LIMIT))
                    .hybrid_cache_capacity(DFA_CACHE),
            )
            .build_many(&patterns)
            .ok()?;
        Some(MultiPattern {
            regex,
            fail_count: fail.len(),
        })
    }

    pub(super) fn cache(&self) -> MultiCache {
        MultiCache {
            cache: self.regex.create_cache(),
            matched: PatternSet::new(self.regex.pattern_len()),
        }
    }

    /// Runs the pass over `text`; false when no failregex can match it (the ignoreregexes
    /// then do not matter). The answers are read with [`MultiPattern::may_fail`] and
    /// [`MultiPattern::may_ignore`].
    pub(super) fn search(&self, text: &[u8], cache: &mut MultiCache) -> bool {
        cache.matched.clear();
        self.regex.which_overlapping_matches_with(
            &mut cache.cache,
            &Input::new(text),
            &mut cache.matched,
        );
        cache
            .matched
            .iter()
            .next()
            .is_some_and(|p| p.as_usize() < self.fail_count)
    }

    /// Whether failregex `i` may match the text of the last [`MultiPattern::search`] (for a
    /// linear-time regex: does).
    pub(super) fn may_fail(&self, cache: &MultiCache, i: usize) -> bool {
        PatternID::new(i).is_ok_and(|p| cache.matched.contains(p))
    }

    /// Whether ignoreregex `j` may match the text of the last search.
    pub(super) fn may_ignore(&self, cache: &MultiCache, j: usize) -> bool {
        PatternID::new(self.fail_count + j).is_ok_and(|p| cache.matched.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_which_patterns_match() {
        let set = MultiPattern::new(
            &[Some("^a+b$"), Some("^a"), Some("(?-u:\\xff)")],
            &[Some("c$"), None],
            false,
        )
        .unwrap();
        let mut cache = set.cache();
        assert!(set.search(b"aab", &mut cache));
        assert!(set.may_fail(&cache, 0) && set.may_fail(&cache, 1));
        assert!(!set.may_fail(&cache, 2) && !set.may_ignore(&cache, 0));
        // An ignoreregex that always has to be tried is reported on every text.
        assert!(set.may_ignore(&cache, 1));
        assert!(set.search(b"x\xff c", &mut cache));
        assert!(!set.may_fail(&cache, 0) && set.may_fail(&cache, 2) && set.may_ignore(&cache, 0));
        // Only ignoreregexes match: no failure is possible.
        assert!(!set.search(b"zzc", &mut cache));
    }

    #[test]
    fn windows_anchor_at_each_line() {
        let set = MultiPattern::new(&[Some("^b$")], &[], true).unwrap();
        let mut cache = set.cache();
        assert!(set.search(b"a\nb\nc", &mut cache));
        let single = MultiPattern::new(&[Some("^b$")], &[], false).unwrap();
        let mut cache = single.cache();
        assert!(!single.search(b"a\nb\nc", &mut cache));
    }
}
