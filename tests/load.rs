//! The load fault test (Reliability issue, fault 5): a flood of failing sshd logins from
//! 20,000 addresses against the real `banhound daemon`, with real nftables and its control
//! interface on a private bus. Sampled every 200 ms while it runs, and checked:
//!
//! - memory is bounded: the daemon's RSS once it has read the whole flood is at most its RSS
//!   a quarter into it plus a small margin ([`rss_margin_kib`]), and the addresses counted
//!   below maxretry never exceed the jail's `max_tracked`;
//! - the daemon keeps up: it reads everything, and in the full form never trails the writer
//!   by more than 2 s of flood (its committed file position, read from its state database);
//! - bans keep flowing: failures logged in every window of the flood led to bans (1 s
//!   windows in the short form, 10 s in the full one, where bans must also be made in every
//!   10 s of wall time), every attacker is banned, and the bans counted on D-Bus are those
//!   committed;
//! - the kernel holds the bans: every 2 s, every ban the daemon reports (but those ending
//!   within 2 s) is in the nftables set, and at the end the set holds nothing more;
//! - the control interface answers: every `GetStatus` and every jail property read made
//!   during the flood returns within 100 ms in the full form (maximum, p99 and median are
//!   reported, with `Peer.Ping` and an idle baseline to compare).
//!
//! Why a log file and not the journal: a standalone journald on the 2-core development
//! machine stored 200,000 native-protocol entries in 16.7 s, about 12,000 entries/s (load
//! average 12.7), a quarter of the 50,000 entries/s this test must sustain; fed through
//! journald, the test would measure journald. The file jail reads the same sshd lines
//! through the same filter, tracker, state database and firewall. The writer appends
//! syslog lines in batches every 10 ms, sized by the time elapsed so the rate holds even
//! when the thread is scheduled late.
//!
//! The flood: a warm-up of one line from each of the 20,000 addresses, written and read
//! before anything is measured (so the flood meets every address tracked, or the table full),
//! then 80% of the lines from "attackers" sending 10 lines/s each on average (4,000 of them at
//! 50,000 lines/s) and 20% from the other addresses, "scanners" (0.6 lines/s each at 50,000
//! lines/s: about 6 within the 10 s findtime, mostly counted below maxretry 10, sometimes
//! banned). Attackers' rates are spread from 0.2x to 1.8x the mean and bans last 5 s, so
//! attackers are banned again and again, at different times. Seeded: every run writes the
//! same lines.
//!
//! Two variants: every address tracked (the default `max_tracked`, 100,000), and
//! `max_tracked = 5000`, a quarter of the addresses, where the eviction policy documented in
//! the README (stale windows first, then the quietest tenth) runs all the time.
//!
//! Forms: by default a short flood, 2,000 lines/s for 10 s, which the unoptimised build
//! `cargo test` makes keeps up with on a loaded machine (both variants take about 30 s);
//! with `BANHOUND_FULL_FAULTS=1` the full one, 50,000 lines/s for 60 s, to be run optimised
//! (the build that is deployed):
//! `BANHOUND_FULL_FAULTS=1 cargo test --release --test load -- --nocapture`.
//! The figures are printed with `--nocapture`. The two variants never run at the same time:
//! on two cores they would measure each other.
//!
//! Every namespace, journald, bus, daemon and thread is stopped in `Drop`, also when an
//! assertion fails. Needs root, nft, ip and dbus-daemon (see tests/daemon.rs).

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;
#[path = "support/private_bus.rs"]
mod private_bus;
#[path = "support/seeded.rs"]
mod seeded;

