//! One statement: its kind, and the walk that fits it.
//!
//! Queries and writes are walked in full ([`super::query`], [`super::dml`]); `COPY` in
//! [`super::copy`]; `PREPARE` plans its inner statement; `EXPLAIN` too (its literals reach the
//! server, and `EXPLAIN ANALYZE` runs the statement); `DECLARE … CURSOR FOR query` plans the
//! query as a top-level `SELECT` (what pgseal evaluates in it included) and names the cursor. Other statements are classified, and their text is scanned for sealed tables:
//!
//! - DDL is allowed and reported (`changes_catalog`), except where it carries expressions or
//!   bodies pgseal cannot see into: functions, procedures, triggers, rules, row-level policies,
//!   `ALTER TABLE … USING` and expression indexes on a sealed table are refused when they
//!   mention sealed data. `CREATE VIEW`/`CREATE TABLE … AS` analyse their query (reads and
//!   refusals apply: the new relation holds ciphertext).
//! - Any other statement that mentions a sealed table is refused as unanalysable.
//! - In every statement, a call of a function listed in [`super::functions`] is refused, found
//!   by the walkers or, where they do not walk, by a scan of the statement's tokens.

use std::ops::Range;

use sqlparser::ast::{Expr, Statement};
use sqlparser::tokenizer::Token;

use super::names::{Names, fold, name_parts};
use super::plan::{DeclaredCursor, ExecuteArg, SqlPrepared, StatementKind, StatementPlan};
use super::planner::Planner;
use super::scan;
use super::spans::Source;

