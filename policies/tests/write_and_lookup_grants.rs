//! `blind_writes` and `lookups`: who may write a sealed column without reading it, and who may
//! look one up by value, with the combinations that would hand a class a guessing oracle
//! refused at load.

use pgseal_policies::{ClassId, CompiledPolicy, WriteAccess};

/// Three columns (tokenized, deterministic, randomized) and a class section appended by the case.
fn policy(class: &str) -> String {
    format!(
        r#"version = 1

[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
mask = "nir"

[columns."public.patients.last_name"]
mode = "deterministic"
type = "text"
mask = "initial"

[columns."public.patients.notes"]
mode = "randomized"
type = "text"
mask = "redact"

[classes.app]
roles = ["app"]
default = "plaintext"

{class}"#
    )
}

fn problems(class: &str) -> Vec<String> {
    match CompiledPolicy::from_toml("t.toml", &policy(class)) {
        Ok(_) => panic!("policy accepted:\n{class}"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn compiled(class: &str) -> CompiledPolicy {
    CompiledPolicy::from_toml("t.toml", &policy(class))
        .unwrap_or_else(|e| panic!("refused: {e:?}\n{class}"))
}

#[test]
fn by_default_only_plaintext_readers_write_and_look_up() {
    let policy = compiled("[classes.billing]\nroles = [\"billing\"]\ndefault = \"masked\"\n");
    let (app, billing) = (policy.class_of("app"), policy.class_of("billing"));
    for column in policy.columns() {
        assert_eq!(policy.write_access(app, column.id), WriteAccess::Reader);
        assert!(policy.may_look_up(app, column.id));
        assert_eq!(
            policy.write_access(billing, column.id),
            WriteAccess::Refused
        );
        assert!(!policy.may_look_up(billing, column.id));
        assert_eq!(
            policy.write_access(ClassId::DEFAULT, column.id),
            WriteAccess::Refused
        );
        assert!(!policy.may_look_up(ClassId::DEFAULT, column.id));
    }
}

#[test]
fn granted_blind_writes_and_lookups_apply_to_their_columns_only() {
    let policy = compiled(
        r#"[classes.intake]
roles = ["intake"]
default = "denied"
blind_writes = ["public.patients.nir", "public.patients.notes"]

[classes.intake.views]
"public.patients.notes" = "ciphertext"

[classes.billing]
roles = ["billing"]
default = "masked"
lookups = ["public.patients.nir"]
"#,
    );
    let id = |name: &str| policy.column_id("public", "patients", name).unwrap();
    let (intake, billing) = (policy.class_of("intake"), policy.class_of("billing"));
    assert_eq!(policy.write_access(intake, id("nir")), WriteAccess::Blind);
    assert_eq!(policy.write_access(intake, id("notes")), WriteAccess::Blind);
    assert_eq!(
        policy.write_access(intake, id("last_name")),
        WriteAccess::Refused
    );
    assert!(!policy.may_look_up(intake, id("nir")));
    assert!(policy.may_look_up(billing, id("nir")));
    assert!(!policy.may_look_up(billing, id("last_name")));
    assert_eq!(
        policy.write_access(billing, id("nir")),
        WriteAccess::Refused
    );
    // What remains is stated.
    let notes = pgseal_policies::leakage::leakage_notes(&policy);
    assert!(
        notes.iter().any(|n| n
            .contains("class billing may look up \"public\".\"patients\".\"nir\"")
            || n.contains("class billing may look up public.patients.nir")),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("class intake writes") && n.contains("nir")),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("last_name") && n.contains("deterministic")),
        "{notes:#?}"
    );
    assert!(!notes.iter().any(|n| n.contains("notes is")), "{notes:#?}");
}

#[test]
fn a_blind_writer_never_sees_an_equality_revealing_stored_form() {
    assert_eq!(
        problems(
            "[classes.intake]\nroles = [\"intake\"]\nblind_writes = [\"public.patients.last_name\"]\n"
        ),
        [
            "t.toml:24:17: class intake writes public.patients.last_name blindly, so its view of \
          it must be \"denied\" (found \"ciphertext\"): public.patients.last_name is stored \
          deterministic, and any other view would let it compare the values it writes with \
          the stored ones"
        ]
    );
    assert_eq!(
        problems(
            "[classes.intake]\nroles = [\"intake\"]\ndefault = \"pseudonym\"\nblind_writes = [\"public.patients.nir\"]\n"
        )
        .len(),
        1
    );
    // A randomized column shows nothing comparable: any view but plaintext will do.
    compiled(
        "[classes.intake]\nroles = [\"intake\"]\ndefault = \"masked\"\nblind_writes = [\"public.patients.notes\"]\n",
    );
}

#[test]
fn impossible_or_pointless_grants_are_refused() {
    let cases = [
        (
            "[classes.app2]\nroles = [\"app2\"]\ndefault = \"plaintext\"\nblind_writes = [\"public.patients.notes\"]\n",
            "sees public.patients.notes as plaintext, so it writes it already",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\ndefault = \"masked\"\nlookups = [\"public.patients.notes\"]\n",
            "stored randomized, which cannot be looked up by value",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\ndefault = \"denied\"\nlookups = [\"public.patients.nir\"]\n",
            "its view of it is \"denied\"",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\ndefault = \"plaintext\"\nlookups = [\"public.patients.nir\"]\n",
            "may look it up already",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\ndefault = \"denied\"\nblind_writes = [\"public.patients.nir\"]\nlookups = [\"public.patients.nir\"]\n",
            "cannot also look it up",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\nlookups = [\"public.patients.city\"]\n",
            "lists public.patients.city in `lookups`, but it is not a sealed column",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\ndefault = \"masked\"\nlookups = [\"public.patients.nir\", \"public.patients.nir\"]\n",
            "lists public.patients.nir twice in `lookups`",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\nblind_writes = [\"patients.nir\"]\n",
            "invalid column \"patients.nir\"",
        ),
        (
            "[classes.b]\nroles = [\"b\"]\nlookups = \"public.patients.nir\"\n",
            "`lookups`",
        ),
    ];
    for (class, expected) in cases {
        let found = problems(class);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{class}\nexpected {expected:?} among {found:#?}"
        );
    }
}
