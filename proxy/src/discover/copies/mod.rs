//! Copies: columns whose values repeat the values of a sensitive column (a *source*), whole,
//! normalised or as a part, so that sealing the source alone would leave them readable.
//!
//! Three comparisons, from the most to the least precise:
//! - **same row**: a candidate column and a source of the same table, value by value on the
//!   sampled rows (`value_compact` beside `value`);
//! - **through a key**: a candidate table joined to a source's table on linked columns
//!   ([`super::links`]), the candidate compared with the *same entity's* source value (a
//!   `party_name` table repeating a person's names, a `code` built from them);
//! - **value sets** (in `value_sets.rs`), for tables no key links: the share of a
//!   candidate's sampled values found among a source's sampled values. Only whole and
//!   normalised values are compared this way (a part of a value, such as a common first name
//!   inside a longer text, says little without a row to pin it to), and not for ICD-10 codes:
//!   two columns drawing on the same code list are not copies of each other.
//!
//! Sources are columns holding a kind that points to someone ([`identifying`]) with at least
//! [`MIN_SOURCE_DISTINCT`] distinct sampled values, or, for `policy check`, the sealed columns.
//!
//! A value matches *whole* when equal, *normalised* when equal once case, accents, spaces and
//! punctuation are dropped, and as a *part* when the source's normalised value (3 characters
//! or more) is inside the candidate's. Only counts leave this module, never a value.

use std::collections::{HashMap, HashSet};
use std::fmt;

mod value_sets;

use super::DiscoverError;
use super::detectors::{Kind, fold};
use super::links::{self, ColumnAt};
use super::sample::{self, TableSample};
use value_sets::value_sets;

/// How a candidate's values repeat a source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// Equal values.
    Whole,
    /// Equal once case, accents, spaces and punctuation are dropped.
    Normalised,
    /// The source's value inside the candidate's.
    Part,
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Match::Whole => "whole",
            Match::Normalised => "normalised",
            Match::Part => "part",
        })
    }
}

/// How candidate and source values were paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Values of the same sampled row.
    SameRow,
    /// Rows joined on `candidate_key = source_key` (qualified column names).
    Key {
        /// The candidate table's column.
        candidate_key: String,
        /// The source table's column.
        source_key: String,
    },
    /// No key links the tables: the candidate's values looked up among the source's.
    Values,
}

/// A candidate column found to repeat a source column: counts only.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOf {
    /// The source, `schema.table.column` as a policy names it.
    pub of: String,
    /// The source's main kind, when it has one.
    pub source_kind: Option<Kind>,
    /// How most matching values match.
    pub how: Match,
    /// How values were paired.
    pub via: Via,
    /// Pairs (or candidate values) that match.
    pub matched: usize,
    /// Pairs (or candidate values) compared.
    pub compared: usize,
    /// Strong enough to seal without a second look.
    pub confident: bool,
}

impl CopyOf {
    /// The share of compared pairs that match.
    pub fn share(&self) -> f64 {
        if self.compared == 0 {
            0.0
        } else {
            self.matched as f64 / self.compared as f64
        }
    }

    /// In words: `copy of public.person.first_name (part) 100% (joined on
    /// public.party.id = public.person.party_id: 40 of 40 rows)`.
    pub fn describe(&self) -> String {
        let via = match &self.via {
            Via::SameRow => format!(
                "same row: {} of {} sampled rows",
                self.matched, self.compared
            ),
            Via::Key {
                candidate_key,
                source_key,
            } => format!(
                "joined on {candidate_key} = {source_key}: {} of {} rows",
                self.matched, self.compared
            ),
            Via::Values => format!(
                "no key links the tables: {} of {} sampled values are among its sampled values",
                self.matched, self.compared
            ),
        };
        format!(
            "copy of {} ({}) {:.0}% ({via}{})",
            self.of,
            self.how,
            self.share() * 100.0,
            if self.confident { "" } else { "; weak" }
        )
    }
}

