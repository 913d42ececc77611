//! Candidate filters from search indexes: where a conjunct of `WHERE` that pgseal evaluates
//! tests a sealed column that has a complete search index, the server is given, instead of
//! `TRUE`, a test on the stored search tokens that its GIN index answers. The server then
//! returns a small superset of the rows the conjunct can keep, and pgseal still checks every
//! one exactly: results are the same with or without an index, only faster.
//!
//! What narrows: `=` and `IN` (exact, prefix or trigram tokens of the value), `LIKE`/`ILIKE`
//! (prefix and trigram tokens of the pattern's literal runs), `BETWEEN` on a dated column (its
//! year or month buckets), each on the column itself or, for text, under `lower`/`upper` or a
//! cast to text; `AND` of any of them, `OR` when every branch narrows; a subquery pgseal
//! filters (`EXISTS (…)`, `x IN (…)`) when one of its conjuncts narrows, as the same subquery
//! on the server with that conjunct's candidate filter; and, under `NOT` too, the hidden
//! column bringing that subquery's rows, which then holds only the rows its conjuncts can
//! keep. Negations, `IS NULL`,
//! `coalesce` and `trim` around the column, and comparisons pgseal computes on the server's
//! booleans do not narrow (their rows are not a subset of the column's tokens).
//!
//! Operands written in the statement give their tokens at once; an operand that is a bound
//! parameter gives them at Bind, in a parameter of pgseal's own after the client's
//! ([`BoundProbe`]). A statement with a `LIMIT` that pgseal does not sort for gets no
//! candidate filter (see [`plan`]).

use pgseal_policies::ColumnId;

use crate::analyze::evaluation::{
    CompareOp, Evaluation, HiddenSelect, Pred, SubqueryText, Term, Test, TrimSide,
};
use crate::evaluate::like::Escape;
use crate::search::{ColumnSearch, Probe};

/// The expression the database reads a stored value's search tokens with: the one the search
/// index (GIN) is built on, so that the planner matches it.
pub fn tokens_sql(column: &str) -> String {
    format!("string_to_array(split_part({column}, '~', 3), '.')")
}

/// What a probe asks of one sealed column, its operands still terms of the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The column equals the operand.
    Equal(Term),
    /// The column matches a `LIKE`/`ILIKE` pattern.
    Like {
        /// The pattern.
        pattern: Term,
        /// `ESCAPE`, when given.
        escape: Option<Term>,
    },
    /// The column lies between two bounds, both included.
    Between {
        /// Lower bound.
        low: Term,
        /// Upper bound.
        high: Term,
    },
}

/// A probe whose operands are only known at Bind: pgseal sends its tokens as parameter
/// `$param`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundProbe {
    /// pgseal's parameter.
    pub param: u16,
    /// The sealed column.
    pub column: ColumnId,
    /// What is asked of it.
    pub ask: Ask,
}

/// The candidate filters of one statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    /// Replacement texts for some of the evaluation's edits (index in `Evaluation::edits`).
    pub edits: Vec<(usize, String)>,
    /// pgseal's parameters, in order (`$first`, `$first + 1`…).
    pub probes: Vec<BoundProbe>,
}

/// What pgseal needs of a column to narrow on it: its search index when the index is complete,
/// and the column's canonical form of an operand written as text.
pub trait Indexes {
    /// The column's search tokens, when its index is complete and usable.
    fn search(&self, column: ColumnId) -> Option<&ColumnSearch>;
    /// An operand's canonical plaintext for the column (`None`: not a value of its type; the
    /// exact evaluation reports it).
    fn canonical(&self, column: ColumnId, text: &str) -> Option<Vec<u8>>;
}

/// An operand's value, as far as it is known.
enum Operand {
    /// SQL `NULL`.
    Null,
    /// A value, as text.
    Text(String),
    /// A parameter not bound yet.
    Unbound,
    /// A value the index's tokens cannot describe (`unaccent`'s result): no narrowing.
    Opaque,
}

/// Where the tokens of operands written in the statement go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    /// Into the statement's text: it is planned for one execution (a simple Query).
    Inline,
    /// Into pgseal's parameters, like those of `$n`: a prepared statement outlives the
    /// catalog it was planned with, and each Bind checks that the index is still complete.
    Bound,
}

