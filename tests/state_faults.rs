//! The daemon with a state directory that cannot be written: it keeps banning from memory,
//! says so (log, STATUS=, D-Bus, `banhound status`), and loses nothing.
//!
//! Two real failures: a file system that fills up (a 512 KiB tmpfs; when space is back, what
//! waited is written in one transaction, leaving a sound database), and one the kernel
//! turns read-only under the running daemon (an ext4 image with `errors=remount-ro`; see
//! the second test for why the catch-up there is a restart).
//!
//! No network namespace is needed: the jail uses the log-only backend and reads a log file.
//! The file systems are mounted in a mount namespace of the test's thread alone
//! (`unshare(CLONE_NEWNS)`), which the daemon, spawned from that thread, inherits; the host
//! never sees the mounts, and they disappear with the thread and the daemon even if the test
//! is killed. The control interface is served on a private dbus-daemon with the shipped policy. Every process is
//! stopped by pid in Drop, also when an assertion fails. Needs root, dbus-daemon, mkfs.ext4
//! and loop devices.

#[path = "support/private_bus.rs"]
mod private_bus;

use banhound::bus::proxy::ManagerProxy;
use private_bus::{BusPolicy, DbusDaemon};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process, stopped (SIGTERM, then SIGKILL) by pid on drop.
struct Process(Child);

impl Process {
    fn stop(&mut self) -> bool {
        // SAFETY: signals the child we spawned, by its pid.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

/// Moves the calling thread into a mount namespace of its own, private so nothing mounted
/// there propagates to the host. The daemon, spawned from this thread, inherits it; it
/// disappears with them, even if the test is killed.
fn private_mount_namespace() {
    // SAFETY: unshare and mount with valid NUL-terminated strings; only this thread's mount
    // namespace changes.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare(CLONE_NEWNS), needs root: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
    }
}

/// A tmpfs of `size` on `dir` (in the thread's private mount namespace).
fn mount_small_tmpfs(dir: &Path, size: &str) {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let options = std::ffi::CString::new(format!("size={size},mode=0700")).unwrap();
    // SAFETY: mount with valid NUL-terminated strings.
    let mounted = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            path.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    assert_eq!(
        mounted,
        0,
        "mount tmpfs: {}",
        std::io::Error::last_os_error()
    );
}

/// Fills the filesystem of `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = [0u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("{e}"),
        }
    }
    path
}

