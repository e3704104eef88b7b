#!/bin/sh
# Benchmarks `banhound daemon` against its targets (needs root, nft, ip, python3,
# /lib/systemd/systemd-journald): ban latency journal -> kernel set, start-up with 100,000
# persisted bans, RSS idle and with 100,000 bans, idle wake-ups. See docs/benchmarks.md,
# section "Daemon", for the method and the results.
#
# The daemon runs in a private network namespace (its own nftables) and reads a standalone
# journald namespace; bench/daemon_bench.py does the measuring from inside the network
# namespace. Everything started here is stopped by pid, and the namespaces and directories
# removed, on exit, also on failure or ^C.
#
# usage: bench/daemon.sh [--only idle,latency,startup] [--latency-runs N] [--bans N] ...
#        (options are passed to bench/daemon_bench.py)
#        BANHOUND_BIN=PATH bench/daemon.sh ...   (that binary instead of a fresh release build)
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/daemon.sh: needs root" >&2; exit 1; }

# BANHOUND_BIN=PATH measures that binary (another build, for a before/after) instead.
if [ -n "${BANHOUND_BIN:-}" ]; then
    BIN=$BANHOUND_BIN
else
    cargo build --release
    BIN="$PWD/${CARGO_TARGET_DIR:-target}/release/banhound"
fi
[ -x "$BIN" ] || { echo "bench/daemon.sh: no $BIN" >&2; exit 1; }

TAG="bhbench$$"
MACHINE_ID=$(cat /etc/machine-id)
JOURNAL_RUN="/run/systemd/journal.$TAG"
JOURNAL_FILES="/var/log/journal/$MACHINE_ID.$TAG"
# On disk, not tmpfs: the state database commits with fsync (synchronous=FULL), and that
# is part of what a ban costs in production.
WORK=$(mktemp -d /var/tmp/banhound-bench.XXXXXX)
PIDS="$WORK/pids"
: >"$PIDS"
JOURNALD_PID=
HARNESS_PID=
NETNS_MADE=

cleanup() {
    rc=$?
    trap - EXIT INT TERM
    if [ -n "$HARNESS_PID" ]; then
        kill -TERM "$HARNESS_PID" 2>/dev/null || true
        wait "$HARNESS_PID" 2>/dev/null || true
    fi
    # The harness's children, by the pids it recorded; only if the pid still names one of
    # the programs it starts (a recorded pid may have been reused by then).
    for pid in $(cat "$PIDS" 2>/dev/null); do
        case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
        banhound | nft | journalctl | sshd) kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
    if [ -n "$JOURNALD_PID" ]; then
        kill -TERM "$JOURNALD_PID" 2>/dev/null || true
        wait "$JOURNALD_PID" 2>/dev/null || true
    fi
    [ -n "$NETNS_MADE" ] && ip netns del "$TAG" 2>/dev/null || true
    rm -rf "$JOURNAL_RUN" "$JOURNAL_FILES" "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

/lib/systemd/systemd-journald "$TAG" </dev/null >/dev/null 2>&1 &
JOURNALD_PID=$!
for _ in $(seq 100); do
    [ -S "$JOURNAL_RUN/socket" ] && [ -f "$JOURNAL_FILES/system.journal" ] && break
    sleep 0.1
done
[ -S "$JOURNAL_RUN/socket" ] || { echo "bench/daemon.sh: journald namespace did not start" >&2; exit 1; }

ip netns add "$TAG"
NETNS_MADE=1
ip -n "$TAG" link set lo up

echo "banhound $(git describe --always --dirty 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'),"\
    "$(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
ip netns exec "$TAG" python3 bench/daemon_bench.py \
    --bin "$BIN" --defaults-dir "$PWD/conf" \
    --journal-ns "$TAG" --journal-socket "$JOURNAL_RUN/socket" \
    --dir "$WORK" --pidfile "$PIDS" "$@" &
HARNESS_PID=$!
wait "$HARNESS_PID"
