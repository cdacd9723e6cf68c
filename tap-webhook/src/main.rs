//! The `tap-webhook` binary: parses flags, sets up logging on stderr, and dispatches to the
//! receiver (`serve`) or the Singer tap. Stdout carries Singer messages only.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use singer::about::{render, AboutFormat};
use singer::catalog::Catalog;
use tap_webhook::queue::sender::QueueSender;
use tap_webhook::receiver::store::Store;
use tap_webhook::receiver::{self, AppState};
use tap_webhook::settings::{self, Settings};
use tap_webhook::spool::reader::SpoolReader;
use tap_webhook::spool::writer::SpoolWriter;
use tap_webhook::{ops, tap};

/// jemalloc rather than glibc's malloc: a delivery's buffers are allocated on a tokio worker
/// and freed on the spool's writer thread, which glibc pays for in arena locking and chunk
/// consolidation (~12% of the workers' samples). Measured: +8% durable POSTs/s (medians of 5
/// alternated runs), the tap's drain unchanged.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "tap-webhook", version, about = "Webhooks in, Singer out.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (repeatable; later files win). `ENV` reads TAP_WEBHOOK_* variables.
    #[arg(long, global = true)]
    config: Vec<String>,
    /// State file from the previous run (the target's last state line).
    #[arg(long)]
    state: Option<String>,
    /// Catalog selecting streams and fields.
    #[arg(long, conflicts_with = "properties")]
    catalog: Option<String>,
    /// Legacy name of --catalog.
    #[arg(long)]
    properties: Option<String>,
    /// Print the catalog and exit.
    #[arg(long)]
    discover: bool,
    /// Describe the tap and its settings.
    #[arg(long)]
    about: bool,
    /// Format of --about.
    #[arg(long, value_enum, default_value_t)]
    format: AboutFormat,
    /// Check the config and the spool, then exit.
    #[arg(long)]
    test: bool,
    /// Replay: emit what the spool still holds received at or after this time (RFC 3339, a
    /// date, or an age such as 2h), with the same `_sdc_sequence` and keys as the first time;
    /// ignores --state, prunes nothing, writes no STATE.
    #[arg(long, conflicts_with_all = ["state", "discover", "test"])]
    replay_since: Option<String>,
    /// End of the replay's window (included); default: now.
    #[arg(long, requires = "replay_since")]
    replay_until: Option<String>,
    /// Keep running after the backlog, emitting each new message as it is stored (the
    /// `follow` setting); SIGTERM / SIGINT or `max_seconds` end it with a final STATE.
    #[arg(long)]
    follow: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP receiver.
    Serve,
    /// List the deliveries the spool holds, newest first; show one; list refused requests.
    Deliveries(DeliveriesCli),
    /// Per source: messages waiting, oldest and newest, bytes, refusals of the last hour.
    Status {
        /// The tap's state file: count what waits after its bookmarks (else everything held).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: StatusFormat,
    },
    /// Each source's webhook URL, how it authenticates and what it verifies.
    Urls {
        /// The address providers reach (default: http://<listen_address>).
        #[arg(long)]
        base_url: Option<String>,
        #[arg(long, value_enum)]
        format: Option<ListFormat>,
    },
}

#[derive(clap::Args)]
struct DeliveriesCli {
    #[arg(long)]
    source: Option<String>,
    /// RFC 3339, a date, or an age such as 2h, 30m, 7d.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    delivery_id: Option<String>,
    /// FIELD=VALUE or /json/pointer=VALUE (VALUE as JSON when it parses, else text).
    #[arg(long = "where")]
    where_: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u64,
    /// A message id or sequence (with --refused: a ledger id): headers as stored, body.
    #[arg(long)]
    show: Option<String>,
    /// The ledger of refused requests instead of the stored messages.
    #[arg(long)]
    refused: bool,
    /// Default: a table on a terminal, JSON lines when piped.
    #[arg(long, value_enum)]
    format: Option<ListFormat>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Table,
    Jsonl,
}

