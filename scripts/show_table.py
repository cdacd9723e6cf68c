#!/usr/bin/env python3
"""Prints a Delta table, or a query over it, with DuckDB's delta extension, offline.

    .venv/bin/python scripts/show_table.py TABLE_DIR            # every row, payload columns first
    .venv/bin/python scripts/show_table.py TABLE_DIR "SQL"      # a query; the table is `t`

The extension is the file shipped in the `duckdb-extension-delta` package of the test virtualenv
(`bash tests/python/setup.sh` makes `.venv`), loaded by path: `INSTALL delta` would download it.
Works on append-only and upserted (deletion-vector) tables alike.
"""
import glob
import os
import sys

import duckdb
import duckdb_extension_delta

if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
path = os.path.abspath(sys.argv[1])
if not os.path.isdir(os.path.join(path, "_delta_log")):
    sys.exit(f"show_table.py: {path} is not a Delta table (no _delta_log/); tables are <warehouse_path>/<stream>")
ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "**", "delta.duckdb_extension"), recursive=True)[0]
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute(f"CREATE VIEW t AS SELECT * FROM delta_scan('{path}')")
if len(sys.argv) == 3:
    con.sql(sys.argv[2]).show(max_width=240)
else:
    cols = con.sql("SELECT * FROM t").columns
    print(con.sql("SELECT count(*) FROM t").fetchone()[0], "rows;", len(cols), "columns:", ", ".join(cols))
    # The sequence and the key (a generated one only on tables without a configured key), then
    # the payload's columns; the other _sdc_ metadata columns left out.
    meta = [c for c in ("_sdc_sequence", "__sdc_primary_key") if c in cols]
    shown = meta + [c for c in cols if not c.startswith("_sdc") and c != "__sdc_primary_key"]
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in shown)
    order = ' ORDER BY "_sdc_sequence"' if "_sdc_sequence" in cols else ""
    con.sql(f"SELECT {quoted} FROM t{order}").show(max_width=240)
sys.stdout.flush()
os._exit(0)  # skip native teardown (see tests/python/read_table.py)
