//! Review of export budgets, end users and the audit trail: attacks by a holder of `ehr_admin`
//! (ciphertext, small budget), of a stolen `ehr_app` password, or of a role the policy does not
//! name, that try to take out more rows than the budget allows, to go unaudited, to be counted
//! against the wrong end user, or to hang or desynchronise a session.
//!
//! Each test is an attack; those that demonstrated a finding were fixed and stay as regression
//! tests. The one marked `#[ignore = "KNOWN LIMIT …"]` still fails: a limit the README
//! documents (run it with `--include-ignored`).
//!
//! The budgets are those of `e2e/budgets.rs`: ehr_admin (class support) 20 rows at once, then 5
//! a second, 50 an hour, throttled then blocked; ehr_app must name its end users, 150 rows a
//! day each; roles in no class (the raw-protocol tests log in as the cluster's trusted role,
//! `pgseal_trust`, granted the hospital tables) 20 an hour, blocked.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, pin_mut};
use pgseal_tests::budgets::{BudgetSetup, stream};
use pgseal_tests::cluster::TRUST_ROLE;
use pgseal_tests::raw::{self, RawClient, bind, data_rows, describe, errors, execute, parse, sync};
use pgseal_tests::{Cluster, TestProxy, cluster};
use tokio_postgres::{Client, SimpleQueryMessage};

const PATIENTS: usize = 100;

async fn setup(cluster: &Cluster) -> BudgetSetup {
    let setup = BudgetSetup::new(cluster);
    cluster
        .run_sql(
            &setup.hospital.database,
            &format!("GRANT ALL ON public.patients, public.consultations TO {TRUST_ROLE}"),
        )
        .expect("grant the trusted role");
    let proxy = setup.proxy(cluster, |_| {}).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    app.batch_execute("SET pgseal.end_user = 'seeder'")
        .await
        .unwrap();
    let insert = app
        .prepare("INSERT INTO patients (nir, last_name) VALUES ($1, $2)")
        .await
        .unwrap();
    for i in 0..PATIENTS as u64 {
        let body = format!("1850575{:03}{:03}", 100 + i % 800, 1 + i);
        let number: u64 = body.parse().unwrap();
        let nir = format!("{body}{:02}", 97 - number % 97);
        app.execute(&insert, &[&nir, &format!("Patient{i}")])
            .await
            .unwrap();
    }
    proxy.stop().await;
    setup
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `sql` with the simple protocol: the rows of every result, or the SQLSTATE.
async fn simple(client: &Client, sql: &str) -> Result<usize, String> {
    match client.simple_query(sql).await {
        Ok(messages) => Ok(messages
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count()),
        Err(e) => Err(e.code().map(|c| c.code().to_string()).unwrap_or_default()),
    }
}

/// A raw protocol session through pgseal as `pgseal_trust` (in no class: the default budget).
async fn raw_session(setup: &BudgetSetup, proxy: &TestProxy) -> RawClient {
    let mut client = RawClient::connect(proxy.address()).await;
    client
        .startup_trusted(TRUST_ROLE, &setup.hospital.database)
        .await;
    client
}

/// A well-formed NIR from its 13-character body (control key = 97 − body mod 97).
fn nir(body: &str) -> String {
    let number: u64 = body.parse().expect("a numeric NIR body");
    format!("{body}{:02}", 97 - number % 97)
}

/// The audit trail's statement events.
fn statement_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "statement")
        .collect()
}

/// pgseal over the small-budgets policy with `counts = "all"` for the support class and the
/// default budget (which must stay the strictest: it counts every row too).
async fn all_rows_proxy(cluster: &Cluster, setup: &BudgetSetup) -> TestProxy {
    let text = std::fs::read_to_string(&setup.policy).unwrap();
    let all_rows = text
        .replace(
            "[classes.support.budget]\n",
            "[classes.support.budget]\ncounts = \"all\"\n",
        )
        .replace("[default.budget]\n", "[default.budget]\ncounts = \"all\"\n");
    assert_ne!(all_rows, text);
    let policy = setup.dir.path().join("all-rows.toml");
    std::fs::write(&policy, all_rows).unwrap();
    setup.proxy(cluster, |c| c.policy = Some(policy)).await
}

/// Sends `frames` and reads the answer up to ReadyForQuery, which must hold no error: a step
/// of an attack that has to succeed for the attack to mean anything.
async fn send_ok(client: &mut RawClient, frames: &[Vec<u8>]) {
    client.send_frames(frames).await;
    let answer = client.read_until(b'Z').await;
    assert!(errors(&answer).is_empty(), "{answer:?}");
}

/// Creates `public.visitors`, a table pgseal does not seal, with ten rows that `readers` (a
/// list of roles) may read.
fn ten_visitors(cluster: &Cluster, setup: &BudgetSetup, readers: &str) {
    cluster
        .run_sql(
            &setup.hospital.database,
            &format!(
                "CREATE TABLE public.visitors (id int, name text); \
                 INSERT INTO public.visitors SELECT i, 'visitor ' || i \
                 FROM generate_series(1, 10) i; \
                 GRANT SELECT ON public.visitors TO {readers}"
            ),
        )
        .expect("an unsealed table");
}

