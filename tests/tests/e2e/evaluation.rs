//! Filters and sorts on sealed columns, evaluated inside pgseal, end to end on the hospital
//! example: what the application gets, what other roles are refused, what the audit trail and
//! `/metrics` say, and the caps. The row-for-row comparison with a plaintext twin is
//! `evaluation_differential.rs`.

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use tokio_postgres::SimpleQueryMessage;

/// The first column of each row, as ids.
fn ids(rows: Vec<tokio_postgres::Row>) -> Vec<i64> {
    rows.iter().map(|r| r.get(0)).collect()
}

fn code(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

/// The statement failed past a cap (54000), with a message naming its flag.
fn assert_cap(error: &tokio_postgres::Error, flag: &str) {
    assert_eq!(code(error), Some("54000"), "{error}");
    assert!(
        error
            .as_db_error()
            .is_some_and(|e| e.message().contains(flag)),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_application_sorts_searches_and_pages_sealed_names_and_it_is_on_record() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_path = audit.to_string_lossy().into_owned();
    let proxy = hospital
        .proxy_with(cluster, |c| {
            c.audit = Some(audit_path);
            c.admin_listen = Some("127.0.0.1:0".into());
        })
        .await;
    let mut app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;

    // Every name, to check pgseal's answers against.
    let all: Vec<(i64, String)> = app
        .query("SELECT id, last_name FROM patients", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let matching: Vec<i64> = all
        .iter()
        .filter(|(_, name)| name.to_lowercase().contains('e'))
        .map(|(id, _)| *id)
        .collect();
    let mut found: Vec<i64> = app
        .query(
            "SELECT id FROM patients WHERE last_name ILIKE $1",
            &[&"%E%"],
        )
        .await
        .expect("searched by a sealed name")
        .iter()
        .map(|r| r.get(0))
        .collect();
    found.sort_unstable();
    assert_eq!(found, matching);

    // An ORM's page count over the same search: pgseal counts the rows it keeps.
    let counted: i64 = app
        .query_one(
            "SELECT count(*) FROM patients WHERE last_name ILIKE $1",
            &[&"%E%"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, matching.len() as i64);
    let none: i64 = app
        .query_one(
            "SELECT count(*) AS n FROM patients WHERE last_name ILIKE 'zzz%'",
            &[],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(none, 0);

    // A page sorted on a sealed name, in both protocols, with its LIMIT applied by pgseal.
    let page = app
        .simple_query("SELECT id FROM patients ORDER BY last_name DESC, id LIMIT 1")
        .await
        .unwrap();
    let rows: Vec<&str> = page
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1);
    assert!(
        page.iter()
            .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(1))),
        "the command tag counts the rows sent"
    );
    let extended = ids(app
        .query(
            "SELECT id FROM patients ORDER BY last_name DESC, id LIMIT $1",
            &[&1i64],
        )
        .await
        .unwrap());
    assert_eq!(extended.len(), 1);
    assert_eq!(rows[0], extended[0].to_string());

    // A date range on a randomized column.
    let born = ids(app
        .query(
            "SELECT id FROM patients WHERE birth_date BETWEEN $1 AND $2",
            &[
                &time::macros::date!(1980 - 01 - 01),
                &time::macros::date!(1990 - 01 - 01),
            ],
        )
        .await
        .unwrap());
    assert_eq!(born.len(), 1);

    // A portal executed a row at a time (a driver's fetch size): pgseal suspends it itself,
    // and the rows come in the order of the whole result.
    let whole = ids(app
        .query(
            "SELECT id FROM patients ORDER BY last_name DESC LIMIT 2",
            &[],
        )
        .await
        .unwrap());
    let transaction = app.transaction().await.unwrap();
    let statement = transaction
        .prepare("SELECT id FROM patients ORDER BY last_name DESC LIMIT 2")
        .await
        .unwrap();
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    let mut fetched = Vec::new();
    for _ in 0..4 {
        let rows = transaction.query_portal(&portal, 1).await.unwrap();
        assert!(rows.len() <= 1);
        fetched.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(fetched, whole);
    // A portal suspended after one row gives the rest to an Execute without a limit.
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    let mut fetched = ids(transaction.query_portal(&portal, 1).await.unwrap());
    fetched.extend(ids(transaction.query_portal(&portal, 0).await.unwrap()));
    assert_eq!(fetched, whole);
    transaction.commit().await.unwrap();

    // A role that does not read names in clear may not sort or search on them; its session
    // goes on.
    for role in ["ehr_billing", "ehr_admin"] {
        let other = hospital.connect(&proxy, role).await;
        for sql in [
            "SELECT id FROM patients ORDER BY last_name LIMIT 5",
            "SELECT id FROM patients WHERE last_name ILIKE 'n%'",
            "SELECT id FROM patients ORDER BY last_name FETCH FIRST 5 ROWS ONLY",
            // pgseal's own DISTINCT and unaccent open the column too.
            "SELECT DISTINCT first_name FROM patients",
            "SELECT DISTINCT city FROM patients WHERE last_name ILIKE 'n%'",
            "SELECT id FROM patients WHERE unaccent(last_name) ILIKE 'n%'",
            // So does a subquery pgseal filters.
            "SELECT p.id FROM patients p WHERE p.id IN (SELECT q.id FROM patients q WHERE q.last_name ILIKE 'n%')",
            "SELECT p.id FROM patients p WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id AND q.last_name < 'n')",
            // A masked column as the second operand of a test inside a subquery.
            "SELECT c.id FROM consultations c WHERE EXISTS (SELECT 1 FROM patients p \
             WHERE p.id = c.patient_id AND c.diagnosis_code || p.last_name LIKE 'E%M%')",
            "SELECT c.id FROM consultations c WHERE EXISTS (SELECT 1 FROM patients p \
             WHERE p.id = c.patient_id AND coalesce(c.diagnosis_code, p.last_name) = 'x')",
            // A column read in clear (billing's diagnosis codes) does not carry a masked one.
            "SELECT c.id FROM consultations c JOIN patients p ON p.id = c.patient_id \
             WHERE c.diagnosis_code || p.last_name LIKE c.diagnosis_code || 'L%'",
            "SELECT c.id FROM consultations c JOIN patients p ON p.id = c.patient_id \
             ORDER BY c.diagnosis_code || p.last_name",
        ] {
            let error = other.simple_query(sql).await.unwrap_err();
            assert_eq!(code(&error), Some("42501"), "{role}: {sql}: {error}");
        }
        pgseal_tests::assert_usable(&other).await;
    }

    let (_, metrics) = crate::budgets::http_get(proxy.admin_address().unwrap(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pgseal_evaluated_statements_total{role=\"ehr_app\"}")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("pgseal_evaluated_rows_total{role=\"ehr_app\",stage=\"scanned\"}")),
        "{metrics}"
    );
    proxy.stop().await;

    let text = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let search = events
        .iter()
        .find(|e| {
            e["role"] == "ehr_app"
                && e["fingerprint"]
                    .as_str()
                    .is_some_and(|f| f.contains("ilike"))
        })
        .unwrap_or_else(|| panic!("no event for the search: {text}"));
    assert_eq!(search["rows"], matching.len());
    assert_eq!(search["rows_scanned"], all.len());
    assert!(!text.contains("%E%"), "a search term in the audit trail");
}

/// Subqueries pgseal filters, beyond the differential test's shapes: an outer column named
/// alone, what stays refused (and why), and a subquery's rows past the byte cap.
#[tokio::test]
async fn subqueries_on_sealed_columns_work_or_are_refused_clearly() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let patients = crate::protection::insert_patients_and_a_consultation(&app).await;

    // `id` named alone: the statement reads one relation, so pgseal qualifies it inside.
    for sql in [
        "SELECT id FROM patients WHERE id IN (SELECT patient_id FROM consultations WHERE notes ILIKE $1)",
        "SELECT patients.id FROM patients WHERE patients.id IN (SELECT c.patient_id FROM consultations c WHERE c.notes ILIKE $1)",
        "SELECT id FROM patients p WHERE EXISTS (SELECT FROM consultations c WHERE c.patient_id = p.id AND c.notes ILIKE $1)",
    ] {
        assert_eq!(
            ids(app.query(sql, &[&"%DIABÈTE%"]).await.expect(sql)),
            [patients[0]],
            "{sql}"
        );
        assert!(
            ids(app.query(sql, &[&"%asthme%"]).await.expect(sql)).is_empty(),
            "{sql}"
        );
    }
    // `NOT EXISTS` is exact; the other patients have no consultation.
    let without = ids(app
        .query(
            "SELECT id FROM patients p WHERE NOT EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND c.notes ILIKE $1) ORDER BY id",
            &[&"%diabète%"],
        )
        .await
        .unwrap());
    assert_eq!(without, patients[1..]);

    // `NOT IN` (Django's exclude) and `IN` under `NOT`: exact, NULLs included.
    for sql in [
        "SELECT id FROM patients p WHERE p.id NOT IN (SELECT c.patient_id FROM consultations c WHERE c.notes ILIKE $1) ORDER BY id",
        "SELECT id FROM patients p WHERE NOT (p.id IN (SELECT c.patient_id FROM consultations c WHERE c.notes ILIKE $1)) ORDER BY id",
    ] {
        assert_eq!(
            ids(app.query(sql, &[&"%diabète%"]).await.expect(sql)),
            patients[1..],
            "{sql}"
        );
    }
    // A NULL among the subquery's values: `NOT IN` keeps nothing, as on the server.
    let kept = app
        .query(
            "SELECT id FROM patients p WHERE p.id NOT IN (SELECT NULLIF(c.patient_id, c.patient_id) FROM consultations c WHERE c.notes ILIKE $1)",
            &[&"%diabète%"],
        )
        .await
        .unwrap();
    assert!(kept.is_empty());

    // A parameter in an EXISTS subquery's select list (Django binds `SELECT 1 AS "a"` as
    // `SELECT $1 AS "a"`): typed as the server types it there, as text.
    let with_one = ids(app
        .query(
            "SELECT id FROM patients p WHERE EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND c.notes ILIKE '%a%') ORDER BY id",
            &[],
        )
        .await
        .unwrap());
    assert!(!with_one.is_empty());
    let statement = app
        .prepare(
            "SELECT id FROM patients p WHERE EXISTS (SELECT $1 AS \"a\" FROM consultations c WHERE c.patient_id = p.id AND c.notes ILIKE '%a%') ORDER BY id",
        )
        .await
        .unwrap();
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::TEXT]);
    assert_eq!(ids(app.query(&statement, &[&"1"]).await.unwrap()), with_one);
    // Sent with no value for it, the server's own error.
    let error = app
        .simple_query("SELECT id FROM patients p WHERE EXISTS (SELECT $1 FROM consultations c WHERE c.notes ILIKE '%a%')")
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some("42P02"), "{error}");

    // Refused as before, with the session going on: a subquery on the outer relation's own
    // name, an IN subquery with a LIMIT, an aggregate in a subquery's select list (dropping it
    // would change the rows).
    for sql in [
        "SELECT id FROM patients p WHERE EXISTS (SELECT count(*) FROM consultations c WHERE c.notes ILIKE '%zzz%')",
        "SELECT id FROM patients p WHERE NOT EXISTS (SELECT max(c.id) FROM consultations c WHERE c.notes ILIKE '%a%')",
        "SELECT id FROM patients WHERE patients.id IN (SELECT patients.id FROM patients WHERE first_name ILIKE 'a%')",
        "SELECT id FROM patients p WHERE p.id IN (SELECT c.patient_id FROM consultations c WHERE c.notes ILIKE '%a%' LIMIT 1)",
    ] {
        let error = app.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&error), Some("0A000"), "{sql}: {error}");
        pgseal_tests::assert_usable(&app).await;
    }
    proxy.stop().await;

    // One row's subquery rows past `--evaluation-max-bytes`: the statement fails naming it.
    let proxy = hospital
        .proxy_with(cluster, |c| c.evaluation_caps.max_bytes = 64)
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let error = app
        .query(
            "SELECT id FROM patients p WHERE EXISTS (SELECT 1 FROM consultations c WHERE c.notes ILIKE $1)",
            &[&"%a%"],
        )
        .await
        .unwrap_err();
    assert_cap(&error, "--evaluation-max-bytes");
    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}

