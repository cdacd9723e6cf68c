//! Starting the real binary on port 0 and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tap-webhook");

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Every line the server wrote on stderr after "listening on".
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Writes `config` (plus a spool path and port 0) into `dir` and returns the config file.
pub fn write_config(dir: &Path, mut config: Value) -> PathBuf {
    let spool = dir.join("spool.sqlite");
    config["spool_path"] = Value::String(spool.display().to_string());
    config["listen_address"] = "127.0.0.1:0".into();
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

impl Server {
    pub fn start(config: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tap-webhook serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs the tap; returns its stdout lines parsed.
pub fn run_tap(config: &Path, extra: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

pub fn records<'a>(lines: &'a [Value], stream: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|m| m["type"] == "RECORD" && m["stream"] == stream)
        .map(|m| &m["record"])
        .collect()
}

pub fn last_state(lines: &[Value]) -> Option<Value> {
    lines
        .iter()
        .rev()
        .find(|m| m["type"] == "STATE")
        .map(|m| m["value"].clone())
}
