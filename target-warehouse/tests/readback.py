#!/usr/bin/env python3
"""Read a target-warehouse table back with Python `deltalake` and DuckDB's delta extension.

Usage: readback.py TABLE_DIR [DUCKDB_DELTA_EXTENSION_PATH]
Prints, as JSON: row count, column types and the first rows from each reader. Not run by
`cargo test`; the integration package wires it with a venv (duckdb, duckdb-extension-delta,
deltalake from PyPI).
"""
import json
import sys


def main() -> int:
    table = sys.argv[1]
    out = {}
    try:
        from deltalake import DeltaTable

        dt = DeltaTable(table)
        arrow = dt.to_pyarrow_table()
        out["deltalake"] = {
            "rows": arrow.num_rows,
            "types": {f.name: str(f.type) for f in arrow.schema},
            "sample": arrow.slice(0, 3).to_pylist(),
        }
    except ImportError:
        out["deltalake"] = "not installed"
    try:
        import duckdb

        con = duckdb.connect()
        if len(sys.argv) > 2:
            con.execute(f"LOAD '{sys.argv[2]}'")
        else:
            con.execute("LOAD delta")
        rel = con.sql(f"SELECT * FROM delta_scan('{table}')")
        out["duckdb"] = {
            "rows": con.sql(f"SELECT count(*) FROM delta_scan('{table}')").fetchone()[0],
            "types": dict(zip(rel.columns, map(str, rel.types))),
        }
    except ImportError:
        out["duckdb"] = "not installed"
    print(json.dumps(out, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
