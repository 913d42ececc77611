//! The admin HTTP endpoint (`--admin-listen ADDR`): `GET /metrics` and `GET /healthz`.
//!
//! Hand-written HTTP/1.1 — two read-only paths do not justify a web framework in a security
//! proxy's dependency tree: each connection sends one request (head at most 8 KiB, read within
//! 5 s) and gets one response with `Connection: close`. `GET` and `HEAD` only; other paths get
//! 404, other methods 405. At most 32 connections are served at once; more are closed at once.
//! No TLS and no authentication: bind it to loopback or a management network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::health::Health;
use super::metrics::Metrics;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 32;

/// The bound admin endpoint.
pub struct AdminServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
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
        })
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
                        tokio::time::sleep(Duration::from_millis(50)).await;
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
            tokio::spawn(async move {
                let _ = handle(stream, &metrics, &health).await;
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
    allow: bool,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: false,
        }
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
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
    let mut parts = head.split(' ');
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
    if method != "GET" && !head_only {
        let mut response = Response::text("405 Method Not Allowed", "GET or HEAD only\n");
        response.allow = true;
        return respond(&mut stream, response, false).await;
    }
    let path = target.split('?').next().unwrap_or(target);
    let response = match path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render(),
            allow: false,
        },
        "/healthz" => match health.check().await {
            Ok(()) => Response::text(
                "200 OK",
                format!(
                    "ok\n{}{}",
                    health.upstream_lines().await,
                    health.keyring_lines()
                ),
            ),
            Err(why) => Response::text(
                "503 Service Unavailable",
                format!(
                    "not ready: {why}\n{}{}",
                    health.upstream_lines().await,
                    health.keyring_lines()
                ),
            ),
        },
        _ => Response::text("404 Not Found", "not found: try /metrics or /healthz\n"),
    };
    respond(&mut stream, response, head_only).await
}

/// Reads the request head and returns its first line; `None` when it is not a valid head.
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
    Ok(text
        .lines()
        .next()
        .map(|line| line.trim_end_matches('\r').to_owned()))
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
    if response.allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&response.body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}
