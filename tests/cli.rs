//! The `banhound` binary as a user runs it: `test-filter`, `check-config` and the daemon's
//! arguments, with good and bad input. Exit codes: 0 success, 1 failure while running,
//! 2 invalid input.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `banhound` with the repository's shipped defaults and no admin configuration.
fn banhound(admin_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_banhound"));
    c.arg("--defaults-dir")
        .arg(root().join("conf"))
        .arg("--config-dir")
        .arg(admin_dir);
    c
}

/// `banhound daemon` without a control interface, logging to stderr, its state under
/// `admin_dir`: for runs that must stop at the configuration.
fn daemon_without_bus(admin_dir: &Path) -> Command {
    let mut c = banhound(admin_dir);
    c.args([
        "daemon",
        "--no-bus",
        "--log-target",
        "stderr",
        "--state-dir",
    ])
    .arg(admin_dir.join("state"));
    c
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn banhound");
    // Feed stdin from another thread: the child may fill its stdout pipe before it has
    // read all of its input.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON objects printed for matched lines.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const NOW: &str = "2026-11-22T12:00:00Z";

#[test]
fn test_filter_reports_matches_as_json_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    fs::write(
        &log,
        "Nov 22 10:00:01 web1 sshd[100]: Failed password for invalid user admin from 198.51.100.4 port 4242 ssh2\n\
         Nov 22 10:00:02 web1 sshd[100]: Accepted publickey for bob from 192.0.2.10 port 5000 ssh2: ED25519 SHA256:abc\n\
         Nov 22 10:00:03 web1 cron[7]: Failed password for root from 198.51.100.9 port 1 ssh2\n\
         2026-11-22T10:00:04.250000+01:00 web1 sshd[101]: Invalid user oracle from 2001:db8::7 port 22\n",
    )
    .unwrap();
    let out = run(
        banhound(dir.path())
            .args(["test-filter", "sshd"])
            .arg(&log)
            .args(["--json", "--timezone", "UTC", "--now", NOW]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let matches = json_lines(&out);
    assert_eq!(matches.len(), 2, "{matches:?}");
    assert_eq!(matches[0]["line"], 1);
    assert_eq!(matches[0]["host"], "198.51.100.4");
    assert_eq!(matches[0]["user"], "admin");
    assert_eq!(matches[0]["time"], "2026-11-22T10:00:01Z");
    assert_eq!(matches[1]["line"], 4);
    assert_eq!(matches[1]["host"], "2001:db8::7");
    assert_eq!(matches[1]["time"], "2026-11-22T09:00:04.250000Z");
    let summary = text(&out.stderr);
    assert!(
        summary.contains("4 read: 2 matched, 0 ignored, 2 missed"),
        "{summary}"
    );
    assert!(summary.contains("1 from other programs"), "{summary}");
    assert!(summary.contains("syslog"), "{summary}");
    assert!(summary.contains("iso8601"), "{summary}");
}

#[test]
fn test_filter_decides_bans_with_jail_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for i in 0..6 {
        log.push_str(&format!(
            "Nov 22 10:00:0{i} web1 sshd[100]: Failed password for root from 203.0.113.5 port 22 ssh2\n"
        ));
        log.push_str(&format!(
            "Nov 22 10:0{i}:00 web1 sshd[100]: Failed password for root from 198.51.100.77 port 22 ssh2\n"
        ));
    }
    let out = run(
        banhound(dir.path())
            .args([
                "test-filter",
                "sshd",
                "-",
                "--timezone",
                "UTC",
                "--now",
                NOW,
            ])
            .args(["--maxretry", "3", "--findtime", "1m"]),
        Some(log.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    // 6 failures within seconds: banned at the 3rd, the 4th-6th fall in the ban.
    assert!(
        s.contains("Would ban (maxretry 3 within 1m, bantime 10m): 1 addresses, 1 bans"),
        "{s}"
    );
    assert!(s.contains("203.0.113.5"), "{s}");
    // One failure a minute never fills a 1-minute window of 3.
    assert!(
        !s.contains("198.51.100.77                            first"),
        "{s}"
    );
}

#[test]
fn hostile_lines_never_yield_the_injected_address() {
    let dir = tempfile::tempdir().unwrap();
    let line = "Nov 22 10:00:01 web1 sshd[100]: Failed password for invalid user root from 203.0.113.9 from 198.51.100.4 port 22 ssh2";
    let out = run(
        banhound(dir.path()).args([
            "test-filter",
            "sshd",
            line,
            "--json",
            "--timezone",
            "UTC",
            "--now",
            NOW,
        ]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = json_lines(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["host"], "198.51.100.4");
    assert_eq!(m[0]["user"], "root from 203.0.113.9");
}

#[test]
fn binary_garbage_huge_lines_and_nuls_are_missed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"Nov 22 10:00:01 web1 sshd[1]: Failed password for \xff\xfe\x00 from 198.51.100.4 port 22 ssh2\n");
    input.extend_from_slice(b"\x00\x00\x00\xff\xc3\x28 garbage\n");
    // A 1 MiB line, and one over the reader's 4 MiB limit.
    input.extend_from_slice(b"Nov 22 10:00:02 web1 sshd[1]: Failed password for ");
    input.extend(std::iter::repeat_n(b'a', 1 << 20));
    input.extend_from_slice(b" from 198.51.100.5 port 22 ssh2\n");
    input.extend(std::iter::repeat_n(b'b', 5 << 20));
    input.extend_from_slice(
        b"\nNov 22 10:00:03 web1 sshd[1]: Invalid user x from 198.51.100.6 port 2\n",
    );
    let out = run(
        banhound(dir.path()).args([
            "test-filter",
            "sshd",
            "-",
            "--json",
            "--timezone",
            "UTC",
            "--now",
            NOW,
        ]),
        Some(&input),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hosts: Vec<String> = json_lines(&out)
        .iter()
        .map(|m| m["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts, vec!["198.51.100.4", "198.51.100.5", "198.51.100.6"]);
    let summary = text(&out.stderr);
    assert!(
        summary.contains("5 read: 3 matched, 0 ignored, 2 missed"),
        "{summary}"
    );
    assert!(summary.contains("1 too long"), "{summary}");
}

#[test]
fn regex_filters_need_an_address_tag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        banhound(dir.path()).args(["test-filter", "Failed password for (.*)", "x y z"]),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("failregex #0: no address tag"), "{err}");

    let out = run(
        banhound(dir.path()).args([
            "test-filter",
            "from <HOST> port \\d+",
            "Failed password for x from 192.0.2.44 port 22",
            "--json",
        ]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["host"], "192.0.2.44");

    let out = run(
        banhound(dir.path()).args(["test-filter", "sshdd", "x"]),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no filter \"sshdd\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[jail.sshd]\nbantime = \"1 fortnight\"\n", "banhound.toml:2: jail.sshd.bantime: unknown unit \"fortnight\""),
        ("[jail.sshd]\nmaxretries = 3\n", "banhound.toml:2: jail.sshd.maxretries: unknown field `maxretries`"),
        ("[defaults]\nignoreip = [\"192.0.2.0/24\",\n  \"10.1.2.3/40\"]\n", "banhound.toml:3: defaults.ignoreip: invalid address or network \"10.1.2.3/40\""),
        ("[jail.sshd\nenabled = true\n", "banhound.toml:1:"),
        ("[jail.sshd]\nenabled = true\nchains = [\"input\", \"prerouting\"]\n", "banhound.toml:3: jail.sshd.chains: unknown chain \"prerouting\""),
        ("[jail.x]\nenabled = true\nlogpath = [\"/var/log/x\"]\n[jail.x.filter]\nfailregex = ['^login failed$']\n", "banhound.toml:5: jail.x.filter.failregex: filter inline in jail x: failregex #0: no address tag"),
        ("[jail.x]\nlogpath = [\"/var/log/x\"]\n[jail.x.filter]\nfailregex = ['^login (failed from <HOST>$']\n", "banhound.toml:4: jail.x.filter.failregex: filter inline in jail x: failregex #0: does not compile: unclosed group in `^login (failed from <HOST>$`"),
    ];
    for (config, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("banhound.toml"), config).unwrap();
        let out = run(banhound(dir.path()).arg("check-config"), None);
        assert_eq!(out.status.code(), Some(2), "accepted:\n{config}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line expected:\n{err}");
        assert!(
            err.contains(expected),
            "config:\n{config}\nexpected: {expected}\ngot: {err}"
        );
        assert!(
            err.starts_with(&format!("banhound: {}", dir.path().display())),
            "{err}"
        );
    }
}

/// `check-config` once said OK for a journal match the daemon then refused at start, with no
/// file or line; and a file that is not UTF-8 was refused with no line. Both now stop
/// `check-config` and the daemon alike, with one message.
#[test]
fn check_config_refuses_what_the_daemon_refuses_with_the_same_message() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"[jail.sshd]\njournalmatch = [\"NOEQUALS\"]\n",
            "banhound.toml:2: jail.sshd.journalmatch: jail sshd: invalid journalmatch: match \"NOEQUALS\" is not of the form FIELD=VALUE",
        ),
        (
            b"[jail.sshd]\nmaxretry = 3 # tr\xe8s peu\n",
            "banhound.toml:2:18: jail.sshd.maxretry: byte 0xe8 is not UTF-8 (configuration files are UTF-8 text)",
        ),
    ];
    for (config, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("banhound.toml"), config).unwrap();
        let check = run(banhound(dir.path()).arg("check-config"), None);
        let check_err = text(&check.stderr);
        assert_eq!(
            check.status.code(),
            Some(2),
            "accepted: {check_err}{}",
            text(&check.stdout)
        );
        assert!(
            check_err.contains(expected),
            "expected {expected}\ngot: {check_err}"
        );
        // The daemon stops at the configuration, before it touches anything.
        let daemon = run(&mut daemon_without_bus(dir.path()), None);
        let daemon_err = text(&daemon.stderr);
        assert_eq!(daemon.status.code(), Some(2), "{daemon_err}");
        assert!(
            daemon_err.contains(expected),
            "expected {expected}\ngot: {daemon_err}"
        );
    }
}

