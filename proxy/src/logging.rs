//! Log output: human-readable lines by default, JSON lines with `--log-format json`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Caps on other crates' logs, a filter of its own beside the operator's, so that no
/// directive, however specific (`sqlparser::parser=trace`), lets them through: the SQL parser
/// logs every statement it parses (names, NIRs, dates in clear) at debug, and the PostgreSQL
/// client crates log statements and server notices. pgseal's own logs name roles, columns and
/// fingerprints, never values.
pub fn third_party_caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("sqlparser", LevelFilter::OFF)
        .with_target("tokio_postgres", LevelFilter::WARN)
        .with_target("postgres_protocol", LevelFilter::WARN)
        .with_target("postgres_types", LevelFilter::WARN)
        .with_target("pgwire", LevelFilter::WARN)
        .with_target("rustls", LevelFilter::WARN)
        .with_target("tokio_rustls", LevelFilter::WARN)
}

/// The operator's filter; an invalid one gives `info` and the parse error.
pub fn operator_filter(filter: &str) -> (EnvFilter, Option<String>) {
    match EnvFilter::try_new(filter) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    }
}

/// Installs the global log subscriber, writing to standard error: an event is written when
/// both the operator's filter and [`third_party_caps`] let it through. An invalid filter falls
/// back to `info` with a warning, rather than running without logs.
pub fn init(format: LogFormat, filter: &str) {
    let (filter, invalid) = operator_filter(filter);
    let filtered = tracing_subscriber::registry()
        .with(third_party_caps())
        .with(filter);
    let installed = match format {
        LogFormat::Human => filtered
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => filtered
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if installed.is_ok()
        && let Some(error) = invalid
    {
        tracing::warn!(%error, "invalid --log-level; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing::Level;
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// Counts the events that pass the filter.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn passes(operator_filter: &str, emit: impl FnOnce()) -> usize {
        let count = Arc::new(AtomicUsize::new(0));
        let (filter, _) = super::operator_filter(operator_filter);
        let subscriber = tracing_subscriber::registry()
            .with(super::third_party_caps())
            .with(filter)
            .with(Count(Arc::clone(&count)));
        tracing::subscriber::with_default(subscriber, emit);
        count.load(Ordering::Relaxed)
    }

    #[test]
    fn no_level_lets_the_sql_parser_or_client_crates_log_statements() {
        for operator in [
            "trace",
            "debug",
            "sqlparser=trace",
            "trace,sqlparser=trace,tokio_postgres=trace",
        ] {
            let passed = passes(operator, || {
                tracing::event!(target: "sqlparser::parser", Level::DEBUG, "parsing");
                tracing::event!(target: "sqlparser::tokenizer", Level::ERROR, "tokenizing");
                tracing::event!(target: "tokio_postgres::prepare", Level::DEBUG, "preparing");
                tracing::event!(target: "tokio_postgres::connection", Level::INFO, "notice");
            });
            assert_eq!(passed, 0, "{operator}");
        }
        // pgseal's own logs follow the operator's filter.
        let passed = passes("debug", || {
            tracing::event!(target: "pgseal::session", Level::DEBUG, "session authenticated");
            tracing::event!(target: "tokio_postgres::connection", Level::WARN, "lost");
        });
        assert_eq!(passed, 2);
    }
}
