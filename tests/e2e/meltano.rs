//! `meltano run tap-webhook target-warehouse` with the repository's own meltano.yml, twice,
//! deliveries posted in between: Meltano's saved state carries over and each delivery lands once.
//! The plugins take the route meltano.yml documents for cargo builders (`executable: bin/…`, the
//! wrappers running the workspace build); `install::wheels_install_with_meltano_pip_url_…` takes
//! its `pip_url` route.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::harness::{bin_dir, peers, read_table, repo_root, run_ok, Receiver};

fn meltano(
    peers: &std::collections::BTreeMap<String, String>,
    project: &Path,
    args: &[&str],
) -> String {
    run_ok(
        Command::new(&peers["MELTANO"])
            .current_dir(project)
            .args(["--log-level=warning"])
            .args(args)
            .env("WEBHOOK_WAREHOUSE_BIN_DIR", bin_dir())
            .env("TAP_WEBHOOK_SPOOL_PATH", project.join("spool.sqlite"))
            .env("TARGET_WAREHOUSE_WAREHOUSE_PATH", project.join("warehouse"))
            .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("MELTANO_CLI_DISABLE_VERSION_CHECK", "true")
            .env("NO_COLOR", "1"),
    )
}

/// A temp Meltano project: the repository's meltano.yml with `extra_dev_config` (YAML under
/// the `dev` environment's tap-webhook config, indented to fit) and the plugins on `bin/`.
fn project(p: &Path, extra_dev_config: &str) {
    let mut yml = std::fs::read_to_string(repo_root().join("meltano.yml")).unwrap();
    for b in ["tap-webhook", "target-warehouse"] {
        let pip_url = format!("pip_url: ./{b}\n");
        assert!(yml.contains(&pip_url), "meltano.yml has `{pip_url}`");
        yml = yml.replace(&pip_url, &format!("executable: bin/{b}\n"));
    }
    if !extra_dev_config.is_empty() {
        let dev = "environments:\n- name: dev\n";
        assert!(yml.contains(dev), "meltano.yml has a dev environment");
        let config = format!(
            "{dev}  config:\n    plugins:\n      extractors:\n      - name: tap-webhook\n        config:\n{extra_dev_config}"
        );
        yml = yml.replacen(dev, &config, 1);
    }
    std::fs::write(p.join("meltano.yml"), yml).unwrap();
    std::fs::create_dir(p.join("bin")).unwrap();
    for b in ["tap-webhook", "target-warehouse"] {
        std::fs::copy(repo_root().join("bin").join(b), p.join("bin").join(b)).unwrap();
    }
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn meltano_invoke_serve_takes_sources_written_in_meltano_yml() {
    let peers = peers();
    let project_dir = tempfile::tempdir().unwrap();
    let p = project_dir.path();
    // Object settings as a user writes them in meltano.yml: Meltano hands them to `serve
    // --config ENV` as dotted keys plus one variable per leaf.
    project(
        p,
        "          sources:\n            orders:\n              primary_key: order_id\n              api_keys: [key-one-aaaa, key-two-bbbb]\n            gh: {}\n          queue:\n            backend: spool\n",
    );
    let receiver = Receiver::start_launched(
        Command::new(&peers["MELTANO"])
            .current_dir(p)
            // info: Meltano passes the plugin's stderr (`listening on …`) on at that level.
            .args(["--log-level=info", "invoke", "tap-webhook:serve"])
            .env("WEBHOOK_WAREHOUSE_BIN_DIR", bin_dir())
            .env("TAP_WEBHOOK_SPOOL_PATH", p.join("spool.sqlite"))
            .env("TAP_WEBHOOK_LISTEN_ADDRESS", "127.0.0.1:0")
            .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("MELTANO_CLI_DISABLE_VERSION_CHECK", "true")
            .env("NO_COLOR", "1"),
    );
    let key = [("x-api-key", "key-two-bbbb")];
    assert_eq!(receiver.post("orders", r#"{"order_id":1}"#, &key), 200);
    // The nested settings took effect: the key is required, and only configured sources exist.
    assert_eq!(receiver.post("orders", r#"{"order_id":2}"#, &[]), 401);
    assert_eq!(receiver.post("gh", r#"{"a":1}"#, &[]), 200);
    assert_eq!(receiver.post("data", r#"{"a":1}"#, &[]), 404);
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn meltano_runs_twice_and_state_carries_over() {
    let peers = peers();
    let project_dir = tempfile::tempdir().unwrap();
    let p = project_dir.path();
    project(p, "");
    let config = p.join("receiver.json");
    std::fs::write(
        &config,
        json!({"spool_path": p.join("spool.sqlite"), "listen_address": "127.0.0.1:0"}).to_string(),
    )
    .unwrap();
    // The README's command to configure sources, with the pinned Meltano: the secret lands in
    // `.env` (which .gitignore covers), not in meltano.yml.
    meltano(
        &peers,
        p,
        &[
            "config",
            "set",
            "tap-webhook",
            "sources",
            r#"{"data": {"api_keys": ["change-me-please"]}}"#,
        ],
    );
    let env = std::fs::read_to_string(p.join(".env")).unwrap_or_default();
    assert!(
        env.contains("TAP_WEBHOOK_SOURCES") && env.contains("change-me-please"),
        ".env: {env}"
    );
    assert!(!std::fs::read_to_string(p.join("meltano.yml"))
        .unwrap()
        .contains("change-me-please"));
    let ignored = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["check-ignore", "-q", ".env"])
        .status()
        .unwrap();
    assert!(ignored.success(), ".gitignore covers .env");
    let receiver = Receiver::start(&config);
    for i in 0..3 {
        assert_eq!(
            receiver.post("data", &format!(r#"{{"run":1,"i":{i}}}"#), &[]),
            200
        );
    }
    meltano(&peers, p, &["run", "tap-webhook", "target-warehouse"]);
    let state = meltano(
        &peers,
        p,
        &["state", "get", "dev:tap-webhook-to-target-warehouse"],
    );
    assert!(
        state.contains("replication_key_value"),
        "Meltano saved the target's state: {state}"
    );
    let table = read_table(&peers, &p.join("warehouse/data"));
    assert_eq!(table["duckdb"]["count"], 3);

    for i in 3..5 {
        assert_eq!(
            receiver.post("data", &format!(r#"{{"run":2,"i":{i}}}"#), &[]),
            200
        );
    }
    meltano(&peers, p, &["run", "tap-webhook", "target-warehouse"]);
    let table = read_table(&peers, &p.join("warehouse/data"));
    let rows = table["duckdb"]["rows"].as_array().unwrap();
    let is: Vec<i64> = rows.iter().map(|r| r["i"].as_i64().unwrap()).collect();
    assert_eq!(is, vec![0, 1, 2, 3, 4], "each delivery exactly once");
    // The second run pruned the first run's messages: its state proved them committed.
    let left = run_ok(Command::new(&peers["VENV_PYTHON"]).args([
        "-c",
        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from messages').fetchone()[0])",
    ]).arg(p.join("spool.sqlite")));
    assert_eq!(left.trim(), "2");
}
