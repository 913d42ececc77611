//! Readiness: does PostgreSQL answer? And which keyring does this pgseal run with?
//!
//! The probe needs no credentials: it opens a TCP connection to the upstream, sends an
//! SSLRequest and waits for the one-byte answer (`S` or `N`) that only a PostgreSQL server
//! gives, then closes. So "ready" means the postmaster accepts connections and speaks the
//! protocol — not that a given database or role works. PostgreSQL may log each probe at `LOG`
//! level ("incomplete startup packet", or "could not accept SSL connection: EOF detected"), so
//! results are cached for a second and probes every 10 s or more are advised.
//!
//! With several upstream hosts, or a target other than `any` ([`Health::with_upstream`]), every
//! host is probed, "ready" means at least one answered, and the body lists each host
//! ([`super::hosts`]).
//!
//! With protection on ([`Health::with_protections`]), the answer's body goes on with the set in
//! force: its generation (one more at each reload), each policy file and its databases, and the
//! keyring ([`KeyringStatus`]): its source, id, versions and active version, and for a keyring
//! wrapped by an HSM the PKCS#11 module, token and key labels it was unwrapped with — labels
//! only, never key material or PIN (the endpoint needs no credentials).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::hosts::HostsView;
use super::metrics::Metrics;
use crate::config::UpstreamAddress;
use crate::upstream::Upstream;

/// How long a probe result is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The upstream health check. Cheap to clone (shared cache).
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
    protections: Option<Arc<crate::protect::set::InForce>>,
    upstream: Option<Arc<HostsView>>,
}

/// What `/healthz` says of the keyring: no key material, no PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringStatus {
    /// Where it was loaded from: `file PATH` or `PGSEAL_ROOT_KEY`.
    pub source: String,
    /// The wrapped keyring's id (hex).
    pub id: Option<String>,
    /// Readable versions (active and decrypt-only), oldest first.
    pub versions: Vec<u32>,
    /// The active version.
    pub active: u32,
    /// For a wrapped keyring: the module loaded, the token and key-encryption key labels.
    pub hsm: Option<pgseal_keys::HsmBinding>,
}

impl KeyringStatus {
    /// The status of `keyring`, loaded from `source`.
    pub fn new(source: String, keyring: &pgseal_keys::Keyring) -> KeyringStatus {
        let origin = keyring.hsm_origin();
        KeyringStatus {
            source,
            id: origin.map(pgseal_keys::HsmOrigin::keyring_id_hex),
            versions: keyring
                .versions()
                .iter()
                .filter(|v| v.state() != pgseal_keys::KeyState::Retired)
                .map(|v| v.number())
                .collect(),
            active: keyring.active_version(),
            hsm: origin.map(|o| o.binding.clone()),
        }
    }

    /// The lines `/healthz` adds: `keyring: …` and, when wrapped, `hsm: …`.
    pub fn render(&self) -> String {
        let versions: Vec<String> = self.versions.iter().map(u32::to_string).collect();
        let mut out = format!("keyring: {}", self.source);
        if let Some(id) = &self.id {
            out.push_str(&format!(", id {id}"));
        }
        out.push_str(&format!(
            ", versions {}, active {}\n",
            versions.join(" "),
            self.active
        ));
        match &self.hsm {
            Some(hsm) => out.push_str(&format!(
                "hsm: module {}, token {:?}, key {:?}\n",
                hsm.module.display(),
                hsm.token,
                hsm.key
            )),
            None => out.push_str("hsm: none (keys held in the keyring itself)\n"),
        }
        out
    }
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
            protections: None,
            upstream: None,
        }
    }

    /// Probes every host of `upstream` and reports each one's last known role, when there are
    /// several hosts or the target is not `any` (else `/healthz` stays as with one host).
    pub fn with_upstream(mut self, upstream: &Upstream) -> Self {
        self.upstream = HostsView::of(upstream).map(Arc::new);
        self
    }

    /// The upstream lines of the answer (empty with one host and target `any`).
    pub async fn upstream_lines(&self) -> String {
        match &self.upstream {
            Some(view) => view.lines().await,
            None => String::new(),
        }
    }

    /// Adds what `/healthz` says of the policies and keyring in force.
    pub fn with_protections(mut self, in_force: Arc<crate::protect::set::InForce>) -> Self {
        self.protections = Some(in_force);
        self
    }

    /// The lines of the answer on the policies and keyring in force (empty without).
    pub fn protection_lines(&self) -> String {
        self.protections
            .as_ref()
            .map(|p| p.current().render())
            .unwrap_or_default()
    }

    /// `Ok` when the upstream answered (now or within the last second); the reason otherwise.
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.inner.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return result.clone();
        }
        let result = match &self.upstream {
            None => probe_in_time(&self.inner.host, self.inner.port, self.inner.timeout).await,
            Some(view) => view.probe_all(self.inner.timeout).await,
        };
        if let Some(metrics) = &self.inner.metrics {
            metrics.upstream_up.set(i64::from(result.is_ok()));
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// One probe of `host:port` within `timeout`.
pub(super) async fn probe_in_time(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match crate::timer::timeout(timeout, probe(host, port)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{host}:{port}: no answer within {timeout:?}")),
    }
}

/// One probe of `host:port` (a directory: its Unix-domain socket).
async fn probe(host: &str, port: u16) -> Result<(), String> {
    let address = UpstreamAddress {
        host: host.to_owned(),
        port,
    };
    let mut stream: Box<dyn Stream> = match address.socket_path() {
        Some(path) => Box::new(
            tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| format!("cannot connect to {address}: {e}"))?,
        ),
        None => Box::new(
            TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("cannot connect to {address}: {e}"))?,
        ),
    };
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

/// A socket the probe talks over.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}
