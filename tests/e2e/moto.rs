//! A local S3/SQS server for the tests that need AWS (`moto_server` from the test virtualenv)
//! and `tests/python/aws_peer.py`, the Python side that creates, puts and reads there.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{repo_root, run_ok};

/// Credentials for moto, given to every process (the binaries read the standard AWS chain).
pub const AWS_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
];

/// `moto_server` on a free loopback port; killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    python: String,
}

impl Moto {
    pub fn start(peers: &BTreeMap<String, String>) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&peers["MOTO_SERVER"])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            python: peers["VENV_PYTHON"].clone(),
        }
    }

    /// Runs `tests/python/aws_peer.py ENDPOINT args…`; returns its stdout, trimmed.
    pub fn peer(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(&self.python)
                .arg(repo_root().join("tests/python/aws_peer.py"))
                .arg(&self.endpoint)
                .args(args)
                .envs(AWS_ENV),
        )
        .trim()
        .to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
