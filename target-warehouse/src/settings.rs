//! Configuration: the serde mirror of the Meltano settings, its JSON Schema (for `--about` and
//! for typing `TARGET_WAREHOUSE_*` variables), and the validated [`Settings`] the run uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value as Json};

pub use crate::overflow::{DEFAULT_MAX_COLUMNS, MIN_MAX_COLUMNS};

pub const DEFAULT_WAREHOUSE_PATH: &str = "./warehouse";
/// 32 MiB of input JSON per flush: wide sparse rows cost ~1.8 KB each in builders (BRIEF §7);
/// measured peak RSS is about 3× the budget plus ~100 MB (217 MB at 32 MiB, 306 MB at 64 MiB).
pub const DEFAULT_BATCH_SIZE_BYTES: u64 = 32 * 1024 * 1024;
/// Arrow's 32-bit string offsets cap one column of one batch at 2 GiB: stay well below.
pub const MAX_BATCH_SIZE_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_MAX_BATCH_AGE_SECONDS: u64 = 300;
/// Deletion vectors are an opt-in: a table with them needs reader version 3, which many readers
/// (deltalake's `to_pyarrow_table`, older Spark, Trino before 427, Athena…) refuse (issue 21;
/// see `table::readers`).
pub const DEFAULT_DELETION_VECTORS: bool = false;

/// How a stream's batches land in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LoadMethod {
    #[serde(rename = "append-only")]
    AppendOnly,
    #[serde(rename = "upsert")]
    Upsert,
    #[serde(rename = "overwrite")]
    Overwrite,
    /// A key new to the table is inserted; a record of a key already there is skipped
    /// (valmi's Create; see `stream/insert.rs`).
    #[serde(rename = "insert")]
    Insert,
}

impl LoadMethod {
    /// Whether a batch is applied by key against the table's rows (upsert, insert): it is cut
    /// whole and reads the table before its commit.
    pub fn by_key(self) -> bool {
        matches!(self, LoadMethod::Upsert | LoadMethod::Insert)
    }
}

/// The config file(s) as written by the user or Meltano.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory holding one Delta table per stream.
    pub warehouse_path: Option<String>,
    /// `append-only`, `upsert`, `insert` or `overwrite`; unset: upsert when a stream has real key
    /// properties (Stitch's rule), append-only otherwise.
    pub load_method: Option<LoadMethod>,
    /// Delete the key of a record carrying `_sdc_deleted_at` instead of storing it.
    pub hard_delete: Option<bool>,
    /// Upserted tables this target creates get deletion vectors (see `table::dv`); off by
    /// default so that every reader opens every table.
    pub deletion_vectors: Option<bool>,
    /// Flush when this many bytes of input JSON are buffered (all streams together).
    pub batch_size_bytes: Option<u64>,
    /// Optional extra flush trigger per stream, in rows.
    pub batch_size_rows: Option<u64>,
    /// Flush a stream whose oldest buffered row is this old (also while no line arrives).
    /// Fractions are for a continuous stream (`tap-webhook --follow`): `0.5` commits twice a
    /// second.
    pub max_batch_age_seconds: Option<f64>,
    /// Add `_sdc_extracted_at`, `_sdc_received_at`, `_sdc_batched_at`, `_sdc_deleted_at`,
    /// `_sdc_table_version` when the record lacks them.
    pub add_record_metadata: Option<bool>,
    /// At most this many columns per table; the values of properties beyond it go to
    /// `_sdc_overflow` (see `overflow.rs`).
    pub max_columns: Option<u64>,
    /// Object-store warehouses (`s3://…`): the bucket's region (unset: the AWS chain).
    pub aws_region: Option<String>,
    /// An S3-compatible endpoint or a local server (unset: AWS).
    pub aws_endpoint_url: Option<String>,
    /// Allow a plain-HTTP endpoint (local servers).
    pub aws_allow_http: Option<bool>,
    /// Any other `deltalake`/object_store storage option, passed through as is.
    pub storage_options: Option<HashMap<String, String>>,
    /// `fail` (default) or `quarantine` (see `quarantine.rs`).
    pub on_invalid_record: Option<OnInvalidRecord>,
}

