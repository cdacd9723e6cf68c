//! `serve`'s log lines under SIGTERM when stderr is read slowly (a pipe to a busy log shipper):
//! every line queued before the stop is written, the last one whole.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{write_config, BIN};

/// Found by attack (issue 23's review): the log thread's guard waited at most a second for its
/// queue at exit, so with stderr read slowly the lines still queued at SIGTERM were lost, and
/// the last one was cut in the middle. Lines are queued so that a delivery never waits for
/// stderr; at exit they must all be written, as when each request wrote its own.
#[test]
fn every_line_queued_before_sigterm_is_written_though_stderr_is_read_late() {
    const REFUSED: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({}));
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = Vec::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        first.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Nobody reads stderr meanwhile: the pipe fills, the rest waits in the log queue. Each
    // refusal (an unknown source) logs one line.
    let body = "{}";
    for n in 0..REFUSED {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let req = format!(
            "POST /webhooks/nosuch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let mut resp = String::new();
        BufReader::new(s).read_line(&mut resp).unwrap();
        assert!(resp.contains(" 404 "), "refusal {n}: {resp}");
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The log shipper catches up only later.
    std::thread::sleep(Duration::from_secs(3));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logged = rest.matches("delivery refused").count();
    assert_eq!(logged, REFUSED, "refusal lines written");
    let last = rest.lines().last().unwrap_or_default();
    assert!(
        rest.ends_with('\n') && last.contains("stopped"),
        "the last line is whole: {last:?}"
    );
}
