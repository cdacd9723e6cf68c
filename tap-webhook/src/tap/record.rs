//! A record's identity: the `_sdc_` fields every record starts with, their copies under the
//! `webhook_` names, and the generated primary key. Both come from the stored message alone, so a message emitted twice yields the same
//! record (the payload's fields are spliced after them by the emitter, values as stored).

use std::borrow::Cow;
use std::fmt::Write as _;

use singer::json::{push_key, push_str_field};
use singer::sdc;

use crate::spool::MessageRef;

/// The receipt time again, under a name no target rewrites: SDK targets stamp their own
/// `_sdc_received_at` and `_sdc_sequence` over ours (BRIEF §3), so "latest version per key"
/// needs copies they keep (Nekt's `webhook_received_at` is the precedent).
pub const WEBHOOK_RECEIVED_AT: &str = "webhook_received_at";
/// `_sdc_sequence` again, under a name no target rewrites.
pub const WEBHOOK_SEQUENCE: &str = "webhook_sequence";

/// Payload fields that would collide with the ones the tap sets are dropped from the payload
/// (`_sdc_operation` and `_sdc_deleted_at` when the source's `operation` sets them); the
/// receiver keeps a GET parameter from nesting into one of them (`receiver/unflatten.rs`).
pub fn is_reserved(field: &str, with_operation: bool) -> bool {
    matches!(
        field,
        sdc::SEQUENCE
            | sdc::PRODUCER
            | sdc::RECEIVED_AT
            | sdc::PRIMARY_KEY
            | WEBHOOK_SEQUENCE
            | WEBHOOK_RECEIVED_AT
    ) || (with_operation && matches!(field, sdc::OPERATION | sdc::DELETED_AT))
}

/// Namespace for generated primary keys (UUIDv5): fixed forever, since keys must be stable.
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1c_4c8e_0f1d_4e0a_9b7e_5d3c_2a10_f00d);

/// The generated primary key: from the provider's delivery id when there is one (so a retried
/// delivery stored twice gets one key), else the message's own id.
pub fn generated_key<'a>(m: &MessageRef<'a>) -> Cow<'a, str> {
    match m.delivery_id {
        Some(d) => {
            let name = format!("{}\n{}\n{}", m.source, d, m.part);
            Cow::Owned(uuid::Uuid::new_v5(&KEY_NAMESPACE, name.as_bytes()).to_string())
        }
        None => Cow::Borrowed(m.id),
    }
}

/// Starts a record with the fields every shape carries: the sequence and the producer (the
/// spool) whose sequence it is, the receipt time, the same under `webhook_` names, the generated
/// key; `received_at` is the message's receipt time as [`singer::datetime::push_micros`] writes it.
pub fn start_record(
    out: &mut String,
    m: &MessageRef<'_>,
    producer: &str,
    received_at: &str,
    with_generated_key: bool,
) {
    out.clear();
    out.push('{');
    push_key(out, sdc::SEQUENCE);
    let _ = write!(out, "{}", m.seq);
    push_str_field(out, sdc::PRODUCER, producer);
    push_str_field(out, sdc::RECEIVED_AT, received_at);
    push_key(out, WEBHOOK_SEQUENCE);
    let _ = write!(out, "{}", m.seq);
    push_str_field(out, WEBHOOK_RECEIVED_AT, received_at);
    if with_generated_key {
        push_str_field(out, sdc::PRIMARY_KEY, &generated_key(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::StoredMessage;

    fn msg(delivery: Option<&str>, part: u32, id: &str) -> StoredMessage {
        StoredMessage {
            seq: 1,
            id: id.into(),
            source: "data".into(),
            received_at_us: 0,
            delivery_id: delivery.map(str::to_owned),
            part,
            headers: "{}".into(),
            query: "{}".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn generated_keys_follow_the_delivery_id() {
        let a = generated_key(&msg(Some("d-1"), 0, "m1").view()).into_owned();
        assert_eq!(a, generated_key(&msg(Some("d-1"), 0, "m2").view()));
        assert_ne!(a, generated_key(&msg(Some("d-1"), 1, "m1").view()));
        assert_ne!(a, generated_key(&msg(Some("d-2"), 0, "m1").view()));
        assert_eq!(generated_key(&msg(None, 0, "m1").view()), "m1");
    }
}
