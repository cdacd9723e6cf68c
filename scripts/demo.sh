#!/usr/bin/env bash
# The main job on the embedded defaults, end to end, in ./demo:
#   build → tap-webhook serve (embedded spool) → POST a few webhooks → stop →
#   tap-webhook | target-warehouse (Delta table in ./demo/warehouse) → show the table.
# Run it again: the second run loads only what was posted since (state kept in demo/state.json).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The table is shown by DuckDB from the test virtualenv: set it up (~30 s, mostly downloads)
# while the build runs.
venv_log=$(mktemp)
venv_pid=
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "== setting up the Python reader (.venv, ~30 s) in the background: log in $venv_log"
  bash tests/python/setup.sh "$root/.venv" > "$venv_log" 2>&1 &
  venv_pid=$!
fi

# The whole workspace, exactly as the test command builds it: one feature set for every build
# (workspace-hack/), so `bash tests/run.sh` afterwards compiles only this workspace's crates.
echo "== building tap-webhook and target-warehouse: cargo build --workspace (debug)"
echo "   a first build compiles ~390 crates (about 9 CPU-minutes: 4 to 6 minutes on 2 cores); later runs take seconds"
t0=$SECONDS
cargo build --workspace --locked
echo "== built in $((SECONDS - t0)) s"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
mkdir -p demo && cd demo

# Every setting at its default, but a free port so nothing else on 8080 gets in the way.
TAP_WEBHOOK_LISTEN_ADDRESS=127.0.0.1:0 "$bin/tap-webhook" serve --config ENV 2> serve.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" serve.log && break; sleep 0.1; done
addr=$(grep -o "listening on [0-9.:]*" serve.log | awk '{print $3}')
echo "== receiver listening on $addr (spool: demo/tap-webhook-spool.sqlite)"

post() { curl -sS -X POST "http://$addr/webhooks/data" -H 'Content-Type: application/json' "$@"; echo; }
post -H 'X-GitHub-Delivery: d-1' -d '{"action":"opened","number":1,"created_at":"2026-11-25T10:00:00Z","user":{"login":"ada"}}'
post -H 'X-GitHub-Delivery: d-1' -d '{"action":"opened","number":1,"created_at":"2026-11-25T10:00:00Z","user":{"login":"ada"}}'
post -d '[{"event":"delivered","email":"a@example.com","ts":1764064800},{"event":"open","email":"b@example.com","ts":1764064801}]'
post -d '{"order_id":"A-1","total":19.99,"paid":true}'
kill -TERM $pid; wait $pid 2>/dev/null || true
echo "== what the receiver logged per delivery (demo/serve.log):"
grep -E "delivery (stored|refused)" serve.log | sed 's/^/   /' || true

# The README's drain: the target's state lines appended to one file, the tap reading the last.
echo "== tap-webhook --state state.json | target-warehouse >> state.json"
touch state.json
"$bin/tap-webhook" --state state.json | "$bin/target-warehouse" >> state.json
echo "state: $(tail -n 1 state.json)"

echo "== the table (demo/warehouse/data)"
if [ -n "$venv_pid" ] && ! wait "$venv_pid"; then
  cat "$venv_log" >&2
  echo "demo: setting up the Python reader failed (log above); the table is in demo/warehouse/data" >&2
  exit 1
fi
rm -f "$venv_log"
"$root/.venv/bin/python" "$root/scripts/show_table.py" warehouse/data
