//! Multi-line matching state: what one log source has said so far that a later line may
//! complete.
//!
//! Some failures span several lines. fail2ban describes them two ways, and filters written
//! for it use both:
//! - **sessions** (`<F-MLFID>`): lines that share an id (sshd's `host sshd[PID]: ` prefix)
//!   belong to one connection. A line naming the address and a later line naming the
//!   failure (or the other way round) combine into one failure, `<F-MLFFORGET>` ends the
//!   session, `<F-MLFGAINED>` marks a success (which also ends it), `<F-NOFAIL>` lines only
//!   contribute what they captured — unless they complete a failure that was waiting for
//!   the address, or the session has named more than one user (`<F-USER>`), which is
//!   guessing accounts: then every line of it counts;
//! - **counting** (banhound's filters, `count = ...` per failregex): one authentication try
//!   often logs several lines (sshd with PAM: pam_unix's failure, then sshd's own `Failed
//!   password`, then `Connection closed by authenticating user ... [preauth]`). Within a
//!   session, a [`Counting::UnlessFollowed`] line is held and the next line that counts
//!   stands for it (lines held in a row are one try; one that nothing follows never counts),
//!   and a [`Counting::IfFirst`] line counts only when nothing of the session counted yet or
//!   something is held. [`Counting::Always`] lines count whatever came before, so no line of
//!   a session can make another session's, or a later, real failure count less;
//! - a **window** (`maxlines > 1`): the last `maxlines` lines joined with `\n`, searched as
//!   one text, with `<SKIPLINES>` standing for any number of lines in between.
//!
//! The state lives with the caller, one [`SourceState`] per log source and filter (one file,
//! or the journal), because only lines of the same source belong together; the matcher
//! itself stays shareable. Memory is bounded, because the ids are chosen by whoever writes
//! the log: at most [`MAX_SESSIONS`] sessions are kept, a session unheard of for
//! [`SESSION_TTL`] (in log time) is gone, an id longer than [`MAX_ID_LEN`] bytes is not
//! tracked, and the window holds at most `maxlines` lines of at most [`MAX_WINDOW_LINE`]
//! bytes each.

use crate::engine::address::Host;
use crate::engine::time::Timestamp;
use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// At most this many sessions (`<F-MLFID>` ids) are remembered per source. A busy sshd has
/// a few hundred connections open at once; a flood of ids beyond this costs the oldest
/// sessions their memory, never more memory.
pub const MAX_SESSIONS: usize = 10_000;
/// A session with no line for this long (in the log's own time) is forgotten: sshd closes
/// an unauthenticated connection after two minutes (`LoginGraceTime`), so ten is generous.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Longer ids are not tracked: an id is a short prefix such as `host sshd[1234]: `.
pub const MAX_ID_LEN: usize = 256;
/// A user name longer than this is not remembered for a session.
const MAX_USER_LEN: usize = 256;
/// Lines in the window are cut to this many bytes.
pub const MAX_WINDOW_LINE: usize = 16 << 10;

/// The multi-line state of one source for one filter. Empty (and allocation-free) until a
/// filter that needs it sees a line.
#[derive(Debug, Default)]
pub struct SourceState {
    pub(crate) sessions: Sessions,
    pub(crate) window: Window,
}

impl SourceState {
    pub fn new() -> SourceState {
        SourceState::default()
    }

    /// How many sessions are remembered now.
    pub fn sessions(&self) -> usize {
        self.sessions.ids.len()
    }

    /// How many lines the window holds now.
    pub fn window_lines(&self) -> usize {
        self.window.lines.len()
    }
}

/// Who logged a record: its host and process id, which `session = "process"` filters group
/// by (journal: `_HOSTNAME` and `_PID`, both set by journald; files: the syslog header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    pub host: &'a [u8],
    pub pid: Option<&'a [u8]>,
}

