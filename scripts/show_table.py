#!/usr/bin/env python3
"""Prints a Delta table with DuckDB's delta extension (loaded from its PyPI package, offline)."""
import glob
import os
import sys

import duckdb
import duckdb_extension_delta

path = os.path.abspath(sys.argv[1])
ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "**", "delta.duckdb_extension"), recursive=True)[0]
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
rel = con.sql(f"SELECT * FROM delta_scan('{path}')")
cols = rel.columns
print(rel.count("*").fetchone()[0], "rows;", len(cols), "columns:", ", ".join(cols))
# The payload's columns, with the sequence and key; the other _sdc_ metadata columns left out.
shown = ["_sdc_sequence", "__sdc_primary_key"] + [c for c in cols if not c.startswith("_sdc") and c != "__sdc_primary_key"]
con.sql(f"SELECT {', '.join(chr(34) + c + chr(34) for c in shown)} FROM delta_scan('{path}') ORDER BY _sdc_sequence").show(max_width=240)
sys.stdout.flush()
os._exit(0)  # skip native teardown (see tests/python/read_table.py)
