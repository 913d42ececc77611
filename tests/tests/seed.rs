//! `pgseal seed` against the harness's PostgreSQL cluster: the hospital schema loaded into fresh
//! databases, patients written straight into PostgreSQL and through pgseal, and checked row by
//! row (NIRs valid and consistent, contacts well-formed, consultations coded), reproducible for
//! a seed, and the command line's errors clear.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgseal::seed::{ConsultationRange, SeedError, SeedOptions, seed};
use pgseal_tests::cluster::free_port;
use pgseal_tests::{TestProxy, cluster, pgseal_binary};

fn hospital_sql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/hospital.sql")
}

/// A fresh database with the hospital schema.
fn hospital_database(prefix: &str) -> String {
    let cluster = cluster();
    let db = cluster.create_database(prefix);
    let output = cluster
        .psql(&db)
        .arg("-f")
        .arg(hospital_sql())
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "loading hospital.sql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    db
}

fn options(patients: u64, seed: u64) -> SeedOptions {
    SeedOptions {
        patients,
        seed,
        ..SeedOptions::default()
    }
}

/// Seeds `database` straight into PostgreSQL.
async fn seed_directly(database: &str, options: &SeedOptions) -> pgseal::seed::SeedReport {
    let client = cluster().connect(database).await;
    seed(&client, options, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("seeding {database}: {e}"))
}

