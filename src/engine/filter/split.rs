//! Spans without running the capture engine over the whole line, for the two shapes nearly
//! every failregex has:
//! - `^PREFIX<F-USER>.*</F-USER>SUFFIX$`: a fixed prefix, a free-form user name, and a
//!   server-written tail (with the address) pinned to the end of the line;
//! - `^PREFIX REST`, PREFIX without groups: everything up to the first tag is fixed text,
//!   found by a DFA, and only REST (from the address on, typically) needs captures.
//!
//! The second shape: the full regex tries PREFIX's ways of matching in PREFIX's own order of
//! preference, and takes the first after which REST matches. PREFIX's own leftmost-first
//! match is the first of those ways; when REST matches (anchored) where it ends, that is the
//! full regex's match, with REST's captures from there. When REST does not, the answer is
//! "undecided" and the caller runs the full regex.
//!
//! The first shape:
//! The capture engine would try every end of the greedy `.*` from the right, and the rest of
//! the regex at each one. The same answer comes from automata: the user name ends where the
//! rightmost match of SUFFIX anchored at the end of the line starts (one reverse lazy-DFA scan
//! from the end, stopping at the first match it sees), and it starts where PREFIX's own
//! leftmost-first match ends. Only SUFFIX's groups (the address) need captures, and on that
//! short tail alone. Exactness holds as long as PREFIX's first choice ends before the tail;
//! when it does not (or a newline is in the way of `.`), [`Split::captures`] answers
//! "undecided" and the caller runs the full regex.

use regex::bytes::{Regex, RegexBuilder};
use regex_automata::hybrid::dfa::{Cache as RevCache, DFA};
use regex_automata::meta;
use regex_automata::nfa::thompson;
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

const USER_GROUP: &str = "(?P<F_USER>.*)";

/// How a failregex's spans are read from a line it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpanPath {
    /// `^PREFIX<F-USER>.*</F-USER>SUFFIX$`: DFAs find the user name's ends, and the capture
    /// engine runs on SUFFIX alone.
    AroundUser,
    /// `^PREFIX REST`: a DFA finds PREFIX, and the capture engine runs from the first group on.
    AfterPrefix,
    /// The linear capture engine over the whole text.
    WholeText,
    /// The bounded backtracking engine (lookarounds, backreferences, conditionals).
    Backtracking,
}

impl std::fmt::Display for SpanPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpanPath::AroundUser => "around the user name",
            SpanPath::AfterPrefix => "after a fixed prefix",
            SpanPath::WholeText => "capture engine over the whole text",
            SpanPath::Backtracking => "backtracking",
        })
    }
}

/// A regex split around its top-level `<F-USER>.*</F-USER>`, or before its first group.
#[derive(Debug)]
pub(super) struct Split {
    /// PREFIX, with its leading `^`.
    prefix: Regex,
    /// SUFFIX reversed, to find where it starts from the end of the line; `None` for the
    /// shape without a user name (REST follows PREFIX directly).
    suffix_rev: Option<DFA>,
    /// SUFFIX (or REST) forward, for its captures from where it starts.
    suffix: meta::Regex,
    /// SUFFIX's group `j` is the full regex's `group_offset + j`: after the user group, or
    /// (REST) after group 0.
    group_offset: usize,
    group_count: usize,
}

/// What [`Split::captures`] needs between lines.
#[derive(Debug)]
pub(super) struct SplitCache {
    rev: Option<RevCache>,
    suffix: meta::Cache,
    captures: Captures,
}

impl Split {
    /// The split of a translated single-line pattern (`regex` compiled from it), when it has
    /// the shape: starts with `^`, ends with `$`, `(?P<F_USER>.*)` at the top level, no
    /// top-level alternation, no flags that would scope over both halves, and no named group
    /// in the prefix.
    pub(super) fn new(pattern: &str, regex: &Regex) -> Option<Split> {
        if !pattern.starts_with('^') {
            return None;
        }
        Split::around_user(pattern, regex).or_else(|| Split::before_groups(pattern, regex))
    }

    fn around_user(pattern: &str, regex: &Regex) -> Option<Split> {
        if !pattern.ends_with('$') || pattern.ends_with("\\$") {
            return None;
        }
        let at = pattern.find(USER_GROUP)?;
        let (prefix, suffix) = (&pattern[..at], &pattern[at + USER_GROUP.len()..]);
        if !plain_top_level(prefix) || !plain_top_level(suffix) || prefix.contains("(?P<") {
            return None;
        }
        let syntax = syntax::Config::new().unicode(false).utf8(false);
        let prefix = RegexBuilder::new(prefix).unicode(false).build().ok()?;
        let suffix_rev = DFA::builder()
            .syntax(syntax)
            .thompson(thompson::Config::new().reverse(true))
            .build(suffix)
            .ok()?;
        let suffix = meta::Regex::builder().syntax(syntax).build(suffix).ok()?;
        let user_group = prefix.captures_len();
        let group_count = regex.captures_len();
        (user_group + suffix.captures_len() == group_count).then_some(Split {
            prefix,
            suffix_rev: Some(suffix_rev),
            suffix,
            group_offset: user_group,
            group_count,
        })
    }

