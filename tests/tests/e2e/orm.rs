//! ORMs' own generated SQL through pgseal: SQLAlchemy 2.0 (tests/clients/python/
//! hospital_sqlalchemy.py, over psycopg2 and psycopg 3) and Django 5.2 (hospital_django.py, over
//! psycopg 3 with parameters bound on the client and on the server) list patients ordered by
//! name, search them case-insensitively, count and page them, look them up by date and by
//! lists of names, and load consultations with their patients ordered by name, read
//! server-side cursors (yield_per, stream_results, iterator(), the driver's named cursor) over
//! sorted and filtered lists, on the hospital example in an ICU fr-FR database. PostgreSQL is
//! the oracle: each script runs every query on a plaintext twin too (the same schema and
//! collation, birth_date a date, reached directly) and fails on any difference. A missing
//! interpreter or package fails the test (tests/install.sh installs them).

use std::process::Command;

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;

use crate::drivers_scripted::{clients_dir, python, run};

/// A `postgresql://` URL for `user` on `database` at `port` on loopback, without TLS.
fn url(user: &str, password: &str, port: u16, database: &str) -> String {
    format!("postgresql://{user}:{password}@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// Runs one of the ORM scripts against the hospital example through pgseal and its plaintext
/// twin directly; checks that every query it compared passed and that what went in through
/// pgseal is stored sealed. Returns the script's lines, split on tabs.
async fn run_against_a_twin(script: &str) -> Vec<Vec<String>> {
    let cluster = cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    // The twin: the application's view of the schema, stored in clear.
    let twin = Hospital::create_icu(cluster, "fr-FR");
    cluster
        .run_sql(
            &twin.database,
            "ALTER TABLE patients ALTER COLUMN birth_date TYPE date USING birth_date::date",
        )
        .expect("birth_date a date in the twin");

    let mut command = Command::new(python());
    command
        .arg(clients_dir().join("python").join(script))
        .arg(url("ehr_app", "ehr_app", proxy.port(), &hospital.database))
        .arg(url(
            cluster.superuser(),
            cluster.superuser_password(),
            cluster.port(),
            &twin.database,
        ));
    let lines = run(command).await;
    let summary: Vec<&Vec<String>> = lines.iter().filter(|l| l[0] == "summary").collect();
    assert_eq!(summary.len(), 1, "{lines:?}");
    assert_eq!(summary[0][2], "0", "{lines:?}");
    let passed: usize = summary[0][1].parse().expect("a count");
    let compared = lines
        .iter()
        .filter(|l| l[0] == "ok" || l[0] == "refused-as-documented")
        .count();
    assert!(passed > 0 && passed == compared, "{lines:?}");

    // What went through pgseal is stored sealed.
    let direct = cluster.connect(&hospital.database).await;
    let row = direct
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE last_name NOT LIKE 'pgs1:%' \
             OR birth_date NOT LIKE 'pgs1:%') FROM patients",
            &[],
        )
        .await
        .unwrap();
    let (stored, clear): (i64, i64) = (row.get(0), row.get(1));
    assert!(stored > 0, "nothing was inserted through pgseal");
    assert_eq!(clear, 0, "names or birth dates stored in clear");
    proxy.stop().await;
    lines
}

/// Whether the script compared `label` through `way` and found it equal.
fn passed(lines: &[Vec<String>], way: &str, label: &str) -> bool {
    lines
        .iter()
        .any(|l| l.len() > 2 && l[0] == "ok" && l[1] == way && l[2] == label)
}

/// Every query the SQLAlchemy script runs answers through pgseal exactly as the plaintext twin
/// does, through psycopg2 and psycopg 3.
#[tokio::test]
async fn sqlalchemy_queries_answer_as_a_plaintext_twin() {
    let lines = run_against_a_twin("hospital_sqlalchemy.py").await;
    // Server-side cursors over statements pgseal evaluates (DECLARE … ORDER BY a sealed name,
    // then FETCH FORWARD n) answered too, through both drivers.
    for label in [
        "yield-per-by-name",
        "stream-results-ilike",
        "driver-named-cursor",
    ] {
        for driver in ["psycopg2", "psycopg3"] {
            assert!(passed(&lines, driver, label), "{driver} {label}: {lines:?}");
        }
    }
}

/// Every query the Django script runs answers through pgseal exactly as the plaintext twin
/// does, with parameters bound on the client and on the server.
#[tokio::test]
async fn django_queries_answer_as_a_plaintext_twin() {
    let lines = run_against_a_twin("hospital_django.py").await;
    // bulk_create's arrays (UNNEST), its search lookups (UPPER(col::text) LIKE UPPER(…)), a
    // paged search in id order, the paginator's count, get()'s LIMIT 21, and iterator()'s named
    // cursors.
    for label in [
        "insert-bulk-create",
        "icontains-0",
        "search-by-id-offset-5",
        "paginator-page-2",
        "get-by-nir",
        "iterator-icontains",
    ] {
        for way in ["client", "server"] {
            assert!(passed(&lines, way, label), "{way} {label}: {lines:?}");
        }
    }
}
