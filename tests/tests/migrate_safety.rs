//! `pgseal migrate` where data could be lost. On a small table of visits holding a domain, a
//! `char(n)`, a `date`, free text and digits to tokenize, the real CLI:
//! - refuses, before changing anything, what would store plaintext or seal garbage: a domain's
//!   or a column's DEFAULT, a sealed primary key, a value that cannot be sealed, an envelope of
//!   another key domain (found before a type change, not after it);
//! - guards the primary key while tokens are rewritten (a row moved past the pass would be
//!   tokenized twice), and refuses a policy whose key domain differs from what the half-done
//!   migration recorded, or a record whose tokenized column was renamed;
//! - catches plaintext written before the CHECK went on, and envelopes written after a
//!   finished `decrypt`;
//! - gives back the original types (the domain and the `char(n)` included) with every value
//!   equal to the original, except a type that a value no longer fits, which is left as the
//!   policy's type with a warning rather than cut.

use std::path::{Path, PathBuf};

use pgseal::protect::column::{ColumnCrypto, Storage};
use pgseal_policies::CompiledPolicy;
use pgseal_tests::migrate::{command, run_ok, run_refused, stderr_of};
use pgseal_tests::{Cluster, cluster};

/// The visit whose phone number is made not digits, to be found before any change.
const BAD_PHONE_ROW: i64 = 1_200;

const SCHEMA: &str = "
CREATE DOMAIN public.visit_code AS varchar(8) DEFAULT 'V0' CHECK (VALUE ~ '^[A-Z0-9]+$');
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
CREATE TABLE public.visits_original AS SELECT * FROM public.visits;
CREATE TABLE public.people (phone varchar(10) PRIMARY KEY);";

