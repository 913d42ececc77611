//! The plan of what pgseal evaluates itself in a `SELECT`: the predicates and sort keys the
//! database cannot apply to sealed values, the hidden columns that bring pgseal their operands,
//! and the edits that turn the statement into one returning a superset of the rows.
//!
//! The server is sent the statement with:
//!
//! - hidden columns inserted first in the select list ([`Evaluation::hidden`]): the sealed
//!   columns pgseal filters or sorts on, the values of unsealed terms of a predicate pgseal
//!   evaluates (as booleans), and one `dense_rank()` per run of unsealed sort keys, so pgseal
//!   never compares an unsealed type itself;
//! - each conjunct of `WHERE` that pgseal evaluates replaced by `TRUE`; one that tests a
//!   subquery filtering on a sealed column (`EXISTS (SELECT … WHERE c.value ILIKE $1)`,
//!   `a.id IN (SELECT c.party …)`) becomes a hidden column holding that subquery's rows, its
//!   own sealed conjuncts replaced by `TRUE` (and for `IN`, the match with the outer value
//!   moved into its `WHERE`): `ARRAY(SELECT ROW(<hidden values>) FROM … WHERE …)`. The server
//!   computes it for every row, so it learns nothing of which rows pgseal keeps;
//! - `ORDER BY` removed when a sort key is sealed, and `LIMIT`/`OFFSET` removed whenever
//!   pgseal evaluates anything (pgseal applies them after filtering and sorting).
//!
//! Operands written in the statement (literals, `$n`) never reach the server: literals leave
//! with the predicate's text, and each `$n` used only there is sent as NULL (the server still
//! types it, through [`Evaluation::keeper`]).

use std::ops::Range;

use pgseal_policies::ColumnId;

/// What pgseal evaluates in one `SELECT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// The hidden columns, in the order they are inserted before the select list.
    pub hidden: Vec<Hidden>,
    /// Conjuncts of `WHERE` that pgseal evaluates: a row is kept when every one is TRUE.
    pub filter: Vec<Pred>,
    /// pgseal's sort, when a sort key is sealed (otherwise the server's order is kept).
    pub order: Vec<SortKey>,
    /// `LIMIT`, applied by pgseal after filtering and sorting.
    pub limit: Option<Count>,
    /// `OFFSET`, likewise.
    pub offset: Option<Count>,
    /// Replacements in the statement text (byte ranges of the analysed text).
    pub edits: Vec<(Range<usize>, String)>,
    /// The `$n` used only in what pgseal evaluates: sent to the server as NULL, their values
    /// kept for pgseal, with the type the server is told they have.
    pub params: Vec<(u16, String)>,
    /// The type pgseal reads each `$n` it evaluates as, consumed or not (a binary value bound
    /// without a declared type is decoded as it).
    pub read_types: Vec<(u16, String)>,
    /// The sealed columns whose plaintext pgseal compares: the role must read them in clear.
    pub columns: Vec<ColumnId>,
    /// The select list is `count(*)`: pgseal answers one row, its count of the rows kept.
    pub count_only: bool,
    /// The text each hidden column is selected with (a sealed column's reference, as written).
    pub hidden_sql: Vec<String>,
    /// For each conjunct of [`Evaluation::filter`], the index in [`Evaluation::edits`] of the
    /// edit that replaces it by `TRUE` (where a search index's candidate filter may go instead).
    pub filter_edits: Vec<usize>,
    /// The highest `$n` of the statement (0 without parameters): pgseal's own parameters come
    /// after it.
    pub max_param: u16,
    /// The edit that writes the hidden columns after `SELECT` (`None` when the evaluation was
    /// not made from a statement's text).
    pub hidden_select: Option<HiddenSelect>,
    /// `SELECT DISTINCT` whose duplicates pgseal removes (the server is sent the statement
    /// without `DISTINCT`): the hidden columns whose values make a row's identity — each sealed
    /// output opened, and one `dense_rank()` over the unsealed outputs, so that equal means
    /// what PostgreSQL's equality says. The first row of each identity that passes the filter
    /// is kept.
    pub distinct: Option<Vec<usize>>,
}

