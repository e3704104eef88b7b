#!/usr/bin/env bash
# fail2ban compatibility and speed: fail2ban's stock sshd.conf (read from the installed
# /etc/fail2ban, run unchanged) through `banhound test-filter` and through fail2ban-regex,
# on the same generated sshd log, in one run. Compares the hits of every failregex and the
# missed lines, then the time.
#
#   bash bench/fail2ban-compat.sh [LINES (100000)] [MODE (normal)]
#
# Counting: a line matching a failregex through <F-NOFAIL> (or <F-MLFGAINED>) is no failure,
# nor is a failure line whose <F-MLFID> session named no address yet. banhound reports those
# apart ("more matched a failregex ..."); fail2ban-regex sorts them into "matched" or
# "ignored" according to its multi-line bookkeeping. So the comparison is per failregex,
# plus the total of lines any failregex matched and the missed lines, which must be
# identical.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lines=${1:-100000}
mode=${2:-normal}
gen=${GEN_SSHD_LOG:-$here/../shared/bench/gen-sshd-log}
[ -f "$gen" ] || gen=/work/shared/bench/gen-sshd-log

need=()
command -v fail2ban-regex >/dev/null || need+=(fail2ban)
[ -x /usr/bin/time ] || need+=(time)
[ ${#need[@]} -eq 0 ] || "$here/.ci/install-packages" "${need[@]}"
(cd "$here" && cargo build --release --quiet)
bin=$here/target/release/banhound

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$gen" "$lines" --seed 1 > "$work/auth.log"
filter="/etc/fail2ban/filter.d/sshd.conf[mode=$mode]"

measure() { # NAME CMD...: stdout to a file; prints "wall cpu rss"
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err" \
    || { echo "$name failed:"; cat "$work/$name.err"; exit 1; }
  read -r wall user sys rss < "$work/$name.time"
  echo "$wall $(echo "$user + $sys" | bc -l) $rss"
}

read -r b_wall b_cpu b_rss <<< "$(measure banhound "$bin" test-filter "$filter" "$work/auth.log" --timezone UTC --verbose --top 0)"
read -r f_wall f_cpu f_rss <<< "$(measure fail2ban fail2ban-regex --print-no-missed --print-no-ignored "$work/auth.log" "$filter")"

# Per-failregex hits: banhound "#N  hits  [engine] regex", fail2ban "N) [hits] regex" (1-based).
grep -E '^  #[0-9]+ ' "$work/banhound.out" | awk '{gsub(",","",$2); sub("#","",$1); if ($2 > 0) print $1, $2}' > "$work/b.hits"
grep -E '^\|\s+[0-9]+\) \[[0-9]+\]' "$work/fail2ban.out" | sed -E 's/^\|\s+([0-9]+)\) \[([0-9]+)\].*/\1 \2/' \
  | awk '{print $1 - 1, $2}' > "$work/f.hits"
b_missed=$(grep -oE '[0-9,]+ missed' "$work/banhound.out" | head -1 | tr -d , | awk '{print $1}')
b_matched=$(grep -oE 'read: [0-9,]+ matched' "$work/banhound.out" | tr -d , | awk '{print $2}')
# "N more matched a failregex through <F-NOFAIL> ..." and "N more matched a failregex but
# named no address": lines a failregex matched that were no failure (yet).
b_nofail=$(grep -oE '[0-9,]+ more matched a failregex' "$work/banhound.out" | tr -d , | awk '{s += $1} END {print s + 0}')
f_summary=$(grep -E '^Lines: ' "$work/fail2ban.out")
f_ignored=$(echo "$f_summary" | grep -oE '[0-9]+ ignored' | awk '{print $1}')
f_matched=$(echo "$f_summary" | grep -oE '[0-9]+ matched' | awk '{print $1}')
f_missed=$(echo "$f_summary" | grep -oE '[0-9]+ missed' | awk '{print $1}')

echo "Input: $lines generated sshd syslog lines (gen-sshd-log --seed 1); filter $filter"
echo "Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)."
echo
printf "| %-26s | %9s | %9s | %12s | %9s |\n" command wall CPU "lines/s CPU" "peak RSS"
printf "|%s|%s|%s|%s|%s|\n" "----------------------------" "-----------:" "-----------:" "--------------:" "-----------:"
for r in "banhound test-filter $b_wall $b_cpu $b_rss" "fail2ban-regex $f_wall $f_cpu $f_rss"; do
  set -- $r
  if [ "$1" = banhound ]; then name="banhound test-filter"; shift 2; else name=$1; shift; fi
  printf "| %-26s | %7.2f s | %7.2f s | %12.0f | %6.1f MB |\n" "$name" "$1" "$2" "$(echo "$lines / $2" | bc -l)" "$(echo "$3 / 1024" | bc -l)"
done
printf "\nSpeed-up (CPU): %.0fx   (wall: %.0fx)\n\n" "$(echo "$f_cpu / $b_cpu" | bc -l)" "$(echo "$f_wall / $b_wall" | bc -l)"

echo "Failregex hits (index: banhound / fail2ban-regex):"
join -a1 -a2 -e 0 -o 0,1.2,2.2 <(sort "$work/b.hits") <(sort "$work/f.hits") | sort -n \
  | awk '{printf "  #%-3s %9s / %-9s %s\n", $1, $2, $3, ($2 == $3 ? "" : "DIFFERENT")}'
b_any=$((b_matched + b_nofail)); f_any=$((f_matched + f_ignored))
echo "Lines any failregex matched: banhound $b_any ($b_matched failures + $b_nofail no failure yet), fail2ban-regex $f_any ($f_matched matched + $f_ignored ignored)"
echo "Missed lines: banhound $b_missed, fail2ban-regex $f_missed"
# With <F-MLFID> sessions implemented the split agrees too: banhound's failures are
# fail2ban-regex's "matched".
if cmp -s "$work/b.hits" "$work/f.hits" && [ "$b_any" = "$f_any" ] && [ "$b_missed" = "$f_missed" ] \
  && [ "$b_matched" = "$f_matched" ]; then
  echo "RESULT: identical match counts"
else
  echo "RESULT: counts DIFFER"
  exit 2
fi
