//! SQL cursors over statements pgseal evaluates (issue 14), end to end on the hospital
//! example: what stays refused and why, the server's own errors for closed and rolled-back
//! cursors, the caps, the roles that may not filter or sort on a column, and export budgets
//! charged once per row fetched. The row-for-row comparison with a plaintext twin, in both
//! protocols, is `evaluation_differential.rs` (its cursor variants); psycopg2, psycopg 3 and
//! SQLAlchemy's server-side cursors are in `orm.rs`.

use futures_util::{SinkExt, pin_mut};
use pgseal_tests::budgets::BudgetSetup;
use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use pgseal_tests::raw;
use tokio_postgres::{Client, SimpleQueryMessage};

fn code(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

/// The rows of a simple-protocol statement (first column) and its command tag's count.
async fn fetch(client: &Client, sql: &str) -> Result<(Vec<String>, u64), tokio_postgres::Error> {
    let mut rows = Vec::new();
    let mut count = None;
    for m in client.simple_query(sql).await? {
        match m {
            SimpleQueryMessage::Row(row) => rows.push(row.get(0).unwrap_or("NULL").to_string()),
            SimpleQueryMessage::CommandComplete(n) => count = Some(n),
            _ => {}
        }
    }
    Ok((rows, count.expect("a command tag")))
}

/// The SQLSTATE a statement fails with (it must fail).
async fn fails(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => code(&e).unwrap_or("none").to_string(),
    }
}

/// Adds `count` patients named after `name(i)`, sealed on the way in through pgseal's COPY.
pub(crate) async fn seed(app: &Client, count: u64, name: impl Fn(u64) -> String) {
    let sink = app
        .copy_in("COPY patients (nir, last_name) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    let mut rows = String::new();
    for i in 0..count {
        let body = format!("1850575{:03}{:03}", 100 + i / 999 % 800, 1 + i % 999);
        let number: u64 = body.parse().unwrap();
        rows.push_str(&format!("{body}{:02}\t{}\n", 97 - number % 97, name(i)));
    }
    sink.send(bytes::Bytes::from(rows)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), count);
}

/// Names whose order the collation decides (accents, case, hyphens).
const NAMES: &[&str] = &[
    "Lefèvre", "Lefebvre", "le Gall", "Le-Gall", "Côté", "Cote", "Zoé", "zola",
];

const SORTED: &str = "SELECT id FROM patients ORDER BY last_name DESC, id";