/// What a record the target cannot store does to the load.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnInvalidRecord {
    /// Stop the load with the error (line, stream, reason).
    #[default]
    Fail,
    /// Write it to `<stream>__rejected` with the reason and go on.
    Quarantine,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub warehouse_path: PathBuf,
    pub load_method: Option<LoadMethod>,
    pub hard_delete: bool,
    pub deletion_vectors: bool,
    pub batch_size_bytes: usize,
    pub batch_size_rows: Option<usize>,
    pub max_batch_age: Duration,
    pub add_record_metadata: bool,
    pub max_columns: usize,
    /// Storage options for every table (empty for a local warehouse); see `table::store`.
    pub storage_options: HashMap<String, String>,
    pub on_invalid_record: OnInvalidRecord,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warehouse_path: PathBuf::from(DEFAULT_WAREHOUSE_PATH),
            load_method: None,
            hard_delete: false,
            deletion_vectors: DEFAULT_DELETION_VECTORS,
            batch_size_bytes: DEFAULT_BATCH_SIZE_BYTES as usize,
            batch_size_rows: None,
            max_batch_age: Duration::from_secs(DEFAULT_MAX_BATCH_AGE_SECONDS),
            add_record_metadata: true,
            max_columns: DEFAULT_MAX_COLUMNS,
            storage_options: HashMap::new(),
            on_invalid_record: OnInvalidRecord::Fail,
        }
    }
}

/// A batch of at least this many bytes is handed to its data file in eighths as it is parsed
/// (see `Stream::spill`); a smaller one whole, at its end.
pub const MIN_SPILL_BYTES: usize = 256 * 1024;

impl Settings {
    /// Buffered input bytes of a stream that are handed to its data file before the batch
    /// ends: an eighth of `batch_size_bytes`, so that encoding overlaps parsing and memory
    /// holds an eighth of a batch of Arrow builders. `None` for batches too small to bother.
    pub fn spill_bytes(&self) -> Option<usize> {
        let spill = self.batch_size_bytes / 8;
        (spill >= MIN_SPILL_BYTES).then_some(spill)
    }

    pub fn from_map(map: Map<String, Json>) -> Result<Settings, String> {
        let config: Config = serde_json::from_value(Json::Object(map))
            .map_err(|e| format!("invalid config: {e}"))?;
        Settings::from_config(config)
    }

    pub fn from_config(c: Config) -> Result<Settings, String> {
        let batch_size_bytes = c.batch_size_bytes.unwrap_or(DEFAULT_BATCH_SIZE_BYTES);
        if batch_size_bytes == 0 || batch_size_bytes > MAX_BATCH_SIZE_BYTES {
            return Err(format!(
                "batch_size_bytes must be between 1 and {MAX_BATCH_SIZE_BYTES}"
            ));
        }
        if c.batch_size_rows == Some(0) {
            return Err("batch_size_rows must be at least 1".into());
        }
        let max_columns = c.max_columns.unwrap_or(DEFAULT_MAX_COLUMNS as u64);
        if max_columns < MIN_MAX_COLUMNS as u64 {
            return Err(format!(
                "max_columns must be at least {MIN_MAX_COLUMNS} (the metadata columns and \
                 _sdc_overflow need room)"
            ));
        }
        Ok(Settings {
            warehouse_path: PathBuf::from(
                c.warehouse_path
                    .unwrap_or_else(|| DEFAULT_WAREHOUSE_PATH.into()),
            ),
            load_method: c.load_method,
            hard_delete: c.hard_delete.unwrap_or(false),
            deletion_vectors: c.deletion_vectors.unwrap_or(DEFAULT_DELETION_VECTORS),
            batch_size_bytes: batch_size_bytes as usize,
            batch_size_rows: c.batch_size_rows.map(|r| r as usize),
            max_batch_age: max_batch_age(c.max_batch_age_seconds)?,
            add_record_metadata: c.add_record_metadata.unwrap_or(true),
            max_columns: usize::try_from(max_columns).unwrap_or(usize::MAX),
            storage_options: crate::table::store::storage_options(
                c.aws_region.as_deref(),
                c.aws_endpoint_url.as_deref(),
                c.aws_allow_http,
                &c.storage_options.unwrap_or_default(),
            ),
            on_invalid_record: c.on_invalid_record.unwrap_or_default(),
        })
    }
}

