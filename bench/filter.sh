#!/usr/bin/env bash
# Filter throughput, side by side, in one run on the same generated sshd workload:
# `banhound test-filter sshd` (the shipped filter), sshguard's parser, fail2ban-rs
# (`dry-run --jail sshd` with its own `gen-config sshd`), fail2ban-regex (stock sshd.conf, on a
# smaller input: it is slow), and two floors that match nothing: `grep -c` over the file and
# `journalctl -o cat` over the same lines as a journal file.
#
#   bash bench/filter.sh [LINES (1000000)] [ROUNDS (5)] [CALLGRIND_LINES (100000, 0 = skip)]
#   BANHOUND_BIN=PATH bash bench/filter.sh ...   (that binary instead of a fresh release build)
#
# The machine is shared, so CPU time (user+sys) is what is compared, and the commands run
# interleaved, one round of each after the other: the ratio to banhound is taken round by round
# and its median printed, so a drift in the machine's speed affects both sides of a pair alike.
# Instructions per line come from callgrind, which does not depend on the load at all. Peak RSS
# is the largest of the rounds. Failures and addresses are what each tool reports finding.
# Installs what it needs (Debian 12); fail2ban-rs is built with `cargo install` into
# $FAIL2BAN_RS_ROOT (default ~/.cache/banhound-bench/fail2ban-rs), outside the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lines=${1:-1000000}
rounds=${2:-5}
cg_lines=${3:-100000}
f2b_lines=$(( lines < 100000 ? lines : 100000 ))
gen=${GEN_SSHD_LOG:-$here/../shared/bench/gen-sshd-log}
[ -e "$gen" ] || gen=/work/shared/bench/gen-sshd-log
f2brs_root=${FAIL2BAN_RS_ROOT:-$HOME/.cache/banhound-bench/fail2ban-rs}
f2brs=$f2brs_root/bin/fail2ban-rs
sshg=/usr/libexec/sshguard/sshg-parser

need=()
command -v fail2ban-regex >/dev/null || need+=(fail2ban)
[ -x "$sshg" ] || need+=(sshguard)
[ -x /usr/bin/time ] || need+=(time)
command -v valgrind >/dev/null || need+=(valgrind)
[ -x /lib/systemd/systemd-journal-remote ] || need+=(systemd-journal-remote)
if [ ${#need[@]} -gt 0 ]; then
  # fail2ban and sshguard start services when installed the plain way.
  "$here/.ci/install-packages" "${need[@]}" >/dev/null
fi
[ -x "$f2brs" ] || cargo install --quiet --locked fail2ban-rs --root "$f2brs_root"
# BANHOUND_BIN=PATH measures that binary (another build, for a before/after) instead.
if [ -n "${BANHOUND_BIN:-}" ]; then
  bin=$BANHOUND_BIN
else
  (cd "$here" && cargo build --release --quiet --bin banhound)
  bin=$here/target/release/banhound
fi

work=$(mktemp -d /tmp/banhound-filter-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 "$gen" "$lines" --seed 1 > "$work/auth.log"
head -n "$f2b_lines" "$work/auth.log" > "$work/auth-f2b.log"
# journal-remote rotates a large output into sibling files: the floor reads them all.
mkdir "$work/journal"
python3 "$gen" "$lines" --seed 1 --format export \
  | /lib/systemd/systemd-journal-remote -o "$work/journal/auth.journal" - 2>/dev/null
{ echo '[global]'; "$f2brs" gen-config sshd; } > "$work/fail2ban-rs.toml"

names=(banhound sshguard fail2ban-rs grep journalctl fail2ban-regex)
# argv NAME LOG: the command line of NAME reading LOG, one word a line.
argv() {
  case $1 in
    banhound) printf '%s\n' "$bin" --defaults-dir "$here/conf" test-filter sshd --timezone UTC "$2" ;;
    sshguard) printf '%s\n' sh -c "exec $sshg < '$2'" ;;
    fail2ban-rs) printf '%s\n' "$f2brs" -c "$work/fail2ban-rs.toml" dry-run "$2" --jail sshd ;;
    grep) printf '%s\n' grep -c sshd "$2" ;;
    journalctl) printf '%s\n' journalctl --directory "$work/journal" -o cat ;;
    fail2ban-regex) printf '%s\n' fail2ban-regex -r --print-no-missed --print-no-ignored "$2" \
      /etc/fail2ban/filter.d/sshd.conf ;;
  esac
}
declare -A label=(
  [banhound]="banhound test-filter sshd"
  [sshguard]="sshguard sshg-parser"
  [fail2ban-rs]="fail2ban-rs $("$f2brs" --version | awk '{print $2}') dry-run (4 regexes)"
  [grep]="grep -c (floor)"
  [journalctl]="journalctl -o cat (floor)"
  [fail2ban-regex]="fail2ban-regex (stock sshd.conf)"
)
input_of() { [ "$1" = fail2ban-regex ] && echo "$work/auth-f2b.log" || echo "$work/auth.log"; }
lines_of() { [ "$1" = fail2ban-regex ] && echo "$f2b_lines" || echo "$lines"; }

