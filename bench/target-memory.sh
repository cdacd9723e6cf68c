#!/usr/bin/env bash
# Memory scaling of target-warehouse: peak RSS (GNU time %M, median of 5 runs) on the
# webhook-like stream at 1x and 8x its size (the 8x stream repeats the 1x records 8 times), plus rows/s. Buffering is by
# bytes, so peak RSS should stay flat: 8x within 1.2x of 1x.
# Usage: bench/target-memory.sh [count]   (default 100000 records at 1x, ~100 MB; 8x ~830 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
count=${1:-100000}
source bench/build.sh
bin_tap=${TAP_WEBHOOK_BIN:-$bin_tap}
work=${BENCH_WORK:-$(mktemp -d)}
# A scratch dir of our own goes when we do (the 8x stream alone is over 1 GB).
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
if [ ! -s "$work/stream.singer" ]; then
  source bench/spool.sh
  make_spool
  "$bin_tap" --config "$work/tap.json" > "$work/stream.singer" 2>/dev/null
fi
# 8x: the SCHEMA, the records 8 times over, the last STATE.
{
  head -n 1 "$work/stream.singer"
  for _ in 1 2 3 4 5 6 7 8; do grep '^{"type":"RECORD"' "$work/stream.singer"; done
  grep '^{"type":"STATE"' "$work/stream.singer" | tail -n 1
} > "$work/stream8.singer"
echo "{\"warehouse_path\":\"$work/wh\"}" > "$work/target.json"

# Five runs at each size, median of each figure: the 8x peak moves between runs (157-214 MB
# in the nine runs of one evening), and with three runs two high ones made the median.
results=()
for x in 1 8; do
  f=$work/stream.singer
  [ "$x" = 8 ] && f=$work/stream8.singer
  rows=$(grep -c '^{"type":"RECORD"' "$f")
  bytes=$(stat -c %s "$f")
  runs=()
  for _ in 1 2 3 4 5; do
    rm -rf "$work/wh"
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin_target" --config "$work/target.json" --input "$f" \
      > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
    runs+=("$(cat "$work/time")")
  done
  results+=("${x}x|$rows|$bytes|${runs[*]}")
done
python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = []
for r in sys.argv[1:]:
    name, n, b, runs = r.split("|")
    vals = list(map(float, runs.split()))
    secs, kibs = vals[::2], vals[1::2]
    rows.append((name, int(n), int(b), statistics.median(secs), statistics.median(kibs) / 1024,
                 min(kibs) / 1024, max(kibs) / 1024))
base = rows[0][4]
print(f"{'input':6} {'rows':>9} {'MB':>8} {'s':>7} {'rows/s':>9} {'peak RSS MB':>12} {'runs':>11} {'RSS / 1x':>9}")
for name, n, b, secs, mb, lo, hi in rows:
    print(f"{name:6} {n:9d} {b/1e6:8.1f} {secs:7.2f} {n/secs:9,.0f} {mb:12.0f} {lo:5.0f}-{hi:<5.0f} {mb/base:8.2f}x")
for name, n, b, secs, mb, lo, hi in rows:
    print(f"RESULT scale={name.rstrip('x')} rows={n} input_mb={b/1e6:.0f} seconds={secs:.2f} peak_rss_mb={mb:.0f} peak_rss_runs={lo:.0f}-{hi:.0f}")
PY
