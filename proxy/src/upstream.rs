//! Reaching PostgreSQL: TCP (with the optional TLS upgrade) or a Unix-domain socket, and
//! forwarding cancel requests the same way.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cancel::BackendKey;
use crate::config::UpstreamAddress;
use crate::error::SessionError;
use crate::stream::{MaybeTls, ServerStream};
use crate::tls::UpstreamTls;
use crate::wire::messages;

/// Opens connections to the configured PostgreSQL server.
pub struct Upstream {
    address: UpstreamAddress,
    tls: Option<UpstreamTls>,
    connect_timeout: Duration,
}

impl Upstream {
    /// An upstream at `address`, with TLS if `tls` is set.
    pub fn new(
        address: UpstreamAddress,
        tls: Option<UpstreamTls>,
        connect_timeout: Duration,
    ) -> Self {
        Upstream {
            address,
            tls,
            connect_timeout,
        }
    }

    /// Where the server is.
    pub fn address(&self) -> &UpstreamAddress {
        &self.address
    }

    /// Whether connections to the server use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects, and negotiates TLS when configured, within the connect timeout.
    pub async fn connect(&self) -> Result<ServerStream, SessionError> {
        let attempt = async {
            if let Some(path) = self.address.socket_path() {
                return tokio::net::UnixStream::connect(&path)
                    .await
                    .map(MaybeTls::Unix)
                    .map_err(|e| e.to_string());
            }
            let tcp = TcpStream::connect((self.address.host.as_str(), self.address.port))
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(MaybeTls::Plain(tcp)),
                Some(tls) => upgrade(tcp, tls).await.map(|s| MaybeTls::Tls(Box::new(s))),
            }
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(reason)) => Err(self.unreachable(reason)),
            Err(_) => Err(self.unreachable(format!("no answer within {:?}", self.connect_timeout))),
        }
    }

    fn unreachable(&self, reason: String) -> SessionError {
        SessionError::UpstreamConnect {
            address: self.address.to_string(),
            reason,
        }
    }

    /// Asks the server to cancel what `backend` is running. The server answers nothing; the
    /// request is done when it closes the connection.
    pub async fn cancel(&self, backend: &BackendKey) -> Result<(), SessionError> {
        let mut stream = self.connect().await?;
        let request = messages::cancel_request(backend.pid, &backend.secret);
        let io = |e: std::io::Error| SessionError::ServerIo(e);
        stream.write_all(&request).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(self.connect_timeout, stream.read(&mut sink)).await;
        Ok(())
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
