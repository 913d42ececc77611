//! Readiness: does PostgreSQL answer?
//!
//! The probe needs no credentials: it opens a TCP connection to the upstream, sends an
//! SSLRequest and waits for the one-byte answer (`S` or `N`) that only a PostgreSQL server
//! gives, then closes. So "ready" means the postmaster accepts connections and speaks the
//! protocol — not that a given database or role works. PostgreSQL may log each probe at `LOG`
//! level ("incomplete startup packet", or "could not accept SSL connection: EOF detected"), so
//! results are cached for a second and probes every 10 s or more are advised.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::metrics::Metrics;

/// How long a probe result is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The upstream health check. Cheap to clone (shared cache).
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// Checks `host:port` within `timeout` per probe; sets `pgseal_upstream_up` in `metrics`.
    pub fn new(host: &str, port: u16, timeout: Duration, metrics: Option<Arc<Metrics>>) -> Self {
        Health {
            inner: Arc::new(Inner {
                host: host.to_owned(),
                port,
                timeout,
                metrics,
                last: Mutex::new(None),
            }),
        }
    }

    /// `Ok` when the upstream answered (now or within the last second); the reason otherwise.
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.inner.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(self.inner.timeout, self.probe()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.inner.timeout)),
        };
        if let Some(metrics) = &self.inner.metrics {
            metrics.upstream_up.set(i64::from(result.is_ok()));
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }

    async fn probe(&self) -> Result<(), String> {
        let address = format!("{}:{}", self.inner.host, self.inner.port);
        let mut stream = TcpStream::connect((self.inner.host.as_str(), self.inner.port))
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        // SSLRequest: length 8, code 80877103.
        let request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        stream
            .write_all(&request)
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        let mut answer = [0u8; 1];
        match stream.read(&mut answer).await {
            Ok(1) if matches!(answer[0], b'S' | b'N') => Ok(()),
            Ok(0) => Err(format!("{address} closed the connection without answering")),
            Ok(_) => Err(format!(
                "{address} answered something that is not PostgreSQL (byte {:#04x})",
                answer[0]
            )),
            Err(e) => Err(format!("{address}: {e}")),
        }
    }
}
