#!/usr/bin/env bash
# Installs the build dependencies, builds bosun, and runs one store member on loopback
# (client URL http://127.0.0.1:2379, data in ./bosun-data). Extra arguments go to
# `bosun store`.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cargo build --release --locked -p bosun
exec "${CARGO_TARGET_DIR:-target}/release/bosun" store --data-dir bosun-data "$@"