/// The visits' policy, every column marked `migrating`; the phone numbers and the notes in the
/// key domains given (their own by default).
fn policy_text(phone_domain: Option<&str>, note_domain: Option<&str>) -> String {
    let domain = |d: Option<&str>| d.map(|d| format!("domain = \"{d}\"\n")).unwrap_or_default();
    let column = |name: &str, mode: &str, ty: &str, extra: String| {
        format!(
            "[columns.\"public.visits.{name}\"]\nmode = \"{mode}\"\ntype = \"{ty}\"\n\
             migrating = true\n{extra}\n"
        )
    };
    [
        column(
            "phone",
            "tokenize-digits",
            "varchar(10)",
            domain(phone_domain),
        ),
        column("code", "deterministic", "text", String::new()),
        column("initials", "randomized", "text", String::new()),
        column("seen", "randomized", "date", String::new()),
        column("note", "randomized", "text", domain(note_domain)),
    ]
    .concat()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The armored envelope of `text` for `column` under `policy`, as pgseal seals a write.
fn sealed(policy: &str, keyring: &Path, column: &str, text: &str) -> String {
    let policy = CompiledPolicy::from_toml("policy.toml", policy).unwrap();
    let keyring = pgseal_keys::Keyring::load(keyring).unwrap();
    let id = policy.column_id("public", "visits", column).unwrap();
    let crypto = ColumnCrypto::new(policy.column(id), &keyring).unwrap();
    let canonical = crypto
        .canonical_text(
            text,
            pgseal::protect::date_settings::DateSettings::canonical(),
        )
        .unwrap();
    String::from_utf8(crypto.seal(&canonical, Storage::Text).unwrap()).unwrap()
}

/// A database holding the visits, and a fresh keyring.
struct Setup {
    database: String,
    client: tokio_postgres::Client,
    dir: tempfile::TempDir,
    keyring: PathBuf,
}

async fn setup(cluster: &Cluster) -> Setup {
    let database = cluster.create_database("migrate_safety");
    let client = cluster.connect(&database).await;
    client.batch_execute(SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.toml");
    pgseal_keys::KeyringFile::generate()
        .unwrap()
        .write_new(&keyring)
        .unwrap();
    Setup {
        database,
        client,
        dir,
        keyring,
    }
}

async fn types(client: &tokio_postgres::Client) -> Vec<String> {
    pgseal_tests::first_column(
        client,
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'public.visits'::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
    )
    .await
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

async fn exists(client: &tokio_postgres::Client, sql: &str) -> bool {
    client
        .query_one(&format!("SELECT EXISTS ({sql})"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn guarded(client: &tokio_postgres::Client) -> bool {
    exists(
        client,
        "SELECT FROM pg_trigger WHERE tgrelid = 'public.visits'::regclass \
         AND tgname = 'pgseal_migrate_key_guard'",
    )
    .await
}

/// What shows that a refused run changed nothing: the table's types and rows, and no
/// progress store.
async fn untouched(client: &tokio_postgres::Client) -> (Vec<String>, String, bool) {
    (
        types(client).await,
        digest(client, "visits").await,
        exists(client, "SELECT FROM pg_class WHERE relname = 'migration'").await,
    )
}

#[tokio::test]
async fn what_would_lose_or_expose_data_is_refused_guarded_or_caught_and_types_come_back() {
    let cluster = cluster();
    let Setup {
        database: db,
        client: direct,
        dir,
        keyring,
    } = setup(cluster).await;
    let policy = policy_text(None, None);
    let policy_file = write(dir.path(), "policy.toml", &policy);
    let other_domain = write(
        dir.path(),
        "other-domain.toml",
        &policy_text(Some("elsewhere"), None),
    );
    let encrypt = |policy: &Path| command(cluster, &db, "encrypt", policy, &keyring, &["--quiet"]);

    // DEFAULTs would be written by PostgreSQL, in plaintext: the domain's, then the column's.
    let before = untouched(&direct).await;
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains("public.visits.code has a DEFAULT from its domain public.visit_code"),
        "{refused}"
    );
    direct
        .batch_execute("ALTER DOMAIN public.visit_code DROP DEFAULT")
        .await
        .unwrap();
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains("public.visits.seen has a DEFAULT"),
        "{refused}"
    );
    assert_eq!(untouched(&direct).await, before);
    direct
        .batch_execute("ALTER TABLE public.visits ALTER COLUMN seen DROP DEFAULT")
        .await
        .unwrap();
    let original_types = types(&direct).await;

    // Values pgseal cannot seal are found before any type changes, the first in key order
    // (every date PostgreSQL holds, `infinity` included, can be sealed: phone tokens need
    // digits).
    direct
        .batch_execute("UPDATE public.visits SET phone = 'unknown' WHERE id IN (9, 7)")
        .await
        .unwrap();
    let before = untouched(&direct).await;
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains("public.visits: 2 value(s) cannot be sealed, the first at row id = 7")
            && refused.contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(untouched(&direct).await, before);
    direct
        .batch_execute(
            "UPDATE public.visits v SET phone = o.phone FROM public.visits_original o \
             WHERE v.id = o.id AND v.id IN (7, 9)",
        )
        .await
        .unwrap();

    // One phone number that is not digits is found before anything changes too.
    direct
        .batch_execute(&format!(
            "UPDATE public.visits SET phone = 'unknown' WHERE id = {BAD_PHONE_ROW}"
        ))
        .await
        .unwrap();
    let before = untouched(&direct).await;
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains(&format!(
            "public.visits: 1 value(s) cannot be sealed, the first at row id = {BAD_PHONE_ROW}"
        )) && refused.contains("public.visits.phone"),
        "{refused}"
    );
    assert_eq!(untouched(&direct).await, before);
    direct
        .batch_execute(&format!(
            "UPDATE public.visits v SET phone = o.phone FROM public.visits_original o \
             WHERE v.id = o.id AND v.id = {BAD_PHONE_ROW}"
        ))
        .await
        .unwrap();

    // Killed (SIGKILL) half-way through the token pass, the run leaves it unfinished with the
    // primary key guarded.
    let mut child = command(
        cluster,
        &db,
        "encrypt",
        &policy_file,
        &keyring,
        &["--quiet", "--batch-size", "10"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    loop {
        let progress = direct
            .query_opt(
                "SELECT last_key IS NOT NULL AND NOT done FROM pgseal.migration \
                 WHERE column_name = 'phone'",
                &[],
            )
            .await;
        if matches!(progress, Ok(Some(ref row)) if row.get::<_, bool>(0)) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migration ended before it could be killed half-way"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done: bool = direct
        .query_one(
            "SELECT done FROM pgseal.migration WHERE column_name = 'phone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!done);
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
        refused.contains(
            "public.visits.phone: pgseal migrate encrypt recorded it as tokenize-digits in key \
             domain public.visits.phone, but the policy now says tokenize-digits in key domain \
             elsewhere"
        ),
        "{refused}"
    );
    // Renamed, the column would have no record and its tokens would be tokenized again.
    direct
        .batch_execute("ALTER TABLE public.visits RENAME COLUMN phone TO telephone")
        .await
        .unwrap();
    let refused = run_refused(encrypt(&policy_file));
    assert!(
        refused.contains(
            "pgseal.migration records an unfinished encrypt of public.visits.phone, which is no \
             longer in the database"
        ),
        "{refused}"
    );
    direct
        .batch_execute("ALTER TABLE public.visits RENAME COLUMN telephone TO phone")
        .await
        .unwrap();
    assert_eq!(digest(&direct, "visits").await, before);

    // Run again, it finishes, the guard goes, and keys may move again.
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
            ("code".to_string(), Some("public.visit_code".to_string())),
            ("initials".to_string(), Some("character(3)".to_string())),
            ("note".to_string(), None),
            ("phone".to_string(), None),
            ("seen".to_string(), Some("date".to_string())),
        ]
    );

    // Plaintext written bypassing pgseal before the CHECK went on is found by the next run.
    direct
        .batch_execute(
            "ALTER TABLE public.visits DROP CONSTRAINT pgseal_sealed_note; \
             UPDATE public.visits SET note = 'written behind' WHERE id = 4; \
             UPDATE public.visits_original SET note = 'written behind' WHERE id = 4",
        )
        .await
        .unwrap();
    run_ok(encrypt(&policy_file));
    assert!(
        exists(
            &direct,
            "SELECT FROM public.visits WHERE id = 4 AND pgseal.is_sealed(note)"
        )
        .await
    );
    assert!(
        exists(
            &direct,
            "SELECT FROM pg_constraint WHERE conname = 'pgseal_sealed_note' AND convalidated"
        )
        .await
    );

    // What pgseal accepts under the policy's `text` may not fit the original `character(3)`:
    // that column is given `text` back with a warning, never cut.
    let long_initials = sealed(&policy, &keyring, "initials", "ABCDEFGHIJ");
    direct
        .execute(
            "UPDATE public.visits SET initials = $1 WHERE id = 3",
            &[&long_initials],
        )
        .await
        .unwrap();

    // Leaving pgseal gives back the domain and the date, with every value — the tokens made
    // across the interrupted run included — equal to the original.
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
    let output = run_ok(decrypt());
    assert!(
        stderr_of(&output).contains(
            "warning: public.visits.initials: 1 value(s) would change in its original type \
             character(3) (cut or rounded); given the policy's type text instead"
        ),
        "{}",
        stderr_of(&output)
    );
    let expected_types: Vec<String> = original_types
        .iter()
        .map(|t| {
            if t == "initials character(3)" {
                "initials text".to_string()
            } else {
                t.clone()
            }
        })
        .collect();
    assert_eq!(types(&direct).await, expected_types);
    direct
        .batch_execute(
            "ALTER TABLE public.visits_original ALTER COLUMN initials TYPE text; \
             UPDATE public.visits_original SET initials = 'ABCDEFGHIJ' WHERE id = 3",
        )
        .await
        .unwrap();
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

#[tokio::test]
async fn a_sealed_primary_key_and_an_envelope_of_another_domain_stop_the_run_before_any_change() {
    let cluster = cluster();
    let Setup {
        database: db,
        client: direct,
        dir,
        keyring,
    } = setup(cluster).await;
    direct
        .batch_execute(
            "ALTER DOMAIN public.visit_code DROP DEFAULT; \
             ALTER TABLE public.visits ALTER COLUMN seen DROP DEFAULT",
        )
        .await
        .unwrap();

    let people = write(
        dir.path(),
        "people.toml",
        "[columns.\"public.people.phone\"]\nmode = \"tokenize-digits\"\n\
         type = \"varchar(10)\"\nmigrating = true\n",
    );
    let refused = run_refused(command(
        cluster,
        &db,
        "encrypt",
        &people,
        &keyring,
        &["--quiet"],
    ));
    assert!(
        refused.contains("public.people.phone is its table's primary key"),
        "{refused}"
    );

    // A note sealed under another key domain (an earlier policy) cannot be opened under this
    // one: taken as sealed, it would stay unreadable. Found before the types change.
    let foreign = sealed(
        &policy_text(None, Some("elsewhere")),
        &keyring,
        "note",
        "sealed elsewhere",
    );
    direct
        .execute(
            "UPDATE public.visits SET note = $1 WHERE id = 6",
            &[&foreign],
        )
        .await
        .unwrap();
    let policy_file = write(dir.path(), "policy.toml", &policy_text(None, None));
    let before = untouched(&direct).await;
    let refused = run_refused(command(
        cluster,
        &db,
        "encrypt",
        &policy_file,
        &keyring,
        &["--quiet"],
    ));
    assert!(
        refused.contains("public.visits: 1 value(s) cannot be sealed, the first at row id = 6")
            && refused.contains("could not be opened"),
        "{refused}"
    );
    assert_eq!(untouched(&direct).await, before);
}

/// Badges whose 6-digit codes are unique: in a million-value token space, 3,000 codes give
/// several tokens equal to another badge's code not rewritten yet, in every pass.
const BADGES: &str = "
CREATE TABLE public.badges (
    id    bigint PRIMARY KEY,
    badge varchar(6) NOT NULL CONSTRAINT badges_badge_key UNIQUE
);
CREATE UNIQUE INDEX badges_badge_reversed ON public.badges (reverse(badge));
ALTER TABLE public.badges CLUSTER ON badges_badge_key;
COMMENT ON INDEX public.badges_badge_key IS 'one badge per person';
INSERT INTO public.badges SELECT i, lpad(((i * 7919) % 1000000)::text, 6, '0')
FROM generate_series(1, 3000) AS i;
CREATE TABLE public.badges_original AS SELECT * FROM public.badges;
CREATE TABLE public.cards (badge varchar(6) REFERENCES public.badges (badge));";

/// The badges' indexes: name, validity, CLUSTER mark, comment, constraint.
async fn badge_indexes(client: &tokio_postgres::Client) -> Vec<String> {
    pgseal_tests::first_column(
        client,
        "SELECT concat_ws(' ', indexrelid::regclass::text, indisvalid, indisclustered, \
             obj_description(indexrelid, 'pg_class'), \
             (SELECT conname FROM pg_constraint WHERE conindid = indexrelid)) \
             FROM pg_index WHERE indrelid = 'public.badges'::regclass ORDER BY 1",
    )
    .await
}

#[tokio::test]
async fn tokens_of_a_unique_column_are_rewritten_though_new_tokens_meet_values_not_rewritten_yet() {
    let cluster = cluster();
    let Setup {
        database: db,
        client: direct,
        dir,
        keyring,
    } = setup(cluster).await;
    direct.batch_execute(BADGES).await.unwrap();
    let policy = write(
        dir.path(),
        "badges.toml",
        "[columns.\"public.badges.badge\"]\nmode = \"tokenize-digits\"\n\
         type = \"varchar(6)\"\nmigrating = true\n",
    );
    let migrate = |operation: &str| {
        command(
            cluster,
            &db,
            operation,
            &policy,
            &keyring,
            &["--quiet", "--batch-size", "200"],
        )
    };

    // A foreign key depends on the unique constraint: it could not be set aside.
    let refused = run_refused(migrate("encrypt"));
    assert!(
        refused.contains(
            "public.badges: the index badges_badge_key covers a tokenized column and cannot be \
             set aside while its tokens are rewritten (a new token may equal a value not \
             rewritten yet): a foreign key depends on it"
        ),
        "{refused}"
    );
    direct
        .batch_execute("DROP TABLE public.cards")
        .await
        .unwrap();
    // Over an expression, uniqueness over tokens is not uniqueness over plaintext.
    let refused = run_refused(migrate("encrypt"));
    assert!(
        refused.contains("the index badges_badge_reversed covers a tokenized column")
            && refused.contains("it is an expression or partial index"),
        "{refused}"
    );
    assert_eq!(
        digest(&direct, "badges").await,
        digest(&direct, "badges_original").await
    );
    direct
        .batch_execute("DROP INDEX public.badges_badge_reversed")
        .await
        .unwrap();
    let indexes = badge_indexes(&direct).await;
    assert!(
        indexes.contains(&"badges_badge_key t t one badge per person badges_badge_key".into()),
        "{indexes:?}"
    );

    run_ok(migrate("encrypt"));
    assert_eq!(badge_indexes(&direct).await, indexes);
    let met: i64 = direct
        .query_one(
            "SELECT count(*) FROM public.badges b JOIN public.badges_original o \
             ON b.badge = o.badge AND b.id <> o.id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        met > 0,
        "no token met another badge's code: the case is not exercised"
    );
    let left: i64 = direct
        .query_one(
            "SELECT count(*) FROM public.badges b JOIN public.badges_original o USING (id) \
             WHERE b.badge = o.badge",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(left < 10, "{left} codes were left as they were");

    // A rotation's new tokens meet old tokens not rewritten yet, the same way.
    let mut file = pgseal_keys::KeyringFile::load(&keyring).unwrap();
    file.rotate().unwrap();
    file.write_replace(&keyring).unwrap();
    run_ok(migrate("rotate"));
    assert_eq!(badge_indexes(&direct).await, indexes);

    run_ok(migrate("decrypt"));
    assert_eq!(badge_indexes(&direct).await, indexes);
    assert_eq!(
        digest(&direct, "badges").await,
        digest(&direct, "badges_original").await
    );
    assert!(
        !exists(&direct, "SELECT FROM pgseal.migration_index").await,
        "a set-aside index is still on record"
    );
}
