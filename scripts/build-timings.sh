#!/usr/bin/env bash
# Where a cold build spends its time: runs `cargo build --timings` in an empty scratch target
# directory and prints the crates that cost the most (compile time summed over each crate's
# units: build script, lib, bins), the wall and CPU time of the whole build, and the load.
#
#   bash scripts/build-timings.sh                      # what scripts/demo.sh builds
#   bash scripts/build-timings.sh --release -p target-warehouse
#   TOP=40 KEEP_TARGET=1 bash scripts/build-timings.sh # more rows; keep the target dir
#
# A cold build on 2 cores takes minutes: run it when nothing else builds, and compare figures
# taken at a similar load (printed before and after).
set -euo pipefail
cd "$(dirname "$0")/.."
top=${TOP:-25}
if [ $# -eq 0 ]; then
  # Keep in step with scripts/demo.sh: the build a newcomer waits for.
  set -- --workspace --locked
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/build-timings.XXXXXX")
if [ -z "${KEEP_TARGET:-}" ]; then trap 'rm -rf "$scratch"' EXIT; fi
report=$(mktemp "${TMPDIR:-/tmp}/build-timings.XXXXXX.html")

echo "cargo build --timings $* (target dir $scratch)" >&2
echo "load before: $(uptime)" >&2
# `time` reports the wall time and the CPU time of cargo and every compiler it ran; cargo's own
# progress still goes to the terminal (fd 3).
TIMEFORMAT='%R %U %S'
exec 3>&2
{ time CARGO_TARGET_DIR="$scratch" cargo build --timings "$@" 2>&3; } 2> "$report.time" \
  || { echo "the build failed" >&2; exit 1; }
times=$(tail -n 1 "$report.time"); rm -f "$report.time"
echo "load after:  $(uptime)" >&2
cp "$(ls -t "$scratch"/cargo-timings/cargo-timing-*.html | head -n 1)" "$report"

python3 - "$report" "$top" $times <<'PY'
import collections, json, re, sys
report, top, wall, user, sys_ = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
html = open(report, encoding="utf-8").read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
per_crate = collections.defaultdict(float)
for u in units:
    per_crate[f"{u['name']} {u['version']}"] += u["duration"]
total = sum(per_crate.values())
print(f"{len(units)} units, {len(per_crate)} crates; wall {wall / 60:.1f} min, "
      f"CPU {(user + sys_) / 60:.1f} min (user {user / 60:.1f}, sys {sys_ / 60:.1f}); "
      f"sum of unit times {total / 60:.1f} min")
print(f"{'crate':<40} {'s':>7} {'share':>6}")
for name, s in sorted(per_crate.items(), key=lambda kv: -kv[1])[:top]:
    print(f"{name:<40} {s:7.1f} {100 * s / total:5.1f}%")
print(f"report: {report}")
PY
