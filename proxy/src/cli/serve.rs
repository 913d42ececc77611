//! `pgseal serve`: runs the proxy until SIGTERM or Ctrl-C; SIGHUP reloads the policies and the
//! keyring.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use crate::config::Options;
use crate::logging;
use crate::server::Server;
use crate::session_threads::SessionThreads;

/// Arguments of `pgseal serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the options below (keys spelled as the flags, without `--`);
    /// flags and PGSEAL_* variables take precedence over it
    #[arg(long, env = "PGSEAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    options: Options,
}

/// Runs the proxy.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Options::from_file(path)?,
        None => Options::default(),
    };
    let flags = args.options.clone();
    let options = args.options.or(file);
    logging::init(
        options.log_format.unwrap_or_default(),
        options.log_level.as_deref().unwrap_or("info"),
    );
    let config = options.resolve()?;
    // The listener, the admin endpoint and the budget and audit work run here; each session
    // runs wholly on one of the session threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let threads = Arc::new(
        SessionThreads::start(config.session_threads).context("starting the session threads")?,
    );
    let served = runtime.block_on(async {
        let server = Server::bind(config)
            .await?
            .with_session_threads(Arc::clone(&threads));
        let reloader = server.reloader();
        if let (Some(reloader), Some(path)) = (&reloader, args.config.clone()) {
            // A reload reads the file again, under the same flags and environment.
            reloader.read_config_from(Box::new(move || {
                let file = Options::from_file(&path).map_err(|e| e.to_string())?;
                flags.clone().or(file).resolve().map_err(|e| e.to_string())
            }));
        }
        let reloads = tokio::spawn(reload_on_sighup(reloader));
        server.run(shutdown_signal()).await;
        reloads.abort();
        Ok(ExitCode::SUCCESS)
    });
    if let Ok(threads) = Arc::try_unwrap(threads) {
        threads.stop();
    }
    served
}

/// Reloads the policies and keyring at each SIGHUP (a refused reload is logged and counted by
/// the reloader; the set in force stays). Without a policy there is nothing to reload, and a
/// SIGHUP is only logged: it never stops the proxy.
async fn reload_on_sighup(reloader: Option<Arc<crate::reload::Reloader>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot install the SIGHUP handler; reload with POST /reload");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match &reloader {
            Some(reloader) => {
                tracing::info!("SIGHUP received: reloading the policies and keyring");
                let _ = reloader.reload("SIGHUP").await;
            }
            None => tracing::info!("SIGHUP received: no --policy, nothing to reload"),
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            // Without signal handlers the proxy can still be stopped by being killed.
            tracing::warn!("cannot install signal handlers; graceful shutdown unavailable");
            std::future::pending::<()>().await;
        }
    }
}
