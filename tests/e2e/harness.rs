//! Locating the binaries and the Python peers; small process helpers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The directory holding the workspace's binaries (next to this test's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    for b in ["tap-webhook", "target-warehouse"] {
        assert!(
            dir.join(b).exists(),
            "{b} is not built in {}: run `cargo test --workspace` (tests/run.sh)",
            dir.display()
        );
    }
    dir
}

pub fn tap_bin() -> PathBuf {
    bin_dir().join("tap-webhook")
}

pub fn target_bin() -> PathBuf {
    bin_dir().join("target-warehouse")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The committed subset of `@octokit/webhooks-examples` (`tests/fixtures/github/`): (event,
/// payload) pairs, the event being what GitHub sends as `X-GitHub-Event`.
pub fn github_examples() -> Vec<(String, Value)> {
    std::fs::read_to_string(repo_root().join("tests/fixtures/github/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["event"].as_str().unwrap().to_owned(),
                v["payload"].clone(),
            )
        })
        .collect()
}

/// Paths of the Python peers (from `$WEBHOOK_TEST_VENV/paths.env`, default `<repo>/.venv`).
///
/// A test that calls this is `#[ignore = "needs the Python peers (bash tests/run.sh)"]`, so a
/// bare `cargo test` reports it ignored; `tests/run.sh` installs the peers and runs it with
/// `--include-ignored`. Run without them, it fails saying how to get them: it never passes
/// without having tested anything.
pub fn peers() -> BTreeMap<String, String> {
    let venv = std::env::var("WEBHOOK_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv"));
    let env_file = venv.join("paths.env");
    match std::fs::read_to_string(&env_file) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(e) => panic!(
            "this test needs the Python peers, but {} cannot be read ({e}): run `bash tests/run.sh`, \
             or `bash tests/python/setup.sh DIR` and set WEBHOOK_TEST_VENV=DIR",
            env_file.display()
        ),
    }
}

/// Writes `dir/tap.json`: a spool in `dir` and a free port, and `settings`' keys (which win).
pub fn write_tap_config(dir: &Path, settings: Value) -> PathBuf {
    let mut config =
        json!({"spool_path": dir.join("spool.sqlite"), "listen_address": "127.0.0.1:0"});
    merge_into(&mut config, settings);
    let path = dir.join("tap.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Writes `dir/target.json`: a warehouse at `dir/wh`, and `settings`' keys (which win); returns
/// the config's path and the warehouse's.
pub fn write_target_config(dir: &Path, settings: Value) -> (PathBuf, PathBuf) {
    let mut config = json!({"warehouse_path": dir.join("wh")});
    merge_into(&mut config, settings);
    let warehouse = PathBuf::from(config["warehouse_path"].as_str().unwrap());
    let path = dir.join("target.json");
    std::fs::write(&path, config.to_string()).unwrap();
    (path, warehouse)
}

fn merge_into(config: &mut Value, settings: Value) {
    let Value::Object(settings) = settings else {
        panic!("settings must be an object: {settings}")
    };
    config.as_object_mut().unwrap().extend(settings);
}

/// Runs a command to completion, asserting success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd` with `input` on its stdin; asserts success; returns stdout.
pub fn pipe_into(cmd: &mut Command, input: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Reads a Delta table back with DuckDB and Python deltalake (tests/python/read_table.py).
pub fn read_table(peers: &BTreeMap<String, String>, table: &Path) -> Value {
    let out = run_ok(
        Command::new(&peers["VENV_PYTHON"])
            .arg(repo_root().join("tests/python/read_table.py"))
            .arg(table),
    );
    serde_json::from_str(&out).unwrap()
}

/// `tap-webhook serve` on port 0 as a child process.
pub struct Receiver {
    child: Child,
    pub base: String,
    /// Started through a launcher (`meltano invoke`) in its own process group: the whole group
    /// is stopped, not only the launcher.
    group: bool,
}

impl Receiver {
    pub fn start(config: &Path) -> Receiver {
        Receiver::start_with_env(config, &[])
    }

    /// [`start`](Self::start) with extra environment variables (AWS credentials for the SQS
    /// backend).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Receiver {
        Receiver::spawn(Command::new(tap_bin()).envs(env.iter().copied()), config)
    }

    /// [`start`](Self::start) in a working directory (relative paths in the config are taken
    /// from there, as under systemd's `WorkingDirectory=`).
    pub fn start_in(config: &Path, dir: &Path) -> Receiver {
        Receiver::spawn(Command::new(tap_bin()).current_dir(dir), config)
    }

    /// A receiver started by a launcher (`meltano invoke tap-webhook:serve`), in a process
    /// group of its own; ready once `listening on` reaches its stderr.
    pub fn start_launched(cmd: &mut Command) -> Receiver {
        use std::os::unix::process::CommandExt;
        let mut r = Receiver::spawn_ready(cmd.process_group(0));
        r.group = true;
        r
    }

    fn spawn(cmd: &mut Command, config: &Path) -> Receiver {
        Receiver::spawn_ready(cmd.args(["serve", "--config"]).arg(config))
    }

    /// A receiver with its admin page on: the receiver and the admin page's base URL (from the
    /// log line naming it, which follows `listening on`).
    pub fn start_with_admin(cmd: &mut Command) -> (Receiver, String) {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = lines
                .next()
                .expect("receiver exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                addr = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(rest) = line.split("admin status page on ").nth(1) {
                admin = rest.split("/admin").next().map(str::to_owned);
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let r = Receiver {
            child,
            base: format!("http://{}", addr.unwrap_or_default()),
            group: false,
        };
        (r, admin.unwrap_or_default())
    }

    fn spawn_ready(cmd: &mut Command) -> Receiver {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("receiver exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Receiver {
            child,
            base: format!("http://{addr}"),
            group: false,
        }
    }

    /// POSTs a body with raw HTTP/1.1 over a socket; returns the status.
    pub fn post(&self, source: &str, body: &str, headers: &[(&str, &str)]) -> u16 {
        self.request("POST", &format!("/webhooks/{source}"), body, headers)
    }

    /// GETs `/webhooks/<source>?<query>` (the query already encoded); returns the status.
    pub fn get(&self, source: &str, query: &str) -> u16 {
        self.request("GET", &format!("/webhooks/{source}?{query}"), "", &[])
    }

    fn request(&self, method: &str, target: &str, body: &str, headers: &[(&str, &str)]) -> u16 {
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        BufReader::new(s).read_line(&mut resp).unwrap();
        resp.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
