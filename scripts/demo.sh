#!/usr/bin/env bash
# The main job on the embedded defaults, end to end, in ./demo:
#   build → tap-webhook serve (embedded spool) → POST a few webhooks → stop →
#   tap-webhook | target-warehouse (Delta table in ./demo/warehouse) → show the table.
# Run it again: the second run loads only what was posted since (state kept in demo/state.json).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# The whole workspace, as the test command builds it: one feature set, so running the tests
# and the demo builds the dependencies once, not twice.
cargo build -q --workspace
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

echo "== tap-webhook | target-warehouse"
state_args=()
[ -s state.json ] && state_args=(--state state.json)
"$bin/tap-webhook" "${state_args[@]}" | "$bin/target-warehouse" > state.new
[ -s state.new ] && tail -n 1 state.new > state.json
echo "state: $(cat state.json)"

echo "== the table (demo/warehouse/data)"
if [ ! -x "$root/.venv/bin/python" ]; then
  bash "$root/tests/python/setup.sh" "$root/.venv" >/dev/null
fi
"$root/.venv/bin/python" "$root/scripts/show_table.py" warehouse/data
