//! Logging set-up (tracing-subscriber), for the binary.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber for `config.log` / `config.log_format`. A filter that does
/// not parse falls back to `info` with a warning.
pub fn init(config: &Config) {
    let (filter, bad_filter) = match EnvFilter::try_new(&config.log) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    // Quiet the libraries that narrate every statement or migration.
    let filter = ["sqlx=warn", "sea_orm=warn", "sea_orm_migration=warn"]
        .into_iter()
        .filter(|d| !config.log.contains(d.split('=').next().unwrap_or_default()))
        .filter_map(|d| d.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    // Colour only for a terminal; redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(e) = bad_filter {
        tracing::warn!(filter = %config.log, error = %e, "invalid log filter; using \"info\"");
    }
}