# One run: "CPU RSS_KB", stdout kept in $work/NAME.out.
run() {
  local name=$1 words
  mapfile -t words < <(argv "$name" "$(input_of "$name")")
  /usr/bin/time -f "%U %S %M" -o "$work/$name.time" "${words[@]}" > "$work/$name.out" 2> "$work/$name.err" \
    || [ "$name" = grep ] || { echo "$name failed:" >&2; cat "$work/$name.err" >&2; exit 1; }
  awk '{printf "%.3f %d\n", $1 + $2, $3}' "$work/$name.time"
}

declare -A cpus rss ratios
for ((r = 0; r < rounds; r++)); do
  read -r b_cpu b_rss < <(run banhound)
  cpus[banhound]+="$b_cpu "; rss[banhound]=$(( ${rss[banhound]:-0} > b_rss ? ${rss[banhound]:-0} : b_rss ))
  for name in "${names[@]:1}"; do
    read -r c m < <(run "$name")
    cpus[$name]+="$c "
    rss[$name]=$(( ${rss[$name]:-0} > m ? ${rss[$name]:-0} : m ))
    # Per line, so fail2ban-regex's smaller input compares too.
    ratios[$name]+="$(echo "($c / $(lines_of "$name")) / ($b_cpu / $lines)" | bc -l) "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Instructions per line under callgrind, on the first CALLGRIND_LINES lines (fail2ban-regex and
# journalctl are left out: the one is too slow under it, the other reads its own file).
declare -A ipl
if [ "$cg_lines" -gt 0 ]; then
  head -n "$cg_lines" "$work/auth.log" > "$work/auth-cg.log"
  for name in banhound sshguard fail2ban-rs grep; do
    mapfile -t words < <(argv "$name" "$work/auth-cg.log")
    # sshguard's shell execs the parser: follow it, and add up every process's count.
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$work/cg.$name.%p" \
      "${words[@]}" > /dev/null 2> "$work/cg.$name.err" || [ "$name" = grep ]
    total=$(cat "$work"/cg."$name".[0-9]* | awk '/^summary:/ {t += $2} END {print t}')
    ipl[$name]=$(( total / cg_lines ))
  done
fi

# What each found: failures (matched lines) and distinct addresses.
found() {
  local out=$work/$1.out
  case $1 in
    banhound) echo "$(grep -oE 'read: [0-9,]+ matched' "$out" | tr -d , | awk '{print $2}') $(grep -oE '^Addresses: [0-9,]+' "$out" | tr -d , | awk '{print $2}')" ;;
    sshguard) echo "$(wc -l < "$out") $(awk '{print $2}' "$out" | sort -u | wc -l)" ;;
    fail2ban-rs) echo "$(awk '/Matches:/ {print $2}' "$out") $(awk '/Unique IPs:/ {print $3}' "$out")" ;;
    grep) echo "— —" ;;
    journalctl) echo "— —" ;;
    fail2ban-regex) echo "$(grep -oE 'Lines: [0-9]+ lines, [0-9]+ ignored, [0-9]+ matched' "$out" | awk '{print $6}') —" ;;
  esac
}

echo
echo "Input: $lines generated sshd syslog lines ($(du -h "$work/auth.log" | cut -f1)), seed 1; fail2ban-regex on the first $f2b_lines."
echo "Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $rounds interleaved rounds; callgrind on $cg_lines lines."
echo
echo "| command | lines | CPU s (median) | lines/s CPU | CPU per line vs banhound (paired median) | instructions/line | peak RSS | failures found | addresses found |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for name in "${names[@]}"; do
  n=$(lines_of "$name")
  c=$(echo "${cpus[$name]}" | median)
  ratio=$([ "$name" = banhound ] && echo 1 || echo "${ratios[$name]}" | median)
  read -r fails addrs < <(found "$name")
  printf "| %s | %d | %.2f | %s | %.2fx | %s | %.1f MB | %s | %s |\n" "${label[$name]}" "$n" "$c" \
    "$(echo "$n / $c" | bc -l | xargs printf "%.0f")" "$ratio" "${ipl[$name]:-—}" \
    "$(echo "${rss[$name]} / 1024" | bc -l)" "$fails" "$addrs"
done
echo
echo "A ratio above 1 is that many times the CPU banhound spends per line."
