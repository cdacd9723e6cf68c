//! `target-warehouse`: a Singer target that lands any tap's streams as Delta Lake tables.
//!
//! The pipeline, one module per stage:
//! - [`ingest`]: the message loop (SCHEMA / RECORD / STATE / ACTIVATE_VERSION), replay skipping,
//!   flush triggers, and printing STATE only after the commits it covers;
//! - [`record`] and [`columns`]: a record's top-level fields, classified into the type lattice,
//!   coerced losslessly or routed to a sibling column;
//! - [`registry`] and [`batch`]: the table's columns and the sparse Arrow builders;
//! - [`stream`]: a stream's rows not yet committed, cut into batches, each made one Delta
//!   commit (append, upsert, overwrite, hard delete, ACTIVATE_VERSION) with the stream's `txn`
//!   high-water mark; [`commits`] orders those commits and [`states`] the STATEs they release;
//! - [`table`]: Parquet files, Delta commits, upsert rewrites, compaction.
//!
//! ```no_run
//! let settings = target_warehouse::Settings::default();
//! let input = std::io::BufReader::new(std::io::stdin());
//! let summary = target_warehouse::run(&settings, input, std::io::stdout()).expect("load");
//! eprintln!("{} records", summary.records);
//! ```

pub mod batch;
pub mod batchfiles;
pub mod columns;
pub mod commits;
pub mod decimal;
pub mod error;
pub mod failpoint;
pub mod ingest;
pub mod jsontext;
pub mod names;
pub mod overflow;
pub mod pump;
pub mod quarantine;
pub mod record;
pub mod registry;
pub mod sdc;
pub mod settings;
pub mod states;
pub mod stream;
pub mod table;
pub mod timefmt;

use std::io::{BufRead, Write};

pub use error::Error;
pub use ingest::Summary;
pub use settings::{settings_schema, LoadMethod, Settings};

/// Loads Singer messages from `input` into the tables under `settings.warehouse_path`, printing
/// each STATE on `output` once the commits holding every record before it are durable.
pub fn run(
    settings: &Settings,
    input: impl BufRead + Send + 'static,
    output: impl Write,
) -> Result<Summary, Error> {
    let result = ingest::Ingest::new(settings, output).and_then(|i| i.run(input));
    // Files staged for an object store are removed once uploaded; whatever an upload failure
    // left behind goes with the run (it is never referenced by a commit).
    table::store::remove_staging_dir();
    result
}

/// `target-warehouse compact`: merges the small files of every table under the warehouse path,
/// one commit per table. Returns each table directory with what was merged (`None`: nothing).
pub fn compact(settings: &Settings) -> Result<Vec<Compaction>, Error> {
    let result = compact_tables(settings);
    table::store::remove_staging_dir();
    result
}

/// A table directory and what `compact` merged there (`None`: nothing).
pub type Compaction = (std::path::PathBuf, Option<table::compact::Compacted>);

/// The table directories under the warehouse path, sorted (local or `s3://`).
fn table_dirs(
    rt: &tokio::runtime::Runtime,
    settings: &Settings,
) -> Result<Vec<std::path::PathBuf>, Error> {
    let options = &settings.storage_options;
    let mut dirs: Vec<_> = if table::store::is_remote(&settings.warehouse_path) {
        rt.block_on(table::store::list_tables(&settings.warehouse_path, options))
            .map_err(|source| Error::Compact {
                table: settings.warehouse_path.display().to_string(),
                source: Box::new(source),
            })?
    } else {
        match std::fs::read_dir(&settings.warehouse_path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::Warehouse(e)),
        }
    };
    // A directory named as the Delta format names its log is no table of ours (a stream of
    // that name gets another directory, `table/place.rs`): what an older version left there
    // is not read.
    dirs.retain(|d| {
        d.file_name()
            .is_none_or(|n| !table::place::is_reserved(&n.to_string_lossy()))
    });
    dirs.sort();
    Ok(dirs)
}

/// A runtime for the maintenance subcommands (one worker: they wait on I/O).
fn maintenance_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// `target-warehouse doctor`: the health of every table under the warehouse path. A table
/// that cannot be opened is reported broken, not an error.
pub fn doctor(settings: &Settings) -> Result<Vec<table::health::Health>, Error> {
    let rt = maintenance_runtime()?;
    let mut out = Vec::new();
    for dir in table_dirs(&rt, settings)? {
        let shown = dir.display().to_string();
        let health = rt.block_on(async {
            let started = std::time::Instant::now();
            match table::Table::open_dir(&dir, &settings.storage_options).await {
                Ok(Some((t, _))) => {
                    let open_seconds = started.elapsed().as_secs_f64();
                    let mut h = t.health().await;
                    h.open_seconds = Some(open_seconds);
                    Some(h)
                }
                Ok(None) => None,
                Err(e) => Some(table::health::Health::unreadable(shown, e.to_string())),
            }
        });
        out.extend(health);
    }
    Ok(out)
}

/// `target-warehouse vacuum`: removes (or lists, `dry_run`) every table's unreferenced files
/// older than `retention_hours`, see `table/vacuum.rs`.
pub fn vacuum(
    settings: &Settings,
    retention_hours: u64,
    dry_run: bool,
    force: bool,
) -> Result<Vec<table::vacuum::Vacuumed>, Error> {
    let rt = maintenance_runtime()?;
    let mut out = Vec::new();
    for dir in table_dirs(&rt, settings)? {
        let fail = |source| Error::Vacuum {
            table: dir.display().to_string(),
            source: Box::new(source),
        };
        let Some((mut t, _)) = rt
            .block_on(table::Table::open_dir(&dir, &settings.storage_options))
            .map_err(fail)?
        else {
            continue;
        };
        out.push(
            rt.block_on(t.vacuum(retention_hours, dry_run, force))
                .map_err(fail)?,
        );
    }
    Ok(out)
}

fn compact_tables(settings: &Settings) -> Result<Vec<Compaction>, Error> {
    let rt = maintenance_runtime()?;
    let options = &settings.storage_options;
    let dirs = table_dirs(&rt, settings)?;
    let mut out = Vec::new();
    for dir in dirs {
        let name = dir.display().to_string();
        let fail = |source| Error::Compact {
            table: name.clone(),
            source: Box::new(source),
        };
        let Some((mut table, mut registry)) = rt
            .block_on(table::Table::open_dir(&dir, options))
            .map_err(fail)?
        else {
            continue;
        };
        let merged = match rt.block_on(table::compact::compact(&mut table, &mut registry)) {
            // Another writer replaced some of the files meanwhile: this table is left as it
            // is (nothing lost, nothing committed) and the others are compacted.
            Err(e @ table::TableError::Conflict { .. }) => {
                tracing::warn!(table = %name, error = %e, "compaction skipped; run it again");
                None
            }
            other => other.map_err(fail)?,
        };
        // The compaction is committed; a checkpoint it was due for failed.
        if let Some(e) = table.take_checkpoint_failure() {
            return Err(fail(e));
        }
        out.push((dir, merged));
    }
    Ok(out)
}
