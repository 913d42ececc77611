//! Search indexes (`search = { … }`, `pgseal migrate index`) end to end: the hospital example
//! with its patient columns indexed, patients written through pgseal by every path, searches
//! answered the same before the index is built (scanning), once it is (the database's GIN
//! index gives candidates, pgseal checks them), and after it is broken (scanning again).

use std::path::Path;

use pgseal_tests::TestProxy;
use pgseal_tests::cluster::{self, Cluster};
use pgseal_tests::hospital::{Hospital, indexed_policy, nir_for as nir};
use pgseal_tests::migrate::{command, run_ok, stdout_of};
use tokio_postgres::Client;

/// The searches compared: what a hospital's search boxes and lists send.
const SEARCHES: &[&str] = &[
    "SELECT id, last_name FROM patients WHERE last_name ILIKE 'mar%' ORDER BY id",
    "SELECT id FROM patients WHERE last_name LIKE 'Du%' ORDER BY id",
    "SELECT id FROM patients WHERE lower(last_name) LIKE 'le%' ORDER BY id",
    "SELECT id FROM patients WHERE last_name ILIKE '%ont%' ORDER BY id",
    "SELECT id FROM patients WHERE last_name = 'Dupont' ORDER BY id",
    "SELECT id FROM patients WHERE last_name IN ('Martin', 'Lefèvre', 'Nobody') ORDER BY id",
    "SELECT id FROM patients WHERE first_name = 'Élodie' OR last_name ILIKE 'zo%' ORDER BY id",
    "SELECT id FROM patients WHERE phone LIKE '%12' ORDER BY id",
    "SELECT id FROM patients WHERE phone LIKE '%4512' ORDER BY id",
    "SELECT id FROM patients WHERE email ILIKE '%@exemple.fr' AND last_name ILIKE 'd%' ORDER BY id",
    "SELECT id FROM patients WHERE birth_date BETWEEN '1980-01-01' AND '1980-12-31' ORDER BY id",
    "SELECT id FROM patients WHERE birth_date = '1975-06-15' ORDER BY id",
    "SELECT id FROM patients WHERE address ILIKE '%rue de la%' ORDER BY id",
    "SELECT id FROM patients WHERE last_name ILIKE 'mar%' OR first_name ILIKE 'mar%' \
       OR email ILIKE 'mar%' OR phone LIKE '%mar%' OR address ILIKE '%mar%' ORDER BY id",
    "SELECT count(*) FROM patients WHERE last_name ILIKE 'd%'",
    "SELECT id FROM patients WHERE last_name ILIKE 'du%' ORDER BY last_name, id LIMIT 3",
    "SELECT id FROM patients WHERE NOT (last_name ILIKE 'du%') ORDER BY id",
    // Subqueries pgseal filters: the server narrows the outer rows with the same subquery on
    // candidates.
    "SELECT p.id FROM patients p WHERE p.id IN (SELECT q.id FROM patients q WHERE q.last_name ILIKE 'mar%') ORDER BY p.id",
    "SELECT p.id FROM patients p WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id \
       AND (q.first_name ILIKE 'mar%' OR q.last_name = 'Dupont')) ORDER BY p.id",
    "SELECT p.id FROM patients p WHERE p.last_name ILIKE 'zo%' \
       OR p.id IN (SELECT q.id FROM patients q WHERE q.phone LIKE '%12' AND q.id > 3) ORDER BY p.id",
    // Two subqueries whose texts differ only in pgseal's conjunct read their rows from one
    // hidden column: narrowed for one, it would hide the other's rows.
    "SELECT p.id FROM patients p WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id \
       AND q.last_name ILIKE 'd%') AND NOT EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id \
       AND q.last_name = 'Dupont') ORDER BY p.id",
    "SELECT p.id FROM patients p WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id \
       AND q.last_name ILIKE 'zo%') OR EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id \
       AND q.last_name = 'Dupont') ORDER BY p.id",
];

/// Selective searches (`zo%`: two names of the list), directly and through subqueries: the
/// rows the server sends pgseal for them show whether an index narrows.
const SELECTIVE: &[&str] = &[
    "SELECT id FROM patients WHERE last_name ILIKE 'zo%'",
    "SELECT p.id FROM patients p WHERE p.id IN (SELECT q.id FROM patients q WHERE q.last_name ILIKE 'zo%')",
    "SELECT p.id FROM patients p WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id AND q.last_name ILIKE 'zo%')",
];

