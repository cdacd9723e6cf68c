//! Running the binary and reading a table back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Value};

pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn stdout_lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("stdout carries JSON state lines only"))
            .collect()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
}

/// Runs the target over `input` with `config` (warehouse_path is added).
pub fn run(warehouse: &Path, config: Value, input: &str) -> Run {
    run_env(warehouse, config, input, &[])
}

/// [`run`] with environment variables (a failpoint).
pub fn run_env(warehouse: &Path, config: Value, input: &str, env: &[(&str, &str)]) -> Run {
    start(warehouse, config, input, env).finish()
}

/// A run started and not waited for (see [`start`]).
pub struct Started {
    child: std::process::Child,
    writer: std::thread::JoinHandle<()>,
}

impl Started {
    /// Waits for the run to end.
    pub fn finish(self) -> Run {
        let out = self.child.wait_with_output().expect("wait");
        let _ = self.writer.join();
        Run { out }
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }
}

/// Starts the target over `input` with `config` and `env` without waiting for it, so that two
/// loads can run at once.
pub fn start(warehouse: &Path, config: Value, input: &str, env: &[(&str, &str)]) -> Started {
    let mut config = config.as_object().cloned().unwrap_or_default();
    config.insert(
        "warehouse_path".into(),
        Value::String(warehouse.display().to_string()),
    );
    let bytes = serde_json::to_vec(&config).expect("json");
    // `compact` reads the config the last run was given from here.
    std::fs::write(warehouse.with_extension("config.json"), &bytes).expect("write config");
    // Each process reads its own copy: another run started meanwhile rewrites the one above.
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cfg_path = warehouse.with_extension(format!("config.{n}.json"));
    std::fs::write(&cfg_path, &bytes).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .arg("--config")
        .arg(&cfg_path)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn target-warehouse");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(data.as_bytes());
    });
    Started { child, writer }
}

/// Starts the target on `config_path` with piped stdin and stdout (stderr dropped), for tests
/// that feed it and kill it midway.
pub fn spawn(config_path: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn target-warehouse")
}

/// `target-warehouse compact` on the warehouse's config as [`run`] last wrote it; must succeed.
pub fn compact(warehouse: &Path) -> Output {
    let cfg = warehouse.with_extension("config.json");
    let out = Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .args(["--config", &cfg.display().to_string(), "compact"])
        .output()
        .expect("compact");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Singer lines from JSON values.
pub fn lines(msgs: &[Value]) -> String {
    msgs.iter().map(|m| format!("{m}\n")).collect()
}

pub fn warehouse() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = dir.path().join("warehouse");
    (dir, wh)
}

/// A table as read back: schema, every file's schema, rows as JSON objects, the txn version.
pub struct TableRead {
    pub schema: SchemaRef,
    pub file_schemas: Vec<SchemaRef>,
    pub rows: Vec<Map<String, Value>>,
    pub txn: Option<i64>,
    pub version: u64,
}

/// The `txn` version of `app_id` in the table at `root`.
pub fn txn_version(root: &Path, app_id: &str) -> Option<i64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let url = deltalake::ensure_table_uri(root.to_string_lossy()).expect("url");
        let table = deltalake::open_table(url).await.expect("open");
        table
            .snapshot()
            .expect("state")
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
            .expect("txn")
    })
}

pub fn read_table(root: &Path, stream: &str) -> TableRead {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let url = deltalake::ensure_table_uri(root.to_string_lossy()).expect("url");
        let table = deltalake::open_table(url).await.expect("open table");
        let state = table.snapshot().expect("state");
        let txn = state
            .transaction_version(
                table.log_store().as_ref(),
                format!("target-warehouse:{stream}"),
            )
            .await
            .expect("txn");
        let files: Vec<(String, Option<_>)> = state
            .log_data()
            .iter()
            .map(|f| (f.path().into_owned(), f.deletion_vector_descriptor()))
            .collect();
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut file_schemas = Vec::new();
        for (p, dv) in &files {
            let deleted = dv
                .as_ref()
                .map(|d| deleted_rows(root, d))
                .unwrap_or_default();
            let file = std::fs::File::open(root.join(p)).expect("data file");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader");
            let mut schema = None;
            let mut row = 0u64;
            for b in reader {
                let b = b.expect("batch");
                schema = Some(b.schema());
                // Rows the file's deletion vector deletes are not in the table.
                let n = b.num_rows() as u64;
                batches.push(
                    target_warehouse::table::dv::drop_deleted(b, row, &deleted).expect("filter"),
                );
                row += n;
            }
            if let Some(s) = schema {
                file_schemas.push(s);
            }
        }
        // The newest files carry the full schema; older ones lack later columns (nulls).
        let schema = file_schemas
            .iter()
            .max_by_key(|s| s.fields().len())
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::new(deltalake::arrow::datatypes::Schema::empty()));
        let readable = readable_schema(&schema);
        let batches: Vec<RecordBatch> = batches.iter().map(|b| conform(b, &readable)).collect();
        let all = concat_batches(&readable, &batches).expect("one schema");
        let mut buf = Vec::new();
        {
            let mut w = deltalake::arrow::json::ArrayWriter::new(&mut buf);
            w.write(&all).expect("json");
            w.finish().expect("json");
        }
        let rows: Vec<Map<String, Value>> = if buf.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&buf).expect("rows")
        };
        TableRead {
            schema,
            file_schemas,
            rows,
            txn,
            version: state.version(),
        }
    })
}

