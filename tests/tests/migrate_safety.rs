//! `pgseal migrate` where data could be lost: on a small table of visits holding a domain, a
//! `char(n)`, a `date`, free text and digits to tokenize, the real CLI refuses what would store
//! plaintext or seal garbage before changing anything (a column DEFAULT, a value that cannot be
//! sealed once the type has changed), guards the primary key while tokens are rewritten (a row
//! moved past the pass would be tokenized twice), refuses a policy whose mode or key domain
//! differs from what the half-done migration recorded, catches envelopes written after a
//! finished `decrypt`, and gives back the table's original types — the domain and `char(n)`
//! included — with every value equal to the original.

use std::path::Path;

use pgseal_tests::cluster;
use pgseal_tests::migrate::{command, run_ok, run_refused};

/// The visit whose phone number is not digits, so the token pass stops at its batch.
const BAD_PHONE_ROW: i64 = 1_200;

const SCHEMA: &str = "
CREATE DOMAIN public.visit_code AS varchar(8) CHECK (VALUE ~ '^[A-Z0-9]+$');
CREATE TABLE public.visits (
    id       bigint PRIMARY KEY,
    phone    varchar(10),
    code     public.visit_code,
    initials character(3),
    seen     date DEFAULT current_date,
    note     text
);
INSERT INTO public.visits
SELECT i,
       lpad(((i * 7919) % 10000000000)::text, 10, '0'),
       'V' || i,
       chr(65 + i % 26) || chr(65 + (i / 26) % 26) || chr(65 + (i / 676) % 26),
       date '1950-01-01' + (i * 37) % 25000,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || md5(i::text) END
FROM generate_series(1, 1500) AS i;
CREATE TABLE public.visits_original AS SELECT * FROM public.visits;";