/// A column whose copies are looked for, with its main kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Where it is among the sampled tables.
    pub at: ColumnAt,
    /// Its main kind, when detectors found one.
    pub kind: Option<Kind>,
}

/// The share of compared pairs from which a copy is confident.
pub const COPY_SHARE: f64 = 0.5;
/// The share from which a copy is reported, unsure.
pub const WEAK_COPY_SHARE: f64 = 0.2;
/// The fewest matches a copy needs to be reported.
pub const MIN_MATCHES: usize = 3;
/// The fewest matches a confident copy needs (and, for value sets, distinct matching values).
pub const CONFIDENT_MATCHES: usize = 5;
/// The most tables one table is joined with (foreign keys first, then the tables holding the
/// most sources): a table linked to a hub (`patients.id`) is linked to every other table
/// referencing it, and joining them all would cost a query per pair.
pub const MAX_JOINS: usize = 4;
/// The shortest normalised source value looked for as a part.
pub const MIN_PART_CHARS: usize = 3;

/// What copies were found, per candidate column, and what could not be compared.
#[derive(Debug, Clone, Default)]
pub struct Copies {
    /// Candidate column → the sources it repeats, confident ones first.
    pub found: HashMap<ColumnAt, Vec<CopyOf>>,
    /// Joins that could not run (the tables were then compared by value sets), in words.
    pub notes: Vec<String>,
}

/// A source's value read by a join, as it is compared: itself, its plaintext opened with a
/// keyring, or `None` to leave it out (an envelope).
pub type Prepare<'a> = dyn Fn(ColumnAt, String) -> Option<String> + Sync + 'a;

/// Looks for copies of `sources` in every sampled column of `tables`: same rows, joins through
/// linked keys (run in `transaction`, one savepoint each; the sources' joined values go
/// through `prepare`), and value sets. The sources' sampled values in `tables` are compared as
/// they are.
pub async fn find(
    transaction: &mut tokio_postgres::Transaction<'_>,
    tables: &[TableSample],
    sources: &[Source],
    prepare: &Prepare<'_>,
    sample_rows: u32,
) -> Result<Copies, DiscoverError> {
    let mut copies = Copies::default();
    if sources.is_empty() {
        return Ok(copies);
    }
    for (t, table) in tables.iter().enumerate() {
        let here: Vec<&Source> = sources.iter().filter(|s| s.at.0 == t).collect();
        if !here.is_empty() {
            same_row(tables, table, t, &here, &mut copies);
        }
    }
    let foreign = links::foreign_keys(transaction, tables).await?;
    let named = links::named_links(tables);
    let direct: HashSet<(usize, usize)> = foreign
        .iter()
        .flat_map(|&(a, b)| [(a.0, b.0), (b.0, a.0)])
        .collect();
    let mut sources_in = vec![0usize; tables.len()];
    for source in sources {
        sources_in[source.at.0] += 1;
    }
    // Per candidate table, the linked tables holding sources: (candidate key, source key).
    let mut joins: Vec<Vec<(ColumnAt, ColumnAt)>> = vec![Vec::new(); tables.len()];
    // Pairs of linked tables: compared through a join, not by value sets (unless it fails).
    let mut linked: HashSet<(usize, usize)> = HashSet::new();
    for link in links::links(tables.len(), &foreign, &named) {
        for (candidate_key, source_key) in [(link.a, link.b), (link.b, link.a)] {
            linked.insert((candidate_key.0, source_key.0));
            if sources_in[source_key.0] > 0 {
                joins[candidate_key.0].push((candidate_key, source_key));
            }
        }
    }
    let mut capped = 0usize;
    for (t, mut list) in joins.into_iter().enumerate() {
        // The tables a foreign key links directly first, then those with the most sources.
        list.sort_by_key(|(_, s)| (!direct.contains(&(t, s.0)), usize::MAX - sources_in[s.0]));
        let skipped = list.len().saturating_sub(MAX_JOINS);
        for pair in list.into_iter().take(MAX_JOINS) {
            let joined = through_key(
                transaction,
                tables,
                sources,
                prepare,
                pair,
                sample_rows,
                &mut copies,
            )
            .await?;
            if !joined {
                linked.remove(&(pair.0.0, pair.1.0));
            }
        }
        if skipped > 0 {
            capped += 1;
        }
    }
    if capped > 0 {
        copies.notes.push(format!(
            "{capped} tables are linked to more than {MAX_JOINS} tables holding sensitive \
             columns: each was joined with {MAX_JOINS} (foreign keys first), not with the others"
        ));
    }
    value_sets(tables, sources, &linked, &mut copies);
    for list in copies.found.values_mut() {
        list.sort_by(|a, b| {
            (!a.confident, a.how)
                .cmp(&(!b.confident, b.how))
                .then(b.share().total_cmp(&a.share()))
        });
    }
    Ok(copies)
}