#[tokio::test]
async fn evaluated_cursors_read_forward_and_the_server_keeps_its_errors() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    seed(&app, 24, |i| NAMES[i as usize % NAMES.len()].to_string()).await;
    let whole = fetch(&app, SORTED).await.unwrap().0;
    assert_eq!(whole.len(), 24, "{whole:?}");

    // Read in chunks, the concatenation is the whole sorted result; tags say FETCH n.
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c NO SCROLL CURSOR FOR {SORTED}"))
        .await
        .unwrap();
    let (first, n) = fetch(&app, "FETCH FORWARD 1 FROM c").await.unwrap();
    assert_eq!((first.as_slice(), n), (&whole[..1], 1));
    let (next, n) = fetch(&app, "FETCH NEXT FROM c").await.unwrap();
    assert_eq!((next.as_slice(), n), (&whole[1..2], 1));
    // What only the server's cursor could do is refused, clearly, and the transaction goes on
    // only after a rollback (as after any error).
    for (sql, names) in [
        ("MOVE 1 FROM c", "MOVE"),
        ("FETCH BACKWARD 1 FROM c", "BACKWARD"),
        ("FETCH PRIOR FROM c", "PRIOR"),
        ("FETCH ABSOLUTE 1 FROM c", "ABSOLUTE"),
        ("FETCH -1 FROM c", "negative"),
    ] {
        app.batch_execute("SAVEPOINT s").await.unwrap();
        let error = app.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&error), Some("0A000"), "{sql}: {error}");
        let message = error.as_db_error().unwrap().message().to_string();
        assert!(
            message.contains(names) && message.contains("cursor c"),
            "{sql}: {message}"
        );
        app.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    }
    let (rest, n) = fetch(&app, "FETCH ALL FROM c").await.unwrap();
    assert_eq!(
        (rest.as_slice(), n as usize),
        (&whole[2..], whole.len() - 2)
    );
    assert_eq!(
        fetch(&app, "FETCH 7 FROM c").await.unwrap(),
        (Vec::new(), 0)
    );
    // Closed, the cursor is the server's error; so is one never declared.
    app.batch_execute("CLOSE c").await.unwrap();
    assert_eq!(fails(&app, "FETCH 1 FROM c").await, "34000");
    app.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(fails(&app, "FETCH 1 FROM nowhere").await, "34000");

    // A cursor rolled back with its transaction is gone; a WITH HOLD one outlives a commit.
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c CURSOR FOR {SORTED}"))
        .await
        .unwrap();
    assert_eq!(fetch(&app, "FETCH 1 FROM c").await.unwrap().1, 1);
    app.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(fails(&app, "FETCH 1 FROM c").await, "34000");
    app.batch_execute(&format!("DECLARE h CURSOR WITH HOLD FOR {SORTED}"))
        .await
        .unwrap();
    assert_eq!(fetch(&app, "FETCH 2 FROM h").await.unwrap().0, whole[..2]);
    app.batch_execute("BEGIN").await.unwrap();
    assert_eq!(fetch(&app, "FETCH 1 FROM h").await.unwrap().0, whole[2..3]);
    app.batch_execute("COMMIT").await.unwrap();
    assert_eq!(fetch(&app, "FETCH ALL FROM h").await.unwrap().0, whole[3..]);
    // DISCARD ALL closes it, here and on the server.
    app.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(fails(&app, "FETCH 1 FROM h").await, "34000");

    // SCROLL is refused on an evaluated cursor; a cursor pgseal does not evaluate is the
    // server's to scroll, as before.
    assert_eq!(
        fails(
            &app,
            &format!("DECLARE s SCROLL CURSOR WITH HOLD FOR {SORTED}")
        )
        .await,
        "0A000"
    );
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute("DECLARE p SCROLL CURSOR FOR SELECT id FROM patients ORDER BY id")
        .await
        .unwrap();
    let (all, _) = fetch(&app, "FETCH ALL FROM p").await.unwrap();
    assert_eq!(all.len(), whole.len());
    assert_eq!(fetch(&app, "FETCH BACKWARD 1 FROM p").await.unwrap().1, 1);
    app.batch_execute("COMMIT").await.unwrap();

    // Bad input on an evaluated cursor is refused, and the session goes
    // on.
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c CURSOR FOR {SORTED}"))
        .await
        .unwrap();
    for (sql, expected) in [
        (
            "FETCH 99999999999999999999999999999999999999999 FROM c",
            "0A000",
        ),
        ("FETCH FORWARD x FROM c", "0A000"),
        ("FETCH 0 FROM c", "0A000"),
        ("FETCH 1 FROM c; SELECT 1", "0A000"),
        // Not a FETCH pgseal reads: unanalysable, refused as before.
        ("FETCH 2 FROM c extra", "0A000"),
    ] {
        app.batch_execute("SAVEPOINT s").await.unwrap();
        assert_eq!(fails(&app, sql).await, expected, "{sql}");
        app.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    }
    // A FETCH prepared (extended protocol) for one cursor, run after the name is declared
    // again for another query: refused, not read with the old plan.
    let prepared = app.prepare("FETCH 2 FROM c").await.unwrap();
    let two: Vec<String> = app
        .query(&prepared, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0).to_string())
        .collect();
    assert_eq!(two, whole[..2]);
    app.batch_execute("CLOSE c").await.unwrap();
    app.batch_execute("DECLARE c CURSOR FOR SELECT id FROM patients ORDER BY id")
        .await
        .unwrap();
    let error = app.query(&prepared, &[]).await.unwrap_err();
    assert_eq!(code(&error), Some("0A000"), "{error}");
    app.batch_execute("ROLLBACK").await.unwrap();
    pgseal_tests::assert_usable(&app).await;

    // A role that does not read the name in clear may not declare a cursor sorted on it.
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    billing.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        fails(&billing, &format!("DECLARE c CURSOR FOR {SORTED}")).await,
        "42501"
    );
    billing.batch_execute("ROLLBACK").await.unwrap();
    pgseal_tests::assert_usable(&billing).await;
    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_evaluated_cursor_past_the_caps_fails_clearly() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital
        .proxy_with(cluster, |c| c.evaluation_caps.max_rows = 2)
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    seed(&app, 3, |i| NAMES[i as usize].to_string()).await;
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c CURSOR FOR {SORTED}"))
        .await
        .unwrap();
    let error = app.simple_query("FETCH 1 FROM c").await.unwrap_err();
    assert_eq!(code(&error), Some("54000"), "{error}");
    assert!(
        error
            .as_db_error()
            .is_some_and(|e| e.message().contains("--evaluation-max-rows")),
        "{error:?}"
    );
    app.batch_execute("ROLLBACK").await.unwrap();
    // With a LIMIT, only the first rows are held.
    app.batch_execute(&format!("DECLARE c CURSOR WITH HOLD FOR {SORTED} LIMIT 2"))
        .await
        .unwrap();
    assert_eq!(fetch(&app, "FETCH ALL FROM c").await.unwrap().1, 2);
    app.batch_execute("CLOSE c").await.unwrap();
    // The caps bound what the session keeps across its cursors: one keeping a row leaves
    // room for one row more.
    for name in ["a", "b"] {
        app.batch_execute(&format!(
            "DECLARE {name} CURSOR WITH HOLD FOR {SORTED} LIMIT 2"
        ))
        .await
        .unwrap();
    }
    assert_eq!(fetch(&app, "FETCH 1 FROM a").await.unwrap().1, 1);
    let error = app.simple_query("FETCH 1 FROM b").await.unwrap_err();
    assert_eq!(code(&error), Some("54000"), "{error}");
    assert!(
        error
            .as_db_error()
            .is_some_and(|e| e.message().contains("other cursors")),
        "{error:?}"
    );
    app.batch_execute("CLOSE a; CLOSE b").await.unwrap();
    app.batch_execute(&format!("DECLARE b CURSOR WITH HOLD FOR {SORTED} LIMIT 2"))
        .await
        .unwrap();
    assert_eq!(fetch(&app, "FETCH 1 FROM b").await.unwrap().1, 1);
    assert_eq!(fetch(&app, "FETCH 1 FROM b").await.unwrap().1, 1);
    app.batch_execute("CLOSE b").await.unwrap();
    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}

