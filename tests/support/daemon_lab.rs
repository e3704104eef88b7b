//! The sandbox for end-to-end tests of `banhound daemon`, shared by the test files that run
//! the real daemon (tests/daemon.rs and the fault-injection tests): a standalone journald
//! namespace fed by a helper process named `sshd` (so `_COMM=sshd`, a trusted field, matches
//! the shipped sshd filter), a server namespace with its own nftables where the daemon runs,
//! attacker and friend namespaces linked to it, a listener on [`PORT`], and a temp directory
//! with the configuration, the state and a NOTIFY_SOCKET.
//!
//! ```text
//!   attacker 203.0.113.66 ── veth-a ── 203.0.113.1 server 198.51.100.1 ── veth-f ── friend 198.51.100.7
//! ```
//!
//! What tests check is what the kernel holds (`nft -j list set`) and what packets do. Every
//! namespace, journald and daemon is removed by pid or name in `Drop`, also when a test
//! fails. Needs root, nft, ip, python3 and /lib/systemd/systemd-journald.
//!
//! Included with `#[path]` next to netlab.rs, which must be the crate-level module `netlab`.
// Shared between test binaries that each use only a part of it.
#![allow(dead_code)]

use crate::netlab::{connect, in_netns, wait_for, Listener, Netns, Outcome};
use std::ffi::OsStr;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const JOURNALD: &str = "/lib/systemd/systemd-journald";
/// The port the listener serves and [`sshd_config`]'s jail protects.
pub const PORT: u16 = 2222;
pub const SERVER_ATTACKER_SIDE: &str = "203.0.113.1";
pub const SERVER_FRIEND_SIDE: &str = "198.51.100.1";
pub const ATTACKER: &str = "203.0.113.66";
pub const FRIEND: &str = "198.51.100.7";
/// The nftables set the sshd jail's IPv4 bans are in.
pub const SSHD_SET: &str = "sshd-v4";

