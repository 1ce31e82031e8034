#!/usr/bin/env bash
# The benchmark: builds bosun and bosun-bench in release, then runs a three-member Bosun
# store and (when installed) a three-member etcd on loopback, one after the other, under the
# same load, and prints ops/s, p50/p99 and the Bosun/etcd ratios. Arguments go to
# bosun-bench (see `deploy/bench.sh --help`), e.g. `deploy/bench.sh --duration 5`.
# etcd comes from `deploy/install-deps.sh --test`; without it only Bosun is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cargo build --release --locked -p bosun -p bosun-bench
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
BOSUN_BIN="$target/release/bosun" exec "$target/release/bosun-bench" "$@"
