//! Building an [`Evaluation`]: which parts of a top-level `SELECT` pgseal evaluates itself.
//!
//! The ordinary walk runs first on each `WHERE` conjunct and on `ORDER BY`; only what it would
//! refuse is handed to pgseal, and only when it fits the forms pgseal evaluates exactly (see
//! [`super::evaluation`]); otherwise the refusal stands. Evaluation applies to a plain
//! `SELECT [DISTINCT] … FROM … [WHERE …] [ORDER BY …] [LIMIT …] [OFFSET …]` (or the
//! standard's `OFFSET … ROWS FETCH FIRST … ROWS ONLY`) at the top of a statement: no `WITH`,
//! `DISTINCT ON`, named window, set operation, `FETCH … WITH TIES` or locking clause. `GROUP
//! BY` and `HAVING` stay the server's, and pgseal may then sort but not filter (its filter
//! would change the groups); likewise no aggregate, window or set-returning function in the
//! select list when pgseal filters (their values would be computed over the superset). A `DISTINCT`
//! the server cannot apply (a randomized output, or a filter of pgseal's) is removed from the
//! server's statement and applied by pgseal on the plaintext.

use std::ops::Range;

use pgseal_policies::ColumnId;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    LimitClause, OrderBy, OrderByExpr, OrderByKind, OrderBySort, Query, Select, SelectItem,
    SetExpr, TrimWhereField, UnaryOperator, Value,
};
use sqlparser::tokenizer::Token;

use super::clauses::{self, Clauses};
use super::evaluable_subquery::Match;
use super::evaluation::{
    CompareOp, Count, Evaluation, Hidden, HiddenSelect, Key, Pred, SortKey, Term, Test, TrimSide,
};
use super::expr::Val;
use super::names::fold;
use super::plan::SiteValue;
use super::planner::Planner;

/// Aggregate and window functions: their value depends on several rows. With
/// [`SET_RETURNING`], the select list may not call them when pgseal filters (the server would
/// compute them over the superset). None has side effects: pgseal may lift a `LIMIT` over them.
const AGGREGATE_AND_WINDOW: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "xmlagg",
    "range_agg",
    "range_intersect_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "row_number",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// Set-returning functions: they return several rows (none has side effects).
const SET_RETURNING: &[&str] = &[
    "unnest",
    "generate_series",
    "generate_subscripts",
    "regexp_matches",
    "regexp_split_to_table",
    "json_array_elements",
    "jsonb_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements_text",
    "json_each",
    "jsonb_each",
    "json_each_text",
    "jsonb_each_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json_populate_recordset",
    "jsonb_populate_recordset",
    "json_to_recordset",
    "jsonb_to_recordset",
    "jsonb_path_query",
    "string_to_table",
    "pg_get_keywords",
];

/// Whether `name` (lower case) is an aggregate, window or set-returning function.
fn is_row_function(name: &str) -> bool {
    AGGREGATE_AND_WINDOW.contains(&name) || SET_RETURNING.contains(&name)
}

/// Functions (and keywords followed by a parenthesis) a select list may call when pgseal
/// filters or lifts `LIMIT`, since the server then computes it over rows PostgreSQL would not
/// have reached: ones without side effects (with [`AGGREGATE_AND_WINDOW`], [`SET_RETURNING`],
/// and `OVER`, `FILTER`, `WITHIN GROUP`). Any other call keeps the statement refused.
const SIDE_EFFECT_FREE: &[&str] = &[
    "abs",
    "age",
    "array_length",
    "array_to_string",
    "btrim",
    "cardinality",
    "case",
    "cast",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "coalesce",
    "concat",
    "concat_ws",
    "date_part",
    "date_trunc",
    "exists",
    "extract",
    "floor",
    "format",
    "greatest",
    "initcap",
    "jsonb_build_object",
    "json_build_object",
    "least",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "now",
    "nullif",
    "octet_length",
    "overlay",
    "position",
    "replace",
    "right",
    "round",
    "rpad",
    "rtrim",
    "split_part",
    "strpos",
    "substr",
    "substring",
    "to_char",
    "to_date",
    "to_number",
    "to_timestamp",
    "translate",
    "trim",
    "trunc",
    "upper",
    "varchar",
    "numeric",
    "decimal",
    "char",
    "character",
    "timestamp",
    "time",
    "interval",
    "bit",
    "float",
    "in",
    "any",
    "all",
    "values",
    "row",
    "as",
    "and",
    "or",
    "not",
    "when",
    "then",
    "else",
    "select",
];

/// An [`Evaluation`] being built for the top-level `SELECT`.
#[derive(Debug)]
pub(crate) struct Builder {
    clauses: Clauses,
    /// Hidden columns and the text each is selected with.
    hidden: Vec<(Hidden, String)>,
    filter: Vec<Pred>,
    order: Vec<SortKey>,
    /// Token ranges of the conjuncts pgseal evaluates.
    removed: Vec<Range<usize>>,
    /// Byte ranges copied into hidden columns (parameters there reach the server).
    copied: Vec<Range<usize>>,
    /// The type the server is told for each `$n` pgseal consumes.
    param_types: Vec<(u16, String)>,
    columns: Vec<ColumnId>,
    /// The expression text of each sort key (for `DISTINCT`, which must select them).
    sort_texts: Vec<String>,
    /// Set when some part could not be planned consistently: evaluation is abandoned.
    broken: bool,
    /// The outputs of a `SELECT DISTINCT`, as the walk found them.
    pub distinct: Option<DistinctOutputs>,
    /// pgseal removes the duplicates itself (decided after the walk).
    dedupe: bool,
    /// How many `NOT`s stand above the predicate being built.
    negations: usize,
}

/// What a `SELECT DISTINCT`'s outputs are, for deciding who removes its duplicates.
#[derive(Clone, Debug)]
pub(crate) struct DistinctOutputs {
    /// Each output in order, when every position is known (no `*` over unknown columns).
    pub positions: Option<Vec<OutputKind>>,
    /// Every sealed column among the outputs.
    pub sealed: Vec<ColumnId>,
}

/// One output of a `SELECT DISTINCT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputKind {
    /// No sealed column.
    Plain,
    /// Exactly one sealed column, as it is stored.
    Sealed(ColumnId),
    /// Several sealed columns in one expression: pgseal cannot tell its value.
    Mixed,
}

/// What a subquery's walk gives back to the statement's [`Builder`]: its hidden values (and
/// their texts), its conjuncts, and the token ranges it removed and byte ranges it copied.
pub(crate) type Nested = (
    Vec<(Hidden, String)>,
    Vec<Pred>,
    Vec<Range<usize>>,
    Vec<Range<usize>>,
);

impl Builder {
    /// A builder for a top-level `SELECT` whose clauses are `clauses`.
    fn new(clauses: Clauses) -> Builder {
        Builder {
            clauses,
            hidden: Vec::new(),
            filter: Vec::new(),
            order: Vec::new(),
            removed: Vec::new(),
            copied: Vec::new(),
            param_types: Vec::new(),
            columns: Vec::new(),
            sort_texts: Vec::new(),
            broken: false,
            distinct: None,
            dedupe: false,
            negations: 0,
        }
    }

