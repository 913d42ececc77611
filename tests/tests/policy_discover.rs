//! `pgseal policy discover` against the harness's PostgreSQL cluster: the hospital schema filled
//! in plaintext by `pgseal seed`, discovered, and the draft checked. Every column the hospital
//! policy seals is proposed, no key or integer column is, no sampled value is printed, and the
//! draft passes `pgseal policy check`. The laboratory and research examples, filled from the
//! seeded patients, are discovered as well; and an ORM-style schema holding copies of a
//! person's values has each copy reported, proposed, and warned about by `policy check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgseal_tests::hospital::Hospital;
use pgseal_tests::{cluster, pgseal_binary};

/// The columns `policies/examples/hospital.toml` seals.
const SEALED: [&str; 10] = [
    "public.patients.nir",
    "public.patients.last_name",
    "public.patients.first_name",
    "public.patients.birth_date",
    "public.patients.email",
    "public.patients.phone",
    "public.patients.address",
    "public.consultations.diagnosis_code",
    "public.consultations.notes",
    "public.consultations.prescription",
];

/// Identity, foreign-key and integer columns of the hospital schema: never sealed.
const KEYS: [&str; 3] = [
    "public.patients.id",
    "public.consultations.id",
    "public.consultations.patient_id",
];

fn run(args: &[&str], output: Option<&Path>) -> Output {
    let mut command = Command::new(pgseal_binary());
    command.args(args);
    if let Some(path) = output {
        command.arg(path);
    }
    command.output().expect("run pgseal")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The values of one column, read straight from the database with psql.
fn column_values(cluster: &pgseal_tests::Cluster, database: &str, sql: &str) -> Vec<String> {
    let output = cluster
        .psql(database)
        .args(["-A", "-t", "-c", sql])
        .output()
        .expect("run psql");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `word` appears in `haystack` as a whole word (not inside a longer one).
fn contains_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[test]
fn discovery_proposes_what_the_hospital_policy_seals_and_prints_no_value() {
    let cluster = cluster();
    let hospital = seeded_hospital(cluster);
    let url = cluster.url(&hospital.database);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (draft_path, stdout, stderr, draft) = discover_into(&url, dir.path());

    // Proposed columns: the uncommented `[columns."…"]` headers of the draft.
    let proposed: BTreeSet<String> = draft
        .lines()
        .filter_map(|l| l.strip_prefix("[columns.\""))
        .filter_map(|l| l.strip_suffix("\"]"))
        .map(str::to_owned)
        .collect();
    for column in SEALED {
        assert!(
            proposed.contains(column),
            "{column} is not proposed\n{stdout}\n{draft}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{column}: "))),
            "{column} is not in the report\n{stdout}"
        );
    }
    for column in KEYS {
        assert!(
            !draft.contains(&format!("\"{column}\"")),
            "{column} is in the draft\n{draft}"
        );
        assert!(
            !stdout.contains(&format!("{column}:")),
            "{column} is in the report\n{stdout}"
        );
    }
    // The NIR is tokenized, and the lookup columns (unique or indexed) deterministic.
    assert!(
        draft.contains(
            "[columns.\"public.patients.nir\"]\nmode = \"tokenize-nir\"\ntype = \"varchar(15)\"\n\
             mask = \"nir\"\n"
        ),
        "{draft}"
    );
    assert!(
        draft.contains(
            "[columns.\"public.patients.last_name\"]\nmode = \"deterministic\"\ntype = \"text\"\n"
        ),
        "{draft}"
    );
    // A column of NIRs is not also free text.
    let nir_line = stdout
        .lines()
        .find(|l| l.starts_with("public.patients.nir: "))
        .unwrap_or_default();
    assert!(!nir_line.contains("free text"), "{nir_line}");
    // Evidence comes with every column, in words and counts.
    assert!(stdout.contains("control key valid"), "{stdout}");
    assert!(stdout.contains("by name"), "{stdout}");

    // No sampled value in the report or the draft.
    let last_names = column_values(
        cluster,
        &hospital.database,
        "SELECT DISTINCT last_name FROM patients",
    );
    let nirs = column_values(cluster, &hospital.database, "SELECT nir FROM patients");
    let emails = column_values(
        cluster,
        &hospital.database,
        "SELECT email FROM patients WHERE email IS NOT NULL",
    );
    assert!(last_names.len() > 20, "{last_names:?}");
    assert_eq!(nirs.len(), 300);
    for value in last_names.iter().chain(&nirs).chain(&emails) {
        assert!(
            !contains_word(&stdout, value),
            "the report shows a value\n{stdout}"
        );
        assert!(
            !contains_word(&stderr, value),
            "stderr shows a value\n{stderr}"
        );
        assert!(
            !contains_word(&draft, value),
            "the draft shows a value\n{draft}"
        );
    }

    // The draft is a valid policy, and it fits the database it was drawn from: storage types
    // fit the proposed modes.
    for args in [
        &["policy", "check", "--policy"][..],
        &["policy", "check", "--database-url", &url, "--policy"],
    ] {
        let checked = run(args, Some(&draft_path));
        assert_eq!(
            checked.status.code(),
            Some(0),
            "{args:?}\n{}\n{}\n{draft}",
            text(&checked.stdout),
            text(&checked.stderr)
        );
    }

    // --output refuses to overwrite a file.
    let again = run(
        &["policy", "discover", "--database-url", &url, "--output"],
        Some(&draft_path),
    );
    assert_ne!(again.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&draft_path).unwrap(), draft);
}