/// The rows a deletion vector deletes (read with the target's own reader of the format; the
/// end-to-end tests read the same tables with DuckDB's and deltalake's).
pub fn deleted_rows(
    root: &Path,
    d: &deltalake::kernel::DeletionVectorDescriptor,
) -> roaring::RoaringTreemap {
    use target_warehouse::table::dv;
    let bitmap = match dv::locate(d).expect("a readable descriptor") {
        dv::Location::Inline(bytes) => dv::parse(&bytes),
        dv::Location::File { path, offset } => dv::read_at(
            &std::fs::read(root.join(path)).expect("the DV file"),
            offset,
            d.size_in_bytes,
        ),
    }
    .expect("a valid deletion vector");
    assert_eq!(
        bitmap.len() as i64,
        d.cardinality,
        "the descriptor's cardinality"
    );
    bitmap
}

impl TableRead {
    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
    /// Rows sorted by a column's JSON text, for order-independent comparisons.
    pub fn sorted_by(&self, col: &str) -> Vec<Map<String, Value>> {
        let mut rows = self.rows.clone();
        rows.sort_by_key(|r| r.get(col).map(|v| v.to_string()).unwrap_or_default());
        rows
    }
}

pub fn schema_msg(stream: &str, props: Value, keys: &[&str]) -> Value {
    serde_json::json!({"type": "SCHEMA", "stream": stream, "schema": {"type": "object", "properties": props}, "key_properties": keys})
}

/// The SCHEMA of a stream keyed by an integer `id`, with a string `v`.
pub fn id_v_schema(stream: &str) -> Value {
    schema_msg(
        stream,
        json!({"id": {"type": "integer"}, "v": {"type": "string"}}),
        &["id"],
    )
}

pub fn record(stream: &str, rec: Value) -> Value {
    serde_json::json!({"type": "RECORD", "stream": stream, "record": rec})
}

pub fn state(v: Value) -> Value {
    serde_json::json!({"type": "STATE", "value": v})
}

/// Decimals become text: JSON numbers would turn 30-digit integers into floats.
fn readable_schema(schema: &SchemaRef) -> SchemaRef {
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Decimal128(..) => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone(),
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

fn conform(batch: &RecordBatch, schema: &SchemaRef) -> RecordBatch {
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => deltalake::arrow::compute::cast(c, f.data_type()).expect("cast"),
            None => deltalake::arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).expect("conformed batch")
}

/// Our files in a table's directory (`part-<uuid>.zstd.parquet`, `deletion_vector_<uuid>.bin`)
/// that no log entry names (a data file by its path, a deletion vector file by the z85 form of
/// its UUID): what a failed run must not leave behind.
pub fn unreferenced_files(table: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(table) else {
        return Vec::new();
    };
    let mut log = Vec::new();
    if let Ok(entries) = std::fs::read_dir(table.join("_delta_log")) {
        for e in entries {
            let path = e.expect("log entry").path();
            if path.extension().is_some_and(|x| x == "json") {
                log.extend(std::fs::read(&path).expect("log entry"));
            }
        }
    }
    let log = String::from_utf8_lossy(&log).into_owned();
    let mut stray: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let key = if name.starts_with("part-") && name.ends_with(".parquet") {
                name.clone()
            } else if let Some(uuid) = name
                .strip_prefix("deletion_vector_")
                .and_then(|r| r.strip_suffix(".bin"))
            {
                let uuid = uuid::Uuid::parse_str(uuid).expect("a DV file's UUID");
                z85::encode(uuid.as_bytes())
            } else {
                return false;
            };
            !log.contains(&key)
        })
        .collect();
    stray.sort();
    stray
}