/// `journalctl --namespace=NAME ARGS` as text.
pub fn journal_text(namespace: &str, args: &[&str]) -> String {
    let out = Command::new("journalctl")
        .arg(format!("--namespace={namespace}"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An enabled sshd jail on [`PORT`] with a 10 minute findtime.
pub fn sshd_config(maxretry: u32, bantime: &str) -> String {
    format!(
        "[jail.sshd]\nenabled = true\nport = \"{PORT}\"\nmaxretry = {maxretry}\nfindtime = \"10m\"\nbantime = \"{bantime}\"\n"
    )
}

/// The daemon's log line for a ban in the sshd jail.
pub fn ban_line(addr: &str, bantime: &str, failures: u32) -> String {
    format!("Banned {addr} in jail sshd for {bantime} after {failures} failures")
}

/// A standalone journald namespace, stopped by pid and its directories removed on drop.
pub struct Journald {
    name: String,
    child: Child,
    dirs: [PathBuf; 2],
}

impl Journald {
    pub fn start(name: String) -> Journald {
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

    /// The journal namespace (`journalctl --namespace`, `banhound --journal-namespace`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The runtime directory holding its sockets.
    pub fn runtime_dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// The persistent directory holding its journal files (system.journal and archives).
    pub fn log_dir(&self) -> &Path {
        &self.dirs[1]
    }

    /// The pid of the journald process now serving the namespace.
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Ends journald with `signal` (by pid; SIGKILL as a crash, SIGTERM as a stop) and starts
    /// it again on the same namespace and files, as a service restart does.
    pub fn restart(&mut self, signal: libc::c_int) {
        // SAFETY: signals the child we spawned, by its pid.
        unsafe { libc::kill(self.pid(), signal) };
        let _ = self.child.wait();
        // Left behind by a killed journald; the new one must be seen binding its own.
        let _ = std::fs::remove_file(self.socket());
        self.child = Command::new(JOURNALD)
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("journald to restart", Duration::from_secs(10), || {
            self.socket().exists() && self.dirs[1].join("system.journal").exists()
        });
    }

    /// `journalctl --namespace=NAME ARGS`, which must succeed (e.g. `--rotate`).
    pub fn journalctl(&self, args: &[&str]) {
        let out = Command::new("journalctl")
            .arg(format!("--namespace={}", self.name))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "journalctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The names of the files in [`Journald::log_dir`], sorted.
    pub fn journal_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.log_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Its native-protocol socket (what sd_journal_send writes to).
    pub fn socket(&self) -> PathBuf {
        self.dirs[0].join("socket")
    }

    /// Logs these messages as a process named sshd, and waits until journald stored them.
    pub fn sshd(&self, messages: &[String]) {
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

/// A NOTIFY_SOCKET read by a thread, stopped on drop.
pub struct NotifyReader {
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifyReader {
    pub fn start(path: &Path) -> NotifyReader {
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

    /// The messages received since the last call, one string per datagram, once `done`
    /// holds for them (the reader thread may lag behind the daemon's log), or after 10 s so
    /// the caller's assertion shows what did arrive.
    pub fn until(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut received = self.received.lock().unwrap();
                if done(&received) || Instant::now() > deadline {
                    return std::mem::take(&mut *received);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
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

/// A running `banhound daemon` (inside the server namespace), killed by pid on drop unless
/// it already exited.
pub struct Daemon {
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
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        match &self.log {
            DaemonLog::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
            DaemonLog::Journal(namespace) => {
                journal_text(namespace, &["SYSLOG_IDENTIFIER=banhound", "-o", "cat"])
            }
        }
    }

    /// Waits (up to 15 s) until `needle` is in its log `occurrences` times.
    pub fn wait_log(&self, needle: &str, occurrences: usize) {
        wait_for(
            &format!("{needle:?} in the daemon's log"),
            Duration::from_secs(15),
            || self.log().matches(needle).count() >= occurrences,
        );
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signals the child we spawned, by its pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Its exit status once it exited, or `None` if it still runs after `timeout`.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        self.signal(libc::SIGTERM);
        self.exit_within(Duration::from_secs(10))
            .expect("daemon did not stop on SIGTERM")
            .success()
    }

    /// SIGKILL and reap: no chance to clean up, as in a crash or an OOM kill.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
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
/// directory with the configuration and the state. Any number of daemons can be started
/// from it, one after the other (each gets its own log file); they share the state
/// directory, the journal and the server's nftables, as restarts of one service do.
pub struct Lab {
    // Drop order: listener, namespaces, journald, notify reader, then the directory.
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
    /// Set by [`Lab::read_journal_directory`]: what daemons read instead of the namespace.
    journal_directory: Option<PathBuf>,
    /// Set by [`Lab::read_configured_journal`]: daemons get no journal option at all.
    journal_from_config: bool,
    /// Environment given to the daemons started from now on, after the defaults (so it can
    /// override them: `BANHOUND_LOG`).
    daemon_env: Vec<(String, String)>,
}

impl Lab {
    /// A lab whose namespaces and journal namespace are named `bhd{tag}{pid}`: `tag` must be
    /// unique among the labs alive at once in a test binary.
    pub fn new(tag: &str, config: &str) -> Lab {
        let id = format!("bhd{tag}{}", std::process::id());
        let journald = Journald::start(id.clone());
        let server = Netns::new(format!("{id}-s"));
        let attacker = Netns::new(format!("{id}-a"));
        let friend = Netns::new(format!("{id}-f"));
        for (peer, link, server_addr, peer_addr) in [
            (&attacker, "veth-a", SERVER_ATTACKER_SIDE, ATTACKER),
            (&friend, "veth-f", SERVER_FRIEND_SIDE, FRIEND),
        ] {
            server.veth(
                (link, &[&format!("{server_addr}/24")]),
                peer,
                (link, &[&format!("{peer_addr}/24")]),
            );
        }
        let listener = Listener::start(&server, PORT);
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
            journal_directory: None,
            journal_from_config: false,
            daemon_env: Vec::new(),
        };
        lab.write_config(config);
        lab
    }

    /// Sets `key=value` in the environment of the daemons started from now on, overriding
    /// the lab's default (`BANHOUND_LOG=debug`: a load test logs at the production default,
    /// since one debug line per failure would measure the log file, not the daemon).
    pub fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.daemon_env.retain(|(k, _)| k != key);
        self.daemon_env.push((key.to_string(), value.to_string()));
    }

    /// Where the daemon runs (and the bans are).
    pub fn server(&self) -> &Netns {
        &self.server
    }

    /// Reaches the server at [`SERVER_ATTACKER_SIDE`], from [`ATTACKER`].
    pub fn attacker(&self) -> &Netns {
        &self.attacker
    }

    /// Reaches the server at [`SERVER_FRIEND_SIDE`], from [`FRIEND`].
    pub fn friend(&self) -> &Netns {
        &self.friend
    }

    /// The journal the daemon reads (and, with `to_journal`, writes).
    pub fn journald(&self) -> &Journald {
        &self.journald
    }

    /// As [`Lab::journald`], to restart it.
    pub fn journald_mut(&mut self) -> &mut Journald {
        &mut self.journald
    }

    /// The temp directory holding the configuration, the state, logs and sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("banhound.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Daemons started from now on read the journal files in `dir` (`--journal-directory`)
    /// instead of the lab's journald namespace: for journals made beforehand with
    /// systemd-journal-remote, whose entries carry fields (`_COMM`, `_SYSTEMD_UNIT`) that
    /// only journald itself could give live ones.
    pub fn read_journal_directory(&mut self, dir: &Path) {
        self.journal_directory = Some(dir.to_path_buf());
    }

    /// Daemons started from now on are given no journal option: they read what the
    /// configuration says (`[daemon] journal_directory`), as a service started by its unit.
    pub fn read_configured_journal(&mut self) {
        self.journal_from_config = true;
    }

    /// Starts the daemon and waits until it is ready (bans restored, journal followed).
    pub fn start(&mut self) -> Daemon {
        self.start_with(false, &[])
    }

    /// As [`Lab::start`], with more daemon arguments; with `to_journal`, the daemon logs
    /// through the journal socket, which in its private mount namespace is the test
    /// journald's (so its entries are readable).
    pub fn start_with(&mut self, to_journal: bool, extra_args: &[&str]) -> Daemon {
        let daemon = self.spawn(to_journal, extra_args);
        daemon.wait_log("banhound started", 1);
        daemon
    }

    /// Starts the daemon without waiting for it. Without `--bus-address` in `extra_args`,
    /// it serves no control interface (`--no-bus`).
    pub fn spawn(&mut self, to_journal: bool, extra_args: &[&str]) -> Daemon {
        self.starts += 1;
        let log = self.dir.path().join(format!("daemon-{}.log", self.starts));
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.server.name()]);
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
                .arg(self.journald.runtime_dir())
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
            .args(match (&self.journal_directory, self.journal_from_config) {
                (_, true) => Vec::new(),
                (Some(dir), false) => vec![OsStr::new("--journal-directory"), dir.as_os_str()],
                (None, false) => vec![
                    OsStr::new("--journal-namespace"),
                    OsStr::new(self.journald.name()),
                ],
            })
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
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let log = if to_journal {
            DaemonLog::Journal(self.journald.name().to_string())
        } else {
            DaemonLog::File(log)
        };
        Daemon { child, log }
    }

    /// (address, timeout in seconds) of the elements of the sshd jail's IPv4 set.
    pub fn banned(&self) -> Vec<(String, Option<u64>)> {
        self.banned_in(SSHD_SET)
    }

    /// (address, timeout in seconds) of the elements of the server's set `set` in table
    /// `inet banhound`, sorted; empty when the set does not exist.
    pub fn banned_in(&self, set: &str) -> Vec<(String, Option<u64>)> {
        let out = in_netns(self.server.name(), || {
            Command::new("nft")
                .args(["-j", "list", "set", "inet", "banhound", set])
                .output()
                .unwrap()
        });
        if !out.status.success() {
            return Vec::new();
        }
        crate::netlab::set_elements(&out.stdout)
    }

    pub fn is_banned(&self, addr: &str) -> bool {
        self.is_banned_in(SSHD_SET, addr)
    }

    pub fn is_banned_in(&self, set: &str, addr: &str) -> bool {
        self.banned_in(set).iter().any(|(a, _)| a == addr)
    }

    /// Whether a TCP connection from `from` to `to`:[`PORT`] gets through (false: it timed
    /// out; any other failure panics).
    pub fn connects(&self, from: &Netns, to: &str) -> bool {
        let addr = SocketAddr::new(to.parse().unwrap(), PORT);
        match connect(from.name(), addr, Duration::from_millis(800)) {
            Outcome::Connected => true,
            Outcome::TimedOut => false,
            other => panic!("connect {addr}: {other:?}"),
        }
    }

    /// The sd_notify messages received since the last call (see [`NotifyReader::until`]).
    pub fn notifications_until(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.notify.until(done)
    }

    /// Logs `n` failed sshd logins from `addr` to the journal, stored when this returns.
    pub fn fail_logins(&self, addr: &str, n: usize) {
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

/// The shared benchmark generator of sshd logs: `GEN_SSHD_LOG`, else ../shared/bench.
pub fn generator() -> PathBuf {
    if let Some(path) = std::env::var_os("GEN_SSHD_LOG") {
        return PathBuf::from(path);
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen-sshd-log");
    if shared.exists() {
        return shared;
    }
    PathBuf::from("/work/shared/bench/gen-sshd-log")
}
