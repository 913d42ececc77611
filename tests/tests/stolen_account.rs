//! The attack of a stolen account, as a test suite: the support account (`ehr_admin`, which
//! sees ciphertext) and billing (`ehr_billing`, which sees masks) try to learn sealed values
//! through pgseal itself — by writing guesses sealed with the stored values' keys and joining
//! them to the stored rows, by upserts whose conflicts answer "is this NIR a patient?", and by
//! lookups by value. Each must be refused (42501) and leave the session usable; the policy's
//! explicit grants (`blind_writes`, `lookups`) work and stay closed to comparisons.

use std::path::PathBuf;

use pgseal_tests::cluster;
use pgseal_tests::hospital::{Hospital, examples_dir, simple_rows};
use pgseal_tests::proxy::TestProxy;
use tokio_postgres::Client;

/// A well-formed NIR from its 13-character body (control key = 97 − body mod 97).
fn nir(body: &str) -> String {
    let n: u64 = body.parse().unwrap();
    format!("{body}{:02}", 97 - n % 97)
}

/// The hospital with a few patients written by the application through pgseal.
async fn hospital_with_patients(proxy: &TestProxy, hospital: &Hospital) -> Vec<String> {
    let app = hospital.connect(proxy, "ehr_app").await;
    let names = ["Garcia", "Martin", "Bernard", "Garcia"];
    let mut nirs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let nir = nir(&format!("18505750015{i:02}"));
        app.execute(
            "INSERT INTO patients (nir, last_name, first_name, city) VALUES ($1, $2, 'Nadia', 'Paris')",
            &[&nir, name],
        )
        .await
        .unwrap();
        nirs.push(nir);
    }
    nirs
}

/// The SQLSTATE a simple query fails with, or `None` when it succeeds.
async fn sqlstate(client: &Client, sql: &str) -> Option<String> {
    match client.simple_query(sql).await {
        Ok(_) => None,
        Err(e) => Some(e.code().map(|c| c.code().to_string()).unwrap_or_default()),
    }
}

/// The SQLSTATE an extended-protocol statement with text parameters fails with.
async fn sqlstate_extended(client: &Client, sql: &str, params: &[&str]) -> Option<String> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    match client.query(sql, &params).await {
        Ok(_) => None,
        Err(e) => Some(e.code().map(|c| c.code().to_string()).unwrap_or_default()),
    }
}

/// The sealing oracle of the issue, step by step, as ehr_admin: its guesses are never sealed
/// into the table, so the join that would name the matching patients never runs.
#[tokio::test]
async fn the_support_account_cannot_seal_guesses() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let nirs = hospital_with_patients(&proxy, &hospital).await;
    let admin = hospital.connect(&proxy, "ehr_admin").await;

    admin.simple_query("BEGIN").await.unwrap();
    let guess = format!(
        "INSERT INTO patients (nir, last_name, city) VALUES ('{}', 'Garcia', 'G:Garcia')",
        nir("1990175800001")
    );
    assert_eq!(sqlstate(&admin, &guess).await.as_deref(), Some("42501"));
    admin.simple_query("ROLLBACK").await.unwrap();

    // Every way of writing a sealed column, in both protocols.
    let writes = [
        format!(
            "INSERT INTO patients (nir, city) VALUES ('{}', 'x') ON CONFLICT (nir) DO NOTHING",
            nirs[0]
        ),
        "UPDATE patients SET last_name = 'Garcia' WHERE id = 1".to_string(),
        "UPDATE patients SET last_name = first_name WHERE id = 1".to_string(),
        "INSERT INTO consultations (patient_id, seen_at, diagnosis_code) VALUES (1, now(), 'E11.9')"
            .to_string(),
        format!(
            "INSERT INTO patients (nir, city) VALUES ('{}', 'x') ON CONFLICT (nir) DO UPDATE SET city = 'y'",
            nirs[1]
        ),
        "MERGE INTO patients p USING (VALUES (1)) v(id) ON p.id = v.id WHEN MATCHED THEN UPDATE SET last_name = 'Garcia'".to_string(),
    ];
    for write in &writes {
        let refused = sqlstate(&admin, write).await;
        assert!(
            matches!(refused.as_deref(), Some("42501" | "0A000")),
            "{write}: {refused:?}"
        );
    }
    assert_eq!(
        sqlstate_extended(
            &admin,
            "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
            &[&nir("1990175800001"), "Garcia"]
        )
        .await
        .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate_extended(
            &admin,
            "UPDATE patients SET first_name = $1 WHERE id = 1",
            &["Nadia"]
        )
        .await
        .as_deref(),
        Some("42501")
    );
    // COPY into a sealed column.
    let copy = admin
        .copy_in::<_, bytes::Bytes>("COPY patients (nir, last_name) FROM STDIN")
        .await;
    let code = copy
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_string()));
    assert_eq!(code.as_deref(), Some("42501"));

    // Writes that leave sealed columns alone still work, and the session is usable.
    admin
        .simple_query("UPDATE patients SET city = 'Lyon' WHERE id = 1")
        .await
        .unwrap();
    let rows = admin
        .simple_query("SELECT count(*) FROM patients")
        .await
        .unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("4".to_string())]]);
    // Nothing was written: the application reads back exactly its own patients.
    let app = hospital.connect(&proxy, "ehr_app").await;
    let names = app
        .simple_query("SELECT last_name FROM patients ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&names),
        ["Garcia", "Martin", "Bernard", "Garcia"]
            .iter()
            .map(|n| vec![Some(n.to_string())])
            .collect::<Vec<_>>()
    );
    proxy.stop().await;
}

