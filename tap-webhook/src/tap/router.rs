//! A source's streams in a run: its own, and with `stream_from` ([`crate::route`]) one per
//! routed value, each with its own emitter (schema, keys, rejected stream).
//!
//! The source keeps one bookmark whatever its streams: its messages are read once, in sequence
//! order, and each goes to one stream or is dropped (`include` / `exclude`, or a stream the
//! catalog deselects); a dropped message still moves the bookmark ([`super::emission`]).
//! Catalog selection is per stream; a routed stream the catalog does not list (a type first
//! received after discovery) follows the source's own stream's selection, so a new event type
//! is never dropped unasked. The `max_streams` bound counts distinct routed streams in the run,
//! in sequence order; the prescan and the emission share the one assignment.

use std::collections::HashMap;

use singer::catalog::{Catalog, CatalogEntry};

use super::emitter::StreamEmitter;
use super::origins::OriginStore;
use crate::payload::top_level;
use crate::route::{stream_name, Fate, RouteFrom};
use crate::settings::Source;
use crate::spool::MessageRef;

pub struct SourceStreams<'a> {
    source: &'a Source,
    catalog: Option<&'a Catalog>,
    producer: &'a str,
    /// Whether streams the catalog does not list are emitted: the own stream's selection.
    own_selected: bool,
    /// The source's own stream; `None`: deselected by the catalog.
    own: Option<StreamEmitter<'a>>,
    /// Routed streams of the run by name; `None`: deselected by the catalog.
    routed: HashMap<String, Option<StreamEmitter<'a>>>,
    /// Set once a value went to the own stream for the bound (logged once).
    over_bound: bool,
    /// Flattened columns of earlier runs, for every stream's emitter.
    origins: Option<&'a OriginStore>,
}

impl<'a> SourceStreams<'a> {
    /// The source's streams; `None` when the catalog selects none of them.
    pub fn new(
        source: &'a Source,
        catalog: Option<&'a Catalog>,
        producer: &'a str,
    ) -> Option<SourceStreams<'a>> {
        let own_entry = catalog.and_then(|c| c.entry(&source.name));
        let own_selected = catalog.is_none() || own_entry.is_some_and(CatalogEntry::is_selected);
        let routed_selected = source.route.is_some()
            && catalog.is_some_and(|c| {
                let prefix = format!("{}__", source.name);
                c.streams
                    .iter()
                    .any(|e| e.tap_stream_id.starts_with(&prefix) && e.is_selected())
            });
        if !own_selected && !routed_selected {
            return None;
        }
        Some(SourceStreams {
            source,
            catalog,
            producer,
            own_selected,
            own: own_selected
                .then(|| StreamEmitter::new(source, source.name.clone(), own_entry, producer)),
            routed: HashMap::new(),
            over_bound: false,
            origins: None,
        })
    }

    /// Every stream checks its flattened columns against those `store` kept from earlier runs.
    pub fn keep_origins(&mut self, store: Option<&'a OriginStore>) {
        self.origins = store;
        if let (Some(store), Some(own)) = (store, self.own.as_mut()) {
            own.keep_origins(store);
        }
    }

    pub fn source(&self) -> &'a str {
        &self.source.name
    }

    /// The emitter of the message's stream; `None`: the message is dropped.
    pub fn pick(&mut self, m: &MessageRef<'_>) -> Option<&mut StreamEmitter<'a>> {
        let Some(route) = &self.source.route else {
            return self.own.as_mut();
        };
        let fields = match route.from {
            RouteFrom::Pointer(_) => top_level(m.body).ok(),
            RouteFrom::Header(_) => None,
        };
        let name = match route.fate(route.value(m.headers, fields.as_deref())) {
            Fate::Dropped => return None,
            Fate::Own => return self.own.as_mut(),
            Fate::Routed(v) => stream_name(&self.source.name, &v),
        };
        if !self.routed.contains_key(&name) {
            if self.routed.len() >= route.max_streams {
                if !self.over_bound {
                    self.over_bound = true;
                    tracing::warn!(source = %self.source.name, stream = %name, max_streams = route.max_streams,
                        "more routed streams than max_streams in this run: the rest go to the source's own stream");
                }
                return self.own.as_mut();
            }
            let emitter = self.routed_emitter(name.clone());
            self.routed.insert(name.clone(), emitter);
        }
        self.routed.get_mut(&name).and_then(Option::as_mut)
    }

    fn routed_emitter(&self, name: String) -> Option<StreamEmitter<'a>> {
        let entry = self.catalog.and_then(|c| c.entry(&name));
        let selected = match entry {
            Some(e) => e.is_selected(),
            None => self.own_selected,
        };
        selected.then(|| {
            let mut e = StreamEmitter::new(self.source, name, entry, self.producer);
            if let Some(store) = self.origins {
                e.keep_origins(store);
            }
            e
        })
    }

    /// True when the source routes its messages (they need their headers to be placed).
    pub fn routed(&self) -> bool {
        self.source.route.is_some()
    }

    /// Types an unrouted source's message body in its own stream's schema (the prescan).
    pub fn prescan_own(&mut self, body: &str) {
        if let Some(e) = self.own.as_mut() {
            e.prescan(body, None);
        }
    }

    #[cfg(test)]
    pub fn own(&self) -> Option<&StreamEmitter<'a>> {
        self.own.as_ref()
    }

    /// Types the message in its stream's schema (the prescan).
    pub fn prescan(&mut self, m: &MessageRef<'_>) {
        if let Some(e) = self.pick(m) {
            e.prescan(m.body, Some(m.headers));
        }
    }

    /// The run follows the spool past what was prescanned: every stream types each record
    /// again (a routed stream made later does from the start).
    pub fn follow(&mut self) {
        for e in self
            .own
            .iter_mut()
            .chain(self.routed.values_mut().flatten())
        {
            e.follow();
        }
    }

    /// Every message of the run has been prescanned, in every stream.
    pub fn prescan_done(&mut self) {
        for e in self
            .own
            .iter_mut()
            .chain(self.routed.values_mut().flatten())
        {
            e.prescan_done();
        }
    }
}
