#!/bin/sh
# Installs banhound: the binary, the systemd unit, the shipped defaults and filters, the
# D-Bus policy (who may own and call org.banhound.Banhound1) and interface descriptions.
#
#   BANHOUND_BIN=path ./install.sh     install this binary (built elsewhere: a server needs no Rust)
#   ./install.sh                       build (release, needs cargo) and install under /usr
#   DESTDIR=/tmp/pkg ./install.sh      stage into a package root
#   PREFIX=/usr/local ./install.sh     binary under /usr/local/bin (defaults stay in /usr/lib/banhound,
#                                      where banhound looks for them unless --defaults-dir)
#
# The admin's /etc/banhound is never written: it holds their overrides only.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr}"
bindir="$PREFIX/bin"
libdir="/usr/lib/banhound"
unitdir="${UNITDIR:-/lib/systemd/system}"
# The system bus reads policies from here (and is asked to reread them after the install).
buspolicydir="/usr/share/dbus-1/system.d"
businterfacedir="/usr/share/dbus-1/interfaces"
mandir="$PREFIX/share/man"
bashcompdir="$PREFIX/share/bash-completion/completions"
zshcompdir="$PREFIX/share/zsh/vendor-completions"
fishcompdir="$PREFIX/share/fish/vendor_completions.d"

bin="${BANHOUND_BIN:-}"
if [ -z "$bin" ]; then
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install.sh: cargo not found, and BANHOUND_BIN is not set." >&2
        echo "  On a server, install a binary built elsewhere: BANHOUND_BIN=/path/to/banhound ./install.sh" >&2
        echo "  (it needs libsystemd0, libnftnl11 and libmnl0), or install Rust to build here." >&2
        exit 1
    fi
    (cd "$here" && cargo build --release --locked)
    bin="$here/target/release/banhound"
fi
if [ ! -x "$bin" ]; then
    echo "install.sh: $bin is not an executable file" >&2
    exit 1
fi

# Every file goes in under a temporary name in its own directory and is then renamed over
# the old one: whoever reads it meanwhile (the system bus reads its policy directory as soon
# as a file appears there) sees the old file or the new one, never a half-written one.
# Files go in one at a time: on failure only the one in flight is left to remove.
tmp=""
mantmp=""
trap 'rm -f "$tmp"; [ -z "$mantmp" ] || rm -rf "$mantmp"' EXIT
# put MODE SOURCE TARGET
put() {
    tmp="$(dirname "$3")/.$(basename "$3").tmp.$$"
    install -m "$1" "$2" "$tmp"
    mv -f "$tmp" "$3"
}
# made MODE TARGET COMMAND...: TARGET is what COMMAND writes to stdout.
made() {
    mode="$1" target="$2"
    shift 2
    tmp="$(dirname "$target")/.$(basename "$target").tmp.$$"
    "$@" > "$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$target"
}

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$libdir/filters" "$DESTDIR$libdir/jail.d" "$DESTDIR$unitdir" \
    "$DESTDIR$buspolicydir" "$DESTDIR$businterfacedir"
put 0755 "$bin" "$DESTDIR$bindir/banhound"
put 0644 "$here/conf/banhound.toml" "$DESTDIR$libdir/banhound.toml"
for f in "$here"/conf/jail.d/*.toml; do put 0644 "$f" "$DESTDIR$libdir/jail.d/$(basename "$f")"; done
for f in "$here"/conf/filters/*.toml; do put 0644 "$f" "$DESTDIR$libdir/filters/$(basename "$f")"; done
# The unit names the binary by its installed path.
made 0644 "$DESTDIR$unitdir/banhound.service" \
    sed "s|/usr/bin/banhound|$bindir/banhound|g" "$here/units/banhound.service"
# Without the policy the system bus refuses to let the daemon own its name: banhound then
# protects as usual but cannot be controlled (banhound status says it is not running).
put 0644 "$here/dbus/org.banhound.Banhound1.conf" "$DESTDIR$buspolicydir/org.banhound.Banhound1.conf"
for f in "$here"/dbus/org.banhound.Banhound1.*.xml; do
    put 0644 "$f" "$DESTDIR$businterfacedir/$(basename "$f")"
done

# Man pages and shell completions are generated from the command-line definitions, so they
# always describe this binary.
install -d -m 0755 "$DESTDIR$mandir/man1" "$DESTDIR$mandir/man5" "$DESTDIR$bashcompdir" \
    "$DESTDIR$zshcompdir" "$DESTDIR$fishcompdir"
mantmp="$(mktemp -d "$DESTDIR$mandir/.banhound-man.XXXXXX")"
"$bin" generate man "$mantmp"
for page in "$mantmp"/*.[15]; do
    chmod 0644 "$page"
    section="${page##*.}"
    mv -f "$page" "$DESTDIR$mandir/man$section/$(basename "$page")"
done
made 0644 "$DESTDIR$bashcompdir/banhound" "$bin" generate completions bash
made 0644 "$DESTDIR$zshcompdir/_banhound" "$bin" generate completions zsh
made 0644 "$DESTDIR$fishcompdir/banhound.fish" "$bin" generate completions fish

echo "installed banhound to ${DESTDIR:-/}: $bindir/banhound, $libdir/, $unitdir/banhound.service, $buspolicydir/org.banhound.Banhound1.conf"
if [ -z "$DESTDIR" ]; then
    # The bus also rereads its policy directory when it notices a change, but a read that
    # raced with an older, non-atomic install was never repeated: ask for it explicitly.
    # No bus (a chroot, a container without one): nothing to tell.
    if command -v busctl >/dev/null 2>&1; then
        busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig \
            >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        echo "enable with: systemctl enable --now banhound"
    fi
fi
