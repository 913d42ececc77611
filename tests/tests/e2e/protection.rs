//! Field protection end to end on the hospital example: what ehr_app writes through pgseal is
//! sealed in the database, reads back exactly, and can be looked up; ehr_billing sees masks and
//! is refused clinical notes; ehr_admin sees only ciphertext and tokens; operations impossible
//! on sealed values are refused; the session stays usable after every refusal.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt, pin_mut};
use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use time::macros::date;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A well-formed NIR from its 13-character body (control key = 97 − body mod 97).
fn nir(body: &str) -> String {
    let number: u64 = body.parse().expect("a numeric NIR body");
    format!("{body}{:02}", 97 - number % 97)
}

const INSERT_PATIENT: &str = "INSERT INTO patients (nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";

struct Patient {
    nir: String,
    last_name: &'static str,
    first_name: &'static str,
    birth_date: time::Date,
    email: &'static str,
    phone: &'static str,
    address: &'static str,
}

fn patients() -> Vec<Patient> {
    vec![
        Patient {
            nir: nir("1850575123456"),
            last_name: "Lefèvre",
            first_name: "Éloïse",
            birth_date: date!(1985 - 05 - 17),
            email: "eloise.lefevre@exemple.fr",
            phone: "06 12 34 56 78",
            address: "12 rue des Lilas",
        },
        Patient {
            nir: nir("2921269012345"),
            last_name: "N'Diaye",
            first_name: "Awa",
            birth_date: date!(1992 - 12 - 03),
            email: "awa.ndiaye@exemple.fr",
            phone: "07 98 76 54 32",
            address: "3 place Bellecour",
        },
    ]
}

/// Inserts the patients as ehr_app with typed, binary parameters (tokio-postgres).
/// The example patients, and a consultation of the first (a diagnosis code, notes and a
/// prescription); returns the patients' ids.
pub(crate) async fn insert_patients_and_a_consultation(app: &Client) -> Vec<i64> {
    let ids = insert_patients(app).await;
    app.execute(
        "INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes, prescription) VALUES ($1, now(), $2, $3, $4)",
        &[&ids[0], &"E11.9", &"Diabète de type 2 équilibré", &"Metformine 1000 mg x2/j"],
    )
    .await
    .unwrap();
    ids
}

/// Adds `copies` copies of every patient, made directly (the same ciphertext opens): many
/// rows without sealing each, for reads over a large table. Drops the NIR's uniqueness.
pub(crate) async fn copy_patients(direct: &Client, copies: u32) {
    copy_patients_from(
        direct,
        &format!("FROM patients, generate_series(1, {copies})"),
    )
    .await;
}

/// Adds copies of the patients `from` (the tail of a `SELECT`, its `FROM` first) selects,
/// made directly, then analyses the table. Drops the NIR's uniqueness.
pub(crate) async fn copy_patients_from(direct: &Client, from: &str) {
    direct
        .batch_execute(&format!(
            "ALTER TABLE patients DROP CONSTRAINT patients_nir_key;
             INSERT INTO patients (nir, last_name, first_name, birth_date, sex, email, phone,
                                   address, postal_code, city, gp_name)
             SELECT nir, last_name, first_name, birth_date, sex, email, phone, address,
                    postal_code, city, gp_name
             {from};
             ANALYZE patients"
        ))
        .await
        .unwrap();
}

pub(crate) async fn insert_patients(app: &Client) -> Vec<i64> {
    let statement = app
        .prepare(INSERT_PATIENT)
        .await
        .expect("prepare the insert");
    // pgseal reports the declared plaintext types, so the driver encodes a date as a date.
    assert_eq!(statement.params()[3], Type::DATE);
    let mut ids = Vec::new();
    for p in patients() {
        let row = app
            .query_one(
                &statement,
                &[
                    &p.nir,
                    &p.last_name,
                    &p.first_name,
                    &p.birth_date,
                    &"F",
                    &p.email,
                    &p.phone,
                    &p.address,
                    &"75011",
                    &"Paris",
                    &"Dr Martin",
                ],
            )
            .await
            .expect("insert a patient");
        ids.push(row.get(0));
    }
    ids
}

