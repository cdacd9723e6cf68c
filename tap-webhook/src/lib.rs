//! tap-webhook: receives webhooks durably and drains them as a Singer tap.
//!
//! ```text
//! provider ──POST──▶ receiver (serve) ──group commit──▶ spool (SQLite WAL, fsync)
//!                                                          │
//!            tap run (cron / meltano): bookmark ──▶ SCHEMA / RECORD / STATE on stdout
//! ```
//!
//! - [`settings`]: the config file, validated once;
//! - [`receiver`]: the axum app, authentication, body pipeline, replies, metrics;
//! - [`operation`]: per-record operations (upsert, insert, delete) read from the payload;
//! - [`payload`]: the top level of a webhook payload, split without parsing below it;
//! - [`spool`]: the durable queue between the two;
//! - [`queue`]: the scale-out alternative: receivers send to SQS, the tap drains it;
//! - [`tap`]: discovery, draining from a bookmark, schema inference, state;
//! - [`admin`]: `serve`'s status page on its own address;
//! - [`ops`]: `deliveries`, `status`, `urls`: what the spool holds and refused, for operators.

pub mod admin;
pub mod logs;
pub mod operation;
pub mod ops;
pub mod payload;
pub mod primary_key;
pub mod queue;
pub mod receiver;
pub mod route;
pub mod settings;
pub mod spool;
pub mod tap;

use singer::about::About;

pub const NAME: &str = "tap-webhook";

pub fn about() -> About {
    About {
        name: NAME.into(),
        description:
            "Receives webhooks durably (`tap-webhook serve`) and emits them as Singer records."
                .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities: ["catalog", "discover", "state", "about", "schema-flattening"]
            .map(String::from)
            .to_vec(),
        settings: settings::schema(),
    }
}
