//! From a statement text to what goes to the server: the analysis checked against the role's
//! views, literals bound for sealed columns sealed in place, and the plan of each `$n`.

use std::sync::Arc;

use pgseal_policies::{ClassId, ColumnId, View, WriteAccess};

use super::accounting::StatementInfo;
use super::state::{ParamSeal, Refusal};
use crate::analyze::{
    AnalyzeError, CopyDirection, CopyPlan, MatchContext, MatchOp, MatchShape, Purpose, SealSite,
    SiteValue,
};
use crate::evaluate::candidates::{self, BoundProbe, Indexes, Operands};
use crate::protect::Protection;
use crate::protect::catalog::DatabaseCatalog;
use crate::protect::column::Storage;
use crate::protect::date_settings::DateSettings;
use crate::search::ColumnSearch;

/// What a statement text becomes.
#[derive(Debug)]
pub struct Planned {
    /// The text to send instead, when literals were sealed or casts removed.
    pub sql: Option<String>,
    /// How each `$n` is sealed (`params[0]` is `$1`).
    pub params: Vec<Option<ParamSeal>>,
    /// A COPY the statement runs that reads or writes a sealed table.
    pub copy: Option<Arc<CopyPlan>>,
    /// Whether the statement may change the catalog (DDL).
    pub changes_catalog: bool,
    /// Whether the statement touches a sealed table at all.
    pub touches_sealed: bool,
    /// Whether every statement of the text only reads (`SELECT`, `VALUES`, `TABLE`): when
    /// pgseal ends one mid-result, letting the server finish it changes nothing.
    pub read_only: bool,
    /// Whether it runs a `COPY … FROM STDIN` (into any table): the server then waits for the
    /// client's CopyData.
    pub copies_in: bool,
    /// What budgets and the audit trail need of it.
    pub statement: Arc<StatementInfo>,
    /// What pgseal evaluates itself (filters and sorts on sealed columns).
    pub evaluation: Option<Arc<crate::analyze::evaluation::Evaluation>>,
    /// Search-index probes whose tokens pgseal sends at Bind, as its own parameters after the
    /// client's.
    pub probes: Arc<[BoundProbe]>,
    /// Whether it may change `DateStyle` or `TimeZone` (see [`may_change_dates`]).
    pub changes_dates: bool,
    /// The settings its literals were read in (PostgreSQL reads them at Parse).
    pub dates: Arc<DateSettings>,
    /// The literals it seals to store them, in text order: a randomized column's seal differs
    /// at each planning, so after a reload they are checked one by one, not compared.
    pub stored_literals: Vec<StoredLiteral>,
    /// The text sent with each of those literals replaced by its number: what two plannings
    /// of one statement must share to be the same statement for the server. `None` when
    /// the text has no such literal (then it is `sql`).
    pub comparable_sql: Option<String>,
    /// A `DECLARE … CURSOR` sent alone: the cursor, and what pgseal evaluates in its query
    /// (then not in [`Planned::evaluation`]: the DECLARE itself returns no row).
    pub declares: Option<Arc<super::cursors::Declaring>>,
    /// A FETCH of a cursor pgseal evaluates, sent as `FETCH ALL FROM` it.
    pub fetches: Option<Arc<super::cursors::Fetching>>,
}

/// A literal sealed to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLiteral {
    /// Its column.
    pub column: ColumnId,
    /// The stored form sent (text format).
    pub stored: Vec<u8>,
    /// Its edit among the statement's.
    edit: usize,
}

impl Planned {
    /// The plan of a statement sent as it is, charged as `statement`.
    pub fn empty(statement: StatementInfo) -> Self {
        Self::empty_for(Arc::new(statement), Arc::default())
    }

    /// [`Planned::empty`], with a statement record already shared and its literals read in
    /// `dates` (no allocation: a statement that needs nothing takes this path every time).
    pub fn empty_for(statement: Arc<StatementInfo>, dates: Arc<DateSettings>) -> Self {
        Planned {
            sql: None,
            params: Vec::new(),
            copy: None,
            changes_catalog: false,
            changes_dates: false,
            dates,
            touches_sealed: false,
            read_only: false,
            copies_in: false,
            statement,
            evaluation: None,
            probes: no_probes(),
            stored_literals: Vec::new(),
            comparable_sql: None,
            declares: None,
            fetches: None,
        }
    }
}

/// The probes of a statement with none, shared (an empty `Arc<[_]>` is still an allocation)
/// by the statements of one thread: its count is then never written from two cores.
fn no_probes() -> Arc<[BoundProbe]> {
    thread_local! {
        static NONE: Arc<[BoundProbe]> = Arc::from(Vec::new());
    }
    NONE.try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from(Vec::new()))
}

/// The search indexes of one database as candidate filters see them: complete ones only.
pub struct CompleteIndexes<'a> {
    /// The columns' keys.
    pub protection: &'a Protection,
    /// The database's catalog.
    pub catalog: &'a DatabaseCatalog,
    /// What the session's dates and times are read in.
    pub dates: &'a DateSettings,
}

