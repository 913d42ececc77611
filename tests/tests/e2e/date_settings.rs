//! Sealed dates and times under the session's own DateStyle and TimeZone, PostgreSQL being the
//! oracle: the same statements go through pgseal into sealed `date`, `timestamp` and
//! `timestamptz` columns and directly into a plaintext twin, each session with the same
//! settings (a French day-first session in Europe/Paris, a US one in New York, German style in
//! India's half-hour zone, a fixed offset), in every way a client writes them (literals in
//! simple queries, untyped and text-typed parameters, COPY); then both are read back in text
//! (printed in the session's style and zone) and in binary, row for row. A value whose meaning
//! depends on a setting the same statement changes is refused rather than guessed.

use pgseal_tests::cluster;
use pgseal_tests::hospital::{Hospital, simple_rows};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

/// The sealed table and its plaintext twin, and the policy's lines for the sealed one.
const SCHEMA: &str = "
    CREATE TABLE public.arrivals (id int PRIMARY KEY, arrived_at text, ward_day text,
        ward_time text);
    CREATE TABLE public.arrivals_plain (id int PRIMARY KEY, arrived_at timestamptz,
        ward_day date, ward_time timestamp);
    GRANT ALL ON public.arrivals, public.arrivals_plain TO ehr_app;
";

const POLICY: &str = r#"
[columns."public.arrivals.arrived_at"]
mode = "randomized"
type = "timestamptz"
mask = "redact"

[columns."public.arrivals.ward_day"]
mode = "randomized"
type = "date"
mask = "year"

[columns."public.arrivals.ward_time"]
mode = "randomized"
type = "timestamp"
mask = "redact"
"#;

/// Settings, as `SET` takes them.
const SESSIONS: &[(&str, &str)] = &[
    ("ISO, DMY", "'Europe/Paris'"),
    ("SQL, DMY", "'Europe/Paris'"),
    ("Postgres, MDY", "'America/New_York'"),
    ("German, DMY", "'Asia/Kolkata'"),
    ("SQL, MDY", "INTERVAL '-03:30' HOUR TO MINUTE"),
];

/// Values as a person or a driver writes them under each session's order: day first for DMY
/// sessions, month first for MDY ones; times without a zone (the session's), with an offset,
/// with a zone name, and around summer-time changes.
fn values(day_first: bool) -> Vec<(&'static str, &'static str, &'static str)> {
    let pick = |dmy: &'static str, mdy: &'static str| if day_first { dmy } else { mdy };
    vec![
        (
            pick("15/07/2024 10:00", "07/15/2024 10:00"),
            pick("01/02/1985", "02/01/1985"),
            "2024-07-15 10:00:00.25",
        ),
        (
            "2024-03-31 02:30",
            pick("31/12/1999", "12/31/1999"),
            pick("31/03/2024 02:30", "03/31/2024 02:30"),
        ),
        ("2024-10-27 02:30", "1992-07-01", "2024-10-27 02:30"),
        ("2024-11-03 01:30", "0044-03-15 BC", "1850-06-01 12:00"),
        (
            "2024-07-15 10:00 Europe/Paris",
            "infinity",
            "2024-01-15 23:59:59.999999",
        ),
        ("2024-07-15 10:00+05:30", "2024-02-29", "epoch"),
    ]
}

async fn simple(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    simple_rows(&messages)
}

/// Every row of a table in text (simple query) and in binary (each value's bytes).
async fn read_back(client: &Client, table: &str) -> (Vec<Vec<Option<String>>>, Vec<Vec<u8>>) {
    let sql = format!("SELECT id, arrived_at, ward_day, ward_time FROM {table} ORDER BY id");
    let text = simple(client, &sql).await;
    let statement = client.prepare(&sql).await.unwrap();
    let binary = client
        .query(&statement, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let mut bytes = Vec::new();
            for i in 1..4 {
                let value: Option<Raw> = row.get(i);
                bytes.extend(value.map_or(b"NULL".to_vec(), |r| r.0));
                bytes.push(b'|');
            }
            bytes
        })
        .collect();
    (text, binary)
}

