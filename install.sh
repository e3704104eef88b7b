#!/bin/sh
# Installs banhound: the binary, the systemd unit, the shipped defaults and filters.
#
#   ./install.sh                       build (release) and install under /usr
#   DESTDIR=/tmp/pkg ./install.sh      stage into a package root
#   PREFIX=/usr/local ./install.sh     binary under /usr/local/bin (defaults stay in /usr/lib/banhound,
#                                      where banhound looks for them unless --defaults-dir)
#   BANHOUND_BIN=path ./install.sh     install this binary instead of building
#
# The admin's /etc/banhound is never written: it holds their overrides only.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr}"
bindir="$PREFIX/bin"
libdir="/usr/lib/banhound"
unitdir="${UNITDIR:-/lib/systemd/system}"

bin="${BANHOUND_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$here" && cargo build --release --locked)
    bin="$here/target/release/banhound"
fi

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$libdir/filters" "$DESTDIR$libdir/jail.d" "$DESTDIR$unitdir"
install -m 0755 "$bin" "$DESTDIR$bindir/banhound"
install -m 0644 "$here/conf/banhound.toml" "$DESTDIR$libdir/banhound.toml"
for f in "$here"/conf/jail.d/*.toml; do install -m 0644 "$f" "$DESTDIR$libdir/jail.d/"; done
for f in "$here"/conf/filters/*.toml; do install -m 0644 "$f" "$DESTDIR$libdir/filters/"; done
# The unit names the binary by its installed path.
sed "s|/usr/bin/banhound|$bindir/banhound|g" "$here/units/banhound.service" \
    > "$DESTDIR$unitdir/banhound.service"
chmod 0644 "$DESTDIR$unitdir/banhound.service"

echo "installed banhound to ${DESTDIR:-/}: $bindir/banhound, $libdir/, $unitdir/banhound.service"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "enable with: systemctl enable --now banhound"
fi
