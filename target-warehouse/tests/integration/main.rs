//! Integration tests: the real `target-warehouse` binary fed Singer lines, its tables read back
//! with deltalake itself (log, files, Parquet) and compared value by value.

mod deletion_vectors;
mod directories;
mod disk_full;
mod errors;
mod exactly_once;
mod failures;
mod harness;
mod health;
mod inserts;
mod load_methods;
mod maintenance;
mod producers;
mod quarantine;
mod quarantine_batch;
mod races;
mod sdk_streams;
mod spill;
mod types;
mod wide;