/// The columns of a table compared as candidates: sampled, and read.
fn candidates(table: &TableSample) -> impl Iterator<Item = usize> + '_ {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| sample::sampled(c) && !c.values.is_empty())
        .map(|(i, _)| i)
}

/// `schema.table.column` as a policy names it.
fn qualified(tables: &[TableSample], (t, c): ColumnAt) -> String {
    let table = &tables[t];
    pgseal_policies::ident::quote_qualified(&[&table.schema, &table.table, &table.columns[c].name])
}

/// Lower case, accents, spaces and punctuation dropped: `Jean-Pierre` → `jeanpierre`.
pub fn normalise(value: &str) -> String {
    fold(value)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Counts of one candidate against one source, pair by pair.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    compared: usize,
    whole: usize,
    normalised: usize,
    part: usize,
}

impl Tally {
    /// Compares one pair; `parts` allows a part match.
    fn add(&mut self, candidate: (&str, &str), source: (&str, &str), parts: bool) {
        self.compared += 1;
        let ((raw_c, norm_c), (raw_s, norm_s)) = (candidate, source);
        if norm_s.is_empty() {
            return;
        }
        if raw_c.trim() == raw_s.trim() {
            self.whole += 1;
        } else if norm_c == norm_s {
            self.normalised += 1;
        } else if parts && norm_s.chars().count() >= MIN_PART_CHARS && norm_c.contains(norm_s) {
            self.part += 1;
        }
    }

    fn matched(&self) -> usize {
        self.whole + self.normalised + self.part
    }

    /// The copy these counts make, if any.
    fn copy(&self, of: String, source_kind: Option<Kind>, via: Via) -> Option<CopyOf> {
        let matched = self.matched();
        if matched < MIN_MATCHES || self.compared == 0 {
            return None;
        }
        let share = matched as f64 / self.compared as f64;
        if share < WEAK_COPY_SHARE {
            return None;
        }
        // The level most matches reach, ties going to the stronger.
        let how = if self.whole >= self.normalised && self.whole >= self.part {
            Match::Whole
        } else if self.normalised >= self.part {
            Match::Normalised
        } else {
            Match::Part
        };
        Some(CopyOf {
            of,
            source_kind,
            how,
            via,
            matched,
            compared: self.compared,
            confident: share >= COPY_SHARE && matched >= CONFIDENT_MATCHES,
        })
    }
}

/// A column's sampled values by row: `(raw, normalised)`.
fn by_row(table: &TableSample, column: usize) -> HashMap<u32, (&str, String)> {
    let c = &table.columns[column];
    c.rows
        .iter()
        .zip(&c.values)
        .map(|(&row, value)| (row, (value.as_str(), normalise(value))))
        .collect()
}

/// Compares every candidate of a table with the sources of the same table, row by row.
fn same_row(
    tables: &[TableSample],
    table: &TableSample,
    t: usize,
    sources: &[&Source],
    copies: &mut Copies,
) {
    let columns: Vec<usize> = candidates(table).collect();
    let rows: HashMap<usize, HashMap<u32, (&str, String)>> =
        columns.iter().map(|&c| (c, by_row(table, c))).collect();
    for source in sources {
        let Some(source_rows) = rows.get(&source.at.1) else {
            continue;
        };
        for &c in &columns {
            if c == source.at.1 {
                continue;
            }
            let mut tally = Tally::default();
            for (row, (raw, norm)) in &rows[&c] {
                if let Some((raw_s, norm_s)) = source_rows.get(row) {
                    tally.add((raw, norm), (raw_s, norm_s), true);
                }
            }
            if let Some(copy) = tally.copy(qualified(tables, source.at), source.kind, Via::SameRow)
            {
                copies.found.entry((t, c)).or_default().push(copy);
            }
        }
    }
}

