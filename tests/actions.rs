//! Jail actions end to end, with real parts: the daemon (tests/support/daemon_lab.rs), a real
//! MTA (exim with a private configuration, delivering into a temp mbox), the real `whois`
//! client against a whois server of ours, an HTTP server of ours for webhooks, and Debian's
//! fail2ban action.d files as installed (tests/support/action_lab.rs).
//!
//! The log lines that cause the bans are hostile: shell code in user names, CR and NUL,
//! a line of tens of kilobytes. What is checked is what arrived (the mail as delivered, the
//! request as received, the file a command or an action.d script wrote) and that nothing
//! the attacker wrote was run (a canary file that a `touch` in their text would create).
//! Needs root, nft, ip, python3, exim4, whois, fail2ban and /lib/systemd/systemd-journald.

#[path = "support/action_lab.rs"]
mod action_lab;
#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;
#[path = "support/private_bus.rs"]
mod private_bus;

use action_lab::{append, split_message, sshd_line, Exim, Server};
use daemon_lab::{Lab, ATTACKER, FRIEND, PORT};
use netlab::wait_for;
use private_bus::{BusPolicy, DbusDaemon};
use std::path::Path;
use std::time::{Duration, Instant};

const WHOIS_PORT: u16 = 4343;
const HTTP_PORT: u16 = 8080;

/// A file jail `ssh` reading `auth` with the shipped sshd filter, with these actions.
fn jail(auth: &Path, maxretry: u32, bantime: &str, actions: &[&str]) -> String {
    let actions: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[jail.ssh]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nport = \"{PORT}\"\nmaxretry = {maxretry}\nfindtime = \"10m\"\nbantime = \"{bantime}\"\nactions = [{}]\n",
        auth.display(),
        actions.join(", ")
    )
}

/// A TOML array of strings.
fn toml_list(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The hostile failures: shell code, CR, NUL, a huge line, all from `addr`.
fn hostile_failures(addr: &str, canary: &Path) -> Vec<Vec<u8>> {
    let c = canary.display();
    let mut huge = b"Failed password for invalid user ".to_vec();
    huge.extend(std::iter::repeat_n(b'A', 30_000));
    huge.extend(format!(" from {addr} port 40002 ssh2").as_bytes());
    vec![
        sshd_line(format!("Failed password for invalid user $(touch {c}) from {addr} port 40001 ssh2").as_bytes()),
        sshd_line(&huge),
        sshd_line(format!("Failed password for invalid user `touch {c}`;rm -rf /;\rBcc: injected@banhound.test\0x from {addr} port 40003 ssh2").as_bytes()),
        sshd_line(format!("Failed password for invalid user ';touch {c};' from {addr} port 40004 ssh2").as_bytes()),
    ]
}

/// Logs [`hostile_failures`] from the attacker and waits for its ban.
fn attack_with_hostile_text(daemon: &daemon_lab::Daemon, auth: &Path, canary: &Path) {
    append(auth, &hostile_failures(ATTACKER, canary));
    daemon.wait_log(&format!("Banned {ATTACKER} in jail ssh"), 1);
}

/// A command action recording its argv and BANHOUND_LINES (tests/support/record-action.py).
fn recorder(out: &Path, event: &str) -> Vec<String> {
    vec![
        "python3".into(),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/record-action.py"
        )
        .into(),
        out.display().to_string(),
        event.into(),
        "{ip}".into(),
        "{failures}".into(),
        "{lines}".into(),
    ]
}

fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The test's files: the jail's log (empty), where a command records its runs, and a canary
/// that any execution of the attacker's text would create.
struct Scratch {
    dir: tempfile::TempDir,
    auth: std::path::PathBuf,
    canary: std::path::PathBuf,
    commands: std::path::PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.log");
        std::fs::write(&auth, "").unwrap();
        Scratch {
            auth,
            canary: dir.path().join("canary"),
            commands: dir.path().join("commands.json"),
            dir,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// A flood jail (maxretry 1) with a mail and a recording command action, limited to
/// `limits` (mail, command) per `window`.
fn flood_config(exim: &Exim, files: &Scratch, limits: [u32; 2], window: &str) -> String {
    format!(
        "{}\nmax_tracked = 100000\n\n[action.mail]\nkind = \"mail\"\nto = [\"admin@banhound.test\"]\nsendmail = {}\nrate_limit = {}\nrate_window = \"{window}\"\n\n[action.note]\nkind = \"command\"\nban = {}\nrate_limit = {}\nrate_window = \"{window}\"\n",
        jail(&files.auth, 1, "1h", &["mail", "note"]),
        toml_list(&exim.sendmail()),
        limits[0],
        toml_list(&recorder(&files.commands, "ban")),
        limits[1],
    )
}

#[test]
fn a_ban_mails_whois_and_lines_through_a_real_mta_and_runs_a_command_without_a_shell() {
    let exim = Exim::new();
    let files = Scratch::new();
    let (auth, canary, commands) = (&files.auth, &files.canary, &files.commands);
    let config = format!(
        "{}\n[action.mail]\nkind = \"mail\"\nto = [\"admin@banhound.test\"]\nfrom = \"banhound@banhound.test\"\nfrom_name = \"banhound alerts\"\nwhois = true\nwhois_command = ['whois', '-h', '127.0.0.1', '-p', '{WHOIS_PORT}']\nsendmail = {}\n\n[action.note]\nkind = \"command\"\nban = {}\nunban = {}\n",
        jail(auth, 3, "3s", &["mail", "note"]),
        toml_list(&exim.sendmail()),
        toml_list(&recorder(commands, "ban")),
        toml_list(&recorder(commands, "unban")),
    );
    let mut lab = Lab::new("mail", &config);
    let whois = Server::start(
        lab.server().name(),
        "whois-server.py",
        WHOIS_PORT,
        lab.dir(),
    );
    let daemon = lab.start();
    attack_with_hostile_text(&daemon, auth, canary);
    wait_for("the mail", Duration::from_secs(20), || {
        !exim.messages().is_empty()
    });
    wait_for("the unban command", Duration::from_secs(20), || {
        read_json_lines(commands).len() >= 2
    });

    // The mail, as delivered.
    let messages = exim.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}\n{}", exim.log());
    let (header, body) = split_message(&messages[0]);
    let header_lines: Vec<&str> = header.lines().collect();
    assert!(
        header_lines.contains(&"Envelope-to: admin@banhound.test"),
        "{header}"
    );
    assert!(
        header_lines
            .iter()
            .all(|l| !l.starts_with("Bcc") && !l.starts_with("Cc")),
        "{header}"
    );
    assert!(!exim.log().contains("injected"), "{}", exim.log());
    assert!(
        header.contains(&format!("Subject: [banhound] ssh: banned {ATTACKER} on ")),
        "{header}"
    );
    assert!(
        header.contains("From: \"banhound alerts\" <banhound@banhound.test>"),
        "{header}"
    );
    assert!(
        body.contains(&format!("banned {ATTACKER} in jail ssh")),
        "{body}"
    );
    assert!(body.contains("Matched log lines:"), "{body}");
    assert!(
        body.contains(&format!("$(touch {})", canary.display())),
        "{body}"
    );
    assert!(body.contains("`touch"), "{body}");
    // The huge line is cut (and the cut marked), CR and NUL are visible text.
    assert!(body.contains("AAAA…"), "{body}");
    assert!(body.lines().all(|l| l.len() <= 998));
    assert!(messages[0].len() < 30_000, "{}", messages[0].len());
    // The whois report: the real client asked our server about the banned address; its
    // hostile answer is in the body, neutralised.
    assert_eq!(whois.log_text().trim(), ATTACKER);
    assert!(body.contains(&format!("whois {ATTACKER}:")), "{body}");
    assert!(body.contains("netname: TEST-NET"), "{body}");
    // (The whois client drops what follows a CR itself; nothing of it is a header line.)
    assert!(body.lines().any(|l| l.starts_with("descr: evil")), "{body}");
    assert!(!body.lines().any(|l| l.starts_with("Bcc")), "{body}");
    // A lone dot from whois did not end the message (sendmail -i).
    assert!(body.lines().any(|l| l == "."), "{body}");
    assert!(
        body.contains("remarks: $(touch /tmp/whois-pwned) `id` ;rm -rf /"),
        "{body}"
    );
    assert!(body.contains("\\x1b]0;pwned\\x07"), "{body}");
    assert!(!messages[0].contains('\x1b'));

    // The command: one argument per value, whatever they contain; ban then unban.
    let runs = read_json_lines(commands);
    assert_eq!(runs[0]["argv"][0], "ban");
    assert_eq!(runs[0]["argv"][1], ATTACKER);
    let lines = runs[0]["argv"][3].as_str().unwrap();
    assert_eq!(runs[0]["lines"].as_str().unwrap(), lines);
    assert!(
        lines.contains(&format!("$(touch {})", canary.display())),
        "{lines}"
    );
    assert!(
        lines.contains("\\x0dBcc: injected@banhound.test\\x00x"),
        "{lines}"
    );
    assert!(lines.lines().all(|l| l.len() <= 1004), "{lines}");
    assert_eq!(runs[1]["argv"][0], "unban");
    assert_eq!(runs[1]["argv"][1], ATTACKER);
    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail ssh"), 1);
    assert!(!canary.exists(), "text from the log was run");
    assert!(
        !daemon.log().contains("action mail failed"),
        "{}",
        daemon.log()
    );
    assert!(daemon.stop());
}

#[test]
fn webhooks_post_json_retry_after_500_and_a_hanging_one_does_not_delay_bans() {
    let files = Scratch::new();
    let (auth, canary) = (&files.auth, &files.canary);
    let url = |path: &str| format!("http://127.0.0.1:{HTTP_PORT}{path}");
    let config = format!(
        "{}\n[action.flaky]\nkind = \"webhook\"\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer t0ken\", X-Jail = \"{{jail}}\" }}\nbody = {{ text = \"Banned {{ip}} in {{jail}}\", comment = \"{{lines}}\", categories = \"18,22\", n = 3 }}\nretries = 2\nretry_delay = 1\n\n[action.hang]\nkind = \"webhook\"\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer s3cret\" }}\ntimeout = \"2s\"\nretries = 0\n",
        jail(auth, 3, "10m", &["flaky", "hang"]),
        url("/flaky"),
        url("/hang"),
    );
    let mut lab = Lab::new("hook", &config);
    let http = Server::start(
        lab.server().name(),
        "webhook-server.py",
        HTTP_PORT,
        lab.dir(),
    );
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
    attack_with_hostile_text(&daemon, auth, canary);
    // While the hanging hook holds its worker, bans keep coming at once.
    let started = Instant::now();
    append(
        auth,
        &(0..3)
            .map(|i| {
                sshd_line(
                    format!(
                        "Failed password for root from {FRIEND} port {} ssh2",
                        41000 + i
                    )
                    .as_bytes(),
                )
            })
            .collect::<Vec<_>>(),
    );
    daemon.wait_log(&format!("Banned {FRIEND} in jail ssh"), 1);
    let second_ban = started.elapsed();
    wait_for("the retried request", Duration::from_secs(20), || {
        http.log_text().matches("\"/flaky\"").count() >= 3
    });
    daemon.wait_log("action hang failed", 1);

    let requests: Vec<serde_json::Value> = http
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flaky: Vec<&serde_json::Value> =
        requests.iter().filter(|r| r["path"] == "/flaky").collect();
    // A 500 for the very first request (whichever ban's worker got there first: the two
    // bans' requests run on separate workers), then 200s, the retry included.
    assert_eq!(flaky[0]["status"], 500);
    assert!(flaky[1..].iter().all(|r| r["status"] == 200), "{flaky:#?}");
    let bodies: Vec<serde_json::Value> = flaky
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    let body = bodies
        .iter()
        .find(|b| b["text"] == format!("Banned {ATTACKER} in ssh"))
        .unwrap_or_else(|| panic!("no request for the attacker's ban: {bodies:#?}"));
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    assert_eq!(body["categories"], "18,22");
    assert_eq!(body["n"], 3);
    let comment = body["comment"].as_str().unwrap();
    assert!(
        comment.contains(&format!("$(touch {})", canary.display())),
        "{comment}"
    );
    assert!(
        comment.contains("\\x0dBcc: injected@banhound.test\\x00x"),
        "{comment}"
    );
    assert!(comment.len() < 12_000, "{}", comment.len());
    assert_eq!(flaky[0]["headers"]["Authorization"], "Bearer t0ken");
    assert_eq!(flaky[0]["headers"]["X-Jail"], "ssh");
    assert_eq!(flaky[0]["headers"]["Content-Type"], "application/json");
    // The hang: one failure logged for the episode, though both bans timed out.
    assert!(requests.iter().filter(|r| r["path"] == "/hang").count() >= 1);
    wait_for(
        "the second hanging request",
        Duration::from_secs(10),
        || http.log_text().matches("\"/hang\"").count() >= 2,
    );
    // While that request hangs, its curl's command line (readable by every local user)
    // holds neither the URL nor the token.
    let curls: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("curl "))
        .collect();
    assert!(!curls.is_empty(), "no curl running");
    for c in &curls {
        assert!(!c.contains("s3cret") && !c.contains("/hang"), "{c}");
    }
    // Past its time limit (2s, and curl's own end).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        daemon.log().matches("action hang failed").count(),
        1,
        "{}",
        daemon.log()
    );
    assert!(second_ban < Duration::from_secs(2), "{second_ban:?}");
    assert!(!canary.exists());

    // What status shows of it, to anyone: the failing episode with its error (not the URL,
    // which is often the secret), the retried hook working.
    let status = jail_status(&bus.address);
    let [flaky, hang] = [&status["actions"][0], &status["actions"][1]];
    assert_eq!(
        (&flaky["name"], &flaky["runs"], &flaky["failures"]),
        (&"flaky".into(), &2.into(), &0.into()),
        "{status}"
    );
    assert_eq!(flaky["error"], serde_json::Value::Null, "{status}");
    assert_eq!(
        (&hang["runs"], &hang["failures"], &hang["failing"]),
        (&2.into(), &2.into(), &true.into()),
        "{status}"
    );
    let error = hang["error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{status}");
    assert!(
        !error.contains("/hang") && !error.contains("127.0.0.1"),
        "{status}"
    );
    assert_eq!(hang["last_error"], hang["error"], "{status}");
    let out = private_bus::as_nobody()
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "status", "ssh"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("|- Action flaky (webhook): 2 run(s), 0 failed, 0 queued, 0 dropped; ok\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "`- Action hang (webhook): 2 run(s), 2 failed, 0 queued, 0 dropped; FAILING: "
        ),
        "{text}"
    );
    assert!(daemon.stop());
}

/// A temp fail2ban directory whose action.d holds Debian's installed files (linked, as they
/// are) and one of the test's own.
fn fail2ban_dir(custom: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let action_d = dir.path().join("action.d");
    std::fs::create_dir(&action_d).unwrap();
    for entry in std::fs::read_dir("/etc/fail2ban/action.d").unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::symlink(&path, action_d.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(action_d.join("custom-record.conf"), custom).unwrap();
    dir
}

#[test]
fn fail2ban_action_d_files_run_as_they_are_with_every_value_quoted() {
    let exim = Exim::new();
    let files = Scratch::new();
    let (auth, canary) = (&files.auth, &files.canary);
    let hosts_deny = files.path("hosts.deny");
    let record = files.path("record.txt");
    std::fs::write(&hosts_deny, "# test\n").unwrap();
    // Tags in every quoting context: unquoted, double, single, inside $(...).
    let f2b = fail2ban_dir(
        "[Definition]\n\
         actionstart = echo \"start <name> <logpath>\" >> <out>\n\
         actionban = printf 'ban|%%s|%%s|%%s\\n' <ip> \"<failures>\" '<matches>' >> <out>\n\
         \x20           echo \"m=$(printf '%%s' <ipmatches> | head -c 40)\" >> <out>\n\
         actionunban = echo \"unban <ip> <F-USER>\" >> <out>\n\
         [Init]\nout = /dev/null\n",
    );
    let config = format!(
        "[fail2ban]\ndir = \"{}\"\n\n{}",
        f2b.path().display(),
        jail(
            auth,
            3,
            "3s",
            &[
                &format!("fail2ban:hostsdeny[file={}]", hosts_deny.display()),
                &format!("fail2ban:custom-record[out={}]", record.display()),
                &format!(
                    "fail2ban:sendmail-whois-lines[dest=admin@banhound.test, sender=fail2ban@banhound.test, mailcmd=\"{}\"]",
                    exim.sendmail_to("admin@banhound.test")
                ),
            ],
        )
    );
    let mut lab = Lab::new("f2b", &config);
    let daemon = lab.start();
    wait_for("actionstart", Duration::from_secs(10), || {
        std::fs::read_to_string(&record)
            .is_ok_and(|t| t.contains(&format!("start ssh {}", auth.display())))
    });
    attack_with_hostile_text(&daemon, auth, canary);
    wait_for("hosts.deny", Duration::from_secs(10), || {
        std::fs::read_to_string(&hosts_deny)
            .unwrap()
            .contains(&format!("ALL: {ATTACKER}"))
    });
    // Each action has its own workers: the custom one may finish after hostsdeny.
    wait_for("the custom action's ban", Duration::from_secs(10), || {
        std::fs::read_to_string(&record).unwrap().contains("m=")
    });
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains(&format!("ban|{ATTACKER}|")), "{text}");
    assert!(
        text.contains(&format!("$(touch {})", canary.display())),
        "{text}"
    );
    assert!(text.contains("`touch"), "{text}");
    assert!(text.contains("m=Failed password"), "{text}");
    // The sendmail-whois-lines mail, from Debian's file, delivered by the real MTA.
    wait_for("the fail2ban ban mail", Duration::from_secs(20), || {
        exim.messages().iter().any(|m| m.contains("ssh: banned"))
    });
    let messages = exim.messages();
    // actionstart of sendmail-common mailed first.
    assert!(
        messages[0].contains("Subject: [Fail2Ban] ssh: started on"),
        "{}",
        messages[0]
    );
    let ban_mail = messages.iter().find(|m| m.contains("ssh: banned")).unwrap();
    let (header, body) = split_message(ban_mail);
    assert!(
        header.contains(&format!("Subject: [Fail2Ban] ssh: banned {ATTACKER} from")),
        "{header}"
    );
    assert!(
        header
            .lines()
            .any(|l| l == "Envelope-to: admin@banhound.test"),
        "{header}"
    );
    assert!(
        body.contains(&format!(
            "The IP {ATTACKER} has just been banned by Fail2Ban after"
        )),
        "{body}"
    );
    // Its _grep_logs ran on the jail's log file (`<logpath>`, see actionstart's record),
    // which grep finds binary (the NUL of a hostile line) and so prints no line of.
    assert!(
        body.contains(&format!("Lines containing failures of {ATTACKER}")),
        "{body}"
    );

    // The unban: hostsdeny's sed removes the line, the custom action records it.
    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail ssh"), 1);
    wait_for("the unban actions", Duration::from_secs(10), || {
        std::fs::read_to_string(&record)
            .unwrap()
            .contains(&format!("unban {ATTACKER}"))
            && !std::fs::read_to_string(&hosts_deny)
                .unwrap()
                .contains(ATTACKER)
    });
    assert_eq!(std::fs::read_to_string(&hosts_deny).unwrap(), "# test\n");
    assert!(!canary.exists(), "text from the log was run");
    assert!(
        !daemon.log().contains("(further failures are not logged"),
        "{}",
        daemon.log()
    );
    assert!(daemon.stop());
}

