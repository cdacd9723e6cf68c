//! tap-webhook into MeltanoLabs target-postgres (an SDK target) and a real PostgreSQL: what a
//! user of another Singer target gets (README "What other Singer targets see").
//!
//! The cluster is a throwaway one, `initdb` + `pg_ctl` in a temp directory on a free port (as the
//! `postgres` user when the test runs as root: initdb refuses root). Debian's `postgresql`
//! package provides the binaries (`tests/run.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{peers, pipe_into, run_ok, tap_bin, write_tap_config, Receiver};

/// A PostgreSQL cluster for one test, stopped on drop.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_root: bool,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        let as_root = run_ok(Command::new("id").arg("-u")).trim() == "0";
        if as_root {
            run_ok(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Cluster {
            bin,
            data,
            port,
            as_root,
            _dir: dir,
        };
        run_ok(&mut c.command("initdb", &["-A", "trust", "-U", "postgres", "-E", "UTF8"]));
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            c.data.display()
        );
        let log = c.data.join("log.txt").display().to_string();
        run_ok(&mut c.command("pg_ctl", &["-w", "-l", &log, "-o", &opts, "start"]));
        c
    }

    /// A server binary run as the cluster's owner, `-D <data>` added.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.arg("-D").arg(&self.data).args(args);
        cmd
    }

    /// One query's rows, `|`-separated columns.
    fn query(&self, sql: &str) -> Vec<String> {
        let out = run_ok(
            Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-At"])
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ]),
        );
        out.lines().map(str::to_owned).collect()
    }

    fn one(&self, sql: &str) -> String {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0].clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl", &["-m", "immediate", "stop"])
            .output();
    }
}

/// The server binaries: on PATH, else Debian's versioned directory.
fn pg_bin() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !p.is_empty() {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
            return real.parent().unwrap().to_path_buf();
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect())
        .unwrap_or_default();
    found.retain(|b| b.join("initdb").exists());
    found.sort();
    found.pop().expect(
        "no PostgreSQL server binaries (initdb): apt-get install postgresql (tests/run.sh does)",
    )
}

fn messages(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn records(msgs: &[Value], stream: &str) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m["type"] == "RECORD" && m["stream"] == stream)
        .map(|m| m["record"].clone())
        .collect()
}