impl From<ListFormat> for ops::Format {
    fn from(f: ListFormat) -> ops::Format {
        match f {
            ListFormat::Table => ops::Format::Table,
            ListFormat::Jsonl => ops::Format::Jsonl,
        }
    }
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = init_logging(matches!(cli.command, Some(Command::Serve)));
    let result = run(cli);
    // Every queued log line is written before the error line below, and before exit.
    if let Some(thread) = logs {
        thread.finish();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr, each cause once (not also as a tracing line).
            eprintln!("tap-webhook: error: {}", singer::report::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. `serve` logs a line per delivery: there a thread of their own writes them
/// ([`tap_webhook::logs`]), and finishing it writes every line queued. The other commands write
/// each line themselves (their stdout may be a Singer stream: nothing of the log thread's may
/// ever reach it).
fn init_logging(serve: bool) -> Option<tap_webhook::logs::LogThread> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if !serve {
        logger.with_writer(std::io::stderr).init();
        return None;
    }
    match tap_webhook::logs::start() {
        Ok((queue, thread)) => {
            logger.with_writer(queue).init();
            Some(thread)
        }
        // No thread to be had: each line written by its logger.
        Err(_) => {
            logger.with_writer(std::io::stderr).init();
            None
        }
    }
}

fn load_settings(args: &[String]) -> anyhow::Result<Settings> {
    let schema = settings::schema();
    let map = singer::config::load_config(args, "TAP_WEBHOOK", Some(&schema))?;
    singer::config::validate(&schema, &map)?;
    Ok(Settings::from_map(map)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.about {
        print!("{}", render(&tap_webhook::about(), cli.format));
        return Ok(());
    }
    let mut settings = load_settings(&cli.config)?;
    settings.follow |= cli.follow;
    match cli.command {
        Some(Command::Serve) => return serve(settings),
        Some(Command::Deliveries(d)) => {
            require_spool(&settings)?;
            let args = ops::deliveries::Args {
                source: d.source,
                since: d.since,
                until: d.until,
                delivery_id: d.delivery_id,
                where_: d.where_,
                limit: d.limit,
                show: d.show,
                refused: d.refused,
                format: d.format.map(Into::into),
            };
            return Ok(ops::deliveries::run(
                &settings,
                &args,
                &mut std::io::stdout().lock(),
            )?);
        }
        Some(Command::Status { state, format }) => {
            require_spool(&settings)?;
            let state = read_state(state.as_deref())?;
            let status = ops::status::gather(&settings, state.as_ref())?;
            let mut out = std::io::stdout().lock();
            match format {
                StatusFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?,
                StatusFormat::Text => ops::status::write_text(&mut out, &status)?,
            }
            return Ok(());
        }
        Some(Command::Urls { base_url, format }) => {
            let base = base_url.unwrap_or_else(|| format!("http://{}", settings.listen_address));
            let format = ops::Format::or_by_terminal(format.map(Into::into));
            return Ok(ops::urls::run(
                &settings,
                &base,
                format,
                &mut std::io::stdout().lock(),
            )?);
        }
        None => {}
    }
    if cli.test {
        require_spool(&settings)?;
        let spool = SpoolReader::open(&settings.spool_path)?;
        tracing::info!(spool = %absolute(&settings.spool_path), producer = spool.producer(), high_water_mark = spool.high_water_mark()?, "config and spool are usable");
        return Ok(());
    }
    if cli.discover {
        // Meltano also passes --state with --discover; it has no bearing on discovery. Meltano
        // also discovers before `meltano invoke tap-webhook:serve`, which creates the spool: a
        // missing spool gives the catalog from the settings alone (nothing sampled, nothing
        // created); the tap run and --test still refuse it.
        let spool = match require_spool(&settings) {
            Ok(()) => Some(SpoolReader::open(&settings.spool_path)?),
            Err(e) => {
                tracing::warn!("{e:#}; the catalog holds the fixed fields only");
                None
            }
        };
        let catalog = tap::discover::discover(&settings, spool.as_ref())?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &catalog)?;
        writeln!(out)?;
        return Ok(());
    }
    let catalog = cli
        .catalog
        .or(cli.properties)
        .map(|p| Catalog::load(&p))
        .transpose()?;
    let state = read_state(cli.state.as_deref())?;
    require_spool(&settings)?;
    if let Some(since) = &cli.replay_since {
        let now = singer::clock::now_micros();
        let since = ops::parse_time("--replay-since", since, now)?;
        let until = match &cli.replay_until {
            Some(t) => ops::parse_time("--replay-until", t, now)?,
            None => now,
        };
        if until < since {
            anyhow::bail!("--replay-until is before --replay-since: the window is empty");
        }
        tracing::info!(spool = %absolute(&settings.spool_path), since = %singer::datetime::format_micros(since), until = %singer::datetime::format_micros(until), "replaying a receipt window (no bookmark, no prune, no STATE)");
        let summary = tap::replay(
            &settings,
            catalog.as_ref(),
            since,
            until,
            std::io::stdout().lock(),
        )?;
        let total: u64 = summary.records.values().sum();
        tracing::info!(records = total, "replay finished");
        return Ok(());
    }
    tracing::info!(spool = %absolute(&settings.spool_path), "draining the spool");
    if let Some(q) = &settings.queue {
        // Scale-out: first move what the receivers queued into the local spool, durably.
        tap::drain::drain(&settings, q)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut drain_failed = None;
    if settings.follow {
        // SIGTERM / SIGINT: the run ends between two records with its final STATE, exit 0.
        let flag = stop.clone();
        singer::signals::on_stop_signal(move |name| {
            tracing::info!("{name}: ending the run with a final STATE");
            flag.store(true, Ordering::Relaxed);
        })
        .context("installing the SIGTERM/SIGINT handlers")?;
        if let Some(q) = &settings.queue {
            // Continuous long polls: each drain's spool commit wakes the follower.
            drain_failed = Some(drain_forever(settings.clone(), q.clone(), stop.clone()));
        }
    }
    let started = std::time::Instant::now();
    let summary = tap::run_until(
        &settings,
        catalog.as_ref(),
        state.as_ref(),
        std::io::stdout().lock(),
        &stop,
    )?;
    let total: u64 = summary.records.values().sum();
    for (stream, n) in &summary.records {
        // Singer metric lines, which Meltano parses from stderr.
        singer::metrics::emit_metric(
            "counter",
            "record_count",
            (*n).into(),
            serde_json::json!({ "stream": stream }),
        );
    }
    tracing::info!(
        records = total,
        pruned = summary.pruned,
        dropped = summary.dropped,
        truncated = summary.truncated,
        seconds = started.elapsed().as_secs_f64(),
        "tap run finished"
    );
    if let Some(e) = drain_failed.as_ref().and_then(|f| f.get()) {
        anyhow::bail!("{e}");
    }
    Ok(())
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // The address first: a port in use fails the start before a spool file is created.
        let listener = tokio::net::TcpListener::bind(&settings.listen_address)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} (setting listen_address): {e}{}",
                    settings.listen_address,
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        "; another process holds that port: stop it, or set listen_address \
                         (TAP_WEBHOOK_LISTEN_ADDRESS) to a free address (port 0 picks one)"
                    } else {
                        ""
                    }
                )
            })?;
        // The admin page's address too, before the spool: a bad one fails the start cleanly.
        let admin_listener = match &settings.admin {
            Some(a) => Some(
                tokio::net::TcpListener::bind(&a.listen_address)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot listen on {} (setting admin_listen_address): {e}",
                            a.listen_address
                        )
                    })?,
            ),
            None => None,
        };
        let (store, writer_thread) = match &settings.queue {
            // Scale-out: a stateless receiver, no spool file.
            Some(q) => (Store::Queue(QueueSender::connect(q).await?), None),
            None => {
                let (writer, thread) = SpoolWriter::start(
                    &settings.spool_path,
                    settings.dedupe_window,
                    settings.ledger,
                )?;
                (Store::Spool(writer), Some(thread))
            }
        };
        let addr = listener.local_addr()?;
        match &store {
            Store::Spool(_) => {
                tracing::info!(spool = %absolute(&settings.spool_path), "listening on {addr}")
            }
            Store::Queue(_) => tracing::info!("listening on {addr}"),
        }
        log_sources(&settings, addr);
        let state = Arc::new(AppState::new(&settings, store));
        // One signal stops both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let admin = match (admin_listener, &settings.admin) {
            (Some(l), Some(a)) => {
                tracing::info!(
                    tokens = a.tokens.len(),
                    "admin status page on http://{}/admin",
                    l.local_addr()?
                );
                let admin_state = Arc::new(tap_webhook::admin::AdminState {
                    spool_path: settings.spool_path.clone(),
                    sources: settings.sources.keys().cloned().collect(),
                    max_spool_bytes: settings.max_spool_bytes,
                    tokens: a.tokens.clone(),
                });
                Some(tokio::spawn(tap_webhook::admin::serve(
                    l,
                    admin_state,
                    stopped(stop_rx.clone()),
                )))
            }
            _ => None,
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        receiver::serve(listener, state, stopped(stop_rx)).await?;
        if let Some(admin) = admin {
            admin.await??;
        }
        // All handlers (and their spool handles) are gone: the writer drains and stops.
        if let Some(thread) = writer_thread {
            thread.join();
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// The state file's last state, if a file is given.
fn read_state(path: Option<&str>) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(path) = path else { return Ok(None) };
    let file = singer::state_file::read(Path::new(path))?;
    if file.values > 1 {
        tracing::info!(
            state_file = %path,
            states = file.values,
            "the state file holds several states (a target's whole output); using the last"
        );
    }
    Ok(file.state)
}