/// `DBUS_SYSTEM_BUS_ADDRESS` set in the environment (a desktop session, a container) once
/// made `daemon --no-bus` an argument conflict with `--bus-address`, whose default it is.
#[test]
fn no_bus_is_accepted_with_a_bus_address_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    // A configuration error stops the daemon right after the arguments are accepted.
    fs::write(
        dir.path().join("banhound.toml"),
        "[jail.sshd]\nmaxretries = 3\n",
    )
    .unwrap();
    let out = run(
        daemon_without_bus(dir.path()).env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus"),
        None,
    );
    let err = text(&out.stderr);
    assert!(!err.contains("cannot be used with"), "{err}");
    assert!(err.contains("jail.sshd.maxretries: unknown field"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn shipped_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(banhound(dir.path()).arg("check-config"), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("jail sshd (enabled): filter sshd [normal], journal"),
        "{s}"
    );
    assert!(s.contains("jail recidive (disabled)"), "{s}");
    // Bans apply to traffic to this host unless a jail says otherwise.
    assert!(s.contains("backend nftables, chains input\n"), "{s}");
}

#[test]
fn test_filter_names_the_shape_of_lines_without_a_date() {
    let dir = tempfile::tempdir().unwrap();
    let undated = b"11.06.13 02:09:40 PROXY denied 198.51.100.7\n11.06.13 02:09:41 PROXY denied 198.51.100.7\nNov 22 10:00:01 PROXY denied 198.51.100.7\n";
    let args = ["test-filter", "denied <HOST>", "-", "--now", NOW];
    let out = run(banhound(dir.path()).args(args), Some(undated));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("note: most lines have no date banhound recognises; they look like `99.99.99 99:99:99 PROXY denied 999.99.99`"),
        "{summary}"
    );
    // Mostly dated: the count, no note.
    let dated = b"Nov 22 10:00:01 PROXY denied 198.51.100.7\nNov 22 10:00:02 PROXY denied 198.51.100.7\n11.06.13 02:09:40 PROXY denied 198.51.100.7\n";
    let out = run(banhound(dir.path()).args(args), Some(dated));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("1 lines had no recognisable date"),
        "{summary}"
    );
    assert!(!summary.contains("note: most lines"), "{summary}");
}

