//! A private dbus-daemon with the shipped bus policy, and child processes that die with the
//! test, shared by the D-Bus tests (tests/dbus) and the daemon's end-to-end tests
//! (tests/daemon.rs), which include this file as a module.
//!
//! Each test crate uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Which policy the private bus enforces.
#[derive(Clone, Copy, PartialEq)]
pub enum BusPolicy {
    /// The system bus defaults (deny own, deny method calls) plus dbus/org.banhound.Banhound1.conf.
    Shipped,
    /// Anyone may own anything and call anything: only the service's own UID check is left.
    Permissive,
}

/// A private dbus-daemon, killed (by pid) when dropped.
pub struct DbusDaemon {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    pub fn start(policy: BusPolicy) -> DbusDaemon {
        let dir = tempfile::tempdir().unwrap();
        // `nobody` must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("bus");
        let policy_xml = match policy {
            BusPolicy::Shipped => format!(
                r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{}</include>"#,
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("dbus/org.banhound.Banhound1.conf")
                    .display()
            ),
            BusPolicy::Permissive => r#"  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#
                .to_string(),
        };
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
{policy_xml}
</busconfig>
"#,
            socket.display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut child = die_with_test(&mut Command::new("dbus-daemon"))
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dbus-daemon starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut daemon = DbusDaemon {
            child,
            address: line.trim().to_string(),
            _dir: dir,
        };
        if daemon.address.is_empty() {
            let mut err = String::new();
            daemon
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("dbus-daemon did not start: {err}");
        }
        daemon
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        // Child::kill signals exactly this pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The drop guards kill children by pid; this also kills them if the test process dies
/// without unwinding (an abort), when no destructor runs.
pub fn die_with_test(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

pub fn as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    c
}

/// A child process killed (by pid) when dropped, its output lines delivered on channels.
pub struct Running {
    child: Child,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = die_with_test(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |pipe: Box<dyn Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
