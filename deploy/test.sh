#!/usr/bin/env bash
# The test command: installs what the tests need, builds, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh --test
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads 2
