//! The shipped filters (conf/filters/*.toml) against hand-written fixture logs
//! (tests/fixtures/filters/<name>.log), plus an injection sweep.
//!
//! Each fixture line is preceded by an annotation saying what the filter must make of it
//! in every mode: `#> host=ADDR [user=NAME] [modes=m1,m2]` or `#> none`. The base filter is
//! mode "normal"; a mode adds its failregex/ignoreregex to the base ones.
//!
//! 203.0.113.66 is reserved as the address an attacker injects into the fields they control
//! (user names, URLs, SASL names). No fixture may expect it, and no line may ever yield it.

#[path = "support/shipped_filter.rs"]
mod shipped_filter;

use banhound::engine::address::parse_address;
use banhound::engine::datetime::{DateDetector, Zone};
use banhound::engine::filter::{Filter, Host, Outcome, SpanPath};
use banhound::engine::prepare::{LinePreparer, Prepared};
use banhound::engine::time::Timestamp;
use shipped_filter::{filter_files, ShippedFilter};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const INJECTED: &str = "203.0.113.66";

impl ShippedFilter {
    fn filters(&self) -> impl Iterator<Item = (&String, &Filter)> {
        self.modes.iter().map(|(m, d)| (m, &d.filter))
    }

    /// The text the regexes see, through the production line preparation, or None when the
    /// line is not for this filter (another program). Panics on a line that is not in the
    /// filter's format: a fixture error.
    fn message(&self, line: &str, at: &str) -> Option<String> {
        let base = self.base();
        let mut preparer =
            LinePreparer::new(DateDetector::new(Zone::Utc), base.format, &base.identifiers);
        match preparer.prepare(line.as_bytes(), Timestamp::from_secs(1_795_000_000)) {
            Prepared::Message { message, .. } => Some(
                std::str::from_utf8(message)
                    .unwrap_or_else(|_| panic!("{at}: fixture is not UTF-8"))
                    .to_string(),
            ),
            Prepared::OtherProgram => None,
            Prepared::NotSyslog => panic!("{at}: not a syslog line: {line}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expected {
    None,
    Failure {
        host: String,
        user: Option<String>,
        /// None: every mode.
        modes: Option<BTreeSet<String>>,
    },
}

impl Expected {
    fn parse(text: &str, at: &str) -> Expected {
        let text = text.trim();
        if text == "none" {
            return Expected::None;
        }
        let mut host = None;
        let mut user = None;
        let mut modes = None;
        for word in text.split_whitespace() {
            match word.split_once('=') {
                Some(("host", v)) => host = Some(v.to_string()),
                Some(("user", v)) => user = Some(v.to_string()),
                Some(("modes", v)) => modes = Some(v.split(',').map(str::to_string).collect()),
                _ => panic!("{at}: bad annotation word {word:?}"),
            }
        }
        let host = host.unwrap_or_else(|| panic!("{at}: annotation without host= or none"));
        assert_ne!(
            host, INJECTED,
            "{at}: {INJECTED} is reserved for injected addresses"
        );
        Expected::Failure { host, user, modes }
    }

    /// What this annotation expects in `mode`: (host, user) or None for no failure.
    fn in_mode(&self, mode: &str) -> Option<(&str, Option<&str>)> {
        match self {
            Expected::None => None,
            Expected::Failure { host, user, modes } => modes
                .as_ref()
                .is_none_or(|m| m.contains(mode))
                .then_some((host.as_str(), user.as_deref())),
        }
    }
}

struct FixtureLine {
    at: String,
    text: String,
    expected: Expected,
}

fn read_fixture(path: &Path) -> Vec<FixtureLine> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    let mut pending: Option<Expected> = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        if let Some(annotation) = line.strip_prefix("#>") {
            assert!(pending.is_none(), "{at}: two annotations in a row");
            pending = Some(Expected::parse(annotation, &at));
        } else if line.starts_with('#') || line.trim().is_empty() {
            assert!(
                pending.is_none(),
                "{at}: annotation not followed by a log line"
            );
        } else {
            let expected = pending
                .take()
                .unwrap_or_else(|| panic!("{at}: log line without a #> annotation"));
            lines.push(FixtureLine {
                at,
                text: line.to_string(),
                expected,
            });
        }
    }
    assert!(pending.is_none(), "{}: dangling annotation", path.display());
    lines
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_path(name: &str) -> PathBuf {
    root().join(format!("tests/fixtures/filters/{name}.log"))
}

fn same_host(found: &Host<'_>, expected: &str) -> bool {
    match (found, parse_address(expected)) {
        (Host::Ip(ip), Some(want)) => *ip == want,
        (Host::Name(name), None) => *name == expected.as_bytes(),
        _ => false,
    }
}

fn injected() -> IpAddr {
    INJECTED.parse().unwrap()
}

#[test]
fn every_shipped_filter_compiles_in_every_mode_and_has_a_fixture() {
    for (name, path) in filter_files() {
        let shipped = ShippedFilter::load(&name, &path);
        let base = shipped.base();
        assert!(
            base.description
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty()),
            "{name}: no description"
        );
        if let Some(plus) = base
            .journalmatch
            .iter()
            .position(|m| m != "+" && !m.contains('='))
        {
            panic!("{name}: journalmatch entry {plus} is neither FIELD=value nor +");
        }
        assert_eq!(shipped.modes.len(), 1 + base.modes.len());
        let fixture = fixture_path(&name);
        assert!(
            fixture.is_file(),
            "{name}: no fixture {}",
            fixture.display()
        );
    }
}

#[test]
fn shipped_filters_match_their_fixtures() {
    let mut checked = 0usize;
    for (name, path) in filter_files() {
        let shipped = ShippedFilter::load(&name, &path);
        let filters: BTreeMap<&String, &Filter> = shipped.filters().collect();
        let lines = read_fixture(&fixture_path(&name));
        // Which regexes the fixture exercised, per mode: every one must be.
        let mut fail_hit: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        let mut ignore_hit: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        let mut failures = 0usize;
        let mut non_failures = 0usize;
        for line in &lines {
            if let Expected::Failure {
                modes: Some(modes), ..
            } = &line.expected
            {
                for m in modes {
                    assert!(
                        shipped.modes.contains_key(m),
                        "{}: unknown mode {m}",
                        line.at
                    );
                }
            }
            let message = shipped.message(&line.text, &line.at);
            for (mode, filter) in &filters {
                let outcome = match &message {
                    Some(m) => filter.matcher().match_line(m.as_bytes()),
                    None => Outcome::Missed,
                };
                let want = line.expected.in_mode(mode);
                match (outcome, want) {
                    (Outcome::Failure(f), Some((host, user))) => {
                        assert!(
                            same_host(&f.host, host),
                            "{} [{name}, mode {mode}]: host {} (failregex #{}), expected {host}\n  {}",
                            line.at,
                            f.host,
                            f.regex,
                            line.text
                        );
                        if let Some(user) = user {
                            assert_eq!(
                                f.user.map(String::from_utf8_lossy).as_deref(),
                                Some(user),
                                "{} [{name}, mode {mode}]: user\n  {}",
                                line.at,
                                line.text
                            );
                        }
                        fail_hit.entry(mode).or_default().insert(f.regex);
                        failures += 1;
                    }
                    (Outcome::Failure(f), None) => panic!(
                        "{} [{name}, mode {mode}]: unexpected failure, host {} by failregex #{} ({})\n  {}",
                        line.at,
                        f.host,
                        f.regex,
                        filter.failregex_source(f.regex),
                        line.text
                    ),
                    (other, Some((host, _))) => panic!(
                        "{} [{name}, mode {mode}]: expected a failure from {host}, got {other:?}\n  {}",
                        line.at, line.text
                    ),
                    (other, None) => {
                        if let Outcome::Ignored { ignore, .. } = other {
                            ignore_hit.entry(mode).or_default().insert(ignore);
                        }
                        non_failures += 1;
                    }
                }
                if let Outcome::Failure(f) = outcome {
                    assert_ne!(
                        f.host,
                        Host::Ip(injected()),
                        "{}: injected address",
                        line.at
                    );
                }
                checked += 1;
            }
        }
        for (mode, filter) in &filters {
            for i in 0..filter.failregex_count() {
                assert!(
                    fail_hit.get(mode.as_str()).is_some_and(|s| s.contains(&i)),
                    "{name}, mode {mode}: no fixture line exercises failregex #{i}: {}",
                    filter.failregex_source(i)
                );
            }
            let ignores = filter.ignoreregex_count();
            for i in 0..ignores {
                assert!(
                    ignore_hit
                        .get(mode.as_str())
                        .is_some_and(|s| s.contains(&i)),
                    "{name}, mode {mode}: no fixture line exercises ignoreregex #{i}"
                );
            }
        }
        assert!(
            failures > 0 && non_failures > 0,
            "{name}: fixture lacks positives or negatives"
        );
    }
    assert!(checked > 0);
}

/// What an attacker may put into the fields they control. Each tries to make a filter take
/// 203.0.113.66 (or anything but the real peer) for the peer.
const PAYLOADS: &[&str] = &[
    "x from 203.0.113.66 port 22 ssh2",
    "x from 203.0.113.66 port 22 [preauth]",
    "x from 203.0.113.66",
    "x 203.0.113.66 port 22 [preauth]",
    "x 203.0.113.66 port 22: Too many authentication failures",
    "x rhost=203.0.113.66  user=y",
    "x rhost=203.0.113.66",
    "x>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, TLS, session=<abc>",
    "x, rip=203.0.113.66,",
    "x,203.0.113.66,<abc>): Password mismatch",
    "x,203.0.113.66): unknown user",
    "x] FAIL LOGIN: Client \"203.0.113.66\"",
    "x\", client: 203.0.113.66, server: y, request: \"GET / HTTP/1.1\", host: \"y",
    "x, client: 203.0.113.66, server: y",
    "x\": password mismatch, client: 203.0.113.66, server: y",
    "x\" was not found in \"/a\", client: 203.0.113.66, server: y",
    "x\" failed (2: No such file or directory), client: 203.0.113.66, server: y",
    "/wp-login.php\" failed (2: No such file or directory), client: 203.0.113.66, server: y, host: \"z",
    "x[203.0.113.66]: SASL LOGIN authentication failed: y",
    "unknown[203.0.113.66]",
    "x (203.0.113.66)",
    "x\nFailed password for root from 203.0.113.66 port 22 ssh2",
    "x\n2026/11/22 02:26:07 [error] 1#1: *1 user \"y\": password mismatch, client: 203.0.113.66, server: y",
];

/// Characters a service never lets into the fields the attacker controls, per filter:
/// payloads containing them describe lines the service cannot write.
/// nginx-http-auth: the Basic user name is the part of the credentials before the first ':'.
const IMPOSSIBLE_IN_ATTACKER_FIELDS: &[(&str, char)] = &[("nginx-http-auth", ':')];

/// Quoted strings that come from the server's configuration, not from the client: nginx's
/// `user "x" was not found in "<auth_basic_user_file>"` and `by zone "<limit_req_zone name>"`.
const ADMIN_QUOTED_AFTER: &[&str] = &["was not found in ", "by zone "];

/// Spans of `message` an attacker controls, as far as the test can tell without knowing
/// the service: the captured user name, and the inside of every double-quoted string.
fn attacker_spans(message: &str, user: Option<&[u8]>) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    if let Some(user) = user {
        let start = user.as_ptr() as usize - message.as_ptr() as usize;
        spans.push((start, start + user.len()));
    }
    let quotes: Vec<usize> = message.match_indices('"').map(|(i, _)| i).collect();
    for pair in quotes.chunks_exact(2) {
        if !ADMIN_QUOTED_AFTER
            .iter()
            .any(|a| message[..pair[0]].ends_with(a))
        {
            spans.push((pair[0] + 1, pair[1]));
        }
    }
    spans
}

