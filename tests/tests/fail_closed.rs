//! Fail-closed review of protected sessions: attacks that try to get plaintext into a sealed
//! column, plaintext out to a role that should not see it, or a protected session out of step.
//!
//! Each test is an attack; the findings it once demonstrated are fixed, and it stays as a
//! regression test.
//!
//! Raw-protocol tests log in as the cluster's trusted role (`pgseal_trust`, granted the hospital
//! tables), which these tests add to the application class: only a role that reads a sealed
//! column in clear may write it (or one the policy names a blind writer), and sealing on the
//! way in does not depend on which, so what it manages to store in clear such a role can.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt, pin_mut};
use pgseal_tests::cluster;
use pgseal_tests::cluster::TRUST_ROLE;
use pgseal_tests::hospital::{Hospital, simple_rows};
use pgseal_tests::proxy::TestProxy;
use pgseal_tests::raw::{
    self, RawClient, bind_params, close, copy_data, copy_done, describe, errors, execute, flush,
    parse_typed, sync,
};
use tokio_postgres::Client;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A well-formed NIR from its 13-character body (control key = 97 − body mod 97).
fn nir(body: &str) -> String {
    let number: u64 = body.parse().expect("a numeric NIR body");
    format!("{body}{:02}", 97 - number % 97)
}

/// Everything stored in the hospital tables, read straight from the database (bypassing
/// pgseal), one row per line.
async fn dump(hospital: &Hospital) -> String {
    let direct = cluster().connect(&hospital.database).await;
    let mut out = String::new();
    for table in ["patients", "consultations"] {
        let rows = direct
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap();
        for row in rows {
            out.push_str(&row.get::<_, String>(0));
            out.push('\n');
        }
    }
    out
}

/// Asserts that none of `plaintexts` is stored in clear.
async fn assert_not_stored(hospital: &Hospital, plaintexts: &[&str]) {
    let stored = dump(hospital).await;
    for plaintext in plaintexts {
        assert!(
            !stored.contains(plaintext),
            "{plaintext:?} is stored in clear in a sealed table:\n{stored}"
        );
    }
}

/// Binds `statement` (an INSERT of a NIR and a last name) with `nir` and `name` in text,
/// executes it, and checks that neither reached a sealed table in clear.
async fn insert_and_check(
    client: &mut RawClient,
    hospital: &Hospital,
    statement: &str,
    nir: &str,
    name: &str,
) {
    client
        .send_frames(&[
            bind_params("", statement, &[], &text_params(&[nir, name])),
            execute("", 0),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    assert_not_stored(hospital, &[name, nir]).await;
}

/// The hospital, pgseal in front of it, and `pgseal_trust` granted the tables and made a
/// member of the application class.
async fn setup() -> (Hospital, TestProxy) {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    hospital.grant_trust_role(cluster);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy = dir.path().join("hospital.toml");
    let text = std::fs::read_to_string(&hospital.policy).expect("the hospital policy");
    let members = "roles = [\"ehr_app\"]";
    assert!(text.contains(members));
    std::fs::write(
        &policy,
        text.replace(members, &format!("roles = [\"ehr_app\", \"{TRUST_ROLE}\"]")),
    )
    .expect("write the policy");
    // The policy is read once, at start.
    let proxy = hospital
        .proxy_with(cluster, move |config| config.policy = Some(policy))
        .await;
    drop(dir);
    (hospital, proxy)
}

/// A raw protocol session through pgseal as `pgseal_trust`.
async fn raw_session(hospital: &Hospital, proxy: &TestProxy) -> RawClient {
    let mut client = RawClient::connect(proxy.address()).await;
    client.startup_trusted(TRUST_ROLE, &hospital.database).await;
    client
}

fn text_params<'a>(values: &'a [&'a str]) -> Vec<Option<&'a [u8]>> {
    values.iter().map(|v| Some(v.as_bytes())).collect()
}

async fn sqlstate_of(client: &Client, sql: &str) -> Option<String> {
    match client.simple_query(sql).await {
        Ok(_) => None,
        Err(e) => Some(e.code().map(|c| c.code().to_string()).unwrap_or_default()),
    }
}

// ---------------------------------------------------------------------------------------------
// Findings: plaintext stored in a sealed column
// ---------------------------------------------------------------------------------------------

/// SQL-level `PREPARE … AS INSERT` then `EXECUTE name ('plain')`: the analyzer computes a
/// `SqlPrepared` plan, but the session never uses it, so the EXECUTE arguments go as written.
#[tokio::test]
async fn sql_prepare_then_execute_seals_the_arguments() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let body = nir("1850575000101");
    let result = app
        .simple_query(&format!(
            "PREPARE ins (varchar, text) AS INSERT INTO patients (nir, last_name) VALUES ($1, $2); \
             EXECUTE ins ('{body}', 'LeakPrepareExecute')"
        ))
        .await;
    // Refused or sealed are both fine; stored in clear is not.
    let _ = result;
    assert_not_stored(&hospital, &["LeakPrepareExecute", &body]).await;
    proxy.stop().await;
}

/// A protocol-level Bind may name a statement prepared by SQL `PREPARE` (one namespace on the
/// server). pgseal does not know it, so the Bind passes as sent.
#[tokio::test]
async fn bind_to_a_sql_prepared_statement_seals_or_refuses() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send(&raw::query(
            "PREPARE sqlins (varchar, text) AS INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
        ))
        .await;
    let _ = client.read_until(b'Z').await;
    let body = nir("1850575000202");
    insert_and_check(
        &mut client,
        &hospital,
        "sqlins",
        &body,
        "LeakBindSqlPrepared",
    )
    .await;
    proxy.stop().await;
}

/// Parse of a name that already exists fails on the server (42P05) and the server keeps the
/// old statement, but pgseal has already replaced its plan with the new one.
#[tokio::test]
async fn a_rejected_parse_does_not_replace_the_plan() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed(
                "s",
                "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
                &[],
            ),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert!(errors(&messages).is_empty(), "{messages:?}");
    // Same name, a statement with nothing to seal: the server says 42P05 and keeps the INSERT.
    client
        .send_frames(&[parse_typed("s", "SELECT $1::text, $2::text", &[]), sync()])
        .await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(errors(&messages), vec!["42P05".to_string()]);
    let body = nir("1850575000303");
    insert_and_check(&mut client, &hospital, "s", &body, "LeakParseReuse").await;
    proxy.stop().await;
}

