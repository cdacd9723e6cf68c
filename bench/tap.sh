#!/usr/bin/env bash
# Tap benchmark: drain rate of N spooled webhook-like messages to /dev/null.
# Usage: bench/tap.sh [count]     (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
source bench/build.sh
bin=$bin_tap
work=${BENCH_WORK:-$(mktemp -d)}
# A scratch dir of our own goes when we do (the 8x stream alone is over 1 GB).
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
bin_tap=$bin
source bench/spool.sh
make_spool
bytes=$(stat -c %s "$work/corpus.jsonl")
best=""
# Five runs, as the target's: the tap's ratio to the target compares two medians.
for run in 1 2 3 4 5; do
  start=$(date +%s.%N)
  "$bin" --config "$work/tap.json" > /dev/null 2>"$work/tap.log"
  end=$(date +%s.%N)
  t=$(python3 -c "print($end - $start)")
  echo "run $run: ${t}s" >&2
  best="$best $t"
done
python3 - "$count" "$bytes" $best <<'PY'
import sys, statistics
n, b, times = int(sys.argv[1]), int(sys.argv[2]), [float(t) for t in sys.argv[3:]]
med = statistics.median(times)
print(f"tap drain: {n} messages, {b/1e6:.1f} MB payload, median {med:.2f}s -> {n/med:,.0f} messages/s, {b/1e6/med:.1f} MB/s")
print(f"RESULT messages={n} seconds_median={med:.3f} msgs_per_s={n/med:.0f} mb_per_s={b/1e6/med:.1f}")
PY