#[test]
fn a_bare_filter_name_is_banhounds_own_or_an_error_saying_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    // A fail2ban directory with an sshd filter of its own: a bare "sshd" must not reach it.
    let fail2ban = dir.path().join("fail2ban");
    fs::create_dir_all(fail2ban.join("filter.d")).unwrap();
    fs::write(
        fail2ban.join("filter.d/sshd.conf"),
        "[Definition]\nfailregex = ^fake failure from <HOST>$\n",
    )
    .unwrap();
    let no_defaults = dir.path().join("not-installed");
    let line = "fake failure from 192.0.2.7";
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(&no_defaults)
            .arg("--config-dir")
            .arg(dir.path().join("etc"))
            .args(["test-filter", "sshd", line, "--fail2ban-dir"])
            .arg(&fail2ban),
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}/filters", no_defaults.display()))
            && stderr.contains("are banhound's defaults installed?")
            && stderr.contains("fail2ban:sshd"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("192.0.2.7"));

    // fail2ban's, when asked for by name.
    let out = run(
        banhound(&dir.path().join("etc"))
            .args(["test-filter", "fail2ban:sshd", line, "--fail2ban-dir"])
            .arg(&fail2ban),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!(
        "fail2ban filter {}",
        fail2ban.join("filter.d/sshd.conf").display()
    )));
}