/// A refused Parse of an existing name: pgseal forgets the name's plan, but its poisoned Parse
/// fails on the server with 42P05, which keeps the old statement.
#[tokio::test]
async fn a_refused_parse_of_an_existing_name_keeps_sealing() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed(
                "s",
                "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
                &[],
            ),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    client
        .send_frames(&[
            parse_typed(
                "s",
                "SELECT id FROM patients ORDER BY length(last_name)",
                &[],
            ),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(errors(&messages), vec!["0A000".to_string()]);
    let body = nir("1850575000404");
    insert_and_check(&mut client, &hospital, "s", &body, "LeakRefusedParse").await;
    proxy.stop().await;
}

/// After an error the server skips to Sync, so a Close in the same pipeline never happens;
/// pgseal removed the statement's plan anyway.
#[tokio::test]
async fn a_skipped_close_keeps_sealing() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed(
                "s",
                "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
                &[],
            ),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    client
        .send_frames(&[
            parse_typed("boom", "SELECT 1/0", &[]),
            bind_params("", "boom", &[], &[]),
            execute("", 0),
            close(b'S', "s"),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(errors(&messages), vec!["22012".to_string()]);
    let body = nir("1850575000505");
    insert_and_check(&mut client, &hospital, "s", &body, "LeakSkippedClose").await;
    proxy.stop().await;
}

/// The unnamed statement: a Parse skipped after an error leaves the server's unnamed
/// statement as it was, but pgseal's plan for it is the skipped one.
#[tokio::test]
async fn a_skipped_unnamed_parse_keeps_sealing() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed(
                "",
                "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
                &[],
            ),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    client
        .send_frames(&[
            parse_typed("boom", "SELECT 1/0", &[]),
            bind_params("p", "boom", &[], &[]),
            execute("p", 0),
            parse_typed("", "SELECT $1::text, $2::text", &[]),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(errors(&messages), vec!["22012".to_string()]);
    let body = nir("1850575000606");
    insert_and_check(&mut client, &hospital, "", &body, "LeakSkippedParse").await;
    proxy.stop().await;
}

/// A COPY the server runs from a statement pgseal has lost track of (same root cause as
/// finding 3): its rows pass unsealed.
#[tokio::test]
async fn copy_through_a_reused_statement_name_is_sealed() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed("c", "COPY patients (nir, last_name) FROM STDIN", &[]),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    client
        .send_frames(&[parse_typed("c", "SELECT 1", &[]), sync()])
        .await;
    let _ = client.read_until(b'Z').await;
    let body = nir("1850575000707");
    client
        .send_frames(&[bind_params("", "c", &[], &[]), execute("", 0), flush()])
        .await;
    let _ = client.read_until(b'G').await;
    client
        .send_frames(&[
            copy_data(format!("{body}\tLeakCopyReused\n").as_bytes()),
            copy_done(),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    assert_not_stored(&hospital, &["LeakCopyReused", &body]).await;
    proxy.stop().await;
}

/// An auto-updatable temporary view over a sealed table: the analyzer sees a write to an
/// unsealed relation (`public.v`), PostgreSQL writes through to `public.patients`.
#[tokio::test]
async fn writes_through_a_view_are_sealed_or_refused() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let body = nir("1850575000808");
    let _ = app
        .simple_query("CREATE TEMP VIEW pv AS SELECT nir, last_name FROM patients")
        .await;
    let _ = app
        .simple_query(&format!(
            "INSERT INTO pv (nir, last_name) VALUES ('{body}', 'LeakThroughView')"
        ))
        .await;
    let _ = app
        .execute(
            "INSERT INTO pv (nir, last_name) VALUES ($1, $2)",
            &[&nir("1850575000809"), &"LeakThroughViewParam"],
        )
        .await;
    assert_not_stored(&hospital, &["LeakThroughView", &body]).await;
    proxy.stop().await;
}

/// A DO block whose SQL is built at run time: the token scan finds no sealed table name, and
/// unanalysable text that mentions none is forwarded by default.
#[tokio::test]
async fn dynamic_sql_in_a_do_block_cannot_write_plaintext() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let body = nir("1850575000910");
    let _ = app
        .simple_query(&format!(
            "DO $$ BEGIN EXECUTE format('INSERT INTO %I (nir, %I) VALUES (%L, %L)', \
             'pati' || 'ents', 'last' || '_name', '{body}', 'LeakDoBlock'); END $$"
        ))
        .await;
    // The same through a function in pg_temp (TEMP privilege only).
    let _ = app
        .simple_query(
            "CREATE FUNCTION pg_temp.w(n text, v text) RETURNS void LANGUAGE plpgsql AS \
             $f$ BEGIN EXECUTE 'INSERT INTO pati' || 'ents (nir, last' || '_name) VALUES ($1, $2)' \
             USING n, v; END $f$",
        )
        .await;
    let _ = app
        .execute(
            "SELECT pg_temp.w($1, $2)",
            &[&nir("1850575000911"), &"LeakTempFunction"],
        )
        .await;
    assert_not_stored(&hospital, &["LeakDoBlock", &body, "LeakTempFunction"]).await;
    proxy.stop().await;
}

/// Two COPY … FROM STDIN in one simple Query: pgseal keeps only the last statement's copy plan,
/// and drops it at the first CopyDone, so the second COPY's rows pass as sent.
#[tokio::test]
async fn two_copies_in_one_query_are_both_sealed() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send(&raw::query(
            "COPY patients (nir, last_name) FROM STDIN; COPY patients (nir, last_name) FROM STDIN",
        ))
        .await;
    let first = client.read_until_any(b"GZ").await;
    let (a, b) = (nir("1850575001001"), nir("1850575001002"));
    if first.iter().any(|m| m.tag == b'E') {
        // Refused as a whole: pgseal seals one COPY per Query.
        assert_eq!(
            first
                .iter()
                .find(|m| m.tag == b'E')
                .unwrap()
                .sqlstate()
                .as_deref(),
            Some("0A000")
        );
        assert_not_stored(&hospital, &[&a, &b]).await;
        proxy.stop().await;
        return;
    }
    assert!(first.iter().any(|m| m.tag == b'G'), "{first:?}");
    client
        .send_frames(&[
            copy_data(format!("{a}\tSealedFirstCopy\n").as_bytes()),
            copy_done(),
        ])
        .await;
    let second = client.read_until(b'G').await;
    if second.iter().any(|m| m.tag == b'G') {
        client
            .send_frames(&[
                copy_data(format!("{b}\tLeakSecondCopy\n").as_bytes()),
                copy_done(),
            ])
            .await;
        let _ = client.read_until(b'Z').await;
    }
    assert_not_stored(&hospital, &["SealedFirstCopy", "LeakSecondCopy", &a, &b]).await;
    proxy.stop().await;
}

/// CSV `FORCE_NOT_NULL`: PostgreSQL does not match those columns against the NULL string, so a
/// field equal to it is a value; pgseal takes it for NULL and forwards it as written.
#[tokio::test]
async fn copy_force_not_null_is_sealed() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let body = nir("1850575001103");
    let result = async {
        let sink = app
            .copy_in(
                "COPY patients (nir, last_name) FROM STDIN \
                 WITH (FORMAT csv, NULL 'LeakForceNotNull', FORCE_NOT_NULL (last_name))",
            )
            .await?;
        pin_mut!(sink);
        sink.send(Bytes::from(format!("{body},LeakForceNotNull\n")))
            .await?;
        sink.finish().await
    }
    .await;
    let _ = result;
    assert_not_stored(&hospital, &["LeakForceNotNull"]).await;
    proxy.stop().await;
}

