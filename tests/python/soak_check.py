"""The checks and the summary of tests/soak.sh: the generator's record of every delivery against
the Delta tables (read by DuckDB with its delta extension), the receiver's RSS and descriptors
per lifetime, the scheduled runs, the spool after the final drain. Exits 1 on any violation.

usage: soak_check.py DIR DUCKDB_DELTA_EXT KILLS CONCURRENCY FINAL_DRAIN_RC LOAD_RC
"""

import json
import os
import sqlite3
import statistics
import sys

import duckdb

MIB = 1024 * 1024


def main():
    d, ext, kills, concurrency, final_rc, load_rc = sys.argv[1:7]
    kills, concurrency = int(kills), int(concurrency)
    violations = []
    summary = {"kills": kills}

    load = json.load(open(os.path.join(d, "load.json"))) if os.path.getsize(os.path.join(d, "load.json")) else {}
    summary["load"] = load
    if load_rc != "0":
        violations.append(f"the load generator exited {load_rc}")
    if load.get("resend_stored_again"):
        violations.append(f"{load['resend_stored_again']} acknowledged deliveries sent again with their id were stored again")
    if final_rc != "0":
        violations.append(f"the final drain failed (exit {final_rc})")

    runs = [line.split("\t") for line in open(os.path.join(d, "runs.tsv")) if line.strip()]
    durations = [float(b) - float(a) for a, b, rc in runs if rc.strip() != "killed"]
    killed = [r for r in runs if r[2].strip() == "killed"]
    failed = [r for r in runs if r[2].strip() not in ("0", "killed")]
    summary["runs"] = {
        "count": len(runs),
        "killed": len(killed),
        "failed": len(failed),
        "seconds_median": round(statistics.median(durations), 1) if durations else None,
        "seconds_max": round(max(durations), 1) if durations else None,
    }
    if failed:
        violations.append(f"{len(failed)} of {len(runs)} scheduled runs failed (runs.log)")

    summary["tables"] = check_tables(d, ext, violations)
    summary["receiver"] = check_samples(d, concurrency, violations)
    summary["spool"] = check_spool(d, violations)
    summary["violations"] = violations

    print(json.dumps(summary, indent=1))
    print_human(summary)
    sys.exit(1 if violations else 0)


def check_tables(d, ext, violations):
    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    con.execute(f"LOAD '{ext}'")
    wh = os.path.join(d, "warehouse")
    con.execute(f"CREATE VIEW ev AS SELECT * FROM delta_scan('{wh}/events')")
    con.execute(f"CREATE VIEW od AS SELECT * FROM delta_scan('{wh}/orders')")
    con.execute(
        f"""CREATE TABLE log AS SELECT * FROM read_csv('{d}/deliveries.csv', header = true,
            columns = {{'source': 'VARCHAR', 'uid': 'BIGINT', 'order_id': 'BIGINT',
                        'version': 'BIGINT', 'acked': 'INTEGER'}})"""
    )
    one = lambda q: con.execute(q).fetchone()[0]

    def expect_zero(what, q):
        n = one(q)
        if n:
            violations.append(f"{n} {what}")
        return n

    t = {}
    t["events_rows"] = one("SELECT count(*) FROM ev")
    t["events_acked"] = one("SELECT count(*) FROM log WHERE source = 'events' AND acked = 1")
    t["events_unacked_posted"] = one("SELECT count(*) FROM log WHERE source = 'events' AND acked = 0")
    t["events_unacked_stored"] = one(
        "SELECT count(*) FROM ev JOIN log USING (uid) WHERE log.source = 'events' AND acked = 0")
    t["events_duplicated"] = expect_zero(
        "events uids in the table more than once",
        "SELECT count(*) FROM (SELECT uid FROM ev GROUP BY uid HAVING count(*) > 1)")
    t["events_lost"] = expect_zero(
        "acknowledged events missing from the table",
        "SELECT count(*) FROM log WHERE source = 'events' AND acked = 1 AND uid NOT IN (SELECT uid FROM ev WHERE uid IS NOT NULL)")
    t["events_foreign"] = expect_zero(
        "event rows whose uid was never posted",
        "SELECT count(*) FROM ev WHERE uid IS NULL OR uid NOT IN (SELECT uid FROM log WHERE source = 'events')")
    t["events_corrupt"] = expect_zero(
        "event rows whose body does not match their uid",
        "SELECT count(*) FROM ev WHERE note IS DISTINCT FROM 'u' || uid")

    con.execute("""CREATE TABLE last_acked AS SELECT order_id, max(version) AS version
                   FROM log WHERE source = 'orders' AND acked = 1 GROUP BY order_id""")
    t["orders_rows"] = one("SELECT count(*) FROM od")
    t["orders_keys_acked"] = one("SELECT count(*) FROM last_acked")
    t["orders_posts_acked"] = one("SELECT count(*) FROM log WHERE source = 'orders' AND acked = 1")
    t["orders_duplicated_keys"] = expect_zero(
        "order keys with more than one row",
        "SELECT count(*) FROM (SELECT order_id FROM od GROUP BY order_id HAVING count(*) > 1)")
    t["orders_keys_lost"] = expect_zero(
        "acknowledged order keys missing from the table",
        "SELECT count(*) FROM last_acked WHERE order_id NOT IN (SELECT order_id FROM od WHERE order_id IS NOT NULL)")
    t["orders_stale"] = expect_zero(
        "order keys whose row is older than their last acknowledged post",
        "SELECT count(*) FROM od JOIN last_acked a USING (order_id) WHERE od.version < a.version")
    # A row newer than the last acknowledged post is allowed only if it is a post whose answer
    # was lost (the receiver killed after its commit).
    t["orders_latest_is_unacked_post"] = one(
        """SELECT count(*) FROM od LEFT JOIN last_acked a USING (order_id)
           WHERE a.version IS NULL OR od.version > a.version""")
    t["orders_foreign"] = expect_zero(
        "order rows that match no post (order_id, version, uid), or a newer acknowledged-as-lost post that was acked",
        """SELECT count(*) FROM od LEFT JOIN last_acked a USING (order_id) WHERE NOT EXISTS (
             SELECT 1 FROM log l WHERE l.source = 'orders' AND l.order_id = od.order_id
               AND l.version = od.version AND l.uid = od.uid
               AND (l.acked = 0 OR od.version = a.version))""")
    t["orders_corrupt"] = expect_zero(
        "order rows whose body does not match their uid",
        "SELECT count(*) FROM od WHERE note IS DISTINCT FROM 'u' || uid")
    t["events_files"] = one(f"SELECT count(*) FROM glob('{wh}/events/*.parquet')")
    t["orders_files"] = one(f"SELECT count(*) FROM glob('{wh}/orders/*.parquet')")
    return t


