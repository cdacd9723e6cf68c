//! `--discover`: one catalog entry per configured source (and per routed stream the spool holds),
//! typed from what the spool holds now.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use singer::catalog::{Catalog, CatalogEntry, MetadataEntry};
use singer::sdc;

use super::inference::StreamSchema;
use super::key::{self, KeyKinds};
use super::record::{is_reserved, WEBHOOK_RECEIVED_AT, WEBHOOK_SEQUENCE};
use crate::payload::{top_level, Field};
use crate::route::{stream_name, Fate};
use crate::settings::{RecordShape, Settings, Source};
use crate::spool::reader::SpoolReader;
use crate::spool::SpoolError;

/// Messages sampled per source to type the payload's fields at discovery.
const DISCOVERY_SAMPLE: usize = 1000;

/// The fields every record of the source carries, typed.
pub fn fixed_fields(source: &Source) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(sdc::SEQUENCE.into(), json!({"type": "integer"}));
    // Never null for this tap: the target keeps one high-water mark per producer.
    m.insert(sdc::PRODUCER.into(), json!({"type": ["string"]}));
    m.insert(
        sdc::RECEIVED_AT.into(),
        json!({"type": "string", "format": "date-time"}),
    );
    m.insert(WEBHOOK_SEQUENCE.into(), json!({"type": "integer"}));
    m.insert(
        WEBHOOK_RECEIVED_AT.into(),
        json!({"type": "string", "format": "date-time"}),
    );
    if source.primary_key.is_none() {
        m.insert(sdc::PRIMARY_KEY.into(), json!({"type": "string"}));
    }
    if source.operation.is_some() {
        m.insert(
            sdc::OPERATION.into(),
            json!({"type": "string", "enum": ["upsert", "insert", "delete"]}),
        );
        m.insert(
            sdc::DELETED_AT.into(),
            json!({"type": ["null", "string"], "format": "date-time"}),
        );
    }
    if source.record_shape == RecordShape::Packed {
        m.insert("message_id".into(), json!({"type": "string"}));
        m.insert("payload".into(), json!({"type": "string"}));
        m.insert("headers".into(), json!({"type": "object"}));
        m.insert("query".into(), json!({"type": "object"}));
    }
    if let Some(pk) = &source.primary_key {
        // The key is required: a message without a usable one goes to the rejected stream.
        // Its type follows the kinds of key seen (`key::declare`); none yet: either.
        for (part, kinds) in pk.parts.iter().zip(initial_key_kinds(source)) {
            m.insert(part.property.clone(), kinds.to_schema());
        }
    }
    m
}

/// The key kinds of each primary key part before any message: a header's value is always a
/// string; a payload value may be either.
pub fn initial_key_kinds(source: &Source) -> Vec<KeyKinds> {
    let Some(pk) = &source.primary_key else {
        return Vec::new();
    };
    pk.parts
        .iter()
        .map(|p| {
            let mut k = KeyKinds::default();
            if p.header().is_some() {
                k.add(key::KeyKind::String);
            }
            k
        })
        .collect()
}

/// The stream's key properties: the primary key's parts, else the generated key.
pub fn key_properties(source: &Source) -> Vec<String> {
    match &source.primary_key {
        Some(pk) => pk.properties(),
        None => vec![sdc::PRIMARY_KEY.to_owned()],
    }
}

/// The stream of a stream's messages refused for lacking a usable primary key.
pub fn rejected_stream(stream: &str) -> String {
    format!("{stream}__rejected")
}

pub fn rejected_schema() -> Value {
    json!({"type": "object", "properties": {
        "message_id": {"type": "string"},
        sdc::SEQUENCE: {"type": "integer"},
        sdc::PRODUCER: {"type": ["string"]},
        sdc::RECEIVED_AT: {"type": "string", "format": "date-time"},
        WEBHOOK_SEQUENCE: {"type": "integer"},
        WEBHOOK_RECEIVED_AT: {"type": "string", "format": "date-time"},
        "reason": {"type": "string"},
        "payload": {"type": "string"}
    }})
}

/// What discovery learnt of one stream from the spool: its fields and key kinds.
struct Sample {
    schema: StreamSchema,
    /// Per primary key part.
    keys_seen: Vec<KeyKinds>,
    seen: usize,
}

impl Sample {
    fn new(source: &Source) -> Sample {
        Sample {
            schema: StreamSchema::new(fixed_fields(source)),
            keys_seen: initial_key_kinds(source),
            seen: 0,
        }
    }

