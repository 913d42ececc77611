//! The candidate filters search indexes give the server, against the hospital example with its
//! patient columns indexed (names, e-mail and phone randomized): which conjuncts narrow, the
//! SQL the server gets in place of `TRUE`, and the parameters pgseal adds after the client's.

use std::path::Path;

use pgseal::analyze::analyze;
use pgseal::analyze::evaluation::Evaluation;
use pgseal::evaluate::candidates::{self, Ask, Candidates, Indexes, Operands};
use pgseal::protect::column::ColumnCrypto;
use pgseal::search::ColumnSearch;
use pgseal_keys::Keyring;
use pgseal_policies::{ColumnId, CompiledPolicy};

/// The hospital policy with the search indexes of the end-to-end tests.
fn indexed_policy() -> CompiledPolicy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/hospital.toml");
    let mut text = std::fs::read_to_string(path).expect("hospital policy");
    for (column, search) in [
        ("last_name", "{ prefix = 4, trigram = true, exact = true }"),
        ("birth_date", "{ exact = true, date = \"month\" }"),
        ("phone", "{ trigram = true }"),
    ] {
        let header = format!("[columns.\"public.patients.{column}\"]\n");
        let at = text.find(&header).expect("column in the policy") + header.len();
        let end = text[at..].find('\n').expect("mode line") + at;
        text.replace_range(
            at..end,
            &format!("mode = \"randomized\"\nsearch = {search}"),
        );
    }
    CompiledPolicy::from_toml("indexed.toml", &text).expect("the indexed policy compiles")
}

/// Every indexed column, complete.
struct AllComplete {
    columns: Vec<ColumnCrypto>,
}

impl Indexes for AllComplete {
    fn search(&self, column: ColumnId) -> Option<&ColumnSearch> {
        self.columns[column.index()].index().map(|i| &i.search)
    }

    fn canonical(&self, column: ColumnId, text: &str) -> Option<Vec<u8>> {
        self.columns[column.index()]
            .canonical_text(
                text,
                pgseal::protect::date_settings::DateSettings::canonical(),
            )
            .ok()
    }
}

fn setup() -> (CompiledPolicy, AllComplete) {
    let policy = indexed_policy();
    let keyring = Keyring::from_root_key_str(&format!("1:{}QUI=", "QUJD".repeat(10)))
        .expect("a test keyring");
    let columns = policy
        .columns()
        .iter()
        .map(|c| ColumnCrypto::new(c, &keyring).expect("keys"))
        .collect();
    (policy, AllComplete { columns })
}

fn evaluation(policy: &CompiledPolicy, sql: &str) -> Evaluation {
    let mut analysis = analyze(sql, policy).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let plan = analysis.statements.remove(0);
    assert!(plan.refusals.is_empty(), "{sql}: {:?}", plan.refusals);
    plan.evaluation
        .unwrap_or_else(|| panic!("{sql}: nothing evaluated"))
}

/// The candidate filters of a statement, and the filter texts in conjunct order.
fn planned(sql: &str, floor: u16) -> (Candidates, Vec<String>) {
    let (policy, indexes) = setup();
    let evaluation = evaluation(&policy, sql);
    let candidates = candidates::plan(&evaluation, &indexes, floor, Operands::Inline);
    let texts = evaluation
        .filter_edits
        .iter()
        .map(|&edit| {
            candidates
                .edits
                .iter()
                .find(|(e, _)| *e == edit)
                .map_or_else(|| "TRUE".to_string(), |(_, sql)| sql.clone())
        })
        .collect();
    (candidates, texts)
}

const TOKENS: &str = "string_to_array(split_part(last_name, '~', 3), '.')";

#[test]
fn a_prefix_search_written_as_a_literal_narrows_inline() {
    let (candidates, texts) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE 'mar%' ORDER BY id",
        0,
    );
    assert!(candidates.probes.is_empty());
    assert_eq!(texts.len(), 1);
    assert!(
        texts[0].starts_with(&format!("{TOKENS} @> '{{\"p")),
        "{}",
        texts[0]
    );
}

#[test]
fn a_parameter_becomes_pgseals_own_parameter_after_the_clients() {
    let (candidates, texts) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE $1 AND id > $2 ORDER BY id",
        0,
    );
    assert_eq!(texts[0], format!("{TOKENS} @> $3::text[]"));
    assert_eq!(candidates.probes.len(), 1);
    assert_eq!(candidates.probes[0].param, 3);
    assert!(matches!(candidates.probes[0].ask, Ask::Like { .. }));
    // Types declared for more parameters than the text uses: pgseal's come after them.
    let (candidates, _) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE $1 ORDER BY id",
        4,
    );
    assert_eq!(candidates.probes[0].param, 5);
}

