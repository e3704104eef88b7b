//! Fleet ban sharing end to end, with the real parts: a `redis-server` started by the test
//! (its own directory, a unix socket only, AOF on, one ACL user per host that may append
//! only to its own stream), and two or three "hosts", each a daemon lab of its own
//! (tests/support/daemon_lab.rs: network namespace with its own nftables, journald
//! namespace, the real `banhound daemon`). What is checked is what each host's kernel holds.
//!
//! The unix socket lives in the test's temp directory: network namespaces do not separate
//! the file system, so every host reaches it, and nothing listens on any network. Redis is
//! killed by pid on drop, also when a test fails.
//!
//! The figures of docs/fleet.md come from `propagation_is_measured` and
//! `a_burst_of_bans_reaches_the_other_host`, which run with `BANHOUND_FULL_FLEET=1` (a
//! short form of each runs in CI).

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;
#[path = "support/private_bus.rs"]
mod private_bus;

use daemon_lab::{sshd_config, Daemon, Lab, ATTACKER, SERVER_ATTACKER_SIDE, SSHD_SET};
use netlab::wait_for;
use private_bus::{BusPolicy, DbusDaemon};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The ACL password of host `name` (test-only secrets).
fn password(name: &str) -> String {
    format!("pw-{name}-secret")
}

/// A `redis-server` on a unix socket in its own directory, killed by pid on drop.
struct Redis {
    dir: tempfile::TempDir,
    child: Option<Child>,
    hosts: Vec<String>,
    /// Also TLS on 127.0.0.1:[`TLS_PORT`] of this network namespace (a self-signed
    /// certificate made with `openssl req`).
    tls_in: Option<String>,
}

/// Redis's TLS port, inside the namespace of [`Redis::start_with_tls`].
const TLS_PORT: u16 = 6380;

impl Redis {
    /// Starts Redis with an ACL user per host in `hosts` (see docs/fleet.md).
    fn start(hosts: &[&str]) -> Redis {
        let mut redis = Redis {
            dir: tempfile::tempdir().unwrap(),
            child: None,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            tls_in: None,
        };
        redis.spawn();
        redis
    }

