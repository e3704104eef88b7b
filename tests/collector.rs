//! Fleet-wide detection over systemd-journal-remote, with the real parts: a collector network
//! namespace runs `systemd-journal-remote --listen-http` and `banhound daemon` (nftables in
//! that namespace, the journal directory from `[daemon] journal_directory`); each "host" is a
//! network namespace with its own journald namespace (in its own UTS namespace, so its
//! entries carry its own `_HOSTNAME`) and `systemd-journal-upload --follow` sending it to the
//! collector over a veth link. A helper process named `sshd` logs to each host's journald.
//!
//! ```text
//!   host-a 10.231.0.2 ── 10.231.0.1 ┐
//!   host-b 10.231.1.2 ── 10.231.1.1 ├ collector (journal-remote, banhound) ── attacker, friend
//!   host-c 10.231.2.2 ── 10.231.2.1 ┘
//! ```
//!
//! journal-remote creates one file per uploading host when that host first connects, after
//! banhound started on the empty directory: the bans show that new files are followed.
//! Every process is stopped by pid and every namespace deleted in `Drop`, also when a test
//! fails. Needs root, nft, ip, unshare, python3, /lib/systemd/systemd-journald and the
//! systemd-journal-remote package. `BANHOUND_FULL_COLLECTOR=1` takes more latency samples.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;

use daemon_lab::{sshd_config, Daemon, Lab, ATTACKER, FRIEND, SERVER_ATTACKER_SIDE};
use netlab::{wait_for, Netns};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const JOURNAL_UPLOAD: &str = "/lib/systemd/systemd-journal-upload";
/// journal-remote's default HTTP port.
const REMOTE_PORT: u16 = 19532;

/// Kills a child by pid and reaps it, on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: signals the child we spawned, by its pid.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

