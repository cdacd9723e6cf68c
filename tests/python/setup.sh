#!/usr/bin/env bash
# Create/refresh the Python test virtualenv (meltano, target-duckdb, target-postgres, tap-jsonl, singer-sdk,
# duckdb + delta/httpfs extensions, deltalake, moto[server], svix/standardwebhooks/stripe,
# maturin for the wheels).
#
#   usage: tests/python/setup.sh [VENV_DIR]     (default: <repo root>/.venv)
#
# Needs only python3 (>=3.10, locked for 3.11) with pip and access to PyPI.
# Idempotent: when VENV_DIR already matches requirements.txt + this script it does nothing
# but print the paths. Installs with uv (pinned, bootstrapped via pip; ~20-35 s cold incl.
# downloads and smoke test) and falls back to plain pip + venv (~2 min) if uv fails.
# Set PYTHON=/path/to/python3 to pick the interpreter.
# Writes VENV_DIR/paths.env (KEY=VALUE lines) for tests to `source`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${1:-$REPO/.venv}"
REQ="$HERE/requirements.txt"
PY="${PYTHON:-python3}"

mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
STAMP="$VENV/.setup-stamp"
WANT="$(cat "$REQ" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

log() { echo "[setup.sh] $*" >&2; }

install() {
  local t0=$SECONDS uv_pin
  "$PY" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || { log "need python >= 3.10 ($PY)"; exit 1; }
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
    || log "warning: requirements are locked for CPython 3.11; $("$PY" -V 2>&1) may not match"
  rm -f "$STAMP"
  uv_pin="$(grep -E '^uv==' "$REQ")"
  # pip.conf / PIP_INDEX_URL are not read by uv: forward an index override if one is set.
  if [ -n "${PIP_INDEX_URL:-}" ] && [ -z "${UV_INDEX_URL:-}" ]; then export UV_INDEX_URL="$PIP_INDEX_URL"; fi
  export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  # Bootstrap a pinned uv with the system pip into a throwaway dir (the venv gets its own
  # uv from requirements.txt). `uv venv` skips ensurepip, which alone costs ~10 s here.
  boot="$(mktemp -d)"; trap 'rm -rf "$boot"' EXIT
  if "$PY" -m pip install --no-input -q --target "$boot" "$uv_pin" \
     && { [ -x "$VENV/bin/python" ] || "$boot/bin/uv" venv -q --python "$(command -v "$PY")" "$VENV"; } \
     && "$boot/bin/uv" pip sync -q --python "$VENV/bin/python" "$REQ"; then
    log "installed with $uv_pin in $((SECONDS - t0)) s"
  else
    log "uv failed; falling back to pip (slow, ~2 min)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
    "$VENV/bin/python" -m pip install --no-input -q -r "$REQ"
    log "installed with pip in $((SECONDS - t0)) s"
  fi
  rm -rf "$boot"

  # target-duckdb 0.8.0 (latest on PyPI) loads each batch with `COPY t FROM 'x.csv'` and lets
  # DuckDB's sniffer guess a header: the first row is silently dropped e.g. for all-VARCHAR
  # rows or RFC3339 timestamps. Fixed upstream (jwills/target-duckdb#58) but unreleased.
  "$VENV/bin/python" - <<'PY'
import pathlib, target_duckdb.db_sync as m
p = pathlib.Path(m.__file__)
s = p.read_text()
old = "WITH (new_line '\\\\r\\\\n')\""
new = "WITH (new_line '\\\\r\\\\n', header false)\""
if new not in s:
    assert old in s, f"target-duckdb COPY statement not found in {p}; re-check the patch"
    p.write_text(s.replace(old, new))
PY

  smoke
  echo "$WANT" > "$STAMP"
}

# Fast checks that the pieces load offline (no extension download, no network).
smoke() {
  "$VENV/bin/python" - <<'PY'
import glob, os, site, tempfile
import duckdb, deltalake, pyarrow as pa, boto3, moto, svix, standardwebhooks, stripe, singer_sdk
sp = site.getsitepackages()[0]
con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
for e in ("delta", "httpfs"):
    (path,) = glob.glob(f"{sp}/duckdb_extension_{e}/extensions/v{duckdb.__version__}/{e}.duckdb_extension")
    con.execute(f"LOAD '{path}'")
with tempfile.TemporaryDirectory() as d:
    deltalake.write_deltalake(d, pa.table({"id": [1, 2]}))
    assert con.sql(f"SELECT sum(id) FROM delta_scan('{d}')").fetchone()[0] == 3
streams = os.path.join(os.path.dirname(singer_sdk.__file__), "testing", "target_test_streams")
assert glob.glob(f"{streams}/*.singer"), streams
PY
  for exe in meltano target-duckdb target-postgres tap-jsonl moto_server pytest maturin; do
    [ -x "$VENV/bin/$exe" ] || { log "missing $VENV/bin/$exe"; exit 1; }
  done
}

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  log "venv up to date: $VENV"
else
  install
fi

# Paths for tests; also written to $VENV/paths.env.
"$VENV/bin/python" - "$VENV" <<'PY' | tee "$VENV/paths.env"
import os, site, sys, duckdb, singer_sdk
venv = sys.argv[1]
sp = site.getsitepackages()[0]
ext = lambda e: f"{sp}/duckdb_extension_{e}/extensions/v{duckdb.__version__}/{e}.duckdb_extension"
for k, v in [
    ("PY_VENV", venv),
    ("PY_BIN", f"{venv}/bin"),
    ("VENV_PYTHON", f"{venv}/bin/python"),
    ("MELTANO", f"{venv}/bin/meltano"),
    ("TARGET_DUCKDB", f"{venv}/bin/target-duckdb"),
    ("TARGET_POSTGRES", f"{venv}/bin/target-postgres"),
    ("TAP_JSONL", f"{venv}/bin/tap-jsonl"),
    ("MOTO_SERVER", f"{venv}/bin/moto_server"),
    ("MATURIN", f"{venv}/bin/maturin"),
    ("DUCKDB_DELTA_EXT", ext("delta")),
    ("DUCKDB_HTTPFS_EXT", ext("httpfs")),
    ("SINGER_SDK_TARGET_TEST_STREAMS",
     os.path.join(os.path.dirname(singer_sdk.__file__), "testing", "target_test_streams")),
]:
    print(f"{k}={v}")
PY
