# Sourced by the benchmarks: fills a spool with the corpus, as the receiver would have.
# Needs: $bin_tap (tap-webhook), $work (scratch dir), $count; optional $CORPUS_ARGS for corpus.py.
make_spool() {
  echo "{\"spool_path\":\"$work/spool.sqlite\",\"listen_address\":\"127.0.0.1:0\"}" > "$work/tap.json"
  rm -f "$work/spool.sqlite"*
  # Only serve creates a spool (the tap refuses a missing one): start it until it listens.
  "$bin_tap" serve --config "$work/tap.json" 2> "$work/serve.log" &
  local serve_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
  kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
  [ -f "$work/spool.sqlite" ] || { echo "serve made no spool:" >&2; cat "$work/serve.log" >&2; exit 1; }
  python3 "$(dirname "${BASH_SOURCE[0]}")/corpus.py" --count "$count" ${CORPUS_ARGS:-} > "$work/corpus.jsonl"
  python3 - "$work/spool.sqlite" "$work/corpus.jsonl" <<'PY'
import sqlite3, sys, uuid, time
db = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1e6)
with open(sys.argv[2]) as f, db:
    db.executemany(
        "INSERT INTO messages (seq, id, source, received_at, delivery_id, part, headers, query, body)"
        " VALUES (?, ?, 'data', ?, NULL, 0, '{}', '{}', ?)",
        ((now + i, str(uuid.uuid4()), now + i, line.rstrip("\n")) for i, line in enumerate(f)))
PY
}