use banhound::bus::proxy::{JailProxy, ManagerProxy, StatusRecord};
use daemon_lab::{Lab, PORT};
use private_bus::{BusPolicy, DbusDaemon};
use seeded::Rng;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const JAIL: &str = "sshd-load";
/// The nftables set holding the jail's IPv4 bans.
const SET: &str = "sshd-load-v4";
const ADDRESSES: u64 = 20_000;
/// Lines per second of each attacker: banned about a second after each ban ends.
const ATTACKER_RATE: u64 = 10;
const ATTACKER_SHARE_PERCENT: u64 = 80;
/// Lines per second of the short form.
const SHORT_RATE: u64 = 2_000;
const MAXRETRY: u32 = 10;
const FINDTIME: &str = "10s";
const BANTIME: &str = "5s";
const SEED: u64 = 0x6c6f_6164;
const WRITE_EVERY: Duration = Duration::from_millis(10);
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// The requirement: the control interface answers within this while under load.
const DBUS_BOUND: Duration = Duration::from_millis(100);
/// The short form's bound. The unoptimised build matches a line in about 20 us of CPU
/// (the optimised one in 2 to 3), and on the 2-core machine shared with other builds (load
/// average 11) it got a tenth of a core: calls took up to 0.6 s there, so 100 ms cannot be
/// promised. This still catches a control interface left waiting behind the backlog (before
/// the fix, a status request waited 14 s behind a flood of 5 s).
const SHORT_DBUS_BOUND: Duration = Duration::from_secs(2);
/// How long the daemon may take to read what is left once the flood stops.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How big a flood.
#[derive(Clone, Copy, Debug)]
struct Form {
    full: bool,
    /// Lines per second.
    rate: u64,
    duration: Duration,
    /// Every window this long (after the first) must see new bans.
    flow_window: Duration,
    /// Every control interface call during the flood must answer within this.
    dbus_bound: Duration,
}

impl Form {
    /// Lines at the rate (after the warm-up's one line per address).
    fn lines(&self) -> u64 {
        self.rate * self.duration.as_millis() as u64 / 1000
    }

    /// The addresses sending [`ATTACKER_SHARE_PERCENT`] of the lines, each
    /// [`ATTACKER_RATE`] per second (the rest of the 20,000 are scanners).
    fn attackers(&self) -> u64 {
        self.rate * ATTACKER_SHARE_PERCENT / 100 / ATTACKER_RATE
    }
}

fn form() -> Form {
    if std::env::var_os("BANHOUND_FULL_FAULTS").is_some_and(|v| v == "1") {
        Form {
            full: true,
            rate: 50_000,
            duration: Duration::from_secs(60),
            flow_window: Duration::from_secs(10),
            dbus_bound: DBUS_BOUND,
        }
    } else {
        // What the unoptimised build `cargo test` makes keeps up with on a loaded machine.
        Form {
            full: false,
            rate: SHORT_RATE,
            duration: Duration::from_secs(10),
            flow_window: Duration::from_secs(1),
            dbus_bound: SHORT_DBUS_BOUND,
        }
    }
}

/// The variants share the machine's two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_flood_from_20000_addresses_keeps_memory_bounded_bans_flowing_and_dbus_answering() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run("load", None);
}

#[test]
fn a_flood_beyond_max_tracked_evicts_and_stays_within_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run("evict", Some(5_000));
}

/// The n-th address of the flood, in 100.64.0.0/10 (shared address space: never one of the
/// lab's own addresses, never loopback).
fn address(index: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + index as u32)
}

/// The sshd lines of the flood, numbered from 0.
struct Lines {
    rng: Rng,
    attackers: u64,
}

impl Lines {
    fn new(form: Form) -> Lines {
        Lines {
            rng: Rng(SEED),
            attackers: form.attackers(),
        }
    }

    /// Which address writes line `n`: each once in a scattered order first (the warm-up),
    /// then attackers and scanners in their shares. Attacker i sends (1 + i mod 8) shares
    /// of the attackers' lines, from 0.2x to 1.8x the mean rate: their bans end at
    /// different times, so bans keep coming instead of arriving in waves.
    fn address(&mut self, n: u64) -> Ipv4Addr {
        // 7919 is prime and does not divide 20,000: n -> n * 7919 mod 20,000 is a permutation.
        if n < ADDRESSES {
            return address(n * 7919 % ADDRESSES);
        }
        let r = self.rng.next();
        if r % 100 >= ATTACKER_SHARE_PERCENT {
            return address(self.attackers + (r >> 8) % (ADDRESSES - self.attackers));
        }
        loop {
            let r = self.rng.next();
            let i = (r >> 8) % self.attackers;
            if r % 8 <= i % 8 {
                return address(i);
            }
        }
    }