/// A value's binary form, whatever its type.
struct Raw(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Writes the session's rows into `table` every way a client writes them: literals in a
/// simple query, text and varchar parameters (`params` says how the statement reads them:
/// as they are through pgseal, which reads them as the column's type, and cast from text on
/// PostgreSQL, which has no assignment cast from text), and COPY.
async fn write(
    client: &Client,
    table: &str,
    first_id: i32,
    rows: &[(&str, &str, &str)],
    params: &str,
) {
    let mut id = first_id;
    for (arrived, day, time) in rows {
        simple(
            client,
            &format!(
                "INSERT INTO {table} (id, arrived_at, ward_day, ward_time) \
                 VALUES ({id}, '{arrived}', '{day}', '{time}')"
            ),
        )
        .await;
        id += 1;
        let insert =
            format!("INSERT INTO {table} (id, arrived_at, ward_day, ward_time) VALUES ({params})");
        client
            .query_typed(
                &insert,
                &[
                    (&id, Type::INT4),
                    (arrived, Type::TEXT),
                    (day, Type::VARCHAR),
                    (time, Type::TEXT),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{insert} {arrived:?} {day:?} {time:?}: {e:?}"));
        id += 1;
    }
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {table} (id, arrived_at, ward_day, ward_time) FROM STDIN"
        ))
        .await
        .unwrap();
    let lines: String = rows
        .iter()
        .map(|(arrived, day, time)| {
            let line = format!("{id}\t{arrived}\t{day}\t{time}\n");
            id += 1;
            line
        })
        .collect();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from(lines)).await.unwrap();
    sink.finish().await.unwrap();
}