impl Evaluation {
    /// How many result columns come before the client's own.
    pub fn hidden_count(&self) -> usize {
        self.hidden.len()
    }

    /// Whether `$n` is consumed by pgseal (sent to the server as NULL).
    pub fn consumes(&self, index: u16) -> bool {
        self.params.iter().any(|(n, _)| *n == index)
    }

    /// Every `$n` whose value pgseal reads, sorted.
    pub fn read_params(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for pred in &self.filter {
            pred.params(&mut out);
        }
        for key in &self.order {
            if let Key::Term(term) = &key.key {
                term.params(&mut out);
            }
        }
        for count in [&self.limit, &self.offset].into_iter().flatten() {
            if let Count::Param(n) = count {
                out.push(*n);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Pred {
    fn params(&self, out: &mut Vec<u16>) {
        match self {
            Pred::And(terms) | Pred::Or(terms) => terms.iter().for_each(|p| p.params(out)),
            Pred::Not(inner) => inner.params(out),
            Pred::Any { filter, .. } => filter.iter().for_each(|p| p.params(out)),
            Pred::Server(_) => {}
            Pred::Test(test) => match test {
                Test::Compare { left, right, .. } => {
                    left.params(out);
                    right.params(out);
                }
                Test::Between {
                    term, low, high, ..
                } => {
                    for t in [term, low, high] {
                        t.params(out);
                    }
                }
                Test::In { term, list, .. } => {
                    term.params(out);
                    list.iter().for_each(|t| t.params(out));
                }
                Test::IsNull { term, .. } => term.params(out),
                Test::Like {
                    term,
                    pattern,
                    escape,
                    ..
                } => {
                    term.params(out);
                    pattern.params(out);
                    if let Some(e) = escape {
                        e.params(out);
                    }
                }
            },
        }
    }
}

impl Hidden {
    /// Appends every sealed column whose value this hidden column brings (in a subquery's
    /// rows too): each one pgseal opens, which the role must read in clear.
    pub fn sealed_columns(&self, out: &mut Vec<ColumnId>) {
        match self {
            Hidden::Sealed(column) => out.push(*column),
            Hidden::Rows(fields) => fields.iter().for_each(|f| f.sealed_columns(out)),
            Hidden::Boolean | Hidden::Rank | Hidden::Keeper => {}
        }
    }
}

/// A hidden result column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hidden {
    /// A sealed column's stored value (pgseal opens it).
    Sealed(ColumnId),
    /// The value of an unsealed term of a predicate pgseal evaluates (a boolean).
    Boolean,
    /// The `dense_rank()` of a run of unsealed sort keys (a bigint, ascending).
    Rank,
    /// `num_nulls` of the consumed parameters, ignored: it makes the server type them.
    Keeper,
    /// The rows of a subquery pgseal filters (`EXISTS (…)`, `x IN (…)`), as an array of
    /// records: for each row the server kept, these hidden values of that row.
    Rows(Vec<Hidden>),
}

/// The edit that writes an evaluation's hidden columns into the statement, after `SELECT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HiddenSelect {
    /// Its index in [`Evaluation::edits`].
    pub edit: usize,
    /// It replaces `DISTINCT` (pgseal removes the duplicates itself).
    pub replaces_distinct: bool,
}

impl HiddenSelect {
    /// The edit's text for the hidden columns' texts, in order (`pgseal_1`, `pgseal_2`…).
    pub fn sql<'t>(replaces_distinct: bool, texts: impl IntoIterator<Item = &'t str>) -> String {
        let list: Vec<String> = texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| format!("{text} AS pgseal_{}", i + 1))
            .collect();
        if replaces_distinct {
            format!("{},", list.join(", "))
        } else {
            format!(" {},", list.join(", "))
        }
    }
}

