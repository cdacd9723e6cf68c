//! Integration tests of tap-webhook: the receiver's routes called directly (`app`), the real
//! binary over a real socket, crash safety under SIGKILL, and the tap's runs chained by state.

mod admin;
mod app;
mod cli;
mod declared_keys;
mod declared_keys_attack;
mod dedupe_key;
mod flattening;
mod follow;
mod harness;
mod hostile;
mod ledger;
mod logging;
mod operate;
mod operations;
mod receiver;
mod redaction;
mod routing;
mod spool_health;
mod tap;