    /// As [`Redis::start`], run inside network namespace `netns` with TLS on its loopback
    /// too (the unix socket stays reachable from every namespace).
    fn start_with_tls(hosts: &[&str], netns: &str) -> Redis {
        let mut redis = Redis {
            dir: tempfile::tempdir().unwrap(),
            child: None,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            tls_in: Some(netns.to_string()),
        };
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-keyout",
            ])
            .arg(redis.dir.path().join("key.pem"))
            .arg("-out")
            .arg(redis.dir.path().join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        redis.spawn();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The ACL lines of docs/fleet.md, one user per host.
    fn acl_lines(&self) -> String {
        let mut text = String::from("user default off\n");
        for host in &self.hosts {
            text.push_str(&format!(
                "user {host} on >{} resetkeys %R~banhound:bans:* %W~banhound:bans:{host} resetchannels -@all +ping +hello +auth +xadd +xread +xinfo|stream +scan\n",
                password(host)
            ));
        }
        // For the test itself: reads everything, writes nothing.
        text.push_str("user observer on >observer resetkeys %R~* -@all +ping +hello +auth +xlen +xrange +exists +scan\n");
        text
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let acl = self.dir.path().join("users.acl");
        std::fs::write(&acl, self.acl_lines()).unwrap();
        let conf = self.dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\nunixsocket {}\nunixsocketperm 700\ndir {}\nappendonly yes\nsave \"\"\naclfile {}\ndaemonize no\nlogfile {}\n",
                self.socket().display(),
                self.dir.path().display(),
                acl.display(),
                self.dir.path().join("redis.log").display()
            ),
        )
        .unwrap();
        let mut command = match &self.tls_in {
            Some(netns) => {
                let dir = self.dir.path();
                std::fs::write(
                    &conf,
                    std::fs::read_to_string(&conf).unwrap().replace("port 0\n", "")
                        + &format!(
                            "port 0\nbind 127.0.0.1\ntls-port {TLS_PORT}\ntls-cert-file {}\ntls-key-file {}\ntls-auth-clients no\n",
                            dir.join("cert.pem").display(),
                            dir.join("key.pem").display()
                        ),
                )
                .unwrap();
                // `ip netns exec` execs redis-server: the child's pid is Redis's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        let child = command
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        self.child = Some(child);
        wait_for("redis to answer", Duration::from_secs(10), || {
            self.cli("observer", "observer", &["PING"]).trim() == "PONG"
        });
    }

    /// Stops Redis (SIGTERM: it writes its AOF and exits), by pid.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals the child we spawned, by its pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// `redis-cli` as `user`; its output (errors included, as redis-cli prints them).
    fn cli(&self, user: &str, pass: &str, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(["--user", user, "--pass", pass, "--no-auth-warning"])
            .args(args)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `redis-cli` as host `name`'s ACL user.
    fn as_host(&self, name: &str, args: &[&str]) -> String {
        self.cli(name, &password(name), args)
    }

    /// How many entries `host`'s stream holds.
    fn stream_len(&self, host: &str) -> usize {
        self.cli(
            "observer",
            "observer",
            &["XLEN", &format!("banhound:bans:{host}")],
        )
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals the child we spawned, by its pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// The configuration of fleet host `name`: an sshd jail (maxretry 3, 10m), shared; with
/// `receive`, the other hosts' bans go into it too, cut to 1h at most.
fn host_config(redis: &Redis, name: &str, receive: bool) -> String {
    format!(
        "{}ignoreip = [\"192.0.2.0/24\"]\n\n[fleet]\nurl = \"{}\"\nhost = \"{name}\"\npassword = \"{}\"\nshare = [\"sshd\"]\n{}max_bantime = \"1h\"\n",
        sshd_config(3, "10m"),
        redis.url(),
        password(name),
        if receive {
            "receive_jail = \"sshd\"\npeers = [\"a\", \"b\", \"c\"]\n"
        } else {
            ""
        }
    )
}

/// A host: its lab and its running daemon.
struct Host {
    lab: Lab,
    daemon: Option<Daemon>,
}

impl Host {
    /// Fleet host `name`; `test` tells the labs of concurrent tests apart.
    fn start(test: &str, name: &str, redis: &Redis, receive: bool) -> Host {
        let mut lab = Lab::new(&format!("{test}{name}"), &host_config(redis, name, receive));
        let daemon = lab.start();
        Host {
            lab,
            daemon: Some(daemon),
        }
    }

    /// As [`Host::start`], serving the control interface on `bus`.
    fn start_on_bus(test: &str, name: &str, redis: &Redis, bus: &DbusDaemon) -> Host {
        let mut lab = Lab::new(&format!("{test}{name}"), &host_config(redis, name, true));
        let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
        Host {
            lab,
            daemon: Some(daemon),
        }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn restart(&mut self) {
        if let Some(d) = self.daemon.take() {
            assert!(d.stop());
        }
        self.daemon = Some(self.lab.start());
    }

    fn wait_banned(&self, addr: &str, within: Duration) {
        wait_for(&format!("{addr} in the kernel set"), within, || {
            self.lab.is_banned_in(SSHD_SET, addr)
        });
    }
}

/// Fleet bans in a daemon's log.
fn fleet_bans(log: &str) -> usize {
    log.matches("from the fleet (host ").count()
}

#[test]
fn a_ban_on_one_host_reaches_the_others_and_is_not_echoed() {
    let redis = Redis::start(&["a", "b", "c"]);
    let a = Host::start("fe", "a", &redis, false);
    let b = Host::start("fe", "b", &redis, true);
    let c = Host::start("fe", "c", &redis, true);
    a.lab.fail_logins(ATTACKER, 3);
    a.wait_banned(ATTACKER, Duration::from_secs(10));
    b.wait_banned(ATTACKER, Duration::from_secs(10));
    c.wait_banned(ATTACKER, Duration::from_secs(10));
    let log = b.daemon().log();
    assert!(
        log.lines().any(
            |l| l.contains(&format!("Banned {ATTACKER} in jail sshd for "))
                && l.contains("from the fleet (host a)")
        ),
        "{log}"
    );
    // The remote ban keeps the origin's remaining time, not a fresh 10 minutes.
    let timeout = b.lab.banned_in(SSHD_SET)[0].1.unwrap();
    assert!(timeout <= 600, "{timeout}");
    assert_eq!(redis.stream_len("a"), 1);
    // B and C applied it but publish nothing: no echo.
    std::thread::sleep(Duration::from_millis(500));
    for host in ["b", "c"] {
        assert_eq!(
            redis
                .cli(
                    "observer",
                    "observer",
                    &["EXISTS", &format!("banhound:bans:{host}")]
                )
                .trim(),
            "0"
        );
    }
}

#[test]
fn hostile_entries_are_refused_or_cut_down_and_reported() {
    let redis = Redis::start(&["a", "b", "c"]);
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let b = Host::start_on_bus("fh", "b", &redis, &bus);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let ten_years_us = now_us + 10 * 365 * 86_400 * 1_000_000;
    let hour_us = now_us + 3_600 * 1_000_000;
    let add = |target: &str, until: u128| {
        let reply = redis.as_host(
            "a",
            &[
                "XADD",
                "banhound:bans:a",
                "*",
                "jail",
                "sshd",
                "target",
                target,
                "since_us",
                &now_us.to_string(),
                "until_us",
                &until.to_string(),
                "offence",
                "1",
                "failures",
                "5",
                "reason",
                "logs",
            ],
        );
        assert!(reply.contains('-'), "XADD refused: {reply}");
    };
    for target in [
        "0.0.0.0/0",
        "::/0",
        &format!("{SERVER_ATTACKER_SIDE}/32"),
        "192.0.2.5/32",
        "10.0.0.0/8",
        "127.0.0.1/32",
    ] {
        add(target, hour_us);
    }
    add("not an address", hour_us);
    add("198.51.100.200/32", ten_years_us);
    // The last one is fine: once it is in, every earlier entry has been judged.
    add("203.0.113.99/32", hour_us);
    b.wait_banned("203.0.113.99", Duration::from_secs(15));
    let log = b.daemon().log();
    let refused = log.matches("fleet: refused").count();
    assert_eq!(refused, 7, "{log}");
    for what in [
        "0.0.0.0/0",
        "::/0",
        SERVER_ATTACKER_SIDE,
        "192.0.2.5",
        "10.0.0.0/8",
        "127.0.0.1",
        "not an address",
    ] {
        assert!(
            log.lines().any(|l| l.contains("fleet: refused")
                && l.contains("from host a")
                && l.contains(what)),
            "no refusal naming {what} and host a:\n{log}"
        );
    }
    // Ten years asked, one hour (max_bantime) given, and said so.
    assert!(
        log.contains("the ban of 198.51.100.200 from host a is cut down to max_bantime 1h"),
        "{log}"
    );
    let banned = b.lab.banned_in(SSHD_SET);
    let long = banned.iter().find(|(a, _)| a == "198.51.100.200").unwrap();
    assert!(long.1.unwrap() <= 3_600, "{banned:?}");
    assert_eq!(
        banned.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["198.51.100.200", "203.0.113.99"]
    );
    // A host cannot write in another host's name: Redis refuses it.
    let forged = redis.as_host(
        "c",
        &[
            "XADD",
            "banhound:bans:a",
            "*",
            "jail",
            "sshd",
            "target",
            "203.0.113.7/32",
        ],
    );
    assert!(forged.contains("NOPERM"), "{forged}");
    assert!(!b.lab.is_banned_in(SSHD_SET, "203.0.113.7"));
    // What `banhound status` tells of it.
    let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleet = &status["fleet"];
    assert_eq!(fleet["host"], "b", "{status}");
    assert_eq!(fleet["publishing"], true, "{status}");
    assert_eq!(fleet["subscribed"], true, "{status}");
    assert_eq!(fleet["remote_applied"], 2, "{status}");
    assert_eq!(fleet["remote_refused"], 7, "{status}");
    assert_eq!(fleet["remote_cut_down"], 1, "{status}");
    assert_eq!(fleet["publish_backlog"], 0, "{status}");
    assert!(
        fleet["hosts"].as_array().unwrap().contains(&"a".into()),
        "{status}"
    );
    let text = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("|- Fleet:            host b, connected; 0 published, 0 waiting;")
            && text.contains("remote bans: 2 applied, 7 refused, 1 cut down, 0 skipped"),
        "{text}"
    );
}

#[test]
fn bans_made_while_redis_is_down_are_sent_once_it_is_back() {
    let mut redis = Redis::start(&["a", "b"]);
    let a = Host::start("fd", "a", &redis, false);
    let b = Host::start("fd", "b", &redis, true);
    redis.stop();
    let addrs = ["203.0.113.10", "203.0.113.11", "203.0.113.12"];
    for addr in addrs {
        a.lab.fail_logins(addr, 3);
    }
    // Local banning does not wait for Redis.
    for addr in addrs {
        a.wait_banned(addr, Duration::from_secs(10));
    }
    a.daemon().wait_log("bans wait in the outbox", 1);
    redis.spawn();
    for addr in addrs {
        b.wait_banned(addr, Duration::from_secs(60));
    }
    assert_eq!(redis.stream_len("a"), 3);
    assert_eq!(fleet_bans(&b.daemon().log()), 3);
}

#[test]
fn a_stopped_host_catches_up_and_applies_nothing_twice() {
    let redis = Redis::start(&["a", "b"]);
    let a = Host::start("fs", "a", &redis, false);
    let mut b = Host::start("fs", "b", &redis, true);
    a.lab.fail_logins("203.0.113.20", 3);
    b.wait_banned("203.0.113.20", Duration::from_secs(10));
    assert!(b.daemon.take().unwrap().stop());
    let addrs = ["203.0.113.21", "203.0.113.22", "203.0.113.23"];
    for addr in addrs {
        a.lab.fail_logins(addr, 3);
        a.wait_banned(addr, Duration::from_secs(10));
    }
    b.daemon = Some(b.lab.start());
    for addr in addrs {
        b.wait_banned(addr, Duration::from_secs(15));
    }
    // The one applied before the stop was not applied again (restored, not re-read).
    assert_eq!(fleet_bans(&b.daemon().log()), 3, "{}", b.daemon().log());
    b.restart();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fleet_bans(&b.daemon().log()), 0, "{}", b.daemon().log());
    assert_eq!(b.lab.banned_in(SSHD_SET).len(), 4);
}

/// A crash after Redis took an entry but before its outbox row was deleted: the resend
/// carries the same id and Redis refuses it, so the stream holds it once.
#[test]
fn a_resent_outbox_row_is_not_added_twice() {
    let redis = Redis::start(&["a", "b"]);
    let mut a = Host::start("fr", "a", &redis, false);
    a.lab.fail_logins("203.0.113.30", 3);
    wait_for("the entry in Redis", Duration::from_secs(10), || {
        redis.stream_len("a") == 1
    });
    assert!(a.daemon.take().unwrap().stop());
    // Put the sent row back, as a crash between XADD and DELETE leaves it.
    let db = a.lab.state_dir().join("state.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let id: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'fleet_outbox'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "INSERT INTO fleet_outbox (id, jail, target, started_us, expires_us, offence, failures, reason)
         VALUES (?1, 'sshd', '203.0.113.30/32', 1, NULL, 1, 3, 'logs')",
        [id],
    )
    .unwrap();
    drop(conn);
    a.daemon = Some(a.lab.start());
    a.daemon().wait_log("were already in banhound:bans:a", 1);
    assert_eq!(redis.stream_len("a"), 1);
    let left: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM fleet_outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

fn full() -> bool {
    std::env::var_os("BANHOUND_FULL_FLEET").is_some()
}

/// When each address was banned according to a daemon's log lines containing `kind`
/// (stderr lines start with an RFC 3339 time), by address.
fn ban_times(log: &str, kind: &str) -> std::collections::BTreeMap<String, jiff::Timestamp> {
    log.lines()
        .filter(|l| l.contains(kind))
        .filter_map(|l| {
            let time = l.split_whitespace().next()?.parse().ok()?;
            let addr = l.split("Banned ").nth(1)?.split(' ').next()?;
            Some((addr.to_string(), time))
        })
        .collect()
}

/// One ban at a time on A: from A's ban (its log line, written once its firewall call
/// returned) to B's (the same, on B), by the two daemons' log times (one clock).
#[test]
fn propagation_is_measured() {
    let rounds = if full() { 200 } else { 10 };
    let redis = Redis::start(&["a", "b"]);
    let a = Host::start("fp", "a", &redis, false);
    let b = Host::start("fp", "b", &redis, true);
    for i in 0..rounds {
        let addr = format!("198.18.{}.{}", i / 250, 1 + i % 250);
        a.lab.fail_logins(&addr, 3);
        b.wait_banned(&addr, Duration::from_secs(10));
    }
    let on_a = ban_times(&a.daemon().log(), "failures");
    let on_b = ban_times(&b.daemon().log(), "from the fleet");
    let mut lags: Vec<f64> = on_a
        .iter()
        .map(|(addr, at)| {
            let applied = on_b
                .get(addr)
                .unwrap_or_else(|| panic!("{addr} not applied on B"));
            applied.duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    assert_eq!(lags.len(), rounds as usize);
    assert!(lags.iter().all(|l| *l >= 0.0), "{lags:?}");
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    eprintln!(
        "fleet propagation (A's ban to B's) over {rounds} bans: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p(0.5),
        p(0.99),
        lags[lags.len() - 1]
    );
}

/// Many bans at once on A: failures from distinct addresses (maxretry 1) are in A's
/// journal before A starts, so A decides them in a few batches; the figures are from A's
/// first ban line to B's last one (the daemons' log times), and B's kernel holds them all.
#[test]
fn a_burst_of_bans_reaches_the_other_host() {
    let count: usize = if full() { 10_000 } else { 300 };
    let redis = Redis::start(&["a", "b"]);
    let mut a_lab = Lab::new(
        "fua",
        &host_config(&redis, "a", false).replace("maxretry = 3", "maxretry = 1"),
    );
    let b = Host::start("fu", "b", &redis, true);
    let addrs: Vec<String> = (0..count)
        .map(|i| format!("10.{}.{}.{}", 1 + i / 62_500, (i / 250) % 250, 1 + i % 250))
        .collect();
    let messages: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            format!("Failed password for invalid user u{i} from {addr} port 4{i:04} ssh2")
        })
        .collect();
    for chunk in messages.chunks(2_000) {
        a_lab.journald().sshd(chunk);
    }
    let a = a_lab.start();
    wait_for("every ban in B's kernel", Duration::from_secs(120), || {
        b.lab.banned_in(SSHD_SET).len() >= count
    });
    assert_eq!(redis.stream_len("a"), count);
    let on_a = ban_times(&a.log(), "failures");
    let on_b = ban_times(&b.daemon().log(), "from the fleet");
    assert_eq!((on_a.len(), on_b.len()), (count, count));
    let ms = |from: &jiff::Timestamp, to: &jiff::Timestamp| {
        to.duration_since(*from).as_secs_f64() * 1000.0
    };
    let (a_first, a_last) = (on_a.values().min().unwrap(), on_a.values().max().unwrap());
    let b_last = on_b.values().max().unwrap();
    eprintln!(
        "fleet burst: {count} bans on A within {:.0} ms; the last in B's kernel {:.0} ms after A's first ban, {:.0} ms after A's last",
        ms(a_first, a_last),
        ms(a_first, b_last),
        ms(a_last, b_last)
    );
}

/// `rediss://`: A publishes over TLS (Redis in A's namespace, its loopback), B reads over the
/// unix socket of the same Redis.
#[test]
fn bans_are_published_over_tls() {
    let mut a_lab = Lab::new("fta", "");
    let redis = Redis::start_with_tls(&["a", "b"], a_lab.server().name());
    a_lab.write_config(&host_config(&redis, "a", false).replace(
        &format!("url = \"{}\"", redis.url()),
        &format!("url = \"rediss://127.0.0.1:{TLS_PORT}#insecure\""),
    ));
    let config = std::fs::read_to_string(a_lab.config_path()).unwrap();
    assert!(
        config.contains("url = \"rediss://127.0.0.1:") && !config.contains("unix://"),
        "{config}"
    );
    let a = a_lab.start();
    let b = Host::start("ft", "b", &redis, true);
    a_lab.fail_logins(ATTACKER, 3);
    b.wait_banned(ATTACKER, Duration::from_secs(15));
    assert_eq!(redis.stream_len("a"), 1);
    assert!(!a.log().contains("cannot publish"), "{}", a.log());
}