/// An operand of a search with parameters.
enum Op {
    /// Text.
    T(&'static str),
    /// A date: year, month, day.
    D(i32, u8, u8),
}

impl Op {
    fn value(&self) -> Box<dyn tokio_postgres::types::ToSql + Sync> {
        match self {
            Op::T(text) => Box::new(*text),
            Op::D(y, m, d) => Box::new(
                time::Date::from_calendar_date(*y, time::Month::try_from(*m).expect("a month"), *d)
                    .expect("a date"),
            ),
        }
    }
}

/// The same searches with parameters, and their operands.
const PARAM_SEARCHES: &[(&str, &[Op])] = &[
    (
        "SELECT id FROM patients WHERE last_name ILIKE $1 ORDER BY id",
        &[Op::T("mar%")],
    ),
    (
        "SELECT id FROM patients WHERE last_name ILIKE '%' || $1 || '%' ORDER BY id",
        &[Op::T("pon")],
    ),
    (
        "SELECT id FROM patients WHERE last_name = $1 OR first_name = $2 ORDER BY id",
        &[Op::T("Martin"), Op::T("Jean")],
    ),
    (
        "SELECT id FROM patients WHERE birth_date BETWEEN $1 AND $2 ORDER BY id",
        &[Op::D(1970, 1, 1), Op::D(1985, 6, 30)],
    ),
    (
        "SELECT id FROM patients WHERE phone LIKE $1 ORDER BY id",
        &[Op::T("%12")],
    ),
    (
        "SELECT id FROM patients WHERE last_name ILIKE $1 ORDER BY id",
        &[Op::T("%")],
    ),
];

/// How many patients the test writes first.
const PATIENTS: usize = 260;

const LAST_NAMES: &[&str] = &[
    "Martin", "MARTIN", "Martín", "Marchand", "Mardi", "Dupont", "DUPONT", "Du Pont", "Dupond",
    "Lefèvre", "Lefebvre", "Le Gall", "le Gall", "Legrand", "Zola", "Zoé", "Ndiaye", "N'Diaye",
    "Côté", "Müller", "Straße", "Œuvray", "Marié",
];
const FIRST_NAMES: &[&str] = &["Jean", "Élodie", "Marie", "Marc", "Zoé", "Léa", "Anaïs"];
const STREETS: &[&str] = &[
    "12 rue de la Paix",
    "3 RUE DE LA GARE",
    "8 avenue Marceau",
    "1 place Mar",
    "45 boulevard de l'Hôpital",
];

/// Inserts `count` patients through pgseal with `INSERT … VALUES ($n)`; returns nothing.
async fn insert_patients(client: &Client, from: usize, count: usize) {
    let insert = client
        .prepare(
            "INSERT INTO patients (nir, last_name, first_name, birth_date, email, phone, address) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .expect("prepare the insert");
    for i in from..from + count {
        let nir = nir(i);
        let last = LAST_NAMES[i % LAST_NAMES.len()];
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        let birth = time::Date::from_calendar_date(
            1950 + ((i * 7) % 60) as i32,
            time::Month::try_from(1 + (i % 12) as u8).expect("a month"),
            1 + ((i * 3) % 28) as u8,
        )
        .expect("a date");
        let email = format!("{}.{}@exemple.fr", first.to_lowercase(), i);
        let phone = format!("06{:08}", (i * 7919) % 100_000_000);
        let street = STREETS[i % STREETS.len()];
        let email: Option<&str> = (i % 9 != 0).then_some(email.as_str());
        client
            .execute(
                &insert,
                &[&nir, &last, &first, &birth, &email, &phone, &street],
            )
            .await
            .unwrap_or_else(|e| panic!("inserting patient {i}: {e:?}"));
    }
}

/// Every search's rows, as text, through the simple protocol and with parameters.
async fn answers(client: &Client) -> Vec<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    for sql in SEARCHES {
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        out.push(pgseal_tests::hospital::simple_rows(&messages));
    }
    for (sql, operands) in PARAM_SEARCHES {
        let values: Vec<_> = operands.iter().map(Op::value).collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            values.iter().map(|v| v.as_ref()).collect();
        let rows = client
            .query(*sql, &params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        out.push(
            rows.iter()
                .map(|r| vec![Some(r.get::<_, i64>(0).to_string())])
                .collect(),
        );
    }
    out
}

/// How many rows the server has sent pgseal for statements it evaluates, from `/metrics`.
async fn scanned(proxy: &TestProxy) -> u64 {
    evaluated_rows(proxy, "scanned").await
}

/// `pgseal_evaluated_rows_total` of the application's role at `stage`, from `/metrics`.
async fn evaluated_rows(proxy: &TestProxy, stage: &str) -> u64 {
    let admin = proxy.admin_address().expect("the admin endpoint listens");
    let (_, metrics) = crate::budgets::http_get(admin, "/metrics").await;
    let prefix = format!("pgseal_evaluated_rows_total{{role=\"ehr_app\",stage=\"{stage}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// A search whose outer rows no index can narrow (the subquery is under `NOT`): only the rows
/// of its subquery can be.
const NARROWED_INSIDE: &str = "SELECT p.id FROM patients p WHERE NOT EXISTS \
    (SELECT 1 FROM patients q WHERE q.id = p.id AND q.last_name ILIKE 'zo%') ORDER BY p.id";

/// [`NARROWED_INSIDE`]'s answer, and the subquery rows the server sent pgseal for it.
async fn rows_inside_a_subquery(proxy: &TestProxy, app: &Client) -> (Vec<i64>, u64) {
    let before = evaluated_rows(proxy, "subquery").await;
    let ids = app
        .query(NARROWED_INSIDE, &[])
        .await
        .expect("a search under NOT")
        .iter()
        .map(|row| row.get(0))
        .collect();
    (ids, evaluated_rows(proxy, "subquery").await - before)
}

/// The rows the server sends pgseal for each selective search.
async fn rows_sent_for_a_search(proxy: &TestProxy, app: &Client) -> Vec<u64> {
    let mut sent = Vec::new();
    for sql in SELECTIVE {
        let before = scanned(proxy).await;
        let found = app.query(*sql, &[]).await.expect("a selective search");
        assert!(!found.is_empty(), "{sql}");
        sent.push(scanned(proxy).await - before);
    }
    sent
}

/// Makes pgseal read the catalog again at once (DDL through pgseal invalidates it), rather
/// than within its 30 s.
async fn reload_catalog(client: &Client) {
    client
        .batch_execute("CREATE TEMPORARY TABLE pgseal_reload (x int); DROP TABLE pgseal_reload")
        .await
        .expect("DDL through pgseal");
}

fn build_index(cluster: &Cluster, hospital: &Hospital, policy: &Path) -> String {
    let output = run_ok(command(
        cluster,
        &hospital.database,
        "index",
        policy,
        &hospital.keyring,
        &["--batch-size", "37", "--quiet"],
    ));
    stdout_of(&output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_searches_answer_as_scanning_does_and_writes_keep_tokens_in_step() {
    let cluster = cluster::cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut hospital = Hospital::create(cluster);
    hospital.policy = indexed_policy(&hospital.policy, dir.path(), "indexed.toml");
    // A few hundred rows: the planner would read them whole; here it must use an index when
    // it can, so that the candidate filters are what answers.
    cluster
        .run_sql(
            &hospital.database,
            &format!(
                "ALTER DATABASE \"{}\" SET enable_seqscan = off",
                hospital.database
            ),
        )
        .expect("prefer indexes");
    let proxy = hospital
        .proxy_with(cluster, |c| c.admin_listen = Some("127.0.0.1:0".into()))
        .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let direct = cluster.connect(&hospital.database).await;
    insert_patients(&app, 0, PATIENTS).await;

    // Before the index: pgseal scans, and that is the reference.
    let scanned_answers = answers(&app).await;
    assert!(
        scanned_answers
            .iter()
            .filter(|rows| !rows.is_empty())
            .count()
            >= SEARCHES.len(),
        "the searches find too little to compare: {scanned_answers:?}"
    );
    assert_eq!(
        rows_sent_for_a_search(&proxy, &app).await,
        [PATIENTS as u64; SELECTIVE.len()],
        "without the index, every row is sent"
    );

    let (outside_before, inside_before) = rows_inside_a_subquery(&proxy, &app).await;
    assert_eq!(
        inside_before, PATIENTS as u64,
        "without the index, the subquery sends one row per patient"
    );

    let printed = build_index(cluster, &hospital, &hospital.policy);
    assert!(printed.contains("index done"), "{printed}");

    // What the tokens reveal at this size: two dozen names in 4,096 buckets stand alone.
    let check = std::process::Command::new(pgseal_tests::pgseal_binary())
        .args(["policy", "check", "--policy"])
        .arg(&hospital.policy)
        .args(["--database-url", &cluster.url(&hospital.database)])
        .output()
        .expect("run pgseal policy check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}");
    assert!(
        report.contains(&format!("public.patients.last_name at {PATIENTS} rows: "))
            && report.contains("prefix tokens in use"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("warning: public.patients.last_name") && l.contains("exact")),
        "{report}"
    );
    reload_catalog(&app).await;
    let indexed = answers(&app).await;
    for (i, (a, b)) in indexed.iter().zip(&scanned_answers).enumerate() {
        assert_eq!(a, b, "search {i} answers differently with the index");
    }
    let sent = rows_sent_for_a_search(&proxy, &app).await;
    assert!(
        sent.iter().all(|&n| n * 4 < PATIENTS as u64),
        "the server sent {sent:?} of {PATIENTS} rows for searches the index narrows"
    );
    let (outside, inside) = rows_inside_a_subquery(&proxy, &app).await;
    assert_eq!(
        outside, outside_before,
        "{NARROWED_INSIDE} answers differently"
    );
    assert!(
        inside * 4 < PATIENTS as u64,
        "the subquery sent {inside} of {PATIENTS} rows with the index"
    );

    // Writes through every path carry their tokens at once, in their own transaction.
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute(
        "INSERT INTO patients (nir, last_name, first_name, birth_date, phone) \
         VALUES ('185057512345673', 'Quintal', 'Yann', '1981-02-03', '0611223399')",
    )
    .await
    .expect("a literal insert");
    let found = app
        .query(
            "SELECT first_name FROM patients WHERE last_name ILIKE 'quin%'",
            &[],
        )
        .await
        .expect("search in the same transaction");
    assert_eq!(found.len(), 1);
    app.batch_execute("COMMIT").await.unwrap();
    app.execute(
        "UPDATE patients SET last_name = $1 WHERE nir = $2",
        &[&"Quintana", &"185057512345673"],
    )
    .await
    .expect("an update with parameters");
    app.execute(
        "INSERT INTO patients (nir, last_name) VALUES ('185057512345673', 'Ignored') \
         ON CONFLICT (nir) DO UPDATE SET last_name = 'Quintanilla'",
        &[],
    )
    .await
    .expect("an upsert");
    {
        let sink = app
            .copy_in("COPY patients (nir, last_name, birth_date) FROM STDIN")
            .await
            .expect("COPY FROM STDIN");
        use futures_util::SinkExt as _;
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(
            b"290017512345605\tQuignard\t1990-07-14\n",
        ))
        .await
        .expect("COPY data");
        sink.finish().await.expect("COPY done");
    }
    let quin: Vec<String> = app
        .query(
            "SELECT last_name FROM patients WHERE last_name ILIKE $1 ORDER BY last_name",
            &[&"qui%"],
        )
        .await
        .expect("search after every write")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(quin, ["Quignard", "Quintanilla"]);
    let born_1990 = app
        .query(
            "SELECT last_name FROM patients WHERE birth_date BETWEEN '1990-07-01' AND '1990-07-31'",
            &[],
        )
        .await
        .expect("a date range");
    assert!(
        born_1990
            .iter()
            .any(|r| r.get::<_, String>(0) == "Quignard"),
        "the COPY row is not found by its birth month"
    );

    // A write bypassing pgseal cannot leave a value without tokens: the CHECK refuses it.
    let stored: String = direct
        .query_one(
            "SELECT split_part(last_name, '~', 1) FROM patients ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let bypass = direct
        .execute(
            "UPDATE patients SET last_name = $1 WHERE id = (SELECT min(id) FROM patients)",
            &[&stored],
        )
        .await
        .expect_err("a value without the index's tokens is refused");
    assert!(
        format!("{bypass:?}").contains("pgseal_search_last_name"),
        "{bypass:?}"
    );

    // A broken index (its CHECK dropped by hand) is no longer trusted: pgseal scans again and
    // answers the same.
    let mut expected = answers(&app).await;
    direct
        .batch_execute("ALTER TABLE patients DROP CONSTRAINT pgseal_search_last_name")
        .await
        .unwrap();
    reload_catalog(&app).await;
    assert_eq!(answers(&app).await, expected, "after the index was broken");
    assert!(
        rows_sent_for_a_search(&proxy, &app)
            .await
            .iter()
            .all(|&n| n > PATIENTS as u64),
        "an index whose CHECK is gone is still used"
    );

    // `migrate index` puts it back; nothing else to stamp.
    let printed = build_index(cluster, &hospital, &hospital.policy);
    assert!(printed.contains("0 rows stamped"), "{printed}");
    reload_catalog(&app).await;
    expected = answers(&app).await;
    assert_eq!(answers(&app).await, expected);

    // Other settings (fewer bits): the old index is not trusted, then rebuilt.
    let coarser = dir.path().join("coarser.toml");
    std::fs::write(
        &coarser,
        std::fs::read_to_string(&hospital.policy).unwrap().replace(
            "{ prefix = 4, trigram = true, exact = true }",
            "{ prefix = 4, trigram = true, exact = true, bits = 8 }",
        ),
    )
    .unwrap();
    let indexed_policy = std::mem::replace(&mut hospital.policy, coarser.clone());
    let proxy2 = hospital.proxy(cluster).await;
    hospital.policy = indexed_policy;
    let app2 = hospital.connect(&proxy2, "ehr_app").await;
    assert_eq!(
        answers(&app2).await,
        expected,
        "under other settings, scanning"
    );
    let printed = build_index(cluster, &hospital, &coarser);
    assert!(printed.contains("index done"), "{printed}");
    reload_catalog(&app2).await;
    assert_eq!(answers(&app2).await, expected, "with the rebuilt index");
    proxy2.stop().await;
    proxy.stop().await;
}