#[tokio::test]
async fn caps_fail_clearly_and_the_session_goes_on() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital
        .proxy_with(cluster, |c| {
            c.evaluation_caps.max_rows = 1;
            c.evaluation_caps.max_scanned = 100;
        })
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;

    // Two rows to sort and no LIMIT: more than pgseal may hold.
    let error = app
        .query("SELECT id FROM patients ORDER BY last_name", &[])
        .await
        .unwrap_err();
    assert_cap(&error, "--evaluation-max-rows");
    // With a LIMIT, only the first rows are held.
    assert_eq!(
        app.query("SELECT id FROM patients ORDER BY last_name LIMIT 1", &[])
            .await
            .unwrap()
            .len(),
        1
    );

    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_streamed_result_stops_the_server_once_its_limit_is_sent() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let mut app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;
    // Thousands of rows: copies of the sealed ones, made directly (the same ciphertext opens).
    let direct = cluster.connect(&hospital.database).await;
    crate::protection::copy_patients(&direct, 20000).await;
    let sql =
        "SELECT id AS streamed_id FROM patients WHERE last_name ILIKE '%e%' ORDER BY id LIMIT 3";
    let expected = ids(direct
        .query("SELECT id FROM patients ORDER BY id LIMIT 3", &[])
        .await
        .unwrap());
    // Outside a transaction block pgseal cancels the rest of the scan; inside one it lets the
    // server finish (a cancel would abort the transaction). Either way the client gets the
    // rows and its session, and its transaction, go on.
    for _ in 0..2 {
        let simple = app.simple_query(sql).await.unwrap();
        let streamed: Vec<i64> = simple
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(streamed, expected);
        let extended = ids(app.query(sql, &[]).await.unwrap());
        assert_eq!(extended, expected);
        pgseal_tests::assert_usable(&app).await;
    }
    let transaction = app.transaction().await.unwrap();
    let inside = ids(transaction.query(sql, &[]).await.unwrap());
    assert_eq!(inside, expected);
    pgseal_tests::assert_usable(&transaction).await;
    transaction.commit().await.unwrap();
    proxy.stop().await;
}