#[test]
fn without_output_the_draft_follows_the_report_and_an_empty_database_is_fine() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let url = cluster.url(&hospital.database);
    // Odd names and values: quoted names, huge text, arrays and bytes.
    cluster
        .run_sql(
            &hospital.database,
            "CREATE SCHEMA \"Odd\"; \
             CREATE TABLE \"Odd\".\"Dossier \"\"X\"\"\" (\"Notes\" text, tags text[], doc bytea); \
             INSERT INTO \"Odd\".\"Dossier \"\"X\"\"\" \
             SELECT repeat('é ', 500000), ARRAY['a'], '\\x00ff' FROM generate_series(1, 3);",
        )
        .expect("odd table");
    let discovered = run(&["policy", "discover", "--database-url", &url], None);
    let stdout = text(&discovered.stdout);
    assert_eq!(
        discovered.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&discovered.stderr)
    );
    assert!(stdout.contains("\nversion = 1\n"), "{stdout}");
    assert!(
        stdout.contains("[default]\nview = \"ciphertext\""),
        "{stdout}"
    );
    // No rows: what the names suggest is written, commented out for review.
    assert!(
        stdout.contains("# [columns.\"public.patients.nir\"]"),
        "{stdout}"
    );
    // Huge text is judged (cut to its first characters) and its quoted name kept.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("\"Odd\".\"Dossier \"\"X\"\"\".\"Notes\": free text 100%")),
        "{stdout}"
    );
    assert!(!stdout.contains("tags"), "{stdout}");
    // A role that may not read a table: the others are still sampled, that one judged by
    // its column names, and said on standard error.
    let billing = format!(
        "postgres://ehr_billing:ehr_billing@{}:{}/{}",
        cluster.host(),
        cluster.port(),
        hospital.database
    );
    let limited = run(&["policy", "discover", "--database-url", &billing], None);
    let limited_out = text(&limited.stdout);
    let limited_err = text(&limited.stderr);
    assert_eq!(
        limited.status.code(),
        Some(0),
        "{limited_out}\n{limited_err}"
    );
    assert!(
        limited_err.contains("\"Odd\".\"Dossier \"\"X\"\"\": not sampled (")
            && limited_err.contains("permission denied"),
        "{limited_err}"
    );
    assert!(
        limited_out.contains(
            "# [columns.\"\\\"Odd\\\".\\\"Dossier \\\"\\\"X\\\"\\\"\\\".\\\"Notes\\\"\"]"
        ),
        "{limited_out}"
    );
    // A database that cannot be reached is exit status 2, as for `policy check`.
    let unreachable = run(
        &[
            "policy",
            "discover",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=2",
        ],
        None,
    );
    assert_eq!(
        unreachable.status.code(),
        Some(2),
        "{}",
        text(&unreachable.stderr)
    );
    // The draft after the report checks clean, quoted names included.
    let start = stdout
        .find("# Draft policy")
        .expect("a draft after the report");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let draft = dir.path().join("draft.toml");
    std::fs::write(&draft, &stdout[start..]).unwrap();
    let checked = run(&["policy", "check", "--policy"], Some(&draft));
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}\n{}\n{stdout}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
}

