#!/usr/bin/env python3
"""The freshness benchmark's reader (bench/freshness.sh): when does a delivery become a row?

    freshness.py watch TABLE_DIR SEEN_FILE STOP_FILE
        Polls TABLE_DIR/_delta_log every 20 ms, as a reader looking for new versions does, and
        writes `version seen_at` (epoch seconds) the first time each commit file is listed,
        until STOP_FILE exists.
    freshness.py report TABLE_DIR SEEN_FILE
        For every commit seen, the rows it added (its `add` actions with dataChange; a
        compaction's rewrites are not new rows): latency = seen_at - the row's
        `_sdc_received_at`. Prints the figures as JSON.

`_sdc_received_at` is the receiver's receipt time, taken before the spool's fsync and so before
its 2xx: the latency measured is from receipt, a little longer than from the 2xx.
"""
import json
import os
import re
import sys
import time

COMMIT = re.compile(r"^(\d{20})\.json$")


def watch(table, seen_file, stop_file):
    log = os.path.join(table, "_delta_log")
    seen = set()
    with open(seen_file, "w") as out:
        while not os.path.exists(stop_file):
            now = time.time()
            try:
                names = os.listdir(log)
            except FileNotFoundError:
                names = []
            for name in names:
                m = COMMIT.match(name)
                if m and name not in seen:
                    seen.add(name)
                    out.write(f"{int(m.group(1))} {now:.6f}\n")
            out.flush()
            time.sleep(0.02)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values))) - 1))
    return sorted_values[i]


def report(table, seen_file):
    import pyarrow.parquet as pq

    seen = {}
    for line in open(seen_file):
        v, t = line.split()
        seen[int(v)] = float(t)
    latencies = []
    uids = set()
    data_commits = 0
    for version in sorted(seen):
        path = os.path.join(table, "_delta_log", f"{version:020d}.json")
        adds = []
        for line in open(path):
            action = json.loads(line)
            add = action.get("add")
            if add and add.get("dataChange", True):
                adds.append(add["path"])
        if adds:
            data_commits += 1
        for rel in adds:
            t = pq.read_table(os.path.join(table, rel), columns=["_sdc_received_at", "uid"])
            uids.update(t.column("uid").to_pylist())
            for ts in t.column("_sdc_received_at").cast("int64").to_pylist():
                # Microseconds since the epoch (the column's unit).
                latencies.append(seen[version] - ts / 1e6)
    latencies.sort()
    log = os.listdir(os.path.join(table, "_delta_log"))
    return {
        "rows": len(latencies),
        "uids_distinct": len(uids),
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": latencies[-1] if latencies else None,
        "data_commits": data_commits,
        "versions": max(seen) + 1 if seen else 0,
        "log_json_files": sum(1 for n in log if COMMIT.match(n)),
        "checkpoints": sum(1 for n in log if n.endswith(".checkpoint.parquet")),
    }


def main():
    if sys.argv[1] == "watch":
        watch(*sys.argv[2:5])
    elif sys.argv[1] == "report":
        print(json.dumps(report(*sys.argv[2:4])))
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}: watch or report")


if __name__ == "__main__":
    main()
