#!/bin/sh
# Installs banhound: the binary, the systemd unit, the shipped defaults and filters, the
# D-Bus policy (who may own and call org.banhound.Banhound1) and interface descriptions.
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
# The system bus reads policies from here (and notices new files by itself).
buspolicydir="/usr/share/dbus-1/system.d"
businterfacedir="/usr/share/dbus-1/interfaces"
mandir="$PREFIX/share/man/man1"
bashcompdir="$PREFIX/share/bash-completion/completions"
zshcompdir="$PREFIX/share/zsh/vendor-completions"
fishcompdir="$PREFIX/share/fish/vendor_completions.d"

bin="${BANHOUND_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$here" && cargo build --release --locked)
    bin="$here/target/release/banhound"
fi

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$libdir/filters" "$DESTDIR$libdir/jail.d" "$DESTDIR$unitdir" \
    "$DESTDIR$buspolicydir" "$DESTDIR$businterfacedir"
install -m 0755 "$bin" "$DESTDIR$bindir/banhound"
install -m 0644 "$here/conf/banhound.toml" "$DESTDIR$libdir/banhound.toml"
for f in "$here"/conf/jail.d/*.toml; do install -m 0644 "$f" "$DESTDIR$libdir/jail.d/"; done
for f in "$here"/conf/filters/*.toml; do install -m 0644 "$f" "$DESTDIR$libdir/filters/"; done
# The unit names the binary by its installed path.
sed "s|/usr/bin/banhound|$bindir/banhound|g" "$here/units/banhound.service" \
    > "$DESTDIR$unitdir/banhound.service"
chmod 0644 "$DESTDIR$unitdir/banhound.service"
# Without the policy the system bus refuses to let the daemon own its name: banhound then
# protects as usual but cannot be controlled (banhound status says it is not running).
install -m 0644 "$here/dbus/org.banhound.Banhound1.conf" "$DESTDIR$buspolicydir/"
for f in "$here"/dbus/org.banhound.Banhound1.*.xml; do install -m 0644 "$f" "$DESTDIR$businterfacedir/"; done

# Man pages and shell completions are generated from the command-line definitions, so they
# always describe this binary.
install -d -m 0755 "$DESTDIR$mandir" "$DESTDIR$bashcompdir" "$DESTDIR$zshcompdir" "$DESTDIR$fishcompdir"
"$bin" generate man "$DESTDIR$mandir"
chmod 0644 "$DESTDIR$mandir"/*.1
"$bin" generate completions bash > "$DESTDIR$bashcompdir/banhound"
"$bin" generate completions zsh > "$DESTDIR$zshcompdir/_banhound"
"$bin" generate completions fish > "$DESTDIR$fishcompdir/banhound.fish"

echo "installed banhound to ${DESTDIR:-/}: $bindir/banhound, $libdir/, $unitdir/banhound.service, $buspolicydir/org.banhound.Banhound1.conf"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "enable with: systemctl enable --now banhound"
fi
