//! Log output: human-readable lines by default, JSON lines with `--log-format json`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber, writing to standard error. An invalid filter falls back
/// to `info` with a warning, rather than running without logs.
pub fn init(format: LogFormat, filter: &str) {
    let (filter, invalid) = match EnvFilter::try_new(filter) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if installed.is_ok()
        && let Some(error) = invalid
    {
        tracing::warn!(%error, "invalid --log-level; logging at info");
    }
}
