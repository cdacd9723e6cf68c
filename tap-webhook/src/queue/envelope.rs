//! The SQS message body: one delivery as the spool would store it, as compact JSON.
//!
//! ```text
//! {"v":1,"source":"data","received_at":1764080444123456,"delivery_id":"d-5",
//!  "headers":{…},"query":{…},"messages":[{"id":"0193…","part":0,"body":{…}}]}
//! ```
//!
//! One SQS message carries one delivery (all the parts of a JSON array body), so the drain hands
//! the spool exactly what the receiver would have: one write request per delivery, deduplicated
//! by its delivery id in the spool's write transaction. Each part keeps the id the RECEIVER gave
//! it, which is how a message SQS redelivers is recognised. Bodies, headers and query are
//! embedded as raw JSON (they are valid UTF-8 JSON after the receiver's checks), so the bytes
//! the provider sent survive the trip exactly, without escaping overhead.
//!
//! A delivery whose envelope exceeds the claim-check threshold travels in S3 instead; the SQS
//! message is then only a pointer: `{"v":1,"s3":{"bucket":"b","key":"k"}}` (see `claim`).

use serde::Deserialize;
use serde_json::value::RawValue;

use singer::json::push_str;

use crate::spool::NewMessage;

pub const VERSION: u32 = 1;

/// One spool message inside an envelope.
#[derive(Debug, Deserialize)]
struct Part {
    id: String,
    part: u32,
    body: Box<RawValue>,
}

/// What an SQS message body can be: a delivery, or a pointer to one in S3. Unknown fields are
/// ignored (a later receiver may add some); an incompatible change bumps `v`.
#[derive(Debug, Deserialize)]
struct Wire {
    v: u32,
    source: Option<String>,
    received_at: Option<i64>,
    delivery_id: Option<String>,
    headers: Option<Box<RawValue>>,
    query: Option<Box<RawValue>>,
    messages: Option<Vec<Part>>,
    s3: Option<Pointer>,
}

/// Where a claim-checked envelope lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Pointer {
    pub bucket: String,
    pub key: String,
}

/// A delivery as decoded from a queue message: the spool messages with the receiver's ids.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub ids: Vec<String>,
    pub messages: Vec<NewMessage>,
}

/// A decoded SQS message body.
#[derive(Debug, Clone)]
pub enum Decoded {
    Delivery(Delivery),
    ClaimCheck(Pointer),
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a tap-webhook envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("envelope version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
    #[error("envelope lacks `{0}`")]
    Missing(&'static str),
}

/// Encodes the messages of one delivery (all from one request: same source, receipt time,
/// delivery id, headers and query) with the ids the receiver assigned.
pub fn encode(messages: &[NewMessage], ids: &[String]) -> String {
    let bytes: usize = messages.iter().map(|m| m.body.len() + 64).sum();
    let mut out = String::with_capacity(256 + bytes);
    let Some(first) = messages.first() else {
        return format!("{{\"v\":{VERSION},\"messages\":[]}}");
    };
    out.push_str(&format!("{{\"v\":{VERSION},\"source\":"));
    push_str(&mut out, &first.source);
    out.push_str(&format!(",\"received_at\":{}", first.received_at_us));
    if let Some(d) = &first.delivery_id {
        out.push_str(",\"delivery_id\":");
        push_str(&mut out, d);
    }
    out.push_str(",\"headers\":");
    out.push_str(&first.headers);
    out.push_str(",\"query\":");
    out.push_str(&first.query);
    out.push_str(",\"messages\":[");
    for (i, (m, id)) in messages.iter().zip(ids).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        push_str(&mut out, id);
        out.push_str(&format!(",\"part\":{},\"body\":", m.part));
        out.push_str(&m.body);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The SQS body standing in for an envelope stored in S3.
pub fn encode_pointer(p: &Pointer) -> String {
    serde_json::json!({"v": VERSION, "s3": p}).to_string()
}

pub fn decode(text: &str) -> Result<Decoded, EnvelopeError> {
    let w: Wire = serde_json::from_str(text)?;
    if w.v != VERSION {
        return Err(EnvelopeError::Version(w.v));
    }
    if let Some(p) = w.s3 {
        return Ok(Decoded::ClaimCheck(p));
    }
    let source = w.source.ok_or(EnvelopeError::Missing("source"))?;
    let received_at_us = w.received_at.ok_or(EnvelopeError::Missing("received_at"))?;
    let headers = w
        .headers
        .map_or_else(|| "{}".to_owned(), |r| r.get().to_owned());
    let query = w
        .query
        .map_or_else(|| "{}".to_owned(), |r| r.get().to_owned());
    let parts = w.messages.ok_or(EnvelopeError::Missing("messages"))?;
    let mut d = Delivery {
        ids: Vec::with_capacity(parts.len()),
        messages: Vec::with_capacity(parts.len()),
    };
    for p in parts {
        d.ids.push(p.id);
        d.messages.push(NewMessage {
            source: source.clone(),
            received_at_us,
            delivery_id: w.delivery_id.clone(),
            part: p.part,
            headers: headers.clone(),
            query: query.clone(),
            body: p.body.get().to_owned(),
        });
    }
    Ok(Decoded::Delivery(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the messages, for comparison.
    fn fields(m: &[NewMessage]) -> Vec<String> {
        m.iter().map(|m| format!("{m:?}")).collect()
    }

    fn message(part: u32, body: &str, delivery: Option<&str>) -> NewMessage {
        NewMessage {
            source: "gh\"hub".into(),
            received_at_us: 1_764_080_444_123_456,
            delivery_id: delivery.map(String::from),
            part,
            headers: r#"{"content-type":"application/json","x-api-key":"[REDACTED]"}"#.into(),
            query: "{}".into(),
            body: body.into(),
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_the_exact_body_bytes() {
        let messages = vec![
            message(
                0,
                "{ \"a\" : 1,\n \"a\": \"é\\u00e9\", \"n\": 1.50 }",
                Some("d-1"),
            ),
            message(1, "{\"b\":[1,2,{\"c\":null}]}", Some("d-1")),
        ];
        let ids = vec!["id-0".to_owned(), "id-1".to_owned()];
        let text = encode(&messages, &ids);
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{text}"
        );
        let Decoded::Delivery(d) = decode(&text).unwrap() else {
            panic!("a delivery")
        };
        assert_eq!(d.ids, ids);
        assert_eq!(fields(&d.messages), fields(&messages));
    }

    #[test]
    fn round_trip_without_delivery_id() {
        let messages = vec![message(0, "{}", None)];
        let ids = vec!["x".to_owned()];
        let Decoded::Delivery(d) = decode(&encode(&messages, &ids)).unwrap() else {
            panic!("a delivery")
        };
        assert_eq!(fields(&d.messages), fields(&messages));
    }

    #[test]
    fn pointers_and_garbage() {
        let p = Pointer {
            bucket: "b".into(),
            key: "tap-webhook/claim-check/x.json".into(),
        };
        assert!(matches!(decode(&encode_pointer(&p)).unwrap(), Decoded::ClaimCheck(q) if q == p));
        assert!(matches!(
            decode("{\"v\":2,\"s3\":{\"bucket\":\"b\",\"key\":\"k\"}}"),
            Err(EnvelopeError::Version(2))
        ));
        assert!(decode("hello").is_err());
        assert!(matches!(
            decode("{\"v\":1,\"source\":\"s\"}"),
            Err(EnvelopeError::Missing(_))
        ));
    }
}
