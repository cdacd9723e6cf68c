//! `tap-webhook --follow | target-warehouse` under a steady stream of deliveries: SIGKILLed
//! mid-stream and restarted with the last state it printed, then stopped by SIGTERM (both
//! processes, as a service manager does), it ends with every acknowledged delivery in the table
//! exactly once (read by DuckDB and deltalake).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{peers, read_table, run_ok, tap_bin, target_bin, Receiver};

/// A running `tap-webhook --follow | target-warehouse`, and the state lines the target printed.
struct Pipeline {
    tap: Child,
    target: Child,
    states: Arc<Mutex<Vec<String>>>,
}

impl Pipeline {
    fn start(tap_config: &Path, target_config: &Path, state: Option<&Path>) -> Pipeline {
        let mut tap = Command::new(tap_bin());
        tap.args(["--follow", "--config"]).arg(tap_config);
        if let Some(s) = state {
            tap.arg("--state").arg(s);
        }
        let mut tap = tap
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut target = Command::new(target_bin())
            .arg("--config")
            .arg(target_config)
            .stdin(tap.stdout.take().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let states = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(target.stdout.take().unwrap()).lines();
        let theirs = states.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                theirs.lock().unwrap().push(line);
            }
        });
        Pipeline {
            tap,
            target,
            states,
        }
    }

    fn states(&self) -> Vec<String> {
        self.states.lock().unwrap().clone()
    }

    /// Waits (bounded) until the target has printed a state that `ok` accepts.
    fn wait_for_state(&self, what: &str, ok: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ok(&self.states()) {
            assert!(
                Instant::now() < deadline,
                "no state {what}: {:?}",
                self.states()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

struct EndPosting<'a>(&'a AtomicBool);

impl Drop for EndPosting<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn bookmark(state: &str) -> i64 {
    let v: Value = serde_json::from_str(state).unwrap();
    v["bookmarks"]["data"]["replication_key_value"]
        .as_i64()
        .unwrap()
}

/// The spool's high-water mark, as `tap-webhook --test` reports it.
fn high_water_mark(tap_config: &Path) -> i64 {
    let out = Command::new(tap_bin())
        .args(["--test", "--config"])
        .arg(tap_config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    stderr
        .split("high_water_mark=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no high_water_mark in {stderr}"))
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn a_follow_pipeline_killed_mid_stream_and_restarted_from_its_state_loads_each_delivery_once() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = dir.path().join("tap.json");
    let target_config = dir.path().join("target.json");
    std::fs::write(
        &tap_config,
        json!({"spool_path": dir.path().join("spool.sqlite"), "listen_address": "127.0.0.1:0",
               "state_interval_seconds": 0.2})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        &target_config,
        json!({"warehouse_path": dir.path().join("warehouse"), "max_batch_age_seconds": 0.2})
            .to_string(),
    )
    .unwrap();
    let receiver = Receiver::start(&tap_config);
    let killed = AtomicBool::new(false);
    let posted = std::thread::scope(|s| {
        // Posts until 300 deliveries after the kill; every one must be acknowledged.
        let poster = s.spawn(|| {
            let (mut i, mut after_kill) = (0_u64, 0);
            while after_kill < 300 {
                i += 1;
                let status = receiver.post("data", &json!({ "i": i }).to_string(), &[]);
                assert_eq!(status, 200, "delivery {i}");
                if killed.load(Ordering::Relaxed) {
                    after_kill += 1;
                }
            }
            i
        });
        // Should this thread panic, the poster still ends (300 deliveries later).
        let _end_posting = EndPosting(&killed);
        let first = Pipeline::start(&tap_config, &target_config, None);
        first.wait_for_state("from the first pipeline (two commits)", |s| s.len() >= 2);
        // SIGKILL mid-stream: the target first, so it cannot finish on the tap's end of output.
        let (mut tap, mut target) = (first.tap, first.target);
        target.kill().unwrap();
        tap.kill().unwrap();
        target.wait().unwrap();
        tap.wait().unwrap();
        killed.store(true, Ordering::Relaxed);
        let state_file = dir.path().join("state.json");
        let last = first.states.lock().unwrap().last().cloned().unwrap();
        std::fs::write(&state_file, format!("{last}\n")).unwrap();

        let second = Pipeline::start(&tap_config, &target_config, Some(&state_file));
        let posted = poster.join().unwrap();
        let mark = high_water_mark(&tap_config);
        second.wait_for_state("covering the last delivery", |s| {
            s.last().is_some_and(|l| bookmark(l) >= mark)
        });
        // SIGTERM to both, as a stopping service sends it: the following run ends with a final
        // STATE and exit 0; the target goes on to its end of input, commits, exits 0.
        let mut second = second;
        let pids = [second.target.id(), second.tap.id()].map(|p| p.to_string());
        run_ok(Command::new("kill").arg("-TERM").args(pids));
        let tap_status = second.tap.wait().unwrap();
        let target_status = second.target.wait().unwrap();
        assert!(tap_status.success(), "tap after SIGTERM: {tap_status}");
        assert!(target_status.success(), "target: {target_status}");
        assert_eq!(bookmark(second.states().last().unwrap()), mark);
        posted
    });

    let table = read_table(&peers, &dir.path().join("warehouse/data"));
    let mut seen: Vec<u64> = table["duckdb"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["i"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen.len() as u64,
        posted,
        "one row per acknowledged delivery"
    );
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=posted).collect::<Vec<_>>(), "each delivery once");
    assert_eq!(table["deltalake"]["count"], posted);
}