impl Indexes for CompleteIndexes<'_> {
    fn search(&self, column: ColumnId) -> Option<&ColumnSearch> {
        self.protection
            .complete_index(self.catalog, column)
            .map(|index| &index.search)
    }

    fn canonical(&self, column: ColumnId, text: &str) -> Option<Vec<u8>> {
        self.protection
            .column(column)
            .canonical_text(text, self.dates)
            .ok()
    }
}

/// The start of the text the server is sent in place of a refused statement: it fails at once
/// with a syntax error at its first word, which pgseal replaces with its own error, so the
/// server's state (an aborted transaction, skipping to Sync) is exactly what a real error
/// leaves.
pub const POISON: &str = "pgseal refused this statement";

/// The whole text sent in place of a refused statement: [`POISON`], then what a DBA reading
/// PostgreSQL's log needs to find the refusal in pgseal's (SQLSTATE, reason, the statement's
/// literal-free fingerprint id). Nothing after the first word is ever parsed as SQL.
pub fn poison(refusal: &Refusal, sql: Option<&[u8]>) -> String {
    let fingerprint = sql
        .and_then(|s| std::str::from_utf8(s).ok())
        .map(|s| crate::audit::Fingerprint::of(s).id)
        .unwrap_or_else(|| "-".into());
    format!(
        "{POISON} (SQLSTATE {}, {}; fingerprint {fingerprint}; see pgseal's log)",
        refusal.sqlstate,
        refusal.reason()
    )
}

fn refusal(sqlstate: &'static str, message: String) -> Refusal {
    Refusal::new(sqlstate, message)
}

/// Plans a statement text for a role class.
pub fn plan(
    protection: &Protection,
    catalog: &DatabaseCatalog,
    class: ClassId,
    role: &str,
    sql: &str,
    param_floor: Option<u16>,
    dates: &DateSettings,
) -> Result<Planned, Refusal> {
    if has_unicode_escaped_identifier(sql) {
        return Err(refusal(
            "0A000",
            "pgseal refuses Unicode-escaped identifiers (U&\"…\") on protected sessions".into(),
        ));
    }
    let analysis = protection.analyze(sql);
    let analysis = match analysis.as_ref() {
        Ok(analysis) => analysis,
        Err(AnalyzeError::Unparseable {
            message,
            sealed_tables,
        }) => {
            if !sealed_tables.is_empty() {
                let tables: Vec<String> = sealed_tables
                    .iter()
                    .map(|t| format!("{}.{}", t.schema, t.table))
                    .collect();
                return Err(refusal(
                    "0A000",
                    format!(
                        "pgseal cannot analyse this statement ({message}) and it mentions sealed table {}",
                        tables.join(", ")
                    ),
                ));
            }
            let forwarded = protection.unanalysable == crate::protect::Unanalysable::Forward
                || is_schema_utility(sql);
            if !forwarded || may_run_code(sql) {
                return Err(refusal(
                    "0A000",
                    format!("pgseal cannot analyse this statement: {message}"),
                ));
            }
            let statement = StatementInfo::new(protection, class, sql, Vec::new(), &[], &[], None);
            return Ok(Planned::empty(statement));
        }
    };
    let policy = &protection.policy;
    let end_user = crate::enduser::end_user_from_comment(sql)
        .map_err(|e| refusal("22023", format!("pgseal_user comment: {e}")))?;
    let mut planned = Planned::empty(StatementInfo::new(
        protection,
        class,
        sql,
        Vec::new(),
        &[],
        &[],
        None,
    ));
    let (mut tables, mut reads, mut writes) = (Vec::<String>::new(), Vec::new(), Vec::new());
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    planned.read_only = true;
    // A statement before this one reads a sealed table: its rows count, and a budget block
    // ends it mid-result while the server goes on with the rest of the text.
    let mut after_sealed_read = false;
    for statement in &analysis.statements {
        if let Some(first) = statement.refusals.first() {
            return Err(refusal("0A000", first.reason.clone()));
        }
        let text = sql.get(statement.span.clone()).unwrap_or(sql);
        let reads_only = statement.reads_only;
        planned.copies_in |= statement.kind == crate::analyze::StatementKind::CopyFrom;
        if after_sealed_read && !reads_only {
            // The client would be told the text failed at the block while the server ran (and
            // committed) what follows: only more reads may follow.
            return Err(Refusal {
                sqlstate: "0A000",
                message: "pgseal refuses a statement after one that reads a sealed table in the \
                          same query string, unless it only reads: an export-budget block ends \
                          the read, and the server would still run the rest"
                    .into(),
                hint: Some("send the statements as separate queries".into()),
            });
        }
        after_sealed_read |= !statement.sealed_tables.is_empty();
        planned.read_only &= reads_only;
        check_statement(statement, text, catalog)?;
        check_access(policy, class, role, statement)?;
        if let Some(cursor) = &statement.declared
            && cursor.name == super::paging::CURSOR
        {
            return Err(refusal(
                "42939",
                format!(
                    "cursor name {} is reserved for pgseal's paged reads; choose another name",
                    super::paging::CURSOR
                ),
            ));
        }
        // pgseal migrate: a tokenized or pseudonym column marked `migrating` is refused.
        let touched = statement.reads.iter().chain(&statement.writes);
        let touched = touched.chain(statement.sites.iter().map(|site| &site.column));
        if let Some(error) = protection.migration_refusal(touched.copied()) {
            return Err(refusal(error.sqlstate(), error.to_string()));
        }
        planned.touches_sealed |= !statement.sealed_tables.is_empty();
        for table in &statement.sealed_tables {
            let name = format!("{}.{}", table.schema, table.table);
            if !tables.contains(&name) {
                tables.push(name);
            }
        }
        reads.extend_from_slice(&statement.reads);
        writes.extend_from_slice(&statement.writes);
        planned.changes_catalog |= statement.changes_catalog;
        if let Some(copy) = &statement.copy
            && !statement.sealed_tables.is_empty()
        {
            if copy.direction == CopyDirection::From
                && copy.format == crate::analyze::CopyFormat::Binary
            {
                return Err(refusal(
                    "0A000",
                    format!(
                        "COPY {}.{} FROM STDIN in binary format cannot be sealed by pgseal; use text or csv",
                        copy.table.schema, copy.table.table
                    ),
                ));
            }
            if planned.copy.is_some() {
                return Err(refusal(
                    "0A000",
                    "pgseal seals one COPY per Query; send each COPY in its own Query".into(),
                ));
            }
            planned.copy = Some(Arc::new(copy.clone()));
        }
        for site in &statement.sites {
            plan_site(
                protection,
                catalog,
                dates,
                sql,
                site,
                &mut planned,
                &mut edits,
            )?;
        }
        if let Some(evaluation) = &statement.evaluation {
            check_evaluation(policy, class, role, evaluation, analysis.statements.len())?;
            let first = edits.len();
            edits.extend(evaluation.edits.iter().cloned());
            // Conjuncts on columns with a complete search index: a candidate filter the
            // database's index answers, instead of TRUE.
            let indexes = CompleteIndexes {
                protection,
                catalog,
                dates,
            };
            // A Query is planned for one execution; a Parse's statement is bound many times.
            let operands = match param_floor {
                None => Operands::Inline,
                Some(_) => Operands::Bound,
            };
            let candidates =
                candidates::plan(evaluation, &indexes, param_floor.unwrap_or(0), operands);
            for (edit, sql) in candidates.edits {
                if let Some(slot) = edits.get_mut(first + edit) {
                    slot.1 = sql;
                }
            }
            planned.probes = Arc::from(candidates.probes);
            planned.evaluation = Some(Arc::new(evaluation.clone()));
        }
    }
    if !planned.stored_literals.is_empty() {
        let mut comparable = edits.clone();
        for (n, literal) in planned.stored_literals.iter().enumerate() {
            if let Some(edit) = comparable.get_mut(literal.edit) {
                edit.1 = format!("'\u{1}{n}'");
            }
        }
        planned.comparable_sql = Some(apply_edits(sql, comparable)?);
    }
    if let [statement] = analysis.statements.as_slice()
        && let Some(cursor) = &statement.declared
    {
        if cursor.scroll && planned.evaluation.is_some() {
            return Err(refusal(
                "0A000",
                format!(
                    "pgseal evaluates the query of cursor {} itself and reads it forward only: declare it without SCROLL",
                    cursor.name
                ),
            ));
        }
        planned.declares = Some(Arc::new(super::cursors::Declaring {
            cursor: cursor.clone(),
            evaluation: planned.evaluation.take(),
        }));
    }
    if !edits.is_empty() {
        planned.sql = Some(apply_edits(sql, edits)?);
    }
    reads.sort();
    reads.dedup();
    writes.sort();
    writes.dedup();
    planned.statement = Arc::new(StatementInfo::new(
        protection, class, sql, tables, &reads, &writes, end_user,
    ));
    Ok(planned)
}