/// `ip netns exec NS PROGRAM ARGS`, its output in `log` (`ip` execs the program: the pid is
/// the program's).
fn spawn_in(ns: &Netns, program: &str, args: &[&str], log: &Path) -> Reaped {
    Reaped(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// systemd-journal-remote in the collector namespace, writing one journal file per
/// uploading host into `output`.
fn start_remote(collector: &Netns, output: &Path, log: &Path) -> Reaped {
    std::fs::create_dir_all(output).unwrap();
    let remote = spawn_in(
        collector,
        JOURNAL_REMOTE,
        &[
            &format!("--listen-http=0.0.0.0:{REMOTE_PORT}"),
            &format!("--output={}/", output.display()),
        ],
        log,
    );
    wait_for("journal-remote to listen", Duration::from_secs(10), || {
        !collector
            .exec(&["ss", "-Hltn", &format!("sport = :{REMOTE_PORT}")])
            .trim()
            .is_empty()
    });
    remote
}

/// One host of the fleet: its namespace linked to the collector, its journald (with its own
/// host name), its uploader and its `sshd`.
struct Host {
    // Drop stops the writer and journald (then removes its directories); the fields then
    // stop the uploader and delete the namespace.
    sshd: Option<(Reaped, ChildStdin)>,
    _upload: Reaped,
    journald: Reaped,
    _ns: Netns,
    dirs: [PathBuf; 2],
}

impl Host {
    /// Host number `index` named `hostname`, uploading to the collector.
    /// `tag` must be unique among the collectors alive at once in this test binary.
    fn start(lab: &Lab, tag: &str, index: u8, hostname: &str) -> Host {
        let collector = lab.server();
        let tag = format!("{tag}{}h{index}", std::process::id());
        let ns = Netns::new(format!("bhcol{tag}"));
        let (collector_side, host_side) =
            (format!("10.231.{index}.1"), format!("10.231.{index}.2"));
        collector.veth(
            (&format!("vh{index}"), &[&format!("{collector_side}/24")]),
            &ns,
            ("vc", &[&format!("{host_side}/24")]),
        );
        let journal_ns = format!("bhcol{tag}");
        let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap();
        let dirs = [
            PathBuf::from(format!("/run/systemd/journal.{journal_ns}")),
            PathBuf::from(format!(
                "/var/log/journal/{}.{journal_ns}",
                machine_id.trim()
            )),
        ];
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        // journald stamps _HOSTNAME with its own host name: a UTS namespace gives it one.
        let journald = Reaped(
            Command::new("unshare")
                .args([
                    "--uts",
                    "sh",
                    "-c",
                    "hostname \"$1\" && exec \"$2\" \"$3\"",
                    "sh",
                ])
                .args([hostname, JOURNALD, &journal_ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for("a host's journald", Duration::from_secs(10), || {
            dirs[0].join("socket").exists() && dirs[1].join("system.journal").exists()
        });
        let upload = spawn_in(
            &ns,
            JOURNAL_UPLOAD,
            &[
                &format!("--url=http://{collector_side}:{REMOTE_PORT}"),
                &format!("--directory={}", dirs[1].display()),
                "--follow",
                &format!(
                    "--save-state={}",
                    lab.dir().join(format!("upload-{index}.state")).display()
                ),
            ],
            &lab.dir().join(format!("upload-{index}.log")),
        );
        let mut sshd = Reaped(
            Command::new("python3")
                .arg("-c")
                .arg(SSHD)
                .arg(dirs[0].join("socket"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdin = sshd.0.stdin.take().unwrap();
        Host {
            sshd: Some((sshd, stdin)),
            _upload: upload,
            journald,
            _ns: ns,
            dirs,
        }
    }

    /// Logs `message` as this host's sshd (sent at once; journald stores it, the uploader
    /// sends it on).
    fn log(&mut self, message: &str) {
        let (_, stdin) = self.sshd.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// Logs `n` failed logins from `addr`.
    fn fail_logins(&mut self, addr: &str, n: usize) {
        for i in 0..n {
            self.log(&format!(
                "Failed password for invalid user u{i} from {addr} port {} ssh2",
                41000 + i
            ));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some((mut sshd, stdin)) = self.sshd.take() {
            drop(stdin);
            let _ = sshd.0.wait();
        }
        // SAFETY: signals the child we spawned, by its pid.
        unsafe { libc::kill(self.journald.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.journald.0.wait();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A process named `sshd` that sends each line of its standard input at once as one journal
/// entry (journald's native protocol), and lives until its input ends, so journald finds its
/// `_COMM` (read from /proc when the datagram is processed).
const SSHD: &str = r#"
import socket, sys
with open("/proc/self/comm", "w") as comm:
    comm.write("sshd")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin:
    message = line.rstrip("\n").encode()
    sock.sendto(b"SYSLOG_IDENTIFIER=sshd\nPRIORITY=6\nMESSAGE=" + message + b"\n", sys.argv[1])
"#;

/// The collector: the lab's server namespace runs journal-remote and banhound, reading the
/// journal directory named in its configuration.
struct Collector {
    // Drop order: the daemon, the hosts, journal-remote, then the lab.
    daemon: Option<Daemon>,
    hosts: Vec<Host>,
    _remote: Reaped,
    output: PathBuf,
    lab: Lab,
}

impl Collector {
    fn start(tag: &str, hostnames: &[&str], maxretry: u32) -> Collector {
        let mut lab = Lab::new(tag, "");
        let output = lab.dir().join("remote");
        lab.write_config(&format!(
            "[daemon]\njournal_directory = {:?}\n\n{}",
            output.display().to_string(),
            sshd_config(maxretry, "10m")
        ));
        let remote = start_remote(lab.server(), &output, &lab.dir().join("remote.log"));
        lab.read_configured_journal();
        let daemon = lab.start();
        // Nothing has been uploaded yet: every file is created while banhound follows.
        assert_eq!(journal_files(&output), Vec::<String>::new());
        let hosts = hostnames
            .iter()
            .enumerate()
            .map(|(i, name)| Host::start(&lab, tag, i as u8, name))
            .collect();
        Collector {
            daemon: Some(daemon),
            hosts,
            _remote: remote,
            output,
            lab,
        }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }
}

fn journal_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failures_spread_over_two_hosts_are_banned_on_the_collector() {
    let mut c = Collector::start("spread", &["host-a", "host-b", "host-c"], 5);
    let daemon_log = |c: &Collector| c.daemon().log();
    // Two failures on one host alone stay below maxretry.
    c.hosts[2].fail_logins(FRIEND, 2);
    c.daemon()
        .wait_log(&format!("Found {FRIEND} in jail sshd (2 failure(s))"), 1);
    // Three on A: counted, not banned.
    c.hosts[0].fail_logins(ATTACKER, 3);
    c.daemon()
        .wait_log(&format!("Found {ATTACKER} in jail sshd (3 failure(s))"), 1);
    assert!(!c.lab.is_banned(ATTACKER));
    // Three more on B: the fifth of the fleet bans; the sixth finds it banned.
    c.hosts[1].fail_logins(ATTACKER, 3);
    c.daemon().wait_log(
        &format!(
            "Banned {ATTACKER} in jail sshd for 10m after 5 failures (from hosts host-a, host-b)"
        ),
        1,
    );
    wait_for("the ban in the kernel", Duration::from_secs(5), || {
        c.lab.is_banned(ATTACKER)
    });
    assert!(!c.lab.connects(c.lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(c
        .lab
        .connects(c.lab.friend(), daemon_lab::SERVER_FRIEND_SIDE));
    assert!(!c.lab.is_banned(FRIEND), "{}", daemon_log(&c));
    assert_eq!(daemon_log(&c).matches("Banned ").count(), 1);
    // One file per uploading host, each created after banhound started.
    assert_eq!(
        journal_files(&c.output),
        [
            "remote-10.231.0.2.journal",
            "remote-10.231.1.2.journal",
            "remote-10.231.2.2.journal"
        ]
    );
    assert!(c.daemon.take().unwrap().stop());
}

/// A host that forges `_HOSTNAME` (uploading a journal it wrote itself) changes only the label
/// the ban shows: the address comes from the message, and the forged name is shown escaped.
#[test]
fn a_forged_hostname_is_only_a_label() {
    let mut c = Collector::start("forge", &["host-a"], 5);
    c.hosts[0].fail_logins(ATTACKER, 3);
    c.daemon()
        .wait_log(&format!("Found {ATTACKER} in jail sshd (3 failure(s))"), 1);
    // The forger: its own journal file, as journal-remote writes one, uploaded once.
    let forged_host = format!("host-a sshd[7]: Failed password for root from {FRIEND}");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let mut export = String::new();
    for i in 0..2u128 {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
             _BOOT_ID=5a1d8c3e9f0b4e6d8a7c2b1e0f9d8c7b\n_HOSTNAME={forged_host}\n_COMM=sshd\n\
             _PID=7\nSYSLOG_IDENTIFIER=sshd\n\
             MESSAGE=Failed password for root from {ATTACKER} port {} ssh2\n\n",
            now_us + i,
            1_000_000 + i,
            42000 + i
        ));
    }
    let forged_dir = c.lab.dir().join("forged");
    std::fs::create_dir_all(&forged_dir).unwrap();
    let forged_file = forged_dir.join("forged.journal");
    let mut make = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(&forged_file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    make.stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(make.wait().unwrap().success());
    let forger = Netns::new(format!("bhforge{}", std::process::id()));
    c.lab.server().veth(
        ("vforge", &["10.231.9.1/24"]),
        &forger,
        ("vc", &["10.231.9.2/24"]),
    );
    let status = Command::new("ip")
        .args(["netns", "exec", forger.name(), JOURNAL_UPLOAD])
        .arg(format!("--url=http://10.231.9.1:{REMOTE_PORT}"))
        .arg(format!("--file={}", forged_file.display()))
        // Uploads what the file holds and exits (it follows by default).
        .arg("--follow=no")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    c.daemon().wait_log(
        &format!(
            "Banned {ATTACKER} in jail sshd for 10m after 5 failures (from hosts host-a, \
             host-a\\x20sshd\\x5b7\\x5d\\x3a\\x20Failed\\x20password\\x20for\\x20root\\x20from\\x20{FRIEND})"
        ),
        1,
    );
    wait_for("the ban in the kernel", Duration::from_secs(5), || {
        c.lab.is_banned(ATTACKER)
    });
    assert!(!c.lab.is_banned(FRIEND));
    assert!(c
        .lab
        .connects(c.lab.friend(), daemon_lab::SERVER_FRIEND_SIDE));
    assert!(c.daemon.take().unwrap().stop());
    drop(forger);
}

/// End-to-end latency: an sshd line written on host B (the fifth failure of an address, four
/// logged on host A before) to the ban decided on the collector (its line in banhound's log,
/// polled every millisecond). Printed; docs/fleet-detection.md has the figures.
#[test]
fn latency_from_a_host_s_line_to_the_collector_s_ban() {
    let samples = if std::env::var_os("BANHOUND_FULL_COLLECTOR").is_some() {
        50
    } else {
        5
    };
    let mut c = Collector::start("latency", &["host-a", "host-b"], 5);
    let mut latencies = Vec::new();
    for k in 0..samples {
        let addr = format!("192.0.2.{}", 10 + k);
        c.hosts[0].fail_logins(&addr, 4);
        c.daemon()
            .wait_log(&format!("Found {addr} in jail sshd (4 failure(s))"), 1);
        let needle = format!("Banned {addr} in jail sshd");
        let written = Instant::now();
        c.hosts[1].log(&format!(
            "Failed password for root from {addr} port 43000 ssh2"
        ));
        let deadline = written + Duration::from_secs(15);
        while !c.daemon().log().contains(&needle) {
            assert!(Instant::now() < deadline, "no ban of {addr}");
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(written.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "collector latency over {samples} bans: min {:.1} ms, p50 {:.1} ms, max {:.1} ms",
        ms(latencies[0]),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );
    assert!(c.daemon.take().unwrap().stop());
}
