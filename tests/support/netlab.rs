//! Network-namespace test lab shared by the integration tests that need real packets
//! (tests/nftables.rs, tests/firewalld.rs, tests/daemon.rs via daemon_lab.rs; tests/dbus
//! only polls with [`wait_for`]): commands, namespaces with veth links, a TCP listener, and
//! the probe "does a connection get through".
//!
//! Namespaces are entered per thread with `setns(CLONE_NEWNET)`: a network namespace is a
//! property of the thread, and sockets stay in the namespace they were created in, so
//! listeners, clients and in-process backends need no helper binary; a process spawned from
//! such a thread (`nft`) inherits the namespace. Each guard removes what it created by name
//! in `Drop` (deleting a namespace also removes its veths and its nftables ruleset), also
//! when a test panics.
//!
//! Included with `#[path]` as the crate-level module `netlab`; daemon_lab.rs builds on it.
// Shared between test binaries that each use only a part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the [`Listener`] sends on every connection: reading it back proves the connection
/// reached the listener, not just some socket that completed a handshake.
const GREETING: &[u8; 2] = b"hi";
/// Upper bound for the greeting once connected; only a broken lab ever waits this long.
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a command (`args[0]` with the rest as arguments), panics unless it succeeds, and
/// returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(ns);
                f()
            })
            .join()
            .unwrap()
    })
}

/// Moves the calling thread into the network namespace `ns` (for threads that stay there).
pub fn enter_netns(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Polls `done` every 20 ms; panics naming `what` if it does not hold within `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (address, seconds until it expires) of the elements in `nft -j list set ...` output,
/// sorted.
pub fn set_elements(json: &[u8]) -> Vec<(String, Option<u64>)> {
    let json: serde_json::Value = serde_json::from_slice(json).unwrap();
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

/// A network namespace with its loopback up, deleted (by name) on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A namespace with exactly this name (the caller keeps it unique, e.g. with the pid).
    pub fn new(name: impl Into<String>) -> Netns {
        let name = name.into();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace named `bh-{role}-{pid}-{counter}`: unique across parallel tests and runs.
    pub fn unique(role: &str) -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Netns::new(format!("bh-{role}-{}-{n}", std::process::id()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// `nft ARGS` inside the namespace.
    pub fn nft(&self, args: &[&str]) -> String {
        let mut all = vec!["nft"];
        all.extend_from_slice(args);
        self.run(|| sh(&all))
    }

    /// `ip netns exec NAME ARGS`: for programs that need the namespace's /etc/netns view
    /// or /sys (sysctl).
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Runs `f` on a thread inside this namespace (see [`in_netns`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.name, f)
    }

    /// Links this namespace to `peer` with a veth pair: interface `local.0` here and
    /// `remote.0` there, each with its addresses (CIDR; IPv6 ones without duplicate address
    /// detection, so they are usable at once), both up.
    pub fn veth(&self, local: (&str, &[&str]), peer: &Netns, remote: (&str, &[&str])) {
        self.ip(&[
            "link", "add", local.0, "type", "veth", "peer", "name", remote.0, "netns", &peer.name,
        ]);
        for (ns, (ifname, addrs)) in [(self, local), (peer, remote)] {
            for addr in addrs {
                if addr.contains(':') {
                    ns.ip(&["-6", "addr", "add", addr, "dev", ifname, "nodad"]);
                } else {
                    ns.ip(&["addr", "add", addr, "dev", ifname]);
                }
            }
            ns.ip(&["link", "set", ifname, "up"]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Also removes the veths and every nftables object in it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP listener on `[::]:port` in a namespace (IPV6_V6ONLY is off by default on Linux, so
/// it takes IPv4 too), sending [`GREETING`] on every connection and closing it, so the
/// backlog never fills. Its thread stops on drop.
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start(ns: &Netns, port: u16) -> Listener {
        let listener = ns.run(|| TcpListener::bind(("::", port)).unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(GREETING);
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

/// How a connection attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connected, and the listener's greeting arrived.
    Connected,
    /// No answer within the timeout: dropped.
    TimedOut,
    /// A TCP reset (or ICMP port unreachable): ECONNREFUSED.
    Refused,
    /// Failed at once with another error, e.g. EHOSTUNREACH from an ICMP
    /// admin-prohibited reject.
    Unreachable(ErrorKind),
}

/// Tries a TCP connection from namespace `from` to `to`, waiting at most `timeout` for the
/// handshake; a [`Listener`] is expected behind `to`.
pub fn connect(from: &str, to: SocketAddr, timeout: Duration) -> Outcome {
    in_netns(from, || match TcpStream::connect_timeout(&to, timeout) {
        Ok(mut stream) => {
            let mut buf = [0u8; GREETING.len()];
            stream.set_read_timeout(Some(GREETING_TIMEOUT)).unwrap();
            stream.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, GREETING);
            Outcome::Connected
        }
        Err(e) if e.kind() == ErrorKind::TimedOut => Outcome::TimedOut,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(e) => Outcome::Unreachable(e.kind()),
    })
}