/// Smallest `max_batch_age_seconds`: below it a continuous stream would commit (and grow the
/// Delta log) faster than a reader could use the rows.
pub const MIN_MAX_BATCH_AGE_SECONDS: f64 = 0.1;

fn max_batch_age(seconds: Option<f64>) -> Result<Duration, String> {
    let Some(s) = seconds else {
        return Ok(Duration::from_secs(DEFAULT_MAX_BATCH_AGE_SECONDS));
    };
    if !s.is_finite() || s < MIN_MAX_BATCH_AGE_SECONDS {
        return Err(format!(
            "max_batch_age_seconds must be at least {MIN_MAX_BATCH_AGE_SECONDS} (got {s})"
        ));
    }
    Duration::try_from_secs_f64(s)
        .map_err(|e| format!("max_batch_age_seconds {s} is not a duration: {e}"))
}

/// JSON Schema of the config (`schemas/target-warehouse.config.schema.json`), the single
/// source for validation, `--about` and environment typing.
pub const CONFIG_SCHEMA: &str = include_str!("../../schemas/target-warehouse.config.schema.json");

pub fn settings_schema() -> Json {
    serde_json::from_str(CONFIG_SCHEMA).unwrap_or(Json::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_validation() {
        let s = Settings::default();
        assert_eq!(s.warehouse_path, PathBuf::from("./warehouse"));
        assert!(s.add_record_metadata && !s.hard_delete && s.load_method.is_none());
        let m = json!({"load_method": "append-only", "batch_size_bytes": 10});
        let s = Settings::from_map(m.as_object().cloned().unwrap_or_default()).expect("valid");
        assert_eq!(
            (s.load_method, s.batch_size_bytes),
            (Some(LoadMethod::AppendOnly), 10)
        );
        // A fraction for a continuous stream; an integer from an older config still reads.
        for (age, want) in [(json!(0.5), 500), (json!(300), 300_000)] {
            let m = json!({ "max_batch_age_seconds": age });
            let s = Settings::from_map(m.as_object().cloned().unwrap_or_default()).expect("valid");
            assert_eq!(s.max_batch_age.as_millis(), want);
        }
        for age in [json!(0), json!(0.01), json!(-1)] {
            let m = json!({ "max_batch_age_seconds": age });
            let e = Settings::from_map(m.as_object().cloned().unwrap_or_default()).unwrap_err();
            assert!(
                e.contains("max_batch_age_seconds must be at least 0.1"),
                "{e}"
            );
        }
        assert_eq!(
            settings_schema()["properties"]["max_batch_age_seconds"]["minimum"],
            json!(MIN_MAX_BATCH_AGE_SECONDS)
        );
        let bad = json!({"load_methd": "upsert"});
        assert!(Settings::from_map(bad.as_object().cloned().unwrap_or_default()).is_err());
        let schema = settings_schema();
        assert_eq!(
            schema["properties"]["batch_size_bytes"]["default"],
            json!(DEFAULT_BATCH_SIZE_BYTES),
            "the schema's defaults are the code's"
        );
        assert_eq!(
            schema["properties"]["warehouse_path"]["default"],
            json!(DEFAULT_WAREHOUSE_PATH)
        );
        assert_eq!(
            schema["properties"]["max_batch_age_seconds"]["default"],
            json!(DEFAULT_MAX_BATCH_AGE_SECONDS)
        );
        assert_eq!(
            schema["properties"]["max_columns"]["default"],
            json!(DEFAULT_MAX_COLUMNS)
        );
        assert_eq!(
            schema["properties"]["max_columns"]["minimum"],
            json!(MIN_MAX_COLUMNS)
        );
        assert_eq!(s.max_columns, DEFAULT_MAX_COLUMNS);
        assert_eq!(
            schema["properties"]["deletion_vectors"]["default"],
            json!(DEFAULT_DELETION_VECTORS)
        );
        assert!(
            !Settings::default().deletion_vectors,
            "readable everywhere by default"
        );
        let few = json!({"max_columns": 15});
        assert!(
            Settings::from_map(few.as_object().cloned().unwrap_or_default())
                .unwrap_err()
                .contains("max_columns must be at least 16")
        );
        let bad = json!({"batch_size_bytes": 0});
        assert!(Settings::from_map(bad.as_object().cloned().unwrap_or_default()).is_err());
    }
}