    /// Appends lines `range`, stamped with the current local time as syslog writes it
    /// (no zone, no year).
    fn append(&mut self, buf: &mut Vec<u8>, range: std::ops::Range<u64>) {
        let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
        for n in range {
            writeln!(
                buf,
                "{stamp} server sshd[{}]: Failed password for root from {} port {} ssh2",
                1000 + n % 30_000,
                self.address(n),
                1024 + n % 60_000
            )
            .unwrap();
        }
    }
}

/// How far the writer got at one instant.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    bytes: u64,
    lines: u64,
}

/// Writes the warm-up, one line from each address, at once.
fn warm_up(path: &Path, lines: &mut Lines) -> Mark {
    let mut buf = Vec::new();
    lines.append(&mut buf, 0..ADDRESSES);
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(&buf).unwrap();
    Mark {
        at: Instant::now(),
        bytes: buf.len() as u64,
        lines: ADDRESSES,
    }
}

/// The thread appending the flood to the log file after the warm-up; stopped and joined
/// on drop.
struct Flood {
    stop: Arc<AtomicBool>,
    /// Where the writer was, in order, from the end of the warm-up.
    marks: Arc<Mutex<Vec<Mark>>>,
    started: Instant,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn start(path: &Path, form: Form, mut lines: Lines, warm: Mark) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let marks = Arc::new(Mutex::new(vec![Mark {
            at: started,
            ..warm
        }]));
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        let total = warm.lines + form.lines();
        let (flag, sink) = (stop.clone(), marks.clone());
        let thread = std::thread::Builder::new()
            .name("flood".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(1 << 20);
                let (mut written, mut bytes, mut tick) = (warm.lines, warm.bytes, 0u32);
                while written < total && !flag.load(Ordering::SeqCst) {
                    // Sized by the time elapsed: the rate holds when the thread runs late.
                    let due = (warm.lines
                        + (started.elapsed().as_secs_f64() * form.rate as f64) as u64)
                        .min(total);
                    if due > written {
                        buf.clear();
                        lines.append(&mut buf, written..due);
                        file.write_all(&buf).unwrap();
                        bytes += buf.len() as u64;
                        written = due;
                        sink.lock().unwrap().push(Mark {
                            at: Instant::now(),
                            bytes,
                            lines: written,
                        });
                    }
                    tick += 1;
                    let next = started + WRITE_EVERY * tick;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
            .unwrap();
        Flood {
            stop,
            marks,
            started,
            thread: Some(thread),
        }
    }

    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn last(&self) -> Mark {
        last_mark(&self.marks)
    }
}

fn last_mark(marks: &Mutex<Vec<Mark>>) -> Mark {
    *marks.lock().unwrap().last().unwrap()
}

/// Lines wholly before byte `offset` (at the granularity of the writer's batches).
fn lines_before(marks: &Mutex<Vec<Mark>>, offset: u64) -> u64 {
    let marks = marks.lock().unwrap();
    let i = marks.partition_point(|m| m.bytes <= offset);
    if i == 0 {
        0
    } else {
        marks[i - 1].lines
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client of the daemon's control interface, timing each call.
struct Probe {
    // Dropped in this order: the proxies and the connection before their runtime.
    manager: ManagerProxy<'static>,
    jail: JailProxy<'static>,
    peer: zbus::fdo::PeerProxy<'static>,
    _connection: zbus::Connection,
    runtime: tokio::runtime::Runtime,
}

impl Probe {
    fn connect(bus: &DbusDaemon) -> Probe {
        // On the calling thread: the reply is read where it is awaited, so a round trip
        // costs no wake-up of another client thread (every call is made in `block_on`).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (connection, manager, jail, peer) = runtime.block_on(async {
            let connection = zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            let manager = ManagerProxy::builder(&connection)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .unwrap();
            let jail = JailProxy::builder(&connection)
                .path(banhound::bus::jail_path(JAIL))
                .unwrap()
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .unwrap();
            let peer = zbus::fdo::PeerProxy::builder(&connection)
                .destination(banhound::bus::SERVICE_NAME)
                .unwrap()
                .path(banhound::bus::MANAGER_PATH)
                .unwrap()
                .build()
                .await
                .unwrap();
            (connection, manager, jail, peer)
        });
        Probe {
            manager,
            jail,
            peer,
            _connection: connection,
            runtime,
        }
    }

    /// `GetStatus`, and how long it took.
    fn status(&self) -> (StatusRecord, Duration) {
        let t = Instant::now();
        let status = self.runtime.block_on(self.manager.get_status()).unwrap();
        (status, t.elapsed())
    }

    /// `org.freedesktop.DBus.Peer.Ping` to the daemon, and how long it took. The daemon's
    /// D-Bus library answers it on the daemon's one runtime thread without asking the owner
    /// task: it waits for the bus, the schedulers and the owner's current step, not for the
    /// owner to take up a request. Compared with `GetStatus`, it tells which of the two a
    /// slow answer waited for.
    fn ping(&self) -> Duration {
        let t = Instant::now();
        self.runtime.block_on(self.peer.ping()).unwrap();
        t.elapsed()
    }

    /// The jail's `CurrentlyFailed` property (read through the owner task, like `GetStatus`),
    /// and how long it took.
    fn currently_failed(&self) -> (u32, Duration) {
        let t = Instant::now();
        let value = self.runtime.block_on(self.jail.currently_failed()).unwrap();
        (value, t.elapsed())
    }

    fn bans(&self) -> Vec<(String, u64)> {
        self.runtime
            .block_on(self.jail.get_bans())
            .unwrap()
            .into_iter()
            .map(|(target, _, until, _)| (target, until))
            .collect()
    }
}

/// The daemon process as /proc shows it.
struct Process {
    pid: i32,
    ticks_per_second: u64,
}

impl Process {
    fn new(pid: i32) -> Process {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "banhound", "pid {pid} is not the daemon");
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Process {
            pid,
            ticks_per_second: u64::try_from(ticks).unwrap_or(100),
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        // Fields after the command name (which may hold spaces): state is field 3, utime 14.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<u64> = rest
            .split(' ')
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        Duration::from_millis((fields[0] + fields[1]) * 1000 / self.ticks_per_second)
    }
}

/// What the daemon has committed to its state database (each file chunk's bans with the
/// position after it, in one transaction), read while it runs: WAL mode, a reader does not
/// block it.
struct Committed {
    db: rusqlite::Connection,
    key: String,
}

impl Committed {
    fn open(state_dir: &Path, log: &Path) -> Committed {
        let db = rusqlite::Connection::open_with_flags(
            state_dir.join("state.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.busy_timeout(Duration::from_secs(1)).unwrap();
        Committed {
            db,
            key: format!("file:{}", log.display()),
        }
    }

    /// The byte offset in the log file.
    fn offset(&self) -> u64 {
        use rusqlite::OptionalExtension;
        let cursor: Option<String> = self
            .db
            .query_row(
                "SELECT cursor FROM source_positions WHERE source = ?1",
                [&self.key],
                |row| row.get(0),
            )
            .optional()
            .unwrap();
        cursor.map_or(0, |c| {
            c.split_once(':')
                .and_then(|(_, offset)| offset.parse().ok())
                .unwrap()
        })
    }

    /// Bans made so far (history rows are numbered in order and purged only when old).
    fn bans(&self) -> u64 {
        let id: i64 = self
            .db
            .query_row("SELECT COALESCE(MAX(id), 0) FROM ban_history", [], |row| {
                row.get(0)
            })
            .unwrap();
        id as u64
    }
}

/// The daemon as /proc and its state database show it, at one instant.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Since the flood started.
    t: Duration,
    rss_kib: u64,
    cpu: Duration,
    /// Lines written so far, and those wholly in the committed part of the file.
    written: u64,
    committed: u64,
    /// Bytes: the committed offset equals this once everything was read.
    written_bytes: u64,
    committed_bytes: u64,
    bans: u64,
}

/// A thread taking a [`Sample`] every [`SAMPLE_EVERY`]; it does not wait for the control
/// interface, so a stalled bus does not stall the measurement. Stopped on drop.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(process: Process, committed: Committed, flood: &Flood) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (flag, sink, marks, started) = (
            stop.clone(),
            samples.clone(),
            flood.marks.clone(),
            flood.started,
        );
        let thread = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let cpu_start = process.cpu();
                let mut tick = 0u32;
                while !flag.load(Ordering::SeqCst) {
                    let written = last_mark(&marks);
                    let offset = committed.offset();
                    let sample = Sample {
                        t: started.elapsed(),
                        rss_kib: process.rss_kib(),
                        cpu: process.cpu() - cpu_start,
                        written: written.lines,
                        committed: lines_before(&marks, offset),
                        written_bytes: written.bytes,
                        committed_bytes: offset,
                        bans: committed.bans(),
                    };
                    sink.lock().unwrap().push(sample);
                    tick += 1;
                    let next = started + SAMPLE_EVERY * tick;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
            .unwrap();
        Sampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn latest(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().copied()
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop_thread();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// One round of control interface calls.
#[derive(Clone, Copy, Debug)]
struct Call {
    t: Duration,
    /// Made while the flood was being written (not while the daemon caught up after it).
    flooding: bool,
    status_rtt: Duration,
    property_rtt: Duration,
    ping_rtt: Duration,
    currently_failed: u32,
    currently_banned: u32,
}

/// The kernel set against what the daemon reports, while it bans.
#[derive(Default)]
struct KernelChecks {
    rounds: usize,
    /// Bans checked (reported, not ending within 2 s).
    checked: usize,
    /// Reported bans, not ending within 2 s, that the kernel did not hold.
    missing: Vec<String>,
}

impl KernelChecks {
    /// Every ban the daemon reports that does not end within 2 s is in the kernel: the daemon
    /// applies a ban before it answers the next request, and the kernel lifts it at its end.
    fn check(&mut self, lab: &Lab, probe: &Probe) {
        let reported = probe.bans();
        let kernel: BTreeSet<String> = lab.banned_in(SET).into_iter().map(|(a, _)| a).collect();
        let horizon = unix_now() + 2;
        self.rounds += 1;
        for (target, until) in reported {
            if until > horizon {
                self.checked += 1;
                if !kernel.contains(&target) {
                    self.missing.push(target);
                }
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn config(log: &Path, max_tracked: Option<usize>) -> String {
    let mut text = format!(
        "[jail.sshd]\nenabled = false\n\n[jail.{JAIL}]\nenabled = true\nfilter = \"sshd\"\n\
         logpath = [\"{}\"]\nport = \"{PORT}\"\nmaxretry = {MAXRETRY}\nfindtime = \"{FINDTIME}\"\n\
         bantime = \"{BANTIME}\"\n",
        log.display()
    );
    if let Some(max) = max_tracked {
        text.push_str(&format!("max_tracked = {max}\n"));
    }
    text
}

/// How much the RSS may grow from a quarter into the flood to its end. What is bounded
/// is the per-address state (at most 20,000 addresses, or `max_tracked`), all of it reached
/// by then (the flood starts with one line from every address); what may still move is
/// allocator noise: hash tables rehashing at the same size as windows are banned and
/// recreated, window queues growing to `maxretry` entries, SQLite's page cache (2 MiB by
/// default) and socket buffers. 8 MiB, or a tenth, covers that. A leak of 8 bytes per line
/// grows by 18 MiB over the full form (2,250,000 lines after its quarter) and fails it;
/// the short form catches per-line growth of a few hundred bytes.
fn rss_margin_kib(at_quarter: u64) -> u64 {
    (8 << 10).max(at_quarter / 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Max, p99 and median of some round trips.
fn rtt_summary(mut rtts: Vec<Duration>) -> String {
    rtts.sort();
    format!(
        "max {}, p99 {}, median {} ({} calls)",
        ms(*rtts.last().unwrap()),
        ms(percentile(&rtts, 0.99)),
        ms(percentile(&rtts, 0.5)),
        rtts.len()
    )
}

fn run(tag: &str, max_tracked: Option<usize>) {
    let form = form();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut lab = Lab::new(tag, &config(&log, max_tracked));
    // The production default: one debug line per failure would measure the log file.
    lab.set_daemon_env("BANHOUND_LOG", "info");
    let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
    let process = Process::new(daemon.pid());
    let rss_idle = process.rss_kib();
    let probe = Probe::connect(&bus);
    let committed = Committed::open(&lab.state_dir(), &log);

    // The flood meets every address already tracked (or, with a smaller max_tracked, the
    // table already full): written and read first, not measured.
    let mut lines = Lines::new(form);
    let warm = warm_up(&log, &mut lines);
    netlab::wait_for("the daemon to read the warm-up", CATCH_UP, || {
        committed.offset() == warm.bytes
    });
    let rss_warm = process.rss_kib();
    // The control interface without a flood, for comparison: what the machine's load alone
    // costs a round trip.
    let idle_rtts: Vec<Duration> = (0..10)
        .flat_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            [probe.status().1, probe.currently_failed().1]
        })
        .collect();
    let load_before = load_average();
    let flood_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let flood = Flood::start(&log, form, lines, warm);
    let sampler = Sampler::start(process, committed, &flood);
    let mut calls: Vec<Call> = Vec::new();
    let mut kernel = KernelChecks::default();
    let mut tick = 0u32;
    let caught_up = loop {
        let flooding = !flood.finished();
        let (status, status_rtt) = probe.status();
        let (currently_failed, property_rtt) = probe.currently_failed();
        let ping_rtt = probe.ping();
        calls.push(Call {
            t: flood.started.elapsed(),
            flooding,
            status_rtt,
            property_rtt,
            ping_rtt,
            currently_failed,
            currently_banned: status.5,
        });
        // Every 2 s: a few listings of a set of thousands, not a load of their own.
        if tick % 10 == 9 {
            kernel.check(&lab, &probe);
        }
        if !flooding {
            let written = flood.last();
            if sampler.latest().is_some_and(|s| {
                s.committed_bytes == written.bytes && s.written_bytes == written.bytes
            }) {
                break true;
            }
            if written.at.elapsed() > CATCH_UP {
                break false;
            }
        }
        tick += 1;
        let next = flood.started + SAMPLE_EVERY * tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    };
    let load_after = load_average();
    let (final_status, _) = probe.status();
    let end = flood.last();
    let started = flood.started;
    let writing = end.at - started;
    drop(flood);
    let samples = sampler.finish();

    // After the flood: the kernel holds what the daemon reports, nothing more (no ban is
    // made any more, and an expiry leaves the kernel before the owner answers the next
    // request), and every reported ban that does not end within 2 s.
    let reported: BTreeSet<String> = probe.bans().into_iter().map(|(t, _)| t).collect();
    let kernel_after: Vec<String> = lab.banned_in(SET).into_iter().map(|(a, _)| a).collect();
    kernel.check(&lab, &probe);
    let extra: Vec<&String> = kernel_after
        .iter()
        .filter(|a| !reported.contains(*a))
        .collect();
    assert!(daemon.stop(), "the daemon did not stop cleanly");
    // When the failure behind each ban was logged (whole seconds, from the log line).
    let ban_times: Vec<i64> = {
        let db = rusqlite::Connection::open(lab.state_dir().join("state.sqlite")).unwrap();
        let mut stmt = db.prepare("SELECT started_us FROM ban_history").unwrap();
        let times = stmt
            .query_map([], |row| row.get::<_, i64>(0))
            .unwrap()
            .map(|t| t.unwrap() / 1_000_000)
            .collect();
        times
    };

    // The figures, as measured. Points of the flood are taken by how much of it the daemon
    // had committed, so a daemon starved of CPU is compared at the same input.
    let last = *samples.last().unwrap();
    let committed_at = |lines: u64| -> Sample {
        *samples
            .iter()
            .find(|s| s.committed >= lines)
            .unwrap_or(&last)
    };
    let quarter = committed_at(ADDRESSES + form.lines() / 4);
    let half = committed_at(ADDRESSES + form.lines() / 2);
    let three_quarters = committed_at(ADDRESSES + form.lines() * 3 / 4);
    let all = committed_at(end.lines);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap();
    let max_lag = samples
        .iter()
        .filter(|s| s.t <= writing)
        .map(|s| s.written.saturating_sub(s.committed))
        .max()
        .unwrap_or(0);
    let flood_calls: Vec<&Call> = calls.iter().filter(|c| c.flooding).collect();
    let after_calls: Vec<&Call> = calls.iter().filter(|c| !c.flooding).collect();
    let max_failed = calls.iter().map(|c| c.currently_failed).max().unwrap();
    let max_banned = calls.iter().map(|c| c.currently_banned).max().unwrap();
    let rate = form.lines() as f64 / writing.as_secs_f64();
    let rtts = |calls: &[&Call]| -> Vec<Duration> {
        calls
            .iter()
            .flat_map(|c| [c.status_rtt, c.property_rtt])
            .collect()
    };
    println!(
        "load test [{tag}: {} form, {} build, max_tracked {}, {} attackers]\n\
         load average before {load_before}, after {load_after}\n\
         flood: {} lines ({} bytes): a warm-up of {ADDRESSES}, one per address, then {} at \
         {rate:.0}/s for {:.2} s (target {}/s for {} s)\n\
         daemon: committed everything {:.2} s into the flood ({:.2} s after it ended); \
         CPU {:.2} s = {:.0}% of one core; lag at most {max_lag} lines = {:.2} s of flood\n\
         counted failures {}, bans {} ({} at most at once, {} at the end), addresses below \
         maxretry at most {max_failed}\n\
         RSS KiB: idle {rss_idle}, after the warm-up {rss_warm}; after 25% of the flood {}, 50% {}, 75% {}, all {}; max {rss_max}\n\
         D-Bus before the flood (idle): {}\n\
         D-Bus during the flood: GetStatus {}; CurrentlyFailed {}; both {}\n\
         D-Bus Peer.Ping during the flood (no request to the owner task): {}\n\
         D-Bus after the flood (catching up): {}\n\
         kernel set {SET}: {} rounds, {} bans checked, {} missing; {} elements at the end, \
         {} bans reported",
        if form.full { "full" } else { "short" },
        if cfg!(debug_assertions) { "debug" } else { "release" },
        max_tracked.map_or("100000 (default)".to_string(), |m| m.to_string()),
        form.attackers(),
        end.lines,
        end.bytes,
        form.lines(),
        writing.as_secs_f64(),
        form.rate,
        form.duration.as_secs(),
        all.t.as_secs_f64(),
        all.t.saturating_sub(writing).as_secs_f64(),
        all.cpu.as_secs_f64(),
        100.0 * all.cpu.as_secs_f64() / all.t.as_secs_f64(),
        max_lag as f64 / form.rate as f64,
        final_status.4,
        last.bans,
        max_banned,
        final_status.5,
        quarter.rss_kib,
        half.rss_kib,
        three_quarters.rss_kib,
        all.rss_kib,
        rtt_summary(idle_rtts),
        rtt_summary(flood_calls.iter().map(|c| c.status_rtt).collect()),
        rtt_summary(flood_calls.iter().map(|c| c.property_rtt).collect()),
        rtt_summary(rtts(&flood_calls)),
        rtt_summary(flood_calls.iter().map(|c| c.ping_rtt).collect()),
        if after_calls.is_empty() {
            "no calls".to_string()
        } else {
            rtt_summary(rtts(&after_calls))
        },
        kernel.rounds,
        kernel.checked,
        kernel.missing.len(),
        kernel_after.len(),
        reported.len(),
    );
    let step = (samples.len() / 15).max(1);
    println!("     t    written  committed  RSS KiB  CPU s    bans");
    for s in samples.iter().step_by(step).chain(std::iter::once(&last)) {
        println!(
            "{:6.1} {:10} {:10} {:8} {:6.2} {:7}",
            s.t.as_secs_f64(),
            s.written,
            s.committed,
            s.rss_kib,
            s.cpu.as_secs_f64(),
            s.bans,
        );
    }

    // The flood was what it claims to be.
    assert!(
        rate >= 0.9 * form.rate as f64,
        "the writer reached {rate:.0} lines/s, not {}",
        form.rate
    );
    // Everything read, and, in the full form, never far behind.
    assert!(caught_up, "the daemon did not read the whole flood");
    if form.full {
        assert!(
            max_lag <= 2 * form.rate,
            "the daemon fell {max_lag} lines (over 2 s of flood) behind"
        );
    }
    assert!(final_status.4 > 0 && final_status.4 <= end.lines);
    assert_eq!(
        final_status.6, last.bans,
        "the bans counted on D-Bus are the bans committed"
    );
    // Bounded memory.
    if let Some(max) = max_tracked {
        assert!(
            max_failed as usize <= max,
            "{max_failed} addresses tracked, max_tracked is {max}"
        );
    }
    assert!(
        all.rss_kib <= quarter.rss_kib + rss_margin_kib(quarter.rss_kib),
        "RSS grew from {} KiB a quarter into the flood to {} KiB at its end",
        quarter.rss_kib,
        all.rss_kib
    );
    // Bans kept flowing: failures logged in every window of the flood (after the first)
    // led to bans, and in the full form bans were also made in every window of wall time.
    let first_second = flood_wall as i64;
    let windows = (writing.as_secs_f64() / form.flow_window.as_secs_f64()).floor() as i64;
    let window = form.flow_window.as_secs() as i64;
    for w in 1..windows {
        let (from, to) = (first_second + w * window, first_second + (w + 1) * window);
        assert!(
            ban_times.iter().any(|t| (from..to).contains(t)),
            "no ban for failures logged {}-{} s into the flood",
            w * window,
            (w + 1) * window
        );
    }
    if form.full {
        let bans_at = |t: Duration| {
            samples
                .iter()
                .rev()
                .find(|s| s.t <= t)
                .map_or(0, |s| s.bans)
        };
        for w in 1..windows as u32 {
            let (from, to) = (form.flow_window * w, form.flow_window * (w + 1));
            assert!(
                bans_at(to) > bans_at(from),
                "no ban made between {from:?} and {to:?} into the flood"
            );
        }
    }
    assert!(
        last.bans >= form.attackers(),
        "only {} bans: every attacker should have been banned",
        last.bans
    );
    // The kernel holds the bans.
    assert!(kernel.rounds >= 2 && kernel.checked > 0);
    assert!(
        kernel.missing.is_empty(),
        "reported, not in the kernel: {:?}",
        kernel.missing
    );
    assert!(extra.is_empty(), "in the kernel, not reported: {extra:?}");
    // The control interface answered within the bound throughout the flood.
    let slow: Vec<String> = flood_calls
        .iter()
        .flat_map(|c| [(c.t, c.status_rtt), (c.t, c.property_rtt)])
        .filter(|(_, rtt)| *rtt > form.dbus_bound)
        .map(|(t, rtt)| format!("{} at {:.1} s", ms(rtt), t.as_secs_f64()))
        .collect();
    assert!(
        slow.is_empty(),
        "D-Bus calls slower than {} during the flood: {slow:?} (of {})",
        ms(form.dbus_bound),
        2 * flood_calls.len()
    );
}
