//! The listener: accepts clients, applies `--max-connections`, starts a session task for each,
//! and shuts down gracefully (stop accepting, let sessions finish within the grace period,
//! then end the rest with SQLSTATE 57P01).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cancel::CancelRegistry;
use crate::config::{ServeConfig, UpstreamTlsMode};
use crate::session::{self, Context};
use crate::tls::{self, TlsError};
use crate::upstream::Upstream;

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files or settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound, not yet running, proxy.
pub struct Server {
    listener: TcpListener,
    context: Arc<Context>,
}

impl Server {
    /// Checks the TLS material and binds the listen address.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServerError> {
        let client_tls = config
            .client_tls
            .as_ref()
            .map(tls::client_acceptor)
            .transpose()?;
        let upstream_tls = tls::upstream_connector(
            config.upstream_tls,
            config.upstream_ca.as_deref(),
            &config.upstream,
        )?;
        if config.upstream_tls == UpstreamTlsMode::Disable && !is_loopback(&config.upstream.host) {
            warn!(
                upstream = %config.upstream,
                "the link to PostgreSQL is not encrypted (--upstream-tls disable) and leaves this host"
            );
        }
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    address: config.listen.clone(),
                    source,
                })?;
        let upstream = Upstream::new(
            config.upstream.clone(),
            upstream_tls,
            config.connect_timeout,
        );
        let context = Arc::new(Context {
            config,
            client_tls,
            upstream,
            cancels: Arc::new(CancelRegistry::default()),
        });
        Ok(Server { listener, context })
    }

    /// The address clients connect to (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let config = &self.context.config;
        let admission = Arc::new(Semaphore::new(config.max_connections));
        let sessions = TaskTracker::new();
        let terminate = CancellationToken::new();
        info!(
            listen = %self.local_addr(),
            upstream = %config.upstream,
            client_tls = config.client_tls.is_some(),
            upstream_tls = ?config.upstream_tls,
            "pgseal is serving"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let permit = Arc::clone(&admission).try_acquire_owned().ok();
                        sessions.spawn(session::serve(
                            Arc::clone(&self.context),
                            socket,
                            peer,
                            permit,
                            terminate.clone(),
                        ));
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
        sessions.close();
        let grace = config.shutdown_grace;
        info!(
            sessions = sessions.len(),
            ?grace,
            "shutting down: no new connections, waiting for sessions to end"
        );
        if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
            warn!(
                sessions = sessions.len(),
                "grace period over: ending the remaining sessions"
            );
            terminate.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), sessions.wait()).await;
        }
        info!("pgseal stopped");
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
