#!/usr/bin/env python3
"""Measures `banhound daemon` against its targets; run by bench/daemon.sh, which provides the
network namespace (this script runs inside it), the journald namespace and the cleanup.

Why Python: the measurements need a process named `sshd` writing native-protocol datagrams
(journald takes the trusted `_COMM` from the sender), an sd_notify socket read while the
daemon starts, and CLOCK_MONOTONIC timestamps shared by the writer, the notify reader and
the `nft monitor` reader, all in one place.

  latency   journal entry completing maxretry -> element in the kernel set (nft monitor)
  startup   exec -> READY=1 with 100,000 persisted bans; kernel set contents checked after
  memory    VmRSS / VmHWM / smaps_rollup 10 s after READY=1 (idle default jails; 100k bans)
  wakeups   voluntary context switches of every daemon thread over 10 idle seconds (--idle-seconds)

Every child (daemon, nft monitor, writer) is recorded in PIDFILE, so the shell's EXIT trap can
kill it by pid even if this script dies; this script also stops each one itself.
"""
import argparse
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

CLOCK = time.CLOCK_MONOTONIC


def now_ns():
    return time.clock_gettime_ns(CLOCK)


def record_pid(args, pid):
    with open(args.pidfile, "a") as f:
        f.write(f"{pid}\n")


def stop(proc, sig=signal.SIGTERM, timeout=15):
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def nft(*argv):
    return subprocess.run(["nft", *argv], check=True, capture_output=True, text=True).stdout


def drop_table():
    subprocess.run(["nft", "delete", "table", "inet", "banhound"], capture_output=True)


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


class Notify:
    """A NOTIFY_SOCKET read continuously (as systemd does); every datagram is timestamped."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.messages.append((now_ns(), data.decode(errors="replace")))

    def wait_ready(self, proc, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if "READY=1" in m.split("\n"):
                    return t
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode} before READY=1")
            time.sleep(0.001)
        raise RuntimeError("no READY=1")

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


class Daemon:
    def __init__(self, args, name, config_text, env_extra=None):
        self.dir = os.path.join(args.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.state = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "banhound.toml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.args = args
        self.env_extra = env_extra or {}
        self.proc = None

    def start(self):
        self.notify = Notify(os.path.join(self.dir, "notify.sock"))
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = self.notify.path
        env.update(self.env_extra)
        self.log = open(os.path.join(self.dir, "daemon.log"), "ab")
        argv = [
            self.args.bin, "--defaults-dir", self.args.defaults_dir, "--config", self.config,
            "daemon", "--log-target", "stderr", "--journal-namespace", self.args.journal_ns,
            "--state-dir", self.state,
        ]
        self.exec_ns = now_ns()
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        record_pid(self.args, self.proc.pid)
        self.ready_ns = self.notify.wait_ready(self.proc)
        return (self.ready_ns - self.exec_ns) / 1e6

    def stop(self):
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
        self.notify.close()
        self.log.close()


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def memory(pid):
    st = proc_status(pid)
    roll = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                roll[m.group(1)] = int(m.group(2))
    kb = lambda s: int(s.split()[0])
    return {
        "VmRSS": kb(st["VmRSS"]), "VmHWM": kb(st["VmHWM"]),
        "RssAnon": kb(st["RssAnon"]), "RssFile": kb(st["RssFile"]), "RssShmem": kb(st["RssShmem"]),
        "Pss": roll.get("Pss", 0),
    }


def mapped_files(pid):
    """Rss per mapped file (kB), largest first: what RssFile is made of."""
    per = {}
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
            if head:
                current = head.group(1) or "[anon]"
                continue
            m = re.match(r"Rss:\s+(\d+) kB", line)
            if m and current is not None:
                per[current] = per.get(current, 0) + int(m.group(1))
    return sorted(per.items(), key=lambda kv: -kv[1])


def thread_switches(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            st = proc_status(f"{pid}/task/{tid}")
        except FileNotFoundError:
            continue
        out[tid] = (comm, int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"]))
    return out


def idle_wakeups(pid, seconds):
    a = thread_switches(pid)
    time.sleep(seconds)
    b = thread_switches(pid)
    rows = []
    for tid, (comm, vol, nonvol) in sorted(b.items(), key=lambda kv: int(kv[0])):
        va, na = a.get(tid, (comm, 0, 0))[1:]
        rows.append((tid, comm, vol - va, nonvol - na))
    return rows


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt_wakeups(rows):
    return ", ".join(f"{comm}[{tid}] {vol} vol/{nonvol} invol" for tid, comm, vol, nonvol in rows)


# ---------------------------------------------------------------------------- idle / memory

def bench_idle(args, results):
    print(f"\n== idle, default jails, empty journal namespace (load {loadavg()})", flush=True)
    runs = []
    for i in range(args.idle_runs):
        d = Daemon(args, f"idle{i}", "# defaults only\n")
        try:
            ready_ms = d.start()
            time.sleep(10)
            mem = memory(d.proc.pid)
            wake = idle_wakeups(d.proc.pid, args.idle_seconds)
            if i == 0:
                files = mapped_files(d.proc.pid)[:8]
                print("  largest Rss mappings: " + ", ".join(f"{n} {kb} kB" for n, kb in files))
        finally:
            d.stop()
        total_vol = sum(r[2] for r in wake)
        print(f"  run {i + 1}: READY {ready_ms:.1f} ms; {mem}; wakeups over {args.idle_seconds} s: "
              f"{fmt_wakeups(wake)}",
              flush=True)
        runs.append((mem, total_vol, wake))
    results["idle"] = runs
    results["idle_seconds"] = args.idle_seconds

    # The watchdog's share: one ping per WATCHDOG_USEC/2.
    d = Daemon(args, "idle-watchdog", "# defaults only\n", {"WATCHDOG_USEC": "2000000"})
    try:
        d.start()
        time.sleep(10)
        wake = idle_wakeups(d.proc.pid, 10)
    finally:
        d.stop()
    print(f"  with WATCHDOG_USEC=2000000 (ping every 1 s): {fmt_wakeups(wake)}", flush=True)
    results["idle_watchdog"] = wake


# ---------------------------------------------------------------------------- latency

WRITER = r"""
import socket, sys, time
with open("/proc/self/comm", "w") as f:
    f.write("sshd")
