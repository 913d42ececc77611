//! `pgseal migrate index` against the harness's PostgreSQL: rows sealed before their column
//! had a search index get their tokens in batches, the run survives a SIGKILL half-way and is
//! run again; pgseal answers the same searches before (scanning) and after (from the index);
//! a key rotation sets the index aside (pgseal scans, writes go on) until `migrate index`
//! builds it again under the new key; `decrypt` removes it.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgseal_tests::hospital::Hospital;
use pgseal_tests::migrate::{command, run_ok, stdout_of};
use pgseal_tests::{Cluster, TestProxy, cluster, pgseal_binary};
use tokio_postgres::Client;

/// Rows written before the index exists: enough batches of ten for a kill to land half-way.
const ROWS: usize = 4000;

const NAMES: &[&str] = &[
    "Martin", "Marchand", "Dupont", "Du Pont", "Lefèvre", "Zola", "Ndiaye", "Côté", "Straße",
];

/// A policy sealing `public.people`: both columns randomized, with search indexes when
/// `indexed`, marked `migrating` when `migrating`.
fn policy(dir: &Path, name: &str, indexed: bool, migrating: bool) -> PathBuf {
    let search = |spec: &str| {
        if indexed {
            format!("search = {spec}\n")
        } else {
            String::new()
        }
    };
    let marked = if migrating { "migrating = true\n" } else { "" };
    let text = format!(
        "version = 1\n\n\
         [columns.\"public.people.name\"]\nmode = \"randomized\"\ntype = \"text\"\n{}{marked}\n\
         [columns.\"public.people.born\"]\nmode = \"randomized\"\ntype = \"date\"\n{}{marked}\n\
         [classes.application]\nroles = [\"ehr_app\"]\ndefault = \"plaintext\"\n\n\
         [classes.application.budget]\nrate = \"100000/second\"\nburst = 1_000_000\n\
         action = \"alert\"\non_cap = \"alert\"\n",
        search("{ prefix = 3, trigram = true, exact = true }"),
        search("{ date = \"month\" }"),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn proxy(cluster: &Cluster, policy: &Path, keyring: &Path) -> TestProxy {
    let (policy, keyring) = (policy.to_path_buf(), keyring.to_path_buf());
    TestProxy::start_with(cluster, move |c| {
        c.policy = Some(policy);
        c.keyring = Some(keyring);
        c.admin_listen = Some("127.0.0.1:0".into());
    })
    .await
}

async fn connect(proxy: &TestProxy, database: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(
        &proxy.conninfo("ehr_app", "ehr_app", database),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect through pgseal");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

const SEARCHES: &[&str] = &[
    "SELECT id FROM people WHERE name ILIKE 'mar%' ORDER BY id",
    "SELECT id FROM people WHERE name ILIKE '%pon%' ORDER BY id",
    "SELECT id FROM people WHERE name = 'Zola' ORDER BY id",
    "SELECT id FROM people WHERE lower(name) = 'straße-petit' ORDER BY id",
    "SELECT id FROM people WHERE born BETWEEN '1981-03-01' AND '1981-11-15' ORDER BY id",
    "SELECT count(*) FROM people WHERE name ILIKE 'z%' OR born BETWEEN '1990-01-01' AND '1990-12-31'",
];

async fn answers(client: &Client) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for sql in SEARCHES {
        let rows = client
            .query(*sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        out.push(
            rows.iter()
                .map(|r| {
                    r.try_get::<_, i64>(0)
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                })
                .collect(),
        );
    }
    out
}

/// Rows the server sent pgseal for evaluated statements so far (its `/metrics`).
async fn scanned(proxy: &TestProxy) -> u64 {
    let admin = proxy.admin_address().expect("admin endpoint");
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: pgseal\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| {
            l.strip_prefix("pgseal_evaluated_rows_total{role=\"ehr_app\",stage=\"scanned\"} ")
        })
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Rows sent for one search by a name prefix: all of them when pgseal scans.
async fn sent_for_zola(proxy: &TestProxy, client: &Client) -> u64 {
    let before = scanned(proxy).await;
    client
        .query("SELECT id FROM people WHERE name ILIKE 'zol%'", &[])
        .await
        .unwrap();
    scanned(proxy).await - before
}

/// Makes pgseal read its catalog again now (DDL through it), not within 30 s.
async fn reload_catalog(client: &Client) {
    client
        .batch_execute("CREATE TEMPORARY TABLE pgseal_reload (x int); DROP TABLE pgseal_reload")
        .await
        .unwrap();
}

async fn stamped(direct: &Client) -> i64 {
    direct
        .query_one(
            "SELECT count(*) FROM people WHERE split_part(name, '~', 2) <> ''",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn keys(keyring: &Path, args: &[&str]) {
    let mut c = Command::new(pgseal_binary());
    c.arg("keys").args(args).arg("--keyring").arg(keyring);
    run_ok(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_indexes_are_built_resumed_rotated_and_removed() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let db = &hospital.database;
    let dir = tempfile::tempdir().unwrap();
    let direct = cluster.connect(db).await;
    direct
        .batch_execute(
            "CREATE TABLE people (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             name text, born text); GRANT ALL ON people TO ehr_app",
        )
        .await
        .unwrap();
    let plain_policy = policy(dir.path(), "plain.toml", false, false);
    let indexed = policy(dir.path(), "indexed.toml", true, false);

    // Rows sealed before the column has an index: no tokens.
    let before = proxy(cluster, &plain_policy, &hospital.keyring).await;
    let app = connect(&before, db).await;
    let insert = app
        .prepare("INSERT INTO people (name, born) VALUES ($1, $2)")
        .await
        .unwrap();
    app.batch_execute("BEGIN").await.unwrap();
    for i in 0..ROWS {
        let born = time::Date::from_calendar_date(
            1970 + (i % 30) as i32,
            time::Month::try_from(1 + (i % 12) as u8).unwrap(),
            1 + (i % 28) as u8,
        )
        .unwrap();
        let name = format!(
            "{}{}",
            NAMES[i % NAMES.len()],
            if i % 2 == 0 { "" } else { "-Petit" }
        );
        app.execute(&insert, &[&name, &born]).await.unwrap();
    }
    app.batch_execute("COMMIT").await.unwrap();
    let reference = answers(&app).await;
    let sizes: Vec<usize> = reference.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().all(|n| *n > 0),
        "rows found per search: {sizes:?}"
    );
    assert_eq!(stamped(&direct).await, 0);
    before.stop().await;

    // pgseal with the indexed policy: writes carry tokens, searches scan until the index is
    // complete.
    let after = proxy(cluster, &indexed, &hospital.keyring).await;
    let app = connect(&after, db).await;
    assert_eq!(answers(&app).await, reference);
    assert_eq!(sent_for_zola(&after, &app).await, ROWS as u64);

    // A dry run says what a run would do, and does none of it.
    let dry = |extra: &'static [&'static str]| {
        stdout_of(&run_ok(command(
            cluster,
            db,
            "index",
            &indexed,
            &hospital.keyring,
            extra,
        )))
    };
    let printed = dry(&["--dry-run"]);
    assert!(
        printed.contains("dry run: nothing was changed"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("public.people.name: CHECK pgseal_search_name to add; {ROWS} rows to stamp; GIN index pgseal_tokens_name to build")),
        "{printed}"
    );
    let constraints: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'pgseal\\_search\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (constraints, stamped(&direct).await),
        (0, 0),
        "after a dry run"
    );

    // Killed half-way, then run again.
    let mut child = command(
        cluster,
        db,
        "index",
        &indexed,
        &hospital.keyring,
        &["--batch-size", "10", "--quiet"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start pgseal migrate index");
    let started = Instant::now();
    let mut at_kill = 0;
    while started.elapsed() < Duration::from_secs(60) {
        at_kill = stamped(&direct).await;
        if at_kill > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(
        at_kill > 0 && at_kill < ROWS as i64 && status.signal() == Some(9),
        "the kill did not land half-way ({at_kill} of {ROWS} stamped, {status:?})"
    );
    assert_eq!(answers(&app).await, reference, "while half built");
    let printed = stdout_of(&run_ok(command(
        cluster,
        db,
        "index",
        &indexed,
        &hospital.keyring,
        &["--batch-size", "100"],
    )));
    assert!(printed.contains("index done"), "{printed}");
    let validated: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'pgseal\\_search\\_%' \
             AND convalidated",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(validated, 2);
    let printed = dry(&["--dry-run"]);
    assert!(
        printed.contains(
            "public.people.born: CHECK pgseal_search_born validated; 0 rows to stamp; GIN index pgseal_tokens_born present"
        ),
        "{printed}"
    );
    reload_catalog(&app).await;
    assert_eq!(answers(&app).await, reference, "from the index");
    let sent = sent_for_zola(&after, &app).await;
    assert!(sent * 5 < ROWS as u64, "{sent} rows sent with the index");

    // Key rotation: rotate sets the index aside; after the old key is retired pgseal writes
    // tokens under the new one, still answers exactly (scanning), and `migrate index` builds
    // the index again.
    keys(&hospital.keyring, &["rotate"]);
    let printed = stdout_of(&run_ok(command(
        cluster,
        db,
        "rotate",
        &indexed,
        &hospital.keyring,
        &[],
    )));
    assert!(printed.contains("rotate done"), "{printed}");
    keys(&hospital.keyring, &["retire", "--version", "1"]);
    after.stop().await;
    let rotated = proxy(cluster, &indexed, &hospital.keyring).await;
    let app = connect(&rotated, db).await;
    app.execute(
        "INSERT INTO people (name, born) VALUES ('Zola', '1990-05-05')",
        &[],
    )
    .await
    .expect("a write after the rotation");
    let mut expected = reference.clone();
    expected[2].push((ROWS + 1).to_string());
    let last = expected.len() - 1;
    expected[last] = vec![(reference[last][0].parse::<i64>().unwrap() + 1).to_string()];
    assert_eq!(
        answers(&app).await,
        expected,
        "after the rotation, scanning"
    );
    assert_eq!(sent_for_zola(&rotated, &app).await, ROWS as u64 + 1);
    run_ok(command(
        cluster,
        db,
        "index",
        &indexed,
        &hospital.keyring,
        &[],
    ));
    reload_catalog(&app).await;
    assert_eq!(answers(&app).await, expected, "from the rebuilt index");
    assert!(sent_for_zola(&rotated, &app).await * 5 < ROWS as u64);
    rotated.stop().await;

    // Leaving pgseal: the index goes with the envelopes.
    let marked = policy(dir.path(), "marked.toml", true, true);
    run_ok(command(
        cluster,
        db,
        "decrypt",
        &marked,
        &hospital.keyring,
        &[],
    ));
    let left: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'pgseal\\_tokens\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the search indexes are dropped by decrypt");
    let zola: i64 = direct
        .query_one("SELECT count(*) FROM people WHERE name = 'Zola'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(zola > 0, "the names are plaintext again");
}