/// Checks a statement against what the role may do with each sealed column: read it (not
/// `denied`), write it (only with a plaintext view, or as the policy's blind writer), compare it
/// with values it supplies (only with a plaintext view, or when the policy grants the lookup).
///
/// Writing and looking up are where a role that cannot read a column could test guesses: a
/// value it writes is sealed with the same keys as the stored ones, so a join or a lookup
/// against it would reveal which stored values equal its guess.
fn check_access(
    policy: &pgseal_policies::CompiledPolicy,
    class: ClassId,
    role: &str,
    statement: &crate::analyze::StatementPlan,
) -> Result<(), Refusal> {
    let name = |column: pgseal_policies::ColumnId| policy.column(column).qualified_name();
    for &column in &statement.reads {
        if policy.view(class, column) == View::Denied {
            return Err(refusal(
                "42501",
                format!(
                    "permission denied for column {}: the pgseal policy denies it to role {role}",
                    name(column)
                ),
            ));
        }
    }
    for &column in &statement.writes {
        if policy.write_access(class, column) == WriteAccess::Refused {
            return Err(Refusal {
                sqlstate: "42501",
                message: format!(
                    "permission denied to write column {}: role {role} does not read it as \
                     plaintext, and a value it writes could be compared with the stored ones",
                    name(column)
                ),
                hint: Some(
                    "a role that must write without reading (an intake feed) is listed in its \
                     class's `blind_writes` in the pgseal policy"
                        .into(),
                ),
            });
        }
    }
    let blind = |column| policy.write_access(class, column) == WriteAccess::Blind;
    let clear = |column| policy.view(class, column) == View::Plaintext;
    for matched in &statement.column_matches {
        if let Some(column) = [matched.left, matched.right]
            .into_iter()
            .find(|c| blind(*c))
        {
            return Err(refusal(
                "42501",
                format!(
                    "role {role} writes {} blindly and may not compare it with other values",
                    name(column)
                ),
            ));
        }
        // Two columns of one domain, one read in clear and one not: each match would show
        // the hidden column's value.
        if clear(matched.left) != clear(matched.right) {
            let (seen, hidden) = if clear(matched.left) {
                (matched.left, matched.right)
            } else {
                (matched.right, matched.left)
            };
            return Err(refusal(
                "42501",
                format!(
                    "role {role} reads {} in clear but not {}: comparing them would reveal the \
                     values it may not read",
                    name(seen),
                    name(hidden)
                ),
            ));
        }
    }
    for site in &statement.sites {
        if matches!(site.purpose, Purpose::Match(_)) && !policy.may_look_up(class, site.column) {
            return Err(Refusal {
                sqlstate: "42501",
                message: format!(
                    "permission denied to look up column {} by value: role {role} sees it as {} \
                     and each lookup would test a guess",
                    name(site.column),
                    policy.view(class, site.column).name()
                ),
                hint: Some(
                    "a lookup by value without a plaintext view is granted in the class's \
                     `lookups` in the pgseal policy"
                        .into(),
                ),
            });
        }
    }
    Ok(())
}

