#!/usr/bin/env bash
# The short form of the fuzz targets, for CI: builds them and runs each for ~20 s (or
# FUZZ_SMOKE_SECONDS) starting from its committed corpus in fuzz/corpus/<target>. New inputs
# go to a temporary directory, so the run changes nothing in the tree; a crash fails the run
# and leaves its input in fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
# cargo-fuzz drives libFuzzer through sanitizer flags that are nightly-only; the machines
# have the stable toolchain only, which accepts them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
seconds=${FUZZ_SMOKE_SECONDS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo fuzz build
for target in $(cargo fuzz list); do
  mkdir "$work/$target"
  echo "fuzz/smoke.sh: $target for ${seconds}s over fuzz/corpus/$target" >&2
  nice -n 10 cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
done
echo "fuzz/smoke.sh: every target ran ${seconds}s without a crash" >&2
