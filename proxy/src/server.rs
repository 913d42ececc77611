//! The listener: accepts clients, applies `--max-connections`, starts a session task for each,
//! and shuts down gracefully (stop accepting, let sessions finish within the grace period,
//! then end the rest with SQLSTATE 57P01).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{AdminServer, Health, Metrics};
use crate::cancel::CancelRegistry;
use crate::config::{ServeConfig, UpstreamTlsMode};
use crate::protect::set::InForce;
use crate::reload::{Loader, Reloader};
use crate::session::{self, Context};
use crate::session_threads::SessionThreads;
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
    /// The configuration file could not be read again (at a reload).
    #[error("configuration: {0}")]
    Config(String),
    /// The keyring could not be loaded.
    #[error("keyring: {0}")]
    Keyring(pgseal_keys::Error),
    /// A policy was given without a keyring.
    #[error("--policy needs a keyring: --keyring FILE or PGSEAL_ROOT_KEY")]
    NoKeyring,
    /// An option that only makes sense with a policy was given without one.
    #[error("{0} needs --policy")]
    NeedsPolicy(&'static str),
    /// The budget state store or the alert webhook is unusable.
    #[error("budgets: {0}")]
    Budgets(String),
    /// The audit trail cannot be opened.
    #[error("audit trail: {0}")]
    Audit(String),
    /// The admin endpoint cannot listen.
    #[error("--admin-listen {address}: {message}")]
    Admin {
        /// The address asked for.
        address: String,
        /// Why.
        message: String,
    },
    /// The keys of the policy's columns could not be derived.
    #[error(transparent)]
    Protection(#[from] crate::protect::ProtectionError),
}

/// The way to the `--upstream` hosts: a TLS connector per host (its name checked by
/// verify-full), sessions counted in `metrics`.
fn upstream(config: &ServeConfig, metrics: &Arc<Metrics>) -> Result<Upstream, ServerError> {
    let mut hosts = Vec::with_capacity(config.upstream.len());
    for address in config.upstream.as_slice() {
        let tls =
            tls::upstream_connector(config.upstream_tls, config.upstream_ca.as_deref(), address)?;
        if config.upstream_tls == UpstreamTlsMode::Disable
            && address.socket_path().is_none()
            && !is_loopback(&address.host)
        {
            warn!(
                upstream = %address,
                "the link to PostgreSQL is not encrypted (--upstream-tls disable) and leaves this host"
            );
        }
        hosts.push((address.clone(), tls));
    }
    Ok(
        Upstream::with_hosts(hosts, config.upstream_target, config.connect_timeout)
            .with_metrics(Arc::clone(metrics)),
    )
}

/// A bound, not yet running, proxy.
pub struct Server {
    listener: TcpListener,
    context: Arc<Context>,
    admin: Option<AdminServer>,
    /// Where sessions run: their own threads, or (`None`) the runtime `run` is called on.
    threads: Option<Arc<SessionThreads>>,
    /// Reloads the policies and keyring, when protection is on.
    reloader: Option<Arc<Reloader>>,
}

impl Server {
    /// Checks the TLS material and binds the listen address.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServerError> {
        let client_tls = config
            .client_tls
            .as_ref()
            .map(tls::client_acceptor)
            .transpose()?;
        let metrics = Arc::new(Metrics::new());
        let reloader = Loader::start(&config, &metrics)
            .await?
            .map(|(loader, set)| {
                let in_force = Arc::new(InForce::new(set, config.reload_grace));
                Arc::new(Reloader::new(loader, in_force, Arc::clone(&metrics)))
            });
        let upstream = upstream(&config, &metrics)?;
        let admin = match &config.admin_listen {
            None => None,
            Some(address) => {
                let mut health = Health::new(
                    &config.upstream.first().host,
                    config.upstream.first().port,
                    config.connect_timeout,
                    Some(Arc::clone(&metrics)),
                )
                .with_upstream(&upstream);
                if let Some(reloader) = &reloader {
                    health = health.with_protections(Arc::clone(reloader.in_force()));
                }
                let server = AdminServer::bind(address, Arc::clone(&metrics), health)
                    .await
                    .map_err(|e| ServerError::Admin {
                        address: address.clone(),
                        message: e.to_string(),
                    })?;
                Some(match &reloader {
                    Some(reloader) => server.with_reloader(Arc::clone(reloader)),
                    None => server,
                })
            }
        };
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    address: config.listen.clone(),
                    source,
                })?;
        let context = Arc::new(Context {
            config,
            client_tls,
            upstream,
            cancels: Arc::new(CancelRegistry::default()),
            protections: reloader.as_ref().map(|r| Arc::clone(r.in_force())),
            metrics,
        });
        Ok(Server {
            listener,
            context,
            admin,
            threads: None,
            reloader,
        })
    }

    /// The admin endpoint's address, when it listens (useful when binding port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The address clients connect to (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// What reloads the policies and keyring (SIGHUP in `pgseal serve`), when protection is on.
    pub fn reloader(&self) -> Option<Arc<Reloader>> {
        self.reloader.clone()
    }

    /// Runs each session on one of `threads` rather than on the runtime [`Server::run`] is
    /// called on (what `pgseal serve` does; tests run sessions in their own runtime).
    pub fn with_session_threads(mut self, threads: Arc<SessionThreads>) -> Server {
        self.threads = Some(threads);
        self
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let config = &self.context.config;
        let admission = Arc::new(Semaphore::new(config.max_connections));
        let sessions = TaskTracker::new();
        let terminate = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let admin = self.admin.take().map(|admin| {
            let stop = admin_stop.clone();
            tokio::spawn(async move { admin.serve(stop.cancelled_owned()).await })
        });
        // Idle accounts' state is swept once a minute (and their leases returned), in the
        // budgets of the set in force.
        let sweeper = self.context.protections.as_ref().map(|in_force| {
            let in_force = Arc::clone(in_force);
            tokio::spawn(async move {
                let mut tick = crate::timer::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    for protection in in_force.current().protections() {
                        protection.budgets.sweep();
                    }
                }
            })
        });
        info!(
            listen = %self.local_addr(),
            upstream = %config.upstream,
            upstream_target = %config.upstream_target,
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
                        let context = Arc::clone(&self.context);
                        let terminate = terminate.clone();
                        match &self.threads {
                            None => {
                                sessions.spawn(session::serve(
                                    context, socket, peer, permit, terminate,
                                ));
                            }
                            Some(threads) => {
                                // The socket moves to the session thread's own reactor.
                                let moved = socket.into_std();
                                sessions.spawn_on(
                                    async move {
                                        match moved.and_then(TcpStream::from_std) {
                                            Ok(socket) => {
                                                session::serve(
                                                    context, socket, peer, permit, terminate,
                                                )
                                                .await
                                            }
                                            Err(error) => warn!(
                                                %error,
                                                "handing a connection to its session thread failed"
                                            ),
                                        }
                                    },
                                    threads.next(),
                                );
                            }
                        }
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(%error, "accepting a connection failed");
                        crate::timer::sleep(Duration::from_millis(100)).await;
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
        if crate::timer::timeout(grace, sessions.wait()).await.is_err() {
            warn!(
                sessions = sessions.len(),
                "grace period over: ending the remaining sessions"
            );
            terminate.cancel();
            let _ = crate::timer::timeout(Duration::from_secs(5), sessions.wait()).await;
        }
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        if let Some(reloader) = &self.reloader {
            // Unused budget leases go back to the shared store; the audit queue is written out.
            for protection in reloader.in_force().current().protections() {
                protection.budgets.shutdown().await;
            }
            if let Some(audit) = reloader.audit()
                && let Err(error) = audit.close().await
            {
                warn!(%error, "closing the audit trail failed");
            }
        }
        admin_stop.cancel();
        if let Some(admin) = admin {
            let _ = admin.await;
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