/// Plans the candidate filters of an evaluation; pgseal's parameters start after `floor` (the
/// number of parameters the client's statement has, declared or used).
pub fn plan(
    evaluation: &Evaluation,
    indexes: &dyn Indexes,
    floor: u16,
    operands: Operands,
) -> Candidates {
    // A LIMIT pgseal applies to rows the server orders (or streams unordered): the server,
    // told no LIMIT, would plan for every candidate — a bitmap scan and a sort before its first
    // row (5.6 s for a five-column search box over a million patients) — where the plain scan
    // in order stops after the page (pgseal cancels it). Such statements scan, as before
    // indexes; a LIMIT with a margin the server can honour is the next step.
    if evaluation.limit.is_some() && evaluation.order.is_empty() {
        return Candidates::default();
    }
    let mut planner = Planner {
        hidden_sql: &evaluation.hidden_sql,
        indexes,
        next_param: floor.max(evaluation.max_param) + 1,
        probes: Vec::new(),
        operands,
    };
    let mut edits = Vec::new();
    for (pred, &edit) in evaluation.filter.iter().zip(&evaluation.filter_edits) {
        if let Some(sql) = planner.pred(pred) {
            edits.push((edit, sql));
        }
    }
    // The rows of the subqueries pgseal filters: only those their conjuncts can keep (when
    // the evaluation says where its hidden columns are written).
    let mut rows: Vec<Option<String>> = vec![None; evaluation.hidden_sql.len()];
    if evaluation.hidden_select.is_some() {
        // A rows column two subqueries share (their texts differ only in pgseal's conjuncts)
        // serves both: narrowed for one, it would hide the other's rows.
        let mut uses = vec![0usize; rows.len()];
        for pred in &evaluation.filter {
            count_rows_uses(pred, &mut uses);
        }
        for pred in &evaluation.filter {
            planner.narrow_rows(pred, &mut rows, &uses);
        }
    }
    if let Some(select) = &evaluation.hidden_select
        && rows.iter().any(Option::is_some)
    {
        let texts = evaluation
            .hidden_sql
            .iter()
            .zip(&rows)
            .map(|(text, narrowed)| narrowed.as_deref().unwrap_or(text));
        edits.push((
            select.edit,
            HiddenSelect::sql(select.replaces_distinct, texts),
        ));
    }
    Candidates {
        edits,
        probes: planner.probes,
    }
}

/// Counts, per hidden column, the subqueries of `pred` (at the statement's level) that read
/// their rows from it.
fn count_rows_uses(pred: &Pred, uses: &mut [usize]) {
    match pred {
        Pred::And(terms) | Pred::Or(terms) => {
            for term in terms {
                count_rows_uses(term, uses);
            }
        }
        Pred::Not(inner) => count_rows_uses(inner, uses),
        Pred::Any { rows, .. } => {
            if let Some(count) = uses.get_mut(*rows) {
                *count += 1;
            }
        }
        Pred::Server(_) | Pred::Test(_) => {}
    }
}

/// The text of pgseal's parameter for a bound probe, as an array literal (`None`: SQL `NULL`).
/// `params` are the client's bound parameters as text (`$1` first; `None` for NULL).
pub fn bound_value(
    probe: &BoundProbe,
    indexes: &dyn Indexes,
    params: &[Option<String>],
) -> Option<String> {
    let no_narrowing = match probe.ask {
        Ask::Between { .. } => None,
        _ => Some(array(&[])),
    };
    // The index may have become incomplete since the statement was planned (a rebuild): the
    // parameter then keeps every row.
    let Some(search) = indexes.search(probe.column) else {
        return no_narrowing;
    };
    let probe_of = |ask: &Ask| tokens_of(ask, probe.column, search, indexes, Some(params));
    match (&probe.ask, probe_of(&probe.ask)) {
        // `BETWEEN`: NULL means "no narrowing" (the SQL says `OR $n IS NULL`).
        (Ask::Between { .. }, Resolved::Probe(Probe::AnyOf(tokens))) => Some(array(&tokens)),
        (Ask::Between { .. }, Resolved::Probe(Probe::AllOf(tokens))) if tokens.len() == 1 => {
            Some(array(&tokens))
        }
        (Ask::Between { .. }, _) => None,
        // `@>`: NULL keeps no row (the operand was NULL, so the test is never true), an empty
        // array keeps every row.
        (_, Resolved::Null) => None,
        (_, Resolved::Probe(Probe::AllOf(tokens))) => Some(array(&tokens)),
        (_, Resolved::Probe(Probe::AnyOf(tokens))) if tokens.len() == 1 => Some(array(&tokens)),
        (_, _) => Some(array(&[])),
    }
}

