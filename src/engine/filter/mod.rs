//! Filters: fail2ban-style regexes with tags, compiled for a hot path that runs per log line.
//!
//! A filter is a list of `failregex` (a line matching one is a failure), `ignoreregex` (a
//! failure that also matches one is not), and an optional `prefregex` that every line must
//! match first and whose `<F-CONTENT>` part is what the others see. Tags are translated into
//! regex syntax: `<HOST>`, `<ADDR>`, `<IP4>`, `<IP6>`, `<DNS>` capture the peer, `<SUBNET>`
//! (an address with an optional `/prefix`) and `<CIDR>` name a whole network, and
//! `<F-NAME>…</F-NAME>` captures a named field (`<F-USER>` is the user name).
//!
//! Failures that span lines (fail2ban's `<F-MLFID>` sessions and `maxlines` windows) need
//! what earlier lines of the same source said: [`Matcher::match_record`] takes that state
//! ([`SourceState`]) from the caller. A filter that needs none goes straight to the
//! single-line path, [`Matcher::match_line`]. banhound's own filters may group records by the
//! process that logged them instead ([`Filter::with_process_sessions`]) and say per failregex
//! how its lines count within such a session ([`Counting`]), so that the several lines one
//! authentication try logs count once.
//!
//! Matching must stay cheap because log text is plentiful and attacker-controlled:
//! - the `regex` crate never backtracks, so no line costs more than linear time;
//! - one multi-pattern lazy DFA pass over all failregexes and ignoreregexes says which of
//!   them match, so the lines that cannot match — most of them — cost one scan, and only
//!   the first matching failregex (fail2ban's order decides) reads its spans;
//! - a prefregex that needs the capture engine is kept from running on lines no failregex
//!   can match by one Aho-Corasick pass for the literals they cannot match without;
//! - the spans of the common shapes are taken without running the capture engine over the
//!   whole line (see `split`);
//! - captures go into reusable [`CaptureLocations`] held by a [`Matcher`], so a line that
//!   matches allocates nothing either.
//!
//! Regexes are written in Python's dialect (fail2ban's filters are Python `re` patterns).
//! Most of it is also the `regex` crate's; what differs is translated (`\Z`, `(?P=name)`,
//! `(?(name)...)`). A regex that needs what a linear-time engine cannot do — lookarounds,
//! backreferences, conditionals — is compiled with `fancy-regex` instead, with a strict
//! backtrack limit per match, so an attacker-crafted line costs a bounded amount of work and
//! then simply does not match. Only such regexes take that slower path; `fancy-regex` works
//! on `&str`, so for them a line that is not UTF-8 has each invalid byte replaced by `?`
//! (one byte for one, so every offset stays that of the original line).

//!
//! The parts: `tags` compiles the tags, `multipattern` is the one pass that says which regexes
//! match, `prefilter` the literal gate before a costly prefregex, `prefregex` takes the
//! common prefregex shape without captures, `split` and `spans` read what a match names,
//! and `backtracking` is the bounded fallback engine.

mod backtracking;
mod multipattern;
mod prefilter;
mod prefregex;
mod spans;
mod split;
mod tags;

pub use crate::engine::address::Host;
pub use crate::engine::multiline::{Counting, Origin};
use crate::engine::multiline::{SessionLine, SessionVerdict, Sessions, SourceState, Window};
use crate::engine::time::Timestamp;
use backtracking::{BacktrackScratch, Engine};
pub use backtracking::{EngineKind, BACKTRACKING_MAX_LINE, BACKTRACK_LIMIT};
use multipattern::{MultiCache, MultiPattern};
use prefilter::{build_gate, LiteralGate};
use prefregex::{prefix_only, PrefixOnly};
use regex::bytes::CaptureLocations;
use spans::{address_of, user_of, Slots};
pub use split::SpanPath;
use std::fmt;
use tags::{compile_tagged, CompiledRegex, CONTENT_FIELD, FIELD_GROUP_PREFIX};

/// The regexes of a filter, as written (tags not yet translated).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    pub prefregex: Option<String>,
    pub failregex: Vec<String>,
    pub ignoreregex: Vec<String>,
    pub dialect: Dialect,
}