#[test]
fn a_prepared_statement_takes_even_written_operands_as_parameters() {
    let (policy, indexes) = setup();
    let evaluation = evaluation(
        &policy,
        "SELECT id FROM patients WHERE last_name ILIKE 'mar%' AND first_name = $1",
    );
    let candidates = candidates::plan(&evaluation, &indexes, 1, Operands::Bound);
    assert_eq!(candidates.probes.len(), 2);
    assert_eq!(
        candidates
            .probes
            .iter()
            .map(|p| p.param)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    let value = candidates::bound_value(&candidates.probes[0], &indexes, &[None])
        .expect("tokens of the written pattern");
    assert!(value.starts_with("{\"p"), "{value}");
}

#[test]
fn a_limit_pgseal_does_not_sort_for_keeps_the_plain_scan() {
    // The server orders by id and pgseal stops it after the page: told no LIMIT, it would plan
    // a bitmap scan and a sort of every candidate instead.
    let (candidates, texts) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE $1 ORDER BY id LIMIT 20",
        0,
    );
    assert_eq!(texts, ["TRUE"]);
    assert!(candidates.probes.is_empty());
    // pgseal sorts: it reads every candidate anyway, so the index narrows.
    let (_, texts) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE 'mar%' ORDER BY last_name LIMIT 20",
        0,
    );
    assert!(texts[0].contains(" @> '{"), "{}", texts[0]);
}

#[test]
fn or_narrows_only_when_every_branch_does() {
    let (_, texts) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE 'mar%' OR first_name = 'Jean'",
        0,
    );
    assert!(
        texts[0].starts_with('(') && texts[0].contains(" OR "),
        "{}",
        texts[0]
    );
    let (candidates, texts) = planned(
        "SELECT id FROM patients WHERE last_name ILIKE $1 OR address ILIKE '%rue%'",
        0,
    );
    assert_eq!(texts, ["TRUE"], "address has no index");
    assert!(
        candidates.probes.is_empty(),
        "the other branch's probe is dropped"
    );
}

#[test]
fn negations_and_wrapped_columns_do_not_narrow() {
    for sql in [
        "SELECT id FROM patients WHERE NOT (last_name ILIKE 'mar%')",
        "SELECT id FROM patients WHERE last_name NOT ILIKE 'mar%'",
        "SELECT id FROM patients WHERE coalesce(last_name, 'x') = 'x'",
        "SELECT id FROM patients WHERE trim(last_name) = 'x'",
        "SELECT id FROM patients WHERE last_name <> 'x'",
    ] {
        let (candidates, texts) = planned(sql, 0);
        assert_eq!(texts, ["TRUE"], "{sql}");
        assert!(candidates.probes.is_empty(), "{sql}");
    }
}

#[test]
fn lower_upper_and_text_casts_of_a_text_column_narrow() {
    for sql in [
        "SELECT id FROM patients WHERE lower(last_name) LIKE 'mar%'",
        "SELECT id FROM patients WHERE upper(last_name) = upper('Straße')",
        "SELECT id FROM patients WHERE last_name::text ILIKE '%pon%'",
    ] {
        let (_, texts) = planned(sql, 0);
        assert!(texts[0].contains(" @> '{"), "{sql}: {}", texts[0]);
    }
}

#[test]
fn date_ranges_use_buckets_and_a_null_parameter_means_no_narrowing() {
    let (_, texts) = planned(
        "SELECT id FROM patients WHERE birth_date BETWEEN '1980-01-01' AND '1980-12-31'",
        0,
    );
    assert!(texts[0].contains(" && '{"), "{}", texts[0]);
    let (candidates, texts) = planned(
        "SELECT id FROM patients WHERE birth_date BETWEEN $1 AND $2",
        0,
    );
    assert_eq!(
        texts[0],
        "(string_to_array(split_part(birth_date, '~', 3), '.') && $3::text[] OR $3::text[] IS NULL)"
    );
    let (_, indexes) = setup();
    let probe = &candidates.probes[0];
    let years = candidates::bound_value(
        probe,
        &indexes,
        &[Some("1970-01-01".into()), Some("1975-12-31".into())],
    )
    .expect("a range of years has tokens");
    assert!(
        years.starts_with("{\"") && years.matches(',').count() >= 5,
        "{years}"
    );
    assert_eq!(
        candidates::bound_value(
            probe,
            &indexes,
            &[Some("1900-01-01".into()), Some("2000-12-31".into())]
        ),
        None,
        "a century is more buckets than a probe holds: no narrowing"
    );
}

#[test]
fn an_equality_with_null_keeps_no_row_and_an_unusable_pattern_keeps_every_row() {
    let (candidates, _) = planned("SELECT id FROM patients WHERE last_name = $1", 0);
    let (_, indexes) = setup();
    let probe = &candidates.probes[0];
    assert_eq!(candidates::bound_value(probe, &indexes, &[None]), None);
    let (candidates, _) = planned("SELECT id FROM patients WHERE last_name LIKE $1", 0);
    assert_eq!(
        candidates::bound_value(&candidates.probes[0], &indexes, &[Some("%".into())]).as_deref(),
        Some("{}")
    );
}