def check_samples(d, concurrency, violations):
    """RSS and descriptors per receiver lifetime: first/last/max, and a leak test: the median of
    a lifetime's last third must not exceed 1.5x its first third's (after 6 s) + 16 MiB."""
    lifetimes = {}
    for line in open(os.path.join(d, "samples.tsv")):
        t, lt, pid, rss, fds, spool = line.rstrip("\n").split("\t")
        lifetimes.setdefault(int(lt), []).append((float(t), int(rss) * 1024, int(fds), int(spool or 0)))
    out = []
    for lt, s in sorted(lifetimes.items()):
        rss = [x[1] for x in s]
        fds = [x[2] for x in s]
        row = {
            "lifetime": lt,
            "samples": len(s),
            "rss_mib_first_last_max": [round(rss[0] / MIB, 1), round(rss[-1] / MIB, 1), round(max(rss) / MIB, 1)],
            "fds_first_last_max": [fds[0], fds[-1], max(fds)],
            "spool_mib_max": round(max(x[3] for x in s) / MIB, 1),
        }
        warm = [x for x in s if x[0] - s[0][0] >= 6]
        if len(warm) >= 9:
            third = len(warm) // 3
            early = statistics.median(x[1] for x in warm[:third])
            late = statistics.median(x[1] for x in warm[-third:])
            row["rss_mib_early_late_median"] = [round(early / MIB, 1), round(late / MIB, 1)]
            if late > 1.5 * early + 16 * MIB:
                violations.append(f"receiver lifetime {lt}: RSS grew from {early / MIB:.0f} to {late / MIB:.0f} MiB")
        # Each connection holds one descriptor; the spool, its WAL, the listener, epoll and
        # the standard streams a few more.
        if max(fds) > concurrency + 64:
            violations.append(f"receiver lifetime {lt}: {max(fds)} open descriptors for {concurrency} connections")
        out.append(row)
    return out


def check_spool(d, violations):
    path = os.path.join(d, "spool.sqlite")
    con = sqlite3.connect(path)
    left = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    files = {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("spool.sqlite")}
    if left:
        violations.append(f"{left} messages left in the spool after the final drain and prune")
    return {
        "messages_left": left,
        "file_mib": round(pages / MIB, 1),
        "free_mib": round(free / MIB, 1),
        "files_bytes": files,
    }


def print_human(s):
    load, t = s["load"], s["tables"]
    print("\n== soak summary ==")
    if load:
        print(f"load: {load['deliveries_acked']} deliveries acked ({load['deliveries_acked_per_second']:.0f}/s), "
              f"{load['messages_acked']} messages ({load['messages_acked_per_second']:.0f}/s) over {load['seconds']:.0f} s; "
              f"{load['deliveries_given_up']} given up, {load['connection_errors']} connection errors, "
              f"{load['status_503']} 503s, {load['status_other']} other refusals, "
              f"{load['duplicate_replies']} duplicate replies ({load['resends_after_ack']} resends after an ack), "
              f"{load['gzip_deliveries']} gzip, {load['array_deliveries']} arrays")
    print(f"receiver SIGKILLed {s['kills']} times; scheduled runs: {s['runs']}")
    print(f"events: {t['events_rows']} rows, {t['events_acked']} acked, {t['events_unacked_stored']} of "
          f"{t['events_unacked_posted']} unacked stored; duplicated {t['events_duplicated']}, lost {t['events_lost']}, "
          f"foreign {t['events_foreign']}, corrupt {t['events_corrupt']}; {t['events_files']} files")
    print(f"orders: {t['orders_rows']} keys in the table, {t['orders_keys_acked']} acked keys from "
          f"{t['orders_posts_acked']} acked posts; duplicated {t['orders_duplicated_keys']}, lost {t['orders_keys_lost']}, "
          f"stale {t['orders_stale']}, latest is an unacked post {t['orders_latest_is_unacked_post']}, "
          f"foreign {t['orders_foreign']}, corrupt {t['orders_corrupt']}; {t['orders_files']} files")
    for r in s["receiver"]:
        print(f"receiver lifetime {r['lifetime']:>2}: {r['samples']:>3} samples, RSS MiB first/last/max "
              f"{r['rss_mib_first_last_max']}, early/late median {r.get('rss_mib_early_late_median')}, "
              f"fds first/last/max {r['fds_first_last_max']}, spool max {r['spool_mib_max']} MiB")
    print(f"spool after the final drain: {s['spool']}")
    if s["violations"]:
        print("VIOLATIONS:")
        for v in s["violations"]:
            print(f"  - {v}")
    else:
        print("no violations")


if __name__ == "__main__":
    main()
