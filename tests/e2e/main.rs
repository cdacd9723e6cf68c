//! End-to-end tests with the real binaries and real peers: the receiver over a socket, the tap
//! piped into the target, tables read back by DuckDB and Python `deltalake`, Meltano runs, and
//! Python Singer taps and targets from PyPI.
//!
//! The peers live in the virtualenv `tests/run.sh` installs (`WEBHOOK_TEST_VENV`). The tests that
//! need them are `#[ignore]`d with that reason, so a bare `cargo test` lists them as ignored;
//! `tests/run.sh` (hence CI) runs them with `--include-ignored`, and one run without its peers
//! fails, saying how to install them. None of them passes without testing.

mod batch_s3;
mod cron;
mod decimals;
mod declared_keys;
mod declared_keys_attack;
mod deploy;
mod disk_full;
mod docs;
mod flattening;
mod follow;
mod harness;
mod install;
mod interop;
mod meltano;
mod moto;
mod operate;
mod pipeline;
mod postgres;
mod readers;
mod readme;
mod redaction;
mod routing;
mod scaleout;
mod signatures;
mod valmi;
