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

use crate::admin::{AdminServer, Health, KeyringStatus, Metrics};
use crate::audit::{AuditLog, AuditTable, AuditTarget, DEFAULT_QUEUE, KeyEvent};
use crate::budget::{Budgets, FanOut, LogAlerts, WebhookSender};
use crate::cancel::CancelRegistry;
use crate::config::{ServeConfig, UpstreamTlsMode};
use crate::protect::Protection;
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

/// The name this pgseal's lines carry in the audit table: the host and the listen address, the
/// same across restarts (the chain continues with the file).
fn audit_instance(listen: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}/{listen}", if host.is_empty() { "pgseal" } else { host })
}

/// What a policy and its keyring give the proxy: the protection, and what `/healthz` says of the
/// keyring.
type Loaded = (Arc<Protection>, KeyringStatus);

/// Loads the policy and keyring when a policy is configured, with the budgets (in memory or
/// shared), their alert sinks and the audit trail. A keyring wrapped by an HSM is unwrapped here,
/// once, and the audit trail's first event after its start record says so.
async fn load_protection(
    config: &ServeConfig,
    metrics: &Arc<Metrics>,
) -> Result<Option<Loaded>, ServerError> {
    let Some(policy_path) = &config.policy else {
        for (flag, set) in [
            ("--state-url", config.state_url.is_some()),
            ("--audit", config.audit.is_some()),
            ("--audit-table-url", config.audit_table_url.is_some()),
            ("--alert-webhook", config.alert_webhook.is_some()),
        ] {
            if set {
                return Err(ServerError::NeedsPolicy(flag));
            }
        }
        return Ok(None);
    };
    let policy =
        pgseal_policies::CompiledPolicy::load(policy_path).map_err(|e| ServerError::Policy {
            path: policy_path.display().to_string(),
            problems: e.to_string(),
        })?;
    let keyring = match &config.keyring {
        Some(path) => {
            pgseal_keys::Keyring::load_with(path, &config.hsm).map_err(ServerError::Keyring)?
        }
        None if std::env::var_os("PGSEAL_ROOT_KEY").is_some() => {
            pgseal_keys::Keyring::from_env().map_err(ServerError::Keyring)?
        }
        None => return Err(ServerError::NoKeyring),
    };
    let keyring_status = KeyringStatus::new(
        match &config.keyring {
            Some(path) => format!("file {}", path.display()),
            None => "PGSEAL_ROOT_KEY".to_owned(),
        },
        &keyring,
    );
    if let Some(origin) = keyring.hsm_origin() {
        info!(
            keyring_id = %origin.keyring_id_hex(),
            module = %origin.binding.module.display(),
            token = %origin.binding.token,
            key = %origin.binding.key,
            active_version = keyring.active_version(),
            "keyring unwrapped through the HSM"
        );
    }
    let mut protection = Protection::new(policy, &keyring, config.unanalysable)?;
    protection.metrics = Arc::clone(metrics);
    protection.evaluation_caps = config.evaluation_caps;
    if let Some(url) = &config.state_url {
        protection.budgets = Budgets::shared(
            Arc::clone(&protection.policy),
            url,
            crate::budget::MonotonicClock::shared(),
        )
        .await
        .map_err(|e| ServerError::Budgets(e.to_string()))?;
    }
    let mut alerts = FanOut::new()
        .with(Arc::new(LogAlerts))
        .with(Arc::clone(metrics) as Arc<dyn crate::budget::AlertSink>);
    if let Some(url) = &config.alert_webhook {
        let (webhook, _task) = WebhookSender::start(url, 256, None)
            .map_err(|e| ServerError::Budgets(format!("--alert-webhook: {e}")))?;
        metrics.attach_webhook(Arc::clone(webhook.stats()));
        alerts = alerts.with(Arc::new(webhook));
    }
    protection.budgets.set_alert_sink(Arc::new(alerts));
    if config.audit_table_url.is_some() && config.audit.is_none() {
        return Err(ServerError::Audit(
            "--audit-table-url copies the trail that --audit writes: give --audit FILE too".into(),
        ));
    }
    if let Some(target) = &config.audit {
        let table = match &config.audit_table_url {
            Some(url) => Some(
                AuditTable::connect(url, &audit_instance(&config.listen))
                    .await
                    .map_err(|e| ServerError::Audit(e.to_string()))?,
            ),
            None => None,
        };
        let log = AuditLog::open(
            AuditTarget::parse(target),
            keyring.audit_key(),
            DEFAULT_QUEUE,
            table,
        )
        .map_err(|e| ServerError::Audit(e.to_string()))?;
        metrics.attach_audit(Arc::clone(log.stats()));
        if let Some(origin) = keyring.hsm_origin() {
            log.record_keys(KeyEvent::new(
                "serve",
                "unwrap",
                config.keyring.as_deref(),
                keyring.versions(),
                Some(origin),
            ));
        }
        protection.audit = Some(log);
    }
    info!(
        policy = %policy_path.display(),
        sealed_columns = protection.policy.columns().len(),
        classes = protection.policy.classes().len(),
        shared_budgets = config.state_url.is_some(),
        audit = config.audit.as_deref().unwrap_or("off"),
        "protection on"
    );
    Ok(Some((Arc::new(protection), keyring_status)))
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
        let (protection, keyring_status) = match load_protection(&config, &metrics).await? {
            Some((protection, status)) => (Some(protection), Some(status)),
            None => (None, None),
        };
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
                if let Some(status) = keyring_status {
                    health = health.with_keyring(status);
                }
                let server = AdminServer::bind(address, Arc::clone(&metrics), health)
                    .await
                    .map_err(|e| ServerError::Admin {
                        address: address.clone(),
                        message: e.to_string(),
                    })?;
                Some(server)
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
            protection,
            metrics,
        });
        Ok(Server {
            listener,
            context,
            admin,
            threads: None,
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
        // Idle accounts' state is swept once a minute (and their leases returned).
        let sweeper = self.context.protection.as_ref().map(|protection| {
            let budgets = protection.budgets.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    budgets.sweep();
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
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        if let Some(protection) = &self.context.protection {
            // Unused budget leases go back to the shared store; the audit queue is written out.
            protection.budgets.shutdown().await;
            if let Some(audit) = &protection.audit
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
