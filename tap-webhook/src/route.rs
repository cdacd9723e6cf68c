//! Routing a source's messages to one Singer stream per event type, and filtering them.
//!
//! One webhook URL usually carries many event types of different shapes (GitHub's
//! `X-GitHub-Event`, Stripe's `type`, Shopify's `X-Shopify-Topic`). A source's `stream_from`
//! names where a message says its type (a captured header, or a JSON pointer into the payload);
//! the tap then emits it to the stream `<source>__<value>` ([`stream_name`]: sanitized, so every
//! engine takes it as a table name). Messages without a value, and values past the source's
//! `max_streams` distinct ones in a run, go to the source's own stream. `include` / `exclude`
//! drop messages by value in the tap: the spool keeps them, and the source's bookmark still
//! moves past them. Routing happens in the tap, never at receipt, so changing it re-shapes
//! nothing already stored and a replay of older messages follows today's settings.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::payload::{at_pointer, parse_pointer, show_pointer, Field};

/// Distinct routed streams per source and run, unless `max_streams` says otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 100;
/// The longest routed value kept in a stream name, in characters.
const MAX_VALUE_CHARS: usize = 64;

/// Where a value is, as written: exactly one of the two. The syntax of `stream_from` and of
/// each part of `primary_key` ([`crate::primary_key`]).
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A request header (`X-GitHub-Event`); it is captured with every message.
    pub header: Option<String>,
    /// A JSON pointer into the payload (`/type`).
    pub pointer: Option<String>,
}

/// Where a message holds a value (its type, a key part): a captured header or a place in the
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFrom {
    /// A lower-cased header name.
    Header(String),
    /// A parsed JSON pointer.
    Pointer(Vec<String>),
}

impl RouteFrom {
    /// Validates `{"header": …}` or `{"pointer": …}`; `Err` says what is wrong.
    pub fn parse(c: &RouteConfig) -> Result<RouteFrom, String> {
        match (&c.header, &c.pointer) {
            (Some(h), None) => {
                if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(format!("{h:?} is not a valid header name"));
                }
                Ok(RouteFrom::Header(h.to_ascii_lowercase()))
            }
            (None, Some(p)) => parse_pointer(p)
                .map(RouteFrom::Pointer)
                .ok_or_else(|| format!("pointer {p:?} must start with `/` (`/type`)")),
            _ => Err("give exactly one of `header` and `pointer`".into()),
        }
    }

    /// Where the value is read, as the user wrote it.
    pub fn describe(&self) -> String {
        match self {
            RouteFrom::Header(h) => format!("header {h:?}"),
            RouteFrom::Pointer(t) => format!("pointer {:?}", show_pointer(t)),
        }
    }
}

/// The value of a captured header in a message's stored headers (a JSON object text).
pub fn stored_header(headers: &str, name: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(headers) {
        Ok(Value::Object(mut m)) => m.remove(name),
        _ => None,
    }
}

/// A validated routing of a source.
#[derive(Debug, Clone)]
pub struct Route {
    pub from: RouteFrom,
    /// Only these values are emitted (messages without a value always are); `None`: all.
    include: Option<BTreeSet<String>>,
    exclude: BTreeSet<String>,
    /// Distinct routed streams per run; later values go to the source's own stream.
    pub max_streams: usize,
}

/// What the tap does with a message of a routed source.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    /// To the source's own stream (no value, or not a usable one).
    Own,
    /// To the stream of this value (sanitized into a name by [`stream_name`]).
    Routed(String),
    /// Filtered out by `include` / `exclude`.
    Dropped,
}

