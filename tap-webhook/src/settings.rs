//! Configuration: the config file as the user wrote it ([`Config`], mirroring the Meltano
//! settings in `schemas/tap-webhook.config.schema.json`), validated once into [`Settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::receiver::signature::{Signature, SignatureConfig};

/// The settings schema; `--about` and `ENV` typing are derived from it.
pub const CONFIG_SCHEMA: &str = include_str!("../../schemas/tap-webhook.config.schema.json");

pub const DEFAULT_SPOOL_PATH: &str = "./tap-webhook-spool.sqlite";
pub const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:8080";
/// Stitch's limit: bodies under 20 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 10 * 1024 * 1024 * 1024;
pub const DEFAULT_RETRY_AFTER_SECONDS: u64 = 30;
/// Providers retry for up to a day or two (Svix: 8 attempts over ~38 h); three days covers them.
pub const DEFAULT_DEDUPE_WINDOW_SECONDS: u64 = 3 * 24 * 3600;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper refuses smaller read buffers.
pub const MIN_HEADER_BYTES: usize = 8192;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_STATE_INTERVAL_RECORDS: u64 = 10_000;
pub const DEFAULT_REFUSED_LEDGER_MAX_ROWS: u64 = 10_000;
/// A week: long enough to answer "why the 401s since last Tuesday?".
pub const DEFAULT_REFUSED_LEDGER_MAX_AGE: Duration = Duration::from_secs(168 * 3600);
/// Admin tokens are typed by no one: long enough that guessing is hopeless.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// A following run's STATE cadence unless `state_interval_seconds` says otherwise: the
/// target prints a state only once it has one, so this bounds how stale a restart's state is.
pub const DEFAULT_FOLLOW_STATE_INTERVAL: Duration = Duration::from_secs(1);
pub use crate::receiver::body::{
    DEFAULT_MAX_FIELDS_PER_MESSAGE, DEFAULT_MAX_MESSAGES_PER_DELIVERY,
};
pub const DEFAULT_SOURCE: &str = "data";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub spool_path: Option<String>,
    pub listen_address: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_fields_per_message: Option<usize>,
    pub max_messages_per_delivery: Option<usize>,
    pub max_spool_bytes: Option<u64>,
    pub retry_after_seconds: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub header_read_timeout_seconds: Option<f64>,
    pub body_read_timeout_seconds: Option<f64>,
    pub max_connections: Option<usize>,
    pub dedupe_window_seconds: Option<u64>,
    pub refused_ledger_max_rows: Option<u64>,
    pub refused_ledger_max_age_hours: Option<f64>,
    pub admin_listen_address: Option<String>,
    pub admin_tokens: Option<Vec<String>>,
    pub state_interval_records: Option<u64>,
    pub schema_prescan: Option<bool>,
    pub retention_hours: Option<f64>,
    pub max_records: Option<u64>,
    pub max_seconds: Option<f64>,
    pub follow: Option<bool>,
    pub state_interval_seconds: Option<f64>,
    /// The Singer SDK's flattening settings (its names, where SDK taps take them): the
    /// default of every source that does not set its own.
    pub flattening_enabled: Option<bool>,
    pub flattening_max_depth: Option<usize>,
    pub flattening_max_key_length: Option<usize>,
    pub sources: Option<BTreeMap<String, SourceConfig>>,
    pub queue: Option<crate::queue::QueueConfig>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub record_shape: Option<RecordShape>,
    pub primary_key: Option<crate::primary_key::PrimaryKeyConfig>,
    pub on_missing_key: Option<OnMissingKey>,
    pub api_key_header: Option<String>,
    pub api_keys: Option<Vec<String>>,
    pub token_param: Option<String>,
    pub url_tokens: Option<Vec<String>>,
    pub allow_get: Option<bool>,
    pub delivery_id_header: Option<String>,
    pub capture_headers: Option<Vec<String>>,
    pub signature: Option<SignatureConfig>,
    pub operation: Option<crate::operation::OperationConfig>,
    pub unflatten_query: Option<crate::receiver::unflatten::UnflattenConfig>,
    pub stream_from: Option<crate::route::RouteConfig>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub max_streams: Option<usize>,
    pub redact: Option<crate::receiver::redact::RedactConfig>,
    pub dedupe_key: Option<crate::receiver::dedupe_key::DedupeKeyConfig>,
    /// The Singer SDK's flattening, for this source (over the top-level settings).
    pub flattening_enabled: Option<bool>,
    pub flattening_max_depth: Option<usize>,
    pub flattening_max_key_length: Option<usize>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecordShape {
    #[default]
    Unpacked,
    Packed,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnMissingKey {
    #[default]
    Reject,
    Fail,
}

/// Validated settings, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub spool_path: PathBuf,
    pub listen_address: String,
    pub max_body_bytes: usize,
    /// `max_fields_per_message` and `max_messages_per_delivery`.
    pub bounds: crate::receiver::body::Bounds,
    pub max_spool_bytes: u64,
    pub retry_after_seconds: u64,
    pub limits: Limits,
    pub dedupe_window: Duration,
    /// The refused-deliveries ledger's bounds (`spool::ledger`).
    pub ledger: crate::spool::ledger::LedgerLimits,
    /// The admin status page's address and tokens; `None`: no admin page.
    pub admin: Option<Admin>,
    pub state_interval_records: u64,
    /// Type every field of the run before the first SCHEMA (two passes over the spool).
    pub schema_prescan: bool,
    pub retention: Duration,
    pub max_records: Option<u64>,
    pub max_duration: Option<Duration>,
    /// Keep running after the backlog and emit each message once its spool commit is visible
    /// (`tap::follow`); `--follow` sets it too.
    pub follow: bool,
    /// A STATE at least this often while records flow (`state_interval_seconds`); see
    /// [`Settings::state_interval`] for the default.
    pub state_interval_seconds: Option<Duration>,
    /// By name; also the Singer stream names.
    pub sources: BTreeMap<String, Source>,
    /// The SQS backend; `None`: the embedded spool.
    pub queue: Option<crate::queue::QueueSettings>,
}