/// Plans one parsed statement whose text is `span`.
pub(crate) fn plan<'a>(
    names: Names<'a>,
    src: &'a Source<'a>,
    statement: &'a Statement,
    span: Range<usize>,
) -> StatementPlan {
    let mut planner = Planner::new(names, src);
    let mut copy = None;
    let mut prepared = None;
    let mut evaluation = None;
    let mut declared = None;
    let kind = match statement {
        Statement::Query(query) => {
            evaluation = planner.top_query(query, &span);
            query_kind(&query.body)
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
            planner.dml(statement);
            match statement {
                Statement::Insert(_) => StatementKind::Insert,
                Statement::Update(_) => StatementKind::Update,
                _ => StatementKind::Delete,
            }
        }
        Statement::Merge(_) => {
            planner.opaque("MERGE", planner.src.slice(&span));
            StatementKind::Merge
        }
        Statement::Copy { .. } => {
            let (kind, plan) = planner.copy(statement);
            copy = plan;
            kind
        }
        Statement::Prepare {
            name,
            statement: inner,
            ..
        } => {
            let inner_plan = plan(names, src, inner, span.clone());
            let mut result = inner_plan;
            result.prepared = Some(SqlPrepared::Prepare {
                name: fold(name),
                inner: result.kind,
            });
            result.kind = StatementKind::Prepare;
            return result;
        }
        Statement::Explain {
            statement: inner, ..
        } => {
            let mut result = plan(names, src, inner, span.clone());
            result.kind = StatementKind::Other;
            result.copy = None;
            return result;
        }
        Statement::Execute {
            name, parameters, ..
        } => {
            let args = parameters
                .iter()
                .map(|e| execute_arg(&planner, e))
                .collect();
            let name = name
                .as_ref()
                .and_then(name_parts)
                .and_then(|p| p.last().cloned())
                .unwrap_or_default();
            prepared = Some(SqlPrepared::Execute { name, args });
            StatementKind::Execute
        }
        Statement::Deallocate { name, .. } => {
            let all = name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all");
            prepared = Some(SqlPrepared::Deallocate {
                name: (!all).then(|| fold(name)),
            });
            StatementKind::Deallocate
        }
        Statement::Declare { stmts, .. } => {
            match stmts.as_slice() {
                // One cursor over a query: the query is planned as a top-level SELECT, so
                // what pgseal evaluates in it works through the cursor too.
                [declare] if declare.for_query.is_some() && declare.names.len() == 1 => {
                    if let Some(query) = &declare.for_query {
                        evaluation = planner.top_query(query, &span);
                    }
                    declared = declare.names.first().map(|name| DeclaredCursor {
                        name: fold(name),
                        scroll: declare.scroll == Some(true),
                        hold: declare.hold == Some(true),
                    });
                }
                _ => {
                    for declare in stmts {
                        match &declare.for_query {
                            Some(query) => {
                                planner.query(query);
                            }
                            None => planner.opaque("DECLARE", &declare.to_string()),
                        }
                    }
                }
            }
            StatementKind::Other
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => StatementKind::Transaction,
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::Reset(_)
        | Statement::Discard { .. } => StatementKind::Set,
        Statement::CreateView(view) => {
            planner.changes_catalog = true;
            planner.query(&view.query);
            StatementKind::Ddl
        }
        Statement::CreateTable(table) => {
            planner.changes_catalog = true;
            if let Some(query) = &table.query {
                planner.query(query);
            }
            planner.created_columns(&table.name, &table.columns);
            planner.created_under(
                table.inherits.as_deref().unwrap_or_default(),
                table.partition_of.as_ref(),
            );
            report_tables(&mut planner, &span);
            StatementKind::Ddl
        }
        Statement::CreateIndex(index) => {
            planner.changes_catalog = true;
            report_tables(&mut planner, &span);
            let expressions = index
                .columns
                .iter()
                .filter(|c| !super::ddl::is_plain_column(&c.column.expr))
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let guarded = format!(
                "{expressions} {}",
                index
                    .predicate
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            );
            if !planner.sealed_tables_empty() {
                planner.opaque("an index expression", &guarded);
            }
            StatementKind::Ddl
        }
        Statement::AlterTable(alter) => {
            planner.changes_catalog = true;
            report_tables(&mut planner, &span);
            planner.altered_table(&alter.name, &alter.operations);
            if !planner.sealed_tables_empty() && has_keyword(src, &span, "using") {
                planner.refuse_unanalysable(
                    None,
                    "ALTER TABLE … USING on a sealed table: the expression would run over stored \
                     ciphertext"
                        .into(),
                );
            }
            StatementKind::Ddl
        }
        Statement::CreateFunction(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateTrigger(_)
        | Statement::CreateRule(_)
        | Statement::CreatePolicy(_)
        | Statement::AlterPolicy(_)
        | Statement::CreateMacro { .. } => {
            planner.changes_catalog = true;
            planner.opaque("a function, trigger, rule or policy body", src.slice(&span));
            StatementKind::Ddl
        }
        Statement::AlterSchema(alter) => {
            planner.changes_catalog = true;
            planner.altered_schema(&alter.name);
            StatementKind::Ddl
        }
        Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateExtension(_)
        | Statement::CreateRole(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView(_)
        | Statement::AlterType(_)
        | Statement::AlterRole { .. }
        | Statement::AlterFunction(_)
        | Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropTrigger(_)
        | Statement::DropPolicy(_)
        | Statement::DropExtension(_)
        | Statement::Truncate(_)
        | Statement::RenameTable(_)
        | Statement::Comment { .. }
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::GrantRole(_)
        | Statement::RevokeRole(_)
        | Statement::AlterDefaultPrivileges(_)
        | Statement::RefreshMaterializedView(_) => {
            planner.changes_catalog = !matches!(
                statement,
                Statement::Comment { .. }
                    | Statement::Grant(_)
                    | Statement::Revoke(_)
                    | Statement::GrantRole(_)
                    | Statement::RevokeRole(_)
                    | Statement::AlterDefaultPrivileges(_)
                    | Statement::Truncate(_)
                    | Statement::RefreshMaterializedView(_)
            );
            report_tables(&mut planner, &span);
            StatementKind::Ddl
        }
        Statement::Analyze(_)
        | Statement::Vacuum(_)
        | Statement::Lock(_)
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. } => {
            report_tables(&mut planner, &span);
            StatementKind::Other
        }
        _ => {
            planner.opaque("this statement", src.slice(&span));
            StatementKind::Other
        }
    };
    // The net under the walkers: calls of refused functions wherever they were not walked
    // (column DEFAULTs, CALL, constructs only scanned).
    planner.refuse_listed_calls(statement, &span);
    let mut result = planner.finish(kind, span);
    result.copy = copy;
    result.prepared = prepared;
    result.declared = declared;
    // What pgseal evaluates holds only when nothing else is refused.
    result.evaluation = evaluation.filter(|_| result.refusals.is_empty());
    result
}

/// The kind of a query statement: `WITH … INSERT` is an insert.
fn query_kind(body: &sqlparser::ast::SetExpr) -> StatementKind {
    use sqlparser::ast::SetExpr;
    match body {
        SetExpr::Insert(_) => StatementKind::Insert,
        SetExpr::Update(_) => StatementKind::Update,
        SetExpr::Delete(_) => StatementKind::Delete,
        SetExpr::Merge(_) => StatementKind::Merge,
        SetExpr::Query(query) => query_kind(&query.body),
        _ => StatementKind::Select,
    }
}

/// Lists the sealed tables a statement's text mentions (DDL and utility statements).
fn report_tables(planner: &mut Planner<'_>, span: &Range<usize>) {
    let text = planner.src.slice(span);
    for table in scan::sealed_tables_in(text, planner.names.policy) {
        planner.table_seen(&table);
    }
}

/// True when the statement's tokens hold the keyword.
fn has_keyword(src: &Source<'_>, span: &Range<usize>, keyword: &str) -> bool {
    src.tokens().iter().any(|t| {
        t.range.start >= span.start
            && t.range.end <= span.end
            && matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
    })
}

fn execute_arg(planner: &Planner<'_>, expr: &Expr) -> Option<ExecuteArg> {
    let located = planner.locate(expr).ok()?;
    Some(ExecuteArg {
        value: located.value,
        strip: located.strip,
    })
}