impl Route {
    /// Validates the settings; `Err` is `(setting, detail)`, the setting relative to the source.
    pub fn build(
        from: Option<&RouteConfig>,
        include: Option<Vec<String>>,
        exclude: Option<Vec<String>>,
        max_streams: Option<usize>,
    ) -> Result<Option<Route>, (&'static str, String)> {
        let Some(c) = from else {
            for (setting, given) in [
                ("include", include.is_some()),
                ("exclude", exclude.is_some()),
                ("max_streams", max_streams.is_some()),
            ] {
                if given {
                    return Err((
                        setting,
                        "needs `stream_from` (the values it lists are routed values)".into(),
                    ));
                }
            }
            return Ok(None);
        };
        let from = RouteFrom::parse(c).map_err(|detail| ("stream_from", detail))?;
        let max_streams = max_streams.unwrap_or(DEFAULT_MAX_STREAMS);
        if max_streams == 0 {
            return Err((
                "max_streams",
                "must be at least 1 (unset: routing off)".into(),
            ));
        }
        Ok(Some(Route {
            from,
            include: include.map(|v| v.into_iter().collect()),
            exclude: exclude.unwrap_or_default().into_iter().collect(),
            max_streams,
        }))
    }

    /// The header the receiver must capture for this routing.
    pub fn header(&self) -> Option<&str> {
        match &self.from {
            RouteFrom::Header(h) => Some(h),
            RouteFrom::Pointer(_) => None,
        }
    }

