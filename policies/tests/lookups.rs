//! The compiled form: lookups by name and by id, identifier folding, defaults and fail-closed
//! fallbacks.

use std::path::Path;

use pgseal_policies::{
    Action, Budget, ClassId, ColumnId, CompiledPolicy, Counting, LoadError, Location, Mask, Rate,
    SealMode, View,
};

fn compile(src: &str) -> CompiledPolicy {
    match CompiledPolicy::from_toml("t.toml", src) {
        Ok(p) => p,
        Err(e) => panic!("refused:\n{e}"),
    }
}

const POLICY: &str = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
mask = "nir"

[columns.'public."Dossiers".Commentaire']
mode = "randomized"
type = "text"

[columns."public.patients.birth_date"]
mode = "randomized"
type = "date"
mask = "year"

[columns."Lab.Results.Patient_NIR"]
mode = "tokenize-nir"
type = "text"

[columns."public.cohort.subject"]
mode = "pseudonym"
type = "varchar(15)"

[classes.app]
roles = ["EHR_App", '"BatchJob"']
default = "plaintext"

[classes.billing]
roles = ["ehr_billing"]
default = "masked"

[classes.billing.views]
"public.patients.birth_date" = { view = "masked", mask = "year-month" }
'public."Dossiers".Commentaire' = "denied"
"lab.results.patient_nir" = "ciphertext"

[classes.billing.budget]
rate = "300/minute"

[classes.quiet]
roles = ["auditor"]
"#;

#[test]
fn columns_are_found_by_catalog_names() {
    let p = compile(POLICY);
    // Unquoted names fold to lower case; quoted ones are kept exactly.
    let nir = p.column_id("public", "patients", "nir").unwrap();
    let comment = p.column_id("public", "Dossiers", "commentaire").unwrap();
    let lab = p.column_id("lab", "results", "patient_nir").unwrap();
    assert_eq!(p.column_id("public", "dossiers", "commentaire"), None);
    assert_eq!(p.column_id("Lab", "Results", "Patient_NIR"), None);
    assert_eq!(p.column_id("public", "patients", "city"), None);
    assert_eq!(p.column_id("other", "patients", "nir"), None);
    // Ids are dense, in file order.
    assert_eq!(nir.index(), 0);
    assert_eq!(comment.index(), 1);
    assert_eq!(lab.index(), 3);
    assert_eq!(
        p.column(comment).qualified_name(),
        "public.\"Dossiers\".commentaire"
    );
    assert_eq!(p.column(lab).domain, "lab.results.patient_nir");
    assert_eq!(p.column(comment).domain, "public.\"Dossiers\".commentaire");
    assert_eq!(
        p.column(nir).declared_at,
        Location {
            line: 2,
            column: 10
        }
    );
    for (i, c) in p.columns().iter().enumerate() {
        assert_eq!(c.id.index(), i);
    }
}

#[test]
fn sealed_tables_group_their_columns() {
    let p = compile(POLICY);
    let patients = p.sealed_table("public", "patients").unwrap();
    let ids: Vec<ColumnId> = patients.columns.clone();
    assert_eq!(
        ids,
        [
            p.column_id("public", "patients", "nir").unwrap(),
            p.column_id("public", "patients", "birth_date").unwrap()
        ]
    );
    assert!(p.is_sealed_table("public", "Dossiers"));
    assert!(p.is_sealed_table("lab", "results"));
    assert!(!p.is_sealed_table("public", "consultations"));
    let names: Vec<(&str, &str)> = p
        .tables()
        .iter()
        .map(|t| (t.schema.as_str(), t.table.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("public", "patients"),
            ("public", "Dossiers"),
            ("lab", "results"),
            ("public", "cohort")
        ]
    );
}

#[test]
fn roles_are_matched_exactly_after_folding() {
    let p = compile(POLICY);
    let app = p.class_of("ehr_app");
    assert_ne!(app, ClassId::DEFAULT);
    assert_eq!(p.class(app).name, "app");
    assert_eq!(p.class_of("BatchJob"), app);
    // The name a client authenticates with is not folded: these are other roles.
    assert_eq!(p.class_of("EHR_App"), ClassId::DEFAULT);
    assert_eq!(p.class_of("batchjob"), ClassId::DEFAULT);
    assert_eq!(p.class_of(""), ClassId::DEFAULT);
    let members: Vec<&str> = p
        .class(app)
        .members
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(members, ["ehr_app", "BatchJob"]);
    assert_eq!(p.classes()[0].name, "default");
    assert!(p.classes()[0].members.is_empty());
    assert_eq!(p.classes()[0].declared_at, None);
}

