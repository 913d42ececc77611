//! Export budgets, end users, the audit trail and the admin endpoint, end to end on the
//! hospital example with budgets small enough to cross in seconds: the support account is
//! paced, then blocked, across sessions and across pgseal instances sharing `--state-url`; its
//! sessions stay usable; the application is held to per-end-user budgets and must name its end
//! users; every access is in an audit trail that `pgseal audit verify` checks.

use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt, pin_mut};
use pgseal_tests::budgets::{BudgetSetup, stream};
use pgseal_tests::{Cluster, cluster, pgseal_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Patients in the database (the scenario: an abused support account trying to export
/// all of them).
const PATIENTS: usize = 10_000;
/// What the application's clinicians read at a time in these tests.
const READ: usize = 100;

async fn setup(cluster: &Cluster) -> BudgetSetup {
    let setup = BudgetSetup::new(cluster);
    let proxy = setup.proxy(cluster, |_| {}).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    app.batch_execute("SET pgseal.end_user = 'seeder'")
        .await
        .unwrap();
    // Sealed on the way in, through pgseal's COPY.
    crate::cursors::seed(&app, PATIENTS as u64, |i| format!("Patient{i}")).await;
    proxy.stop().await;
    setup
}

#[tokio::test]
async fn the_support_account_is_paced_then_blocked_across_sessions_and_instances() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let state_db = cluster.create_database("budget_state");
    let state_url = cluster.url(&state_db);
    let first = setup
        .proxy(cluster, |c| c.state_url = Some(state_url.clone()))
        .await;
    let second = setup
        .proxy(cluster, |c| c.state_url = Some(state_url.clone()))
        .await;

    // Four sessions, two on each instance, each trying to export every patient.
    let mut sessions = Vec::new();
    for proxy in [&first, &second, &first, &second] {
        sessions.push(setup.hospital.connect(proxy, "ehr_admin").await);
    }
    let exports = sessions
        .iter()
        .map(|client| stream(client, "SELECT nir, last_name FROM patients"));
    let results = futures_util::future::join_all(exports).await;
    let total: usize = results.iter().map(|(rows, _)| rows).sum();
    // The hourly cap is 50 rows for the account, whatever the sessions and instances.
    assert!(
        total <= 50,
        "the support account got {total} rows: {results:?}"
    );
    assert!(total >= 20, "not even the burst went through: {results:?}");
    let blocked: Vec<_> = results
        .iter()
        .filter(|(_, state)| state.as_deref() == Some("53400"))
        .collect();
    assert!(!blocked.is_empty(), "no session was blocked: {results:?}");
    for (_, state) in &results {
        assert!(
            matches!(state.as_deref(), None | Some("53400")),
            "{results:?}"
        );
    }
    // The sessions stay usable after a block.
    for client in &sessions {
        assert_eq!(
            client
                .query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
    }
    first.stop().await;
    second.stop().await;

    // The budget survives a restart: a new instance knows the cap is reached.
    let restarted = setup
        .proxy(cluster, |c| c.state_url = Some(state_url.clone()))
        .await;
    let admin = setup.hospital.connect(&restarted, "ehr_admin").await;
    let (rows, state) = stream(&admin, "SELECT nir FROM patients").await;
    assert_eq!((rows, state.as_deref()), (0, Some("53400")));

    // The application is not held by the support account's budget.
    let app = setup.hospital.connect(&restarted, "ehr_app").await;
    let (rows, state) = stream(
        &app,
        "/* pgseal_user='dr.martin' */ SELECT nir, last_name FROM patients WHERE id <= 100",
    )
    .await;
    assert_eq!((rows, state), (READ, None));
    restarted.stop().await;
}

#[tokio::test]
async fn the_application_names_its_end_users_and_each_has_a_budget() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;

    // No end user declared: statements on sealed tables are refused.
    let error = app
        .query("SELECT last_name FROM patients", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("42501"), "{error:?}");
    // Others are not.
    assert_eq!(
        app.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // dr.martin takes 100 rows, then 50 more before his 150-a-day budget blocks him.
    let sql = "/* pgseal_user='dr.martin' */ SELECT last_name FROM patients WHERE id <= 100";
    assert_eq!(stream(&app, sql).await, (READ, None));
    let (rows, state) = stream(&app, sql).await;
    assert_eq!((rows, state.as_deref()), (50, Some("53400")));
    // Through SET, another clinician still has her own budget; SET LOCAL ends with its
    // transaction.
    app.batch_execute("SET pgseal.end_user = 'dr.durand'")
        .await
        .unwrap();
    assert_eq!(
        stream(&app, "SELECT last_name FROM patients WHERE id <= 100").await,
        (READ, None)
    );
    app.batch_execute("RESET pgseal.end_user").await.unwrap();
    app.batch_execute("BEGIN; SET LOCAL pgseal.end_user = 'dr.petit'")
        .await
        .unwrap();
    assert_eq!(
        stream(&app, "SELECT last_name FROM patients WHERE id <= 100").await,
        (READ, None)
    );
    app.batch_execute("COMMIT").await.unwrap();
    let error = app
        .query("SELECT last_name FROM patients", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("42501"));
    proxy.stop().await;
}

#[tokio::test]
async fn every_access_is_in_an_audit_trail_that_detects_tampering() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let (proxy, audit) = setup.audited_proxy(cluster).await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    let read = "/* pgseal_user='dr.martin' */ SELECT nir, last_name FROM patients WHERE id <= 10";
    assert_eq!(stream(&app, read).await, (10, None));
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    assert!(
        admin
            .query("SELECT id FROM patients ORDER BY length(last_name)", &[])
            .await
            .is_err()
    );
    assert_eq!(
        stream(&admin, "SELECT last_name FROM patients WHERE id <= 3").await,
        (3, None)
    );
    assert_eq!(
        app.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    proxy.stop().await;

    let text = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statements: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["role"].is_string()).collect();
    let app_read = statements
        .iter()
        .find(|e| e["role"] == "ehr_app" && e["rows"] == 10)
        .unwrap_or_else(|| panic!("no event for the application's read: {text}"));
    assert_eq!(app_read["end_user"], "dr.martin");
    assert_eq!(app_read["budget"]["decision"], "allow");
    assert!(
        app_read["fingerprint"]
            .as_str()
            .unwrap()
            .contains("patients")
    );
    assert!(
        !text.contains("dr.martin' */"),
        "the fingerprint kept a literal"
    );
    assert!(
        statements
            .iter()
            .any(|e| e["role"] == "ehr_admin" && e["sqlstate"] == "0A000")
    );
    assert!(
        statements
            .iter()
            .any(|e| e["role"] == "ehr_admin" && e["rows"] == 3)
    );
    // No statement without sealed data is recorded.
    assert!(!text.contains("SELECT ? "), "{text}");
    assert!(!statements.iter().any(|e| {
        e["fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("SELECT ?"))
    }));

    let verify = |path: &Path| {
        std::process::Command::new(pgseal_binary())
            .args(["audit", "verify"])
            .arg(path)
            .arg("--keyring")
            .arg(&setup.hospital.keyring)
            .output()
            .unwrap()
    };
    let output = verify(&audit);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let lines: Vec<&str> = text.lines().collect();
    let edited = setup.dir.path().join("edited.jsonl");
    let mut changed = lines.clone();
    let at = lines
        .iter()
        .position(|l| l.contains("\"rows\":10"))
        .expect("the read's event");
    let tampered = lines[at].replace("\"rows\":10", "\"rows\":1");
    changed[at] = &tampered;
    std::fs::write(&edited, changed.join("\n") + "\n").unwrap();
    let output = verify(&edited);
    assert_eq!(output.status.code(), Some(1), "an edited line verified");
    let deleted = setup.dir.path().join("deleted.jsonl");
    let mut shorter = lines.clone();
    shorter.remove(1);
    std::fs::write(&deleted, shorter.join("\n") + "\n").unwrap();
    let output = verify(&deleted);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a deleted line went unnoticed"
    );
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(report.contains("line 2"), "{report}");
}

pub(crate) async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(address, "GET", path, "").await
}