path, rate, addrs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
period = 1e9 / rate
start = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 50_000_000
out = []
for i, addr in enumerate(addrs):
    due = start + int(i * period)
    while True:
        left = due - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if left <= 0:
            break
        time.sleep(left / 1e9)
    datagram = ("SYSLOG_IDENTIFIER=sshd\nPRIORITY=6\nMESSAGE=Failed password for invalid user "
                "bench from %s port 40000 ssh2\n" % addr).encode()
    t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    sock.sendto(datagram, path)
    out.append("%s %d" % (addr, t))
sys.stdout.write("\n".join(out) + "\n")
"""


class Monitor:
    """`nft monitor new elements`, one timestamp per output line, read by a thread."""

    ELEMENT = re.compile(r"^add element inet (\S+) (\S+) \{ (.*) \}$")

    def __init__(self, args):
        self.proc = subprocess.Popen(["nft", "monitor", "new", "elements"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0)
        record_pid(args, self.proc.pid)
        self.seen = {}
        self.lines = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            t = now_ns()
            self.lines += 1
            m = self.ELEMENT.match(raw.decode().strip())
            if not m:
                continue
            for elem in m.group(3).split(", "):
                addr = elem.split()[0]
                self.seen.setdefault(addr, t)

    def probe(self):
        """Proves the monitor is subscribed (it subscribes some time after exec) before the
        measurement starts: probe elements in a scratch table until one is printed."""
        nft("add table inet bhprobe; add set inet bhprobe s { type ipv4_addr; flags timeout; }")
        for attempt in range(1, 50):
            addr = f"192.0.2.{attempt}"
            nft(f"add element inet bhprobe s {{ {addr} timeout 1m }}")
            time.sleep(0.1)
            if addr in self.seen:
                nft("delete table inet bhprobe")
                return
        raise RuntimeError("nft monitor printed no probe element")

    def close(self):
        stop(self.proc)
        self.thread.join()


class JournalReader:
    """`journalctl -f` on the namespace: when an entry becomes visible to ANY sd-journal
    reader (the floor under banhound's latency, set by journald), one timestamp per line."""

    ADDR = re.compile(r"from (\S+) port")

    def __init__(self, args):
        self.proc = subprocess.Popen(["journalctl", f"--namespace={args.journal_ns}", "-f", "-n", "0",
                                      "-o", "cat", "_COMM=sshd"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0)
        record_pid(args, self.proc.pid)
        self.seen = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            t = now_ns()
            m = self.ADDR.search(raw.decode(errors="replace"))
            if m:
                self.seen.setdefault(m.group(1), t)

    def close(self):
        stop(self.proc)
        self.thread.join()


def stats_of(values):
    v = sorted(values)
    return {"n": len(v), "min": v[0], "p50": percentile(v, 50), "p90": percentile(v, 90),
            "p99": percentile(v, 99), "max": v[-1]}


def fmt_stats(st):
    return (f"min {st['min']:.2f} p50 {st['p50']:.2f} p90 {st['p90']:.2f} p99 {st['p99']:.2f} "
            f"max {st['max']:.2f} ms")


# "done in" since the state writer thread commits beside the owner task ("committed in" before).
BATCH = re.compile(rb"batch of (\d+) entries: (\d+) ban\(s\), (?:committed|done) in (\d+) us")


def bench_latency(args, results):
    print(f"\n== ban latency: {args.bans} bans per run at {args.rate}/s, maxretry = 1 (load {loadavg()})",
          flush=True)
    config = ('[jail.sshd]\nenabled = true\nport = "2222"\nmaxretry = 1\nfindtime = "10m"\n'
              'bantime = "1h"\n')
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    runs = []
    for r in range(args.latency_runs):
        drop_table()
        d = Daemon(args, f"latency{r}", config, {"BANHOUND_LOG": "info,banhound::batch=debug"})
        # One state database for all runs: the journal cursor carries over, so a run does not
        # start by catching up on (and banning) the previous runs' entries.
        d.state = os.path.join(args.dir, "latency-state")
        monitor = reader = None
        try:
            d.start()
            monitor = Monitor(args)
            monitor.probe()
            reader = JournalReader(args)
            time.sleep(0.5)  # journalctl's inotify watch in place
            addrs = [str(ipaddress.IPv4Address(base + r * args.bans + i + 1)) for i in range(args.bans)]
            writer = subprocess.Popen([sys.executable, "-c", WRITER, args.journal_socket, str(args.rate),
                                       *addrs], stdout=subprocess.PIPE, text=True)
            record_pid(args, writer.pid)
            sent_text, _ = writer.communicate()
            sent = {}
            for line in sent_text.split("\n"):
                if line:
                    a, t = line.split()
                    sent[a] = int(t)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(a not in monitor.seen for a in addrs):
                time.sleep(0.05)
            missing = [a for a in addrs if a not in monitor.seen]
            lat = sorted((monitor.seen[a] - sent[a]) / 1e6 for a in addrs if a in monitor.seen)
            if not lat:
                raise RuntimeError(f"no ban reached the kernel; see {d.log.name}")
            stats = {
                "n": len(lat), "missing": len(missing), "p50": percentile(lat, 50),
                "p90": percentile(lat, 90), "p99": percentile(lat, 99), "max": lat[-1],
                "min": lat[0], "over5": sum(1 for x in lat if x > 5.0),
            }
            visible = [(reader.seen[a] - sent[a]) / 1e6 for a in addrs if a in reader.seen]
            daemon_part = [(monitor.seen[a] - reader.seen[a]) / 1e6 for a in addrs
                           if a in reader.seen and a in monitor.seen]
            stats["journal"] = stats_of(visible)
            stats["daemon"] = stats_of(daemon_part)
            with open(d.log.name, "rb") as f:
                log = f.read()
            stats["ban_lines"] = log.count(b"Banned ")
            batches = [(int(n), int(b), int(us)) for n, b, us in BATCH.findall(log) if int(b) > 0]
            stats["batches"] = len(batches)
            stats["batch_entries"] = stats_of([float(n) for n, _, _ in batches])
            stats["commit"] = stats_of([us / 1000 for _, _, us in batches])
        finally:
            if reader is not None:
                reader.close()
            if monitor is not None:
                monitor.close()
            d.stop()
        print(f"  run {r + 1}: n={stats['n']} missing={stats['missing']} min {stats['min']:.2f} "
              f"p50 {stats['p50']:.2f} p90 {stats['p90']:.2f} p99 {stats['p99']:.2f} "
              f"max {stats['max']:.2f} ms; > 5 ms: {stats['over5']}; 'Banned' log lines "
              f"{stats['ban_lines']}; load {loadavg()}", flush=True)
        print(f"    send -> visible to journalctl -f: {fmt_stats(stats['journal'])}")
        print(f"    visible to journalctl -f -> kernel: {fmt_stats(stats['daemon'])}")
        print(f"    daemon batches with bans: {stats['batches']}, entries per batch "
              f"p50 {stats['batch_entries']['p50']:.0f} max {stats['batch_entries']['max']:.0f}; "
              f"match+commit time {fmt_stats(stats['commit'])}", flush=True)
        runs.append(stats)
    results["latency"] = runs


# ---------------------------------------------------------------------------- 100k start

def make_state(args, template_dir, count):
    """A state database with `count` unexpired bans (half IPv4 /32, half IPv6 /128: the
    default ipv6_prefix), each with its history row, as the daemon would have left it."""
    d = Daemon(args, "seed", "# defaults only\n")
    d.state = template_dir
    try:
        d.start()  # creates the schema exactly as the daemon wants it
    finally:
        d.stop()
    now_us = time.time_ns() // 1000
    rng = random.Random(1)
    v4 = int(ipaddress.IPv4Address("198.18.0.0"))
    v6 = int(ipaddress.IPv6Address("2001:db8::"))
    rows = []
    for i in range(count):
        if i % 2 == 0:
            target = f"{ipaddress.IPv4Address(v4 + i // 2 + 1)}/32"
        else:
            target = f"{ipaddress.IPv6Address(v6 + ((i // 2 + 1) << 64) + i)}/128"
        started = now_us - rng.randrange(0, 600_000_000)
        expires = now_us + rng.randrange(3_600_000_000, 7_200_000_000)
        rows.append(("sshd", target, started, expires, 1, 5))
    db = sqlite3.connect(os.path.join(template_dir, "state.sqlite"))
    with db:
        db.executemany("INSERT INTO bans (jail, target, started_us, expires_us, offence, failures)"
                       " VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO ban_history (jail, target, started_us, expires_us, offence, failures)"
                       " VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (n,) = db.execute("SELECT count(*) FROM bans WHERE expires_us > ?", (time.time_ns() // 1000,)).fetchone()
    db.close()
    return n


def kernel_set_check():
    """(elements, elements with a timeout and time left) over sshd-v4 and sshd-v6."""
    total = with_expiry = 0
    for family in ("v4", "v6"):
        data = json.loads(nft("-j", "list", "set", "inet", "banhound", f"sshd-{family}"))
        for item in data["nftables"]:
            for elem in item.get("set", {}).get("elem", []):
                total += 1
                if isinstance(elem, dict) and elem["elem"].get("expires", 0) > 0:
                    with_expiry += 1
    return total, with_expiry


def bench_startup(args, results):
    print(f"\n== start with {args.persisted} persisted bans (load {loadavg()})", flush=True)
    template = os.path.join(args.dir, "template-state")
    n = make_state(args, template, args.persisted)
    print(f"  state database: {n} unexpired bans, "
          f"{os.path.getsize(os.path.join(template, 'state.sqlite')) / 1e6:.1f} MB", flush=True)
    runs = []
    for r in range(args.startup_runs):
        # Cold: no banhound table in the kernel, as after a reboot.
        drop_table()
        d = Daemon(args, f"start{r}", "# defaults only\n")
        shutil.copytree(template, d.state)
        try:
            ready_ms = d.start()
            check_start = now_ns()
            total, with_expiry = kernel_set_check()
            list_ms = (now_ns() - check_start) / 1e6
            row = {"ready_ms": ready_ms, "elements": total, "with_expiry": with_expiry}
            if r == 0:
                # Memory and wakeups with 100k bans in force: 10 s after READY=1.
                time.sleep(max(0.0, 10 - (now_ns() - d.ready_ns) / 1e9))
                row["mem"] = memory(d.proc.pid)
                row["wake"] = idle_wakeups(d.proc.pid, 10)
                files = mapped_files(d.proc.pid)[:6]
                print("  largest Rss mappings: " + ", ".join(f"{n} {kb} kB" for n, kb in files))
        finally:
            d.stop()
        extra = ""
        if "mem" in row:
            extra = f"; after 10 s {row['mem']}; wakeups over 10 s: {fmt_wakeups(row['wake'])}"
        print(f"  run {r + 1} (cold table): exec -> READY=1 {ready_ms:.0f} ms; kernel sets hold {total}"
              f" elements, {with_expiry} with time left (listing took {list_ms:.0f} ms); "
              f"load {loadavg()}{extra}", flush=True)
        runs.append(row)
    results["startup"] = runs

    warm = []
    for r in range(args.startup_runs):
        # Warm: restart while the kernel still holds the previous run's elements.
        d = Daemon(args, f"warm{r}", "# defaults only\n")
        shutil.copytree(template, d.state)
        try:
            warm.append(d.start())
        finally:
            d.stop()
    print("  restart with the table still loaded: exec -> READY=1 "
          + ", ".join(f"{x:.0f}" for x in warm) + " ms", flush=True)
    results["startup_warm"] = warm


def summary(results):
    print("\n== medians", flush=True)
    if "latency" in results:
        lat = results["latency"]
        for k in ("p50", "p99", "max"):
            print(f"  latency {k}: median {statistics.median(r[k] for r in lat):.2f} ms "
                  f"(runs: {', '.join(f'{r[k]:.2f}' for r in lat)})")
    if "startup" in results:
        s = [r["ready_ms"] for r in results["startup"]]
        print(f"  100k start exec -> READY=1: median {statistics.median(s):.0f} ms "
              f"(runs: {', '.join(f'{x:.0f}' for x in s)})")
    if "idle" in results:
        rss = [m["VmRSS"] for m, _, _ in results["idle"]]
        hwm = [m["VmHWM"] for m, _, _ in results["idle"]]
        vol = [v for _, v, _ in results["idle"]]
        print(f"  idle VmRSS median {statistics.median(rss)} kB (runs {rss}); VmHWM median "
              f"{statistics.median(hwm)} kB (runs {hwm}); voluntary switches / {results['idle_seconds']} s: {vol}")
    print(f"  load average at the end: {loadavg()}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--defaults-dir", required=True)
    p.add_argument("--journal-ns", required=True)
    p.add_argument("--journal-socket", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--pidfile", required=True)
    p.add_argument("--only", default="idle,latency,startup")
    p.add_argument("--bans", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--latency-runs", type=int, default=5)
    p.add_argument("--idle-runs", type=int, default=3)
    # 10 s shows the idle floor; over 30 s (the default reconcile_interval) it includes the
    # periodic firewall reconcile.
    p.add_argument("--idle-seconds", type=int, default=10)
    p.add_argument("--startup-runs", type=int, default=5)
    p.add_argument("--persisted", type=int, default=100_000)
    args = p.parse_args()
    # A journald namespace instance exits after 30 s without clients; an open stdout stream
    # counts as one, so this keeps it running for the whole benchmark.
    keeper = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    keeper.connect(os.path.join(os.path.dirname(args.journal_socket), "stdout"))
    keeper.sendall(b"banhound-bench\n\n6\n0\n0\n0\n0\n")
    results = {}
    only = args.only.split(",")
    # Idle first: it needs the journal namespace empty.
    if "idle" in only:
        bench_idle(args, results)
    if "latency" in only:
        bench_latency(args, results)
    if "startup" in only:
        bench_startup(args, results)
    summary(results)


if __name__ == "__main__":
    main()
