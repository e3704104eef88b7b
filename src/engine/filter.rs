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
//! - before any regex runs, one Aho-Corasick pass looks for the literals each failregex
//!   cannot match without (found by analysing the regex itself), so the lines that cannot
//!   match — most of them — cost one scan;
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

use crate::engine::address::parse_address;
pub use crate::engine::multiline::{Counting, Origin};
use crate::engine::multiline::{SessionLine, SessionVerdict, Sessions, SourceState, Window};
use crate::engine::time::Timestamp;
use aho_corasick::{AhoCorasick, MatchKind};
use ipnet::IpNet;
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use regex_syntax::hir::{Hir, HirKind};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

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

/// The peer a failure names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    Ip(IpAddr),
    /// A network named by `<SUBNET>` or `<ADDR>/<CIDR>` (host bits cleared); a prefix that
    /// covers the whole address is [`Host::Ip`] instead.
    Net(IpNet),
    /// A host name; banhound does not resolve names (an attacker controls their DNS), so
    /// these are reported but never banned.
    Name(&'a [u8]),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Net(net) => net.fmt(f),
            Host::Name(n) => f.write_str(&String::from_utf8_lossy(n)),
        }
    }
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

// Tag patterns. Address text is validated by parsing after the match, so the patterns only
// need to find the right span. They avoid counted repetitions (`{0,63}`), which multiply the
// NFA's states and with them the cost of every capture.
const IP4: &str = r"(?-u:\b)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?-u:\b)";
const IP6: &str = r"\[?[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*(?:%[0-9A-Za-z_.\-]+)?\]?";
const DNS: &str = r"[A-Za-z0-9][A-Za-z0-9_.\-]*";

const ADDRESS_GROUP_PREFIX: &str = "__addr";
const FIELD_GROUP_PREFIX: &str = "F_";
const CONTENT_FIELD: &str = "CONTENT";
const USER_FIELD: &str = "USER";
// fail2ban's multi-line fields: a session id, "not a failure", "end of session", "success".
const MLFID_FIELD: &str = "MLFID";
const NOFAIL_FIELD: &str = "NOFAIL";
const FORGET_FIELD: &str = "MLFFORGET";
const GAINED_FIELD: &str = "MLFGAINED";
/// fail2ban's fallback for `<F-USER>`: `<F-ALT_USER>`, `<F-ALT_USER1>`, ….
const ALT_USER_FIELD: &str = "ALT_USER";
const CIDR_GROUP_PREFIX: &str = "__cidr";
const SKIP_GROUP_PREFIX: &str = "__skip";
/// How many times a backtracking regex may backtrack on one line before giving up on it.
/// The sshd filter needs well under a thousand on ordinary lines.
pub const BACKTRACK_LIMIT: usize = 100_000;
/// The longest line a backtracking regex is run on; longer ones are given up on (a miss).
/// [`BACKTRACK_LIMIT`] alone does not bound the work: forward steps are not backtracking,
/// and a lookaround holding `.*` inside a repetition (`(?:(?=.*x)\S+ )+`) scans the rest
/// of the line at every step, which is quadratic in the line's length.
pub const BACKTRACKING_MAX_LINE: usize = 8 << 10;
// A CIDR prefix length and a whole subnet, for fail2ban's <CIDR> and <SUBNET>.
const CIDR: &str = r"\d{1,3}";

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
enum Engine {
    Linear(Regex),
    Backtracking {
        regex: fancy_regex::Regex,
        /// A linear-time regex matching a superset of `regex`'s matches (lookarounds
        /// dropped, conditionals made alternations): lines it rejects never reach the
        /// backtracking engine.
        gate: Option<Regex>,
    },
}

impl Engine {
    fn kind(&self) -> EngineKind {
        match self {
            Engine::Linear(_) => EngineKind::Linear,
            Engine::Backtracking { .. } => EngineKind::Backtracking,
        }
    }

    fn capture_names(&self) -> Vec<Option<String>> {
        match self {
            Engine::Linear(r) => r.capture_names().map(|n| n.map(str::to_string)).collect(),
            Engine::Backtracking { regex: r, .. } => {
                r.capture_names().map(|n| n.map(str::to_string)).collect()
            }
        }
    }

    fn slots(&self) -> Slots {
        match self {
            Engine::Linear(r) => Slots::Linear(r.capture_locations()),
            Engine::Backtracking { regex: r, .. } => {
                Slots::Backtracking(vec![None; r.captures_len()])
            }
        }
    }