/// A probe's tokens, once its operands are known.
enum Resolved {
    /// An operand is NULL: the test is never true.
    Null,
    /// An operand is still a parameter.
    Unbound,
    /// The index cannot narrow this value.
    Nothing,
    /// The tokens.
    Probe(Probe),
}

fn tokens_of(
    ask: &Ask,
    column: ColumnId,
    search: &ColumnSearch,
    indexes: &dyn Indexes,
    params: Option<&[Option<String>]>,
) -> Resolved {
    let value = |term: &Term| operand(term, params);
    let canonical = |text: &str| indexes.canonical(column, text);
    let probe = match ask {
        Ask::Equal(term) => match value(term) {
            Operand::Null => return Resolved::Null,
            Operand::Unbound => return Resolved::Unbound,
            Operand::Opaque => return Resolved::Nothing,
            Operand::Text(text) => canonical(&text).and_then(|c| search.equality(&c)),
        },
        Ask::Like { pattern, escape } => {
            let escape = match escape.as_ref().map(value) {
                None => Escape::default(),
                Some(Operand::Null) => return Resolved::Null,
                Some(Operand::Unbound) => return Resolved::Unbound,
                Some(Operand::Opaque) => return Resolved::Nothing,
                Some(Operand::Text(text)) => match Escape::from_clause(&text) {
                    Ok(escape) => escape,
                    Err(_) => return Resolved::Nothing,
                },
            };
            match value(pattern) {
                Operand::Null => return Resolved::Null,
                Operand::Unbound => return Resolved::Unbound,
                Operand::Opaque => return Resolved::Nothing,
                Operand::Text(text) => search.pattern(&text, escape),
            }
        }
        Ask::Between { low, high } => match (value(low), value(high)) {
            (Operand::Null, _) | (_, Operand::Null) => return Resolved::Null,
            (Operand::Opaque, _) | (_, Operand::Opaque) => return Resolved::Nothing,
            (Operand::Unbound, _) | (_, Operand::Unbound) => return Resolved::Unbound,
            (Operand::Text(low), Operand::Text(high)) => {
                match (canonical(&low), canonical(&high)) {
                    (Some(low), Some(high)) => {
                        search.range(Some((&low, true)), Some((&high, true)))
                    }
                    _ => None,
                }
            }
        },
    };
    match probe {
        Some(probe) => Resolved::Probe(probe),
        None => Resolved::Nothing,
    }
}

/// An operand's value from literals and, when given, the bound parameters. `lower`, `upper`
/// and casts to text are left out: search tokens fold case already.
fn operand(term: &Term, params: Option<&[Option<String>]>) -> Operand {
    match term {
        Term::Literal(text) => Operand::Text(text.clone()),
        Term::Null => Operand::Null,
        Term::Param(n) => match params {
            None => Operand::Unbound,
            Some(params) => match params.get(usize::from(*n).wrapping_sub(1)) {
                Some(Some(text)) => Operand::Text(text.clone()),
                _ => Operand::Null,
            },
        },
        Term::Lower(inner) | Term::Upper(inner) | Term::Text(inner) => operand(inner, params),
        Term::Unaccent(_) => Operand::Opaque,
        Term::Trim(inner, side) => match operand(inner, params) {
            Operand::Text(text) => Operand::Text(
                match side {
                    TrimSide::Both => text.trim_matches(' '),
                    TrimSide::Leading => text.trim_start_matches(' '),
                    TrimSide::Trailing => text.trim_end_matches(' '),
                }
                .to_string(),
            ),
            other => other,
        },
        Term::Concat(parts) => {
            let mut out = String::new();
            for part in parts {
                match operand(part, params) {
                    Operand::Text(text) => out.push_str(&text),
                    other => return other,
                }
            }
            Operand::Text(out)
        }
        Term::Coalesce(parts) => {
            for part in parts {
                match operand(part, params) {
                    Operand::Null => continue,
                    other => return other,
                }
            }
            Operand::Null
        }
        // A sealed column is not an operand; the caller never asks.
        Term::Sealed { .. } => Operand::Unbound,
    }
}

