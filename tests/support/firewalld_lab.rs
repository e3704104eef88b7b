//! A real firewalld on a private D-Bus system bus, inside a test's network namespace, shared
//! by the tests that need one: tests/firewalld.rs (the backend in-process) and
//! tests/daemon_firewalld.rs (the real daemon).
//!
//! The bus is a dbus-daemon with its own config and socket in a temp dir, whose policy lets
//! anyone own any name (firewalld takes org.fedoraproject.FirewallD1 there, not on the host's
//! bus). firewalld runs with `--system-config` pointing at a private copy of the host's
//! firewalld.conf, so its permanent configuration (banhound's ipsets and rich rules, a test's
//! ports) is written to the temp dir and never to /etc/firewalld. Both processes are stopped
//! by pid in `Drop`, also when a test fails, and firewalld's log is printed then.
//!
//! Included with `#[path]` next to netlab.rs, which must be the crate-level module `netlab`.
// Shared between test binaries that each use only a part of it.
#![allow(dead_code)]

use crate::netlab::{wait_for, Netns};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIREWALLD_NAME: &str = "org.fedoraproject.FirewallD1";
const FIREWALLD_PATH: &str = "/org/fedoraproject/FirewallD1";

/// Kills a child by pid (SIGTERM, SIGKILL after 5 s) and reaps it.
pub fn stop_child(child: &mut Child) {
    // SAFETY: plain kill(2) on the pid of our own, not yet reaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private system bus and the firewalld on it (once started), in one network namespace.
pub struct PrivateFirewalld {
    dir: tempfile::TempDir,
    netns: String,
    bus_address: String,
    dbus: Option<Child>,
    firewalld: Option<Child>,
}

impl PrivateFirewalld {
    /// Starts the bus; firewalld (in `netns`) is started with [`PrivateFirewalld::start`].
    pub fn new(netns: &Netns) -> PrivateFirewalld {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = PrivateFirewalld {
            bus_address: format!("unix:path={}", dir.path().join("bus.sock").display()),
            dir,
            netns: netns.name().to_owned(),
            dbus: None,
            firewalld: None,
        };
        lab.start_bus();
        lab
    }

    /// What `DBUS_SYSTEM_BUS_ADDRESS` must say to reach this firewalld.
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    fn start_bus(&mut self) {
        let config = self.dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>{}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
"#,
                self.bus_address
            ),
        )
        .unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.dir.path().join("dbus.log")).unwrap())
            .spawn()
            .unwrap();
        self.dbus = Some(child);
        let socket = self.dir.path().join("bus.sock");
        wait_for(
            "dbus-daemon to create its socket",
            Duration::from_secs(5),
            || socket.exists(),
        );
    }

    /// firewalld's private permanent configuration directory (`--system-config`).
    pub fn system_config(&self) -> PathBuf {
        self.dir.path().join("firewalld-etc")
    }

    /// Starts firewalld in the namespace and waits until it answers on the bus.
    pub async fn start(&mut self) {
        self.spawn();
        self.wait_until_answering().await;
    }

    /// Starts firewalld without waiting for it (the permanent configuration of an earlier
    /// instance is kept: a restart).
    pub fn spawn(&mut self) {
        let etc = self.system_config();
        if !etc.exists() {
            std::fs::create_dir(&etc).unwrap();
            std::fs::copy("/etc/firewalld/firewalld.conf", etc.join("firewalld.conf")).unwrap();
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("firewalld.log"))
            .unwrap();
        // `ip netns exec` and `env` exec firewalld, so the child's pid is firewalld's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "env"])
            .arg(format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.bus_address))
            .args([
                "firewalld",
                "--nofork",
                "--nopid",
                "--log-target",
                "console",
            ])
            .arg("--system-config")
            .arg(&etc)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.firewalld = Some(child);
    }

    /// A client connection to the private bus.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.bus_address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    /// Waits (up to 30 s) until firewalld owns its bus name and has finished starting.
    pub async fn wait_until_answering(&self) {
        let connection = self.connect().await;
        let bus = zbus::fdo::DBusProxy::new(&connection).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let name = FIREWALLD_NAME.try_into().unwrap();
            if bus.name_has_owner(name).await.unwrap() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "firewalld did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Calls queue until firewalld has finished starting; this returns once it has.
        let reply = connection
            .call_method(
                Some(FIREWALLD_NAME),
                FIREWALLD_PATH,
                Some(FIREWALLD_NAME),
                "getDefaultZone",
                &(),
            )
            .await;
        assert!(
            reply.is_ok(),
            "firewalld not usable: {reply:?}\n{}",
            self.log()
        );
    }

    /// The entries of runtime ipset `ipset`, sorted, as firewalld reports them over D-Bus;
    /// empty while the ipset does not exist or firewalld does not answer (mid-reload).
    pub async fn ipset_entries(&self, connection: &zbus::Connection, ipset: &str) -> Vec<String> {
        let reply = connection
            .call_method(
                Some(FIREWALLD_NAME),
                FIREWALLD_PATH,
                Some("org.fedoraproject.FirewallD1.ipset"),
                "getEntries",
                &(ipset,),
            )
            .await;
        let mut entries: Vec<String> = match reply {
            Ok(message) => message.body().deserialize().unwrap(),
            Err(_) => Vec::new(),
        };
        entries.sort();
        entries
    }

    /// The pid of the running firewalld.
    pub fn firewalld_pid(&self) -> Option<libc::pid_t> {
        self.firewalld.as_ref().map(|c| c.id() as libc::pid_t)
    }

    /// Stops firewalld by pid (SIGTERM, as `systemctl stop` does) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.firewalld.take() {
            stop_child(&mut child);
        }
    }

    /// What firewalld logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("firewalld.log")).unwrap_or_default()
    }

    /// firewall-cmd inside the namespace on the private bus, which must succeed; its stdout.
    pub fn firewall_cmd(&self, args: &[&str]) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.netns, "env"])
            .arg(format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.bus_address))
            .arg("firewall-cmd")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "firewall-cmd {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for PrivateFirewalld {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut dbus) = self.dbus.take() {
            stop_child(&mut dbus);
        }
        if std::thread::panicking() {
            eprintln!("firewalld log:\n{}", self.log());
        }
    }
}