#[tokio::test]
async fn sealed_dates_and_times_follow_the_session_settings() {
    let cluster = cluster();
    let mut hospital = Hospital::create(cluster);
    cluster.run_sql(&hospital.database, SCHEMA).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("dates.toml");
    let text = std::fs::read_to_string(&hospital.policy).unwrap();
    std::fs::write(
        &policy,
        text.replacen("[default]", &format!("{POLICY}\n[default]"), 1),
    )
    .unwrap();
    hospital.policy = policy;
    let proxy = hospital.proxy(cluster).await;
    let sealed = hospital.connect(&proxy, "ehr_app").await;
    let direct = cluster.connect(&hospital.database).await;

    let mut first_id = 1;
    for (style, zone) in SESSIONS {
        let set = format!("SET DateStyle = '{style}'; SET TIME ZONE {zone}");
        for client in [&sealed, &direct] {
            for statement in set.split("; ") {
                simple(client, statement).await;
            }
        }
        let rows = values(style.contains("DMY"));
        write(&sealed, "arrivals", first_id, &rows, "$1, $2, $3, $4").await;
        write(
            &direct,
            "arrivals_plain",
            first_id,
            &rows,
            "$1, $2::text::timestamptz, $3::text::date, $4::text::timestamp",
        )
        .await;
        first_id += 100;

        // Read back in this session's settings: every row written so far, whatever the
        // settings it was written under, printed as the server prints it.
        let (ours, our_binary) = read_back(&sealed, "arrivals").await;
        let (theirs, their_binary) = read_back(&direct, "arrivals_plain").await;
        assert_eq!(ours, theirs, "text under {style} {zone}");
        assert_eq!(our_binary, their_binary, "binary under {style} {zone}");
        let stored = simple(
            &direct,
            "SELECT arrived_at, ward_day, ward_time FROM arrivals",
        )
        .await;
        assert!(
            stored
                .iter()
                .flatten()
                .flatten()
                .all(|v| v.starts_with("pgs1:")),
            "sealed as stored: {stored:?}"
        );

        // pgseal's own comparisons read the literal in the session's order and zone.
        let day = if style.contains("DMY") {
            "01/02/1985"
        } else {
            "02/01/1985"
        };
        let filter = |table: &str| {
            format!(
                "SELECT id FROM {table} WHERE ward_day = '{day}' OR arrived_at < '2024-03-31 03:00' \
                 ORDER BY ward_time DESC, id"
            )
        };
        assert_eq!(
            simple(&sealed, &filter("arrivals")).await,
            simple(&direct, &filter("arrivals_plain")).await,
            "filter under {style} {zone}"
        );

        // COPY out prints in the session's settings too.
        let copy_out =
            |table: &str| format!("COPY {table} (id, arrived_at, ward_day, ward_time) TO STDOUT");
        assert_eq!(
            sorted_lines(copy_text(&sealed, &copy_out("arrivals")).await),
            sorted_lines(copy_text(&direct, &copy_out("arrivals_plain")).await),
            "COPY under {style} {zone}"
        );
    }

    // A change of the zone and a value that depends on it, in one Query: refused, not
    // guessed; the session goes on.
    let error = sealed
        .simple_query(
            "SET TIME ZONE 'Asia/Tokyo'; INSERT INTO arrivals (id, arrived_at) VALUES (9000, '2024-07-15 10:00')",
        )
        .await
        .expect_err("a zone-less value next to a change of zone");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "0A000", "{}", db.message());
    assert!(db.message().contains("TimeZone"), "{}", db.message());
    simple(&sealed, "SET TIME ZONE 'Asia/Tokyo'").await;
    simple(
        &sealed,
        "INSERT INTO arrivals (id, arrived_at) VALUES (9000, '2024-07-15 10:00')",
    )
    .await;
    assert_eq!(
        simple(
            &direct,
            "SELECT 1 FROM arrivals WHERE id = 9000 AND arrived_at LIKE 'pgs1:%'"
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        simple(&sealed, "SELECT arrived_at FROM arrivals WHERE id = 9000").await,
        vec![vec![Some("07/15/2024 10:00:00 JST".to_string())]]
    );

    // SET LOCAL, then its COMMIT in one Query with a value that depends on the zone the
    // COMMIT restores: refused too.
    simple(&sealed, "BEGIN").await;
    simple(&sealed, "SET LOCAL TIME ZONE 'America/New_York'").await;
    let error = sealed
        .simple_query(
            "COMMIT; INSERT INTO arrivals (id, arrived_at) VALUES (9001, '2024-07-15 10:00')",
        )
        .await
        .expect_err("a zone-less value after the COMMIT that restores the zone");
    assert_eq!(error.as_db_error().map(|e| e.code().code()), Some("0A000"));
    simple(&sealed, "ROLLBACK").await;

    // The server prints in new settings before it reports them (ParameterStatus comes with
    // ReadyForQuery): a sealed date read in text in the same Query as the change is refused
    // rather than printed in the old style; read after it, it prints in the new one.
    let error = sealed
        .simple_query("SET DateStyle = 'German, DMY'; SELECT ward_day FROM arrivals WHERE id = 1")
        .await
        .expect_err("a sealed date printed right after a change of DateStyle");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "0A000", "{}", db.message());
    assert!(db.message().contains("pipeline"), "{}", db.message());
    simple(&sealed, "SET DateStyle = 'German, DMY'").await;
    simple(&direct, "SET DateStyle = 'German, DMY'").await;
    assert_eq!(
        simple(&sealed, "SELECT ward_day FROM arrivals WHERE id = 1").await,
        simple(&direct, "SELECT ward_day FROM arrivals_plain WHERE id = 1").await
    );

    // The settings a failed Query changed before its failure still reach pgseal: here the
    // way strings are lexed, so that it refuses what it would read otherwise than the server.
    sealed
        .simple_query(
            "SET standard_conforming_strings = off; SET DateStyle = 'ISO, DMY'; \
             SELECT ward_day FROM arrivals WHERE id = 1",
        )
        .await
        .expect_err("a sealed date printed right after a change of DateStyle");
    let error = sealed
        .simple_query("SELECT ward_day FROM arrivals WHERE id = 1")
        .await
        .expect_err("statements while strings are lexed otherwise");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("standard_conforming_strings")),
        "{message:?}"
    );
    simple(&sealed, "SET standard_conforming_strings = on").await;
    assert_eq!(
        simple(&sealed, "SELECT ward_day FROM arrivals WHERE id = 1").await,
        vec![vec![Some("1985-02-01".to_string())]]
    );
}

fn sorted_lines(text: String) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

async fn copy_text(client: &Client, sql: &str) -> String {
    use futures_util::StreamExt;
    let stream = client.copy_out(sql).await.unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}
