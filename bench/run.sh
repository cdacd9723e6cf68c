#!/usr/bin/env bash
# Every benchmark, one run, one machine: receiver, tap, target beside its peers, the whole pipe,
# upsert cost growth and memory growth. Prints one table of figures and ratios and writes
# BENCHMARKS.md (machine, date, commit, commands, figures).
#
#   bash bench/run.sh            # full size (~25 minutes after the release build)
#   BENCH_QUICK=1 bash bench/run.sh   # small sizes, to check the script itself (~3 minutes)
#   BENCH_FRESH_SECS=60 bash bench/run.sh   # the freshness runs shorter than 5 minutes each
#
# Needs wrk (apt-get install wrk) and builds the release binaries; the Python peers
# (target-duckdb, DuckDB) come from tests/python/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${BENCH_OUT:-$root/BENCHMARKS.md}
if [ -n "${BENCH_QUICK:-}" ]; then
  recv_secs=3 tap_count=20000 target_count=20000 peer_count=5000 upsert_base=5000 mem_count=20000
  fresh_secs=20
else
  recv_secs=10 tap_count=100000 target_count=100000 peer_count=20000 upsert_base=50000 mem_count=150000
  fresh_secs=300
fi
fresh_secs=${BENCH_FRESH_SECS:-$fresh_secs}

echo "building release binaries..." >&2
source bench/build.sh
export BENCH_BUILT=1
[ -x "$root/.venv/bin/python" ] || bash tests/python/setup.sh "$root/.venv" >/dev/null

results=$(mktemp)
trap 'rm -f "$results"' EXIT
# step NAME COMMAND...: runs one benchmark, shows its output, keeps its RESULT lines.
step() {
  local name=$1; shift
  echo "== $name: $*" >&2
  local out
  out=$(mktemp)
  "$@" > "$out"
  cat "$out" >&2
  sed -n "s/^RESULT /$name /p" "$out" >> "$results"
  rm -f "$out"
}
step receiver bash bench/receiver.sh "$recv_secs"
step tap bash bench/tap.sh "$tap_count"
step target bash bench/target.sh "$target_count" "$peer_count"
step upsert bash bench/upsert.sh "$upsert_base"
step memory bash bench/target-memory.sh "$mem_count"
step freshness bash bench/freshness.sh 100 "$fresh_secs"
step freshness bash bench/freshness.sh 2000 "$fresh_secs"

python3 bench/report.py "$results" "$out" \
  "recv_secs=$recv_secs tap_count=$tap_count target_count=$target_count peer_count=$peer_count upsert_base=$upsert_base mem_count=$mem_count fresh_secs=$fresh_secs"
