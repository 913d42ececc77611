//! The protocol passes through unchanged: simple and extended queries, binary formats,
//! pipelining, COPY both ways, LISTEN/NOTIFY, notices, errors and cancellation.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt, pin_mut};
use pgseal_tests::{TestProxy, cluster};
use tokio_postgres::AsyncMessage;
use tokio_postgres::types::Type;

#[tokio::test]
async fn simple_and_extended_queries_with_binary_parameters_and_results() {
    let cluster = cluster();
    let db = cluster.create_database("queries");
    let proxy = TestProxy::start(cluster).await;
    let client = proxy.connect(cluster, &db).await;

    // Simple protocol, several statements in one Query.
    let messages = client
        .simple_query("CREATE TABLE t (id int8 PRIMARY KEY, name text, born date, weight numeric, photo bytea); SELECT 41 + 1 AS answer")
        .await
        .unwrap();
    let answer = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get("answer").map(str::to_string),
        _ => None,
    });
    assert_eq!(answer.as_deref(), Some("42"));

    // Extended protocol: tokio-postgres sends parameters and reads results in binary.
    let insert = client
        .prepare_typed(
            "INSERT INTO t VALUES ($1, $2, $3::text::date, $4::text::numeric, $5)",
            &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::BYTEA],
        )
        .await
        .unwrap();
    let photo: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    for id in 1..=3i64 {
        let name = format!("Éloïse Dupont-{id}");
        client
            .execute(&insert, &[&id, &name, &"1985-05-17", &"72.5", &photo])
            .await
            .unwrap();
    }
    let rows = client
        .query(
            "SELECT id, name, photo FROM t WHERE id >= $1 ORDER BY id",
            &[&2i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i64>(0), 2);
    assert_eq!(rows[0].get::<_, String>(1), "Éloïse Dupont-2");
    assert_eq!(rows[1].get::<_, Vec<u8>>(2), photo);

    // Errors come back as PostgreSQL sent them, and the session stays usable.
    let error = client
        .execute("INSERT INTO t (id) VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "23505");
    let error = client.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42601");
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
    proxy.stop().await;
}

#[tokio::test]
async fn a_pipeline_of_a_hundred_statements_keeps_its_order() {
    let cluster = cluster();
    let db = cluster.create_database("pipeline");
    let proxy = TestProxy::start(cluster).await;
    let client = proxy.connect(cluster, &db).await;
    let statement = client
        .prepare("SELECT $1::int4 * 2, pg_backend_pid()")
        .await
        .unwrap();
    // tokio-postgres pipelines queries issued concurrently on one connection.
    let queries = (0..100i32).map(|i| {
        let client = &client;
        let statement = &statement;
        async move {
            client
                .query_one(statement, &[&i])
                .await
                .map(|row| row.get::<_, i32>(0))
        }
    });
    let results = futures_util::future::try_join_all(queries).await.unwrap();
    assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    proxy.stop().await;
}

#[tokio::test]
async fn copy_in_and_out_of_a_hundred_thousand_rows() {
    let cluster = cluster();
    let db = cluster.create_database("copy");
    let proxy = TestProxy::start(cluster).await;
    let client = proxy.connect(cluster, &db).await;
    client
        .batch_execute("CREATE TABLE patients (id int8, nir text, note text)")
        .await
        .unwrap();

    let sink = client.copy_in("COPY patients FROM STDIN").await.unwrap();
    pin_mut!(sink);
    let mut expected_bytes = 0usize;
    for chunk in 0..100 {
        let mut data = String::new();
        for i in 0..1000 {
            let id = chunk * 1000 + i;
            data.push_str(&format!(
                "{id}\t1850575123456{:02}\tnote with tab\\tand unicode é {id}\n",
                id % 97
            ));
        }
        expected_bytes += data.len();
        sink.send(Bytes::from(data)).await.unwrap();
    }
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, 100_000);

    let stream = client
        .copy_out("COPY (SELECT * FROM patients ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(out.len(), expected_bytes);
    let lines: Vec<&[u8]> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 100_000);
    assert!(lines[99_999].starts_with(b"99999\t"));
    proxy.stop().await;
}