/// CSV with `ESCAPE '\'` and `HEADER`: pgseal's quote tracking does not know an
/// escape-escape pair (`\\`) before a quote, so its "header line" runs over several of
/// PostgreSQL's data lines, and pgseal forwards the header as it is.
#[tokio::test]
async fn copy_csv_escape_quote_tracking_matches_postgres() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let (a, b) = (nir("1850575001204"), nir("1850575001205"));
    let data = format!("\"h\\\\\"\n{a},LeakCsvEscape\n{b},\\\\\"LeakCsvEscape2\"\n");
    let result = async {
        let sink = app
            .copy_in(
                "COPY patients (nir, last_name) FROM STDIN WITH (FORMAT csv, HEADER, ESCAPE '\\')",
            )
            .await?;
        pin_mut!(sink);
        sink.send(Bytes::from(data)).await?;
        sink.finish().await
    }
    .await;
    let _ = result;
    assert_not_stored(&hospital, &["LeakCsvEscape", &a, &b]).await;
    proxy.stop().await;
}

/// `SET standard_conforming_strings = off` is forwarded; PostgreSQL then reads `\'` inside a
/// plain string as an escaped quote, while the analyzer (standard strings) ends the literal
/// there. What the analyzer takes for a comment becomes a value for PostgreSQL.
#[tokio::test]
async fn nonstandard_strings_cannot_smuggle_a_value() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let body = nir("1850575001306");
    let _ = app
        .simple_query("SET standard_conforming_strings = off")
        .await;
    let _ = app
        .simple_query(&format!(
            "INSERT INTO patients (nir, city, last_name) VALUES ('{body}', 'x\\', /* ', 'LeakNonStandard') -- */ 'Decoy')"
        ))
        .await;
    assert_not_stored(&hospital, &["LeakNonStandard"]).await;
    proxy.stop().await;
}

/// Shift_JIS COPY data: PostgreSQL splits fields after converting each line to UTF-8, pgseal
/// splits the raw bytes, where a multi-byte character's second byte can be `\` (0x5C, an
/// escape to pgseal) or the delimiter. The field boundaries then differ, and a value pgseal
/// forwards unsealed (an unsealed column's) lands in a sealed column.
#[tokio::test]
async fn copy_in_a_multibyte_encoding_is_split_as_postgres_splits_it() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send(&raw::query(
            "COPY patients (city, last_name, nir) FROM STDIN WITH (ENCODING 'SJIS', DELIMITER '|')",
        ))
        .await;
    let started = client.read_until_any(b"GZ").await;
    if started.iter().any(|m| m.tag == b'E') {
        // Refused: pgseal seals COPY data in UTF8 only.
        assert_eq!(
            started
                .iter()
                .find(|m| m.tag == b'E')
                .unwrap()
                .sqlstate()
                .as_deref(),
            Some("0A000")
        );
        proxy.stop().await;
        return;
    }
    assert!(started.iter().any(|m| m.tag == b'G'), "{started:?}");
    let body = nir("1850575001407");
    // pgseal: [P 83 5C 7C LeakSjis 83] | [R] | [nir]   (0x5C escapes the first '|')
    // PostgreSQL: [P ソ] | [LeakSjis ポ <sealed R>] | [token]
    let mut row = b"P\x83\x5c|LeakSjis\x83|R|".to_vec();
    row.extend_from_slice(body.as_bytes());
    row.push(b'\n');
    client.send_frames(&[copy_data(&row), copy_done()]).await;
    let messages = client.read_until(b'Z').await;
    let _ = messages;
    assert_not_stored(&hospital, &["LeakSjis"]).await;
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Findings: desynchronisation
// ---------------------------------------------------------------------------------------------

/// After an extended-protocol error the server discards every message up to Sync, simple
/// Queries included. pgseal still queues a response for a Query sent then, and sends its own
/// catalog query there if the catalog is stale: the catalog load "succeeds" with no rows, is
/// stored as the database's current catalog for every session, and the ReadyForQuery the
/// client waits for is swallowed. From then on new sessions see no column origin: ehr_app
/// reads ciphertext (fail closed, but a denial of service any role can cause).
#[tokio::test]
async fn a_query_while_the_server_skips_to_sync_keeps_the_session_in_step() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    app.simple_query(&format!(
        "INSERT INTO patients (nir, last_name) VALUES ('{}', 'Lefèvre')",
        nir("1850575001508")
    ))
    .await
    .unwrap();

    let mut client = raw_session(&hospital, &proxy).await;
    // DDL makes the catalog stale; then an error, with Flush (no Sync yet).
    client
        .send_frames(&[
            parse_typed("", "CREATE TEMP TABLE t_stale (x int)", &[]),
            bind_params("", "", &[], &[]),
            execute("", 0),
            parse_typed("boom", "SELECT 1/0", &[]),
            bind_params("", "boom", &[], &[]),
            execute("", 0),
            flush(),
        ])
        .await;
    let messages = client.read_until(b'E').await;
    assert_eq!(errors(&messages), vec!["22012".to_string()]);
    // The server ignores this Query (it skips to Sync); then Sync.
    client.send(&raw::query("SELECT 1")).await;
    client.send(&sync()).await;
    let after = tokio::time::timeout(Duration::from_secs(5), client.read_until(b'Z')).await;
    let in_step = matches!(&after, Ok(m) if m.iter().any(|m| m.tag == b'Z'));

    // A new ehr_app session must still read plaintext.
    let fresh = hospital.connect(&proxy, "ehr_app").await;
    let read = fresh
        .simple_query("SELECT last_name FROM patients")
        .await
        .unwrap();
    let names = simple_rows(&read);
    assert!(
        in_step && names == vec![vec![Some("Lefèvre".to_string())]],
        "ReadyForQuery received: {in_step}; a new ehr_app session reads {names:?}"
    );
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Findings: reads
// ---------------------------------------------------------------------------------------------