/// The spool must already exist outside `serve`, with the embedded spool: the tap, `--discover`
/// and `--test` opening (hence creating) a missing one would drain an empty spool and exit 0,
/// every run, when the real one is elsewhere (a typo, another working directory). With a queue
/// the spool is the tap's own local buffer, which the tap creates.
fn require_spool(settings: &Settings) -> anyhow::Result<()> {
    if settings.queue.is_some() || settings.spool_path.exists() {
        return Ok(());
    }
    anyhow::bail!(
        "spool {} does not exist (spool_path {:?}, relative paths are taken from the working \
         directory): start `tap-webhook serve` first, or check spool_path / the working directory",
        absolute(&settings.spool_path),
        settings.spool_path.display().to_string()
    )
}

/// A path as the user should look for it: absolute (relative ones taken from the working
/// directory, as every open is).
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// One line per source at start: its URL and what it must send (never a secret).
fn log_sources(settings: &Settings, addr: std::net::SocketAddr) {
    if settings.sources.is_empty() {
        tracing::warn!("no sources configured: every delivery will get 404 UNKNOWN_SOURCE");
    }
    for source in settings.sources.values() {
        let (auth, verifies) = ops::urls::describe(source);
        let methods = if source.allow_get {
            "POST, GET"
        } else {
            "POST"
        };
        tracing::info!(
            source = %source.name,
            url = %format!("http://{addr}/webhooks/{}", source.name),
            methods,
            auth = %auth,
            verifies = %verifies,
            "source"
        );
    }
}

