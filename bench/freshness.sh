#!/usr/bin/env bash
# Freshness benchmark: how long from a delivery's receipt to its row being visible to a reader
# of the table, with `tap-webhook --follow | target-warehouse` running continuously.
#
#   bash bench/freshness.sh RATE SECONDS      (default 2000 deliveries/s for 300 s)
#
# One machine: `tap-webhook serve`, the follow pipeline (max_batch_age_seconds, default 1: one
# commit per second), the poster (tests/src/bin/soak-load.rs: append-only events, 20% of them
# arrays of 2-5, steady RATE over 32 connections) and a reader polling the table's Delta log
# every 20 ms (bench/freshness.py) all share it. After the posting the pipeline is given the
# time to load the rest, then stopped by SIGTERM (tap and target, as a service manager stops
# them) and `target-warehouse doctor` reports the table: files, log length, time to open.
# Prints the figures and a RESULT line for bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rate=${1:-2000}
seconds=${2:-300}
age=${FRESHNESS_BATCH_AGE:-1}
py=${BENCH_PYTHON:-$root/.venv/bin/python}
source bench/build.sh
# The poster: built apart from the two binaries (its own features), never rebuilding them
# (FRESHNESS_POSTER: one already built).
poster=${FRESHNESS_POSTER:-}
if [ -z "$poster" ]; then
  cargo build --release -q --locked -p e2e --bin soak-load
  poster=$rel/soak-load
fi

work=${BENCH_WORK:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
pids=()
cleanup_pids() { for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done; }
trap 'cleanup_pids; [ -n "${BENCH_WORK:-}" ] || rm -rf "$work"' EXIT

cat > "$work/tap.json" <<EOF
{"spool_path": "$work/spool.sqlite", "listen_address": "127.0.0.1:0", "sources": {"events": {}}}
EOF
echo "{\"warehouse_path\": \"$work/warehouse\", \"max_batch_age_seconds\": $age}" > "$work/target.json"

"$bin_tap" serve --config "$work/tap.json" 2> "$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do
  addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$work/serve.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/serve.log" >&2; echo "the receiver did not start" >&2; exit 1; }

table=$work/warehouse/events
"$py" bench/freshness.py watch "$table" "$work/seen.txt" "$work/stop.watch" &
pids+=($!)
watcher=$!
# The tap's pid from its own subshell (`exec`), the target's from `$!` (a pipe's last command).
( echo "$BASHPID" > "$work/tap.pid"; exec "$bin_tap" --follow --config "$work/tap.json" 2> "$work/tap.log" ) \
  | "$bin_target" --config "$work/target.json" > "$work/states.jsonl" 2> "$work/target.log" &
target_pid=$!
pids+=("$target_pid")
for _ in $(seq 100); do [ -s "$work/tap.pid" ] && break; sleep 0.05; done
tap_pid=$(cat "$work/tap.pid")
pids+=("$tap_pid")

echo "posting $rate deliveries/s for $seconds s into $addr ..." >&2
"$poster" --url "http://$addr" --seconds "$seconds" --rate "$rate" --concurrency 32 --keys 0 \
  --log "$work/deliveries.csv" > "$work/load.json" 2> "$work/load.log"

# The rest: until the target's last state covers the spool's high-water mark (bounded).
mark=$("$bin_tap" --test --config "$work/tap.json" 2>&1 | sed -n 's/.*high_water_mark=\([0-9]*\).*/\1/p')
covered() {
  "$py" -c 'import json,sys
lines=open(sys.argv[1]).read().split()
print(1 if lines and json.loads(lines[-1])["bookmarks"]["events"]["replication_key_value"] >= int(sys.argv[2]) else 0)' \
    "$work/states.jsonl" "$mark" 2> /dev/null || echo 0
}
for _ in $(seq 1200); do
  [ "$(covered)" = 1 ] && break
  sleep 0.1
done
[ "$(covered)" = 1 ] || { tail "$work/tap.log" "$work/target.log" >&2; echo "the pipeline did not catch up" >&2; exit 1; }
kill -TERM "$tap_pid" "$target_pid"
wait "$target_pid" || { tail "$work/tap.log" "$work/target.log" >&2; echo "the pipeline failed" >&2; exit 1; }
touch "$work/stop.watch"
wait "$watcher"

"$bin_target" doctor --config "$work/target.json" --format json > "$work/doctor.json"
"$py" bench/freshness.py report "$table" "$work/seen.txt" > "$work/report.json"
"$py" - "$rate" "$seconds" "$age" "$work/load.json" "$work/report.json" "$work/doctor.json" <<'PY'
import json, sys
rate, seconds, age = sys.argv[1:4]
load = json.load(open(sys.argv[4]))
rep = json.load(open(sys.argv[5]))
doc = json.load(open(sys.argv[6]))[0]
acked = load["messages_acked"]
print(f"freshness at {rate}/s for {seconds} s (max_batch_age_seconds {age}): "
      f"{load['deliveries_acked']} deliveries ({acked} messages) acked "
      f"({load['deliveries_acked_per_second']:.0f} deliveries/s achieved), {rep['rows']} rows loaded "
      f"({rep['uids_distinct']} distinct uids)")
print(f"receipt -> visible: p50 {rep['p50_s']:.3f} s, p99 {rep['p99_s']:.3f} s, max {rep['max_s']:.3f} s")
print(f"table: {rep['data_commits']} data commits, {rep['versions']} versions, {doc['files']} files "
      f"({doc['small_files']} small), last checkpoint {doc['last_checkpoint']}, "
      f"{doc['commits_since_checkpoint']} commits since, opened in {doc['open_seconds']:.3f} s")
exact = rep["rows"] == acked and rep["uids_distinct"] == acked
if not exact:
    print("NOT EXACTLY ONCE: rows or distinct uids differ from the messages acked", file=sys.stderr)
print(f"RESULT rate={rate} achieved={load['deliveries_acked_per_second']:.0f} seconds={seconds} "
      f"batch_age={age} deliveries={load['deliveries_acked']} "
      f"messages={acked} rows={rep['rows']} exactly_once={int(exact)} p50_s={rep['p50_s']:.3f} "
      f"p99_s={rep['p99_s']:.3f} max_s={rep['max_s']:.3f} commits={rep['data_commits']} "
      f"versions={rep['versions']} files={doc['files']} since_checkpoint={doc['commits_since_checkpoint']} "
      f"open_s={doc['open_seconds']:.3f}")
sys.exit(0 if exact else 1)
PY