/// ehr_billing is denied the clinical notes. Dynamic SQL copies them into a temporary table,
/// which has no sealed origin: billing then reads the notes' ciphertext (not plaintext — the
/// fail-closed rule holds — but "denied" degrades to "ciphertext").
#[tokio::test]
async fn a_denied_column_stays_denied_through_dynamic_sql() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    app.simple_query(&format!(
        "INSERT INTO patients (nir, last_name) VALUES ('{}', 'Lefèvre')",
        nir("1850575001609")
    ))
    .await
    .unwrap();
    app.simple_query(
        "INSERT INTO consultations (patient_id, seen_at, notes) \
         SELECT id, now(), 'Secret clinical note' FROM patients",
    )
    .await
    .ok();
    app.execute(
        "INSERT INTO consultations (patient_id, seen_at, notes) VALUES ((SELECT min(id) FROM patients), now(), $1)",
        &[&"Secret clinical note"],
    )
    .await
    .unwrap();
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    billing
        .simple_query(
            "DO $$ BEGIN EXECUTE 'CREATE TEMP TABLE c AS SELECT no' || 'tes AS n FROM consul' || 'tations'; END $$",
        )
        .await
        .ok();
    let read = billing.simple_query("SELECT n FROM c").await;
    if let Ok(messages) = read {
        let values = simple_rows(&messages);
        assert!(values.is_empty(), "billing read denied notes: {values:?}");
    }
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Handled correctly: writes
// ---------------------------------------------------------------------------------------------

/// INSERT … SELECT, CTEs, UPDATE … FROM, upserts, literal spellings, schema-qualified and
/// catalog-qualified names: every value bound for a sealed column is sealed or the statement
/// refused.
#[tokio::test]
async fn sql_write_variants_are_sealed_or_refused() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let db = hospital.database.clone();
    let n = |i: u32| nir(&format!("1850575{:03}{:03}", 100 + i, i));
    // Sealed in place (the statement runs, the value is sealed).
    let sealed = [
        format!(
            "INSERT INTO patients (nir, last_name) SELECT '{}', 'HandledSelectLit'",
            n(1)
        ),
        format!(
            "INSERT INTO PUBLIC.Patients (nir, last_name) VALUES ('{}', 'HandledUpper')",
            n(2)
        ),
        format!(
            "INSERT INTO \"public\".\"patients\" (nir, \"last_name\") VALUES ('{}', 'HandledQuoted')",
            n(3)
        ),
        format!(
            "INSERT INTO \"{db}\".public.patients (nir, last_name) VALUES ('{}', 'HandledCatalog')",
            n(4)
        ),
        format!(
            "INSERT INTO patients AS p (nir, last_name) VALUES ('{}', E'Handled\\x45scaped')",
            n(5)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', $$HandledDollar$$)",
            n(6)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', $q$HandledTagged$q$)",
            n(7)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', /* /* nested */ */ 'HandledNested')",
            n(8)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', 'Handled'::text)",
            n(9)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', CAST('HandledCast' AS text))",
            n(10)
        ),
        format!(
            "UPDATE patients SET last_name = 'HandledUpdate' WHERE nir = '{}'",
            n(1)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', 'x') ON CONFLICT (nir) DO UPDATE SET last_name = 'HandledUpsert'",
            n(2)
        ),
        format!(
            "WITH x AS (SELECT 1) INSERT INTO patients (nir, last_name) SELECT '{}', 'HandledCteInsert' FROM x",
            n(11)
        ),
        format!(
            "WITH patients AS (SELECT 1 AS id) UPDATE public.patients SET first_name = 'HandledCteShadow' WHERE nir = '{}'",
            n(3)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', 'HandledA'), ('{}', 'HandledB')",
            n(12),
            n(13)
        ),
        format!(
            "EXPLAIN ANALYZE INSERT INTO patients (nir, last_name) VALUES ('{}', 'HandledExplain')",
            n(14)
        ),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', U&'Handled\\0055nicode')",
            n(15)
        ),
    ];
    for sql in &sealed {
        app.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Refused: values pgseal cannot seal.
    let refused = [
        format!("WITH x AS (SELECT 'RefusedCte' AS v) INSERT INTO patients (nir, last_name) SELECT '{}', v FROM x", n(20)),
        format!("INSERT INTO patients (nir, last_name) SELECT '{}', v FROM (VALUES ('RefusedValues')) s(v)", n(21)),
        "UPDATE patients SET last_name = city".to_string(),
        "UPDATE patients SET last_name = s.v FROM (SELECT 'RefusedUpdateFrom' AS v) s".to_string(),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', 'x') ON CONFLICT (nir) DO UPDATE SET last_name = 'RefusedConcat' || ''",
            n(1)
        ),
        format!("INSERT INTO patients (nir, last_name) VALUES ('{}', lower('RefusedFunction'))", n(22)),
        format!("INSERT INTO patients (nir, last_name) VALUES ('{}', (SELECT 'RefusedSubquery'))", n(23)),
        format!("INSERT INTO patients VALUES (DEFAULT, '{}', 'RefusedNoColumns')", n(24)),
        format!("INSERT INTO patients (nir, last_name) SELECT '{}', 'RefusedA' UNION ALL SELECT '{}', 'RefusedB'", n(25), n(26)),
        "UPDATE patients SET (last_name, first_name) = (SELECT 'RefusedRow', 'RefusedRow2')".to_string(),
        format!(
            "MERGE INTO patients p USING (SELECT '{}' AS n) s ON p.nir = s.n WHEN NOT MATCHED THEN INSERT (nir, last_name) VALUES (s.n, 'RefusedMerge')",
            n(27)
        ),
        format!("DO $$ BEGIN INSERT INTO patients (nir, last_name) VALUES ('{}', 'RefusedDo'); END $$", n(28)),
        "CREATE FUNCTION pg_temp.f() RETURNS void LANGUAGE sql AS $$ INSERT INTO patients (nir, last_name) VALUES ('x', 'RefusedFunctionBody') $$".to_string(),
    ];
    for sql in &refused {
        let state = sqlstate_of(&app, sql).await;
        assert!(state.is_some(), "not refused: {sql}");
    }
    // The session is still usable.
    assert_eq!(
        simple_rows(&app.simple_query("SELECT 1").await.unwrap()),
        vec![vec![Some("1".to_string())]]
    );
    assert_not_stored(
        &hospital,
        &[
            "Handled",
            "Refused",
            &n(1),
            &n(2),
            &n(3),
            &n(4),
            &n(11),
            &n(12),
            &n(14),
        ],
    )
    .await;
    // And the sealed values read back.
    let back = app
        .query_one(
            "SELECT last_name, first_name FROM patients WHERE nir = $1",
            &[&n(3)],
        )
        .await
        .unwrap();
    assert_eq!(back.get::<_, String>(0), "HandledQuoted");
    assert_eq!(back.get::<_, String>(1), "HandledCteShadow");
    let escaped = app
        .query_one("SELECT last_name FROM patients WHERE nir = $1", &[&n(5)])
        .await
        .unwrap();
    assert_eq!(escaped.get::<_, String>(0), "HandledEscaped");
    let unicode = app
        .query_one("SELECT last_name FROM patients WHERE nir = $1", &[&n(15)])
        .await
        .unwrap();
    assert_eq!(unicode.get::<_, String>(0), "HandledUnicode");
    proxy.stop().await;
}

