#!/usr/bin/env bash
# banhound's test suite: unit tests and integration tests against the real components
# (journald namespaces, nftables in network namespaces, firewalld on a private bus, and a
# Debian 12 host booted with systemd-nspawn).
# Run as root on Debian 12; installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the integration tests create network namespaces and journald instances; run as root" >&2
  exit 1
fi
.ci/install-packages build-essential pkg-config libsystemd-dev libnftnl-dev libmnl-dev \
  libsqlite3-dev systemd systemd-journal-remote nftables iproute2 dbus-daemon firewalld python3 \
  fail2ban debootstrap systemd-container sshpass openssh-client prometheus python3-prometheus-client \
  rpm rpmlint exim4-daemon-light whois curl libssl-dev redis-server redis-tools zsh fish
# systemd-container may pull in libnss-mymachines, which edits this machine's
# /etc/nsswitch.conf; the booted-host tests (tests/realhost) need nothing of it.
if dpkg-query -W -f='${Status}' libnss-mymachines 2>/dev/null | grep -q "install ok installed"; then
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq libnss-mymachines >/dev/null
fi
if ! command -v cargo >/dev/null; then
  # The packaged toolchain may be too old; rustup's is what the project is built with.
  .ci/install-packages cargo
fi
need=1.87
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "test.sh: Rust $have is older than the $need banhound needs (install it with rustup)" >&2
  exit 1
fi
exec cargo test --locked "$@"
