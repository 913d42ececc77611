//! TLS material for the tests: a throwaway CA and a certificate it signed for `localhost` and
//! `127.0.0.1`, used by the cluster (upstream TLS) and by pgseal (client TLS), plus client
//! configurations that trust that CA.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Paths of the generated certificate files.
#[derive(Clone, Debug)]
pub struct TestCertificates {
    /// The CA certificate (PEM) that signed the server certificate.
    pub ca_cert: PathBuf,
    /// The server certificate (PEM) for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// The server certificate's private key (PEM, mode 0600).
    pub server_key: PathBuf,
    /// A second, unrelated CA (PEM) that signed nothing here: trusting it must fail.
    pub other_ca_cert: PathBuf,
    /// Another certificate for `localhost`, signed by the same CA, for a pgseal whose
    /// certificate differs from the server's.
    pub proxy_cert: PathBuf,
    /// Its private key.
    pub proxy_key: PathBuf,
}

impl TestCertificates {
    /// Generates a CA and a server certificate into `dir` (created).
    pub fn generate(dir: &Path) -> Result<Self, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("generating {what}: {e}");
        fs::create_dir_all(dir).map_err(|e| fail("the tls directory", &e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| fail("the tls directory", &e))?;

        let (ca_params, ca_key) = ca("pgseal test CA").map_err(|e| fail("the CA", &e))?;
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| fail("the CA", &e))?;
        let (other_params, other_key) = ca("unrelated CA").map_err(|e| fail("a CA", &e))?;
        let other_cert = other_params
            .self_signed(&other_key)
            .map_err(|e| fail("a CA", &e))?;

        let issuer = Issuer::new(ca_params, ca_key);
        let (server_cert, server_key) = leaf(&issuer).map_err(|e| fail("a certificate", &e))?;
        let (proxy_cert, proxy_key) = leaf(&issuer).map_err(|e| fail("a certificate", &e))?;

        let certs = TestCertificates {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            other_ca_cert: dir.join("other-ca.crt"),
            proxy_cert: dir.join("proxy.crt"),
            proxy_key: dir.join("proxy.key"),
        };
        let write = |path: &Path, pem: String, mode: u32| -> Result<(), String> {
            fs::write(path, pem).map_err(|e| fail("a PEM file", &e))?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| fail("a PEM file", &e))
        };
        write(&certs.ca_cert, ca_cert.pem(), 0o644)?;
        write(&certs.other_ca_cert, other_cert.pem(), 0o644)?;
        write(&certs.server_cert, server_cert.pem(), 0o644)?;
        write(&certs.server_key, server_key.serialize_pem(), 0o600)?;
        write(&certs.proxy_cert, proxy_cert.pem(), 0o644)?;
        write(&certs.proxy_key, proxy_key.serialize_pem(), 0o600)?;
        Ok(certs)
    }

    /// A rustls client configuration that trusts the test CA only.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_cert).expect("read the test CA") {
            roots
                .add(cert.expect("parse the test CA"))
                .expect("trust the test CA");
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// A tokio-postgres TLS connector that trusts the test CA (and so pgseal's test certificate).
    pub fn tokio_postgres_tls(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        tokio_postgres_rustls::MakeRustlsConnect::new(self.client_config())
    }
}

/// A certificate for `localhost` and `127.0.0.1` signed by `issuer`, with its key.
fn leaf(issuer: &Issuer<'_, KeyPair>) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert, key))
}

fn ca(name: &str) -> Result<(CertificateParams, KeyPair), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok((params, KeyPair::generate()?))
}