/// Extended protocol: explicit parameter types, binary and mixed formats, named and unnamed
/// statements, portals with row limits: sealed on the way in, opened on the way out.
#[tokio::test]
async fn extended_protocol_variants_are_sealed() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    let (a, b, c) = (
        nir("1850575002001"),
        nir("1850575002002"),
        nir("1850575002003"),
    );
    client
        .send_frames(&[
            // Explicit types (varchar, text), text formats.
            parse_typed(
                "typed",
                "INSERT INTO patients (nir, last_name, city) VALUES ($1, $2, $3)",
                &[1043, 25, 25],
            ),
            bind_params(
                "",
                "typed",
                &[],
                &text_params(&[&a, "HandledTyped", "Paris"]),
            ),
            execute("", 0),
            // Binary text parameters (text's binary form is its bytes), one format for all.
            bind_params(
                "",
                "typed",
                &[1],
                &text_params(&[&b, "HandledBinary", "Lyon"]),
            ),
            execute("", 0),
            // Mixed formats; unnamed statement; a named portal.
            parse_typed(
                "",
                "INSERT INTO patients (city, nir, last_name) VALUES ($1, $2, $3)",
                &[],
            ),
            bind_params(
                "p1",
                "",
                &[0, 1, 0],
                &text_params(&["Nice", &c, "HandledMixed"]),
            ),
            execute("p1", 0),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert!(errors(&messages).is_empty(), "{messages:?}");
    assert_not_stored(&hospital, &["Handled", &a, &b, &c]).await;
    // Row limits and PortalSuspended, inside a transaction.
    client
        .send_frames(&[
            raw::query("BEGIN"),
            parse_typed("sel", "SELECT nir, city FROM patients ORDER BY id", &[]),
            bind_params("cur", "sel", &[], &[]),
            describe(b'P', "cur"),
            raw::frame(b'E', &[b"cur\0".as_slice(), &1i32.to_be_bytes()].concat()),
            raw::frame(b'E', &[b"cur\0".as_slice(), &5i32.to_be_bytes()].concat()),
            sync(),
        ])
        .await;
    let _ = client.read_until(b'Z').await;
    let messages = client.read_until(b'Z').await;
    assert!(errors(&messages).is_empty(), "{messages:?}");
    assert!(messages.iter().any(|m| m.tag == b's'), "no PortalSuspended");
    // Stored as tokens (checked above), opened for this application-class role.
    let values = raw::text_rows(&messages);
    let nirs: Vec<Option<String>> = values.iter().map(|row| row[0].clone()).collect();
    assert_eq!(nirs, vec![Some(a), Some(b), Some(c)]);
    proxy.stop().await;
}

/// A pipeline mixing accepted and refused statements, and a server error: every result goes
/// to the right statement and nothing is rendered with another statement's plan.
#[tokio::test]
async fn pipelines_with_refusals_stay_in_step() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let a = nir("1850575002104");
    app.execute(
        "INSERT INTO patients (nir, last_name, city) VALUES ($1, $2, $3)",
        &[&a, &"Lefèvre", &"Paris"],
    )
    .await
    .unwrap();
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed("ok1", "SELECT last_name, city FROM patients", &[]),
            describe(b'S', "ok1"),
            bind_params("", "ok1", &[], &[]),
            execute("", 0),
            sync(),
            parse_typed(
                "bad",
                "SELECT id FROM patients ORDER BY length(last_name)",
                &[],
            ),
            bind_params("", "bad", &[], &[]),
            execute("", 0),
            sync(),
            parse_typed("ok2", "SELECT city FROM patients WHERE nir = $1", &[]),
            bind_params("", "ok2", &[], &text_params(&["not a nir"])),
            execute("", 0),
            sync(),
            bind_params("", "ok2", &[], &text_params(&[&a])),
            execute("", 0),
            sync(),
            bind_params("", "ok1", &[], &[]),
            execute("", 0),
            sync(),
        ])
        .await;
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(client.read_until(b'Z').await);
    }
    assert!(errors(&results[0]).is_empty());
    assert_eq!(raw::text_rows(&results[0]).len(), 1);
    assert_eq!(
        raw::text_rows(&results[0])[0][0].as_deref(),
        Some("Lefèvre")
    );
    assert_eq!(errors(&results[1]), vec!["0A000".to_string()]);
    // A value that cannot be sealed fails its Bind; the statement stays usable.
    assert_eq!(errors(&results[2]).len(), 1, "{:?}", errors(&results[2]));
    assert!(raw::text_rows(&results[2]).is_empty());
    assert!(errors(&results[3]).is_empty());
    assert_eq!(
        raw::text_rows(&results[3]),
        vec![vec![Some("Paris".to_string())]]
    );
    assert_eq!(raw::text_rows(&results[4]).len(), 1);
    assert_eq!(raw::text_rows(&results[4])[0][1].as_deref(), Some("Paris"));
    proxy.stop().await;
}

