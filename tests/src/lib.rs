//! The end-to-end test harness: a throwaway PostgreSQL cluster started from the system's server
//! binaries, TLS material for it, and helpers to put pgseal in front of it.
//!
//! Every test binary shares one cluster ([`cluster`]), started on first use and removed by a
//! watchdog process when the test binary exits, however it exits (normally, by a panic, or
//! killed). Tests isolate themselves with their own databases ([`Cluster::create_database`]).

pub mod binaries;
pub mod budgets;
pub mod cluster;
pub mod hospital;
pub mod migrate;
pub mod proxy;
pub mod raw;
pub mod tls;

pub use cluster::{Cluster, cluster};
pub use proxy::{ProxyProcess, TestProxy, pgseal_binary};

/// The first column of every row a query returns (it must succeed).
pub async fn first_column<T: tokio_postgres::types::FromSqlOwned>(
    client: &impl tokio_postgres::GenericClient,
    sql: &str,
) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Asserts that a session (or a transaction) still answers after what came before it: a
/// refusal, a cancel pgseal sent, a failed statement.
pub async fn assert_usable(client: &impl tokio_postgres::GenericClient) {
    let row = client
        .query_one("SELECT 1", &[])
        .await
        .expect("the session answers");
    assert_eq!(row.get::<_, i32>(0), 1);
}
