//! The admin HTTP endpoint (`--admin-listen ADDR`): `GET /metrics`, `GET /healthz`, and
//! `POST /reload` with the header `Pgseal-Reload: yes` (the policies and keyring read again,
//! as SIGHUP does; the header keeps a web page from asking it of a browser on the admin host,
//! since a cross-origin request with a custom header needs a preflight pgseal never grants).
//!
//! Hand-written HTTP/1.1 — three paths do not justify a web framework in a security proxy's
//! dependency tree: each connection sends one request (head at most 8 KiB, read within 5 s; a
//! body is not read) and gets one response with `Connection: close`. `GET` and `HEAD` on the
//! first two, `POST` on the third; other paths get 404, other methods 405. A reload only reads
//! files the operator controls again; it answers 200 with the new generation, 500 with why it
//! was refused (the set in force stays), 409 while another runs, 403 without the header. At
//! most 32 connections are served at once; more are closed at once.
//! No TLS and no authentication: bind it to loopback or a management network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::health::Health;
use super::metrics::Metrics;
use crate::reload::{ReloadError, Reloader};

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 32;

/// The bound admin endpoint.
pub struct AdminServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    reloader: Option<Arc<Reloader>>,
}

impl AdminServer {
    /// Binds `address` (e.g. `127.0.0.1:9187`; port 0 picks a free one).
    pub async fn bind(
        address: &str,
        metrics: Arc<Metrics>,
        health: Health,
    ) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(address).await?;
        Ok(AdminServer {
            listener,
            metrics,
            health,
            reloader: None,
        })
    }

    /// Serves `POST /reload` with `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes (e.g. `token.cancelled_owned()`); requests in flight
    /// finish on their own.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!("admin endpoint accept: {e}");
                        crate::timer::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let metrics = self.metrics.clone();
            let health = self.health.clone();
            let reloader = self.reloader.clone();
            tokio::spawn(async move {
                let _ = handle(stream, &metrics, &health, reloader.as_deref()).await;
                drop(permit);
            });
        }
    }
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    health: &Health,
    reloader: Option<&Reloader>,
) -> std::io::Result<()> {
    let head = match crate::timer::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(
                &mut stream,
                Response::text("400 Bad Request", "bad request\n"),
                false,
            )
            .await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let (request_line, headers) = head.split_once('\n').unwrap_or((head.as_str(), ""));
    let mut parts = request_line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(
            &mut stream,
            Response::text("400 Bad Request", "bad request\n"),
            false,
        )
        .await;
    };
    if !version.starts_with("HTTP/1.") {
        return respond(
            &mut stream,
            Response::text("505 HTTP Version Not Supported", "HTTP/1.x only\n"),
            false,
        )
        .await;
    }
    let head_only = method == "HEAD";
    let path = target.split('?').next().unwrap_or(target);
    if path == "/reload" {
        let values = |wanted: &str| -> Vec<String> {
            headers
                .lines()
                .filter_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case(wanted)
                        .then(|| value.trim().to_owned())
                })
                .collect()
        };
        // The header, and a Host that is an address, not a name: a page whose name was made to
        // resolve to this address (DNS rebinding) sends its own name. One Host only.
        let hosts = values("host");
        let asked = values("pgseal-reload")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("yes"))
            && hosts.len() == 1
            && addressed_directly(&hosts[0]);
        let response = match (method, reloader) {
            ("POST", Some(_)) if !asked => Response::text(
                "403 Forbidden",
                "send the header Pgseal-Reload: yes, to this endpoint's address, to reload\n",
            ),
            ("POST", Some(reloader)) => match reloader.try_reload("POST /reload").await {
                Ok(generation) => {
                    Response::text("200 OK", format!("reloaded: generation {generation}\n"))
                }
                Err(ReloadError::Busy) => Response::text(
                    "409 Conflict",
                    "a reload is under way: ask again after it\n",
                ),
                Err(ReloadError::Refused(why)) => Response::text(
                    "500 Internal Server Error",
                    format!("reload refused, the set in force stays:\n{why}\n"),
                ),
            },
            ("POST", None) => Response::text(
                "404 Not Found",
                "nothing to reload: pgseal runs without --policy\n",
            ),
            _ => {
                let mut response = Response::text("405 Method Not Allowed", "POST only\n");
                response.allow = Some("POST");
                response
            }
        };
        return respond(&mut stream, response, false).await;
    }
    if method != "GET" && !head_only {
        let mut response = Response::text("405 Method Not Allowed", "GET or HEAD only\n");
        response.allow = Some("GET, HEAD");
        return respond(&mut stream, response, false).await;
    }
    let response = match path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render(),
            allow: None,
        },
        "/healthz" => match health.check().await {
            Ok(()) => Response::text(
                "200 OK",
                format!(
                    "ok\n{}{}",
                    health.upstream_lines().await,
                    health.protection_lines()
                ),
            ),
            Err(why) => Response::text(
                "503 Service Unavailable",
                format!(
                    "not ready: {why}\n{}{}",
                    health.upstream_lines().await,
                    health.protection_lines()
                ),
            ),
        },
        _ => Response::text("404 Not Found", "not found: try /metrics or /healthz\n"),
    };
    respond(&mut stream, response, head_only).await
}

/// Whether a `Host` header names this endpoint by address (`127.0.0.1:9187`, `[::1]:9187`)
/// or as `localhost`, rather than by a name a web page could control.
fn addressed_directly(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Reads the request head (the request line and the headers, without the blank line that ends
/// them); `None` when it is not a valid head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if buffer.windows(4).any(|w| w == b"\r\n\r\n") || buffer.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buffer.len() >= MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let Ok(text) = std::str::from_utf8(&buffer) else {
        return Ok(None);
    };
    let end = text
        .find("\r\n\r\n")
        .or_else(|| text.find("\n\n"))
        .unwrap_or(text.len());
    Ok(Some(text[..end].to_owned()))
}

async fn respond(
    stream: &mut TcpStream,
    response: Response,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    if let Some(allow) = response.allow {
        out.push_str(&format!("Allow: {allow}\r\n"));
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&response.body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}
