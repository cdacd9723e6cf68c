//! `deploy/`: the systemd units pass `systemd-analyze verify` and its security review, and they
//! run as written: the receiver's `ExecStart`, then the drain's (and the follow unit's)
//! `ExecStart` with its `Environment=` (scripts/cron-run.sh), their paths mapped into a temp
//! directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{bin_dir, repo_root, run_ok, tap_bin, Receiver};

const UNITS: [&str; 4] = [
    "tap-webhook-serve.service",
    "webhook-warehouse-drain.service",
    "webhook-warehouse-drain.timer",
    "webhook-warehouse-follow.service",
];

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// The `[Service]` settings of a unit: key → values in order (a key may repeat).
fn service_section(unit: &str) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(deploy_dir().join(unit)).unwrap();
    let mut section = String::new();
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                settings.entry(k.to_owned()).or_default().push(v.to_owned());
            }
        }
    }
    settings
}

/// Maps the paths the units name to where this test keeps them.
struct Paths {
    root: PathBuf,
}

impl Paths {
    fn map(&self, s: &str) -> String {
        s.replace("/usr/local/bin", &bin_dir().display().to_string())
            .replace("/opt/webhook-warehouse", &repo_root().display().to_string())
            .replace("/etc/", &format!("{}/etc/", self.root.display()))
            .replace("/var/lib/", &format!("{}/var/lib/", self.root.display()))
    }

    fn path(&self, s: &str) -> PathBuf {
        PathBuf::from(self.map(s))
    }
}

fn systemd_analyze() -> Command {
    let cmd = Command::new("systemd-analyze");
    if let Err(e) = Command::new("systemd-analyze").arg("--version").output() {
        panic!(
            "this test needs systemd-analyze ({e}): install Debian's `systemd` package \
             (bash tests/run.sh does)"
        );
    }
    cmd
}

#[test]
#[ignore = "needs systemd-analyze (bash tests/run.sh installs it)"]
fn units_pass_systemd_analyze_verify_and_its_security_review() {
    // verify checks that ExecStart's programs exist: point them at the built ones.
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        root: dir.path().to_path_buf(),
    };
    for unit in UNITS {
        let text = std::fs::read_to_string(deploy_dir().join(unit)).unwrap();
        std::fs::write(dir.path().join(unit), paths.map(&text)).unwrap();
    }
    let out = systemd_analyze()
        .current_dir(dir.path())
        .arg("verify")
        .args(UNITS.iter().map(|u| format!("./{u}")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings (exit 0): any output is a finding.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        out.status
    );
    for unit in UNITS.iter().filter(|u| u.ends_with(".service")) {
        // The exposure level runs from 0 (locked down) to 10, "OK" up to 2; the threshold is
        // given in tenths.
        run_ok(
            systemd_analyze()
                .current_dir(dir.path())
                .args(["security", "--offline=true", "--threshold=20"])
                .arg(format!("./{unit}")),
        );
    }
}

/// Sum of `numRecords` over the `add` actions of a Delta table's log.
fn records_in_log(table: &Path) -> u64 {
    let mut n = 0;
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let action: Value = serde_json::from_str(line).unwrap();
                if let Some(stats) = action["add"]["stats"].as_str() {
                    let stats: Value = serde_json::from_str(stats).unwrap();
                    n += stats["numRecords"].as_u64().unwrap();
                }
            }
        }
    }
    n
}

/// The state directory and the configs the README's service section shows (relative paths
/// land in the state directory), under `paths`; returns the state directory.
fn service_dirs(paths: &Paths, tap: Value) -> PathBuf {
    let state_dir = paths.path("/var/lib/webhook-warehouse");
    let etc = paths.path("/etc/webhook-warehouse");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("tap.json"), tap.to_string()).unwrap();
    std::fs::write(
        etc.join("target.json"),
        json!({"warehouse_path": "warehouse", "max_batch_age_seconds": 0.2}).to_string(),
    )
    .unwrap();
    state_dir
}

