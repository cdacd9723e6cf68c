# Sourced by bench/receiver.sh and bench/receiver-bound.sh: one receiver on a fresh spool, wrk
# against it, and what is read off wrk's report. The caller sets $secs (seconds per wrk run)
# and $pid to empty, and kills "$pid" in its EXIT trap.

# post_lua FILE: wrk's script for the benchmark's ~1 KB JSON POST.
post_lua() {
  local body
  body=$(python3 -c 'import json; print(json.dumps({"event":"order.created","id":"evt_0001","data":{"object":{"id":"ord_1","amount":1999,"currency":"usd","customer":{"email":"a@example.com","name":"A. Customer"},"items":[{"sku":"SKU-%d"%i,"qty":i,"price":9.99} for i in range(8)],"note":"x"*300}}}))')
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$body" > "$1"
}

# start_receiver BIN DIR: serves on a fresh spool in DIR (any environment given before the
# call applies); sets $pid and $addr, or stops the script with the server's log.
start_receiver() {
  local bin=$1 dir=$2
  rm -rf "$dir"/spool* "$dir/server.log"
  echo "{\"spool_path\":\"$dir/spool.sqlite\",\"listen_address\":\"127.0.0.1:0\"}" > "$dir/config.json"
  "$bin" serve --config "$dir/config.json" 2> "$dir/server.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$dir/server.log" && break; sleep 0.1; done
  addr=$(grep -o "listening on [0-9.:]*" "$dir/server.log" | awk '{print $3}')
  [ -n "$addr" ] || { echo "the receiver did not start:" >&2; cat "$dir/server.log" >&2; exit 1; }
}

stop_receiver() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# run WRK-ARGS...: one wrk run of $secs seconds, 2 threads, 64 keep-alive connections.
run() { wrk -t2 -c64 -d"${secs}s" --latency "$@" 2>&1; }
rps() { echo "$1" | awk '/Requests\/sec/ {print $2}'; }
non2xx() { echo "$1" | awk '/Non-2xx/ {print $NF}'; }