/// Whose rules a filter's regexes follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// banhound's own filters: unknown tags and failregexes without an address are errors.
    #[default]
    Banhound,
    /// fail2ban's filters, taken as fail2ban takes them: an unknown `<TAG>` is text; a
    /// failregex may lack an address tag (a multi-line helper, counting on another line
    /// with the same `<F-MLFID>` to name the host; on its own such a line is
    /// [`Outcome::NoFailure`]); ignoreregex may contain address tags.
    Fail2ban,
}

/// Which regex of a filter an error or a hit refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegexRole {
    Pref,
    Fail(usize),
    Ignore(usize),
}

impl fmt::Display for RegexRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegexRole::Pref => f.write_str("prefregex"),
            RegexRole::Fail(i) => write!(f, "failregex #{i}"),
            RegexRole::Ignore(i) => write!(f, "ignoreregex #{i}"),
        }
    }
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role}: {kind}")]
pub struct FilterError {
    pub role: RegexRole,
    pub kind: FilterErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterErrorKind {
    #[error("a filter needs at least one failregex")]
    NoFailregex,
    #[error("no address tag (<HOST>, <ADDR>, <IP4>, <IP6> or <DNS>): banhound could not tell whom to ban")]
    NoAddressTag,
    #[error("address tags belong in failregex or prefregex, not in ignoreregex")]
    AddressTagInIgnore,
    #[error("prefregex must capture the text the failregexes see with <F-CONTENT>…</F-CONTENT>")]
    NoContent,
    #[error("unknown tag <{0}> (known: HOST, ADDR, IP4, IP6, DNS, CIDR, SUBNET, SKIPLINES, F-<NAME>…</F-NAME>)")]
    UnknownTag(String),
    #[error("tag <{0}> is not closed by </{0}>")]
    Unclosed(String),
    #[error("closing tag </{0}> without an opening <{0}>")]
    Unopened(String),
    #[error("field <{0}> appears twice")]
    DuplicateField(String),
    #[error("does not compile: {0}")]
    Regex(String),
}

/// What a filter made of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// No failregex matched (or the prefregex did not).
    Missed,
    /// Failregex `regex` matched, but through a part marked `<F-NOFAIL>` (or
    /// `<F-MLFGAINED>`, a success): fail2ban's way of saying "not a failure"; or its session
    /// says it is part of a try that counts on another line ([`Counting`]).
    NoFailure {
        regex: usize,
    },
    /// Failregex `regex` matched a failure that names no address. With a multi-line id
    /// (`<F-MLFID>`) it is held, and a later line of the same id that names the address
    /// makes it count; otherwise nobody can be banned for it.
    Hostless {
        regex: usize,
    },
    /// A failregex matched, and so did ignoreregex `ignore`.
    Ignored {
        regex: usize,
        ignore: usize,
    },
    Failure(Failure<'a>),
}

/// A line that matched failregex `regex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure<'a> {
    pub regex: usize,
    pub host: Host<'a>,
    pub user: Option<&'a [u8]>,
    /// The text the failregex matched: the line's `<F-CONTENT>` (the whole message without
    /// a prefregex), or the joined lines of a multi-line window. [`Matcher::fields`] reads
    /// from it.
    pub text: &'a [u8],
}

/// A compiled filter. Cheap to share; matching state lives in a [`Matcher`].
#[derive(Debug)]
pub struct Filter {
    pref: Option<(CompiledRegex, usize)>,
    /// For the common prefregex shape `PREFIX<F-CONTENT>.+</F-CONTENT>$`: PREFIX alone, so
    /// the content is found without running captures over the whole line.
    pref_prefix: Option<PrefixOnly>,
    fail: Vec<CompiledRegex>,
    ignore: Vec<Engine>,
    /// Which failregexes and ignoreregexes match a text, in one pass (`None`: the set was too
    /// big; every regex is tried in turn).
    pass: Option<MultiPattern>,
    /// Before a prefregex that needs the capture engine: the failregexes' literals.
    gate: Option<LiteralGate>,
    /// Lines a failregex may span; above 1 lines are matched in a window.
    maxlines: usize,
    /// Some regex captures `<F-MLFID>`: lines are combined per session.
    sessions: bool,
    /// Records are combined per process ([`Origin`]) instead.
    by_process: bool,
    /// How each failregex's lines count in their session.
    counting: Vec<Counting>,
}