#[tokio::test]
async fn listen_notify_and_notices_reach_the_client() {
    let cluster = cluster();
    let db = cluster.create_database("notify");
    let proxy = TestProxy::start(cluster).await;
    let conninfo = proxy.conninfo(cluster.superuser(), cluster.superuser_password(), &db);
    let (listener, mut connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            let _ = tx.send(message);
        }
    });
    listener.batch_execute("LISTEN admissions").await.unwrap();
    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'bed 12 is free'; END $$")
        .await
        .unwrap();

    let notifier = proxy.connect(cluster, &db).await;
    notifier
        .batch_execute("NOTIFY admissions, 'patient 1234 admitted'")
        .await
        .unwrap();

    let mut notice = None;
    let mut notification = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (notice.is_none() || notification.is_none()) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(AsyncMessage::Notice(n))) => notice = Some(n.message().to_string()),
            Ok(Some(AsyncMessage::Notification(n))) => {
                notification = Some((n.channel().to_string(), n.payload().to_string()))
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert_eq!(notice.as_deref(), Some("bed 12 is free"));
    assert_eq!(
        notification,
        Some((
            "admissions".to_string(),
            "patient 1234 admitted".to_string()
        ))
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_cancel_stops_pg_sleep_within_a_second() {
    let cluster = cluster();
    let db = cluster.create_database("cancel");
    let proxy = TestProxy::start(cluster).await;
    let client = proxy.connect(cluster, &db).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(30)").await;
        (result, client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (result, client) = sleeper.await.unwrap();
    let error = result.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "57014", "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the cancel took {:?}",
        started.elapsed()
    );
    // The session survives the cancel.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    proxy.stop().await;
}

/// pgseal beside PostgreSQL, reaching it through its Unix-domain socket (`--upstream
/// DIRECTORY:PORT`, as libpq names it): sessions, SCRAM authentication on the `local` line,
/// and a cancel request forwarded over the socket too.
#[tokio::test]
async fn a_unix_socket_upstream_serves_sessions_and_cancels() {
    let cluster = cluster();
    let db = cluster.create_database("unix_upstream");
    let upstream = format!("{}:{}", cluster.socket_dir().display(), cluster.port());
    let proxy = TestProxy::start_with(cluster, |c| {
        c.upstream = pgseal::config::ServeConfig::new("127.0.0.1:0", &upstream)
            .expect("a socket directory and port")
            .upstream;
    })
    .await;
    let client = proxy.connect(cluster, &db).await;
    // The server sees a Unix-socket client: no client address.
    let over_socket: bool = client
        .query_one("SELECT inet_client_addr() IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(over_socket, "the session did not come over the socket");
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(30)").await;
        (result, client)
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (result, client) = sleeper.await.unwrap();
    assert_eq!(result.unwrap_err().code().unwrap().code(), "57014");
    assert!(started.elapsed() < Duration::from_secs(5));
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    proxy.stop().await;

    // No server at that socket: the client is told which socket, and pgseal goes on.
    let missing = format!("{}:1", cluster.socket_dir().display());
    let proxy = TestProxy::start_with(cluster, |c| {
        c.upstream = pgseal::config::ServeConfig::new("127.0.0.1:0", &missing)
            .unwrap()
            .upstream;
    })
    .await;
    let conninfo = proxy.conninfo(cluster.superuser(), cluster.superuser_password(), &db);
    let error = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .expect("no server behind the socket");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains(".s.PGSQL.1")),
        "{message:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_cancel_with_a_wrong_key_cancels_nothing() {
    let cluster = cluster();
    let db = cluster.create_database("cancel_wrong");
    let proxy = TestProxy::start(cluster).await;
    let client = proxy.connect(cluster, &db).await;
    // The server's real pid is not the key pgseal gave the client.
    let real_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sleeper = tokio::spawn(async move {
        client
            .simple_query("SELECT pg_sleep(1.5)")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut forged = Vec::new();
    forged.extend_from_slice(&16i32.to_be_bytes());
    forged.extend_from_slice(&80_877_102i32.to_be_bytes());
    forged.extend_from_slice(&real_pid.to_be_bytes());
    forged.extend_from_slice(&0i32.to_be_bytes());
    let mut socket = tokio::net::TcpStream::connect(proxy.address())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, &forged)
        .await
        .unwrap();
    drop(socket);
    sleeper
        .await
        .unwrap()
        .expect("the query was not cancelled by a forged key");
    proxy.stop().await;
}
