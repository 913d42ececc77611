//! SQL given as a string, and relations named by an argument, on the hospital example: straight
//! to PostgreSQL, `query_to_xml('select * from patients', …)` hands a stolen ehr_admin or
//! ehr_billing account every patient in one row; through pgseal it is refused with 0A000 for
//! every role, in the simple and the extended protocol, and the session goes on.

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use tokio_postgres::Client;

use crate::protection::{insert_patients, insert_patients_and_a_consultation};

/// Statements that read sealed tables where the analyzer cannot see it, and the function each
/// refusal must name.
const STRING_STATEMENTS: &[(&str, &str)] = &[
    (
        "SELECT query_to_xml('select * from patients', true, false, '')",
        "query_to_xml",
    ),
    (
        "SELECT table_to_xml('consultations', true, false, '')",
        "table_to_xml",
    ),
    (
        "SELECT * FROM ts_stat('select to_tsvector(last_name) from patients')",
        "ts_stat",
    ),
    ("SELECT database_to_xml(true, false, '')", "database_to_xml"),
    (
        "SELECT d FROM (SELECT PG_CATALOG.Query_To_Xml('select * from pat' || 'ients', true, false, '') AS d) s",
        "query_to_xml",
    ),
];

/// The roles a stolen account would be: the support/DBA account and billing, and the
/// application itself.
const ROLES: &[&str] = &["ehr_admin", "ehr_billing", "ehr_app"];

/// Connects straight to PostgreSQL (no pgseal) as one of the example's roles.
async fn connect_direct(hospital: &Hospital, role: &str) -> Client {
    let cluster = cluster();
    let conninfo = format!(
        "host={} port={} user={role} password={role} dbname={} sslmode=disable",
        cluster.host(),
        cluster.port(),
        hospital.database
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting straight to PostgreSQL as {role}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The error must be pgseal's 0A000, naming the function and quoting no SQL text.
fn assert_refused(error: &tokio_postgres::Error, sql: &str, function: &str, how: &str) {
    let db_error = error
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql} ({how}): not a server error: {error:?}"));
    assert_eq!(
        db_error.code().code(),
        "0A000",
        "{sql} ({how}): {}",
        db_error.message()
    );
    let message = db_error.message();
    assert!(
        message.contains("pgseal") && message.contains(&format!("{function}()")),
        "{sql} ({how}): {message}"
    );
    assert!(
        !message.to_lowercase().contains("from patients"),
        "{sql} ({how}): the refusal quotes SQL text: {message}"
    );
}

/// An ordinary statement on the sealed table answers: the session is still in step.
async fn assert_usable(client: &Client, role: &str, after: &str) {
    let count: i64 = client
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap_or_else(|e| panic!("{role}, after {after}: {e:?}"))
        .get(0);
    assert_eq!(count, 2, "{role}, after {after}");
    let rows = client
        .simple_query("SELECT city FROM patients")
        .await
        .unwrap_or_else(|e| panic!("{role}, after {after} (simple): {e:?}"));
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("Paris"))
        ),
        "{role}, after {after} (simple)"
    );
}

/// The first value of the first row of a simple query (text: `xml` has no binary decoder).
async fn first_value(client: &Client, sql: &str, role: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} as {role}: {e:?}"));
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql} as {role}: no row"))
}

#[tokio::test]
async fn string_statements_read_whole_tables_straight_from_postgresql() {
    // The control: without pgseal these statements answer with the patients, so the refusals
    // below are pgseal's doing, not a failing statement.
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients_and_a_consultation(&app).await;
    for role in ["ehr_admin", "ehr_billing"] {
        let direct = connect_direct(&hospital, role).await;
        let xml = first_value(&direct, STRING_STATEMENTS[0].0, role).await;
        assert_eq!(
            xml.matches("<row>").count(),
            2,
            "every patient in one value"
        );
        assert!(xml.contains("<city>Paris</city>"), "{xml}");
        // Billing's denied column, as stored.
        let xml = first_value(&direct, STRING_STATEMENTS[1].0, role).await;
        assert!(xml.contains("<notes>pgs1:"), "{xml}");
        for (sql, _) in &STRING_STATEMENTS[2..] {
            assert!(!first_value(&direct, sql, role).await.is_empty(), "{sql}");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn string_statements_are_refused_through_pgseal_and_the_session_goes_on() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients(&app).await;
    for role in ROLES {
        let client = hospital.connect(&proxy, role).await;
        for (sql, function) in STRING_STATEMENTS {
            // Simple protocol.
            let error = client
                .simple_query(sql)
                .await
                .err()
                .unwrap_or_else(|| panic!("{sql} as {role} (simple): not refused"));
            assert_refused(&error, sql, function, &format!("{role}, simple"));
            assert_usable(&client, role, sql).await;
            // Extended protocol: tokio-postgres prepares (Parse/Describe) then binds.
            let error = client
                .query(*sql, &[])
                .await
                .err()
                .unwrap_or_else(|| panic!("{sql} as {role} (extended): not refused"));
            assert_refused(&error, sql, function, &format!("{role}, extended"));
            assert_usable(&client, role, sql).await;
        }
        // Inside a transaction: the refusal fails it like a real error, and it rolls back.
        client.batch_execute("BEGIN").await.unwrap();
        let error = client.query(STRING_STATEMENTS[0].0, &[]).await.unwrap_err();
        assert_refused(&error, STRING_STATEMENTS[0].0, "query_to_xml", role);
        let aborted = client.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(aborted.code().map(|c| c.code()), Some("25P02"), "{role}");
        client.batch_execute("ROLLBACK").await.unwrap();
        assert_usable(&client, role, "a refused statement in a transaction").await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn unparseable_text_naming_a_string_statement_is_refused_even_when_forwarding() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let forwarding = hospital
        .proxy_with(cluster, |c| {
            c.unanalysable = pgseal::protect::Unanalysable::Forward
        })
        .await;
    let admin = hospital.connect(&forwarding, "ehr_admin").await;
    // sqlparser cannot parse a WINDOW clause like this one; PostgreSQL runs it.
    admin
        .batch_execute("SELECT 1 WINDOW w AS ()")
        .await
        .expect("forwarded: names no sealed table, runs no code");
    let sql = "SELECT query_to_xml('select * from pat' || 'ients', true, false, '') WINDOW w AS ()";
    let error = admin.batch_execute(sql).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("0A000"), "{error:?}");
    let message = error.as_db_error().map(|e| e.message()).unwrap_or_default();
    assert!(message.contains("pgseal"), "{message}");
    assert_eq!(
        admin
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    forwarding.stop().await;
}
