//! Copies across tables that no key links: the share of a candidate's sampled values found
//! among a source's sampled values, whole or normalised (never as a part: a common first name
//! inside a longer text says little without a row to pin it to). Not for ICD-10 codes, free
//! text or closed vocabularies: columns drawing on the same list are not copies of each other.

use std::collections::{HashMap, HashSet};

use super::{
    CONFIDENT_MATCHES, Copies, MIN_PART_CHARS, Source, Tally, Via, candidates, identifying,
    normalise, qualified,
};
use crate::discover::Kind;
use crate::discover::sample::TableSample;

/// Whether a source's values are compared by value sets: not codes of a shared list, not text.
fn by_value_set(kind: Option<Kind>) -> bool {
    kind.is_none_or(|k| identifying(k) && k != Kind::Icd10)
}

/// Compares candidates with the sources of tables that no key links (or whose join could not
/// run), by value sets: whole and normalised values only.
pub(super) fn value_sets(
    tables: &[TableSample],
    sources: &[Source],
    linked: &HashSet<(usize, usize)>,
    copies: &mut Copies,
) {
    // Every source's values, exact and normalised, → the sources holding them.
    let mut exact: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut loose: HashMap<String, Vec<usize>> = HashMap::new();
    for (s, source) in sources.iter().enumerate() {
        if !by_value_set(source.kind) {
            continue;
        }
        let column = &tables[source.at.0].columns[source.at.1];
        let mut seen: HashSet<&str> = HashSet::new();
        for value in &column.values {
            let value = value.trim();
            if !seen.insert(value) {
                continue;
            }
            let norm = normalise(value);
            if norm.chars().count() < MIN_PART_CHARS {
                continue;
            }
            exact.entry(value).or_default().push(s);
            let holders = loose.entry(norm).or_default();
            if holders.last() != Some(&s) {
                holders.push(s);
            }
        }
    }
    if exact.is_empty() {
        return;
    }
    for (t, table) in tables.iter().enumerate() {
        for c in candidates(table) {
            let column = &table.columns[c];
            // Per source: whole matches, normalised matches, distinct matching values.
            let mut counts: HashMap<usize, (usize, usize, HashSet<&str>)> = HashMap::new();
            for value in &column.values {
                let value = value.trim();
                let whole = exact.get(value);
                if let Some(holders) = whole {
                    for &s in holders {
                        let entry = counts.entry(s).or_default();
                        entry.0 += 1;
                        entry.2.insert(value);
                    }
                }
                if let Some(holders) = loose.get(&normalise(value)) {
                    for &s in holders {
                        if whole.is_some_and(|w| w.contains(&s)) {
                            continue;
                        }
                        let entry = counts.entry(s).or_default();
                        entry.1 += 1;
                        entry.2.insert(value);
                    }
                }
            }
            let mut sorted: Vec<_> = counts.into_iter().collect();
            sorted.sort_by_key(|(s, _)| *s);
            for (s, (whole, normalised, distinct)) in sorted {
                let source = sources[s];
                if source.at == (t, c) || source.at.0 == t || linked.contains(&(t, source.at.0)) {
                    continue;
                }
                let tally = Tally {
                    compared: column.values.len(),
                    whole,
                    normalised,
                    part: 0,
                };
                if let Some(mut copy) =
                    tally.copy(qualified(tables, source.at), source.kind, Via::Values)
                {
                    copy.confident &= distinct.len() >= CONFIDENT_MATCHES;
                    copies.found.entry((t, c)).or_default().push(copy);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{FIRST, column, table};
    use super::*;

    #[test]
    fn value_sets_compare_whole_values_of_unlinked_tables() {
        let tables = [
            table("person", vec![column("first_name", &FIRST)]),
            table(
                "names",
                vec![
                    column(
                        "given",
                        &["HÉLÈNE", "jean pierre", "Léa", "Chloé", "Marc", "x"],
                    ),
                    column(
                        "codes",
                        &FIRST
                            .map(|f| format!("id-{f}"))
                            .each_ref()
                            .map(String::as_str),
                    ),
                ],
            ),
        ];
        let sources = [Source {
            at: (0, 0),
            kind: Some(Kind::FirstName),
        }];
        let mut copies = Copies::default();
        value_sets(&tables, &sources, &HashSet::new(), &mut copies);
        let given = &copies.found[&(1, 0)][0];
        assert_eq!(given.via, Via::Values);
        assert_eq!((given.matched, given.compared), (5, 6));
        assert!(given.confident);
        // Parts are not compared without a row to pin them to.
        assert!(!copies.found.contains_key(&(1, 1)));
        // Linked tables are compared through their join, not by value sets.
        let mut again = Copies::default();
        value_sets(&tables, &sources, &HashSet::from([(1, 0)]), &mut again);
        assert!(again.found.is_empty());
    }
}
