//! `tap-webhook urls`: each source's full webhook URL (with its URL token when it uses one),
//! how a delivery authenticates, and what is verified. `serve` logs the same description at
//! start ([`describe`]).

use std::io::Write;

use serde::Serialize;

use super::{write_jsonl, write_table, Format, OpsError};
use crate::settings::{Settings, Source};

/// One URL to configure at a provider.
#[derive(Debug, Serialize, PartialEq)]
pub struct SourceUrl {
    pub source: String,
    pub url: String,
    pub methods: String,
    /// How a delivery authenticates ("none" when it does not).
    pub auth: String,
    /// The signature checked over the body ("none" when none).
    pub verifies: String,
}

/// How a source authenticates and what it verifies (never a secret).
pub fn describe(source: &Source) -> (String, String) {
    let mut auth = Vec::new();
    if !source.api_keys.is_empty() {
        auth.push(format!("API key in header {}", source.api_key_header));
    }
    if !source.url_tokens.is_empty() {
        auth.push(format!("URL token in ?{}=", source.token_param));
    }
    let auth = if auth.is_empty() {
        "none".to_owned()
    } else {
        auth.join(" and ")
    };
    let verifies = match &source.signature {
        Some(sig) => format!("{:?} signature", sig.scheme()).to_lowercase(),
        None => "none".to_owned(),
    };
    (auth, verifies)
}

/// The URLs of every source under `base` (`https://hooks.example.com`, a path prefix allowed):
/// one per URL token, so a token being rotated in shows beside the old one.
pub fn urls(settings: &Settings, base: &str) -> Result<Vec<SourceUrl>, OpsError> {
    let base = base.trim_end_matches('/');
    if !(base.starts_with("https://") || base.starts_with("http://")) || base.contains(['?', '#']) {
        return Err(OpsError::Arg(format!(
            "--base-url {base:?}: expected http(s)://host[:port][/prefix], the address providers reach"
        )));
    }
    let mut out = Vec::new();
    for s in settings.sources.values() {
        let (auth, verifies) = describe(s);
        let plain = format!("{base}/webhooks/{}", s.name);
        let with_tokens: Vec<String> = s
            .url_tokens
            .iter()
            .map(|t| {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair(&s.token_param, t)
                    .finish();
                format!("{plain}?{q}")
            })
            .collect();
        let methods = if s.allow_get { "POST, GET" } else { "POST" };
        for url in if with_tokens.is_empty() {
            vec![plain]
        } else {
            with_tokens
        } {
            out.push(SourceUrl {
                source: s.name.clone(),
                url,
                methods: methods.into(),
                auth: auth.clone(),
                verifies: verifies.clone(),
            });
        }
    }
    Ok(out)
}

pub fn run(
    settings: &Settings,
    base: &str,
    format: Format,
    out: &mut impl Write,
) -> Result<(), OpsError> {
    let rows = urls(settings, base)?;
    match format {
        Format::Jsonl => write_jsonl(out, &rows),
        Format::Table => Ok(write_table(
            out,
            &["SOURCE", "URL", "METHODS", "AUTH", "VERIFIES"],
            &rows
                .iter()
                .map(|u| {
                    vec![
                        u.source.clone(),
                        u.url.clone(),
                        u.methods.clone(),
                        u.auth.clone(),
                        u.verifies.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        )?),
    }
}