impl Origin<'_> {
    /// The session id of a process: `PID@HOST` (a pid is digits, so this is unambiguous),
    /// written into `out`; false when there is no pid.
    pub(crate) fn session_id(&self, out: &mut Vec<u8>) -> bool {
        let Some(pid) = self.pid.filter(|p| !p.is_empty()) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(pid);
        out.push(b'@');
        out.extend_from_slice(self.host);
        true
    }
}

/// An address remembered for a session, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredHost {
    Ip(IpAddr),
    Net(IpNet),
    Name(Vec<u8>),
}

/// How a failregex's line counts within its session (`count = ...` in a banhound filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counting {
    /// Every line is a failure.
    #[default]
    Always,
    /// The line announces a try whose own line comes next (pam_unix before sshd's `Failed
    /// password`): held, and the next line of the session that counts stands for it.
    UnlessFollowed,
    /// The line ends or sums up the session (`Connection closed by authenticating user`,
    /// `Too many authentication failures`): a failure only if nothing of the session counted
    /// yet, or a held line is waiting for it.
    IfFirst,
}

impl Counting {
    /// The name in a filter file.
    pub fn name(self) -> &'static str {
        match self {
            Counting::Always => "always",
            Counting::UnlessFollowed => "unless-followed",
            Counting::IfFirst => "if-first",
        }
    }

    /// Reads a name written in a filter file.
    pub fn from_name(name: &str) -> Option<Counting> {
        [
            Counting::Always,
            Counting::UnlessFollowed,
            Counting::IfFirst,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

#[derive(Debug)]
struct Session {
    host: Option<StoredHost>,
    user: Option<Vec<u8>>,
    /// The first user name the session named, and whether it named another one since.
    first_user: Option<Vec<u8>>,
    several_users: bool,
    /// A failure of this session is still waiting for a line that names the address.
    pending: bool,
    /// A [`Counting::UnlessFollowed`] line is waiting for the line of its try.
    held: bool,
    /// A line of this session was a failure.
    counted: bool,
    last_seen: Timestamp,
}

/// What one matched line says, as far as sessions are concerned. The id is only looked up,
/// so it may borrow from elsewhere than the line (`'k`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionLine<'a, 'k> {
    pub id: &'k [u8],
    pub host: Option<Host<'a>>,
    pub user: Option<&'a [u8]>,
    /// `<F-NOFAIL>`: contributes, is no failure by itself.
    pub nofail: bool,
    /// `<F-MLFFORGET>`: the session ends with this line.
    pub forget: bool,
    /// `<F-MLFGAINED>`: access was gained; the session ends, and counts only if it had
    /// named several users.
    pub gained: bool,
    /// How the failregex that matched counts.
    pub count: Counting,
    pub time: Timestamp,
}

/// What a line became once its session was taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionVerdict<'a> {
    /// A failure of this address (the line's own, or the session's).
    Failure {
        host: Host<'a>,
        user: Option<&'a [u8]>,
    },
    /// A failure whose address no line of the session has named yet: it is held, and
    /// counts when one does.
    Pending,
    /// No failure (`<F-NOFAIL>` with nothing pending, `<F-MLFGAINED>`, a line held for the
    /// one that completes its try, or one whose try already counted).
    NoFailure,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Looked up several times per matched line. The ids come from log text an attacker
    /// can shape, so the hash has a random seed (foldhash's, far cheaper than SipHash).
    ids: HashMap<Box<[u8]>, Session, foldhash::fast::RandomState>,
    /// A host name or user taken from a session, copied here so that the verdict can
    /// borrow it after the session is updated or forgotten.
    name: Vec<u8>,
    user: Vec<u8>,
}

