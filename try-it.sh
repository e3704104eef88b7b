#!/usr/bin/env bash
# Try banhound in one command (root, Debian 12): builds it, writes a throwaway sshd log with
# a brute-force attack in it, and shows what banhound's sshd filter finds and would ban.
set -euo pipefail
cd "$(dirname "$0")"
.ci/install-packages build-essential pkg-config libsystemd-dev libnftnl-dev libmnl-dev python3
command -v cargo >/dev/null || .ci/install-packages cargo
echo "== building banhound (release)"
cargo build --release --quiet
bin=target/release/banhound
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== writing a sample auth.log: one attacker guessing passwords, users logging in normally"
python3 - "$work/auth.log" <<'PY'
import random, sys, time
rng = random.Random(7)
t = time.time() - 3600
out = open(sys.argv[1], "w")
def line(msg, ident="sshd"):
    global t
    t += rng.uniform(0.5, 4)
    out.write(time.strftime("%b %d %H:%M:%S", time.gmtime(t)) + " web1 %s[%d]: %s\n" % (ident, rng.randrange(1000, 9999), msg))
for i in range(400):
    r = rng.random()
    if r < 0.3:
        user = rng.choice(["root", "admin", "oracle", "test"])
        line("Failed password for invalid user %s from 203.0.113.50 port %d ssh2" % (user, rng.randrange(1024, 65535)))
    elif r < 0.35:
        line("Invalid user guest from 2001:db8:bad::7 port %d" % rng.randrange(1024, 65535))
    elif r < 0.37:
        # An attacker-chosen user name that names someone else's address: never believed.
        line("Failed password for invalid user root from 192.0.2.1 from 198.51.100.23 port 22 ssh2")
    elif r < 0.7:
        line("Accepted publickey for alice from 192.0.2.10 port %d ssh2: ED25519 SHA256:q4Sx" % rng.randrange(1024, 65535))
    else:
        line("pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)", "CRON")
PY
echo
echo "== banhound test-filter sshd auth.log"
"$bin" --defaults-dir conf test-filter sshd "$work/auth.log" --timezone UTC --top 5
echo "== the same, as JSON (first 3 matches)"
"$bin" --defaults-dir conf test-filter sshd "$work/auth.log" --timezone UTC --json 2>/dev/null | head -n 3
