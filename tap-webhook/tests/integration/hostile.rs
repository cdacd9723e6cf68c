//! Hostile input over raw sockets: malformed framing, oversize heads, slow clients, too many
//! connections, hostile bodies. After every case the server still answers /healthz and nothing
//! was stored.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tap_webhook::spool::reader::SpoolReader;

use crate::harness::{write_config, Server};

#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16),
    /// The server closed the connection without answering.
    Closed,
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Sends `parts` (pausing `pause` between them), then reads the answer's status line.
fn exchange(addr: &str, parts: &[&[u8]], pause: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        if s.write_all(p).is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    match text.strip_prefix("HTTP/1.1 ") {
        Some(rest) => Outcome::Status(rest[..3].parse().unwrap()),
        None => Outcome::Closed,
    }
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Name, request parts, pause between parts, accepted statuses (0: closed without an answer).
type Case = (&'static str, Vec<Vec<u8>>, Duration, &'static [u16]);

#[test]
fn hostile_input_matrix_leaves_the_server_up_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&write_config(
        dir.path(),
        json!({"max_body_bytes": 4096, "max_header_bytes": 8192, "max_headers": 20,
               "header_read_timeout_seconds": 2, "body_read_timeout_seconds": 1,
               "max_connections": 8,
               "sources": {"data": {}, "k": {"api_keys": ["key-aaaaaaaa"]}}}),
    ));
    let a = addr(&server);
    let nothing = Duration::ZERO;
    let status = |o: &Outcome| match o {
        Outcome::Status(s) => *s,
        Outcome::Closed => 0,
    };
    let bomb = gzip(&vec![b'['; 4 << 20]);
    let truncated_gzip = {
        let g = gzip(br#"{"a":1}"#);
        g[..g.len() / 2].to_vec()
    };
    let many_headers: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "a".repeat(9000));
    let long_url = format!("/webhooks/{}", "a".repeat(100_000));
    let deep = "[".repeat(10_000);
    let cases: Vec<Case> = vec![
        ("head over 8 KiB", vec![post("/webhooks/data", &big_header, b"{}")], nothing, &[431, 0]),
        ("25 headers over a limit of 20", vec![post("/webhooks/data", &many_headers, b"{}")], nothing, &[431, 0]),
        ("URL of 100 KB", vec![format!("GET {long_url} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()], nothing, &[414, 431, 0]),
        ("slowloris head", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\n".to_vec(), b"X-A: 1\r\n".to_vec()], Duration::from_millis(3000), &[408, 0]),
        ("slow body", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"a\":".to_vec(), b"1".to_vec()], Duration::from_millis(1500), &[408]),
        ("Content-Length beyond the limit", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n{}".to_vec()], nothing, &[413]),
        ("Content-Length not a number", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n{}".to_vec()], nothing, &[400, 0]),
        ("two different Content-Lengths", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x".to_vec()], nothing, &[400, 0]),
        ("Content-Length with chunked (smuggling)", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n0\r\n\r\n".to_vec()], nothing, &[400, 0]),
        ("malformed chunk size", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec()], nothing, &[400, 0]),
        ("garbage request line", vec![b"GARBAGE\r\n\r\n".to_vec()], nothing, &[400, 0]),
        ("binary noise", vec![vec![0u8, 1, 2, 255, 254, 13, 10, 13, 10]], nothing, &[400, 0]),
        ("control byte in a header", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\n{}".to_vec()], nothing, &[400, 0]),
        ("unknown method", vec![b"BREW /webhooks/data HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}".to_vec()], nothing, &[405]),
        ("encoded path traversal", vec![post("/webhooks/..%2F..%2Fetc", "", b"{}")], nothing, &[404]),
        ("NUL bytes in the body", vec![post("/webhooks/data", "", b"{\"a\":\"\0\"}")], nothing, &[400]),
        ("invalid UTF-8", vec![post("/webhooks/data", "", b"{\"a\":\"\xc3\x28\"}")], nothing, &[400]),
        ("nesting 10,000 deep", vec![post("/webhooks/data", "", deep.as_bytes())], nothing, &[400, 413]),
        ("gzip bomb", vec![post("/webhooks/data", "Content-Encoding: gzip\r\n", &bomb)], nothing, &[413]),
        ("truncated gzip", vec![post("/webhooks/data", "Content-Encoding: gzip\r\n", &truncated_gzip)], nothing, &[400]),
        ("two JSON documents", vec![post("/webhooks/data", "", b"{} {}")], nothing, &[400]),
        ("JSON null", vec![post("/webhooks/data", "", b"null")], nothing, &[400]),
        ("wrong key with a body over the limit", vec![post("/webhooks/k", "X-Api-Key: nope-nope\r\n", &vec![b' '; 5000])], nothing, &[401, 413]),
        ("Expect: 100-continue over the limit", vec![b"POST /webhooks/data HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 999999\r\n\r\n".to_vec()], nothing, &[413]),
    ];
    assert!(cases.len() >= 20);
    for (name, parts, pause, allowed) in &cases {
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let got = exchange(&a, &refs, *pause);
        assert!(
            allowed.contains(&status(&got)),
            "{name}: got {got:?}, expected one of {allowed:?}"
        );
        assert_eq!(
            exchange(&a, &[b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"], nothing),
            Outcome::Status(200),
            "healthz after {name}"
        );
    }

    // Too many connections: 8 idle ones fill every slot; the 9th is closed at once. The idle
    // ones are dropped by the head timeout, after which service resumes. First let the matrix's
    // connections close, so that all eight slots go to the idle ones.
    std::thread::sleep(Duration::from_millis(1000));
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&a).unwrap()).collect();
    // Wait until the server holds all eight (it answers nothing on them).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        exchange(&a, &[b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"], nothing),
        Outcome::Closed
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        exchange(&a, &[b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"], nothing),
        Outcome::Status(200)
    );
    drop(idle);

    let spool = SpoolReader::open(&dir.path().join("spool.sqlite")).unwrap();
    for source in ["data", "k"] {
        assert_eq!(spool.count(source).unwrap(), 0, "{source}: nothing stored");
    }
}

/// Sends a whole request and reads the whole answer; its status and body.
fn exchange_full(addr: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r[..3].parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn wide_and_long_bodies_are_refused_with_their_codes_while_healthz_stays_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&write_config(dir.path(), json!({})));
    let addr = addr(&server);
    // Issue 20's two bodies: one object of 250k top-level names (~4.5 MB), one array of
    // 2M empty objects (~6 MB).
    let wide = format!(
        "{{{}}}",
        (0..250_000)
            .map(|i| format!("\"field_{i:06}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long = format!("[{}{{}}]", "{},".repeat(2_000_000 - 1));
    assert!(wide.len() > 4_500_000 && long.len() > 6_000_000);
    let close = "Connection: close\r\n";
    let hostile = [
        (
            post("/webhooks/data", close, wide.as_bytes()),
            "TOO_MANY_FIELDS",
        ),
        (
            post("/webhooks/data", close, long.as_bytes()),
            "TOO_MANY_MESSAGES",
        ),
    ];
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut slowest = Duration::ZERO;
    let mut polls = 0;
    std::thread::scope(|s| {
        let posts: Vec<_> = hostile
            .iter()
            .map(|(request, code)| {
                let (addr, done) = (&addr, &done);
                s.spawn(move || {
                    let answer = exchange_full(addr, request);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    (answer, *code)
                })
            })
            .collect();
        // /healthz over its own connection each time, until both posts are answered (and at
        // least a few times while they are in flight).
        while done.load(std::sync::atomic::Ordering::SeqCst) < 2 || polls < 5 {
            let at = std::time::Instant::now();
            let (status, _) = exchange_full(
                &addr,
                b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(status, 200);
            slowest = slowest.max(at.elapsed());
            polls += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in posts {
            let ((status, text), code) = p.join().unwrap();
            assert_eq!(status, 413, "{code}: {text}");
            assert!(text.contains(&format!("\"{code}: ")), "{code}: {text}");
        }
    });
    eprintln!("/healthz polled {polls} times during the hostile posts, slowest {slowest:?}");
    // A liveness bound, generous on purpose: the posts' work must never hold up the workers.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest /healthz: {slowest:?}"
    );
    let spool = SpoolReader::open(&dir.path().join("spool.sqlite")).unwrap();
    assert_eq!(spool.count("data").unwrap(), 0, "nothing stored");
}
