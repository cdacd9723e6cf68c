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
source bench/receiver-lib.sh
post_lua "$src/post.lua"
lines=()
for round in $(seq "$rounds"); do
  for v in full normal nowrite noreply; do
    SPOOL_EXPERIMENT=$v start_receiver "$bin" "$src"
    post_out=$(run -s "$src/post.lua" "http://$addr/webhooks/data")
    health_out=$(run "http://$addr/healthz")
    if [ -n "$(non2xx "$post_out")$(non2xx "$health_out")" ]; then
      echo "round $round $v: non-2xx answers" >&2; exit 1
    fi
    post=$(rps "$post_out")
    health=$(rps "$health_out")
    stop_receiver
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