/// Runs SQL (several statements, one session) in `database`, failing the test on an error.
fn sql(cluster: &pgseal_tests::Cluster, database: &str, statements: &str) {
    if let Err(e) = cluster.run_sql(database, statements) {
        panic!("{e}\n{statements}");
    }
}

/// Runs an example's schema file in `database`.
fn load_example(cluster: &pgseal_tests::Cluster, database: &str, file: &str) {
    let path = pgseal_tests::hospital::examples_dir().join(file);
    let output = cluster
        .psql(database)
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run psql");
    assert!(output.status.success(), "{file}: {}", text(&output.stderr));
}

/// The sealed columns of an example policy: its `[columns."…"]` headers.
fn sealed_columns(file: &str) -> Vec<String> {
    let policy = std::fs::read_to_string(pgseal_tests::hospital::examples_dir().join(file))
        .expect("read the example policy");
    policy
        .lines()
        .filter_map(|l| l.strip_prefix("[columns.\""))
        .filter_map(|l| l.strip_suffix("\"]"))
        .map(str::to_owned)
        .collect()
}

/// The uncommented `[columns."…"]` headers of a draft.
fn proposed(draft: &str) -> BTreeSet<String> {
    draft
        .lines()
        .filter_map(|l| l.strip_prefix("[columns.\""))
        .filter_map(|l| l.strip_suffix("\"]"))
        .map(str::to_owned)
        .collect()
}

/// `policy discover` on `url`, its draft written in `dir` (it must succeed): the draft's path,
/// standard output and error, and the draft.
fn discover_into(url: &str, dir: &Path) -> (PathBuf, String, String, String) {
    let draft_path = dir.join("draft.toml");
    let discovered = run(
        &["policy", "discover", "--database-url", url, "--output"],
        Some(&draft_path),
    );
    let stdout = text(&discovered.stdout);
    let stderr = text(&discovered.stderr);
    assert_eq!(discovered.status.code(), Some(0), "{stdout}\n{stderr}");
    let draft = std::fs::read_to_string(&draft_path).expect("the draft was written");
    (draft_path, stdout, stderr, draft)
}

/// A database with the hospital example seeded by `pgseal seed` (300 patients, in plaintext).
fn seeded_hospital(cluster: &pgseal_tests::Cluster) -> Hospital {
    let hospital = Hospital::create(cluster);
    let url = cluster.url(&hospital.database);
    let seeded = run(
        &[
            "seed",
            "--database-url",
            &url,
            "--patients",
            "300",
            "--quiet",
        ],
        None,
    );
    assert!(seeded.status.success(), "{}", text(&seeded.stderr));
    hospital
}

/// The seeded patients' values no output may show: names, NIRs, e-mails, phones.
fn seeded_values(cluster: &pgseal_tests::Cluster, database: &str, schema: &str) -> Vec<String> {
    let mut values = Vec::new();
    for column in ["first_name", "last_name", "nir"] {
        values.extend(column_values(
            cluster,
            database,
            &format!("SELECT DISTINCT {column} FROM {schema}"),
        ));
    }
    assert!(values.len() > 300, "{values:?}");
    values
}