    /// Types the payload's fields, up to [`DISCOVERY_SAMPLE`] messages.
    fn observe(&mut self, source: &Source, headers: &str, fields: Option<&[Field<'_>]>) {
        if self.seen >= DISCOVERY_SAMPLE {
            return;
        }
        self.seen += 1;
        let Some(fields) = fields else { return };
        if let Some(pk) = &source.primary_key {
            // A message whose key cannot be one is rejected: it types nothing.
            let kinds: Result<Vec<_>, _> = pk
                .parts
                .iter()
                .map(|p| p.value(Some(headers), fields))
                .collect();
            for (seen, v) in self.keys_seen.iter_mut().zip(kinds.unwrap_or_default()) {
                if let Some((_, kind)) = v {
                    seen.add(kind);
                }
            }
        }
        if let Some(flattening) = source.flattening {
            let mut columns = Vec::with_capacity(fields.len());
            // Discovery only lists columns: a shared one is refused when a run meets it.
            let flat = flattening.flatten(
                fields,
                |k| is_reserved(k, source.operation.is_some()),
                None,
                &mut columns,
            );
            for c in columns.iter().filter(|_| flat.is_ok()) {
                self.schema.observe_text(&c.name, &c.value);
            }
        } else if source.record_shape == RecordShape::Unpacked {
            for f in fields {
                self.schema.observe_text(&f.key, f.value);
            }
        }
    }
}

/// The catalog: each source's fixed fields, and the payload fields and key kinds of up to
/// [`DISCOVERY_SAMPLE`] of its messages in `spool` (none without a spool yet). A routed source
/// (`stream_from`) lists its own stream and one per routed stream the spool holds, up to its
/// `max_streams`, assigned in sequence order as a run from the spool's start would.
pub fn discover(settings: &Settings, spool: Option<&SpoolReader>) -> Result<Catalog, SpoolError> {
    let until = spool.map(SpoolReader::high_water_mark).transpose()?;
    let mut streams = Vec::new();
    for source in settings.sources.values() {
        let mut own = Sample::new(source);
        let mut routed: BTreeMap<String, Sample> = BTreeMap::new();
        let sampled = source.record_shape == RecordShape::Unpacked
            || source.primary_key.is_some()
            || source.route.is_some();
        if let (Some(spool), Some(until)) = (spool.filter(|_| sampled), until) {
            spool.for_each_ref::<SpoolError>(&source.name, 0, until, |m| {
                let fields = top_level(m.body).ok();
                let Some(route) = &source.route else {
                    own.observe(source, m.headers, fields.as_deref());
                    return Ok(own.seen < DISCOVERY_SAMPLE);
                };
                match route.fate(route.value(m.headers, fields.as_deref())) {
                    Fate::Dropped => {}
                    Fate::Own => own.observe(source, m.headers, fields.as_deref()),
                    Fate::Routed(v) => {
                        let name = stream_name(&source.name, &v);
                        if let Some(sample) = routed.get_mut(&name) {
                            sample.observe(source, m.headers, fields.as_deref());
                        } else if routed.len() < route.max_streams {
                            let mut sample = Sample::new(source);
                            sample.observe(source, m.headers, fields.as_deref());
                            routed.insert(name, sample);
                        } else {
                            own.observe(source, m.headers, fields.as_deref());
                        }
                    }
                }
                // Every message is read: a type may first appear anywhere in the spool.
                Ok(true)
            })?;
        }
        streams.push(entry(source, source.name.clone(), own));
        for (name, sample) in routed {
            streams.push(entry(source, name, sample));
        }
    }
    Ok(Catalog { streams })
}

/// The catalog entry of one stream of `source`.
fn entry(source: &Source, name: String, sample: Sample) -> CatalogEntry {
    let mut schema = sample.schema.to_json_schema();
    if let Some(pk) = &source.primary_key {
        for (part, kinds) in pk.parts.iter().zip(&sample.keys_seen) {
            key::declare(&mut schema, &part.property, *kinds);
        }
    }
    let keys = key_properties(source);
    let mut metadata = vec![MetadataEntry {
        breadcrumb: vec![],
        metadata: json!({
            "inclusion": "available",
            "selected-by-default": true,
            "table-key-properties": keys,
            "forced-replication-method": "INCREMENTAL",
            "valid-replication-keys": [sdc::SEQUENCE],
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    }];
    let fixed = fixed_fields(source);
    if let Some(props) = schema["properties"].as_object() {
        for name in props.keys() {
            let automatic =
                fixed.contains_key(name) && !matches!(name.as_str(), "headers" | "query");
            metadata.push(MetadataEntry {
                breadcrumb: vec!["properties".into(), name.clone()],
                metadata: json!({
                    "inclusion": if automatic { "automatic" } else { "available" },
                    "selected-by-default": true,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            });
        }
    }
    CatalogEntry {
        tap_stream_id: name.clone(),
        stream: Some(name),
        schema,
        metadata,
        key_properties: Some(keys),
        replication_method: Some("INCREMENTAL".into()),
        replication_key: Some(sdc::SEQUENCE.into()),
        extra: Map::new(),
    }
}
