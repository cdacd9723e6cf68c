#!/usr/bin/env bash
# Target benchmark, one run, same records for everyone: rows/s, MB/s and peak RSS of
#   target-warehouse (release)  vs  target-duckdb (PyPI)  vs  DuckDB read_json_auto -> Parquet
# (DuckDB twice: at its defaults, and asked for one column per field, the table ours writes)
# plus the whole pipe tap-webhook | target-warehouse, and the tap's drain of the same records
# alone (alternated with ours, for the tap-to-target ratio).
# Usage: bench/target.sh [count] [peer_count]   (defaults 100000 and 20000: target-duckdb runs
# at a few thousand rows/s, so it gets a prefix of the same stream and its rate is compared).
# target-duckdb stops on the corpus's type conflicts, so it is also measured, beside ours, on a
# conflict-free variant of the corpus (small sparse events only, no conflicts, no huge integers):
# the ratio to target-duckdb comes from that pair (ours loads all of it, target-duckdb its first
# peer_count records; rates are compared).
# Ends with RESULT lines (loader=... rows= seconds= rows_per_s= mb_per_s= peak_rss_mb=) for
# bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
count=${1:-100000}
peer_count=${2:-20000}
# One build command for every benchmark (bench/build.sh): the same feature set, built once.
source bench/build.sh
bin_tap=${TAP_WEBHOOK_BIN:-$bin_tap}
[ -x "$root/.venv/bin/python" ] || bash tests/python/setup.sh "$root/.venv" >/dev/null
py=$root/.venv/bin/python
work=${BENCH_WORK:-$(mktemp -d)}
# A scratch dir of our own goes when we do (the 8x stream alone is over 1 GB).
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
source bench/spool.sh
if [ -s "$work/stream.singer" ] && [ -s "$work/corpus.jsonl" ] && [ -n "${BENCH_REUSE:-}" ]; then
  echo "reusing $work/stream.singer" >&2
else
  make_spool
  "$bin_tap" --config "$work/tap.json" > "$work/stream.singer" 2>/dev/null
fi
head -n $((peer_count + 1)) "$work/stream.singer" > "$work/peer.singer"   # SCHEMA + records
stream_bytes=$(stat -c %s "$work/stream.singer")
peer_bytes=$(stat -c %s "$work/peer.singer")
json_bytes=$(stat -c %s "$work/corpus.jsonl")

# The conflict-free variant, for target-duckdb and ours side by side.
(
  work=$work/safe CORPUS_ARGS="--large-share 0 --no-conflicts"
  mkdir -p "$work"
  make_spool
  "$bin_tap" --config "$work/tap.json" > "$work/stream.singer" 2>/dev/null
)
head -n $((peer_count + 1)) "$work/safe/stream.singer" > "$work/safe/peer.singer"
safe_bytes=$(stat -c %s "$work/safe/stream.singer")
safe_peer_bytes=$(stat -c %s "$work/safe/peer.singer")

echo "{\"warehouse_path\":\"$work/wh\"}" > "$work/target.json"
echo "{\"filepath\":\"$work/duck.db\",\"default_target_schema\":\"raw\"}" > "$work/duck.json"

# once NAME ROWS BYTES CMD... : one run (wall seconds and peak RSS in KiB, via GNU time), kept
# under NAME; measure runs it $RUNS times (5: on a shared 2-core machine single runs of ours
# and of DuckDB swing by 20-40%). Figures are medians of a loader's runs.
RUNS=${RUNS:-5}
declare -A runs=() rows_of=() bytes_of=() failed=()
order=()
once() {
  local name=$1 rows=$2 bytes=$3; shift 3
  [ -n "${rows_of[$name]:-}" ] || { order+=("$name"); rows_of[$name]=$rows; bytes_of[$name]=$bytes; }
  [ -n "${failed[$name]:-}" ] && return
  [ -n "${BEFORE:-}" ] && eval "$BEFORE"
  if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/err"; then
    # A peer that cannot load the stream (target-duckdb stops on a type conflict) is shown
    # as failed rather than ending the benchmark; ours failing is an error.
    [[ "$name" == target-warehouse* ]] && { cat "$work/err" >&2; exit 1; }
    echo "$name failed: $(grep -m1 -iE 'error|exception' "$work/err" | cut -c1-160)" >&2
    failed[$name]=1
    return
  fi
  runs[$name]="${runs[$name]:-} $(cat "$work/time")"
}
measure() {
  for _ in $(seq "$RUNS"); do once "$@"; done
}

