//! One client connection, from its first byte to its end: TLS and startup negotiation
//! ([`negotiate`]), the authentication relay ([`auth`]), then the relay of everything else
//! ([`relay`]). Each session is one tokio task owning both of its sockets.

pub(crate) mod auth;
mod negotiate;
pub(crate) mod protected;
pub mod relay;
mod relayed;
mod wake_gate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cancel::CancelRegistry;
use crate::config::ServeConfig;
use crate::error::SessionError;
use crate::protect::set::ForDatabase;
use crate::stream::ClientStream;
use crate::tls::ClientTls;
use crate::upstream::Upstream;
use crate::wire::messages::{Severity, error_response};
use crate::wire::startup::{StartupError, StartupMessage, StartupPacket};

pub use relay::{PumpEnd, RelayEnd};

/// What every session shares: configuration, TLS identity, the way to PostgreSQL, cancel keys.
pub struct Context {
    /// The checked configuration.
    pub config: ServeConfig,
    /// pgseal's TLS identity towards clients, if configured.
    pub client_tls: Option<ClientTls>,
    /// How to reach PostgreSQL.
    pub upstream: Upstream,
    /// The cancel keys handed out to live sessions.
    pub cancels: Arc<CancelRegistry>,
    /// The policies in force, when protection is on (a reload replaces them).
    pub protections: Option<Arc<crate::protect::set::InForce>>,
    /// The proxy's metrics.
    pub metrics: Arc<crate::admin::Metrics>,
}

/// What the end-of-session log line says about a session.
struct SessionRecord {
    peer: SocketAddr,
    started: Instant,
    role: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
    bytes_from_client: u64,
    bytes_to_client: u64,
}

/// How a session ended without error.
enum End {
    /// A CancelRequest was handled; there was no session.
    CancelRequest,
    /// The relay ended.
    Relay(RelayEnd),
    /// The server refused the startup or the login (its error was passed on).
    Refused,
}

/// Runs one client connection to its end and logs one line about it.
///
/// `admission` is `None` when pgseal is at `--max-connections`: the client is told so (SQLSTATE
/// 53300) once its startup packet is read, as PostgreSQL does; cancel requests are still served.
pub async fn serve(
    context: Arc<Context>,
    socket: TcpStream,
    peer: SocketAddr,
    admission: Option<OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let mut record = SessionRecord {
        peer,
        started: Instant::now(),
        role: None,
        database: None,
        application_name: None,
        bytes_from_client: 0,
        bytes_to_client: 0,
    };
    context.metrics.sessions_total.inc();
    context.metrics.sessions_active.inc();
    let outcome = run(&context, socket, &mut record, admission, &shutdown).await;
    context.metrics.sessions_active.dec();
    record.log(&outcome);
}

