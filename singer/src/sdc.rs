//! The `_sdc_*` metadata column names, shared by the tap (which sets some of them on every
//! record) and the target (which fills, keeps or acts on them).
//!
//! SDK targets treat all of `_sdc_extracted_at, _sdc_received_at, _sdc_batched_at,
//! _sdc_deleted_at, _sdc_sequence, _sdc_table_version, _sdc_sync_started_at` as theirs (BRIEF
//! §3); `__sdc_primary_key` (two underscores) is Stitch's generated key and passes through every
//! target.

/// Orders the versions of a row (the tap: the spool's sequence, an epoch in microseconds); the
/// tap's replication key.
pub const SEQUENCE: &str = "_sdc_sequence";
/// The producer of a record: one tap-webhook spool (one sequence space), by its stable id. The
/// target keeps one high-water mark per (stream, producer), so several spools feeding one table
/// each keep their own.
pub const PRODUCER: &str = "_sdc_producer";
/// When the receiver stored the message (RFC 3339, UTC).
pub const RECEIVED_AT: &str = "_sdc_received_at";
/// The key generated when a stream has no primary key of its own.
pub const PRIMARY_KEY: &str = "__sdc_primary_key";
/// Set on a record that deletes its row (`hard_delete`).
pub const DELETED_AT: &str = "_sdc_deleted_at";
/// The version of a full-table sync (ACTIVATE_VERSION).
pub const TABLE_VERSION: &str = "_sdc_table_version";
/// The record's `time_extracted`.
pub const EXTRACTED_AT: &str = "_sdc_extracted_at";
/// When the target wrote the row's batch.
pub const BATCHED_AT: &str = "_sdc_batched_at";
/// When the sync that produced the row started.
pub const SYNC_STARTED_AT: &str = "_sdc_sync_started_at";
/// The prefix every SDK metadata column name starts with.
pub const PREFIX: &str = "_sdc_";
/// The operation the sender asked for a record (`upsert`, `insert` or `delete`), set by the tap
/// on the records of a source with an `operation` setting; the row keeps it, so every row says
/// what was asked (a delete also carries [`DELETED_AT`]).
pub const OPERATION: &str = "_sdc_operation";
