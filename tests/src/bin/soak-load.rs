//! The soak test's load generator (`tests/soak.sh`): posts webhooks to a running
//! `tap-webhook serve` from many concurrent connections, as providers do, and records the
//! outcome of every delivery so the table can be checked against it afterwards.
//!
//! Two sources: `events` (no primary key: an append-only table, each element carrying a unique
//! `uid`) and `orders` (keyed on `order_id`: upserts, each key posted again and again with a
//! rising `version`). Mix: single objects, arrays of 2–5, a few gzip bodies, most deliveries
//! with a delivery id (`X-GitHub-Delivery`). A refused or failed delivery with an id is retried
//! like a provider does (backoff, same id, same body), one without an id is not (a retry
//! without an id is a new delivery); a few acknowledged ones are sent again to see the dedupe.
//!
//! Each worker owns the order keys `k` with `k % concurrency == worker` and posts one of them
//! only after the previous post of that key was answered (or given up), so "the last
//! acknowledged post of a key" is well defined. The receiver is killed and restarted under it:
//! requests that fail are simply not acknowledged.
//!
//! Output: `--log FILE`, CSV `source,uid,order_id,version,acked` (one line per element of every
//! delivery, written once its outcome is final); a JSON summary on stdout; progress on stderr.

use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Load generator of tests/soak.sh")]
struct Args {
    /// The receiver's base URL, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    url: String,
    /// How long to post.
    #[arg(long, default_value_t = 600.0)]
    seconds: f64,
    /// Concurrent workers (each one connection at a time).
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Target deliveries per second over all workers (0: as fast as answered).
    #[arg(long, default_value_t = 3000)]
    rate: u64,
    /// Number of distinct order keys.
    #[arg(long, default_value_t = 20_000)]
    keys: u64,
    /// Where the outcome of every delivery is written (CSV).
    #[arg(long)]
    log: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Backoff of a provider's retries of a delivery that failed (the receiver is down ~1 s a
/// minute, so a few seconds in all gets most deliveries through).
const RETRY_BACKOFF_MS: [u64; 6] = [100, 250, 500, 1000, 2000, 4000];

#[derive(Default)]
struct Stats {
    deliveries_acked: AtomicU64,
    deliveries_given_up: AtomicU64,
    messages_acked: AtomicU64,
    attempts: AtomicU64,
    status_2xx: AtomicU64,
    status_503: AtomicU64,
    status_other: AtomicU64,
    connection_errors: AtomicU64,
    duplicate_replies: AtomicU64,
    /// Acknowledged deliveries sent again with their id: each must be answered as a duplicate.
    resends_after_ack: AtomicU64,
    /// A resend of an acknowledged delivery that was stored again: a dedupe failure.
    resend_stored_again: AtomicU64,
    gzip: AtomicU64,
    arrays: AtomicU64,
}

struct Delivery {
    source: &'static str,
    body: Vec<u8>,
    gzip: bool,
    delivery_id: Option<String>,
    /// One line of the log per element: `uid,order_id,version`.
    elements: Vec<(u64, Option<(u64, u64)>)>,
}

enum Outcome {
    Acked { duplicate: bool },
    Refused,
}

struct Shared {
    args: Args,
    client: reqwest::Client,
    stats: Stats,
    next_uid: AtomicU64,
    /// Pacing: the next free send slot, in ns since `start`.
    next_slot_ns: AtomicU64,
    start: Instant,
    log: std::sync::mpsc::Sender<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let file = std::fs::File::create(&args.log)
        .with_context(|| format!("creating {}", args.log.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(b"source,uid,order_id,version,acked\n")?;
        for chunk in rx {
            out.write_all(chunk.as_bytes())?;
        }
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(30))
        .build()?;
    let shared = Arc::new(Shared {
        client,
        stats: Stats::default(),
        next_uid: AtomicU64::new(1),
        next_slot_ns: AtomicU64::new(0),
        start: Instant::now(),
        log: tx,
        args,
    });
    let progress = tokio::spawn(progress(shared.clone()));
    let workers: Vec<_> = (0..shared.args.concurrency)
        .map(|w| tokio::spawn(worker(shared.clone(), w)))
        .collect();
    for w in workers {
        w.await?;
    }
    progress.abort();
    let elapsed = shared.start.elapsed().as_secs_f64();
    let s = &shared.stats;
    let summary = serde_json::json!({
        "seconds": elapsed,
        "deliveries_acked": s.deliveries_acked.load(Relaxed),
        "deliveries_given_up": s.deliveries_given_up.load(Relaxed),
        "messages_acked": s.messages_acked.load(Relaxed),
        "deliveries_acked_per_second": s.deliveries_acked.load(Relaxed) as f64 / elapsed,
        "messages_acked_per_second": s.messages_acked.load(Relaxed) as f64 / elapsed,
        "attempts": s.attempts.load(Relaxed),
        "status_2xx": s.status_2xx.load(Relaxed),
        "status_503": s.status_503.load(Relaxed),
        "status_other": s.status_other.load(Relaxed),
        "connection_errors": s.connection_errors.load(Relaxed),
        "duplicate_replies": s.duplicate_replies.load(Relaxed),
        "resends_after_ack": s.resends_after_ack.load(Relaxed),
        "resend_stored_again": s.resend_stored_again.load(Relaxed),
        "gzip_deliveries": s.gzip.load(Relaxed),
        "array_deliveries": s.arrays.load(Relaxed),
    });
    // Every worker's sender is gone with `shared`: the writer drains and ends.
    drop(shared);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("log writer panicked"))??;
    println!("{summary}");
    Ok(())
}

async fn progress(shared: Arc<Shared>) {
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = shared.stats.deliveries_acked.load(Relaxed);
        eprintln!(
            "soak-load: {:>5.0} s  {} deliveries acked ({}/s over the last 10 s), {} connection errors, {} given up",
            shared.start.elapsed().as_secs_f64(),
            now,
            (now - last) / 10,
            shared.stats.connection_errors.load(Relaxed),
            shared.stats.deliveries_given_up.load(Relaxed),
        );
        last = now;
    }
}