/// Joins a candidate table to a source table through a link and compares each candidate with
/// the joined row's sources. Returns false when the join could not run (no index to look rows
/// up by in a large table, or an error): the pair is then compared by value sets.
async fn through_key(
    transaction: &mut tokio_postgres::Transaction<'_>,
    tables: &[TableSample],
    sources: &[Source],
    prepare: &Prepare<'_>,
    (candidate_key, source_key): (ColumnAt, ColumnAt),
    sample_rows: u32,
    copies: &mut Copies,
) -> Result<bool, DiscoverError> {
    let (ct, st) = (candidate_key.0, source_key.0);
    let here: Vec<&Source> = sources.iter().filter(|s| s.at.0 == st).collect();
    // The link columns themselves are equal by construction: not compared.
    let columns: Vec<usize> = candidates(&tables[ct])
        .filter(|&c| c != candidate_key.1)
        .collect();
    if here.is_empty() || columns.is_empty() || tables[ct].unread.is_some() {
        return Ok(true);
    }
    if !links::may_look_up(tables, source_key) {
        copies.notes.push(format!(
            "{} and {} compared by value sets: no index on {} to join them through",
            qualified_table_name(tables, ct),
            qualified_table_name(tables, st),
            qualified(tables, source_key),
        ));
        return Ok(false);
    }
    let others: Vec<usize> = here.iter().map(|s| s.at.1).collect();
    let savepoint = transaction
        .savepoint("pgseal_discover_join")
        .await
        .map_err(|e| DiscoverError::db("setting a savepoint", &e))?;
    let joined = links::sample_joined(
        &savepoint,
        tables,
        (candidate_key, source_key),
        &columns,
        &others,
        sample_rows,
    )
    .await;
    let joined = match joined {
        Ok(joined) => {
            savepoint
                .commit()
                .await
                .map_err(|e| DiscoverError::db("releasing a savepoint", &e))?;
            joined
        }
        Err(why) => {
            savepoint
                .rollback()
                .await
                .map_err(|e| DiscoverError::db("rolling back a savepoint", &e))?;
            copies.notes.push(format!(
                "{} and {} compared by value sets: {why}",
                qualified_table_name(tables, ct),
                qualified_table_name(tables, st),
            ));
            return Ok(false);
        }
    };
    let width = columns.len();
    let normalised: Vec<Vec<Option<(String, String)>>> = joined
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = match i.checked_sub(width) {
                        // A source's value: opened, or left out, as the caller says.
                        Some(j) => prepare(here[j].at, v?),
                        None => v,
                    }?;
                    let n = normalise(&v);
                    Some((v, n))
                })
                .collect()
        })
        .collect();
    let via = Via::Key {
        candidate_key: qualified(tables, candidate_key),
        source_key: qualified(tables, source_key),
    };
    for (j, source) in here.iter().enumerate() {
        for (i, &c) in columns.iter().enumerate() {
            let mut tally = Tally::default();
            for row in &normalised {
                let (Some(Some(candidate)), Some(Some(value))) =
                    (row.get(i), row.get(columns.len() + j))
                else {
                    continue;
                };
                tally.add((&candidate.0, &candidate.1), (&value.0, &value.1), true);
            }
            if let Some(copy) = tally.copy(qualified(tables, source.at), source.kind, via.clone()) {
                copies.found.entry((ct, c)).or_default().push(copy);
            }
        }
    }
    Ok(true)
}