impl Filter {
    /// Compiles a filter whose failregexes match one line each.
    pub fn compile(spec: &FilterSpec) -> Result<Filter, FilterError> {
        Filter::compile_lines(spec, 1)
    }

    /// Compiles a filter whose failregexes may span up to `maxlines` lines (fail2ban's
    /// `maxlines`; 0 and 1 mean one).
    pub fn compile_lines(spec: &FilterSpec, maxlines: usize) -> Result<Filter, FilterError> {
        if spec.failregex.is_empty() {
            return Err(FilterError {
                role: RegexRole::Fail(0),
                kind: FilterErrorKind::NoFailregex,
            });
        }
        let pref = match &spec.prefregex {
            Some(p) => {
                let compiled =
                    compile_tagged(p, spec.dialect, false).map_err(|kind| FilterError {
                        role: RegexRole::Pref,
                        kind,
                    })?;
                let content_name = format!("{FIELD_GROUP_PREFIX}{CONTENT_FIELD}");
                let content = compiled
                    .regex
                    .capture_names()
                    .iter()
                    .position(|n| n.as_deref() == Some(content_name.as_str()))
                    .ok_or(FilterError {
                        role: RegexRole::Pref,
                        kind: FilterErrorKind::NoContent,
                    })?;
                Some((compiled, content))
            }
            None => None,
        };
        let pref_has_address = pref
            .as_ref()
            .is_some_and(|(p, _)| !p.address_groups.is_empty());
        let maxlines = maxlines.max(1);
        let multi_line = maxlines > 1;
        let mut fail = Vec::with_capacity(spec.failregex.len());
        for (i, pattern) in spec.failregex.iter().enumerate() {
            let role = RegexRole::Fail(i);
            let compiled = compile_tagged(pattern, spec.dialect, multi_line)
                .map_err(|kind| FilterError { role, kind })?;
            if compiled.address_groups.is_empty()
                && !pref_has_address
                && spec.dialect == Dialect::Banhound
            {
                return Err(FilterError {
                    role,
                    kind: FilterErrorKind::NoAddressTag,
                });
            }
            fail.push(compiled);
        }
        let mut ignore = Vec::with_capacity(spec.ignoreregex.len());
        let mut ignore_supersets = Vec::with_capacity(spec.ignoreregex.len());
        for (i, pattern) in spec.ignoreregex.iter().enumerate() {
            let role = RegexRole::Ignore(i);
            let compiled = compile_tagged(pattern, spec.dialect, multi_line)
                .map_err(|kind| FilterError { role, kind })?;
            if !compiled.address_groups.is_empty() && spec.dialect == Dialect::Banhound {
                return Err(FilterError {
                    role,
                    kind: FilterErrorKind::AddressTagInIgnore,
                });
            }
            ignore_supersets.push(compiled.linear_superset().map(str::to_string));
            ignore.push(compiled.regex);
        }
        let fail_supersets: Vec<Option<&str>> =
            fail.iter().map(CompiledRegex::linear_superset).collect();
        let ignore_supersets: Vec<Option<&str>> =
            ignore_supersets.iter().map(Option::as_deref).collect();
        let pass = MultiPattern::new(&fail_supersets, &ignore_supersets, multi_line);
        let pref_prefix = spec
            .prefregex
            .as_deref()
            .and_then(|p| prefix_only(p, spec.dialect));
        // Windows run the prefregex on every line anyway (each joins the window).
        let gate = (pref.is_some() && pref_prefix.is_none() && !multi_line)
            .then(|| build_gate(&fail))
            .flatten();
        let sessions = pref
            .as_ref()
            .map(|(p, _)| p)
            .into_iter()
            .chain(&fail)
            .any(|r| r.mlfid_group.is_some());
        Ok(Filter {
            pref,
            pref_prefix,
            fail,
            ignore,
            pass,
            gate,
            maxlines,
            sessions,
            by_process: false,
            counting: vec![Counting::Always; spec.failregex.len()],
        })
    }

