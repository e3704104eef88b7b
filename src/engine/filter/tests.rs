//! The filter's unit tests: compilation, matching, sessions and windows through the public API.

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
    let line = "Failed password for x from 203.0.113.9 port 22 ssh2 from 198.51.100.4 port 22 ssh2";
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
    // As written, not as translated (no internal group names, no position into them).
    assert_eq!(
        compile("from <HOST> ("),
        FilterErrorKind::Regex("unclosed group in `from <HOST> (`".into())
    );
    // A pattern only the backtracking engine takes (a lookahead), with its own parser.
    let FilterErrorKind::Regex(message) = compile("(?=x)from <HOST> \\k<missing>") else {
        panic!("compiled")
    };
    assert!(
        message.ends_with(" in `(?=x)from <HOST> \\k<missing>`") && !message.contains("__"),
        "{message}"
    );
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
fn one_pass_says_which_failregexes_match() {
    let f = filter(&[
        SSHD_PW,
        r"^Invalid user \S* from <HOST>",
        r"(?i)^bad from <HOST>",
    ]);
    assert!(f.has_multi_pattern_pass());
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
    let msg = "Accepted password for bob\nFailed password for root from 203.0.113.9 port 22 ssh2";
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
    // The one pass holds their linear-time supersets.
    assert!(f.has_multi_pattern_pass());
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

fn record<'a>(m: &mut Matcher<'_>, state: &'a mut SourceState, line: &'a str) -> Option<String> {
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
fn an_empty_user_is_reported_unless_the_session_named_one() {
    let f = Filter::compile(&FilterSpec {
        prefregex: Some(
            r"^<F-MLFID>\s*\S+ sshd\[\d+\]: </F-MLFID><F-CONTENT>.+</F-CONTENT>$".into(),
        ),
        failregex: vec![r"^Invalid user <F-USER>\S*</F-USER> from <HOST>".into()],
        dialect: Dialect::Fail2ban,
        ..Default::default()
    })
    .unwrap();
    let mut m = f.matcher();
    let mut st = SourceState::new();
    let s = &mut st;
    // fail2ban reports `""` for `Invalid user  from …`; an empty name never hides the
    // one an earlier line of the session gave.
    for (pid, earlier, expected) in [("11", None, &b""[..]), ("12", Some("eve"), b"eve")] {
        if let Some(name) = earlier {
            let line = format!(" web1 sshd[{pid}]: Invalid user {name} from 192.0.2.{pid}");
            record(&mut m, s, &line);
        }
        let line = format!(" web1 sshd[{pid}]: Invalid user  from 192.0.2.{pid}");
        match m.match_record(
            s,
            line.as_bytes(),
            Origin::default(),
            Timestamp::from_secs(1_795_000_000),
        ) {
            Outcome::Failure(fl) => assert_eq!(fl.user, Some(expected), "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn address_tags_take_an_ipv4_address_in_brackets() {
    let f = filter(&[
        r"^client <HOST>: wrong password$",
        r"^denied - <ADDR>\b",
        r"^call \(TCP:<HOST>:\d+\) rejected$",
        r"^bare <IP4> refused$",
    ]);
    for (line, expected) in [
        ("client [192.0.2.1]: wrong password", Some("192.0.2.1")),
        ("client 192.0.2.1: wrong password", Some("192.0.2.1")),
        (
            "denied - [192.0.2.2] File does not exist",
            Some("192.0.2.2"),
        ),
        ("call (TCP:[192.0.2.3]:61470) rejected", Some("192.0.2.3")),
        ("client [2001:db8::4]: wrong password", Some("2001:db8::4")),
        // Brackets do not make a host name, nor an address of `<IP4>`.
        ("client [evil.example]: wrong password", None),
        ("bare [192.0.2.5] refused", None),
        ("client [999.0.2.1]: wrong password", None),
    ] {
        assert_eq!(host_of(&f, line).as_deref(), expected, "{line}");
    }
}

#[test]
fn process_sessions_count_a_try_once_and_only_by_process() {
    let f = Filter::compile(&FilterSpec {
        failregex: vec![
            SSHD_PW.into(),
            r"^pam_unix\(sshd:auth\): authentication failure; .* rhost=<HOST>$".into(),
            r"^Connection closed by authenticating user \S+ <HOST> port \d+ \[preauth\]$".into(),
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
    let closed = b"Connection closed by authenticating user admin 192.0.2.7 port 50000 [preauth]";
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

#[test]
fn ipv6_address_with_port_backs_off_to_the_address() {
    // haproxy writes the peer with its port; fail2ban's filter makes the port optional.
    let f = fail2ban_filter(&[r"^<HOST>(?::\d+)?\s+\[[^]]+\] \S+ <NOSRV> 401$"]);
    let line = "2001:db8::1234:58430 [27/Nov/2026:10:00:00.123] fe <NOSRV> 401";
    assert_eq!(host_of(&f, line).as_deref(), Some("2001:db8::1234"));
    // A port of four digits or fewer is part of a valid address, and fail2ban takes it so.
    let line = "2001:db8::1234:8443 [27/Nov/2026:10:00:00.123] fe <NOSRV> 401";
    assert_eq!(host_of(&f, line).as_deref(), Some("2001:db8::1234:8443"));
    let line = "198.51.100.4:58430 [27/Nov/2026:10:00:00.123] fe <NOSRV> 401";
    assert_eq!(host_of(&f, line).as_deref(), Some("198.51.100.4"));
    // Without a place for the port, nothing valid is left: a miss, never a guess.
    let f = fail2ban_filter(&[r"^<HOST> \[[^]]+\] \S+ <NOSRV> 401$"]);
    let line = "2001:db8::1234:58430 [27/Nov/2026:10:00:00.123] fe <NOSRV> 401";
    assert_eq!(host_of(&f, line), None);
    // Mapped and zoned forms still match whole.
    let f = filter(&[r"^from <HOST> port \d+$"]);
    let mapped = "from ::ffff:198.51.100.4 port 22";
    assert_eq!(host_of(&f, mapped).as_deref(), Some("198.51.100.4"));
    let bracketed = "from [2001:db8::7] port 22";
    assert_eq!(host_of(&f, bracketed).as_deref(), Some("2001:db8::7"));
}

#[test]
fn python_angle_bracket_escapes_are_literal() {
    // Python's `\<` and `\>` are '<' and '>' (assp, murmur), not word boundaries.
    let f = fail2ban_filter(&[r"^<HOST> (?:\<\S+@\S+\.\S+\> )*relay attempt blocked$"]);
    let line = "192.0.2.7 <spam@example.org> relay attempt blocked";
    assert_eq!(host_of(&f, line).as_deref(), Some("192.0.2.7"));
    assert_eq!(
        host_of(&f, "192.0.2.7 spam@example.org relay attempt blocked"),
        None
    );
    let f = filter(&[r"^\<W\>\S+ from <HOST>$"]);
    assert_eq!(
        host_of(&f, "<W>x from 192.0.2.8").as_deref(),
        Some("192.0.2.8")
    );
    assert_eq!(host_of(&f, "Wx from 192.0.2.8"), None);
}

fn fail2ban_filter(fail: &[&str]) -> Filter {
    Filter::compile(&FilterSpec {
        failregex: fail.iter().map(|s| s.to_string()).collect(),
        dialect: Dialect::Fail2ban,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_first_matching_failregex_decides_and_ignores_are_exact() {
    let f = Filter::compile(&FilterSpec {
        failregex: vec![
            r"^b from <HOST>$".into(),
            r"^a <F-USER>\S+</F-USER> from <HOST>$".into(),
            r"^a .* from <HOST>$".into(),
        ],
        ignoreregex: vec![r"nomatch$".into(), r"(?<=a )ignored\b".into(), r"ok".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(f.ignoreregex_engine(1), EngineKind::Backtracking);
    let mut m = f.matcher();
    match m.match_line(b"a u from 192.0.2.1") {
        Outcome::Failure(fail) => assert_eq!((fail.regex, fail.user), (1, Some(&b"u"[..]))),
        other => panic!("{other:?}"),
    }
    match m.match_line(b"a u v from 192.0.2.1") {
        Outcome::Failure(fail) => assert_eq!((fail.regex, fail.user), (2, None)),
        other => panic!("{other:?}"),
    }
    // The superset of the lookbehind matches "x ignored", the regex itself does not.
    assert!(matches!(
        m.match_line(b"a x ignored ok from 192.0.2.1"),
        Outcome::Ignored {
            regex: 2,
            ignore: 2
        }
    ));
    assert!(matches!(
        m.match_line(b"a ignored from 192.0.2.1"),
        Outcome::Ignored {
            regex: 1,
            ignore: 1
        }
    ));
}
