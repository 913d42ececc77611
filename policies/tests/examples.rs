//! The worked examples and the reference file load, and compile to what their comments say.

use std::path::{Path, PathBuf};

use pgseal_policies::{
    Action, ClassId, CompiledPolicy, Counting, Mask, Period, PlainType, Rate, SealMode, View,
};

fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn load(name: &str) -> CompiledPolicy {
    match CompiledPolicy::load(&path(name)) {
        Ok(policy) => policy,
        Err(err) => panic!("{name} does not load:\n{err}"),
    }
}

#[test]
fn hospital_views_match_the_issue() {
    let p = load("examples/hospital.toml");
    let col = |t: &str, c: &str| p.column_id("public", t, c).unwrap();
    let nir = col("patients", "nir");
    assert_eq!(p.column(nir).mode, SealMode::TokenizeNir);
    assert_eq!(p.column(nir).plain_type, PlainType::Varchar(Some(15)));
    assert_eq!(
        p.column(col("patients", "birth_date")).plain_type,
        PlainType::Date
    );
    assert_eq!(
        p.column(col("consultations", "diagnosis_code")).mode,
        SealMode::Deterministic
    );
    assert_eq!(p.columns().len(), 10);
    assert!(p.column_id("public", "patients", "city").is_none());

    let app = p.class_of("ehr_app");
    let billing = p.class_of("ehr_billing");
    let admin = p.class_of("ehr_admin");
    for column in p.columns() {
        assert_eq!(
            p.view(app, column.id),
            View::Plaintext,
            "{}",
            column.qualified_name()
        );
        assert_eq!(p.view(admin, column.id), View::Ciphertext);
        assert_eq!(p.view(ClassId::DEFAULT, column.id), View::Ciphertext);
    }
    assert_eq!(p.view(billing, nir), View::Masked(Mask::Nir));
    assert_eq!(
        p.view(billing, col("patients", "email")),
        View::Masked(Mask::Email)
    );
    assert_eq!(
        p.view(billing, col("patients", "phone")),
        View::Masked(Mask::Phone)
    );
    assert_eq!(
        p.view(billing, col("patients", "last_name")),
        View::Masked(Mask::Initial)
    );
    assert_eq!(
        p.view(billing, col("consultations", "diagnosis_code")),
        View::Plaintext
    );
    assert_eq!(p.view(billing, col("consultations", "notes")), View::Denied);
    assert_eq!(
        p.view(billing, col("consultations", "prescription")),
        View::Denied
    );

    let admin_budget = p.budget(admin);
    assert_eq!(
        admin_budget.rate,
        Rate {
            rows: 100,
            per: Period::Minute
        }
    );
    assert_eq!(admin_budget.burst, 200);
    assert_eq!(admin_budget.per_day, Some(2000));
    assert_eq!(admin_budget.per_hour, None);
    assert_eq!(admin_budget.action, Action::Throttle);
    assert_eq!(admin_budget.on_cap, Action::Block);
    assert_eq!(p.budget(app).action, Action::Alert);
    // The default budget is at least as strict as every class's.
    for class in &p.classes()[1..] {
        assert_eq!(p.budget(ClassId::DEFAULT).looser_than(&class.budget), None);
    }
    assert_eq!(p.budget_for("someone_else"), p.budget(ClassId::DEFAULT));
}

#[test]
fn laboratory_export_sees_no_hiv_pregnancy_or_comments() {
    let p = load("examples/laboratory.toml");
    let export = p.class_of("lab_export");
    let lis = p.class_of("lab_app");
    assert_eq!(
        p.view_for("lab_export", "lis", "patients", "hiv_serology"),
        Some(View::Denied)
    );
    assert_eq!(
        p.view_for("lab_export", "lis", "samples", "pregnant"),
        Some(View::Denied)
    );
    assert_eq!(
        p.view_for("lab_export", "lis", "results", "comment"),
        Some(View::Denied)
    );
    assert_eq!(
        p.view_for("lab_export", "lis", "results", "value"),
        Some(View::Plaintext)
    );
    assert_eq!(
        p.view_for("lab_export", "lis", "samples", "prescriber_rpps"),
        Some(View::Pseudonym)
    );
    assert_eq!(
        p.view_for("lab_export", "lis", "patients", "blood_group"),
        Some(View::Ciphertext)
    );
    assert_eq!(p.budget(export).counts, Counting::AllRows);
    assert!(
        p.classes()[lis.index()]
            .views
            .iter()
            .all(|v| *v == View::Plaintext)
    );
    let pregnant = p.column_id("lis", "samples", "pregnant").unwrap();
    assert_eq!(p.column(pregnant).plain_type, PlainType::Bool);
    // The two NIR columns share one domain, so they join.
    let a = p.column(p.column_id("lis", "patients", "nir").unwrap());
    let b = p.column(p.column_id("lis", "results", "patient_nir").unwrap());
    assert_eq!(a.domain, "patient-nir");
    assert_eq!(a.domain, b.domain);
    // Other columns get their own domain.
    let phone = p.column(p.column_id("lis", "patients", "phone").unwrap());
    assert_eq!(phone.domain, "lis.patients.phone");
    // No [default.budget]: the built-in default, tightened by the export class's budget.
    let default = p.budget(ClassId::DEFAULT);
    assert_eq!(default.rate, Rate::parse("10/minute").unwrap());
    assert_eq!(default.counts, Counting::AllRows);
    assert_eq!(default.per_day, Some(500));
}

#[test]
fn research_analysts_see_pseudonyms_months_and_no_free_text() {
    let p = load("examples/research.toml");
    let v = |role: &str, t: &str, c: &str| p.view_for(role, "research", t, c).unwrap();
    assert_eq!(
        v("research_analyst", "subjects", "subject_nir"),
        View::Pseudonym
    );
    assert_eq!(
        v("research_analyst", "subjects", "birth_date"),
        View::Masked(Mask::YearMonth)
    );
    assert_eq!(
        v("research_analyst", "events", "event_date"),
        View::Masked(Mask::YearMonth)
    );
    assert_eq!(v("research_analyst", "events", "notes"), View::Denied);
    assert_eq!(
        v("research_analyst", "events", "icd10_code"),
        View::Plaintext
    );
    assert_eq!(
        v("research_analyst", "events", "prescriber_rpps"),
        View::Pseudonym
    );
    // The loader's default "plaintext" gives the pseudonym for pseudonym-mode columns.
    assert_eq!(
        v("research_etl", "subjects", "subject_nir"),
        View::Pseudonym
    );
    assert_eq!(v("research_etl", "events", "notes"), View::Plaintext);
    // [default] view = "denied".
    assert_eq!(v("intruder", "events", "icd10_code"), View::Denied);
    let nir = p.column(p.column_id("research", "subjects", "subject_nir").unwrap());
    assert_eq!(nir.mode, SealMode::Pseudonym);
    assert!(!nir.mode.is_reversible());
}

#[test]
fn reference_file_loads() {
    let p = load("reference.toml");
    assert!(!p.columns().is_empty());
    assert!(p.classes().len() > 1);
}

#[test]
fn readme_snippets_compile() {
    let readme = std::fs::read_to_string(path("README.md")).unwrap();
    let mut checked = 0;
    for (i, block) in readme.split("```toml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap();
        // Templates with placeholders are not policies.
        if block.contains("NAME") || block.contains("\"...\"") {
            continue;
        }
        if let Err(e) = CompiledPolicy::from_toml(&format!("README block {i}"), block) {
            panic!("README block {i} does not compile:\n{e}\n{block}");
        }
        checked += 1;
    }
    assert_eq!(checked, 10, "README toml blocks checked");
}
