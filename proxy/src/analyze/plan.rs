//! The analyzer's output: one [`StatementPlan`] per statement, saying what the session must seal,
//! which sealed columns the statement reads and writes, and what it must refuse.
//!
//! Every span is a byte range into the text given to [`super::analyze`], so the session can
//! splice sealed literals into the original text without re-rendering it.

use std::fmt;
use std::ops::Range;

use pgseal_policies::ColumnId;

/// The analysis of one statement text (a simple Query may hold several statements).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// One plan per statement, in text order.
    pub statements: Vec<StatementPlan>,
}

impl Analysis {
    /// The first refusal of the first statement that has one: the session refuses the whole
    /// text with it (SQLSTATE [`Refusal::sqlstate`]).
    pub fn first_refusal(&self) -> Option<&Refusal> {
        self.statements.iter().find_map(|s| s.refusals.first())
    }

    /// True when some statement touches a sealed table (budgets and audit apply).
    pub fn touches_sealed(&self) -> bool {
        self.statements.iter().any(StatementPlan::touches_sealed)
    }
}

/// A table, by catalog names (folded as PostgreSQL folds them).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Schema name (`public` for an unqualified name: `search_path` is assumed to be the
    /// default).
    pub schema: String,
    /// Table name.
    pub table: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&pgseal_policies::ident::quote_qualified(&[
            &self.schema,
            &self.table,
        ]))
    }
}

/// What kind of statement a plan describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE t`, `WITH … SELECT`.
    Select,
    /// `INSERT` (also `WITH … INSERT`).
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE` (not analysed: refused when it mentions a sealed table).
    Merge,
    /// `COPY … FROM STDIN`.
    CopyFrom,
    /// `COPY … TO STDOUT`, including `COPY (query) TO STDOUT`.
    CopyTo,
    /// Schema changes and other definitions (`CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `GRANT`…).
    Ddl,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `PREPARE TRANSACTION`…
    Transaction,
    /// `SET`, `RESET`, `SHOW`, `DISCARD`.
    Set,
    /// `PREPARE name AS statement`: the plan describes the inner statement; see
    /// [`StatementPlan::prepared`].
    Prepare,
    /// `EXECUTE name (…)`: the analyzer cannot know what it runs; see
    /// [`StatementPlan::prepared`].
    Execute,
    /// `DEALLOCATE`.
    Deallocate,
    /// Anything else (`COPY` to or from a file or program, `EXPLAIN`, `LISTEN`, `VACUUM`…).
    Other,
}

/// The plan of one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementPlan {
    /// Byte range of this statement in the text (without the closing `;`).
    pub span: Range<usize>,
    /// What kind of statement it is.
    pub kind: StatementKind,
    /// Sealed tables it touches (read or written), in order of first mention, for budgets and
    /// audit.
    pub sealed_tables: Vec<TableRef>,
    /// Sealed columns whose values it can return or otherwise use (projection, `*`, `t.*`,
    /// `RETURNING *`, conditions, joins, `COPY … TO`), sorted, without duplicates. The session
    /// refuses the statement when one of them is `denied` to the role.
    pub reads: Vec<ColumnId>,
    /// Sealed columns it writes (`INSERT`, `UPDATE … SET`, upsert, `COPY … FROM`), sorted.
    pub writes: Vec<ColumnId>,
    /// Values the session must seal before forwarding, in text order.
    pub sites: Vec<SealSite>,
    /// Operations impossible on sealed values, or that pgseal cannot analyse: the session
    /// refuses the statement with the first one.
    pub refusals: Vec<Refusal>,
    /// Equalities between two sealed columns of the same domain (joins): they work on stored
    /// values without sealing anything, but only between values sealed under the same key
    /// version (a rotation needs existing data re-sealed before such joins see every row).
    pub column_matches: Vec<ColumnMatch>,
    /// For `COPY table … FROM STDIN` / `TO STDOUT`: the table, columns and data format.
    /// `None` for `COPY (query) TO STDOUT` (analysed as a query: its rows leave as stored,
    /// since a COPY row carries no column origin) and for files and programs.
    pub copy: Option<CopyPlan>,
    /// SQL-level prepared statements (`PREPARE`, `EXECUTE`, `DEALLOCATE`).
    pub prepared: Option<SqlPrepared>,
    /// DDL that may change table OIDs or columns: the session refreshes its catalog cache.
    pub changes_catalog: bool,
    /// A `SELECT` that only reads: no data-modifying `WITH`, no locking clause (`FOR UPDATE`…),
    /// no sealed column written. Functions with side effects are not seen.
    pub reads_only: bool,
    /// What pgseal evaluates itself (filters and sorts on sealed columns), with the rewrite
    /// that makes the server return a superset of the rows.
    pub evaluation: Option<super::evaluation::Evaluation>,
    /// For `DECLARE name CURSOR … FOR query`: the cursor it opens (the query's plan is this
    /// statement's, its [`StatementPlan::evaluation`] included).
    pub declared: Option<DeclaredCursor>,
}