/// `schema.table` as a report names it.
fn qualified_table_name(tables: &[TableSample], t: usize) -> String {
    pgseal_policies::ident::quote_qualified(&[&tables[t].schema, &tables[t].table])
}

/// The fewest distinct sampled values a source needs: fewer make a closed vocabulary
/// (booleans, blood groups, sexes), whose values repeat by chance in any column.
pub const MIN_SOURCE_DISTINCT: usize = 10;

/// Whether copies of a column of this kind are looked for when discovery chooses its sources:
/// values that point to someone (identity, contact, birth date, address, RPPS) or a diagnosis,
/// not the closed vocabularies, places, dates of care or free text.
pub fn identifying(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Nir
            | Kind::Email
            | Kind::Phone
            | Kind::BirthDate
            | Kind::FirstName
            | Kind::LastName
            | Kind::Address
            | Kind::Rpps
            | Kind::Icd10
    )
}

/// Samples the copies tests are written with.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::discover::{ColumnSample, TableSample};

    /// A text column sampled with `values`, one per row.
    pub fn column(name: &str, values: &[&str]) -> ColumnSample {
        ColumnSample {
            name: name.into(),
            storage_type: "text".into(),
            text_like: true,
            values: values.iter().map(|v| v.to_string()).collect(),
            rows: (0..values.len() as u32).collect(),
            ..ColumnSample::default()
        }
    }

    /// A table of `public` with `columns`.
    pub fn table(name: &str, columns: Vec<ColumnSample>) -> TableSample {
        TableSample {
            schema: "public".into(),
            table: name.into(),
            columns,
            ..TableSample::default()
        }
    }

    /// First names, distinct, with accents and a hyphen.
    pub const FIRST: [&str; 6] = ["Hélène", "Jean-Pierre", "Léa", "Chloé", "Marc", "Inès"];
}

#[cfg(test)]
mod tests {
    use super::fixtures::{FIRST, column, table};
    use super::*;

    #[test]
    fn normalising_drops_case_accents_and_punctuation() {
        assert_eq!(normalise("Jean-Pierre"), "jeanpierre");
        assert_eq!(normalise("06 12.34-56 78"), "0612345678");
        assert_eq!(
            normalise("Hélène.DUPONT@exemple.fr"),
            "helenedupontexemplefr"
        );
    }

    #[test]
    fn same_row_copies_whole_normalised_and_part() {
        let codes: Vec<String> = FIRST
            .iter()
            .enumerate()
            .map(|(i, f)| format!("6f1c2a0e-00{i}-4d1b-9e5f-{i:012}-{f}"))
            .collect();
        let compact: Vec<String> = FIRST.iter().map(|f| normalise(f)).collect();
        let tables = [table(
            "person",
            vec![
                column("first_name", &FIRST),
                column(
                    "code",
                    &codes.iter().map(String::as_str).collect::<Vec<_>>(),
                ),
                column(
                    "compact",
                    &compact.iter().map(String::as_str).collect::<Vec<_>>(),
                ),
                column("same", &FIRST),
                column("other", &["a", "b", "c", "d", "e", "f"]),
            ],
        )];
        let sources = [Source {
            at: (0, 0),
            kind: Some(Kind::FirstName),
        }];
        let mut copies = Copies::default();
        let here: Vec<&Source> = sources.iter().collect();
        same_row(&tables, &tables[0], 0, &here, &mut copies);
        let how = |c: usize| {
            copies
                .found
                .get(&(0, c))
                .map(|l| (l[0].how, l[0].confident))
        };
        assert_eq!(how(1), Some((Match::Part, true)));
        assert_eq!(how(2), Some((Match::Normalised, true)));
        assert_eq!(how(3), Some((Match::Whole, true)));
        assert_eq!(how(4), None);
        assert_eq!(how(0), None, "a source is not its own copy");
        let text = copies.found[&(0, 1)][0].describe();
        assert!(
            text.starts_with("copy of public.person.first_name (part) 100% (same row: 6 of 6"),
            "{text}"
        );
        for value in FIRST {
            assert!(!text.contains(value), "{text}");
        }
    }
}