/// An RPPS number (Luhn key) from a consultation id, as SQL over `c.id`.
const RPPS_SQL: &str = "pg_temp.luhn('10' || lpad((c.id * 7919 % 100000000)::text, 8, '0'))";

/// `pg_temp.luhn(body)`: the body and its Luhn key.
const LUHN_FUNCTION: &str = "CREATE FUNCTION pg_temp.luhn(body text) RETURNS text LANGUAGE sql AS $$ \
    SELECT body || ((10 - sum(CASE WHEN (length(body) - i) % 2 = 0 \
        THEN (2 * substr(body, i, 1)::int) / 10 + (2 * substr(body, i, 1)::int) % 10 \
        ELSE substr(body, i, 1)::int END) % 10) % 10)::text \
    FROM generate_series(1, length(body)) i $$;";

#[test]
fn discovery_proposes_what_the_three_example_policies_seal_and_nothing_absurd() {
    let cluster = cluster();
    let hospital = seeded_hospital(cluster);
    let db = &hospital.database;
    let url = cluster.url(db);
    // The laboratory and research schemas, filled in plaintext from the seeded patients.
    load_example(cluster, db, "laboratory.sql");
    load_example(cluster, db, "research.sql");
    sql(
        cluster,
        db,
        &format!(
            "{LUHN_FUNCTION}
            INSERT INTO lis.patients (nir, last_name, first_name, birth_date, sex, blood_group,
                                      hiv_serology, phone)
            SELECT nir, last_name, first_name, birth_date, sex,
                   (ARRAY['A+','A-','B+','B-','AB+','AB-','O+','O-'])[1 + id % 8],
                   (ARRAY['négatif','négatif','négatif','positif','non fait'])[1 + id % 5], phone
            FROM public.patients ORDER BY id;
            INSERT INTO lis.samples (patient_id, collected_at, prescriber_rpps, pregnant)
            SELECT lp.id, c.seen_at, {RPPS_SQL},
                   CASE WHEN lp.sex = 'F' AND c.id % 5 = 0 THEN 'true' ELSE 'false' END
            FROM public.consultations c JOIN public.patients p ON p.id = c.patient_id
            JOIN lis.patients lp ON lp.nir = p.nir;
            INSERT INTO lis.results (sample_id, patient_nir, loinc_code, value, unit, abnormal,
                                     comment, validated_at)
            SELECT s.id, lp.nir, (ARRAY['2345-7','718-7','2160-0'])[1 + s.id % 3],
                   ((s.id * 37) % 200 / 10.0)::text, (ARRAY['mmol/L','g/dL','µmol/L'])[1 + s.id % 3],
                   s.id % 4 = 0,
                   (ARRAY['Résultat contrôlé sur un second prélèvement, à confirmer avec le prescripteur.',
                          'Hémolyse légère du prélèvement, valeur à interpréter avec prudence clinique.',
                          NULL])[1 + s.id % 3],
                   s.collected_at + interval '6 hours'
            FROM lis.samples s JOIN lis.patients lp ON lp.id = s.patient_id;
            INSERT INTO research.subjects (subject_nir, birth_date, sex, postal_code, inclusion_date)
            SELECT nir, birth_date, sex, postal_code, (date '2023-01-01' + (id % 700)::int)::text
            FROM public.patients;
            INSERT INTO research.events (subject_nir, event_date, icd10_code, atc_code,
                                         prescriber_rpps, notes)
            SELECT p.nir, c.seen_at::date::text, c.diagnosis_code,
                   (ARRAY['C09AA05','A10BA02','N02BE01'])[1 + c.id % 3], {RPPS_SQL}, c.notes
            FROM public.consultations c JOIN public.patients p ON p.id = c.patient_id;
            ANALYZE;"
        ),
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (draft_path, stdout, stderr, draft) = discover_into(&url, dir.path());
    let proposed = proposed(&draft);
    for example in ["hospital.toml", "laboratory.toml", "research.toml"] {
        let sealed = sealed_columns(example);
        assert!(sealed.len() >= 9, "{example}: {sealed:?}");
        for column in sealed {
            assert!(
                proposed.contains(&column),
                "{example}: {column} is not proposed\n{stdout}"
            );
        }
    }
    // Nothing absurd: no identity, key or row-timestamp column, no code of a shared list that
    // identifies nobody (LOINC, ATC, units).
    for column in &proposed {
        let name = column.rsplit('.').next().unwrap_or_default();
        assert!(
            !(name == "id"
                || name.ends_with("_id")
                || name.ends_with("_at")
                || ["loinc_code", "atc_code", "unit", "abnormal"].contains(&name)),
            "{column} is proposed\n{stdout}"
        );
    }
    // RPPS numbers and postcodes keep their digits; dates of care are masked to the month.
    assert!(
        draft.contains(
            "[columns.\"lis.samples.prescriber_rpps\"]\nmode = \"tokenize-digits\"\n\
             type = \"varchar(11)\"\nmask = \"keep-last-3\"\n"
        ),
        "{draft}"
    );
    assert!(
        draft.contains(
            "[columns.\"research.subjects.postal_code\"]\nmode = \"tokenize-digits\"\n\
             type = \"varchar(5)\"\nmask = \"keep-first-2\"\n"
        ),
        "{draft}"
    );
    // Sex is a quasi-identifier: written for review, commented out.
    assert!(
        draft.contains("# [columns.\"lis.patients.sex\"]"),
        "{draft}"
    );
    // No value printed, and the draft checks clean against the database.
    let values = seeded_values(cluster, db, "lis.patients");
    for value in &values {
        for (what, output) in [("report", &stdout), ("stderr", &stderr), ("draft", &draft)] {
            assert!(
                !contains_word(output, value),
                "the {what} shows a value\n{output}"
            );
        }
    }
    let checked = run(
        &["policy", "check", "--database-url", &url, "--policy"],
        Some(&draft_path),
    );
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}\n{}\n{draft}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
}

