//! ReDoS: 1 MiB adversarial lines against every shipped filter (conf/filters) in every mode,
//! and against fail2ban-dialect regexes that need the backtracking engine.
//!
//! Work is bounded by construction, and that is what is asserted, never a wall-clock time
//! (the machine is shared):
//! - every regex of every shipped filter runs on the linear engine (asserted), whose cost
//!   is linear in the line's length whatever the line holds; each adversarial line must
//!   come back with the right answer (the real peer, or nothing; never an injected address);
//! - a backtracking regex is not run on a line over `BACKTRACKING_MAX_LINE` bytes, and
//!   within that gives up at `BACKTRACK_LIMIT` backtracks: both are misses, and the
//!   matcher counts them (asserted), so a line that would take exponential or quadratic
//!   time is seen to have been cut short rather than to have happened to miss.
//!
//! `redos_timings` (ignored) measures the same inputs for docs/reliability.md:
//! `cargo test --release --test redos -- --ignored --nocapture redos_timings`.

mod injection;

use banhound::engine::filter::{
    Dialect, EngineKind, Filter, FilterSpec, Host, Matcher, Outcome, BACKTRACKING_MAX_LINE,
};
use injection::{injected, read_corpus, shipped_filters, Expect, ShippedFilter, BASE_MODE};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// Corpus lines per filter grown to 1 MiB (besides the generic and the shaped lines).
const PADDED_PER_FILTER: usize = 3;

/// `unit` repeated until the line is at least 1 MiB.
fn mib_of(unit: &[u8]) -> Vec<u8> {
    unit.repeat(MIB.div_ceil(unit.len()))
}

/// Lines that stress the tags and the usual regex shapes, whatever the filter.
fn generic_lines() -> Vec<(String, Vec<u8>)> {
    let units: [(&str, &[u8]); 12] = [
        ("a", b"a"),
        ("spaces", b" "),
        ("ipv4 runs", b"203.0.113.66 "),
        ("digits and dots", b"1."),
        ("ipv6 runs", b"2001:db8:bad::66:"),
        ("hex and colons", b"a:"),
        ("brackets", b"[203.0.113.66]"),
        ("quotes", b"\""),
        ("control", b"\r\x1b[2K\t\x00"),
        ("not utf-8", b"\xff\xfe\xc3"),
        ("sshd tails", b" from 203.0.113.66 port 22 ssh2 [preauth]"),
        (
            "field tails",
            b"\", client: 203.0.113.66, rip=203.0.113.66, lip=1.2.3.4, rhost=1.2.3.4 ",
        ),
    ];
    let mut lines: Vec<(String, Vec<u8>)> = units
        .iter()
        .map(|(n, u)| (n.to_string(), mib_of(u)))
        .collect();
    lines.push(("newlines".into(), vec![b'\n'; MIB]));
    lines
}

/// A corpus message with its hostile part grown to 1 MiB: the run up to the first injected
/// address repeated in place, as a client would pad the field it controls.
fn padded_at_injection(message: &[u8]) -> Option<Vec<u8>> {
    let markers: [&[u8]; 3] = [b"203.0.113.", b"1.2.3.4", b"2001:db8:bad:"];
    let at = markers
        .iter()
        .filter_map(|m| message.windows(m.len()).position(|w| w == *m))
        .min()?;
    let start = at.saturating_sub(24);
    let unit = &message[start..at + 8];
    let mut line = message[..start].to_vec();
    line.extend(mib_of(unit));
    line.extend_from_slice(&message[start..]);
    Some(line)
}