/// Where `serve`'s admin status page listens, and who may read it.
#[derive(Debug, Clone)]
pub struct Admin {
    pub listen_address: String,
    /// Empty only on a loopback address.
    pub tokens: Vec<String>,
}

/// True when `address` (`host:port`) names only this machine: `127.0.0.0/8`, `::1` or
/// `localhost`. Anything else may be reached from elsewhere and needs admin tokens.
pub fn is_loopback(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Connection-level defences of the receiver.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub record_shape: RecordShape,
    /// Where a row's identity is: top-level fields, pointers, headers (`primary_key`);
    /// `None`: `__sdc_primary_key` is generated.
    pub primary_key: Option<crate::primary_key::PrimaryKey>,
    pub on_missing_key: OnMissingKey,
    pub api_key_header: String,
    pub api_keys: Vec<String>,
    pub token_param: String,
    pub url_tokens: Vec<String>,
    pub allow_get: bool,
    pub delivery_id_header: Option<String>,
    /// Lower-cased header names kept with each message, beyond the built-in list.
    pub capture_headers: Vec<String>,
    /// The source's signature verifier, built from its setting (so known to work).
    pub signature: Option<Signature>,
    /// Where each message says whether it upserts, inserts or deletes its row; `None`: the
    /// records carry no `_sdc_operation`.
    pub operation: Option<crate::operation::Operation>,
    /// How a GET delivery's query parameters are nested back into the sender's payload.
    pub unflatten_query: Option<crate::receiver::unflatten::Unflatten>,
    /// One stream per event type (`stream_from`, `include`, `exclude`); `None`: one stream.
    pub route: Option<crate::route::Route>,
    /// Values hashed or dropped before the spool write (`redact`).
    pub redact: Option<crate::receiver::redact::Redact>,
    /// Where a delivery's identity is, in place of the delivery-id headers (`dedupe_key`).
    pub dedupe_key: Option<crate::receiver::dedupe_key::DedupeKey>,
    /// Objects as `parent__child` columns (the SDK's flattening); `None`: records as stored.
    pub flattening: Option<crate::tap::flatten::Flattening>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid config: {0}")]
    Shape(String),
    #[error("invalid config: setting `{setting}`: {detail}")]
    Setting { setting: String, detail: String },
}

