//! The log-injection corpus (tests/fixtures/injection, format in its README.md) and the
//! shipped filters it is run against, shared by tests/log_injection.rs and tests/redos.rs.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

#[path = "../support/shipped_filter.rs"]
mod shipped_filter;
pub use shipped_filter::{shipped_filters, ShippedFilter, BASE_MODE};

use banhound::engine::address::parse_address;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Addresses a client may write into the fields it controls (see the corpus README).
pub const INJECTED_RANGES: [&str; 3] = ["203.0.113.0/24", "1.2.3.4/32", "2001:db8:bad::/48"];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn injected(ip: IpAddr) -> bool {
    INJECTED_RANGES
        .iter()
        .any(|r| r.parse::<IpNet>().unwrap().contains(&ip))
}

/// What a path must make of a corpus line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Nothing,
    Peer(IpAddr),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Nothing => f.write_str("no failure"),
            Expect::Peer(ip) => write!(f, "a failure from {ip}"),
        }
    }
}

/// The file path's expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileExpect {
    Is(Expect),
    /// A raw newline makes a complete forged line in the file: reported, not asserted.
    Limit,
}

#[derive(Debug)]
pub struct Case {
    pub at: String,
    pub message: Vec<u8>,
    pub journal: Expect,
    pub file: FileExpect,
    /// None: every mode.
    pub modes: Option<BTreeSet<String>>,
}

impl Case {
    /// What is expected in `mode`: outside the annotated modes, nothing.
    pub fn in_mode(&self, mode: &str, want: Expect) -> Expect {
        match &self.modes {
            Some(m) if !m.contains(mode) => Expect::Nothing,
            _ => want,
        }
    }
}

pub fn parse_peer(text: &str, at: &str) -> IpAddr {
    let ip = parse_address(text).unwrap_or_else(|| panic!("{at}: {text:?} is not an address"));
    assert!(
        !injected(ip),
        "{at}: {ip} is in the injected ranges, it cannot be the real peer"
    );
    ip
}

pub fn parse_annotation(text: &str, at: &str) -> (Expect, FileExpect, Option<BTreeSet<String>>) {
    let mut journal = None;
    let mut file = None;
    let mut modes = None;
    for word in text.split_whitespace() {
        match word.split_once('=') {
            None if word == "none" => journal = Some(Expect::Nothing),
            Some(("host", v)) => journal = Some(Expect::Peer(parse_peer(v, at))),
            Some(("file", "none")) => file = Some(FileExpect::Is(Expect::Nothing)),
            Some(("file", "limit")) => file = Some(FileExpect::Limit),
            Some(("file", v)) => file = Some(FileExpect::Is(Expect::Peer(parse_peer(v, at)))),
            Some(("modes", v)) => modes = Some(v.split(',').map(str::to_string).collect()),
            _ => panic!("{at}: bad annotation word {word:?}"),
        }
    }
    let journal = journal.unwrap_or_else(|| panic!("{at}: annotation without host= or none"));
    (journal, file.unwrap_or(FileExpect::Is(journal)), modes)
}

/// The corpus escapes (README.md): `\n \r \t \e \0 \xHH \\` and `\{N*TEXT}` for padding.
pub fn unescape(text: &str, at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let escape = *bytes
            .get(i + 1)
            .unwrap_or_else(|| panic!("{at}: lone backslash at the end"));
        i += 2;
        match escape {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'e' => out.push(0x1b),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = text
                    .get(i..i + 2)
                    .unwrap_or_else(|| panic!("{at}: \\x needs two hex digits"));
                out.push(
                    u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{at}: bad \\x{hex}")),
                );
                i += 2;
            }
            b'{' => {
                let end = text[i..]
                    .find('}')
                    .unwrap_or_else(|| panic!("{at}: \\{{ without }}"));
                let (count, body) = text[i..i + end]
                    .split_once('*')
                    .unwrap_or_else(|| panic!("{at}: \\{{N*TEXT}} expected"));
                let count: usize = count
                    .parse()
                    .unwrap_or_else(|_| panic!("{at}: bad repeat count {count:?}"));
                out.extend(unescape(body, at).repeat(count));
                i += end + 1;
            }
            other => panic!("{at}: unknown escape \\{}", char::from(other)),
        }
    }
    out
}

pub fn read_corpus(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cases = Vec::new();
    let mut pending = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        if let Some(annotation) = line.strip_prefix("#>") {
            assert!(pending.is_none(), "{at}: two annotations in a row");
            pending = Some(parse_annotation(annotation, &at));
        } else if line.starts_with('#') || line.is_empty() {
            assert!(pending.is_none(), "{at}: annotation not followed by a line");
        } else {
            let (journal, file, modes) = pending
                .take()
                .unwrap_or_else(|| panic!("{at}: line without a #> annotation"));
            cases.push(Case {
                message: unescape(line, &at),
                at,
                journal,
                file,
                modes,
            });
        }
    }
    assert!(pending.is_none(), "{}: dangling annotation", path.display());
    cases
}

pub fn corpus_path(name: &str) -> PathBuf {
    root().join(format!("tests/fixtures/injection/{name}.corpus"))
}