/// Checks what pgseal would evaluate: only for a role that reads each column compared or
/// sorted in clear (a masked or ciphertext view must not filter or sort on the plaintext), and
/// only for a statement sent alone.
fn check_evaluation(
    policy: &pgseal_policies::CompiledPolicy,
    class: ClassId,
    role: &str,
    evaluation: &crate::analyze::evaluation::Evaluation,
    statements: usize,
) -> Result<(), Refusal> {
    for &column in &evaluation.columns {
        let view = policy.view(class, column);
        if view != View::Plaintext {
            return Err(refusal(
                "42501",
                format!(
                    "permission denied to filter or sort on column {}: role {role} sees it as {} \
                     and pgseal would compare its plaintext",
                    policy.column(column).qualified_name(),
                    view.name()
                ),
            ));
        }
    }
    if statements > 1 {
        return Err(Refusal {
            sqlstate: "0A000",
            message: "pgseal filters or sorts on a sealed column only in a statement sent alone"
                .into(),
            hint: Some("send the statements as separate queries".into()),
        });
    }
    Ok(())
}

/// Whether a statement text may change `DateStyle` or `TimeZone`, or undo a change: a SET or
/// RESET naming either (or RESET ALL), DISCARD, `set_config` on either (or on a name it does
/// not show), a transaction's end (which undoes SET LOCAL, and SET on rollback), or code pgseal
/// does not see into (DO, CALL, EXECUTE, PREPARE TRANSACTION). Until the server has answered
/// it, values whose meaning depends on those settings are refused instead of guessed. A
/// function that changes them from inside a plain SELECT is not seen: a documented limit.
pub fn may_change_dates(sql: &str) -> bool {
    crate::analyze::statement_words(sql).iter().any(|words| {
        let named = |w: &&String| matches!(w.as_str(), "timezone" | "datestyle");
        let words: Vec<&String> = words.iter().collect();
        let time_zone = words
            .windows(2)
            .any(|w| w[0].as_str() == "time" && w[1].as_str() == "zone");
        match words.first().map(|w| w.as_str()) {
            Some("set" | "reset") => {
                words.iter().any(named) || time_zone || words.get(1).is_some_and(|w| *w == "all")
            }
            Some(
                "discard" | "do" | "call" | "execute" | "commit" | "end" | "rollback" | "abort"
                | "prepare",
            ) => true,
            // pgseal's own `set_config('pgseal.end_user', …)` names only its setting.
            _ => {
                words.iter().any(|w| *w == "set_config")
                    && (words.iter().any(named) || !words.iter().any(|w| *w == "end_user"))
            }
        }
    })
}

#[cfg(test)]
mod may_change_dates_tests {
    use super::may_change_dates;

    #[test]
    fn changes_of_the_date_settings_are_seen_and_others_are_not() {
        for sql in [
            "SET TIME ZONE 'Asia/Tokyo'",
            "SET /* x */ TIME ZONE 'Asia/Tokyo'; INSERT INTO t VALUES (1)",
            "set local timezone = 'UTC'",
            "SET SESSION DateStyle TO 'SQL, DMY'",
            "RESET ALL",
            "reset timezone",
            "DISCARD ALL",
            "/* trace */ DO $$BEGIN PERFORM 1; END$$",
            "CALL p()",
            "EXECUTE q(1)",
            "COMMIT",
            "END",
            "ROLLBACK TO SAVEPOINT s",
            "SELECT 1; ABORT",
            "SELECT set_config('TimeZone', 'Asia/Tokyo', false)",
            "SELECT set_config($1, $2, false)",
        ] {
            assert!(may_change_dates(sql), "{sql}");
        }
        for sql in [
            "SET search_path = public",
            "SELECT timezone FROM users",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
            "SELECT CASE WHEN a THEN 1 END FROM t",
            "SELECT set_config('pgseal.end_user', 'dr-martin', false)",
            "SELECT 'commit' -- rollback",
        ] {
            assert!(!may_change_dates(sql), "{sql}");
        }
    }
}

