#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (a Python virtualenv
# with the real peers: DuckDB, deltalake, Meltano, Singer taps and targets, moto), then runs
# every Rust test, unit and end to end.
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ -f tests/python/setup.sh ]; then
  venv="${WEBHOOK_TEST_VENV:-$root/.venv}"
  bash tests/python/setup.sh "$venv"
  export WEBHOOK_TEST_VENV="$venv"
fi

cargo test --workspace --locked
