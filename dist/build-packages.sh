#!/bin/sh
# Builds the Debian package and the RPMs from one release build, and checks the RPMs with
# rpmlint. CI runs it (tests/packages.rs); so can anyone on Debian with rpm and rpmlint.
#
#   dist/build-packages.sh [OUTDIR]          (default target/dist)
#
# BANHOUND_BIN=PATH packages that binary instead of target/release/banhound (built when
# missing). BANHOUND_RPM_FROM_SOURCE=1 makes rpmbuild compile from the tarballs as a distro
# build does (a second release build, minutes) instead of packaging the binary.
set -eu

here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/target/dist}"
bin="${BANHOUND_BIN:-$here/target/release/banhound}"
if [ ! -x "$bin" ]; then
    (cd "$here" && cargo build --release --locked)
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n1)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

BANHOUND_BIN="$bin" "$here/dist/deb/build-deb.sh" "$out"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/SOURCES"
# The source tarball: the files git tracks, as they are in the working tree.
(cd "$here" && git ls-files -z | tar --null -T - --transform "s,^,banhound-$version/," \
    -czf "$work/SOURCES/banhound-$version.tar.gz")
# The vendored crates, so the build needs no network.
(cd "$here" && cargo vendor --locked --quiet "$work/vendor" >/dev/null)
tar -C "$work" -czf "$work/SOURCES/banhound-$version-vendor.tar.gz" vendor

set -- --define "_topdir $work" --define "_rpmdir $out"
if [ "${BANHOUND_RPM_FROM_SOURCE:-0}" != 1 ]; then
    set -- "$@" --define "banhound_bin $bin"
fi
# --nodeps: the build dependencies are Fedora packages, which Debian's rpm database does
# not know (Debian's own packages provide them: test.sh installs them).
rpmbuild --quiet --nodeps "$@" -bb "$here/dist/rpm/banhound.spec" >"$work/rpmbuild.log" 2>&1 || {
    cat "$work/rpmbuild.log" >&2
    exit 1
}
rpms="$(find "$out" -name "banhound*-$version-*.rpm")"
echo "$rpms"
if command -v rpmlint >/dev/null 2>&1; then
    # The spec's own warnings are justified in dist/rpm/banhound.rpmlintrc.
    # shellcheck disable=SC2086
    rpmlint -r "$here/dist/rpm/banhound.rpmlintrc" "$here/dist/rpm/banhound.spec" $rpms
fi