/// A predicate, with SQL's three-valued logic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pred {
    /// Every term.
    And(Vec<Pred>),
    /// Any term.
    Or(Vec<Pred>),
    /// `NOT`.
    Not(Box<Pred>),
    /// A boolean the server computed (hidden column index).
    Server(usize),
    /// Some row of a subquery passes `filter` (every conjunct TRUE): `rows` is the hidden
    /// column holding the subquery's rows ([`Hidden::Rows`]), and the filter's hidden indexes
    /// are positions in each of those rows. Never NULL.
    Any {
        /// The hidden column of the rows.
        rows: usize,
        /// The conjuncts each row is tested with.
        filter: Vec<Pred>,
        /// The subquery's text, for a search index's candidate filter on it.
        text: Box<SubqueryText>,
        /// For `x IN (…)` where its NULL differs from FALSE (under `NOT`): the field holding
        /// each row's `x = y`, TRUE or NULL (rows where it is FALSE are not sent). The test is
        /// then TRUE when a passing row has it TRUE, else NULL when one has it NULL.
        matched: Option<usize>,
    },
    /// A test on terms at least one of which is sealed.
    Test(Test),
}

/// The text of a subquery pgseal filters, in pieces around the conjuncts of its `WHERE` that
/// pgseal evaluates, so that each can be replaced: by `TRUE` in the hidden column that brings
/// its rows, by a search index's candidate filter where the server narrows the outer rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubqueryText {
    /// `FROM … WHERE ` (with the space before `FROM`).
    pub from: String,
    /// The `WHERE` condition around pgseal's conjuncts: one more piece than there are
    /// conjuncts in [`Pred::Any`]'s filter.
    pub pieces: Vec<String>,
    /// For `x IN (SELECT y …)`: the texts of `x` and of `y`.
    pub matched: Option<(String, String)>,
    /// The rows where `x = y` is NULL are sent too (`NOT IN`, `IN` under `NOT`).
    pub nullable: bool,
    /// The texts of the hidden values of each row (the subquery's own hidden columns).
    pub fields: Vec<String>,
}

impl SubqueryText {
    /// The `WHERE` condition with each of pgseal's conjuncts replaced by `replace(i)`.
    pub fn condition(&self, mut replace: impl FnMut(usize) -> String) -> String {
        let mut out = String::new();
        for (i, piece) in self.pieces.iter().enumerate() {
            out.push_str(piece);
            if i + 1 < self.pieces.len() {
                out.push_str(&replace(i));
            }
        }
        out
    }

    /// The hidden column bringing the rows: `ARRAY(SELECT ROW(<fields>) FROM … WHERE …)`,
    /// pgseal's conjuncts `TRUE`, and for `IN` the match with the outer value added.
    pub fn rows_sql(&self) -> String {
        self.rows_sql_with(|_| "TRUE".into())
    }

    /// [`SubqueryText::rows_sql`] with `replace(i)` for each of pgseal's conjuncts: a search
    /// index's candidate filter sends only the rows that conjunct can keep (a row that fails
    /// one of pgseal's conjuncts cannot make the subquery's test true, whatever its context).
    pub fn rows_sql_with(&self, replace: impl FnMut(usize) -> String) -> String {
        let mut condition = self.condition(replace);
        if let Some((x, y)) = &self.matched {
            condition = if self.nullable {
                format!("({condition}) AND ((({x}) = ({y})) IS NOT FALSE)")
            } else {
                format!("({condition}) AND (({x}) = ({y}))")
            };
        }
        format!(
            "ARRAY(SELECT ROW({}){}{condition})",
            self.fields.join(", "),
            self.from
        )
    }

    /// The same test on the server with `candidate(i)` for each of pgseal's conjuncts
    /// (`EXISTS (…)`, or `x IN (…)`): a superset of the outer rows the subquery keeps.
    pub fn candidate_sql(&self, candidate: impl FnMut(usize) -> String) -> String {
        let condition = self.condition(candidate);
        match &self.matched {
            None => format!("EXISTS (SELECT 1{}{condition})", self.from),
            Some((x, y)) => format!("(({x}) IN (SELECT {y}{}{condition}))", self.from),
        }
    }
}

