//! A booted Debian 12 host for the tests: systemd as PID 1 under `systemd-nspawn -b`, with
//! its real journald, system bus, OpenSSH with PAM, nftables and firewalld, in a network
//! namespace of its own ("server"), wired by veth pairs to an "attacker", a second attacker
//! and a "friend" namespace. banhound goes in the way an admin installs it (`install.sh` with
//! `BANHOUND_BIN=`, then `systemctl enable --now banhound`).
//!
//! The root is built once by `build-root.sh` and cached under /var/lib/machines; each host
//! boots an overlay of it (writes go to a directory of its own; a copy where overlayfs is
//! not possible), so no test changes the cache or sees another test's changes. The veths are created inside the server namespace
//! with their peers moved straight into the other namespaces: the root namespace never sees
//! them, and nothing here touches the machine's own firewall.
//!
//! [`Host`]'s `Drop` powers the host off (and kills nspawn by its pid if that hangs), unmounts
//! and removes the overlay, and deletes the namespaces, also when a test panics. Names carry
//! the test process's pid and a counter, so parallel test binaries never collide.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netlab::{in_netns, set_elements, sh, wait_for, Netns};

/// The server's address towards the attacker, and the attacker's.
pub const SERVER_V4: &str = "192.0.2.1";
pub const SERVER_V6: &str = "2001:db8:a::1";
pub const ATTACKER_V4: &str = "192.0.2.10";
pub const ATTACKER_V6: &str = "2001:db8:a::10";
/// A second attacker, on a link of its own.
pub const SERVER2_V4: &str = "203.0.113.1";
pub const ATTACKER2_V4: &str = "203.0.113.10";
/// The friend, who never fails a login.
pub const SERVER_FRIEND_V4: &str = "198.51.100.1";
pub const SERVER_FRIEND_V6: &str = "2001:db8:f::1";
/// The server's interface towards the attacker (the one a firewalld zone is set on).
pub const ATTACKER_IF: &str = "att0";
/// The valid user of the host and its password (build-root.sh creates it).
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct-horse";

/// Where the container sees the repository and the binary under test.
const SRC_IN_HOST: &str = "/opt/banhound-src";
const BIN_IN_HOST: &str = "/opt/banhound-bin/banhound";
const PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
/// Boot, poweroff and reboot of a small root take seconds; this only bounds a broken host.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one ssh login may take. A login from an address banned while it is under way
/// (sshd logged "Invalid user", the failure that completes maxretry, and banhound banned
/// within milliseconds, before the client sent its password) never ends by itself: its
/// packets are dropped from then on, and the client waits in the authentication exchange,
/// which ConnectTimeout does not cover. A real login takes a few seconds (PAM's delay after
/// a wrong password included).
pub const LOGIN_LIMIT: Duration = Duration::from_secs(15);

/// The cached root (built on first use by this process, or found in the cache).
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/realhost/build-root.sh");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run build-root.sh");
        assert!(out.status.success(), "build-root.sh failed");
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        println!(
            "test root {} ready in {:.1?}",
            path.display(),
            started.elapsed()
        );
        path
    })
}

/// What a failed ssh login attempt ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// sshd answered and refused the password.
    Refused,
    /// No connection (dropped: banned), a login cut off at [`LOGIN_LIMIT`] (banned while
    /// under way), or another ssh failure.
    NoConnection,
    /// The password was right.
    LoggedIn,
}

/// A booted host with its namespaces. Fields drop after `Drop::drop` ran, in this order.
pub struct Host {
    id: String,
    dir: PathBuf,
    nspawn: Option<Child>,
    leader: i32,
    mounted: bool,
    pub server: Netns,
    pub attacker: Netns,
    pub attacker2: Netns,
    pub friend: Netns,
}

impl Host {
    /// Boots a fresh copy of the root; returns once systemd says the system is running.
    pub fn boot() -> Host {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = root();
        let id = format!("bhrh-{}-{n}", std::process::id());
        let server = Netns::unique("rhs");
        let attacker = Netns::unique("rha");
        let attacker2 = Netns::unique("rhb");
        let friend = Netns::unique("rhf");
        server.veth(
            (ATTACKER_IF, &["192.0.2.1/24", "2001:db8:a::1/64"]),
            &attacker,
            ("eth0", &["192.0.2.10/24", "2001:db8:a::10/64"]),
        );
        server.veth(
            ("att2", &["203.0.113.1/24"]),
            &attacker2,
            ("eth0", &["203.0.113.10/24"]),
        );
        server.veth(
            ("fri0", &["198.51.100.1/24", "2001:db8:f::1/64"]),
            &friend,
            ("eth0", &["198.51.100.10/24", "2001:db8:f::10/64"]),
        );
        let dir = PathBuf::from(format!("/var/tmp/{id}"));
        let mut host = Host {
            id,
            dir,
            nspawn: None,
            leader: 0,
            mounted: false,
            server,
            attacker,
            attacker2,
            friend,
        };
        for sub in ["upper", "work", "merged"] {
            fs::create_dir_all(host.dir.join(sub)).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            root.display(),
            host.dir.join("upper").display(),
            host.dir.join("work").display()
        );
        let merged = host.merged();
        let overlay = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .status()
            .expect("mount");
        if overlay.success() {
            host.mounted = true;
        } else {
            // Where /var/tmp cannot hold an overlay's upper layer (itself on overlayfs, as in
            // some CI containers), a copy does the same, slower.
            println!("no overlay on /var/tmp: booting a copy of the root");
            sh(&[
                "cp",
                "-a",
                "--reflink=auto",
                &format!("{}/.", root.display()),
                merged.to_str().unwrap(),
            ]);
        }
        host.start();
        host
    }

    fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// Starts systemd-nspawn on the overlay and waits until the system is running.
    fn start(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nspawn.log"))
            .unwrap();
        let child = Command::new("systemd-nspawn")
            .args(["-b", "-D"])
            .arg(self.merged())
            .args(["-M", &self.id])
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                self.server.name()
            ))
            .args([
                "--capability=CAP_NET_ADMIN",
                "--register=no",
                "--keep-unit",
                "--console=passive",
            ])
            .arg(format!(
                "--bind-ro={}:{SRC_IN_HOST}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg(format!(
                "--bind-ro={}:{BIN_IN_HOST}",
                env!("CARGO_BIN_EXE_banhound")
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn");
        let pid = child.id();
        self.nspawn = Some(child);
        // nspawn forks a helper before the container's init: wait for the child that runs
        // systemd.
        let mut leader = 0;
        wait_for("the container's init", BOOT_TIMEOUT, || {
            leader = child_of(pid)
                .filter(|child| {
                    fs::read_to_string(format!("/proc/{child}/comm"))
                        .is_ok_and(|comm| comm.trim() == "systemd")
                })
                .unwrap_or(0);
            leader != 0 || !self.nspawn_alive()
        });
        assert!(self.nspawn_alive(), "nspawn exited:\n{}", self.nspawn_log());
        self.leader = leader;
        let started = Instant::now();
        loop {
            let out = self.run("systemctl is-system-running");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" {
                break;
            }
            if state == "degraded" {
                println!(
                    "host booted degraded:\n{}",
                    self.sh("systemctl --failed --no-pager")
                );
                break;
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT && self.nspawn_alive(),
                "host did not boot (state {state:?}, {}):\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.nspawn_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn nspawn_alive(&mut self) -> bool {
        matches!(self.nspawn.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn nspawn_log(&self) -> String {
        fs::read_to_string(self.dir.join("nspawn.log")).unwrap_or_default()
    }

    /// Runs `script` with `sh -c` inside the host (all its namespaces, a clean environment).
    pub fn run(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string()])
            .args(["-m", "-u", "-i", "-n", "-p", "-C", "--wdns=/"])
            .args(["env", "-i", PATH, "LANG=C.UTF-8", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// [`Host::run`], panicking unless it succeeds; its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "in the host: {script}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file in the host's file system (parents created).
    pub fn write(&self, path: &str, text: &str) {
        let target = self.merged().join(path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, text).unwrap();
    }

    /// Removes a file from the host's file system.
    pub fn remove(&self, path: &str) {
        fs::remove_file(self.merged().join(path.trim_start_matches('/'))).unwrap();
    }

    /// Installs banhound as the README says: `install.sh` with the prebuilt binary.
    pub fn install(&self) {
        self.sh(&format!(
            "cd {SRC_IN_HOST} && BANHOUND_BIN={BIN_IN_HOST} ./install.sh"
        ));
    }

    /// Copies `deb` into the host and installs it with `dpkg -i`, as an admin installs the
    /// package; the output of dpkg.
    pub fn install_deb(&self, deb: &Path) -> Output {
        let inside = "/root/banhound.deb";
        fs::copy(deb, self.merged().join(inside.trim_start_matches('/'))).unwrap();
        self.run(&format!("dpkg -i {inside}"))
    }

    /// The installer run as on a server without Rust: no `BANHOUND_BIN`.
    pub fn install_without_binary(&self) -> Output {
        self.run(&format!("cd {SRC_IN_HOST} && ./install.sh"))
    }

    /// install, `systemctl enable --now banhound`.
    pub fn install_and_start(&self) {
        self.install();
        self.sh("systemctl enable --now banhound");
    }

    /// `systemctl enable --now firewalld`, returning once it answers.
    pub fn start_firewalld(&self) {
        self.sh("systemctl enable --now firewalld");
        wait_for("firewalld running", BOOT_TIMEOUT, || {
            self.run("firewall-cmd --state").status.success()
        });
    }

    /// `systemctl reboot`, then boots the host again once nspawn exited. The network
    /// namespace outlives the container, so its ruleset is flushed as a real reboot would.
    pub fn reboot(&mut self) {
        let _ = self.run("systemctl reboot");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while self.nspawn_alive() {
            assert!(
                Instant::now() < deadline,
                "the host did not go down for reboot"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.nspawn = None;
        self.server.nft(&["flush", "ruleset"]);
        self.start();
    }

    /// One failed password login from `from` as `user` to `to`; the attempt's outcome.
    pub fn fail_login(&self, from: &Netns, user: &str, to: &str) -> Login {
        self.login(from, user, "wrong", to)
    }

    pub fn login(&self, from: &Netns, user: &str, password: &str, to: &str) -> Login {
        let out = Command::new("ip")
            .args(["netns", "exec", from.name()])
            .args(["timeout", &LOGIN_LIMIT.as_secs().to_string()])
            .args(["sshpass", "-p", password, "ssh"])
            .args(["-o", "PreferredAuthentications=password"])
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "ConnectTimeout=3"])
            .args(["-o", "LogLevel=ERROR"])
            .arg(format!("{user}@{to}"))
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .expect("sshpass");
        // With one password prompt, ssh itself reports the refusal (sshpass's own "incorrect
        // password" status needs a second prompt).
        match out.status.code() {
            Some(0) => Login::LoggedIn,
            _ if String::from_utf8_lossy(&out.stderr).contains("Permission denied") => {
                Login::Refused
            }
            _ => Login::NoConnection,
        }
    }

    /// Whether a TCP connection from `from` to `to` port 22 gets sshd's banner.
    pub fn reaches_ssh(&self, from: &Netns, to: &str) -> bool {
        let addr = SocketAddr::new(to.parse().unwrap(), 22);
        in_netns(from.name(), || {
            let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))
            else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
            let mut banner = [0u8; 4];
            stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
        })
    }

    /// (address, seconds left) of the elements of `inet banhound SET`, read with `nft`
    /// inside the host; empty when the set does not exist.
    pub fn nft_set(&self, set: &str) -> Vec<(String, Option<u64>)> {
        let out = self.run(&format!("nft -j list set inet banhound {set}"));
        if !out.status.success() {
            return Vec::new();
        }
        set_elements(&out.stdout)
    }

    /// Seconds left on `addr`'s element in `set`, if it is there.
    pub fn nft_expires(&self, set: &str, addr: &str) -> Option<u64> {
        self.nft_set(set)
            .into_iter()
            .find(|(a, _)| a == addr)
            .map(|(_, expires)| expires.unwrap_or(u64::MAX))
    }

    /// The entries of a firewalld ipset.
    pub fn ipset_entries(&self, ipset: &str) -> Vec<String> {
        let out = self.run(&format!("firewall-cmd --ipset={ipset} --get-entries"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// (wall-clock time, message) of the journal entries `journalctl ARGS` selects.
    pub fn journal(&self, args: &str) -> Vec<(SystemTime, String)> {
        let text = self.sh(&format!("journalctl -q --no-pager -o json {args}"));
        text.lines()
            .filter_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                let us: u64 = v["__REALTIME_TIMESTAMP"].as_str()?.parse().ok()?;
                let message = v["MESSAGE"].as_str()?.to_string();
                Some((UNIX_EPOCH + Duration::from_micros(us), message))
            })
            .collect()
    }

    /// `banhound status JAIL --json` inside the host.
    pub fn jail_status(&self, jail: &str) -> serde_json::Value {
        serde_json::from_str(&self.sh(&format!("banhound status {jail} --json"))).unwrap()
    }

    /// Whether `systemctl is-active UNIT` says active.
    pub fn is_active(&self, unit: &str) -> bool {
        self.run(&format!("systemctl is-active {unit}"))
            .status
            .success()
    }
}

/// The first child process of `pid` (the container's init is nspawn's child).
fn child_of(pid: u32) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.nspawn_alive() {
            let _ = self.run("systemctl poweroff");
            let deadline = Instant::now() + POWEROFF_TIMEOUT;
            while self.nspawn_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if self.nspawn_alive() && self.leader > 0 {
            // Killing a PID namespace's init kills everything in it; killing nspawn alone
            // would leave the container running.
            let _ = Command::new("kill")
                .args(["-KILL", &self.leader.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.nspawn_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(mut child) = self.nspawn.take() {
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        let merged = self.merged();
        // nspawn's lock on the image, named after its device and inode.
        if let Ok(meta) = fs::metadata(&merged) {
            let _ = fs::remove_file(format!(
                "/run/systemd/nspawn/locks/inode-{}:{}",
                meta.dev(),
                meta.ino()
            ));
        }
        let unmounted = || {
            Command::new("umount")
                .arg(&merged)
                .status()
                .is_ok_and(|s| s.success())
        };
        if self.mounted && !unmounted() {
            let _ = Command::new("umount").arg("-l").arg(&merged).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
        // nspawn leaves these behind; other hosts may still use the shared ones.
        let _ = fs::remove_dir(format!("/run/systemd/nspawn/propagate/{}", self.id));
        for dir in ["propagate", "locks", ""] {
            let _ = fs::remove_dir(format!("/run/systemd/nspawn/{dir}"));
        }
    }
}