/// Checks that the trusted role (in no class: the default budget, 20 rows an hour) got no
/// more than 20 rows in `messages`; `what` says how it read them.
fn assert_within_the_trusted_roles_budget(messages: &[raw::Message], what: &str) {
    let rows = data_rows(messages);
    assert!(
        rows <= 20,
        "the default class (20 rows an hour) {what}: {rows} rows, errors {:?}",
        errors(messages)
    );
}

/// What a direct (superuser) connection reads.
async fn direct_one(cluster: &Cluster, setup: &BudgetSetup, sql: &str) -> String {
    let direct = cluster.connect(&setup.hospital.database).await;
    direct
        .query_one(sql, &[])
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Findings: rows over budget
// ---------------------------------------------------------------------------------------------

/// Attack: `CREATE TEMP TABLE t AS SELECT … FROM patients` returns no rows (nothing charged),
/// and `t` is no sealed table, so reading it back would be neither counted nor audited.
/// Handled: copying sealed data elsewhere is refused, and ehr_admin stays within its cap.
#[tokio::test]
async fn a_temporary_copy_of_a_sealed_table_is_read_within_the_budget() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let (proxy, audit) = setup.audited_proxy(cluster).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let started = Instant::now();
    let copied = simple(
        &admin,
        "CREATE TEMP TABLE t AS SELECT nir, last_name FROM patients",
    )
    .await;
    let (rows, state) = if copied.is_ok() {
        stream(&admin, "SELECT nir, last_name FROM t").await
    } else {
        (0, None)
    };
    let elapsed = started.elapsed();
    proxy.stop().await;
    let events = statement_events(&audit);
    assert!(
        rows <= 50,
        "ehr_admin read {rows} patients' NIR and name from a temporary copy in {elapsed:?} (hourly \
         cap: 50), ended with {state:?}; audit events: {events:?}"
    );
}

/// Attack: a cursor over a sealed table's unsealed columns — `FETCH` names no sealed table and
/// its rows carry no sealed column. Handled: rows of a sealed table count whatever their
/// columns, a FETCH is charged to its cursor's query, and ehr_app needs an end user for it.
#[tokio::test]
async fn cursor_rows_of_a_sealed_table_count_without_sealed_columns() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    // The same columns through a SELECT are counted: blocked at the hourly cap.
    admin
        .batch_execute(
            "BEGIN; DECLARE c CURSOR FOR SELECT id, city, postal_code, sex, gp_name FROM patients",
        )
        .await
        .unwrap();
    let fetched = simple(&admin, "FETCH ALL FROM c").await;
    admin.batch_execute("ROLLBACK").await.unwrap();

    // ehr_app must name an end user for statements on sealed tables.
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    app.batch_execute(
        "BEGIN; /* pgseal_user='dr.martin' */ DECLARE c CURSOR FOR SELECT id, city FROM patients",
    )
    .await
    .unwrap();
    let anonymous = simple(&app, "FETCH ALL FROM c").await;
    app.batch_execute("ROLLBACK").await.unwrap();
    proxy.stop().await;
    assert!(
        matches!(fetched, Ok(n) if n <= 50) || fetched == Err("53400".into()),
        "ehr_admin fetched {fetched:?} rows of patients through a cursor (hourly cap: 50)"
    );
    assert_eq!(
        anonymous,
        Err("42501".into()),
        "ehr_app fetched rows of patients without an end user"
    );
}

/// Attack: a protocol-level `Parse("FETCH ALL FROM c")` / Bind / Execute with no Describe —
/// the text names no sealed table and pgseal never sees the rows' shape. Handled: the FETCH is
/// charged to the cursor's query; the trusted role (in no class, 20 rows an hour) gets 20.
#[tokio::test]
async fn an_undescribed_fetch_through_the_extended_protocol_is_counted() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    send_ok(
        &mut client,
        &[raw::query(
            "BEGIN; DECLARE c CURSOR FOR SELECT nir, last_name FROM patients",
        )],
    )
    .await;
    client
        .send_frames(&[
            parse("", "FETCH ALL FROM c"),
            bind("", ""),
            execute("", 0),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    proxy.stop().await;
    assert_within_the_trusted_roles_budget(&messages, "fetched through an undescribed FETCH");
}

/// Attack: bind a portal `c` to a statement that reads nothing sealed (`SELECT 1`), let the
/// transaction end (the server destroys the portal), then `DECLARE c CURSOR FOR SELECT nir …`
/// and run the cursor by executing portal `c`. pgseal must not take the cursor for the portal it
/// once saw bound under that name: the rows are charged as sealed, and the trusted role (in no
/// class, 20 rows an hour) gets no more than 20 — in the same transaction as the DECLARE, and
/// in a later one for a cursor `WITH HOLD`.
#[tokio::test]
async fn a_cursor_declared_under_a_bound_portals_name_is_counted() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    send_ok(
        &mut client,
        &[
            parse("plain", "SELECT 1"),
            bind("c", "plain"),
            describe(b'P', "c"),
            execute("c", 0),
            sync(),
        ],
    )
    .await;
    send_ok(
        &mut client,
        &[raw::query(
            "BEGIN; DECLARE c CURSOR FOR SELECT nir, last_name FROM patients",
        )],
    )
    .await;
    client.send_frames(&[execute("c", 0), sync()]).await;
    let messages = client.read_until(b'Z').await;
    assert_within_the_trusted_roles_budget(&messages, "read from cursor c through its portal");
    proxy.stop().await;
}