    /// A builder for a subquery of this statement's `WHERE` (clauses `clauses`): hidden values
    /// of its own, the statement's parameter types and columns (taken back by
    /// [`Builder::merge_nested`]).
    pub(crate) fn nested(&mut self, clauses: Clauses) -> Builder {
        let mut sub = Builder::new(clauses);
        sub.param_types = std::mem::take(&mut self.param_types);
        sub.columns = std::mem::take(&mut self.columns);
        sub.broken = self.broken;
        sub
    }

    /// Takes back what [`Builder::nested`] lent, and returns what the subquery's walk found.
    pub(crate) fn merge_nested(&mut self, sub: Builder) -> Nested {
        self.param_types = sub.param_types;
        self.columns = sub.columns;
        self.broken |= sub.broken;
        (sub.hidden, sub.filter, sub.removed, sub.copied)
    }

    /// Byte ranges of the text that reach the server in hidden columns.
    pub(crate) fn copy(&mut self, ranges: Vec<Range<usize>>) {
        self.copied.extend(ranges);
    }

    pub(crate) fn hidden_index(&mut self, hidden: Hidden, text: String) -> usize {
        if let Some(i) = self
            .hidden
            .iter()
            .position(|(h, t)| *h == hidden && *t == text)
        {
            return i;
        }
        self.hidden.push((hidden, text));
        self.hidden.len() - 1
    }

    /// Notes the type pgseal reads `$index` as; two different ones break the evaluation.
    pub(crate) fn param_type(&mut self, index: u16, ty: &str) {
        match self.param_types.iter().find(|(n, _)| *n == index) {
            Some((_, known)) if known != ty => self.broken = true,
            Some(_) => {}
            None => self.param_types.push((index, ty.to_string())),
        }
    }
}

/// Whether a query has the plain shape evaluation handles (see the module doc).
fn plain_select(query: &Query) -> Option<&Select> {
    // `FETCH FIRST n ROWS ONLY` is a LIMIT; `WITH TIES` and `PERCENT` are not.
    let fetch_limits = query
        .fetch
        .as_ref()
        .is_none_or(|f| !f.with_ties && !f.percent);
    if query.with.is_some()
        || !fetch_limits
        || !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    // `DISTINCT` (not `DISTINCT ON`): the server removes duplicates; pgseal may sort the result
    // but not filter it (its hidden operands would change what is distinct).
    // `GROUP BY`/`HAVING` (without `DISTINCT`): pgseal may sort the groups, not filter them
    // (checked once the evaluation is built).
    let grouped = grouped(select);
    let plain = matches!(
        select.distinct,
        None | Some(sqlparser::ast::Distinct::Distinct)
    ) && select.top.is_none()
        && select.into.is_none()
        && !(grouped && select.distinct.is_some())
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && select.prewhere.is_none()
        && !select.from.is_empty();
    plain.then_some(select.as_ref())
}

impl<'a> Planner<'a> {
    /// Analyses a statement's top-level query, with evaluation inside pgseal where the
    /// ordinary walk would refuse and the query fits.
    pub fn top_query(&mut self, query: &'a Query, span: &Range<usize>) -> Option<Evaluation> {
        let clauses = plain_select(query).and_then(|select| {
            let tokens = self.token_range(span)?;
            let select_at = self.src.range(select.select_token.0.span)?;
            let mut select_index = self.src.token_at(select_at.start)?;
            if select.distinct.is_some() {
                // Hidden columns go after `DISTINCT`.
                select_index += 1;
                let distinct = self.src.tok(select_index)?;
                if !clauses::is_keyword(&distinct.token, "distinct") {
                    return None;
                }
            }
            Clauses::of(self.src, tokens, select_index)
        });
        let Some(clauses) = clauses else {
            self.query(query);
            return None;
        };
        let distinct = plain_select(query).is_some_and(|s| s.distinct.is_some());
        self.evaluation = Some(Builder::new(clauses));
        let snapshot = self.snapshot();
        self.query(query);
        let mut builder = self.evaluation.take()?;
        if distinct {
            // The server removes duplicates when it can tell equal rows apart: its outputs
            // store equal plaintexts equally and pgseal filters nothing. Otherwise pgseal does,
            // on plaintext, and the server is sent the statement without DISTINCT.
            let Some(outputs) = builder.distinct.clone() else {
                self.restore(snapshot);
                self.query(query);
                return None;
            };
            let randomized = outputs
                .sealed
                .iter()
                .any(|id| !self.names.get(*id).mode.supports_equality());
            builder.dedupe = !builder.filter.is_empty() || randomized;
            let plannable = outputs
                .positions
                .as_ref()
                .is_some_and(|p| !p.contains(&OutputKind::Mixed));
            if (builder.dedupe && !plannable)
                || (!builder.dedupe && builder.filter.is_empty() && builder.order.is_empty())
            {
                // Plain analysis again: the server's DISTINCT, or its refusal.
                self.restore(snapshot);
                self.query(query);
                return None;
            }
        } else if builder.filter.is_empty() && builder.order.is_empty() {
            return None;
        }
        match self.finish_evaluation(query, builder) {
            Ok(evaluation) => Some(evaluation),
            Err(_) => {
                // Plain analysis again, with its refusals.
                self.restore(snapshot);
                self.query(query);
                None
            }
        }
    }

    /// The token index range of a byte range.
    fn token_range(&self, span: &Range<usize>) -> Option<Range<usize>> {
        let tokens = self.src.tokens();
        let start = tokens.partition_point(|t| t.range.start < span.start);
        let end = tokens.partition_point(|t| t.range.end <= span.end);
        (start < end).then_some(start..end)
    }

    pub(crate) fn bytes(&self, tokens: &Range<usize>) -> Option<Range<usize>> {
        clauses::bytes(self.src, tokens)
    }

    /// `WHERE` of the top-level `SELECT`: each conjunct the ordinary walk refuses is given to
    /// pgseal when it compiles to a predicate.
    pub(crate) fn evaluated_where(&mut self, selection: &'a Expr, builder: &mut Builder) {
        let mut terms = Vec::new();
        flatten(selection, BinaryOperator::And, &mut terms);
        let ranges = builder
            .clauses
            .selection
            .as_ref()
            .and_then(|r| clauses::conjuncts(self.src, r))
            .filter(|ranges| ranges.len() == terms.len());
        let Some(ranges) = ranges else {
            self.condition(selection, "WHERE condition");
            return;
        };
        for (term, range) in terms.into_iter().zip(ranges) {
            let snapshot = self.snapshot();
            let before = self.counts();
            self.condition(term, "WHERE condition");
            if self.counts().0 == before.0 {
                continue;
            }
            self.restore(snapshot);
            let trial = self.snapshot();
            match self.predicate(term, &range, builder) {
                Ok(pred) => {
                    builder.filter.push(pred);
                    builder.removed.push(range);
                }
                Err(_) => {
                    self.restore(trial);
                    self.condition(term, "WHERE condition");
                }
            }
        }
    }