/// The adversarial lines for one filter, each with what it must give in the base mode
/// (None: only "never an injected address" holds, e.g. for the generic lines).
fn adversarial_lines(filter: &ShippedFilter) -> Vec<(String, Vec<u8>, Option<Expect>)> {
    let mut lines: Vec<_> = generic_lines()
        .into_iter()
        .map(|(n, l)| (n, l, None))
        .collect();
    // Corpus messages grown in the field the client controls: the answer may change (a
    // name with blanks is a miss in some filters) but can only be the case's own peer or
    // nothing. A few per filter: each 1 MiB match costs the capture engine a full pass.
    let padded = read_corpus(&injection::corpus_path(&filter.name))
        .into_iter()
        .filter_map(|case| padded_at_injection(&case.message).map(|l| (case.at, l)))
        .take(PADDED_PER_FILTER);
    for (at, line) in padded {
        lines.push((format!("{at} padded"), line, None));
    }
    // A real failure whose client-controlled field is 1 MiB of hostile text: must be found.
    // (filter, head, field unit repeated to 1 MiB, server-written tail, real peer)
    let shaped: [(&str, &str, &str, &str, &str); 7] = [
        (
            "sshd",
            "Invalid user ",
            "x from 203.0.113.66 port 22 ",
            "from 198.51.100.4 port 4242",
            "198.51.100.4",
        ),
        (
            "dovecot",
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<",
            "x>, rip=203.0.113.66, lip=192.0.2.1, ",
            ">, method=PLAIN, rip=198.51.100.4, lip=192.0.2.1, TLS",
            "198.51.100.4",
        ),
        (
            "postfix-sasl",
            "warning: unknown[198.51.100.4]: SASL LOGIN authentication failed: authentication failure, sasl_username=",
            "x[203.0.113.66]: ",
            "y",
            "198.51.100.4",
        ),
        (
            "vsftpd",
            "[",
            "x] FAIL LOGIN: Client \"203.0.113.66\"",
            "] FAIL LOGIN: Client \"198.51.100.4\"",
            "198.51.100.4",
        ),
        (
            "nginx-http-auth",
            "2026/11/22 02:26:07 [error] 1234#1234: *5 user \"",
            "x\", client 203.0.113.66, ",
            "\": password mismatch, client: 198.51.100.4, server: example.com",
            "198.51.100.4",
        ),
        (
            "nginx-botsearch",
            "198.51.100.4 - - [22/Nov/2026:02:26:07 +0000] \"GET /wp-login.php HTTP/1.1\" 404 153 \"-\" \"",
            "203.0.113.66 - - \\x22GET /.env\\x22 404 ",
            "\"",
            "198.51.100.4",
        ),
        (
            "recidive",
            "Banned 198.51.100.4 in jail ",
            "x",
            " for 10m after 5 failures",
            "198.51.100.4",
        ),
    ];
    for (_, head, unit, tail, peer) in shaped.iter().filter(|s| s.0 == filter.name) {
        let mut line = head.as_bytes().to_vec();
        line.extend(mib_of(unit.as_bytes()));
        line.extend_from_slice(tail.as_bytes());
        lines.push((
            format!("{} shaped", filter.name),
            line,
            Some(Expect::Peer(peer.parse().unwrap())),
        ));
    }
    lines
}

fn outcome_peer(outcome: Outcome<'_>, context: &str) -> Expect {
    match outcome {
        Outcome::Failure(f) => match f.host {
            Host::Ip(ip) => {
                assert!(!injected(ip), "{context}: INJECTED address {ip} found");
                Expect::Peer(ip)
            }
            Host::Name(n) => panic!("{context}: host name {:?}", String::from_utf8_lossy(n)),
            Host::Net(net) => panic!("{context}: network {net}"),
        },
        _ => Expect::Nothing,
    }
}

#[test]
fn shipped_filters_run_only_on_the_linear_engine() {
    for filter in shipped_filters() {
        for (mode, def) in &filter.modes {
            let f = &def.filter;
            let engines = (0..f.failregex_count())
                .map(|i| f.failregex_engine(i))
                .chain((0..f.ignoreregex_count()).map(|i| f.ignoreregex_engine(i)))
                .chain(f.prefregex_engine());
            for (i, engine) in engines.enumerate() {
                assert_eq!(
                    engine,
                    EngineKind::Linear,
                    "{} mode {mode}: regex {i} needs the backtracking engine",
                    filter.name
                );
            }
        }
    }
}

#[test]
fn mib_lines_through_every_shipped_filter_give_the_right_answer() {
    let mut tried = 0usize;
    for filter in shipped_filters() {
        let lines = adversarial_lines(&filter);
        for (mode, def) in &filter.modes {
            let mut matcher = def.filter.matcher();
            for (name, line, want) in &lines {
                assert!(line.len() >= MIB, "{name}: {} bytes", line.len());
                let context = format!("{} mode {mode}, {name} ({} bytes)", filter.name, line.len());
                let got = outcome_peer(matcher.match_line(line), &context);
                if let (Some(want), true) = (want, mode == BASE_MODE) {
                    assert_eq!(got, *want, "{context}");
                }
                tried += 1;
            }
            assert_eq!(matcher.backtracking_gave_up(), 0, "{}", filter.name);
        }
    }
    println!("{tried} adversarial lines of 1 MiB or more tried against the shipped filters");
    assert!(tried > 0);
}

