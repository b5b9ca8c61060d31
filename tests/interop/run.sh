#!/usr/bin/env bash
# Interop tests of the fio-l2 CLI against the real @fioprotocol/fiojs@1.0.2 from npm.
#   cargo build -p fio-l2 && tests/interop/run.sh [extra node --test args]
# Env: FIO_L2_BIN     the binary (default ../../target/debug/fio-l2, made absolute)
#      INTEROP_SEED   seed of all random inputs (random and printed when unset)
#      INTEROP_N      random iterations per case (default 25; random signatures: at least 60)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Install the pinned dependencies when node_modules is missing or older than the lock file.
if [ ! -d node_modules/@fioprotocol/fiojs ] || [ ! -f node_modules/.package-lock.json ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

bin="${FIO_L2_BIN:-../../target/debug/fio-l2}"
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
  echo "run.sh: no fio-l2 binary at $bin (build it with: cargo build -p fio-l2, or set FIO_L2_BIN)" >&2
  exit 1
fi
FIO_L2_BIN="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
export FIO_L2_BIN

# One seed for every test file (each runs in its own process).
INTEROP_SEED="${INTEROP_SEED:-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}"
export INTEROP_SEED
echo "# interop seed: $INTEROP_SEED (reproduce with INTEROP_SEED=$INTEROP_SEED $0)"

# The test files run in parallel processes; the TAP reporter ends with `# pass N` / `# fail N`.
exec node --test --test-reporter=tap --test-concurrency="${INTEROP_CONCURRENCY:-4}" "$@"
