#!/bin/sh
# Builds banhound_VERSION_ARCH.deb with dpkg-deb from a binary built beforehand, staged by
# install.sh, so the package holds exactly what install.sh installs.
#
#   BANHOUND_BIN=target/release/banhound dist/deb/build-deb.sh [OUTDIR]
#
# Default binary: target/release/banhound (built with `cargo build --release --locked` when
# missing). Default OUTDIR: target/dist. BANHOUND_DEB_COMPRESSION=gzip packs faster than
# the default xz (the tests use it). The package does not enable the service: the admin
# runs `systemctl enable --now banhound` after choosing the jails (as with the RPM, whose
# presets leave it disabled).
set -eu

here="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$here/target/dist}"
bin="${BANHOUND_BIN:-$here/target/release/banhound}"
if [ ! -x "$bin" ]; then
    (cd "$here" && cargo build --release --locked)
fi
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n1)"
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
DESTDIR="$root" BANHOUND_BIN="$bin" UNITDIR=/lib/systemd/system PREFIX=/usr "$here/install.sh" >/dev/null
# Debian compresses man pages; install.sh leaves them plain for a direct install.
find "$root/usr/share/man" -type f -name 'banhound*' -exec gzip -9n {} +
install -d -m 0755 "$root/usr/share/doc/banhound"
install -m 0644 "$here/README.md" "$root/usr/share/doc/banhound/README.md"
gzip -9n "$root/usr/share/doc/banhound/README.md"

install -d -m 0755 "$root/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: banhound
Version: $version-1
Architecture: $arch
Maintainer: banhound developers <banhound@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, libsystemd0 (>= 245), libnftnl11 (>= 1.0.6), libmnl0, libssl3
Recommends: nftables | firewalld, dbus
Section: net
Priority: optional
Homepage: https://github.com/banhound/banhound
Description: journald-native replacement for fail2ban
 banhound reads the systemd journal (and log files), counts authentication
 failures with fail2ban-compatible filters and bans the offending addresses in
 nftables or firewalld, with per-element kernel timeouts and bans kept across
 restarts. Controlled over D-Bus (banhound status, ban, unban).
CONTROL
for script in postinst prerm postrm; do
    install -m 0755 "$here/dist/deb/$script" "$root/DEBIAN/$script"
done

install -d "$out"
deb="$out/banhound_${version}-1_${arch}.deb"
dpkg-deb --root-owner-group "-Z${BANHOUND_DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
