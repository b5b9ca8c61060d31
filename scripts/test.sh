#!/usr/bin/env bash
# The project's whole test suite: Rust unit, property and integration tests
# (real node processes and HTTP on loopback), then the interop test against
# the real @fioprotocol/fiojs from npm. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
command -v node >/dev/null || { echo "Node.js is required for the fiojs interop test" >&2; exit 1; }

cargo build --workspace --all-targets --locked
cargo test --workspace --locked
# The binary the interop test drives, wherever cargo puts its target dir.
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
FIO_L2_BIN="$target_dir/debug/fio-l2" bash tests/interop/run.sh