async fn sealed_copy(hospital: &Hospital) -> Vec<tokio_postgres::Row> {
    let admin = cluster().connect(&hospital.database).await;
    admin
        .query("SELECT nir, last_name, first_name, birth_date, email, phone, address, city FROM patients ORDER BY id", &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn the_application_writes_sealed_values_and_reads_them_back() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients(&app).await;

    // Straight from the database (bypassing pgseal): nothing readable.
    for (row, p) in sealed_copy(&hospital).await.iter().zip(patients()) {
        let stored_nir: String = row.get(0);
        assert_ne!(stored_nir, p.nir, "the NIR is stored in clear");
        assert_eq!(stored_nir.len(), 15, "the NIR token keeps its shape");
        for column in 1..=6 {
            let stored: String = row.get(column);
            assert!(
                stored.starts_with("pgs1:"),
                "column {column} is not sealed: {stored}"
            );
        }
        assert_eq!(
            row.get::<_, String>(7),
            "Paris",
            "unsealed columns stay as they are"
        );
    }

    // Through pgseal, the application reads everything back, typed (binary results).
    let rows = app
        .query("SELECT nir, last_name, first_name, birth_date, email, phone, address FROM patients ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (row, p) in rows.iter().zip(patients()) {
        assert_eq!(row.get::<_, String>(0), p.nir);
        assert_eq!(row.get::<_, String>(1), p.last_name);
        assert_eq!(row.get::<_, String>(2), p.first_name);
        assert_eq!(row.get::<_, time::Date>(3), p.birth_date);
        assert_eq!(row.get::<_, String>(4), p.email);
        assert_eq!(row.get::<_, String>(5), p.phone);
        assert_eq!(row.get::<_, String>(6), p.address);
    }

    // And in text, through the simple protocol.
    let messages = app
        .simple_query("SELECT last_name, birth_date FROM patients ORDER BY id")
        .await
        .unwrap();
    let first = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some((
            row.get(0).unwrap().to_string(),
            row.get(1).unwrap().to_string(),
        )),
        _ => None,
    });
    assert_eq!(
        first,
        Some(("Lefèvre".to_string(), "1985-05-17".to_string()))
    );
    proxy.stop().await;
}