#[test]
fn views_resolve_per_class_and_column() {
    let p = compile(POLICY);
    let col = |s: &str, t: &str, c: &str| p.column_id(s, t, c).unwrap();
    let nir = col("public", "patients", "nir");
    let birth = col("public", "patients", "birth_date");
    let comment = col("public", "Dossiers", "commentaire");
    let lab = col("lab", "results", "patient_nir");
    let subject = col("public", "cohort", "subject");
    let app = p.class_of("ehr_app");
    let billing = p.class_of("ehr_billing");
    let quiet = p.class_of("auditor");

    assert_eq!(p.view(app, nir), View::Plaintext);
    // The app's default "plaintext" gives the pseudonym of a pseudonym-mode column.
    assert_eq!(p.view(app, subject), View::Pseudonym);
    // Class default "masked" uses each column's own mask…
    assert_eq!(p.view(billing, nir), View::Masked(Mask::Nir));
    // …unless the class gives one.
    assert_eq!(p.view(billing, birth), View::Masked(Mask::YearMonth));
    assert_eq!(p.view(billing, comment), View::Denied);
    assert_eq!(p.view(billing, lab), View::Ciphertext);
    assert_eq!(p.view(billing, subject), View::Pseudonym);
    // A class without a default sees ciphertext.
    for c in p.columns() {
        assert_eq!(p.view(quiet, c.id), View::Ciphertext);
        assert_eq!(p.view(ClassId::DEFAULT, c.id), View::Ciphertext);
    }
    assert_eq!(
        p.view_for("ehr_billing", "public", "patients", "nir"),
        Some(View::Masked(Mask::Nir))
    );
    assert_eq!(
        p.view_for("ehr_billing", "public", "patients", "city"),
        None
    );
    assert_eq!(
        p.view_for("stranger", "public", "patients", "nir"),
        Some(View::Ciphertext)
    );
    assert!(View::Masked(Mask::Nir).needs_plaintext());
    assert!(View::Pseudonym.needs_plaintext());
    assert!(!View::Ciphertext.needs_plaintext());
    assert_eq!(
        View::Masked(Mask::YearMonth).to_string(),
        "masked (year-month)"
    );
}

#[test]
fn budgets_default_fail_closed() {
    let p = compile(POLICY);
    let billing = p.budget(p.class_of("ehr_billing"));
    // burst defaults to the rate's rows; action to throttle, on_cap to block.
    assert_eq!(billing.rate, Rate::parse("300/minute").unwrap());
    assert_eq!(billing.burst, 300);
    assert_eq!(billing.per_hour, None);
    assert_eq!(billing.action, Action::Throttle);
    assert_eq!(billing.on_cap, Action::Block);
    assert_eq!(billing.counts, Counting::SealedTables);
    // No [default.budget]: the built-in one (stricter than billing's in every dimension).
    let default = *p.budget(ClassId::DEFAULT);
    assert_eq!(default, Budget::BUILT_IN_DEFAULT);
    // Classes without a budget get the default one.
    assert_eq!(p.budget_for("ehr_app"), &default);
    assert_eq!(p.budget_for("stranger"), &default);
}

#[test]
fn the_built_in_default_tightens_to_the_strictest_class() {
    let p = compile(
        r#"
[classes.slow]
roles = ["slow"]
budget = { rate = "1/minute", burst = 5, per_hour = 30, counts = "all", action = "alert" }
"#,
    );
    let d = p.budget(ClassId::DEFAULT);
    assert_eq!(d.rate, Rate::parse("1/minute").unwrap());
    assert_eq!(d.burst, 5);
    assert_eq!(d.per_hour, Some(30));
    assert_eq!(d.per_day, Some(500));
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.counts, Counting::AllRows);
    assert_eq!(d.looser_than(p.budget(p.class_of("slow"))), None);
}

#[test]
fn an_explicit_default_is_used_as_written() {
    let p = compile(
        r#"
[default]
view = "denied"
budget = { rate = "1/hour", burst = 1, per_day = 3 }

[columns."public.a.b"]
mode = "deterministic"
type = "int8"
"#,
    );
    let b = p.column_id("public", "a", "b").unwrap();
    assert_eq!(p.view(ClassId::DEFAULT, b), View::Denied);
    let d = p.budget(ClassId::DEFAULT);
    assert_eq!(d.rate.to_string(), "1/hour");
    assert_eq!(d.per_day, Some(3));
    assert_eq!(d.per_hour, None);
    assert_eq!(
        p.classes()[0].declared_at,
        Some(Location { line: 2, column: 2 })
    );
    assert_eq!(p.column(b).mode, SealMode::Deterministic);
}

#[test]
fn an_empty_policy_seals_nothing_and_trusts_no_one() {
    let p = compile("");
    assert!(p.columns().is_empty());
    assert_eq!(p.classes().len(), 1);
    assert_eq!(p.class_of("postgres"), ClassId::DEFAULT);
    assert_eq!(p.view_for("postgres", "public", "t", "c"), None);
    assert_eq!(p.budget_for("postgres"), &Budget::BUILT_IN_DEFAULT);
}

#[test]
fn load_names_the_file_and_reports_io_errors() {
    let missing = Path::new("/nonexistent/pgseal/policy.toml");
    let err = CompiledPolicy::load(missing).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read policy /nonexistent/pgseal/policy.toml: "),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("pgseal-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "version = 3\n").unwrap();
    let err = CompiledPolicy::load(&file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1:11: unsupported policy format version 3 (this pgseal reads version 1)",
            file.display()
        )
    );
    std::fs::write(&file, POLICY).unwrap();
    assert_eq!(
        CompiledPolicy::load(&file).unwrap().file(),
        file.display().to_string()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compiled_policies_can_be_shared_between_sessions() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<CompiledPolicy>();
    let p = std::sync::Arc::new(compile(POLICY));
    let q = p.clone();
    let seen = std::thread::spawn(move || q.view_for("ehr_app", "public", "patients", "nir"))
        .join()
        .unwrap();
    assert_eq!(seen, Some(View::Plaintext));
}
