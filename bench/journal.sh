#!/usr/bin/env bash
# Journal source throughput: banhound's reader (match _COMM=sshd, an sshd filter run on every
# MESSAGE) against `journalctl --file F _COMM=sshd -o cat`, the floor, over the same
# 200,000-entry journal file, runs interleaved so both see the same page cache and load.
# Optionally fail2ban-regex's systemd-journal backend over a smaller file (it is slow); its
# sshd.conf journalmatch (_SYSTEMD_UNIT=sshd.service + _COMM=sshd) selects the same entries.
#
# Usage: bench/journal.sh [ENTRIES (200000)] [RUNS (5)] [FAIL2BAN_ENTRIES (20000, 0 = skip)]
set -euo pipefail

entries=${1:-200000}
runs=${2:-5}
f2b_entries=${3:-20000}
here=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_SSHD_LOG:-$here/../shared/bench/gen-sshd-log}
[ -x "$gen" ] || gen=/work/shared/bench/gen-sshd-log
remote=/lib/systemd/systemd-journal-remote

work=$(mktemp -d /tmp/banhound-journal-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$gen" "$entries" --format export | "$remote" -o "$work/bench.journal" - 2>/dev/null
(cd "$here" && cargo build --release --quiet --example journal_bench)
bench="$here/target/release/examples/journal_bench"

matched=$(journalctl --file "$work/bench.journal" _COMM=sshd -o cat | wc -l)
echo "journal: $entries entries, $matched with _COMM=sshd ($(du -h "$work/bench.journal" | cut -f1))"

# Wall seconds and CPU seconds (user+sys) of "$@" (stdout discarded), as "WALL CPU". CPU time
# is reported too because the benchmark machine is shared: wall time swings with other load.
measure() {
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >/dev/null
    awk '{printf "%s %.2f\n", $1, $2 + $3}' "$work/time"
}
seconds() { measure "$@" | cut -d' ' -f1; }

ours=() floor=() ours_syslog=() ours_cpu=() floor_cpu=() ours_syslog_cpu=()
for ((i = 0; i < runs; i++)); do
    read -r w c < <(measure journalctl --file "$work/bench.journal" _COMM=sshd -o cat)
    floor+=("$w") floor_cpu+=("$c")
    read -r w c < <(measure "$bench" "$work/bench.journal")
    ours+=("$w") ours_cpu+=("$c")
    read -r w c < <(measure "$bench" --syslog "$work/bench.journal")
    ours_syslog+=("$w") ours_syslog_cpu+=("$c")
done
"$bench" "$work/bench.journal"
"$bench" --syslog "$work/bench.journal"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
report() { # name, times...
    local name=$1
    shift
    local m b
    m=$(median "$@")
    b=$(best "$@")
    printf '%-34s median %.3f s (%.0f entries/s)  best %.3f s (%.0f entries/s)  runs: %s\n' \
        "$name" "$m" "$(echo "$matched / $m" | bc -l)" "$b" "$(echo "$matched / $b" | bc -l)" "$*"
}
echo "wall time:"
report "journalctl -o cat (floor)" "${floor[@]}"
report "banhound reader + filter (MESSAGE)" "${ours[@]}"
report "banhound reader + filter (syslog)" "${ours_syslog[@]}"
echo "CPU time (user+sys):"
report "journalctl -o cat (floor)" "${floor_cpu[@]}"
report "banhound reader + filter (MESSAGE)" "${ours_cpu[@]}"
report "banhound reader + filter (syslog)" "${ours_syslog_cpu[@]}"
ratio() { echo "$(median "${!1}") / $(median "${!2}")" | bc -l; }
printf 'speed ratio banhound/journalctl, medians: wall %.2fx (MESSAGE) %.2fx (syslog line); CPU %.2fx (MESSAGE) %.2fx (syslog line)\n' \
    "$(ratio 'floor[@]' 'ours[@]')" "$(ratio 'floor[@]' 'ours_syslog[@]')" \
    "$(ratio 'floor_cpu[@]' 'ours_cpu[@]')" "$(ratio 'floor_cpu[@]' 'ours_syslog_cpu[@]')"

if [ "$f2b_entries" -gt 0 ] && command -v fail2ban-regex >/dev/null; then
    "$gen" "$f2b_entries" --format export | "$remote" -o "$work/f2b.journal" - 2>/dev/null
    f2b_matched=$(journalctl --file "$work/f2b.journal" _COMM=sshd -o cat | wc -l)
    t=$(seconds fail2ban-regex "systemd-journal[journalfiles=\"$work/f2b.journal\"]" \
        /etc/fail2ban/filter.d/sshd.conf)
    printf 'fail2ban-regex (systemd-journal, %s entries, %s matched): %.3f s (%.0f entries/s)\n' \
        "$f2b_entries" "$f2b_matched" "$t" "$(echo "$f2b_matched / $t" | bc -l)"
    fail2ban-regex "systemd-journal[journalfiles=\"$work/f2b.journal\"]" \
        /etc/fail2ban/filter.d/sshd.conf | grep -E '^(Lines|Failregex):' || true
fi