/// Attack: declare `c WITH HOLD` over the patients, then bind a portal `c` to a described
/// `SELECT 1` (the server refuses the Bind: the name is taken) and execute portal `c` in the
/// next group, with nothing run in between. The server runs the cursor; pgseal must not take
/// it for the statement of the failed Bind (a Sync passed since the Bind: pgseal describes the
/// portal again): the rows count as sealed, up to the trusted role's 20.
#[tokio::test]
async fn a_failed_bind_does_not_lend_its_statement_to_a_cursor_of_that_name() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    for sql in [
        "BEGIN",
        "DECLARE c CURSOR WITH HOLD FOR SELECT nir, last_name FROM patients",
        "COMMIT",
    ] {
        send_ok(&mut client, &[raw::query(sql)]).await;
    }
    send_ok(
        &mut client,
        &[
            parse("plain", "SELECT 1"),
            describe(b'S', "plain"),
            sync(),
            bind("c", "plain"),
            sync(),
        ],
    )
    .await;
    let refused = client.read_until(b'Z').await;
    assert_eq!(errors(&refused), ["42P03"], "the server refuses the Bind");
    client.send_frames(&[execute("c", 0), sync()]).await;
    let messages = client.read_until(b'Z').await;
    assert_within_the_trusted_roles_budget(&messages, "read from cursor c");
    proxy.stop().await;
}

/// Attack: in a transaction, bind and run portal `d` on a statement that reads nothing sealed,
/// then in a Query close it with SQL's `CLOSE` and let a function of the application open a
/// cursor over the patients under the name `d` (no DECLARE in any text pgseal reads), then run
/// portal `d` again. pgseal describes the portal again before that Execute (something ran since
/// its Bind): the rows carry sealed columns and count, up to the trusted role's 20.
#[tokio::test]
async fn a_cursor_opened_under_a_closed_portals_name_is_counted() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    cluster
        .run_sql(
            &setup.hospital.database,
            &format!(
                "CREATE FUNCTION public.open_patients(name refcursor) RETURNS refcursor \
                 LANGUAGE plpgsql AS $$ BEGIN OPEN name FOR SELECT nir, last_name \
                 FROM public.patients; RETURN name; END $$; \
                 GRANT EXECUTE ON FUNCTION public.open_patients(refcursor) TO {TRUST_ROLE}"
            ),
        )
        .expect("a function opening a cursor");
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client.send(&raw::query("BEGIN")).await;
    client.read_until(b'Z').await;
    send_ok(
        &mut client,
        &[
            parse("plain", "SELECT 1"),
            bind("d", "plain"),
            describe(b'P', "d"),
            execute("d", 0),
            sync(),
        ],
    )
    .await;
    send_ok(
        &mut client,
        &[raw::query("CLOSE d; SELECT public.open_patients('d')")],
    )
    .await;
    client.send_frames(&[execute("d", 0), sync()]).await;
    let messages = client.read_until(b'Z').await;
    assert_within_the_trusted_roles_budget(&messages, "read from a cursor opened as portal d");
    assert_eq!(
        errors(&messages),
        ["53400"],
        "the cursor's 21st row is blocked"
    );
    proxy.stop().await;
}

