//! `scripts/cron-run.sh` as the README's cron section runs it: from the directory holding the
//! configs it drains and keeps the state; started from another directory, with a config whose
//! relative `spool_path` resolves to nothing there, it fails naming the absolute path, and
//! creates no spool and no state.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::harness::{repo_root, tap_bin, target_bin, Receiver};

fn cron_run(dir: &Path, tap_config: &Path, target_config: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/cron-run.sh"))
        .current_dir(dir)
        .env("TAP_CONFIG", tap_config)
        .env("TARGET_CONFIG", target_config)
        .env("TAP_WEBHOOK", tap_bin())
        .env("TARGET_WAREHOUSE", target_bin())
        .output()
        .unwrap()
}

#[test]
fn cron_run_refuses_a_spool_path_that_resolves_to_nothing_and_drains_from_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let srv = root.path().join("srv");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let tap = srv.join("tap.json");
    let target = srv.join("target.json");
    std::fs::write(
        &tap,
        json!({"spool_path": "spool.sqlite", "listen_address": "127.0.0.1:0"}).to_string(),
    )
    .unwrap();
    std::fs::write(&target, json!({"warehouse_path": "warehouse"}).to_string()).unwrap();
    let receiver = Receiver::start_in(&tap, &srv);
    assert_eq!(receiver.post("data", r#"{"i":1}"#, &[]), 200);

    // From the wrong directory: refused, naming where it looked, and nothing created there.
    let out = cron_run(&elsewhere, &tap, &target);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let looked = elsewhere.join("spool.sqlite");
    assert!(
        stderr.contains(&format!("spool {} does not exist", looked.display()))
            && stderr.contains("start `tap-webhook serve` first"),
        "{stderr}"
    );
    assert!(!looked.exists(), "no new spool was created");
    assert!(!elsewhere.join("state/state.json").exists(), "{stderr}");

    // From the configs' directory (the crontab line's `cd`): drains, twice, keeping the state.
    for i in 0..2 {
        let out = cron_run(&srv, &tap, &target);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {i}: {stderr}");
        assert!(stderr.contains("run ok; state: {"), "run {i}: {stderr}");
        assert_eq!(receiver.post("data", r#"{"i":2}"#, &[]), 200);
    }
    let state = std::fs::read_to_string(srv.join("state/state.json")).unwrap();
    assert_eq!(state.lines().count(), 1, "the last state only: {state}");
    assert!(srv.join("warehouse/data/_delta_log").is_dir());
}
