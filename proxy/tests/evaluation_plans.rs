//! What the analyzer gives pgseal to evaluate: the statement the server is sent (hidden
//! columns first, pgseal's conjuncts replaced by TRUE, the ORDER BY/LIMIT tail removed), the
//! predicates, sort keys and consumed parameters, against the hospital example policy.

use std::path::Path;

use pgseal::analyze::evaluation::{CompareOp, Count, Evaluation, Hidden, Key, Pred, Term, Test};
use pgseal::analyze::{StatementPlan, analyze};
use pgseal_policies::CompiledPolicy;

fn hospital() -> CompiledPolicy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/hospital.toml");
    CompiledPolicy::load(&path).expect("hospital policy")
}

fn plan(sql: &str) -> StatementPlan {
    let mut analysis = analyze(sql, &hospital()).unwrap_or_else(|e| panic!("{sql}: {e}"));
    analysis.statements.remove(0)
}

/// The evaluation of a statement that must have one, and the text the server gets.
fn evaluated(sql: &str) -> (Evaluation, String) {
    let plan = plan(sql);
    assert!(plan.refusals.is_empty(), "{sql}: {:?}", plan.refusals);
    let evaluation = plan
        .evaluation
        .unwrap_or_else(|| panic!("{sql}: nothing evaluated"));
    let mut edits = evaluation.edits.clone();
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = String::new();
    let mut at = 0;
    for (range, text) in edits {
        out.push_str(&sql[at..range.start]);
        out.push_str(&text);
        at = range.end;
    }
    out.push_str(&sql[at..]);
    (evaluation, out)
}

#[test]
fn a_sorted_list_page_is_pgseals_with_its_limit() {
    let (e, text) = evaluated(
        "SELECT id FROM patients ORDER BY last_name ASC NULLS FIRST, id LIMIT 1000 OFFSET 0",
    );
    assert_eq!(
        text,
        "SELECT last_name AS pgseal_1, dense_rank() OVER (ORDER BY id) AS pgseal_2, id FROM patients "
    );
    assert_eq!(e.hidden.len(), 2);
    assert!(matches!(e.hidden[0], Hidden::Sealed(_)));
    assert_eq!(e.hidden[1], Hidden::Rank);
    assert_eq!(e.order.len(), 2);
    assert!(e.order[0].nulls_first && !e.order[0].descending);
    assert_eq!(e.order[1].key, Key::Rank(1));
    assert_eq!(e.limit, Some(Count::Literal(1000)));
    assert_eq!(e.offset, Some(Count::Literal(0)));
}

#[test]
fn a_search_box_keeps_unsealed_terms_on_the_server() {
    let (e, text) = evaluated(
        "SELECT a.id, a.last_name FROM patients a WHERE a.city = 'Lyon' AND \
         (a.gp_name ILIKE $1 OR a.last_name ILIKE $1 OR lower(a.first_name::text) LIKE lower($1))",
    );
    assert_eq!(
        text,
        "SELECT (a.gp_name ILIKE $1) AS pgseal_1, a.last_name AS pgseal_2, a.first_name AS pgseal_3, \
         a.id, a.last_name FROM patients a WHERE a.city = 'Lyon' AND TRUE"
    );
    assert_eq!(e.filter.len(), 1);
    let Pred::Or(terms) = &e.filter[0] else {
        panic!("{:?}", e.filter)
    };
    assert_eq!(terms.len(), 3);
    // $1 reaches the server in the copied unsealed term: not consumed.
    assert!(e.params.is_empty());
}

#[test]
fn consumed_parameters_are_typed_by_a_keeper() {
    let (e, text) = evaluated(
        "SELECT id FROM patients WHERE birth_date BETWEEN $1 AND $2 ORDER BY id LIMIT $3",
    );
    assert_eq!(
        text,
        "SELECT birth_date AS pgseal_1, num_nulls($1::date, $2::date, $3::bigint) AS pgseal_2, id \
         FROM patients WHERE TRUE ORDER BY id "
    );
    assert_eq!(e.hidden.last(), Some(&Hidden::Keeper));
    assert_eq!(e.limit, Some(Count::Param(3)));
    assert!(matches!(
        &e.filter[0],
        Pred::Test(Test::Between {
            low: Term::Param(1),
            high: Term::Param(2),
            negated: false,
            ..
        })
    ));
}

