//! End-to-end tests with the real binaries and real peers: the receiver over a socket, the tap
//! piped into the target, tables read back by DuckDB and Python `deltalake`, Meltano runs, and
//! Python Singer taps and targets from PyPI.
//!
//! The peers live in the virtualenv `tests/run.sh` installs (`WEBHOOK_TEST_VENV`). Without it
//! these tests say so and pass vacuously, unless `WEBHOOK_REQUIRE_PEERS=1` (set by
//! `tests/run.sh`, hence CI) makes a missing peer a failure.

mod disk_full;
mod docs;
mod harness;
mod interop;
mod meltano;
mod pipeline;
mod scaleout;
mod signatures;
