//! The real `banhound daemon` behind the private bus, for the tests that must see what
//! reaches the kernel: it runs in a network namespace of its own (real nftables there,
//! nothing of the host's ruleset touched), with addresses of its own for `ignoreself`, reads
//! an empty journal directory (these tests ban over the bus only), and serves the control
//! interface on the test's private dbus-daemon, whose socket is a path and so reachable from
//! the namespace.
//!
//! The daemon is killed by pid and the namespace deleted by name when the guard drops, also
//! when a test fails. Needs root, ip, nft and the dbus-daemon of private_bus.rs.

use crate::netlab::Netns;
use crate::private_bus::die_with_test;
use ipnet::IpNet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace's own addresses (on a veth pair inside it), which `ignoreself` protects.
pub const OWN_V4: &str = "192.0.2.1";
pub const OWN_V6: &str = "2001:db8:1:2::10";

/// Starts `banhound daemon` through `runner` (the binary, or something that runs it: `ip
/// netns exec NS BINARY`), serving `bus_address`, with its configuration in
/// `dir/banhound.toml`, an empty journal directory `dir/journal`, its state in `dir/state`
/// and its log in `dir/daemon.log`. It dies with the test thread that started it.
pub fn spawn_daemon(runner: &mut Command, dir: &Path, bus_address: &str) -> Child {
    let journal = dir.join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    die_with_test(runner)
        .arg("--defaults-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
        .arg("--config")
        .arg(dir.join("banhound.toml"))
        .arg("--bus-address")
        .arg(bus_address)
        .args(["daemon", "--log-target", "stderr"])
        .arg("--journal-directory")
        .arg(&journal)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the daemon says it started (its name is on the bus then); fails the test
/// if it exits first or takes over 20 s.
pub fn wait_started(child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    while !text().contains("banhound started") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited: {}",
            text()
        );
        assert!(
            Instant::now() < deadline,
            "the daemon did not start: {}",
            text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `banhound daemon` in its namespace; killed by pid, then the namespace deleted, on drop.
pub struct RealDaemon {
    child: Child,
    log: PathBuf,
    // Dropped after the child is killed (Drop below), so the daemon never outlives them.
    netns: Netns,
    _dir: tempfile::TempDir,
}

impl RealDaemon {
    /// Starts the daemon with `config` on the bus at `bus_address`; returns once it logged
    /// "banhound started" (firewall set up, name owned on the bus).
    pub fn start(tag: &str, bus_address: &str, config: &str) -> RealDaemon {
        let netns = Netns::new(format!("bhdbus{tag}{}", std::process::id()));
        netns.ip(&[
            "link", "add", "own0", "type", "veth", "peer", "name", "own1",
        ]);
        netns.ip(&["addr", "add", &format!("{OWN_V4}/24"), "dev", "own0"]);
        netns.ip(&[
            "addr",
            "add",
            &format!("{OWN_V6}/64"),
            "dev",
            "own0",
            "nodad",
        ]);
        netns.ip(&["link", "set", "own0", "up"]);
        netns.ip(&["link", "set", "own1", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("banhound.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("daemon.log");
        let mut child = spawn_daemon(
            Command::new("ip")
                .args(["netns", "exec", netns.name()])
                .arg(env!("CARGO_BIN_EXE_banhound")),
            dir.path(),
            bus_address,
        );
        wait_started(&mut child, &log);
        RealDaemon {
            child,
            log,
            netns,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The elements of the nftables set `name` in the namespace (`sshd-v4`, ...), as
    /// networks; empty if the set does not exist.
    pub fn kernel_set(&self, name: &str) -> Vec<IpNet> {
        let out = Command::new("ip")
            .args(["netns", "exec", self.netns.name()])
            .args(["nft", "-j", "list", "set", "inet", "banhound", name])
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut found = Vec::new();
        for item in json["nftables"].as_array().unwrap() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                found.push(element_net(elem));
            }
        }
        found.sort();
        found
    }

    /// Every element of both sets of `jail`.
    pub fn kernel_bans(&self, jail: &str) -> Vec<IpNet> {
        let mut all = self.kernel_set(&format!("{jail}-v4"));
        all.extend(self.kernel_set(&format!("{jail}-v6")));
        all
    }
}

/// One element of `nft -j list set`: an address, a prefix, or either wrapped with its
/// timeout in {"elem": {"val": ...}}.
fn element_net(elem: &serde_json::Value) -> IpNet {
    if let Some(inner) = elem.get("elem") {
        return element_net(&inner["val"]);
    }
    if let Some(addr) = elem.as_str() {
        return IpNet::from(addr.parse::<std::net::IpAddr>().unwrap());
    }
    if let Some(prefix) = elem.get("prefix") {
        let addr = prefix["addr"].as_str().unwrap();
        let len = prefix["len"].as_u64().unwrap();
        return format!("{addr}/{len}").parse().unwrap();
    }
    panic!("unexpected set element {elem}");
}

impl Drop for RealDaemon {
    fn drop(&mut self) {
        // Child::kill signals exactly this pid (`ip netns exec` execs the daemon).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
