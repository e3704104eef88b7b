//! `banhound test-filter FILTER [SOURCE]`: the `fail2ban-regex` of banhound.
//!
//! Runs a filter over a file, stdin, one line or the journal, exactly as the daemon would
//! (same line reader or journal reader, and the daemon's own decision step,
//! [`Jail::decide`](crate::engine::jail::Jail::decide), with `--now` as its clock), and
//! reports what it found: records matched, ignored and missed, hits per regex, the date
//! formats seen, the addresses and which of them a jail would ban. It streams: memory
//! depends on the number of distinct addresses, not on the size of the input.
//!
//! The parts, in the order a run uses them: `args` (the command line and its times),
//! `subject` (the filter and the jail's settings under test), `input` (where records
//! come from: lines or journal entries), `record` (the one step every record passes
//! through, and the counters it keeps), `summary` (the text printed at the end).

mod args;
mod input;
mod record;
mod subject;
mod summary;

pub use args::{JournalArgs, TestFilterArgs};

use crate::config::ConfigPaths;
use crate::engine::tracker::Tracker;
use input::{choose_input, read_journal, read_lines, Input};
use record::{Report, Run};
use std::io::{self, BufWriter, Write};
use subject::{load_jail, resolve_filter, resolve_policy};
use summary::render_summary;

pub fn run(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<()> {
    let subject = resolve_filter(paths, args)?;
    let jail = load_jail(paths, args)?;
    let policy = resolve_policy(jail.as_ref(), args)?;
    let input = choose_input(args)?;

    let stdout = io::stdout();
    let mut run = Run {
        report: Report {
            fail_hits: vec![0; subject.filter.failregex_count()],
            ..Report::default()
        },
        matcher: subject.filter.matcher(),
        tracker: Tracker::new(policy.to_policy(&[])),
        out: BufWriter::with_capacity(64 << 10, stdout.lock()),
        json: args.json,
        verbose: args.verbose,
        top: args.top,
    };
    let provenance = match input {
        Input::Lines { reader, name } => {
            read_lines(&mut run, args, &subject, jail.as_ref(), reader, name)?
        }
        Input::Journal(source) => read_journal(&mut run, args, &subject, jail.as_ref(), source)?,
    };
    run.out.flush()?;
    let Run {
        mut report,
        out,
        matcher,
        ..
    } = run;
    drop(out);
    report.backtracking_gave_up = matcher.backtracking_gave_up();

    let summary = render_summary(&report, &subject, &provenance, &policy, args);
    if args.json {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(())
}