    /// Makes the records one process logged a session ([`Origin`]): the host and process id
    /// a journal entry or syslog line carries, which no log text can change.
    pub fn with_process_sessions(mut self) -> Filter {
        self.by_process = true;
        self
    }

    /// How the lines of each failregex count in their session, in failregex order; those
    /// not given count [always](Counting::Always). Without sessions every line counts.
    pub fn with_counting(mut self, counting: Vec<Counting>) -> Filter {
        self.counting = counting;
        self.counting.resize(self.fail.len(), Counting::Always);
        self
    }

    /// How failregex `i`'s lines count in their session.
    pub fn counting(&self, i: usize) -> Counting {
        self.counting[i]
    }

    /// Whether records are grouped into sessions at all (`<F-MLFID>` or by process).
    pub fn has_sessions(&self) -> bool {
        self.sessions || self.by_process
    }

    /// Whether a line's outcome can depend on earlier lines (`maxlines > 1`, `<F-MLFID>` or
    /// process sessions): then [`Matcher::match_record`] needs the source's [`SourceState`].
    pub fn is_multiline(&self) -> bool {
        self.maxlines > 1 || self.has_sessions()
    }

    /// fail2ban's `maxlines`: how many lines a failregex may span.
    pub fn maxlines(&self) -> usize {
        self.maxlines
    }

    pub fn failregex_count(&self) -> usize {
        self.fail.len()
    }

    pub fn ignoreregex_count(&self) -> usize {
        self.ignore.len()
    }

    /// The failregex as written, for reports.
    pub fn failregex_source(&self, i: usize) -> &str {
        &self.fail[i].source
    }

    /// Which engine runs failregex `i`.
    pub fn failregex_engine(&self, i: usize) -> EngineKind {
        self.fail[i].regex.kind()
    }

    /// How failregex `i`'s spans are read from a line it matches.
    pub fn failregex_spans(&self, i: usize) -> SpanPath {
        self.fail[i].regex.span_path()
    }

    /// Which engine runs the prefregex, if there is one.
    pub fn prefregex_engine(&self) -> Option<EngineKind> {
        self.pref.as_ref().map(|(p, _)| p.regex.kind())
    }

    /// Which engine runs ignoreregex `i`.
    pub fn ignoreregex_engine(&self, i: usize) -> EngineKind {
        self.ignore[i].kind()
    }

    /// Whether one multi-pattern pass says which regexes match (false when the set is too
    /// big to compile: every regex is then tried in turn).
    pub fn has_multi_pattern_pass(&self) -> bool {
        self.pass.is_some()
    }

    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            filter: self,
            pref_locations: self.pref.as_ref().map(|(p, _)| p.regex.slots()),
            prefix_locations: self
                .pref_prefix
                .as_ref()
                .map(|p| p.prefix.capture_locations()),
            fail_locations: self.fail.iter().map(|f| f.regex.slots()).collect(),
            pass_cache: self.pass.as_ref().map(MultiPattern::cache),
            scratch: BacktrackScratch::default(),
            process_id: Vec::new(),
        }
    }
}

/// The per-thread state of matching: reusable capture slots, so matching never allocates.
pub struct Matcher<'f> {
    filter: &'f Filter,
    pref_locations: Option<Slots>,
    /// For the prefregex shortcut when the session id is wanted.
    prefix_locations: Option<CaptureLocations>,
    fail_locations: Vec<Slots>,
    pass_cache: Option<MultiCache>,
    scratch: BacktrackScratch,
    /// The session id of a record's process ([`Origin::session_id`]).
    process_id: Vec<u8>,
}

/// What the prefregex made of a line: the text the failregexes see, and what it captured.
#[derive(Clone, Copy)]
struct PrefParts<'a> {
    content: &'a [u8],
    user: Option<&'a [u8]>,
    host: Option<Host<'a>>,
    mlfid: Option<&'a [u8]>,
}