/// Billing sees masked names: a lookup by value would un-mask them one guess at a time. It is
/// refused unless the policy grants it (`lookups`), and ehr_admin's likewise.
#[tokio::test]
async fn masked_and_ciphertext_roles_cannot_look_up_by_value() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let nirs = hospital_with_patients(&proxy, &hospital).await;
    for role in ["ehr_billing", "ehr_admin"] {
        let client = hospital.connect(&proxy, role).await;
        for lookup in [
            "SELECT id FROM patients WHERE last_name = 'Garcia'".to_string(),
            "SELECT id FROM patients WHERE last_name IN ('Garcia', 'Martin')".to_string(),
            "SELECT id FROM patients WHERE last_name <> 'Garcia'".to_string(),
            format!("SELECT id FROM patients WHERE nir = '{}'", nirs[0]),
            "SELECT count(*) FROM consultations WHERE diagnosis_code = 'E11.9'".to_string(),
            "DELETE FROM patients WHERE last_name = 'Garcia'".to_string(),
        ] {
            let refused = sqlstate(&client, &lookup).await;
            // Billing reads diagnosis codes in clear, so it may look them up.
            if role == "ehr_billing" && lookup.contains("diagnosis_code") {
                assert_eq!(refused, None, "{role}: {lookup}");
            } else {
                assert_eq!(refused.as_deref(), Some("42501"), "{role}: {lookup}");
            }
        }
        assert_eq!(
            sqlstate_extended(
                &client,
                "SELECT id FROM patients WHERE first_name = $1",
                &["Nadia"]
            )
            .await
            .as_deref(),
            Some("42501"),
            "{role}"
        );
        // Reading by id still works.
        let rows = client
            .simple_query("SELECT id FROM patients WHERE id = 2")
            .await
            .unwrap();
        assert_eq!(simple_rows(&rows).len(), 1);
    }
    proxy.stop().await;
}