/// Rows fetched from an evaluated cursor are charged to the end user's budget once each, as
/// they are sent (not when pgseal reads them from the server), and a budget block ends a FETCH.
#[tokio::test]
async fn an_evaluated_cursor_charges_each_row_once_as_it_is_fetched() {
    let cluster = cluster::cluster();
    let setup = BudgetSetup::new(cluster);
    let (proxy, audit) = setup.audited_proxy(cluster).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    app.batch_execute("SET pgseal.end_user = 'seeder'")
        .await
        .unwrap();
    seed(&app, 200, |i| format!("Patient{i}")).await;

    // 111 names start with "patient1" (Patient1, Patient10…19, Patient100…199); the end
    // user's budget is 150 rows a day.
    app.batch_execute("SET pgseal.end_user = 'dr.cursor'")
        .await
        .unwrap();
    let search = "SELECT id, last_name FROM patients WHERE last_name ILIKE 'patient1%' \
                  ORDER BY last_name DESC";
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c CURSOR FOR {search}"))
        .await
        .unwrap();
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(fetch(&app, "FETCH 40 FROM c").await.unwrap().1);
    }
    assert_eq!(counts, [40, 40, 31, 0]);
    app.batch_execute("COMMIT").await.unwrap();
    // 39 rows left in the day: the second FETCH of 30 is blocked after 9.
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c CURSOR FOR {search}"))
        .await
        .unwrap();
    assert_eq!(fetch(&app, "FETCH 30 FROM c").await.unwrap().1, 30);
    let error = match app.simple_query("FETCH 30 FROM c").await {
        Ok(m) => panic!("not blocked: {m:?}"),
        Err(e) => e,
    };
    assert_eq!(code(&error), Some("53400"), "{error}");
    app.batch_execute("ROLLBACK").await.unwrap();
    // The day's budget is spent: a new cursor's first row is blocked too.
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(&format!("DECLARE c CURSOR FOR {search}"))
        .await
        .unwrap();
    assert_eq!(fails(&app, "FETCH 1 FROM c").await, "53400");
    app.batch_execute("ROLLBACK").await.unwrap();
    proxy.stop().await;

    let text = std::fs::read_to_string(&audit).unwrap();
    // Each FETCH is on record with the rows it sent, under its cursor's statement.
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["end_user"] == "dr.cursor" && e["rows"].as_u64().is_some_and(|n| n > 0))
        .collect();
    let fetched: Vec<u64> = events.iter().map(|e| e["rows"].as_u64().unwrap()).collect();
    assert_eq!(fetched, [40, 40, 31, 30, 9], "{text}");
    // The first FETCH is the evaluated one: it read every patient from the server.
    assert_eq!(events[0]["rows_scanned"], 200, "{text}");
    assert_eq!(fetched.iter().sum::<u64>(), 111 + 30 + 9, "{fetched:?}");
    assert!(
        !text.contains("patient1"),
        "a search term in the audit trail"
    );
}

