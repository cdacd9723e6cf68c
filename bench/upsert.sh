#!/usr/bin/env bash
# Upsert cost vs table size: load keyed tables of 1x, 4x and 16x a base size, then upsert the
# same number of keys (1% of the base) into each and time that run (median of 11 runs, of 3 for
# copy-on-write, each on a fresh copy of the table; wall time to the millisecond: the upserts
# with deletion vectors take tens of milliseconds). "recent": keys drawn from the newest base-size range of ids (webhook
# updates touch recent objects); "random": keys drawn from the whole table. With the
# deletion-vector opt-in (tables created with deletion_vectors: true) an upsert marks replaced
# rows in a bitmap per file it touches, so both stay near flat; "random, copy-on-write" (the default since issue 21, deletion_vectors: false) rewrites
# every file holding an upserted key and grows with the number of files touched.
# Usage: bench/upsert.sh [base_rows]   (default 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-50000}
source bench/build.sh
work=${BENCH_WORK:-$(mktemp -d)}
# A scratch dir of our own goes when we do (the 8x stream alone is over 1 GB).
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT

gen() { # gen MODE ROWS BASE SEED > stream   (MODE: load | recent | random)
  python3 - "$@" <<'PY'
import json, random, sys
mode, rows, base, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
props = {"id": {"type": "integer"}, "status": {"type": ["null", "string"]},
         "amount": {"type": ["null", "number"]}, "customer": {"type": ["null", "string"]},
         "updated": {"type": ["null", "integer"]}, "meta": {"type": ["null", "object"]}}
for i in range(8):
    props[f"f{i}"] = {"type": ["null", "string"]}
out = sys.stdout
out.write(json.dumps({"type": "SCHEMA", "stream": "orders", "schema": {"type": "object", "properties": props},
                      "key_properties": ["id"]}) + "\n")
if mode == "load":
    ids = range(1, rows + 1)
else:
    n = max(1, base // 100)
    lo = 1 if mode == "random" else rows - base + 1
    ids = sorted(rng.sample(range(lo, rows + 1), n))
for i in ids:
    rec = {"id": i, "status": rng.choice(["new", "paid", "shipped"]), "amount": round(rng.random() * 500, 2),
           "customer": f"cus_{rng.getrandbits(40):010x}", "updated": 0 if mode == "load" else 1,
           "meta": {"k": rng.randint(0, 9), "tags": ["a", "b"]}}
    for j in range(8):
        rec[f"f{j}"] = "".join(rng.choice("abcdefghij") for _ in range(12))
    out.write(json.dumps({"type": "RECORD", "stream": "orders", "record": rec}, separators=(",", ":")) + "\n")
out.write(json.dumps({"type": "STATE", "value": {"done": mode}}) + "\n")
PY
}

results=()
time_upsert() { # time_upsert TABLE MODE RUNS -> RUNS wall times (ms precision) appended to $line
  local times=() t0 t1
  for _ in $(seq "$3"); do
    rm -rf "$work/up"; cp -r "$work/$1" "$work/up"
    echo "{\"warehouse_path\":\"$work/up\"}" > "$work/up.json"
    sync
    t0=$(date +%s%N)
    "$bin_target" --config "$work/up.json" --input "$work/$2.singer" > /dev/null 2> "$work/err" \
      || { cat "$work/err" >&2; exit 1; }
    t1=$(date +%s%N)
    times+=("$(( (t1 - t0) / 1000000 ))e-3")
  done
  line="$line|${times[*]}"
}
for m in 1 4 16; do
  rows=$((m * base))
  gen load "$rows" "$base" 1 > "$work/load.singer"
  gen recent "$rows" "$base" 2 > "$work/recent.singer"
  gen random "$rows" "$base" 3 > "$work/random.singer"
  rm -rf "$work/wh-$m" "$work/cow-$m"
  echo "{\"warehouse_path\":\"$work/wh-$m\",\"deletion_vectors\":true}" > "$work/load.json"
  echo "{\"warehouse_path\":\"$work/cow-$m\",\"deletion_vectors\":false}" > "$work/cow.json"
  start=$(date +%s.%N)
  "$bin_target" --config "$work/load.json" --input "$work/load.singer" > /dev/null 2> "$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  load_s=$(python3 -c "import time; print(time.time() - $start)")
  "$bin_target" --config "$work/cow.json" --input "$work/load.singer" > /dev/null 2> "$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  files=$(ls "$work/wh-$m/orders" | grep -c parquet || true)
  live=$(python3 - "$work/wh-$m/orders/_delta_log" <<'PY'
import json, os, sys
live = set()
for f in sorted(os.listdir(sys.argv[1])):
    if f.endswith(".json"):
        for line in open(os.path.join(sys.argv[1], f)):
            a = json.loads(line)
            if "add" in a: live.add(a["add"]["path"])
            if "remove" in a: live.discard(a["remove"]["path"])
print(len(live))
PY
)
  line="$m|$rows|$load_s|$live"
  # Tens of ms each, and one fsync can take 17 ms on a busy machine: 11 runs for a steady
  # median. Copy-on-write takes seconds at 16x: 3 runs.
  time_upsert "wh-$m" recent 11
  time_upsert "wh-$m" random 11
  time_upsert "cow-$m" recent 5   # the default (copy-on-write) on the webhook case
  time_upsert "cow-$m" random 3
  results+=("$line")
done
python3 - "$base" "${results[@]}" <<'PY'
import statistics, sys
base = int(sys.argv[1])
print(f"upsert of {max(1, base // 100)} keys (1% of base {base}) into tables of growing size; median of 11 runs (copy-on-write: 5 recent, 3 random)")
print(f"{'table':6} {'rows':>9} {'load s':>7} {'files':>6} {'recent s':>9} {'vs 1x':>6} {'random s':>9} {'vs 1x':>6}"
      f" {'cow rec s':>9} {'vs 1x':>6} {'cow rnd s':>9} {'vs 1x':>6}")
first = None
for r in sys.argv[2:]:
    m, rows, load, files, rec, rnd, cowrec, cow = r.split("|")
    rec = statistics.median(map(float, rec.split()))
    rnd = statistics.median(map(float, rnd.split()))
    cowrec = statistics.median(map(float, cowrec.split()))
    cow = statistics.median(map(float, cow.split()))
    first = first or (rec, rnd, cow, cowrec)
    print(f"{m + 'x':6} {int(rows):9d} {float(load):7.1f} {int(files):6d} {rec:9.3f} {rec/first[0]:5.1f}x {rnd:9.3f} {rnd/first[1]:5.1f}x"
          f" {cowrec:9.3f} {cowrec/first[3]:5.1f}x {cow:9.3f} {cow/first[2]:5.1f}x")
    # "seconds" is the recent-keys case (webhook updates touch recent objects); both are kept.
    print(f"RESULT scale={m} table_rows={rows} upsert_rows={max(1, base // 100)} files={files} "
          f"seconds={rec:.3f} random_seconds={rnd:.3f} cow_recent_seconds={cowrec:.3f} cow_random_seconds={cow:.3f}")
PY