/// An ORM-style schema holding copies of a person's values: a party's `code` made of a uuid
/// and the first name, a `party_name` table repeating the names, a contact mechanism's value
/// normalised into `value_compact`.
const ORM_SCHEMA: &str = "
CREATE SCHEMA crm;
CREATE TABLE crm.party (id uuid PRIMARY KEY, code text NOT NULL, party_type text NOT NULL,
                        created_at timestamptz NOT NULL);
CREATE TABLE crm.person (party_id uuid PRIMARY KEY REFERENCES crm.party (id), nir varchar(15),
                         first_name text, last_name text, birth_date text);
CREATE TABLE crm.party_name (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                             party_id uuid NOT NULL REFERENCES crm.party (id),
                             name_use text NOT NULL, given text, family text,
                             valid_from timestamptz);
CREATE TABLE crm.contact_mechanism (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                    party_id uuid NOT NULL REFERENCES crm.party (id),
                                    mechanism text NOT NULL, value text NOT NULL,
                                    value_compact text NOT NULL);
CREATE TEMP TABLE src AS SELECT p.*, md5(p.nir)::uuid AS uid FROM public.patients p;
INSERT INTO crm.party SELECT uid, uid::text || '-' || first_name, 'person',
                             now() - id * interval '1 hour' FROM src;
INSERT INTO crm.person SELECT uid, nir, first_name, last_name, birth_date FROM src;
INSERT INTO crm.party_name (party_id, name_use, given, family, valid_from)
SELECT uid, 'official', first_name, last_name, now() FROM src;
INSERT INTO crm.contact_mechanism (party_id, mechanism, value, value_compact)
SELECT uid, 'email', email, regexp_replace(lower(email), '[^a-z0-9]', '', 'g')
FROM src WHERE email IS NOT NULL
UNION ALL
SELECT uid, 'phone', phone, regexp_replace(phone, '[^0-9]', '', 'g')
FROM src WHERE phone IS NOT NULL;
DROP TABLE public.consultations, public.patients;
ANALYZE;
";

