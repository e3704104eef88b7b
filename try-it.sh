#!/bin/bash
# Try banhound in one command, on a fresh Debian 12 machine, as root.
#
# Builds banhound, then brings up a throwaway sandbox that touches nothing of the host's
# own logging or firewall: a journald namespace for the logs, and three network namespaces,
# "server", "attacker" and "friend" (documentation addresses), joined by veth pairs.
# banhound runs inside "server", reading that journal namespace; a helper process named
# sshd writes failed logins "from" the attacker; banhound bans it in the server's nftables.
# A private dbus-daemon with banhound's shipped bus policy stands in for the system bus, so
# `banhound status` and `banhound ban` control the sandboxed daemon as they would the real one.
# Everything is removed on exit, whatever happens.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tag="bhtry$$"
ns_server="$tag-server" ns_attacker="$tag-attacker" ns_friend="$tag-friend"
server_v4=203.0.113.1 attacker_v4=203.0.113.66
friend_server_v4=198.51.100.1 friend_v4=198.51.100.7
port=22

section() { printf '\n==== %s ====\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "try-it.sh needs root (network namespaces, nftables, a journald namespace)" >&2
    exit 1
fi

section "Installing build and runtime dependencies"
missing=()
for pkg in build-essential pkg-config libsystemd-dev libnftnl-dev libmnl-dev libsqlite3-dev libssl-dev \
           nftables iproute2 systemd-journal-remote curl python3 dbus; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "all present"
fi
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
fi

section "Building banhound (release)"
(cd "$here" && cargo build --release --quiet)
banhound="$here/target/release/banhound"
ls -l "$banhound"

# --- everything below is undone by cleanup ---------------------------------------------------
tmp="$(mktemp -d /tmp/banhound-try.XXXXXX)"
journald_pid="" daemon_pid="" listener_pid="" bus_pid=""
machine_id="$(cat /etc/machine-id)"
journal_run="/run/systemd/journal.$tag"
journal_log="/var/log/journal/$machine_id.$tag"

cleanup() {
    set +e
    section "Cleaning up"
    [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    [ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null && wait "$listener_pid" 2>/dev/null
    [ -n "$journald_pid" ] && kill "$journald_pid" 2>/dev/null && wait "$journald_pid" 2>/dev/null
    [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
    for ns in "$ns_server" "$ns_attacker" "$ns_friend"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$journal_run" "$journal_log" "$tmp"
    echo "removed namespaces $ns_server $ns_attacker $ns_friend, journal namespace $tag, private bus, $tmp"
}
trap cleanup EXIT

section "Sandbox: journald namespace $tag"
/lib/systemd/systemd-journald "$tag" >/dev/null 2>&1 &
journald_pid=$!
for _ in $(seq 100); do [ -S "$journal_run/socket" ] && break; sleep 0.05; done
[ -S "$journal_run/socket" ] || { echo "journald namespace did not come up" >&2; exit 1; }
echo "journald pid $journald_pid, socket $journal_run/socket"

section "Sandbox: a private D-Bus system bus with banhound's policy"
# The system bus's defaults (deny owning names and method calls) plus dbus/'s policy file, as
# the real system bus applies it from /usr/share/dbus-1/system.d/.
cat > "$tmp/bus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus/socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>$here/dbus/org.banhound.Banhound1.conf</include>
</busconfig>
XML
# nobody must reach the socket too (to be refused by the policy, not by file permissions).
mkdir -m 0755 "$tmp/bus"
chmod 0711 "$tmp"
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=1 > "$tmp/bus.address" 2> "$tmp/bus.log" &
bus_pid=$!
for _ in $(seq 100); do [ -s "$tmp/bus.address" ] && break; sleep 0.05; done
[ -s "$tmp/bus.address" ] || { echo "dbus-daemon did not come up" >&2; exit 1; }
bus="unix:path=$tmp/bus/socket"
echo "dbus-daemon pid $bus_pid, $bus"
bh() { "$banhound" --bus-address "$bus" "$@"; }

section "Sandbox: network namespaces"
for ns in "$ns_server" "$ns_attacker" "$ns_friend"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$ns_server" link add veth-a type veth peer name veth-s netns "$ns_attacker"
ip -n "$ns_server" link add veth-f type veth peer name veth-s netns "$ns_friend"
ip -n "$ns_server" addr add "$server_v4/24" dev veth-a
ip -n "$ns_server" addr add "$friend_server_v4/24" dev veth-f
ip -n "$ns_attacker" addr add "$attacker_v4/24" dev veth-s
ip -n "$ns_friend" addr add "$friend_v4/24" dev veth-s
for pair in "$ns_server veth-a" "$ns_server veth-f" "$ns_attacker veth-s" "$ns_friend veth-s"; do
    set -- $pair
    ip -n "$1" link set "$2" up
done
echo "server   $server_v4 (to attacker), $friend_server_v4 (to friend)"
echo "attacker $attacker_v4"
echo "friend   $friend_v4"

# A TCP "service" on port $port in the server namespace: answers every connection with a line.
ip netns exec "$ns_server" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"SSH-2.0-pretend\r\n"); c.close()
' "$port" &
listener_pid=$!

connect() { # NS ADDRESS -> prints the outcome
    ip netns exec "$1" python3 -c '
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    print("connected:", c.recv(64).decode().strip())
except socket.timeout:
    print("timed out (dropped)")
except OSError as e:
    print("failed:", e)
' "$2" "$port"
}
sleep 0.3
echo "before any ban: attacker -> $(connect "$ns_attacker" "$server_v4"); friend -> $(connect "$ns_friend" "$friend_server_v4")"

section "Configuration (written to $tmp/banhound.toml)"
cat > "$tmp/banhound.toml" <<TOML
# On top of the shipped defaults in conf/ (sshd jail enabled, nftables backend).
[jail.sshd]
enabled = true
maxretry = 3
findtime = "10m"
bantime = "10m"
TOML
cat "$tmp/banhound.toml"
"$banhound" --defaults-dir "$here/conf" --config "$tmp/banhound.toml" check-config

section "Starting banhound daemon inside the server namespace"
ip netns exec "$ns_server" "$banhound" --defaults-dir "$here/conf" --config "$tmp/banhound.toml" \
    --bus-address "$bus" daemon --state-dir "$tmp/state" --journal-namespace "$tag" --log-target stderr \
    2> "$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do grep -q "banhound started" "$tmp/daemon.log" && break; sleep 0.05; done
grep -q "banhound started" "$tmp/daemon.log" || { cat "$tmp/daemon.log"; exit 1; }
echo "banhound pid $daemon_pid is up"

section "banhound status sshd (over the private bus)"
bh status sshd

section "A burst of failed sshd logins from $attacker_v4 (and one from the friend)"
{
    for i in 1 2 3 4 5; do
        echo "Failed password for invalid user admin$i from $attacker_v4 port $((40000 + i)) ssh2"
    done
    echo "Failed password for alice from $friend_v4 port 50000 ssh2"
} > "$tmp/burst.txt"
sed 's/^/  sshd: /' "$tmp/burst.txt"
python3 "$here/tests/support/fake-sshd.py" "$journal_run/socket" < "$tmp/burst.txt"
for _ in $(seq 100); do grep -q "Banned $attacker_v4" "$tmp/daemon.log" && break; sleep 0.05; done

section "banhound's log"
cat "$tmp/daemon.log"

section "nft list table inet banhound (server namespace)"
ip netns exec "$ns_server" nft list table inet banhound

section "Connections to port $port"
echo "attacker ($attacker_v4) -> $(connect "$ns_attacker" "$server_v4")"
echo "friend   ($friend_v4) -> $(connect "$ns_friend" "$friend_server_v4")"

section "banhound status sshd: counters after the burst"
bh status sshd

section "Control over D-Bus: ban the friend by hand, then lift it"
bh ban sshd "$friend_v4"
echo "friend   ($friend_v4) -> $(connect "$ns_friend" "$friend_server_v4")"
bh banned
bh unban "$friend_v4"
echo "friend   ($friend_v4) -> $(connect "$ns_friend" "$friend_server_v4")"
echo "\$ banhound ban sshd 127.0.0.1    (never banned: exit 2)"
bh ban sshd 127.0.0.1 || echo "exit $?"
echo "\$ setpriv --reuid=nobody banhound unban $attacker_v4    (not root: exit 4)"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$banhound" --bus-address "$bus" unban "$attacker_v4" || echo "exit $?"

section "Stopping banhound (SIGTERM): bans stay in the kernel, state is on disk"
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
tail -n 1 "$tmp/daemon.log"
ip netns exec "$ns_server" nft list set inet banhound sshd-v4 | grep elements
ls -l "$tmp/state"