/// A paced budget paces the rows an evaluated cursor's FETCH hands out from what pgseal kept,
/// as it paces any result: the FETCH takes the time its rows are worth, and every row arrives.
#[tokio::test]
async fn an_evaluated_cursor_is_paced_by_a_throttling_budget() {
    let cluster = cluster::cluster();
    let mut setup = BudgetSetup::new(cluster);
    // The end user's budget: 5 rows at once, then 20 a second.
    let text = std::fs::read_to_string(&setup.policy).unwrap();
    let paced = text.replace(
        "rate = \"1000/second\"\nburst = 1000\nper_day = 150",
        "rate = \"20/second\"\nburst = 5\naction = \"throttle\"\nper_day = 150",
    );
    assert_ne!(text, paced, "the end-user budget moved in the test policy");
    let path = setup.dir.path().join("paced.toml");
    std::fs::write(&path, paced).unwrap();
    setup.policy = path;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    app.batch_execute("SET pgseal.end_user = 'seeder'")
        .await
        .unwrap();
    seed(&app, 40, |i| format!("Patient{i}")).await;
    app.batch_execute("SET pgseal.end_user = 'dr.paced'")
        .await
        .unwrap();
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(
        "DECLARE c CURSOR FOR SELECT id FROM patients WHERE last_name ILIKE 'patient%' \
         ORDER BY last_name",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(fetch(&app, "FETCH 5 FROM c").await.unwrap().1, 5);
    // 25 rows past the burst, from the rows kept: about 1.25 s at 20 a second.
    assert_eq!(fetch(&app, "FETCH 25 FROM c").await.unwrap().1, 25);
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1000),
        "not paced: {took:?}"
    );
    assert_eq!(fetch(&app, "FETCH ALL FROM c").await.unwrap().1, 10);
    app.batch_execute("COMMIT").await.unwrap();
    proxy.stop().await;
}