/// Catastrophic: every way to cut the words is tried before the lookahead fails.
const CATASTROPHIC: &str = r"^(?:(?=\w)\w+\s?)+from <HOST>(?!.*x)";
/// Quadratic without a single backtrack: the lookahead scans to the end of the line at
/// every word.
const QUADRATIC: &str = r"^(?:(?=.*Failed)\S+ )+from <HOST>$";
/// A tempered user name and a conditional, as fail2ban's own filters write them.
const TEMPERED: &str = r"^Failed \S+ for (?P<cond_inv>invalid user )?<F-USER>(?:(?!from ).)+?</F-USER> from <HOST>(?: port \d+)?(?(cond_inv)| ssh2)$";

/// A fail2ban-dialect filter of one regex, which needs the backtracking engine.
fn backtracking_filter(regex: &str) -> Filter {
    let f = Filter::compile(&FilterSpec {
        prefregex: None,
        failregex: vec![regex.to_string()],
        ignoreregex: vec![],
        dialect: Dialect::Fail2ban,
    })
    .unwrap();
    assert_eq!(f.failregex_engine(0), EngineKind::Backtracking, "{regex}");
    f
}

struct BacktrackingCase {
    name: &'static str,
    regex: &'static str,
    line: Vec<u8>,
    /// The engine must give up (and count it); otherwise it must find the peer.
    gives_up: bool,
}

fn backtracking_cases() -> Vec<BacktrackingCase> {
    let with_tail = |mut body: Vec<u8>, tail: &[u8]| {
        body.extend_from_slice(tail);
        body
    };
    let case = |name, regex, line, gives_up| BacktrackingCase {
        name,
        regex,
        line,
        gives_up,
    };
    let fits = |unit: &[u8], tail: &[u8]| {
        let n = (BACKTRACKING_MAX_LINE - tail.len()) / unit.len();
        with_tail(unit.repeat(n), tail)
    };
    vec![
        case(
            "catastrophic, 60 bytes (2^40 ways)",
            CATASTROPHIC,
            with_tail(b"a".repeat(40), b" from 198.51.100.4 x"),
            true,
        ),
        case(
            "catastrophic, at the length limit",
            CATASTROPHIC,
            fits(b"a", b" from 198.51.100.4 x"),
            true,
        ),
        case(
            "catastrophic, 1 MiB",
            CATASTROPHIC,
            with_tail(mib_of(b"a"), b" from 198.51.100.4 x"),
            true,
        ),
        case(
            "quadratic lookahead, at the length limit",
            QUADRATIC,
            fits(b"a ", b"Failed from 198.51.100.4"),
            false,
        ),
        case(
            "quadratic lookahead, 1 MiB",
            QUADRATIC,
            with_tail(mib_of(b"a "), b"Failed from 198.51.100.4"),
            true,
        ),
        case(
            "tempered user name, at the length limit",
            TEMPERED,
            {
                let (head, tail) = (b"Failed password for ", b" from 198.51.100.4 port 22 ssh2");
                let name = b"x".repeat(BACKTRACKING_MAX_LINE - head.len() - tail.len());
                with_tail(with_tail(head.to_vec(), &name), tail)
            },
            false,
        ),
        case(
            "tempered user name, 1 MiB",
            TEMPERED,
            with_tail(
                with_tail(b"Failed password for ".to_vec(), &mib_of(b"x")),
                b" from 198.51.100.4 port 22 ssh2",
            ),
            true,
        ),
        case(
            "not UTF-8, 1 MiB",
            TEMPERED,
            with_tail(
                with_tail(b"Failed password for ".to_vec(), &mib_of(b"\xff")),
                b" from 198.51.100.4 port 22 ssh2",
            ),
            true,
        ),
    ]
}

