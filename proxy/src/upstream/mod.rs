//! Reaching PostgreSQL: one or several hosts (`--upstream a:5432,b:5432`), each over TCP (with
//! the optional TLS upgrade) or its Unix-domain socket, tried in the order [`roles`] gives for
//! the `--upstream-target` ([`target`]); forwarding cancel requests to the host a session is on.
//!
//! A host that refuses or does not answer within the connect timeout is recorded as unreachable
//! and the next one is tried. Whether a host fits the target is only known once a login on it
//! reports `in_hot_standby` ([`Upstream::admit`], called by the authentication relay): a session
//! that logged into a host of the wrong kind cannot move (its login cannot be replayed), so it
//! ends with 08001 naming the host and the target, and the record sends later sessions to the
//! other hosts first.

pub mod roles;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::admin::Metrics;
use crate::cancel::BackendKey;
use crate::config::UpstreamAddress;
use crate::error::SessionError;
use crate::stream::{MaybeTls, ServerStream};
use crate::tls::UpstreamTls;
use crate::wire::messages;

use roles::{HostRoles, Observation};
use target::{Mismatch, SessionReport, UpstreamTarget};

/// One configured host.
struct Host {
    address: UpstreamAddress,
    tls: Option<UpstreamTls>,
}

/// A connection to one of the hosts.
pub struct Connected {
    /// The stream, TLS negotiated when configured.
    pub stream: ServerStream,
    /// The host's index in the `--upstream` list.
    pub host: usize,
}

/// Opens connections to the configured PostgreSQL hosts.
pub struct Upstream {
    hosts: Vec<Host>,
    target: UpstreamTarget,
    connect_timeout: Duration,
    roles: Arc<HostRoles>,
    metrics: Option<Arc<Metrics>>,
}

impl Upstream {
    /// An upstream of several hosts (each with its TLS connector), tried for `target`.
    pub fn with_hosts(
        hosts: Vec<(UpstreamAddress, Option<UpstreamTls>)>,
        target: UpstreamTarget,
        connect_timeout: Duration,
    ) -> Self {
        let roles = Arc::new(HostRoles::new(hosts.len()));
        Upstream {
            hosts: hosts
                .into_iter()
                .map(|(address, tls)| Host { address, tls })
                .collect(),
            target,
            connect_timeout,
            roles,
            metrics: None,
        }
    }

    /// Counts sessions per host and shows the serving host in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The hosts, in the listed order.
    pub fn addresses(&self) -> Vec<UpstreamAddress> {
        self.hosts.iter().map(|h| h.address.clone()).collect()
    }

    /// The target new sessions must reach.
    pub fn target(&self) -> UpstreamTarget {
        self.target
    }

    /// What is known of each host's role (shared with `/healthz`).
    pub fn roles(&self) -> Arc<HostRoles> {
        Arc::clone(&self.roles)
    }

    /// Whether connections to the server use TLS.
    pub fn uses_tls(&self) -> bool {
        self.hosts.iter().any(|h| h.tls.is_some())
    }

    /// Connects to the first host that answers, in the order the records give for the target,
    /// each within the connect timeout.
    pub async fn connect(&self) -> Result<Connected, SessionError> {
        let mut failures = Vec::new();
        for index in self.roles.order(self.target) {
            match self.connect_host(index).await {
                Ok(stream) => {
                    return Ok(Connected {
                        stream,
                        host: index,
                    });
                }
                Err(reason) => {
                    failures.push(format!("{}: {reason}", self.hosts[index].address));
                    self.note(index, Observation::Unreachable(reason));
                }
            }
        }
        if let [only] = self.hosts.as_slice() {
            let reason = failures.pop().unwrap_or_default();
            let prefix = format!("{}: ", only.address);
            return Err(SessionError::UpstreamConnect {
                address: only.address.to_string(),
                reason: reason.strip_prefix(&prefix).unwrap_or(&reason).to_string(),
            });
        }
        Err(SessionError::UpstreamNoHost {
            target: self.target.name(),
            tried: failures.join("; "),
        })
    }

