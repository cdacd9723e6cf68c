#!/usr/bin/env python3
"""Reads a Delta table with two independent readers and prints what they saw as one JSON object.

    read_table.py TABLE_DIR [ORDER_BY]

{"duckdb":    {"count": n, "columns": {name: duckdb type}, "rows": [{...}, ...]},
 "deltalake": {"count": n, "columns": {name: arrow type}, "version": v, "files": k}}
Rows come from DuckDB's delta extension (loaded from its PyPI package: no download), ordered by
ORDER_BY (default _sdc_sequence) when that column exists.
"""
import datetime
import decimal
import glob
import json
import os
import sys

import deltalake
import duckdb
import duckdb_extension_delta
import pyarrow as pa

path = os.path.abspath(sys.argv[1])
order = sys.argv[2] if len(sys.argv) > 2 else "_sdc_sequence"

ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "**", "delta.duckdb_extension"), recursive=True)[0]
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
rel = con.sql(f"SELECT * FROM delta_scan('{path}')")
columns = dict(zip(rel.columns, [str(t) for t in rel.types]))
q = f"SELECT * FROM delta_scan('{path}')" + (f' ORDER BY "{order}"' if order in columns else "")
cur = con.execute(q)
names = [d[0] for d in cur.description]
rows = [dict(zip(names, r)) for r in cur.fetchall()]

dt = deltalake.DeltaTable(path)
# Through deltalake's query engine: its pyarrow dataset path refuses tables with deletion
# vectors ("reader features {'deletionVectors'} ... not yet supported"), which upserted tables
# have by default.
arrow = pa.table(deltalake.QueryBuilder().register("t", dt).execute("SELECT * FROM t").read_all())


def enc(v):
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


print(json.dumps({
    "duckdb": {"count": len(rows), "columns": columns, "rows": rows},
    "deltalake": {"count": arrow.num_rows, "columns": {f.name: str(f.type) for f in arrow.schema},
                  "version": dt.version(), "files": len(dt.file_uris())},
}, default=enc))
sys.stdout.flush()
# DuckDB and deltalake each bundle native libraries whose teardown can abort the interpreter at
# exit after all the work is done; skip the teardown.
os._exit(0)