async fn worker(shared: Arc<Shared>, w: u64) {
    let args = &shared.args;
    let mut rng = fastrand::Rng::with_seed(args.seed.wrapping_mul(1_000_003).wrapping_add(w));
    // This worker's order keys and their last version posted.
    let own_keys: Vec<u64> = (0..args.keys)
        .filter(|k| k % args.concurrency == w)
        .collect();
    let mut versions = vec![0u64; own_keys.len()];
    let deadline = Duration::from_secs_f64(args.seconds);
    let mut n = 0u64;
    while shared.start.elapsed() < deadline {
        pace(&shared).await;
        n += 1;
        let delivery = make_delivery(&shared, &mut rng, w, n, &own_keys, &mut versions);
        let acked = send(&shared, &delivery, &mut rng).await;
        let mut lines = String::new();
        for (uid, order) in &delivery.elements {
            let (k, v) = match order {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (String::new(), String::new()),
            };
            lines.push_str(&format!(
                "{},{uid},{k},{v},{}\n",
                delivery.source,
                u8::from(acked)
            ));
        }
        if shared.log.send(lines).is_err() {
            return;
        }
    }
}

/// Waits for this delivery's send slot (`rate` per second over all workers; a backlog after an
/// outage is not caught up by more than 200 ms).
async fn pace(shared: &Shared) {
    if shared.args.rate == 0 {
        return;
    }
    let interval = 1_000_000_000 / shared.args.rate;
    let now = shared.start.elapsed().as_nanos() as u64;
    let floor = now.saturating_sub(200_000_000);
    let prev = shared
        .next_slot_ns
        .fetch_update(Relaxed, Relaxed, |cur| Some(cur.max(floor) + interval))
        .unwrap_or_default();
    let slot = prev.max(floor);
    if slot > now {
        tokio::time::sleep(Duration::from_nanos(slot - now)).await;
    }
}