/// The budget counts protocol rows: an aggregate over a sealed table's unsealed columns sends
/// every patient's quasi-identifiers (id, sex, postal code, city, GP) in one row, charged as
/// one. (Aggregates over sealed columns are refused: see the passing tests.)
#[tokio::test]
#[ignore = "KNOWN LIMIT (finding 4): budgets count result rows; an aggregate of unsealed columns folds many patients into one (README, Limits)"]
async fn an_aggregate_does_not_take_a_whole_table_as_one_row() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let direct = cluster.connect(&setup.hospital.database).await;
    direct
        .batch_execute(
            "UPDATE patients SET sex = 'F', postal_code = '75011', city = 'Paris', \
             gp_name = 'Dr Roux'",
        )
        .await
        .unwrap();
    let proxy = setup.proxy(cluster, |_| {}).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let aggregate = admin
        .simple_query(
            "SELECT string_agg(concat_ws(';', id, sex, postal_code, city, gp_name), ',') \
             FROM patients",
        )
        .await;
    let patients_in_one_row = match &aggregate {
        Ok(messages) => messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.split(',').count()),
                _ => None,
            })
            .unwrap_or(0),
        Err(_) => 0,
    };
    // Had it been charged for what it carries, the hourly cap would be spent.
    let (after, state) = stream(&admin, "SELECT id FROM patients LIMIT 30").await;
    proxy.stop().await;
    assert!(
        patients_in_one_row <= 50 || after == 0,
        "one row carried {patients_in_one_row} patients (hourly cap: 50); {after} more rows \
         followed ({state:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// Findings: unaudited access
// ---------------------------------------------------------------------------------------------

/// Statements on sealed data that send no row are on record too: writes of sealed columns
/// (UPDATE, INSERT, DELETE), reads that match nothing, statements that fail on the server,
/// refused ones (`CREATE TABLE AS`).
#[tokio::test]
async fn statements_on_sealed_data_without_rows_are_audited() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let (proxy, audit) = setup.audited_proxy(cluster).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    let insert = format!(
        "INSERT INTO patients (nir, last_name) VALUES ('{}', 'Inserted')",
        nir("1850575500500")
    );
    let statements = [
        "UPDATE patients SET last_name = 'Renamed' WHERE id = 1",
        insert.as_str(),
        "DELETE FROM patients WHERE last_name = 'Inserted'",
        "SELECT last_name FROM patients WHERE id < 0",
        "SELECT 1/0 FROM patients",
        "CREATE TEMP TABLE t AS SELECT nir, last_name FROM patients",
    ];
    let mut outcomes = Vec::new();
    for sql in statements {
        let sql = format!("/* pgseal_user='dr.martin' */ {sql}");
        outcomes.push(simple(&app, &sql).await);
    }
    proxy.stop().await;
    let events = statement_events(&audit);
    let fingerprints: Vec<String> = events
        .iter()
        .map(|e| e["fingerprint"].as_str().unwrap_or_default().to_string())
        .collect();
    let missing: Vec<&str> = statements
        .iter()
        .copied()
        .filter(|sql| {
            let wanted = pgseal::audit::Fingerprint::of(sql).text;
            !fingerprints.contains(&wanted)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "no audit event for {missing:?} (outcomes {outcomes:?}); events: {fingerprints:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Findings: desynchronisation
// ---------------------------------------------------------------------------------------------

/// Attack on consistency: a budget block ends an Execute with an error, but the server saw
/// none and would run the pipeline's later messages and commit them at Sync, while the client
/// is told its pipeline failed. Handled: the rest of the group waits for the counted result,
/// and after a block it is dropped and the server made to fail the group.
#[tokio::test]
async fn a_budget_block_in_a_pipeline_does_not_hide_a_committed_write() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client
        .send_frames(&[
            parse("", "SELECT nir FROM patients"),
            bind("", ""),
            execute("", 0),
            parse("", "UPDATE patients SET city = 'pipelined' WHERE id = 1"),
            bind("", ""),
            execute("", 0),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    let told = errors(&messages);
    let update_reported = messages
        .iter()
        .any(|m| m.tag == b'C' && m.body.starts_with(b"UPDATE"));
    // The session still works; what did the server do?
    send_ok(&mut client, &[raw::query("SELECT 1")]).await;
    proxy.stop().await;
    let city = direct_one(cluster, &setup, "SELECT city FROM patients WHERE id = 1").await;
    assert_eq!(told, vec!["53400".to_string()], "{messages:?}");
    assert!(
        city != "pipelined" || update_reported,
        "the client was told its pipeline failed ({told:?}, no UPDATE completion) but the \
         server committed the UPDATE"
    );
}

/// The same in one simple Query: a block is an error for the first statement — for
/// PostgreSQL, one that aborts the rest of the string — yet the server would run the second.
/// Handled: a write after a read of a sealed table in one string is refused up front.
#[tokio::test]
async fn a_budget_block_in_a_multi_statement_query_does_not_hide_a_committed_write() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client
        .send(&raw::query(
            "SELECT nir FROM patients; UPDATE patients SET city = 'multi' WHERE id = 2",
        ))
        .await;
    let messages = client.read_until(b'Z').await;
    let told = errors(&messages);
    let status = messages
        .iter()
        .rev()
        .find(|m| m.tag == b'Z')
        .map(|m| m.body[0]);
    proxy.stop().await;
    let city = direct_one(cluster, &setup, "SELECT city FROM patients WHERE id = 2").await;
    // pgseal refuses the string up front (a write after a read of a sealed table), or blocks
    // the read: one error either way.
    assert!(
        told == ["0A000"] || told == ["53400"],
        "{told:?}: {messages:?}"
    );
    let after_error: Vec<char> = messages
        .iter()
        .skip_while(|m| m.tag != b'E')
        .map(|m| m.tag as char)
        .collect();
    assert!(
        city != "multi",
        "an error ended the first statement, yet the second one ran and committed (messages \
         after the error: {after_error:?}, status {status:?})"
    );
}

/// A write whose RETURNING rows are blocked mid-result is rolled back: the client is told it
/// failed, so it must not commit (pgseal holds the Sync until the result ends, then makes the
/// server fail the group).
#[tokio::test]
async fn a_write_blocked_in_its_returning_rows_does_not_commit() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client
        .send_frames(&[
            parse("", "UPDATE patients SET city = 'returned' RETURNING nir"),
            bind("", ""),
            execute("", 0),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    let status = messages.last().map(|m| m.body[0]);
    send_ok(&mut client, &[raw::query("SELECT 1")]).await;
    proxy.stop().await;
    let changed = direct_one(
        cluster,
        &setup,
        "SELECT count(*)::text FROM patients WHERE city = 'returned'",
    )
    .await;
    assert_eq!(errors(&messages), vec!["53400".to_string()], "{messages:?}");
    assert!(data_rows(&messages) <= 20, "{} rows", data_rows(&messages));
    assert_eq!(status, Some(b'I'));
    assert_eq!(
        changed, "0",
        "the client was told the UPDATE failed, yet it committed"
    );
}

/// Reads after a blocked read in one Query string: nothing of them reaches the client (an
/// error ends the string, as PostgreSQL would), and nothing more is charged.
#[tokio::test]
async fn reads_after_a_blocked_read_in_one_query_are_not_sent() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client
        .send(&raw::query(
            "SELECT nir FROM patients; SELECT id FROM patients; SELECT 42",
        ))
        .await;
    let messages = client.read_until(b'Z').await;
    proxy.stop().await;
    assert_eq!(errors(&messages), vec!["53400".to_string()], "{messages:?}");
    let after_error: Vec<char> = messages
        .iter()
        .skip_while(|m| m.tag != b'E')
        .map(|m| m.tag as char)
        .collect();
    assert_eq!(after_error, ['E', 'Z'], "{messages:?}");
    assert!(data_rows(&messages) <= 20, "{} rows", data_rows(&messages));
}

/// A class that counts every row (`counts = "all"`) runs COPY FROM STDIN into a table pgseal
/// does not seal, through the extended protocol (tokio-postgres sends Bind, Execute, Sync, then
/// the rows): the COPY completes (the rest of a pipeline waits for a counted Execute, but not
/// the rows a COPY FROM waits for).
#[tokio::test]
async fn copy_from_into_an_unsealed_table_completes_when_every_row_counts() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    cluster
        .run_sql(
            &setup.hospital.database,
            "CREATE TABLE public.visitors (id int, name text); \
             GRANT ALL ON public.visitors TO ehr_admin",
        )
        .expect("an unsealed table");
    let proxy = all_rows_proxy(cluster, &setup).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let copy = async {
        let sink = admin
            .copy_in("COPY public.visitors (id, name) FROM STDIN")
            .await
            .unwrap();
        pin_mut!(sink);
        use futures_util::SinkExt;
        sink.send(bytes::Bytes::from_static(b"1\tAlice\n2\tBob\n"))
            .await
            .unwrap();
        sink.finish().await.unwrap()
    };
    let copied = tokio::time::timeout(Duration::from_secs(10), copy)
        .await
        .expect("the COPY completes");
    assert_eq!(copied, 2);
    let count: i64 = admin
        .query_one("SELECT count(*) FROM public.visitors", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
    proxy.stop().await;
}

/// A class that counts every row (`counts = "all"`) runs one prepared statement on a table
/// pgseal does not seal, again and again, as an application does: from its second run on the
/// statement takes pgseal's short path for statements that need nothing of it, and every row
/// still counts — the sixth run of ten rows meets the hourly cap of 50 and is blocked, in both
/// protocols' ways of running it (tokio-postgres's Bind–Execute, and with a Describe of the
/// portal as libpq and pgbench send it).
#[tokio::test]
async fn a_plain_statement_run_again_and_again_still_counts_when_every_row_counts() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    ten_visitors(cluster, &setup, &format!("ehr_admin, {TRUST_ROLE}"));
    let proxy = all_rows_proxy(cluster, &setup).await;

    // ehr_admin: 20 rows at once, 5 a second after, 50 an hour.
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let statement = admin
        .prepare("SELECT id, name FROM public.visitors")
        .await
        .unwrap();
    let mut read = 0;
    let mut ended = None;
    for _ in 0..8 {
        match admin.query(&statement, &[]).await {
            Ok(rows) => read += rows.len(),
            Err(e) => {
                ended = e.code().map(|c| c.code().to_string());
                break;
            }
        }
    }
    assert_eq!(read, 50, "every run's rows count, up to the hourly cap");
    assert_eq!(ended.as_deref(), Some("53400"), "the sixth run is blocked");

    // pgseal_trust (in no class: 20 an hour), with a Describe of the portal in every run.
    let mut raw = raw_session(&setup, &proxy).await;
    raw.send_frames(&[
        parse("plain", "SELECT id, name FROM public.visitors"),
        sync(),
    ])
    .await;
    assert!(errors(&raw.read_until(b'Z').await).is_empty());
    let mut rows = 0;
    let mut failed = Vec::new();
    for _ in 0..4 {
        raw.send_frames(&[
            bind("", "plain"),
            describe(b'P', ""),
            execute("", 0),
            sync(),
        ])
        .await;
        let messages = raw.read_until(b'Z').await;
        rows += data_rows(&messages);
        failed.extend(errors(&messages));
    }
    assert_eq!(rows, 20, "every run's rows count, up to the hourly cap");
    assert_eq!(failed, vec!["53400".to_string(), "53400".to_string()]);
    proxy.stop().await;
}

/// The same for simple Queries whose texts differ only by their numbers, as applications
/// inline them: the first is planned in full and its shape remembered as needing nothing of
/// pgseal; the next ones are not planned again, but when every row counts their rows still do.
#[tokio::test]
async fn a_plain_query_text_sent_again_and_again_still_counts_when_every_row_counts() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    ten_visitors(cluster, &setup, "ehr_admin");
    let proxy = all_rows_proxy(cluster, &setup).await;

    // ehr_admin: 20 rows at once, 5 a second after, 50 an hour.
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let mut read = 0;
    let mut ended = None;
    for i in 0..8 {
        let sql = format!(
            "SELECT id, name FROM public.visitors WHERE id <= {}",
            10 + i
        );
        match admin.simple_query(&sql).await {
            Ok(messages) => {
                read += messages
                    .iter()
                    .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                    .count()
            }
            Err(e) => {
                ended = e.code().map(|c| c.code().to_string());
                break;
            }
        }
    }
    assert_eq!(read, 50, "every text's rows count, up to the hourly cap");
    assert_eq!(ended.as_deref(), Some("53400"), "the sixth text is blocked");
    proxy.stop().await;
}

/// `SET pgseal.end_user …; SELECT …` in one Query: the SELECT is charged to the end user the
/// SET names (the application's class requires one).
#[tokio::test]
async fn an_end_user_set_in_the_same_query_counts_for_its_select() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let (proxy, audit) = setup.audited_proxy(cluster).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    let messages = app
        .simple_query("SET pgseal.end_user = 'dr.petit'; SELECT nir FROM patients WHERE id <= 3")
        .await
        .expect("the application's query runs");
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 3);
    // And through the extended protocol, pipelined: the SET, then the SELECT (prepared first,
    // so that each is one Bind/Execute/Sync, sent in this order).
    let set = app
        .prepare("SET pgseal.end_user = 'dr.durand'")
        .await
        .unwrap();
    let select = app
        .prepare("SELECT nir FROM patients WHERE id <= 2")
        .await
        .unwrap();
    let (set, select) = tokio::join!(app.execute(&set, &[]), app.query(&select, &[]));
    set.unwrap();
    assert_eq!(select.expect("the pipelined SELECT runs").len(), 2);
    proxy.stop().await;
    let events = statement_events(&audit);
    let read_by = |user: &str, rows: u64| {
        events
            .iter()
            .any(|e| e["end_user"] == user && e["rows"] == rows)
    };
    let summary: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {}", e["end_user"], e["rows"], e["fingerprint"]))
        .collect();
    assert!(read_by("dr.petit", 3), "{summary:#?}");
    assert!(read_by("dr.durand", 2), "{summary:#?}");
}

