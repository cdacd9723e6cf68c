//! One stream's emission: schema tracking, field selection, key checks, record shaping, and the
//! rejected stream.
//!
//! A SCHEMA goes out before the stream's first record and again whenever a record brings a new
//! field or type (after a prescan, the first SCHEMA already holds the whole run's). A message
//! whose primary key is missing or cannot be a key ([`key`]) goes to `<stream>__rejected` (or
//! fails the run, `on_missing_key: fail`); a payload that is not a JSON object goes there too,
//! and so does one whose operation (`operation` setting, [`crate::operation`]) is unknown.

use std::io::Write;

use serde_json::json;
use singer::catalog::CatalogEntry;
use singer::json::{push_key, push_str_field};
use singer::sdc;
use singer::writer::MessageWriter;

use super::discover;
use super::flatten::{Column, Columns, Refusal, SEPARATOR};
use super::inference::{FieldMap, StreamSchema};
use super::key::{self, KeyKinds};
use super::origins::OriginStore;
use super::outcome::{MissingKey, Summary, TapError};
use super::record::{is_reserved, start_record, WEBHOOK_RECEIVED_AT, WEBHOOK_SEQUENCE};
use crate::operation::Op;
use crate::payload::top_level;
use crate::settings::{OnMissingKey, RecordShape, Source};
use crate::spool::MessageRef;

pub struct StreamEmitter<'a> {
    source: &'a Source,
    /// The stream's name: the source's, or a routed one (`<source>__<value>`).
    name: String,
    /// The spool's producer id, on every record.
    producer: &'a str,
    entry: Option<&'a CatalogEntry>,
    schema: StreamSchema,
    /// The kinds of value each primary key part had, emitted (or prescanned): the key
    /// properties' types.
    key_kinds: Vec<KeyKinds>,
    schema_sent: bool,
    rejected_schema_sent: bool,
    line: String,
    /// Receipt time of the message being emitted, as `singer::datetime` writes it.
    received_at: String,
    /// Field selection by the catalog, looked up once per field name.
    selection: FieldMap<bool>,
    /// True once the prescan has typed every message of the run: the schema then holds every
    /// field and type the records will bring.
    prescanned: bool,
    /// With flattening: which payload field each column holds, so two never share one.
    columns: Columns,
    /// Where the columns of earlier runs are kept (`None`: this run's only); read before the
    /// first record, written before a record bringing a column is.
    origins: Option<(&'a OriginStore, bool)>,
}

impl<'a> StreamEmitter<'a> {
    pub fn new(
        source: &'a Source,
        name: String,
        entry: Option<&'a CatalogEntry>,
        producer: &'a str,
    ) -> Self {
        StreamEmitter {
            source,
            name,
            producer,
            entry,
            schema: StreamSchema::new(discover::fixed_fields(source)),
            key_kinds: discover::initial_key_kinds(source),
            schema_sent: false,
            rejected_schema_sent: false,
            line: String::with_capacity(4096),
            received_at: String::with_capacity(32),
            selection: FieldMap::default(),
            prescanned: false,
            columns: Columns::new(tap_fields(source)),
            origins: None,
        }
    }

    /// Checks flattened columns against those earlier runs kept in `store`, and keeps new ones.
    pub fn keep_origins(&mut self, store: &'a OriginStore) {
        self.origins = Some((store, false));
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.name
    }

    #[inline]
    fn selected(&mut self, field: &str) -> bool {
        self.entry.is_none() || self.selected_by_catalog(field)
    }

    fn selected_by_catalog(&mut self, field: &str) -> bool {
        let Some(entry) = self.entry else {
            return true;
        };
        if let Some(&s) = self.selection.get(field) {
            return s;
        }
        let s = entry.is_field_selected(field);
        self.selection.insert(field.to_owned(), s);
        s
    }