/// Whether a text only restores the standard lexing settings: while a session reads SQL
/// differently from pgseal (`standard_conforming_strings = off`, another `client_encoding`),
/// pgseal cannot trust its own reading of any statement, so only these exact forms pass.
pub fn only_settings(sql: &str) -> bool {
    if sql.contains('\\') || sql.contains('"') || sql.contains('$') {
        return false;
    }
    let normalized = sql
        .replace('\'', "")
        .replace('=', " = ")
        .to_ascii_lowercase();
    let words: Vec<&str> = normalized.split_whitespace().collect();
    let mut words = words.join(" ");
    while words.ends_with(';') {
        words.pop();
        words = words.trim_end().to_string();
    }
    matches!(
        words.as_str(),
        "reset all"
            | "reset standard_conforming_strings"
            | "reset client_encoding"
            | "set standard_conforming_strings = on"
            | "set standard_conforming_strings to on"
            | "set client_encoding = utf8"
            | "set client_encoding to utf8"
            | "set client_encoding = utf-8"
            | "set client_encoding to utf-8"
    )
}

/// Whether a text holds a Unicode-escaped identifier (`U&"…"`), which the identifier scan
/// cannot fold reliably.
fn has_unicode_escaped_identifier(sql: &str) -> bool {
    sql.as_bytes()
        .windows(3)
        .any(|w| (w[0] == b'u' || w[0] == b'U') && w[1] == b'&' && w[2] == b'"')
}

/// Whether an unparseable text may run server-side code (a `DO` block, a function or procedure
/// body, dynamic SQL, or a function that runs SQL text or dumps relations, listed in
/// [`crate::analyze::functions`]): such code can reach sealed tables without naming them.
fn may_run_code(sql: &str) -> bool {
    sql.contains('$')
        || crate::analyze::functions::named_in(sql).is_some()
        || crate::analyze::identifiers(sql)
            .iter()
            .flatten()
            .any(|word| {
                matches!(
                    word.as_str(),
                    "do" | "function" | "procedure" | "trigger" | "rule" | "execute" | "call"
                )
            })
}

/// Whether an unparseable text is one schema or maintenance statement of a kind that neither
/// reads nor writes table rows (sequences, indexes, comments, privileges, statistics), so that
/// an ORM's schema upgrade passes through pgseal whatever the SQL parser knows of its syntax.
/// The caller has already checked that it names no sealed table and runs no code.
fn is_schema_utility(sql: &str) -> bool {
    let text = sql.trim().trim_end_matches(';');
    if text.contains(';') {
        return false;
    }
    let words = leading_words(text, 3);
    [
        "alter sequence",
        "create sequence",
        "drop sequence",
        "create index",
        "create unique index",
        "drop index",
        "alter index",
        "reindex",
        "comment on",
        "grant",
        "revoke",
        "analyze",
        "vacuum",
    ]
    .iter()
    .any(|start| words == *start || words.starts_with(&format!("{start} ")))
}

