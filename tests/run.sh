#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (a Python virtualenv
# with the real peers: DuckDB, deltalake, Meltano, Singer taps and targets, moto, maturin;
# systemd-analyze), then runs every Rust test, unit and end to end.
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# deploy/'s units are checked by systemd-analyze (Debian's `systemd` package; no running
# systemd needed): install it where it is missing and apt-get can.
if ! command -v systemd-analyze >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd; } >/dev/null \
    || echo "tests/run.sh: could not install systemd; the deploy/ tests will fail" >&2
fi

# The target-postgres test starts a throwaway PostgreSQL cluster (initdb + pg_ctl): install
# Debian's `postgresql` where no server binaries are found and apt-get can.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; } >/dev/null \
    || echo "tests/run.sh: could not install postgresql; the target-postgres test will fail" >&2
fi

# The admin page is checked in a real browser: headless Chromium (Debian's `chromium`), installed
# where missing and apt-get can.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/dev/null \
    || echo "tests/run.sh: could not install chromium; the admin page's browser test will fail" >&2
fi

# The house rules that are cheap to check: no import circles between source files (issue 25).
bash scripts/module-graph.sh --cycles

venv="${WEBHOOK_TEST_VENV:-$root/.venv}"
bash tests/python/setup.sh "$venv" >/dev/null
export WEBHOOK_TEST_VENV="$venv"

# The tests that need the Python peers are #[ignore]d, so a bare `cargo test` reports them as
# ignored instead of passing them untested; here the peers are installed, so every test runs.
cargo test --workspace --locked -- --include-ignored
# The fuzz targets live in their own workspace (cargo fuzz builds them with its own flags):
# building them here keeps them building as the code they fuzz changes. A build, not a check:
# with the same profile, versions and features it reuses the dependencies built above (a
# check re-checked all of them: 4.5 of the test command's 6.5 minutes after the demo).
# Its own workspace would default to its own target directory: point it at this one.
cargo build --manifest-path tap-webhook/fuzz/Cargo.toml --locked --bins \
  --target-dir "${CARGO_TARGET_DIR:-$root/target}"
