//! `tap-webhook deliveries`: the messages the spool holds (newest first, filtered), one in
//! full (`--show`), and the ledger of refused requests (`--refused`).

use std::io::Write;

use serde_json::{json, Value};

use super::{cell, parse_time, show_time, write_jsonl, write_table, Format, OpsError};
use crate::settings::Settings;
use crate::spool::browse::{self, FieldEquals, MessageFilter};
use crate::spool::ledger::{self, RefusedFilter};
use crate::spool::{open, StoredMessage};

/// What the user asked, as typed (validated by [`run`]).
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub source: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub delivery_id: Option<String>,
    pub where_: Option<String>,
    pub limit: u64,
    /// A message id or sequence (with `refused`: a ledger id).
    pub show: Option<String>,
    pub refused: bool,
    pub format: Option<Format>,
}

pub fn run(settings: &Settings, args: &Args, out: &mut impl Write) -> Result<(), OpsError> {
    let now = singer::clock::now_micros();
    let since_us = args
        .since
        .as_deref()
        .map(|t| parse_time("--since", t, now))
        .transpose()?;
    let until_us = args
        .until
        .as_deref()
        .map(|t| parse_time("--until", t, now))
        .transpose()?;
    let format = Format::or_by_terminal(args.format);
    // Not `open_checked`: a read-only look need not read the whole file first (`quick_check`).
    let conn = open(&settings.spool_path)?;
    if args.refused {
        if args.where_.is_some() {
            return Err(OpsError::Arg(
                "--where looks into message bodies; refused requests keep none to search".into(),
            ));
        }
        if let Some(id) = &args.show {
            let id: i64 = id.parse().map_err(|_| {
                OpsError::Arg(format!(
                    "--refused --show {id:?}: expected a ledger id (a number)"
                ))
            })?;
            let r = ledger::get(&conn, id)?
                .ok_or_else(|| OpsError::Arg(format!("no refused request {id} in the ledger")))?;
            return show_refused(out, &r, format);
        }
        let filter = RefusedFilter {
            source: args.source.clone(),
            since_us,
            until_us,
            delivery_id: args.delivery_id.clone(),
            limit: args.limit,
        };
        let rows = ledger::list(&conn, &filter)?;
        return match format {
            Format::Jsonl => write_jsonl(out, &rows.iter().map(refused_json).collect::<Vec<_>>()),
            Format::Table => Ok(write_table(
                out,
                &[
                    "ID",
                    "AT",
                    "SOURCE",
                    "STATUS",
                    "CODE",
                    "REMOTE",
                    "DELIVERY ID",
                    "SIZE",
                    "REASON",
                ],
                &rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            show_time(r.at_us),
                            cell(&r.source, 32),
                            r.status.to_string(),
                            r.code.clone(),
                            cell(r.remote.as_deref().unwrap_or("-"), 48),
                            cell(r.delivery_id.as_deref().unwrap_or("-"), 40),
                            r.size.map_or("-".into(), |n| n.to_string()),
                            cell(&r.reason, 100),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )?),
        };
    }
    if let Some(key) = &args.show {
        let m = browse::get(&conn, key)?.ok_or_else(|| {
            OpsError::Arg(format!(
                "no message {key:?} in the spool (a message id or sequence; pruned messages are gone)"
            ))
        })?;
        return show_message(out, &m, format);
    }
    let filter = MessageFilter {
        source: args.source.clone(),
        since_us,
        until_us,
        delivery_id: args.delivery_id.clone(),
        field: args
            .where_
            .as_deref()
            .map(FieldEquals::parse)
            .transpose()
            .map_err(OpsError::Arg)?,
        limit: args.limit,
    };
    let rows = browse::list(&conn, &filter)?;
    match format {
        Format::Jsonl => write_jsonl(
            out,
            &rows
                .iter()
                .map(|m| {
                    json!({"seq": m.seq, "id": m.id, "source": m.source,
                        "received_at": singer::datetime::format_micros(m.received_at_us),
                        "delivery_id": m.delivery_id, "part": m.part, "bytes": m.bytes})
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => Ok(write_table(
            out,
            &[
                "RECEIVED",
                "SOURCE",
                "SEQ",
                "ID",
                "DELIVERY ID",
                "PART",
                "BYTES",
            ],
            &rows
                .iter()
                .map(|m| {
                    vec![
                        show_time(m.received_at_us),
                        m.source.clone(),
                        m.seq.to_string(),
                        m.id.clone(),
                        cell(m.delivery_id.as_deref().unwrap_or("-"), 40),
                        m.part.to_string(),
                        m.bytes.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )?),
    }
}

/// A message's JSON: headers and query as objects, the body as JSON (as stored, it parses).
pub fn message_json(m: &StoredMessage) -> Value {
    let parse =
        |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.into()));
    json!({
        "seq": m.seq, "id": m.id, "source": m.source,
        "received_at": singer::datetime::format_micros(m.received_at_us),
        "delivery_id": m.delivery_id, "part": m.part,
        "headers": parse(&m.headers), "query": parse(&m.query), "body": parse(&m.body),
    })
}

/// A refusal's JSON.
pub fn refused_json(r: &ledger::Refusal) -> Value {
    json!({
        "id": r.id, "at": singer::datetime::format_micros(r.at_us), "source": r.source,
        "status": r.status, "code": r.code, "reason": r.reason, "size": r.size,
        "remote": r.remote, "user_agent": r.user_agent, "delivery_id": r.delivery_id,
        "body": r.body,
    })
}

/// Text for a terminal: control characters but newlines and tabs shown escaped, so a hostile
/// body cannot drive the terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c.is_control() && c != '\n' && c != '\t' {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// The body pretty-printed when it is JSON, else as stored.
pub fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn show_message(out: &mut impl Write, m: &StoredMessage, format: Format) -> Result<(), OpsError> {
    if format == Format::Jsonl {
        return write_jsonl(out, &[message_json(m)]);
    }
    writeln!(out, "message      {}", m.id)?;
    writeln!(out, "seq          {}", m.seq)?;
    writeln!(out, "source       {}", m.source)?;
    writeln!(
        out,
        "received     {}",
        singer::datetime::format_micros(m.received_at_us)
    )?;
    writeln!(
        out,
        "delivery id  {}",
        m.delivery_id.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "part         {}", m.part)?;
    for (title, obj) in [("headers", &m.headers), ("query", &m.query)] {
        writeln!(out, "{title} (secrets stored as [REDACTED]):")?;
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(obj) {
            for (k, v) in map {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                writeln!(out, "  {k}: {}", cell(&v, 2000))?;
            }
        }
    }
    // `printable`: JSON escapes C0 controls but not C1 ones (U+009B is a terminal's CSI).
    writeln!(out, "body:\n{}", printable(&pretty(&m.body)))?;
    Ok(())
}

fn show_refused(out: &mut impl Write, r: &ledger::Refusal, format: Format) -> Result<(), OpsError> {
    if format == Format::Jsonl {
        return write_jsonl(out, &[refused_json(r)]);
    }
    let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or("-"), 2000);
    writeln!(out, "refused      {}", r.id)?;
    writeln!(
        out,
        "at           {}",
        singer::datetime::format_micros(r.at_us)
    )?;
    writeln!(out, "source       {}", cell(&r.source, 200))?;
    writeln!(out, "status       {} {}", r.status, r.code)?;
    writeln!(out, "reason       {}", cell(&r.reason, 2000))?;
    writeln!(
        out,
        "size         {}",
        r.size.map_or("-".into(), |n| n.to_string())
    )?;
    writeln!(out, "remote       {}", opt(&r.remote))?;
    writeln!(out, "user agent   {}", opt(&r.user_agent))?;
    writeln!(out, "delivery id  {}", opt(&r.delivery_id))?;
    if let Some(body) = &r.body {
        writeln!(
            out,
            "body (first {} bytes at most):\n{}",
            ledger::MAX_BODY_BYTES,
            printable(body)
        )?;
    }
    Ok(())
}
