//! The README's quick start, run as written: every fenced block after a `<!-- quickstart -->`
//! marker, in order, as one bash script in a scratch directory, with the workspace's binaries
//! on PATH and the test virtualenv as `.venv` (the README's reader). The receiver runs in the
//! background, two deliveries are posted, the drain runs twice (first run from an empty state
//! file, second from the appended one), and DuckDB reads the tables; any failing command fails
//! the test. Then the tables are checked against what the README says they hold.
//!
//! The only change made to the text: port 8080 becomes a free one (other tests run alongside).

use std::path::Path;
use std::process::Command;

use crate::harness::{bin_dir, peers, read_table, repo_root};

/// The quick start's shell blocks, in order. A marker not followed by a fenced block fails:
/// a block that silently stopped being run would be a README that can drift again.
fn quickstart_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    for (i, part) in readme.split("<!-- quickstart -->").enumerate().skip(1) {
        let rest = part.trim_start();
        let body = rest
            .strip_prefix("```sh\n")
            .unwrap_or_else(|| panic!("quickstart marker {i} is not followed by a ```sh block"));
        let end = body
            .find("\n```")
            .unwrap_or_else(|| panic!("quickstart block {i} is not closed"));
        blocks.push(body[..end].to_owned());
    }
    blocks
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn readme_quick_start_runs_as_written() {
    let peers = peers();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks = quickstart_blocks(&readme);
    let all = blocks.join("\n");
    for step in [
        "tap-webhook serve",
        "touch state.json",
        ">> state.json",
        "show_table.py",
    ] {
        assert!(all.contains(step), "the quick start lost its `{step}` step");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::os::unix::fs::symlink(repo_root().join("scripts"), d.join("scripts")).unwrap();
    std::os::unix::fs::symlink(&peers["PY_VENV"], d.join(".venv")).unwrap();
    let script = format!(
        "set -euo pipefail\n\
         # a failing block must not leave the receiver running\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         {all}\n"
    )
    .replace("8080", &free_port().to_string());
    std::fs::write(d.join("quickstart.sh"), &script).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-x", "quickstart.sh"])
        .current_dir(d)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let serve_log = std::fs::read_to_string(d.join("serve.log")).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README's quick start failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- serve.log\n{serve_log}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
    );
    check_outcome(d, &peers, &stdout, &serve_log);
}

/// What the README says the quick start leaves behind.
fn check_outcome(
    d: &Path,
    peers: &std::collections::BTreeMap<String, String>,
    stdout: &str,
    serve_log: &str,
) {
    // Two runs appended their states; each line is a state with the bookmark of `orders`.
    let states = std::fs::read_to_string(d.join("state.json")).unwrap();
    let lines: Vec<serde_json::Value> = states
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "one state a run at least: {states}");
    let mark = |v: &serde_json::Value| {
        v["bookmarks"]["orders"]["replication_key_value"]
            .as_i64()
            .unwrap_or_else(|| panic!("no orders bookmark: {v}"))
    };
    assert!(
        mark(&lines[lines.len() - 1]) > mark(&lines[0]),
        "the second run moved the bookmark on: {states}"
    );
    // `orders` is upserted: one row for A-1, its latest status; `github` two rows.
    let orders = read_table(peers, &d.join("warehouse/orders"));
    let rows = orders["duckdb"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{orders}");
    assert_eq!(
        (rows[0]["order_id"].as_str(), rows[0]["status"].as_str()),
        (Some("A-1"), Some("refunded"))
    );
    let github = read_table(peers, &d.join("warehouse/github"));
    assert_eq!(github["duckdb"]["count"], 2, "{github}");
    assert!(
        stdout.contains("refunded") && stdout.contains("closed"),
        "show_table.py printed the tables: {stdout}"
    );
    // The receiver said where each source is, and logged every delivery.
    assert!(
        serve_log.contains("/webhooks/orders") && serve_log.contains("/webhooks/github"),
        "{serve_log}"
    );
    assert_eq!(
        serve_log.matches("delivery stored").count(),
        3,
        "{serve_log}"
    );
}