fn policy(dir: &Path, name: &str, phone_domain: Option<&str>) -> std::path::PathBuf {
    let domain = phone_domain
        .map(|d| format!("domain = \"{d}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[columns."public.visits.phone"]
mode = "tokenize-digits"
type = "varchar(10)"
migrating = true
{domain}
[columns."public.visits.code"]
mode = "deterministic"
type = "text"
migrating = true

[columns."public.visits.initials"]
mode = "randomized"
type = "text"
migrating = true

[columns."public.visits.seen"]
mode = "randomized"
type = "date"
migrating = true

[columns."public.visits.note"]
mode = "randomized"
type = "text"
migrating = true
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn types(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'public.visits'::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The table's rows as text, in key order, to compare with `visits_original`.
async fn digest(client: &tokio_postgres::Client, table: &str) -> String {
    client
        .query_one(
            &format!("SELECT md5(string_agg(t::text, E'\\n' ORDER BY id)) FROM public.{table} t"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn guarded(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'public.visits'::regclass \
             AND tgname = 'pgseal_migrate_key_guard')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn what_would_lose_or_expose_data_is_refused_guarded_or_caught_and_types_come_back() {
    let cluster = cluster();
    let db = cluster.create_database("migrate_safety");
    let direct = cluster.connect(&db).await;
    direct.batch_execute(SCHEMA).await.unwrap();
    let original_types = types(&direct).await;
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.toml");
    pgseal_keys::KeyringFile::generate()
        .unwrap()
        .write_new(&keyring)
        .unwrap();
    let policy_file = policy(dir.path(), "policy.toml", None);
    let other_domain = policy(dir.path(), "other-domain.toml", Some("elsewhere"));
    let encrypt = |policy: &Path| command(cluster, &db, "encrypt", policy, &keyring, &["--quiet"]);

    // A DEFAULT on a sealed column would be written by PostgreSQL, in plaintext.
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains("public.visits.seen has a DEFAULT"),
        "{refused}"
    );
    assert_eq!(types(&direct).await, original_types);
    direct
        .batch_execute("ALTER TABLE public.visits ALTER COLUMN seen DROP DEFAULT")
        .await
        .unwrap();
    let original_types = types(&direct).await;

    // A date pgseal cannot seal is found before the column's type changes.
    direct
        .batch_execute("UPDATE public.visits SET seen = 'infinity' WHERE id IN (7, 9)")
        .await
        .unwrap();
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains("public.visits: 2 value(s) cannot be sealed, the first at row id = 7")
            && refused.contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(types(&direct).await, original_types);
    direct
        .batch_execute(
            "UPDATE public.visits v SET seen = o.seen FROM public.visits_original o \
             WHERE v.id = o.id AND v.id IN (7, 9)",
        )
        .await
        .unwrap();

    // A phone number that is not digits stops the token pass at its batch: the run is left
    // half done, as a kill would leave it, with the primary key guarded.
    direct
        .batch_execute(&format!(
            "UPDATE public.visits SET phone = 'unknown' WHERE id = {BAD_PHONE_ROW}"
        ))
        .await
        .unwrap();
    let refused = run_refused(command(
        cluster,
        &db,
        "encrypt",
        &policy_file,
        &keyring,
        &["--quiet", "--batch-size", "100"],
    ));
    assert!(
        refused.contains(&format!("public.visits row id = {BAD_PHONE_ROW}")),
        "{refused}"
    );
    let (last, done): (Option<String>, bool) = {
        let row = direct
            .query_one(
                "SELECT last_key, done FROM pgseal.migration WHERE column_name = 'phone'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((last.as_deref(), done), (Some("1100"), false));
    assert!(guarded(&direct).await);
    let moved = direct
        .batch_execute("UPDATE public.visits SET id = id + 100000 WHERE id = 5")
        .await
        .expect_err("a primary key moved while tokens are half rewritten");
    let db_error = moved.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "55000");
    assert!(
        db_error
            .message()
            .contains("primary key of public.visits cannot change while pgseal migrate"),
        "{}",
        db_error.message()
    );
    // Updates that leave the key alone go on.
    direct
        .batch_execute("UPDATE public.visits SET note = note WHERE id = 5")
        .await
        .unwrap();

    // The policy now puts the phone numbers in another key domain: resuming would tokenize the
    // rest under other keys, so nothing is done.
    let before = digest(&direct, "visits").await;
    let refused = run_refused(encrypt(&other_domain));
    assert!(
        refused.contains("public.visits.phone: pgseal migrate encrypt recorded it as tokenize-digits in key domain public.visits.phone, but the policy now says tokenize-digits in key domain elsewhere"),
        "{refused}"
    );
    assert_eq!(digest(&direct, "visits").await, before);

    // The value corrected, the run finishes, the guard goes, and keys may move again.
    for table in ["visits", "visits_original"] {
        direct
            .batch_execute(&format!(
                "UPDATE public.{table} SET phone = '0123456789' WHERE id = {BAD_PHONE_ROW}"
            ))
            .await
            .unwrap();
    }
    run_ok(encrypt(&policy_file));
    assert!(!guarded(&direct).await);
    for table in ["visits", "visits_original"] {
        direct
            .batch_execute(&format!(
                "UPDATE public.{table} SET id = id + 100000 WHERE id = 5"
            ))
            .await
            .unwrap();
    }
    let plaintext: i64 = direct
        .query_one(
            "SELECT count(*) FROM public.visits v JOIN public.visits_original o USING (id) \
             WHERE v.phone = o.phone OR v.code = o.code OR v.initials = o.initials \
             OR v.seen = o.seen::text OR v.note = o.note",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plaintext, 0, "a value was left in plaintext");
    let recorded: Vec<(String, Option<String>)> = direct
        .query(
            "SELECT column_name, original_type FROM pgseal.migration ORDER BY column_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        recorded,
        [
            ("code".to_string(), Some("visit_code".to_string())),
            ("initials".to_string(), Some("character(3)".to_string())),
            ("note".to_string(), None),
            ("phone".to_string(), None),
            ("seen".to_string(), Some("date".to_string())),
        ]
    );

    // Leaving pgseal gives back the domain, the char(3) and the date, with every value — the
    // tokens made across the interrupted run included — equal to the original.
    let note_envelope: String = direct
        .query_one("SELECT note FROM public.visits WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let decrypt = || {
        command(
            cluster,
            &db,
            "decrypt",
            &policy_file,
            &keyring,
            &["--quiet"],
        )
    };
    run_ok(decrypt());
    assert_eq!(types(&direct).await, original_types);
    assert_eq!(
        digest(&direct, "visits").await,
        digest(&direct, "visits_original").await
    );

    // An envelope written after the decrypt finished (pgseal still seals what goes through it)
    // is found by the next run and opened, not trusted to the record.
    direct
        .execute(
            "UPDATE public.visits SET note = $1 WHERE id = 2",
            &[&note_envelope],
        )
        .await
        .unwrap();
    direct
        .batch_execute(
            "UPDATE public.visits_original SET note = (SELECT note FROM public.visits_original \
             WHERE id = 1) WHERE id = 2",
        )
        .await
        .unwrap();
    run_ok(decrypt());
    assert_eq!(
        digest(&direct, "visits").await,
        digest(&direct, "visits_original").await
    );
}
