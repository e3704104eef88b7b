//! Times the journal source over journal files: one reader with a match, a filter run on every
//! MESSAGE. Used by bench/journal.sh until `banhound test-filter --journal-file` exists.
//!
//! Usage: journal_bench [--syslog] FILE... [-- MATCH...]   (default match: _COMM=sshd)

use banhound::engine::filter::{Filter, FilterSpec, Outcome};
use banhound::source::journal::{JailMatches, JournalReader, JournalSource, MatchExpr, Start};
use std::path::PathBuf;
use std::time::Instant;

/// A small sshd filter in the spirit of the shipped one (being written separately). For
/// syslog-rendered lines a prefregex strips `HOST sshd[PID]: ` first, so both modes find the
/// same failures.
fn sshd_filter(syslog: bool) -> Filter {
    let spec = FilterSpec {
        prefregex: syslog
            .then(|| r"^\S+ sshd(?:\[\d+\])?: <F-CONTENT>.+</F-CONTENT>$".to_string()),
        failregex: [
            r"^Failed (?:password|publickey) for (?:invalid user )?<F-USER>\S+</F-USER> from <HOST> port \d+",
            r"^Invalid user <F-USER>\S*</F-USER> from <HOST> port \d+",
            r"^error: PAM: Authentication failure for <F-USER>\S+</F-USER> from <HOST>",
            r"^Connection closed by (?:authenticating|invalid) user <F-USER>\S*</F-USER> <HOST> port \d+ \[preauth\]",
            r"^Disconnected from invalid user <F-USER>\S*</F-USER> <HOST> port \d+ \[preauth\]",
            r"^Unable to negotiate with <HOST> port \d+: no matching \S+ method found",
        ]
        .map(String::from)
        .to_vec(),
        ignoreregex: Vec::new(),
    };
    match Filter::compile(&spec) {
        Ok(f) => f,
        Err(e) => panic!("built-in benchmark filter does not compile: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    let mut syslog = false;
    let mut files = Vec::new();
    let mut matches = Vec::new();
    let mut args = std::env::args().skip(1);
    for arg in args.by_ref() {
        match arg.as_str() {
            "--syslog" => syslog = true,
            "--" => break,
            _ => files.push(PathBuf::from(arg)),
        }
    }
    matches.extend(args);
    if matches.is_empty() {
        matches.push("_COMM=sshd".to_string());
    }
    anyhow::ensure!(
        !files.is_empty(),
        "usage: journal_bench [--syslog] FILE... [-- MATCH...]"
    );
    let expr = MatchExpr::parse(&matches)?;
    let filter = sshd_filter(syslog);
    let mut matcher = filter.matcher();
    let started = Instant::now();
    let (mut reader, _) = JournalReader::open(
        &JournalSource::Files(files),
        JailMatches::new(vec![expr]),
        &Start::Head,
    )?;
    let mut line = Vec::new();
    let (mut entries, mut failures) = (0u64, 0u64);
    while let Some(e) = reader.next_entry()? {
        entries += 1;
        let text = if syslog {
            e.entry.render_syslog(&mut line);
            &line[..]
        } else {
            e.entry.message
        };
        if let Outcome::Failure(_) = matcher.match_line(text) {
            failures += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "entries={entries} failures={failures} no_message={} seconds={elapsed:.3} entries_per_s={:.0}",
        reader.stats().no_message,
        entries as f64 / elapsed
    );
    Ok(())
}
