#!/usr/bin/env bash
# Receiver benchmark: durable POST requests/s (64 keep-alive connections, ~1 KB JSON bodies,
# each answered only after the spool's fsync) beside the same server's GET /healthz, same run.
# Usage: bench/receiver.sh [seconds]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
source bench/build.sh
bin=$bin_tap
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
echo "{\"spool_path\":\"$work/spool.sqlite\",\"listen_address\":\"127.0.0.1:0\"}" > "$work/config.json"
"$bin" serve --config "$work/config.json" 2> "$work/server.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
addr=$(grep -o "listening on [0-9.:]*" "$work/server.log" | awk '{print $3}')
body=$(python3 -c 'import json; print(json.dumps({"event":"order.created","id":"evt_0001","data":{"object":{"id":"ord_1","amount":1999,"currency":"usd","customer":{"email":"a@example.com","name":"A. Customer"},"items":[{"sku":"SKU-%d"%i,"qty":i,"price":9.99} for i in range(8)],"note":"x"*300}}}))')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
LUA
run() { wrk -t2 -c64 -d"${secs}s" --latency "$@" 2>&1; }
post=$(run -s "$work/post.lua" "http://$addr/webhooks/data")
health=$(run "http://$addr/healthz")
rps() { echo "$1" | awk '/Requests\/sec/ {print $2}'; }
p99() { echo "$1" | awk '/ 99%/ {print $2}'; }
non2xx() { echo "$1" | awk '/Non-2xx/ {print $NF}'; }
stored=$(sqlite3 "$work/spool.sqlite" "select count(*) from messages" 2>/dev/null || echo "?")
printf '%-28s %12s %10s\n' "endpoint" "requests/s" "p99"
printf '%-28s %12s %10s\n' "POST /webhooks/data (fsync)" "$(rps "$post")" "$(p99 "$post")"
printf '%-28s %12s %10s\n' "GET /healthz" "$(rps "$health")" "$(p99 "$health")"
python3 -c "print('ratio POST/healthz: %.2f' % ($(rps "$post")/$(rps "$health")))"
echo "body bytes: ${#body}; stored messages: $stored; non-2xx: $(non2xx "$post")${secs:+}"
ms() { # wrk latency (e.g. 950.00us, 12.34ms, 1.20s) in milliseconds
  python3 -c "import re,sys; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)', v or '');
print('nan' if not m else round(float(m[1]) * {'us': 1e-3, 'ms': 1, 's': 1e3}[m[2]], 3))" "$1"
}
echo "RESULT post_rps=$(rps "$post") post_p99_ms=$(ms "$(p99 "$post")") healthz_rps=$(rps "$health") healthz_p99_ms=$(ms "$(p99 "$health")") ratio=$(python3 -c "print('%.3f' % ($(rps "$post")/$(rps "$health")))")"