/// A cursor's rows read through portals the client never described — a prepared `FETCH`, the
/// cursor's own portal run by Execute — get the role's view as a described result does
/// (pgseal describes the portal itself), never the stored values; an evaluated cursor's
/// portal, which holds the server's unfiltered superset, is refused, and so is a FETCH of it
/// in formats other than its first FETCH's.
#[tokio::test]
async fn cursor_portals_run_without_a_describe_get_the_role_s_view() {
    let cluster = cluster::cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut hospital = Hospital::create_icu(cluster, "fr-FR");
    hospital.grant_trust_role(cluster);
    let app_proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&app_proxy, "ehr_app").await;
    seed(&app, 6, |i| NAMES[i as usize].to_string()).await;
    let stored: Vec<String> = fetch(&app, "SELECT last_name FROM patients ORDER BY id")
        .await
        .unwrap()
        .0;
    // The trusted raw-protocol role, once in the application's class, once in billing's.
    for (class, shown) in [
        ("application", stored.clone()),
        (
            "billing",
            stored
                .iter()
                .map(|n| format!("{}.", n.chars().next().unwrap()))
                .collect(),
        ),
    ] {
        let header = format!("[classes.{class}]\nroles = [\"");
        hospital.policy = pgseal_tests::hospital::example_policy_with(
            dir.path(),
            &format!("{class}.toml"),
            &[(&header, &format!("{header}{}\", \"", cluster::TRUST_ROLE))],
        );
        let proxy = hospital.proxy(cluster).await;
        let mut client =
            crate::evaluation_differential::raw_client(proxy.address(), &hospital.database).await;
        client
            .send_frames(&[raw::query(
                "BEGIN; DECLARE s CURSOR FOR SELECT last_name FROM patients ORDER BY id",
            )])
            .await;
        assert!(raw::errors(&client.read_until(b'Z').await).is_empty());
        // A prepared FETCH, bound and executed without a Describe.
        client
            .send_frames(&[
                raw::parse("", "FETCH 2 FROM s"),
                raw::bind("", ""),
                raw::execute("", 0),
                raw::sync(),
            ])
            .await;
        let messages = client.read_until(b'Z').await;
        assert!(raw::errors(&messages).is_empty(), "{class}: {messages:?}");
        assert!(messages.iter().all(|m| m.tag != b'T'), "{messages:?}");
        let mut seen: Vec<Option<String>> =
            raw::text_rows(&messages).into_iter().flatten().collect();
        // The cursor's own portal, executed by name, a row at a time.
        client
            .send_frames(&[raw::execute("s", 1), raw::execute("s", 0), raw::sync()])
            .await;
        let messages = client.read_until(b'Z').await;
        assert!(raw::errors(&messages).is_empty(), "{class}: {messages:?}");
        assert!(messages.iter().any(|m| m.tag == b's'), "{messages:?}");
        seen.extend(raw::text_rows(&messages).into_iter().flatten());
        let expected: Vec<Option<String>> = shown.iter().cloned().map(Some).collect();
        assert_eq!(seen, expected, "{class}");
        client.send_frames(&[raw::query("ROLLBACK")]).await;
        client.read_until(b'Z').await;
        if class == "application" {
            Box::pin(evaluated_cursor_portals_are_refused(&mut client)).await;
        }
        proxy.stop().await;
    }
    app_proxy.stop().await;
}