#[test]
fn equality_on_a_randomized_column_and_keyset_paging() {
    let (e, _) = evaluated("SELECT id FROM patients WHERE birth_date = '1985-03-02'::date");
    assert!(matches!(
        &e.filter[0],
        Pred::Test(Test::Compare { op: CompareOp::Eq, right: Term::Literal(d), .. }) if d == "1985-03-02"
    ));
}

#[test]
fn groups_are_sorted_by_pgseal_and_stay_the_servers() {
    let (e, sent) = evaluated(
        "SELECT p.id, count(c.id) AS n FROM patients p LEFT JOIN consultations c ON c.patient_id = p.id \
         GROUP BY p.id HAVING count(c.id) > 0 ORDER BY p.address DESC, n LIMIT 5",
    );
    assert!(e.filter.is_empty());
    assert_eq!(e.order.len(), 2);
    assert!(e.limit.is_some());
    assert!(
        sent.contains("GROUP BY p.id HAVING count(c.id) > 0")
            && !sent.contains("ORDER BY p.address"),
        "{sent}"
    );
}

#[test]
fn what_pgseal_cannot_evaluate_stays_refused() {
    for sql in [
        "SELECT city, count(*) FROM patients WHERE address LIKE '%Lyon%' GROUP BY city ORDER BY city",
        "SELECT p.id FROM patients p WHERE p.address LIKE 'a%' GROUP BY p.id HAVING count(*) > 1",
        "SELECT DISTINCT p.id, p.address FROM patients p GROUP BY p.id ORDER BY p.address",
        "SELECT p.id, count(*) FROM patients p GROUP BY 1 ORDER BY p.address",
        "SELECT id, address, row_number() OVER (ORDER BY id) AS r FROM patients ORDER BY address, r",
        "SELECT within.city FROM patients AS within WHERE within.address LIKE 'du%' GROUP BY within.city",
        "SELECT count(*), max(id) FROM patients WHERE address LIKE '%Lyon%'",
        "SELECT id FROM patients WHERE length(address) > 3",
        "SELECT id FROM patients WHERE id IN (SELECT id FROM patients WHERE address LIKE 'a%')",
        "SELECT id FROM patients ORDER BY length(address)",
        "SELECT id FROM patients ORDER BY address USING <",
        "WITH p AS (SELECT * FROM patients) SELECT id FROM p ORDER BY address",
    ] {
        let plan = plan(sql);
        assert!(plan.evaluation.is_none(), "{sql}");
        assert!(!plan.refusals.is_empty(), "{sql}");
    }
}

#[test]
fn the_forms_orms_write_are_evaluated() {
    for sql in [
        "SELECT * FROM patients WHERE birth_date = '1985-05-17'",
        "SELECT * FROM patients WHERE birth_date IN ($1, $2)",
        "SELECT * FROM patients WHERE last_name < 'M'",
        "SELECT * FROM patients WHERE birth_date BETWEEN '1980-01-01' AND '1990-01-01'",
        "SELECT * FROM patients WHERE last_name LIKE 'Dup%'",
        "SELECT * FROM patients WHERE last_name NOT ILIKE $1",
        "SELECT * FROM patients WHERE lower(email) = 'a@b.fr'",
        "SELECT * FROM patients WHERE UPPER(last_name::text) LIKE UPPER('%x%')",
        "SELECT * FROM patients WHERE coalesce(first_name, '') ILIKE 'a%' OR city = 'Lyon'",
        "SELECT * FROM patients WHERE NOT (last_name >= 'M' AND birth_date IS NOT NULL)",
        "SELECT id FROM patients ORDER BY birth_date",
        "SELECT id FROM patients ORDER BY last_name DESC",
        "SELECT id FROM patients ORDER BY nir",
        "SELECT nir AS n FROM patients ORDER BY n",
        "SELECT id, last_name FROM patients ORDER BY 2",
        "SELECT p.id FROM patients p LEFT JOIN consultations c ON c.patient_id = p.id \
         ORDER BY p.last_name ASC NULLS FIRST, c.seen_at DESC, p.id LIMIT $1 OFFSET $2",
    ] {
        let (evaluation, text) = evaluated(sql);
        assert!(
            !evaluation.filter.is_empty() || !evaluation.order.is_empty(),
            "{sql}"
        );
        assert!(
            !text.contains("'1985"),
            "{sql}: a literal reached the server: {text}"
        );
        assert!(
            !text.contains("Dup%"),
            "{sql}: a pattern reached the server: {text}"
        );
    }
}