/// Groups pgseal sorts but never filters: a filter of pgseal's would change what the server
/// groups and aggregates, so a grouped statement with one stays refused, clearly, and so do
/// aggregates folding sealed values, and sorting groups by a name for roles that do not read it
/// in clear (42501); the session goes on. (Sorted groups are compared with a
/// plaintext twin in `evaluation_differential.rs`, and through Django's annotate in `orm.rs`.)
#[tokio::test]
async fn grouped_statements_are_sorted_by_pgseal_but_never_filtered() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    crate::cursors::seed(&app, 5, |i| {
        ["Zoé", "Côté", "Cote", "le Gall", "Le-Gall"][i as usize].into()
    })
    .await;
    // Sorted by pgseal: the groups in the collation's order.
    let rows = app
        .query(
            "SELECT p.last_name, count(*) FROM patients p GROUP BY p.id ORDER BY p.last_name DESC LIMIT 3",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // As the same sort without groups (checked against PostgreSQL by the differential test).
    let ungrouped: Vec<String> = pgseal_tests::first_column(
        &app,
        "SELECT last_name FROM patients ORDER BY last_name DESC LIMIT 3",
    )
    .await;
    assert_eq!(names, ungrouped);
    assert_eq!(names.len(), 3);
    for sql in [
        "SELECT p.id, count(c.id) FROM patients p LEFT JOIN consultations c ON c.patient_id = p.id WHERE p.last_name ILIKE 'c%' GROUP BY p.id",
        "SELECT p.id FROM patients p WHERE p.first_name ILIKE 'a%' GROUP BY p.id HAVING count(*) > 0 ORDER BY p.id",
        "SELECT id, count(*) OVER () FROM patients WHERE first_name ILIKE 'a%' ORDER BY id",
        "SELECT p.id, string_agg(c.notes, ',') FROM patients p JOIN consultations c ON c.patient_id = p.id GROUP BY p.id ORDER BY p.last_name",
    ] {
        let error = app.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&error), Some("0A000"), "{sql}: {error}");
        pgseal_tests::assert_usable(&app).await;
    }
    // The stolen billing (masked names) and support (ciphertext) accounts may not sort the
    // groups by a name either: the order would reveal it.
    for role in ["ehr_billing", "ehr_admin"] {
        let client = hospital.connect(&proxy, role).await;
        let error = client
            .simple_query(
                "SELECT p.id, count(c.id) FROM patients p LEFT JOIN consultations c ON c.patient_id = p.id GROUP BY p.id ORDER BY p.last_name LIMIT 3",
            )
            .await
            .unwrap_err();
        assert_eq!(code(&error), Some("42501"), "{role}: {error}");
        pgseal_tests::assert_usable(&client).await;
    }
    proxy.stop().await;
}