/// The bans of a flood: `n` addresses from 10.1.0.0, one failure each (maxretry 1).
fn flood(auth: &Path, n: u32) {
    let lines: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let addr = std::net::Ipv4Addr::from(0x0a01_0000 + i);
            sshd_line(format!("Failed password for root from {addr} port 40000 ssh2").as_bytes())
        })
        .collect();
    append(auth, &lines);
}

#[test]
fn a_flood_runs_at_most_rate_limit_actions_and_mails_one_digest() {
    const BANS: u32 = 500;
    let exim = Exim::new();
    let files = Scratch::new();
    let (auth, commands) = (&files.auth, &files.commands);
    let config = flood_config(&exim, &files, [3, 5], "3s");
    let mut lab = Lab::new("flood", &config);
    let daemon = lab.start();
    flood(auth, BANS);
    daemon.wait_log("Banned 10.1.1.243 in jail ssh", 1);
    let started = Instant::now();
    // Each ban is one alert mail (at most 3 per window) or a line of a digest; each is one
    // command run (at most 5 per window) or counted in a drop report. A slow machine may
    // spread the flood over more than one window.
    let alerts = |messages: &[String]| {
        messages
            .iter()
            .filter(|m| m.contains("ssh: banned"))
            .count()
    };
    let digested = |messages: &[String]| -> usize {
        messages
            .iter()
            .filter(|m| m.contains("more ban(s) on"))
            .map(|m| {
                split_message(m)
                    .1
                    .lines()
                    .filter(|l| l.starts_with("ssh 10.1."))
                    .count()
            })
            .sum()
    };
    wait_for(
        "alerts and digests for every ban",
        Duration::from_secs(30),
        || {
            let messages = exim.messages();
            alerts(&messages) + digested(&messages) == BANS as usize
        },
    );
    let dropped = || -> usize {
        daemon
            .log()
            .lines()
            .filter_map(|l| {
                l.split("action note: ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    wait_for(
        "every command run or reported",
        Duration::from_secs(30),
        || read_json_lines(commands).len() + dropped() == BANS as usize,
    );
    let windows = (started.elapsed().as_secs() / 3 + 2) as usize;
    let messages = exim.messages();
    assert!(alerts(&messages) <= 3 * windows, "{}", alerts(&messages));
    assert!(digested(&messages) >= BANS as usize - 3 * windows);
    assert!(read_json_lines(commands).len() <= 5 * windows);
    assert!(daemon.stop());
}

/// A temp fail2ban directory: Debian's installed files linked as they are, a `jail.local` and
/// `action.d` files of the test's own.
fn fail2ban_tree(jail_local: &str, own_actions: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("/etc/fail2ban").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "action.d" && name != "jail.d" {
            std::os::unix::fs::symlink(&path, dir.path().join(name)).unwrap();
        }
    }
    let action_d = dir.path().join("action.d");
    std::fs::create_dir(&action_d).unwrap();
    for entry in std::fs::read_dir("/etc/fail2ban/action.d").unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::symlink(&path, action_d.join(path.file_name().unwrap())).unwrap();
    }
    for (name, text) in own_actions {
        std::fs::write(action_d.join(format!("{name}.conf")), text).unwrap();
    }
    std::fs::write(dir.path().join("jail.local"), jail_local).unwrap();
    dir
}

fn banhound(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The guides' setups: Linode's `[DEFAULT] action = %(action_mwl)s` with `destemail`, the
/// Gentoo wiki's `mail-whois[name=…, dest=…]` beside the firewall action, and a custom
/// action.d script; imported and then loaded by the daemon's own loader.
#[test]
fn the_guides_mail_and_custom_actions_survive_import_fail2ban() {
    let f2b = fail2ban_tree(
        "[DEFAULT]\ndestemail = admin@banhound.test\nsender = fail2ban@banhound.test\nsendername = Fail2Ban alerts\naction = %(action_mwl)s\n\n\
         [sshd]\nenabled = true\nbackend = systemd\n\n\
         [vsftpd]\nenabled = true\naction = iptables[name=FTP, port=ftp, protocol=tcp]\n         mail-whois[name=FTP, dest=root@banhound.test]\n\n\
         [dropbear]\nenabled = true\naction = %(action_)s\n         my-notify[topic=bans]\n         missing-action[x=1]\n",
        &[(
            "my-notify",
            "[Definition]\nactionban = echo \"<topic> <ip>\" >> /tmp/never-run\n[Init]\ntopic = none\n",
        )],
    );
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("conf");
    let (ok, report) = banhound(&[
        "import-fail2ban",
        f2b.path().to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(ok, "{report}");
    let written = std::fs::read_to_string(target.join("jail.d/fail2ban-import.toml")).unwrap();
    let sshd = written
        .split("[jail.")
        .find(|j| j.starts_with("sshd]"))
        .unwrap();
    assert!(
        sshd.contains("actions = ['fail2ban:sendmail-whois-lines["),
        "{sshd}"
    );
    assert!(sshd.contains("dest=\"admin@banhound.test\""), "{sshd}");
    assert!(sshd.contains("sender=\"fail2ban@banhound.test\""), "{sshd}");
    assert!(!sshd.contains("iptables"), "{sshd}");
    let vsftpd = written
        .split("[jail.")
        .find(|j| j.starts_with("vsftpd]"))
        .unwrap();
    assert!(
        vsftpd.contains("fail2ban:mail-whois[name=FTP, dest=root@banhound.test]"),
        "{vsftpd}"
    );
    let dropbear = written
        .split("[jail.")
        .find(|j| j.starts_with("dropbear]"))
        .unwrap();
    assert!(
        dropbear.contains("fail2ban:my-notify[topic=bans]"),
        "{dropbear}"
    );
    // Only what cannot be mapped is reported: the action without a file.
    assert!(
        report.contains("action missing-action[x=1]: no action.d/missing-action.conf"),
        "{report}"
    );
    assert!(!report.contains("destemail is not imported"), "{report}");
    assert!(!report.contains("only the banaction"), "{report}");
    assert!(
        report.contains("The written configuration loads"),
        "{report}"
    );
    let none = out.path().join("no-defaults");
    let (ok, check) = banhound(&[
        "--config-dir",
        target.to_str().unwrap(),
        "--defaults-dir",
        none.to_str().unwrap(),
        "check-config",
    ]);
    assert!(ok, "{check}");
}

/// Milliseconds from writing one failure (maxretry 1) to the daemon's ban line, for `n`
/// addresses one after the other from 10.2.0.0; sorted.
fn ban_latencies(daemon: &daemon_lab::Daemon, auth: &Path, n: u32) -> Vec<u128> {
    let mut latencies = Vec::new();
    for i in 0..n {
        let addr = std::net::Ipv4Addr::from(0x0a02_0000 + i);
        let started = Instant::now();
        append(
            auth,
            &[sshd_line(
                format!("Failed password for root from {addr} port 40000 ssh2").as_bytes(),
            )],
        );
        daemon.wait_log(&format!("Banned {addr} in jail ssh"), 1);
        latencies.push(started.elapsed().as_millis());
    }
    latencies.sort_unstable();
    latencies
}

/// The figures of docs/actions.md: a flood of bans through a rate-limited command and mail
/// action (how many processes ran, what was dropped, how long the bans took), and ban latency
/// with and without a hanging webhook. 5,000 bans by default; `BANHOUND_FULL_FLOOD=1`: 60,000.
#[test]
fn flood_and_hanging_action_figures() {
    let bans: u32 = if std::env::var_os("BANHOUND_FULL_FLOOD").is_some_and(|v| v == "1") {
        60_000
    } else {
        5_000
    };
    let exim = Exim::new();
    let files = Scratch::new();
    let (auth, commands) = (&files.auth, &files.commands);
    let config = flood_config(&exim, &files, [10, 10], "10s");
    let mut lab = Lab::new("figs", &config);
    lab.set_daemon_env("BANHOUND_LOG", "info");
    let daemon = lab.start();
    let started = Instant::now();
    flood(auth, bans);
    let last = std::net::Ipv4Addr::from(0x0a01_0000 + bans - 1);
    wait_for("the flood's bans", Duration::from_secs(600), || {
        daemon.log().contains(&format!("Banned {last} in jail ssh"))
    });
    let flood_time = started.elapsed();
    wait_for("the digest", Duration::from_secs(60), || {
        exim.messages().iter().any(|m| m.contains("more ban(s) on"))
    });
    let dropped_reported = || -> u64 {
        daemon
            .log()
            .lines()
            .filter_map(|l| {
                l.split("action note: ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    // Every ban is either run (admitted) or reported dropped at the end of its window.
    wait_for("every ban run or reported", Duration::from_secs(60), || {
        read_json_lines(commands).len() as u64 + dropped_reported() == u64::from(bans)
    });
    let windows = started.elapsed().as_secs() / 10 + 1;
    let runs = read_json_lines(commands).len() as u64;
    let mails = exim.messages().len();
    let dropped = dropped_reported();
    eprintln!(
        "FIGURE flood: {bans} bans in {:.1}s; command action ran {runs} time(s) ({windows} window(s) of 10s, limit 10), {dropped} reported dropped; {mails} mail(s) incl. digests",
        flood_time.as_secs_f64()
    );
    assert!(runs <= 10 * windows, "{runs} runs in {windows} windows");
    assert!(daemon.stop());

    // The same flood without actions, for comparison.
    let auth = files.path("baseline.log");
    std::fs::write(&auth, "").unwrap();
    let mut lab = Lab::new(
        "figb",
        &format!("{}\nmax_tracked = 100000\n", jail(&auth, 1, "1h", &[])),
    );
    lab.set_daemon_env("BANHOUND_LOG", "info");
    let daemon = lab.start();
    let started = Instant::now();
    flood(&auth, bans);
    wait_for(
        "the baseline flood's bans",
        Duration::from_secs(600),
        || daemon.log().contains(&format!("Banned {last} in jail ssh")),
    );
    eprintln!(
        "FIGURE flood without actions: {bans} bans in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(daemon.stop());

    // Ban latency without and with a webhook that never answers (timeout 30s).
    let mut figures = Vec::new();
    for hanging in [false, true] {
        let auth = files.path(&format!("latency-{hanging}.log"));
        std::fs::write(&auth, "").unwrap();
        let actions: &[&str] = if hanging { &["hang"] } else { &[] };
        let config = format!(
            "{}\n[action.hang]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{HTTP_PORT}/hang\"\nretries = 0\nrate_limit = 0\n",
            jail(&auth, 1, "1h", actions)
        );
        let mut lab = Lab::new(if hanging { "lath" } else { "latn" }, &config);
        let _http = Server::start(
            lab.server().name(),
            "webhook-server.py",
            HTTP_PORT,
            lab.dir(),
        );
        let bus = DbusDaemon::start(BusPolicy::Shipped);
        let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
        let latencies = ban_latencies(&daemon, &auth, 40);
        let median = latencies[latencies.len() / 2];
        let max = latencies[latencies.len() - 1];
        let with = if hanging { "with" } else { "without" };
        eprintln!(
            "FIGURE ban latency {with} a hanging webhook: median {median} ms, max {max} ms (40 bans, log polled every 20 ms)"
        );
        // The bus while the webhook's workers hang (and its queue holds the rest).
        let calls = bus_latencies(&bus.address, 30);
        let (call_median, call_max) = (calls[calls.len() / 2], calls[calls.len() - 1]);
        eprintln!(
            "FIGURE D-Bus GetStatus {with} a hanging webhook: median {call_median} ms, max {call_max} ms (30 busctl calls, process start included)"
        );
        figures.push((median, call_median));
        if hanging {
            let status = jail_status(&bus.address);
            let hang = &status["actions"][0];
            assert_eq!(hang["name"], "hang", "{status}");
            assert_eq!(hang["kind"], "webhook", "{status}");
            // 40 events: RUNNING_PER_ACTION (4) running, the rest queued or done (each run
            // ends by the 30 s timeout, a failure).
            let (runs, queued) = (
                hang["runs"].as_u64().unwrap(),
                hang["queued"].as_u64().unwrap(),
            );
            assert_eq!(runs + queued, 36, "{status}");
            assert_eq!(hang["failures"].as_u64(), Some(runs), "{status}");
            assert_eq!(hang["dropped"], 0, "{status}");
        }
        assert!(daemon.stop());
    }
    // Generous: the shared 2-core machine is noisy; a blocked owner task would be seconds.
    assert!(figures[1].0 < figures[0].0 + 500, "{figures:?}");
    assert!(figures[1].1 < figures[0].1 + 500, "{figures:?}");
}

/// `n` calls of Manager.GetStatus with busctl, each timed (sorted, in ms).
fn bus_latencies(address: &str, n: usize) -> Vec<u128> {
    let mut latencies: Vec<u128> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let out = std::process::Command::new("busctl")
                .arg(format!("--address={address}"))
                .args([
                    "call",
                    "org.banhound.Banhound1",
                    "/org/banhound/Banhound1",
                    "org.banhound.Banhound1.Manager",
                    "GetStatus",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            started.elapsed().as_millis()
        })
        .collect();
    latencies.sort_unstable();
    latencies
}

/// `banhound status ssh --json` through the bus at `address`.
fn jail_status(address: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", address, "status", "ssh", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// fail2ban's life cycle of an action, observed by its effects: `actionstart` before the
/// first ban, `actioncheck` before each (a failed check restores the action with
/// `actionstop` + `actionstart`, then the ban runs), `<F-USER>` as text, nothing on a reload
/// that changes nothing, `actionstop` at shutdown and when a reload drops the action, and the
/// restored bans given again at start (`<restored>` 1) to an action without `norestored`:
/// Debian's `dummy`, whose `actionstop` deletes its file, has its lines back.
#[test]
fn fail2ban_actions_start_check_stop_and_get_restored_bans_as_fail2ban_runs_them() {
    let files = Scratch::new();
    let (auth, canary) = (&files.auth, &files.canary);
    let (record, ready, dummy) = (
        files.path("record.txt"),
        files.path("ready"),
        files.path("dummy.txt"),
    );
    let f2b = fail2ban_dir(
        "[Definition]\n\
         actionstart = touch <ready>; echo start >> <out>\n\
         actionstop = rm -f <ready>; echo stop >> <out>\n\
         actioncheck = test -e <ready>\n\
         actionban = echo \"ban <ip> user=<F-USER> restored=<restored>\" >> <out>\n\
         actionunban = echo \"unban <ip>\" >> <out>\n\
         [Init]\nout = /dev/null\nready = /dev/null\n",
    );
    let config = |with_custom: bool| {
        let custom = format!(
            "fail2ban:custom-record[out={}, ready={}]",
            record.display(),
            ready.display()
        );
        let dummy = format!("fail2ban:dummy[target={}]", dummy.display());
        let actions: Vec<&str> = if with_custom {
            vec![&custom, &dummy]
        } else {
            vec![&dummy]
        };
        format!(
            "[fail2ban]\ndir = \"{}\"\n\n{}",
            f2b.path().display(),
            jail(auth, 3, "1h", &actions)
        )
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let mut lab = Lab::new("f2bl", &config(true));
    let daemon = lab.start();
    wait_for("actionstart", Duration::from_secs(10), || {
        read(&record) == "start\n"
    });
    attack_with_hostile_text(&daemon, auth, canary);
    wait_for("the first ban", Duration::from_secs(10), || {
        read(&record).lines().count() == 2
    });
    let first = read(&record).lines().nth(1).unwrap().to_string();
    // The user of the failure that made the ban (the third), as text, control bytes shown.
    assert_eq!(
        first,
        format!(
            "ban {ATTACKER} user=`touch {}`;rm -rf /;\\x0dBcc: injected@banhound.test\\x00x restored=0",
            canary.display()
        )
    );

    // Someone removes what actionstart set up: the check before the next ban fails.
    std::fs::remove_file(&ready).unwrap();
    append(
        auth,
        &(0..3)
            .map(|i| {
                sshd_line(
                    format!(
                        "Failed password for root from {FRIEND} port {} ssh2",
                        42000 + i
                    )
                    .as_bytes(),
                )
            })
            .collect::<Vec<_>>(),
    );
    wait_for("the restored action's ban", Duration::from_secs(10), || {
        read(&record).lines().count() == 5
    });
    let expected = format!("start\n{first}\nstop\nstart\nban {FRIEND} user=root restored=0\n");
    assert_eq!(read(&record), expected);
    assert!(daemon
        .log()
        .contains("actioncheck failed, restored the action"));

    // A reload that changes nothing leaves the actions running.
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&record), expected);
    wait_for("dummy's lines", Duration::from_secs(10), || {
        read(&dummy) == format!("123\n+{ATTACKER}\n+{FRIEND}\n")
    });

    // Shutdown: actionstop of both (dummy deletes its file).
    assert!(daemon.stop());
    assert_eq!(read(&record), format!("{expected}stop\n"));
    assert!(!dummy.exists());

    // Restart: started again, and the restored bans given to them (not to a mail action:
    // Debian's sendmail-* set norestored, tests above).
    let daemon = lab.start();
    wait_for("the restored bans", Duration::from_secs(10), || {
        read(&record).lines().count() == 9 && read(&dummy).lines().count() == 3
    });
    let restarted: Vec<String> = read(&record).lines().skip(6).map(String::from).collect();
    assert_eq!(restarted[0], "start");
    let mut restored = restarted[1..].to_vec();
    restored.sort();
    assert_eq!(
        restored,
        [
            format!("ban {FRIEND} user= restored=1"),
            format!("ban {ATTACKER} user= restored=1"),
        ]
    );
    let dummy_lines = read(&dummy);
    assert!(dummy_lines.starts_with("123\n"), "{dummy_lines}");
    assert!(
        dummy_lines.contains(&format!("+{ATTACKER}\n")),
        "{dummy_lines}"
    );

    // A reload without the custom action stops it; dummy, unchanged, keeps running.
    lab.write_config(&config(false));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    wait_for("the dropped action's stop", Duration::from_secs(10), || {
        read(&record).ends_with("restored=1\nstop\n")
    });
    assert_eq!(read(&dummy), dummy_lines);
    assert!(!canary.exists(), "text from the log was run");
    assert!(daemon.stop());
}
