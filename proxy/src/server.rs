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
use crate::protect::Protection;
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
    /// The policy file could not be loaded; every problem is listed.
    #[error("policy {path}:\n{problems}")]
    Policy {
        /// The file.
        path: String,
        /// One problem per line.
        problems: String,
    },
    /// The keyring could not be loaded.
    #[error("keyring: {0}")]
    Keyring(pgseal_keys::Error),
    /// A policy was given without a keyring.
    #[error("--policy needs a keyring: --keyring FILE or PGSEAL_ROOT_KEY")]
    NoKeyring,
    /// The keys of the policy's columns could not be derived.
    #[error(transparent)]
    Protection(#[from] crate::protect::ProtectionError),
}

/// Loads the policy and keyring when a policy is configured.
fn load_protection(config: &ServeConfig) -> Result<Option<Arc<Protection>>, ServerError> {
    let Some(policy_path) = &config.policy else {
        return Ok(None);
    };
    let policy =
        pgseal_policies::CompiledPolicy::load(policy_path).map_err(|e| ServerError::Policy {
            path: policy_path.display().to_string(),
            problems: e.to_string(),
        })?;
    let keyring = match &config.keyring {
        Some(path) => pgseal_keys::Keyring::load(path).map_err(ServerError::Keyring)?,
        None if std::env::var_os("PGSEAL_ROOT_KEY").is_some() => {
            pgseal_keys::Keyring::from_env().map_err(ServerError::Keyring)?
        }
        None => return Err(ServerError::NoKeyring),
    };
    let protection = Protection::new(policy, &keyring, config.unanalysable)?;
    info!(
        policy = %policy_path.display(),
        sealed_columns = protection.policy.columns().len(),
        classes = protection.policy.classes().len(),
        "protection on"
    );
    Ok(Some(Arc::new(protection)))
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
        let protection = load_protection(&config)?;
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
            protection,
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
