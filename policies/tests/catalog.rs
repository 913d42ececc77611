//! Checking a policy against a catalog snapshot (the database side is in
//! tests/tests/policy_check.rs).

use pgseal_policies::CompiledPolicy;
use pgseal_policies::catalog::{
    Catalog, CatalogColumn, CatalogRole, check_catalog, holds_ciphertext,
};

const POLICY: &str = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"

[columns."public.patients.birth_date"]
mode = "randomized"
type = "date"

[columns."public.patients.last_name"]
mode = "deterministic"
type = "text"

[columns."public.cohort.subject"]
mode = "pseudonym"
type = "varchar(15)"

[columns."public.missing.x"]
mode = "randomized"
type = "text"

[columns."public.patients.ghost"]
mode = "randomized"
type = "text"

[classes.app]
roles = ["ehr_app", "ehr_gone", "ehr_group"]
"#;

fn column(table: &str, column: &str, ty: &str) -> CatalogColumn {
    CatalogColumn {
        schema: "public".into(),
        table: table.into(),
        column: column.into(),
        storage_type: ty.into(),
    }
}

fn role(name: &str, can_login: bool) -> CatalogRole {
    CatalogRole {
        name: name.into(),
        can_login,
    }
}

#[test]
fn storage_types_roles_and_unnamed_roles() {
    let policy = CompiledPolicy::from_toml("p.toml", POLICY).unwrap();
    let catalog = Catalog {
        columns: vec![
            column("patients", "nir", "text"),
            column("patients", "birth_date", "date"),
            column("patients", "last_name", "bytea"),
            column("cohort", "subject", "character varying(64)"),
        ],
        roles: vec![
            role("ehr_app", true),
            role("ehr_group", false),
            role("postgres", true),
            role("pg_monitor", false),
            role("pg_login_but_builtin", true),
            role("ehr_admin", true),
            role("reporting", false),
        ],
    };
    let report = check_catalog(&policy, &catalog);
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "p.toml:2:10: sealed column public.patients.nir (tokenize-nir) is stored as text: \
             tokens keep the declared type, so it must be stored as character varying(15)",
            "p.toml:6:10: sealed column public.patients.birth_date (randomized) is stored as \
             date: ciphertext needs text or bytea storage",
            "p.toml:14:10: sealed column public.cohort.subject (pseudonym) is stored as \
             character varying(64): pseudonyms need text or bytea storage",
            "p.toml:18:10: sealed column public.missing.x does not exist in the database (no \
             table public.missing)",
            "p.toml:22:10: sealed column public.patients.ghost does not exist in the database \
             (table public.patients has no column ghost)",
            "p.toml:27:21: role ehr_gone (class app) does not exist in the database",
        ]
    );
    assert_eq!(
        report.notes,
        [
            "role ehr_group (class app) cannot log in: pgseal gives a session the class of the \
             role it authenticates as",
            "login role ehr_admin is in no class: it sees sealed columns as ciphertext and gets \
             the default budget",
            "login role postgres is in no class: it sees sealed columns as ciphertext and gets \
             the default budget",
        ]
    );
}

#[test]
fn a_matching_catalog_is_clean() {
    let policy = CompiledPolicy::from_toml("p.toml", POLICY).unwrap();
    let catalog = Catalog {
        columns: vec![
            column("patients", "nir", "character varying(15)"),
            column("patients", "birth_date", "text"),
            column("patients", "last_name", "bytea"),
            column("patients", "ghost", "character varying"),
            column("cohort", "subject", "text"),
            column("missing", "x", "text"),
        ],
        roles: vec![
            role("ehr_app", true),
            role("ehr_gone", true),
            role("ehr_group", true),
        ],
    };
    let report = check_catalog(&policy, &catalog);
    assert_eq!(report.problems, []);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

#[test]
fn denied_default_is_named_in_notes() {
    let policy = CompiledPolicy::from_toml(
        "p.toml",
        "[default]\nview = \"denied\"\n[columns.\"public.a.b\"]\nmode = \"randomized\"\ntype = \"text\"\n",
    )
    .unwrap();
    let catalog = Catalog {
        columns: vec![column("a", "b", "text")],
        roles: vec![role("app", true)],
    };
    assert_eq!(
        check_catalog(&policy, &catalog).notes,
        [
            "login role app is in no class: it sees sealed columns as denied and gets the default \
          budget"
        ]
    );
}

#[test]
fn ciphertext_storage() {
    assert!(holds_ciphertext("text"));
    assert!(holds_ciphertext("bytea"));
    assert!(holds_ciphertext("character varying"));
    assert!(!holds_ciphertext("character varying(255)"));
    assert!(!holds_ciphertext("date"));
    assert!(!holds_ciphertext("my_domain"));
}