/// Runs the tap (from `state`, when given) into target-postgres; returns the tap's output, its
/// messages and the last state the target printed.
fn load(
    peers: &std::collections::BTreeMap<String, String>,
    dir: &Path,
    tap_config: &Path,
    target_config: &Path,
    state: Option<&Value>,
) -> (String, Vec<Value>, Value) {
    let mut tap = Command::new(tap_bin());
    tap.arg("--config").arg(tap_config);
    if let Some(s) = state {
        let p = dir.join("state.json");
        std::fs::write(&p, s.to_string()).unwrap();
        tap.arg("--state").arg(p);
    }
    let tap_out = run_ok(&mut tap);
    let target_out = pipe_into(
        Command::new(&peers["TARGET_POSTGRES"])
            .arg("--config")
            .arg(target_config),
        tap_out.as_bytes(),
    );
    let state = target_out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .expect("target-postgres printed a state");
    let msgs = messages(&tap_out);
    (tap_out, msgs, state)
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn tap_webhook_into_target_postgres_keys_rejects_big_integers_and_receipt_columns() {
    let peers = peers();
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(
        dir.path(),
        json!({"sources": {"orders": {"primary_key": "order_id"}, "events": {}}}),
    );
    let target_config = dir.path().join("target-postgres.json");
    std::fs::write(
        &target_config,
        json!({"host": "127.0.0.1", "port": pg.port, "user": "postgres", "password": "",
               "database": "postgres", "default_target_schema": "public"})
        .to_string(),
    )
    .unwrap();
    let receiver = Receiver::start(&tap_config);
    let huge = "123456789012345678901234567890";
    for body in [
        format!(r#"{{"order_id":1,"total":10,"big":{huge},"flex":1}}"#),
        r#"{"order_id":2,"total":2.5,"big":7,"flex":"text"}"#.to_owned(),
        // Stalled every SDK target before: an object as the key.
        r#"{"order_id":{"obj":2},"total":1}"#.to_owned(),
        r#"{"order_id":1,"total":11,"flex":{"now":"an object"}}"#.to_owned(),
    ] {
        assert_eq!(receiver.post("orders", &body, &[]), 200, "{body}");
    }
    for body in [r#"{"kind":"a"}"#, r#"{"kind":"b","n":1}"#] {
        assert_eq!(receiver.post("events", body, &[]), 200);
    }

    let (first_out, first, state) = load(&peers, dir.path(), &tap_config, &target_config, None);
    // Every valid record landed; orders are upserted on their key, latest version kept.
    assert_eq!(pg.one("SELECT count(*) FROM orders"), "2");
    assert_eq!(
        pg.one("SELECT total, big FROM orders WHERE order_id = 1"),
        "11|",
        "integer keys are numeric: `WHERE order_id = 1` works"
    );
    assert_eq!(pg.one("SELECT big FROM orders WHERE order_id = 2"), "7");
    assert_eq!(
        pg.one("SELECT data_type FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'order_id'"),
        "bigint"
    );
    assert_eq!(
        pg.one("SELECT string_agg(order_id::text, ',' ORDER BY order_id) FROM orders"),
        "1,2",
        "sorted as numbers"
    );
    assert_eq!(
        pg.one("SELECT data_type FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'big'"),
        "numeric"
    );
    // The field that changed type (integer, string, object) kept each value: target-postgres
    // makes the mix JSONB.
    assert_eq!(
        pg.query("SELECT flex FROM orders ORDER BY order_id"),
        vec![r#"{"now": "an object"}"#, r#""text""#]
    );
    // The object key is in the rejected stream, with its reason and raw payload.
    assert_eq!(
        pg.one("SELECT reason, payload FROM orders__rejected"),
        r#"primary key "order_id" is an object, which cannot be a key|{"order_id":{"obj":2},"total":1}"#
    );
    // The huge integer's first version was replaced by order 1's second (without one); it was
    // emitted exactly (order 3 below shows it landing).
    assert_eq!(records(&first, "orders").len(), 3);
    assert!(first_out.contains(&format!(r#""big":{huge}"#)));

    // Receipt time and sequence of each webhook, under the names the target keeps.
    let tap_events = records(&first, "events");
    let expected: Vec<String> = tap_events
        .iter()
        .map(|r| {
            let at = r["webhook_received_at"].as_str().unwrap();
            format!("{}|{}", r["webhook_sequence"], &at[..19])
        })
        .collect();
    let got = pg.query(
        "SELECT webhook_sequence, to_char(webhook_received_at, 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM events ORDER BY webhook_sequence",
    );
    assert_eq!(got, expected);
    assert_eq!(
        pg.one("SELECT count(DISTINCT __sdc_primary_key) FROM events"),
        "2",
        "unkeyed source: the generated key"
    );

    // Second run from the target's state: only the new deliveries.
    assert_eq!(
        receiver.post("orders", &format!(r#"{{"order_id":3,"big":{huge}}}"#), &[]),
        200
    );
    assert_eq!(receiver.post("events", r#"{"kind":"c"}"#, &[]), 200);
    let (_, second, _) = load(
        &peers,
        dir.path(),
        &tap_config,
        &target_config,
        Some(&state),
    );
    let kinds: Vec<usize> = ["orders", "events", "orders__rejected"]
        .iter()
        .map(|s| records(&second, s).len())
        .collect();
    assert_eq!(kinds, vec![1, 1, 0], "a second run adds only the new ones");
    assert_eq!(pg.one("SELECT count(*) FROM orders"), "3");
    assert_eq!(pg.one("SELECT big FROM orders WHERE order_id = 3"), huge);
    assert_eq!(pg.one("SELECT count(*) FROM events"), "3");
    assert_eq!(pg.one("SELECT count(*) FROM orders__rejected"), "1");
    // "Latest version per key" as README shows it.
    assert_eq!(
        pg.query("SELECT DISTINCT ON (order_id) order_id, total FROM orders ORDER BY order_id, webhook_sequence DESC"),
        vec!["1|11", "2|2.5", "3|"]
    );
}
