#!/usr/bin/env python3
"""Reads one Delta table with every Python reader a user reaches for and prints, per reader,
its rows as JSON (values as text, sorted), so a test can compare them.

    read_everywhere.py TABLE_DIR

{"duckdb": [...], "deltalake_pyarrow": [...], "deltalake_querybuilder": [...], "polars": [...]}
A reader that refuses the table reports {"error": "..."} instead of rows.
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
import polars as pl
import pyarrow as pa

path = os.path.abspath(sys.argv[1])


def enc(v):
    if v is None:
        return None
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    return str(v)


def canon(rows):
    out = [{k: enc(v) for k, v in r.items()} for r in rows]
    out.sort(key=lambda r: json.dumps(r, sort_keys=True))
    return out


def arrow_rows(t):
    return canon(t.to_pylist())


def attempt(f):
    try:
        return f()
    except Exception as e:  # a reader refusing the table is a result
        return {"error": f"{type(e).__name__}: {e}"}


def duck():
    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "**", "delta.duckdb_extension"), recursive=True)[0]
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"LOAD '{ext}'")
    cur = con.execute(f"SELECT * FROM delta_scan('{path}')")
    names = [d[0] for d in cur.description]
    return canon([dict(zip(names, r)) for r in cur.fetchall()])


out = {
    "duckdb": attempt(duck),
    "deltalake_pyarrow": attempt(lambda: arrow_rows(deltalake.DeltaTable(path).to_pyarrow_table())),
    "deltalake_querybuilder": attempt(lambda: arrow_rows(pa.table(
        deltalake.QueryBuilder().register("t", deltalake.DeltaTable(path)).execute("SELECT * FROM t").read_all()))),
    "polars": attempt(lambda: canon(pl.read_delta(path).to_dicts())),
}
print(json.dumps(out, ensure_ascii=False))