fn positive_timeout(setting: &str, v: Option<f64>) -> Result<Option<Duration>, SettingsError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0 && x < 1e9) => Err(SettingsError::Setting {
            setting: setting.to_owned(),
            detail: format!("{x} is not a positive number of seconds"),
        }),
        _ => Ok(v.map(Duration::from_secs_f64)),
    }
}

pub fn schema() -> Value {
    serde_json::from_str(CONFIG_SCHEMA).unwrap_or(Value::Null)
}

impl Settings {
    /// How often a STATE is due while records flow: `state_interval_seconds`, else every
    /// second when following, else only by `state_interval_records`.
    pub fn state_interval(&self) -> Option<Duration> {
        self.state_interval_seconds
            .or(self.follow.then_some(DEFAULT_FOLLOW_STATE_INTERVAL))
    }

    pub fn from_map(map: Map<String, Value>) -> Result<Settings, SettingsError> {
        let config: Config = serde_json::from_value(Value::Object(map))
            .map_err(|e| SettingsError::Shape(e.to_string()))?;
        Settings::from_config(config)
    }

    pub fn from_config(c: Config) -> Result<Settings, SettingsError> {
        let bad = |setting: &str, detail: String| SettingsError::Setting {
            setting: setting.to_owned(),
            detail,
        };
        let mut sources = BTreeMap::new();
        let configured = c.sources.filter(|s| !s.is_empty()).unwrap_or_else(|| {
            BTreeMap::from([(DEFAULT_SOURCE.to_owned(), SourceConfig::default())])
        });
        for (name, s) in configured {
            let setting = |field: &str| format!("sources.{name}.{field}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
                || name.starts_with('-')
            {
                return Err(bad(
                    &format!("sources.{name}"),
                    "source names are 1 to 64 letters, digits, `_` or `-`".into(),
                ));
            }
            let record_shape = s.record_shape.unwrap_or_default();
            let primary_key = crate::primary_key::PrimaryKey::build(
                s.primary_key.as_ref(),
                record_shape == RecordShape::Packed,
            )
            .map_err(|detail| bad(&setting("primary_key"), detail))?;
            for (field, secrets) in [("api_keys", &s.api_keys), ("url_tokens", &s.url_tokens)] {
                if let Some(list) = secrets {
                    if list.iter().any(|k| k.len() < 8) {
                        return Err(bad(
                            &setting(field),
                            "every secret must be at least 8 characters".into(),
                        ));
                    }
                }
            }
            // Validating the setting is building its verifier, kept for the receiver: a source
            // whose signatures cannot be checked makes the settings invalid (fails closed).
            let signature = s
                .signature
                .as_ref()
                .map(Signature::build)
                .transpose()
                .map_err(|detail| bad(&setting("signature"), detail))?;
            let operation = s
                .operation
                .as_ref()
                .map(crate::operation::Operation::build)
                .transpose()
                .map_err(|detail| bad(&setting("operation"), detail))?;
            let unflatten_query = crate::receiver::unflatten::Unflatten::build(s.unflatten_query)
                .map_err(|detail| bad(&setting("unflatten_query"), detail))?;
            let route = crate::route::Route::build(
                s.stream_from.as_ref(),
                s.include,
                s.exclude,
                s.max_streams,
            )
            .map_err(|(field, detail)| bad(&setting(field), detail))?;
            let redact = crate::receiver::redact::Redact::build(s.redact)
                .map_err(|detail| bad(&setting("redact"), detail))?;
            let dedupe_key = crate::receiver::dedupe_key::DedupeKey::build(s.dedupe_key)
                .map_err(|detail| bad(&setting("dedupe_key"), detail))?;
            // Each flattening setting the source leaves out is the top level's.
            // The top level's default passes over packed sources (they have no fields to
            // flatten); a packed source turning it on itself is refused.
            let packed = s.record_shape == Some(RecordShape::Packed);
            let enabled = match s.flattening_enabled {
                Some(own) => own,
                None => c.flattening_enabled.unwrap_or(false) && !packed,
            };
            let flattening = crate::tap::flatten::Flattening::build(
                enabled,
                s.flattening_max_depth.or(c.flattening_max_depth),
                s.flattening_max_key_length.or(c.flattening_max_key_length),
                packed,
                c.max_fields_per_message
                    .unwrap_or(DEFAULT_MAX_FIELDS_PER_MESSAGE)
                    .max(1),
            )
            .map_err(|(field, detail)| {
                let own = s.flattening_enabled.is_some()
                    || s.flattening_max_depth.is_some()
                    || s.flattening_max_key_length.is_some();
                bad(
                    &if own {
                        setting(field)
                    } else {
                        field.to_owned()
                    },
                    detail,
                )
            })?;
            // The routing header is kept with every message: the tap reads it there.
            let mut capture_headers: Vec<String> = s.capture_headers.unwrap_or_default();
            capture_headers.extend(route.as_ref().and_then(|r| r.header()).map(str::to_owned));
            let api_key_header = s.api_key_header.unwrap_or_else(|| "x-api-key".into());
            if axum::http::HeaderName::from_bytes(api_key_header.as_bytes()).is_err() {
                return Err(bad(
                    &setting("api_key_header"),
                    "not a valid header name".into(),
                ));
            }
            // So are the key's headers; a credential is stored redacted, so it keys nothing.
            if let Some(pk) = &primary_key {
                let mut secret: Vec<String> = signature
                    .as_ref()
                    .map(|sig| sig.verifier().secret_headers())
                    .unwrap_or_default();
                if s.api_keys.as_ref().is_some_and(|k| !k.is_empty()) {
                    secret.push(api_key_header.to_ascii_lowercase());
                }
                for h in pk.headers() {
                    if secret.iter().any(|s| s.eq_ignore_ascii_case(h)) {
                        return Err(bad(
                            &setting("primary_key"),
                            format!(
                                "header {h:?} is a credential of the source, never stored in clear"
                            ),
                        ));
                    }
                    capture_headers.push(h.to_owned());
                }
            }
            sources.insert(
                name.clone(),
                Source {
                    name,
                    record_shape,
                    primary_key,
                    on_missing_key: s.on_missing_key.unwrap_or_default(),
                    api_key_header: api_key_header.to_ascii_lowercase(),
                    api_keys: s.api_keys.unwrap_or_default(),
                    token_param: s.token_param.unwrap_or_else(|| "token".into()),
                    url_tokens: s.url_tokens.unwrap_or_default(),
                    allow_get: s.allow_get.unwrap_or(false),
                    delivery_id_header: s.delivery_id_header.map(|h| h.to_ascii_lowercase()),
                    capture_headers: capture_headers
                        .into_iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                    signature,
                    operation,
                    unflatten_query,
                    route,
                    redact,
                    dedupe_key,
                    flattening,
                },
            );
        }
        let names = sources
            .values()
            .map(|s| (s.name.as_str(), s.route.is_some()));
        crate::route::check_names(names).map_err(|(setting, detail)| bad(&setting, detail))?;
        let positive = |setting: &str, v: Option<f64>| {
            v.map(|x| {
                Duration::try_from_secs_f64(x).map_err(|_| {
                    bad(
                        setting,
                        format!("{x} is not a non-negative number of seconds a clock can hold"),
                    )
                })
            })
            .transpose()
        };
        let settings = Settings {
            spool_path: PathBuf::from(c.spool_path.unwrap_or_else(|| DEFAULT_SPOOL_PATH.into())),
            listen_address: c
                .listen_address
                .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.into()),
            max_body_bytes: match c.max_body_bytes {
                Some(0) => return Err(bad("max_body_bytes", "must be at least 1".into())),
                v => v.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            },
            bounds: crate::receiver::body::Bounds {
                max_fields: match c.max_fields_per_message {
                    Some(0) => {
                        return Err(bad("max_fields_per_message", "must be at least 1".into()))
                    }
                    v => v.unwrap_or(DEFAULT_MAX_FIELDS_PER_MESSAGE),
                },
                max_messages: match c.max_messages_per_delivery {
                    Some(0) => {
                        return Err(bad(
                            "max_messages_per_delivery",
                            "must be at least 1".into(),
                        ))
                    }
                    v => v.unwrap_or(DEFAULT_MAX_MESSAGES_PER_DELIVERY),
                },
            },
            max_spool_bytes: c.max_spool_bytes.unwrap_or(DEFAULT_MAX_SPOOL_BYTES),
            retry_after_seconds: c.retry_after_seconds.unwrap_or(DEFAULT_RETRY_AFTER_SECONDS),
            limits: Limits {
                max_header_bytes: match c.max_header_bytes {
                    Some(n) if n < MIN_HEADER_BYTES => {
                        return Err(bad(
                            "max_header_bytes",
                            format!("must be at least {MIN_HEADER_BYTES}"),
                        ))
                    }
                    v => v.unwrap_or(DEFAULT_MAX_HEADER_BYTES),
                },
                max_headers: match c.max_headers {
                    Some(0) => return Err(bad("max_headers", "must be at least 1".into())),
                    v => v.unwrap_or(DEFAULT_MAX_HEADERS),
                },
                header_read_timeout: positive_timeout(
                    "header_read_timeout_seconds",
                    c.header_read_timeout_seconds,
                )?
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
                body_read_timeout: positive_timeout(
                    "body_read_timeout_seconds",
                    c.body_read_timeout_seconds,
                )?
                .unwrap_or(DEFAULT_BODY_READ_TIMEOUT),
                max_connections: match c.max_connections {
                    Some(0) => return Err(bad("max_connections", "must be at least 1".into())),
                    v => v.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                },
            },
            dedupe_window: Duration::from_secs(
                c.dedupe_window_seconds
                    .unwrap_or(DEFAULT_DEDUPE_WINDOW_SECONDS),
            ),
            ledger: crate::spool::ledger::LedgerLimits {
                max_rows: c
                    .refused_ledger_max_rows
                    .unwrap_or(DEFAULT_REFUSED_LEDGER_MAX_ROWS),
                max_age: match c.refused_ledger_max_age_hours {
                    Some(h) if !(h.is_finite() && h > 0.0 && h < 1e7) => {
                        return Err(bad(
                            "refused_ledger_max_age_hours",
                            format!("{h} is not a positive number of hours"),
                        ))
                    }
                    Some(h) => Duration::from_secs_f64(h * 3600.0),
                    None => DEFAULT_REFUSED_LEDGER_MAX_AGE,
                },
            },
            admin: match c.admin_listen_address {
                None if c.admin_tokens.is_some() => {
                    return Err(bad(
                        "admin_tokens",
                        "given without admin_listen_address, which turns the admin page on".into(),
                    ))
                }
                None => None,
                Some(addr) => {
                    let tokens = c.admin_tokens.unwrap_or_default();
                    if tokens.iter().any(|t| t.len() < MIN_ADMIN_TOKEN_LEN) {
                        return Err(bad(
                            "admin_tokens",
                            format!(
                                "every token must be at least {MIN_ADMIN_TOKEN_LEN} characters"
                            ),
                        ));
                    }
                    if tokens.is_empty() && !is_loopback(&addr) {
                        return Err(bad(
                            "admin_tokens",
                            format!(
                                "required: admin_listen_address {addr} is not a loopback address, \
                                 so anyone who can reach it would read the deliveries"
                            ),
                        ));
                    }
                    Some(Admin {
                        listen_address: addr,
                        tokens,
                    })
                }
            },
            state_interval_records: match c.state_interval_records {
                Some(0) => return Err(bad("state_interval_records", "must be at least 1".into())),
                v => v.unwrap_or(DEFAULT_STATE_INTERVAL_RECORDS),
            },
            schema_prescan: c.schema_prescan.unwrap_or(true),
            retention: positive("retention_hours", c.retention_hours.map(|h| h * 3600.0))?
                .unwrap_or_default(),
            max_records: c.max_records,
            max_duration: positive("max_seconds", c.max_seconds)?,
            follow: c.follow.unwrap_or(false),
            state_interval_seconds: positive_timeout(
                "state_interval_seconds",
                c.state_interval_seconds,
            )?,
            sources,
            queue: crate::queue::QueueSettings::from_config(c.queue)
                .map_err(|detail| bad("queue", detail))?,
        };
        if settings.queue.is_some() && settings.admin.is_some() {
            return Err(bad(
                "admin_listen_address",
                "the admin page shows the embedded spool; with `queue` (SQS) the receiver has none"
                    .into(),
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests;