/// The hospital policy with the given text appended to the `[classes.billing]` section, and an
/// `intake` class for `ehr_intake` (a feed that writes patients without reading them).
fn policy_with_grants(dir: &std::path::Path, billing_extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    let marker = "[classes.billing]\nroles = [\"ehr_billing\"]\n";
    assert!(text.contains(marker));
    let mut text = text.replace(marker, &format!("{marker}{billing_extra}\n"));
    text.push_str(
        r#"
[classes.intake]
roles = ["ehr_intake"]
default = "denied"
blind_writes = [
    "public.patients.nir", "public.patients.last_name", "public.patients.first_name",
    "public.patients.birth_date", "public.patients.address",
]

[classes.intake.views]
"public.patients.birth_date" = "ciphertext"
"public.patients.address" = "ciphertext"
"#,
    );
    let path = dir.join("grants.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The intake feed's role, created once for the cluster, with what a feed is granted.
fn create_intake_role(hospital: &Hospital) {
    cluster()
        .run_sql(
            &hospital.database,
            "DO $$ BEGIN CREATE ROLE ehr_intake LOGIN PASSWORD 'ehr_intake'; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
             GRANT SELECT, INSERT, UPDATE ON public.patients TO ehr_intake",
        )
        .expect("create ehr_intake");
}

/// A blind writer stores sealed values (the application reads them back in clear) but never
/// reads, compares, joins or conflicts on the columns it writes; a granted lookup works for
/// the column it names only.
#[tokio::test]
async fn blind_writers_and_granted_lookups() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    create_intake_role(&hospital);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with_grants(dir.path(), "lookups = [\"public.patients.nir\"]");
    let proxy = hospital
        .proxy_with(cluster, move |config| config.policy = Some(policy))
        .await;
    let nirs = hospital_with_patients(&proxy, &hospital).await;

    let intake = hospital.connect(&proxy, "ehr_intake").await;
    let new_nir = nir("2920675800002");
    intake
        .execute(
            "INSERT INTO patients (nir, last_name, first_name, city) VALUES ($1, $2, $3, 'Lille')",
            &[&new_nir, &"Lefèvre", &"Anne"],
        )
        .await
        .expect("a blind writer writes");
    intake
        .simple_query(
            "UPDATE patients SET first_name = 'Anna', birth_date = '1992-06-01' WHERE city = 'Lille'",
        )
        .await
        .expect("and updates");
    // Everything that would compare what it wrote with the stored values is refused.
    for attempt in [
        "SELECT last_name FROM patients".to_string(),
        "SELECT count(DISTINCT last_name) FROM patients".to_string(),
        "SELECT count(*) FROM patients GROUP BY last_name".to_string(),
        "SELECT p.id FROM patients p JOIN patients g ON p.last_name = g.last_name".to_string(),
        "SELECT id FROM patients WHERE last_name = 'Garcia'".to_string(),
        format!(
            "INSERT INTO patients (nir, last_name) VALUES ('{}', 'x') ON CONFLICT (nir) DO NOTHING",
            nirs[0]
        ),
        "INSERT INTO patients (nir, last_name) VALUES ('x', 'y') RETURNING last_name".to_string(),
        "SELECT * FROM patients".to_string(),
    ] {
        let refused = sqlstate(&intake, &attempt).await;
        assert!(
            matches!(refused.as_deref(), Some("42501" | "0A000")),
            "{attempt}: {refused:?}"
        );
    }
    // What it wrote is sealed, and the application reads it in clear.
    let app = hospital.connect(&proxy, "ehr_app").await;
    let row = app
        .simple_query("SELECT last_name, first_name, birth_date FROM patients WHERE city = 'Lille'")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&row),
        vec![vec![
            Some("Lefèvre".to_string()),
            Some("Anna".to_string()),
            Some("1992-06-01".to_string())
        ]]
    );
    let direct = cluster.connect(&hospital.database).await;
    let stored: String = direct
        .query_one("SELECT last_name FROM patients WHERE city = 'Lille'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("pgs1:"), "stored: {stored}");

    // Billing was granted lookups by NIR, and only by NIR.
    let billing = hospital.connect(&proxy, "ehr_billing").await;
    let found = billing
        .simple_query(&format!(
            "SELECT last_name FROM patients WHERE nir = '{}'",
            nirs[1]
        ))
        .await
        .unwrap();
    assert_eq!(simple_rows(&found), vec![vec![Some("M.".to_string())]]);
    assert_eq!(
        sqlstate(
            &billing,
            "SELECT id FROM patients WHERE last_name = 'Martin'"
        )
        .await
        .as_deref(),
        Some("42501")
    );
    proxy.stop().await;
}

/// Aggregates that fold many patients into one value are refused (plain, grouped, window and
/// `ARRAY(SELECT …)` forms), for every role: the budget counts rows, and these would take a
/// whole table out as a handful. Counts still work, and the rows themselves are counted.
#[tokio::test]
async fn folding_patients_into_one_row_is_refused() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    hospital_with_patients(&proxy, &hospital).await;
    for role in ["ehr_admin", "ehr_billing", "ehr_app"] {
        let client = hospital.connect(&proxy, role).await;
        for fold in [
            "SELECT city, array_agg(id) FROM patients GROUP BY city",
            "SELECT array_agg(id) OVER () FROM patients LIMIT 1",
            "SELECT string_agg(city, ',') FROM patients",
            "SELECT ARRAY(SELECT id FROM patients)",
            "SELECT json_agg(c) FROM (SELECT id, city FROM patients) c",
        ] {
            assert_eq!(
                sqlstate(&client, fold).await.as_deref(),
                Some("0A000"),
                "{role}: {fold}"
            );
            assert_eq!(
                sqlstate_extended(&client, fold, &[]).await.as_deref(),
                Some("0A000"),
                "{role} (extended): {fold}"
            );
        }
        let count = client
            .simple_query("SELECT count(*) FROM patients")
            .await
            .unwrap();
        assert_eq!(
            simple_rows(&count),
            vec![vec![Some("4".to_string())]],
            "{role}"
        );
    }
    // Directly on PostgreSQL, the same fold returns every patient in one row: what the
    // refusal stops.
    let direct = cluster.connect(&hospital.database).await;
    let all: String = direct
        .query_one("SELECT string_agg(id::text, ',') FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(all.split(',').count(), 4);
    proxy.stop().await;
}
