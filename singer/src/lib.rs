//! The Singer protocol, shared by `tap-webhook` and `target-warehouse`.
//!
//! A Singer pipeline is a tap printing JSON lines (SCHEMA, RECORD, STATE, ...) on stdout and a
//! target reading them on stdin. This crate holds what both sides need:
//!
//! - [`message`]: the message types, parsed borrowing from the line so a target can decode a
//!   record's raw JSON itself (no intermediate DOM);
//! - [`reader`]: a streaming line reader that accepts very long lines and numbers every line;
//! - [`writer`]: one message per line, flushed where the protocol needs it;
//! - [`catalog`]: catalogs and their metadata in every spelling taps and Meltano use;
//! - [`config`]: `--config FILE` (repeatable) and `--config ENV` loading;
//! - [`metrics`]: progress logs and Singer `METRIC:` lines on stderr;
//! - [`about`]: `--about` in text, JSON and Markdown from one JSON Schema of the settings;
//! - [`state_file`]: reading `--state` (the last of the target's state lines);
//! - [`report`]: a failure printed as one line, each cause once;
//! - [`signals`]: SIGTERM / SIGINT as a request to stop cleanly (feature `signals`);
//! - [`sdc`]: the `_sdc_*` metadata column names;
//! - [`datetime`]: calendar dates and RFC 3339 text of epoch microseconds;
//! - [`clock`]: the wall clock in epoch units;
//! - [`json`]: a string escaper for JSON spliced by hand from raw parts;
//! - [`fields`]: an object's top-level fields, values raw (the one splitter).
//!
//! ```
//! use singer::message::{parse_message, Message};
//! let line = br#"{"type":"RECORD","stream":"data","record":{"id":1}}"#;
//! match parse_message(line).unwrap() {
//!     Message::Record(r) => assert_eq!(r.record.get(), r#"{"id":1}"#),
//!     _ => unreachable!(),
//! }
//! ```

pub mod about;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod config_error;
pub mod datetime;
pub mod fields;
pub mod flattened;
pub mod json;
pub mod message;
pub mod metrics;
pub mod reader;
pub mod report;
pub mod sdc;
#[cfg(feature = "signals")]
pub mod signals;
pub mod state_file;
pub mod writer;
