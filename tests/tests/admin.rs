//! The admin endpoint against the test cluster: `/healthz` is ready when PostgreSQL answers,
//! not ready when nothing listens.

use std::sync::Arc;
use std::time::Duration;

use pgseal::admin::{AdminServer, Health, Metrics};
use pgseal_tests::cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn serve(host: &str, port: u16) -> (std::net::SocketAddr, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(host, port, Duration::from_secs(2), Some(metrics.clone()));
    let server = AdminServer::bind("127.0.0.1:0", metrics.clone(), health)
        .await
        .unwrap();
    let address = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    (address, metrics)
}

#[tokio::test]
async fn healthz_is_ready_only_when_postgresql_answers() {
    let cluster = cluster();
    let (address, metrics) = serve(cluster.host(), cluster.port()).await;
    let answer = get(address, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    assert_eq!(metrics.upstream_up.get(), 1);
    let metrics_page = get(address, "/metrics").await;
    assert!(
        metrics_page.contains("\npgseal_upstream_up 1\n"),
        "{metrics_page}"
    );

    let closed = pgseal_tests::cluster::free_port().unwrap();
    let (address, metrics) = serve("127.0.0.1", closed).await;
    let answer = get(address, "/healthz").await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("not ready: cannot connect to 127.0.0.1:"),
        "{answer}"
    );
    assert_eq!(metrics.upstream_up.get(), 0);
}
