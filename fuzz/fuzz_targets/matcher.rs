//! Every shipped filter (conf/filters/*.toml, in every mode) on arbitrary bytes, the way the
//! daemon feeds it: as a journal MESSAGE, and as a log-file line through the line preparer
//! (date detection, syslog header split, program check), in UTC and in a zone with DST.
//!
//! Besides "no panic", it checks the property that makes a ban safe: a reported address
//! is one the text itself holds. Some substring of the input, read as an address the way
//! the filters read one (brackets, zone, IPv4-mapped form), must give exactly that address;
//! a host name and a user must be bytes of the input too. An address assembled from pieces
//! (a date cut out of the middle of a line, say) would be an invented one.
#![no_main]

use banhound::config::filter_file::FilterDefinition;
use banhound::config::load_filter_file;
use banhound::engine::address::parse_address;
use banhound::engine::datetime::{DateDetector, Zone};
use banhound::engine::filter::{Host, Outcome};
use banhound::engine::logline::SyslogLine;
use banhound::engine::prepare::{LinePreparer, Prepared};
use banhound::engine::time::Timestamp;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;
use toml::Spanned;

/// 2026-11-18, so year-less syslog dates resolve near a fixed "now".
const NOW: Timestamp = Timestamp::from_secs(1_795_000_000);
/// The longest text an address is read from: an IPv6 address with an embedded IPv4 one.
const LONGEST_ADDRESS: usize = 45;

struct Setup {
    filters: Vec<FilterDefinition>,
    zones: Vec<Zone>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/filters"));
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .expect("conf/filters")
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut filters = Vec::new();
        for path in &paths {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let normal = load_filter_file(path, &name, None).expect("shipped filter compiles");
            let modes = normal.modes.clone();
            filters.push(normal);
            for mode in modes {
                let mode = Spanned::new(0..0, mode);
                filters.push(load_filter_file(path, &name, Some(&mode)).expect("mode compiles"));
            }
        }
        assert!(filters.len() >= paths.len() && !paths.is_empty());
        let zones = vec![
            Zone::Utc,
            Zone::parse("Europe/Berlin").expect("tzdata has Europe/Berlin"),
        ];
        Setup { filters, zones }
    })
}

fn is_address_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// Whether some substring of `text` reads as `ip`.
fn appears_in(text: &[u8], ip: IpAddr) -> bool {
    let canonical = ip.to_string();
    if contains(text, canonical.as_bytes()) {
        return true;
    }
    // Other spellings (upper case, leading zeros, "::ffff:" forms): try every run of
    // address characters, since the filter may have matched any part of one.
    (0..text.len())
        .filter(|&s| is_address_byte(text[s]))
        .any(|start| {
            (start + 1..=text.len().min(start + LONGEST_ADDRESS))
                .take_while(|&end| is_address_byte(text[end - 1]))
                .any(|end| {
                    std::str::from_utf8(&text[start..end])
                        .ok()
                        .and_then(parse_address)
                        == Some(ip)
                })
        })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Matches `message` and checks what a failure reports against `input`, the bytes the
/// daemon was given.
fn check(filter: &FilterDefinition, input: &[u8], message: &[u8]) {
    let mut matcher = filter.filter.matcher();
    match matcher.match_line(message) {
        Outcome::Failure(failure) => {
            match failure.host {
                Host::Ip(ip) => assert!(
                    appears_in(input, ip),
                    "filter {} (mode {:?}) reported {ip}, which is not in the input",
                    filter.name,
                    filter.mode
                ),
                Host::Name(name) => assert!(contains(input, name), "host name not in input"),
            }
            if let Some(user) = failure.user {
                assert!(contains(input, user), "user not in input");
            }
            for (_, value) in matcher.fields(failure.regex, message) {
                let _ = value;
            }
        }
        Outcome::Missed | Outcome::NoFailure { .. } | Outcome::Ignored { .. } => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    for filter in &setup.filters {
        // The journal path: MESSAGE as it is.
        check(filter, data, data);
        // The file path, each line as the daemon splits a chunk.
        for zone in &setup.zones {
            let mut preparer = LinePreparer::new(
                DateDetector::new(zone.clone()),
                filter.format,
                &filter.identifiers,
            );
            for line in data.split_inclusive(|&b| b == b'\n') {
                if let Prepared::Message { message, .. } = preparer.prepare(line, NOW) {
                    check(filter, line, message);
                }
            }
        }
    }
    // A journal entry rendered as a syslog line for filters written against files.
    let mut rendered = Vec::new();
    SyslogLine {
        host: b"web1",
        ident: b"sshd",
        pid: Some(b"42"),
        message: data,
    }
    .render_into(&mut rendered);
    for filter in &setup.filters {
        check(filter, data, &rendered);
    }
});
