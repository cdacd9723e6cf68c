#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (a Python virtualenv
# with the real peers: DuckDB, deltalake, Meltano, Singer taps and targets, moto), then runs
# every Rust test, unit and end to end.
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="${WEBHOOK_TEST_VENV:-$root/.venv}"
bash tests/python/setup.sh "$venv" >/dev/null
export WEBHOOK_TEST_VENV="$venv"

# The tests that need the Python peers are #[ignore]d, so a bare `cargo test` reports them as
# ignored instead of passing them untested; here the peers are installed, so every test runs.
cargo test --workspace --locked -- --include-ignored
# The fuzz targets live in their own workspace (cargo fuzz builds them with its own flags): a
# type check here keeps them building as the code they fuzz changes.
cargo check --manifest-path tap-webhook/fuzz/Cargo.toml --locked --bins
