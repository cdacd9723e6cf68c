//! A following run in process (`tap::run_until` with `follow`): commits made by another
//! connection while it waits are emitted in order, a new field gets a SCHEMA before its record,
//! a STATE follows by time, and the stop flag (what SIGTERM sets) ends it with a final STATE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use tap_webhook::settings::Settings;

/// The run's output as it is written, shared with the test thread.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn insert(conn: &rusqlite::Connection, seq: i64, body: &str) {
    conn.execute(
        "INSERT INTO messages (seq, id, source, received_at, part, headers, query, body)
         VALUES (?1, ?2, 'data', ?1, 0, '{}', '{}', ?3)",
        rusqlite::params![seq, format!("m{seq}"), body],
    )
    .unwrap();
}

fn seqs(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .filter(|l| l["type"] == "RECORD")
        .map(|l| l["record"]["_sdc_sequence"].as_i64().unwrap())
        .collect()
}

/// Waits (bounded) until the output holds the record of sequence `seq`.
fn wait_for(out: &Shared, seq: i64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = out.lines();
        if seqs(&lines).contains(&seq) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "seq {seq} never emitted: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_follower_emits_later_commits_in_order_types_new_fields_and_stops_with_a_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let conn = tap_webhook::spool::open(&path).unwrap();
    for seq in 1..=3 {
        insert(&conn, seq, &format!(r#"{{"i":{seq}}}"#));
    }
    let Value::Object(map) = json!({"spool_path": path.display().to_string(),
                                    "follow": true, "state_interval_seconds": 0.05})
    else {
        unreachable!()
    };
    let settings = Settings::from_map(map).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let out = Shared::default();
    let runner = {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::spawn(move || tap_webhook::tap::run_until(&settings, None, None, out, &stop))
    };
    // The backlog, then commits by another connection while the run follows.
    wait_for(&out, 3);
    for seq in 4..=6 {
        insert(&conn, seq, &format!(r#"{{"i":{seq}}}"#));
    }
    wait_for(&out, 6);
    insert(&conn, 7, r#"{"i":7,"late":"new field"}"#);
    wait_for(&out, 7);
    // A STATE follows the records without waiting for more (state_interval_seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = out.lines();
        if l.last().is_some_and(|l| l["type"] == "STATE") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no STATE after the records: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let summary = runner.join().unwrap().unwrap();
    assert_eq!(summary.records["data"], 7);
    let all = out.lines();
    assert_eq!(seqs(&all), (1..=7).collect::<Vec<_>>());
    // The new field got a SCHEMA holding it before its record.
    let at = all
        .iter()
        .position(|l| l["record"]["_sdc_sequence"] == 7)
        .unwrap();
    let schema = all[..at]
        .iter()
        .rev()
        .find(|l| l["type"] == "SCHEMA")
        .unwrap();
    assert!(
        schema["schema"]["properties"].get("late").is_some(),
        "{schema}"
    );
    // Every STATE covers exactly the records before it; the last one all seven.
    let mut last = 0;
    for l in &all {
        match l["type"].as_str().unwrap() {
            "RECORD" => last = l["record"]["_sdc_sequence"].as_i64().unwrap(),
            "STATE" => assert_eq!(
                l["value"]["bookmarks"]["data"]["replication_key_value"], last,
                "{l}"
            ),
            _ => {}
        }
    }
    assert_eq!(all.last().unwrap()["type"], "STATE");
    assert_eq!(last, 7);
}

#[test]
fn a_spool_replaced_under_a_follower_fails_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let conn = tap_webhook::spool::open(&path).unwrap();
    insert(&conn, 1, r#"{"i":1}"#);
    drop(conn);
    let Value::Object(map) = json!({"spool_path": path.display().to_string(), "follow": true})
    else {
        unreachable!()
    };
    let settings = Settings::from_map(map).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let out = Shared::default();
    let runner = {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::spawn(move || tap_webhook::tap::run_until(&settings, None, None, out, &stop))
    };
    wait_for(&out, 1);
    // A restore puts another file at the path (a new inode), with a message of its own.
    let other = dir.path().join("restored.sqlite");
    let restored = tap_webhook::spool::open(&other).unwrap();
    insert(&restored, 2, r#"{"i":2}"#);
    drop(restored);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::rename(&other, &path).unwrap();
    // Bounded: should the check never fire, the stop ends the run and the assertion fails.
    let watchdog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let e = runner.join().unwrap().unwrap_err().to_string();
    assert!(
        e.contains("was removed or replaced while the tap was following it")
            && e.contains(&path.display().to_string()),
        "{e}"
    );
    assert_eq!(
        seqs(&out.lines()),
        [1],
        "nothing of the other file was emitted"
    );
    drop(watchdog);
}