async fn run(
    context: &Arc<Context>,
    socket: TcpStream,
    record: &mut SessionRecord,
    admission: Option<OwnedSemaphorePermit>,
    shutdown: &CancellationToken,
) -> Result<End, SessionError> {
    let deadline = tokio::time::Instant::now() + context.config.startup_timeout;
    let timeout = SessionError::StartupTimeout(context.config.startup_timeout);
    let (mut client, packet) =
        match crate::timer::timeout_at(deadline, negotiate::negotiate(context, socket)).await {
            Err(_) => return Err(timeout),
            Ok(Err((Some(mut client), error))) => {
                tell_client(&mut client, &error).await;
                return Err(error);
            }
            Ok(Err((None, error))) => return Err(error),
            Ok(Ok(negotiated)) => negotiated,
        };
    let startup = match packet {
        StartupPacket::Cancel { pid, secret } => {
            forward_cancel(context, pid, &secret).await;
            return Ok(End::CancelRequest);
        }
        StartupPacket::Startup(startup) => startup,
        // negotiate() only returns a cancel or a startup.
        StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
            return Err(SessionError::ClientProtocol(
                "negotiation did not finish".into(),
            ));
        }
    };
    record.role = Some(startup.user.clone());
    record.database = Some(startup.database.clone());
    record.application_name = startup.application_name.clone();

    let _permit = match admission {
        Some(permit) => permit,
        None => {
            let error = SessionError::TooManyConnections(context.config.max_connections);
            tell_client(&mut client, &error).await;
            return Err(error);
        }
    };
    // The database's policy is chosen before anything reaches the server; a reload later
    // moves the session to the new set at its next statement outside a transaction.
    let mut relayed = None;
    let protection = match &context.protections {
        None => None,
        Some(in_force) => {
            let set = in_force.current();
            match set.for_database(&startup.database) {
                ForDatabase::Protected(protection) => Some(protected::Policies::new(
                    Arc::clone(in_force),
                    set.generation(),
                    protection,
                )),
                ForDatabase::Relay => {
                    relayed = Some(relayed::RelayedWatch::new(
                        Arc::clone(in_force),
                        set.generation(),
                        startup.database.clone(),
                    ));
                    None
                }
                ForDatabase::Refuse => {
                    let error = SessionError::UnprotectedDatabase(startup.database.clone());
                    tell_client(&mut client, &error).await;
                    return Err(error);
                }
            }
        }
    };
    let (mut server, host) = match context.upstream.connect().await {
        Ok(connected) => (connected.stream, connected.host),
        Err(error) => {
            tell_client(&mut client, &error).await;
            return Err(error);
        }
    };
    let StartupMessage { raw, .. } = &startup;
    if let Err(e) = server.write_all(raw).await {
        let error = SessionError::ServerIo(e);
        tell_client(&mut client, &error).await;
        return Err(error);
    }

    let mut client_buf = BytesMut::with_capacity(relay::READ_CHUNK);
    let mut server_buf = BytesMut::with_capacity(relay::READ_CHUNK);
    let login = auth::Login {
        context,
        host,
        client: &mut client,
        server: &mut server,
        client_buf: &mut client_buf,
        server_buf: &mut server_buf,
    };
    let authenticated = crate::timer::timeout_at(deadline, login.run()).await;
    let (registration, settings) = match authenticated {
        Ok(Ok(auth::LoginEnd::Ready {
            registration,
            bytes_from_client,
            bytes_to_client,
            settings,
        })) => {
            record.bytes_from_client += bytes_from_client;
            record.bytes_to_client += bytes_to_client;
            (registration, settings)
        }
        Ok(Ok(auth::LoginEnd::Refused)) => return Ok(End::Refused),
        Ok(Err(error)) => {
            tell_client(&mut client, &error).await;
            return Err(error);
        }
        Err(_) => {
            tell_client(&mut client, &timeout).await;
            return Err(timeout);
        }
    };
    debug!(pid = registration.pid, "session authenticated");

    let buffers = (client_buf, server_buf);
    let (outcome, from_client, to_client) = match (protection, relayed) {
        (None, None) => {
            let filters = (relay::Passthrough, relay::Passthrough);
            relay::Relay::new(client, server, buffers, filters, &context.config)
                .run(shutdown)
                .await
        }
        (None, Some(watch)) => {
            let filters = (watch, relay::Passthrough);
            relay::Relay::new(client, server, buffers, filters, &context.config)
                .run(shutdown)
                .await
        }
        (Some(policies), _) => {
            let session = protected::SessionInfo {
                role: startup.user.clone(),
                database: startup.database.clone(),
                client: record.peer,
                application_name: startup.application_name.clone(),
            };
            let filters = protected::filters(
                policies,
                session,
                settings,
                protected::Canceller::new(Arc::clone(context), registration.backend.clone()),
                std::sync::Arc::clone(&registration.cancelled),
            );
            relay::Relay::new(client, server, buffers, filters, &context.config)
                .run(shutdown)
                .await
        }
    };
    record.bytes_from_client += from_client;
    record.bytes_to_client += to_client;
    drop(registration);
    outcome.map(End::Relay)
}

/// Asks the server to cancel what a session's backend runs, in the background.
pub(crate) async fn cancel_backend(context: &Context, backend: &crate::cancel::BackendKey) {
    if let Err(e) = context.upstream.cancel(backend).await {
        warn!(error = %e, "pgseal could not cancel a statement it ended");
    }
}

/// Sends the client an ErrorResponse for `error`, when it has a SQLSTATE to send; failures to
/// send are ignored, since the session is ending anyway.
async fn tell_client(client: &mut ClientStream, error: &SessionError) {
    if let Some(sqlstate) = error.sqlstate() {
        let frame = error_response(
            Severity::Fatal,
            sqlstate,
            &error.client_message(),
            error.hint(),
        );
        let _ = client.write_all(&frame).await;
        let _ = client.flush().await;
    }
}

async fn forward_cancel(context: &Context, pid: i32, secret: &[u8]) {
    match context.cancels.lookup(pid, secret) {
        Some(backend) => match context.upstream.cancel(&backend).await {
            Ok(()) => debug!(pid, "cancel request forwarded"),
            Err(e) => warn!(pid, error = %e, "cancel request could not be forwarded"),
        },
        None => warn!(pid, "cancel request with an unknown key ignored"),
    }
}

impl SessionRecord {
    fn log(&self, outcome: &Result<End, SessionError>) {
        let end = match outcome {
            Ok(End::CancelRequest) => return,
            Ok(End::Refused) => "refused_by_server",
            Ok(End::Relay(RelayEnd::ClientTerminated)) => "client_terminate",
            Ok(End::Relay(RelayEnd::ClientClosed)) => "client_closed",
            Ok(End::Relay(RelayEnd::ServerClosed)) => "server_closed",
            Err(e) => e.kind(),
        };
        let role = self.role.as_deref().unwrap_or("");
        let database = self.database.as_deref().unwrap_or("");
        let application_name = self.application_name.as_deref().unwrap_or("");
        let duration_ms = self.started.elapsed().as_millis() as u64;
        match outcome {
            // A connection that sent nothing is a probe; PostgreSQL does not log it either.
            Err(SessionError::Startup(StartupError::NoData)) => {
                debug!(client = %self.peer, end, "connection closed before startup")
            }
            Err(error) => warn!(
                client = %self.peer, role, database, application_name, duration_ms,
                bytes_from_client = self.bytes_from_client, bytes_to_client = self.bytes_to_client,
                end, error = %error, "session ended"
            ),
            Ok(_) => info!(
                client = %self.peer, role, database, application_name, duration_ms,
                bytes_from_client = self.bytes_from_client, bytes_to_client = self.bytes_to_client,
                end, "session ended"
            ),
        }
    }
}
