//! The alert webhook (`--alert-webhook URL`): each alert event POSTed as JSON, fire and forget.
//!
//! [`WebhookSender`] is an [`AlertSink`]: raising an event only puts it on a bounded queue
//! (`try_send`), so the data path never waits on the network. When the queue is full the event
//! is dropped and counted ([`WebhookStats::dropped`]); the event is in the log anyway. One task
//! delivers the queue in order, one HTTP/1.1 request per event on its own connection
//! (`Connection: close`), each within 5 s; a failure is logged and counted, never retried.
//!
//! `http://` and `https://` URLs are supported; `https` verifies the server's certificate
//! against the system's trust store (or a CA file) with rustls, as `--upstream-tls verify-full`
//! does. No proxy, no redirects, no authentication beyond what the URL's path carries.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::alert::{AlertEvent, AlertSink};
use crate::config::{UpstreamAddress, UpstreamTlsMode};
use crate::tls::{TlsError, UpstreamTls, upstream_connector};

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a webhook URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an `http://` or `https://` URL with a host.
    #[error("invalid --alert-webhook URL: {0}")]
    InvalidUrl(String),
    /// The TLS configuration for an `https` URL failed.
    #[error("--alert-webhook: {0}")]
    Tls(#[from] TlsError),
}

/// Counts of the webhook's deliveries, for metrics.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events delivered with a 2xx answer.
    pub sent: AtomicU64,
    /// Deliveries that failed (connection, timeout, non-2xx answer).
    pub failed: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// A parsed webhook target.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, WebhookError> {
        let bad = |why: &str| {
            WebhookError::InvalidUrl(format!(
                "{why} (expected http://HOST[:PORT]/PATH or https://…)"
            ))
        };
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(bad("not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("the path holds spaces or control characters"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("invalid host")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_owned(),
                    port.parse().map_err(|_| bad("invalid port"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            https,
            host,
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Sends alert events to a webhook. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    queue: mpsc::Sender<AlertEvent>,
    stats: Arc<WebhookStats>,
}

impl WebhookSender {
    /// Parses `url` and starts the delivery task on the current tokio runtime; `capacity` is the
    /// queue's length (256 is plenty: alerts are raised once per crossing). `ca` replaces the
    /// system trust store for `https`. The task ends when every sender is dropped.
    pub fn start(
        url: &str,
        capacity: usize,
        ca: Option<&Path>,
    ) -> Result<(WebhookSender, tokio::task::JoinHandle<()>), WebhookError> {
        let target = Target::parse(url)?;
        let tls = if target.https {
            let address = UpstreamAddress {
                host: target.host.clone(),
                port: target.port,
            };
            upstream_connector(UpstreamTlsMode::VerifyFull, ca, &address)?
        } else {
            None
        };
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(WebhookStats::default());
        let task = tokio::spawn(deliver(target, tls, receiver, stats.clone()));
        Ok((WebhookSender { queue, stats }, task))
    }

    /// Delivery counts.
    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }
}

impl AlertSink for WebhookSender {
    fn raise(&self, event: &AlertEvent) {
        if self.queue.try_send(event.clone()).is_err() {
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!("alert webhook queue full: {dropped} alert(s) not sent so far");
            }
        }
    }
}

async fn deliver(
    target: Target,
    tls: Option<UpstreamTls>,
    mut receiver: mpsc::Receiver<AlertEvent>,
    stats: Arc<WebhookStats>,
) {
    while let Some(event) = receiver.recv().await {
        let body = event.to_json();
        match crate::timer::timeout(DELIVERY_TIMEOUT, post(&target, tls.as_ref(), &body)).await {
            Ok(Ok(())) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(why)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("alert webhook {}:{}: {why}", target.host, target.port);
            }
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "alert webhook {}:{}: no answer within {DELIVERY_TIMEOUT:?}",
                    target.host,
                    target.port
                );
            }
        }
    }
}

async fn post(target: &Target, tls: Option<&UpstreamTls>, body: &str) -> Result<(), String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => exchange(tcp, target, body).await,
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(stream, target, body).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
    body: &str,
) -> Result<(), String> {
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pgseal/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.path,
        target.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    stream.flush().await.map_err(|e| format!("send: {e}"))?;
    // The status line is enough: "HTTP/1.1 204 No Content".
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while head.len() < 1024 && !head.ends_with(b"\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("answered {}", line.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = Target::parse("http://127.0.0.1:9000/hooks/pgseal?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                https: false,
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/hooks/pgseal?x=1".into()
            }
        );
        assert_eq!(t.host_header(), "127.0.0.1:9000");
        let t = Target::parse("https://alerts.example.org").unwrap();
        assert_eq!((t.https, t.port, t.path.as_str()), (true, 443, "/"));
        assert_eq!(t.host_header(), "alerts.example.org");
        let t = Target::parse("http://[::1]:8080/a").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        assert_eq!(t.host_header(), "[::1]:8080");
        for bad in [
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://h:port/",
            "http://u:p@h/",
            "http://h/a b",
            "http://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
