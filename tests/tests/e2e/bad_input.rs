//! Bad input and limits: each misbehaving client loses its own session, with an ErrorResponse
//! where the protocol allows, and every other session goes on as if nothing happened.

use std::time::{Duration, Instant};

use pgseal_tests::cluster::TRUST_ROLE;
use pgseal_tests::raw::{RawClient, frame, query};
use pgseal_tests::{Cluster, TestProxy, cluster};
use tokio::net::TcpListener;

/// A bystander session opened before the misbehaviour, checked after it.
struct Bystander(tokio_postgres::Client);

impl Bystander {
    async fn open(proxy: &TestProxy, cluster: &Cluster) -> Bystander {
        Bystander(proxy.connect(cluster, "postgres").await)
    }

    async fn still_served(&self) {
        let row = self
            .0
            .query_one("SELECT 'still here'::text", &[])
            .await
            .expect("bystander session broken");
        assert_eq!(row.get::<_, String>(0), "still here");
    }
}

/// Backends of a database whose application_name is `raw-test`, seen straight on the server.
async fn raw_backends(cluster: &Cluster, database: &str) -> i64 {
    let admin = cluster.connect("postgres").await;
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'raw-test'",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_for_no_raw_backends(cluster: &Cluster, database: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while raw_backends(cluster, database).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the server backend outlived its vanished client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_malformed_frame_ends_that_session_only() {
    let cluster = cluster();
    let proxy = TestProxy::start(cluster).await;
    let bystander = Bystander::open(&proxy, cluster).await;

    let mut raw = RawClient::connect(proxy.address()).await;
    raw.startup_trusted(TRUST_ROLE, "postgres").await;
    raw.send(&[b'Q', 0, 0, 0, 2]).await; // a length below 4
    let messages = raw.read_until(b'E').await;
    let error = messages.last().expect("an ErrorResponse");
    assert_eq!(error.tag, b'E');
    assert_eq!(error.sqlstate().as_deref(), Some("08P01"));
    assert!(
        error.field(b'M').unwrap().contains("invalid length"),
        "{error:?}"
    );
    assert!(raw.closed_within(Duration::from_secs(5)).await);

    // Garbage instead of a startup packet: refused as PostgreSQL would.
    let mut http = RawClient::connect(proxy.address()).await;
    http.send(b"GET / HTTP/1.1\r\nHost: pgseal\r\n\r\n").await;
    let error = http.read_message().await.expect("an ErrorResponse");
    assert_eq!(
        (error.tag, error.sqlstate().as_deref()),
        (b'E', Some("08P01"))
    );
    assert!(http.closed_within(Duration::from_secs(5)).await);

    bystander.still_served().await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_it_is_read() {
    let cluster = cluster();
    let proxy = TestProxy::start_with(cluster, |c| c.max_message_size = 1 << 20).await;
    let bystander = Bystander::open(&proxy, cluster).await;

    let mut raw = RawClient::connect(proxy.address()).await;
    raw.startup_trusted(TRUST_ROLE, "postgres").await;
    // Announce 512 MiB and send only the header: pgseal must not wait for (or buffer) the rest.
    raw.send(&[b'Q', 0x20, 0, 0, 0]).await;
    let error = raw.read_message().await.expect("an ErrorResponse");
    assert_eq!(error.sqlstate().as_deref(), Some("54000"));
    assert!(
        error
            .field(b'M')
            .unwrap()
            .contains("exceeds the limit of 1048576 bytes"),
        "{error:?}"
    );
    assert!(raw.closed_within(Duration::from_secs(5)).await);

    // A driver sending a 2 MiB parameter sees its connection end with that error.
    let client = proxy.connect(cluster, "postgres").await;
    let big = "x".repeat(2 << 20);
    let error = client
        .query_one("SELECT length($1::text)", &[&big])
        .await
        .unwrap_err();
    match error.as_db_error() {
        Some(db_error) => assert_eq!(db_error.code().code(), "54000"),
        // The error may land while the driver is still writing the parameter.
        None => assert!(error.is_closed(), "{error:?}"),
    }

    bystander.still_served().await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_vanishing_mid_query_or_mid_copy_frees_its_backend_and_commits_nothing() {
    let cluster = cluster();
    let db = cluster.create_database("vanish");
    cluster
        .run_sql(
            &db,
            &format!("CREATE TABLE t (v text); GRANT ALL ON t TO {TRUST_ROLE}"),
        )
        .unwrap();
    let proxy = TestProxy::start(cluster).await;
    let bystander = Bystander::open(&proxy, cluster).await;

    let mut sleeper = RawClient::connect(proxy.address()).await;
    sleeper.startup_trusted(TRUST_ROLE, &db).await;
    sleeper.send(&query("SELECT pg_sleep(1)")).await;
    drop(sleeper);

    let mut copier = RawClient::connect(proxy.address()).await;
    copier.startup_trusted(TRUST_ROLE, &db).await;
    copier.send(&query("COPY t FROM STDIN")).await;
    let copy_in = copier.read_message().await.expect("CopyInResponse");
    assert_eq!(copy_in.tag, b'G');
    copier.send(&frame(b'd', b"row one\nrow two\n")).await;
    copier.send(&frame(b'd', b"row thr")).await;
    drop(copier);

    wait_for_no_raw_backends(cluster, &db).await;
    let admin = cluster.connect(&db).await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a half COPY was committed");
    bystander.still_served().await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_idle_in_startup_is_cut_off_at_the_startup_timeout() {
    let cluster = cluster();
    let proxy =
        TestProxy::start_with(cluster, |c| c.startup_timeout = Duration::from_millis(500)).await;
    let bystander = Bystander::open(&proxy, cluster).await;

    // Says nothing at all.
    let mut silent = RawClient::connect(proxy.address()).await;
    // Starts, is asked for a password, never answers.
    let mut mute = RawClient::connect(proxy.address()).await;
    mute.send(&pgseal_tests::raw::startup_packet(
        pgseal_tests::cluster::SCRAM_ROLE,
        "postgres",
    ))
    .await;
    let request = mute
        .read_message()
        .await
        .expect("an authentication request");
    assert_eq!(request.tag, b'R');

    let started = Instant::now();
    assert!(
        silent.closed_within(Duration::from_secs(5)).await,
        "a silent client was kept"
    );
    let error = mute.read_message().await.expect("an ErrorResponse");
    assert_eq!(error.sqlstate().as_deref(), Some("08006"));
    assert!(
        error
            .field(b'M')
            .unwrap()
            .contains("startup did not finish"),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    bystander.still_served().await;
    proxy.stop().await;
}

#[tokio::test]
async fn max_connections_answers_53300_and_frees_slots() {
    let cluster = cluster();
    let proxy = TestProxy::start_with(cluster, |c| c.max_connections = 2).await;
    let first = proxy.connect(cluster, "postgres").await;
    let second = proxy.connect(cluster, "postgres").await;
    let conninfo = proxy.conninfo(
        cluster.superuser(),
        cluster.superuser_password(),
        "postgres",
    );
    let error = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    let db_error = error.as_db_error().expect("an error from pgseal");
    assert_eq!(db_error.code().code(), "53300");
    assert_eq!(db_error.message(), "sorry, too many clients already");
    second.query_one("SELECT 1", &[]).await.unwrap();

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the freed slot was not reused: {e}"),
        }
    };
    third.query_one("SELECT 1", &[]).await.unwrap();
    proxy.stop().await;
}

/// A TCP hop between pgseal and PostgreSQL that the test can take down and bring back, to
/// play an upstream outage.
struct Hop {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Hop {
    async fn start(port: u16, target: String) -> Hop {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Hop { port, task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_upstream_outage_gives_a_clear_error_and_service_resumes() {
    let cluster = cluster();
    let hop = Hop::start(0, cluster.address()).await;
    let port = hop.port;
    let proxy = TestProxy::start_with(cluster, |c| {
        c.upstream = pgseal::config::UpstreamHosts::one(pgseal::config::UpstreamAddress {
            host: "127.0.0.1".into(),
            port,
        });
        c.connect_timeout = Duration::from_secs(2);
    })
    .await;
    proxy
        .connect(cluster, "postgres")
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap();

    hop.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conninfo = proxy.conninfo(
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
        db_error.message().contains(&format!("127.0.0.1:{port}")),
        "{}",
        db_error.message()
    );

    let hop = Hop::start(port, cluster.address()).await;
    let client = proxy.connect(cluster, "postgres").await;
    assert_eq!(
        client
            .query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    hop.stop();
    proxy.stop().await;
}