/// A policy sealing the obvious columns of [`ORM_SCHEMA`] and none of their copies.
const ORM_POLICY: &str = r#"version = 1

[columns."crm.person.nir"]
mode = "tokenize-nir"
type = "varchar(15)"

[columns."crm.person.first_name"]
mode = "deterministic"
type = "text"

[columns."crm.person.last_name"]
mode = "deterministic"
type = "text"

[columns."crm.person.birth_date"]
mode = "randomized"
type = "date"

[columns."crm.contact_mechanism.value"]
mode = "deterministic"
type = "text"

[default]
view = "ciphertext"
"#;

/// The copies of [`ORM_SCHEMA`]: the column, and what its report line must say.
const ORM_COPIES: [(&str, &str); 4] = [
    (
        "crm.party.code",
        "copy of crm.person.first_name (part) 100%",
    ),
    (
        "crm.party_name.given",
        "copy of crm.person.first_name (whole) 100%",
    ),
    (
        "crm.party_name.family",
        "copy of crm.person.last_name (whole) 100%",
    ),
    (
        "crm.contact_mechanism.value_compact",
        "copy of crm.contact_mechanism.value (normalised) 100%",
    ),
];

#[test]
fn copies_in_an_orm_schema_are_reported_proposed_and_warned_about_by_policy_check() {
    let cluster = cluster();
    let hospital = seeded_hospital(cluster);
    let db = &hospital.database;
    let url = cluster.url(db);
    let mut values = seeded_values(cluster, db, "public.patients");
    values.extend(column_values(
        cluster,
        db,
        "SELECT email FROM public.patients WHERE email IS NOT NULL \
         UNION ALL SELECT phone FROM public.patients WHERE phone IS NOT NULL",
    ));
    sql(cluster, db, ORM_SCHEMA);
    values.extend(column_values(
        cluster,
        db,
        "SELECT code FROM crm.party UNION ALL SELECT value_compact FROM crm.contact_mechanism",
    ));

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, stdout, stderr, draft) = discover_into(&url, dir.path());
    let proposed = proposed(&draft);
    for (column, copy) in ORM_COPIES {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{column}: ")))
            .unwrap_or_else(|| panic!("{column} is not in the report\n{stdout}"));
        assert!(line.contains(copy), "{line}");
        assert!(
            proposed.contains(column),
            "{column} is not proposed\n{draft}"
        );
    }
    // The code is compared with the same person's first name, through the foreign keys.
    let code = stdout
        .lines()
        .find(|l| l.starts_with("crm.party.code: "))
        .unwrap_or_default();
    assert!(
        code.contains("joined on crm.party.id = crm.person.party_id"),
        "{code}"
    );
    assert!(
        draft.contains("# A copy: sealing crm.contact_mechanism.value alone would leave"),
        "{draft}"
    );
    for column in [
        "crm.party.id",
        "crm.party.created_at",
        "crm.party_name.party_id",
    ] {
        assert!(!proposed.contains(column), "{column} is proposed\n{draft}");
    }

    // `policy check` with a policy sealing only the obvious columns warns about every copy.
    let policy = dir.path().join("obvious.toml");
    std::fs::write(&policy, ORM_POLICY).unwrap();
    let checked = run(
        &["policy", "check", "--database-url", &url, "--policy"],
        Some(&policy),
    );
    let check_out = text(&checked.stdout);
    let check_err = text(&checked.stderr);
    assert_eq!(checked.status.code(), Some(0), "{check_out}\n{check_err}");
    for (column, copy) in ORM_COPIES {
        let warning = check_out
            .lines()
            .find(|l| l.contains(&format!("warning: {column} is not sealed but holds ")))
            .unwrap_or_else(|| panic!("no warning about {column}\n{check_out}\n{check_err}"));
        let copy = copy.trim_end_matches(" 100%");
        assert!(
            warning.contains(copy) && warning.contains("a sealed column"),
            "{warning}"
        );
    }
    // Names in another table are also names, a kind the policy seals.
    assert!(
        check_out.contains("warning: crm.party_name.given is not sealed but holds first name 100%"),
        "{check_out}"
    );
    // Sealed columns are not warned about.
    assert!(!check_out.contains("warning: crm.person."), "{check_out}");
    // Without sampling, no warning.
    let quiet = run(
        &[
            "policy",
            "check",
            "--sample-rows",
            "0",
            "--database-url",
            &url,
            "--policy",
        ],
        Some(&policy),
    );
    assert_eq!(quiet.status.code(), Some(0));
    assert!(
        !text(&quiet.stdout).contains("warning:"),
        "{}",
        text(&quiet.stdout)
    );

    // Once the obvious columns are sealed (`pgseal migrate encrypt`), the database holds
    // envelopes and tokens: without keys, a normalised or partial copy is no longer seen (the
    // names elsewhere still are, by their kind); with the keyring, every copy is seen again.
    let migrating = dir.path().join("migrating.toml");
    std::fs::write(
        &migrating,
        ORM_POLICY.replace("\ntype = ", "\nmigrating = true\ntype = "),
    )
    .unwrap();
    let keyring = hospital.keyring.to_str().expect("a UTF-8 path");
    let encrypted = run(
        &[
            "migrate",
            "encrypt",
            "--database-url",
            &url,
            "--keyring",
            keyring,
            "--quiet",
            "--policy",
        ],
        Some(&migrating),
    );
    assert!(
        encrypted.status.success(),
        "{}\n{}",
        text(&encrypted.stdout),
        text(&encrypted.stderr)
    );
    let sealed_values = column_values(
        cluster,
        db,
        "SELECT count(*) FROM crm.contact_mechanism WHERE value LIKE 'pgs1:%'",
    );
    assert_ne!(sealed_values, ["0"], "the contact values are not sealed");
    let keyless = run(
        &["policy", "check", "--database-url", &url, "--policy"],
        Some(&migrating),
    );
    let keyless_out = text(&keyless.stdout);
    assert_eq!(keyless.status.code(), Some(0), "{keyless_out}");
    assert!(
        !keyless_out.contains("copy of"),
        "copies compared with ciphertext\n{keyless_out}"
    );
    assert!(
        keyless_out.contains("warning: crm.party_name.given is not sealed but holds first name"),
        "{keyless_out}"
    );
    let keyed = run(
        &[
            "policy",
            "check",
            "--keyring",
            keyring,
            "--database-url",
            &url,
            "--policy",
        ],
        Some(&migrating),
    );
    let keyed_out = text(&keyed.stdout);
    let keyed_err = text(&keyed.stderr);
    assert_eq!(keyed.status.code(), Some(0), "{keyed_out}\n{keyed_err}");
    for (column, copy) in ORM_COPIES {
        let copy = copy.trim_end_matches(" 100%");
        assert!(
            keyed_out.lines().any(
                |l| l.contains(&format!("warning: {column} is not sealed")) && l.contains(copy)
            ),
            "no warning about {column} with the keyring\n{keyed_out}\n{keyed_err}"
        );
    }

    for value in &values {
        for (what, output) in [
            ("report", &stdout),
            ("stderr", &stderr),
            ("draft", &draft),
            ("check", &check_out),
            ("check's stderr", &check_err),
            ("check with keys", &keyed_out),
            ("check with keys' stderr", &keyed_err),
        ] {
            assert!(
                !contains_word(output, value),
                "the {what} shows a value\n{output}"
            );
        }
    }
}
