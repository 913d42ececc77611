//! `pgseal policy check` against the harness's PostgreSQL cluster: each worked example loaded
//! into its own database checks clean, mismatches are listed at their place in the file, and
//! the exit status tells clean (0), problems (1) and could not check (2) apart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgseal_tests::cluster::free_port;
use pgseal_tests::{cluster, pgseal_binary};

const EXAMPLES: [&str; 3] = ["hospital", "laboratory", "research"];

/// The roles each example's SQL creates and its policy names.
fn roles_of(example: &str) -> &'static [&'static str] {
    match example {
        "hospital" => &["ehr_app", "ehr_billing", "ehr_admin"],
        "laboratory" => &["lab_app", "lab_export"],
        "research" => &["research_etl", "research_analyst"],
        _ => panic!("unknown example {example}"),
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples")
}

/// Creates a database and loads an example's SQL into it (twice: the scripts are idempotent).
fn database_with(example: &str) -> String {
    let cluster = cluster();
    let db = cluster.create_database(&format!("policy_{example}"));
    let sql = examples_dir().join(format!("{example}.sql"));
    for _ in 0..2 {
        let output = cluster
            .psql(&db)
            .arg("-f")
            .arg(&sql)
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "loading {example}.sql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    db
}

/// Runs `pgseal policy check`.
fn check(policy: &Path, database_url: Option<&str>) -> Output {
    let mut command = Command::new(pgseal_binary());
    command.args(["policy", "check", "--policy"]).arg(policy);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command.output().expect("run pgseal policy check")
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_example_checks_clean_against_its_own_schema() {
    let cluster = cluster();
    for example in EXAMPLES {
        let db = database_with(example);
        let policy = examples_dir().join(format!("{example}.toml"));
        let output = check(&policy, Some(&cluster.url(&db)));
        let lines = stdout_lines(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{example}: {lines:#?}\n{}",
            stderr(&output)
        );
        // Nothing but notes, and the superuser is one of the roles left to the default class.
        let prefix = format!("{}: note: ", policy.display());
        assert!(lines.iter().all(|l| l.starts_with(&prefix)), "{lines:#?}");
        assert!(
            lines.contains(&format!(
                "{prefix}login role postgres is in no class: it sees sealed columns as {} and \
                 gets the default budget",
                if example == "research" {
                    "denied"
                } else {
                    "ciphertext"
                }
            )),
            "{lines:#?}"
        );
        // The example's own roles are named by its policy, so none is left to the default class.
        for role in roles_of(example) {
            let unnamed = format!("{prefix}login role {role} is in no class");
            assert!(!lines.iter().any(|l| l.starts_with(&unnamed)), "{lines:#?}");
        }
        assert!(
            stderr(&output).contains("ok against the database"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn mismatches_between_policy_and_database_are_listed_at_their_place() {
    let cluster = cluster();
    let db = database_with("hospital");
    let alter = "\
        ALTER TABLE public.patients ALTER COLUMN nir TYPE text;
        ALTER TABLE public.patients ALTER COLUMN birth_date TYPE date USING NULL;
        ALTER TABLE public.consultations DROP COLUMN prescription;
        ALTER TABLE public.consultations ALTER COLUMN notes TYPE bytea USING NULL;
        ALTER TABLE public.patients ALTER COLUMN email TYPE varchar(64);";
    cluster.run_sql(&db, alter).expect("alter the schema");

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("hospital.toml");
    let mut text = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    text.push_str("\n[classes.ghosts]\nroles = [\"pgseal_no_such_role\"]\n");
    text.push_str(
        "\n[columns.\"public.visits.reason\"]\nmode = \"randomized\"\ntype = \"text\"\nmask = \
         \"redact\"\n",
    );
    std::fs::write(&policy, &text).unwrap();
    let line_of = |needle: &str| {
        1 + text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in the policy"))
    };
    let file = policy.display().to_string();

    let output = check(&policy, Some(&cluster.url(&db)));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let problems: Vec<String> = stdout_lines(&output)
        .into_iter()
        .filter(|l| !l.starts_with(&format!("{file}: note: ")))
        .collect();
    assert_eq!(
        problems,
        [
            format!(
                "{file}:{}:10: sealed column public.patients.nir (tokenize-nir) is stored as \
                 text: tokens keep the declared type, so it must be stored as character \
                 varying(15)",
                line_of("[columns.\"public.patients.nir\"]")
            ),
            format!(
                "{file}:{}:10: sealed column public.patients.birth_date (randomized) is stored \
                 as date: ciphertext needs text or bytea storage",
                line_of("[columns.\"public.patients.birth_date\"]")
            ),
            format!(
                "{file}:{}:10: sealed column public.patients.email (deterministic) is stored as \
                 character varying(64): ciphertext needs text or bytea storage",
                line_of("[columns.\"public.patients.email\"]")
            ),
            format!(
                "{file}:{}:10: sealed column public.consultations.prescription does not exist \
                 in the database (table public.consultations has no column prescription)",
                line_of("[columns.\"public.consultations.prescription\"]")
            ),
            format!(
                "{file}:{}:10: role pgseal_no_such_role (class ghosts) does not exist in the \
                 database",
                line_of("pgseal_no_such_role")
            ),
            format!(
                "{file}:{}:10: sealed column public.visits.reason does not exist in the \
                 database (no table public.visits)",
                line_of("[columns.\"public.visits.reason\"]")
            ),
        ]
    );
    assert!(
        stderr(&output).contains("6 problems against the database"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_invalid_policy_is_not_checked_against_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("bad.toml");
    std::fs::write(
        &policy,
        "[columns.\"public.a.b\"]\nmode = \"tokenize-nir\"\ntype = \"date\"\n",
    )
    .unwrap();
    let cluster = cluster();
    let output = check(&policy, Some(&cluster.url("postgres")));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout_lines(&output),
        [format!(
            "{}:1:10: mode tokenize-nir cannot fit type date: a NIR token needs text, \
             varchar(n) with n >= 15, or char(15)",
            policy.display()
        )]
    );
    let err = stderr(&output);
    assert!(
        err.contains("database not checked: fix the policy first"),
        "{err}"
    );
    assert!(err.contains("1 problem"), "{err}");
}

#[test]
fn a_database_that_cannot_be_reached_or_read_is_exit_status_2() {
    let policy = examples_dir().join("hospital.toml");
    let port = free_port().unwrap();
    let output = check(
        &policy,
        Some(&format!(
            "postgres://postgres:secret@127.0.0.1:{port}/postgres"
        )),
    );
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("secret"), "the password leaked: {err}");

    let cluster = cluster();
    let wrong = format!(
        "postgres://postgres:not-the-password@{}:{}/postgres",
        cluster.host(),
        cluster.port()
    );
    let output = check(&policy, Some(&wrong));
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );

    let output = check(&policy, Some("host=127.0.0.1 port=notaport"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid --database-url"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreadable_policy_is_exit_status_2() {
    let output = check(Path::new("/nonexistent/pgseal/policy.toml"), None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("pgseal: cannot read policy /nonexistent/pgseal/policy.toml: "),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn example_scripts_can_run_concurrently() {
    // Roles are cluster-wide: two scripts creating the same roles at once must both succeed.
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| database_with("laboratory")))
        .collect();
    for handle in handles {
        handle.join().expect("a concurrent load failed");
    }
}

#[test]
fn a_valid_policy_states_what_it_still_reveals() {
    let policy = examples_dir().join("hospital.toml");
    let output = check(&policy, None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let prefix = format!("{}: note: leakage: ", policy.display());
    let lines = stdout_lines(&output);
    assert!(lines.iter().all(|l| l.starts_with(&prefix)), "{lines:#?}");
    for column in [
        "patients.nir is tokenized",
        "patients.last_name is deterministic",
        "patients.first_name has search tokens of its first 1 to 4 characters, its whole value",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(column)),
            "no note on {column}: {lines:#?}"
        );
    }
    // Randomized columns show nothing comparable; no class has grants in the example.
    assert!(!lines.iter().any(|l| l.contains("notes is")), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("may look up")),
        "{lines:#?}"
    );
}
