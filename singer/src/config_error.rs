//! What can go wrong loading settings: its own module, so the loaders (`config.rs`,
//! `flattened.rs`) share it without importing each other.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `error`, not `source`: the message already formats it, and a source would be printed
    // again as the next cause.
    #[error("reading config file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("config file {path} is not valid JSON: {error}")]
    Parse {
        path: String,
        error: serde_json::Error,
    },
    #[error("config file {path} must hold a JSON object")]
    NotAnObject { path: String },
    #[error("environment variable {var}: {detail}")]
    Env { var: String, detail: String },
    #[error("invalid config: setting `{setting}`: {detail}")]
    Invalid { setting: String, detail: String },
    #[error("the settings schema itself is invalid: {0}")]
    Schema(String),
}
