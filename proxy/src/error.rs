//! Why a session ended badly, and what the client is told: each error knows its SQLSTATE, so
//! the mapping to the protocol lives in one place.

use std::time::Duration;

use thiserror::Error;

use crate::wire::FrameError;
use crate::wire::startup::StartupError;

/// Everything that can end a session other than a clean Terminate or close.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The client's first packets were invalid.
    #[error("invalid startup from the client: {0}")]
    Startup(#[from] StartupError),
    /// The client sent a frame that cannot be valid.
    #[error("malformed message from the client: {0}")]
    ClientFrame(FrameError),
    /// The server sent a frame that cannot be valid.
    #[error("malformed message from the server: {0}")]
    ServerFrame(FrameError),
    /// The client broke the protocol during authentication.
    #[error("protocol violation by the client during authentication: {0}")]
    ClientProtocol(String),
    /// A message from the client, once logged in, could not be decoded.
    #[error("malformed message from the client: {0}")]
    ClientMessage(String),
    /// The client left a message half sent for longer than `--message-timeout`.
    #[error("the client left a message unfinished for {0:?} (--message-timeout)")]
    MessageTimeout(Duration),
    /// The client sent nothing for longer than `--idle-timeout`.
    #[error("the client was idle for {0:?} (--idle-timeout)")]
    IdleTimeout(Duration),
    /// The server sent something pgseal cannot make sense of during startup.
    #[error("protocol violation by the server during startup: {0}")]
    ServerProtocol(String),
    /// The client did not finish TLS, startup and authentication in time.
    #[error("startup did not finish within {0:?}")]
    StartupTimeout(Duration),
    /// The client's TLS handshake failed.
    #[error("TLS handshake with the client failed: {0}")]
    ClientTls(std::io::Error),
    /// The client asked for TLS where pgseal has none, and insisted.
    #[error("the client requires TLS but pgseal has no --tls-cert")]
    TlsUnavailable,
    /// pgseal is at `--max-connections`.
    #[error("too many clients already (--max-connections {0})")]
    TooManyConnections(usize),
    /// No loaded policy names the database, and such databases are refused.
    #[error(
        "database {0:?} has no pgseal policy: no policy loaded names it, and \
         --unprotected-databases is refuse"
    )]
    UnprotectedDatabase(String),
    /// A reload withdrew the policy of the session's database.
    #[error("a reload withdrew the pgseal policy of database {0:?}; connect again")]
    PolicyWithdrawn(String),
    /// A reload gave a relayed session's database a policy (or stopped relaying it).
    #[error("a reload gave database {0:?} a pgseal policy; connect again")]
    PolicyAdded(String),
    /// A session stayed on policies a reload replaced for longer than `--reload-grace`.
    #[error(
        "the policies in force changed {0:?} ago and this session could not move to them (a \
         transaction stayed open past --reload-grace); connect again"
    )]
    ReloadGraceOver(std::time::Duration),
    /// PostgreSQL could not be reached.
    #[error("could not connect to the upstream PostgreSQL at {address}: {reason}")]
    UpstreamConnect {
        /// Where pgseal tried.
        address: String,
        /// What failed.
        reason: String,
    },
    /// None of several PostgreSQL hosts could be reached.
    #[error("no upstream PostgreSQL host could be reached (--upstream-target {target}): {tried}")]
    UpstreamNoHost {
        /// The target asked for.
        target: &'static str,
        /// Every host tried and why it failed, `; `-separated.
        tried: String,
    },
    /// The host a session logged into is not of the kind `--upstream-target` asks for; the
    /// login cannot be replayed on another host, so the client must reconnect.
    #[error(
        "the upstream host {host} is {is}, not what --upstream-target {target} asks for{others}; \
         reconnect"
    )]
    UpstreamWrongRole {
        /// The host.
        host: String,
        /// The target asked for.
        target: &'static str,
        /// What the host is, in words.
        is: String,
        /// What became of the hosts tried before it (empty, or `; …`).
        others: String,
    },
    /// SCRAM channel binding cannot work through pgseal in this configuration.
    #[error("SCRAM channel binding cannot pass through pgseal")]
    ChannelBinding,
    /// Reading from or writing to the client failed.
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    /// Reading from or writing to the server failed.
    #[error("server connection: {0}")]
    ServerIo(std::io::Error),
    /// pgseal is shutting down and the grace period is over.
    #[error("pgseal is shutting down")]
    Shutdown,
}

