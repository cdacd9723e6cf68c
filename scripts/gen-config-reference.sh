#!/usr/bin/env bash
# Rewrites the README's configuration reference from the binaries' --about (which renders
# schemas/*.config.schema.json). tests/e2e/docs.rs fails when the README drifts from it.
#   scripts/gen-config-reference.sh [BIN_DIR]    (default: the newest build, via bin/)
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=${1:-}
about() {
  if [ -n "$bindir" ]; then "$bindir/$1" --about --format markdown; else "bin/$1" --about --format markdown; fi \
    | sed -n '/^## Settings/,$p' | tail -n +3
}
python3 - "$(about tap-webhook)" "$(about target-warehouse)" <<'PY'
import re, sys
readme = open("README.md").read()
for name, table in (("tap-webhook", sys.argv[1]), ("target-warehouse", sys.argv[2])):
    begin, end = f"<!-- {name} settings: generated -->", f"<!-- end {name} settings -->"
    new = f"{begin}\n{table.strip()}\n{end}"
    readme, n = re.subn(re.escape(begin) + ".*?" + re.escape(end), lambda m: new, readme, flags=re.S)
    assert n == 1, f"markers for {name} not found in README.md"
open("README.md", "w").write(readme)
PY
