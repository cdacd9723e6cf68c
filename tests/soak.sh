#!/usr/bin/env bash
# The soak test (issue 20, "Must show"): MINUTES of concurrent posts while chained
# `tap-webhook --state S | target-warehouse` runs happen every 20 s and the receiver is
# SIGKILLed and restarted every 60 s; then one final drain and the checks:
#   - every acknowledged delivery is in its table exactly once (events, append-only: by the
#     body's `uid`; orders, upserted on `order_id`: the latest row of each key is its last
#     acknowledged post, or a later post whose answer was lost in a kill), nothing appears twice,
#     nothing appears that was never posted, every row's body intact;
#   - every scheduled run succeeded;
#   - the receiver's RSS and open file descriptors are flat in each of its lifetimes;
#   - the spool is pruned empty after the final drain.
# It prints a summary with the figures and exits non-zero on any violation. Not in the default
# suite (it takes MINUTES + the release build).
#
#   bash tests/soak.sh [MINUTES]        (default 10; fractions allowed: 0.5)
#
# Environment: CARGO_TARGET_DIR (reused when set; else ./target), WEBHOOK_TEST_VENV (the Python
# peers; default ./.venv, made by tests/python/setup.sh), SOAK_DIR (work directory; default a
# new one under /var/tmp, kept when the soak fails or SOAK_KEEP=1), SOAK_RATE (deliveries per
# second the generator aims at; default 3000), SOAK_CONCURRENCY (connections; default 64),
# SOAK_RUN_EVERY (seconds between scheduled runs; 20), SOAK_KILL_EVERY (seconds between
# receiver kills; 60), SOAK_KILL_RUNS (every Nth scheduled run is SIGKILLed mid-run; default 0),
# SOAK_PROFILE (cargo profile; default release).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
minutes=${1:-10}
seconds=$(python3 -c "print(int(float('$minutes') * 60))")
rate=${SOAK_RATE:-3000}
concurrency=${SOAK_CONCURRENCY:-64}
run_every=${SOAK_RUN_EVERY:-20}
kill_every=${SOAK_KILL_EVERY:-60}
log() { echo "[soak $(date -u +%T)] $*" >&2; }

log "building the binaries (tap-webhook, target-warehouse, soak-load)"
# SOAK_PROFILE=dev runs the debug builds: a quick check of this script, not a soak.
profile=${SOAK_PROFILE:-release}
cargo build --profile "$profile" --locked -p tap-webhook -p target-warehouse -p e2e --bins
bin="${CARGO_TARGET_DIR:-$root/target}/$([ "$profile" = dev ] && echo debug || echo "$profile")"
venv="${WEBHOOK_TEST_VENV:-$root/.venv}"
bash tests/python/setup.sh "$venv" > /dev/null
# DUCKDB_DELTA_EXT and VENV_PYTHON.
set -a; . "$venv/paths.env"; set +a