/// A fast-path function call is refused; the session goes on.
#[tokio::test]
async fn fast_path_calls_are_refused() {
    let (hospital, proxy) = setup().await;
    let mut client = raw_session(&hospital, &proxy).await;
    // FunctionCall: oid 1 (whatever), no args, text result.
    let body = [
        1i32.to_be_bytes().as_slice(),
        &0i16.to_be_bytes(),
        &0i16.to_be_bytes(),
        &0i16.to_be_bytes(),
    ]
    .concat();
    client.send(&raw::frame(b'F', &body)).await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(errors(&messages), vec!["0A000".to_string()]);
    client.send(&raw::query("SELECT 42")).await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(
        raw::text_rows(&messages),
        vec![vec![Some("42".to_string())]]
    );
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Handled correctly: COPY
// ---------------------------------------------------------------------------------------------

/// COPY rows split across CopyData messages (mid-field, mid-escape), CRLF line ends, `\.`,
/// CSV quoted newlines, HEADER, legacy options, and a COPY started through the extended
/// protocol with Flush: sealed. COPY binary: refused.
#[tokio::test]
async fn copy_variants_are_sealed() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let n = |i: u32| nir(&format!("1850575{:03}{:03}", 100 + i, i));
    {
        let sink = app
            .copy_in("COPY patients (nir, last_name, city) FROM STDIN")
            .await
            .unwrap();
        pin_mut!(sink);
        let data = format!(
            "{}\tCopySplit\\tTab\tParis\r\n{}\tCopyCrlf\tLyon\r\n",
            n(1),
            n(2)
        );
        // Byte by byte: every row is split everywhere.
        for byte in data.as_bytes() {
            sink.send(Bytes::copy_from_slice(&[*byte])).await.unwrap();
        }
        assert_eq!(sink.finish().await.unwrap(), 2);
    }
    {
        let sink = app
            .copy_in("COPY patients (last_name, nir) FROM STDIN WITH CSV HEADER QUOTE '\"'")
            .await
            .unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from(format!(
            "last_name,nir\n\"CopyCsv\nMultiline, \"\"quoted\"\"\",{}\n",
            n(3)
        )))
        .await
        .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 1);
    }
    {
        let sink = app
            .copy_in("COPY patients (nir, last_name) FROM STDIN WITH (FORMAT csv, DELIMITER ';', NULL 'NUL')")
            .await
            .unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from(format!(
            "{};CopySemicolon\n{};NUL\n",
            n(4),
            n(5)
        )))
        .await
        .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2);
    }
    let binary = app
        .copy_in::<_, Bytes>("COPY patients (nir, last_name) FROM STDIN WITH (FORMAT binary)")
        .await;
    assert!(
        binary.is_err(),
        "COPY binary into a sealed table was accepted"
    );

    // Extended protocol, Flush between Execute and the data.
    let mut client = raw_session(&hospital, &proxy).await;
    client
        .send_frames(&[
            parse_typed("", "COPY patients (nir, last_name) FROM STDIN", &[]),
            bind_params("", "", &[], &[]),
            execute("", 0),
            flush(),
        ])
        .await;
    let started = client.read_until(b'G').await;
    assert!(started.iter().any(|m| m.tag == b'G'), "{started:?}");
    client
        .send_frames(&[
            copy_data(format!("{}\tCopyExt", n(6)).as_bytes()),
            flush(),
            sync(),
            copy_data(b"ended\n"),
            copy_done(),
            sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    assert!(errors(&messages).is_empty(), "{messages:?}");

    assert_not_stored(&hospital, &["Copy", &n(1), &n(2), &n(3), &n(4), &n(6)]).await;
    let back = app
        .query_one("SELECT last_name FROM patients WHERE nir = $1", &[&n(3)])
        .await
        .unwrap();
    assert_eq!(back.get::<_, String>(0), "CopyCsv\nMultiline, \"quoted\"");
    let back = app
        .query_one("SELECT last_name FROM patients WHERE nir = $1", &[&n(6)])
        .await
        .unwrap();
    assert_eq!(back.get::<_, String>(0), "CopyExtended");
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Handled correctly: reads
// ---------------------------------------------------------------------------------------------

async fn seed_one(hospital: &Hospital, proxy: &TestProxy) -> String {
    let app = hospital.connect(proxy, "ehr_app").await;
    let a = nir("1850575003001");
    let id: i64 = app
        .query_one(
            "INSERT INTO patients (nir, last_name, first_name, email) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&a, &"Lefèvre", &"Éloïse", &"eloise.lefevre@exemple.fr"],
        )
        .await
        .unwrap()
        .get(0);
    app.execute(
        "INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes, prescription) VALUES ($1, now(), $2, $3, $4)",
        &[&id, &"E11.9", &"Secret clinical note", &"Metformine"],
    )
    .await
    .unwrap();
    a
}

/// ehr_billing: notes and prescriptions refused however they are asked for; names masked
/// through cursors, sub-selects, aliases and COPY.
#[tokio::test]
async fn billing_never_sees_notes_or_unmasked_names() {
    let (hospital, proxy) = setup().await;
    let a = seed_one(&hospital, &proxy).await;
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    for sql in [
        "SELECT notes FROM consultations",
        "SELECT * FROM consultations",
        "SELECT c FROM consultations c",
        "SELECT x FROM (SELECT notes AS x FROM consultations) s",
        "SELECT (SELECT notes FROM consultations LIMIT 1)",
        "WITH c AS (SELECT * FROM consultations) SELECT 1 FROM c",
        "SELECT 1 FROM consultations WHERE notes IS NOT NULL",
        "COPY consultations TO STDOUT",
        "COPY consultations (prescription) TO STDOUT",
        "COPY (SELECT notes FROM consultations) TO STDOUT",
        "CREATE TEMP TABLE c1 AS SELECT notes FROM consultations",
        "CREATE TEMP VIEW v1 AS SELECT * FROM consultations",
        "DECLARE cur CURSOR WITH HOLD FOR SELECT notes FROM consultations",
        "TABLE consultations",
        "SELECT count(notes) FROM consultations",
        "SELECT consultations.* FROM consultations",
    ] {
        let state = sqlstate_of(&billing, sql).await;
        assert!(state.is_some(), "billing was not refused: {sql}");
    }
    // Masked, however it is read.
    let mut seen = Vec::new();
    for sql in [
        "SELECT last_name AS x, email AS y FROM patients",
        "SELECT s.a, s.b FROM (SELECT last_name AS a, email AS b FROM patients) s",
        "WITH p AS (SELECT last_name, email FROM patients) SELECT * FROM p",
    ] {
        seen.extend(
            simple_rows(&billing.simple_query(sql).await.unwrap())
                .into_iter()
                .flatten()
                .flatten(),
        );
    }
    billing
        .simple_query("BEGIN; DECLARE cur CURSOR FOR SELECT last_name, email, nir FROM patients")
        .await
        .unwrap();
    seen.extend(
        simple_rows(&billing.simple_query("FETCH ALL FROM cur").await.unwrap())
            .into_iter()
            .flatten()
            .flatten(),
    );
    billing.simple_query("COMMIT").await.unwrap();
    let out = billing
        .copy_out("COPY patients (last_name, email, nir) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    seen.push(String::from_utf8(chunks.concat()).unwrap());
    let all = seen.join("|");
    assert!(all.contains("L."), "{all}");
    for plaintext in ["Lefèvre", "eloise.lefevre", &a, "Secret", "Metformine"] {
        assert!(!all.contains(plaintext), "billing saw {plaintext}: {all}");
    }
    proxy.stop().await;
}

/// ehr_admin: ciphertext only, through RETURNING, cursors, aliases, COPY out, and after
/// writing through pgseal.
#[tokio::test]
async fn admin_sees_only_ciphertext() {
    let (hospital, proxy) = setup().await;
    let a = seed_one(&hospital, &proxy).await;
    let admin = hospital.connect(&proxy, "ehr_admin").await;
    let mut seen = Vec::new();
    for sql in [
        "SELECT last_name AS x, notes FROM patients JOIN consultations ON patient_id = patients.id",
        "UPDATE patients SET city = 'Paris' RETURNING *",
        "SELECT * FROM patients",
        "SELECT (SELECT notes FROM consultations LIMIT 1)",
        "BEGIN",
        "DECLARE cur CURSOR FOR SELECT nir, last_name FROM patients",
        "FETCH ALL FROM cur",
        "COMMIT",
    ] {
        seen.extend(
            simple_rows(&admin.simple_query(sql).await.unwrap())
                .into_iter()
                .flatten()
                .flatten(),
        );
    }
    for sql in [
        "COPY patients (nir, last_name, first_name, email) TO STDOUT",
        "COPY (SELECT * FROM consultations) TO STDOUT",
    ] {
        let out = admin.copy_out(sql).await.unwrap();
        let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
        seen.push(String::from_utf8(chunks.concat()).unwrap());
    }
    let all = seen.join("|");
    assert!(all.contains("pgs1:"), "{all}");
    for plaintext in [
        "Lefèvre",
        "Éloïse",
        "eloise.lefevre",
        &a,
        "Secret",
        "Metformine",
        "E11.9",
    ] {
        assert!(!all.contains(plaintext), "ehr_admin saw {plaintext}: {all}");
    }
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Handled correctly: errors, logs and robustness
// ---------------------------------------------------------------------------------------------

/// Refusals and sealing errors never echo the value.
#[tokio::test]
async fn errors_do_not_echo_plaintext() {
    let (hospital, proxy) = setup().await;
    let a = seed_one(&hospital, &proxy).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let cases = [
        "INSERT INTO patients (nir, last_name) VALUES ('EchoSecretNir', 'EchoSecretName')"
            .to_string(),
        "INSERT INTO patients (nir, birth_date) VALUES ('x', 'EchoSecretDate')".to_string(),
        "SELECT id FROM patients WHERE last_name SIMILAR TO 'EchoSecret%'".to_string(),
        format!("INSERT INTO patients (nir, last_name) VALUES ('{a}', 'EchoSecretDuplicate')"),
    ];
    for sql in &cases {
        let error = app.simple_query(sql).await.unwrap_err();
        let db = error.as_db_error().expect("a server-side error");
        let text = format!("{} {:?} {:?}", db.message(), db.detail(), db.hint());
        assert!(!text.contains("EchoSecret"), "{sql}: {text}");
        assert!(!text.contains(&a), "{sql}: {text}");
    }
    proxy.stop().await;
}

/// Malformed frames end the session (08P01) without a panic or a leak, and pgseal serves the
/// next client.
#[tokio::test]
async fn malformed_frames_end_the_session_only() {
    let (hospital, proxy) = setup().await;
    let cases: Vec<Vec<u8>> = vec![
        // Bind claiming 1000 params with none.
        raw::frame(
            b'B',
            &[
                b"\0\0".as_slice(),
                &0i16.to_be_bytes(),
                &1000i16.to_be_bytes(),
            ]
            .concat(),
        ),
        // Bind with a negative count.
        raw::frame(b'B', &[b"\0\0".as_slice(), &(-5i16).to_be_bytes()].concat()),
        // Bind with a value length past the frame.
        raw::frame(
            b'B',
            &[
                b"\0\0".as_slice(),
                &0i16.to_be_bytes(),
                &1i16.to_be_bytes(),
                &i32::MAX.to_be_bytes(),
            ]
            .concat(),
        ),
        // Parse without its terminators.
        raw::frame(b'P', b"name"),
        // Parse with 32767 parameter types announced.
        raw::frame(
            b'P',
            &[b"\0SELECT 1\0".as_slice(), &i16::MAX.to_be_bytes()].concat(),
        ),
        // Describe of an unknown kind.
        raw::frame(b'D', b"X\0"),
        // Execute without its row limit.
        raw::frame(b'E', b"\0"),
        // A Query that is not UTF-8, then one without its NUL.
        raw::frame(b'Q', b"SELECT '\xff\xfe' FROM patients\0"),
        raw::frame(b'Q', b"SELECT 1"),
    ];
    for case in cases {
        let mut client = raw_session(&hospital, &proxy).await;
        client.send(&case).await;
        let messages = client.read_until(b'Z').await;
        // Either an error and the session goes on, or a FATAL and it ends.
        assert!(
            messages.iter().any(|m| m.tag == b'E'),
            "{case:?}: {messages:?}"
        );
    }
    // pgseal still serves.
    let app = hospital.connect(&proxy, "ehr_app").await;
    app.simple_query("SELECT 1").await.unwrap();
    proxy.stop().await;
}

/// An over-long literal bound for a sealed column is sealed (or refused), not truncated into
/// clear text.
#[tokio::test]
async fn over_long_literals_are_sealed() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let long = format!("LongLiteral{}", "x".repeat(200_000));
    let _ = app
        .simple_query(&format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', '{long}')",
            nir("1850575004001")
        ))
        .await;
    let _ = app
        .execute(
            "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
            &[&nir("1850575004002"), &long],
        )
        .await;
    assert_not_stored(&hospital, &["LongLiteral"]).await;
    proxy.stop().await;
}

/// COPY text data with CRLF line ends and the `\.` end marker: pgseal rewrites `\.\r\n` as
/// `\.\n`, which PostgreSQL rejects (22P04 "end-of-copy marker does not match previous newline
/// style"). Fails closed, but a legal COPY (a Windows file through psql) breaks.
#[tokio::test]
async fn copy_crlf_with_end_marker_is_accepted() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let sink = app
        .copy_in("COPY patients (nir, last_name) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from(format!(
        "{}\tCopyCrlfMarker\r\n\\.\r\n",
        nir("1850575005001")
    )))
    .await
    .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    assert_not_stored(&hospital, &["CopyCrlfMarker"]).await;
    proxy.stop().await;
}

