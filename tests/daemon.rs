//! End-to-end tests of `banhound daemon` with real parts: the binary runs inside a network
//! namespace with its own nftables, reads a standalone journald namespace, and is fed by a
//! helper process named `sshd` (so `_COMM=sshd`, a trusted field, matches the shipped sshd
//! filter). What is checked is what the kernel holds (`nft -j list set`) and what packets do.
//!
//! The control interface is tested the same way: a private dbus-daemon with the shipped
//! policy (tests/support/private_bus.rs, shared with tests/dbus), the daemon serving on it
//! from inside its namespace, and the `banhound` CLI as the client, as root and as `nobody`.
//!
//! Every namespace, journald, bus and daemon is removed by pid in `Drop`, also when a test
//! fails. Needs root, nft, ip, python3, dbus-daemon, setpriv and
//! /lib/systemd/systemd-journald.

#[path = "support/private_bus.rs"]
mod private_bus;

use private_bus::{as_nobody, BusPolicy, DbusDaemon, Running};

use banhound::daemon::state::StateDb;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const PORT: u16 = 2222;
const SERVER_ATTACKER_SIDE: &str = "203.0.113.1";
const SERVER_FRIEND_SIDE: &str = "198.51.100.1";
const ATTACKER: &str = "203.0.113.66";
const FRIEND: &str = "198.51.100.7";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(format!("/run/netns/{ns}")).unwrap();
                // SAFETY: a valid namespace fd; setns changes only this thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {ns}");
                f()
            })
            .join()
            .unwrap()
    })
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `journalctl --namespace=NAME ARGS` as text.
fn journal_text(namespace: &str, args: &[&str]) -> String {
    let out = Command::new("journalctl")
        .arg(format!("--namespace={namespace}"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.0];
        all.extend_from_slice(args);
        sh(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A standalone journald namespace, stopped by pid and its directories removed on drop.
struct Journald {
    name: String,
    child: Child,
    dirs: [PathBuf; 2],
}

impl Journald {
    fn start(name: String) -> Journald {
        let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap();
        let dirs = [
            PathBuf::from(format!("/run/systemd/journal.{name}")),
            PathBuf::from(format!("/var/log/journal/{}.{name}", machine_id.trim())),
        ];
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        let child = Command::new(JOURNALD)
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let journald = Journald { name, child, dirs };
        wait_for("journald", Duration::from_secs(10), || {
            journald.socket().exists() && journald.dirs[1].join("system.journal").exists()
        });
        journald
    }

    fn socket(&self) -> PathBuf {
        self.dirs[0].join("socket")
    }

    /// Logs these messages as a process named sshd, and waits until journald stored them.
    fn sshd(&self, messages: &[String]) {
        let before = self.count_sshd();
        let status = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-sshd.py"))
            .arg(self.socket())
            .args(messages)
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(
            "journald to store the entries",
            Duration::from_secs(10),
            || self.count_sshd() >= before + messages.len(),
        );
    }

    fn count_sshd(&self) -> usize {
        journal_text(&self.name, &["_COMM=sshd", "-o", "cat"])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        // SAFETY: signals the child we spawned, by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A TCP listener in the server namespace answering every connection with "hi".
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(ns: &str) -> Listener {
        let listener = in_netns(ns, || TcpListener::bind(("0.0.0.0", PORT)).unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        use std::io::Write;
                        let _ = stream.write_all(b"hi");
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Listener {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A NOTIFY_SOCKET read by a thread, stopped on drop.
struct NotifyReader {
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifyReader {
    fn start(path: &Path) -> NotifyReader {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, flag) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::SeqCst) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let message = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                    sink.lock().unwrap().push(message);
                }
            }
        });
        NotifyReader {
            received,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NotifyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running `banhound daemon` (inside the server namespace), stopped by pid on drop.
struct Daemon {
    child: Child,
    log: DaemonLog,
}

/// Where the daemon's log lines are read back from.
enum DaemonLog {
    /// Its stderr, in this file.
    File(PathBuf),
    /// The journal namespace it logged to (`SYSLOG_IDENTIFIER=banhound`).
    Journal(String),
}

impl Daemon {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn log(&self) -> String {
        match &self.log {
            DaemonLog::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
            DaemonLog::Journal(namespace) => {
                journal_text(namespace, &["SYSLOG_IDENTIFIER=banhound", "-o", "cat"])
            }
        }
    }

    fn wait_log(&self, needle: &str, occurrences: usize) {
        wait_for(
            &format!("{needle:?} in the daemon's log"),
            Duration::from_secs(15),
            || self.log().matches(needle).count() >= occurrences,
        );
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signals the child we spawned, by its pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    fn stop(mut self) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signals the child we spawned, by its pid.
            unsafe { libc::kill(self.pid(), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// The sandbox: journald namespace, server/attacker/friend namespaces, a listener, a temp
/// directory with the configuration and the state.
struct Lab {
    // Drop order: listener, namespaces, journald, then the directory.
    _listener: Listener,
    server: Netns,
    attacker: Netns,
    friend: Netns,
    journald: Journald,
    /// What the daemon told its NOTIFY_SOCKET (read continuously, as the service manager
    /// does: an unread socket fills up and blocks the sender).
    notify: NotifyReader,
    dir: tempfile::TempDir,
    starts: usize,
}

impl Lab {
    fn new(tag: &str, config: &str) -> Lab {
        let id = format!("bhd{tag}{}", std::process::id());
        let journald = Journald::start(id.clone());
        let server = Netns::new(format!("{id}-s"));
        let attacker = Netns::new(format!("{id}-a"));
        let friend = Netns::new(format!("{id}-f"));
        for (peer, link, server_addr, peer_addr) in [
            (&attacker, "veth-a", SERVER_ATTACKER_SIDE, ATTACKER),
            (&friend, "veth-f", SERVER_FRIEND_SIDE, FRIEND),
        ] {
            server.ip(&[
                "link", "add", link, "type", "veth", "peer", "name", link, "netns", &peer.0,
            ]);
            server.ip(&["addr", "add", &format!("{server_addr}/24"), "dev", link]);
            peer.ip(&["addr", "add", &format!("{peer_addr}/24"), "dev", link]);
            server.ip(&["link", "set", link, "up"]);
            peer.ip(&["link", "set", link, "up"]);
        }
        let listener = Listener::start(&server.0);
        let dir = tempfile::tempdir().unwrap();
        let notify = NotifyReader::start(&dir.path().join("notify.sock"));
        let lab = Lab {
            _listener: listener,
            server,
            attacker,
            friend,
            journald,
            notify,
            dir,
            starts: 0,
        };
        lab.write_config(config);
        lab
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("banhound.toml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Starts the daemon and waits until it is ready (bans restored, journal followed).
    fn start(&mut self) -> Daemon {
        self.start_with(false, &[])
    }

    /// As [`Lab::start`], with more daemon arguments; with `to_journal`, the daemon logs through the journal socket, which
    /// in its private mount namespace is the test journald's (so its entries are readable).
    fn start_with(&mut self, to_journal: bool, extra_args: &[&str]) -> Daemon {
        let daemon = self.spawn(to_journal, extra_args);
        daemon.wait_log("banhound started", 1);
        daemon
    }

    /// Starts the daemon without waiting for it. Without `--bus-address` in `extra_args`,
    /// it serves no control interface (`--no-bus`).
    fn spawn(&mut self, to_journal: bool, extra_args: &[&str]) -> Daemon {
        self.starts += 1;
        let log = self.dir.path().join(format!("daemon-{}.log", self.starts));
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.server.0]);
        if to_journal {
            let stash = self.dir.path().join("journal-socket-dir");
            std::fs::create_dir_all(&stash).unwrap();
            command
                .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(
                    "set -e; mount --bind \"$1\" \"$2\"; mount -t tmpfs tmpfs /run/systemd; \
                     mkdir /run/systemd/journal; mount --bind \"$2\" /run/systemd/journal; \
                     shift 2; exec \"$@\"",
                )
                .arg("sh")
                .arg(&self.journald.dirs[0])
                .arg(&stash);
        }
        let child = command
            .arg(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
            .arg("--config")
            .arg(self.config_path())
            .args([
                "daemon",
                "--log-target",
                if to_journal { "journal" } else { "stderr" },
            ])
            .arg("--journal-namespace")
            .arg(&self.journald.name)
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(extra_args)
            .args(
                (!extra_args.contains(&"--bus-address"))
                    .then_some("--no-bus")
                    .as_slice(),
            )
            .env("BANHOUND_LOG", "debug")
            .env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"))
            // Pings every 150 ms (half the interval), from the owner task.
            .env("WATCHDOG_USEC", "300000")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let log = if to_journal {
            DaemonLog::Journal(self.journald.name.clone())
        } else {
            DaemonLog::File(log)
        };
        Daemon { child, log }
    }

    /// (address, timeout in seconds) of the elements of the server's sshd IPv4 set.
    fn banned(&self) -> Vec<(String, Option<u64>)> {
        let out = in_netns(&self.server.0, || {
            Command::new("nft")
                .args(["-j", "list", "set", "inet", "banhound", "sshd-v4"])
                .output()
                .unwrap()
        });
        if !out.status.success() {
            return Vec::new();
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut found = Vec::new();
        for item in json["nftables"].as_array().unwrap() {
            let Some(elems) = item["set"]["elem"].as_array() else {
                continue;
            };
            for elem in elems {
                match elem {
                    serde_json::Value::String(addr) => found.push((addr.clone(), None)),
                    other => found.push((
                        other["elem"]["val"].as_str().unwrap().to_string(),
                        other["elem"]["expires"].as_u64(),
                    )),
                }
            }
        }
        found.sort();
        found
    }

    fn is_banned(&self, addr: &str) -> bool {
        self.banned().iter().any(|(a, _)| a == addr)
    }

    /// Whether a TCP connection from `from` gets through (false: it timed out).
    fn connects(&self, from: &Netns, to: &str) -> bool {
        let addr = SocketAddr::new(to.parse().unwrap(), PORT);
        in_netns(&from.0, || {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(800)) {
                Ok(mut s) => {
                    let mut buf = [0u8; 2];
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    s.read_exact(&mut buf).unwrap();
                    assert_eq!(&buf, b"hi");
                    true
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => false,
                Err(e) => panic!("connect {addr}: {e}"),
            }
        })
    }

    /// The sd_notify messages received since the last call, one string per datagram, once
    /// `done` holds for them (the reader thread may lag behind the daemon's log), or after
    /// 10 s so the caller's assertion shows what did arrive.
    fn notifications_until(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut received = self.notify.received.lock().unwrap();
                if done(&received) || Instant::now() > deadline {
                    return std::mem::take(&mut *received);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fail_logins(&self, addr: &str, n: usize) {
        let messages: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "Failed password for invalid user u{i} from {addr} port {} ssh2",
                    40000 + i
                )
            })
            .collect();
        self.journald.sshd(&messages);
    }
}

fn config(maxretry: u32, bantime: &str) -> String {
    format!(
        "[jail.sshd]\nenabled = true\nport = \"{PORT}\"\nmaxretry = {maxretry}\nfindtime = \"10m\"\nbantime = \"{bantime}\"\n"
    )
}

fn ban_line(addr: &str, bantime: &str, failures: u32) -> String {
    format!("Banned {addr} in jail sshd for {bantime} after {failures} failures")
}

#[test]
fn journal_failures_become_kernel_bans_that_block_only_the_attacker() {
    let mut lab = Lab::new("ban", &config(3, "10m"));
    let daemon = lab.start();
    assert!(lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    assert!(lab.banned().is_empty());

    lab.fail_logins(FRIEND, 2);
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 3), 1);
    let banned = lab.banned();
    assert_eq!(banned.len(), 1, "{banned:?}");
    assert_eq!(banned[0].0, ATTACKER);
    assert!(
        banned[0].1.is_some_and(|s| (590..=600).contains(&s)),
        "{banned:?}"
    );
    assert!(!lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    assert!(lab.connects(&lab.friend, SERVER_FRIEND_SIDE));
    assert!(!daemon.log().contains(&format!("Banned {FRIEND}")));
    assert!(daemon.stop());
    // Bans outlive the daemon: they are kernel elements with timeouts.
    assert!(lab.is_banned(ATTACKER));
}

#[test]
fn restart_restores_remaining_time_and_counts_no_entry_twice() {
    let mut lab = Lab::new("restart", &config(3, "1h"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 3), 1);
    // Two failures of the friend: counted, below maxretry.
    lab.fail_logins(FRIEND, 2);
    daemon.wait_log(&format!("Found {FRIEND} in jail sshd (2 failure(s))"), 1);
    assert!(daemon.stop());

    // While banhound is down: the kernel loses the table (e.g. a ruleset reload), and more
    // is logged: three failures of a new address must still ban after the restart.
    in_netns(&lab.server.0, || {
        sh(&["nft", "delete", "table", "inet", "banhound"])
    });
    lab.fail_logins("203.0.113.77", 3);
    std::thread::sleep(Duration::from_secs(2));

    let daemon = lab.start();
    daemon.wait_log(&ban_line("203.0.113.77", "1h", 3), 1);
    let banned = lab.banned();
    let attacker = banned
        .iter()
        .find(|(a, _)| a == ATTACKER)
        .expect("attacker restored");
    // Remaining time, not a fresh hour: at least the 2 s slept have passed.
    let left = attacker.1.unwrap();
    assert!((3000..=3598).contains(&left), "restored with {left}s left");
    assert!(!lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    let log = daemon.log();
    assert!(
        log.contains(&format!("Restored ban of {ATTACKER} in jail sshd")),
        "{log}"
    );
    // The attacker's entries were replayed count-only: no second ban line.
    assert!(!log.contains(&format!("Banned {ATTACKER}")), "{log}");
    // The friend's two replayed failures are in the window again: one more bans.
    assert!(!lab.is_banned(FRIEND));
    lab.fail_logins(FRIEND, 1);
    daemon.wait_log(&ban_line(FRIEND, "1h", 3), 1);
    assert!(lab.is_banned(FRIEND));
    assert!(daemon.stop());

    let state = StateDb::open(&lab.state_dir()).unwrap();
    let mut stored: Vec<String> = state
        .bans()
        .unwrap()
        .iter()
        .map(|b| b.target.to_string())
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        ["198.51.100.7/32", "203.0.113.66/32", "203.0.113.77/32"]
    );
    assert_eq!(state.history_len().unwrap(), 3, "each ban recorded once");
}

#[test]
fn sighup_applies_a_changed_jail_and_refuses_a_broken_config() {
    let mut lab = Lab::new("reload", &config(5, "10m"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 5);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 5), 1);

    // maxretry 5 -> 2, bantime 10m -> 20m, in place.
    lab.write_config(&config(2, "20m"));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    assert!(lab.is_banned(ATTACKER), "bans are kept across a reload");
    lab.fail_logins(FRIEND, 2);
    daemon.wait_log(&ban_line(FRIEND, "20m", 2), 1);
    assert!(!lab.connects(&lab.friend, SERVER_FRIEND_SIDE));

    // A broken configuration is refused; the running one keeps working.
    lab.write_config("[jail.sshd]\nenabled = true\nmaxretry = \"many\"\n");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reload refused", 1);
    lab.fail_logins("203.0.113.88", 2);
    daemon.wait_log(&ban_line("203.0.113.88", "20m", 2), 1);
    let banned: Vec<String> = lab.banned().into_iter().map(|(a, _)| a).collect();
    assert_eq!(banned, [FRIEND, ATTACKER, "203.0.113.88"]);

    // The jail moves to the log-only backend: its bans leave the kernel, stay in force.
    lab.write_config(&format!("{}backend = \"log-only\"\n", config(2, "20m")));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 2);
    assert!(lab.banned().is_empty());
    assert!(lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    daemon.wait_log(&format!("log-only backend: would block {ATTACKER}/32"), 1);

    // The jail is removed: its bans end.
    lab.write_config("[jail.sshd]\nenabled = false\n");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 3);
    for addr in [FRIEND, ATTACKER, "203.0.113.88"] {
        daemon.wait_log(&format!("Unbanned {addr} in jail sshd (jail removed)"), 1);
    }
    assert!(daemon.stop());
    assert!(StateDb::open(&lab.state_dir())
        .unwrap()
        .bans()
        .unwrap()
        .is_empty());
}

#[test]
fn bans_are_lifted_when_they_expire() {
    let mut lab = Lab::new("expire", &config(2, "3s"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "3s", 2), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail sshd (expired)"), 1);
    assert!(!lab.is_banned(ATTACKER));
    assert!(lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    assert!(daemon.stop());
    let state = StateDb::open(&lab.state_dir()).unwrap();
    assert!(state.bans().unwrap().is_empty());
    assert_eq!(state.history_len().unwrap(), 1);
}

#[test]
fn a_killed_daemon_loses_no_ban_and_bans_nothing_twice() {
    let mut lab = Lab::new("kill", &config(3, "1h"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 3), 1);
    // No chance to clean up: whatever was committed is all there is.
    daemon.signal(libc::SIGKILL);
    drop(daemon);
    in_netns(&lab.server.0, || {
        sh(&["nft", "delete", "table", "inet", "banhound"])
    });

    let daemon = lab.start();
    daemon.wait_log(&format!("Restored ban of {ATTACKER} in jail sshd"), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    // Give a wrongly replayed entry the time to be acted upon, then check it was not.
    lab.fail_logins(FRIEND, 1);
    daemon.wait_log(&format!("Found {FRIEND} in jail sshd (1 failure(s))"), 1);
    assert!(!daemon.log().contains("Banned "), "{}", daemon.log());
    assert!(daemon.stop());
    assert_eq!(
        StateDb::open(&lab.state_dir())
            .unwrap()
            .history_len()
            .unwrap(),
        1
    );
}

#[test]
fn tells_the_service_manager_ready_status_reloading_and_watchdog() {
    let mut lab = Lab::new("notify", &config(2, "10m"));
    let daemon = lab.start();
    let ready = |m: &String| {
        m.contains("READY=1") && m.contains("STATUS=1 jail, 0 banned, following journal")
    };
    let got = lab.notifications_until(|got| got.iter().any(ready));
    assert!(got.iter().any(ready), "{got:?}");
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 2), 1);
    std::thread::sleep(Duration::from_millis(600));
    let status = |m: &String| m == "STATUS=1 jail, 1 banned, following journal";
    let got = lab.notifications_until(|got| got.iter().any(status));
    assert!(got.iter().any(status), "{got:?}");
    // 600 ms at one ping per 150 ms; allow for a slow machine.
    let pings = got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(pings >= 2, "{pings} watchdog pings: {got:?}");

    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    let got: Vec<String> = lab
        .notifications_until(|got| got.iter().any(|m| m.contains("READY=1")))
        .into_iter()
        .filter(|m| m != "WATCHDOG=1")
        .collect();
    let reloading = got
        .iter()
        .position(|m| m.starts_with("RELOADING=1"))
        .expect("RELOADING=1");
    assert!(got[reloading].contains("MONOTONIC_USEC="), "{got:?}");
    let ready = got
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1");
    assert!(reloading < ready, "{got:?}");
    assert!(daemon.stop());
    let stopping = |m: &String| m.contains("STOPPING=1");
    assert!(lab
        .notifications_until(|got| got.iter().any(stopping))
        .iter()
        .any(stopping));
}

#[test]
fn logs_structured_ban_lines_to_the_journal_that_recidive_reads_back() {
    // sshd bans for 2 s; a recidive jail (journalmatch adjusted: _SYSTEMD_UNIT cannot be set
    // outside systemd) bans an address banhound banned twice.
    let mut lab = Lab::new(
        "journal",
        &format!(
            "{}\n[jail.recidive]\nenabled = true\njournalmatch = [\"_COMM=banhound\"]\nmaxretry = 2\nbantime = \"1h\"\n",
            config(2, "2s")
        ),
    );
    let daemon = lab.start_with(true, &[]);
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "2s", 2), 1);
    let fields = journal_text(
        &lab.journald.name,
        &[
            "SYSLOG_IDENTIFIER=banhound",
            "JAIL=sshd",
            "IP=203.0.113.66",
            "-o",
            "json",
        ],
    );
    let entry: serde_json::Value = fields
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.starts_with("Banned"))
        })
        .expect("a ban entry with JAIL= and IP= fields");
    assert_eq!(entry["MESSAGE"], ban_line(ATTACKER, "2s", 2));
    assert_eq!(entry["BANTIME"], "2s");
    assert_eq!(entry["FAILURES"], "2");
    assert_eq!(entry["PRIORITY"], "6");

    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail sshd (expired)"), 1);
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "2s", 2), 2);
    // The second ban line is banhound's own journal entry: recidive reads it and bans.
    daemon.wait_log(
        &format!("Banned {ATTACKER} in jail recidive for 1h after 2 failures"),
        1,
    );
    let recidive_set = in_netns(&lab.server.0, || {
        sh(&["nft", "list", "set", "inet", "banhound", "recidive-v4"])
    });
    assert!(recidive_set.contains(ATTACKER), "{recidive_set}");
    assert!(daemon.stop());
}

#[test]
fn flush_on_stop_removes_the_bans_from_the_kernel_and_restart_puts_them_back() {
    let mut lab = Lab::new("flush", &config(2, "1h"));
    let daemon = lab.start_with(false, &["--flush-on-stop"]);
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 2), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(daemon.stop());
    let tables = in_netns(&lab.server.0, || sh(&["nft", "list", "tables"]));
    assert!(!tables.contains("banhound"), "{tables}");
    assert!(lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    let daemon = lab.start();
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));
    assert!(daemon.stop());
}

#[test]
fn escalation_remembers_ended_bans_across_a_restart() {
    let mut lab = Lab::new(
        "escalate",
        &format!("{}escalation = {{ factor = 2.0 }}\n", config(2, "2s")),
    );
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "2s", 2), 1);
    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail sshd (expired)"), 1);
    assert!(daemon.stop());

    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    // Second offence: twice the ban time, although the first ban ended before the restart.
    daemon.wait_log(&ban_line(ATTACKER, "4s", 2), 1);
    assert!(daemon.stop());
}

