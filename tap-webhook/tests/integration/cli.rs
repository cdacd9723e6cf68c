//! The binary as a newcomer meets it: a first run and every later one with the same `--state`
//! file (the target's whole output appended), the refusals that stop a silent no-op (a state
//! file or a spool that does not exist), and failures printed once, with the setting to fix.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::{client, last_state, records, write_config, Server, BIN};

fn tap(config: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The failure line, asserting it is the only `error` line on stderr.
fn the_error(out: &Output) -> String {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "printed once: {stderr}");
    let line = errors[0];
    assert!(line.starts_with("tap-webhook: error: "), "{line}");
    line.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_state_file_serves_the_first_and_every_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({}));
    let state = dir.path().join("state.json");
    let s = state.display().to_string();

    // No spool yet: refused (naming it), and not created.
    let spool = dir.path().join("spool.sqlite");
    for extra in [&[][..], &["--test"]] {
        std::fs::write(&state, "").unwrap();
        let mut args = extra.to_vec();
        if extra.is_empty() {
            args.extend(["--state", &s]);
        }
        let e = the_error(&tap(&config, &args));
        assert!(
            e.contains(&format!("spool {} does not exist", spool.display()))
                && e.contains("start `tap-webhook serve` first"),
            "{args:?}: {e}"
        );
        assert!(!spool.exists(), "{args:?} created the spool");
    }
    // Discovery (Meltano runs it before `meltano invoke tap-webhook:serve` creates the spool):
    // the settings' catalog, a warning naming the spool, and still no spool.
    let out = tap(&config, &["--discover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(catalog["streams"][0]["tap_stream_id"], "data");
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("spool {} does not exist", spool.display())));
    assert!(!spool.exists(), "--discover created the spool");
    // A state file that does not exist: refused with the hint for a first run.
    let e = the_error(&tap(&config, &["--state", "nope.json"]));
    assert!(e.contains("touch nope.json"), "{e}");

    let server = Server::start(&config);
    let post = |body: &'static str| {
        let url = server.url("/webhooks/data");
        async move {
            let r = client().post(url).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    post(r#"{"n":1}"#).await;
    post(r#"{"n":2}"#).await;

    // First run: the empty file is no state. Append the states as the target would print them.
    std::fs::write(&state, "").unwrap();
    let first = tap(&config, &["--state", &s]);
    assert!(first.status.success());
    let lines = stdout_lines(&first);
    assert_eq!(records(&lines, "data").len(), 2);
    let mut appended = String::new();
    for v in lines.iter().filter(|m| m["type"] == "STATE") {
        appended.push_str(&format!("{}\n", v["value"]));
    }
    // An older state first: the last line must be the one used.
    let older = json!({"bookmarks": {"data": {"replication_key": "_sdc_sequence", "replication_key_value": 0}}});
    std::fs::write(&state, format!("{older}\n{appended}")).unwrap();

    post(r#"{"n":3}"#).await;
    let second = tap(&config, &["--state", &s]);
    assert!(second.status.success());
    let lines = stdout_lines(&second);
    let got: Vec<&Value> = records(&lines, "data").iter().map(|r| &r["n"]).collect();
    assert_eq!(got, [&json!(3)], "only what came after the last state");
    assert!(last_state(&lines).is_some());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("using the last"), "{stderr}");
}

#[test]
fn failures_are_printed_once_and_name_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    // A missing config: the OS error once, not repeated as a cause.
    let e = the_error(&tap(&dir.path().join("nope.json"), &["--test"]));
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");

    // A mistyped setting and an enum value: the fix is in the message.
    let config = dir.path().join("c.json");
    std::fs::write(&config, r#"{"listen_adress": "127.0.0.1:0"}"#).unwrap();
    let e = the_error(&tap(&config, &["--test"]));
    assert!(e.contains("did you mean `listen_address`?"), "{e}");
    std::fs::write(
        &config,
        r#"{"sources": {"gl": {"signature": {"scheme": "gitlab", "secrets": ["s"]}}}}"#,
    )
    .unwrap();
    let e = the_error(&tap(&config, &["--test"]));
    assert!(
        e.contains("sources.gl.signature.scheme") && e.contains(r#""github", "shopify", "hmac""#),
        "{e}"
    );

    // A port in use names the setting and the address.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    std::fs::write(
        &config,
        json!({"listen_address": addr, "spool_path": dir.path().join("s.sqlite")}).to_string(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let e = the_error(&out);
    assert!(
        e.contains(&format!("cannot listen on {addr} (setting listen_address)"))
            && e.contains("another process holds that port"),
        "{e}"
    );
    assert!(
        !dir.path().join("s.sqlite").exists(),
        "a failed start leaves no spool"
    );
}