/// A PostgreSQL array literal of tokens (they are URL-safe base64 with a letter first: no
/// quoting needed, but quoted anyway so that no token can read as `NULL`).
fn array(tokens: &[String]) -> String {
    let quoted: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    format!("{{{}}}", quoted.join(","))
}

struct Planner<'e> {
    /// The text of each hidden value of the rows tested (the statement's, or a subquery's).
    hidden_sql: &'e [String],
    indexes: &'e dyn Indexes,
    next_param: u16,
    probes: Vec<BoundProbe>,
    operands: Operands,
}

impl<'e> Planner<'e> {
    /// The SQL of a predicate's candidate filter, `None` when it does not narrow.
    fn pred(&mut self, pred: &'e Pred) -> Option<String> {
        match pred {
            Pred::And(terms) => {
                let parts: Vec<String> = terms.iter().filter_map(|p| self.pred(p)).collect();
                (!parts.is_empty()).then(|| format!("({})", parts.join(" AND ")))
            }
            Pred::Or(terms) => {
                let mark = self.probes.len();
                let parts: Option<Vec<String>> = terms.iter().map(|p| self.pred(p)).collect();
                match parts {
                    Some(parts) => Some(format!("({})", parts.join(" OR "))),
                    None => {
                        // A branch that does not narrow: the group does not either, and the
                        // probes planned for the other branches are not needed.
                        self.forget(mark);
                        None
                    }
                }
            }
            Pred::Any { filter, text, .. } => self.subquery(filter, text),
            Pred::Not(_) | Pred::Server(_) => None,
            Pred::Test(test) => self.test(test),
        }
    }