/// A failregex match, before multi-line bookkeeping.
#[derive(Clone, Copy)]
struct Hit<'a> {
    regex: usize,
    text: &'a [u8],
    /// The whole match, in `text`.
    span: (usize, usize),
    host: Option<Host<'a>>,
    user: Option<&'a [u8]>,
    mlfid: Option<&'a [u8]>,
    nofail: bool,
    forget: bool,
    gained: bool,
}

enum Scan<'a> {
    Missed,
    Ignored {
        regex: usize,
        ignore: usize,
        span: (usize, usize),
    },
    Hit(Hit<'a>),
}

impl<'f> Matcher<'f> {
    /// How many searches of a backtracking regex were given up on (each a miss): a line
    /// over [`BACKTRACKING_MAX_LINE`] bytes, or [`BACKTRACK_LIMIT`] reached.
    pub fn backtracking_gave_up(&self) -> u64 {
        self.scratch.gave_up
    }

    /// Matches one message (a journal MESSAGE, or a file line's text after its header) on
    /// its own, without what earlier lines said: a line that needs a session or a window
    /// is taken as it stands (an `<F-MLFID>` failure without an address is
    /// [`Outcome::Hostless`]).
    pub fn match_line<'a>(&mut self, message: &'a [u8]) -> Outcome<'a> {
        if !self.gate(message) {
            return Outcome::Missed;
        }
        let Some(pref) = self.pref(message, false) else {
            return Outcome::Missed;
        };
        match self.scan(pref) {
            Scan::Missed => Outcome::Missed,
            Scan::Ignored { regex, ignore, .. } => Outcome::Ignored { regex, ignore },
            Scan::Hit(hit) => standalone(hit),
        }
    }

    /// Matches the next record of a source whose multi-line state is `state`, logged by
    /// `origin` at `time` (the record's own time, for the expiry of sessions). For a filter
    /// that is not [multi-line](Filter::is_multiline) this is [`Matcher::match_line`] and
    /// `state` is not touched. With process sessions, a record without a process id is taken
    /// as it stands.
    pub fn match_record<'a>(
        &mut self,
        state: &'a mut SourceState,
        message: &'a [u8],
        origin: Origin<'_>,
        time: Timestamp,
    ) -> Outcome<'a> {
        if self.filter.maxlines > 1 {
            return self.match_window(state, message, origin, time);
        }
        if !self.filter.has_sessions() {
            return self.match_line(message);
        }
        if !self.gate(message) {
            return Outcome::Missed;
        }
        // The session id is only needed for a line a failregex matches: the prefregex
        // shortcut captures it then, not on every line.
        let Some(pref) = self.pref(message, false) else {
            return Outcome::Missed;
        };
        match self.scan(pref) {
            Scan::Missed => Outcome::Missed,
            Scan::Ignored { regex, ignore, .. } => Outcome::Ignored { regex, ignore },
            Scan::Hit(mut hit) => {
                if hit.mlfid.is_none() && !self.filter.by_process {
                    hit.mlfid = self.shortcut_id(message, hit.text);
                }
                let count = self.filter.counting[hit.regex];
                let id = self.session_id(&hit, origin);
                settle(&mut state.sessions, hit, id, count, time)
            }
        }
    }

    /// The session a hit belongs to: its process's, or its `<F-MLFID>`.
    fn session_id<'k>(&'k mut self, hit: &Hit<'k>, origin: Origin<'_>) -> Option<&'k [u8]> {
        if !self.filter.by_process {
            return hit.mlfid;
        }
        origin
            .session_id(&mut self.process_id)
            .then_some(self.process_id.as_slice())
    }

    /// The session id the prefregex shortcut captures in `message`, whose content (what
    /// follows the prefix) is `content`.
    fn shortcut_id<'a>(&mut self, message: &'a [u8], content: &[u8]) -> Option<&'a [u8]> {
        let shortcut = self.filter.pref_prefix.as_ref()?;
        let group = shortcut.mlfid_group?;
        let locs = self.prefix_locations.as_mut()?;
        // The content is the rest of the message after the prefix match.
        let end = message.len().checked_sub(content.len())?;
        if !shortcut.captures_ending_at(message, end, locs) {
            return None;
        }
        locs.get(group).map(|(s, e)| &message[s..e])
    }

    /// `maxlines > 1`: the line (its prefregex content) joins the window of the last
    /// `maxlines` lines, and the failregexes search the window as one text. The lines a
    /// match used leave the window (when the next line comes: the outcome borrows them),
    /// except those a `<SKIPLINES>` passed over.
    fn match_window<'a>(
        &mut self,
        state: &'a mut SourceState,
        message: &'a [u8],
        origin: Origin<'_>,
        time: Timestamp,
    ) -> Outcome<'a> {
        let SourceState { sessions, window } = state;
        let Some(pref) = self.pref(message, true) else {
            return Outcome::Missed;
        };
        window.push(pref.content, self.filter.maxlines);
        let Window {
            joined,
            consume_next,
            ..
        } = window;
        let scan = self.scan(PrefParts {
            content: joined,
            ..pref
        });
        let (regex, span) = match &scan {
            Scan::Missed => return Outcome::Missed,
            Scan::Ignored { regex, span, .. } => (*regex, *span),
            Scan::Hit(hit) => (hit.regex, hit.span),
        };
        consume_next.clear();
        consume_next.push(span);
        let locs = &self.fail_locations[regex];
        consume_next.extend(
            self.filter.fail[regex]
                .skip_groups
                .iter()
                .filter_map(|&g| locs.get(g)),
        );
        match scan {
            Scan::Missed => Outcome::Missed,
            Scan::Ignored { regex, ignore, .. } => Outcome::Ignored { regex, ignore },
            Scan::Hit(hit) => {
                let count = self.filter.counting[hit.regex];
                let id = self.session_id(&hit, origin);
                settle(sessions, hit, id, count, time)
            }
        }
    }

    /// The literal gate before a costly prefregex: false when no failregex can match
    /// `message`.
    fn gate(&self, message: &[u8]) -> bool {
        self.filter
            .gate
            .as_ref()
            .is_none_or(|gate| gate.may_match(message))
    }

    /// Applies the prefregex; `None` when it does not match. `want_id`: the session id is
    /// needed (it costs the shortcut a capture).
    fn pref<'a>(&mut self, message: &'a [u8], want_id: bool) -> Option<PrefParts<'a>> {
        let filter = self.filter;
        let whole = PrefParts {
            content: message,
            user: None,
            host: None,
            mlfid: None,
        };
        if let Some(shortcut) = &filter.pref_prefix {
            let locs = self.prefix_locations.as_mut();
            match (want_id, shortcut.mlfid_group, locs) {
                (true, Some(group), Some(locs)) => {
                    if let Some(content) = shortcut.content_captured(message, locs) {
                        let mlfid = locs.get(group).map(|(s, e)| &message[s..e]);
                        return Some(PrefParts {
                            content,
                            mlfid,
                            ..whole
                        });
                    }
                }
                _ => {
                    if let Some(content) = shortcut.content(message) {
                        return Some(PrefParts { content, ..whole });
                    }
                }
            }
        }
        let (Some((pref, content_group)), Some(locs)) = (&filter.pref, &mut self.pref_locations)
        else {
            return Some(whole);
        };
        if !pref.regex.captures_read(locs, message, &mut self.scratch) {
            return None;
        }
        let (s, e) = locs.get(*content_group)?;
        Some(PrefParts {
            content: &message[s..e],
            user: user_of(pref, locs, message),
            host: address_of(pref, locs, message).ok().flatten(),
            mlfid: pref
                .mlfid_group
                .and_then(|g| locs.get(g))
                .map(|(s, e)| &message[s..e]),
        })
    }

    /// Runs the failregexes over the prefregex's content; the first that matches, in the
    /// filter's order, decides. The multi-pattern pass says which ones match (or, for a
    /// backtracking one, may), so only those run, and only the first reads its spans.
    fn scan<'a>(&mut self, pref: PrefParts<'a>) -> Scan<'a> {
        let filter = self.filter;
        let content = pref.content;
        let pass = filter.pass.as_ref().zip(self.pass_cache.as_mut());
        if let Some((pass, cache)) = pass {
            if !pass.search(content, cache) {
                return Scan::Missed;
            }
        }
        let pass = filter.pass.as_ref().zip(self.pass_cache.as_ref());
        for (i, regex) in filter.fail.iter().enumerate() {
            if pass.is_some_and(|(pass, cache)| !pass.may_fail(cache, i)) {
                continue;
            }
            let locs = &mut self.fail_locations[i];
            if !regex.regex.captures_read(locs, content, &mut self.scratch) {
                continue;
            }
            let span = locs.get(0).unwrap_or((0, content.len()));
            let Ok(own_host) = address_of(regex, locs, content) else {
                return Scan::Missed;
            };
            let scratch = &mut self.scratch;
            if let Some(ignore) = filter.ignore.iter().enumerate().position(|(j, r)| {
                match pass {
                    // The pass is exact for a linear-time regex.
                    Some((pass, cache)) => {
                        pass.may_ignore(cache, j)
                            && (r.kind() == EngineKind::Linear || r.is_match(content, scratch))
                    }
                    None => r.is_match(content, scratch),
                }
            }) {
                return Scan::Ignored {
                    regex: i,
                    ignore,
                    span,
                };
            }
            let locs = &self.fail_locations[i];
            return Scan::Hit(Hit {
                regex: i,
                text: content,
                span,
                host: own_host.or(pref.host),
                user: user_of(regex, locs, content).or(pref.user),
                mlfid: regex
                    .mlfid_group
                    .and_then(|g| locs.get(g))
                    .map(|(s, e)| &content[s..e])
                    .or(pref.mlfid),
                nofail: CompiledRegex::any_set(&regex.nofail_groups, locs),
                forget: CompiledRegex::any_set(&regex.forget_groups, locs),
                gained: CompiledRegex::any_set(&regex.gained_groups, locs),
            });
        }
        Scan::Missed
    }

    /// The custom `<F-NAME>` fields the last matching failregex `regex` captured in `text`
    /// (the [`Failure::text`] of the failure).
    pub fn fields<'a>(
        &'a self,
        regex: usize,
        text: &'a [u8],
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let compiled = &self.filter.fail[regex];
        let locs = &self.fail_locations[regex];
        compiled.fields.iter().filter_map(move |(name, g)| {
            locs.get(*g)
                .and_then(|(s, e)| text.get(s..e))
                .map(|v| (name.as_str(), v))
        })
    }
}

