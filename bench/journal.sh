#!/usr/bin/env bash
# Journal source throughput, end to end: `banhound test-filter sshd --journal-file F` (the
# shipped sshd filter, conf/filters/sshd.toml, on every MESSAGE its journalmatch selects)
# against `journalctl --file F _COMM=sshd -o cat`, the floor (reading and printing the same
# entries, no matching), over the same 200,000-entry journal file, runs interleaved so both
# see the same page cache and load. Then fail2ban-regex's systemd-journal backend over a
# smaller file (it is slow); its sshd.conf journalmatch (_SYSTEMD_UNIT=sshd.service +
# _COMM=sshd) selects the same entries as banhound's and journalctl's matches on this data
# (every generated sshd entry has _COMM=sshd and _SYSTEMD_UNIT=ssh.service; checked below).
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
(cd "$here" && cargo build --release --quiet --bin banhound)
banhound=("$here/target/release/banhound" --defaults-dir "$here/conf"
    test-filter sshd --journal-file "$work/bench.journal")

matched=$(journalctl --file "$work/bench.journal" _COMM=sshd -o cat | wc -l)
selected=$("${banhound[@]}" | awk '/^Entries:/ {gsub(",", "", $2); print $2}')
echo "journal: $entries entries, $matched with _COMM=sshd, $selected selected by the sshd filter's journalmatch ($(du -h "$work/bench.journal" | cut -f1))"
if [ "$matched" != "$selected" ]; then
    echo "the two sides read different entries: the comparison would be meaningless" >&2
    exit 1
fi

# Wall seconds and CPU seconds (user+sys) of "$@" (stdout discarded), as "WALL CPU". CPU time
# is reported too because the benchmark machine is shared: wall time swings with other load.
measure() {
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >/dev/null
    awk '{printf "%s %.2f\n", $1, $2 + $3}' "$work/time"
}

ours=() floor=() ours_cpu=() floor_cpu=()
for ((i = 0; i < runs; i++)); do
    read -r w c < <(measure journalctl --file "$work/bench.journal" _COMM=sshd -o cat)
    floor+=("$w") floor_cpu+=("$c")
    read -r w c < <(measure "${banhound[@]}")
    ours+=("$w") ours_cpu+=("$c")
done
"${banhound[@]}" | sed -n '1,/^Timestamps:/p'

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
report() { # name, times...
    local name=$1
    shift
    local m b
    m=$(median "$@")
    b=$(best "$@")
    printf '%-40s median %.3f s (%.0f entries/s)  best %.3f s (%.0f entries/s)  runs: %s\n' \
        "$name" "$m" "$(echo "$matched / $m" | bc -l)" "$b" "$(echo "$matched / $b" | bc -l)" "$*"
}
echo "wall time:"
report "journalctl -o cat (floor)" "${floor[@]}"
report "banhound test-filter sshd --journal-file" "${ours[@]}"
echo "CPU time (user+sys):"
report "journalctl -o cat (floor)" "${floor_cpu[@]}"
report "banhound test-filter sshd --journal-file" "${ours_cpu[@]}"
ratio() { echo "$(median "${!1}") / $(median "${!2}")" | bc -l; }
printf 'speed ratio banhound/journalctl, medians: wall %.2fx, CPU %.2fx\n' \
    "$(ratio 'floor[@]' 'ours[@]')" "$(ratio 'floor_cpu[@]' 'ours_cpu[@]')"

if [ "$f2b_entries" -gt 0 ] && command -v fail2ban-regex >/dev/null; then
    "$gen" "$f2b_entries" --format export | "$remote" -o "$work/f2b.journal" - 2>/dev/null
    f2b_matched=$(journalctl --file "$work/f2b.journal" _COMM=sshd -o cat | wc -l)
    read -r w c < <(measure fail2ban-regex "systemd-journal[journalfiles=\"$work/f2b.journal\"]" \
        /etc/fail2ban/filter.d/sshd.conf)
    printf 'fail2ban-regex (systemd-journal, %s entries, %s matched): wall %.3f s (%.0f entries/s), CPU %.2f s (%.0f entries/s)\n' \
        "$f2b_entries" "$f2b_matched" "$w" "$(echo "$f2b_matched / $w" | bc -l)" "$c" "$(echo "$f2b_matched / $c" | bc -l)"
    fail2ban-regex "systemd-journal[journalfiles=\"$work/f2b.journal\"]" \
        /etc/fail2ban/filter.d/sshd.conf | grep -E '^(Lines|Failregex):' || true
    read -r w c < <(measure "$here/target/release/banhound" --defaults-dir "$here/conf" \
        test-filter sshd --journal-file "$work/f2b.journal")
    printf 'banhound test-filter on the same %s entries: wall %.3f s, CPU %.2f s\n' "$f2b_entries" "$w" "$c"
    "$here/target/release/banhound" --defaults-dir "$here/conf" \
        test-filter sshd --journal-file "$work/f2b.journal" | grep -E '^(Entries|  #)' || true
fi
