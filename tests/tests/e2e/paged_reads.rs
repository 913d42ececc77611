//! Paged reads: a simple-protocol `SELECT … LIMIT` that pgseal filters in the server's order
//! is read through pgseal's own cursor, a page at a time, in and out of transaction blocks.
//! What the client gets is checked against the sealed table read directly (copies of one
//! sealed row carry the same ciphertext, so the database can pick them out itself); how much
//! the server read, with its own counters of the transaction; errors from the server, and pgseal's own, end the
//! statement as PostgreSQL would, leaving the transaction as the client expects.

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Copies made of the example's second patient; one in `RARE` is a copy of the first.
const COPIES: i64 = 20_000;
const RARE: i64 = 1_000;

/// The hospital example with `COPIES` more patients, made directly from the two sealed ones:
/// the first patient (Lefèvre) recurs every `RARE` copies, the second (N'Diaye) fills the rest.
/// Returns the first patient's id.
async fn seed(hospital: &Hospital, app: &Client) -> (Client, i64) {
    let ids = crate::protection::insert_patients(app).await;
    let direct = cluster::cluster().connect(&hospital.database).await;
    direct
        .batch_execute(&format!(
            "ALTER TABLE patients DROP CONSTRAINT patients_nir_key;
             INSERT INTO patients (nir, last_name, first_name, birth_date, sex, email, phone,
                                   address, postal_code, city, gp_name)
             SELECT nir, last_name, first_name, birth_date, sex, email, phone, address,
                    postal_code, city, gp_name
             FROM generate_series(1, {COPIES}) g
             JOIN patients p ON p.id = CASE WHEN g % {RARE} = 0 THEN {} ELSE {} END
             ORDER BY g;
             ANALYZE patients",
            ids[0], ids[1]
        ))
        .await
        .unwrap();
    (direct, ids[0])
}

/// The ids of the first patient's copies, from `offset`, at most `limit`, read directly.
async fn expected(direct: &Client, first: i64, limit: i64, offset: i64) -> Vec<i64> {
    direct
        .query(
            "SELECT id FROM patients
             WHERE last_name = (SELECT last_name FROM patients WHERE id = $1)
             ORDER BY id LIMIT $2 OFFSET $3",
            &[&first, &limit, &offset],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The first column of each row of a simple Query, as ids.
async fn simple_ids(client: &Client, sql: &str) -> Result<Vec<i64>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .collect())
}

