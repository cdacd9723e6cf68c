//! `target-warehouse` command line: flags → settings → [`target_warehouse::run`] on stdin/stdout.
//! Logs go to stderr: stdout carries STATE lines and nothing else (BRIEF §2).

use std::io::{BufReader, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use singer::about::{About, AboutFormat};
use target_warehouse::{settings_schema, Settings};

/// jemalloc rather than glibc's malloc: every batch allocates and frees tens of MB of Arrow
/// buffers across two threads, which glibc gave back to the system and faulted in again.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "target-warehouse",
    version,
    about = "Singer target: Singer messages into Delta Lake tables"
)]
struct Cli {
    /// Config file (repeatable, later ones win); `ENV` reads TARGET_WAREHOUSE_* variables.
    #[arg(long = "config", value_name = "FILE", global = true)]
    config: Vec<String>,
    /// Read Singer messages from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<String>,
    /// Describe the target (capabilities and settings) and exit.
    #[arg(long)]
    about: bool,
    /// Format of --about.
    #[arg(long, value_enum, default_value_t, requires = "about")]
    format: AboutFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Merge the small files of every table under warehouse_path, and rewrite files whose
    /// deletion vector deletes half their rows or more (one commit per table).
    Compact,
    /// Report every table's protocol, which common readers open it, its files, log length
    /// since the last checkpoint, unreferenced files and high-water marks; exits non-zero when
    /// a table is broken.
    Doctor {
        /// `text` for people, `json` for scripts.
        #[arg(long = "format", value_enum, default_value_t = ReportFormat::Text)]
        report: ReportFormat,
    },
    /// Remove the files no current table version references, older than the retention (what
    /// time travel inside the retention needs stays).
    Vacuum {
        #[arg(long, default_value_t = target_warehouse::table::vacuum::DEFAULT_RETENTION_HOURS)]
        retention_hours: u64,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention below the table's delta.deletedFileRetentionDuration.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

/// Our progress at info; the Delta kernel's per-snapshot chatter only when it matters.
const DEFAULT_LOG_FILTER: &str =
    "info,buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake_core=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: a message that already formats its source is not followed by it.
            eprintln!(
                "target-warehouse: error: {}",
                singer::report::chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    if cli.about {
        let about = About {
            name: "target-warehouse".into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: ["about", "hard-delete", "activate-version"]
                .map(String::from)
                .to_vec(),
            settings: settings_schema(),
        };
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            singer::about::render(&about, cli.format).trim_end()
        )?;
        return Ok(());
    }
    let schema = settings_schema();
    let map = singer::config::load_config(&cli.config, "TARGET_WAREHOUSE", Some(&schema))?;
    singer::config::validate(&schema, &map)?;
    let settings = Settings::from_map(map).map_err(anyhow::Error::msg)?;
    match cli.command {
        Some(Command::Doctor { report }) => return doctor(&settings, report),
        Some(Command::Vacuum {
            retention_hours,
            dry_run,
            force,
        }) => {
            let mut out = std::io::stdout().lock();
            for v in target_warehouse::vacuum(&settings, retention_hours, dry_run, force)? {
                let verb = if v.dry_run { "would remove" } else { "removed" };
                writeln!(out, "{}: {verb} {} files", v.table, v.files.len())?;
                for f in &v.files {
                    writeln!(out, "  {f}")?;
                }
            }
            return Ok(());
        }
        _ => {}
    }
    if let Some(Command::Compact) = cli.command {
        for (dir, merged) in target_warehouse::compact(&settings)? {
            match merged {
                Some(c) => {
                    tracing::info!(table = %dir.display(), files = c.files, version = c.version, copied = c.copied, "compacted")
                }
                None => tracing::info!(table = %dir.display(), "nothing to compact"),
            }
        }
        return Ok(());
    }
    // A signal (a stopping service, Ctrl-C) reaches the tap beside it too: the load goes on to
    // the end of the input, which a following tap closes right after its final STATE, and
    // commits what it holds. A second signal exits at once.
    singer::signals::on_stop_signal(|name| {
        tracing::info!("{name}: finishing at the end of the input (a second signal exits now)");
    })
    .context("installing the SIGTERM/SIGINT handlers")?;
    let started = std::time::Instant::now();
    let stdout = std::io::stdout().lock();
    let summary = match &cli.input {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening --input {path}"))?;
            target_warehouse::run(&settings, BufReader::with_capacity(1 << 20, file), stdout)?
        }
        None => target_warehouse::run(
            &settings,
            BufReader::with_capacity(1 << 20, std::io::stdin()),
            stdout,
        )?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    singer::metrics::emit_metric(
        "counter",
        "record_count",
        summary.records.into(),
        serde_json::json!({}),
    );
    singer::metrics::emit_metric(
        "counter",
        "rows_written",
        summary.rows_written.into(),
        serde_json::json!({}),
    );
    if summary.inserts_skipped > 0 {
        singer::metrics::emit_metric(
            "counter",
            "inserts_skipped",
            summary.inserts_skipped.into(),
            serde_json::json!({}),
        );
    }
    singer::metrics::emit_metric(
        "timer",
        "load_duration",
        elapsed.into(),
        serde_json::json!({"status": "succeeded"}),
    );
    tracing::info!(
        seconds = elapsed,
        records = summary.records,
        skipped = summary.skipped,
        rows_written = summary.rows_written,
        inserts_skipped = summary.inserts_skipped,
        commits = summary.commits,
        states = summary.states,
        overlapped_cuts = summary.overlapped_cuts,
        "done"
    );
    Ok(())
}

/// Prints every table's health; an error (exit 1) when one is broken.
fn doctor(settings: &Settings, format: ReportFormat) -> anyhow::Result<()> {
    let tables = target_warehouse::doctor(settings)?;
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&tables)?)?,
        ReportFormat::Text => {
            for t in &tables {
                write!(out, "{}", target_warehouse::table::health::render(t))?;
            }
        }
    }
    let broken: Vec<_> = tables
        .iter()
        .filter(|t| !t.broken.is_empty())
        .map(|t| t.table.as_str())
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("broken tables: {}", broken.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_formats_are_clap_values() {
        let format = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.format);
        assert_eq!(format(&["t", "--about"]).unwrap(), AboutFormat::Text);
        assert_eq!(
            format(&["t", "--about", "--format", "md"]).unwrap(),
            AboutFormat::Markdown
        );
        assert_eq!(
            format(&["t", "--about", "--format", "json"]).unwrap(),
            AboutFormat::Json
        );
        assert!(format(&["t", "--about", "--format", "yaml"]).is_err());
        assert!(
            format(&["t", "--format", "json"]).is_err(),
            "--format needs --about"
        );
    }
}