    /// Matches `text`, filling `slots`; `scratch` is the backtracking engine's.
    fn captures_read(
        &self,
        slots: &mut Slots,
        text: &[u8],
        scratch: &mut BacktrackScratch,
    ) -> bool {
        match (self, slots) {
            (Engine::Linear(r), Slots::Linear(locs)) => r.captures_read(locs, text).is_some(),
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

    fn is_match(&self, text: &[u8], scratch: &mut BacktrackScratch) -> bool {
        match self {
            Engine::Linear(r) => r.is_match(text),
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
struct BacktrackScratch {
    /// UTF-8 copy of a line that is not UTF-8.
    text: String,
    /// Searches given up on: line over [`BACKTRACKING_MAX_LINE`] or [`BACKTRACK_LIMIT`] hit.
    gave_up: u64,
}

/// A backtracking search stopped by its limit.
struct GaveUp;

/// Runs a backtracking `search` on `text`. A line too long for the engine, or a search
/// that reaches the backtrack limit, is a miss (the line is not worth more), counted.
fn run_backtracking<T>(
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
fn as_str<'a>(text: &'a [u8], scratch: &'a mut String) -> &'a str {
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

/// Capture positions of the last match of one regex.
#[derive(Debug)]
enum Slots {
    Linear(CaptureLocations),
    Backtracking(Vec<Option<(usize, usize)>>),
}

impl Slots {
    fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self {
            Slots::Linear(l) => l.get(i),
            Slots::Backtracking(v) => v.get(i).copied().flatten(),
        }
    }
}

/// A failregex (or prefregex) after tag translation.
#[derive(Debug)]
struct CompiledRegex {
    regex: Engine,
    /// The translated pattern, for the prefilter's literal analysis.
    translated: String,
    /// Capture group indexes of the address tags, in pattern order.
    address_groups: Vec<usize>,
    /// `<CIDR>` and the prefix length of `<SUBNET>`.
    cidr_groups: Vec<usize>,
    /// `<F-USER>` first, then its `<F-ALT_USER…>` fallbacks.
    user_groups: Vec<usize>,
    /// Custom `<F-NAME>` fields: (NAME, group index).
    fields: Vec<(String, usize)>,
    mlfid_group: Option<usize>,
    nofail_groups: Vec<usize>,
    forget_groups: Vec<usize>,
    gained_groups: Vec<usize>,
    /// The lines each `<SKIPLINES>` passed over.
    skip_groups: Vec<usize>,
    source: String,
}

impl CompiledRegex {
    fn any_set(groups: &[usize], locs: &Slots) -> bool {
        groups.iter().any(|&g| locs.get(g).is_some())
    }
}

/// Which failregexes a line could match, decided by literals alone.
#[derive(Debug)]
struct Prefilter {
    automaton: AhoCorasick,
    /// For each automaton pattern, the failregex it stands for.
    pattern_regex: Vec<usize>,
    /// Failregexes without a usable literal: always candidates.
    always: Vec<usize>,
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
    prefilter: Option<Prefilter>,
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
            ignore.push(compiled.regex);
        }
        let prefilter = build_prefilter(&fail);
        let pref_prefix = spec
            .prefregex
            .as_deref()
            .and_then(|p| prefix_only(p, spec.dialect));
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
            prefilter,
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

    /// Which engine runs the prefregex, if there is one.
    pub fn prefregex_engine(&self) -> Option<EngineKind> {
        self.pref.as_ref().map(|(p, _)| p.regex.kind())
    }

    /// Which engine runs ignoreregex `i`.
    pub fn ignoreregex_engine(&self, i: usize) -> EngineKind {
        self.ignore[i].kind()
    }

    /// Whether the literal prefilter is in use (false when no failregex has a literal).
    pub fn has_prefilter(&self) -> bool {
        self.prefilter.is_some()
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
            candidates: vec![false; self.fail.len()],
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
    candidates: Vec<bool>,
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

/// An address span that is no address (e.g. `999.1.1.1`): the line is a miss, never a guess.
struct InvalidAddress;

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
        if !self.prefilter(message) {
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
        if !self.prefilter(message) {
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
        // A failregex may need literals from several lines: every one is a candidate.
        self.candidates.fill(true);
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

    /// Runs the literal prefilter: false when no failregex can match `message`; otherwise
    /// marks the candidates.
    fn prefilter(&mut self, message: &[u8]) -> bool {
        let Some(pre) = &self.filter.prefilter else {
            self.candidates.fill(true);
            return true;
        };
        // Most lines contain no literal at all: answer that with the automaton's fast
        // (SIMD-accelerated) search before doing the slower overlapping one.
        let literal_found = pre.automaton.is_match(message);
        if !literal_found && pre.always.is_empty() {
            return false;
        }
        self.candidates.fill(false);
        for &i in &pre.always {
            self.candidates[i] = true;
        }
        if literal_found {
            for m in pre.automaton.find_overlapping_iter(message) {
                self.candidates[pre.pattern_regex[m.pattern().as_usize()]] = true;
            }
        }
        true
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

    /// Runs the candidate failregexes over the prefregex's content; the first that matches
    /// decides.
    fn scan<'a>(&mut self, pref: PrefParts<'a>) -> Scan<'a> {
        let filter = self.filter;
        let content = pref.content;
        for (i, regex) in filter.fail.iter().enumerate() {
            if !self.candidates[i] {
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
            if let Some(ignore) = filter
                .ignore
                .iter()
                .position(|r| r.is_match(content, scratch))
            {
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
            user,
            text: hit.text,
        }),
        SessionVerdict::Pending => Outcome::Hostless { regex: hit.regex },
        SessionVerdict::NoFailure => Outcome::NoFailure { regex: hit.regex },
    }
}

/// `<F-USER>`, or when it is missing or empty the first non-empty `<F-ALT_USER…>` (an
/// empty user stays empty when no alternative has one).
fn user_of<'a>(regex: &CompiledRegex, locs: &Slots, text: &'a [u8]) -> Option<&'a [u8]> {
    let mut first = None;
    for (s, e) in regex.user_groups.iter().filter_map(|&g| locs.get(g)) {
        let user = &text[s..e];
        if !user.is_empty() {
            return Some(user);
        }
        first.get_or_insert(user);
    }
    first
}

/// The address the regex captured, `Ok(None)` if none of its address tags took part.
fn address_of<'a>(
    regex: &CompiledRegex,
    locs: &Slots,
    text: &'a [u8],
) -> Result<Option<Host<'a>>, InvalidAddress> {
    let Some((s, e)) = regex.address_groups.iter().find_map(|&g| locs.get(g)) else {
        return Ok(None);
    };
    let span = &text[s..e];
    let as_str = std::str::from_utf8(span).map_err(|_| InvalidAddress)?;
    let ip = match parse_address(as_str) {
        Some(ip) => ip,
        None if span.contains(&b':') || span.iter().all(|b| b.is_ascii_digit() || *b == b'.') => {
            return Err(InvalidAddress)
        }
        None => return Ok(Some(Host::Name(span))),
    };
    let Some((s, e)) = regex.cidr_groups.iter().find_map(|&g| locs.get(g)) else {
        return Ok(Some(Host::Ip(ip)));
    };
    let prefix: u8 = std::str::from_utf8(&text[s..e])
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(InvalidAddress)?;
    let net = IpNet::new(ip, prefix).map_err(|_| InvalidAddress)?;
    Ok(Some(if prefix == net.max_prefix_len() {
        Host::Ip(ip)
    } else {
        Host::Net(net.trunc())
    }))
}

/// The prefix of a prefregex `PREFIX<F-CONTENT>.+</F-CONTENT>$` (or `.*`), when PREFIX has
/// no tags of its own.
#[derive(Debug)]
struct PrefixOnly {
    prefix: Regex,
    content_may_be_empty: bool,
    /// The prefix's `<F-MLFID>` group, its only capture if any.
    mlfid_group: Option<usize>,
    /// The prefix has no assertion but its leading `^`: its captures can be taken on the
    /// text it matched alone, which is much shorter than the line.
    captures_on_match: bool,
}

impl PrefixOnly {
    /// The content, when the shortcut gives exactly what the full prefregex would: the
    /// prefix's own leftmost-first match is the full regex's choice as long as what follows
    /// can be matched by `.+$`, i.e. is non-empty (for `.+`) and has no newline. Otherwise
    /// `None`, and the caller runs the full prefregex.
    fn content<'a>(&self, message: &'a [u8]) -> Option<&'a [u8]> {
        let m = self.prefix.find(message)?;
        self.rest(message, (m.start(), m.end()))
    }

    /// [`PrefixOnly::content`], with the prefix's captures (the session id) in `locs`. The
    /// full regex's leftmost-first choice of the prefix is the prefix's own, so the
    /// captures are the same too.
    fn content_captured<'a>(
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
    fn captures_ending_at(&self, message: &[u8], end: usize, locs: &mut CaptureLocations) -> bool {
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

    fn rest<'a>(&self, message: &'a [u8], (start, end): (usize, usize)) -> Option<&'a [u8]> {
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

fn prefix_only(prefregex: &str, dialect: Dialect) -> Option<PrefixOnly> {
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
fn looks_only_at_start(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Look(look) => *look == regex_syntax::hir::Look::Start,
        HirKind::Capture(cap) => looks_only_at_start(&cap.sub),
        HirKind::Repetition(rep) => looks_only_at_start(&rep.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().all(looks_only_at_start),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => true,
    }
}

/// Translates tags into regex syntax and compiles. `multi_line`: the regex searches a
/// window of lines joined with `\n`, so `^` and `$` match at each line's start and end.
fn compile_tagged(
    pattern: &str,
    dialect: Dialect,
    multi_line: bool,
) -> Result<CompiledRegex, FilterErrorKind> {
    let mut translated = translate_tags(pattern, EngineKind::Linear, dialect)?;
    if translated.needs_backtracking {
        translated = translate_tags(pattern, EngineKind::Backtracking, dialect)?;
    }
    let regex = if translated.needs_backtracking {
        let flagged = if multi_line {
            format!("(?m){}", translated.pattern)
        } else {
            translated.pattern.clone()
        };
        let regex = fancy_regex::RegexBuilder::new(&flagged)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(32 << 20)
            .build()
            .map_err(|e| FilterErrorKind::Regex(one_line(&e.to_string())))?;
        let gate = RegexBuilder::new(&relax_for_literals(&translated.pattern))
            .unicode(false)
            .multi_line(multi_line)
            .size_limit(32 << 20)
            .build()
            .ok();
        Engine::Backtracking { regex, gate }
    } else {
        let regex = RegexBuilder::new(&translated.pattern)
            // Log lines are bytes; `.` must not match a newline inside a journal MESSAGE, so a
            // message with an embedded "\n" cannot smuggle a second line past an anchor.
            .unicode(false)
            .multi_line(multi_line)
            .size_limit(32 << 20)
            .build()
            .map_err(|e| FilterErrorKind::Regex(one_line(&e.to_string())))?;
        Engine::Linear(regex)
    };
    let mut address_groups = Vec::new();
    let mut cidr_groups = Vec::new();
    let mut skip_groups = Vec::new();
    let mut user_group = None;
    let mut alt_user_groups = Vec::new();
    let mut fields = Vec::new();
    let mut mlfid_group = None;
    let (mut nofail_groups, mut forget_groups, mut gained_groups) =
        (Vec::new(), Vec::new(), Vec::new());
    for (i, name) in regex.capture_names().into_iter().enumerate() {
        let Some(name) = name else { continue };
        if name.starts_with(ADDRESS_GROUP_PREFIX) {
            address_groups.push(i);
        } else if name.starts_with(CIDR_GROUP_PREFIX) {
            cidr_groups.push(i);
        } else if name.starts_with(SKIP_GROUP_PREFIX) {
            skip_groups.push(i);
        } else if let Some(field) = name.strip_prefix(FIELD_GROUP_PREFIX) {
            match field {
                USER_FIELD => user_group = Some(i),
                MLFID_FIELD => mlfid_group = Some(i),
                NOFAIL_FIELD => nofail_groups.push(i),
                FORGET_FIELD => forget_groups.push(i),
                GAINED_FIELD => gained_groups.push(i),
                CONTENT_FIELD => {}
                alt if alt
                    .strip_prefix(ALT_USER_FIELD)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) =>
                {
                    alt_user_groups.push(i)
                }
                _ => fields.push((field.to_string(), i)),
            }
        }
    }
    let user_groups: Vec<usize> = user_group.into_iter().chain(alt_user_groups).collect();
    let literal_pattern = if translated.needs_backtracking {
        relax_for_literals(&translated.pattern)
    } else {
        translated.pattern.clone()
    };
    Ok(CompiledRegex {
        regex,
        translated: literal_pattern,
        address_groups,
        cidr_groups,
        user_groups,
        fields,
        mlfid_group,
        nofail_groups,
        forget_groups,
        gained_groups,
        skip_groups,
        source: pattern.to_string(),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Translated {
    pattern: String,
    /// Uses lookarounds, backreferences or conditionals.
    needs_backtracking: bool,
}

/// Rewrites `<HOST>`-style tags and `<F-NAME>…</F-NAME>` into named groups.
fn translate_tags(
    pattern: &str,
    engine: EngineKind,
    dialect: Dialect,
) -> Result<Translated, FilterErrorKind> {
    let mut out = String::with_capacity(pattern.len() + 128);
    let mut open_fields: Vec<String> = Vec::new();
    let mut seen_fields: Vec<String> = Vec::new();
    let mut address_tags = 0usize;
    let mut cidr_tags = 0usize;
    let mut skip_tags = 0usize;
    let mut needs_backtracking = false;
    let mut in_class = false;
    let mut rest = pattern;
    // A group named in a backreference or a condition: fail2ban names the group of
    // `<F-USER>` "user", banhound "F_USER".
    let group_alias = |name: &str, seen: &[String]| -> String {
        match seen.iter().find(|f| f.eq_ignore_ascii_case(name)) {
            Some(f) => format!("{FIELD_GROUP_PREFIX}{f}"),
            None => name.to_string(),
        }
    };
    loop {
        let specials: &[char] = if in_class {
            &['\\', '[', ']', '&', '~']
        } else {
            &['\\', '<', '(', '[', '{']
        };
        let Some(pos) = rest.find(specials) else {
            break;
        };
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if in_class && !tail.starts_with('\\') {
            // Python takes '[', '&&', '~~' in a class literally; the regex crate would read
            // a nested class or a set operation.
            match tail.as_bytes()[0] {
                b']' => {
                    in_class = false;
                    out.push(']');
                }
                c => {
                    out.push('\\');
                    out.push(char::from(c));
                }
            }
            rest = &tail[1..];
            continue;
        }
        if let Some(class) = tail.strip_prefix('[') {
            in_class = true;
            out.push('[');
            let mut class = class;
            if let Some(c) = class.strip_prefix('^') {
                out.push('^');
                class = c;
            }
            // A ']' first in a class is a literal.
            if let Some(c) = class.strip_prefix(']') {
                out.push_str("\\]");
                class = c;
            }
            rest = class;
            continue;
        }
        if let Some(after) = tail.strip_prefix('{') {
            // Python reads `{,n}` as `{0,n}` and a brace that is no quantifier literally.
            match after.find('}').map(|e| &after[..e]) {
                Some(q) if is_quantifier(q) => {
                    out.push('{');
                    if q.starts_with(',') {
                        out.push('0');
                    }
                    out.push_str(q);
                    out.push('}');
                    rest = &after[q.len() + 1..];
                }
                _ => {
                    out.push_str("\\{");
                    rest = after;
                }
            }
            continue;
        }
        if let Some(after) = tail.strip_prefix('\\') {
            let next = after.chars().next().map_or(0, char::len_utf8);
            match after.as_bytes().first() {
                // Python's end of string.
                Some(b'Z') => out.push_str("\\z"),
                Some(b'1'..=b'9') | Some(b'k') => {
                    needs_backtracking = true;
                    out.push_str(&tail[..1 + next]);
                }
                // Otherwise an escape: copy it and the escaped character untouched.
                _ => out.push_str(&tail[..1 + next]),
            }
            rest = &after[next..];
            continue;
        }
        if let Some(after_paren) = tail.strip_prefix('(') {
            if let Some(name) = tail.strip_prefix("(?P=") {
                // Python's named backreference.
                let end = name.find(')').unwrap_or(name.len());
                out.push_str(&format!("\\k<{}>", group_alias(&name[..end], &seen_fields)));
                needs_backtracking = true;
                rest = name.get(end + 1..).unwrap_or("");
                continue;
            }
            if let Some(cond) = tail.strip_prefix("(?(") {
                needs_backtracking = true;
                let end = cond.find(')').unwrap_or(cond.len());
                let name = &cond[..end];
                // fancy-regex reads a bare name as a regex to try, not a group to test.
                if name.bytes().all(|b| b.is_ascii_digit()) || name.starts_with('<') {
                    out.push_str(&tail[..3 + end + 1]);
                } else {
                    out.push_str(&format!("(?(<{}>)", group_alias(name, &seen_fields)));
                }
                rest = cond.get(end + 1..).unwrap_or("");
                continue;
            }
            for look in ["(?=", "(?!", "(?<=", "(?<!", "(?>"] {
                if tail.starts_with(look) {
                    needs_backtracking = true;
                }
            }
            out.push('(');
            rest = after_paren;
            continue;
        }
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let tag = &tail[1..end];
        let consumed = end + 1;
        if out.ends_with("?P") || out.ends_with("(?") || tag.contains('<') {
            // A group name, a lookbehind, or a '<' that opens nothing: not a tag.
            out.push('<');
            rest = &tail[1..];
            continue;
        }
        if let Some(field) = tag.strip_prefix("F-").and_then(|t| t.strip_suffix('/')) {
            // fail2ban's self-closing field: one word.
            let name = field_name(field);
            if !is_tag_name(field) || seen_fields.contains(&name) {
                return Err(FilterErrorKind::UnknownTag(tag.to_string()));
            }
            out.push_str(&format!("(?P<{FIELD_GROUP_PREFIX}{name}>\\S+)"));
            seen_fields.push(name);
        } else if let Some(field) = tag.strip_prefix("/F-") {
            let name = field_name(field);
            match open_fields.pop() {
                Some(open) if open == name => out.push(')'),
                _ => return Err(FilterErrorKind::Unopened(format!("F-{field}"))),
            }
        } else if let Some(field) = tag.strip_prefix("F-") {
            let name = field_name(field);
            if !is_tag_name(field) {
                return Err(FilterErrorKind::UnknownTag(tag.to_string()));
            }
            if seen_fields.contains(&name) {
                return Err(FilterErrorKind::DuplicateField(format!("F-{field}")));
            }
            out.push_str(&format!("(?P<{FIELD_GROUP_PREFIX}{name}>"));
            seen_fields.push(name.clone());
            open_fields.push(name);
        } else if tag == "SKIPLINES" {
            // A line break, then any number of whole lines (as few as will do); captured so
            // that the lines it passed over stay in the window for other matches.
            out.push_str(&format!(
                "(?P<{SKIP_GROUP_PREFIX}{skip_tags}>\\n(?:[^\\n]*\\n)*?)"
            ));
            skip_tags += 1;
        } else if tag == "CIDR" {
            out.push_str(&format!("(?P<{CIDR_GROUP_PREFIX}{cidr_tags}>{CIDR})"));
            cidr_tags += 1;
        } else if let Some(sub) = address_tag(tag, engine) {
            out.push_str(&format!("(?P<{ADDRESS_GROUP_PREFIX}{address_tags}>{sub})"));
            if tag == "SUBNET" {
                // An optional prefix length: with one, the network is what is banned.
                out.push_str(&format!("(?:/(?P<{CIDR_GROUP_PREFIX}{cidr_tags}>{CIDR}))?"));
                cidr_tags += 1;
            }
            address_tags += 1;
        } else if dialect == Dialect::Banhound
            && is_tag_name(tag)
            && tag.chars().any(|c| c.is_ascii_uppercase())
        {
            // fail2ban keeps unknown tags as text (haproxy logs a literal "<NOSRV>");
            // banhound's own filters are checked for typos instead.
            return Err(FilterErrorKind::UnknownTag(tag.to_string()));
        } else {
            // Not a tag: a literal '<' in the regex (e.g. "<html>" or a lookbehind-free
            // comparison); keep it verbatim.
            out.push_str(&tail[..consumed]);
        }
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    if let Some(open) = open_fields.pop() {
        return Err(FilterErrorKind::Unclosed(format!(
            "F-{}",
            open.replace('_', "-")
        )));
    }
    Ok(Translated {
        pattern: out,
        needs_backtracking,
    })
}

/// `n`, `n,`, `n,m` or `,m`: the inside of a counted repetition.
fn is_quantifier(q: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match q.split_once(',') {
        None => !q.is_empty() && digits(q),
        Some((a, b)) => digits(a) && digits(b) && !(a.is_empty() && b.is_empty()),
    }
}

/// A pattern that matches at least everything `pattern` (a backtracking one) matches, in
/// the `regex` crate's syntax, for literal analysis: lookarounds dropped, conditionals made
/// alternations, backreferences made "anything". Literals it requires, `pattern` requires.
fn relax_for_literals(pattern: &str) -> String {
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
fn group_len(s: &str) -> usize {
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

fn is_tag_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn field_name(s: &str) -> String {
    s.replace('-', "_")
}

fn address_tag(tag: &str, engine: EngineKind) -> Option<String> {
    // fancy-regex works on text and does not take `(?-u:…)`; its `\b` around ASCII digits
    // is the same boundary.
    let ip4 = match engine {
        EngineKind::Linear => Cow::Borrowed(IP4),
        EngineKind::Backtracking => Cow::Owned(IP4.replace("(?-u:\\b)", "\\b")),
    };
    Some(match tag {
        "HOST" => format!("{IP6}|{ip4}|{DNS}"),
        "ADDR" => format!("{IP6}|{ip4}"),
        "SUBNET" => format!("{IP6}|{ip4}"),
        "IP4" => ip4.into_owned(),
        "IP6" => IP6.to_string(),
        "DNS" => DNS.to_string(),
        _ => return None,
    })
}

/// Shortest literal worth prefiltering on: shorter ones hit nearly every line.
const MIN_LITERAL: usize = 3;

fn build_prefilter(fail: &[CompiledRegex]) -> Option<Prefilter> {
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
fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(fail: &[&str]) -> Filter {
        Filter::compile(&FilterSpec {
            failregex: fail.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn host_of(f: &Filter, line: &str) -> Option<String> {
        match f.matcher().match_line(line.as_bytes()) {
            Outcome::Failure(fl) => Some(fl.host.to_string()),
            _ => None,
        }
    }

    const SSHD_PW: &str = r"^Failed (?:password|publickey) for (?:invalid user )?<F-USER>.*</F-USER> from <HOST> port \d+(?: ssh\d)?$";

    #[test]
    fn matches_host_and_user() {
        let f = filter(&[SSHD_PW]);
        let mut m = f.matcher();
        let line = b"Failed password for invalid user admin from 198.51.100.4 port 4242 ssh2";
        match m.match_line(line) {
            Outcome::Failure(fl) => {
                assert_eq!(fl.host, Host::Ip("198.51.100.4".parse().unwrap()));
                assert_eq!(fl.user, Some(&b"admin"[..]));
                assert_eq!(fl.regex, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn injected_address_in_user_name_is_not_the_peer() {
        let f = filter(&[SSHD_PW]);
        let line =
            "Failed password for invalid user root from 203.0.113.9 from 198.51.100.4 port 22 ssh2";
        assert_eq!(host_of(&f, line).as_deref(), Some("198.51.100.4"));
        // A user name that tries to end the line early gains nothing either.
        let line =
            "Failed password for x from 203.0.113.9 port 22 ssh2 from 198.51.100.4 port 22 ssh2";
        assert_eq!(host_of(&f, line).as_deref(), Some("198.51.100.4"));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let f = filter(&[SSHD_PW]);
        let l6 = "Failed password for root from 2001:db8:1::7 port 22 ssh2";
        assert_eq!(host_of(&f, l6).as_deref(), Some("2001:db8:1::7"));
        let mapped = "Failed password for root from ::ffff:198.51.100.4 port 22 ssh2";
        assert_eq!(host_of(&f, mapped).as_deref(), Some("198.51.100.4"));
    }

    #[test]
    fn invalid_address_is_a_miss_not_a_guess() {
        let f = filter(&[SSHD_PW]);
        assert_eq!(
            host_of(&f, "Failed password for root from 999.1.1.1 port 22 ssh2"),
            None
        );
        assert_eq!(
            host_of(&f, "Failed password for root from 1.2.3.4567 port 22 ssh2"),
            None
        );
    }

    #[test]
    fn hostnames_are_reported_as_names() {
        let f = filter(&[r"^Failed password for \S+ from <HOST> port \d+"]);
        let mut m = f.matcher();
        match m.match_line(b"Failed password for root from evil.example port 22") {
            Outcome::Failure(fl) => assert_eq!(fl.host, Host::Name(b"evil.example")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_regex_without_address_tag() {
        let err = Filter::compile(&FilterSpec {
            failregex: vec!["^Failed password for root$".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.role, RegexRole::Fail(0));
        assert_eq!(err.kind, FilterErrorKind::NoAddressTag);
    }

    #[test]
    fn reports_tag_and_syntax_errors() {
        let compile = |p: &str| {
            Filter::compile(&FilterSpec {
                failregex: vec![p.into()],
                ..Default::default()
            })
            .unwrap_err()
            .kind
        };
        assert_eq!(
            compile("from <HOSTNAME>"),
            FilterErrorKind::UnknownTag("HOSTNAME".into())
        );
        assert_eq!(
            compile("<F-USER>x <HOST>"),
            FilterErrorKind::Unclosed("F-USER".into())
        );
        assert_eq!(
            compile("x</F-USER> <HOST>"),
            FilterErrorKind::Unopened("F-USER".into())
        );
        assert!(matches!(
            compile("from <HOST> ("),
            FilterErrorKind::Regex(_)
        ));
        assert!(matches!(
            Filter::compile(&FilterSpec::default()).unwrap_err().kind,
            FilterErrorKind::NoFailregex
        ));
    }

    #[test]
    fn prefregex_content_and_ignoreregex() {
        let f = Filter::compile(&FilterSpec {
            prefregex: Some(r"^(?:error: )?<F-CONTENT>.+</F-CONTENT>$".into()),
            failregex: vec![
                r"^Invalid user <F-USER>\S*</F-USER> from <HOST>(?: port \d+)?$".into(),
                r"^PAM: Authentication failure for \S+ from <HOST>$".into(),
            ],
            ignoreregex: vec![r"^Invalid user nagios ".into()],
            dialect: Dialect::Banhound,
        })
        .unwrap();
        let mut m = f.matcher();
        assert!(matches!(
            m.match_line(b"error: PAM: Authentication failure for root from 192.0.2.1"),
            Outcome::Failure(Failure { regex: 1, .. })
        ));
        assert!(matches!(
            m.match_line(b"Invalid user nagios from 192.0.2.1 port 1"),
            Outcome::Ignored {
                regex: 0,
                ignore: 0
            }
        ));
        assert_eq!(m.match_line(b"Accepted password for root"), Outcome::Missed);
    }

    #[test]
    fn custom_fields() {
        let f = filter(&[r"^auth failed method=<F-METHOD>\w+</F-METHOD> rip=<ADDR>$"]);
        let mut m = f.matcher();
        let line = b"auth failed method=PLAIN rip=192.0.2.5";
        assert!(matches!(m.match_line(line), Outcome::Failure(_)));
        let fields: Vec<_> = m.fields(0, line).collect();
        assert_eq!(fields, vec![("METHOD", &b"PLAIN"[..])]);
    }

    #[test]
    fn prefilter_finds_required_literals() {
        let f = filter(&[
            SSHD_PW,
            r"^Invalid user \S* from <HOST>",
            r"(?i)^bad from <HOST>",
        ]);
        let pre = f.prefilter.as_ref().unwrap();
        // The case-insensitive regex has no literal: it always runs.
        assert_eq!(pre.always, vec![2]);
        assert!(pre.pattern_regex.contains(&0) && pre.pattern_regex.contains(&1));
        assert_eq!(
            host_of(&f, "BAD from 192.0.2.9").as_deref(),
            Some("192.0.2.9")
        );
        assert_eq!(
            host_of(&f, "Invalid user x from 192.0.2.9").as_deref(),
            Some("192.0.2.9")
        );
    }

    #[test]
    fn newline_in_message_cannot_smuggle_a_line() {
        let f = filter(&[SSHD_PW]);
        let msg =
            "Accepted password for bob\nFailed password for root from 203.0.113.9 port 22 ssh2";
        assert_eq!(host_of(&f, msg), None);
    }

    #[test]
    fn hostile_bytes_do_not_panic() {
        let f = filter(&[SSHD_PW]);
        let mut m = f.matcher();
        let mut big = b"Failed password for ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        big.extend_from_slice(b" from 198.51.100.4 port 22 ssh2");
        assert!(matches!(m.match_line(&big), Outcome::Failure(_)));
        let garbage = [0xff, 0xfe, 0, b'F', 0x80, b'\n', 0xc3];
        assert_eq!(m.match_line(&garbage), Outcome::Missed);
        let nonutf8 = b"Failed password for \xff\xfe from 198.51.100.4 port 22 ssh2";
        assert!(matches!(m.match_line(nonutf8), Outcome::Failure(_)));
    }

    fn fail2ban(fail: &[&str]) -> Filter {
        Filter::compile(&FilterSpec {
            failregex: fail.iter().map(|s| s.to_string()).collect(),
            dialect: Dialect::Fail2ban,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn python_dialect_is_translated() {
        // `{,2}` is {0,2}; '[' in a class and braces that are no quantifier are literal;
        // `\Z` is the end.
        let f = fail2ban(&[r"^x{,2}y [^[]*\[<HOST>\] \({{\d+}}\)\Z"]);
        assert_eq!(f.failregex_engine(0), EngineKind::Linear);
        assert_eq!(
            host_of(&f, "xxy host[192.0.2.1] ({{42}})").as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(host_of(&f, "xxxy host[192.0.2.1] ({{42}})"), None);
        // fail2ban keeps unknown tags as text; banhound's own filters refuse them.
        let f = fail2ban(&[r"^<NOSRV> from <HOST>$"]);
        assert_eq!(
            host_of(&f, "<NOSRV> from 192.0.2.2").as_deref(),
            Some("192.0.2.2")
        );
    }

    #[test]
    fn lookarounds_backreferences_and_conditionals_run_on_the_backtracking_engine() {
        let f = fail2ban(&[
            r"^user (?!root\b)<F-USER>\S+</F-USER> from <HOST> again (?P=user)$",
            r"^(?P<inv>invalid )?login <F-USER>\S+</F-USER> (?(inv)from|by) <HOST>$",
            r"^plain from <HOST>$",
        ]);
        assert_eq!(f.failregex_engine(0), EngineKind::Backtracking);
        assert_eq!(f.failregex_engine(1), EngineKind::Backtracking);
        assert_eq!(f.failregex_engine(2), EngineKind::Linear);
        assert_eq!(
            host_of(&f, "user bob from 192.0.2.3 again bob").as_deref(),
            Some("192.0.2.3")
        );
        assert_eq!(host_of(&f, "user bob from 192.0.2.3 again eve"), None);
        assert_eq!(host_of(&f, "user root from 192.0.2.3 again root"), None);
        assert_eq!(
            host_of(&f, "invalid login x from 192.0.2.4").as_deref(),
            Some("192.0.2.4")
        );
        assert_eq!(
            host_of(&f, "login x by 192.0.2.5").as_deref(),
            Some("192.0.2.5")
        );
        assert_eq!(host_of(&f, "login x from 192.0.2.5"), None);
        // The prefilter still knows their literals.
        assert!(f.prefilter.as_ref().unwrap().always.is_empty());
    }

    #[test]
    fn backtracking_is_bounded() {
        let f = fail2ban(&[r"^(?:a|a)+(?!x)b from <HOST>$"]);
        let mut line = "a".repeat(40);
        line.push_str("c from 192.0.2.6");
        let start = std::time::Instant::now();
        assert_eq!(host_of(&f, &line), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            host_of(&f, "aab from 192.0.2.6").as_deref(),
            Some("192.0.2.6")
        );
    }

    #[test]
    fn backtrack_limit_gives_up_and_counts() {
        // The linear gate (lookahead dropped) accepts the line; the lookahead then fails
        // after every one of the 2^40 ways to read the a's: given up at the limit.
        let f = fail2ban(&[r"^(?:a|a)+(?!b)\w from <HOST>$"]);
        let mut m = f.matcher();
        let mut line = "a".repeat(40);
        line.push_str("b from 192.0.2.6");
        assert_eq!(m.match_line(line.as_bytes()), Outcome::Missed);
        assert_eq!(m.backtracking_gave_up(), 1);
        assert!(matches!(
            m.match_line(b"aac from 192.0.2.6"),
            Outcome::Failure(_)
        ));
        assert_eq!(m.backtracking_gave_up(), 1);
    }

    #[test]
    fn backtracking_is_not_run_on_lines_over_its_length_limit() {
        // Forward steps, each scanning the rest of the line in the lookahead: quadratic,
        // and never a backtrack. The limit on the line's length is what bounds it.
        let f = fail2ban(&[r"^(?:(?=.*Failed)\S+ )+from <HOST>$"]);
        let mut m = f.matcher();
        let fits = format!("{}Failed from 192.0.2.9", "a ".repeat(100));
        assert!(matches!(m.match_line(fits.as_bytes()), Outcome::Failure(_)));
        assert_eq!(m.backtracking_gave_up(), 0);
        let mut long = "a ".repeat(BACKTRACKING_MAX_LINE / 2);
        long.push_str("Failed from 192.0.2.9");
        assert!(long.len() > BACKTRACKING_MAX_LINE);
        assert_eq!(m.match_line(long.as_bytes()), Outcome::Missed);
        assert_eq!(m.backtracking_gave_up(), 1);
        // A line the linear gate rejects is no give-up: it could not have matched.
        long.push_str(" x");
        assert_eq!(m.match_line(long.as_bytes()), Outcome::Missed);
        assert_eq!(m.backtracking_gave_up(), 1);
    }

    #[test]
    fn non_utf8_lines_keep_their_offsets_on_the_backtracking_engine() {
        let f = fail2ban(&[r"^bad (?!root)<F-USER>\S+</F-USER> from <HOST>$"]);
        let mut m = f.matcher();
        let line = b"bad \xff\xfeus\xc3 from 192.0.2.7";
        match m.match_line(line) {
            Outcome::Failure(fl) => {
                assert_eq!(fl.host, Host::Ip("192.0.2.7".parse().unwrap()));
                assert_eq!(fl.user, Some(&b"\xff\xfeus\xc3"[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nofail_and_hostless_matches_are_no_failures_on_their_own() {
        let f = fail2ban(&[
            r"^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>",
            r"^account <F-USER>\S+</F-USER> locked$",
            r"^Failed for \S+ from <HOST>",
        ]);
        let mut m = f.matcher();
        assert_eq!(
            m.match_line(b"Connection from 192.0.2.8"),
            Outcome::NoFailure { regex: 0 }
        );
        assert_eq!(
            m.match_line(b"account bob locked"),
            Outcome::Hostless { regex: 1 }
        );
        assert!(matches!(
            m.match_line(b"Failed for bob from 192.0.2.8"),
            Outcome::Failure(Failure { regex: 2, .. })
        ));
        // banhound's own dialect refuses the hostless one.
        let strict = Filter::compile(&FilterSpec {
            failregex: vec![r"^account <F-USER>\S+</F-USER> locked$".into()],
            ..Default::default()
        });
        assert!(matches!(
            strict.unwrap_err().kind,
            FilterErrorKind::NoAddressTag
        ));
    }

    fn record<'a>(
        m: &mut Matcher<'_>,
        state: &'a mut SourceState,
        line: &'a str,
    ) -> Option<String> {
        let at = Timestamp::from_secs(1_795_000_000);
        match m.match_record(state, line.as_bytes(), Origin::default(), at) {
            Outcome::Failure(f) => Some(f.host.to_string()),
            _ => None,
        }
    }

    /// An sshd-like filter: the session id is the `host sshd[PID]: ` prefix.
    fn sessions_filter() -> Filter {
        Filter::compile(&FilterSpec {
            prefregex: Some(
                r"^<F-MLFID>\s*\S+ sshd\[\d+\]: </F-MLFID><F-CONTENT>.+</F-CONTENT>$".into(),
            ),
            failregex: vec![
                r"^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>".into(),
                r"^Disconnecting: Too many authentication failures".into(),
                r"^<F-NOFAIL><F-MLFFORGET>Connection closed</F-MLFFORGET></F-NOFAIL> by <HOST>".into(),
                r"^<F-MLFFORGET><F-MLFGAINED>Accepted \w+</F-MLFGAINED></F-MLFFORGET> for \S+ from <HOST>".into(),
                r"^Failed \S+ for <F-USER>\S+</F-USER> from <HOST>".into(),
            ],
            dialect: Dialect::Fail2ban,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn sessions_join_lines_of_the_same_id() {
        let f = sessions_filter();
        assert!(f.is_multiline());
        // The prefregex shortcut captures the id.
        let shortcut = f.pref_prefix.as_ref().unwrap();
        assert!(shortcut.mlfid_group.is_some() && shortcut.captures_on_match);
        let mut m = f.matcher();
        let mut st = SourceState::new();
        let s = &mut st;
        assert_eq!(
            record(&mut m, s, " web1 sshd[7]: Connection from 192.0.2.1 port 1"),
            None
        );
        // The failure line names no address: the session's is used.
        assert_eq!(
            record(
                &mut m,
                s,
                " web1 sshd[7]: Disconnecting: Too many authentication failures"
            )
            .as_deref(),
            Some("192.0.2.1")
        );
        // Another process (or host) is another session.
        assert_eq!(
            record(
                &mut m,
                s,
                " web1 sshd[8]: Disconnecting: Too many authentication failures"
            ),
            None
        );
        assert_eq!(
            record(
                &mut m,
                s,
                " web2 sshd[7]: Disconnecting: Too many authentication failures"
            ),
            None
        );
        // Held: sshd[8]'s failure counts when its address comes.
        assert_eq!(
            record(
                &mut m,
                s,
                " web1 sshd[8]: Connection closed by 192.0.2.8 port 1"
            )
            .as_deref(),
            Some("192.0.2.8")
        );
        // A success ends the session; nothing pending of it counts afterwards.
        assert_eq!(
            record(
                &mut m,
                s,
                " web1 sshd[9]: Disconnecting: Too many authentication failures"
            ),
            None
        );
        assert_eq!(
            record(
                &mut m,
                s,
                " web1 sshd[9]: Accepted password for bob from 192.0.2.9 port 1"
            ),
            None
        );
        assert_eq!(
            record(
                &mut m,
                s,
                " web1 sshd[9]: Connection closed by 192.0.2.9 port 1"
            ),
            None
        );
        // On its own (match_line) a hostless failure is just that.
        assert_eq!(
            m.match_line(b" web1 sshd[7]: Disconnecting: Too many authentication failures"),
            Outcome::Hostless { regex: 1 }
        );
        // The user of an earlier line comes along.
        record(
            &mut m,
            s,
            " web1 sshd[10]: Failed password for eve from 192.0.2.10 port 1",
        );
        match m.match_record(
            s,
            b" web1 sshd[10]: Disconnecting: Too many authentication failures",
            Origin::default(),
            Timestamp::from_secs(1_795_000_000),
        ) {
            Outcome::Failure(fl) => assert_eq!(fl.user, Some(&b"eve"[..])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn process_sessions_count_a_try_once_and_only_by_process() {
        let f = Filter::compile(&FilterSpec {
            failregex: vec![
                SSHD_PW.into(),
                r"^pam_unix\(sshd:auth\): authentication failure; .* rhost=<HOST>$".into(),
                r"^Connection closed by authenticating user \S+ <HOST> port \d+ \[preauth\]$"
                    .into(),
            ],
            ..FilterSpec::default()
        })
        .unwrap()
        .with_process_sessions()
        .with_counting(vec![
            Counting::Always,
            Counting::UnlessFollowed,
            Counting::IfFirst,
        ]);
        assert!(f.is_multiline() && f.has_sessions());
        assert_eq!(f.counting(1), Counting::UnlessFollowed);
        let mut m = f.matcher();
        let mut st = SourceState::new();
        let at = Timestamp::from_secs(1_795_000_000);
        let pam = b"pam_unix(sshd:auth): authentication failure; logname= rhost=192.0.2.7";
        let failed = b"Failed password for admin from 192.0.2.7 port 50000 ssh2";
        let closed =
            b"Connection closed by authenticating user admin 192.0.2.7 port 50000 [preauth]";
        let web1 = |pid: &'static [u8]| Origin {
            host: b"web1",
            pid: Some(pid),
        };
        let mut outcome = |message: &'static [u8], origin: Origin<'static>| match m
            .match_record(&mut st, message, origin, at)
        {
            Outcome::Failure(fl) => Some(fl.regex),
            Outcome::NoFailure { .. } => None,
            other => panic!("{other:?}"),
        };
        // Interleaved: two processes, each try counted on its "Failed password".
        assert_eq!(outcome(pam, web1(b"1")), None);
        assert_eq!(outcome(pam, web1(b"2")), None);
        assert_eq!(outcome(failed, web1(b"1")), Some(0));
        assert_eq!(outcome(closed, web1(b"1")), None);
        assert_eq!(outcome(failed, web1(b"2")), Some(0));
        // The same pid on another host is another process.
        let web2 = Origin {
            host: b"web2",
            pid: Some(b"1"),
        };
        assert_eq!(outcome(closed, web2), Some(2));
        // Without a pid a line is taken as it stands.
        assert_eq!(outcome(pam, Origin::default()), Some(1));
        assert_eq!(outcome(closed, Origin::default()), Some(2));
        // match_line knows no sessions: every line as it stands.
        assert!(matches!(m.match_line(pam), Outcome::Failure(_)));
    }

    #[test]
    fn single_line_filters_leave_the_state_alone() {
        let f = filter(&[SSHD_PW]);
        assert!(!f.is_multiline());
        let mut m = f.matcher();
        let mut st = SourceState::new();
        let line = "Failed password for root from 192.0.2.4 port 22 ssh2";
        assert_eq!(record(&mut m, &mut st, line).as_deref(), Some("192.0.2.4"));
        assert_eq!((st.sessions(), st.window_lines()), (0, 0));
    }

    fn window_filter(fail: &[&str], maxlines: usize) -> Filter {
        let spec = FilterSpec {
            failregex: fail.iter().map(|s| s.to_string()).collect(),
            dialect: Dialect::Fail2ban,
            ..Default::default()
        };
        Filter::compile_lines(&spec, maxlines).unwrap()
    }

    #[test]
    fn windows_span_lines_and_skiplines_skips_them() {
        let f = window_filter(
            &[r"^conn=(?P<c>\d+) accept from <HOST><SKIPLINES>conn=(?P=c) fail$"],
            4,
        );
        let mut m = f.matcher();
        let mut st = SourceState::new();
        let s = &mut st;
        assert_eq!(record(&mut m, s, "conn=1 accept from 192.0.2.1"), None);
        assert_eq!(record(&mut m, s, "conn=2 accept from 192.0.2.2"), None);
        assert_eq!(
            record(&mut m, s, "conn=1 fail").as_deref(),
            Some("192.0.2.1")
        );
        // The skipped line (conn=2's accept) stays for its own failure.
        assert_eq!(
            record(&mut m, s, "conn=2 fail").as_deref(),
            Some("192.0.2.2")
        );
        // Matched lines are used once.
        assert_eq!(record(&mut m, s, "conn=2 fail"), None);
        // Lines beyond maxlines are gone.
        for l in ["conn=3 accept from 192.0.2.3", "x", "y", "z", "conn=3 fail"] {
            assert_eq!(record(&mut m, s, l), None);
        }
        // <SKIPLINES> needs a line break.
        assert_eq!(
            record(&mut m, s, "conn=4 accept from 192.0.2.4 conn=4 fail"),
            None
        );
        // A line of a journal entry with an embedded newline stays one line.
        let f = window_filter(&[r"^a <HOST>\nb$"], 3);
        let mut m = f.matcher();
        let mut st = SourceState::new();
        assert_eq!(record(&mut m, &mut st, "a 192.0.2.5\nb"), None);
        assert_eq!(record(&mut m, &mut st, "a 192.0.2.5"), None);
        assert_eq!(record(&mut m, &mut st, "b").as_deref(), Some("192.0.2.5"));
    }

    #[test]
    fn subnet_and_cidr_name_networks() {
        let f = fail2ban(&[r"^bad net <SUBNET>$", r"^bad block <ADDR>/<CIDR>$"]);
        let mut m = f.matcher();
        fn host<'a>(m: &mut Matcher<'_>, l: &'a str) -> Option<Host<'a>> {
            match m.match_line(l.as_bytes()) {
                Outcome::Failure(fl) => Some(fl.host),
                _ => None,
            }
        }
        assert_eq!(
            host(&mut m, "bad net 192.0.2.77/24"),
            Some(Host::Net("192.0.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            host(&mut m, "bad net 192.0.2.77"),
            Some(Host::Ip("192.0.2.77".parse().unwrap()))
        );
        assert_eq!(
            host(&mut m, "bad net 2001:db8::1/64"),
            Some(Host::Net("2001:db8::/64".parse().unwrap()))
        );
        assert_eq!(
            host(&mut m, "bad block 198.51.100.0/25"),
            Some(Host::Net("198.51.100.0/25".parse().unwrap()))
        );
        assert_eq!(
            host(&mut m, "bad net 192.0.2.77/32"),
            Some(Host::Ip("192.0.2.77".parse().unwrap()))
        );
        // A prefix that is no prefix is a miss, never a guess.
        assert_eq!(host(&mut m, "bad net 192.0.2.77/33"), None);
        assert_eq!(host(&mut m, "bad block 198.51.100.0/999"), None);
    }
}