/// One request to the admin endpoint, with `headers` (each line ending in CRLF): its status
/// and body.
pub(crate) async fn http_request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{headers}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn metrics_and_health_are_served_on_the_admin_endpoint() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup
        .proxy(cluster, |c| c.admin_listen = Some("127.0.0.1:0".into()))
        .await;
    let admin_endpoint = proxy.admin_address().expect("the admin endpoint listens");
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    assert_eq!(
        stream(
            &app,
            "/* pgseal_user='dr.martin' */ SELECT last_name FROM patients WHERE id <= 7"
        )
        .await,
        (7, None)
    );
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    let _ = stream(&admin, "SELECT last_name FROM patients").await;

    let (status, body) = http_get(admin_endpoint, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = http_get(admin_endpoint, "/metrics").await;
    assert_eq!(status, 200);
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number in {line}");
        assert!(series.starts_with("pgseal_"), "{line}");
    }
    assert!(
        metrics.contains("pgseal_rows_total{role=\"ehr_app\",view=\"plaintext\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgseal_budget_throttled_rows_total{role=\"ehr_admin\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("pgseal_sessions_active 2"), "{metrics}");
    proxy.stop().await;
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn cursors_and_copy_count_against_the_budget_too() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let proxy = setup.proxy(cluster, |_| {}).await;
    let admin = setup.hospital.connect(&proxy, "ehr_admin").await;
    // A cursor names no sealed table when it is fetched: its rows count all the same.
    admin
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT nir FROM patients")
        .await
        .unwrap();
    let (fetched, state) = stream(&admin, "FETCH 100 FROM c").await;
    assert!(fetched <= 50, "{fetched} rows through a cursor");
    assert_eq!(state.as_deref(), Some("53400"));
    admin.batch_execute("ROLLBACK").await.unwrap();
    // The hourly cap is spent: COPY TO gets nothing more.
    let copied = match admin.copy_out("COPY patients (nir) TO STDOUT").await {
        Ok(out) => {
            pin_mut!(out);
            let mut rows = 0;
            let mut failed = None;
            while let Some(chunk) = out.next().await {
                match chunk {
                    Ok(_) => rows += 1,
                    Err(e) => {
                        failed = e.code().map(|c| c.code().to_string());
                        break;
                    }
                }
            }
            (rows, failed)
        }
        Err(e) => (0, e.code().map(|c| c.code().to_string())),
    };
    assert_eq!(copied, (0, Some("53400".to_string())));
    assert_eq!(
        admin
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    proxy.stop().await;
}

/// With `--audit-table-url`, every line of the trail is also in `pgseal.audit_trail`, byte for
/// byte, so the table verifies like the file.
#[tokio::test]
async fn the_audit_trail_is_copied_to_a_postgresql_table() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let audit = setup.dir.path().join("audit.jsonl");
    let audit_text = audit.to_str().unwrap().to_string();
    let audit_db = cluster.create_database("audit_store");
    let audit_url = cluster.url(&audit_db);
    let proxy = setup
        .proxy(cluster, |c| {
            c.audit = Some(audit_text.clone());
            c.audit_table_url = Some(audit_url.clone());
        })
        .await;
    let app = setup.hospital.connect(&proxy, "ehr_app").await;
    for id in 1..=5 {
        let read =
            format!("/* pgseal_user='dr.martin' */ SELECT nir FROM patients WHERE id = {id}");
        assert_eq!(stream(&app, &read).await, (1, None));
    }
    proxy.stop().await;

    let file: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let store = cluster.connect(&audit_db).await;
    let table: Vec<String> = store
        .query("SELECT line FROM pgseal.audit_trail ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        file.len() >= 6,
        "a start record and five statements: {file:?}"
    );
    assert_eq!(table, file, "the table holds the file's lines");
    let copy = setup.dir.path().join("from-table.jsonl");
    std::fs::write(&copy, table.join("\n") + "\n").unwrap();
    let output = std::process::Command::new(pgseal_binary())
        .args(["audit", "verify"])
        .arg(&copy)
        .arg("--keyring")
        .arg(&setup.hospital.keyring)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An audit table that cannot be reached stops pgseal at startup, naming it; so does one given
/// without the file it copies.
#[tokio::test]
async fn an_unreachable_audit_table_stops_pgseal_at_startup() {
    let cluster = cluster();
    let setup = setup(cluster).await;
    let audit = setup.dir.path().join("audit.jsonl");
    let serve = |extra: &[&str]| {
        std::process::Command::new(pgseal_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("127.0.0.1:{}", cluster.port()))
            .arg("--policy")
            .arg(&setup.policy)
            .arg("--keyring")
            .arg(&setup.hospital.keyring)
            .args(extra)
            .output()
            .unwrap()
    };
    let unreachable = serve(&[
        "--audit",
        audit.to_str().unwrap(),
        "--audit-table-url",
        "postgres://pgseal@127.0.0.1:1/nowhere?connect_timeout=2",
    ]);
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(stderr.contains("audit table"), "{stderr}");
    let alone = serve(&["--audit-table-url", "postgres://pgseal@127.0.0.1:1/nowhere"]);
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success());
    assert!(stderr.contains("give --audit FILE too"), "{stderr}");
}