#[tokio::test]
async fn lookups_by_nir_email_and_name_match_and_literals_are_sealed() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients(&app).await;
    let awa = &patients()[1];

    let by_nir = app
        .query_one(
            "SELECT first_name FROM patients WHERE nir = $1",
            &[&awa.nir],
        )
        .await
        .unwrap();
    assert_eq!(by_nir.get::<_, String>(0), "Awa");
    let by_email = app
        .query(
            "SELECT nir FROM patients WHERE email IN ($1, $2)",
            &[&awa.email, &"nobody@exemple.fr"],
        )
        .await
        .unwrap();
    assert_eq!(by_email.len(), 1);
    assert_eq!(by_email[0].get::<_, String>(0), awa.nir);

    // Literals in the simple protocol are sealed in place, for writes and lookups alike.
    app.simple_query(&format!(
        "INSERT INTO patients (nir, last_name, first_name, birth_date, email) VALUES ('{}', 'Martin', 'Paul', '1970-01-31', 'paul.martin@exemple.fr')",
        nir("1700175001001")
    ))
    .await
    .unwrap();
    let messages = app
        .simple_query("SELECT first_name, birth_date FROM patients WHERE last_name = 'Martin' AND email = 'paul.martin@exemple.fr'")
        .await
        .unwrap();
    let found: Vec<(String, String)> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((row.get(0).unwrap().into(), row.get(1).unwrap().into()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(found, vec![("Paul".to_string(), "1970-01-31".to_string())]);

    // Counting by a deterministic column works as it is.
    let by_name = app
        .query_one("SELECT count(DISTINCT last_name) FROM patients", &[])
        .await
        .unwrap();
    assert_eq!(by_name.get::<_, i64>(0), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn each_role_sees_its_own_view() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let ids = insert_patients_and_a_consultation(&app).await;

    let billing = hospital.connect(&proxy, "ehr_billing").await;
    let row = billing
        .query_one(
            "SELECT nir, last_name, email, phone, birth_date FROM patients WHERE id = $1",
            &[&ids[0]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1 85 05 ** *** *** **");
    assert_eq!(row.get::<_, String>(1), "L.");
    assert_eq!(row.get::<_, String>(2), "e***@exemple.fr");
    assert_eq!(row.get::<_, String>(3), "06 ** ** ** 78");
    assert_eq!(row.get::<_, String>(4), "1985");
    let code = billing
        .query_one("SELECT diagnosis_code FROM consultations", &[])
        .await
        .unwrap();
    assert_eq!(code.get::<_, String>(0), "E11.9");
    // Notes are denied, whether named or through *.
    for sql in [
        "SELECT notes FROM consultations",
        "SELECT * FROM consultations",
        "SELECT c.* FROM consultations c",
    ] {
        let error = billing.query(sql, &[]).await.unwrap_err();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("42501"),
            "{sql}: {error}"
        );
    }
    assert_eq!(
        billing
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    let admin = hospital.connect(&proxy, "ehr_admin").await;
    let rows = admin.query("SELECT nir, last_name, notes FROM patients JOIN consultations ON patient_id = patients.id", &[]).await.unwrap();
    let nir_token: String = rows[0].get(0);
    assert_ne!(nir_token, patients()[0].nir);
    assert!(rows[0].get::<_, String>(1).starts_with("pgs1:"));
    assert!(rows[0].get::<_, String>(2).starts_with("pgs1:"));
    proxy.stop().await;
}

#[tokio::test]
async fn impossible_operations_are_refused_and_the_session_goes_on() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients(&app).await;
    for sql in [
        // Sorts, patterns and ranges pgseal evaluates itself (e2e/evaluation.rs); what it
        // cannot compute on sealed values is refused.
        "SELECT id FROM patients ORDER BY length(last_name)",
        "SELECT id FROM patients WHERE last_name SIMILAR TO 'Lef%'",
        "SELECT id FROM patients WHERE birth_date > '1980-01-01'::date + 1",
        "SELECT upper(first_name) FROM patients",
        "SELECT id FROM patients WHERE length(address) = 16",
    ] {
        let error = app.query(sql, &[]).await.unwrap_err();
        let db_error = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(
            db_error.code().code(),
            "0A000",
            "{sql}: {}",
            db_error.message()
        );
        let error = app.simple_query(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("0A000"),
            "{sql} (simple)"
        );
    }
    // A value that cannot be sealed (not a NIR) is refused, never stored in clear.
    let error = app
        .execute("INSERT INTO patients (nir) VALUES ($1)", &[&"not a nir"])
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22P02"), "{error:?}");
    // A pipeline holding a refused statement: the others succeed, the connection stays in step.
    let statement = app.prepare("SELECT count(*) FROM patients").await.unwrap();
    let (ok, refused, ok_again) = tokio::join!(
        app.query_one(&statement, &[]),
        app.query("SELECT id FROM patients ORDER BY length(nir)", &[]),
        app.query_one(&statement, &[]),
    );
    assert_eq!(ok.unwrap().get::<_, i64>(0), 2);
    assert_eq!(refused.unwrap_err().code().map(|c| c.code()), Some("0A000"));
    assert_eq!(ok_again.unwrap().get::<_, i64>(0), 2);
    // Nothing plaintext reached the table.
    let stored = sealed_copy(&hospital).await;
    assert_eq!(stored.len(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn copy_in_seals_and_copy_out_renders_each_view() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;

    // The support account's COPY of a table gets ciphertext (two rows: its export budget is
    // small, and this is not a budget test).
    insert_patients(&app).await;
    let admin = hospital.connect(&proxy, "ehr_admin").await;
    let out = admin
        .copy_out("COPY patients (last_name) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let text = String::from_utf8(chunks.concat()).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.starts_with("pgs1:")));
    app.execute("DELETE FROM patients", &[]).await.unwrap();

    let sink = app
        .copy_in("COPY patients (nir, last_name, first_name, birth_date, email) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    let mut expected = Vec::new();
    for i in 0..500u64 {
        let nir = nir(&format!(
            "{}{:02}0175{:06}",
            1 + i % 2,
            50 + i % 40,
            100_001 + i
        ));
        let line = format!(
            "{nir}\tDupont-{i}\tJean\\tLuc\t1960-01-{:02}\tjean{i}@exemple.fr\n",
            1 + i % 28
        );
        expected.push((nir, format!("Dupont-{i}"), "Jean\tLuc".to_string()));
        sink.send(Bytes::from(line)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 500);

    let csv = app
        .copy_in("COPY patients (nir, last_name, first_name) FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    pin_mut!(csv);
    csv.send(Bytes::from(format!(
        "{},\"O'Brien, \"\"Jr\"\"\",Seán\n",
        nir("1990175120001")
    )))
    .await
    .unwrap();
    assert_eq!(csv.finish().await.unwrap(), 1);

    for row in sealed_copy(&hospital).await {
        assert!(row.get::<_, String>(1).starts_with("pgs1:"));
    }
    let found = app
        .query_one(
            "SELECT first_name FROM patients WHERE last_name = $1",
            &[&"O'Brien, \"Jr\""],
        )
        .await
        .unwrap();
    assert_eq!(found.get::<_, String>(0), "Seán");

    let out = app
        .copy_out("COPY patients (nir, last_name, first_name) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let text = String::from_utf8(chunks.concat()).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!("{}\t{}\tJean\\tLuc", expected[0].0, expected[0].1)
    );

    proxy.stop().await;
}

#[tokio::test]
async fn a_direct_dump_holds_no_plaintext_after_a_mixed_workload() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let ids = insert_patients(&app).await;
    // Upsert and UPDATE with parameters and literals.
    app.execute(
        "INSERT INTO patients (nir, last_name, email) VALUES ($1, $2, $3) ON CONFLICT (nir) DO UPDATE SET email = EXCLUDED.email",
        &[&patients()[0].nir, &"Lefèvre", &"eloise.l@exemple.fr"],
    )
    .await
    .unwrap();
    app.simple_query(&format!(
        "UPDATE patients SET phone = '0611223344', address = '8 quai Saint-Vincent' WHERE id = {}",
        ids[1]
    ))
    .await
    .unwrap();
    // Several sessions at once.
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = hospital.connect(&proxy, "ehr_app").await;
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let body = format!("1{:02}0175{:06}", 60 + w, 200_001 + i);
                client
                    .execute(
                        "INSERT INTO patients (nir, last_name, email) VALUES ($1, $2, $3)",
                        &[
                            &nir(&body),
                            &format!("Concurrent{w}x{i}"),
                            &format!("c{w}.{i}@exemple.fr"),
                        ],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let email: String = app
        .query_one("SELECT email FROM patients WHERE id = $1", &[&ids[0]])
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "eloise.l@exemple.fr");

    let dump = std::process::Command::new(cluster.client_program("pg_dump"))
        .env("PGPASSWORD", cluster.superuser_password())
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "--data-only",
            &hospital.database,
        ])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    let mut plaintexts: Vec<String> = Vec::new();
    for p in patients() {
        plaintexts.extend([
            p.nir.clone(),
            p.last_name.into(),
            p.first_name.into(),
            p.email.into(),
            p.phone.into(),
            p.address.into(),
            "1985-05-17".into(),
        ]);
    }
    plaintexts.extend([
        "0611223344".into(),
        "8 quai Saint-Vincent".into(),
        "eloise.l@exemple.fr".into(),
        "Concurrent0x1".into(),
    ]);
    assert!(dump.contains("pgs1:"));
    // Envelopes are base64: a short name ("Awa") can appear inside one by chance.
    let outside_envelopes = without_envelopes(&dump);
    for plaintext in plaintexts {
        assert!(
            !outside_envelopes.contains(&plaintext),
            "the dump holds {plaintext:?}"
        );
    }
    proxy.stop().await;
}

/// A text with every `pgs1:` armored envelope (URL-safe base64 after the prefix) cut out.
fn without_envelopes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("pgs1:") {
        out.push_str(&rest[..at]);
        let body = &rest[at + "pgs1:".len()..];
        let end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(body.len());
        out.push(' ');
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn psql_through_pgseal_reads_plaintext_as_ehr_app() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients(&app).await;
    let port = proxy.port();
    let database = hospital.database.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(cluster.client_program("psql"))
            .env("PGPASSWORD", "ehr_app")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "ehr_app",
                "-d",
                &database,
            ])
            .args([
                "-c",
                "SELECT first_name || ' ' FROM patients LIMIT 0",
                "-c",
                "SELECT last_name, birth_date FROM patients WHERE email = 'awa.ndiaye@exemple.fr'",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    // The first command is refused (an expression over a sealed column), the second answers.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("N'Diaye|1992-12-03"),
        "{stdout} / {}",
        String::from_utf8_lossy(&output.stderr)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn after_a_key_rotation_old_and_new_values_read_and_match() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    insert_patients(&app).await;
    proxy.stop().await;

    let mut keyring = pgseal_keys::KeyringFile::load(&hospital.keyring).unwrap();
    keyring.rotate().unwrap();
    keyring.write_replace(&hospital.keyring).unwrap();

    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let new_nir = nir("2880113055002");
    app.execute(
        "INSERT INTO patients (nir, last_name, email) VALUES ($1, $2, $3)",
        &[&new_nir, &"Lefèvre", &"new.lefevre@exemple.fr"],
    )
    .await
    .unwrap();
    // Old values (key version 1) and new ones (version 2) read back.
    let rows = app
        .query("SELECT nir, last_name FROM patients ORDER BY id", &[])
        .await
        .unwrap();
    let read: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    assert_eq!(
        read,
        vec![
            patients()[0].nir.clone(),
            patients()[1].nir.clone(),
            new_nir.clone()
        ]
    );
    // A name sealed under both versions matches under both, with a parameter or a literal.
    let both = app
        .query(
            "SELECT id FROM patients WHERE last_name = $1",
            &[&"Lefèvre"],
        )
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    let messages = app
        .simple_query("SELECT id FROM patients WHERE last_name = 'Lefèvre'")
        .await
        .unwrap();
    assert_eq!(
        messages
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count(),
        2
    );
    let listed = app
        .simple_query("SELECT id FROM patients WHERE email IN ('eloise.lefevre@exemple.fr', 'new.lefevre@exemple.fr')")
        .await
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count(),
        2
    );
    let others = app
        .query(
            "SELECT id FROM patients WHERE last_name <> $1",
            &[&"Lefèvre"],
        )
        .await
        .unwrap();
    assert_eq!(others.len(), 1);
    // NIR tokens keep their meaning across the rotation.
    let by_nir = app
        .query_one(
            "SELECT first_name FROM patients WHERE nir = $1",
            &[&patients()[0].nir],
        )
        .await
        .unwrap();
    assert_eq!(by_nir.get::<_, String>(0), "Éloïse");
    proxy.stop().await;
}

#[tokio::test]
async fn statements_pgseal_cannot_analyse_are_refused_when_they_mention_sealed_tables() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    // PostgreSQL runs it; sqlparser cannot parse it; it names no sealed table and runs no code.
    let unparseable_elsewhere = "SELECT 1 WINDOW w AS ()";
    let unparseable_sealed = "SELECT last_name FROM ROWS FROM (generate_series(1, 2)), patients";
    let code = "DO $$ BEGIN PERFORM 1; END $$";

    // The default refuses whatever it cannot analyse.
    let refusing = hospital.proxy(cluster).await;
    let app = hospital.connect(&refusing, "ehr_app").await;
    for sql in [unparseable_elsewhere, unparseable_sealed, code] {
        let error = app
            .batch_execute(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} was not refused"));
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("0A000"),
            "{sql}: {error:?}"
        );
    }
    assert_eq!(
        app.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    refusing.stop().await;

    // --unanalysable forward lets through only what names no sealed table and runs no code.
    let forwarding = hospital
        .proxy_with(cluster, |c| {
            c.unanalysable = pgseal::protect::Unanalysable::Forward
        })
        .await;
    let app = hospital.connect(&forwarding, "ehr_app").await;
    app.batch_execute(unparseable_elsewhere)
        .await
        .expect("forwarded");
    for sql in [unparseable_sealed, code] {
        let error = app.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("0A000"),
            "{sql}: {error:?}"
        );
    }
    forwarding.stop().await;
}

#[tokio::test]
async fn a_value_that_fails_to_open_ends_the_result_at_its_row_and_the_session_goes_on() {
    use pgseal::seed::{ConsultationRange, SeedOptions, seed};
    const PATIENTS: i64 = 1500;
    const TAMPERED: i64 = 1000;
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    // Written through pgseal, in multi-row INSERTs whose parameters are sealed on several
    // threads.
    seed(
        &app,
        &SeedOptions {
            patients: PATIENTS as u64,
            consultations: ConsultationRange { min: 0, max: 0 },
            ..SeedOptions::default()
        },
        |_, _| {},
    )
    .await
    .expect("seed through pgseal");
    // Two sealed columns per row: in the tampered row the first name opens, and is written into
    // the outgoing row, before the last name fails; that half row must not reach the client.
    const READ: &str = "SELECT first_name, last_name FROM patients ORDER BY id";
    let plaintext: Vec<(String, String)> = app
        .query(READ, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(plaintext.len(), PATIENTS as usize);
    assert!(
        plaintext
            .iter()
            .all(|(first, last)| !first.starts_with("pgs1:") && !last.starts_with("pgs1:"))
    );

    // A first name's envelope put in place of a last name, bypassing pgseal: another key
    // domain, so it does not open as a last name.
    let admin = cluster.connect(&hospital.database).await;
    let tampered_id: i64 = admin
        .query_one(
            "SELECT id FROM patients ORDER BY id OFFSET $1 LIMIT 1",
            &[&(TAMPERED - 1)],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .execute(
            "UPDATE patients SET last_name = first_name WHERE id = $1",
            &[&tampered_id],
        )
        .await
        .unwrap();

    // The rows before it arrive, in order and opened; then the error; nothing after it.
    let rows = app.query_raw(READ, Vec::<String>::new()).await.unwrap();
    pin_mut!(rows);
    let mut received = Vec::new();
    let error = loop {
        match rows.try_next().await {
            Ok(Some(row)) => received.push((row.get::<_, String>(0), row.get::<_, String>(1))),
            Ok(None) => panic!("the tampered value was passed on"),
            Err(e) => break e,
        }
    };
    assert_eq!(received, plaintext[..(TAMPERED - 1) as usize]);
    let db_error = error.as_db_error().expect("pgseal's error");
    assert_eq!(db_error.code().code(), "XX001");
    assert!(
        db_error
            .message()
            .contains("a stored value of public.patients.last_name could not be opened"),
        "{}",
        db_error.message()
    );

    // The session goes on.
    let count: i64 = app
        .query_one(
            "SELECT count(*) FROM patients WHERE id <> $1",
            &[&tampered_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, PATIENTS - 1);
}

#[tokio::test]
async fn a_bad_value_deep_in_a_large_multi_row_insert_refuses_it_whole() {
    const ROWS: usize = 300;
    const BAD_ROW: usize = 250;
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    // 600 sealed parameters: sealed on several threads, the bad one in a later range.
    let values: Vec<String> = (0..ROWS)
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO patients (nir, last_name) VALUES {}",
        values.join(", ")
    );
    let mut params: Vec<String> = Vec::with_capacity(2 * ROWS);
    for i in 0..ROWS {
        let nir = if i == BAD_ROW {
            "not a NIR at all".to_string()
        } else {
            nir(&format!("1850575{:03}{:03}", 100 + i / 999, 1 + i % 999))
        };
        params.push(nir);
        params.push(format!("Patient{i}"));
    }
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let error = app
        .execute(sql.as_str(), &refs)
        .await
        .expect_err("a malformed NIR was accepted");
    let message = error.as_db_error().expect("pgseal's error").message();
    assert!(message.contains("public.patients.nir"), "{message}");
    let count: i64 = app
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "part of a refused INSERT reached the table");

    // The same INSERT with the value corrected goes in whole, and reads back.
    params[2 * BAD_ROW] = nir("2921269012345");
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    assert_eq!(app.execute(sql.as_str(), &refs).await.unwrap(), ROWS as u64);
    let read: Vec<String> =
        pgseal_tests::first_column(&app, "SELECT nir FROM patients ORDER BY id").await;
    let expected: Vec<String> = params.iter().step_by(2).cloned().collect();
    assert_eq!(read, expected);
}