    /// Refusals and seal sites recorded so far.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let snapshot = self.snapshot();
        (snapshot.refusal_count(), snapshot.site_count())
    }

    /// A predicate over the tokens `range` (which must be `expr`'s exact extent).
    fn predicate(
        &mut self,
        expr: &'a Expr,
        range: &Range<usize>,
        builder: &mut Builder,
    ) -> Result<Pred, String> {
        match expr {
            Expr::BinaryOp {
                op: op @ (BinaryOperator::And | BinaryOperator::Or),
                ..
            } => {
                let mut terms = Vec::new();
                flatten(expr, op.clone(), &mut terms);
                let ranges = match op {
                    BinaryOperator::And => clauses::conjuncts(self.src, range),
                    _ => clauses::disjuncts(self.src, range),
                }
                .filter(|r| r.len() == terms.len())
                .ok_or("the terms of a condition could not be located")?;
                let mut preds = Vec::with_capacity(terms.len());
                for (term, range) in terms.into_iter().zip(ranges) {
                    preds.push(self.predicate(term, &range, builder)?);
                }
                Ok(match op {
                    BinaryOperator::And => Pred::And(preds),
                    _ => Pred::Or(preds),
                })
            }
            Expr::Nested(inner) => {
                let inside = clauses::inside_parentheses(self.src, range)
                    .ok_or("parentheses could not be located")?;
                self.predicate(inner, &inside, builder)
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: inner,
            } => {
                let first = self.src.tok(range.start).ok_or("no token")?;
                if !clauses::is_keyword(&first.token, "not") {
                    return Err("NOT could not be located".into());
                }
                let rest = range.start + 1..range.end;
                builder.negations += 1;
                let inner = self.predicate(inner, &rest, builder);
                builder.negations -= 1;
                Ok(Pred::Not(Box::new(inner?)))
            }
            _ => {
                // A term the server can compute stays the server's, as a hidden boolean.
                let snapshot = self.snapshot();
                let before = self.counts();
                self.condition(expr, "WHERE condition");
                if self.counts() == before {
                    let bytes = self.bytes(range).ok_or("a term could not be located")?;
                    let text = format!("({})", self.src.slice(&bytes));
                    builder.copied.push(bytes);
                    return Ok(Pred::Server(builder.hidden_index(Hidden::Boolean, text)));
                }
                self.restore(snapshot);
                match expr {
                    Expr::Exists { subquery, negated } => {
                        let any = self.subquery_pred(subquery, None, range, builder)?;
                        return Ok(if *negated {
                            Pred::Not(Box::new(any))
                        } else {
                            any
                        });
                    }
                    Expr::In {
                        expr: outer,
                        target: sqlparser::ast::InTarget::Subquery(subquery),
                        negated,
                        global: false,
                    } => {
                        // Where a NULL would differ from FALSE (under a NOT), pgseal is sent
                        // the rows whose match is NULL too.
                        let nullable = *negated || builder.negations % 2 == 1;
                        let matched = if nullable {
                            Match::Nullable
                        } else {
                            Match::Strict
                        };
                        let any =
                            self.subquery_pred(subquery, Some((outer, matched)), range, builder)?;
                        return Ok(if *negated {
                            Pred::Not(Box::new(any))
                        } else {
                            any
                        });
                    }
                    _ => {}
                }
                if let Expr::BinaryOp { left, op, right } = expr
                    && let (Expr::Tuple(l), Expr::Tuple(r)) = (left.as_ref(), right.as_ref())
                {
                    return self.row_comparison(l, op, r, range, builder);
                }
                self.test(expr, builder).map(Pred::Test)
            }
        }
    }

    /// `(a, b, …) op (x, y, …)` (keyset paging): PostgreSQL compares the pairs left to right,
    /// so it is `a op' x OR (a = x AND (b op' y OR …))` with `op'` the strict form of `op`
    /// (for `<=`/`>=`, the last pair keeps `op`); `=` is every pair equal, `<>` any different.
    /// Pairs without a sealed column stay the server's, as hidden booleans.
    fn row_comparison(
        &mut self,
        left: &'a [Expr],
        op: &BinaryOperator,
        right: &'a [Expr],
        range: &Range<usize>,
        builder: &mut Builder,
    ) -> Result<Pred, String> {
        if left.len() != right.len() || left.is_empty() {
            return Err("row comparison of different lengths".into());
        }
        // The two parenthesized lists and the operator between them.
        let first_close = {
            let mut depth = 0i32;
            let mut end = None;
            for i in range.clone() {
                match self.src.tok(i).map(|t| &t.token) {
                    Some(Token::LParen) => depth += 1,
                    Some(Token::RParen) => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end.ok_or("a row could not be located")?
        };
        let left_range = range.start..first_close + 1;
        let operator_tokens = match op {
            BinaryOperator::Eq
            | BinaryOperator::Lt
            | BinaryOperator::Gt
            | BinaryOperator::LtEq
            | BinaryOperator::GtEq
            | BinaryOperator::NotEq => 1,
            _ => return Err(format!("row comparison with {op}")),
        };
        let right_range = first_close + 1 + operator_tokens..range.end;
        let items = |range: &Range<usize>| {
            clauses::inside_parentheses(self.src, range)
                .and_then(|inner| clauses::items(self.src, &inner))
        };
        let (Some(left_items), Some(right_items)) = (items(&left_range), items(&right_range))
        else {
            return Err("a row's items could not be located".into());
        };
        if left_items.len() != left.len() || right_items.len() != right.len() {
            return Err("a row's items could not be located".into());
        }
        let pair = |i: usize, op: CompareOp, this: &mut Self, builder: &mut Builder| {
            this.pair(
                &left[i],
                &left_items[i],
                op,
                &right[i],
                &right_items[i],
                builder,
            )
        };
        let strict = match op {
            BinaryOperator::Lt | BinaryOperator::LtEq => CompareOp::Lt,
            BinaryOperator::Gt | BinaryOperator::GtEq => CompareOp::Gt,
            BinaryOperator::Eq => CompareOp::Eq,
            _ => CompareOp::NotEq,
        };
        let last = match op {
            BinaryOperator::LtEq => CompareOp::LtEq,
            BinaryOperator::GtEq => CompareOp::GtEq,
            _ => strict,
        };
        let n = left.len();
        if matches!(strict, CompareOp::Eq | CompareOp::NotEq) {
            let mut terms = Vec::with_capacity(n);
            for i in 0..n {
                terms.push(pair(i, strict, self, builder)?);
            }
            return Ok(if strict == CompareOp::Eq {
                Pred::And(terms)
            } else {
                Pred::Or(terms)
            });
        }
        // Built from the last pair outwards.
        let mut pred = pair(n - 1, last, self, builder)?;
        for i in (0..n - 1).rev() {
            let before = pair(i, strict, self, builder)?;
            let equal = pair(i, CompareOp::Eq, self, builder)?;
            pred = Pred::Or(vec![before, Pred::And(vec![equal, pred])]);
        }
        Ok(pred)
    }

    /// One pair of a row comparison: pgseal's test when a side is sealed, else the server's.
    fn pair(
        &mut self,
        left: &'a Expr,
        left_range: &Range<usize>,
        op: CompareOp,
        right: &'a Expr,
        right_range: &Range<usize>,
        builder: &mut Builder,
    ) -> Result<Pred, String> {
        let snapshot = self.snapshot();
        let before = self.counts();
        self.operand_expr(left, "row comparison");
        self.operand_expr(right, "row comparison");
        if self.counts() == before {
            let (l, r) = (
                self.bytes(left_range)
                    .ok_or("a row item could not be located")?,
                self.bytes(right_range)
                    .ok_or("a row item could not be located")?,
            );
            let symbol = match op {
                CompareOp::Eq => "=",
                CompareOp::NotEq => "<>",
                CompareOp::Lt => "<",
                CompareOp::LtEq => "<=",
                CompareOp::Gt => ">",
                _ => ">=",
            };
            let text = format!(
                "(({}) {symbol} ({}))",
                self.src.slice(&l),
                self.src.slice(&r)
            );
            builder.copied.push(l);
            builder.copied.push(r);
            return Ok(Pred::Server(builder.hidden_index(Hidden::Boolean, text)));
        }
        self.restore(snapshot);
        let (left, right) = self.operands(left, right, builder)?;
        if left.sealed().is_none() && right.sealed().is_none() {
            return Err("a row comparison pair".into());
        }
        for column in [left.sealed(), right.sealed()].into_iter().flatten() {
            if !builder.columns.contains(&column) {
                builder.columns.push(column);
            }
        }
        Ok(Pred::Test(Test::Compare { left, op, right }))
    }

    /// A test over a sealed column.
    fn test(&mut self, expr: &'a Expr, builder: &mut Builder) -> Result<Test, String> {
        let test = match expr {
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Eq => CompareOp::Eq,
                    BinaryOperator::NotEq => CompareOp::NotEq,
                    BinaryOperator::Lt => CompareOp::Lt,
                    BinaryOperator::LtEq => CompareOp::LtEq,
                    BinaryOperator::Gt => CompareOp::Gt,
                    BinaryOperator::GtEq => CompareOp::GtEq,
                    _ => return Err(format!("operator {op}")),
                };
                let (left, right) = self.operands(left, right, builder)?;
                Test::Compare { left, op, right }
            }
            Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
                let op = match expr {
                    Expr::IsDistinctFrom(..) => CompareOp::Distinct,
                    _ => CompareOp::NotDistinct,
                };
                let (left, right) = self.operands(left, right, builder)?;
                Test::Compare { left, op, right }
            }
            Expr::Between {
                expr: inner,
                negated,
                low,
                high,
            } => {
                let term = self.term(inner, builder)?;
                let ty = self.type_of(&term);
                let low = self.typed_term(low, &ty, builder)?;
                let high = self.typed_term(high, &ty, builder)?;
                Test::Between {
                    term,
                    low,
                    high,
                    negated: *negated,
                }
            }
            Expr::In {
                expr: inner,
                target: sqlparser::ast::InTarget::List(list),
                negated,
                global: false,
            } => {
                let term = self.term(inner, builder)?;
                let ty = self.type_of(&term);
                let list = list
                    .iter()
                    .map(|e| self.typed_term(e, &ty, builder))
                    .collect::<Result<_, _>>()?;
                Test::In {
                    term,
                    list,
                    negated: *negated,
                }
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => Test::IsNull {
                term: self.term(inner, builder)?,
                negated: matches!(expr, Expr::IsNotNull(_)),
            },
            Expr::Like {
                negated,
                any: false,
                expr: inner,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated,
                any: false,
                expr: inner,
                pattern,
                escape_char,
            } => {
                let term = self.term(inner, builder)?;
                let pattern = self.typed_term(pattern, "text", builder)?;
                let escape = escape_char
                    .as_deref()
                    .map(|e| self.typed_term(e, "text", builder))
                    .transpose()?;
                Test::Like {
                    term,
                    pattern,
                    escape,
                    insensitive: matches!(expr, Expr::ILike { .. }),
                    negated: *negated,
                }
            }
            _ => return Err("this kind of condition".into()),
        };
        let sealed = match &test {
            Test::Compare { left, right, .. } => left.sealed().or(right.sealed()),
            Test::Between { term, .. }
            | Test::In { term, .. }
            | Test::IsNull { term, .. }
            | Test::Like { term, .. } => term.sealed(),
        };
        let column = sealed.ok_or("a condition pgseal evaluates must test a sealed column")?;
        if !builder.columns.contains(&column) {
            builder.columns.push(column);
        }
        Ok(test)
    }

    /// The two operands of a comparison, the parameter among them typed after the other.
    fn operands(
        &mut self,
        left: &'a Expr,
        right: &'a Expr,
        builder: &mut Builder,
    ) -> Result<(Term, Term), String> {
        let l = self.term(left, builder)?;
        let r = self.term(right, builder)?;
        let (lt, rt) = (self.type_of(&l), self.type_of(&r));
        type_params(&l, &rt, builder);
        type_params(&r, &lt, builder);
        Ok((l, r))
    }

    /// A term whose parameters take type `ty`.
    fn typed_term(
        &mut self,
        expr: &'a Expr,
        ty: &str,
        builder: &mut Builder,
    ) -> Result<Term, String> {
        let term = self.term(expr, builder)?;
        type_params(&term, ty, builder);
        Ok(term)
    }

    /// The SQL type of a term's value, as the server would infer a parameter compared with it.
    fn type_of(&self, term: &Term) -> String {
        match term {
            Term::Sealed { column, .. } => self.names.get(*column).plain_type.sql_name(),
            Term::Coalesce(terms) => terms
                .iter()
                .find(|t| t.sealed().is_some())
                .map_or_else(|| "text".into(), |t| self.type_of(t)),
            Term::Concat(_) | Term::Trim(..) => "text".into(),
            _ => "text".into(),
        }
    }

    /// A value pgseal computes: a sealed column, a literal or parameter, `NULL`, and
    /// `lower`/`upper`/`coalesce`/casts to text around them.
    fn term(&mut self, expr: &'a Expr, builder: &mut Builder) -> Result<Term, String> {
        match expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match self.value(expr) {
                Val::Sealed { ids, .. } if ids.len() == 1 => {
                    let extent = self.extent(expr).ok_or("a column could not be located")?;
                    let text = self.src.slice(&extent).to_string();
                    let hidden = builder.hidden_index(Hidden::Sealed(ids[0]), text);
                    Ok(Term::Sealed {
                        hidden,
                        column: ids[0],
                    })
                }
                _ => Err("an unsealed or ambiguous column in a sealed comparison".into()),
            },
            Expr::Nested(inner) => self.term(inner, builder),
            Expr::Trim {
                expr: inner,
                trim_where,
                trim_what: None,
                trim_characters: None,
            } => {
                let side = match trim_where {
                    None | Some(TrimWhereField::Both) => TrimSide::Both,
                    Some(TrimWhereField::Leading) => TrimSide::Leading,
                    Some(TrimWhereField::Trailing) => TrimSide::Trailing,
                };
                let term = self.term(inner, builder)?;
                type_params(&term, "text", builder);
                Ok(Term::Trim(Box::new(term), side))
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::StringConcat,
                right,
            } => {
                let mut parts = Vec::new();
                for side in [left, right] {
                    match self.term(side, builder)? {
                        Term::Concat(inner) => parts.extend(inner),
                        other => parts.push(other),
                    }
                }
                for part in &parts {
                    type_params(part, "text", builder);
                }
                Ok(Term::Concat(parts))
            }
            Expr::Value(v) if matches!(v.value, Value::Null) => Ok(Term::Null),
            Expr::Value(_) | Expr::TypedString(_) | Expr::UnaryOp { .. } => {
                match self.locate(expr)?.value {
                    SiteValue::Literal { text, .. } => Ok(Term::Literal(text)),
                    SiteValue::Param { index } => Ok(Term::Param(index)),
                }
            }
            Expr::Cast {
                kind: CastKind::DoubleColon | CastKind::Cast,
                expr: inner,
                data_type,
                format: None,
                ..
            } => {
                let inner_term = self.term(inner, builder)?;
                if is_text_type(data_type) {
                    return Ok(match inner_term {
                        Term::Sealed { .. } | Term::Coalesce(_) => Term::Text(Box::new(inner_term)),
                        other => other,
                    });
                }
                match inner_term {
                    // A value cast to the type it is compared with.
                    Term::Literal(_) | Term::Param(_) | Term::Null => Ok(inner_term),
                    _ => Err(format!("cast to {data_type}")),
                }
            }
            Expr::Function(function) => {
                let name = function
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(fold)
                    .ok_or("a function name")?;
                let qualified_ok = function.name.0.len() == 1
                    || function
                        .name
                        .0
                        .first()
                        .and_then(|p| p.as_ident())
                        .map(fold)
                        .as_deref()
                        == Some("pg_catalog");
                if !qualified_ok
                    || function.over.is_some()
                    || function.filter.is_some()
                    || !function.within_group.is_empty()
                {
                    return Err("a function pgseal does not evaluate".into());
                }
                let FunctionArguments::List(list) = &function.args else {
                    return Err("function arguments".into());
                };
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err("function arguments".into());
                }
                let mut args = Vec::with_capacity(list.args.len());
                for arg in &list.args {
                    let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
                        return Err("function arguments".into());
                    };
                    args.push(self.term(e, builder)?);
                }
                match (name.as_str(), args.len()) {
                    ("btrim", 1) => Ok(Term::Trim(Box::new(args.remove(0)), TrimSide::Both)),
                    ("ltrim", 1) => Ok(Term::Trim(Box::new(args.remove(0)), TrimSide::Leading)),
                    ("rtrim", 1) => Ok(Term::Trim(Box::new(args.remove(0)), TrimSide::Trailing)),
                    ("lower", 1) => Ok(Term::Lower(Box::new(args.remove(0)))),
                    ("upper", 1) => Ok(Term::Upper(Box::new(args.remove(0)))),
                    ("unaccent", 1) => Ok(Term::Unaccent(Box::new(args.remove(0)))),
                    ("coalesce", n) if n >= 1 => {
                        let term = Term::Coalesce(args);
                        // Its parameters take the sealed column's type, wherever it stands.
                        if term.sealed().is_some() {
                            let ty = self.type_of(&term);
                            type_params(&term, &ty, builder);
                        }
                        Ok(term)
                    }
                    _ => Err(format!("function {name}")),
                }
            }
            _ => Err("an expression pgseal does not evaluate".into()),
        }
    }

    /// `ORDER BY` of the top-level `SELECT`: pgseal's when a key is sealed and every key fits.
    pub(crate) fn evaluated_order_by(
        &mut self,
        order_by: &'a OrderBy,
        select: &'a Select,
        outputs: &super::scope::Outputs<'a>,
        builder: &mut Builder,
    ) {
        let snapshot = self.snapshot();
        let before = self.counts();
        self.order_by(order_by, outputs);
        if self.counts().0 == before.0 {
            return;
        }
        self.restore(snapshot);
        let trial = self.snapshot();
        let hidden_before = builder.hidden.len();
        let copied_before = builder.copied.len();
        match self.sort_keys(order_by, select, builder) {
            Ok(keys) => builder.order = keys,
            Err(_) => {
                builder.hidden.truncate(hidden_before);
                builder.copied.truncate(copied_before);
                self.restore(trial);
                self.order_by(order_by, outputs);
            }
        }
    }

    fn sort_keys(
        &mut self,
        order_by: &'a OrderBy,
        select: &'a Select,
        builder: &mut Builder,
    ) -> Result<Vec<SortKey>, String> {
        let OrderByKind::Expressions(list) = &order_by.kind else {
            return Err("ORDER BY ALL".into());
        };
        let ranges = builder
            .clauses
            .order_keys
            .as_ref()
            .and_then(|r| clauses::items(self.src, r))
            .filter(|r| r.len() == list.len())
            .ok_or("the sort keys could not be located")?;
        let projection = clauses::items(self.src, &builder.clauses.projection)
            .filter(|r| r.len() == select.projection.len())
            .ok_or("the select list could not be located")?;
        let mut keys = Vec::new();
        // Consecutive unsealed keys: their texts, ranked together by the server.
        let mut run: Vec<String> = Vec::new();
        for (item, range) in list.iter().zip(ranges) {
            let (expr, expr_range) = self.resolve_key(item, &range, select, &projection)?;
            let options = options_text(item)?;
            let trial = self.snapshot();
            let before = self.counts();
            self.operand_expr(expr, "ORDER BY");
            let bytes = self
                .bytes(&expr_range)
                .ok_or("a sort key could not be located")?;
            builder.sort_texts.push(self.src.slice(&bytes).to_string());
            if self.counts() == before {
                // Ranked by the server in a window, where a window or set-returning function
                // may not be.
                if self.calls_window_or_set_returning(&expr_range) {
                    return Err("a window or set-returning function as a sort key".into());
                }
                builder.copied.push(bytes.clone());
                run.push(format!("{}{options}", self.src.slice(&bytes)));
                continue;
            }
            self.restore(trial);
            let term = self.term(expr, builder)?;
            let column = term.sealed().ok_or("a sort key")?;
            if !builder.columns.contains(&column) {
                builder.columns.push(column);
            }
            flush_run(&mut run, &mut keys, builder);
            let descending = matches!(item.options.sort, Some(OrderBySort::Desc));
            keys.push(SortKey {
                key: Key::Term(term),
                descending,
                nulls_first: item.options.nulls_first.unwrap_or(descending),
            });
        }
        flush_run(&mut run, &mut keys, builder);
        Ok(keys)
    }

    /// The expression of the select list's item at `position` and its token range (without
    /// its alias); `projection` holds the items' token ranges.
    fn output_item(
        &self,
        select: &'a Select,
        projection: &[Range<usize>],
        position: usize,
    ) -> Result<(&'a Expr, Range<usize>), String> {
        if select.projection[..position].iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }) {
            return Err("an output position after *".into());
        }
        let (expr, alias_tokens) = match &select.projection[position] {
            SelectItem::UnnamedExpr(e) => (e, 0),
            SelectItem::ExprWithAlias { expr, alias } => {
                let with_as = self
                    .src
                    .range(alias.span)
                    .and_then(|r| self.src.token_at(r.start))
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| self.src.tok(i))
                    .is_some_and(|t| clauses::is_keyword(&t.token, "as"));
                (expr, if with_as { 2 } else { 1 })
            }
            _ => return Err("an output that is not an expression".into()),
        };
        let item = &projection[position];
        if item.len() <= alias_tokens {
            return Err("an output could not be located".into());
        }
        Ok((expr, item.start..item.end - alias_tokens))
    }

    /// The hidden columns that give a row's identity when pgseal removes a `SELECT
    /// DISTINCT`'s duplicates: each sealed output (opened), and one `dense_rank()` over the
    /// unsealed ones (equal ranks exactly when PostgreSQL's equality says so).
    fn distinct_identity(&self, select: &'a Select, b: &mut Builder) -> Result<Vec<usize>, String> {
        let positions = b
            .distinct
            .as_ref()
            .and_then(|d| d.positions.clone())
            .filter(|p| p.len() == select.projection.len())
            .ok_or("DISTINCT over * or an unknown select list")?;
        let projection = clauses::items(self.src, &b.clauses.projection)
            .filter(|r| r.len() == select.projection.len())
            .ok_or("the select list could not be located")?;
        let mut parts = Vec::new();
        let mut plain = Vec::new();
        for (position, kind) in positions.iter().enumerate() {
            let (_, range) = self.output_item(select, &projection, position)?;
            let bytes = self.bytes(&range).ok_or("an output could not be located")?;
            let text = self.src.slice(&bytes).to_string();
            b.copied.push(bytes);
            match kind {
                OutputKind::Sealed(column) => {
                    if matches!(
                        self.names.get(*column).plain_type,
                        pgseal_policies::PlainType::Json | pgseal_policies::PlainType::Jsonb
                    ) {
                        return Err("DISTINCT over a sealed json column".into());
                    }
                    parts.push(b.hidden_index(Hidden::Sealed(*column), text));
                    if !b.columns.contains(column) {
                        b.columns.push(*column);
                    }
                }
                OutputKind::Plain => plain.push(text),
                OutputKind::Mixed => return Err("an output mixing sealed columns".into()),
            }
        }
        if !plain.is_empty() {
            let text = format!("dense_rank() OVER (ORDER BY {})", plain.join(", "));
            parts.push(b.hidden_index(Hidden::Rank, text));
        }
        Ok(parts)
    }

    /// The text of every `ORDER BY` key, each resolved to the select-list expression it names
    /// (by position or output name).
    fn order_key_texts(
        &self,
        query: &'a Query,
        select: &'a Select,
        clauses: &Clauses,
        projection: &[Range<usize>],
    ) -> Result<Vec<String>, String> {
        let Some(order_by) = &query.order_by else {
            return Ok(Vec::new());
        };
        let OrderByKind::Expressions(list) = &order_by.kind else {
            return Err("ORDER BY ALL".into());
        };
        let ranges = clauses
            .order_keys
            .as_ref()
            .and_then(|r| clauses::items(self.src, r))
            .filter(|r| r.len() == list.len())
            .ok_or("the sort keys could not be located")?;
        list.iter()
            .zip(ranges)
            .map(|(item, range)| {
                let (_, expr_range) = self.resolve_key(item, &range, select, projection)?;
                let bytes = self
                    .bytes(&expr_range)
                    .ok_or("a sort key could not be located")?;
                Ok(self.src.slice(&bytes).to_string())
            })
            .collect()
    }

    /// A sort key's expression and token range: the key itself, or for an output ordinal or
    /// an output column's name, the select-list expression it stands for.
    fn resolve_key(
        &self,
        item: &'a OrderByExpr,
        range: &Range<usize>,
        select: &'a Select,
        projection: &[Range<usize>],
    ) -> Result<(&'a Expr, Range<usize>), String> {
        let option_tokens = match &item.options.sort {
            Some(OrderBySort::Using(_)) => return Err("ORDER BY … USING".into()),
            Some(_) => 1,
            None => 0,
        } + if item.options.nulls_first.is_some() {
            2
        } else {
            0
        };
        if item.with_fill.is_some() || range.len() <= option_tokens {
            return Err("a sort key".into());
        }
        let key_range = range.start..range.end - option_tokens;
        let output = |position: usize| self.output_item(select, projection, position);
        match &item.expr {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => {
                    let position = n
                        .parse::<usize>()
                        .ok()
                        .and_then(|n| n.checked_sub(1))
                        .filter(|&p| p < select.projection.len())
                        .ok_or("ORDER BY position out of range")?;
                    output(position)
                }
                _ => Ok((&item.expr, key_range)),
            },
            Expr::Identifier(ident) => {
                let name = fold(ident);
                let position = select.projection.iter().position(|i| match i {
                    SelectItem::ExprWithAlias { alias, .. } => fold(alias) == name,
                    _ => false,
                });
                match position {
                    Some(p) => output(p),
                    None => Ok((&item.expr, key_range)),
                }
            }
            _ => Ok((&item.expr, key_range)),
        }
    }

    /// Completes the evaluation: `LIMIT`/`OFFSET`, the select list checked, the edits.
    fn finish_evaluation(
        &mut self,
        query: &'a Query,
        mut b: Builder,
    ) -> Result<Evaluation, String> {
        if b.broken {
            return Err("a parameter is used with two types".into());
        }
        let (limit, offset) = match &query.limit_clause {
            None => (None, None),
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) if limit_by.is_empty() => {
                let limit = limit
                    .as_ref()
                    .map(|e| self.count(e, &mut b))
                    .transpose()?
                    .flatten();
                let offset = offset
                    .as_ref()
                    .map(|o| self.count(&o.value, &mut b))
                    .transpose()?
                    .flatten();
                (limit, offset)
            }
            Some(_) => return Err("this LIMIT form".into()),
        };
        // `FETCH FIRST [n] ROWS ONLY` (the standard's LIMIT, which Hibernate writes): one row
        // when the count is left out.
        let limit = match &query.fetch {
            None => limit,
            Some(_) if limit.is_some() => return Err("both LIMIT and FETCH".into()),
            Some(fetch) => match &fetch.quantity {
                None => Some(Count::Literal(1)),
                Some(quantity) => self.count(quantity, &mut b)?,
            },
        };
        let has_limit = query.limit_clause.is_some() || query.fetch.is_some();
        let mut edits = Vec::new();
        // `SELECT count(*) … WHERE <pgseal's filter>` (an ORM's page count): the server counts
        // nothing (its count becomes a window over the superset, for the column's name and
        // type) and pgseal answers its own count of the rows kept.
        let count_only = match self.count_call(&b.clauses.projection) {
            Some(end) if !b.filter.is_empty() && b.order.is_empty() && !has_limit => {
                edits.push((end..end, " OVER ()".to_string()));
                true
            }
            _ => false,
        };
        // pgseal's filter would change what the server groups and aggregates; its sort does
        // not (the server computes every value over the rows PostgreSQL would have).
        if b.clauses.grouped && !b.filter.is_empty() {
            return Err("GROUP BY or HAVING with a filter pgseal evaluates".into());
        }
        if let Some(select) = plain_select(query) {
            let group_by = match &select.group_by {
                sqlparser::ast::GroupByExpr::Expressions(exprs, _) => exprs.as_slice(),
                sqlparser::ast::GroupByExpr::All(_) => &[],
            };
            // The tokens must agree with the parse (else a clause's extent is wrong).
            if grouped(select) != b.clauses.grouped {
                return Err("the GROUP BY clause could not be located".into());
            }
            // A position counts the hidden columns pgseal inserts first.
            if group_by
                .iter()
                .any(|e| matches!(e, Expr::Value(v) if matches!(v.value, Value::Number(..))))
            {
                return Err("GROUP BY a select-list position".into());
            }
        }
        if !count_only
            && (!b.filter.is_empty() || b.dedupe)
            && self.calls_row_functions(&b.clauses.projection)
        {
            return Err("an aggregate, window or set-returning function in the select list".into());
        }
        // The server computes the select list over the superset: only functions without side
        // effects may run on rows PostgreSQL would not have reached.
        if !count_only
            && (!b.filter.is_empty() || has_limit || b.dedupe)
            && let Some(name) = self.unlisted_call(&b.clauses.projection)
        {
            return Err(format!(
                "function {name} in the select list of a statement pgseal filters or limits"
            ));
        }
        if let Some(select) = plain_select(query)
            && select.distinct.is_some()
        {
            // `SELECT DISTINCT … ORDER BY`: every key must be a selected expression, or the
            // hidden columns would change what is distinct.
            let items = clauses::items(self.src, &b.clauses.projection)
                .filter(|r| r.len() == select.projection.len())
                .ok_or("the select list could not be located")?;
            // Each output's expression, without its alias (a key may name the alias).
            let selected: Vec<String> = (0..items.len())
                .filter_map(|position| self.output_item(select, &items, position).ok())
                .filter_map(|(_, range)| self.bytes(&range))
                .map(|r| self.src.slice(&r).to_string())
                .collect();
            // Without the server's DISTINCT, every key is checked here (PostgreSQL refuses a
            // key it does not select), not only pgseal's.
            let keys = if b.dedupe {
                self.order_key_texts(query, select, &b.clauses, &items)?
            } else {
                b.sort_texts.clone()
            };
            if let Some(key) = keys.iter().find(|k| !selected.contains(k)) {
                return Err(format!(
                    "DISTINCT ordered by {key}, which it does not select"
                ));
            }
        }
        let distinct = match plain_select(query) {
            Some(select) if b.dedupe => Some(self.distinct_identity(select, &mut b)?),
            _ => None,
        };
        let mut filter_edits = Vec::with_capacity(b.removed.len());
        for range in &b.removed {
            let bytes = self
                .bytes(range)
                .ok_or("a condition could not be located")?;
            filter_edits.push(edits.len());
            edits.push((bytes, "TRUE".to_string()));
        }
        let tail = if !b.order.is_empty() {
            b.clauses.order_start
        } else {
            b.clauses.limit_start
        };
        let mut removed_bytes: Vec<Range<usize>> =
            edits.iter().map(|(range, _)| range.clone()).collect();
        if let Some(start) = tail {
            let bytes = self
                .bytes(&(start..b.clauses.end))
                .ok_or("the end of the statement could not be located")?;
            removed_bytes.push(bytes.clone());
            edits.push((bytes, String::new()));
        }
        // The parameters pgseal consumes: every occurrence removed, none copied.
        let mut params = Vec::new();
        for (index, ty) in b.param_types.clone() {
            let occurrences = self.param_occurrences(index);
            let consumed = occurrences.iter().all(|at| {
                removed_bytes.iter().any(|r| r.contains(at))
                    && !b.copied.iter().any(|r| r.contains(at))
            });
            if consumed {
                params.push((index, ty));
            }
        }
        if !params.is_empty() {
            let args: Vec<String> = params.iter().map(|(n, ty)| format!("${n}::{ty}")).collect();
            b.hidden
                .push((Hidden::Keeper, format!("num_nulls({})", args.join(", "))));
        }
        // The server keeps its own ORDER BY (no sealed key): positions shift by the hidden
        // columns now before the client's.
        if b.order.is_empty()
            && let Some(keys) = &b.clauses.order_keys
        {
            for item in
                clauses::items(self.src, keys).ok_or("the sort keys could not be located")?
            {
                if let Some(tok) = self.src.tok(item.start)
                    && let Token::Number(n, _) = &tok.token
                {
                    let n: usize = n.parse().map_err(|_| "an ORDER BY position")?;
                    edits.push((tok.range.clone(), (n + b.hidden.len()).to_string()));
                }
            }
        }
        let select_token = self
            .src
            .tok(b.clauses.select)
            .map(|t| t.range.clone())
            .ok_or("SELECT could not be located")?;
        // After `SELECT` (or `SELECT DISTINCT`); in place of `DISTINCT` when pgseal removes
        // the duplicates.
        let hidden_select = HiddenSelect {
            edit: edits.len(),
            replaces_distinct: distinct.is_some(),
        };
        let at = if hidden_select.replaces_distinct {
            select_token
        } else {
            select_token.end..select_token.end
        };
        let texts = b.hidden.iter().map(|(_, text)| text.as_str());
        edits.push((
            at,
            HiddenSelect::sql(hidden_select.replaces_distinct, texts),
        ));
        // Every sealed column opened, in a subquery's rows too.
        let mut hidden_columns: Vec<ColumnId> = Vec::new();
        for (hidden, _) in &b.hidden {
            hidden.sealed_columns(&mut hidden_columns);
        }
        let max_param = self
            .src
            .tokens()
            .iter()
            .filter_map(|t| match &t.token {
                Token::Placeholder(p) => super::planner::param_index(p),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let hidden_sql = b.hidden.iter().map(|(_, text)| text.clone()).collect();
        Ok(Evaluation {
            hidden_sql,
            filter_edits,
            max_param,
            hidden_select: Some(hidden_select),
            hidden: b.hidden.into_iter().map(|(h, _)| h).collect(),
            filter: b.filter,
            order: b.order,
            limit,
            offset,
            edits,
            params,
            read_types: b.param_types,
            // Every sealed column pgseal opens: the role must read each in clear.
            columns: {
                let mut columns: Vec<ColumnId> = hidden_columns.clone();
                columns.extend(b.columns.iter().copied());
                columns.sort();
                columns.dedup();
                columns
            },
            count_only,
            distinct,
        })
    }

    /// When the select list is just `count(*)` or `count(1)` (an alias allowed): the byte
    /// offset just after its closing parenthesis.
    fn count_call(&self, projection: &Range<usize>) -> Option<usize> {
        let token = |i: usize| self.src.tok(projection.start + i).map(|t| &t.token);
        let is_count = matches!(token(0), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("count"))
            && token(1) == Some(&Token::LParen)
            && matches!(token(2), Some(Token::Mul) | Some(Token::Number(..)))
            && token(3) == Some(&Token::RParen);
        let rest = projection.len().checked_sub(4)?;
        let alias_ok = match rest {
            0 => true,
            1 => matches!(token(4), Some(Token::Word(_))),
            2 => {
                matches!(token(4), Some(t) if clauses::is_keyword(t, "as"))
                    && matches!(token(5), Some(Token::Word(_)))
            }
            _ => false,
        };
        if !(is_count && alias_ok) {
            return None;
        }
        self.src.tok(projection.start + 3).map(|t| t.range.end)
    }

    /// A `LIMIT`/`OFFSET` value: a number, `$n`, `ALL` or `NULL` (no limit).
    fn count(&mut self, expr: &'a Expr, b: &mut Builder) -> Result<Option<Count>, String> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::Null => Ok(None),
                Value::Number(n, false) => n
                    .parse::<u64>()
                    .map(|n| Some(Count::Literal(n)))
                    .map_err(|_| "a LIMIT that is not a whole number".into()),
                Value::Placeholder(p) => {
                    let index =
                        super::planner::param_index(p).ok_or("a parameter not of the form $n")?;
                    b.param_type(index, "bigint");
                    Ok(Some(Count::Param(index)))
                }
                _ => Err("this LIMIT value".into()),
            },
            Expr::Identifier(ident) if fold(ident) == "all" => Ok(None),
            Expr::Cast { expr: inner, .. } | Expr::Nested(inner) => self.count(inner, b),
            _ => Err("a computed LIMIT or OFFSET".into()),
        }
    }

    /// Byte offsets of each `$index` in the text.
    fn param_occurrences(&self, index: u16) -> Vec<usize> {
        self.src
            .tokens()
            .iter()
            .filter(|t| {
                matches!(&t.token, Token::Placeholder(p) if super::planner::param_index(p) == Some(index))
            })
            .map(|t| t.range.start)
            .collect()
    }

    /// The first function the select list calls that is not known to be free of side effects
    /// (`nextval`, an application's audit function…), by name.
    fn unlisted_call(&self, projection: &Range<usize>) -> Option<String> {
        projection.clone().find_map(|i| {
            let tok = self.src.tok(i)?;
            let next_is_paren = self
                .src
                .tok(i + 1)
                .is_some_and(|t| t.token == Token::LParen);
            let after_dot_or_cast = i
                .checked_sub(1)
                .and_then(|p| self.src.tok(p))
                .is_some_and(|t| matches!(t.token, Token::Period | Token::DoubleColon));
            match &tok.token {
                Token::Word(w) if next_is_paren && !after_dot_or_cast => {
                    let name = w.value.to_ascii_lowercase();
                    // `OVER (…)`, `FILTER (WHERE …)`, `WITHIN GROUP (…)`.
                    let free = SIDE_EFFECT_FREE.contains(&name.as_str())
                        || is_row_function(&name)
                        || ["over", "filter", "group"].contains(&name.as_str());
                    (!free).then_some(name)
                }
                _ => None,
            }
        })
    }

    /// Whether the tokens `range` hold a window (`OVER`) or call a set-returning function.
    fn calls_window_or_set_returning(&self, range: &Range<usize>) -> bool {
        range.clone().any(|i| {
            let next_is_paren = self
                .src
                .tok(i + 1)
                .is_some_and(|t| t.token == Token::LParen);
            match self.src.tok(i).map(|t| &t.token) {
                Some(Token::Word(w)) => {
                    let name = w.value.to_ascii_lowercase();
                    (w.quote_style.is_none() && name == "over")
                        || (next_is_paren && SET_RETURNING.contains(&name.as_str()))
                }
                Some(_) => false,
                None => true,
            }
        })
    }

    /// Whether the select list calls a function whose value depends on several rows.
    pub(crate) fn calls_row_functions(&self, projection: &Range<usize>) -> bool {
        projection.clone().any(|i| {
            let Some(tok) = self.src.tok(i) else {
                return true;
            };
            let next_is_paren = self
                .src
                .tok(i + 1)
                .is_some_and(|t| t.token == Token::LParen);
            match &tok.token {
                Token::Word(w) => {
                    let name = w.value.to_ascii_lowercase();
                    name == "over"
                        || (next_is_paren && is_row_function(&name))
                        || (w.quote_style.is_none() && name == "array" && next_is_paren)
                }
                _ => false,
            }
        })
    }
}