/// A control command that cannot reach any bus.
fn control_without_bus(dir: &Path, args: &[&str]) -> Output {
    let mut c = banhound(dir);
    c.arg("--bus-address")
        .arg(format!("unix:path={}", dir.join("no-bus").display()))
        .args(args);
    run(&mut c, None)
}

#[test]
fn malformed_control_arguments_are_refused_before_the_bus_is_tried() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["ban", "sshd", "198.51.100.300"][..],
        &["ban", "sshd", "198.51.100.7", "--for", "a while"],
        &["unban", "198.51.100.7 "],
        &["banned", "not-an-address"],
        &["ignore", "add", "sshd", "192.0.2.0/33"],
    ] {
        let out = control_without_bus(dir.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot connect"), "{args:?}: {stderr}");
    }
    // Well-formed, the same commands get as far as the bus: not running.
    for args in [
        &["ban", "sshd", "198.51.100.7", "--for", "1h"][..],
        &["unban", "198.51.100.7"],
        &["banned", "2001:db8::1"],
        &["ignore", "add", "sshd", "192.0.2.0/24"],
    ] {
        let out = control_without_bus(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let mut lines = String::new();
    for i in 0..20_000 {
        lines.push_str(&format!(
            "Nov 22 10:00:00 web1 sshd[1]: Failed password for root from 192.0.2.{} port 22 ssh2\n",
            i % 200 + 1
        ));
    }
    fs::write(&log, lines).unwrap();
    let log = log.to_str().unwrap();
    for args in [
        &["generate", "completions", "fish"][..],
        &["check-config"],
        &["test-filter", "sshd", log, "--json", "--now", NOW],
        &["test-filter", "sshd", log, "--now", NOW],
    ] {
        // The read end is closed before banhound writes: its first write meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = banhound(dir.path())
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(text(&out.stderr), "", "{args:?}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

#[test]
fn bash_completes_jail_names_from_the_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("etc");
    fs::create_dir_all(admin.join("jail.d")).unwrap();
    fs::write(
        admin.join("jail.d/mine.toml"),
        "[jail.myapp]\nenabled = true\nfilter = \"sshd\"\n",
    )
    .unwrap();
    // `banhound` on PATH as the script calls it, reading this configuration.
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let wrapper = bin.join("banhound");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --defaults-dir {} --config-dir {} \"$@\"\n",
            env!("CARGO_BIN_EXE_banhound"),
            root().join("conf").display(),
            admin.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("banhound.bash");
    let out = run(
        banhound(&admin).args(["generate", "completions", "bash"]),
        None,
    );
    assert!(out.status.success());
    fs::write(&script, &out.stdout).unwrap();
    let complete = |words: &str| -> Vec<String> {
        let out = run(
            Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                     _banhound_with_jails banhound; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    script.display()
                ))
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display())),
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    };
    for words in [
        "banhound status ''",
        "banhound ban ''",
        "banhound ignore add ''",
        "banhound unban 192.0.2.1 --jail ''",
        "banhound unban --all ''",
        "banhound --config-dir /x status ''",
    ] {
        let got = complete(words);
        assert!(
            got.contains(&"myapp".to_string()) && got.contains(&"sshd".to_string()),
            "{words}: {got:?}"
        );
    }
    // A prefix narrows them (the shipped mysqld-auth jail also begins with "my").
    assert_eq!(complete("banhound status mya"), ["myapp"]);
    // Elsewhere clap's completions: subcommands and option values, no jails.
    let got = complete("banhound ''");
    assert!(
        got.contains(&"status".to_string()) && !got.contains(&"myapp".to_string()),
        "{got:?}"
    );
    let got = complete("banhound ignore ''");
    assert!(
        got.contains(&"add".to_string())
            && got.contains(&"remove".to_string())
            && !got.contains(&"myapp".to_string()),
        "{got:?}"
    );
    assert!(!complete("banhound ban sshd ''").contains(&"myapp".to_string()));
}

/// zsh and fish complete jail names from the configuration too. fish is asked as a user's
/// shell would be (`complete -C`); zsh's completion system needs a terminal, so its script is
/// checked by zsh itself (`zsh -n`), its jail arguments are seen to use `_banhound_jails`,
/// and that function is run with `compadd` taking what it offers.
#[test]
fn zsh_and_fish_complete_jail_names_from_the_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("etc");
    fs::create_dir_all(admin.join("jail.d")).unwrap();
    fs::write(
        admin.join("jail.d/mine.toml"),
        "[jail.myapp]\nenabled = true\nfilter = \"sshd\"\n",
    )
    .unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let wrapper = bin.join("banhound");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --defaults-dir {} --config-dir {} \"$@\"\n",
            env!("CARGO_BIN_EXE_banhound"),
            root().join("conf").display(),
            admin.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let script = |shell: &str| {
        let out = run(
            banhound(&admin).args(["generate", "completions", shell]),
            None,
        );
        assert!(out.status.success());
        let file = dir.path().join(format!("banhound.{shell}"));
        fs::write(&file, &out.stdout).unwrap();
        (file, text(&out.stdout))
    };

    let (fish, _) = script("fish");
    let complete = |line: &str| -> Vec<String> {
        let out = run(
            Command::new("fish")
                .arg("--no-config")
                .arg("-c")
                .arg(format!("source {}; complete -C '{line}'", fish.display()))
                .env("PATH", &path),
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    };
    for line in [
        "banhound status ",
        "banhound ban ",
        "banhound ignore add ",
        "banhound unban 192.0.2.1 --jail ",
        "banhound unban --all ",
        "banhound --config-dir /x status ",
    ] {
        let got = complete(line);
        assert!(
            got.contains(&"myapp".to_string()) && got.contains(&"sshd".to_string()),
            "fish {line:?}: {got:?}"
        );
    }
    assert_eq!(complete("banhound status mya"), ["myapp"]);
    let got = complete("banhound ");
    assert!(
        got.contains(&"status".to_string()) && !got.contains(&"myapp".to_string()),
        "{got:?}"
    );
    assert!(!complete("banhound ban sshd ").contains(&"myapp".to_string()));

    let (zsh, text_of_zsh) = script("zsh");
    let out = run(Command::new("zsh").arg("-n").arg(&zsh), None);
    assert!(out.status.success(), "zsh -n: {}", text(&out.stderr));
    for spec in [
        "'::jail -- Show this jail in detail",
        "':jail -- The jail whose firewall rules block",
        "':jail -- The jail whose ignore list changes",
        "'(--all)--jail=[Only in this jail",
    ] {
        let line = text_of_zsh
            .lines()
            .find(|l| l.contains(spec))
            .unwrap_or_else(|| panic!("no spec {spec}"));
        assert!(line.ends_with(":_banhound_jails' \\"), "{line}");
    }
    let out = run(
        Command::new("zsh")
            .arg("-fc")
            .arg(format!(
                "compdef() {{ }}; compadd() {{ [[ $1 == -- ]] && shift; print -l -- \"$@\"; }}; \
                 source {}; _banhound_jails",
                zsh.display()
            ))
            .env("PATH", &path),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let offered: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert!(
        offered.contains(&"myapp".to_string()) && offered.contains(&"sshd".to_string()),
        "{offered:?}"
    );
}