/// A test pgseal applies to plaintext values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// `left op right`.
    Compare {
        /// Left operand.
        left: Term,
        /// Operator.
        op: CompareOp,
        /// Right operand.
        right: Term,
    },
    /// `term [NOT] BETWEEN low AND high`.
    Between {
        /// The operand.
        term: Term,
        /// Lower bound.
        low: Term,
        /// Upper bound.
        high: Term,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `term [NOT] IN (list)`.
    In {
        /// The operand.
        term: Term,
        /// The values.
        list: Vec<Term>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `term IS [NOT] NULL`.
    IsNull {
        /// The operand.
        term: Term,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `term [NOT] LIKE/ILIKE pattern [ESCAPE e]`.
    Like {
        /// The operand.
        term: Term,
        /// The pattern.
        pattern: Term,
        /// `ESCAPE`, when given.
        escape: Option<Term>,
        /// `ILIKE`.
        insensitive: bool,
        /// `NOT LIKE`.
        negated: bool,
    },
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`.
    Eq,
    /// `<>`, `!=`.
    NotEq,
    /// `<`.
    Lt,
    /// `<=`.
    LtEq,
    /// `>`.
    Gt,
    /// `>=`.
    GtEq,
    /// `IS DISTINCT FROM`.
    Distinct,
    /// `IS NOT DISTINCT FROM`.
    NotDistinct,
}

/// A value pgseal computes from a row and the statement's operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// A sealed column's plaintext (hidden column index).
    Sealed {
        /// The hidden column.
        hidden: usize,
        /// The column.
        column: ColumnId,
    },
    /// A literal, as written (unescaped); its type is the other operand's.
    Literal(String),
    /// `$n`.
    Param(u16),
    /// `NULL`.
    Null,
    /// `lower(term)`.
    Lower(Box<Term>),
    /// `upper(term)`.
    Upper(Box<Term>),
    /// `unaccent(term)`, by the database's `unaccent` dictionary.
    Unaccent(Box<Term>),
    /// A cast to `text` or `varchar` (the value's text form).
    Text(Box<Term>),
    /// `coalesce(terms…)`.
    Coalesce(Vec<Term>),
    /// `trim`/`btrim` (`Both`), `ltrim` (`Leading`), `rtrim` (`Trailing`) of spaces.
    Trim(Box<Term>, TrimSide),
    /// `a || b || …` (text; NULL when any part is): how ORMs build patterns
    /// (`'%' || $1 || '%'`).
    Concat(Vec<Term>),
}

impl Term {
    fn params(&self, out: &mut Vec<u16>) {
        match self {
            Term::Param(n) => out.push(*n),
            Term::Lower(t)
            | Term::Upper(t)
            | Term::Unaccent(t)
            | Term::Text(t)
            | Term::Trim(t, _) => t.params(out),
            Term::Coalesce(terms) | Term::Concat(terms) => terms.iter().for_each(|t| t.params(out)),
            Term::Sealed { .. } | Term::Literal(_) | Term::Null => {}
        }
    }

    /// The sealed column the term reads, if any.
    pub fn sealed(&self) -> Option<ColumnId> {
        match self {
            Term::Sealed { column, .. } => Some(*column),
            Term::Lower(t)
            | Term::Upper(t)
            | Term::Unaccent(t)
            | Term::Text(t)
            | Term::Trim(t, _) => t.sealed(),
            Term::Coalesce(terms) | Term::Concat(terms) => terms.iter().find_map(Term::sealed),
            Term::Literal(_) | Term::Param(_) | Term::Null => None,
        }
    }
}

/// Which end `trim` takes spaces from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimSide {
    /// Both ends.
    Both,
    /// The start.
    Leading,
    /// The end.
    Trailing,
}

/// One sort key of pgseal's sort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// What is compared.
    pub key: Key,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST` (PostgreSQL's default: first when descending).
    pub nulls_first: bool,
}

/// The value a sort key compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A run of unsealed keys, ranked by the server (hidden column index; direction and
    /// NULLs already applied).
    Rank(usize),
    /// A term over a sealed column.
    Term(Term),
}

/// A `LIMIT` or `OFFSET` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Count {
    /// A number written in the statement.
    Literal(u64),
    /// `$n` (a NULL value means no limit).
    Param(u16),
}