impl SessionError {
    /// The SQLSTATE the client is told, or `None` when it cannot be told anything (its
    /// connection is gone or the protocol does not allow a message at that point).
    pub fn sqlstate(&self) -> Option<&'static str> {
        match self {
            SessionError::Startup(StartupError::Io(_) | StartupError::NoData) => None,
            SessionError::Startup(_) => Some("08P01"),
            SessionError::ClientFrame(FrameError::TooLarge { .. }) => Some("54000"),
            SessionError::ClientFrame(_)
            | SessionError::ClientProtocol(_)
            | SessionError::ClientMessage(_)
            | SessionError::MessageTimeout(_) => Some("08P01"),
            SessionError::IdleTimeout(_) => Some("57P05"),
            SessionError::ServerFrame(_) | SessionError::ServerProtocol(_) => Some("08P01"),
            SessionError::ServerIo(_) => Some("08006"),
            SessionError::StartupTimeout(_) => Some("08006"),
            SessionError::ClientTls(_) => None,
            SessionError::TlsUnavailable => Some("08P01"),
            SessionError::TooManyConnections(_) => Some("53300"),
            // sqlserver_rejected_establishment_of_sqlconnection
            SessionError::UnprotectedDatabase(_) => Some("08004"),
            SessionError::PolicyWithdrawn(_)
            | SessionError::PolicyAdded(_)
            | SessionError::ReloadGraceOver(_) => Some("57P01"),
            SessionError::UpstreamConnect { .. }
            | SessionError::UpstreamNoHost { .. }
            | SessionError::UpstreamWrongRole { .. } => Some("08001"),
            SessionError::ChannelBinding => Some("28000"),
            SessionError::ClientIo(_) => None,
            SessionError::Shutdown => Some("57P01"),
        }
    }

    /// The message the client is told; PostgreSQL's own wording where one exists.
    pub fn client_message(&self) -> String {
        match self {
            SessionError::TooManyConnections(_) => "sorry, too many clients already".into(),
            SessionError::Shutdown => "terminating connection due to administrator command".into(),
            other => format!("pgseal: {other}"),
        }
    }

    /// A hint for the client, where pgseal can say how to fix it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SessionError::ChannelBinding => Some(
                "Both the client and PostgreSQL use TLS with different certificates, so the \
                 client's channel binding cannot match. Connect with channel_binding=disable, \
                 give pgseal the same certificate and key as PostgreSQL, or use \
                 --upstream-tls disable on a trusted link.",
            ),
            SessionError::UpstreamConnect { .. } => {
                Some("Check that PostgreSQL is running and that --upstream points at it.")
            }
            SessionError::UpstreamNoHost { .. } => {
                Some("Check that PostgreSQL runs on one of the --upstream hosts.")
            }
            SessionError::UpstreamWrongRole { .. } => Some(
                "pgseal has recorded this host's role: a new connection tries the other hosts \
                 first.",
            ),
            SessionError::UnprotectedDatabase(_) => Some(
                "Add the database to a policy's `databases` and reload pgseal, or relay such \
                 databases as they are with --unprotected-databases relay.",
            ),
            _ => None,
        }
    }

    /// A short word for logs saying how the session ended.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Startup(StartupError::NoData) => "no_startup",
            SessionError::Startup(_) => "bad_startup",
            SessionError::ClientFrame(_)
            | SessionError::ClientProtocol(_)
            | SessionError::ClientMessage(_) => "client_protocol",
            SessionError::MessageTimeout(_) => "message_timeout",
            SessionError::IdleTimeout(_) => "idle_timeout",
            SessionError::ServerFrame(_) | SessionError::ServerProtocol(_) => "server_protocol",
            SessionError::StartupTimeout(_) => "startup_timeout",
            SessionError::ClientTls(_) | SessionError::TlsUnavailable => "client_tls",
            SessionError::TooManyConnections(_) => "too_many_connections",
            SessionError::UnprotectedDatabase(_) => "unprotected_database",
            SessionError::PolicyWithdrawn(_) => "policy_withdrawn",
            SessionError::ReloadGraceOver(_) => "reload_grace_over",
            SessionError::PolicyAdded(_) => "policy_added",
            SessionError::UpstreamConnect { .. } | SessionError::UpstreamNoHost { .. } => {
                "upstream_unreachable"
            }
            SessionError::UpstreamWrongRole { .. } => "upstream_wrong_role",
            SessionError::ChannelBinding => "channel_binding",
            SessionError::ClientIo(_) => "client_io",
            SessionError::ServerIo(_) => "server_io",
            SessionError::Shutdown => "shutdown",
        }
    }
}