/// The outcome of a hit taken on its own.
fn standalone(hit: Hit<'_>) -> Outcome<'_> {
    if hit.nofail || hit.gained {
        return Outcome::NoFailure { regex: hit.regex };
    }
    match hit.host {
        Some(host) => Outcome::Failure(Failure {
            regex: hit.regex,
            host,
            user: hit.user,
            text: hit.text,
        }),
        None => Outcome::Hostless { regex: hit.regex },
    }
}

/// The outcome of a hit with its session (if it has an id) taken into account.
fn settle<'a>(
    sessions: &'a mut Sessions,
    hit: Hit<'a>,
    id: Option<&[u8]>,
    count: Counting,
    time: Timestamp,
) -> Outcome<'a> {
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return standalone(hit);
    };
    let line = SessionLine {
        id,
        host: hit.host,
        // An empty user name (`user=<>`) names nobody.
        user: hit.user.filter(|u| !u.is_empty()),
        nofail: hit.nofail,
        forget: hit.forget,
        gained: hit.gained,
        count,
        time,
    };
    match sessions.settle(line) {
        SessionVerdict::Failure { host, user } => Outcome::Failure(Failure {
            regex: hit.regex,
            host,
            // A line that names an empty user, in a session that named none, reports the
            // empty name, as fail2ban does (`Invalid user  from …`).
            user: user.or(hit.user),
            text: hit.text,
        }),
        SessionVerdict::Pending => Outcome::Hostless { regex: hit.regex },
        SessionVerdict::NoFailure => Outcome::NoFailure { regex: hit.regex },
    }
}

#[cfg(test)]
mod tests;