#[test]
fn the_server_gets_no_operand_and_unsealed_order_stays_its_own() {
    // Only an unsealed sort: the server keeps it and pgseal keeps its order, applying the
    // LIMIT after its filter.
    let (e, text) =
        evaluated("SELECT id FROM patients WHERE last_name ILIKE 'dup%' ORDER BY id DESC LIMIT 10");
    assert!(e.order.is_empty());
    assert_eq!(e.limit, Some(Count::Literal(10)));
    assert_eq!(
        text,
        "SELECT last_name AS pgseal_1, id FROM patients WHERE TRUE ORDER BY id DESC "
    );
}

#[test]
fn keyset_paging_compares_rows_pair_by_pair() {
    let (e, text) = evaluated(
        "SELECT id, last_name FROM patients WHERE (last_name, id) > ($1, $2) \
         ORDER BY last_name, id LIMIT 50",
    );
    assert_eq!(
        text,
        "SELECT ((id) > ($2)) AS pgseal_1, last_name AS pgseal_2, \
         dense_rank() OVER (ORDER BY id) AS pgseal_3, num_nulls($1::text) AS pgseal_4, id, \
         last_name FROM patients WHERE TRUE "
    );
    // last_name > $1 OR (last_name = $1 AND id > $2)
    let Pred::Or(terms) = &e.filter[0] else {
        panic!("{:?}", e.filter)
    };
    assert!(matches!(
        &terms[0],
        Pred::Test(Test::Compare {
            op: CompareOp::Gt,
            ..
        })
    ));
    assert!(matches!(&terms[1], Pred::And(inner) if matches!(inner[1], Pred::Server(0))));
    assert_eq!(e.params, vec![(1, "text".to_string())]);
}

#[test]
fn a_page_count_is_answered_by_pgseal() {
    let (e, text) = evaluated("SELECT count(*) AS total FROM patients WHERE address ILIKE $1");
    assert!(e.count_only);
    assert_eq!(
        text,
        "SELECT address AS pgseal_1, num_nulls($1::text) AS pgseal_2, count(*) OVER () AS total \
         FROM patients WHERE TRUE"
    );
}

#[test]
fn the_server_removes_the_duplicates_it_can_tell_apart_and_pgseal_the_others() {
    // Deterministic outputs and no filter of pgseal's: the server's DISTINCT, pgseal's sort.
    let (e, text) = evaluated("SELECT DISTINCT last_name FROM patients ORDER BY last_name");
    assert_eq!(e.order.len(), 1);
    assert_eq!(e.distinct, None);
    assert_eq!(
        text,
        "SELECT DISTINCT last_name AS pgseal_1, last_name FROM patients "
    );
    // A filter of pgseal's: hidden operands would change what is distinct, so the server is
    // sent no DISTINCT and pgseal keeps the first row of each identity.
    let (e, text) =
        evaluated("SELECT DISTINCT last_name FROM patients WHERE first_name ILIKE 'a%'");
    assert!(!text.contains("DISTINCT"), "{text}");
    assert_eq!(e.distinct.as_ref().map(Vec::len), Some(1));
    // A randomized output, with an unsealed one: opened, and ranked by the server.
    let (e, text) =
        evaluated("SELECT DISTINCT address, city AS c FROM patients ORDER BY address, c");
    assert_eq!(e.distinct.as_ref().map(Vec::len), Some(2));
    assert!(
        text.starts_with("SELECT address AS pgseal_1, dense_rank() OVER (ORDER BY city) AS pgseal_2, address, city AS c FROM"),
        "{text}"
    );
}

