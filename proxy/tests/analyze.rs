//! The SQL analyzer against the hospital example policy (and a small inline policy for shared
//! domains): what it seals, what it lists as read and written, what it refuses, and that it
//! never panics on any input.

use std::ops::Range;
use std::path::Path;

use pgseal::analyze::{
    AnalyzeError, CopyDirection, CopyFormat, MatchOp, MatchShape, Purpose, RefusalKind, SealSite,
    SiteValue, SqlPrepared, StatementKind, StatementPlan, TableRef, analyze,
};
use pgseal_policies::{ColumnId, CompiledPolicy};
use proptest::prelude::*;

fn hospital() -> CompiledPolicy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/hospital.toml");
    CompiledPolicy::load(&path).expect("hospital policy")
}

/// A policy with a shared domain across tables, a second domain for a same-named column, a
/// numeric column and a quoted table name.
fn shared() -> CompiledPolicy {
    CompiledPolicy::from_toml(
        "shared.toml",
        r#"
        version = 1
        [columns."public.patients.nir"]
        mode = "tokenize-nir"
        type = "varchar(15)"
        domain = "patient-nir"
        [columns."public.results.patient_nir"]
        mode = "tokenize-nir"
        type = "varchar(15)"
        domain = "patient-nir"
        [columns."public.results.value"]
        mode = "randomized"
        type = "text"
        [columns."public.patients.last_name"]
        mode = "deterministic"
        type = "text"
        [columns."archive.patients.last_name"]
        mode = "deterministic"
        type = "text"
        [columns."public.measures.weight"]
        mode = "deterministic"
        type = "int4"
        [columns.'public."Dossiers".commentaire']
        mode = "randomized"
        type = "text"
        "#,
    )
    .expect("inline policy")
}

fn col(policy: &CompiledPolicy, qualified: &str) -> ColumnId {
    let parts: Vec<&str> = qualified.split('.').collect();
    let (schema, table, column) = match parts.as_slice() {
        [table, column] => ("public", *table, *column),
        [schema, table, column] => (*schema, *table, *column),
        _ => panic!("bad name {qualified}"),
    };
    policy
        .column_id(schema, table, column)
        .unwrap_or_else(|| panic!("{qualified} is not sealed"))
}

fn plan_with(policy: &CompiledPolicy, sql: &str) -> StatementPlan {
    let mut analysis = analyze(sql, policy).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(analysis.statements.len(), 1, "{sql}");
    analysis.statements.remove(0)
}

fn plan(sql: &str) -> StatementPlan {
    plan_with(&hospital(), sql)
}

/// The plan, which must have no refusal.
fn ok(sql: &str) -> StatementPlan {
    let p = plan(sql);
    assert!(
        p.refusals.is_empty(),
        "{sql}: unexpected refusals {:?}",
        p.refusals
    );
    p
}

fn ok_with(policy: &CompiledPolicy, sql: &str) -> StatementPlan {
    let p = plan_with(policy, sql);
    assert!(
        p.refusals.is_empty(),
        "{sql}: unexpected refusals {:?}",
        p.refusals
    );
    p
}

/// The first refusal's reason, which must contain every fragment.
fn refused_with(policy: &CompiledPolicy, sql: &str, fragments: &[&str]) -> String {
    let p = plan_with(policy, sql);
    let first = p
        .refusals
        .first()
        .unwrap_or_else(|| panic!("{sql}: not refused; plan {p:#?}"));
    assert_eq!(first.sqlstate(), "0A000");
    let all: Vec<&str> = p.refusals.iter().map(|r| r.reason.as_str()).collect();
    for fragment in fragments {
        assert!(
            all.iter().any(|r| r.contains(fragment)),
            "{sql}: no refusal mentions {fragment:?}: {all:#?}"
        );
    }
    first.reason.clone()
}

fn refused(sql: &str, fragments: &[&str]) -> String {
    refused_with(&hospital(), sql, fragments)
}

/// The text each site's value covers.
fn site_texts<'s>(sql: &'s str, plan: &StatementPlan) -> Vec<&'s str> {
    plan.sites
        .iter()
        .filter_map(|s| match &s.value {
            SiteValue::Literal { span, .. } => Some(&sql[span.clone()]),
            SiteValue::Param { .. } => None,
        })
        .collect()
}