/// For [`cursor_portals_run_without_a_describe_get_the_role_s_view`], as the application: an
/// evaluated cursor's own portal is refused however it is named, and a FETCH of it in formats
/// other than its first FETCH's is refused, the cursor staying readable.
async fn evaluated_cursor_portals_are_refused(client: &mut raw::RawClient) {
    // An evaluated cursor's portal holds rows pgseal has not filtered: refused.
    for sql in [
        "BEGIN".to_string(),
        format!("DECLARE c CURSOR FOR {SORTED}"),
    ] {
        client.send_frames(&[raw::query(&sql)]).await;
        let messages = client.read_until(b'Z').await;
        assert!(raw::errors(&messages).is_empty(), "{messages:?}");
    }
    client
        .send_frames(&[raw::execute("c", 0), raw::sync()])
        .await;
    let messages = client.read_until(b'Z').await;
    let refused = messages.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(refused.sqlstate().as_deref(), Some("0A000"));
    assert!(
        refused.field(b'M').unwrap().contains("read it with FETCH"),
        "{refused:?}"
    );
    assert_eq!(raw::data_rows(&messages), 0);
    client.send_frames(&[raw::query("ROLLBACK")]).await;
    client.read_until(b'Z').await;
    // Its FETCHes read it, in the formats of the first: pgseal keeps the rest as the
    // first FETCH rendered it, and refuses another format clearly.
    let mut rows = 0;
    for sql in [
        "BEGIN".to_string(),
        format!("DECLARE c CURSOR FOR {SORTED}"),
        "FETCH 2 FROM c".into(),
        "SAVEPOINT s".into(),
    ] {
        client.send_frames(&[raw::query(&sql)]).await;
        let messages = client.read_until(b'Z').await;
        assert!(raw::errors(&messages).is_empty(), "{messages:?}");
        rows += raw::data_rows(&messages);
    }
    client
        .send_frames(&[
            raw::parse("", "FETCH 1 FROM c"),
            raw::bind_formats("", "", &[1]),
            raw::execute("", 0),
            raw::sync(),
        ])
        .await;
    let messages = client.read_until(b'Z').await;
    let refused = messages.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(refused.sqlstate().as_deref(), Some("0A000"));
    let message = refused.field(b'M').unwrap();
    assert!(
        message.contains("every column in text") && message.contains("binary"),
        "{message}"
    );
    for sql in ["ROLLBACK TO SAVEPOINT s", "FETCH ALL FROM c", "ROLLBACK"] {
        client.send_frames(&[raw::query(sql)]).await;
        let messages = client.read_until(b'Z').await;
        assert!(raw::errors(&messages).is_empty(), "{messages:?}");
        rows += raw::data_rows(&messages);
    }
    assert_eq!(rows, 6);
    // The other way round: kept in binary by a prepared FETCH, then asked for in text
    // by a simple one: refused, and the cursor stays readable in binary.
    let binary_fetch = |sql: &str| {
        vec![
            raw::parse("", sql),
            raw::bind_formats("", "", &[1]),
            raw::execute("", 0),
            raw::sync(),
        ]
    };
    for sql in [
        "BEGIN".to_string(),
        format!("DECLARE c CURSOR FOR {SORTED}"),
    ] {
        client.send_frames(&[raw::query(&sql)]).await;
        assert!(raw::errors(&client.read_until(b'Z').await).is_empty());
    }
    client.send_frames(&binary_fetch("FETCH 1 FROM c")).await;
    let messages = client.read_until(b'Z').await;
    assert_eq!(raw::data_rows(&messages), 1, "{messages:?}");
    client
        .send_frames(&[raw::query("SAVEPOINT s"), raw::query("FETCH 1 FROM c")])
        .await;
    client.read_until(b'Z').await;
    let messages = client.read_until(b'Z').await;
    let refused = messages.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(refused.sqlstate().as_deref(), Some("0A000"), "{refused:?}");
    client
        .send_frames(&[raw::query("ROLLBACK TO SAVEPOINT s")])
        .await;
    client.read_until(b'Z').await;
    client.send_frames(&binary_fetch("FETCH ALL FROM c")).await;
    let messages = client.read_until(b'Z').await;
    assert!(raw::errors(&messages).is_empty(), "{messages:?}");
    assert_eq!(raw::data_rows(&messages), 5);
    client.send_frames(&[raw::query("ROLLBACK")]).await;
    client.read_until(b'Z').await;

    // A portal pgseal knew under the same name, gone with its transaction, does not
    // hide the evaluated cursor declared since; nor does a name PostgreSQL cuts to
    // the same 63 bytes.
    client
        .send_frames(&[
            raw::parse("", "SELECT 1"),
            raw::bind("c", ""),
            raw::describe(b'P', "c"),
            raw::execute("c", 0),
            raw::sync(),
        ])
        .await;
    assert!(raw::errors(&client.read_until(b'Z').await).is_empty());
    let long = "c".repeat(63);
    for sql in [
        "BEGIN".to_string(),
        format!("DECLARE c CURSOR FOR {SORTED}"),
        format!("DECLARE {long} CURSOR FOR {SORTED}"),
    ] {
        client.send_frames(&[raw::query(&sql)]).await;
        assert!(raw::errors(&client.read_until(b'Z').await).is_empty());
    }
    for portal in ["c".to_string(), format!("{long}x")] {
        client.send_frames(&[raw::query("SAVEPOINT s")]).await;
        client.read_until(b'Z').await;
        client
            .send_frames(&[raw::execute(&portal, 0), raw::sync()])
            .await;
        let messages = client.read_until(b'Z').await;
        let refused = messages.iter().find(|m| m.tag == b'E').expect("refused");
        assert_eq!(refused.sqlstate().as_deref(), Some("0A000"), "{portal}");
        assert_eq!(raw::data_rows(&messages), 0);
        client
            .send_frames(&[raw::query("ROLLBACK TO SAVEPOINT s")])
            .await;
        client.read_until(b'Z').await;
    }
    client.send_frames(&[raw::query("ROLLBACK")]).await;
    client.read_until(b'Z').await;
}