/// Rows of `patients` the server has read so far (by sequential scans and from index scans),
/// once `client`'s session has reported its counts.
async fn server_reads(client: &Client, direct: &Client) -> i64 {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    direct
        .query_one(
            "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables
             WHERE relid = 'patients'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The ids a simple Query returns, sent alone or in a transaction block of its own, with the
/// rows of `patients` the server read for it.
async fn run(client: &Client, direct: &Client, sql: &str, in_block: bool) -> (Vec<i64>, i64) {
    let before = server_reads(client, direct).await;
    if in_block {
        client.batch_execute("BEGIN").await.unwrap();
    }
    let ids = simple_ids(client, sql).await.unwrap();
    if in_block {
        client.batch_execute("COMMIT").await.unwrap();
    }
    (ids, server_reads(client, direct).await - before)
}

fn code(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

/// No transaction is left open: `SAVEPOINT` is refused outside one.
async fn assert_no_transaction(client: &Client) {
    let error = client.batch_execute("SAVEPOINT probe").await.unwrap_err();
    assert_eq!(code(&error), Some("25P01"), "{error}");
    pgseal_tests::assert_usable(client).await;
}

/// The client's transaction block failed: statements are refused until it ends.
async fn assert_transaction_failed(client: &Client) {
    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&error), Some("25P02"), "{error}");
    client.batch_execute("ROLLBACK").await.unwrap();
    pgseal_tests::assert_usable(client).await;
}

#[tokio::test]
async fn a_filtered_page_reads_a_few_pages_of_the_table_in_and_out_of_transactions() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let (direct, first) = seed(&hospital, &app).await;
    let table = COPIES + 2;
    let first_three: Vec<i64> = direct
        .query("SELECT id FROM patients ORDER BY id LIMIT 3", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    for in_block in [false, true] {
        // A common match: the first page the server gives fills the client's.
        let (common, read) = run(
            &app,
            &direct,
            "SELECT id FROM patients WHERE last_name ILIKE '%e%' ORDER BY id LIMIT 3",
            in_block,
        )
        .await;
        assert_eq!(common, first_three, "in a block: {in_block}");
        assert!(
            read <= 100,
            "the server read {read} rows for a page of 3 (in a block: {in_block})"
        );

        // A rare match past an OFFSET: several pages, each larger, not the whole table.
        let (rare, read) = run(
            &app,
            &direct,
            "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 5 OFFSET 2",
            in_block,
        )
        .await;
        assert_eq!(rare, expected(&direct, first, 5, 2).await);
        assert!(
            read >= 6 * RARE && read < table / 2,
            "the server read {read} rows of {table} for the 7th match, at about row {} (in a block: {in_block})",
            7 * RARE
        );

        // Fewer matches than the LIMIT: every page, to the end of the table.
        let (every, read) = run(
            &app,
            &direct,
            "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 100",
            in_block,
        )
        .await;
        assert_eq!(every, expected(&direct, first, 100, 0).await);
        assert_eq!(every.len() as i64, COPIES / RARE + 1);
        assert_eq!(read, table);
    }
    assert_no_transaction(&app).await;

    // pgseal's cursor is its own: the client never sees it.
    app.batch_execute("BEGIN").await.unwrap();
    simple_ids(
        &app,
        "SELECT id FROM patients WHERE last_name ILIKE '%e%' ORDER BY id LIMIT 3",
    )
    .await
    .unwrap();
    let error = app
        .simple_query("FETCH 1 FROM pgseal_paged")
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some("34000"), "{error}");
    app.batch_execute("ROLLBACK").await.unwrap();

    // Two statements pipelined on one connection come back each with its own rows.
    let (a, b) = tokio::join!(
        simple_ids(
            &app,
            "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 2 OFFSET 3"
        ),
        simple_ids(
            &app,
            "SELECT id FROM patients WHERE last_name ILIKE '%diaye%' ORDER BY id DESC LIMIT 2"
        )
    );
    assert_eq!(a.unwrap(), expected(&direct, first, 2, 3).await);
    let last_two: Vec<i64> = direct
        .query(
            "SELECT id FROM patients WHERE last_name <> (SELECT last_name FROM patients WHERE id = $1) ORDER BY id DESC LIMIT 2",
            &[&first],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(b.unwrap(), last_two);
    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_paged_read_that_fails_leaves_the_transaction_as_postgresql_would() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    // Enough for the first pages, not for the whole table.
    let proxy = hospital
        .proxy_with(cluster, |c| c.evaluation_caps.max_scanned = 1_000)
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let (direct, first) = seed(&hospital, &app).await;
    // The third copy of the first patient, past the first page: dividing by zero there fails
    // on the plaintext too.
    let third = expected(&direct, first, 1, 2).await[0];
    let divides = format!(
        "SELECT id, 1 / (id - {third}) FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 5"
    );
    let too_far =
        "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 5 OFFSET 2";

    // The server's error, on a later page.
    let error = app.simple_query(&divides).await.unwrap_err();
    assert_eq!(code(&error), Some("22012"), "{error}");
    assert_no_transaction(&app).await;
    app.batch_execute("BEGIN").await.unwrap();
    let error = app.simple_query(&divides).await.unwrap_err();
    assert_eq!(code(&error), Some("22012"), "{error}");
    assert_transaction_failed(&app).await;

    // pgseal's own error: the rows to read pass --evaluation-max-scan.
    let error = app.simple_query(too_far).await.unwrap_err();
    assert_eq!(code(&error), Some("54000"), "{error}");
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains("--evaluation-max-scan")
    );
    assert_no_transaction(&app).await;
    app.batch_execute("BEGIN").await.unwrap();
    let error = app.simple_query(too_far).await.unwrap_err();
    assert_eq!(code(&error), Some("54000"), "{error}");
    assert_transaction_failed(&app).await;

    // A page within the cap still answers, in and out of a block.
    assert_eq!(
        simple_ids(
            &app,
            "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 1"
        )
        .await
        .unwrap(),
        expected(&direct, first, 1, 0).await
    );
    app.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        simple_ids(
            &app,
            "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 1"
        )
        .await
        .unwrap(),
        expected(&direct, first, 1, 0).await
    );
    app.batch_execute("COMMIT").await.unwrap();
    proxy.stop().await;
}
