#!/usr/bin/env bash
# Builds (once) the Debian 12 root the booted-host tests boot with systemd-nspawn, and prints
# its path. The root is cached under /var/lib/machines, keyed by a hash of this script (the
# package list and every step below), so changing the recipe builds a new root. It is built in
# a temporary directory and renamed into place: a killed build never leaves a half root where
# the next run would take it for a finished one. Roots of older recipes stay until removed
# by hand (rm -rf /var/lib/machines/banhound-test-*): a test elsewhere may still boot them.
set -euo pipefail

packages=systemd,systemd-sysv,dbus,openssh-server,nftables,firewalld,iproute2,netbase,libpam-systemd,libnftnl11,libmnl0,libsystemd0
cache=/var/lib/machines
key=$(sha256sum "$0" | cut -c1-16)
root="$cache/banhound-test-$key"

if [ -d "$root" ]; then
  echo "$root"
  exit 0
fi
for tool in debootstrap chroot flock; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-root.sh: $tool not found (bash test.sh installs what the tests need)" >&2
    exit 1
  fi
done
mkdir -p "$cache"
# Test binaries may run in parallel: one builds, the others wait for it.
exec 9>"$cache/.banhound-test.lock"
flock 9
if [ -d "$root" ]; then
  echo "$root"
  exit 0
fi
# Leftovers of killed builds.
rm -rf "$cache"/.banhound-test-*.tmp

# The mirror apt on this machine already uses.
mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

tmp="$cache/.banhound-test-$key.$$.tmp"
trap 'rm -rf "$tmp"' EXIT
echo "building the test root in $tmp from $mirror (a few minutes, once)" >&2
# debootstrap does not resolve polkitd's virtual default-logind; when it stops there the
# base system is in place and apt finishes the job.
if ! debootstrap --variant=minbase --include="$packages" bookworm "$tmp" "$mirror" >&2; then
  echo "debootstrap stopped; finishing with apt inside the root" >&2
  chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    $(echo "$packages" | tr , ' ') >&2
fi
# The tests turn firewalld on where they need it: the plain host is Debian's default,
# nftables installed and its service not enabled.
chroot "$tmp" systemctl disable firewalld.service >&2 || true
# Nothing on this host needs a login on the console, and its getty only slows the boot.
chroot "$tmp" systemctl mask console-getty.service getty@.service >&2 || true
# A persistent journal, as on a real server (reboots keep it).
mkdir -p "$tmp/var/log/journal"
# Users the tests log in as (a valid user with a wrong password is the admin's typo).
chroot "$tmp" useradd -m -s /bin/bash admin
echo 'admin:correct-horse' | chroot "$tmp" chpasswd
# The machine id stays as debootstrap set it: an empty one would make every boot a first
# boot, where systemd applies the presets again (enabling firewalld).
chroot "$tmp" apt-get clean
rm -rf "$tmp/var/lib/apt/lists/"*
mv -T "$tmp" "$root"
trap - EXIT
echo "$root"