/// A digest of every row of both tables, in id order.
async fn digest(database: &str) -> (String, String) {
    let client = cluster().connect(database).await;
    let patients: String = client
        .query_one(
            "SELECT md5(string_agg(p::text, E'\\n' ORDER BY id)) FROM public.patients p",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let consultations: String = client
        .query_one(
            "SELECT md5(string_agg(c::text, E'\\n' ORDER BY id)) FROM public.consultations c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (patients, consultations)
}

async fn count(database: &str, table: &str) -> i64 {
    let client = cluster().connect(database).await;
    client
        .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

fn is_cim10(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && match &b[3..] {
            [] => true,
            [b'.', d] => d.is_ascii_digit(),
            _ => false,
        }
}

fn is_phone(phone: &str) -> bool {
    let pairs: Vec<&str> = phone.split(' ').collect();
    phone.starts_with('0')
        && pairs.len() == 5
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && ["exemple.fr", "example.org", "example.com", "example.net"].contains(&domain)
}

/// The department a postal code belongs to, as the NIR writes it (`2A`/`2B` both start `20`).
fn postal_department(postal_code: &str) -> &str {
    if postal_code.starts_with("97") {
        &postal_code[..3]
    } else {
        &postal_code[..2]
    }
}

#[tokio::test]
async fn seeded_patients_are_well_formed() {
    let db = hospital_database("seed_rows");
    let client = cluster().connect(&db).await;
    let mut calls = Vec::new();
    let report = seed(&client, &options(2000, 2024), |done, total| {
        calls.push((done, total))
    })
    .await
    .unwrap();
    assert_eq!(report.patients, 2000);
    assert_eq!(calls.first(), Some(&(0, 2000)));
    assert_eq!(calls.last(), Some(&(2000, 2000)));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");

    let patients = client
        .query(
            "SELECT id, nir, sex, birth_date, email, phone, postal_code, city, first_name, \
             last_name, address FROM public.patients ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(patients.len(), 2000);
    let mut born_in_department = 0;
    let mut with_email = 0;
    for row in &patients {
        let nir: String = row.get("nir");
        let sex: String = row.get("sex");
        let birth: String = row.get("birth_date");
        pgseal_keys::validate_nir(&nir).unwrap_or_else(|e| panic!("{nir}: {e}"));
        let expected_sex = match sex.as_str() {
            "M" => "1",
            "F" => "2",
            other => panic!("sex {other:?}"),
        };
        assert_eq!(&nir[..1], expected_sex, "{nir} {sex}");
        // birth_date is text in the hospital schema: the date's ISO form.
        assert_eq!(birth.len(), 10, "{birth}");
        assert_eq!(&nir[1..3], &birth[2..4], "{nir} born {birth}");
        assert_eq!(&nir[3..5], &birth[5..7], "{nir} born {birth}");
        let postal: String = row.get("postal_code");
        assert!(
            postal.len() == 5 && postal.bytes().all(|b| b.is_ascii_digit()),
            "{postal}"
        );
        let place = &nir[5..];
        let department = postal_department(&postal);
        let corsica = department == "20" && (place.starts_with("2A") || place.starts_with("2B"));
        if place.starts_with(department) || corsica {
            born_in_department += 1;
        }
        if let Some(email) = row.get::<_, Option<String>>("email") {
            with_email += 1;
            assert!(is_email(&email), "{email}");
        }
        if let Some(phone) = row.get::<_, Option<String>>("phone") {
            assert!(is_phone(&phone), "{phone}");
        }
        for column in ["city", "first_name", "last_name", "address"] {
            let value: String = row.get(column);
            assert!(!value.trim().is_empty(), "{column} empty");
        }
    }
    // Three in four are born in their department of residence; the rest moved or were born
    // abroad.
    assert!(
        (1300..1750).contains(&born_in_department),
        "{born_in_department} of 2000 born in their department"
    );
    assert!(with_email > 1400, "{with_email} e-mail addresses");

    let unique: i64 = client
        .query_one("SELECT count(DISTINCT nir) FROM public.patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unique, 2000);

    let consultations = client
        .query(
            "SELECT c.diagnosis_code, c.notes, c.prescription, c.seen_at >= p.birth_date::date \
             AND c.seen_at < '2025-01-01' AND c.seen_at >= '2015-01-01', \
             extract(isodow FROM c.seen_at AT TIME ZONE 'Europe/Paris')::int \
             FROM public.consultations c JOIN public.patients p ON p.id = c.patient_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(consultations.len() as u64, report.consultations);
    // 0 to 5 per patient: 2.5 on average.
    let average = report.consultations as f64 / 2000.0;
    assert!(
        (2.2..2.8).contains(&average),
        "{average} consultations per patient"
    );
    let mut accented = 0;
    let mut sundays = 0;
    for row in &consultations {
        let code: String = row.get(0);
        let notes: String = row.get(1);
        let prescription: Option<String> = row.get(2);
        let in_range: bool = row.get(3);
        let weekday: i32 = row.get(4);
        assert!(is_cim10(&code), "{code}");
        assert!(!notes.is_empty());
        assert!(!notes.contains('{') && !notes.contains('}'), "{notes}");
        assert!(prescription.is_none_or(|p| !p.is_empty() && !p.contains('{')));
        assert!(in_range, "a consultation before birth or outside 2015-2024");
        if weekday == 7 {
            sundays += 1;
        }
        if notes.contains(['é', 'è', 'à', 'ô', 'ê']) {
            accented += 1;
        }
    }
    // Surgeries are closed on Sundays (overseas hours fall on the same day in Paris too).
    assert_eq!(sundays, 0, "consultations on a Sunday");
    assert!(
        accented > consultations.len() / 2,
        "French notes carry accents"
    );
    let orphans: i64 = client
        .query_one(
            "SELECT count(*) FROM public.consultations c \
             WHERE NOT EXISTS (SELECT FROM public.patients p WHERE p.id = c.patient_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_rows_whatever_the_batch_size_or_path() {
    let first = hospital_database("seed_same_a");
    let second = hospital_database("seed_same_b");
    let through_pgseal = hospital_database("seed_same_proxy");
    let other_seed = hospital_database("seed_other");

    seed_directly(&first, &options(600, 7)).await;
    let small_batches = SeedOptions {
        batch_size: 137,
        ..options(600, 7)
    };
    seed_directly(&second, &small_batches).await;
    let proxy = TestProxy::start(cluster()).await;
    let client = proxy.connect(cluster(), &through_pgseal).await;
    seed(&client, &options(600, 7), |_, _| {}).await.unwrap();
    drop(client);
    proxy.stop().await;
    seed_directly(&other_seed, &options(600, 8)).await;

    let reference = digest(&first).await;
    assert_eq!(
        digest(&second).await,
        reference,
        "batch size changed the data"
    );
    assert_eq!(
        digest(&through_pgseal).await,
        reference,
        "through pgseal (passthrough) changed the data"
    );
    let other = digest(&other_seed).await;
    assert_ne!(other.0, reference.0);
    assert_ne!(other.1, reference.1);
}

#[tokio::test]
async fn seeding_a_seed_twice_is_refused_and_leaves_the_batch_out() {
    let db = hospital_database("seed_twice");
    let first = seed_directly(&db, &options(300, 11)).await;
    let client = cluster().connect(&db).await;
    let err = seed(&client, &options(300, 11), |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, SeedError::AlreadySeeded(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("--seed"), "{message}");
    assert_eq!(count(&db, "patients").await, 300);
    assert_eq!(
        count(&db, "consultations").await as u64,
        first.consultations
    );
    // Another seed adds to the same tables.
    seed(&client, &options(100, 12), |_, _| {}).await.unwrap();
    assert_eq!(count(&db, "patients").await, 400);
}

#[tokio::test]
async fn a_database_without_the_schema_is_named_as_such() {
    let db = cluster().create_database("seed_no_schema");
    let client = cluster().connect(&db).await;
    let err = seed(&client, &options(10, 1), |_, _| {}).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SeedError::MissingTables(_)), "{err:?}");
    assert!(
        message.contains("public.patients") && message.contains("hospital.sql"),
        "{message}"
    );

    client
        .batch_execute(
            "CREATE TABLE public.patients (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, nir text);
             CREATE TABLE public.consultations (id bigint);",
        )
        .await
        .unwrap();
    let err = seed(&client, &options(10, 1), |_, _| {}).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SeedError::MissingColumns { .. }), "{err:?}");
    assert!(message.contains("last_name"), "{message}");
}

#[tokio::test]
async fn the_application_role_has_the_privileges_seeding_needs() {
    // docker/compose.yml seeds as ehr_app (through pgseal): its grants in hospital.sql must do.
    let db = hospital_database("seed_as_app");
    let cluster = cluster();
    let url = format!(
        "postgres://ehr_app:ehr_app@{}:{}/{db}",
        cluster.host(),
        cluster.port()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect as ehr_app");
    tokio::spawn(connection);
    let report = seed(&client, &options(100, 3), |_, _| {}).await.unwrap();
    assert_eq!(report.patients, 100);
    assert_eq!(count(&db, "patients").await, 100);
}

#[tokio::test]
async fn exact_consultation_counts() {
    let db = hospital_database("seed_exact");
    let options = SeedOptions {
        consultations: ConsultationRange { min: 3, max: 3 },
        ..options(250, 5)
    };
    let report = seed_directly(&db, &options).await;
    assert_eq!(report.consultations, 750);
    assert_eq!(count(&db, "consultations").await, 750);
}

fn run_seed(args: &[&str]) -> Output {
    Command::new(pgseal_binary())
        .arg("seed")
        .args(args)
        .output()
        .expect("run pgseal seed")
}

#[test]
fn the_command_line_seeds_and_reports() {
    let db = hospital_database("seed_cli");
    let url = cluster().url(&db);
    let output = run_seed(&[
        "--database-url",
        &url,
        "--patients",
        "500",
        "--consultations-per-patient",
        "2",
        "--seed",
        "99",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("wrote 500 patients and 1,000 consultations"),
        "{stdout}"
    );
    assert!(stdout.contains("rows/s"), "{stdout}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(runtime.block_on(count(&db, "patients")), 500);
    assert_eq!(runtime.block_on(count(&db, "consultations")), 1000);
}

#[test]
fn the_command_line_says_when_the_database_is_unreachable() {
    let port = free_port().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let output = run_seed(&["--database-url", &url, "--patients", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
}

#[test]
fn the_command_line_says_when_the_schema_is_missing() {
    let db = cluster().create_database("seed_cli_empty");
    let output = run_seed(&["--database-url", &cluster().url(&db), "--patients", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no table public.patients") && stderr.contains("hospital.sql"),
        "{stderr}"
    );
}

#[test]
fn the_command_line_refuses_bad_arguments() {
    let output = run_seed(&["--database-url", "port=notanumber", "--patients", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid --database-url"), "{stderr}");

    let output = run_seed(&[
        "--database-url",
        "host=127.0.0.1",
        "--patients",
        "10",
        "--batch-size",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("batch size"), "{stderr}");

    let output = run_seed(&[
        "--database-url",
        "host=127.0.0.1",
        "--patients",
        "10",
        "--consultations-per-patient",
        "5-2",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap's usage error: {stderr}"
    );
    assert!(stderr.contains("minimum is above the maximum"), "{stderr}");
}