/// Appends sshd syslog lines (local time, as syslog writes) to a log file.
fn append_syslog_failures(path: &Path, addr: &str, n: usize) {
    use std::io::Write;
    let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in 0..n {
        writeln!(
            file,
            "{stamp} server sshd[{}]: Failed password for root from {addr} port {} ssh2",
            1000 + i,
            41000 + i
        )
        .unwrap();
    }
}

#[test]
fn file_jails_follow_appends_rotation_and_resume_after_restart() {
    let log_dir = tempfile::tempdir().unwrap();
    let auth = log_dir.path().join("auth.log");
    std::fs::write(&auth, "").unwrap();
    let mut lab = Lab::new(
        "files",
        &format!(
            "[jail.sshd]\nenabled = false\n\n[jail.sshd-file]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nport = \"{PORT}\"\nmaxretry = 3\n",
            auth.display()
        ),
    );
    let line = |addr: &str| format!("Banned {addr} in jail sshd-file for 10m after 3 failures");
    let banned_in_file_jail = |lab: &Lab, addr: &str| {
        in_netns(&lab.server.0, || {
            sh(&["nft", "list", "set", "inet", "banhound", "sshd-file-v4"])
        })
        .contains(addr)
    };
    let daemon = lab.start();
    append_syslog_failures(&auth, ATTACKER, 3);
    daemon.wait_log(&line(ATTACKER), 1);
    assert!(banned_in_file_jail(&lab, ATTACKER));
    assert!(!lab.connects(&lab.attacker, SERVER_ATTACKER_SIDE));

    // logrotate: renamed away, a new file created.
    std::fs::rename(&auth, log_dir.path().join("auth.log.1")).unwrap();
    append_syslog_failures(&auth, "203.0.113.77", 3);
    daemon.wait_log(&line("203.0.113.77"), 1);
    // Counted (below maxretry) across a reload: the window is kept, no line is read twice.
    append_syslog_failures(&auth, "203.0.113.99", 1);
    daemon.wait_log("Found 203.0.113.99 in jail sshd-file (1 failure(s))", 1);
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    append_syslog_failures(&auth, "203.0.113.99", 1);
    daemon.wait_log("Found 203.0.113.99 in jail sshd-file (2 failure(s))", 1);
    // ... and not read again after a restart either.
    assert!(daemon.stop());

    // Written while banhound is down: read once after the restart, nothing before it again.
    append_syslog_failures(&auth, FRIEND, 3);
    let daemon = lab.start();
    daemon.wait_log(&line(FRIEND), 1);
    assert!(banned_in_file_jail(&lab, FRIEND));
    assert!(!lab.connects(&lab.friend, SERVER_FRIEND_SIDE));
    let log = daemon.log();
    assert_eq!(log.matches("Banned ").count(), 1, "{log}");
    assert!(!log.contains("Found 203.0.113.99"), "{log}");
    assert!(daemon.stop());
}

