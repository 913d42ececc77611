//! SQL analysis: from a statement text and the compiled policy to a plan of what the session
//! must seal, check and refuse.
//!
//! [`analyze`] is a pure function of the text and the policy: it knows nothing of keys, roles
//! or the wire, never panics, and is fail-closed — when it cannot tell whether something
//! touches a sealed column, it says so with a [`Refusal`]. The session calls it once per
//! distinct statement text and caches the result.
//!
//! For each statement the plan lists:
//!
//! - the sealed tables it touches and the sealed columns it reads (including through `*`,
//!   `t.*`, `RETURNING *`, conditions and joins) and writes, which the session checks against
//!   the role's views (a `denied` column refuses the statement);
//! - [`SealSite`]s: literals and `$n` parameters bound for sealed columns, stored
//!   ([`Purpose::Store`]) or compared ([`Purpose::Match`], with the comparison's shape so the
//!   session can match every readable key version), with exact byte spans and the casts to
//!   strip;
//! - [`Refusal`]s: operations impossible on sealed values (SQLSTATE 0A000, naming the column and
//!   its mode) and constructs pgseal cannot analyse where they mention sealed data;
//! - a [`CopyPlan`] for `COPY … FROM STDIN` / `TO STDOUT`.
//!
//! Assumptions, documented once here:
//!
//! - `search_path` is the default: an unqualified table name is `public.name`.
//! - Refusal messages name columns, modes, tables and operators, never SQL text or values
//!   (which may be plaintext), so they can be logged.
//! - A `$n` sealed in one place must be used only where it is sealed the same way; otherwise
//!   the analyzer refuses the statement (the session seals a bound value once).
//! - Text sqlparser cannot parse is [`AnalyzeError::Unparseable`], with the sealed tables a
//!   token scan finds in it: the caller refuses it when that list is not empty (`DO` blocks
//!   fall here: sqlparser does not parse them).
//!
//! - Calls of the functions in [`functions::REFUSED`] (`query_to_xml`, `table_to_xml`,
//!   `dblink`, `ts_stat`…), which read sealed tables named in strings or arguments, are
//!   refused in every statement, whether or not it names a sealed table.
//!
//! Modules: [`plan`] (the output types), [`functions`] (functions refused by name), `spans`
//! (locations to byte offsets, exact extents),
//! `scan` (identifier scan of unanalysable text), `names` (folding, policy lookups by name),
//! `scope` (relations and column resolution), `planner` (per-statement state), `expr`
//! (expressions), `query` (queries), `dml` (writes), `copy`, `statement` (dispatch).

mod clauses;
mod copy;
mod ddl;
mod dml;
mod evaluable;
mod evaluable_subquery;
pub mod evaluation;
mod expr;
pub mod functions;
mod names;
pub mod plan;
mod planner;
mod query;
mod scan;
mod scope;
mod spans;
mod statement;

use std::ops::Range;

use pgseal_policies::CompiledPolicy;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

pub use plan::{
    Analysis, ColumnMatch, CopyDirection, CopyFormat, CopyPlan, DeclaredCursor, ExecuteArg,
    MatchContext, MatchOp, MatchShape, Purpose, Refusal, RefusalKind, SealSite, SiteValue,
    SqlPrepared, StatementKind, StatementPlan, TableRef,
};

use names::Names;
use spans::Source;

/// Why a text could not be analysed at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    /// sqlparser could not parse the text.
    #[error("pgseal cannot parse this statement: {message}")]
    Unparseable {
        /// sqlparser's message.
        message: String,
        /// The policy's sealed tables whose names appear in the text (case-insensitive
        /// identifier scan, quoted identifiers honoured, string and dollar-quoted contents
        /// included). The caller refuses the text when it is not empty, and may forward it
        /// otherwise.
        sealed_tables: Vec<TableRef>,
    },
}

/// Every dotted identifier chain of a text (`public.patients.nir` → `["public", "patients",
/// "nir"]`), each part folded as PostgreSQL folds it; never fails, whatever the text.
pub fn identifiers(text: &str) -> Vec<Vec<String>> {
    scan::dotted_names(text)
}