    /// After a login on host `index`: records its role, and says whether the session may go on.
    pub fn admit(&self, index: usize, report: &SessionReport) -> Result<(), SessionError> {
        self.note(index, Observation::Answered(report.role()));
        let address = match self.hosts.get(index) {
            Some(host) => host.address.to_string(),
            None => return Err(SessionError::ServerProtocol("unknown upstream host".into())),
        };
        match self.target.admits(report) {
            Ok(()) => {
                debug!(upstream = %address, is = report.describe(), "session admitted");
                if let Some(metrics) = &self.metrics {
                    metrics.upstream_sessions.with(&[&address]).inc();
                }
                Ok(())
            }
            Err(mismatch) => {
                let is = match mismatch {
                    Mismatch::NotReported => report.describe(),
                    Mismatch::Is(is) => is,
                };
                let others: Vec<String> = self
                    .roles
                    .snapshot()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(i, record)| {
                        format!(
                            "{}: {}",
                            self.hosts[i].address,
                            describe(&record.observation)
                        )
                    })
                    .collect();
                let others = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (other hosts: {})", others.join("; "))
                };
                Err(SessionError::UpstreamWrongRole {
                    host: address,
                    target: self.target.name(),
                    is,
                    others,
                })
            }
        }
    }

    /// Records that a login on host `index` was refused because the server is starting up or
    /// shutting down (57P03): later sessions try it after the hosts that answer.
    pub fn not_accepting(&self, index: usize) {
        self.note(
            index,
            Observation::Unreachable("not accepting connections (57P03)".into()),
        );
    }

    /// Records an observation, logs a change of role or reachability (once per change), and
    /// refreshes the serving-host gauge.
    fn note(&self, index: usize, observation: Observation) {
        let Some(host) = self.hosts.get(index) else {
            return;
        };
        let now = describe(&observation);
        let before = self.roles.record(index, observation.clone());
        let changed = match (&before, &observation) {
            (Some(Observation::Answered(a)), Observation::Answered(b)) => a != b,
            (Some(Observation::Unreachable(_)), Observation::Unreachable(_)) => false,
            (Some(Observation::Unknown), Observation::Answered(_)) => false,
            _ => true,
        };
        if changed {
            let was = before.as_ref().map_or_else(String::new, describe);
            match observation {
                Observation::Unreachable(_) => {
                    warn!(upstream = %host.address, was, now, "upstream host unreachable")
                }
                _ => info!(upstream = %host.address, was, now, "upstream host state changed"),
            }
        }
        if let Some(metrics) = &self.metrics {
            let serving = self.roles.serving(self.target);
            for (i, host) in self.hosts.iter().enumerate() {
                metrics
                    .upstream_serving
                    .with(&[&host.address.to_string()])
                    .set(i64::from(serving == Some(i)));
            }
        }
    }

    /// Connects to host `index`, negotiating TLS when configured, within the connect timeout.
    async fn connect_host(&self, index: usize) -> Result<ServerStream, String> {
        let host = self.hosts.get(index).ok_or("unknown upstream host")?;
        let attempt = async {
            if let Some(path) = host.address.socket_path() {
                return tokio::net::UnixStream::connect(&path)
                    .await
                    .map(MaybeTls::Unix)
                    .map_err(|e| e.to_string());
            }
            let tcp = TcpStream::connect((host.address.host.as_str(), host.address.port))
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            match &host.tls {
                None => Ok(MaybeTls::Plain(tcp)),
                Some(tls) => upgrade(tcp, tls).await.map(|s| MaybeTls::Tls(Box::new(s))),
            }
        };
        match crate::timer::timeout(self.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.connect_timeout)),
        }
    }

    /// Asks the server that `backend` runs on to cancel what it is running. The server answers
    /// nothing; the request is done when it closes the connection.
    pub async fn cancel(&self, backend: &BackendKey) -> Result<(), SessionError> {
        let mut stream = self.connect_host(backend.host).await.map_err(|reason| {
            SessionError::UpstreamConnect {
                address: self
                    .hosts
                    .get(backend.host)
                    .map_or_else(String::new, |h| h.address.to_string()),
                reason,
            }
        })?;
        let request = messages::cancel_request(backend.pid, &backend.secret);
        let io = |e: std::io::Error| SessionError::ServerIo(e);
        stream.write_all(&request).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut sink = [0u8; 64];
        let _ = crate::timer::timeout(self.connect_timeout, stream.read(&mut sink)).await;
        Ok(())
    }
}

/// An observation in words, for error messages and `/healthz`.
pub fn describe(observation: &Observation) -> String {
    match observation {
        Observation::Unknown => "not tried yet".into(),
        Observation::Answered(Some(role)) => role.name().into(),
        Observation::Answered(None) => "answered, role not reported".into(),
        Observation::Unreachable(reason) => format!("unreachable ({reason})"),
    }
}

/// Sends SSLRequest and, when the server agrees, runs the TLS handshake.
async fn upgrade(
    mut tcp: TcpStream,
    tls: &UpstreamTls,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    tcp.write_all(&messages::ssl_request())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    match answer[0] {
        b'S' => tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}")),
        b'N' => Err(
            "the server does not accept TLS (is ssl off?) but --upstream-tls asks for it".into(),
        ),
        other => Err(format!("unexpected answer {other:#04x} to SSLRequest")),
    }
}