dir=${SOAK_DIR:-$(mktemp -d /var/tmp/soak.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/tap.json" <<EOF
{"spool_path": "$dir/spool.sqlite", "listen_address": "127.0.0.1:$port",
 "sources": {"events": {}, "orders": {"primary_key": "order_id"}}}
EOF
echo "{\"warehouse_path\": \"$dir/warehouse\"}" > "$dir/target.json"
: > "$dir/receiver.log"
: > "$dir/runs.tsv"
: > "$dir/samples.tsv"
log "work directory $dir; receiver on port $port; $seconds s at $rate deliveries/s"

lifetime=0
rpid=
start_receiver() {
  lifetime=$((lifetime + 1))
  "$bin/tap-webhook" serve --config "$dir/tap.json" >> "$dir/receiver.log" 2>&1 &
  rpid=$!
  echo "$lifetime $rpid" > "$dir/receiver.current"
  local i
  for i in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
    kill -0 "$rpid" 2> /dev/null || break
    sleep 0.05
  done
  log "receiver did not come up (lifetime $lifetime); see $dir/receiver.log"
  return 1
}

# Every 2 s: the receiver's RSS and open descriptors, and the spool's size on disk.
sampler() {
  while [ ! -e "$dir/stop.sampler" ]; do
    read -r lt pid < "$dir/receiver.current" || true
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
    fds=$(ls "/proc/$pid/fd" 2> /dev/null | wc -l || true)
    spool=$(du -cb "$dir"/spool.sqlite* 2> /dev/null | tail -n 1 | cut -f1 || true)
    [ -n "$rss" ] && printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s.%N)" "$lt" "$pid" "$rss" "$fds" "$spool" >> "$dir/samples.tsv"
    sleep 2
  done
}

# Every run_every seconds: one scheduled run through scripts/cron-run.sh (state chained). With
# SOAK_KILL_RUNS=N, every Nth run is SIGKILLed (tap, target and script) at a random moment within
# the last run's duration (a release run takes about a second): the next run replays from the
# state before it.
runs=0
last_run_seconds=1
one_run() {
  local t0 rc pid
  t0=$(date +%s.%N)
  rc=0
  runs=$((runs + 1))
  TAP_CONFIG="$dir/tap.json" TARGET_CONFIG="$dir/target.json" STATE_FILE="$dir/state/state.json" \
    TAP_WEBHOOK="$bin/tap-webhook" TARGET_WAREHOUSE="$bin/target-warehouse" \
    setsid -w bash scripts/cron-run.sh >> "$dir/runs.log" 2>&1 &
  pid=$!
  if [ "${1:-}" != final ] && [ "${SOAK_KILL_RUNS:-0}" -gt 0 ] && [ $((runs % SOAK_KILL_RUNS)) = 0 ]; then
    sleep "$(python3 -c "import random; print(random.uniform(0, $last_run_seconds))")"
    if kill -9 -- "-$pid" 2> /dev/null; then
      wait "$pid" || true
      rc=killed
    else
      wait "$pid" || rc=$?
    fi
    printf '%s\t%s\t%s\n' "$t0" "$(date +%s.%N)" "$rc" >> "$dir/runs.tsv"
    return 0
  fi
  wait "$pid" || rc=$?
  local t1
  t1=$(date +%s.%N)
  last_run_seconds=$(python3 -c "print($t1 - $t0)")
  printf '%s\t%s\t%s\n' "$t0" "$t1" "$rc" >> "$dir/runs.tsv"
  return $rc
}
scheduler() {
  local next
  next=$(( $(date +%s) + run_every ))
  while [ ! -e "$dir/stop.scheduler" ]; do
    if [ "$(date +%s)" -ge "$next" ]; then
      one_run || log "scheduled run FAILED (see $dir/runs.log)"
      next=$(( next + run_every ))
      # A run longer than the interval: the next one starts right away, no backlog.
      [ "$next" -lt "$(date +%s)" ] && next=$(date +%s)
    fi
    sleep 0.5
  done
}

cleanup() {
  # The work directory is gone after a passing soak: nothing is left to stop then.
  if [ -d "$dir" ]; then touch "$dir/stop.sampler" "$dir/stop.scheduler"; fi
  [ -n "$rpid" ] && kill -9 "$rpid" 2> /dev/null || true
  [ -n "${gpid:-}" ] && kill "$gpid" 2> /dev/null || true
}
trap cleanup EXIT

start_receiver
sampler & spid=$!
"$bin/soak-load" --url "http://127.0.0.1:$port" --seconds "$seconds" --rate "$rate" \
  --concurrency "$concurrency" --log "$dir/deliveries.csv" > "$dir/load.json" 2> "$dir/load.log" &
gpid=$!
scheduler & cpid=$!

# The killer: every kill_every seconds the receiver dies mid-load and comes straight back.
t_end=$(( $(date +%s) + seconds ))
next_kill=$(( $(date +%s) + kill_every ))
kills=0
while kill -0 "$gpid" 2> /dev/null; do
  if [ "$(date +%s)" -ge "$next_kill" ] && [ "$(date +%s)" -lt "$t_end" ]; then
    kill -9 "$rpid"
    wait "$rpid" 2> /dev/null || true
    kills=$((kills + 1))
    start_receiver
    next_kill=$(( next_kill + kill_every ))
  fi
  sleep 0.2
done
gen_rc=0
wait "$gpid" || gen_rc=$?
gpid=
log "load finished (exit $gen_rc): $(cat "$dir/load.json")"
touch "$dir/stop.scheduler"
wait "$cpid" || true

# The final drain: the receiver stops (as a deploy would), one run loads what is left, a second
# one is handed that state and prunes the spool.
kill -TERM "$rpid"
wait "$rpid" || log "receiver exited $? on SIGTERM"
touch "$dir/stop.sampler"
wait "$spid" || true
final_rc=0
one_run final || final_rc=$?
one_run final || final_rc=$?
log "final drain exit $final_rc; checking"

check_rc=0
"$VENV_PYTHON" tests/python/soak_check.py "$dir" "$DUCKDB_DELTA_EXT" "$kills" "$concurrency" "$final_rc" "$gen_rc" \
  || check_rc=$?
if [ "$check_rc" = 0 ] && [ "${SOAK_KEEP:-0}" != 1 ] && [ -z "${SOAK_DIR:-}" ]; then
  rm -rf "$dir"
else
  log "work directory kept: $dir"
fi
exit "$check_rc"