    /// Types the message's fields without emitting it (unpacked records only). A payload that
    /// is not a JSON object is skipped: its emission sends it to the rejected stream.
    pub fn prescan(&mut self, body: &str, headers: Option<&str>) {
        if let Ok(fields) = top_level(body) {
            if let Some(pk) = &self.source.primary_key {
                // A key that cannot be one is rejected at emission: it types nothing.
                let kinds: Result<Vec<_>, _> = pk
                    .parts
                    .iter()
                    .map(|p| p.value(headers, &fields).map(|v| v.map(|(_, k)| k)))
                    .collect();
                for (seen, kind) in self.key_kinds.iter_mut().zip(kinds.unwrap_or_default()) {
                    if let Some(kind) = kind {
                        seen.add(kind);
                    }
                }
            }
            let with_operation = self.source.operation.is_some();
            if let Some(flattening) = self.source.flattening {
                let mut columns = Vec::with_capacity(fields.len());
                // Columns shared by two fields are refused at emission, naming the message; a
                // record too wide is rejected there and types nothing.
                let flat = flattening.flatten(
                    &fields,
                    |k| is_reserved(k, with_operation),
                    None,
                    &mut columns,
                );
                for c in columns.iter().filter(|_| flat.is_ok()) {
                    if self.selected(&c.name) {
                        self.schema.observe_text(&c.name, &c.value);
                    }
                }
                return;
            }
            for f in &fields {
                if !is_reserved(&f.key, with_operation) && self.selected(&f.key) {
                    self.schema.observe_hashed(f.hash, &f.key, f.value);
                }
            }
        }
    }

    /// Every message of the run has been prescanned: the first SCHEMA holds the whole run's.
    pub fn prescan_done(&mut self) {
        self.prescanned = true;
    }

    /// The run follows the spool past what was prescanned: each record is typed again, and
    /// one bringing a new field or type is preceded by a new SCHEMA.
    pub fn follow(&mut self) {
        self.prescanned = false;
    }