/// Whether a `SELECT` has `GROUP BY` (of any form) or `HAVING`.
fn grouped(select: &Select) -> bool {
    let by = match &select.group_by {
        sqlparser::ast::GroupByExpr::Expressions(exprs, modifiers) => {
            !exprs.is_empty() || !modifiers.is_empty()
        }
        sqlparser::ast::GroupByExpr::All(_) => true,
    };
    by || select.having.is_some()
}

/// The terms of a left-deep chain of one operator (`a AND b AND c`), parentheses kept.
fn flatten<'a>(expr: &'a Expr, op: BinaryOperator, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp { left, op: o, right } if *o == op => {
            flatten(left, op.clone(), out);
            flatten(right, op, out);
        }
        _ => out.push(expr),
    }
}

/// Types each parameter of a term that is compared with a value of type `ty`.
fn type_params(term: &Term, ty: &str, builder: &mut Builder) {
    match term {
        Term::Param(index) => builder.param_type(*index, ty),
        Term::Lower(t) | Term::Upper(t) | Term::Unaccent(t) | Term::Text(t) | Term::Trim(t, _) => {
            type_params(t, "text", builder)
        }
        Term::Coalesce(terms) => {
            for t in terms {
                type_params(t, ty, builder);
            }
        }
        Term::Concat(terms) => {
            for t in terms {
                type_params(t, "text", builder);
            }
        }
        Term::Sealed { .. } | Term::Literal(_) | Term::Null => {}
    }
}

