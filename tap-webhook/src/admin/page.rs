//! The admin page's HTML: a few server-rendered pages, readable on a phone (one column, tables
//! that scroll sideways), every text from a delivery escaped ([`esc`]) so a body holding
//! `<script>` shows as text. The response's CSP forbids scripts besides.

use std::fmt::Write;

use rusqlite::Connection;

use crate::ops::deliveries::pretty;
use crate::ops::show_time;
use crate::spool::browse::{self, MessageFilter};
use crate::spool::ledger::{self, RefusedFilter};

/// Deliveries of each kind listed on the overview.
const LAST: u64 = 25;

/// Text made safe inside HTML elements and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment made safe in a URL (ids are UUIDs or numbers; anything else is encoded).
fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn frame(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>\
body{{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:0.8rem;color:#222}}\
h1{{font-size:1.3rem}}h2{{font-size:1.1rem;margin-top:1.5rem}}\
.scroll{{overflow-x:auto}}table{{border-collapse:collapse;font-size:0.9rem}}\
th,td{{text-align:left;padding:0.25rem 0.6rem;border-bottom:1px solid #ddd;white-space:nowrap}}\
pre{{background:#f5f5f5;padding:0.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}}\
.code{{font-weight:600;color:#a00}}.meter{{background:#eee;height:0.6rem;max-width:30rem}}\
.meter div{{background:#36c;height:100%}}a{{color:#15c}}\
</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<div class=\"scroll\"><table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            // Cells arrive escaped (some hold a link).
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

/// Sources with their counts and last delivery, spool depth against its limit, the last
/// deliveries accepted and refused.
pub fn overview(
    conn: &Connection,
    sources: &[String],
    max_spool_bytes: u64,
) -> Result<String, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut b = String::from("<h1>tap-webhook</h1>");
    let used = browse::bytes_in_use(conn).map_err(e)?;
    let pct = used as f64 * 100.0 / max_spool_bytes.max(1) as f64;
    let _ = write!(
        b,
        "<h2>Spool</h2><p>{:.1} MiB of {:.1} MiB (max_spool_bytes): {:.1}%</p>\
         <div class=\"meter\"><div style=\"width:{:.1}%\"></div></div>",
        used as f64 / 1048576.0,
        max_spool_bytes as f64 / 1048576.0,
        pct,
        pct.min(100.0)
    );
    let hour_ago = singer::clock::now_micros() - 3_600_000_000;
    let refused_hour = ledger::counts_since(conn, hour_ago).map_err(e)?;
    let mut rows = Vec::new();
    for name in sources {
        let c = browse::source_counts(conn, name, 0).map_err(e)?;
        let refused: Vec<String> = refused_hour
            .iter()
            .filter(|(s, _, _)| s == name)
            .map(|(_, code, n)| format!("<span class=\"code\">{}</span>×{n}", esc(code)))
            .collect();
        rows.push(vec![
            esc(name),
            c.held.to_string(),
            if refused.is_empty() {
                "-".into()
            } else {
                refused.join(" ")
            },
            c.newest_us.map_or("-".into(), show_time),
            c.waiting_bytes.to_string(),
        ]);
    }
    b.push_str("<h2>Sources</h2>");
    table(
        &mut b,
        &[
            "source",
            "messages",
            "refused (last hour)",
            "last delivery",
            "bytes",
        ],
        &rows,
    );
    let accepted = browse::list(
        conn,
        &MessageFilter {
            limit: LAST,
            ..MessageFilter::default()
        },
    )
    .map_err(e)?;
    b.push_str("<h2>Last deliveries accepted</h2>");
    let rows: Vec<Vec<String>> = accepted
        .iter()
        .map(|m| {
            vec![
                esc(&m.source),
                format!(
                    "<a href=\"/admin/delivery/{}\">{}</a>",
                    seg(&m.id),
                    show_time(m.received_at_us)
                ),
                esc(m.delivery_id.as_deref().unwrap_or("-")),
                m.bytes.to_string(),
            ]
        })
        .collect();
    table(
        &mut b,
        &["source", "received", "delivery id", "bytes"],
        &rows,
    );
    let refused = ledger::list(
        conn,
        &RefusedFilter {
            limit: LAST,
            ..RefusedFilter::default()
        },
    )
    .map_err(e)?;
    b.push_str("<h2>Last requests refused</h2>");
    let rows: Vec<Vec<String>> = refused
        .iter()
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/admin/refused/{}\">{} <span class=\"code\">{}</span></a>",
                    r.id,
                    r.status,
                    esc(&r.code)
                ),
                esc(&r.source),
                show_time(r.at_us),
                esc(r.remote.as_deref().unwrap_or("-")),
                esc(&r.reason),
            ]
        })
        .collect();
    table(
        &mut b,
        &["status", "source", "at", "remote", "reason"],
        &rows,
    );
    Ok(frame("tap-webhook status", &b))
}

fn fields(b: &mut String, pairs: &[(&str, String)]) {
    b.push_str("<div class=\"scroll\"><table><tbody>");
    for (k, v) in pairs {
        let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    b.push_str("</tbody></table></div>");
}

/// One stored message: headers as stored (secrets `[REDACTED]`), the body pretty-printed.
pub fn delivery(conn: &Connection, id: &str) -> Result<Option<String>, String> {
    let Some(m) = browse::get(conn, id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut b = String::from("<p><a href=\"/admin\">← status</a></p><h1>Delivery</h1>");
    fields(
        &mut b,
        &[
            ("message", m.id.clone()),
            ("sequence", m.seq.to_string()),
            ("source", m.source.clone()),
            (
                "received",
                singer::datetime::format_micros(m.received_at_us),
            ),
            (
                "delivery id",
                m.delivery_id.clone().unwrap_or_else(|| "-".into()),
            ),
            ("part", m.part.to_string()),
        ],
    );
    let _ = write!(
        b,
        "<h2>Headers (as stored; secrets redacted)</h2><pre>{}</pre>\
         <h2>Query</h2><pre>{}</pre><h2>Body</h2><pre>{}</pre>",
        esc(&pretty(&m.headers)),
        esc(&pretty(&m.query)),
        esc(&pretty(&m.body))
    );
    Ok(Some(frame("delivery", &b)))
}

/// One refused request from the ledger.
pub fn refused(conn: &Connection, id: i64) -> Result<Option<String>, String> {
    let Some(r) = ledger::get(conn, id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut b = String::from("<p><a href=\"/admin\">← status</a></p><h1>Refused request</h1>");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    fields(
        &mut b,
        &[
            ("at", singer::datetime::format_micros(r.at_us)),
            ("source", r.source.clone()),
            ("status", format!("{} {}", r.status, r.code)),
            ("reason", r.reason.clone()),
            ("size", r.size.map_or("-".into(), |n| n.to_string())),
            ("remote", opt(&r.remote)),
            ("user agent", opt(&r.user_agent)),
            ("delivery id", opt(&r.delivery_id)),
        ],
    );
    if let Some(body) = &r.body {
        let _ = write!(
            b,
            "<h2>Body (first {} bytes at most)</h2><pre>{}</pre>",
            ledger::MAX_BODY_BYTES,
            esc(body)
        );
    }
    Ok(Some(frame("refused request", &b)))
}

pub fn unauthorized() -> String {
    frame(
        "unauthorized",
        "<h1>401</h1><p>An admin token is required: <code>Authorization: Bearer …</code>, or \
         <code>?token=…</code> once in a browser.</p>",
    )
}

pub fn not_found() -> String {
    frame(
        "not found",
        "<h1>404</h1><p>No such delivery (pruned, or never stored).</p>",
    )
}

pub fn failed() -> String {
    frame(
        "error",
        "<h1>500</h1><p>The spool could not be read; see the server's log.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_a_delivery_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