ours() {
  BEFORE="rm -rf $work/wh" once "target-warehouse" "$count" "$stream_bytes" \
    "$bin_target" --config "$work/target.json" --input "$work/stream.singer"
}
# duck NAME FILE [OPTIONS]: DuckDB's JSON -> Parquet of the corpus into FILE, 2 threads, zstd.
duck() {
  BEFORE="rm -f $work/$2" once "$1" "$count" "$json_bytes" \
    "$py" -c "import duckdb; c=duckdb.connect(); c.execute('SET threads=2'); c.execute(\"COPY (SELECT * FROM read_json_auto('$work/corpus.jsonl', maximum_object_size=67108864${3:+, $3})) TO '$work/$2' (FORMAT parquet, COMPRESSION zstd)\")"
}
# At its defaults read_json_auto turns objects with over 200 distinct keys (the corpus has ~250)
# into ONE column, a MAP of JSON values: no column per field, no types. The like-for-like run
# asks for a column per top-level field (map_inference_threshold=-1) with types detected for
# the top level only, nested values kept as JSON (maximum_depth=2): the table ours writes.
duck_default() { duck "DuckDB read_json_auto->Parquet, defaults" out.parquet; }
duck_columns() {
  duck "DuckDB read_json_auto->Parquet, column per field" out-columns.parquet \
    "map_inference_threshold=-1, maximum_depth=2"
}
# The tap's drain of the same records (to /dev/null), for the goal "tap >= 2x target".
drain() {
  once "tap-webhook drain (no target)" "$count" "$json_bytes" "$bin_tap" --config "$work/tap.json"
}
# Ours, DuckDB's JSON -> Parquet and the tap's drain alternate, run by run: the machine's
# speed drifts over minutes, and their ratios are goals, so all three medians come from the
# same stretch of time.
for _ in $(seq "$RUNS"); do ours; duck_default; duck_columns; drain; done
# What each wrote (the last run's output is still there): top-level columns and their types.
"$py" - "$work" <<'PY' >&2
import collections, glob, sys
import pyarrow.parquet as pq
work = sys.argv[1]
for name, path in (("target-warehouse", sorted(glob.glob(f"{work}/wh/data/*.parquet"))[:1]),
                   ("DuckDB, defaults", [f"{work}/out.parquet"]),
                   ("DuckDB, column per field", [f"{work}/out-columns.parquet"])):
    if not path:
        continue
    schema = pq.ParquetFile(path[0]).schema_arrow
    kinds = collections.Counter(str(f.type).split("<")[0] for f in schema)
    print(f"{name} wrote {len(schema)} columns: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()))
PY
BEFORE="rm -rf $work/wh" measure "tap-webhook | target-warehouse" "$count" "$stream_bytes" \
  bash -c "'$bin_tap' --config '$work/tap.json' | '$bin_target' --config '$work/target.json'"
BEFORE="rm -f $work/duck.db*" measure "target-duckdb (PyPI), same stream" "$peer_count" "$peer_bytes" \
  bash -c "'$root/.venv/bin/target-duckdb' --config '$work/duck.json' < '$work/peer.singer'"
# target-duckdb and ours on the conflict-free stream: alternated too.
for _ in $(seq "$RUNS"); do
  BEFORE="rm -rf $work/wh" once "target-warehouse, conflict-free" "$count" "$safe_bytes" \
    "$bin_target" --config "$work/target.json" --input "$work/safe/stream.singer"
  BEFORE="rm -f $work/duck.db*" once "target-duckdb (PyPI), conflict-free" "$peer_count" "$safe_peer_bytes" \
    bash -c "'$root/.venv/bin/target-duckdb' --config '$work/duck.json' < '$work/safe/peer.singer'"
done
results=()
for name in "${order[@]}"; do
  if [ -n "${failed[$name]:-}" ]; then
    results+=("$name|${rows_of[$name]}|${bytes_of[$name]}|failed")
  else
    results+=("$name|${rows_of[$name]}|${bytes_of[$name]}|${runs[$name]}")
  fi
done

"$py" - "${results[@]}" <<'PY'
import statistics, sys
rows = []
for r in sys.argv[1:]:
    name, n, b, runs = r.rsplit("|", 3)
    if runs == "failed":
        rows.append((name, int(n), int(b), None, None, None, None))
        continue
    vals = list(map(float, runs.split()))
    pairs = list(zip(vals[::2], vals[1::2]))
    t = statistics.median(p[0] for p in pairs)
    rss = max(p[1] for p in pairs) / 1024
    rows.append((name, int(n), int(b), t, int(n) / t, int(b) / 1e6 / t, rss))
ours = rows[0][4]
ids = {"target-warehouse": "target-warehouse", "tap-webhook | target-warehouse": "pipe",
       "target-duckdb (PyPI), same stream": "target-duckdb-same-stream",
       "target-warehouse, conflict-free": "target-warehouse-conflict-free",
       "target-duckdb (PyPI), conflict-free": "target-duckdb",
       "DuckDB read_json_auto->Parquet, defaults": "duckdb",
       "DuckDB read_json_auto->Parquet, column per field": "duckdb-columns",
       "tap-webhook drain (no target)": "tap-drain"}
free = next((r[4] for r in rows if r[0] == "target-warehouse, conflict-free"), None)
print(f"{'loader':50} {'rows':>8} {'median s':>9} {'rows/s':>10} {'MB/s':>7} {'peak RSS MB':>12} {'ours / it':>10}")
for name, n, b, t, rps, mbs, rss in rows:
    if t is None:
        print(f"{name:50} {n:8d} {'failed':>9}")
        continue
    base = free if "conflict-free" in name and free else ours
    print(f"{name:50} {n:8d} {t:9.2f} {rps:10,.0f} {mbs:7.1f} {rss:12.0f} {base / rps:9.1f}x")
for name, n, b, t, rps, mbs, rss in rows:
    if t is None:
        print(f"RESULT loader={ids[name]} rows={n} status=failed")
    else:
        print(f"RESULT loader={ids[name]} rows={n} seconds={t:.3f} rows_per_s={rps:.0f} mb_per_s={mbs:.1f} peak_rss_mb={rss:.0f}")
PY
