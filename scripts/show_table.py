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
rel = con.sql(f"SELECT * FROM delta_scan('{path}') ORDER BY _sdc_sequence")
cols = [c for c in rel.columns]
print(rel.count("*").fetchone()[0], "rows;", len(cols), "columns:", ", ".join(cols))
print(con.sql(f"SELECT * EXCLUDE (_sdc_batched_at, _sdc_extracted_at) FROM delta_scan('{path}') ORDER BY _sdc_sequence") if "_sdc_batched_at" in cols else rel)
sys.stdout.flush()
os._exit(0)  # skip native teardown (see tests/python/read_table.py)