    /// A subquery pgseal filters (`EXISTS (…)`, `x IN (…)`): the same subquery on the server,
    /// each of its conjuncts that narrows replaced by its candidate filter (on the
    /// subquery's own columns), the others by `TRUE`; `None` when none narrows.
    fn subquery(&mut self, filter: &'e [Pred], text: &'e SubqueryText) -> Option<String> {
        let parts = self.subquery_parts(filter, text)?;
        Some(text.candidate_sql(|i| {
            parts
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| "TRUE".into())
        }))
    }

    /// The candidate filters of a subquery's conjuncts (on its own columns), one per
    /// conjunct, `None` for those that do not narrow; probes are kept only when one does.
    fn subquery_parts(
        &mut self,
        filter: &'e [Pred],
        text: &'e SubqueryText,
    ) -> Option<Vec<Option<String>>> {
        let outer = self.hidden_sql;
        self.hidden_sql = &text.fields;
        let mark = self.probes.len();
        let parts: Vec<Option<String>> = filter.iter().map(|p| self.pred(p)).collect();
        self.hidden_sql = outer;
        if parts.iter().all(Option::is_none) {
            self.forget(mark);
            return None;
        }
        Some(parts)
    }

    /// Narrows the hidden column of each subquery pgseal filters in `pred` (at the
    /// statement's level, under `AND`, `OR` or `NOT` alike): its `ARRAY(SELECT …)` keeps
    /// only the rows a conjunct's candidate filter admits. `rows` holds the new text of each
    /// hidden column so narrowed.
    /// `uses` counts the subqueries reading each hidden column: one shared by several is left
    /// whole.
    fn narrow_rows(&mut self, pred: &'e Pred, rows: &mut [Option<String>], uses: &[usize]) {
        match pred {
            Pred::And(terms) | Pred::Or(terms) => {
                for term in terms {
                    self.narrow_rows(term, rows, uses);
                }
            }
            Pred::Not(inner) => self.narrow_rows(inner, rows, uses),
            Pred::Any {
                rows: column,
                filter,
                text,
                ..
            } => {
                if uses.get(*column) != Some(&1) {
                    return;
                }
                let Some(slot) = rows.get_mut(*column) else {
                    return;
                };
                if let Some(parts) = self.subquery_parts(filter, text) {
                    *slot = Some(text.rows_sql_with(|i| {
                        parts
                            .get(i)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| "TRUE".into())
                    }));
                }
            }
            Pred::Server(_) | Pred::Test(_) => {}
        }
    }

    fn forget(&mut self, mark: usize) {
        if self.probes.len() > mark {
            self.next_param -= (self.probes.len() - mark) as u16;
            self.probes.truncate(mark);
        }
    }

    fn test(&mut self, test: &Test) -> Option<String> {
        match test {
            Test::Compare {
                left,
                op: CompareOp::Eq,
                right,
            } => {
                let (column, operand) = match (self.sealed_side(left), self.sealed_side(right)) {
                    (Some(column), None) if right.sealed().is_none() => (column, right),
                    (None, Some(column)) if left.sealed().is_none() => (column, left),
                    _ => return None,
                };
                self.leaf(column, Ask::Equal(operand.clone()))
            }
            Test::In {
                term,
                list,
                negated: false,
            } => {
                let column = self.sealed_side(term)?;
                if list.is_empty() || list.iter().any(|t| t.sealed().is_some()) {
                    return None;
                }
                let mark = self.probes.len();
                let parts: Option<Vec<String>> = list
                    .iter()
                    .map(|t| self.leaf(column, Ask::Equal(t.clone())))
                    .collect();
                match parts {
                    Some(parts) => Some(format!("({})", parts.join(" OR "))),
                    None => {
                        self.forget(mark);
                        None
                    }
                }
            }
            Test::Like {
                term,
                pattern,
                escape,
                negated: false,
                ..
            } => {
                let column = self.sealed_side(term)?;
                if pattern.sealed().is_some()
                    || escape.as_ref().is_some_and(|e| e.sealed().is_some())
                {
                    return None;
                }
                self.leaf(
                    column,
                    Ask::Like {
                        pattern: pattern.clone(),
                        escape: escape.clone(),
                    },
                )
            }
            Test::Between {
                term,
                low,
                high,
                negated: false,
            } => {
                let column = self.sealed_side(term)?;
                if low.sealed().is_some() || high.sealed().is_some() {
                    return None;
                }
                self.leaf(
                    column,
                    Ask::Between {
                        low: low.clone(),
                        high: high.clone(),
                    },
                )
            }
            _ => None,
        }
    }

    /// The sealed column a term tests, when its tokens describe the term: the column itself,
    /// or a text column under `lower`, `upper` or a cast to text.
    fn sealed_side(&self, term: &Term) -> Option<(ColumnId, usize)> {
        match term {
            Term::Sealed { hidden, column } => {
                self.indexes.search(*column)?;
                Some((*column, *hidden))
            }
            Term::Lower(inner) | Term::Upper(inner) | Term::Text(inner) => {
                let (column, hidden) = self.sealed_side(inner)?;
                self.indexes
                    .search(column)?
                    .plain_type()
                    .is_character()
                    .then_some((column, hidden))
            }
            _ => None,
        }
    }

    /// The SQL of one probe on a column: its tokens inline when the operands are written in
    /// the statement, else one of pgseal's parameters.
    fn leaf(&mut self, (column, hidden): (ColumnId, usize), ask: Ask) -> Option<String> {
        let search = self.indexes.search(column)?;
        let reference = self.hidden_sql.get(hidden)?;
        let tokens = tokens_sql(reference);
        let resolved = match self.operands {
            Operands::Inline => tokens_of(&ask, column, search, self.indexes, None),
            Operands::Bound => Resolved::Unbound,
        };
        match resolved {
            Resolved::Null => Some("FALSE".into()),
            Resolved::Nothing => None,
            Resolved::Probe(Probe::AllOf(list)) if list.is_empty() => None,
            Resolved::Probe(Probe::AllOf(list)) => {
                Some(format!("{tokens} @> '{}'::text[]", array(&list)))
            }
            Resolved::Probe(Probe::AnyOf(list)) if list.is_empty() => Some("FALSE".into()),
            Resolved::Probe(Probe::AnyOf(list)) => {
                Some(format!("{tokens} && '{}'::text[]", array(&list)))
            }
            Resolved::Unbound => {
                let param = self.next_param;
                self.next_param = self.next_param.checked_add(1)?;
                let sql = match ask {
                    Ask::Between { .. } => {
                        format!("({tokens} && ${param}::text[] OR ${param}::text[] IS NULL)")
                    }
                    _ => format!("{tokens} @> ${param}::text[]"),
                };
                self.probes.push(BoundProbe { param, column, ask });
                Some(sql)
            }
        }
    }
}
