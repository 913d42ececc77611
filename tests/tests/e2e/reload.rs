//! Operating pgseal without restarts: policies and keyring reloaded (`POST /reload`, as SIGHUP
//! does) while sessions run, a broken reload refused, a key rotation taking effect, and one
//! policy per database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgseal_tests::cluster;
use pgseal_tests::hospital::{Hospital, examples_dir, nir_for};
use pgseal_tests::proxy::TestProxy;

use crate::budgets::{http_get, http_request};

/// The hospital policy, copied where a test may rewrite it, with `extra` appended (TOML
/// sections or keys added to the billing class's views).
fn write_policy(dir: &Path, billing_views: &str, top: &str) -> PathBuf {
    let source = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    let anchor = "[classes.billing.views]\n";
    assert!(source.contains(anchor), "the example policy changed");
    let text = format!(
        "{top}\n{}",
        source.replace(anchor, &format!("{anchor}{billing_views}"))
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Billing sees phones masked (the example's default).
const PHONE_MASKED: &str = "";
/// Billing sees phones in clear.
const PHONE_PLAIN: &str = "\"public.patients.phone\" = \"plaintext\"\n";

async fn reload(proxy: &TestProxy) -> (u16, String) {
    http_request(
        proxy.admin_address().unwrap(),
        "POST",
        "/reload",
        "Pgseal-Reload: yes\r\n",
    )
    .await
}

async fn phone_of(client: &tokio_postgres::Client, id: i64) -> String {
    client
        .query_one("SELECT phone FROM patients WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// Seals `patients.sex` too in the policy file: statements with a literal on it become
/// statements the server must be sent differently.
fn seal_sex(policy: &Path) {
    let sealed_sex = "[columns.\"public.patients.sex\"]\nmode = \"deterministic\"\ntype = \"text\"\nmask = \"redact\"\n";
    let anchor = "[columns.\"public.patients.address\"]";
    let text = std::fs::read_to_string(policy).unwrap();
    assert!(text.contains(anchor), "the example policy changed");
    std::fs::write(
        policy,
        text.replace(anchor, &format!("{sealed_sex}\n{anchor}")),
    )
    .unwrap();
}

/// A count read straight from PostgreSQL, not through pgseal.
async fn count_directly(hospital: &Hospital, sql: &str) -> i64 {
    let direct = cluster().connect(&hospital.database).await;
    direct.query_one(sql, &[]).await.unwrap().get(0)
}

/// A NIR no other patient of these tests has.
fn next_nir() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    nir_for(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

const INSERT: &str = "INSERT INTO patients (nir, last_name, first_name, birth_date, phone) \
                      VALUES ($1, $2, 'Jeanne', '1985-05-01', $3) RETURNING id";

async fn add_patient(app: &tokio_postgres::Client, last_name: &str, phone: &str) -> i64 {
    app.query_one(INSERT, &[&next_nir(), &last_name, &phone])
        .await
        .unwrap()
        .get(0)
}

/// The hospital example behind pgseal, its policy and keyring copied into the test's
/// directory (so the test may rewrite them and reload), with the admin endpoint on.
struct Reloadable {
    hospital: Hospital,
    dir: tempfile::TempDir,
    policy: PathBuf,
    keyring: PathBuf,
    proxy: TestProxy,
}

impl Reloadable {
    /// With the example's policy, billing seeing phones masked.
    async fn start() -> Reloadable {
        Self::start_with(|dir| write_policy(dir, PHONE_MASKED, ""), |_, _| {}).await
    }

    /// [`Reloadable::start`], then `sql` run on its database (as the superuser, directly).
    async fn start_after(sql: &str) -> Reloadable {
        let setup = Self::start().await;
        cluster()
            .run_sql(&setup.hospital.database, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        setup
    }

    /// With the policy `policy` writes into the directory, and `adjust` applied to the
    /// configuration (given the directory too).
    async fn start_with(
        policy: impl FnOnce(&Path) -> PathBuf,
        adjust: impl FnOnce(&mut pgseal::config::ServeConfig, &Path) + Send + 'static,
    ) -> Reloadable {
        let hospital = Hospital::create(cluster());
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let here = dir.path().to_path_buf();
        let keyring = dir.path().join("keyring.toml");
        std::fs::copy(&hospital.keyring, &keyring).unwrap();
        let (policy_path, keyring_path) = (policy.clone(), keyring.clone());
        let proxy = hospital
            .proxy_with(cluster(), move |c| {
                c.policy = Some(policy_path);
                c.keyring = Some(keyring_path);
                c.admin_listen = Some("127.0.0.1:0".into());
                adjust(c, &here);
            })
            .await;
        Reloadable {
            hospital,
            dir,
            policy,
            keyring,
            proxy,
        }
    }
}

#[tokio::test]
async fn a_reload_reaches_sessions_between_transactions_and_replans_their_statements() {
    let Reloadable {
        hospital,
        dir,
        policy,
        proxy,
        ..
    } = Reloadable::start_with(
        |dir| write_policy(dir, PHONE_MASKED, ""),
        |c, dir| c.audit = Some(dir.join("audit.jsonl").display().to_string()),
    )
    .await;
    let trail = dir.path().join("audit.jsonl");
    let app = hospital.connect(&proxy, "ehr_app").await;
    let id = add_patient(&app, "Durand", "0612345678").await;

    let billing = hospital.connect(&proxy, "ehr_billing").await;
    let prepared = billing
        .prepare("SELECT phone, last_name FROM patients WHERE id = $1")
        .await
        .unwrap();
    let masked = billing.query_one(&prepared, &[&id]).await.unwrap();
    let masked_phone: String = masked.get(0);
    assert_ne!(masked_phone, "0612345678");
    billing.batch_execute("BEGIN").await.unwrap();
    assert_eq!(phone_of(&billing, id).await, masked_phone);

    write_policy(dir.path(), PHONE_PLAIN, "");
    let (status, body) = reload(&proxy).await;
    assert_eq!((status, body.as_str()), (200, "reloaded: generation 2\n"));

    // The open transaction finishes under the policies it began with.
    assert_eq!(phone_of(&billing, id).await, masked_phone);
    billing.batch_execute("COMMIT").await.unwrap();
    // Its next statements run under the new ones, prepared ones too.
    assert_eq!(phone_of(&billing, id).await, "0612345678");
    let row = billing.query_one(&prepared, &[&id]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "0612345678");
    let last_name: String = row.get(1);
    assert_ne!(last_name, "Durand", "billing still sees names masked");
    // New sessions too.
    let fresh = hospital.connect(&proxy, "ehr_billing").await;
    assert_eq!(phone_of(&fresh, id).await, "0612345678");

    let admin = proxy.admin_address().unwrap();
    let (_, health) = http_get(admin, "/healthz").await;
    assert!(health.contains("policies: generation 2\n"), "{health}");
    assert!(
        health.contains(&format!("policy: {}, every database", policy.display())),
        "{health}"
    );
    let (_, metrics) = http_get(admin, "/metrics").await;
    assert!(
        metrics.contains("pgseal_reloads_total{outcome=\"ok\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npgseal_policy_generation 2\n"),
        "{metrics}"
    );
    proxy.stop().await;
    // The trail says when the policies changed, and to what.
    let trail = std::fs::read_to_string(&trail).unwrap();
    let reload = trail
        .lines()
        .find(|line| line.contains(r#""operation":"reload""#))
        .unwrap_or_else(|| panic!("no reload record: {trail}"));
    assert!(reload.contains(r#""type":"keys""#), "{reload}");
    assert!(reload.contains(r#""generation":2"#), "{reload}");
    assert!(
        reload.contains(&format!(r#""policies":["{}"]"#, policy.display())),
        "{reload}"
    );
}

/// pgseal recognises a RowDescription the server sends again, byte for byte, and reuses the
/// plan it made for it: a reload in between must still change what the same columns show.
#[tokio::test]
async fn a_result_described_as_before_is_planned_again_after_a_reload() {
    let Reloadable {
        hospital,
        dir,
        proxy,
        ..
    } = Reloadable::start_with(
        |dir| write_policy(dir, "\"public.patients.phone\" = \"ciphertext\"\n", ""),
        |_, _| {},
    )
    .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let id = add_patient(&app, "Durand", "0612345678").await;
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    let select = format!("SELECT phone FROM patients WHERE id = {id}");
    let phone = |messages: Vec<tokio_postgres::SimpleQueryMessage>| {
        pgseal_tests::hospital::simple_rows(&messages)[0][0]
            .clone()
            .unwrap()
    };
    // The column passes as stored: the same description twice, the second one recognised.
    let first = phone(billing.simple_query(&select).await.unwrap());
    let second = phone(billing.simple_query(&select).await.unwrap());
    assert_ne!(first, "0612345678", "billing sees the phone's ciphertext");
    assert_eq!(first, second);

    write_policy(dir.path(), PHONE_PLAIN, "");
    let (status, body) = reload(&proxy).await;
    assert_eq!((status, body.as_str()), (200, "reloaded: generation 2\n"));
    // The server describes the result exactly as before; the new policy opens the column.
    assert_eq!(
        phone(billing.simple_query(&select).await.unwrap()),
        "0612345678"
    );
    assert_eq!(
        phone(billing.simple_query(&select).await.unwrap()),
        "0612345678"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_prepared_statement_the_new_policy_would_send_differently_is_prepared_again() {
    let Reloadable {
        hospital,
        dir: _dir,
        policy,
        proxy,
        ..
    } = Reloadable::start().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    add_patient(&app, "Martin", "0600000001").await;
    // `sex` is not sealed: its literal reaches the server as written.
    let statement = app
        .prepare("SELECT count(*) FROM patients WHERE sex = 'F' AND id > $1")
        .await
        .unwrap();
    app.query_one(&statement, &[&0i64]).await.unwrap();

    // The reloaded policy seals `sex`: the literal would now be sealed, so the server's
    // statement is not what pgseal would send.
    seal_sex(&policy);
    let (status, body) = reload(&proxy).await;
    assert_eq!(status, 200, "{body}");
    let error = app.query_one(&statement, &[&0i64]).await.unwrap_err();
    let error = error.as_db_error().expect("a server error");
    assert_eq!(error.code().code(), "26000", "{error}");
    assert!(error.message().contains("prepare it again"), "{error}");
    // Prepared again, it runs under the new policy.
    let again = app
        .prepare("SELECT count(*) FROM patients WHERE sex = 'F' AND id > $1")
        .await
        .unwrap();
    app.query_one(&again, &[&0i64]).await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn a_broken_reload_leaves_the_set_in_force() {
    let Reloadable {
        hospital,
        dir,
        policy,
        keyring,
        proxy,
    } = Reloadable::start_with(
        |dir| write_policy(dir, PHONE_MASKED, ""),
        |c, dir| c.audit = Some(dir.join("audit.jsonl").display().to_string()),
    )
    .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let id = add_patient(&app, "Petit", "0611111111").await;
    let admin = proxy.admin_address().unwrap();

    // Without the header a web page cannot send (cross-origin), nothing is reloaded.
    let (status, body) = http_request(admin, "POST", "/reload", "").await;
    assert_eq!(status, 403, "{body}");
    // Nor from a page whose own name was made to resolve here (its Host is that name).
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"POST /reload HTTP/1.1\r\nHost: pgseal.example:9187\r\nPgseal-Reload: yes\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    let (status, _) = http_request(admin, "GET", "/reload", "Pgseal-Reload: yes\r\n").await;
    assert_eq!(status, 405);

    // A policy with a mistake: nothing changes, and the answer says where.
    write_policy(
        dir.path(),
        "\"public.patients.phone\" = \"see-through\"\n",
        "",
    );
    let (status, body) = reload(&proxy).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.starts_with("reload refused, the set in force stays:\n"),
        "{body}"
    );
    assert!(body.contains(&policy.display().to_string()), "{body}");
    assert!(body.contains("see-through"), "{body}");
    let (_, metrics) = http_get(admin, "/metrics").await;
    assert!(metrics.contains("\npgseal_reload_last_ok 0\n"), "{metrics}");
    assert!(
        metrics.contains("pgseal_reloads_total{outcome=\"failed\"} 1\n"),
        "{metrics}"
    );
    // A policy that names a database twice in the set.
    write_policy(dir.path(), "", "databases = [\"a\", \"a\"]");
    let (status, body) = reload(&proxy).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("named twice"), "{body}");
    // A good policy with a broken keyring.
    write_policy(dir.path(), PHONE_PLAIN, "");
    std::fs::write(&keyring, "not a keyring").unwrap();
    let (status, body) = reload(&proxy).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("keyring"), "{body}");

    // Sessions old and new went on under the first set.
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    assert_ne!(phone_of(&billing, id).await, "0611111111");
    assert_eq!(phone_of(&app, id).await, "0611111111");
    let (_, health) = http_get(admin, "/healthz").await;
    assert!(health.contains("policies: generation 1\n"), "{health}");

    // Mended, it takes.
    std::fs::copy(&hospital.keyring, &keyring).unwrap();
    assert_eq!(reload(&proxy).await.0, 200);
    assert_eq!(phone_of(&billing, id).await, "0611111111");
    let (_, metrics) = http_get(admin, "/metrics").await;
    assert!(metrics.contains("\npgseal_reload_last_ok 1\n"), "{metrics}");
    proxy.stop().await;
    // Each refusal is in the audit trail, with what stayed in force and why.
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let refused: Vec<&str> = trail
        .lines()
        .filter(|line| line.contains(r#""operation":"reload-refused""#))
        .collect();
    assert_eq!(refused.len(), 3, "{trail}");
    assert!(refused[0].contains(r#""generation":1"#), "{}", refused[0]);
    assert!(refused[0].contains("see-through"), "{}", refused[0]);
    assert!(refused[2].contains("keyring"), "{}", refused[2]);
}

/// The key version of a value as stored.
fn stored_version(armored: &str) -> u32 {
    let envelope = pgseal_keys::armor::decode(armored).expect("a sealed value");
    pgseal_keys::envelope::key_version(&envelope).expect("an envelope")
}

#[tokio::test]
async fn a_rotated_keyring_seals_with_its_new_version_after_a_reload() {
    let cluster = cluster();
    let Reloadable {
        hospital,
        dir: _dir,
        keyring,
        proxy,
        ..
    } = Reloadable::start().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let before = add_patient(&app, "Leroy", "0622222222").await;
    // A prepared INSERT whose birth date is a literal, sealed (randomized) at Parse under
    // version 1: the server holds that envelope.
    let literal = app
        .prepare(
            "INSERT INTO patients (nir, last_name, birth_date) VALUES ($1, 'Literal', '1985-05-01')",
        )
        .await
        .unwrap();
    app.execute(&literal, &[&next_nir()]).await.unwrap();

    let mut file = pgseal_keys::KeyringFile::load(&keyring).unwrap();
    assert_eq!(file.rotate().unwrap(), 2);
    file.write_replace(&keyring).unwrap();
    assert_eq!(reload(&proxy).await.0, 200);
    // It would keep writing version 1: prepared again, it writes version 2.
    let error = app.execute(&literal, &[&next_nir()]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("26000"), "{error}");
    let (_, health) = http_get(proxy.admin_address().unwrap(), "/healthz").await;
    assert!(health.contains("versions 1 2, active 2\n"), "{health}");

    // The same session, with no restart: new values under version 2, old ones still open.
    let after = add_patient(&app, "Leroy", "0633333333").await;
    assert_eq!(phone_of(&app, before).await, "0622222222");
    assert_eq!(phone_of(&app, after).await, "0633333333");
    let direct = cluster.connect(&hospital.database).await;
    for (id, version) in [(before, 1), (after, 2)] {
        let stored: String = direct
            .query_one("SELECT birth_date FROM patients WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored_version(&stored), version, "patient {id}");
    }
    proxy.stop().await;
}

/// A policy of a set: `databases = ["database"]`, and every column under a key domain of its
/// own (`database-table-column`), since policies of one set may not share keys.
fn named(text: &str, database: &str) -> String {
    let mut out = format!("databases = [\"{database}\"]\n");
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(name) = line
            .strip_prefix("[columns.\"")
            .and_then(|rest| rest.strip_suffix("\"]"))
        {
            let parts: Vec<&str> = name.split('.').collect();
            out.push_str(&format!(
                "domain = \"{database}-{}-{}\"\n",
                parts[1], parts[2]
            ));
        }
    }
    out
}

/// Two hospital databases behind one pgseal serving a policy directory: `a.toml` protects the
/// first with `first`, `b.toml` the second with `second` (policy texts without `databases`).
async fn two_databases(
    first: &str,
    second: &str,
) -> (Hospital, Hospital, tempfile::TempDir, TestProxy) {
    let (a, b) = (Hospital::create(cluster()), Hospital::create(cluster()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), named(first, &a.database)).unwrap();
    std::fs::write(dir.path().join("b.toml"), named(second, &b.database)).unwrap();
    let policies = dir.path().to_path_buf();
    let proxy = a
        .proxy_with(cluster(), move |c| {
            c.policy = Some(policies);
            c.admin_listen = Some("127.0.0.1:0".into());
        })
        .await;
    (a, b, dir, proxy)
}

#[tokio::test]
async fn each_database_gets_its_own_policy_and_others_are_refused() {
    let cluster = cluster();
    let unprotected = cluster.create_database("unprotected");
    let hospital = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    // The second database's policy leaves phones unsealed.
    let without_phone = hospital.replace(
        "[columns.\"public.patients.phone\"]\nmode = \"deterministic\"\ntype = \"text\"\nmask = \"phone\"",
        "",
    );
    assert_ne!(without_phone, hospital, "the example policy changed");
    let (sealed_phones, plain_phones, dir, proxy) = two_databases(&hospital, &without_phone).await;

    for hospital in [&sealed_phones, &plain_phones] {
        let app = hospital.connect(&proxy, "ehr_app").await;
        let id = add_patient(&app, "Roux", "0644444444").await;
        assert_eq!(phone_of(&app, id).await, "0644444444");
        let direct = cluster.connect(&hospital.database).await;
        let stored: String = direct
            .query_one("SELECT phone FROM patients WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        let sealed = hospital.database == sealed_phones.database;
        assert_eq!(
            stored != "0644444444",
            sealed,
            "{}: {stored}",
            hospital.database
        );
        // Names are sealed under both.
        let name: String = direct
            .query_one("SELECT last_name FROM patients WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_ne!(name, "Roux");
    }

    let conninfo = proxy.conninfo(
        cluster.superuser(),
        cluster.superuser_password(),
        &unprotected,
    );
    let error = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    let error = error.as_db_error().expect("pgseal's error");
    assert_eq!(error.code().code(), "08004", "{error}");
    assert!(error.message().contains("has no pgseal policy"), "{error}");
    let (_, health) = http_get(proxy.admin_address().unwrap(), "/healthz").await;
    assert!(health.contains("other databases: refused\n"), "{health}");
    proxy.stop().await;

    // Relayed as they are, when the operator says so.
    let policies = dir.path().to_path_buf();
    let relaying = sealed_phones
        .proxy_with(cluster, move |c| {
            c.policy = Some(policies);
            c.unprotected_databases = pgseal::protect::set::UnprotectedDatabases::Relay;
            c.admin_listen = Some("127.0.0.1:0".into());
        })
        .await;
    let client = relaying.connect(cluster, &unprotected).await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // A reload that leaves it unprotected keeps the session; one that protects it ends it.
    assert_eq!(reload(&relaying).await.0, 200);
    client.batch_execute("SELECT 1").await.unwrap();
    std::fs::write(dir.path().join("c.toml"), named(&hospital, &unprotected)).unwrap();
    assert_eq!(reload(&relaying).await.0, 200);
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    let db = error.as_db_error().expect("pgseal's error");
    assert_eq!(db.code().code(), "57P01", "{db}");
    assert!(db.message().contains("gave database"), "{db}");
    relaying.stop().await;
}

#[tokio::test]
async fn a_reload_under_load_drops_and_fails_nothing() {
    let cluster = cluster();
    let Reloadable {
        hospital,
        dir,
        proxy,
        ..
    } = Reloadable::start().await;
    const WORKERS: usize = 4;
    const ROUNDS: usize = 40;
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let app = hospital.connect(&proxy, "ehr_app").await;
        let billing = hospital.connect(&proxy, "ehr_billing").await;
        workers.push(tokio::spawn(async move {
            let insert = app.prepare(INSERT).await.unwrap();
            let read = app
                .prepare("SELECT last_name, phone FROM patients WHERE id = $1")
                .await
                .unwrap();
            let mut ids = Vec::new();
            for round in 0..ROUNDS {
                let name = format!("Worker{worker}-{round}");
                let phone = format!("06{worker:02}{round:06}");
                let id: i64 = app
                    .query_one(&insert, &[&next_nir(), &name, &phone])
                    .await
                    .unwrap_or_else(|e| panic!("insert {name}: {e:?}"))
                    .get(0);
                let row = app.query_one(&read, &[&id]).await.unwrap();
                assert_eq!(row.get::<_, String>(0), name);
                assert_eq!(row.get::<_, String>(1), phone);
                // Billing reads in a transaction: masked or clear, never an error.
                billing.batch_execute("BEGIN").await.unwrap();
                billing
                    .query_one("SELECT phone FROM patients WHERE id = $1", &[&id])
                    .await
                    .unwrap_or_else(|e| panic!("billing read {id}: {e}"));
                billing.batch_execute("COMMIT").await.unwrap();
                ids.push((id, phone));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ids, billing)
        }));
    }
    for n in 0..6 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        write_policy(
            dir.path(),
            if n % 2 == 0 {
                PHONE_PLAIN
            } else {
                PHONE_MASKED
            },
            "",
        );
        let (status, body) = reload(&proxy).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut written = Vec::new();
    let mut billings = Vec::new();
    for worker in workers {
        let (ids, billing) = worker.await.expect("no worker failed");
        written.extend(ids);
        billings.push(billing);
    }
    assert_eq!(written.len(), WORKERS * ROUNDS);
    // The last policy shows phones in clear to billing, on the sessions that ran throughout.
    write_policy(dir.path(), PHONE_PLAIN, "");
    assert_eq!(reload(&proxy).await.0, 200);
    for billing in &billings {
        for (id, phone) in written.iter().step_by(17) {
            assert_eq!(&phone_of(billing, *id).await, phone);
        }
    }
    // Nothing lost, nothing in clear at rest.
    let direct = cluster.connect(&hospital.database).await;
    let rows = direct
        .query("SELECT id, phone, last_name FROM patients", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), WORKERS * ROUNDS);
    for row in rows {
        let phone: String = row.get(1);
        let last_name: String = row.get(2);
        assert!(!phone.starts_with("06") && !last_name.starts_with("Worker"));
    }
    proxy.stop().await;
}

/// The hospital policy with the support account's daily cap at `per_day` rows (and roles in
/// no class, which must be held the strictest, at 20).
fn support_capped_at(dir: &Path, per_day: u32) -> PathBuf {
    let policy = write_policy(dir, PHONE_MASKED, "");
    let text = std::fs::read_to_string(&policy).unwrap();
    let capped = text
        .replace("per_day = 2000", &format!("per_day = {per_day}"))
        .replace(
            "per_hour = 100\nper_day = 200",
            "per_hour = 20\nper_day = 20",
        );
    assert_ne!(capped, text, "the example policy changed");
    std::fs::write(&policy, capped).unwrap();
    policy
}

#[tokio::test]
async fn a_reload_keeps_what_accounts_have_used_and_applies_new_limits_at_once() {
    let Reloadable {
        hospital,
        dir,
        proxy,
        ..
    } = Reloadable::start_with(|dir| support_capped_at(dir, 30), |_, _| {}).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    for n in 0..40 {
        add_patient(&app, &format!("Budget{n}"), "0655555555").await;
    }
    let support = hospital.connect(&proxy, "ehr_admin").await;
    let read_ten = "SELECT id, last_name FROM patients ORDER BY id LIMIT 10";
    for _ in 0..3 {
        support.query(read_ten, &[]).await.unwrap();
    }
    let blocked = support.query(read_ten, &[]).await.unwrap_err();
    assert_eq!(blocked.code().map(|c| c.code()), Some("53400"), "{blocked}");

    // The same policy again: the 30 rows taken stay taken, for old and new sessions.
    assert_eq!(reload(&proxy).await.0, 200);
    let error = support.query(read_ten, &[]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("53400"), "{error}");
    let fresh = hospital.connect(&proxy, "ehr_admin").await;
    let error = fresh.query(read_ten, &[]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("53400"), "{error}");

    // A higher cap applies at once, counting from what was used: 10 more rows, then blocked.
    support_capped_at(dir.path(), 40);
    assert_eq!(reload(&proxy).await.0, 200);
    assert_eq!(fresh.query(read_ten, &[]).await.unwrap().len(), 10);
    let error = fresh.query(read_ten, &[]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("53400"), "{error}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_session_whose_database_loses_its_policy_ends_and_cannot_come_back() {
    let hospital = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    let (kept, dropped, dir, proxy) = two_databases(&hospital, &hospital).await;
    let staying = kept.connect(&proxy, "ehr_app").await;
    let leaving = dropped.connect(&proxy, "ehr_app").await;
    leaving.batch_execute("SELECT 1").await.unwrap();

    std::fs::remove_file(dir.path().join("b.toml")).unwrap();
    let (status, body) = reload(&proxy).await;
    assert_eq!(status, 200, "{body}");
    let error = leaving.batch_execute("SELECT 1").await.unwrap_err();
    let db = error.as_db_error().expect("pgseal's error");
    assert_eq!(db.code().code(), "57P01", "{db}");
    assert!(db.message().contains("withdrew the pgseal policy"), "{db}");
    assert!(leaving.is_closed() || leaving.batch_execute("SELECT 1").await.is_err());
    let conninfo = proxy.conninfo("ehr_app", "ehr_app", &dropped.database);
    let error = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    assert_eq!(error.code().map(|c| c.code()), Some("08004"), "{error}");
    staying.batch_execute("SELECT 1").await.unwrap();
    proxy.stop().await;
}

/// Polls `/healthz` until it names `generation` (the reload runs in the background).
async fn wait_for_generation(admin: std::net::SocketAddr, generation: u64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, health) = http_get(admin, "/healthz").await;
        if health.contains(&format!("policies: generation {generation}\n")) {
            return health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no generation {generation}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_binary_and_a_transparent_proxy_survives_it() {
    use nix::sys::signal::Signal;
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), PHONE_MASKED, "");
    let admin_port = pgseal_tests::cluster::free_port().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let config = dir.path().join("pgseal.toml");
    let write_config = |policy: &Path, extra: &str| {
        std::fs::write(
            &config,
            format!(
                "upstream = \"{}\"\npolicy = \"{}\"\nkeyring = \"{}\"\nadmin-listen = \"{admin}\"\n{extra}",
                cluster.address(),
                policy.display(),
                hospital.keyring.display()
            ),
        )
        .unwrap();
    };
    write_config(&policy, "");
    let proxy =
        pgseal_tests::proxy::ProxyProcess::start(&["--config", config.to_str().unwrap()], &[]);
    wait_for_generation(admin, 1).await;
    // The configuration file names another policy, and changes an option that needs a restart.
    let second = dir.path().join("second.toml");
    std::fs::copy(write_policy(dir.path(), PHONE_PLAIN, ""), &second).unwrap();
    write_config(&second, "max-connections = 7\n");
    proxy.signal(Signal::SIGHUP);
    let health = wait_for_generation(admin, 2).await;
    assert!(
        health.contains(&format!("policy: {}, every database", second.display())),
        "{health}"
    );
    let logs = proxy.logs();
    assert!(
        logs.contains("max-connections") && logs.contains("next restart"),
        "{logs}"
    );
    let policy = second;
    // A broken file: refused, logged, and the set in force stays.
    std::fs::write(&policy, "version = 7\n").unwrap();
    proxy.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !proxy.logs().contains("reload refused") {
        assert!(std::time::Instant::now() < deadline, "{}", proxy.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = proxy.logs();
    assert!(
        logs.contains("unsupported policy format version 7"),
        "{logs}"
    );
    wait_for_generation(admin, 2).await;
    let (status, _) = http_get(admin, "/healthz").await;
    assert_eq!(status, 200);
    proxy.terminate();
    let (exit, _) = proxy.wait(Duration::from_secs(20));
    assert!(exit.success(), "{exit}");

    let transparent =
        pgseal_tests::proxy::ProxyProcess::start(&["--upstream", &cluster.address()], &[]);
    transparent.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !transparent.logs().contains("nothing to reload") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            transparent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} password={} dbname=postgres sslmode=disable",
        transparent.port,
        cluster.superuser(),
        cluster.superuser_password()
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("still serving after SIGHUP");
    tokio::spawn(connection);
    client.batch_execute("SELECT 1").await.unwrap();
}

#[test]
fn policy_check_reads_a_directory_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let hospital = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    std::fs::write(dir.path().join("a.toml"), named(&hospital, "ehr")).unwrap();
    std::fs::write(dir.path().join("b.toml"), named(&hospital, "lab")).unwrap();
    let check = |dir: &Path| {
        std::process::Command::new(pgseal_tests::proxy::pgseal_binary())
            .args(["policy", "check", "--policy", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = check(dir.path());
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert!(stderr.contains("ok (2 policies)"), "{stderr}");
    assert!(
        stderr.contains("b.toml: ok (10 sealed columns; lab)"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("c.toml"), named(&hospital, "lab")).unwrap();
    let twice = check(dir.path());
    let stdout = String::from_utf8_lossy(&twice.stdout);
    assert_eq!(twice.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("both protect database \"lab\""), "{stdout}");

    std::fs::write(dir.path().join("c.toml"), &hospital).unwrap();
    let every = check(dir.path());
    let stdout = String::from_utf8_lossy(&every.stdout);
    assert_eq!(every.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("protects every database"), "{stdout}");

    // The same product for two customers: one keyring, so their columns need their own keys.
    std::fs::write(
        dir.path().join("c.toml"),
        format!("databases = [\"clinic\"]\n{hospital}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        format!("databases = [\"lab\"]\n{hospital}"),
    )
    .unwrap();
    let shared = check(dir.path());
    let stdout = String::from_utf8_lossy(&shared.stdout);
    assert_eq!(shared.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("both seal under key domain") && stdout.contains("their own `domain"),
        "{stdout}"
    );
}

/// PgJDBC holding named statements across a reload: the one pgseal no longer keeps is prepared
/// again by the driver itself (26000 is one PgJDBC heals), the other shows the new view, and the
/// application sees no error.
#[tokio::test]
async fn pgjdbc_prepares_again_by_itself_across_a_reload() {
    use std::io::{BufRead, Write};
    let Reloadable {
        hospital,
        dir,
        policy,
        proxy,
        ..
    } = Reloadable::start().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let id = add_patient(&app, "Girard", "0677777777").await;
    let classes = tempfile::tempdir().unwrap();
    crate::drivers::compile_jdbc(classes.path(), "ReloadClient.java");
    let url = |role: &str| {
        format!(
            "jdbc:postgresql://127.0.0.1:{}/{}?user={role}&password={role}&sslmode=disable",
            proxy.port(),
            hospital.database
        )
    };
    let mut java = std::process::Command::new("java")
        .arg("-cp")
        .arg(format!(
            "{}:{}",
            crate::drivers::PGJDBC_JAR,
            classes.path().display()
        ))
        .arg("ReloadClient")
        .arg(url("ehr_app"))
        .arg(url("ehr_billing"))
        .arg(id.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run java (apt-get install default-jdk-headless)");
    let stdout = java.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut before = None;
    while let Some(line) = lines.recv().await {
        if line == "ready" {
            break;
        }
        before = Some(line);
    }
    let before = before.expect("the client ran its statements");
    assert!(before.starts_with("before\t0\t"), "{before}");
    assert!(!before.ends_with("0677777777"), "{before}");

    write_policy(dir.path(), PHONE_PLAIN, "");
    seal_sex(&policy);
    let (status, body) = reload(&proxy).await;
    assert_eq!(status, 200, "{body}");
    java.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let output = tokio::task::spawn_blocking(move || java.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let after = lines.recv().await.unwrap_or_default();
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(after, "after\t0\t0677777777");
    proxy.stop().await;
}

/// A view over the sealed `patients` that the application may write through.
const VIEW_OVER_PATIENTS: &str =
    "CREATE VIEW pv AS SELECT nir, last_name FROM patients; GRANT ALL ON pv TO ehr_app";

/// An INSERT of a new patient named `name` through [`VIEW_OVER_PATIENTS`].
fn insert_through_view(name: &str) -> String {
    format!(
        "INSERT INTO pv (nir, last_name) VALUES ('{}', '{name}')",
        next_nir()
    )
}

/// A write through a view over a sealed table is refused from the catalog; a statement planned
/// before pgseal has the database's catalog (the first of a fresh proxy, the first after a
/// reload, on a new or a moved session) waits for it rather than pass unsealed.
#[tokio::test]
async fn the_first_statements_after_a_start_or_a_reload_know_the_views() {
    let Reloadable {
        hospital,
        dir: _dir,
        proxy,
        ..
    } = Reloadable::start_after(VIEW_OVER_PATIENTS).await;
    // The proxy's first statement ever.
    let moved = hospital.connect(&proxy, "ehr_app").await;
    assert!(
        moved
            .simple_query(&insert_through_view("ViewAtStart"))
            .await
            .is_err()
    );
    for n in 0..3 {
        assert_eq!(reload(&proxy).await.0, 200);
        let fresh = hospital.connect(&proxy, "ehr_app").await;
        let name = format!("ViewAfterReload{n}");
        assert!(
            fresh
                .simple_query(&insert_through_view(&name))
                .await
                .is_err()
        );
        assert!(
            moved
                .simple_query(&insert_through_view(&name))
                .await
                .is_err()
        );
    }
    let leaked = count_directly(
        &hospital,
        "SELECT count(*) FROM patients WHERE last_name LIKE 'View%'",
    )
    .await;
    assert_eq!(leaked, 0, "a write through the view stored plaintext");
    proxy.stop().await;
}

/// A reload between two halves of one extended-protocol group (no Sync between them): the
/// session moves only after the Sync, so nothing of pgseal's own runs inside the group and
/// its implicit transaction still fails whole.
#[tokio::test]
async fn a_reload_never_splits_an_extended_protocol_group() {
    use pgseal_tests::cluster::TRUST_ROLE;
    use pgseal_tests::raw::{self, RawClient};
    let Reloadable {
        hospital,
        dir: _dir,
        proxy,
        ..
    } = Reloadable::start_after(&format!(
        "CREATE TABLE grouped (x int); GRANT ALL ON grouped TO {TRUST_ROLE}"
    ))
    .await;
    let mut client = RawClient::connect(proxy.address()).await;
    client.startup_trusted(TRUST_ROLE, &hospital.database).await;
    client
        .send_frames(&[
            raw::parse("", "INSERT INTO grouped VALUES (1)"),
            raw::bind("", ""),
            raw::execute("", 0),
            raw::flush(),
        ])
        .await;
    let done = client.read_until(b'C').await;
    assert!(raw::errors(&done).is_empty(), "{done:?}");
    assert_eq!(reload(&proxy).await.0, 200);
    client
        .send_frames(&[
            raw::parse("", "SELECT 1/0"),
            raw::bind("", ""),
            raw::execute("", 0),
            raw::sync(),
        ])
        .await;
    let end = client.read_until(b'Z').await;
    assert_eq!(raw::errors(&end).len(), 1, "{end:?}");
    let kept = count_directly(&hospital, "SELECT count(*) FROM grouped").await;
    assert_eq!(kept, 0, "the failed group's INSERT was committed");
    proxy.stop().await;
}

/// A stolen account cannot keep the views it had by holding a transaction open: past
/// `--reload-grace`, its next statement ends the session (57P01).
#[tokio::test]
async fn a_transaction_held_open_past_the_reload_grace_ends_its_session() {
    let Reloadable {
        hospital,
        dir,
        proxy,
        ..
    } = Reloadable::start_with(
        |dir| write_policy(dir, PHONE_MASKED, ""),
        |c, _| c.reload_grace = Duration::from_millis(300),
    )
    .await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let id = add_patient(&app, "Garnier", "0688888888").await;
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    billing.batch_execute("BEGIN").await.unwrap();
    let masked = phone_of(&billing, id).await;
    write_policy(dir.path(), "\"public.patients.phone\" = \"denied\"\n", "");
    assert_eq!(reload(&proxy).await.0, 200);
    // Within the grace, the transaction goes on as it began.
    assert_eq!(phone_of(&billing, id).await, masked);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = billing
        .query_one("SELECT phone FROM patients WHERE id = $1", &[&id])
        .await
        .unwrap_err();
    let db = error.as_db_error().expect("pgseal's error");
    assert_eq!(db.code().code(), "57P01", "{db}");
    assert!(db.message().contains("--reload-grace"), "{db}");
    // A new session gets the new policy: phones are denied to billing now.
    let fresh = hospital.connect(&proxy, "ehr_billing").await;
    let denied = fresh
        .query_one("SELECT phone FROM patients WHERE id = $1", &[&id])
        .await
        .unwrap_err();
    assert_eq!(denied.code().map(|c| c.code()), Some("42501"), "{denied}");
    proxy.stop().await;
}

/// A failed statement in a transaction leaves the catalog stale (it might have been DDL):
/// pgseal sends no catalog query inside the aborted transaction (it would fail, again and
/// again), so its ROLLBACK goes through and the session goes on.
#[tokio::test]
async fn an_aborted_transaction_ends_without_a_catalog_query() {
    let Reloadable {
        hospital,
        dir: _dir,
        proxy,
        ..
    } = Reloadable::start().await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    app.batch_execute("BEGIN").await.unwrap();
    assert!(
        app.batch_execute("CREATE TABLE broken (a no_such_type)")
            .await
            .is_err()
    );
    app.batch_execute("ROLLBACK").await.unwrap();
    let id = add_patient(&app, "Aborted", "0699999999").await;
    assert_eq!(phone_of(&app, id).await, "0699999999");
    proxy.stop().await;
}

/// A reload that leaves a database's policy and keyring as they were revokes nothing: a
/// transaction held open past the grace goes on.
#[tokio::test]
async fn a_reload_that_changes_nothing_ends_no_transaction() {
    let Reloadable {
        hospital,
        dir: _dir,
        proxy,
        ..
    } = Reloadable::start_with(
        |dir| write_policy(dir, PHONE_MASKED, ""),
        |c, _| c.reload_grace = Duration::from_millis(200),
    )
    .await;
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    billing.batch_execute("BEGIN").await.unwrap();
    billing.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(reload(&proxy).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    billing.batch_execute("SELECT 1").await.unwrap();
    billing.batch_execute("COMMIT").await.unwrap();
    proxy.stop().await;
}

/// A Query after extended-protocol messages without a Sync ends their group as a Sync would:
/// the session is not left unable to move to reloaded policies.
#[tokio::test]
async fn a_query_closes_an_unsynced_group_for_reloads() {
    use pgseal_tests::cluster::TRUST_ROLE;
    use pgseal_tests::raw::{self, RawClient};
    let Reloadable {
        hospital,
        dir,
        proxy,
        ..
    } = Reloadable::start_after(&format!("GRANT SELECT ON patients TO {TRUST_ROLE}")).await;
    let mut client = RawClient::connect(proxy.address()).await;
    client.startup_trusted(TRUST_ROLE, &hospital.database).await;
    client
        .send_frames(&[raw::close(b'S', "never_prepared"), raw::flush()])
        .await;
    client.read_until(b'3').await;
    // Roles the policy does not name are now denied names (they saw ciphertext).
    let denying = std::fs::read_to_string(write_policy(dir.path(), PHONE_MASKED, ""))
        .unwrap()
        .replace(
            "[default]\nview = \"ciphertext\"",
            "[default]\nview = \"denied\"",
        );
    std::fs::write(dir.path().join("policy.toml"), denying).unwrap();
    assert_eq!(reload(&proxy).await.0, 200);
    let select = raw::query("SELECT last_name FROM patients LIMIT 1");
    client.send_frames(std::slice::from_ref(&select)).await;
    client.read_until(b'Z').await;
    client.send_frames(&[select]).await;
    let second = client.read_until(b'Z').await;
    let errors = raw::errors(&second);
    assert!(
        errors.iter().any(|e| e.contains("42501")),
        "the session did not move: {second:?}"
    );
    proxy.stop().await;
}

/// A session in a failed transaction when the policies are reloaded (pgseal cannot load a
/// catalog inside it) keeps its policies and catalog until the transaction ends: a write
/// through a view over a sealed table right after the `ROLLBACK`, in the same Query or in the
/// next, is still refused, and `ROLLBACK` passes.
#[tokio::test]
async fn a_failed_transaction_across_a_reload_never_writes_through_a_view_unseen() {
    let Reloadable {
        hospital,
        dir: _dir,
        proxy,
        ..
    } = Reloadable::start_after(VIEW_OVER_PATIENTS).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    for round in 0..2 {
        app.simple_query("SELECT 1")
            .await
            .expect("a first statement");
        app.batch_execute("BEGIN").await.unwrap();
        assert!(app.simple_query("SELECT 1/0").await.is_err());
        assert_eq!(reload(&proxy).await.0, 200);
        let name = format!("FailedAcrossReload{round}");
        let text = if round == 0 {
            format!("ROLLBACK; {}", insert_through_view(&name))
        } else {
            // Alone, the ROLLBACK ends the transaction; the write that follows is planned with
            // the catalog loaded after it.
            app.simple_query("ROLLBACK").await.expect("ROLLBACK passes");
            insert_through_view(&name)
        };
        assert!(
            app.simple_query(&text).await.is_err(),
            "a write through the view was accepted: {text}"
        );
        let _ = app.simple_query("ROLLBACK").await;
    }
    let leaked = count_directly(
        &hospital,
        "SELECT count(*) FROM patients WHERE last_name LIKE 'FailedAcross%'",
    )
    .await;
    assert_eq!(leaked, 0, "a write through the view stored plaintext");
    proxy.stop().await;
}
