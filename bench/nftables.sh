#!/bin/sh
# Benchmarks the nftables backend in a private network namespace (needs root).
# See docs/bench-nftables.md for what is measured.
set -eu
cd "$(dirname "$0")/.."
exec cargo test --release --test nftables -- --ignored --nocapture --exact bench_nftables_backend