/// A name as PostgreSQL folds it: unquoted in lower case, quoted as written, at most 63
/// bytes.
pub fn fold_name(ident: &sqlparser::ast::Ident) -> String {
    names::fold(ident)
}

/// The words of each statement of a text (keywords, names and the words inside string
/// literals, folded; comments skipped).
pub fn statement_words(text: &str) -> Vec<Vec<String>> {
    scan::statement_words(text)
}

/// sqlparser's message without the token it found (`…, found: 'Garcia' at Line: 1, …` →
/// `… at Line: 1, …`): that token may be a literal value, and refusal messages are logged.
fn without_found_token(message: &str) -> String {
    let Some(found) = message.find(", found: ") else {
        return message.to_string();
    };
    let position = message[found..]
        .find(" at Line: ")
        .map_or("", |at| &message[found + at..]);
    format!("{}{position}", &message[..found])
}

/// Analyses a statement text (one or more statements) against a policy.
///
/// Defence in depth: should sqlparser (or the analyzer) panic on some input, the panic is
/// caught and the text reported as [`AnalyzeError::Unparseable`], with its sealed tables.
pub fn analyze(sql: &str, policy: &CompiledPolicy) -> Result<Analysis, AnalyzeError> {
    match std::panic::catch_unwind(|| analyze_text(sql, policy)) {
        Ok(result) => result,
        Err(_) => Err(AnalyzeError::Unparseable {
            message: "the SQL parser failed on this text".into(),
            sealed_tables: scan::sealed_tables_in(sql, policy),
        }),
    }
}

fn analyze_text(sql: &str, policy: &CompiledPolicy) -> Result<Analysis, AnalyzeError> {
    let unparseable = |message: String| AnalyzeError::Unparseable {
        message,
        sealed_tables: scan::sealed_tables_in(sql, policy),
    };
    let source = Source::new(sql).map_err(unparseable)?;
    let statements = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| unparseable(without_found_token(&e.to_string())))?;
    let spans = statement_spans(&source, statements.len());
    let names = Names { policy };
    let plans = statements
        .iter()
        .zip(spans)
        .map(|(statement, span)| {
            let mut plan = statement::plan(names, &source, statement, span);
            plan.reads_only = plan.kind == StatementKind::Select
                && plan.writes.is_empty()
                && !may_write(sql.get(plan.span.clone()).unwrap_or(sql));
            plan
        })
        .collect();
    Ok(Analysis { statements: plans })
}

/// Whether a SELECT's text may change data: a data-modifying `WITH`, or a locking clause
/// (`FOR UPDATE`, `FOR SHARE`…).
fn may_write(text: &str) -> bool {
    identifiers(text).iter().flatten().any(|word| {
        matches!(
            word.as_str(),
            "insert" | "update" | "delete" | "merge" | "for"
        )
    })
}

/// The byte range of each statement: the tokens between top-level semicolons. When the count
/// does not match the parser's (it should), every statement gets the whole text.
fn statement_spans(source: &Source<'_>, count: usize) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut current: Option<Range<usize>> = None;
    for tok in source.tokens() {
        if tok.token == Token::SemiColon {
            spans.extend(current.take());
            continue;
        }
        current = Some(match current {
            Some(range) => range.start..tok.range.end,
            None => tok.range.clone(),
        });
    }
    spans.extend(current);
    if spans.len() == count {
        spans
    } else {
        vec![0..source.text().len(); count]
    }
}

#[cfg(test)]
mod tests {
    use super::without_found_token;

    #[test]
    fn parser_messages_lose_the_token_found() {
        assert_eq!(
            without_found_token(
                "sql parser error: Expected: end of statement, found: 'Garcia' at Line: 1, Column: 40"
            ),
            "sql parser error: Expected: end of statement at Line: 1, Column: 40"
        );
        assert_eq!(
            without_found_token("sql parser error: Expected: ), found: 1985"),
            "sql parser error: Expected: )"
        );
        assert_eq!(
            without_found_token("Unterminated string literal at Line: 1, Column: 5"),
            "Unterminated string literal at Line: 1, Column: 5"
        );
    }
}
