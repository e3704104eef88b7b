//! The summary test-filter prints at the end of a run: the filter and source, the records
//! matched and missed and why, hits per regex, dates, addresses, and the bans a jail would
//! decide.

use crate::config::JailPolicy;
use crate::display::{display_target, thousands};
use crate::engine::filter::{Counting, BACKTRACKING_MAX_LINE, BACKTRACK_LIMIT};
use crate::engine::prepare::LineFormat;
use crate::engine::time::{format_duration, Timestamp};
use crate::source::journal::JournalSource;
use ipnet::IpNet;

use super::args::TestFilterArgs;
use super::input::{JournalRender, Provenance};
use super::record::Report;
use super::subject::Subject;

pub(super) fn render_summary(
    r: &Report,
    subject: &Subject,
    provenance: &Provenance,
    policy: &JailPolicy,
    args: &TestFilterArgs,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Filter:  {}", subject.description);
    for note in &subject.notes {
        let _ = writeln!(s, "  note: {note}");
    }
    let unit = match provenance {
        Provenance::Lines { name, format, .. } => {
            let format = match format {
                LineFormat::Syslog => "syslog lines, regexes see the message",
                LineFormat::Plain => "plain lines, regexes see the whole line",
                LineFormat::AfterDate => "regexes see the line without its date",
            };
            let _ = writeln!(s, "Source:  {name} ({format})");
            ("Lines:  ", "lines")
        }
        Provenance::Journal {
            source,
            matches,
            origin,
            render,
        } => {
            let source = match source {
                JournalSource::Files(files) if files.len() == 1 => {
                    format!("journal file {}", files[0].display())
                }
                other => other.to_string(),
            };
            let matches = if matches.is_empty() {
                origin.to_string()
            } else {
                format!("matches {} from {origin}", matches.join(" + "))
            };
            let seen = match render {
                JournalRender::Message => "regexes see MESSAGE",
                JournalRender::Syslog => "regexes see \"HOST IDENT[PID]: MESSAGE\"",
            };
            let _ = writeln!(s, "Source:  {source} ({matches}; {seen})");
            ("Entries:", "entries")
        }
    };
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{} {} read: {} matched, {} ignored, {} missed",
        unit.0,
        thousands(r.records),
        thousands(r.matched),
        thousands(r.ignored),
        thousands(r.missed)
    );
    if r.no_failure > 0 {
        let _ = writeln!(
            s,
            "         {} more matched a failregex through <F-NOFAIL> or <F-MLFGAINED>, or counted with another line of their session (not failures)",
            thousands(r.no_failure)
        );
    }
    if r.hostless > 0 {
        let _ = writeln!(
            s,
            "         {} more matched a failregex but named no address{}",
            thousands(r.hostless),
            if subject.filter.is_multiline() {
                " (nor did an earlier line of the same <F-MLFID> session)"
            } else {
                ""
            }
        );
    }
    let mut reasons = Vec::new();
    if r.no_message > 0 {
        reasons.push(format!("{} without MESSAGE", thousands(r.no_message)));
    }
    if r.other_program > 0 {
        reasons.push(format!(
            "{} from other programs",
            thousands(r.other_program)
        ));
    }
    if r.not_syslog > 0 {
        reasons.push(format!("{} not in syslog form", thousands(r.not_syslog)));
    }
    if r.too_long > 0 {
        reasons.push(format!("{} too long", thousands(r.too_long)));
    }
    if r.too_old > 0 {
        reasons.push(format!(
            "{} older than the jail's findtime before the newest line (or --now)",
            thousands(r.too_old)
        ));
    }
    if !reasons.is_empty() {
        let _ = writeln!(s, "         missed before matching: {}", reasons.join(", "));
    }
    if r.backtracking_gave_up > 0 {
        let _ = writeln!(
            s,
            "         {} backtracking regex search(es) given up (line over {} bytes, or {} backtracks): no match",
            thousands(r.backtracking_gave_up),
            thousands(BACKTRACKING_MAX_LINE as u64),
            thousands(BACKTRACK_LIMIT as u64)
        );
    }
    if r.no_date > 0 {
        let _ = writeln!(
            s,
            "         {} {} had no recognisable date (counted at --now, as the daemon counts them when read)",
            thousands(r.no_date),
            unit.1
        );
        if let Some(shape) = r
            .undated_shape
            .as_ref()
            .filter(|_| r.no_date * 2 > r.records)
        {
            let _ = writeln!(
                s,
                "  note: most lines have no date banhound recognises; they look like `{shape}` \
                 (9 = a digit): give the filter a datepattern for them, or their failures \
                 count when read, not when they happened"
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Failregex hits:");
    for (i, hits) in r.fail_hits.iter().enumerate() {
        if *hits > 0 || args.verbose {
            let engine = if args.verbose {
                // How its lines count in their session, when that is not every time.
                let count = match subject.filter.counting(i) {
                    Counting::Always => String::new(),
                    other => format!("[count {}] ", other.name()),
                };
                format!("[{}] {count}", subject.filter.failregex_engine(i))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  #{i:<3} {:>12}  {engine}{}",
                thousands(*hits),
                subject.filter.failregex_source(i)
            );
        }
    }
    if args.verbose {
        if let Some(engine) = subject.filter.prefregex_engine() {
            let _ = writeln!(s, "  prefregex engine: {engine}");
        }
        for i in 0..subject.filter.ignoreregex_count() {
            let _ = writeln!(
                s,
                "  ignoreregex #{i} engine: {}",
                subject.filter.ignoreregex_engine(i)
            );
        }
    }
    if !r.ignore_hits.is_empty() {
        let _ = writeln!(s, "Ignoreregex hits:");
        for (i, hits) in &r.ignore_hits {
            let _ = writeln!(s, "  #{i:<3} {:>12}", thousands(*hits));
        }
    }
    match provenance {
        Provenance::Lines { preparer, .. } => {
            match &subject.datepattern {
                Some(p) => {
                    let _ = writeln!(
                        s,
                        "Date templates (the filter's datepattern {:?}):",
                        p.source()
                    );
                }
                None => {
                    let _ = writeln!(s, "Date templates:");
                }
            }
            let mut any_date = false;
            for (name, hits) in preparer.detector().hit_counts() {
                if hits > 0 {
                    any_date = true;
                    let _ = writeln!(s, "  {name:<12} {:>12}", thousands(hits));
                }
            }
            if !any_date {
                let _ = writeln!(s, "  (none)");
            }
        }
        Provenance::Journal { .. } => {
            let _ = writeln!(s, "Timestamps: from the journal");
        }
    }
    let _ = writeln!(s);

    let mut addrs: Vec<(&IpNet, &u64)> = r.addresses.iter().collect();
    addrs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        s,
        "Addresses: {} distinct{}",
        thousands(addrs.len() as u64),
        if addrs.len() > args.top {
            format!(" (the {} with most failures)", args.top)
        } else {
            String::new()
        }
    );
    for (ip, n) in addrs.iter().take(args.top) {
        let _ = writeln!(s, "  {:<40} {:>10}", display_target(ip), thousands(**n));
    }
    if r.hostnames > 0 {
        let _ = writeln!(
            s,
            "  {} failures named a host name instead of an address (never resolved, never banned)",
            thousands(r.hostnames)
        );
    }
    if r.ignored_addresses > 0 {
        let _ = writeln!(
            s,
            "  {} failures from loopback or ignoreip addresses (never banned)",
            thousands(r.ignored_addresses)
        );
    }
    let _ = writeln!(s);
    let mut bans: Vec<(&IpNet, &(Timestamp, u64))> = r.bans.iter().collect();
    bans.sort_by(|a, b| {
        b.1 .1
            .cmp(&a.1 .1)
            .then(a.1 .0.cmp(&b.1 .0))
            .then(a.0.cmp(b.0))
    });
    let total_bans: u64 = r.bans.values().map(|v| v.1).sum();
    let _ = writeln!(
        s,
        "Would ban (maxretry {} within {}, bantime {}{}): {} addresses, {} bans",
        policy.maxretry,
        format_duration(policy.findtime),
        policy.bantime,
        if policy.escalation.is_some() {
            ", escalating"
        } else {
            ""
        },
        thousands(bans.len() as u64),
        thousands(total_bans)
    );
    for (net, (first, count)) in bans.iter().take(args.top) {
        let shown = display_target(net);
        let _ = writeln!(
            s,
            "  {shown:<40} first at {}, {} ban{}",
            first.to_rfc3339(),
            count,
            if *count == 1 { "" } else { "s" }
        );
    }
    if args.verbose && !r.missed_samples.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Missed {} (first {}):", unit.1, r.missed_samples.len());
        for (n, text) in &r.missed_samples {
            let _ = writeln!(s, "  {n:>8}: {text}");
        }
    }
    s
}