impl Sessions {
    /// Combines `line` with what its session said before, and updates the session.
    pub(crate) fn settle<'a>(&'a mut self, line: SessionLine<'a, '_>) -> SessionVerdict<'a> {
        let stale = self
            .ids
            .get(line.id)
            .is_some_and(|s| line.time.since(s.last_seen) > SESSION_TTL);
        if stale {
            self.ids.remove(line.id);
        }
        let session = self.ids.get(line.id);
        let pending_before = session.is_some_and(|s| s.pending);
        let known_host = line.host.is_some() || session.is_some_and(|s| s.host.is_some());
        // A second user name in one session: every line of it is a failure from now on.
        let several_users = session.is_some_and(|s| {
            s.several_users
                || matches!((&s.first_user, line.user), (Some(first), Some(u)) if first.as_slice() != u)
        });
        let verdict_kind = match (line.nofail || line.gained, known_host) {
            // A success is no failure, and what the session held (a failure waiting for
            // its address) never counts; but a session that tried several user names was
            // guessing accounts, and a success after that is one more guess.
            (true, true) if line.gained => {
                if several_users {
                    Kind::Failure
                } else {
                    Kind::NoFailure
                }
            }
            (true, true) if pending_before || several_users => Kind::Failure,
            (true, _) => Kind::NoFailure,
            (false, true) => Kind::Failure,
            (false, false) => Kind::Pending,
        };
        // One try, several lines: only one of them counts.
        let held_before = session.is_some_and(|s| s.held);
        let counted_before = session.is_some_and(|s| s.counted);
        let verdict_kind = match (verdict_kind, line.count) {
            (Kind::Failure, Counting::UnlessFollowed) => Kind::Held,
            (Kind::Failure, Counting::IfFirst) if counted_before && !held_before => Kind::NoFailure,
            (kind, _) => kind,
        };
        // What the failure names, taken before the session changes: the line's own values
        // first, the session's otherwise (copied out, as the session may be forgotten).
        let mut from_session_host = None;
        let mut user_from_session = false;
        if verdict_kind == Kind::Failure {
            if let (None, Some(s)) = (line.host, session) {
                match &s.host {
                    Some(StoredHost::Name(n)) => {
                        self.name.clear();
                        self.name.extend_from_slice(n);
                        from_session_host = Some(StoredHost::Name(Vec::new()));
                    }
                    other => from_session_host = other.clone(),
                }
            }
            if let (None, Some(Some(u))) = (line.user, session.map(|s| &s.user)) {
                self.user.clear();
                self.user.extend_from_slice(u);
                user_from_session = true;
            }
        }
        if line.forget || line.gained {
            self.ids.remove(line.id);
        } else if line.id.len() <= MAX_ID_LEN {
            let pending = match verdict_kind {
                Kind::Failure | Kind::Held => false,
                Kind::Pending => true,
                Kind::NoFailure => pending_before,
            };
            let held = match verdict_kind {
                Kind::Held => true,
                Kind::Failure => false,
                Kind::Pending | Kind::NoFailure => held_before,
            };
            let counted = counted_before || verdict_kind == Kind::Failure;
            self.remember(line, pending, held, counted);
        }
        match verdict_kind {
            Kind::NoFailure | Kind::Held => SessionVerdict::NoFailure,
            Kind::Pending => SessionVerdict::Pending,
            Kind::Failure => {
                let host = match (line.host, from_session_host) {
                    (Some(h), _) => h,
                    (None, Some(StoredHost::Ip(ip))) => Host::Ip(ip),
                    (None, Some(StoredHost::Net(net))) => Host::Net(net),
                    (None, Some(StoredHost::Name(_))) => Host::Name(&self.name),
                    // known_host said one of the two has an address.
                    (None, None) => return SessionVerdict::NoFailure,
                };
                let user = line
                    .user
                    .or(user_from_session.then_some(self.user.as_slice()));
                SessionVerdict::Failure { host, user }
            }
        }
    }

    fn remember(&mut self, line: SessionLine<'_, '_>, pending: bool, held: bool, counted: bool) {
        let session = match self.ids.get_mut(line.id) {
            Some(session) => session,
            None => {
                if self.ids.len() >= MAX_SESSIONS {
                    self.evict(line.time);
                }
                self.ids.entry(line.id.into()).or_insert(Session {
                    host: None,
                    user: None,
                    first_user: None,
                    several_users: false,
                    pending,
                    held,
                    counted,
                    last_seen: line.time,
                })
            }
        };
        session.pending = pending;
        session.held = held;
        session.counted = counted;
        session.last_seen = session.last_seen.max(line.time);
        if let Some(host) = line.host {
            session.host = Some(match host {
                Host::Ip(ip) => StoredHost::Ip(ip),
                Host::Net(net) => StoredHost::Net(net),
                Host::Name(n) => StoredHost::Name(n.to_vec()),
            });
        }
        if let Some(user) = line.user.filter(|u| u.len() <= MAX_USER_LEN) {
            match &session.first_user {
                None => session.first_user = Some(user.to_vec()),
                Some(first) if first.as_slice() != user => session.several_users = true,
                Some(_) => {}
            }
            match &mut session.user {
                Some(stored) => {
                    stored.clear();
                    stored.extend_from_slice(user);
                }
                none => *none = Some(user.to_vec()),
            }
        }
    }

    /// Makes room: sessions past their time first, then the least recently heard tenth.
    fn evict(&mut self, now: Timestamp) {
        self.ids
            .retain(|_, s| now.since(s.last_seen) <= SESSION_TTL);
        if self.ids.len() < MAX_SESSIONS {
            return;
        }
        let mut seen: Vec<Timestamp> = self.ids.values().map(|s| s.last_seen).collect();
        let cut = seen.len() / 10;
        seen.select_nth_unstable(cut);
        let threshold = seen[cut];
        self.ids.retain(|_, s| s.last_seen > threshold);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Failure,
    Pending,
    NoFailure,
    /// A failure held for the line that completes its try ([`Counting::UnlessFollowed`]).
    Held,
}