// ---------------------------------------------------------------------------------------------
// Findings: the hold path
// ---------------------------------------------------------------------------------------------

/// A held export and the client's cancel: the server has already written its rows (they wait
/// in socket buffers, where PostgreSQL does not act on a cancel), so pgseal itself ends the
/// held statement with 57014 instead of pacing the rest out.
#[tokio::test]
async fn a_cancel_ends_a_throttled_statement_promptly() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let token = admin.cancel_token();
    let rows = admin
        .query_raw("SELECT nir FROM patients", Vec::<String>::new())
        .await
        .unwrap();
    pin_mut!(rows);
    let mut count = 0;
    let mut cancelled = None;
    let mut ended = None;
    while let Some(row) = rows.next().await {
        match row {
            Ok(_) => count += 1,
            Err(e) => {
                ended = e.code().map(|c| c.code().to_string());
                break;
            }
        }
        // Past the burst of 20, rows come at 5 a second: cancel.
        if count == 22 && cancelled.is_none() {
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
            cancelled = Some(Instant::now());
        }
    }
    let after_cancel = cancelled.map(|c| c.elapsed()).unwrap_or_default();
    proxy.stop().await;
    assert!(
        after_cancel < Duration::from_secs(2),
        "the statement went on for {after_cancel:?} after the cancel ({count} rows, ended with \
         {ended:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// Findings: end users
// ---------------------------------------------------------------------------------------------

/// pgseal's end user follows PostgreSQL's: `SET [LOCAL] pgseal.end_user` takes effect when
/// the server confirms it and ends with its transaction or savepoint (extended-protocol SETs
/// included), so no later statement is charged to dr.petit, who asked for nothing.
#[tokio::test]
async fn an_end_user_ends_with_the_transaction_that_set_it() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    // Control: a fresh session names no end user and is refused.
    let fresh = setup.hospital.connect(&proxy, "ehr_app").await;
    assert_eq!(
        simple(&fresh, "SELECT last_name FROM patients WHERE id <= 3").await,
        Err("42501".into())
    );
    let mut leaks = Vec::new();
    let cases: [(&str, &[&str]); 5] = [
        (
            "SET LOCAL in a one-Query transaction",
            &["BEGIN; SET LOCAL pgseal.end_user = 'dr.petit'; COMMIT"],
        ),
        (
            "SET in a one-Query transaction rolled back",
            &["BEGIN; SET pgseal.end_user = 'dr.petit'; ROLLBACK"],
        ),
        (
            "SET in a failed implicit transaction",
            &["SET pgseal.end_user = 'dr.petit'; SELECT 1/0"],
        ),
        (
            "SET LOCAL undone by ROLLBACK TO SAVEPOINT",
            &[
                "BEGIN",
                "SAVEPOINT s",
                "SET LOCAL pgseal.end_user = 'dr.petit'",
                "ROLLBACK TO SAVEPOINT s",
            ],
        ),
        ("RESET through the extended protocol", &[]),
    ];
    for (case, statements) in cases {
        let app = setup.hospital.connect(&proxy, "ehr_app").await;
        for sql in statements {
            let _ = app.batch_execute(sql).await;
        }
        if statements.is_empty() {
            app.batch_execute("SET pgseal.end_user = 'dr.petit'")
                .await
                .unwrap();
            app.execute("RESET pgseal.end_user", &[]).await.unwrap();
        }
        let server = app
            .query_one("SELECT current_setting('pgseal.end_user', true)", &[])
            .await
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .unwrap_or_else(|e| format!("({e})"));
        let read = simple(&app, "SELECT last_name FROM patients WHERE id <= 3").await;
        if read != Err("42501".into()) {
            leaks.push(format!(
                "{case}: PostgreSQL's pgseal.end_user is {server:?}, pgseal let {read:?} through"
            ));
        }
    }
    proxy.stop().await;
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Connects as `role` (password: its name) and returns the connection's task too, so a test
/// can drop the socket without a Terminate.
async fn connect_abortable(
    setup: &BudgetSetup,
    proxy: &TestProxy,
    role: &str,
) -> (Client, tokio::task::JoinHandle<()>) {
    let conninfo = proxy.conninfo(role, role, &setup.hospital.database);
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// Reads `n` rows of `sql`, then drops the connection's socket (the statement is held by its
/// budget by then).
async fn read_then_vanish(setup: &BudgetSetup, proxy: &TestProxy, sql: &str, n: usize) {
    let (admin, connection) = connect_abortable(setup, proxy, "ehr_admin").await;
    {
        let rows = admin.query_raw(sql, Vec::<String>::new()).await.unwrap();
        pin_mut!(rows);
        for _ in 0..n {
            rows.next().await.unwrap().unwrap();
        }
    }
    connection.abort();
    let _ = connection.await;
    drop(admin);
}

/// A statement whose session ends first (the client closes its socket while the rows are
/// held, or reads what it wants and goes) is on record with the rows it was sent.
#[tokio::test]
async fn a_statement_cut_short_by_its_client_is_audited() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let (proxy, audit) = setup.audited_proxy(cluster).await;
    read_then_vanish(&setup, &proxy, "SELECT nir, last_name FROM patients", 25).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.stop().await;
    let events = statement_events(&audit);
    let rows: u64 = events
        .iter()
        .filter(|e| e["role"] == "ehr_admin")
        .map(|e| e["rows"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        rows >= 25,
        "ehr_admin was sent 25 rows; the audit trail records {rows}: {events:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Handled: the hold path
// ---------------------------------------------------------------------------------------------

/// The number of server backends of `role` on the hospital database.
async fn backends(cluster: &Cluster, setup: &BudgetSetup, role: &str) -> i64 {
    let direct = cluster.connect(&setup.hospital.database).await;
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = $2",
            &[&role, &setup.hospital.database],
        )
        .await
        .unwrap()
        .get(0)
}

/// A held session whose client goes away ends, server backend included, and the budget holds
/// for the next session.
#[tokio::test]
async fn a_held_session_ends_when_its_client_goes() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    read_then_vanish(&setup, &proxy, "SELECT nir FROM patients", 22).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while backends(cluster, &setup, "ehr_admin").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the server backend of a held session whose client went is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the first session took still counts: 22 of 50 taken, the rest blocks at 50.
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let (rows, state) = stream(&admin, "SELECT nir FROM patients").await;
    assert!(rows <= 28, "{rows} more rows, {state:?}");
    assert_eq!(state.as_deref(), Some("53400"));
    proxy.stop().await;
}

/// Shutdown ends a held session within the grace period.
#[tokio::test]
async fn shutdown_ends_a_held_session() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let export = tokio::spawn(async move { stream(&admin, "SELECT nir FROM patients").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), proxy.stop())
        .await
        .expect("pgseal stops while a session is held");
    let (rows, state) = tokio::time::timeout(Duration::from_secs(5), export)
        .await
        .expect("the held client is told")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(rows < 50, "{rows}");
    assert!(state.is_some(), "the held export ended without an error");
}

// ---------------------------------------------------------------------------------------------
// Handled: rows that are counted
// ---------------------------------------------------------------------------------------------

/// Runs raw frames as the trusted role (20 rows an hour, block) on a fresh pgseal; returns the
/// rows received and the errors.
async fn raw_run(
    cluster: &Cluster,
    setup: &BudgetSetup,
    frames: &[Vec<u8>],
) -> (usize, Vec<String>) {
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(setup, &proxy).await;
    client.send_frames(frames).await;
    let messages = client.read_until(b'Z').await;
    proxy.stop().await;
    (data_rows(&messages), errors(&messages))
}

#[tokio::test]
async fn extended_protocol_variants_are_counted() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let blocked = vec!["53400".to_string()];
    // Execute with a row limit, again and again (PortalSuspended between).
    let mut frames = vec![parse("", "SELECT nir FROM patients"), bind("p", "")];
    for _ in 0..10 {
        frames.push(execute("p", 10));
    }
    frames.push(sync());
    let (rows, failed) = raw_run(cluster, &setup, &frames).await;
    assert!(rows <= 20, "{rows} rows through a suspended portal");
    assert_eq!(failed, blocked);
    // COPY … TO STDOUT through Execute.
    let (rows, failed) = raw_run(
        cluster,
        &setup,
        &[
            parse("", "COPY patients (nir) TO STDOUT"),
            bind("", ""),
            execute("", 0),
            sync(),
        ],
    )
    .await;
    assert!(rows <= 20, "{rows} rows through COPY TO");
    assert_eq!(failed, blocked);
    // COPY (SELECT …) TO STDOUT through Execute.
    let (rows, failed) = raw_run(
        cluster,
        &setup,
        &[
            parse("", "COPY (SELECT id, nir FROM patients) TO STDOUT"),
            bind("", ""),
            execute("", 0),
            sync(),
        ],
    )
    .await;
    assert!(rows <= 20, "{rows} rows through COPY (SELECT) TO");
    assert_eq!(failed, blocked);
    // A described FETCH of a SQL cursor.
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client
        .send(&raw::query(
            "BEGIN; DECLARE c CURSOR FOR SELECT nir FROM patients",
        ))
        .await;
    let _ = client.read_until(b'Z').await;
    client
        .send_frames(&[
            parse("", "FETCH ALL FROM c"),
            bind("", ""),
            describe(b'P', ""),
            execute("", 0),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert!(data_rows(&messages) <= 20);
    assert_eq!(errors(&messages), blocked);
    proxy.stop().await;
    // A SQL cursor's portal executed directly by name (pgseal never bound it).
    let proxy = setup.proxy(cluster, |_| {}).await;
    let mut client = raw_session(&setup, &proxy).await;
    client
        .send(&raw::query(
            "BEGIN; DECLARE d CURSOR FOR SELECT id FROM patients",
        ))
        .await;
    let _ = client.read_until(b'Z').await;
    client.send_frames(&[execute("d", 0), sync()]).await;
    let messages = client.read_until(b'Z').await;
    assert!(data_rows(&messages) <= 20, "{messages:?}");
    assert_eq!(errors(&messages), blocked);
    proxy.stop().await;
}

#[tokio::test]
async fn simple_protocol_variants_are_counted() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    for sql in [
        // Two statements of one Query share the budget.
        "SELECT nir FROM patients LIMIT 15; SELECT nir FROM patients LIMIT 15",
        // RETURNING.
        "UPDATE patients SET sex = sex RETURNING id, nir",
        "COPY (SELECT nir FROM patients) TO STDOUT",
        "COPY patients (nir) TO STDOUT (FORMAT csv, HEADER)",
        "SELECT p FROM patients p",
        "SELECT id FROM patients",
        "WITH x AS (SELECT id FROM patients) SELECT id FROM x",
    ] {
        let (rows, failed) = raw_run(cluster, &setup, &[raw::query(sql)]).await;
        assert!(rows <= 21, "{rows} rows through {sql}");
        assert_eq!(failed, vec!["53400".to_string()], "{sql}");
    }
}

/// What would pack a sealed table into fewer rows, or carry it out of band, is refused.
#[tokio::test]
async fn aggregates_and_side_channels_over_sealed_columns_are_refused() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    for sql in [
        "SELECT json_agg(p) FROM patients p",
        "SELECT string_agg(p::text, ',') FROM patients p",
        "SELECT array_agg(nir) FROM patients",
        "SELECT ARRAY(SELECT nir FROM patients)",
        "WITH s(x) AS (SELECT nir FROM patients) SELECT string_agg(x, ',') FROM s",
        "SELECT string_agg(v, ',') FROM patients CROSS JOIN LATERAL (VALUES (nir)) l(v)",
        "SELECT pg_notify('leak', nir) FROM patients",
        "SELECT 1/(length(nir) - 15) FROM patients",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT nir FROM patients LIMIT 1); END $$",
        "TABLE patients",
    ] {
        let result = simple(&admin, sql).await;
        assert!(
            matches!(
                result.as_ref().map_err(String::as_str),
                Err("0A000" | "42501")
            ),
            "{sql}: {result:?}"
        );
    }
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Handled: end users
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn end_user_declarations_that_are_not_one_are_ignored() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    let refused = Err("42501".to_string());
    for sql in [
        // A comment inside a string literal is no comment.
        "SELECT '/* pgseal_user=''dr.martin'' */', last_name FROM patients",
        // A line comment is not a sqlcommenter comment.
        "SELECT last_name FROM patients -- pgseal_user='dr.martin'",
        // An empty end user is none.
        "/* pgseal_user='' */ SELECT last_name FROM patients",
        // Another setting's name.
        "/* pgseal_userx='dr.martin' */ SELECT last_name FROM patients",
    ] {
        assert_eq!(simple(&app, sql).await, refused, "{sql}");
    }
    // Two comments naming two end users.
    assert_eq!(
        simple(
            &app,
            "/* pgseal_user='a' */ SELECT last_name FROM patients /* pgseal_user='b' */"
        )
        .await,
        Err("22023".to_string())
    );
    // SET LOCAL outside a transaction does nothing; SET then DISCARD ALL, RESET ALL, RESET.
    for clear in [
        "SET LOCAL pgseal.end_user = 'dr.martin'",
        "SET pgseal.end_user = 'dr.martin'; DISCARD ALL",
        "SET pgseal.end_user = 'dr.martin'; RESET ALL",
        "SELECT set_config('pgseal.end_user', 'dr.martin', false); RESET pgseal.end_user",
        "BEGIN; SET pgseal.end_user = 'dr.martin'",
    ] {
        let _ = app.batch_execute(clear).await;
        if clear.starts_with("BEGIN") {
            app.batch_execute("ROLLBACK").await.unwrap();
        }
        assert_eq!(
            simple(&app, "SELECT last_name FROM patients WHERE id = 1").await,
            refused,
            "after {clear}"
        );
    }
    // set_config is a declaration.
    app.batch_execute("SELECT set_config('pgseal.end_user', 'dr.martin', false)")
        .await
        .unwrap();
    assert_eq!(
        simple(&app, "SELECT last_name FROM patients WHERE id = 1").await,
        Ok(1)
    );
    proxy.stop().await;
}