/// The cursor a `DECLARE` opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredCursor {
    /// Its name, folded as PostgreSQL folds it.
    pub name: String,
    /// `SCROLL`: it may be read backwards.
    pub scroll: bool,
    /// `WITH HOLD`: it survives the commit of the transaction that declared it.
    pub hold: bool,
}

impl StatementPlan {
    /// An empty plan of a given kind over a span.
    pub fn empty(kind: StatementKind, span: Range<usize>) -> Self {
        StatementPlan {
            span,
            kind,
            sealed_tables: Vec::new(),
            reads: Vec::new(),
            writes: Vec::new(),
            sites: Vec::new(),
            refusals: Vec::new(),
            column_matches: Vec::new(),
            copy: None,
            prepared: None,
            changes_catalog: false,
            reads_only: false,
            evaluation: None,
            declared: None,
        }
    }

    /// True when it touches a sealed table or column.
    pub fn touches_sealed(&self) -> bool {
        !self.sealed_tables.is_empty() || !self.reads.is_empty() || !self.writes.is_empty()
    }
}

/// A value the session seals before forwarding the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSite {
    /// The literal or parameter.
    pub value: SiteValue,
    /// The sealed column it is stored into or compared with.
    pub column: ColumnId,
    /// Stored, or compared.
    pub purpose: Purpose,
    /// Spans to delete so the sealed text reaches the column as text: a `::date` cast, the
    /// `CAST(` and ` AS date)` around the value, the `DATE` of `DATE '…'`. They never overlap
    /// the value's span.
    pub strip: Vec<Range<usize>>,
}

/// The value of a [`SealSite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteValue {
    /// A literal in the text: replace `span` with a quoted sealed literal.
    Literal {
        /// Byte range of the literal as written (quotes, `E` prefix and a leading `-` included).
        span: Range<usize>,
        /// The literal's value, unescaped (`it's` for `'it''s'`, `-5` for `- 5`).
        text: String,
    },
    /// A `$n` parameter: seal the bound value at Bind.
    Param {
        /// `n`, 1-based.
        index: u16,
    },
}

/// Why a value is sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Stored into the column: `INSERT … VALUES`, `UPDATE … SET`, upsert, `INSERT … SELECT`
    /// of a literal. Sealed under the active key version.
    Store,
    /// An array whose every element is stored into the column, one row each: `INSERT …
    /// SELECT * FROM UNNEST($1::date[], …)` (Django's bulk_create). Each element is sealed, and
    /// the array casts at `casts` (`::date[]`, from the `::`) become casts to the storage
    /// type's array (the sealed elements are not dates).
    StoreElements {
        /// Byte ranges of the casts to the array type, `::` included.
        casts: Vec<Range<usize>>,
    },
    /// Compared with the column (`=`, `<>`, `IN`, `NOT IN`, `IS [NOT] DISTINCT FROM`): to match
    /// rows sealed under older key versions, the session may rewrite the comparison with one
    /// sealed form per readable key version, using the context.
    Match(MatchContext),
}

/// Where a [`Purpose::Match`] value sits, so the session can rewrite the comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchContext {
    /// The comparison's shape.
    pub shape: MatchShape,
    /// The comparison as a whole (`p.nir = $1`), or for [`MatchShape::InList`] the one list
    /// element (`'…'` with its casts).
    pub span: Range<usize>,
    /// The sealed column reference as written (`p.nir`, parentheses included if any).
    pub column_span: Range<usize>,
}

/// The shape of a comparison holding a [`Purpose::Match`] value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchShape {
    /// `column OP value` (`column_first`) or `value OP column`.
    Compare {
        /// The operator.
        op: MatchOp,
        /// True for `column OP value`, false for `value OP column`.
        column_first: bool,
    },
    /// One element of `column IN (…)` or `column NOT IN (…)`: the session may replace the
    /// element with several comma-separated sealed forms.
    InList {
        /// `NOT IN`.
        negated: bool,
    },
}

/// A comparison operator pgseal can apply to sealed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`.
    Eq,
    /// `<>` or `!=`.
    NotEq,
    /// `IS DISTINCT FROM`.
    IsDistinctFrom,
    /// `IS NOT DISTINCT FROM`.
    IsNotDistinctFrom,
}