/// The catalog (column order of sealed tables) is refreshed only after DDL pgseal sees. A
/// migration run straight against PostgreSQL (drop a column, add one back) leaves it stale, and
/// `COPY table FROM STDIN` without a column list maps fields by the stale order: a sealed
/// column's value lands in a position pgseal thinks unsealed.
#[tokio::test]
async fn copy_without_a_column_list_follows_the_real_column_order() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    app.simple_query("SELECT count(*) FROM patients")
        .await
        .unwrap();
    // A migration run directly (the owner's usual way): sex moves to the end.
    cluster()
        .run_sql(
            &hospital.database,
            "ALTER TABLE patients DROP COLUMN sex; ALTER TABLE patients ADD COLUMN sex char(1)",
        )
        .unwrap();
    let result = async {
        let sink = app.copy_in("COPY patients FROM STDIN").await?;
        pin_mut!(sink);
        sink.send(Bytes::from(format!(
            "5000\t{}\tStale\tFirst\t1985-05-17\tleak.stale@exemple.fr\t0612345678\t1 rue X\t\\N\tParis\tDr\tF\n",
            nir("1850575006001")
        )))
        .await?;
        sink.finish().await
    }
    .await;
    let _ = result;
    assert_not_stored(&hospital, &["leak.stale@exemple.fr"]).await;
    proxy.stop().await;
}

