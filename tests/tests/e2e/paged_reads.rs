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
    crate::protection::copy_patients_from(
        &direct,
        &format!(
            "FROM generate_series(1, {COPIES}) g
             JOIN patients p ON p.id = CASE WHEN g % {RARE} = 0 THEN {} ELSE {} END
             ORDER BY g",
            ids[0], ids[1]
        ),
    )
    .await;
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
/// once both sessions have reported their counts.
async fn server_reads(client: &Client, direct: &Client) -> i64 {
    for session in [client, direct] {
        session
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
    }
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

/// How a statement is sent.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    /// A Query, its counts written in the text.
    Simple,
    /// Parse, Bind, Execute, its counts bound as parameters.
    Extended,
}

/// The ids of a page of patients in id order: `SELECT id{extra} FROM patients WHERE {filter}
/// ORDER BY id LIMIT {limit} OFFSET {offset}`.
async fn page(
    client: &Client,
    protocol: Protocol,
    (extra, filter): (&str, &str),
    limit: i64,
    offset: i64,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let select = format!("SELECT id{extra} FROM patients WHERE {filter} ORDER BY id");
    match protocol {
        Protocol::Simple => {
            simple_ids(client, &format!("{select} LIMIT {limit} OFFSET {offset}")).await
        }
        Protocol::Extended => Ok(client
            .query(&format!("{select} LIMIT $1 OFFSET $2"), &[&limit, &offset])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()),
    }
}

/// A page's ids, its statement sent alone or in a transaction block of its own, with the
/// rows of `patients` the server read for it.
async fn run(
    client: &Client,
    direct: &Client,
    (protocol, in_block): (Protocol, bool),
    filter: &str,
    limit: i64,
    offset: i64,
) -> (Vec<i64>, i64) {
    let before = server_reads(client, direct).await;
    if in_block {
        client.batch_execute("BEGIN").await.unwrap();
    }
    let ids = page(client, protocol, ("", filter), limit, offset)
        .await
        .unwrap();
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
    let first_three: Vec<i64> =
        pgseal_tests::first_column(&direct, "SELECT id FROM patients ORDER BY id LIMIT 3").await;

    for protocol in [Protocol::Simple, Protocol::Extended] {
        for in_block in [false, true] {
            let how = (protocol, in_block);
            // A common match: the first page the server gives fills the client's.
            let (common, read) = run(&app, &direct, how, "last_name ILIKE '%e%'", 3, 0).await;
            assert_eq!(common, first_three, "{how:?}");
            assert!(
                read <= 100,
                "the server read {read} rows for a page of 3 ({how:?})"
            );

            // A rare match past an OFFSET: several pages, each larger, not the whole table.
            let (rare, read) = run(&app, &direct, how, "last_name ILIKE 'lef%'", 5, 2).await;
            assert_eq!(rare, expected(&direct, first, 5, 2).await, "{how:?}");
            assert!(
                read >= 6 * RARE && read < table / 2,
                "the server read {read} rows of {table} for the 7th match, at about row {} ({how:?})",
                7 * RARE
            );

            // Fewer matches than the LIMIT: every page, to the end of the table.
            let (every, read) = run(&app, &direct, how, "last_name ILIKE 'lef%'", 100, 0).await;
            assert_eq!(every, expected(&direct, first, 100, 0).await, "{how:?}");
            assert_eq!(every.len() as i64, COPIES / RARE + 1);
            assert_eq!(read, table, "{how:?}");
        }
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
        .proxy_with(cluster, |c| c.evaluation_caps.max_scanned = 3_000)
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let (direct, first) = seed(&hospital, &app).await;
    // The third copy of the first patient, past the first page: dividing by zero there fails
    // on the plaintext too.
    let third = expected(&direct, first, 1, 2).await[0];
    let extra = format!(", 1 / (id - {third})");
    let divides = (extra.as_str(), "last_name ILIKE 'lef%'");
    let too_far = ("", "last_name ILIKE 'lef%'");

    for protocol in [Protocol::Simple, Protocol::Extended] {
        // The server's error, on a later page.
        let error = page(&app, protocol, divides, 5, 0).await.unwrap_err();
        assert_eq!(code(&error), Some("22012"), "{protocol:?}: {error:?}");
        assert_no_transaction(&app).await;
        app.batch_execute("BEGIN").await.unwrap();
        let error = page(&app, protocol, divides, 5, 0).await.unwrap_err();
        assert_eq!(code(&error), Some("22012"), "{protocol:?}: {error:?}");
        assert_transaction_failed(&app).await;

        // pgseal's own error: the rows to read pass --evaluation-max-scan.
        for in_block in [false, true] {
            if in_block {
                app.batch_execute("BEGIN").await.unwrap();
            }
            let error = page(&app, protocol, too_far, 5, 2).await.unwrap_err();
            assert_eq!(code(&error), Some("54000"), "{protocol:?}: {error}");
            assert!(
                error
                    .as_db_error()
                    .unwrap()
                    .message()
                    .contains("--evaluation-max-scan")
            );
            if in_block {
                assert_transaction_failed(&app).await;
            } else {
                assert_no_transaction(&app).await;
            }
        }

        // A page within the cap still answers, in and out of a block.
        assert_eq!(
            page(&app, protocol, too_far, 1, 0).await.unwrap(),
            expected(&direct, first, 1, 0).await
        );
        app.batch_execute("BEGIN").await.unwrap();
        assert_eq!(
            page(&app, protocol, too_far, 1, 0).await.unwrap(),
            expected(&direct, first, 1, 0).await
        );
        app.batch_execute("COMMIT").await.unwrap();
    }
    proxy.stop().await;
}

/// A statement ends, and the session goes on, within this long (a hung session fails the test
/// rather than hanging it).
const PROMPT: std::time::Duration = std::time::Duration::from_secs(10);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PROMPT:?}"))
}