/// Waits (bounded) until the table's log holds `n` records.
fn wait_for_records(table: &Path, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let have = if table.join("_delta_log").is_dir() {
            records_in_log(table)
        } else {
            0
        };
        if have == n {
            return;
        }
        assert!(have < n, "{have} records, more than the {n} delivered");
        assert!(
            std::time::Instant::now() < deadline,
            "{have} of {n} records after 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_follow_unit_loads_deliveries_as_they_arrive_and_keeps_its_state_when_stopped() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        root: dir.path().to_path_buf(),
    };
    let unit = service_section("webhook-warehouse-follow.service");
    assert_eq!(
        unit["Restart"],
        ["always"],
        "a run ending at max_seconds restarts"
    );
    assert_eq!(
        unit["KillMode"],
        ["control-group"],
        "stop signals every process"
    );
    let state_dir = service_dirs(
        &paths,
        json!({"spool_path": "spool.sqlite", "listen_address": "127.0.0.1:0"}),
    );
    let receiver = Receiver::start_in(&paths.path("/etc/webhook-warehouse/tap.json"), &state_dir);
    let table = state_dir.join("warehouse/data");
    let state_file = paths.path(drain_env(&unit, "STATE_FILE"));
    // One run of the unit: started, fed, stopped as `systemctl stop` does (SIGTERM to the
    // whole group); it must exit 0 with the state kept.
    let run = |first: u64, last: u64| {
        let mut cmd = Command::new(paths.map(&unit["ExecStart"][0]));
        cmd.current_dir(&state_dir).process_group(0);
        for assignment in &unit["Environment"] {
            let (k, v) = assignment.split_once('=').unwrap();
            cmd.env(k, paths.map(v));
        }
        let mut child = cmd.spawn().unwrap();
        // Posted while the run is going: each one loaded without another run.
        for i in first..=last {
            assert_eq!(receiver.post("data", &format!(r#"{{"i":{i}}}"#), &[]), 200);
            wait_for_records(&table, i);
        }
        run_ok(Command::new("kill").args(["-TERM", "--", &format!("-{}", child.id())]));
        let status = child.wait().unwrap();
        assert!(status.success(), "the follow run after SIGTERM: {status}");
        let state = std::fs::read_to_string(&state_file).unwrap();
        assert!(state.contains("bookmarks"), "state kept: {state}");
    };
    run(1, 2);
    // The next run starts from the kept state: only the new delivery, once.
    run(3, 3);
    assert_eq!(records_in_log(&table), 3);
}

#[test]
fn the_units_run_as_written_receiver_then_drain_twice() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        root: dir.path().to_path_buf(),
    };
    let serve = service_section("tap-webhook-serve.service");
    let drain = service_section("webhook-warehouse-drain.service");
    for unit in [&serve, &drain] {
        assert_eq!(unit["StateDirectory"], ["webhook-warehouse"]);
        assert_eq!(unit["WorkingDirectory"], ["/var/lib/webhook-warehouse"]);
        assert_eq!(
            unit["User"],
            ["webhook-warehouse"],
            "one user shares the spool"
        );
    }
    let state_dir = paths.path("/var/lib/webhook-warehouse");
    let etc = paths.path("/etc/webhook-warehouse");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    // The configs the README's service section shows: relative paths land in the state directory.
    std::fs::write(
        etc.join("tap.json"),
        json!({"spool_path": "spool.sqlite", "listen_address": "127.0.0.1:0"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        etc.join("target.json"),
        json!({"warehouse_path": "warehouse"}).to_string(),
    )
    .unwrap();

    // The receiver's ExecStart is the harness's `tap-webhook serve --config FILE`, run in the
    // state directory.
    let exec: Vec<String> = serve["ExecStart"][0]
        .split_whitespace()
        .map(|a| paths.map(a))
        .collect();
    assert_eq!(
        exec,
        [
            tap_bin().display().to_string(),
            "serve".into(),
            "--config".into(),
            etc.join("tap.json").display().to_string()
        ]
    );
    let receiver = Receiver::start_in(&etc.join("tap.json"), &state_dir);

    let run_drain = || {
        let mut cmd = Command::new(paths.map(&drain["ExecStart"][0]));
        cmd.current_dir(&state_dir);
        for assignment in &drain["Environment"] {
            let (k, v) = assignment.split_once('=').unwrap();
            cmd.env(k, paths.map(v));
        }
        run_ok(&mut cmd);
    };
    for i in 0..2 {
        assert_eq!(receiver.post("data", &format!(r#"{{"i":{i}}}"#), &[]), 200);
    }
    run_drain();
    let state_file = paths.path(drain_env(&drain, "STATE_FILE"));
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        state.contains("bookmarks"),
        "state after the first run: {state}"
    );
    let table = state_dir.join("warehouse/data");
    assert_eq!(records_in_log(&table), 2);

    assert_eq!(receiver.post("data", r#"{"i":2}"#, &[]), 200);
    run_drain();
    assert_eq!(
        records_in_log(&table),
        3,
        "the second run loads only the new delivery"
    );
    assert!(
        state_dir.join("spool.sqlite").exists(),
        "the spool is in the state directory"
    );
}

fn drain_env<'a>(drain: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    drain["Environment"]
        .iter()
        .find_map(|a| a.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the drain unit sets {key}"))
}