/// A Unicode-escaped identifier (`U&"p\0061tients"`): sqlparser cannot parse the statement, and
/// the token scan of unparseable text does not decode the escapes, so it finds no sealed table
/// and the text is forwarded (the default `unanalysable = forward`).
#[tokio::test]
async fn unicode_escaped_identifiers_cannot_hide_a_sealed_table() {
    let (hospital, proxy) = setup().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let body = nir("1850575007001");
    let _ = app
        .simple_query(&format!(
            "INSERT INTO U&\"p\\0061tients\" (nir, U&\"l\\0061st_name\") VALUES ('{body}', 'LeakUnicodeIdent')"
        ))
        .await;
    assert_not_stored(&hospital, &["LeakUnicodeIdent", &body]).await;
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Handled correctly: a server out of step
// ---------------------------------------------------------------------------------------------

/// A relay between pgseal and PostgreSQL that adds one value to every DataRow whose first value
/// is `marker`: what a server (or anything on the way) that breaks the protocol would send.
/// What pgseal sends passes as it is.
async fn stretching_relay(target: String, marker: &'static [u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((proxy_side, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server_side) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut from_proxy, mut to_proxy) = proxy_side.into_split();
                let (mut from_server, mut to_server) = server_side.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_proxy, &mut to_server).await;
                });
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    let Ok(n @ 1..) = from_server.read(&mut chunk).await else {
                        return;
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut out = Vec::new();
                    while buf.len() >= 5 {
                        let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                        if buf.len() < 1 + len {
                            break;
                        }
                        let mut frame: Vec<u8> = buf.drain(..1 + len).collect();
                        let first = (frame[0] == b'D' && frame.len() >= 11)
                            .then(|| i32::from_be_bytes(frame[7..11].try_into().unwrap()))
                            .and_then(|n| usize::try_from(n).ok())
                            .and_then(|n| frame.get(11..11 + n));
                        if first == Some(marker) {
                            let count = i16::from_be_bytes([frame[5], frame[6]]) + 1;
                            frame[5..7].copy_from_slice(&count.to_be_bytes());
                            frame.extend_from_slice(&5i32.to_be_bytes());
                            frame.extend_from_slice(b"extra");
                            let len = (frame.len() - 1) as u32;
                            frame[1..5].copy_from_slice(&len.to_be_bytes());
                        }
                        out.extend_from_slice(&frame);
                    }
                    if to_proxy.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A DataRow with more values than its RowDescription announced cannot be matched to the
/// columns' plans: pgseal fails the statement (08P01) instead of passing or opening values
/// by the wrong column, and the session goes on.
#[tokio::test]
async fn a_row_that_does_not_match_its_description_fails_its_statement() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let port = stretching_relay(cluster.address(), b"stretch me").await;
    let proxy = hospital
        .proxy_with(cluster, |config| {
            config.upstream = pgseal::config::UpstreamHosts::one(pgseal::config::UpstreamAddress {
                host: "127.0.0.1".into(),
                port,
            })
        })
        .await;
    seed_one(&hospital, &proxy).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    // (Results with no sealed column are not inspected: their rows pass as the server sent
    // them, as they would without pgseal.)
    let error = app
        .query("SELECT 'stretch me'::text, last_name FROM patients", &[])
        .await
        .unwrap_err();
    let db_error = error.as_db_error().unwrap_or_else(|| panic!("{error:?}"));
    assert_eq!(db_error.code().code(), "08P01", "{db_error:?}");
    assert!(
        db_error
            .message()
            .contains("has 3 values where its description announced 2"),
        "{}",
        db_error.message()
    );
    let row = app
        .query_one("SELECT 'unchanged'::text, last_name FROM patients", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "Lefèvre");
    proxy.stop().await;
}

/// pgseal remembers simple-protocol statements that touch no sealed table by their shape (the
/// text with its numbers masked) and forwards later ones of that shape without analysing them.
/// The owner then puts a view over `patients` in place of the unsealed table such a statement
/// wrote: a write of the remembered shape must now be refused as a write through a view over a
/// sealed table, not forwarded from memory. Reads of the same shape keep each role's view.
#[tokio::test]
async fn a_remembered_statement_shape_never_writes_through_a_new_view() {
    let (hospital, proxy) = setup().await;
    let database = &hospital.database;
    cluster()
        .run_sql(
            database,
            "CREATE TABLE shaped (id bigint, last_name text); \
             INSERT INTO shaped VALUES (1, 'x'); GRANT ALL ON shaped TO ehr_app",
        )
        .expect("the unsealed table");
    let app = hospital.connect(&proxy, "ehr_app").await;
    app.simple_query(&format!(
        "INSERT INTO patients (nir, last_name) VALUES ('{}', 'Shaped')",
        nir("1850575001101")
    ))
    .await
    .expect("a patient");
    let write = |n: u32| format!("UPDATE shaped SET last_name = 'LeakShaped' WHERE id > {n}");
    // The first is planned in full, the next ones come from its shape.
    for n in [1_000_000, 999, 7] {
        app.simple_query(&write(n))
            .await
            .expect("a write to an unsealed table");
    }
    cluster()
        .run_sql(
            database,
            "ALTER TABLE shaped RENAME TO shaped_before; \
             CREATE VIEW shaped AS SELECT id, last_name FROM patients; \
             GRANT ALL ON shaped TO ehr_app",
        )
        .expect("the view");
    // A schema change through pgseal: the database's catalog is loaded again.
    app.simple_query("CREATE TEMP TABLE shaped_bump (x int)")
        .await
        .expect("a temporary table");
    assert_eq!(sqlstate_of(&app, &write(0)).await.as_deref(), Some("0A000"));
    assert_not_stored(&hospital, &["LeakShaped"]).await;

    // Reads of one shape on a sealed table: each is planned, each gets the role's view.
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    for n in [100, 1000, 10] {
        let read =
            format!("SELECT last_name FROM patients WHERE id < {n} AND last_name IS NOT NULL");
        let clear = simple_rows(&app.simple_query(&read).await.unwrap());
        let masked = simple_rows(&billing.simple_query(&read).await.unwrap());
        assert!(
            clear.iter().any(|row| row[0].as_deref() == Some("Shaped")),
            "{clear:?}"
        );
        assert_eq!(clear.len(), masked.len());
        let masked: Vec<&str> = masked.iter().filter_map(|row| row[0].as_deref()).collect();
        assert!(
            masked.contains(&"S.") && !masked.contains(&"Shaped"),
            "{masked:?}"
        );
    }
    proxy.stop().await;
}