/// A following run on the SQS backend: drains the queue into the spool, round after round
/// (each a long poll), until the run stops. A drain that fails stops the run (with its final
/// STATE) and the error is the run's, rather than following a spool nothing feeds any more.
/// The process may end in the middle of a drain: a crash the drain survives (`tap::drain`).
fn drain_forever(
    settings: Settings,
    q: tap_webhook::queue::QueueSettings,
    stop: Arc<AtomicBool>,
) -> Arc<std::sync::OnceLock<String>> {
    let failed = Arc::new(std::sync::OnceLock::new());
    let failure = failed.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match tap::drain::drain(&settings, &q) {
                // Without a long poll an empty queue would be asked again at once.
                Ok(d) if d.received == 0 && q.wait_time_seconds == 0 => {
                    std::thread::sleep(tap::follow::FALLBACK)
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = failure.set(format!(
                        "draining the queue while following: {}",
                        singer::report::chain(&e)
                    ));
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    failed
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_formats_are_clap_values() {
        for (given, want) in [
            (None, AboutFormat::Text),
            (Some("json"), AboutFormat::Json),
            (Some("markdown"), AboutFormat::Markdown),
            (Some("md"), AboutFormat::Markdown),
        ] {
            let mut args = vec!["tap-webhook", "--about"];
            args.extend(given.map(|f| ["--format", f]).into_iter().flatten());
            assert_eq!(Cli::try_parse_from(args).unwrap().format, want);
        }
        let e = Cli::try_parse_from(["tap-webhook", "--about", "--format", "yaml"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("yaml"), "{e}");
    }
}