/// The leading keywords of a statement, lower case, separated by single spaces.
fn leading_words(text: &str, count: usize) -> String {
    text.split_whitespace()
        .take(count)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Checks what the analysis cannot see on its own: server-side code, views and rules over
/// sealed tables, writes through views that read sealed tables, SQL-level PREPARE of sealed
/// statements, and COPY options pgseal does not model.
fn check_statement(
    statement: &crate::analyze::StatementPlan,
    text: &str,
    catalog: &DatabaseCatalog,
) -> Result<(), Refusal> {
    use crate::analyze::StatementKind;
    let words = leading_words(text, 4);
    let creates = |object: &str| {
        words.starts_with(&format!("create {object}"))
            || words.starts_with(&format!("create or replace {object}"))
    };
    if [
        "function",
        "procedure",
        "trigger",
        "rule",
        "event trigger",
        "constraint trigger",
    ]
    .iter()
    .any(|o| creates(o))
        || words.starts_with("do ")
        || words == "do"
    {
        return Err(refusal(
            "0A000",
            "pgseal refuses server-side code (functions, procedures, triggers, rules, DO blocks) on protected sessions: it could reach sealed columns unseen; create it directly on PostgreSQL as its owner".into(),
        ));
    }
    let creates_view = [
        "view",
        "temp view",
        "temporary view",
        "materialized view",
        "recursive view",
    ]
    .iter()
    .any(|o| creates(o));
    if creates_view && !statement.sealed_tables.is_empty() {
        return Err(refusal(
            "0A000",
            "pgseal refuses views over sealed tables on protected sessions: writes through them could not be sealed".into(),
        ));
    }
    // Copies of sealed data into tables pgseal does not seal would be read outside every
    // budget and audit: CREATE TABLE AS, SELECT INTO, INSERT … SELECT into another table.
    let copies = ["table", "temp table", "temporary table", "unlogged table"]
        .iter()
        .any(|o| creates(o))
        || (statement.kind == StatementKind::Select
            && crate::analyze::identifiers(text)
                .iter()
                .flatten()
                .any(|w| w == "into"))
        || (statement.kind == StatementKind::Insert
            && !statement.reads.is_empty()
            && statement.writes.is_empty());
    if copies && (!statement.sealed_tables.is_empty() || !statement.reads.is_empty()) {
        return Err(refusal(
            "0A000",
            "pgseal refuses copying sealed data into a table it does not seal (CREATE TABLE AS, SELECT INTO, INSERT … SELECT): it would leave every budget and audit".into(),
        ));
    }
    if statement.kind == StatementKind::Prepare && statement.touches_sealed() {
        return Err(refusal(
            "0A000",
            "SQL-level PREPARE of a statement on sealed data is refused; use the protocol's prepared statements (Parse/Bind)".into(),
        ));
    }
    let writes = matches!(
        statement.kind,
        StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Delete
            | StatementKind::Merge
            | StatementKind::CopyFrom
    );
    if writes && let Some(view) = catalog.dependent_view_in(&crate::analyze::identifiers(text)) {
        return Err(refusal(
            "0A000",
            format!(
                "{view} reads sealed tables; pgseal refuses writes through it (write to the table itself)"
            ),
        ));
    }
    if let Some(copy) = &statement.copy
        && !statement.sealed_tables.is_empty()
    {
        let table = format!("{}.{}", copy.table.schema, copy.table.table);
        if copy
            .encoding
            .as_deref()
            .is_some_and(|e| !e.eq_ignore_ascii_case("utf8") && !e.eq_ignore_ascii_case("utf-8"))
        {
            return Err(refusal(
                "0A000",
                format!("COPY {table} with an ENCODING other than UTF8 is refused by pgseal"),
            ));
        }
        if copy.forces {
            return Err(refusal(
                "0A000",
                format!(
                    "COPY {table} with FORCE_QUOTE, FORCE_NOT_NULL or FORCE_NULL is refused by pgseal"
                ),
            ));
        }
        if copy.direction == CopyDirection::From {
            if copy.columns.is_none() {
                return Err(refusal(
                    "0A000",
                    format!("COPY {table} FROM STDIN needs an explicit column list through pgseal"),
                ));
            }
            if copy.escape.is_some() && copy.escape != copy.quote.or(Some('"')) {
                return Err(refusal(
                    "0A000",
                    format!(
                        "COPY {table} with an ESCAPE other than its QUOTE is refused by pgseal"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Plans one value: a `$n` to seal at Bind, or a literal sealed in place. A lookup on a
/// deterministic column whose keyring holds several readable versions must match every
/// version's sealed form, so the comparison is rewritten (`col IN (…)`, `col = ANY($n)`).
fn plan_site(
    protection: &Protection,
    catalog: &DatabaseCatalog,
    dates: &DateSettings,
    sql: &str,
    site: &SealSite,
    planned: &mut Planned,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) -> Result<(), Refusal> {
    let crypto = protection.column(site.column);
    let storage = catalog.storage(site.column);
    let context = match &site.purpose {
        Purpose::Match(context) => Some(context),
        Purpose::Store | Purpose::StoreElements { .. } => None,
    };
    if let Purpose::StoreElements { casts } = &site.purpose {
        // The sealed elements are the storage type's, not the declared type's.
        if let Some((array_type, _)) = storage_array_type(crypto.storage_type_oid(storage)) {
            for cast in casts {
                edits.push((cast.clone(), format!("::{array_type}")));
            }
        }
        return match &site.value {
            SiteValue::Param { index } => param_seal(
                planned,
                *index,
                ParamSeal {
                    column: site.column,
                    compare: false,
                    array: false,
                    each: true,
                },
            ),
            SiteValue::Literal { span, text } => {
                let elements = crate::evaluate::composite::array_elements(
                    text.as_bytes(),
                    crate::protect::values::Format::Text,
                )
                .map_err(|_| {
                    refusal(
                        "22P02",
                        format!(
                            "the array for sealed column {} is not a one-dimensional array literal pgseal reads",
                            crypto.name
                        ),
                    )
                })?;
                let mut sealed = Vec::with_capacity(elements.len());
                for element in elements {
                    sealed.push(match element {
                        None => None,
                        Some(element) => {
                            let text = String::from_utf8(element).map_err(|_| {
                                refusal("22021", "an array element is not valid UTF-8".into())
                            })?;
                            let canonical = crypto
                                .canonical_text(&text, dates)
                                .map_err(|e| refusal(e.sqlstate(), e.to_string()))?;
                            Some(
                                crypto
                                    .seal(&canonical, storage)
                                    .map_err(|e| refusal(e.sqlstate(), e.to_string()))?,
                            )
                        }
                    });
                }
                edits.push((span.clone(), quote_literal(&array_of_items(&sealed))));
                Ok(())
            }
        };
    }
    let several = context.is_some() && crypto.match_form_count() > 1;
    if !several {
        for strip in &site.strip {
            edits.push((strip.clone(), String::new()));
        }
    }
    let column_text = |context: &MatchContext| {
        sql.get(context.column_span.clone())
            .unwrap_or_default()
            .to_string()
    };
    match &site.value {
        SiteValue::Param { index } => {
            param_seal(
                planned,
                *index,
                ParamSeal {
                    column: site.column,
                    compare: context.is_some(),
                    array: several,
                    each: false,
                },
            )?;
            if let (true, Some(context)) = (several, context) {
                let array_type = if storage == Storage::Bytea {
                    "bytea[]"
                } else {
                    "text[]"
                };
                let column = column_text(context);
                let any = format!("ANY(${index}::{array_type})");
                let all = format!("ALL(${index}::{array_type})");
                let rewritten = match context.shape {
                    MatchShape::Compare {
                        op: MatchOp::Eq, ..
                    } => format!("{column} = {any}"),
                    MatchShape::Compare {
                        op: MatchOp::NotEq, ..
                    } => format!("{column} <> {all}"),
                    MatchShape::Compare {
                        op: MatchOp::IsNotDistinctFrom,
                        ..
                    } => {
                        format!("COALESCE({column} = {any}, false)")
                    }
                    MatchShape::Compare {
                        op: MatchOp::IsDistinctFrom,
                        ..
                    } => format!("COALESCE({column} <> {all}, true)"),
                    MatchShape::InList { .. } => {
                        return Err(refusal(
                            "0A000",
                            format!(
                                "a parameter in an IN list on {} cannot match values sealed under several key versions; use = ANY($n) or run `pgseal migrate rotate`",
                                crypto.name
                            ),
                        ));
                    }
                };
                edits.push((context.span.clone(), rewritten));
            }
        }
        SiteValue::Literal { span, text } => {
            let canonical = crypto
                .canonical_text(text, dates)
                .map_err(|e| refusal(e.sqlstate(), e.to_string()))?;
            let Some(context) = context else {
                let stored = crypto
                    .seal(&canonical, storage)
                    .map_err(|e| refusal(e.sqlstate(), e.to_string()))?;
                edits.push((span.clone(), quote_literal(&stored)));
                planned.stored_literals.push(StoredLiteral {
                    column: site.column,
                    stored,
                    edit: edits.len() - 1,
                });
                return Ok(());
            };
            let forms = crypto
                .match_forms(&canonical, storage)
                .map_err(|e| refusal(e.sqlstate(), e.to_string()))?;
            if !several {
                edits.push((
                    span.clone(),
                    quote_literal(&single_form(forms, &crypto.name)?),
                ));
                return Ok(());
            }
            let list = forms
                .iter()
                .map(|f| quote_literal(f))
                .collect::<Vec<_>>()
                .join(", ");
            let column = column_text(context);
            let rewritten = match context.shape {
                MatchShape::Compare {
                    op: MatchOp::Eq, ..
                } => format!("{column} IN ({list})"),
                MatchShape::Compare {
                    op: MatchOp::NotEq, ..
                } => format!("{column} NOT IN ({list})"),
                MatchShape::Compare {
                    op: MatchOp::IsNotDistinctFrom,
                    ..
                } => format!("COALESCE({column} IN ({list}), false)"),
                MatchShape::Compare {
                    op: MatchOp::IsDistinctFrom,
                    ..
                } => format!("COALESCE({column} NOT IN ({list}), true)"),
                MatchShape::InList { .. } => list,
            };
            edits.push((context.span.clone(), rewritten));
        }
    }
    Ok(())
}

/// Records how `$index` is sealed; a parameter sealed two ways is refused.
fn param_seal(planned: &mut Planned, index: u16, seal: ParamSeal) -> Result<(), Refusal> {
    let slot = usize::from(index).saturating_sub(1);
    if planned.params.len() <= slot {
        planned.params.resize(slot + 1, None);
    }
    match planned.params[slot] {
        None => planned.params[slot] = Some(seal),
        Some(existing) if existing == seal => {}
        Some(_) => {
            return Err(refusal(
                "0A000",
                format!(
                    "${index} is used for different sealed columns or purposes; pgseal cannot seal it for both"
                ),
            ));
        }
    }
    Ok(())
}

/// The array type a sealed column's elements are sent as, from its storage type's OID
/// ([`crate::protect::column::ColumnCrypto::storage_type_oid`]); `None` when the column's own
/// type holds them (tokens, pseudonyms).
pub fn storage_array_type(storage_type: u32) -> Option<(&'static str, u32)> {
    match storage_type {
        25 => Some(("text[]", TEXT_ARRAY)),
        17 => Some(("bytea[]", BYTEA_ARRAY)),
        _ => None,
    }
}

/// The OIDs of `text[]` and `bytea[]`.
pub const TEXT_ARRAY: u32 = 1009;
/// See [`TEXT_ARRAY`].
pub const BYTEA_ARRAY: u32 = 1001;

/// A PostgreSQL array literal of stored forms and NULLs (`{"a",NULL}`).
pub fn array_of_items(items: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item {
            None => out.extend_from_slice(b"NULL"),
            Some(form) => {
                out.push(b'"');
                for b in form {
                    if *b == b'"' || *b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(*b);
                }
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
    out
}

/// A PostgreSQL array literal (`{"a","b"}`) of stored forms, for `= ANY($n)`.
pub fn array_literal(forms: &[Vec<u8>]) -> Vec<u8> {
    let items: Vec<Option<Vec<u8>>> = forms.iter().cloned().map(Some).collect();
    array_of_items(&items)
}

/// The one stored form a lookup compares with. Several exist only after a key rotation, until
/// `pgseal migrate rotate` has re-sealed older values; a lookup then could miss rows, so it is
/// refused rather than answered wrongly.
pub fn single_form(mut forms: Vec<Vec<u8>>, column: &str) -> Result<Vec<u8>, Refusal> {
    if forms.len() == 1 {
        return Ok(forms.remove(0));
    }
    Err(refusal(
        "0A000",
        format!(
            "equality on {column} is unavailable while its values are sealed under several key versions; run `pgseal migrate rotate` to finish the rotation"
        ),
    ))
}

/// A SQL string literal for a stored value (armored envelopes, tokens and pseudonyms are
/// ASCII without quotes or backslashes; quotes are doubled anyway).
pub fn quote_literal(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    format!("'{}'", text.replace('\'', "''"))
}

/// Applies non-overlapping byte-range replacements to `sql`.
fn apply_edits(
    sql: &str,
    mut edits: Vec<(std::ops::Range<usize>, String)>,
) -> Result<String, Refusal> {
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(sql.len() + edits.len() * 64);
    let mut at = 0;
    for (range, replacement) in edits {
        let valid = range.start >= at
            && range.end >= range.start
            && range.end <= sql.len()
            && sql.is_char_boundary(range.start)
            && sql.is_char_boundary(range.end);
        if !valid {
            return Err(refusal(
                "0A000",
                "pgseal could not rewrite this statement to seal its values".into(),
            ));
        }
        out.push_str(&sql[at..range.start]);
        out.push_str(&replacement);
        at = range.end;
    }
    out.push_str(&sql[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access rules on the laboratory example's shared NIR domain: a class cannot be
    /// given one side masked and the other in clear (the policy is refused), and only the
    /// classes that read them in clear write them.
    #[test]
    fn shared_domains_and_writes_follow_the_access_rules() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/examples/laboratory.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mixed = text.replace(
            "\"lis.results.patient_nir\" = \"plaintext\"",
            "\"lis.results.patient_nir\" = \"masked\"",
        );
        let problems = pgseal_policies::CompiledPolicy::from_toml("lab.toml", &mixed).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.to_string().contains("shares domain patient-nir")),
            "{problems:?}"
        );
        let policy = pgseal_policies::CompiledPolicy::from_toml("lab.toml", &text).unwrap();
        let (export, lis) = (policy.class_of("lab_export"), policy.class_of("lab_app"));
        let check = |class, sql: &str| {
            let analysis = crate::analyze::analyze(sql, &policy).unwrap();
            check_access(&policy, class, "r", &analysis.statements[0]).map_err(|r| r.message)
        };
        let join = "SELECT p.id FROM lis.patients p JOIN lis.results r ON r.patient_nir = p.nir";
        assert!(check(export, join).is_ok());
        assert!(check(lis, join).is_ok());
        let write = "UPDATE lis.results SET patient_nir = '185057800608491' WHERE id = 1";
        assert!(
            check(ClassId::DEFAULT, write)
                .unwrap_err()
                .contains("permission denied to write")
        );
        assert!(check(export, write).is_ok());
        assert!(check(lis, write).is_ok());
    }

    #[test]
    fn edits_apply_in_order_and_overlaps_are_refused() {
        let sql = "INSERT INTO t (a, b) VALUES ('x'::date, 'é')";
        let a = sql.find("'x'").unwrap();
        let cast = sql.find("::date").unwrap();
        let b = sql.find("'é'").unwrap();
        let out = apply_edits(
            sql,
            vec![
                (b..b + "'é'".len(), "'S2'".into()),
                (a..a + 3, "'S1'".into()),
                (cast..cast + 6, String::new()),
            ],
        )
        .unwrap();
        assert_eq!(out, "INSERT INTO t (a, b) VALUES ('S1', 'S2')");
        assert!(apply_edits(sql, vec![(0..10, String::new()), (5..12, String::new())]).is_err());
        assert!(apply_edits("é", vec![(1..2, String::new())]).is_err());
    }

    #[test]
    fn only_exact_restorations_pass_while_lexing_differs() {
        assert!(only_settings("SET standard_conforming_strings = on"));
        assert!(only_settings("set standard_conforming_strings to 'on';"));
        assert!(only_settings("RESET ALL"));
        assert!(only_settings("SET client_encoding TO 'UTF8'"));
        assert!(!only_settings(
            "SET standard_conforming_strings = on; INSERT INTO t VALUES (1)"
        ));
        assert!(!only_settings("SET a = 'x\\'; SET b = 'y'"));
        assert!(!only_settings("SELECT 1"));
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal(b"pgs1:abc"), "'pgs1:abc'");
        assert_eq!(quote_literal(b"it's"), "'it''s'");
    }

    #[test]
    fn array_literals_escape_quotes_and_backslashes() {
        assert_eq!(
            array_literal(&[b"pgs1:a".to_vec(), b"\\x01\"".to_vec()]),
            b"{\"pgs1:a\",\"\\\\x01\\\"\"}".to_vec()
        );
    }

    #[test]
    fn several_forms_are_refused_for_lookups() {
        assert_eq!(single_form(vec![b"a".to_vec()], "c").unwrap(), b"a");
        assert!(single_form(vec![b"a".to_vec(), b"b".to_vec()], "c").is_err());
    }
}
