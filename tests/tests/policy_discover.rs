//! `pgseal policy discover` against the harness's PostgreSQL cluster: the hospital schema filled
//! in plaintext by `pgseal seed`, discovered, and the draft checked. Every column the hospital
//! policy seals is proposed, no key or integer column is, no sampled value is printed, and the
//! draft passes `pgseal policy check`.

use std::collections::BTreeSet;
use std::path::Path;
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
    assert!(
        seeded.status.success(),
        "{}\n{}",
        text(&seeded.stdout),
        text(&seeded.stderr)
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let draft_path = dir.path().join("draft.toml");
    let discovered = run(
        &["policy", "discover", "--database-url", &url, "--output"],
        Some(&draft_path),
    );
    let stdout = text(&discovered.stdout);
    let stderr = text(&discovered.stderr);
    assert_eq!(discovered.status.code(), Some(0), "{stdout}\n{stderr}");
    let draft = std::fs::read_to_string(&draft_path).expect("the draft was written");

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