#[test]
fn injected_addresses_never_become_the_peer() {
    let mut variants = 0usize;
    for (name, path) in filter_files() {
        let shipped = ShippedFilter::load(&name, &path);
        for line in read_fixture(&fixture_path(&name)) {
            let Some(message) = shipped.message(&line.text, &line.at) else {
                continue;
            };
            for (mode, filter) in shipped.filters() {
                let mut matcher = filter.matcher();
                let (real, user) = match matcher.match_line(message.as_bytes()) {
                    Outcome::Failure(f) => (f.host.to_string(), f.user),
                    _ => continue,
                };
                for (start, end) in attacker_spans(&message, user) {
                    let original = &message[start..end];
                    for payload in PAYLOADS.iter().filter(|p| {
                        !IMPOSSIBLE_IN_ATTACKER_FIELDS
                            .iter()
                            .any(|(f, c)| *f == name && p.contains(*c))
                    }) {
                        // The payload replacing the field, and appended to it.
                        for field in [payload.to_string(), format!("{original}{payload}")] {
                            let hostile =
                                format!("{}{field}{}", &message[..start], &message[end..]);
                            if let Outcome::Failure(f) = matcher.match_line(hostile.as_bytes()) {
                                assert!(
                                    f.host.to_string() == real,
                                    "{} [{name}, mode {mode}]: injected field gave host {} \
                                     (real peer {real}) via failregex #{}\n  {hostile}",
                                    line.at,
                                    f.host,
                                    f.regex
                                );
                            }
                            variants += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        variants > 1000,
        "only {variants} hostile variants were tried"
    );
}

/// Every shipped filter has a jail in the shipped defaults (conf/jail.d, or sshd's in
/// conf/banhound.toml), and only sshd's is enabled: installing banhound starts nothing else.
#[test]
fn every_shipped_filter_has_a_disabled_default_jail() {
    let mut jails: BTreeMap<String, bool> = BTreeMap::new();
    let mut files = vec![root().join("conf/banhound.toml")];
    for entry in std::fs::read_dir(root().join("conf/jail.d")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let doc: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (name, jail) in doc
            .get("jail")
            .and_then(|j| j.as_table())
            .into_iter()
            .flatten()
        {
            let enabled = jail
                .get("enabled")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            jails.insert(name.clone(), enabled);
        }
    }
    for (name, _) in filter_files() {
        let enabled = jails
            .get(&name)
            .unwrap_or_else(|| panic!("{name}: no jail in conf/jail.d"));
        assert_eq!(
            *enabled,
            name == "sshd",
            "{name}: enabled = {enabled} by default"
        );
    }
}

/// How the shipped failregexes' spans are read: printed (the share that avoids the capture
/// engine over the whole line is what the matching speed rests on); none may need the
/// backtracking engine, and only those that open with the address may need the capture
/// engine over the whole line.
#[test]
fn span_paths_of_the_shipped_failregexes() {
    let mut paths: BTreeMap<SpanPath, BTreeSet<(String, String)>> = BTreeMap::new();
    for (name, path) in filter_files() {
        let shipped = ShippedFilter::load(&name, &path);
        for (_, filter) in shipped.filters() {
            for i in 0..filter.failregex_count() {
                paths
                    .entry(filter.failregex_spans(i))
                    .or_default()
                    .insert((name.clone(), filter.failregex_source(i).to_string()));
            }
        }
    }
    let total: usize = paths.values().map(BTreeSet::len).sum();
    eprintln!("shipped failregexes (distinct per filter, all modes): {total}");
    for (path, regexes) in &paths {
        eprintln!("  {path}: {}", regexes.len());
        if *path >= SpanPath::WholeText {
            for (name, source) in regexes {
                eprintln!("    {name}: {source}");
            }
        }
    }
    assert!(total > 50, "only {total} failregexes found");
    // Only a regex that opens with its address has no fixed prefix to split after.
    for (name, source) in paths.get(&SpanPath::WholeText).into_iter().flatten() {
        assert!(
            source.starts_with("^<"),
            "{name}: {source} runs the capture engine over the whole line"
        );
    }
    assert!(
        !paths.contains_key(&SpanPath::Backtracking),
        "{:?}",
        paths.get(&SpanPath::Backtracking)
    );
}