#[tokio::test]
async fn a_paged_read_whose_first_step_fails_answers_and_the_session_goes_on() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;
    let search = "SELECT id FROM patients WHERE last_name ILIKE '%e%'";

    for in_block in [false, true] {
        let how = if in_block { "in a block" } else { "alone" };
        for (sql, sqlstate) in [
            // The server refuses it when it runs (the cursor's DECLARE).
            (format!("{search} AND id = 'abc' LIMIT 3"), "22P02"),
            // The server cannot parse it, though pgseal could.
            (format!("{search} AND id = :x LIMIT 3"), "42601"),
        ] {
            if in_block {
                app.batch_execute("BEGIN").await.unwrap();
            }
            let error = within(how, app.simple_query(&sql)).await.unwrap_err();
            assert_eq!(code(&error), Some(sqlstate), "{how}: {sql}: {error}");
            if in_block {
                within(how, assert_transaction_failed(&app)).await;
            } else {
                within(how, assert_no_transaction(&app)).await;
            }
        }
    }

    // Text before the statement that `DECLARE … FOR` could not take: read as sent.
    let all = simple_ids(&app, &format!("{search} ORDER BY id"))
        .await
        .unwrap();
    for sql in [
        format!(";{search} ORDER BY id LIMIT 1"),
        format!("/* a */ ; -- b\n{search} ORDER BY id LIMIT 1"),
        format!("{search} ORDER BY id LIMIT 1; -- trailing"),
    ] {
        let got = within(&sql, simple_ids(&app, &sql)).await.unwrap();
        assert_eq!(got, all[..1], "{sql}");
    }

    // pgseal's cursor name is its own.
    for declare in [
        "DECLARE pgseal_paged CURSOR WITH HOLD FOR SELECT 1",
        "DECLARE \"pgseal_paged\" CURSOR WITH HOLD FOR SELECT 1",
        "DECLARE PGSEAL_PAGED CURSOR WITH HOLD FOR SELECT 1",
    ] {
        let error = app.batch_execute(declare).await.unwrap_err();
        assert_eq!(code(&error), Some("42939"), "{declare}: {error}");
        assert!(error.as_db_error().unwrap().message().contains("reserved"));
    }
    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_paced_paged_read_outside_a_block_outlasts_the_idle_in_transaction_timeout() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create(cluster);
    let dir = tempfile::tempdir().unwrap();
    // The application's budget throttles past 5 rows a second, after 3 (the default budget
    // must stay the strictest).
    let policy = pgseal_tests::hospital::example_policy_with(
        dir.path(),
        "paced.toml",
        &[
            (
                "rate = \"2000/second\"\nburst = 20_000\nper_hour = 500_000\nper_day = 5_000_000\naction = \"alert\"",
                "rate = \"5/second\"\nburst = 3\nper_hour = 500_000\nper_day = 5_000_000\naction = \"throttle\"",
            ),
            (
                "rate = \"10/minute\"\nburst = 20\n",
                "rate = \"10/minute\"\nburst = 2\n",
            ),
        ],
    );
    let proxy = hospital
        .proxy_with(cluster, move |c| c.policy = Some(policy))
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;
    let direct = cluster.connect(&hospital.database).await;
    crate::protection::copy_patients(&direct, 20).await;
    // The server waits in pgseal's transaction while the page is paced out (about 2 s).
    app.batch_execute("SET idle_in_transaction_session_timeout = '500ms'")
        .await
        .unwrap();
    let ids = simple_ids(
        &app,
        "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 12",
    )
    .await
    .unwrap();
    assert_eq!(ids.len(), 12);
    assert_no_transaction(&app).await;
    proxy.stop().await;
}