/// The text with every literal site replaced by `'S'` and every strip span deleted, the way
/// the session rewrites it.
fn rewritten(sql: &str, plan: &StatementPlan) -> String {
    let mut edits: Vec<(Range<usize>, &str)> = Vec::new();
    for site in &plan.sites {
        if let SiteValue::Literal { span, .. } = &site.value {
            edits.push((span.clone(), "'S'"));
        }
        for strip in &site.strip {
            edits.push((strip.clone(), ""));
        }
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = sql.to_string();
    let mut last_start = usize::MAX;
    for (range, with) in edits {
        assert!(range.end <= last_start, "overlapping edits in {sql}");
        last_start = range.start;
        out.replace_range(range, with);
    }
    out
}

fn literal(site: &SealSite) -> (&Range<usize>, &str) {
    match &site.value {
        SiteValue::Literal { span, text } => (span, text.as_str()),
        SiteValue::Param { index } => panic!("expected a literal, found ${index}"),
    }
}

fn param(site: &SealSite) -> u16 {
    match &site.value {
        SiteValue::Param { index } => *index,
        SiteValue::Literal { text, .. } => panic!("expected a parameter, found {text:?}"),
    }
}

fn table(schema: &str, name: &str) -> TableRef {
    TableRef {
        schema: schema.into(),
        table: name.into(),
    }
}

// --- INSERT ----------------------------------------------------------------------------------

#[test]
fn insert_values_seals_literals_and_parameters() {
    let h = hospital();
    let sql = "INSERT INTO patients (nir, last_name, birth_date, city) \
               VALUES ($1, 'D''Artagnan', '1985-05-17'::date, 'Paris')";
    let p = ok(sql);
    assert_eq!(p.kind, StatementKind::Insert);
    assert_eq!(p.sealed_tables, vec![table("public", "patients")]);
    assert_eq!(p.writes, {
        let mut w = vec![
            col(&h, "patients.nir"),
            col(&h, "patients.last_name"),
            col(&h, "patients.birth_date"),
        ];
        w.sort();
        w
    });
    assert_eq!(p.sites.len(), 3);
    assert_eq!(param(&p.sites[0]), 1);
    assert_eq!(p.sites[0].column, col(&h, "patients.nir"));
    assert_eq!(p.sites[0].purpose, Purpose::Store);
    let (span, text) = literal(&p.sites[1]);
    assert_eq!(&sql[span.clone()], "'D''Artagnan'");
    assert_eq!(text, "D'Artagnan");
    assert_eq!(p.sites[1].column, col(&h, "patients.last_name"));
    let (_, text) = literal(&p.sites[2]);
    assert_eq!(text, "1985-05-17");
    assert_eq!(
        rewritten(sql, &p),
        "INSERT INTO patients (nir, last_name, birth_date, city) VALUES ($1, 'S', 'S', 'Paris')"
    );
}

#[test]
fn insert_multi_row_default_and_null() {
    let sql = "insert into public.patients (nir, email) values ('185057800608491', DEFAULT), \
               (NULL, 'a@b.fr'), ($2, NULL::text)";
    let p = ok(sql);
    assert_eq!(site_texts(sql, &p), ["'185057800608491'", "'a@b.fr'"]);
    assert_eq!(p.sites.len(), 3, "NULL and DEFAULT give no site");
    assert_eq!(param(&p.sites[2]), 2);
}

#[test]
fn insert_without_column_list_into_sealed_table_is_refused() {
    let reason = refused(
        "INSERT INTO patients VALUES (1, 'x')",
        &["without a column list"],
    );
    assert!(reason.contains("public.patients"));
    // A table without sealed columns needs no list, and DEFAULT VALUES has no values.
    ok("INSERT INTO audit_log VALUES (1, 'x')");
    ok("INSERT INTO patients DEFAULT VALUES");
}

#[test]
fn insert_of_computed_values_is_refused() {
    refused(
        "INSERT INTO patients (nir, last_name) VALUES ($1, upper('dupont'))",
        &[
            "computed value",
            "public.patients.last_name (deterministic)",
        ],
    );
    refused(
        "INSERT INTO patients (birth_date) VALUES (current_date)",
        &["public.patients.birth_date (randomized)"],
    );
    refused(
        "INSERT INTO patients (last_name) VALUES (city)",
        &["public.patients.last_name"],
    );
}

#[test]
fn insert_values_count_mismatch_is_refused() {
    refused(
        "INSERT INTO patients (nir, last_name) VALUES ($1)",
        &["1 values for 2 columns"],
    );
}

#[test]
fn upsert_excluded_literal_parameter_and_returning() {
    let h = hospital();
    let sql = "INSERT INTO patients AS p (nir, last_name) VALUES ($1, $2) \
               ON CONFLICT (nir) DO UPDATE SET last_name = EXCLUDED.last_name, \
               email = 'x@y.fr', phone = $3, city = 'Lyon' WHERE p.last_name = $2 RETURNING *";
    let p = ok(sql);
    let store: Vec<_> = p
        .sites
        .iter()
        .filter(|s| s.purpose == Purpose::Store)
        .collect();
    assert_eq!(store.len(), 4, "$1, $2, 'x@y.fr', $3: {:?}", p.sites);
    assert!(p.writes.contains(&col(&h, "patients.email")));
    assert!(p.writes.contains(&col(&h, "patients.phone")));
    let matched: Vec<_> = p
        .sites
        .iter()
        .filter(|s| matches!(s.purpose, Purpose::Match(_)))
        .collect();
    assert_eq!(matched.len(), 1);
    assert_eq!(param(matched[0]), 2);
    // RETURNING * reads every sealed column of the table.
    assert_eq!(p.reads.len(), 7);
    refused(
        "INSERT INTO patients (nir, last_name) VALUES ($1, $2) ON CONFLICT (nir) DO UPDATE \
         SET last_name = upper(EXCLUDED.last_name)",
        &["function upper() on sealed column public.patients.last_name (deterministic)"],
    );
    refused(
        "INSERT INTO patients (nir, last_name) VALUES ($1, $2) ON CONFLICT (nir) DO UPDATE \
         SET last_name = EXCLUDED.first_name",
        &["copying sealed column public.patients.first_name"],
    );
}

#[test]
fn insert_select_within_one_domain_is_allowed() {
    let s = shared();
    let p = ok_with(
        &s,
        "INSERT INTO results (patient_nir) SELECT p.nir FROM patients p WHERE p.last_name = $1",
    );
    assert!(p.writes.contains(&col(&s, "results.patient_nir")));
    assert!(p.reads.contains(&col(&s, "patients.nir")));
    assert_eq!(p.sites.len(), 1);
    refused_with(
        &s,
        "INSERT INTO archive.patients (last_name) SELECT last_name FROM public.patients",
        &[
            "copying sealed column public.patients.last_name",
            "archive.patients.last_name",
        ],
    );
    refused_with(
        &s,
        "INSERT INTO results (patient_nir) SELECT code FROM imports",
        &[
            "INSERT … SELECT of a value pgseal cannot seal",
            "public.results.patient_nir",
        ],
    );
    refused_with(
        &s,
        "INSERT INTO results (patient_nir) SELECT * FROM patients",
        &["INSERT … SELECT *"],
    );
    // A literal selected into a sealed column is sealed like a VALUES literal.
    let sql = "INSERT INTO results (patient_nir, value) SELECT '185057800608491', $1";
    let p = ok_with(&s, sql);
    assert_eq!(site_texts(sql, &p), ["'185057800608491'"]);
    assert_eq!(p.sites.len(), 2);
}

// --- UPDATE, DELETE -------------------------------------------------------------------------

#[test]
fn update_set_where_returning() {
    let h = hospital();
    let sql = "UPDATE patients SET last_name = 'Martin', address = $1, city = 'Nice' \
               WHERE nir = '185057800608491' RETURNING id, email";
    let p = ok(sql);
    assert_eq!(p.kind, StatementKind::Update);
    assert_eq!(p.writes, {
        let mut w = vec![col(&h, "patients.last_name"), col(&h, "patients.address")];
        w.sort();
        w
    });
    assert!(p.reads.contains(&col(&h, "patients.email")));
    assert!(p.reads.contains(&col(&h, "patients.nir")));
    assert_eq!(site_texts(sql, &p), ["'Martin'", "'185057800608491'"]);
    assert_eq!(p.sites[0].purpose, Purpose::Store);
    assert!(matches!(p.sites[2].purpose, Purpose::Match(_)));
    // A sealed column set from itself copies the stored value.
    ok("UPDATE patients SET last_name = last_name");
    refused(
        "UPDATE patients SET last_name = last_name || 'x'",
        &["public.patients.last_name (deterministic)"],
    );
    // Tuple assignments are split.
    let p = ok("UPDATE patients SET (last_name, city) = ('A', 'B')");
    assert_eq!(p.sites.len(), 1);
    refused(
        "UPDATE patients SET (last_name, city) = (SELECT a, b FROM t)",
        &["cannot split"],
    );
}

#[test]
fn update_from_and_delete_using() {
    let h = hospital();
    let p = ok("UPDATE consultations c SET notes = $1 FROM patients p \
         WHERE p.id = c.patient_id AND p.nir = $2");
    assert_eq!(
        p.sealed_tables,
        vec![
            table("public", "consultations"),
            table("public", "patients")
        ]
    );
    assert_eq!(p.writes, vec![col(&h, "consultations.notes")]);
    assert_eq!(p.sites.len(), 2);
    let p = ok(
        "DELETE FROM consultations c USING patients p WHERE c.patient_id = p.id \
                AND p.email = $1 RETURNING c.diagnosis_code",
    );
    assert_eq!(p.kind, StatementKind::Delete);
    assert!(p.writes.is_empty());
    assert!(p.reads.contains(&col(&h, "consultations.diagnosis_code")));
    assert!(p.reads.contains(&col(&h, "patients.email")));
    assert_eq!(p.sites[0].column, col(&h, "patients.email"));
}

// --- SELECT ---------------------------------------------------------------------------------

#[test]
fn select_reads_through_columns_and_stars() {
    let h = hospital();
    let p = ok("SELECT nir, city FROM patients");
    assert_eq!(p.kind, StatementKind::Select);
    assert_eq!(p.reads, vec![col(&h, "patients.nir")]);
    let p = ok("SELECT * FROM patients");
    assert_eq!(p.reads.len(), 7);
    let p = ok("SELECT c.* FROM patients p JOIN consultations c ON c.patient_id = p.id");
    assert_eq!(p.reads.len(), 3);
    assert!(p.reads.contains(&col(&h, "consultations.notes")));
    let p = ok("SELECT * FROM patients p JOIN consultations c ON c.patient_id = p.id");
    assert_eq!(p.reads.len(), 10);
    // count(*) reads nothing, but the table is touched (budgets).
    let p = ok("SELECT count(*) FROM patients");
    assert!(p.reads.is_empty());
    assert_eq!(p.sealed_tables, vec![table("public", "patients")]);
}

#[test]
fn functions_operators_and_casts_over_sealed_values_are_refused() {
    refused(
        "SELECT upper(last_name) FROM patients",
        &["function upper() on sealed column public.patients.last_name (deterministic)"],
    );
    refused(
        "SELECT birth_date + 1 FROM patients",
        &["operator + on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "SELECT count(DISTINCT birth_date) FROM patients",
        &["count(DISTINCT …) on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "SELECT max(nir) FROM patients",
        &["function max()", "(tokenize-nir)"],
    );
    refused(
        "SELECT birth_date::date FROM patients",
        &["cast to DATE on sealed column"],
    );
    refused("SELECT CAST(nir AS text) FROM patients", &["cast to TEXT"]);
    refused("SELECT row_to_json(p) FROM patients p", &["whole row"]);
    refused(
        "SELECT CASE WHEN true THEN address END FROM patients",
        &["CASE result on sealed column public.patients.address (randomized)"],
    );
    ok(
        "SELECT count(nir), count(DISTINCT nir), count(DISTINCT last_name), count(birth_date) FROM patients",
    );
}

#[test]
fn equality_and_in_on_deterministic_and_tokenized_columns() {
    let h = hospital();
    let sql = "SELECT id FROM patients p WHERE p.last_name = 'Dupont' AND 'j@x.fr' = email \
               AND nir IN ('185057800608491', $1) AND email NOT IN ('a@b.fr') AND phone <> $2";
    let p = ok(sql);
    assert_eq!(p.sites.len(), 6);
    let ctx = |i: usize| match &p.sites[i].purpose {
        Purpose::Match(ctx) => ctx.clone(),
        other => panic!("not a match: {other:?}"),
    };
    assert_eq!(
        ctx(0).shape,
        MatchShape::Compare {
            op: MatchOp::Eq,
            column_first: true
        }
    );
    assert_eq!(&sql[ctx(0).span], "p.last_name = 'Dupont'");
    assert_eq!(&sql[ctx(0).column_span], "p.last_name");
    assert_eq!(p.sites[0].column, col(&h, "patients.last_name"));
    assert_eq!(
        ctx(1).shape,
        MatchShape::Compare {
            op: MatchOp::Eq,
            column_first: false
        }
    );
    assert_eq!(&sql[ctx(1).span], "'j@x.fr' = email");
    assert_eq!(ctx(2).shape, MatchShape::InList { negated: false });
    assert_eq!(&sql[ctx(2).span], "'185057800608491'");
    assert_eq!(&sql[ctx(2).column_span], "nir");
    assert_eq!(param(&p.sites[3]), 1);
    assert_eq!(ctx(4).shape, MatchShape::InList { negated: true });
    assert_eq!(
        ctx(5).shape,
        MatchShape::Compare {
            op: MatchOp::NotEq,
            column_first: true
        }
    );
    assert_eq!(&sql[ctx(5).span], "phone <> $2");
    // IS [NOT] DISTINCT FROM, parentheses.
    let sql = "SELECT 1 FROM patients WHERE (last_name) IS NOT DISTINCT FROM ($1)";
    let p = ok(sql);
    let Purpose::Match(ctx) = &p.sites[0].purpose else {
        panic!()
    };
    assert_eq!(
        &sql[ctx.span.clone()],
        "(last_name) IS NOT DISTINCT FROM ($1)"
    );
    assert_eq!(&sql[ctx.column_span.clone()], "(last_name)");
}

#[test]
fn null_tests_work_in_every_mode() {
    let p = ok(
        "SELECT 1 FROM patients WHERE birth_date IS NULL OR address IS NOT NULL OR notes = NULL",
    );
    assert!(p.sites.is_empty());
    let p = ok("SELECT 1 FROM consultations WHERE notes IS NOT NULL");
    assert!(p.sites.is_empty());
}

#[test]
fn range_pattern_and_randomized_equality_are_refused_where_pgseal_cannot_evaluate_them() {
    refused(
        "UPDATE patients SET city = 'x' WHERE birth_date = '1985-05-17'",
        &["equality (=) on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE birth_date IN ($1, $2)",
        &["IN on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE last_name < 'M'",
        &["range comparison (<) on sealed column public.patients.last_name (deterministic)"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE birth_date BETWEEN '1980-01-01' AND '1990-01-01'",
        &["BETWEEN on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE last_name LIKE 'Dup%'",
        &["LIKE on sealed column"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE last_name ILIKE $1",
        &["ILIKE on sealed column"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE nir SIMILAR TO '1%'",
        &["SIMILAR TO"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE email ~ 'gmail'",
        &["regular expression match (~)"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE lower(email) = 'a@b.fr'",
        &["function lower() on sealed column public.patients.email (deterministic)"],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE nir = ANY($1)",
        &["ANY/ALL"],
    );
}

#[test]
fn comparison_with_an_unsealed_expression_is_refused() {
    refused(
        "SELECT * FROM patients p JOIN imports i ON p.nir = i.nir_code",
        &[
            "with a value pgseal cannot seal",
            "public.patients.nir (tokenize-nir)",
        ],
    );
    refused(
        "UPDATE patients SET city = 'x' WHERE last_name = 'a' || 'b'",
        &["public.patients.last_name"],
    );
    refused(
        "SELECT * FROM patients WHERE nir IN (SELECT code FROM imports)",
        &["IN (subquery) returning unsealed values"],
    );
}

#[test]
fn order_by_sealed_columns_is_refused_where_pgseal_cannot_sort() {
    refused(
        "SELECT * FROM (SELECT id FROM patients ORDER BY birth_date LIMIT 5) s",
        &["ORDER BY on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "SELECT * FROM (SELECT id FROM patients ORDER BY last_name DESC LIMIT 5) s",
        &["ORDER BY on sealed column public.patients.last_name (deterministic)"],
    );
    refused(
        "SELECT * FROM (SELECT id FROM patients ORDER BY nir LIMIT 5) s",
        &["(tokenize-nir)"],
    );
    refused(
        "SELECT * FROM (SELECT nir AS n FROM patients ORDER BY n LIMIT 5) s",
        &["ORDER BY on sealed column public.patients.nir"],
    );
    refused(
        "SELECT * FROM (SELECT id, last_name FROM patients ORDER BY 2 LIMIT 5) s",
        &["ORDER BY on sealed column public.patients.last_name"],
    );
    refused(
        "SELECT * FROM (SELECT * FROM patients ORDER BY 2 LIMIT 5) s",
        &["ORDER BY on sealed column"],
    );
    ok("SELECT id, last_name FROM patients ORDER BY 1, city");
    refused(
        "SELECT nir FROM patients UNION ALL SELECT nir FROM patients ORDER BY 1",
        &["ORDER BY"],
    );
}

#[test]
fn group_by_and_distinct_need_equality_modes() {
    ok("SELECT diagnosis_code, count(*) FROM consultations GROUP BY diagnosis_code");
    ok("SELECT DISTINCT last_name FROM patients");
    ok("SELECT DISTINCT ON (nir) nir, id FROM patients");
    ok("SELECT diagnosis_code AS d FROM consultations GROUP BY d");
    ok("SELECT diagnosis_code FROM consultations GROUP BY 1");
    refused(
        "SELECT notes FROM consultations GROUP BY notes",
        &["GROUP BY on sealed column public.consultations.notes (randomized)"],
    );
    // pgseal removes the duplicates of a randomized column itself (evaluation_plans.rs).
    ok("SELECT DISTINCT birth_date FROM patients");
    // Unless it cannot tell the outputs apart.
    refused(
        "SELECT DISTINCT * FROM patients",
        &["DISTINCT on sealed column"],
    );
    refused(
        "SELECT address FROM patients GROUP BY 1",
        &["GROUP BY on sealed column public.patients.address"],
    );
    refused(
        "SELECT count(*) OVER (PARTITION BY birth_date) FROM patients",
        &["PARTITION BY on sealed column public.patients.birth_date"],
    );
    refused(
        "SELECT row_number() OVER (ORDER BY nir) FROM patients",
        &["ORDER BY in a window on sealed column public.patients.nir"],
    );
}

#[test]
fn joins_between_sealed_columns_need_one_domain() {
    let s = shared();
    let p = ok_with(
        &s,
        "SELECT r.value FROM patients p JOIN results r ON r.patient_nir = p.nir WHERE p.nir = $1",
    );
    assert_eq!(p.column_matches.len(), 1);
    assert_eq!(p.column_matches[0].left, col(&s, "results.patient_nir"));
    assert_eq!(p.column_matches[0].right, col(&s, "patients.nir"));
    assert_eq!(p.sites.len(), 1);
    refused_with(
        &s,
        "SELECT 1 FROM public.patients a JOIN archive.patients b ON a.last_name = b.last_name",
        &[
            "of different domains or modes",
            "archive.patients.last_name",
        ],
    );
    refused_with(
        &s,
        "SELECT 1 FROM results a JOIN results b ON a.value = b.value",
        &["equality (=) on sealed column public.results.value (randomized)"],
    );
    refused_with(
        &s,
        "SELECT 1 FROM patients a NATURAL JOIN results b",
        &["NATURAL JOIN"],
    );
    // USING on a shared column name within one table family.
    let p = ok_with(&s, "SELECT nir FROM patients a JOIN patients b USING (nir)");
    assert_eq!(p.column_matches.len(), 1);
    refused_with(
        &s,
        "SELECT 1 FROM patients JOIN imports USING (nir)",
        &["USING"],
    );
}

#[test]
fn subqueries_ctes_and_unions_carry_sealed_columns() {
    let h = hospital();
    let p = ok("WITH x AS (SELECT nir FROM patients) SELECT * FROM x");
    assert_eq!(p.reads, vec![col(&h, "patients.nir")]);
    let sql = "SELECT s.n FROM (SELECT nir AS n FROM patients) s WHERE s.n = '185057800608491'";
    let p = ok(sql);
    assert_eq!(p.sites.len(), 1);
    assert_eq!(p.sites[0].column, col(&h, "patients.nir"));
    let p = ok(
        "WITH c(code) AS (SELECT diagnosis_code FROM consultations) \
                SELECT 1 FROM c WHERE code IN ($1, $2)",
    );
    assert_eq!(p.sites.len(), 2);
    assert_eq!(p.sites[0].column, col(&h, "consultations.diagnosis_code"));
    let p = ok(
        "SELECT id FROM patients WHERE id IN (SELECT patient_id FROM consultations \
                WHERE diagnosis_code = 'E11.9')",
    );
    assert_eq!(p.sites.len(), 1);
    assert_eq!(p.sealed_tables.len(), 2);
    let p = ok("SELECT nir FROM patients UNION ALL SELECT last_name FROM patients");
    assert_eq!(p.reads.len(), 2);
    ok("SELECT nir FROM patients UNION SELECT nir FROM patients");
    refused(
        "SELECT birth_date FROM patients UNION SELECT birth_date FROM patients",
        &["UNION (removes duplicates) on sealed column public.patients.birth_date (randomized)"],
    );
    refused(
        "SELECT last_name FROM patients EXCEPT SELECT name FROM imports",
        &["EXCEPT (removes duplicates) comparing with unsealed values"],
    );
    // A data-modifying CTE.
    let p = ok("WITH d AS (DELETE FROM patients WHERE nir = $1 RETURNING *) SELECT * FROM d");
    assert_eq!(p.reads.len(), 7);
    assert_eq!(p.sites.len(), 1);
    // Recursive CTEs see the anchor's columns.
    let p = ok(
        "WITH RECURSIVE r(n) AS (SELECT last_name FROM patients UNION ALL \
                SELECT n FROM r WHERE n = 'x') SELECT * FROM r",
    );
    assert_eq!(p.sites.len(), 1);
    assert_eq!(p.sites[0].column, col(&h, "patients.last_name"));
    // EXISTS, scalar subqueries.
    let p = ok("SELECT 1 WHERE EXISTS (SELECT 1 FROM patients WHERE email = $1)");
    assert_eq!(p.sites.len(), 1);
    let p = ok("SELECT 1 FROM patients p WHERE p.nir = (SELECT nir FROM patients WHERE id = 1)");
    assert_eq!(p.column_matches.len(), 1);
}

#[test]
fn names_fold_as_postgresql_does() {
    let h = hospital();
    let p = ok("SELECT P.NIR FROM PUBLIC.Patients P WHERE \"p\".Last_Name = $1");
    assert_eq!(p.reads.len(), 2);
    assert_eq!(p.sites[0].column, col(&h, "patients.last_name"));
    // Quoted names keep their case: "Patients" is another table, "NIR" another column.
    let p = ok("SELECT \"NIR\" FROM \"Patients\" WHERE nir = 'x'");
    assert!(p.sealed_tables.is_empty() && p.sites.is_empty());
    let p = ok("SELECT \"NIR\" FROM patients");
    assert!(p.reads.is_empty());
    // Schema-qualified columns, and other schemas.
    let p = ok("SELECT public.patients.nir FROM public.patients");
    assert_eq!(p.reads, vec![col(&h, "patients.nir")]);
    let p = ok("SELECT nir FROM archive.patients WHERE nir = $1");
    assert!(p.reads.is_empty() && p.sites.is_empty());
    // Quoted table names in a policy.
    let s = shared();
    let p = ok_with(&s, "SELECT commentaire FROM \"Dossiers\"");
    let commentaire = s.column_id("public", "Dossiers", "commentaire").unwrap();
    assert_eq!(p.reads, vec![commentaire]);
    let p = ok_with(&s, "SELECT commentaire FROM dossiers");
    assert!(p.reads.is_empty());
}

#[test]
fn unqualified_columns_fail_closed() {
    let h = hospital();
    // `nir` is not known in `imports` (an unsealed table): it may be the outer patients.nir,
    // and is sealed as such.
    let p = ok("SELECT id FROM patients WHERE EXISTS (SELECT 1 FROM imports WHERE nir = $1)");
    assert_eq!(p.sites.len(), 1);
    assert_eq!(p.sites[0].column, col(&h, "patients.nir"));
    // Two sealed candidates that seal differently: refused.
    let s = shared();
    refused_with(
        &s,
        "SELECT 1 FROM public.patients, archive.patients WHERE last_name = $1",
        &["ambiguous column reference"],
    );
    // Whole-row references read every sealed column.
    let p = ok("SELECT p FROM patients p");
    assert_eq!(p.reads.len(), 7);
}

#[test]
fn literal_spans_are_byte_exact_after_multibyte_text() {
    let sql = "SELECT 'é😀 ñ', nir FROM patients\n  -- commentaire: élève\n  WHERE nir = E'1850\\x35' \
               AND last_name = 'Ünal'";
    let p = ok(sql);
    assert_eq!(site_texts(sql, &p), ["E'1850\\x35'", "'Ünal'"]);
    let (_, text) = literal(&p.sites[0]);
    assert_eq!(text, "18505");
    let (_, text) = literal(&p.sites[1]);
    assert_eq!(text, "Ünal");
    // Dollar quoting, and a literal on a later line after wide characters.
    let sql = "UPDATE patients SET address = $$12 rue de l'Église$$\nWHERE nir = '😀'";
    let p = ok(sql);
    assert_eq!(site_texts(sql, &p), ["$$12 rue de l'Église$$", "'😀'"]);
    assert_eq!(literal(&p.sites[0]).1, "12 rue de l'Église");
}

#[test]
fn casts_and_typed_literals_are_stripped() {
    let cases = [
        (
            "INSERT INTO patients (birth_date) VALUES (CAST('1985-05-17' AS date))",
            "INSERT INTO patients (birth_date) VALUES ('S')",
        ),
        (
            "INSERT INTO patients (birth_date) VALUES (DATE '1985-05-17')",
            "INSERT INTO patients (birth_date) VALUES ('S')",
        ),
        (
            "INSERT INTO patients (birth_date) VALUES ('1985-05-17 10:00'::timestamp with time zone)",
            "INSERT INTO patients (birth_date) VALUES ('S')",
        ),
        (
            "SELECT 1 FROM patients WHERE nir = '185057800608491'::varchar(15)",
            "SELECT 1 FROM patients WHERE nir = 'S'",
        ),
        (
            "SELECT 1 FROM patients WHERE nir = ('185057800608491')::text::varchar",
            "SELECT 1 FROM patients WHERE nir = ('S')",
        ),
        (
            "SELECT 1 FROM patients WHERE last_name = CAST ( 'x' AS pg_catalog.text )",
            "SELECT 1 FROM patients WHERE last_name = 'S'",
        ),
    ];
    for (sql, expected) in cases {
        let p = ok(sql);
        assert_eq!(p.sites.len(), 1, "{sql}");
        for strip in &p.sites[0].strip {
            let value = p.sites[0].value.clone();
            if let SiteValue::Literal { span, .. } = value {
                assert!(strip.end <= span.start || strip.start >= span.end, "{sql}");
            }
        }
        assert_eq!(rewritten(sql, &p), expected, "{sql}");
    }
    // A parameter's cast is stripped too.
    let sql = "SELECT 1 FROM patients WHERE last_name = $1::text";
    let p = ok(sql);
    assert_eq!(param(&p.sites[0]), 1);
    assert_eq!(p.sites[0].strip.len(), 1);
    assert_eq!(&sql[p.sites[0].strip[0].clone()], "::text");
}

#[test]
fn negative_numbers_are_sealed_whole() {
    let s = shared();
    let sql = "INSERT INTO measures (weight) VALUES (- 72), (72.5), (-1e3)";
    let p = ok_with(&s, sql);
    assert_eq!(site_texts(sql, &p), ["- 72", "72.5", "-1e3"]);
    assert_eq!(literal(&p.sites[0]).1, "-72");
    assert_eq!(literal(&p.sites[2]).1, "-1e3");
    refused_with(
        &s,
        "INSERT INTO measures (weight) VALUES (X'ff')",
        &["public.measures.weight"],
    );
}

// --- Parameters -------------------------------------------------------------------------------

#[test]
fn parameters_used_in_several_places() {
    let h = hospital();
    // The same column (store and match) seals alike.
    let p = ok("UPDATE patients SET last_name = $1 WHERE last_name = $1 OR $1 = last_name");
    assert_eq!(p.sites.len(), 3);
    assert!(
        p.sites
            .iter()
            .all(|s| s.column == col(&h, "patients.last_name"))
    );
    refused(
        "SELECT 1 FROM patients WHERE last_name = $1 OR email = $1",
        &["parameter $1 is bound for sealed columns"],
    );
    refused(
        "SELECT 1 FROM patients WHERE last_name = $1 OR city = $1",
        &["parameter $1", "also used where it would not be sealed"],
    );
}

// --- COPY -----------------------------------------------------------------------------------

#[test]
fn copy_from_stdin_with_options() {
    let h = hospital();
    let p = ok("COPY patients (nir, city, last_name) FROM STDIN WITH CSV HEADER");
    assert_eq!(p.kind, StatementKind::CopyFrom);
    let copy = p.copy.clone().expect("copy plan");
    assert_eq!(copy.table, table("public", "patients"));
    assert_eq!(copy.direction, CopyDirection::From);
    assert_eq!(copy.format, CopyFormat::Csv);
    assert!(copy.header);
    assert_eq!(
        copy.columns,
        Some(vec!["nir".to_string(), "city".into(), "last_name".into()])
    );
    assert_eq!(
        copy.fields,
        Some(vec![
            Some(col(&h, "patients.nir")),
            None,
            Some(col(&h, "patients.last_name"))
        ])
    );
    assert_eq!(p.writes.len(), 2);
    let p = ok(
        "COPY public.patients FROM STDIN (FORMAT csv, DELIMITER ';', NULL '', \
                HEADER false, QUOTE '''', ESCAPE '\\', ENCODING 'UTF8')",
    );
    let copy = p.copy.clone().unwrap();
    assert_eq!(copy.columns, None);
    assert_eq!(copy.fields, None);
    assert_eq!(copy.delimiter, Some(';'));
    assert_eq!(copy.null.as_deref(), Some(""));
    assert!(!copy.header);
    assert_eq!(copy.quote, Some('\''));
    assert_eq!(copy.escape, Some('\\'));
    assert_eq!(copy.encoding.as_deref(), Some("UTF8"));
    assert_eq!(p.writes.len(), 7, "all sealed columns when no list");
    let p = ok("COPY consultations FROM STDIN WITH DELIMITER '|' NULL 'nil'");
    let copy = p.copy.unwrap();
    assert_eq!(copy.format, CopyFormat::Text);
    assert_eq!(copy.delimiter, Some('|'));
    assert_eq!(copy.null.as_deref(), Some("nil"));
}

#[test]
fn copy_to_stdout_and_queries() {
    let h = hospital();
    let p = ok("COPY patients (nir) TO STDOUT");
    assert_eq!(p.kind, StatementKind::CopyTo);
    assert_eq!(p.reads, vec![col(&h, "patients.nir")]);
    assert_eq!(p.copy.unwrap().direction, CopyDirection::To);
    let p = ok(
        "COPY (SELECT nir, city FROM patients WHERE last_name = $1) TO STDOUT WITH (FORMAT csv)",
    );
    assert_eq!(p.kind, StatementKind::CopyTo);
    assert!(p.copy.is_none());
    assert_eq!(p.sites.len(), 1);
    assert!(p.reads.contains(&col(&h, "patients.nir")));
    refused(
        "COPY (SELECT upper(last_name) FROM patients) TO STDOUT",
        &["function upper()"],
    );
}

#[test]
fn copy_binary_files_and_inline_data() {
    refused(
        "COPY patients FROM STDIN (FORMAT binary)",
        &["FORMAT binary) on sealed table public.patients"],
    );
    refused("COPY patients TO STDOUT WITH BINARY", &["FORMAT binary"]);
    ok("COPY audit_log FROM STDIN (FORMAT binary)");
    // Server files and programs run outside pgseal, whatever the table.
    for sql in [
        "COPY patients TO '/tmp/p.csv'",
        "COPY patients FROM PROGRAM 'cat x'",
        "COPY scratch FROM PROGRAM 'psql -c \"copy patients to stdout\"'",
        "COPY (SELECT 1) TO PROGRAM 'cat'",
    ] {
        refused(sql, &["server file or a program"]);
    }
    let analysis = analyze(
        "COPY patients (nir) FROM STDIN;\n185057800608491\n\\.\n",
        &hospital(),
    )
    .unwrap();
    assert!(
        analysis
            .first_refusal()
            .unwrap()
            .reason
            .contains("inline data")
    );
}

// --- Other statements -----------------------------------------------------------------------

#[test]
fn statements_without_sealed_tables_give_empty_plans() {
    let p = ok("SELECT a, b FROM t WHERE c = 'x' ORDER BY upper(d)");
    assert!(!p.touches_sealed());
    assert!(p.sites.is_empty());
    let h = hospital();
    let kinds = [
        ("BEGIN", StatementKind::Transaction),
        ("COMMIT", StatementKind::Transaction),
        ("ROLLBACK", StatementKind::Transaction),
        ("SAVEPOINT a", StatementKind::Transaction),
        ("SET search_path = public", StatementKind::Set),
        ("SHOW search_path", StatementKind::Set),
        ("RESET ALL", StatementKind::Set),
        ("CREATE TABLE t (a int)", StatementKind::Ddl),
        ("LISTEN ch", StatementKind::Other),
    ];
    for (sql, kind) in kinds {
        let p = ok_with(&h, sql);
        assert_eq!(p.kind, kind, "{sql}");
        assert!(!p.touches_sealed(), "{sql}");
    }
    assert!(ok("CREATE TABLE t (a int)").changes_catalog);
}

#[test]
fn multiple_statements_have_their_own_spans() {
    let sql = "BEGIN; UPDATE patients SET email = 'é@x.fr' WHERE id = 1 ;\n SELECT 1; COMMIT";
    let analysis = analyze(sql, &hospital()).unwrap();
    let spans: Vec<&str> = analysis
        .statements
        .iter()
        .map(|s| &sql[s.span.clone()])
        .collect();
    assert_eq!(
        spans,
        [
            "BEGIN",
            "UPDATE patients SET email = 'é@x.fr' WHERE id = 1",
            "SELECT 1",
            "COMMIT"
        ]
    );
    assert_eq!(analysis.statements[1].sites.len(), 1);
    assert!(analysis.touches_sealed());
}

#[test]
fn prepare_execute_deallocate() {
    let h = hospital();
    let sql = "PREPARE find (text) AS SELECT id FROM patients WHERE nir = $1";
    let p = ok(sql);
    assert_eq!(p.kind, StatementKind::Prepare);
    assert_eq!(
        p.prepared,
        Some(SqlPrepared::Prepare {
            name: "find".into(),
            inner: StatementKind::Select
        })
    );
    assert_eq!(p.sites.len(), 1);
    assert_eq!(p.sites[0].column, col(&h, "patients.nir"));
    let sql = "EXECUTE Find ('185057800608491', $1, now())";
    let p = ok(sql);
    assert_eq!(p.kind, StatementKind::Execute);
    let Some(SqlPrepared::Execute { name, args }) = &p.prepared else {
        panic!("{p:?}")
    };
    assert_eq!(name, "find");
    assert_eq!(args.len(), 3);
    match &args[0].as_ref().unwrap().value {
        SiteValue::Literal { span, text } => {
            assert_eq!(&sql[span.clone()], "'185057800608491'");
            assert_eq!(text, "185057800608491");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        args[1].as_ref().unwrap().value,
        SiteValue::Param { index: 1 }
    );
    assert!(args[2].is_none());
    let p = ok("DEALLOCATE ALL");
    assert_eq!(p.prepared, Some(SqlPrepared::Deallocate { name: None }));
    let p = ok("DEALLOCATE PREPARE find");
    assert_eq!(
        p.prepared,
        Some(SqlPrepared::Deallocate {
            name: Some("find".into())
        })
    );
}

#[test]
fn explain_seals_like_the_statement() {
    let sql = "EXPLAIN ANALYZE SELECT * FROM patients WHERE nir = '185057800608491'";
    let p = ok(sql);
    assert_eq!(p.kind, StatementKind::Other);
    assert_eq!(site_texts(sql, &p), ["'185057800608491'"]);
}

#[test]
fn unparseable_text_lists_sealed_tables() {
    let policy = hospital();
    match analyze(
        "DO $$ BEGIN DELETE FROM public.Patients WHERE nir = '1'; END $$",
        &policy,
    ) {
        Err(AnalyzeError::Unparseable { sealed_tables, .. }) => {
            assert_eq!(sealed_tables, vec![table("public", "patients")]);
        }
        other => panic!("{other:?}"),
    }
    match analyze("SELEC nir FROM \"consultations\" x", &policy) {
        Err(AnalyzeError::Unparseable { sealed_tables, .. }) => {
            assert_eq!(sealed_tables, vec![table("public", "consultations")]);
        }
        other => panic!("{other:?}"),
    }
    match analyze("SELEC 1 FROM other.patients, \"Consultations\"", &policy) {
        Err(AnalyzeError::Unparseable { sealed_tables, .. }) => assert!(sealed_tables.is_empty()),
        other => panic!("{other:?}"),
    }
    match analyze("SELECT 'unterminated", &policy) {
        Err(AnalyzeError::Unparseable { sealed_tables, .. }) => assert!(sealed_tables.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ddl_is_reported_and_bodies_over_sealed_tables_are_refused() {
    let p = ok("CREATE INDEX ON patients (last_name)");
    assert_eq!(p.kind, StatementKind::Ddl);
    assert!(p.changes_catalog);
    assert_eq!(p.sealed_tables, vec![table("public", "patients")]);
    refused(
        "CREATE INDEX ON patients (lower(last_name))",
        &["index expression"],
    );
    let p = ok("ALTER TABLE patients ADD COLUMN note text");
    assert!(p.changes_catalog);
    refused(
        "ALTER TABLE patients ALTER COLUMN last_name TYPE varchar USING upper(last_name)",
        &["ALTER TABLE … USING"],
    );
    refused(
        "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM patients $$",
        &["function, trigger, rule or policy body"],
    );
    ok("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$");
    refused(
        "CREATE VIEW v AS SELECT upper(last_name) FROM patients",
        &["function upper()"],
    );
    let p = ok("CREATE VIEW v AS SELECT nir FROM patients");
    assert!(p.changes_catalog);
    assert_eq!(p.reads.len(), 1);
    let p = ok("DROP TABLE patients");
    assert_eq!(p.sealed_tables.len(), 1);
    let p = ok("TRUNCATE consultations");
    assert_eq!(p.sealed_tables, vec![table("public", "consultations")]);
}

// --- Never panic ----------------------------------------------------------------------------

const SEEDS: &[&str] = &[
    "INSERT INTO patients (nir, last_name, birth_date) VALUES ($1, 'Dupont', '1985-05-17'::date) ON CONFLICT (nir) DO UPDATE SET last_name = EXCLUDED.last_name RETURNING *",
    "SELECT p.nir, c.* FROM patients p JOIN consultations c ON c.patient_id = p.id WHERE p.last_name IN ('a', $2) AND c.notes IS NULL ORDER BY p.id",
    "WITH x AS (SELECT nir AS n FROM patients) SELECT n, count(*) FROM x GROUP BY n HAVING count(*) > 1",
    "UPDATE patients SET email = CAST($1 AS text) WHERE nir = DATE '2020-01-01' RETURNING id",
    "COPY patients (nir, city) FROM STDIN WITH (FORMAT csv, HEADER)",
    "SELECT 'é😀', - 5, E'\\n', $$x$$ FROM patients WHERE phone NOT IN (SELECT phone FROM patients)",
    "PREPARE q AS DELETE FROM patients WHERE email = $1; EXECUTE q('a')",
];

fn check_invariants(sql: &str, policy: &CompiledPolicy) {
    if let Ok(analysis) = analyze(sql, policy) {
        for statement in &analysis.statements {
            assert!(statement.span.start <= statement.span.end && statement.span.end <= sql.len());
            for site in &statement.sites {
                if let SiteValue::Literal { span, .. } = &site.value {
                    assert!(sql.get(span.clone()).is_some(), "{sql:?}: {span:?}");
                    for strip in &site.strip {
                        assert!(sql.get(strip.clone()).is_some());
                        assert!(strip.end <= span.start || strip.start >= span.end);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn never_panics_on_random_text(sql in "\\PC{0,120}") {
        check_invariants(&sql, &hospital());
    }

    #[test]
    fn never_panics_on_sql_like_text(
        words in proptest::collection::vec(
            prop_oneof![
                Just("SELECT"), Just("FROM"), Just("patients"), Just("nir"), Just("="),
                Just("'x'"), Just("$1"), Just("("), Just(")"), Just(","), Just("::date"),
                Just("WHERE"), Just("IN"), Just("JOIN"), Just("ON"), Just("p.nir"), Just("*"),
                Just("INSERT INTO"), Just("VALUES"), Just("UPDATE"), Just("SET"), Just("WITH"),
                Just("AS"), Just("UNION"), Just("ORDER BY"), Just("GROUP BY"), Just("CAST"),
                Just("COPY"), Just("STDIN"), Just(";"), Just("last_name"), Just("birth_date"),
                Just("é"), Just("\n"), Just("NULL"), Just("DEFAULT"), Just("-"), Just("1"),
            ],
            0..40,
        )
    ) {
        check_invariants(&words.join(" "), &hospital());
    }

    #[test]
    fn never_panics_on_mutated_statements(
        seed in 0..SEEDS.len(),
        cuts in proptest::collection::vec((0usize..400, 0usize..6, "\\PC{0,3}"), 1..4),
    ) {
        let mut sql: Vec<char> = SEEDS[seed].chars().collect();
        for (at, len, insert) in cuts {
            let at = at % (sql.len() + 1);
            let end = (at + len).min(sql.len());
            sql.splice(at..end, insert.chars());
        }
        let sql: String = sql.into_iter().collect();
        check_invariants(&sql, &hospital());
    }
}

#[test]
fn seeds_are_analysed() {
    let policy = hospital();
    for sql in SEEDS {
        assert!(analyze(sql, &policy).is_ok(), "{sql}");
    }
}

#[test]
fn refusals_never_quote_values() {
    let reason = refused(
        "UPDATE patients SET city = 'x' WHERE birth_date = '1985-05-17'",
        &["birth_date"],
    );
    assert!(!reason.contains("1985"));
    let p = plan("UPDATE patients SET city = 'x' WHERE birth_date = '1985-05-17'");
    assert_eq!(p.refusals[0].kind, RefusalKind::Unsupported);
    assert_eq!(
        p.refusals[0].column,
        Some(col(&hospital(), "patients.birth_date"))
    );
}

// --- Functions that read what the statement does not show ---------------------------------

/// Refused, naming the function, quoting no SQL text.
fn refused_function(sql: &str, function: &str) {
    let reason = refused(sql, &[&format!("{function}()")]);
    for fragment in ["select", "patients", "consultations", "dbname"] {
        assert!(
            !reason.to_lowercase().contains(fragment),
            "{sql}: the refusal quotes the statement: {reason}"
        );
    }
}

#[test]
fn functions_running_sql_text_or_dumping_relations_are_refused_in_any_spelling() {
    for (sql, function) in [
        (
            "SELECT query_to_xml('select * from patients', true, false, '')",
            "query_to_xml",
        ),
        (
            "SELECT pg_catalog.query_to_xml('select 1', true, false, '')",
            "query_to_xml",
        ),
        (
            "SELECT PG_CATALOG.QUERY_TO_XML('select 1', true, false, '')",
            "query_to_xml",
        ),
        (
            "SELECT \"pg_catalog\".\"query_to_xml\"('select 1', true, false, '')",
            "query_to_xml",
        ),
        (
            "SELECT Query_To_Xml /* a comment */ ('select * from pat' || 'ients', true, false, '')",
            "query_to_xml",
        ),
        (
            "SELECT query_to_xmlschema('select 1', true, false, '')",
            "query_to_xmlschema",
        ),
        (
            "SELECT query_to_xml_and_xmlschema('select 1', true, false, '')",
            "query_to_xml_and_xmlschema",
        ),
        (
            "select Table_To_Xml('consultations', true, false, '')",
            "table_to_xml",
        ),
        (
            "SELECT table_to_xml('patients'::regclass, true, false, '')",
            "table_to_xml",
        ),
        (
            "SELECT table_to_xmlschema('patients', true, false, '')",
            "table_to_xmlschema",
        ),
        (
            "SELECT schema_to_xml('public', true, false, '')",
            "schema_to_xml",
        ),
        ("SELECT database_to_xml(true, false, '')", "database_to_xml"),
        (
            "SELECT database_to_xml_and_xmlschema(true, false, '')",
            "database_to_xml_and_xmlschema",
        ),
        (
            "SELECT cursor_to_xml('c', 10, true, false, '')",
            "cursor_to_xml",
        ),
        (
            "SELECT ts_rewrite('a & b'::tsquery, 'SELECT t, s FROM aliases')",
            "ts_rewrite",
        ),
        ("SELECT dblink_connect('dbname=ehr')", "dblink_connect"),
        ("SELECT public.dblink_exec('delete from x')", "dblink_exec"),
        (
            "SELECT dblink_send_query('c', 'select 1')",
            "dblink_send_query",
        ),
        (
            "SELECT pg_read_binary_file('base/16384/16385')",
            "pg_read_binary_file",
        ),
        ("SELECT lo_import('/var/lib/x')", "lo_import"),
        (
            "SELECT cron.schedule('0 * * * *', 'select 1')",
            "cron.schedule",
        ),
    ] {
        refused_function(sql, function);
    }
}

#[test]
fn refused_functions_are_found_in_from_and_in_nested_queries() {
    for (sql, function) in [
        (
            "SELECT * FROM ts_stat('select to_tsvector(last_name) from patients')",
            "ts_stat",
        ),
        (
            "SELECT * FROM public.dblink('dbname=ehr', 'select nir from patients') AS t(nir text)",
            "dblink",
        ),
        (
            "SELECT * FROM reports r, LATERAL dblink_fetch('c', 10) AS t(a text)",
            "dblink_fetch",
        ),
        (
            "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
            "pg_logical_slot_get_changes",
        ),
        (
            "SELECT * FROM reports JOIN dblink_get_result('c') AS t(a text) ON true",
            "dblink_get_result",
        ),
        (
            "SELECT id FROM patients WHERE EXISTS (SELECT 1 WHERE query_to_xml('select 1', true, false, '') IS NOT NULL)",
            "query_to_xml",
        ),
        (
            "WITH x AS (SELECT table_to_xml('patients', true, false, '') AS d) SELECT d FROM x",
            "table_to_xml",
        ),
        (
            "SELECT s.d FROM (SELECT database_to_xml(true, false, '') AS d) AS s",
            "database_to_xml",
        ),
        (
            "SELECT count(*) FROM reports WHERE length(query_to_xml('select 1', true, false, '')::text) > 0",
            "query_to_xml",
        ),
        (
            "SELECT city FROM patients GROUP BY city HAVING count(*) > length(schema_to_xml('public', true, false, '')::text)",
            "schema_to_xml",
        ),
        (
            "INSERT INTO reports (doc) SELECT query_to_xml('select * from patients', true, false, '')",
            "query_to_xml",
        ),
        (
            "INSERT INTO reports (doc) VALUES (table_to_xml('patients', true, false, ''))",
            "table_to_xml",
        ),
        (
            "UPDATE reports SET doc = table_to_xml('patients', true, false, '') WHERE id = 1",
            "table_to_xml",
        ),
        (
            "DELETE FROM reports WHERE doc::text = query_to_xml('select 1', true, false, '')::text",
            "query_to_xml",
        ),
        (
            "SELECT 1 UNION ALL SELECT length(database_to_xml(true, false, '')::text)",
            "database_to_xml",
        ),
        (
            "EXPLAIN ANALYZE SELECT query_to_xml('select 1', true, false, '')",
            "query_to_xml",
        ),
        (
            "PREPARE q AS SELECT query_to_xml($1, true, false, '')",
            "query_to_xml",
        ),
        (
            "DECLARE c CURSOR FOR SELECT table_to_xml('patients', true, false, '')",
            "table_to_xml",
        ),
        (
            "COPY (SELECT table_to_xml('patients', true, false, '')) TO STDOUT",
            "table_to_xml",
        ),
        (
            "CREATE VIEW v AS SELECT query_to_xml('select 1', true, false, '') AS d",
            "query_to_xml",
        ),
        // Where the analyzer does not walk: the token scan.
        (
            "CREATE TABLE exports (doc xml DEFAULT query_to_xml('select * from patients', true, false, ''))",
            "query_to_xml",
        ),
        (
            "ALTER TABLE reports ADD COLUMN doc xml DEFAULT table_to_xml('patients', true, false, '')",
            "table_to_xml",
        ),
        ("CALL dblink_exec('select 1')", "dblink_exec"),
    ] {
        refused_function(sql, function);
    }
}

#[test]
fn ordinary_functions_and_mere_mentions_still_pass() {
    for sql in [
        "SELECT lower(city), now(), count(*) FROM patients GROUP BY city",
        "SELECT count(*), max(postal_code) FROM patients",
        "SELECT xmlforest(city, postal_code) FROM patients",
        "SELECT to_tsvector(city) FROM patients",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT query_to_xml FROM reports",
        "SELECT 'query_to_xml(' AS s",
        "SELECT id FROM patients WHERE city = 'table_to_xml'",
        "SELECT schedule('x')",
        "DROP FUNCTION IF EXISTS dblink(text)",
        "REVOKE EXECUTE ON FUNCTION query_to_xml(text, boolean, boolean, text) FROM PUBLIC",
    ] {
        ok(sql);
    }
    let p = ok("SELECT lower(city), now() FROM patients WHERE id = 1");
    assert_eq!(p.sealed_tables, vec![table("public", "patients")]);
    assert!(p.reads.is_empty());
}

#[test]
fn unparseable_texts_naming_refused_functions_are_reported() {
    use pgseal::analyze::functions::named_in;
    let sql = "SELECT query_to_xml('select 1', true, false, '') WINDOW w AS ()";
    assert!(matches!(
        analyze(sql, &hospital()),
        Err(AnalyzeError::Unparseable { .. })
    ));
    assert_eq!(
        named_in(sql).map(|f| f.function),
        Some("query_to_xml".to_string())
    );
    assert!(named_in("SELECT 1 WINDOW w AS ()").is_none());
}

/// Aggregates and constructors that fold many rows of a sealed table into one value (plain,
/// grouped, window, `ARRAY(SELECT …)`) are refused: an export budget counts the rows that
/// leave. Statistics (`count`, `sum`, `max`) pass, and so do folds over unsealed tables.
#[test]
fn folding_rows_of_a_sealed_table_is_refused() {
    for sql in [
        "SELECT array_agg(id) FROM patients",
        "SELECT city, array_agg(id) FROM patients GROUP BY city",
        "SELECT string_agg(city, ',') FROM patients",
        "SELECT id, array_agg(id) OVER () FROM patients LIMIT 1",
        "SELECT json_agg(p.city) FROM patients p",
        "SELECT jsonb_object_agg(id, city) FROM patients",
        "SELECT xmlagg(xmlcomment(city)) FROM patients",
        "SELECT ARRAY(SELECT postal_code FROM patients)",
        "SELECT (SELECT string_agg(city, ',') FROM patients) AS all_cities",
        "SELECT 1 FROM consultations c WHERE c.id IN (SELECT unnest(array_agg(id)) FROM patients)",
        "SELECT pg_catalog.ARRAY_AGG(id) FROM public.patients",
    ] {
        refused(sql, &["folds many rows", "patients"]);
    }
    for sql in [
        "SELECT count(*), max(id), sum(id) FROM patients",
        "SELECT city, count(*) FROM patients GROUP BY city",
        "SELECT count(*) OVER () FROM patients",
        "SELECT array_agg(x) FROM generate_series(1, 3) x",
        "SELECT ARRAY[1, 2, 3]",
    ] {
        ok(sql);
    }
}

/// A policy may trust, by name, a function pgseal refuses for reading what a statement does
/// not show (`trusted_functions`); the others stay refused.
#[test]
fn trusted_functions_pass_and_the_rest_stay_refused() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/hospital.toml"),
    )
    .unwrap()
    .replace(
        "version = 1\n",
        "version = 1\ntrusted_functions = [\"query_to_xml\"]\n",
    );
    let trusting = CompiledPolicy::from_toml("trusting.toml", &text).expect("the policy");
    let sql = "SELECT query_to_xml('select city from patients', true, false, '')";
    ok_with(&trusting, sql);
    refused(sql, &["query_to_xml"]);
    refused_with(
        &trusting,
        "SELECT table_to_xml('patients', true, false, '')",
        &["table_to_xml"],
    );
    let bad = text.replace(
        "trusted_functions = [\"query_to_xml\"]",
        "trusted_functions = [\"pg_catalog.query_to_xml(text)\"]",
    );
    let problems = CompiledPolicy::from_toml("bad.toml", &bad).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("invalid function name")),
        "{problems:?}"
    );
}

/// Schema changes: indexes on sealed columns as plain columns pass (with an operator class,
/// parenthesised, IF NOT EXISTS); what would store sealed values in clear, rewrite their
/// stored form or leave the policy naming nothing is refused; the rest passes.
#[test]
fn schema_changes_on_sealed_tables() {
    for sql in [
        "CREATE INDEX IF NOT EXISTS \"idx\" ON patients USING btree ((\"last_name\") varchar_pattern_ops)",
        "CREATE INDEX idx2 ON patients (last_name text_pattern_ops)",
        "CREATE UNIQUE INDEX idx3 ON public.patients (nir)",
        "ALTER TABLE patients ADD COLUMN note2 text DEFAULT 'x'",
        "ALTER TABLE patients ALTER COLUMN city TYPE varchar(80)",
        "ALTER TABLE patients ALTER COLUMN last_name DROP DEFAULT",
        "ALTER TABLE patients ALTER COLUMN last_name SET NOT NULL",
        "ALTER TABLE patients DROP COLUMN gp_name",
        "ALTER TABLE patients RENAME COLUMN city TO town",
        "COMMENT ON COLUMN patients.last_name IS 'nom'",
        "CREATE TABLE patients_archive (id int, last_name text DEFAULT 'x')",
        "ALTER TABLE patients ADD CONSTRAINT nir_unique UNIQUE (nir)",
        "ALTER TABLE consultations ADD CONSTRAINT fk FOREIGN KEY (patient_id) REFERENCES patients (id)",
        "ALTER SCHEMA reporting RENAME TO reports",
    ] {
        ok(sql);
    }
    for (sql, fragment) in [
        (
            "CREATE INDEX idx4 ON patients (lower(last_name))",
            "index expression",
        ),
        (
            "ALTER TABLE patients ALTER COLUMN last_name TYPE varchar(100)",
            "changing the type",
        ),
        (
            "ALTER TABLE patients ALTER COLUMN birth_date SET DEFAULT '2000-01-01'",
            "DEFAULT",
        ),
        (
            "ALTER TABLE patients ADD COLUMN IF NOT EXISTS email text DEFAULT 'x@y'",
            "DEFAULT",
        ),
        (
            "ALTER TABLE patients ALTER COLUMN phone ADD GENERATED ALWAYS AS IDENTITY",
            "DEFAULT",
        ),
        (
            "ALTER TABLE patients RENAME COLUMN last_name TO surname",
            "renaming",
        ),
        (
            "ALTER TABLE patients RENAME TO people",
            "renaming sealed table",
        ),
        (
            "CREATE TABLE IF NOT EXISTS patients (id int, last_name text GENERATED ALWAYS AS ('x') STORED)",
            "DEFAULT, generated",
        ),
        // Ways to read a sealed table's rows under another name.
        ("ALTER SCHEMA public RENAME TO x", "schema public"),
        ("ALTER SCHEMA \"public\" OWNER TO bob", "schema public"),
        (
            "ALTER TABLE patients INHERIT people",
            "ALTER TABLE operation",
        ),
        (
            "ALTER TABLE people ATTACH PARTITION patients DEFAULT",
            "attaching",
        ),
        (
            "ALTER TABLE patients NO INHERIT people",
            "ALTER TABLE operation",
        ),
        (
            "CREATE TABLE kids (x int) INHERITS (patients)",
            "inheriting",
        ),
    ] {
        refused(sql, &[fragment]);
    }
}

#[test]
fn a_values_column_feeding_two_targets_is_never_sealed_for_one_and_sent_to_the_other() {
    refused(
        "INSERT INTO patients (nir, city, last_name) SELECT p0, p1, p1 \
         FROM (VALUES ('2760492025374', 'Martin')) v(p0, p1)",
        &["public.patients.last_name"],
    );
}