    /// The shape `^PREFIX REST`, split before the top-level item that holds the first group,
    /// when PREFIX is more than the `^`.
    fn before_groups(pattern: &str, regex: &Regex) -> Option<Split> {
        let at = first_group_item(pattern)?;
        let (prefix, rest) = pattern.split_at(at);
        if prefix.len() <= 1 || !plain_top_level(prefix) || !plain_top_level(rest) {
            return None;
        }
        let prefix = RegexBuilder::new(prefix).unicode(false).build().ok()?;
        let rest = meta::Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(rest)
            .ok()?;
        let group_count = regex.captures_len();
        (prefix.captures_len() == 1 && rest.captures_len() == group_count).then_some(Split {
            prefix,
            suffix_rev: None,
            suffix: rest,
            group_offset: 0,
            group_count,
        })
    }

    pub(super) fn path(&self) -> SpanPath {
        match self.suffix_rev {
            Some(_) => SpanPath::AroundUser,
            None => SpanPath::AfterPrefix,
        }
    }

    pub(super) fn cache(&self) -> SplitCache {
        SplitCache {
            rev: self.suffix_rev.as_ref().map(DFA::create_cache),
            suffix: self.suffix.create_cache(),
            captures: self.suffix.create_captures(),
        }
    }

    /// Matches `text`, with the full regex's spans in `spans`: `Some(true)` a match,
    /// `Some(false)` none, `None` undecided (run the full regex).
    pub(super) fn captures(
        &self,
        text: &[u8],
        cache: &mut SplitCache,
        spans: &mut [Option<(usize, usize)>],
    ) -> Option<bool> {
        let (Some(suffix_rev), Some(rev_cache)) = (&self.suffix_rev, &mut cache.rev) else {
            return self.captures_after_prefix(text, cache, spans);
        };
        let rev = Input::new(text).anchored(Anchored::Yes).earliest(true);
        let Some(tail) = suffix_rev.try_search_rev(rev_cache, &rev).ok()? else {
            // Every match ends with SUFFIX at the end of the line.
            return Some(false);
        };
        let tail = tail.offset();
        let Some(head) = self.prefix.find(text) else {
            return Some(false);
        };
        let head = head.end();
        if head > tail || memchr::memchr(b'\n', &text[head..tail]).is_some() {
            return None;
        }
        let input = Input::new(text).range(tail..).anchored(Anchored::Yes);
        self.suffix
            .search_captures_with(&mut cache.suffix, &input, &mut cache.captures);
        if !cache.captures.is_match() {
            return None;
        }
        spans.fill(None);
        spans[0] = Some((0, text.len()));
        spans[self.group_offset] = Some((head, tail));
        self.copy_suffix_groups(cache, spans);
        Some(true)
    }

    /// The shape `^PREFIX REST`: REST's captures where PREFIX's own match ends.
    fn captures_after_prefix(
        &self,
        text: &[u8],
        cache: &mut SplitCache,
        spans: &mut [Option<(usize, usize)>],
    ) -> Option<bool> {
        // Any match of the full regex starts with a match of PREFIX.
        let Some(head) = self.prefix.find(text) else {
            return Some(false);
        };
        let input = Input::new(text).range(head.end()..).anchored(Anchored::Yes);
        self.suffix
            .search_captures_with(&mut cache.suffix, &input, &mut cache.captures);
        let whole = cache.captures.get_match()?;
        spans.fill(None);
        spans[0] = Some((0, whole.end()));
        self.copy_suffix_groups(cache, spans);
        Some(true)
    }

    fn copy_suffix_groups(&self, cache: &SplitCache, spans: &mut [Option<(usize, usize)>]) {
        for j in 1..self.suffix.captures_len() {
            if let Some(span) = cache.captures.get_group(j) {
                spans[self.group_offset + j] = Some((span.start, span.end));
            }
        }
        debug_assert_eq!(spans.len(), self.group_count);
    }
}

