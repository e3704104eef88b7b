//! The daemon with a state directory that fills up: it keeps banning from memory, says so
//! (log, STATUS=, D-Bus, `banhound status`), and when space is back writes what waited in one
//! transaction, leaving a sound database.
//!
//! No network namespace is needed: the jail uses the log-only backend and reads a log file.
//! The full disk is real: a 512 KiB tmpfs mounted in a mount namespace of the test's thread
//! alone (`unshare(CLONE_NEWNS)`), which the daemon, spawned from that thread, inherits; the
//! host never sees the mount, and it disappears with the thread and the daemon even if the
//! test is killed. The control interface is served on a private dbus-daemon. Every process
//! is stopped by pid in Drop, also when an assertion fails. Needs root, dbus-daemon.

use banhound::bus::proxy::ManagerProxy;
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

/// A tmpfs of `size` on `dir`, in a mount namespace of the calling thread only.
fn mount_small_tmpfs(dir: &Path, size: &str) {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let options = std::ffi::CString::new(format!("size={size},mode=0700")).unwrap();
    // SAFETY: unshare and mount with valid NUL-terminated strings; only this thread's mount
    // namespace changes, made private first so nothing propagates to the host.
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
        assert_eq!(
            libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast()
            ),
            0,
            "mount tmpfs: {}",
            std::io::Error::last_os_error()
        );
    }
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

#[test]
fn a_full_state_directory_is_reported_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // Only this thread (and the daemon it spawns) sees the small filesystem.
    mount_small_tmpfs(&state, "512k");

    let bus_socket = dir.path().join("bus.sock");
    let bus_config = dir.path().join("bus.conf");
    std::fs::write(
        &bus_config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            bus_socket.display()
        ),
    )
    .unwrap();
    let _bus = Process(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", bus_config.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("bus.log")).unwrap())
            .spawn()
            .expect("dbus-daemon"),
    );
    wait_for("the bus socket", || bus_socket.exists());
    let bus_address = format!("unix:path={}", bus_socket.display());

    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let config = dir.path().join("banhound.toml");
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
    let notify = Notifications::listen(&dir.path().join("notify.sock"));
    let daemon_log = dir.path().join("daemon.log");
    let mut daemon = Process(
        Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(root.join("conf"))
            .arg("--config")
            .arg(&config)
            .arg("--bus-address")
            .arg(&bus_address)
            .args(["daemon", "--log-target", "stderr", "--state-dir"])
            .arg(&state)
            .env("NOTIFY_SOCKET", dir.path().join("notify.sock"))
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
    let health = || {
        runtime.block_on(async {
            (
                manager.degraded().await.unwrap(),
                manager.state_error().await.unwrap(),
                manager.unsaved_changes().await.unwrap(),
                manager.firewall_error().await.unwrap(),
            )
        })
    };
    let cli_status = || {
        let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
            .args(["--bus-address", &bus_address, "status"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    failures(&log, "203.0.113.1", 2);
    wait_for("the first ban", || count_in(&daemon_log, "Banned ") == 1);
    assert_eq!(health(), (false, String::new(), 0, String::new()));
    assert!(cli_status().contains("`- Health:           ok"));

    let filler = fill(&state);
    for i in 10..40 {
        failures(&log, &format!("203.0.113.{i}"), 2);
    }
    wait_for("the bans made on a full disk", || {
        count_in(&daemon_log, "Banned ") == 31
    });
    let logged = std::fs::read_to_string(&daemon_log).unwrap();
    assert_eq!(
        logged.matches("cannot save the state database").count(),
        1,
        "once per episode, not per ban:\n{logged}"
    );
    assert!(logged.contains("database or disk is full"), "{logged}");
    let (degraded, error, unsaved, firewall) = health();
    assert!(degraded);
    assert!(error.contains("database or disk is full"), "{error}");
    // 30 bans and the file position at least (the first failing write may also hold one).
    assert!(unsaved >= 31, "{unsaved}");
    assert_eq!(firewall, "");
    wait_for("STATUS= to say it", || {
        notify
            .last()
            .contains("31 banned, following 1 file(s); state not saved: ")
    });
    let status = cli_status();
    assert!(
        status.contains("DEGRADED") && status.contains("database or disk is full"),
        "{status}"
    );

    std::fs::remove_file(filler).unwrap();
    wait_for("the catch-up", || {
        count_in(&daemon_log, "the state database can be written again") == 1
    });
    assert_eq!(health(), (false, String::new(), 0, String::new()));
    assert!(
        !notify.last().contains("state not saved"),
        "{}",
        notify.last()
    );
    assert!(daemon.stop());

    // What a restart would find: every ban, and a sound database.
    let conn = rusqlite::Connection::open(state.join("state.sqlite")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let bans: i64 = conn
        .query_row("SELECT COUNT(*) FROM bans", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bans, 31);
}