/// The last `maxlines` lines of a source, and their text joined with `\n`.
#[derive(Debug, Default)]
pub(crate) struct Window {
    lines: VecDeque<Vec<u8>>,
    /// Buffers of lines that left the window, reused for the next ones.
    spare: Vec<Vec<u8>>,
    pub(crate) joined: Vec<u8>,
    /// Where each line starts in `joined`.
    starts: Vec<usize>,
    /// The span of the last match in `joined`, then the spans its `<SKIPLINES>` passed
    /// over: those lines leave the window before the next line joins it (not at once,
    /// because the outcome of the match borrows `joined`).
    pub(crate) consume_next: Vec<(usize, usize)>,
}

impl Window {
    /// Adds a line, drops the oldest beyond `maxlines`, and rebuilds the joined text.
    pub(crate) fn push(&mut self, line: &[u8], maxlines: usize) {
        if let Some(&span) = self.consume_next.first() {
            let mut spans = std::mem::take(&mut self.consume_next);
            self.consume(span, &spans[1..]);
            spans.clear();
            self.consume_next = spans;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        // A journal MESSAGE may contain newlines; in the window they would make one entry
        // look like several lines, so they are written as the two characters `\n`.
        for &b in &line[..line.len().min(MAX_WINDOW_LINE)] {
            if b == b'\n' {
                buf.extend_from_slice(b"\\n");
            } else {
                buf.push(b);
            }
        }
        self.lines.push_back(buf);
        while self.lines.len() > maxlines.max(1) {
            if let Some(old) = self.lines.pop_front() {
                self.spare.push(old);
            }
        }
        self.rejoin();
    }

    fn rejoin(&mut self) {
        self.joined.clear();
        self.starts.clear();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                self.joined.push(b'\n');
            }
            self.starts.push(self.joined.len());
            self.joined.extend_from_slice(line);
        }
    }

    /// Removes the lines a match over `span` of the joined text used: those it touches,
    /// except the ones wholly inside a `skipped` span (`<SKIPLINES>`), which stay for
    /// later matches.
    pub(crate) fn consume(&mut self, span: (usize, usize), skipped: &[(usize, usize)]) {
        let (start, end) = span;
        let mut i = 0;
        let (starts, spare) = (&self.starts, &mut self.spare);
        self.lines.retain_mut(|line| {
            let line_start = starts[i];
            let line_end = line_start + line.len();
            i += 1;
            let touched = line_start < end.max(start + 1) && line_end >= start;
            let skipped = skipped.iter().any(|&(s, e)| line_start > s && line_end < e);
            if touched && !skipped {
                spare.push(std::mem::take(line));
            }
            !touched || skipped
        });
        self.rejoin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_secs(1_795_000_000);

    fn line<'a>(id: &'a [u8], host: Option<&str>) -> SessionLine<'a, 'a> {
        SessionLine {
            id,
            host: host.map(|h| Host::Ip(h.parse().unwrap())),
            user: None,
            nofail: false,
            forget: false,
            gained: false,
            count: Counting::Always,
            time: T,
        }
    }

    fn failure_host(v: SessionVerdict<'_>) -> Option<String> {
        match v {
            SessionVerdict::Failure { host, .. } => Some(host.to_string()),
            _ => None,
        }
    }

    #[test]
    fn address_from_an_earlier_line_of_the_session() {
        let mut s = Sessions::default();
        let connect = SessionLine {
            nofail: true,
            ..line(b"a", Some("192.0.2.1"))
        };
        assert_eq!(s.settle(connect), SessionVerdict::NoFailure);
        // Another session does not see it.
        assert_eq!(s.settle(line(b"b", None)), SessionVerdict::Pending);
        assert_eq!(
            failure_host(s.settle(line(b"a", None))).as_deref(),
            Some("192.0.2.1")
        );
        // The line's own address wins and is remembered.
        assert_eq!(
            failure_host(s.settle(line(b"a", Some("192.0.2.2")))).as_deref(),
            Some("192.0.2.2")
        );
        assert_eq!(
            failure_host(s.settle(line(b"a", None))).as_deref(),
            Some("192.0.2.2")
        );
    }

    #[test]
    fn pending_failure_counts_once_when_the_address_comes() {
        let mut s = Sessions::default();
        assert_eq!(s.settle(line(b"a", None)), SessionVerdict::Pending);
        assert_eq!(s.settle(line(b"a", None)), SessionVerdict::Pending);
        let closed = SessionLine {
            nofail: true,
            ..line(b"a", Some("192.0.2.3"))
        };
        assert_eq!(failure_host(s.settle(closed)).as_deref(), Some("192.0.2.3"));
        // Nothing is pending any more: the next helper line is no failure.
        assert_eq!(s.settle(closed), SessionVerdict::NoFailure);
    }

    #[test]
    fn forget_and_gained_end_the_session() {
        let mut s = Sessions::default();
        s.settle(SessionLine {
            nofail: true,
            ..line(b"a", Some("192.0.2.4"))
        });
        let forget = SessionLine {
            nofail: true,
            forget: true,
            ..line(b"a", None)
        };
        assert_eq!(s.settle(forget), SessionVerdict::NoFailure);
        assert_eq!(s.settle(line(b"a", None)), SessionVerdict::Pending);
        // A success forgets the pending failure.
        let gained = SessionLine {
            gained: true,
            nofail: true,
            forget: true,
            ..line(b"a", Some("192.0.2.4"))
        };
        assert_eq!(s.settle(gained), SessionVerdict::NoFailure);
        assert_eq!(s.settle(line(b"a", None)), SessionVerdict::Pending);
        assert_eq!(s.ids.len(), 1);
        // A forgetting line that names the address still releases what was pending.
        let closed = SessionLine {
            nofail: true,
            forget: true,
            ..line(b"a", Some("192.0.2.5"))
        };
        assert_eq!(failure_host(s.settle(closed)).as_deref(), Some("192.0.2.5"));
        assert!(s.ids.is_empty());
    }

    #[test]
    fn sessions_expire_and_are_capped() {
        let mut s = Sessions::default();
        s.settle(SessionLine {
            nofail: true,
            ..line(b"a", Some("192.0.2.6"))
        });
        let later = SessionLine {
            time: T + SESSION_TTL + Duration::from_secs(1),
            ..line(b"a", None)
        };
        assert_eq!(s.settle(later), SessionVerdict::Pending);
        let mut s = Sessions::default();
        for i in 0..(MAX_SESSIONS + 50) {
            let id = i.to_string();
            s.settle(SessionLine {
                time: T + Duration::from_secs(i as u64 / 100),
                ..line(id.as_bytes(), None)
            });
            assert!(s.ids.len() <= MAX_SESSIONS);
        }
        // The newest survived.
        assert!(s
            .ids
            .contains_key(format!("{}", MAX_SESSIONS + 49).as_bytes()));
        // Over-long ids are not kept.
        let long = vec![b'x'; MAX_ID_LEN + 1];
        let mut s = Sessions::default();
        s.settle(line(&long, None));
        assert!(s.ids.is_empty());
    }

    #[test]
    fn user_names_come_from_the_session_too() {
        let mut s = Sessions::default();
        s.settle(SessionLine {
            user: Some(b"bob"),
            nofail: true,
            ..line(b"a", Some("192.0.2.7"))
        });
        match s.settle(line(b"a", None)) {
            SessionVerdict::Failure { user, .. } => assert_eq!(user, Some(&b"bob"[..])),
            other => panic!("{other:?}"),
        }
        let name = SessionLine {
            host: Some(Host::Name(b"evil.example")),
            nofail: true,
            forget: false,
            ..line(b"n", None)
        };
        s.settle(name);
        match s.settle(SessionLine {
            forget: true,
            ..line(b"n", None)
        }) {
            SessionVerdict::Failure { host, .. } => assert_eq!(host, Host::Name(b"evil.example")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_user_name_makes_every_line_count() {
        let mut s = Sessions::default();
        let helper = |user: &'static [u8], host: &'static str| SessionLine {
            user: Some(user),
            nofail: true,
            ..line(b"a", Some(host))
        };
        assert_eq!(
            s.settle(helper(b"alice", "192.0.2.1")),
            SessionVerdict::NoFailure
        );
        assert_eq!(
            s.settle(helper(b"alice", "192.0.2.1")),
            SessionVerdict::NoFailure
        );
        assert_eq!(
            failure_host(s.settle(helper(b"bob", "192.0.2.2"))).as_deref(),
            Some("192.0.2.2")
        );
        // From now on, whatever the name.
        assert_eq!(
            failure_host(s.settle(helper(b"alice", "192.0.2.1"))).as_deref(),
            Some("192.0.2.1")
        );
        // Lines without a user name do not change that.
        let anonymous = SessionLine {
            nofail: true,
            ..line(b"a", Some("192.0.2.3"))
        };
        assert_eq!(
            failure_host(s.settle(anonymous)).as_deref(),
            Some("192.0.2.3")
        );
        // A new session starts over.
        let mut s = Sessions::default();
        assert_eq!(
            s.settle(helper(b"carol", "192.0.2.4")),
            SessionVerdict::NoFailure
        );
    }

    fn counted(count: Counting, host: &'static str) -> SessionLine<'static, 'static> {
        SessionLine {
            count,
            ..line(b"p", Some(host))
        }
    }

    #[test]
    fn a_held_line_is_superseded_by_the_line_of_its_try() {
        use Counting::{Always, IfFirst, UnlessFollowed};
        let mut s = Sessions::default();
        // pam_unix, "Failed password", "Connection closed": one failure, on the second.
        assert_eq!(
            s.settle(counted(UnlessFollowed, "192.0.2.7")),
            SessionVerdict::NoFailure
        );
        assert_eq!(
            failure_host(s.settle(counted(Always, "192.0.2.7"))).as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            s.settle(counted(IfFirst, "192.0.2.7")),
            SessionVerdict::NoFailure
        );
        // A second try in the same session counts again; lines held in a row are one try
        // (pam_unix, then sshd's "PAM: Authentication failure", then "Failed
        // keyboard-interactive/pam").
        assert_eq!(
            s.settle(counted(UnlessFollowed, "192.0.2.7")),
            SessionVerdict::NoFailure
        );
        assert_eq!(
            s.settle(counted(UnlessFollowed, "192.0.2.7")),
            SessionVerdict::NoFailure
        );
        assert!(failure_host(s.settle(counted(Always, "192.0.2.7"))).is_some());
        // Every Always line counts, whatever the session said before.
        assert!(failure_host(s.settle(counted(Always, "192.0.2.7"))).is_some());
        assert_eq!(s.ids.len(), 1);
    }

    #[test]
    fn a_closing_line_counts_only_for_a_session_that_counted_nothing() {
        use Counting::{Always, IfFirst, UnlessFollowed};
        let mut s = Sessions::default();
        // A client that named a user and left: once, and not twice.
        assert_eq!(
            failure_host(s.settle(counted(IfFirst, "198.51.100.20"))).as_deref(),
            Some("198.51.100.20")
        );
        assert_eq!(
            s.settle(counted(IfFirst, "198.51.100.20")),
            SessionVerdict::NoFailure
        );
        // A held line that nothing completed is counted by the close, once.
        let mut s = Sessions::default();
        assert!(failure_host(s.settle(counted(Always, "192.0.2.7"))).is_some());
        assert_eq!(
            s.settle(counted(UnlessFollowed, "192.0.2.7")),
            SessionVerdict::NoFailure
        );
        assert!(failure_host(s.settle(counted(IfFirst, "192.0.2.7"))).is_some());
        assert_eq!(
            s.settle(counted(IfFirst, "192.0.2.7")),
            SessionVerdict::NoFailure
        );
        // Other sessions are not affected: a close there still counts.
        let other = SessionLine {
            id: b"q",
            ..counted(IfFirst, "192.0.2.7")
        };
        assert!(failure_host(s.settle(other)).is_some());
        // A held line alone never counts; nor after its session expired.
        let mut s = Sessions::default();
        s.settle(counted(UnlessFollowed, "192.0.2.7"));
        let late = SessionLine {
            time: T + SESSION_TTL + Duration::from_secs(1),
            ..counted(Always, "192.0.2.7")
        };
        assert!(failure_host(s.settle(late)).is_some());
        let late_close = SessionLine {
            time: T + 2 * SESSION_TTL + Duration::from_secs(2),
            ..counted(IfFirst, "192.0.2.7")
        };
        // The session expired: a new one, which counted nothing yet.
        assert!(failure_host(s.settle(late_close)).is_some());
    }

    #[test]
    fn process_ids_name_their_host() {
        let mut out = Vec::new();
        let origin = Origin {
            host: b"web1",
            pid: Some(b"1234"),
        };
        assert!(origin.session_id(&mut out));
        assert_eq!(out, b"1234@web1");
        assert!(!Origin::default().session_id(&mut out));
        let empty = Origin {
            host: b"web1",
            pid: Some(b""),
        };
        assert!(!empty.session_id(&mut out));
        for c in [
            Counting::Always,
            Counting::UnlessFollowed,
            Counting::IfFirst,
        ] {
            assert_eq!(Counting::from_name(c.name()), Some(c));
        }
        assert_eq!(Counting::from_name("once"), None);
    }

    fn window_text(w: &Window) -> String {
        String::from_utf8_lossy(&w.joined).into_owned()
    }

    #[test]
    fn window_keeps_the_last_lines_and_consumes_matched_ones() {
        let mut w = Window::default();
        for l in ["a1", "b2", "c3", "d4"] {
            w.push(l.as_bytes(), 3);
        }
        assert_eq!(window_text(&w), "b2\nc3\nd4");
        // A match from "b2" to "d4" that skipped "c3" (the span of "\nc3\n").
        w.consume((0, 8), &[(2, 6)]);
        assert_eq!(window_text(&w), "c3");
        w.push(b"e\nf", 3);
        assert_eq!(window_text(&w), "c3\ne\\nf");
        // A match ending at the start of a line does not use that line.
        w.consume((0, 3), &[]);
        assert_eq!(window_text(&w), "e\\nf");
    }
}
