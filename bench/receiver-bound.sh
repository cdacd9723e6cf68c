#!/usr/bin/env bash
# Where the receiver's POST/healthz ratio is bounded (bench/NOTES.md). The receiver benchmark
# (64 keep-alive connections, ~1 KB bodies) on a build of HEAD patched with
# bench/receiver-bound.patch, which adds a SPOOL_EXPERIMENT switch the product never has:
#   full     the product: the request goes to the spool's writer thread, which inserts it with
#            its group and answers after the WAL's fsync
#   normal   the same, with synchronous=NORMAL: the same inserts, no fsync at commit
#   nowrite  the writer thread answers each request at once, storing nothing
#   noreply  the handler answers without handing anything to the writer thread
# The variants alternate over ROUNDS rounds, each on a fresh server and spool, POST then
# healthz; the figures are medians.
# Usage: bench/receiver-bound.sh [seconds per run] [rounds]   (default 5 and 3; builds a
# release binary in $BOUND_TARGET_DIR, default ./target-bound; needs wrk and patch)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${1:-5}
rounds=${2:-3}
src=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; }; rm -rf "$src"' EXIT
git archive HEAD | tar -x -C "$src"
(cd "$src" && patch -s -p1 < bench/receiver-bound.patch)
# A target directory of its own (never the benchmarks' release one: the patched binary would
# replace the product's there); BOUND_TARGET_DIR may point it at a copy of a warm one.
target=$(realpath -m "${BOUND_TARGET_DIR:-$root/target-bound}")
echo "building the patched receiver in $target..." >&2
# From inside the copy, so that its .cargo/config.toml (the allocator's settings) applies.
(cd "$src" && CARGO_TARGET_DIR=$target cargo build --release -q --locked -p tap-webhook -p target-warehouse)
bin=$target/release/tap-webhook
body=$(python3 -c 'import json; print(json.dumps({"event":"order.created","id":"evt_0001","data":{"object":{"id":"ord_1","amount":1999,"currency":"usd","customer":{"email":"a@example.com","name":"A. Customer"},"items":[{"sku":"SKU-%d"%i,"qty":i,"price":9.99} for i in range(8)],"note":"x"*300}}}))')
printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$body" > "$src/post.lua"
rps() { awk '/Requests\/sec/ {print $2}'; }
lines=()
for round in $(seq "$rounds"); do
  for v in full normal nowrite noreply; do
    rm -rf "$src"/spool* "$src/server.log"
    echo "{\"spool_path\":\"$src/spool.sqlite\",\"listen_address\":\"127.0.0.1:0\"}" > "$src/config.json"
    SPOOL_EXPERIMENT=$v "$bin" serve --config "$src/config.json" 2> "$src/server.log" &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$src/server.log" && break; sleep 0.1; done
    addr=$(grep -o "listening on [0-9.:]*" "$src/server.log" | awk '{print $3}')
    [ -n "$addr" ] || { echo "the receiver did not start:" >&2; cat "$src/server.log" >&2; exit 1; }
    post_out=$(wrk -t2 -c64 -d"${secs}s" -s "$src/post.lua" "http://$addr/webhooks/data")
    health_out=$(wrk -t2 -c64 -d"${secs}s" "http://$addr/healthz")
    if grep -q "Non-2xx" <<< "$post_out$health_out"; then
      echo "round $round $v: non-2xx answers" >&2; exit 1
    fi
    post=$(rps <<< "$post_out")
    health=$(rps <<< "$health_out")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    echo "round $round $v: POST $post/s, healthz $health/s" >&2
    lines+=("$v $post $health")
  done
done
python3 - "${lines[@]}" <<'PY'
import collections, statistics as st, sys
runs = collections.defaultdict(list)
for line in sys.argv[1:]:
    v, post, health = line.split()
    runs[v].append((float(post), float(health)))
print(f"{'variant':8} {'POST/s':>9} {'healthz/s':>10} {'ratio':>6}  ratios of the rounds")
for v, rs in runs.items():
    post, health = st.median(r[0] for r in rs), st.median(r[1] for r in rs)
    ratios = [r[0] / r[1] for r in rs]
    print(f"{v:8} {post:9.0f} {health:10.0f} {st.median(ratios):6.2f}  " + ", ".join(f"{x:.2f}" for x in ratios))
for v, rs in runs.items():
    print(f"RESULT variant={v} post_rps={st.median(r[0] for r in rs):.0f} "
          f"healthz_rps={st.median(r[1] for r in rs):.0f} ratio={st.median(r[0] / r[1] for r in rs):.3f}")
PY