#[test]
fn backtracking_engine_gives_up_and_counts_it() {
    // The regexes work on ordinary lines.
    for (regex, line) in [
        (CATASTROPHIC, &b"aa bb from 198.51.100.4"[..]),
        (QUADRATIC, b"a a Failed from 198.51.100.4"),
        (
            TEMPERED,
            b"Failed password for root from 198.51.100.4 port 22 ssh2",
        ),
        (
            TEMPERED,
            b"Failed password for invalid user x from 198.51.100.4 port 22",
        ),
    ] {
        let filter = backtracking_filter(regex);
        let mut m = filter.matcher();
        let got = outcome_peer(m.match_line(line), &String::from_utf8_lossy(line));
        assert_eq!(got, Expect::Peer("198.51.100.4".parse().unwrap()));
        assert_eq!(m.backtracking_gave_up(), 0);
    }
    for case in backtracking_cases() {
        let filter = backtracking_filter(case.regex);
        let mut m = filter.matcher();
        let got = outcome_peer(m.match_line(&case.line), case.name);
        assert_eq!(
            m.backtracking_gave_up(),
            u64::from(case.gives_up),
            "{}: given up",
            case.name
        );
        let want = if case.gives_up {
            Expect::Nothing
        } else {
            Expect::Peer("198.51.100.4".parse().unwrap())
        };
        assert_eq!(got, want, "{}", case.name);
    }
}

/// CPU time of the calling thread: unlike the wall clock, barely moved by the other work
/// on a shared machine.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (wall, thread CPU) of one match, the fastest of three runs.
fn timed(matcher: &mut Matcher<'_>, line: &[u8]) -> (Duration, Duration) {
    (0..3)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), thread_cpu_time());
            let _ = matcher.match_line(line);
            (wall.elapsed(), thread_cpu_time() - cpu)
        })
        .min_by_key(|&(_, cpu)| cpu)
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The times behind docs/reliability.md. Not a pass/fail test: it prints.
#[test]
#[ignore = "measurement: cargo test --release --test redos -- --ignored --nocapture"]
fn redos_timings() {
    println!("shipped filters, 1 MiB lines (CPU ms; wall ms in brackets):");
    for filter in shipped_filters() {
        let lines = adversarial_lines(&filter);
        for (mode, def) in &filter.modes {
            let mut matcher = def.filter.matcher();
            let (mut total, mut slowest) = (Duration::ZERO, (Duration::ZERO, Duration::ZERO, ""));
            for (name, line, _) in &lines {
                let (wall, cpu) = timed(&mut matcher, line);
                total += cpu;
                if cpu > slowest.1 {
                    slowest = (wall, cpu, name.as_str());
                }
            }
            println!(
                "  {:<16} {:<10} {:>3} lines: {:>7.1} total, slowest {:>6.1} [{:>6.1}] ({})",
                filter.name,
                mode,
                lines.len(),
                ms(total),
                ms(slowest.1),
                ms(slowest.0),
                slowest.2.rsplit('/').next().unwrap_or_default()
            );
        }
    }
    println!("backtracking engine (fail2ban dialect), one regex each (CPU ms; wall ms):");
    for case in backtracking_cases() {
        let filter = backtracking_filter(case.regex);
        let mut m = filter.matcher();
        let (wall, cpu) = timed(&mut m, &case.line);
        println!(
            "  {:<42} {:>8} bytes {:>9.3} [{:>9.3}]{}",
            case.name,
            case.line.len(),
            ms(cpu),
            ms(wall),
            if case.gives_up { " given up" } else { "" }
        );
    }
}

/// The give-ups are reported to the user: `banhound test-filter` with a regex that needs
/// the backtracking engine, over a line it matches and one over the length limit.
#[test]
fn test_filter_reports_backtracking_give_ups() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut input = b"a a Failed from 198.51.100.4\n".to_vec();
    input.extend(b"a ".repeat(BACKTRACKING_MAX_LINE));
    input.extend_from_slice(b"Failed from 198.51.100.5\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .arg("--defaults-dir")
        .arg(injection::root().join("conf"))
        .arg("--config-dir")
        .arg(dir.path())
        .args(["test-filter", QUADRATIC, "-", "--format", "plain", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("198.51.100.4"), "{stdout}");
    assert!(
        summary.contains("2 read: 1 matched, 0 ignored, 1 missed"),
        "{summary}"
    );
    assert!(
        summary.contains("1 backtracking regex search(es) given up (line over 8,192 bytes"),
        "{summary}"
    );
}
