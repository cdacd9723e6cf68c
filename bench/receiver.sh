#!/usr/bin/env bash
# Receiver benchmark: durable POST requests/s (64 keep-alive connections, ~1 KB JSON bodies,
# each answered only after the spool's fsync) beside the same server's GET /healthz.
# The two alternate over ROUNDS rounds (default 3), each on a fresh server and spool: the
# machine's speed drifts over minutes, so a ratio of one run of each swings; the figures are
# the medians of the rounds.
# Usage: bench/receiver.sh [seconds per run]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
source bench/build.sh
bin=$bin_tap
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
source bench/receiver-lib.sh
post_lua "$work/post.lua"
p99() { # wrk latency (e.g. 950.00us, 12.34ms, 1.20s) in milliseconds
  python3 -c "import re,sys; m=re.match(r'([0-9.]+)(us|ms|s)', sys.argv[1] or '');
print('nan' if not m else round(float(m[1]) * {'us': 1e-3, 'ms': 1, 's': 1e3}[m[2]], 3))" \
    "$(echo "$1" | awk '/ 99%/ {print $2}')"
}
rows=()
for round in $(seq "$rounds"); do
  start_receiver "$bin" "$work"
  post=$(run -s "$work/post.lua" "http://$addr/webhooks/data")
  health=$(run "http://$addr/healthz")
  stored=$(sqlite3 "$work/spool.sqlite" "select count(*) from messages" 2>/dev/null || echo "?")
  stop_receiver
  for r in "POST:$post" "healthz:$health"; do
    bad=$(non2xx "${r#*:}")
    [ -z "$bad" ] || { echo "round $round: $bad non-2xx answers to ${r%%:*}" >&2; exit 1; }
  done
  echo "round $round: POST $(rps "$post")/s (p99 $(p99 "$post") ms, $stored stored), healthz $(rps "$health")/s (p99 $(p99 "$health") ms)" >&2
  rows+=("$(rps "$post") $(p99 "$post") $(rps "$health") $(p99 "$health")")
done
python3 - "${rows[@]}" <<'PY'
import statistics as st, sys
rows = [list(map(float, r.split())) for r in sys.argv[1:]]
med = [st.median(r[i] for r in rows) for i in range(4)]
ratios = [r[0] / r[2] for r in rows]
print(f"{'endpoint':28} {'requests/s':>12} {'p99 ms':>10}   (medians of {len(rows)} alternated rounds)")
print(f"{'POST /webhooks/data (fsync)':28} {med[0]:12.0f} {med[1]:10.2f}")
print(f"{'GET /healthz':28} {med[2]:12.0f} {med[3]:10.2f}")
print("ratio POST/healthz: %.2f (rounds: %s)" % (med[0] / med[2], ", ".join("%.2f" % x for x in ratios)))
print(f"RESULT post_rps={med[0]:.0f} post_p99_ms={med[1]:.3f} healthz_rps={med[2]:.0f} healthz_p99_ms={med[3]:.3f} ratio={med[0] / med[2]:.3f}")
PY