fn make_delivery(
    shared: &Shared,
    rng: &mut fastrand::Rng,
    w: u64,
    n: u64,
    own_keys: &[u64],
    versions: &mut [u64],
) -> Delivery {
    let keyed = !own_keys.is_empty() && rng.u8(0..100) < 35;
    let count = if rng.u8(0..100) < 20 {
        rng.usize(2..=5)
    } else {
        1
    };
    let mut elements = Vec::with_capacity(count);
    let mut texts = Vec::with_capacity(count);
    // Distinct keys within one array: a key's versions stay in posting order.
    let mut picked: Vec<usize> = Vec::new();
    for _ in 0..count {
        let uid = shared.next_uid.fetch_add(1, Relaxed);
        if keyed {
            let mut i = rng.usize(0..own_keys.len());
            while picked.contains(&i) && picked.len() < own_keys.len() {
                i = rng.usize(0..own_keys.len());
            }
            picked.push(i);
            versions[i] += 1;
            let (key, version) = (own_keys[i], versions[i]);
            texts.push(format!(
                r#"{{"order_id":{key},"version":{version},"uid":{uid},"note":"u{uid}","status":"{}","total":{}.{:02},"lines":[{{"sku":"s{}","qty":{}}}]}}"#,
                ["new", "paid", "shipped", "refunded"][rng.usize(0..4)],
                rng.u32(1..10_000),
                rng.u32(0..100),
                rng.u32(0..500),
                rng.u32(1..9),
            ));
            elements.push((uid, Some((key, version))));
        } else {
            // A few sparse fields appear now and then (new columns mid-run), one of them with
            // a type that changes (a sibling column).
            let mut extra = String::new();
            if rng.u8(0..100) < 10 {
                extra = format!(r#","f{}":{}"#, rng.u8(0..40), rng.u32(..));
            }
            if rng.u8(0..100) < 2 {
                extra.push_str(if rng.bool() {
                    r#","mixed":17"#
                } else {
                    r#","mixed":"seventeen""#
                });
            }
            texts.push(format!(
                r#"{{"uid":{uid},"note":"u{uid}","type":"{}","worker":{w},"n":{n},"amount":{}.{:02},"ok":{},"at":"2026-12-01T10:00:{:02}.{:06}Z","meta":{{"w":{w},"tags":["a","b"]}}{extra}}}"#,
                ["click", "view", "buy", "open"][rng.usize(0..4)],
                rng.u32(0..1000),
                rng.u32(0..100),
                rng.bool(),
                rng.u32(0..60),
                rng.u32(0..1_000_000),
            ));
            elements.push((uid, None));
        }
    }
    let text = if count == 1 {
        texts.pop().unwrap_or_default()
    } else {
        format!("[{}]", texts.join(","))
    };
    let gzip = rng.u8(0..100) < 3;
    let body = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(text.as_bytes());
        enc.finish().unwrap_or_default()
    } else {
        text.into_bytes()
    };
    let delivery_id = (rng.u8(0..100) < 90).then(|| format!("d-{}-{w}-{n}", shared.args.seed));
    Delivery {
        source: if keyed { "orders" } else { "events" },
        body,
        gzip,
        delivery_id,
        elements,
    }
}

/// Posts a delivery, retrying it like a provider while it has an id; true once acknowledged.
async fn send(shared: &Shared, d: &Delivery, rng: &mut fastrand::Rng) -> bool {
    let s = &shared.stats;
    let attempts = if d.delivery_id.is_some() {
        RETRY_BACKOFF_MS.len() + 1
    } else {
        1
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS[attempt - 1])).await;
        }
        if let Outcome::Acked { duplicate } = post(shared, d).await {
            s.deliveries_acked.fetch_add(1, Relaxed);
            s.messages_acked.fetch_add(d.elements.len() as u64, Relaxed);
            if d.gzip {
                s.gzip.fetch_add(1, Relaxed);
            }
            if d.elements.len() > 1 {
                s.arrays.fetch_add(1, Relaxed);
            }
            if duplicate {
                s.duplicate_replies.fetch_add(1, Relaxed);
            }
            // A provider that missed the answer sends the same delivery again.
            if d.delivery_id.is_some() && rng.u8(0..100) < 2 {
                s.resends_after_ack.fetch_add(1, Relaxed);
                if let Outcome::Acked { duplicate: false } = post(shared, d).await {
                    s.resend_stored_again.fetch_add(1, Relaxed);
                }
            }
            return true;
        }
    }
    s.deliveries_given_up.fetch_add(1, Relaxed);
    false
}

async fn post(shared: &Shared, d: &Delivery) -> Outcome {
    let s = &shared.stats;
    s.attempts.fetch_add(1, Relaxed);
    let mut req = shared
        .client
        .post(format!("{}/webhooks/{}", shared.args.url, d.source))
        .header("content-type", "application/json")
        .body(d.body.clone());
    if d.gzip {
        req = req.header("content-encoding", "gzip");
    }
    if let Some(id) = &d.delivery_id {
        req = req.header("x-github-delivery", id);
    }
    let response = match req.send().await {
        Ok(r) => r,
        Err(_) => {
            s.connection_errors.fetch_add(1, Relaxed);
            return Outcome::Refused;
        }
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(_) => {
            s.connection_errors.fetch_add(1, Relaxed);
            return Outcome::Refused;
        }
    };
    if !status.is_success() {
        if status.as_u16() == 503 {
            s.status_503.fetch_add(1, Relaxed);
        } else {
            // The first few are shown: anything but 503 is unexpected here.
            if s.status_other.fetch_add(1, Relaxed) < 20 {
                eprintln!(
                    "soak-load: {} answered {status}: {}",
                    d.source,
                    String::from_utf8_lossy(&body)
                );
            }
        }
        return Outcome::Refused;
    }
    s.status_2xx.fetch_add(1, Relaxed);
    let duplicate = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["duplicate"].as_bool())
        .unwrap_or(false);
    Outcome::Acked { duplicate }
}