#[test]
fn every_sealed_column_pgseal_opens_needs_a_clear_view() {
    // Concatenated with a column the role may read in clear, a masked one is still opened.
    let (e, _) = evaluated(
        "SELECT c.id FROM consultations c JOIN patients p ON p.id = c.patient_id \
         WHERE c.diagnosis_code || p.birth_date::text LIKE c.diagnosis_code || '1976-04-2%'",
    );
    let policy = hospital();
    let birth = policy
        .column_id("public", "patients", "birth_date")
        .unwrap();
    let code = policy
        .column_id("public", "consultations", "diagnosis_code")
        .unwrap();
    assert!(
        e.columns.contains(&birth) && e.columns.contains(&code),
        "{:?}",
        e.columns
    );
}

#[test]
fn the_servers_own_order_by_positions_follow_the_hidden_columns() {
    let (_, text) = evaluated(
        "SELECT id, city FROM patients WHERE last_name ILIKE 'm%' ORDER BY 2 DESC, 1 LIMIT 10",
    );
    assert_eq!(
        text,
        "SELECT last_name AS pgseal_1, id, city FROM patients WHERE TRUE ORDER BY 3 DESC, 2 "
    );
}

#[test]
fn side_effects_and_unselected_distinct_keys_keep_a_statement_refused() {
    for sql in [
        "SELECT id, nextval('s') FROM patients WHERE last_name ILIKE 'm%'",
        "SELECT id, audit_read(id) FROM patients ORDER BY last_name LIMIT 5",
        "SELECT DISTINCT city FROM patients ORDER BY last_name",
        "SELECT id FROM patients WHERE CASE WHEN city = 'x' AND last_name ILIKE 'a%' THEN true END",
    ] {
        let plan = plan(sql);
        assert!(plan.evaluation.is_none(), "{sql}");
        assert!(!plan.refusals.is_empty(), "{sql}");
    }
    // A side-effect-free function is fine.
    evaluated("SELECT id, upper(city) FROM patients WHERE last_name ILIKE 'm%' LIMIT 5");
}

#[test]
fn a_cursor_over_a_sorted_search_is_declared_over_the_superset() {
    let sql = "DECLARE \"Named\" NO SCROLL CURSOR WITH HOLD FOR \
               SELECT id FROM patients WHERE last_name ILIKE 'dup%' ORDER BY last_name, id";
    let (e, text) = evaluated(sql);
    assert_eq!(
        text,
        "DECLARE \"Named\" NO SCROLL CURSOR WITH HOLD FOR \
         SELECT last_name AS pgseal_1, dense_rank() OVER (ORDER BY id) AS pgseal_2, id FROM patients WHERE TRUE "
    );
    assert_eq!(e.filter.len(), 1);
    assert_eq!(e.order.len(), 2);
    let declared = plan(sql).declared.expect("the cursor");
    assert_eq!(
        (declared.name.as_str(), declared.scroll, declared.hold),
        ("Named", false, true)
    );
    // SCROLL is the session's to refuse; the plan says so.
    let scroll = plan("DECLARE c SCROLL CURSOR FOR SELECT id FROM patients ORDER BY last_name");
    assert!(scroll.evaluation.is_some() && scroll.declared.is_some_and(|d| d.scroll));
    // A cursor over what pgseal does not evaluate streams as before.
    let plain = plan("DECLARE c CURSOR FOR SELECT id, last_name FROM patients ORDER BY id");
    assert!(plain.evaluation.is_none() && plain.refusals.is_empty());
    assert_eq!(plain.declared.map(|d| d.name), Some("c".to_string()));
}