/// Every STATUS= the daemon sent, read by a thread.
struct Notifications {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Notifications {
    fn listen(path: &Path) -> Notifications {
        let socket = UnixDatagram::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        // Ends with the test process; it only reads.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().extend(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("STATUS="))
                        .map(str::to_string),
                );
            }
        });
        Notifications { seen }
    }

    fn last(&self) -> String {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

fn failures(log: &Path, addr: &str, count: usize) {
    let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    let now = Command::new("date")
        .arg("+%b %e %H:%M:%S")
        .output()
        .unwrap()
        .stdout;
    let now = String::from_utf8_lossy(&now).trim().to_string();
    for _ in 0..count {
        writeln!(
            file,
            "{now} web1 sshd[42]: Failed password for root from {addr} port 22 ssh2"
        )
        .unwrap();
    }
}

fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// The daemon under test with its log file, a private bus, its control interface and its
/// STATUS= notifications. Started from the calling thread, so it shares that thread's mount
/// namespace (and whatever is mounted on `state`).
struct Rig {
    state: PathBuf,
    log: PathBuf,
    daemon_log: PathBuf,
    bus_address: String,
    notify: Notifications,
    runtime: tokio::runtime::Runtime,
    manager: ManagerProxy<'static>,
    // Dropped last: the daemon before the bus it is connected to.
    daemon: Process,
    _bus: DbusDaemon,
}

impl Rig {
    /// Starts a private bus and the daemon (log-only backend, file jail `web`, maxretry 2)
    /// with its state in `state`, logging to `daemon_log`.
    fn start(dir: &Path, state: &Path, daemon_log: &str) -> Rig {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The shipped bus policy: root owns the name and may call everything.
        let bus = DbusDaemon::start(BusPolicy::Shipped);
        let bus_address = bus.address.clone();

        let log = dir.join("auth.log");
        if !log.exists() {
            std::fs::write(&log, "").unwrap();
        }
        let config = dir.join("banhound.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\nreconcile_interval = \"off\"\n\n[jail.sshd]\nenabled = false\n\n\
                 [jail.web]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nmaxretry = 2\n\
                 bantime = \"1h\"\nbackend = \"log-only\"\n",
                log.display()
            ),
        )
        .unwrap();
        let notify_socket = dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_socket);
        let notify = Notifications::listen(&notify_socket);
        let daemon_log = dir.join(daemon_log);
        let daemon = Process(
            Command::new(env!("CARGO_BIN_EXE_banhound"))
                .arg("--defaults-dir")
                .arg(root.join("conf"))
                .arg("--config")
                .arg(&config)
                .arg("--bus-address")
                .arg(&bus_address)
                .args(["daemon", "--log-target", "stderr", "--state-dir"])
                .arg(state)
                .env("NOTIFY_SOCKET", &notify_socket)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&daemon_log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for("the daemon to start", || {
            count_in(&daemon_log, "banhound started") == 1
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let manager = runtime.block_on(async {
            let connection = zbus::connection::Builder::address(bus_address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            ManagerProxy::builder(&connection)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .unwrap()
        });
        Rig {
            state: state.to_path_buf(),
            log,
            daemon_log,
            bus_address,
            notify,
            runtime,
            manager,
            daemon,
            _bus: bus,
        }
    }

    /// (Degraded, StateError, UnsavedChanges, FirewallError) as the bus shows them.
    fn health(&self) -> (bool, String, u64, String) {
        self.runtime.block_on(async {
            (
                self.manager.degraded().await.unwrap(),
                self.manager.state_error().await.unwrap(),
                self.manager.unsaved_changes().await.unwrap(),
                self.manager.firewall_error().await.unwrap(),
            )
        })
    }

    fn cli_status(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
            .args(["--bus-address", &self.bus_address, "status"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(&self.daemon_log).unwrap()
    }

    fn wait_bans(&self, what: &str, count: usize) {
        wait_for(what, || count_in(&self.daemon_log, "Banned ") == count);
    }

    /// Stops the daemon; whether it exited with success.
    fn stop(mut self) -> bool {
        self.daemon.stop()
    }
}

/// What a restart would find: `PRAGMA integrity_check` and the number of bans stored.
fn stored(state: &Path) -> (String, i64) {
    let conn = rusqlite::Connection::open(state.join("state.sqlite")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let bans: i64 = conn
        .query_row("SELECT COUNT(*) FROM bans", [], |r| r.get(0))
        .unwrap();
    (check, bans)
}

#[test]
fn a_full_state_directory_is_reported_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // Only this thread (and the daemon it spawns) sees the small filesystem.
    private_mount_namespace();
    mount_small_tmpfs(&state, "512k");
    let rig = Rig::start(dir.path(), &state, "daemon.log");

    failures(&rig.log, "203.0.113.1", 2);
    rig.wait_bans("the first ban", 1);
    assert_eq!(rig.health(), (false, String::new(), 0, String::new()));
    assert!(rig.cli_status().contains("`- Health:           ok"));

    let filler = fill(&rig.state);
    for i in 10..40 {
        failures(&rig.log, &format!("203.0.113.{i}"), 2);
    }
    rig.wait_bans("the bans made on a full disk", 31);
    let logged = rig.logged();
    assert_eq!(
        logged.matches("cannot save the state database").count(),
        1,
        "once per episode, not per ban:\n{logged}"
    );
    assert!(logged.contains("database or disk is full"), "{logged}");
    let (degraded, error, unsaved, firewall) = rig.health();
    assert!(degraded);
    assert!(error.contains("database or disk is full"), "{error}");
    // 30 bans and the file position at least (the first failing write may also hold one).
    assert!(unsaved >= 31, "{unsaved}");
    eprintln!("full: StateError {error:?}, UnsavedChanges {unsaved}, 31 bans in force");
    assert_eq!(firewall, "");
    wait_for("STATUS= to say it", || {
        rig.notify
            .last()
            .contains("31 banned, following 1 file(s); state not saved: ")
    });
    let status = rig.cli_status();
    assert!(
        status.contains("DEGRADED") && status.contains("database or disk is full"),
        "{status}"
    );

    std::fs::remove_file(filler).unwrap();
    wait_for("the catch-up", || {
        count_in(&rig.daemon_log, "the state database can be written again") == 1
    });
    assert_eq!(rig.health(), (false, String::new(), 0, String::new()));
    assert!(
        !rig.notify.last().contains("state not saved"),
        "{}",
        rig.notify.last()
    );
    assert!(rig.stop());

    // What a restart would find: every ban, and a sound database.
    assert_eq!(stored(&state), ("ok".to_string(), 31));
}

/// The kernel turns a file system read-only when it finds an error in it (ext4's
/// `errors=remount-ro`, the default on Debian's root file system). Here that happens for
/// real, on a small ext4 image (`trigger_fs_error`, ext4's own switch for testing this),
/// under a running daemon: it keeps banning from memory and says so. ext4 does not let that
/// file system be written again before it is unmounted, which cannot happen while the
/// daemon holds its database open; so the daemon is stopped, the file system mounted again
/// (as after a reboot and fsck), and a restart reads the log again from the last saved
/// position and decides the same bans: nothing is lost, and the database is sound.
#[test]
fn a_state_directory_turned_read_only_keeps_banning_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let image = dir.path().join("state.ext4");
    private_mount_namespace();
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "truncate",
        &["-s".as_ref(), "8M".as_ref(), image.as_os_str()],
    );
    run("mkfs.ext4", &["-q".as_ref(), image.as_os_str()]);
    let mount = || {
        // A loop device with autoclear: freed when the last mount of it goes.
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop,errors=remount-ro".as_ref(),
                image.as_os_str(),
                state.as_os_str(),
            ],
        )
    };
    mount();
    let rig = Rig::start(dir.path(), &state, "daemon.log");
    failures(&rig.log, "203.0.113.1", 2);
    rig.wait_bans("the first ban", 1);
    assert_eq!(rig.health(), (false, String::new(), 0, String::new()));

    let device = mounted_device(&state);
    std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").unwrap();
    for i in 10..20 {
        failures(&rig.log, &format!("203.0.113.{i}"), 2);
    }
    rig.wait_bans("the bans made on a read-only file system", 11);
    let logged = rig.logged();
    assert_eq!(
        logged.matches("cannot save the state database").count(),
        1,
        "once per episode, not per ban:\n{logged}"
    );
    let (degraded, error, unsaved, firewall) = rig.health();
    assert!(degraded);
    // SQLite's words for EIO (the open WAL file) or EROFS (a new file).
    assert!(
        error.contains("disk I/O error") || error.contains("readonly"),
        "{error}"
    );
    assert!(unsaved >= 11, "{unsaved}");
    eprintln!("read-only: StateError {error:?}, UnsavedChanges {unsaved}, 11 bans in force");
    assert_eq!(firewall, "");
    assert!(rig.cli_status().contains("DEGRADED"));
    // An admin's ban is answered (kept in memory, like the others) and in force.
    let record = rig
        .runtime
        .block_on(rig.manager.ban("web", "198.51.100.9", "1h"))
        .unwrap();
    assert_eq!(record.0, "198.51.100.9");
    assert!(rig.stop());

    // After the "reboot": mounted again (ext4 repairs nothing here: the error was
    // injected), restarted; the log is read again from the last saved position.
    run("umount", &[state.as_os_str()]);
    mount();
    let restarted = Rig::start(dir.path(), &state, "daemon-2.log");
    restarted.wait_bans("the bans decided again", 10);
    assert_eq!(restarted.health(), (false, String::new(), 0, String::new()));
    assert!(restarted.stop());
    // The manual ban was never saved: it is the one thing an admin must make again.
    assert_eq!(stored(&state), ("ok".to_string(), 11));
}

/// The loop device under `dir`, as named in /sys/fs/ext4 (e.g. `loop3`), from this thread's
/// mount table.
fn mounted_device(dir: &Path) -> String {
    let table = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    let line = table
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(dir))
        .unwrap_or_else(|| panic!("{dir} not mounted:\n{table}"));
    // Fields after " - ": type, source, options.
    let source = line.split(" - ").nth(1).unwrap().split(' ').nth(1).unwrap();
    source.trim_start_matches("/dev/").to_string()
}