/// The first column of each DataRow among `messages`, as ids (text results).
fn raw_ids(messages: &[pgseal_tests::raw::Message]) -> Vec<i64> {
    messages
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let len = i32::from_be_bytes(m.body[2..6].try_into().unwrap()) as usize;
            std::str::from_utf8(&m.body[6..6 + len])
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The tags of the messages, in order (`D` rows counted once per run of them).
fn shape(messages: &[pgseal_tests::raw::Message]) -> String {
    let mut out = String::new();
    for m in messages {
        if m.tag != b'D' || !out.ends_with('D') {
            out.push(char::from(m.tag));
        }
    }
    out
}

#[tokio::test]
async fn portals_run_in_parts_or_named_are_read_whole_and_the_server_keeps_no_rows() {
    use pgseal_tests::raw::{bind, execute, frame, parse, query};
    let cluster = cluster::cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut hospital = Hospital::create_icu(cluster, "fr-FR");
    hospital.policy = crate::evaluation_differential::policy_with_trusted_application(dir.path());
    hospital.grant_trust_role(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let (direct, first) = seed(&hospital, &app).await;
    let ten = expected(&direct, first, 10, 0).await;
    let sql = "SELECT id FROM patients WHERE last_name ILIKE 'lef%' ORDER BY id LIMIT 10";
    let mut raw =
        crate::evaluation_differential::raw_client(proxy.address(), &hospital.database).await;
    let sync = frame(b'S', &[]);

    // The unnamed portal, three rows then the rest: PostgreSQL's answer, row for row.
    raw.send_frames(&[
        parse("", sql),
        bind("", ""),
        execute("", 3),
        execute("", 0),
        sync.clone(),
    ])
    .await;
    let got = raw.read_until(b'Z').await;
    assert_eq!(shape(&got), "12DsDCZ", "{got:?}");
    assert_eq!(raw_ids(&got), ten);

    // A named portal in a transaction block, run whole: nothing is left in it for an SQL FETCH.
    raw.send_frames(&[query("BEGIN")]).await;
    raw.read_until(b'Z').await;
    raw.send_frames(&[
        parse("", sql),
        bind("p1", ""),
        execute("p1", 0),
        sync.clone(),
    ])
    .await;
    let got = raw.read_until(b'Z').await;
    assert_eq!(shape(&got), "12DCZ", "{got:?}");
    assert_eq!(raw_ids(&got), ten);
    raw.send_frames(&[query("FETCH ALL FROM p1")]).await;
    let got = raw.read_until(b'Z').await;
    assert!(raw_ids(&got).is_empty(), "{got:?}");
    raw.send_frames(&[query("COMMIT")]).await;
    raw.read_until(b'Z').await;

    // Two statements in one group, each answered with its own rows.
    raw.send_frames(&[
        parse("s1", sql),
        bind("", "s1"),
        execute("", 0),
        parse("", &sql.replace("LIMIT 10", "LIMIT 2 OFFSET 1")),
        bind("", ""),
        execute("", 0),
        sync,
    ])
    .await;
    let got = raw.read_until(b'Z').await;
    assert_eq!(shape(&got), "12DC12DCZ", "{got:?}");
    let ids = raw_ids(&got);
    assert_eq!(ids[..10], ten[..]);
    assert_eq!(ids[10..], ten[1..3]);
    proxy.stop().await;
}

#[tokio::test]
async fn a_paged_read_leaves_the_clients_settings_as_they_were() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;
    let show = |setting: &'static str| {
        let app = &app;
        async move {
            app.query_one(&format!("SHOW {setting}"), &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let page = "SELECT id FROM patients WHERE last_name ILIKE '%e%' ORDER BY id LIMIT 1";
    // pgseal turns JIT off for its cursor's planning, in its own transaction or in the
    // client's, and gives the client back its own value, whichever it is.
    for jit in ["on", "off"] {
        app.batch_execute(&format!("SET jit = {jit}"))
            .await
            .unwrap();
        simple_ids(&app, page).await.unwrap();
        assert_eq!(show("jit").await, jit, "alone");
        app.batch_execute("BEGIN").await.unwrap();
        simple_ids(&app, page).await.unwrap();
        assert_eq!(show("jit").await, jit, "in a block");
        app.batch_execute(&format!(
            "SET LOCAL jit = {}",
            if jit == "on" { "off" } else { "on" }
        ))
        .await
        .unwrap();
        simple_ids(&app, page).await.unwrap();
        assert_ne!(show("jit").await, jit, "after SET LOCAL");
        app.batch_execute("COMMIT").await.unwrap();
        assert_eq!(show("jit").await, jit, "after the block");
        assert_eq!(show("idle_in_transaction_session_timeout").await, "0");
    }
    app.batch_execute("SET idle_in_transaction_session_timeout = '1h'")
        .await
        .unwrap();
    simple_ids(&app, page).await.unwrap();
    assert_eq!(show("idle_in_transaction_session_timeout").await, "1h");
    proxy.stop().await;
}