const WAIT: Duration = Duration::from_secs(10);

/// `banhound --bus-address BUS ARGS` as root.
fn cli(bus: &DbusDaemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banhound"))
        .arg("--bus-address")
        .arg(&bus.address)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn cli_json(bus: &DbusDaemon, args: &[&str]) -> serde_json::Value {
    let out = cli(bus, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The next line `banhound monitor --json` printed.
fn next_event(monitor: &Running) -> serde_json::Value {
    let line = monitor
        .stdout
        .recv_timeout(WAIT)
        .expect("an event reaches the monitor");
    serde_json::from_str(&line).unwrap()
}

/// The (jail, target, failures) rows of the bans table.
fn stored_bans(lab: &Lab) -> Vec<(String, String, u32)> {
    StateDb::open(&lab.state_dir())
        .unwrap()
        .bans()
        .unwrap()
        .into_iter()
        .map(|b| (b.jail, b.target.to_string(), b.failures))
        .collect()
}

#[test]
fn the_cli_controls_the_daemon_over_dbus_with_real_bans() {
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut lab = Lab::new("bus", &config(3, "10m"));
    let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
    // The name is taken before READY=1 and "banhound started".
    assert!(daemon
        .log()
        .contains("control interface: org.banhound.Banhound1 on unix:path="));
    let monitor = Running::spawn(Command::new(env!("CARGO_BIN_EXE_banhound")).args([
        "--bus-address",
        &bus.address,
        "monitor",
        "--json",
    ]));
    let ready = monitor.stderr.recv_timeout(WAIT).unwrap();
    assert!(ready.contains("listening"), "{ready}");

    let out = cli(&bus, &["status", "sshd"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Status for the jail: sshd"), "{text}");
    assert!(
        text.contains("Ban after:        3 failures within 10m"),
        "{text}"
    );
    assert!(text.contains("Backend:          nftables"), "{text}");
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["total_failed"], 0, "{status}");
    assert_eq!(status["currently_banned"], 0, "{status}");

    // Failures in the journal: a ban decided by the daemon reaches the monitor and counters.
    lab.fail_logins(FRIEND, 1);
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 3), 1);
    let event = next_event(&monitor);
    assert_eq!(event["event"], "banned", "{event}");
    assert_eq!(event["jail"], "sshd");
    assert_eq!(event["address"], ATTACKER);
    assert_eq!(event["reason"], "3 failures within 10m");
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["total_failed"], 4, "{status}");
    assert_eq!(status["currently_failed"], 1, "{status}");
    assert_eq!(status["currently_banned"], 1, "{status}");
    assert_eq!(status["total_banned"], 1, "{status}");
    assert_eq!(status["bans"][0]["target"], ATTACKER, "{status}");
    let text = String::from_utf8_lossy(&cli(&bus, &["status", "sshd"]).stdout).into_owned();
    assert!(text.contains("Currently banned: 1"), "{text}");

    // A manual ban: in the kernel (real packets dropped), in the database, in the log.
    assert!(lab.connects(&lab.friend, SERVER_FRIEND_SIDE));
    let out = cli(&bus, &["ban", "sshd", FRIEND]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = next_event(&monitor);
    assert_eq!(event["event"], "banned", "{event}");
    assert_eq!(event["address"], FRIEND);
    assert_eq!(event["reason"], "manual (uid 0)");
    assert!(lab.is_banned(FRIEND));
    assert!(!lab.connects(&lab.friend, SERVER_FRIEND_SIDE));
    assert!(stored_bans(&lab).contains(&("sshd".into(), format!("{FRIEND}/32"), 0)));
    daemon.wait_log(
        &format!("Banned {FRIEND} in jail sshd for 10m manually (uid 0)"),
        1,
    );
    let banned = cli_json(&bus, &["banned", FRIEND, "--json"]);
    assert!(banned.to_string().contains(FRIEND), "{banned}");

    // Refused: never banned (exit 2), not root (exit 4); neither changes anything.
    let out = cli(&bus, &["ban", "sshd", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    let out = as_nobody()
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "unban", FRIEND])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_nobody()
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "ban", "sshd", "192.0.2.9"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(lab.is_banned(FRIEND));
    assert!(!lab.is_banned("192.0.2.9"));

    // A runtime ignore entry refuses bans in it, and the host's own addresses stay refused
    // (ignoreself survives the rebuilt ignore list).
    let out = cli(&bus, &["ignore", "add", "sshd", "192.0.2.0/24"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&bus, &["ban", "sshd", "192.0.2.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignoreip"));
    let out = cli(&bus, &["ban", "sshd", SERVER_FRIEND_SIDE]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("own addresses"), "{stderr}");
    let ignored = cli_json(&bus, &["status", "sshd", "--json"])["ignoreip"].clone();
    assert_eq!(ignored, serde_json::json!(["192.0.2.0/24"]));
    // The friend's ban is not lifted by ignoring its network.
    let out = cli(&bus, &["ignore", "add", "sshd", "198.51.100.0/24"]);
    assert!(out.status.success());
    assert!(lab.is_banned(FRIEND));

    // A manual unban: out of the kernel and the database, the friend gets through again.
    let out = cli(&bus, &["unban", FRIEND]);
    assert!(out.status.success());
    let event = next_event(&monitor);
    assert_eq!(
        event,
        serde_json::json!({"event": "unbanned", "jail": "sshd", "address": FRIEND, "why": "manual"})
    );
    assert!(!lab.is_banned(FRIEND));
    assert!(lab.connects(&lab.friend, SERVER_FRIEND_SIDE));
    assert!(!stored_bans(&lab)
        .iter()
        .any(|(_, t, _)| t.starts_with(FRIEND)));
    daemon.wait_log(
        &format!("Unbanned {FRIEND} in jail sshd (manually, uid 0)"),
        1,
    );
    let out = cli(&bus, &["unban", FRIEND]);
    assert_eq!(out.status.code(), Some(1), "not banned any more");

    // Reload over the bus: the new settings are in force, bans kept; a broken configuration
    // is refused (exit 1) and the running one stays.
    lab.write_config(&config(5, "10m"));
    let out = cli(&bus, &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["maxretry"], 5);
    // Runtime ignore entries end with the reload.
    assert_eq!(status["ignoreip"], serde_json::json!([]), "{status}");
    assert!(lab.is_banned(ATTACKER));
    // SIGHUP (systemctl reload) re-lists the jails on the bus too: a jail added this way
    // gets its object.
    lab.write_config(&format!(
        "{}[jail.recidive]\nenabled = true\n",
        config(5, "10m")
    ));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 2);
    wait_for("the recidive jail on the bus", WAIT, || {
        cli(&bus, &["status", "recidive"]).status.success()
    });
    let jails = cli_json(&bus, &["status", "--json"])["jails"].clone();
    assert_eq!(jails, serde_json::json!(["recidive", "sshd"]), "{jails}");
    lab.write_config("[jail.sshd]\nenabled = true\nmaxretry = \"many\"\n");
    let out = cli(&bus, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("running configuration stays in force"),
        "{stderr}"
    );
    assert_eq!(cli_json(&bus, &["status", "sshd", "--json"])["maxretry"], 5);

    assert!(daemon.stop());
    // The name goes with the daemon.
    assert_eq!(cli(&bus, &["status"]).status.code(), Some(3));
}

#[test]
fn without_a_bus_the_daemon_still_bans_and_a_taken_name_stops_it() {
    // No bus at this address: a warning, then protection as usual.
    let mut lab = Lab::new("nobus", &config(3, "10m"));
    let missing = format!("unix:path={}", lab.dir.path().join("no-bus").display());
    let daemon = lab.start_with(false, &["--bus-address", &missing]);
    assert!(daemon
        .log()
        .contains("running without the control interface"));
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 3), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(daemon.stop());

    // The name already owned (another banhound): this one refuses to start.
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut first_lab = Lab::new("first", &config(3, "10m"));
    let first = first_lab.start_with(false, &["--bus-address", &bus.address]);
    let mut second = lab.spawn(false, &["--bus-address", &bus.address]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = second.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the second daemon kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", second.log());
    assert!(second.log().contains("already owned"), "{}", second.log());
    // The first one still answers.
    assert!(cli(&bus, &["status", "sshd"]).status.success());
    assert!(first.stop());
}
