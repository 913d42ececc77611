//! TLS configuration for both sides: the certificate pgseal presents to clients, and how it
//! checks (or, in `require` mode, does not check) PostgreSQL's.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;

use crate::config::{TlsFiles, UpstreamAddress, UpstreamTlsMode};

/// A TLS file or setting that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {message}")]
    File {
        /// What the file was meant to hold.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The upstream host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |message: String| TlsError::File {
        what,
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// The identity pgseal presents to its TLS clients.
pub struct ClientTls {
    /// The acceptor to wrap client sockets with.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// pgseal's own end-entity certificate, to tell whether SCRAM channel binding can pass
    /// through (it can only when PostgreSQL presents the very same certificate).
    pub certificate: CertificateDer<'static>,
}

/// Builds the acceptor for client TLS from a certificate chain and key.
pub fn client_acceptor(files: &TlsFiles) -> Result<ClientTls, TlsError> {
    let chain = read_certificates("TLS certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        what: "TLS private key",
        path: files.key.display().to_string(),
        message: e.to_string(),
    })?;
    let certificate = chain[0].clone();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // PostgreSQL 17's direct TLS negotiation requires this ALPN protocol.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(ClientTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certificate,
    })
}

/// How pgseal opens TLS towards PostgreSQL, if it does.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The connector.
    pub connector: tokio_rustls::TlsConnector,
    /// The name checked against the server's certificate (verify-full) or sent as SNI.
    pub server_name: ServerName<'static>,
}

/// Builds the upstream TLS connector for `mode`; `None` for `disable`.
pub fn upstream_connector(
    mode: UpstreamTlsMode,
    ca: Option<&Path>,
    upstream: &UpstreamAddress,
) -> Result<Option<UpstreamTls>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match mode {
        UpstreamTlsMode::Disable => return Ok(None),
        UpstreamTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        UpstreamTlsMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match ca {
                Some(path) => {
                    for cert in read_certificates("upstream CA", path)? {
                        roots.add(cert)?;
                    }
                }
                None => {
                    let native = rustls_native_certs::load_native_certs();
                    for cert in native.certs {
                        // Unusable system certificates are skipped, as every TLS client does.
                        let _ = roots.add(cert);
                    }
                    if roots.is_empty() {
                        return Err(TlsError::File {
                            what: "system trust store",
                            path: "(native)".into(),
                            message: "no CA certificate found; pass --upstream-ca".into(),
                        });
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let server_name = ServerName::try_from(upstream.host.clone())
        .map_err(|_| TlsError::ServerName(upstream.host.clone()))?;
    Ok(Some(UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    }))
}

/// `--upstream-tls require`: encryption without authentication of the server, as libpq's
/// `sslmode=require`. The handshake signatures are still verified, so the session key belongs
/// to whoever holds the presented certificate's key; only the certificate itself is not checked.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
