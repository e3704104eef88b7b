#!/usr/bin/env bash
# Filter throughput: `banhound test-filter sshd` against fail2ban-regex (stock sshd filter) and
# sshguard's parser, on the same generated sshd workload, in one run.
#
#   bash bench/filter.sh [LINES]        (default 1,000,000; fail2ban-regex gets 100,000 of them)
#
# Prints lines/s (wall and CPU), the ratios and peak RSS, and the match coverage of banhound's
# sshd filter against fail2ban's on the fail2ban-sized input. Installs what it needs (Debian 12).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lines=${1:-1000000}
f2b_lines=$(( lines < 100000 ? lines : 100000 ))
gen=${GEN_SSHD_LOG:-$here/../shared/bench/gen-sshd-log}

need=()
command -v fail2ban-regex >/dev/null || need+=(fail2ban)
[ -x /usr/libexec/sshguard/sshg-parser ] || need+=(sshguard)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$here" && cargo build --release --quiet)
bin=$here/target/release/banhound

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$gen" "$lines" --seed 1 > "$work/auth.log"
head -n "$f2b_lines" "$work/auth.log" > "$work/auth-small.log"

# measure NAME CMD...: runs CMD with stdout to a file, records wall, user+sys and max RSS.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err" \
    || { echo "$name failed:"; cat "$work/$name.err"; exit 1; }
  read -r wall user sys rss < "$work/$name.time"
  cpu=$(echo "$user + $sys" | bc -l)
  echo "$name $wall $cpu $rss"
}

ban_args=(--defaults-dir "$here/conf" test-filter sshd --timezone UTC)
r_ban=$(measure banhound "$bin" "${ban_args[@]}" "$work/auth.log")
r_sshg=$(measure sshguard sh -c "/usr/libexec/sshguard/sshg-parser < '$work/auth.log'")
r_f2b=$(measure fail2ban fail2ban-regex -r --print-no-missed --print-no-ignored "$work/auth-small.log" /etc/fail2ban/filter.d/sshd.conf)
r_ban_small=$(measure banhound-small "$bin" "${ban_args[@]}" "$work/auth-small.log")

rate() { echo "$1 / $2" | bc -l | xargs printf "%.0f"; }
row() { # name lines wall cpu rss
  printf "| %-34s | %10s | %8.2f s | %12s | %8.2f s | %12s | %7.1f MB |\n" \
    "$1" "$2" "$3" "$(rate "$2" "$3")" "$4" "$(rate "$2" "$4")" "$(echo "$5 / 1024" | bc -l)"
}
read -r _ b_wall b_cpu b_rss <<< "$r_ban"
read -r _ s_wall s_cpu s_rss <<< "$r_sshg"
read -r _ f_wall f_cpu f_rss <<< "$r_f2b"
read -r _ bs_wall bs_cpu bs_rss <<< "$r_ban_small"

echo
echo "Input: $lines generated sshd syslog lines ($(du -h "$work/auth.log" | cut -f1)); fail2ban-regex on the first $f2b_lines."
echo "Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| command                            |      lines |     wall |     lines/s |      CPU |  lines/s CPU |  peak RSS |"
echo "|------------------------------------|-----------:|---------:|------------:|---------:|-------------:|----------:|"
row "banhound test-filter sshd" "$lines" "$b_wall" "$b_cpu" "$b_rss"
row "sshguard sshg-parser" "$lines" "$s_wall" "$s_cpu" "$s_rss"
row "fail2ban-regex (stock sshd.conf)" "$f2b_lines" "$f_wall" "$f_cpu" "$f_rss"
row "banhound test-filter sshd" "$f2b_lines" "$bs_wall" "$bs_cpu" "$bs_rss"
echo
b_rate=$(rate "$lines" "$b_cpu"); s_rate=$(rate "$lines" "$s_cpu"); f_rate=$(rate "$f2b_lines" "$f_cpu")
printf "Ratios (CPU lines/s): banhound / sshguard = %.1fx, banhound / fail2ban-regex = %.0fx\n" \
  "$(echo "$b_rate / $s_rate" | bc -l)" "$(echo "$b_rate / $f_rate" | bc -l)"

# Coverage on the same input: failure lines found by each.
f2b_matched=$(grep -oE 'Lines: [0-9]+ lines, [0-9]+ ignored, [0-9]+ matched' "$work/fail2ban.out" | awk '{print $6}')
f2b_ignored=$(grep -oE 'Lines: [0-9]+ lines, [0-9]+ ignored' "$work/fail2ban.out" | awk '{print $4}')
ban_matched=$(grep -oE 'read: [0-9,]+ matched' "$work/banhound-small.out" | tr -d , | awk '{print $2}')
echo "Coverage on $f2b_lines lines: banhound sshd matched $ban_matched; fail2ban sshd matched $f2b_matched (and ignored $f2b_ignored)."