    /// The routed value of a message: `headers` its stored headers (a JSON object text),
    /// `fields` its payload's top level (`None`: not an object). Strings as they are, numbers
    /// and booleans as JSON text; null, objects, arrays, empty strings: no value.
    pub fn value(&self, headers: &str, fields: Option<&[Field<'_>]>) -> Option<String> {
        let v = match &self.from {
            RouteFrom::Header(h) => stored_header(headers, h),
            RouteFrom::Pointer(tokens) => at_pointer(fields?, tokens).ok().flatten(),
        };
        match v? {
            Value::String(s) if !s.is_empty() => Some(s),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    /// The message's fate from its value (before the per-run bound).
    pub fn fate(&self, value: Option<String>) -> Fate {
        match value {
            None => Fate::Own,
            Some(v) if self.exclude.contains(&v) => Fate::Dropped,
            Some(v) if self.include.as_ref().is_some_and(|i| !i.contains(&v)) => Fate::Dropped,
            Some(v) => Fate::Routed(v),
        }
    }

    /// Where the value is read, as the user wrote it.
    pub fn describe(&self) -> String {
        self.from.describe()
    }
}

/// A routed source's streams are `<source>__<value>`: no other source may be named so.
/// `sources`: each source's name and whether it is routed. `Err` is `(setting, detail)`.
pub fn check_names<'a>(
    sources: impl Iterator<Item = (&'a str, bool)> + Clone,
) -> Result<(), (String, String)> {
    for (routed, _) in sources.clone().filter(|(_, r)| *r) {
        let prefix = format!("{routed}__");
        if let Some((other, _)) = sources.clone().find(|(n, _)| n.starts_with(&prefix)) {
            return Err((
                format!("sources.{other}"),
                format!("the name is one of source {routed:?}'s routed streams"),
            ));
        }
    }
    Ok(())
}

/// The stream of a routed value: `<source>__<value>`, the value lower-cased with every run of
/// characters other than ASCII letters and digits made one `_` (`customer.subscription.created`
/// → `customer_subscription_created`), trimmed of `_` at both ends and cut at 64 characters.
/// A value reduced to nothing, or to `rejected` (the name of the source's rejected stream),
/// gets a trailing `_`. A routed name never holds `__` after the source's, so it never equals
/// another routed stream's `<stream>__rejected`.
pub fn stream_name(source: &str, value: &str) -> String {
    let mut v = String::with_capacity(value.len().min(MAX_VALUE_CHARS));
    for ch in value.chars() {
        if ch.is_ascii_alphanumeric() {
            v.push(ch.to_ascii_lowercase());
        } else if !v.ends_with('_') {
            v.push('_');
        }
    }
    let mut v: String = v.trim_matches('_').chars().take(MAX_VALUE_CHARS).collect();
    while v.ends_with('_') {
        v.pop();
    }
    if v.is_empty() || v == "rejected" {
        v.push('_');
    }
    format!("{source}__{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::top_level;

    fn route(c: Value, include: Option<&[&str]>, exclude: Option<&[&str]>) -> Route {
        let own = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
        Route::build(
            Some(&serde_json::from_value(c).unwrap()),
            own(include),
            own(exclude),
            None,
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn names_are_sanitized_and_never_collide_with_rejected_streams() {
        for (value, name) in [
            ("push", "gh__push"),
            ("pull_request", "gh__pull_request"),
            (
                "customer.subscription.created",
                "gh__customer_subscription_created",
            ),
            ("Orders/Create", "gh__orders_create"),
            ("--a  b--", "gh__a_b"),
            ("x__rejected", "gh__x_rejected"),
            ("rejected", "gh__rejected_"),
            ("é", "gh___"),
            ("42", "gh__42"),
        ] {
            assert_eq!(stream_name("gh", value), name, "{value}");
        }
        let long = "a".repeat(500);
        assert_eq!(stream_name("s", &long).len(), 3 + 64);
        // A cut that ends on a separator does not leave one behind.
        let cut = format!("{}.b", "a".repeat(63));
        assert_eq!(stream_name("s", &cut), format!("s__{}", "a".repeat(63)));
    }

    #[test]
    fn values_from_headers_or_pointers_and_filters() {
        let r = route(
            serde_json::json!({"header": "X-GitHub-Event"}),
            None,
            Some(&["ping"]),
        );
        assert_eq!(r.header(), Some("x-github-event"));
        let v = r.value(r#"{"x-github-event":"push"}"#, None);
        assert_eq!(r.fate(v), Fate::Routed("push".into()));
        assert_eq!(
            r.fate(r.value(r#"{"x-github-event":"ping"}"#, None)),
            Fate::Dropped
        );
        assert_eq!(r.fate(r.value("{}", None)), Fate::Own);

        let r = route(
            serde_json::json!({"pointer": "/data/kind"}),
            Some(&["a", "1"]),
            None,
        );
        let body = r#"{"data":{"kind":"a"},"n":1}"#;
        let f = top_level(body).unwrap();
        assert_eq!(r.fate(r.value("{}", Some(&f))), Fate::Routed("a".into()));
        let body = r#"{"data":{"kind":1}}"#;
        let f = top_level(body).unwrap();
        assert_eq!(r.fate(r.value("{}", Some(&f))), Fate::Routed("1".into()));
        for body in [r#"{"data":{"kind":"b"}}"#, r#"{"data":{"kind":true}}"#] {
            let f = top_level(body).unwrap();
            assert_eq!(r.fate(r.value("{}", Some(&f))), Fate::Dropped, "{body}");
        }
        // No usable value: the source's own stream, whatever the filters say.
        for body in [
            r#"{"data":{"kind":null}}"#,
            r#"{"data":{"kind":{}}}"#,
            r#"{"data":[]}"#,
            r#"{"data":{"kind":""}}"#,
        ] {
            let f = top_level(body).unwrap();
            assert_eq!(r.fate(r.value("{}", Some(&f))), Fate::Own, "{body}");
        }
        assert_eq!(r.fate(r.value("{}", None)), Fate::Own);
    }

    #[test]
    fn bad_settings_are_named() {
        let b = |c: Value, inc: Option<Vec<String>>, max: Option<usize>| {
            Route::build(Some(&serde_json::from_value(c).unwrap()), inc, None, max).map(|_| ())
        };
        assert_eq!(
            b(serde_json::json!({}), None, None).unwrap_err().0,
            "stream_from"
        );
        assert_eq!(
            b(
                serde_json::json!({"header": "a", "pointer": "/b"}),
                None,
                None
            )
            .unwrap_err()
            .0,
            "stream_from"
        );
        assert!(b(serde_json::json!({"pointer": "type"}), None, None)
            .unwrap_err()
            .1
            .contains("start with `/`"));
        assert!(b(serde_json::json!({"header": "a b"}), None, None)
            .unwrap_err()
            .1
            .contains("header name"));
        assert_eq!(
            b(serde_json::json!({"header": "a"}), None, Some(0))
                .unwrap_err()
                .0,
            "max_streams"
        );
        let e = Route::build(None, Some(vec!["ping".into()]), None, None).unwrap_err();
        assert_eq!(e.0, "include");
        assert!(Route::build(None, None, None, None).unwrap().is_none());
    }
}