/// An equality between two sealed columns of one domain (see
/// [`StatementPlan::column_matches`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMatch {
    /// One side.
    pub left: ColumnId,
    /// The other side.
    pub right: ColumnId,
    /// The comparison (`p.nir = r.patient_nir`, or the `USING (…)` column).
    pub span: Range<usize>,
}

/// Why a statement must be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// An operation impossible on sealed values (range, `LIKE`, `ORDER BY`, functions, equality
    /// on a randomized column, a computed value bound for a sealed column…).
    Unsupported,
    /// pgseal cannot tell exactly what the statement does with sealed data (a construct it
    /// does not analyse, a value it cannot locate, an ambiguous reference).
    Unanalysable,
}

/// A reason to refuse a statement (SQLSTATE 0A000).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The sealed column concerned, when there is one.
    pub column: Option<ColumnId>,
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// The message for the client; it names the column and its mode, or the table.
    pub reason: String,
}

impl Refusal {
    /// The SQLSTATE to refuse with: `0A000` (feature_not_supported).
    pub fn sqlstate(&self) -> &'static str {
        "0A000"
    }
}

/// Which way a `COPY` moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyDirection {
    /// `COPY … FROM STDIN`: the client sends rows (the session seals sealed fields).
    From,
    /// `COPY … TO STDOUT`: the server sends rows (the session renders each role's view).
    To,
}

/// `COPY` data format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format (the default).
    Text,
    /// CSV.
    Csv,
    /// Binary (refused for sealed tables).
    Binary,
}

/// What the session needs to transform `COPY` data rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// The table.
    pub table: TableRef,
    /// The column list as written, folded; `None` = every column in table order (the session
    /// takes the order from its catalog).
    pub columns: Option<Vec<String>>,
    /// Per data field, the sealed column it carries (`None` = not sealed), when the column list
    /// is explicit; `None` without a column list (the session maps fields through its
    /// catalog).
    pub fields: Option<Vec<Option<ColumnId>>>,
    /// Direction.
    pub direction: CopyDirection,
    /// Format.
    pub format: CopyFormat,
    /// `DELIMITER` (default: tab in text, `,` in CSV).
    pub delimiter: Option<char>,
    /// `NULL` string (default: `\N` in text, empty unquoted in CSV).
    pub null: Option<String>,
    /// `HEADER`: the first line is a header.
    pub header: bool,
    /// CSV `QUOTE` (default `"`).
    pub quote: Option<char>,
    /// CSV `ESCAPE` (default: the quote character).
    pub escape: Option<char>,
    /// `ENCODING`, when given.
    pub encoding: Option<String>,
    /// `FORCE_QUOTE`, `FORCE_NOT_NULL` or `FORCE_NULL` was given: they change which fields
    /// are NULL in ways pgseal does not model, so a COPY into a sealed table with them is
    /// refused.
    pub forces: bool,
}

/// A literal or parameter given to `EXECUTE name (…)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecuteArg {
    /// The value.
    pub value: SiteValue,
    /// Casts around it to delete if it is sealed (as in [`SealSite::strip`]).
    pub strip: Vec<Range<usize>>,
}

/// SQL-level prepared statements.
///
/// The analyzer sees one text at a time; the session keeps what `PREPARE` defined:
///
/// - `PREPARE name AS stmt`: the plan's sites, reads, writes and refusals are the inner
///   statement's; its `$n` sites stand for the arguments of a later `EXECUTE name (…)`.
/// - `EXECUTE name (args)`: the session looks up the plan it recorded for `name` in this
///   session. If it has none, or a `$n` site's argument is not a located literal or parameter
///   (`args[n-1]` is `None`), it must refuse when the recorded plan touches sealed data;
///   otherwise it seals `args[n-1]` for each `$n` site of the recorded plan, and checks its
///   reads and writes against the role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlPrepared {
    /// `PREPARE name [(types)] AS statement`.
    Prepare {
        /// The statement name, folded.
        name: String,
        /// The inner statement's kind.
        inner: StatementKind,
    },
    /// `EXECUTE name [(args)]`.
    Execute {
        /// The statement name, folded.
        name: String,
        /// Each argument, located when it is a literal or parameter.
        args: Vec<Option<ExecuteArg>>,
    },
    /// `DEALLOCATE [PREPARE] name | ALL`.
    Deallocate {
        /// The statement name, folded; `None` for `ALL`.
        name: Option<String>,
    },
}