/// Whether a cast target is `text` or `varchar` (any length).
fn is_text_type(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::String(_)
    )
}

/// `ASC`/`DESC`/`NULLS …` of a key, as text to repeat in a window's `ORDER BY`.
fn options_text(item: &OrderByExpr) -> Result<String, String> {
    let mut text = String::new();
    match &item.options.sort {
        Some(OrderBySort::Asc) => text.push_str(" ASC"),
        Some(OrderBySort::Desc) => text.push_str(" DESC"),
        Some(OrderBySort::Using(_)) => return Err("ORDER BY … USING".into()),
        None => {}
    }
    match item.options.nulls_first {
        Some(true) => text.push_str(" NULLS FIRST"),
        Some(false) => text.push_str(" NULLS LAST"),
        None => {}
    }
    Ok(text)
}

/// Ends a run of unsealed keys: one hidden `dense_rank()` over them.
fn flush_run(run: &mut Vec<String>, keys: &mut Vec<SortKey>, builder: &mut Builder) {
    if run.is_empty() {
        return;
    }
    let text = format!("dense_rank() OVER (ORDER BY {})", run.join(", "));
    run.clear();
    let hidden = builder.hidden_index(Hidden::Rank, text);
    keys.push(SortKey {
        key: Key::Rank(hidden),
        descending: false,
        nulls_first: false,
    });
}