    /// Writes the message as a RECORD of the stream (after a SCHEMA when it changed), or of
    /// the rejected stream.
    pub fn emit<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &MessageRef<'_>,
        summary: &mut Summary,
    ) -> Result<(), TapError> {
        let fields = match top_level(m.body) {
            Ok(f) => f,
            // The receiver stored only JSON objects; a row edited by hand could still break.
            Err(e) => {
                return self.reject(w, m, &format!("payload is not a JSON object: {e}"), summary)
            }
        };
        let pk = self.source.primary_key.as_ref();
        let mut changed = !self.schema_sent;
        // Each part's value (raw JSON text), checked before anything is written.
        let mut keys = Vec::new();
        if let Some(pk) = pk {
            for part in &pk.parts {
                // Headers are given: a part is found or an error, never skipped.
                let found = part
                    .value(Some(m.headers), &fields)
                    .and_then(|v| v.ok_or_else(|| "is missing".to_owned()));
                match found {
                    Ok(v) => keys.push(v),
                    Err(reason) if self.source.on_missing_key == OnMissingKey::Fail => {
                        return Err(TapError::MissingKey(Box::new(MissingKey {
                            source_name: self.source.name.clone(),
                            stream: self.name.clone(),
                            message_id: m.id.to_owned(),
                            seq: m.seq,
                            key: part.describe(),
                            reason,
                        })));
                    }
                    Err(reason) => {
                        let reason = format!("primary key {} {reason}", part.describe());
                        return self.reject(w, m, &reason, summary);
                    }
                }
            }
            for (seen, (_, kind)) in self.key_kinds.iter_mut().zip(&keys) {
                changed |= seen.add(*kind);
            }
        }
        let op = match self
            .source
            .operation
            .as_ref()
            .map(|o| o.resolve(&fields, m.query))
        {
            None => None,
            Some(Ok(op)) => Some(op),
            Some(Err(reason)) => {
                return self.reject(w, m, &format!("operation {reason}"), summary);
            }
        };
        self.received_at.clear();
        singer::datetime::push_micros(&mut self.received_at, m.received_at_us);
        start_record(
            &mut self.line,
            m,
            self.producer,
            &self.received_at,
            pk.is_none(),
        );
        if let Some(op) = op {
            // The Singer way: a delete carries `_sdc_deleted_at` (its receipt time, so a
            // replay is identical); every record says what the sender asked.
            push_str_field(&mut self.line, sdc::OPERATION, op.as_str());
            if op == Op::Delete {
                push_str_field(&mut self.line, sdc::DELETED_AT, &self.received_at);
            }
        }
        let reserved = |k: &str| is_reserved(k, op.is_some());
        match self.source.record_shape {
            RecordShape::Unpacked if self.source.flattening.is_some() => {
                self.load_origins()?;
                let mut columns = Vec::with_capacity(fields.len());
                let flattened = match self.source.flattening {
                    Some(f) => f.flatten(&fields, reserved, Some(&mut self.columns), &mut columns),
                    None => Ok(()),
                };
                match flattened {
                    Ok(()) => {}
                    Err(Refusal::Shared(detail)) => return Err(self.shared(m, detail)),
                    Err(Refusal::TooWide(max)) => {
                        let reason = format!(
                            "flattening makes more than {max} columns of it (max_fields_per_message)"
                        );
                        return self.reject(w, m, &reason, summary);
                    }
                }
                self.save_origins()?;
                changed |= self.push_columns(&columns);
                // A key part's property that flattening made a column too holds the same
                // value (it is that column), or the run stops as for any shared column.
                let mut present = Vec::new();
                for (part, (text, _)) in pk.iter().flat_map(|pk| pk.parts.iter()).zip(&keys) {
                    let Some(c) = columns.iter().find(|c| c.name == part.property.as_str()) else {
                        continue;
                    };
                    if !crate::primary_key::same_json(&c.value, text) {
                        return Err(TapError::Flattening {
                            source_name: self.source.name.clone(),
                            stream: self.name.clone(),
                            message_id: m.id.to_owned(),
                            seq: m.seq,
                            detail: format!(
                                "column {:?} holds both a flattened payload field and primary key {}, with different values",
                                part.property,
                                part.describe()
                            ),
                        });
                    }
                    if self.selected(&part.property) {
                        present.push(part.property.as_str());
                    }
                }
                self.push_key_parts(pk, &keys, |p| present.contains(&p));
            }
            RecordShape::Unpacked => {
                for f in &fields {
                    if reserved(&f.key) || !self.selected(&f.key) {
                        continue;
                    }
                    if f.key.contains(SEPARATOR) {
                        // Named like a flattened column: it may not take one another field
                        // holds (flattening turned off), nor be taken by one (turned on).
                        self.load_origins()?;
                        self.columns
                            .note_top(&f.key)
                            .map_err(|detail| self.shared(m, detail))?;
                        self.save_origins()?;
                    }
                    // After the prescan the schema holds every field and type of the run:
                    // this message was observed there already.
                    if !self.prescanned {
                        changed |= self.schema.observe_hashed(f.hash, &f.key, f.value);
                    }
                    push_key(&mut self.line, &f.key);
                    self.line.push_str(f.value);
                }
                // A payload field named like a key part's property holds its value (checked
                // with the key) and was emitted above.
                let mut present = Vec::new();
                for part in pk.iter().flat_map(|pk| pk.parts.iter()) {
                    let p = part.property.as_str();
                    if fields.iter().any(|f| f.key == p) && !reserved(p) && self.selected(p) {
                        present.push(p);
                    }
                }
                self.push_key_parts(pk, &keys, |p| present.contains(&p));
            }
            RecordShape::Packed => {
                push_str_field(&mut self.line, "message_id", m.id);
                push_str_field(&mut self.line, "payload", m.body);
                for (name, json) in [("headers", m.headers), ("query", m.query)] {
                    if self.selected(name) {
                        push_key(&mut self.line, name);
                        self.line.push_str(json);
                    }
                }
                if let Some(pk) = pk {
                    for (part, (text, _)) in pk.parts.iter().zip(&keys) {
                        push_key(&mut self.line, &part.property);
                        self.line.push_str(text);
                    }
                }
            }
        }
        self.line.push('}');
        if changed {
            self.write_schema(w)?;
        }
        w.write_record_raw(&self.name, &self.line, Some(&self.received_at))?;
        summary.count_record(&self.name);
        Ok(())
    }

    /// Appends the key parts as properties of their own, unless `present` says the record holds
    /// the property already: a nested pointer's or a header's always; a top-level field's only
    /// when it was not emitted under its name (flattening abbreviated it, or the catalog left it
    /// out): every record carries every key property, or targets refuse it.
    fn push_key_parts(
        &mut self,
        pk: Option<&crate::primary_key::PrimaryKey>,
        keys: &[(std::borrow::Cow<'_, str>, key::KeyKind)],
        mut present: impl FnMut(&str) -> bool,
    ) {
        for (part, (text, _)) in pk.iter().flat_map(|pk| pk.parts.iter()).zip(keys) {
            if !present(&part.property) {
                push_key(&mut self.line, &part.property);
                self.line.push_str(text);
            }
        }
    }

    /// The columns earlier runs noted, read before the stream's first record needing them.
    fn load_origins(&mut self) -> Result<(), TapError> {
        if let Some((store, loaded @ false)) = &mut self.origins {
            self.columns.hold(store.load(&self.name)?);
            *loaded = true;
        }
        Ok(())
    }

    /// Notes the columns the last record brought, before it is emitted.
    fn save_origins(&mut self) -> Result<(), TapError> {
        if let Some((store, _)) = self.origins {
            let fresh = self.columns.fresh();
            if !fresh.is_empty() {
                store.save(&self.name, &fresh)?;
            }
        }
        Ok(())
    }

    /// The error of a message whose field would share a column with another.
    fn shared(&self, m: &MessageRef<'_>, detail: String) -> TapError {
        TapError::Flattening {
            source_name: self.source.name.clone(),
            stream: self.name.clone(),
            message_id: m.id.to_owned(),
            seq: m.seq,
            detail,
        }
    }

    /// Appends a flattened record's (selected) columns to the line; true when one brought a
    /// new column or type.
    fn push_columns(&mut self, columns: &[Column<'_>]) -> bool {
        let mut changed = false;
        for c in columns {
            if !self.selected(&c.name) {
                continue;
            }
            if !self.prescanned {
                changed |= self.schema.observe_text(&c.name, &c.value);
            }
            push_key(&mut self.line, &c.name);
            self.line.push_str(&c.value);
        }
        changed
    }

    /// Writes the stream's SCHEMA: every field and type seen so far (selected by the catalog).
    fn write_schema<W: Write>(&mut self, w: &mut MessageWriter<W>) -> Result<(), TapError> {
        let mut schema = self.schema.to_json_schema();
        if let Some(pk) = &self.source.primary_key {
            for (part, kinds) in pk.parts.iter().zip(&self.key_kinds) {
                key::declare(&mut schema, &part.property, *kinds);
            }
        }
        if let (Some(entry), Some(props)) = (self.entry, schema["properties"].as_object_mut()) {
            props.retain(|k, _| entry.is_field_selected(k));
        }
        w.write_schema(
            &self.name,
            &schema,
            &discover::key_properties(self.source),
            &[sdc::SEQUENCE.to_owned()],
        )?;
        self.schema_sent = true;
        Ok(())
    }

    fn reject<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &MessageRef<'_>,
        reason: &str,
        summary: &mut Summary,
    ) -> Result<(), TapError> {
        let stream = discover::rejected_stream(&self.name);
        if !self.rejected_schema_sent {
            w.write_schema(
                &stream,
                &discover::rejected_schema(),
                &["message_id".into()],
                &[],
            )?;
            self.rejected_schema_sent = true;
        }
        let received_at = singer::datetime::format_micros(m.received_at_us);
        let record = json!({
            "message_id": m.id,
            sdc::SEQUENCE: m.seq,
            sdc::PRODUCER: self.producer,
            sdc::RECEIVED_AT: received_at,
            WEBHOOK_SEQUENCE: m.seq,
            WEBHOOK_RECEIVED_AT: received_at,
            "reason": reason,
            "payload": m.body,
        });
        w.write_record_raw(&stream, &record.to_string(), Some(&received_at))?;
        tracing::warn!(stream = %self.name, message_id = %m.id, reason, "message sent to {stream}");
        summary.count_record(&stream);
        Ok(())
    }

    #[cfg(test)]
    pub fn schema(&self) -> &StreamSchema {
        &self.schema
    }
}

/// The fields the tap writes in a record of `source` (no payload field may take their names).
fn tap_fields(source: &Source) -> impl Iterator<Item = &'static str> {
    let with_operation = source.operation.is_some();
    [
        sdc::SEQUENCE,
        sdc::PRODUCER,
        sdc::RECEIVED_AT,
        sdc::PRIMARY_KEY,
        WEBHOOK_SEQUENCE,
        WEBHOOK_RECEIVED_AT,
        sdc::OPERATION,
        sdc::DELETED_AT,
    ]
    .into_iter()
    .filter(move |f| is_reserved(f, with_operation))
}
