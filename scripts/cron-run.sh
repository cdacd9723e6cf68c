#!/usr/bin/env bash
# One scheduled run of the pipeline: tap-webhook | target-warehouse, with the state kept between
# runs. Only the last state line the target printed becomes the next run's --state, and only if
# the whole pipe succeeded: a failed run leaves the previous state in place (the next run then
# replays, which the target skips or merges).
#
# crontab (every 15 minutes; flock keeps runs from overlapping):
#   */15 * * * * cd /srv/webhook-warehouse && scripts/cron-run.sh >> /var/log/webhook-warehouse.log 2>&1
#
# Environment: TAP_CONFIG (default tap.json), TARGET_CONFIG (default target.json),
#              STATE_FILE (default state/state.json), TAP_WEBHOOK and TARGET_WAREHOUSE (the
#              binaries; default this checkout's bin/ wrappers, which run its newest build),
#              TAP_FOLLOW=1 (a following run: `tap-webhook --follow`, until its max_seconds or
#              a stop signal; deploy/webhook-warehouse-follow.service starts it again).
# deploy/webhook-warehouse-drain.{service,timer} run it under systemd instead of cron.
#
# Relative paths (the configs, the state file, a spool_path or warehouse_path inside the
# configs) are taken from the directory it is started in, as the crontab line's `cd` sets. A
# spool_path that does not exist from there fails the run (only `tap-webhook serve` creates
# the spool).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tap_config=${TAP_CONFIG:-tap.json}
target_config=${TARGET_CONFIG:-target.json}
state_file=${STATE_FILE:-state/state.json}
tap=${TAP_WEBHOOK:-$here/bin/tap-webhook}
target=${TARGET_WAREHOUSE:-$here/bin/target-warehouse}
mkdir -p "$(dirname "$state_file")"

exec 9> "$state_file.lock"
if ! flock -n 9; then
  echo "$(date -u +%FT%TZ) another run holds $state_file.lock; skipping" >&2
  exit 0
fi

# The configs and the spool must be there: `--test` refuses a spool_path that does not exist
# (naming its absolute path) instead of this run draining a new, empty spool and reporting ok
# while the real one fills up elsewhere.
if ! check=$("$tap" --config "$tap_config" --test 2>&1); then
  echo "$check" >&2
  echo "$(date -u +%FT%TZ) run FAILED before starting (in $(pwd), TAP_CONFIG=$tap_config); state left as it was" >&2
  exit 1
fi

tap_args=(--config "$tap_config")
[ -s "$state_file" ] && tap_args+=(--state "$state_file")
[ "${TAP_FOLLOW:-}" = 1 ] && tap_args+=(--follow)
out=$(mktemp "$state_file.out.XXXXXX")
trap 'rm -f "$out"' EXIT

# A stop (systemctl stop, Ctrl-C) reaches the tap and the target too: a following tap ends with
# a final STATE, the target at its end of input, both with 0. This script waits for them and
# keeps the state (a trap runs once the pipe is done; without one the signal would end the
# script first).
trap ':' TERM INT
if "$tap" "${tap_args[@]}" | "$target" --config "$target_config" > "$out"; then
  if [ -s "$out" ]; then
    tail -n 1 "$out" > "$state_file.new"
    mv "$state_file.new" "$state_file"     # atomic: a crash leaves the old or the new state
  fi
  echo "$(date -u +%FT%TZ) run ok; state: $(cat "$state_file" 2>/dev/null || echo none)" >&2
else
  echo "$(date -u +%FT%TZ) run FAILED; state left as it was" >&2
  exit 1
fi
