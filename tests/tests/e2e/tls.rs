//! TLS on both sides: clients to pgseal (rustls, `--tls-cert/--tls-key`), pgseal to PostgreSQL
//! (`--upstream-tls require|verify-full`), and SCRAM channel binding across both.

use std::sync::Arc;

use pgseal::config::{TlsFiles, UpstreamTlsMode};
use pgseal_tests::cluster::{SCRAM_ROLE, TRUST_ROLE};
use pgseal_tests::raw::startup_packet;
use pgseal_tests::{TestProxy, cluster};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects through pgseal over TLS with extra libpq-style options, and returns whether the
/// link from pgseal to PostgreSQL is encrypted, as PostgreSQL sees it.
async fn tls_login(proxy: &TestProxy, options: &str) -> Result<bool, tokio_postgres::Error> {
    let certs = cluster().certificates();
    let conninfo = format!(
        "host=localhost port={} user={SCRAM_ROLE} password={SCRAM_ROLE} dbname=postgres sslmode=require {options}",
        proxy.port()
    );
    let (client, connection) =
        tokio_postgres::connect(&conninfo, certs.tokio_postgres_tls()).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

fn client_tls_with(cert: &std::path::Path, key: &std::path::Path) -> Option<TlsFiles> {
    Some(TlsFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })
}

#[tokio::test]
async fn clients_use_tls_to_pgseal_with_scram_and_channel_binding_preferred() {
    let cluster = cluster();
    let certs = cluster.certificates().clone();
    let proxy = TestProxy::start_with(cluster, |c| {
        c.client_tls = client_tls_with(&certs.proxy_cert, &certs.proxy_key);
    })
    .await;
    // Client TLS ends at pgseal, the upstream link is plain: SCRAM-SHA-256-PLUS is withheld
    // from the client, which then authenticates with SCRAM-SHA-256.
    assert!(!tls_login(&proxy, "").await.unwrap());
    // A client that insists on channel binding cannot have it here, and is told so by its
    // driver rather than failing later.
    assert!(tls_login(&proxy, "channel_binding=require").await.is_err());
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_tls_require_and_verify_full() {
    let cluster = cluster();
    let certs = cluster.certificates().clone();
    let required =
        TestProxy::start_with(cluster, |c| c.upstream_tls = UpstreamTlsMode::Require).await;
    let client = required.connect(cluster, "postgres").await;
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "pgseal's link to PostgreSQL is not encrypted");
    required.stop().await;

    let verified = TestProxy::start_with(cluster, |c| {
        c.upstream_tls = UpstreamTlsMode::VerifyFull;
        c.upstream_ca = Some(certs.ca_cert.clone());
    })
    .await;
    let client = verified.connect(cluster, "postgres").await;
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    verified.stop().await;

    // Trusting another CA: pgseal refuses the server, and the client learns why.
    let wrong_ca = TestProxy::start_with(cluster, |c| {
        c.upstream_tls = UpstreamTlsMode::VerifyFull;
        c.upstream_ca = Some(certs.other_ca_cert.clone());
    })
    .await;
    let conninfo = wrong_ca.conninfo(
        cluster.superuser(),
        cluster.superuser_password(),
        "postgres",
    );
    let error = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    let db_error = error.as_db_error().expect("an error from pgseal");
    assert_eq!(db_error.code().code(), "08001");
    assert!(
        db_error.message().contains("certificate"),
        "{}",
        db_error.message()
    );
    wrong_ca.stop().await;
}

#[tokio::test]
async fn channel_binding_passes_when_pgseal_presents_the_server_s_certificate() {
    let cluster = cluster();
    let certs = cluster.certificates().clone();
    let proxy = TestProxy::start_with(cluster, |c| {
        c.client_tls = client_tls_with(&certs.server_cert, &certs.server_key);
        c.upstream_tls = UpstreamTlsMode::VerifyFull;
        c.upstream_ca = Some(certs.ca_cert.clone());
    })
    .await;
    assert!(tls_login(&proxy, "channel_binding=require").await.unwrap());
    proxy.stop().await;
}

#[tokio::test]
async fn channel_binding_across_two_tls_links_fails_with_a_clear_hint() {
    let cluster = cluster();
    let certs = cluster.certificates().clone();
    let proxy = TestProxy::start_with(cluster, |c| {
        c.client_tls = client_tls_with(&certs.proxy_cert, &certs.proxy_key);
        c.upstream_tls = UpstreamTlsMode::Require;
    })
    .await;
    let error = tls_login(&proxy, "").await.unwrap_err();
    let db_error = error.as_db_error().expect("an error from pgseal");
    assert_eq!(db_error.code().code(), "28000");
    assert!(
        db_error
            .hint()
            .unwrap_or_default()
            .contains("channel_binding=disable")
    );
    // With channel binding off, as the hint says, the client gets in over both TLS links.
    assert!(tls_login(&proxy, "channel_binding=disable").await.unwrap());
    proxy.stop().await;
}

#[tokio::test]
async fn direct_tls_negotiation_as_postgresql_17_clients_do_it() {
    let cluster = cluster();
    let certs = cluster.certificates().clone();
    let proxy = TestProxy::start_with(cluster, |c| {
        c.client_tls = client_tls_with(&certs.proxy_cert, &certs.proxy_key);
    })
    .await;
    let mut config = certs.client_config();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(proxy.address())
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    tls.write_all(&startup_packet(TRUST_ROLE, "postgres"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before ReadyForQuery: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    proxy.stop().await;
}