/// Where the top-level item holding the pattern's first capturing group starts (the group
/// itself, or the non-capturing group around it), so that what comes before has no group.
fn first_group_item(pattern: &str) -> Option<usize> {
    let b = pattern.as_bytes();
    let (mut depth, mut i, mut in_class, mut item) = (0usize, 0usize, false, 0usize);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => {
                in_class = true;
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if in_class => in_class = false,
            b'(' if !in_class => {
                if depth == 0 {
                    item = i;
                }
                let rest = &pattern[i..];
                if !rest.starts_with("(?") || rest.starts_with("(?P<") {
                    return Some(item);
                }
                depth += 1;
            }
            b')' if !in_class => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `group` opens a non-capturing group whose flags (if any) end with it: `(?:`,
/// `(?i:`, `(?-u:`, ….
fn scoped_group(group: &str) -> bool {
    let flags = &group[2..];
    let end = flags
        .find(|c: char| !(c.is_ascii_alphabetic() || c == '-'))
        .unwrap_or(flags.len());
    flags[end..].starts_with(':')
}

/// Whether `part` of a pattern can stand alone: its groups balanced, no `|` outside a group,
/// and no group but plain ones, `(?P<` and flags scoped to their group (`(?:`, `(?-u:`,
/// `(?i:`); an inline flag such as `(?i)` would scope over what follows it in the whole
/// regex, not in the half.
fn plain_top_level(part: &str) -> bool {
    let b = part.as_bytes();
    let (mut depth, mut i, mut in_class) = (0usize, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => {
                in_class = true;
                // A ']' (or '^]') first in a class is a literal.
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if in_class => in_class = false,
            b'(' if !in_class => {
                let rest = &part[i..];
                if rest.starts_with("(?") && !rest.starts_with("(?P<") && !scoped_group(rest) {
                    return false;
                }
                depth += 1;
            }
            b')' if !in_class => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            b'|' if !in_class && depth == 0 => return false,
            _ => {}
        }
        i += 1;
    }
    depth == 0 && !in_class
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans_of(pattern: &str, text: &str) -> (Option<bool>, Vec<Option<(usize, usize)>>) {
        let full = Regex::new(pattern).unwrap();
        let split = Split::new(pattern, &full).expect("the shape splits");
        let mut cache = split.cache();
        let mut spans = vec![None; full.captures_len()];
        let r = split.captures(text.as_bytes(), &mut cache, &mut spans);
        (r, spans)
    }

    /// The spans the capture engine gives.
    fn reference(pattern: &str, text: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let full = Regex::new(pattern).unwrap();
        let mut locs = full.capture_locations();
        full.captures_read(&mut locs, text.as_bytes())?;
        Some((0..locs.len()).map(|i| locs.get(i)).collect())
    }

    #[test]
    fn spans_are_the_capture_engines() {
        let pattern = r"^Failed (?:password|publickey) for (?:invalid user )?(?P<F_USER>.*) from (?P<__addr0>[0-9.]+|[a-z]+) port \d+(?: ssh\d)?$";
        for text in [
            "Failed password for invalid user admin from 198.51.100.4 port 4242 ssh2",
            "Failed password for root from 203.0.113.9 from 198.51.100.4 port 22 ssh2",
            "Failed password for x from 1.2.3.4 port 22 ssh2 from 198.51.100.4 port 22",
            "Failed password for invalid user  from host port 22",
            "Failed password for  from 1.1.1.1 port 1",
            "Failed password for invalid user from 1.1.1.1 port 1",
            "Failed publickey for a from b port 1 ssh2 trailing",
            "Failed password for a\nb from 1.1.1.1 port 1",
            "nothing here",
        ] {
            let (r, spans) = spans_of(pattern, text);
            match (r, reference(pattern, text)) {
                (Some(true), Some(expected)) => assert_eq!(spans, expected, "{text:?}"),
                (Some(false), None) | (None, _) => {}
                (r, expected) => panic!("{text:?}: split {r:?}, capture engine {expected:?}"),
            }
        }
    }

    #[test]
    fn random_lines_agree_with_the_capture_engine() {
        use super::super::tags::{DNS, IP4, IP6};
        let host = format!("(?P<__addr0>{IP6}|{IP4}|{DNS})");
        let patterns = [
            format!(
                r"^Failed (?:password|publickey) for (?:invalid user )?(?P<F_USER>.*) from {host} port \d+(?: ssh\d)?(?:: \S+ \S+)?$"
            ),
            format!(r"^(?:Invalid|Illegal) user (?P<F_USER>.*) from {host}(?: port \d+)?$"),
            format!(
                r"^(?:Connection closed by|Disconnected from) (?:authenticating|invalid) user (?P<F_USER>.*) {host} port \d+(?: \[preauth\])?$"
            ),
        ];
        let starts = [
            "Failed password for ",
            "Invalid user ",
            "Connection closed by ",
        ];
        let middles = ["", "invalid user ", "authenticating user ", "user "];
        let junk = [
            "x",
            " ",
            "from ",
            " from ",
            "198.51.100.4",
            " port 22",
            "\n",
            ":",
            "\u{e9}",
            "[preauth]",
        ];
        let hosts = [
            "198.51.100.4",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "host.example",
            "999.1.1.1",
            "",
        ];
        let tails = [
            "",
            " port 22",
            " port 22 ssh2",
            " port 22 ssh2: RSA SHA256:x",
            " port 22 [preauth]",
            " port x",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let (mut decided, mut matched) = (0, 0);
        for pattern in &patterns {
            let full = Regex::new(pattern).unwrap();
            let split = Split::new(pattern, &full).expect("the shape splits");
            let mut cache = split.cache();
            let mut spans = vec![None; full.captures_len()];
            let mut locs = full.capture_locations();
            for _ in 0..3000 {
                let mut text = format!("{}{}", starts[next(3)], middles[next(4)]);
                for _ in 0..next(4) {
                    text.push_str(junk[next(junk.len())]);
                }
                text.push_str([" from ", " "][next(2)]);
                text.push_str(hosts[next(hosts.len())]);
                text.push_str(tails[next(tails.len())]);
                let expected = full
                    .captures_read(&mut locs, text.as_bytes())
                    .map(|_| (0..locs.len()).map(|i| locs.get(i)).collect::<Vec<_>>());
                match split.captures(text.as_bytes(), &mut cache, &mut spans) {
                    Some(true) => {
                        matched += 1;
                        assert_eq!(Some(spans.clone()), expected, "{pattern} on {text:?}");
                    }
                    Some(false) => assert_eq!(expected, None, "{pattern} on {text:?}"),
                    None => continue,
                }
                decided += 1;
            }
        }
        // The test means something only if most lines are decided and many match.
        assert!(
            decided > 8000 && matched > 300,
            "{decided} decided, {matched} matched"
        );
    }

    #[test]
    fn rest_after_a_fixed_prefix_agrees_with_the_capture_engine() {
        use super::super::tags::{DNS, IP4, IP6};
        let host = format!("(?P<__addr0>{IP6}|{IP4}|{DNS})");
        let patterns = [
            format!(
                r"^Received disconnect from {host} port \d+:(?:14: .*|\d+: (?:.*: )?Auth (?:fail|cancel)) \[preauth\]$"
            ),
            format!(
                r"^pam_unix\(sshd:auth\): authentication failure; logname=\S* uid=\d+ rhost={host}(?: +user=(?P<F_USER>.*))? *$"
            ),
            format!(r"^(?i:a|ab)(?:b|) (?:x|(?P<F_X>y)) {host}(?: port \d+)?"),
            format!(r"^refused connect from \S+ \((?P<__addr0>{IP6}|{IP4})\)$"),
        ];
        let starts = [
            "Received disconnect from ",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 rhost=",
            "ab x ",
            "abb y ",
            "a y ",
            "refused connect from a.b (",
        ];
        let hosts = [
            "198.51.100.4",
            "2001:db8::1",
            "host.example",
            "999.1.1.1",
            "",
            "a b",
        ];
        let tails = [
            "",
            " port 22",
            " port 22:14: No more [preauth]",
            " port 22:3: x: Auth fail [preauth]",
            "  user=root ",
            " user=a b c",
            ")",
            "\n port 1",
            " port x",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let (mut decided, mut matched) = (0, 0);
        for pattern in &patterns {
            let full = Regex::new(pattern).unwrap();
            let split = Split::new(pattern, &full).expect("the shape splits");
            assert!(split.suffix_rev.is_none(), "{pattern}");
            let mut cache = split.cache();
            let mut spans = vec![None; full.captures_len()];
            let mut locs = full.capture_locations();
            for _ in 0..2000 {
                let mut text = starts[next(starts.len())].to_string();
                text.push_str(hosts[next(hosts.len())]);
                for _ in 0..=next(2) {
                    text.push_str(tails[next(tails.len())]);
                }
                let expected = full
                    .captures_read(&mut locs, text.as_bytes())
                    .map(|_| (0..locs.len()).map(|i| locs.get(i)).collect::<Vec<_>>());
                match split.captures(text.as_bytes(), &mut cache, &mut spans) {
                    Some(true) => {
                        matched += 1;
                        assert_eq!(Some(spans.clone()), expected, "{pattern} on {text:?}");
                    }
                    Some(false) => assert_eq!(expected, None, "{pattern} on {text:?}"),
                    None => continue,
                }
                decided += 1;
            }
        }
        assert!(
            decided > 6000 && matched > 500,
            "{decided} decided, {matched} matched"
        );
    }

    #[test]
    fn other_shapes_do_not_split() {
        for pattern in [
            r"a (?P<F_USER>.*) b$",
            r"^(?P<F_X>.*) b$",
            r"^a|b (?P<F_USER>.*) c$",
            r"^(?i)a (?P<F_USER>.*) b$",
            r"^(?P<F_X>a) (?P<F_USER>.*) b$",
            r"^(?:a (?P<F_USER>.*)) b$",
        ] {
            let full = Regex::new(pattern).unwrap();
            assert!(Split::new(pattern, &full).is_none(), "{pattern}");
        }
    }
}
